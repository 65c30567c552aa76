//! Entry points for the fuzz targets in `fuzz/`, on bytes alone: the
//! head parser, the chunked decoder, and a whole connection. Built only
//! with the `internals` feature; not part of the API.

use crate::http::drive;
use crate::http::{BodyError, HeadError, RequestError};

/// What a connection made of a byte stream: each request's method,
/// target and body, the error that ended it, and the bytes it queued to
/// send (`Date` values written `-`).
pub type Served = (
    Vec<(String, String, Vec<u8>)>,
    Option<RequestError>,
    Vec<u8>,
);

/// Parses a request head from `bytes` with the default limits: the
/// head's length once complete, `None` while more bytes are needed.
pub fn parse_head(bytes: &[u8]) -> Result<Option<usize>, HeadError> {
    crate::http::parse_head_for_fuzzing(bytes)
}

/// Decodes a chunked body from `wire`, fed in pieces cut at `cuts`: the
/// body and how many bytes after it were left unread, `None` if the
/// input ran out first.
pub fn decode_chunked(wire: &[u8], cuts: &[usize]) -> Result<Option<(Vec<u8>, usize)>, BodyError> {
    crate::http::decode_chunked_for_fuzzing(wire, cuts)
}

/// `stream` cut at the offsets `at` (each at most its length), in order.
pub fn cut_at<'a>(stream: &'a [u8], at: &[usize]) -> Vec<&'a [u8]> {
    drive::cut_at(stream, at)
}

/// Serves a byte stream fed to one connection in `pieces` (every request
/// answered `ok`), as the property tests do.
pub fn serve(pieces: &[&[u8]]) -> Served {
    drive::serve_in_pieces(pieces)
}
