//! A minimal blocking HTTP/1.1 client connection: one request at a time on a
//! keep-alive connection, responses framed by `Content-Length`.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// How long one blocking `read` may wait before the caller's deadline is
/// checked again. std has no read-with-deadline, so blocked reads wake at
/// this interval; it only bounds how late a deadline is noticed.
const READ_SLICE: Duration = Duration::from_millis(50);

/// Most response headers parsed; the servers under test send a handful.
const MAX_RESPONSE_HEADERS: usize = 32;

/// The head of a complete response; its body has been read and discarded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Response {
    /// Status code.
    pub(crate) status: u16,
    /// The server will close the connection after this response
    /// (`Connection: close`, or HTTP/1.0 without keep-alive).
    pub(crate) close: bool,
}

/// Why no complete response arrived.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The connection was closed (EOF) before any byte of a response.
    ClosedBeforeResponse,
    /// The connection was closed (EOF) in the middle of a response.
    ClosedMidResponse,
    /// The connection was reset (RST), with or without a partial response.
    Reset,
    /// The deadline passed first.
    TimedOut,
    /// The response could not be parsed or framed.
    Protocol(String),
    /// Any other I/O error.
    Io(io::Error),
}

impl Failure {
    /// A short stable label for reports.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Failure::ClosedBeforeResponse => "eof_before_response",
            Failure::ClosedMidResponse => "eof_mid_response",
            Failure::Reset => "reset",
            Failure::TimedOut => "timed_out",
            Failure::Protocol(_) => "protocol",
            Failure::Io(_) => "io",
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Protocol(message) => write!(f, "protocol: {message}"),
            Failure::Io(err) => write!(f, "io: {err}"),
            other => f.write_str(other.label()),
        }
    }
}

/// Connects with a bounded wait; the error keeps its kind (`ConnectionRefused`).
pub(crate) fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<Conn> {
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(READ_SLICE))?;
    stream.set_write_timeout(Some(timeout))?;
    Ok(Conn {
        stream,
        buf: Vec::with_capacity(4096),
    })
}

/// `GET path` as HTTP/1.1 with a `Host` header, keep-alive implied.
pub(crate) fn get_request(addr: SocketAddr, path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: gremlins-loadgen\r\n\r\n")
        .into_bytes()
}

/// `GET path` as HTTP/1.1 with `Connection: close`: one request per
/// connection.
pub(crate) fn get_close_request(addr: SocketAddr, path: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: gremlins-loadgen\r\nConnection: close\r\n\r\n"
    )
    .into_bytes()
}

/// `POST path` as HTTP/1.1 with a JSON `body` and an `Idempotency-Key`;
/// `close` adds `Connection: close`.
pub(crate) fn post_json_request(
    addr: SocketAddr,
    path: &str,
    body: &str,
    idempotency_key: &str,
    close: bool,
) -> Vec<u8> {
    let connection = if close { "Connection: close\r\n" } else { "" };
    format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: gremlins-loadgen\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\
         Idempotency-Key: {idempotency_key}\r\n{connection}\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// One client connection with its unread bytes.
pub(crate) struct Conn {
    stream: TcpStream,
    /// Bytes read but not yet consumed as a response.
    buf: Vec<u8>,
}

impl Conn {
    /// Writes a whole request.
    pub(crate) fn send(&mut self, request: &[u8]) -> io::Result<()> {
        self.stream.write_all(request)
    }

    /// True when the peer has already closed or reset this idle connection,
    /// so a request written now could not be answered. Clients with a
    /// connection pool (hyper, Go's net/http) check this before reuse too;
    /// the check is racy by nature and does not consume data.
    pub(crate) fn peer_closed(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        if self.stream.set_nonblocking(true).is_err() {
            return true;
        }
        let mut byte = [0u8; 1];
        let closed = match self.stream.peek(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(err) => err.kind() != io::ErrorKind::WouldBlock,
        };
        closed || self.stream.set_nonblocking(false).is_err()
    }

    /// Reads one complete response, or says why none arrived by `deadline`.
    pub(crate) fn read_response(&mut self, deadline: Instant) -> Result<Response, Failure> {
        let mut chunk = [0u8; 8192];
        loop {
            if let Some((response, consumed)) = parse_response(&self.buf)? {
                self.buf.drain(..consumed);
                return Ok(response);
            }
            if Instant::now() >= deadline {
                return Err(Failure::TimedOut);
            }
            match self.stream.read(&mut chunk) {
                Ok(0) if self.buf.is_empty() => return Err(Failure::ClosedBeforeResponse),
                Ok(0) => return Err(Failure::ClosedMidResponse),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(err) => match err.kind() {
                    io::ErrorKind::WouldBlock
                    | io::ErrorKind::TimedOut
                    | io::ErrorKind::Interrupted => {}
                    io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
                        return Err(Failure::Reset);
                    }
                    _ => return Err(Failure::Io(err)),
                },
            }
        }
    }
}

/// Parses one response from the start of `buf`: `Ok(None)` while incomplete,
/// else the response and how many bytes it took (head and body).
fn parse_response(buf: &[u8]) -> Result<Option<(Response, usize)>, Failure> {
    if buf.is_empty() {
        return Ok(None);
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
    let mut parsed = httparse::Response::new(&mut headers);
    let head_len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(err) => return Err(Failure::Protocol(format!("bad response head: {err}"))),
    };
    let status = parsed.code.unwrap_or(0);
    let mut content_length: Option<usize> = None;
    let mut close = parsed.version == Some(0);
    for header in parsed.headers.iter() {
        let value = String::from_utf8_lossy(header.value);
        if header.name.eq_ignore_ascii_case("content-length") {
            let len = value
                .trim()
                .parse()
                .map_err(|_| Failure::Protocol(format!("bad content-length {value:?}")))?;
            content_length = Some(len);
        } else if header.name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    close = true;
                } else if token.eq_ignore_ascii_case("keep-alive") {
                    close = false;
                }
            }
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(Failure::Protocol(format!(
                "transfer-encoding {value:?} is not supported by this client"
            )));
        }
    }
    let body_len = match (content_length, status) {
        (Some(len), _) => len,
        (None, 100..=199 | 204 | 304) => 0,
        (None, _) => {
            return Err(Failure::Protocol(format!(
                "status {status} without content-length"
            )));
        }
    };
    if buf.len() < head_len + body_len {
        return Ok(None);
    }
    Ok(Some((Response { status, close }, head_len + body_len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_frames_pipelined_responses() {
        let two = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 503 x\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
        let (first, used) = parse_response(two).expect("valid").expect("complete");
        assert_eq!((first.status, first.close), (200, false));
        let (second, rest) = parse_response(&two[used..])
            .expect("valid")
            .expect("complete");
        assert_eq!((second.status, second.close), (503, true));
        assert_eq!(used + rest, two.len());
    }

    #[test]
    fn partial_body_is_incomplete() {
        let partial = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nok";
        assert!(parse_response(partial).expect("valid").is_none());
    }

    #[test]
    fn post_request_frames_its_body() {
        let addr: SocketAddr = "127.0.0.1:80".parse().expect("valid address");
        let request = post_json_request(addr, "/v1/events", r#"{"a":1}"#, "k-1", true);
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut parsed = httparse::Request::new(&mut headers);
        let head_len = match parsed.parse(&request) {
            Ok(httparse::Status::Complete(len)) => len,
            other => panic!("not a complete head: {other:?}"),
        };
        let header = |name: &str| {
            parsed
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| String::from_utf8_lossy(h.value).into_owned())
        };
        assert_eq!(header("content-length").as_deref(), Some("7"));
        assert_eq!(header("idempotency-key").as_deref(), Some("k-1"));
        assert_eq!(header("connection").as_deref(), Some("close"));
        assert_eq!(&request[head_len..], br#"{"a":1}"#);
    }

    #[test]
    fn http10_closes_unless_keep_alive() {
        let r = b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n";
        assert!(parse_response(r).expect("valid").expect("complete").0.close);
    }
}
