//! The request a handler sees: its head, and its body, read whole before
//! the handler runs.

use std::io;

use super::body::BodyError;
use super::head::Head;

/// One request, complete in memory: the engine read the head and the
/// whole body (decoded, if it was chunked) before calling the handler, so
/// reading the body never waits on the client.
#[derive(Debug)]
pub struct Request<'c> {
    head: &'c Head,
    body: &'c [u8],
    /// Bytes of `body` already handed out by `read_body`.
    read: usize,
}

impl<'c> Request<'c> {
    pub(crate) fn new(head: &'c Head, body: &'c [u8]) -> Self {
        Self {
            head,
            body,
            read: 0,
        }
    }

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

    /// The whole body (empty when the request has none).
    pub fn body(&self) -> &'c [u8] {
        self.body
    }

    /// Reads body bytes into `out`; `Ok(0)` at the end of the body. The
    /// body is in memory already, so this never waits and never fails; the
    /// `Result` is kept so that handlers written against a streaming body
    /// keep working.
    pub fn read_body(&mut self, out: &mut [u8]) -> Result<usize, BodyError> {
        let rest = &self.body[self.read..];
        let count = rest.len().min(out.len());
        out[..count].copy_from_slice(&rest[..count]);
        self.read += count;
        Ok(count)
    }

    /// The body not read yet by [`read_body`](Self::read_body), copied.
    pub fn body_to_vec(&mut self) -> Result<Vec<u8>, BodyError> {
        let rest = self.body[self.read..].to_vec();
        self.read = self.body.len();
        Ok(rest)
    }
}

impl io::Read for Request<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.read_body(out).map_err(io::Error::other)
    }
}
