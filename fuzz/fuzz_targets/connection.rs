//! A whole connection on any byte stream: it never panics; it serves the
//! same requests, ends with the same error and sends the same bytes
//! however the stream is cut (the first 3 bytes say where); and it sends
//! one final response per request it served, plus one for the request it
//! refused, if any, each a complete head.
#![no_main]

use gremlins_api::fuzzing::{cut_at, serve};
use libfuzzer_sys::fuzz_target;

/// Final responses in `output` (interim `100 Continue` left out), each
/// checked to have a complete head with a `Content-Length`.
fn final_responses(output: &[u8]) -> usize {
    let text = String::from_utf8_lossy(output);
    let mut count = 0;
    for (at, _) in text.match_indices("HTTP/1.1 ") {
        let rest = &text[at..];
        if rest.starts_with("HTTP/1.1 100 ") {
            continue;
        }
        let head = &rest[..rest.find("\r\n\r\n").expect("a complete response head")];
        assert!(head.contains("\r\nContent-Length: "), "no length: {head:?}");
        count += 1;
    }
    count
}

fuzz_target!(|data: &[u8]| {
    let (cuts, stream) = data.split_at(data.len().min(3));
    let at: Vec<usize> = cuts
        .iter()
        .map(|&cut| usize::from(cut) * 5 % (stream.len() + 1))
        .collect();
    let pieces = cut_at(stream, &at);
    let whole = serve(&[stream]);
    assert_eq!(whole, serve(&pieces), "cut at {cuts:?}");
    let (served, refused, output) = whole;
    assert_eq!(
        final_responses(&output),
        served.len() + usize::from(refused.is_some()),
        "{served:?} {refused:?} {:?}",
        String::from_utf8_lossy(&output)
    );
});
