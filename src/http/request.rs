//! The request a handler sees: its head, and its body read on demand.

use std::io;

use super::body::{Body, BodyError};
use super::head::Head;

/// One request. The head is parsed; the body is read from the connection
/// only when the handler asks for it (which is also when `100 Continue` is
/// sent to a client that expects it).
#[derive(Debug)]
pub struct Request<'c> {
    pub(crate) head: &'c Head,
    pub(crate) body: Body<'c>,
}

impl Request<'_> {
    /// The method, such as `GET`.
    pub fn method(&self) -> &str {
        self.head.method()
    }

    /// The path of the request target, without the query.
    pub fn path(&self) -> &str {
        self.head.path()
    }

    /// The query of the request target, without the `?`.
    pub fn query(&self) -> Option<&str> {
        self.head.query()
    }

    /// The value of one query parameter (not percent-decoded).
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query()?
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value)
    }

    /// The first header with this name (ASCII case-insensitive), if its
    /// value is valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        std::str::from_utf8(self.head.header(name)?).ok()
    }

    /// Every header as (name, raw value), in the order received.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.head.headers()
    }

    /// Reads body bytes into `out`; `Ok(0)` at the end of the body.
    pub fn read_body(&mut self, out: &mut [u8]) -> Result<usize, BodyError> {
        self.body.read(out)
    }

    /// Reads the whole body into memory (at most `max_body_bytes`).
    pub fn body_to_vec(&mut self) -> Result<Vec<u8>, BodyError> {
        let mut body = Vec::new();
        let mut chunk = [0u8; 8 * 1024];
        loop {
            match self.body.read(&mut chunk)? {
                0 => return Ok(body),
                count => body.extend_from_slice(&chunk[..count]),
            }
        }
    }
}

impl io::Read for Request<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.body.read(out).map_err(io::Error::from)
    }
}
