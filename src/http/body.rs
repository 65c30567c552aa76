//! Request body framing: `Content-Length` and chunked decoding, bounded in
//! size and time, and `100 Continue` sent only when the body is read.

use std::io;
use std::time::{Duration, Instant};

use super::buffer::ReadBuffer;
use super::head::Framing;
use super::response::StatusCode;
use super::transport::Transport;

/// Longest chunk-size line or trailer line accepted.
const MAX_CHUNK_LINE: usize = 1024;
/// Most trailer bytes accepted after the last chunk.
const MAX_TRAILER_BYTES: usize = 8 * 1024;
/// Most body bytes read and thrown away when a handler did not read the
/// body, so that the next request on the connection can be read; beyond
/// it the connection is closed instead.
const MAX_DRAIN_BYTES: u64 = 64 * 1024;
/// Longest wait for an unread body to be drained.
const MAX_DRAIN_WAIT: Duration = Duration::from_secs(1);

/// Why a request body could not be read. After any of these the connection
/// is closed once the response is written.
#[derive(Debug)]
#[non_exhaustive]
pub enum BodyError {
    /// The body is larger than `max_body_bytes`.
    TooLarge,
    /// The chunked framing is invalid.
    BadChunk,
    /// The client closed the connection before the end of the body.
    Incomplete,
    /// The body did not arrive within `body_timeout`.
    TimedOut,
    /// The socket failed.
    Io(io::Error),
}

impl BodyError {
    /// The status, stable error code and message this error is answered with.
    pub fn answer(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Self::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "DRYAD-HTTP-4131",
                "request body too large",
            ),
            Self::BadChunk => (
                StatusCode::BAD_REQUEST,
                "DRYAD-HTTP-4003",
                "invalid chunked encoding",
            ),
            Self::Incomplete | Self::Io(_) => (
                StatusCode::BAD_REQUEST,
                "DRYAD-HTTP-4005",
                "request body ended early",
            ),
            Self::TimedOut => (
                StatusCode::REQUEST_TIMEOUT,
                "DRYAD-HTTP-4081",
                "request body timed out",
            ),
        }
    }
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.answer().2)
    }
}

impl std::error::Error for BodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(error) => Some(error),
            _ => None,
        }
    }
}

impl From<BodyError> for io::Error {
    fn from(error: BodyError) -> Self {
        let kind = match &error {
            BodyError::TimedOut => io::ErrorKind::TimedOut,
            BodyError::Incomplete => io::ErrorKind::UnexpectedEof,
            _ => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, error)
    }
}

/// Where the chunked decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailers(usize),
}

/// How far the body of the current request has been read.
#[derive(Debug, Default)]
pub(crate) struct BodyState {
    framing: Option<Framing>,
    /// `Length`: bytes left to read.
    remaining: u64,
    chunk: Option<Chunk>,
    /// Bytes of body delivered so far.
    delivered: u64,
    max_bytes: u64,
    deadline: Option<Instant>,
    continue_pending: bool,
    failed: bool,
}

impl BodyState {
    /// Starts the body of a new request.
    pub(crate) fn start(
        framing: Option<Framing>,
        expects_continue: bool,
        max_bytes: u64,
        timeout: Duration,
    ) -> Self {
        Self {
            framing,
            remaining: match framing {
                Some(Framing::Length(length)) => length,
                _ => 0,
            },
            chunk: (framing == Some(Framing::Chunked)).then_some(Chunk::Size),
            delivered: 0,
            max_bytes,
            deadline: framing.map(|_| Instant::now() + timeout),
            continue_pending: expects_continue,
            failed: false,
        }
    }

    fn is_complete(&self) -> bool {
        match self.framing {
            None => true,
            Some(Framing::Length(_)) => self.remaining == 0,
            Some(Framing::Chunked) => self.chunk.is_none(),
        }
    }
}

/// The body of one request: reads from what is buffered, then the socket.
#[derive(Debug)]
pub(crate) struct Body<'c> {
    pub(crate) transport: &'c mut Transport,
    pub(crate) buffer: &'c mut ReadBuffer,
    pub(crate) output: &'c mut Vec<u8>,
    pub(crate) state: &'c mut BodyState,
}

impl Body<'_> {
    /// Reads body bytes into `out`; `Ok(0)` at the end of the body.
    pub(crate) fn read(&mut self, out: &mut [u8]) -> Result<usize, BodyError> {
        if self.state.failed {
            return Err(BodyError::Incomplete);
        }
        let result = self.read_inner(out);
        if result.is_err() {
            self.state.failed = true;
        }
        result
    }

    fn read_inner(&mut self, out: &mut [u8]) -> Result<usize, BodyError> {
        if self.state.is_complete() || out.is_empty() {
            return Ok(0);
        }
        if self.state.continue_pending {
            self.send_continue()?;
        }
        match self.state.framing {
            Some(Framing::Length(_)) => {
                self.ensure_buffered()?;
                let count = self.take(out, self.state.remaining);
                self.state.remaining -= count as u64;
                Ok(count)
            }
            Some(Framing::Chunked) => self.read_chunked(out),
            None => Ok(0),
        }
    }

    fn read_chunked(&mut self, out: &mut [u8]) -> Result<usize, BodyError> {
        loop {
            match self.state.chunk {
                None => return Ok(0),
                Some(Chunk::Size) => {
                    let line = self.take_line()?;
                    let size = parse_chunk_size(&line)?;
                    if self.state.delivered.saturating_add(size) > self.state.max_bytes {
                        return Err(BodyError::TooLarge);
                    }
                    self.state.chunk = Some(if size == 0 {
                        Chunk::Trailers(0)
                    } else {
                        Chunk::Data(size)
                    });
                }
                Some(Chunk::Data(left)) => {
                    self.ensure_buffered()?;
                    let count = self.take(out, left);
                    let left = left - count as u64;
                    self.state.chunk = Some(if left == 0 {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(left)
                    });
                    return Ok(count);
                }
                Some(Chunk::DataEnd) => {
                    if !self.take_line()?.is_empty() {
                        return Err(BodyError::BadChunk);
                    }
                    self.state.chunk = Some(Chunk::Size);
                }
                Some(Chunk::Trailers(seen)) => {
                    let line = self.take_line()?;
                    let seen = seen + line.len() + 2;
                    if seen > MAX_TRAILER_BYTES {
                        return Err(BodyError::BadChunk);
                    }
                    self.state.chunk = if line.is_empty() {
                        None
                    } else {
                        Some(Chunk::Trailers(seen))
                    };
                }
            }
        }
    }

    /// Copies up to `limit` buffered bytes into `out` and consumes them.
    fn take(&mut self, out: &mut [u8], limit: u64) -> usize {
        let data = self.buffer.data();
        let count = out
            .len()
            .min(data.len())
            .min(usize::try_from(limit).unwrap_or(usize::MAX));
        out[..count].copy_from_slice(&data[..count]);
        self.buffer.consume(count);
        self.state.delivered += count as u64;
        count
    }

    /// Takes one CRLF-terminated line, without its CRLF.
    fn take_line(&mut self) -> Result<Vec<u8>, BodyError> {
        loop {
            let data = self.buffer.data();
            if let Some(at) = data.iter().position(|&byte| byte == b'\n') {
                if at == 0 || data[at - 1] != b'\r' || at - 1 > MAX_CHUNK_LINE {
                    return Err(BodyError::BadChunk);
                }
                let line = data[..at - 1].to_vec();
                self.buffer.consume(at + 1);
                return Ok(line);
            }
            if data.len() >= MAX_CHUNK_LINE {
                return Err(BodyError::BadChunk);
            }
            self.fill()?;
        }
    }

    fn ensure_buffered(&mut self) -> Result<(), BodyError> {
        if self.buffer.is_empty() {
            self.fill()
        } else {
            Ok(())
        }
    }

    fn fill(&mut self) -> Result<(), BodyError> {
        let deadline = self.state.deadline.unwrap_or_else(Instant::now);
        match self.buffer.fill_until(self.transport, deadline) {
            Ok(0) => Err(BodyError::Incomplete),
            Ok(_) => Ok(()),
            Err(error) if error.kind() == io::ErrorKind::TimedOut => Err(BodyError::TimedOut),
            Err(error) => Err(BodyError::Io(error)),
        }
    }

    /// Sends `100 Continue` after any responses queued before it, so
    /// pipelined answers stay in order.
    fn send_continue(&mut self) -> Result<(), BodyError> {
        self.state.continue_pending = false;
        self.output
            .extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        let deadline = self.state.deadline.unwrap_or_else(Instant::now);
        let result = self.transport.write_all_until(self.output, deadline);
        self.output.clear();
        result.map_err(|error| match error.kind() {
            io::ErrorKind::TimedOut => BodyError::TimedOut,
            _ => BodyError::Io(error),
        })
    }

    /// Reads and discards what the handler left unread, within bounds.
    /// Returns whether the connection can carry another request.
    pub(crate) fn drain(&mut self) -> bool {
        if self.state.failed {
            return false;
        }
        if self.state.is_complete() {
            return true;
        }
        // The client waits for 100 Continue before sending; it may or may
        // not send the body after its own timeout, so the next bytes cannot
        // be trusted to be a request.
        if self.state.continue_pending {
            return false;
        }
        if self.state.framing != Some(Framing::Chunked) && self.state.remaining > MAX_DRAIN_BYTES {
            return false;
        }
        let limit = Instant::now() + MAX_DRAIN_WAIT;
        self.state.deadline = Some(
            self.state
                .deadline
                .map_or(limit, |deadline| deadline.min(limit)),
        );
        let mut scratch = [0u8; 8 * 1024];
        let mut drained = 0u64;
        while drained <= MAX_DRAIN_BYTES {
            match self.read(&mut scratch) {
                Ok(0) => return true,
                Ok(count) => drained += count as u64,
                Err(_) => return false,
            }
        }
        false
    }
}

/// A chunk-size line: hex digits, optionally followed by `;extensions`.
fn parse_chunk_size(line: &[u8]) -> Result<u64, BodyError> {
    let digits = line.split(|&byte| byte == b';').next().unwrap_or_default();
    if digits.is_empty() || digits.len() > 16 {
        return Err(BodyError::BadChunk);
    }
    digits.iter().try_fold(0u64, |size, &byte| {
        let digit = (byte as char).to_digit(16).ok_or(BodyError::BadChunk)?;
        Ok(size << 4 | u64::from(digit))
    })
}

#[cfg(test)]
mod tests {
    use super::parse_chunk_size;

    #[test]
    fn chunk_sizes() {
        assert_eq!(parse_chunk_size(b"1a").ok(), Some(26));
        assert_eq!(parse_chunk_size(b"0;name=value").ok(), Some(0));
        for bad in [&b""[..], b"zz", b" 1", b"-1", b"1 ", b"11111111111111111"] {
            assert!(parse_chunk_size(bad).is_err(), "{bad:?}");
        }
    }
}
