//! Shared helpers for the benchmark reference binaries.

/// Upper bound for `/test/sleep?ms=N`, so a typo cannot park a worker for long.
pub const MAX_SLEEP_MS: u64 = 10_000;

/// Upper bound for `/test/bytes?n=N` (axum-ok), in bytes.
pub const MAX_BYTES: usize = 16 * 1024 * 1024;

/// Parses `ms=N` out of a query string (`a=1&ms=5`), capped at [`MAX_SLEEP_MS`].
///
/// Returns `None` when `ms` is missing or not a non-negative integer.
pub fn sleep_ms_from_query(query: &str) -> Option<u64> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("ms="))
        .and_then(|ms| ms.parse::<u64>().ok())
        .map(|ms| ms.min(MAX_SLEEP_MS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleep_ms_is_parsed_and_capped() {
        assert_eq!(sleep_ms_from_query("ms=5"), Some(5));
        assert_eq!(sleep_ms_from_query("x=1&ms=200"), Some(200));
        assert_eq!(sleep_ms_from_query("ms=999999"), Some(MAX_SLEEP_MS));
        assert_eq!(sleep_ms_from_query("ms=-1"), None);
        assert_eq!(sleep_ms_from_query(""), None);
    }
}
