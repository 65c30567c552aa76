//! The request a handler sees: its head, and its body, read whole before
//! the handler runs.

use std::io;

use super::body::{BodyDecoder, BodyError, Decoded};
use super::buffer::ReadBuffer;
use super::head::{self, Head, HeadError, Parsed};
use super::limits::Limits;
use super::response::Response;
use super::wire_error::WireError;

/// Why a request could not be read; answered by the engine, then the
/// connection is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestError {
    /// The head was refused.
    Head(HeadError),
    /// The body was refused.
    Body(BodyError),
}

impl RequestError {
    /// The answer this error gets: its status, stable code and message.
    pub fn wire_error(self) -> WireError {
        match self {
            Self::Head(error) => error.wire_error(),
            Self::Body(error) => error.wire_error(),
        }
    }

    /// The error answer.
    pub fn response(self) -> Response {
        self.wire_error().response()
    }
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.wire_error().message())
    }
}

impl std::error::Error for RequestError {}

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

    /// The host the request is for: the authority of an absolute-form
    /// target (`GET http://host/path`, RFC 9112 3.2.2), else the `Host`
    /// field.
    pub fn host(&self) -> Option<&str> {
        self.head.host()
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

/// A request parsed from bytes by the engine's own parser, with no
/// socket: for testing handlers.
///
/// ```
/// use gremlins_api::{ParsedRequest, Response, StatusCode};
///
/// fn hello(request: &mut gremlins_api::Request<'_>) -> Response {
///     let name = request.query_param("name").unwrap_or("world");
///     Response::text(StatusCode::OK, format!("hello, {name}"))
/// }
///
/// let parsed = ParsedRequest::parse(b"GET /?name=you HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
/// let response = hello(&mut parsed.request());
/// assert_eq!(response.body(), b"hello, you");
/// ```
#[derive(Debug)]
pub struct ParsedRequest {
    head: Head,
    body: Vec<u8>,
}

impl ParsedRequest {
    /// Parses one whole request, head and body (framed by
    /// `Content-Length` or chunked), from `bytes`, as the server would
    /// with the default limits of [`ServerConfig`](crate::ServerConfig). Bytes after the request are ignored.
    /// Fails as the server would refuse it; an unfinished head is
    /// malformed, an unfinished body incomplete.
    pub fn parse(bytes: &[u8]) -> Result<Self, RequestError> {
        let limits = Limits::default();
        let mut head = Head::default();
        let length = match head::parse(bytes, &limits, &mut head) {
            Ok(Parsed::Complete(length)) => length,
            Ok(Parsed::Partial) => return Err(RequestError::Head(HeadError::Malformed)),
            Err(error) => return Err(RequestError::Head(error)),
        };
        let mut body = Vec::new();
        if let Some(framing) = head.framing {
            let mut input = ReadBuffer::default();
            input.push(&bytes[length..]);
            let decoded = BodyDecoder::new(framing, limits.max_body_bytes)
                .advance(&mut input, &mut body, limits.max_body_bytes)
                .map_err(RequestError::Body)?;
            if decoded != Decoded::Complete {
                return Err(RequestError::Body(BodyError::Incomplete));
            }
        }
        Ok(Self { head, body })
    }

    /// The request, as a handler sees it.
    pub fn request(&self) -> Request<'_> {
        Request::new(&self.head, &self.body)
    }
}

impl io::Read for Request<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.read_body(out).map_err(io::Error::other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_parsed_from_bytes_has_its_head_and_chunked_body() {
        let parsed = ParsedRequest::parse(
            b"POST /v1/events?x=1 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\
              Idempotency-Key: k\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .expect("a valid request");
        let mut request = parsed.request();
        assert_eq!(request.method(), "POST");
        assert_eq!(request.path(), "/v1/events");
        assert_eq!(request.query_param("x"), Some("1"));
        assert_eq!(request.header("idempotency-key"), Some("k"));
        assert_eq!(request.body_to_vec().expect("in memory"), b"abcde");
    }

    #[test]
    fn bytes_the_server_would_refuse_are_refused_alike() {
        assert_eq!(
            ParsedRequest::parse(
                b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"
            )
            .map(|_| ()),
            Err(RequestError::Head(HeadError::BadContentLength))
        );
        assert_eq!(
            ParsedRequest::parse(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nab")
                .map(|_| ()),
            Err(RequestError::Body(BodyError::Incomplete))
        );
        assert_eq!(
            ParsedRequest::parse(b"GET / HTTP/1.1\r\nHost: t\r\n").map(|_| ()),
            Err(RequestError::Head(HeadError::Malformed))
        );
    }
}
