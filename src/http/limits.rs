//! Limits on what one client may make the engine read or hold.

/// Bounds applied to every request on every connection.
///
/// The server builds one from its [`ServerConfig`](crate::ServerConfig),
/// whose defaults are these; the engine never reads the configuration
/// itself. (Time limits are the server's: it is the one that waits.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Largest request head (request line and headers), in bytes.
    pub max_head_bytes: usize,
    /// Most header fields in one request head.
    pub max_headers: usize,
    /// Longest request target (path and query), in bytes.
    pub max_uri_bytes: usize,
    /// Largest request body, in bytes, after chunked decoding.
    pub max_body_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_head_bytes: 16 * 1024,
            max_headers: 64,
            max_uri_bytes: 8 * 1024,
            max_body_bytes: 1024 * 1024,
        }
    }
}

/// The most header fields any configuration may allow: the parser keeps
/// them in a stack array of this size.
pub(crate) const MAX_HEADERS_CEILING: usize = 256;
