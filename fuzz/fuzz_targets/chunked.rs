//! The chunked decoder on any bytes: it never panics, decodes the same
//! however the input is cut (the first 4 bytes say where), and never
//! makes a body longer than its input.
#![no_main]

use gremlins_api::fuzzing::decode_chunked;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (cuts, wire) = data.split_at(data.len().min(4));
    let cuts: Vec<usize> = cuts.iter().map(|&cut| usize::from(cut) * 7).collect();
    let whole = decode_chunked(wire, &[]);
    assert_eq!(whole, decode_chunked(wire, &cuts), "cut at {cuts:?}");
    if let Ok(Some((body, left))) = whole {
        assert!(body.len() + left <= wire.len(), "more out than in");
    }
});
