//! The head parser on any bytes: it never panics, a complete head is no
//! longer than its input, and parses the same from exactly its bytes.
#![no_main]

use gremlins_api::fuzzing::parse_head;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(length)) = parse_head(data) {
        assert!(length <= data.len(), "a head longer than its input");
        assert_eq!(parse_head(&data[..length]), Ok(Some(length)));
    }
});
