//! Request body framing: `Content-Length` and chunked decoding, done as
//! bytes arrive (never waiting), bounded in size.
//!
//! The decoder takes what the read buffer holds and appends the decoded
//! body to the request's body buffer. It stops where its input ends, and
//! where the body buffer reaches the size the caller may hold (the
//! server's memory budget), so a body is only read as fast as there is
//! room for it.

use super::buffer::ReadBuffer;
use super::head::Framing;
use super::wire_error::WireError;

/// Longest chunk-size line or trailer line accepted.
const MAX_CHUNK_LINE: usize = 1024;
/// Most trailer bytes accepted after the last chunk.
const MAX_TRAILER_BYTES: usize = 8 * 1024;

/// Why a request body could not be read. After any of these the engine
/// answers with its [`wire_error`](Self::wire_error) and closes the
/// connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BodyError {
    /// The body is larger than `max_body_bytes`.
    TooLarge,
    /// The chunked framing is invalid.
    BadChunk,
    /// The client closed the connection before the end of the body.
    Incomplete,
    /// The body arrived too slowly or not within `body_timeout`.
    TimedOut,
}

impl BodyError {
    /// The answer this error gets: its status, stable code and message.
    pub fn wire_error(self) -> WireError {
        match self {
            Self::TooLarge => WireError::BodyTooLarge,
            Self::BadChunk => WireError::BadChunk,
            Self::Incomplete => WireError::BodyIncomplete,
            Self::TimedOut => WireError::BodyTimedOut,
        }
    }
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.wire_error().message())
    }
}

impl std::error::Error for BodyError {}

/// Where the chunked decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailers(usize),
    Done,
}

/// How far decoding got with the input there was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decoded {
    /// The whole body is in the body buffer.
    Complete,
    /// The input ran out first.
    NeedInput,
    /// The body buffer reached `room`: more must be allowed first.
    NeedRoom,
}

/// Decodes one request body.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyDecoder {
    framing: Framing,
    /// `Length`: bytes left to read.
    remaining: u64,
    chunk: Chunk,
    max_bytes: u64,
}

impl BodyDecoder {
    pub(crate) fn new(framing: Framing, max_bytes: u64) -> Self {
        Self {
            framing,
            remaining: match framing {
                Framing::Length(length) => length,
                Framing::Chunked => 0,
            },
            chunk: Chunk::Size,
            max_bytes,
        }
    }

    /// Decodes what `input` holds into `body`, letting `body` grow to at
    /// most `room` bytes.
    pub(crate) fn advance(
        &mut self,
        input: &mut ReadBuffer,
        body: &mut Vec<u8>,
        room: u64,
    ) -> Result<Decoded, BodyError> {
        match self.framing {
            Framing::Length(_) => {
                if self.remaining == 0 {
                    return Ok(Decoded::Complete);
                }
                let allowed = room.saturating_sub(body.len() as u64);
                take(
                    input,
                    body,
                    self.remaining.min(allowed),
                    &mut self.remaining,
                );
                Ok(if self.remaining == 0 {
                    Decoded::Complete
                } else if body.len() as u64 >= room {
                    Decoded::NeedRoom
                } else {
                    Decoded::NeedInput
                })
            }
            Framing::Chunked => self.advance_chunked(input, body, room),
        }
    }

    fn advance_chunked(
        &mut self,
        input: &mut ReadBuffer,
        body: &mut Vec<u8>,
        room: u64,
    ) -> Result<Decoded, BodyError> {
        loop {
            match self.chunk {
                Chunk::Done => return Ok(Decoded::Complete),
                Chunk::Size => {
                    let Some(line) = take_line(input)? else {
                        return Ok(Decoded::NeedInput);
                    };
                    let size = parse_chunk_size(&line)?;
                    if (body.len() as u64).saturating_add(size) > self.max_bytes {
                        return Err(BodyError::TooLarge);
                    }
                    self.chunk = if size == 0 {
                        Chunk::Trailers(0)
                    } else {
                        Chunk::Data(size)
                    };
                }
                Chunk::Data(mut left) => {
                    let allowed = room.saturating_sub(body.len() as u64);
                    if allowed == 0 {
                        return Ok(Decoded::NeedRoom);
                    }
                    take(input, body, left.min(allowed), &mut left);
                    self.chunk = if left == 0 {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(left)
                    };
                    if left > 0 && input.is_empty() {
                        return Ok(Decoded::NeedInput);
                    }
                }
                Chunk::DataEnd => {
                    let Some(line) = take_line(input)? else {
                        return Ok(Decoded::NeedInput);
                    };
                    if !line.is_empty() {
                        return Err(BodyError::BadChunk);
                    }
                    self.chunk = Chunk::Size;
                }
                Chunk::Trailers(seen) => {
                    let Some(line) = take_line(input)? else {
                        return Ok(Decoded::NeedInput);
                    };
                    let seen = seen + line.len() + 2;
                    if seen > MAX_TRAILER_BYTES {
                        return Err(BodyError::BadChunk);
                    }
                    self.chunk = if line.is_empty() {
                        Chunk::Done
                    } else {
                        Chunk::Trailers(seen)
                    };
                }
            }
        }
    }

    /// How many more body bytes this body may still need buffered: all
    /// that is left of a `Content-Length`, or `step` for chunked (whose
    /// size is known only as it arrives).
    pub(crate) fn room_wanted(&self, buffered: u64, step: u64) -> u64 {
        match self.framing {
            Framing::Length(_) => self.remaining,
            Framing::Chunked => step.min(self.max_bytes.saturating_sub(buffered)).max(1),
        }
    }
}

/// Moves up to `limit` bytes of `input` to `body`, counting them off `left`.
fn take(input: &mut ReadBuffer, body: &mut Vec<u8>, limit: u64, left: &mut u64) {
    let data = input.data();
    let count = data.len().min(usize::try_from(limit).unwrap_or(usize::MAX));
    body.extend_from_slice(&data[..count]);
    input.consume(count);
    *left -= count as u64;
}

/// Takes one CRLF-terminated line, without its CRLF; `None` until the
/// whole line is buffered.
fn take_line(input: &mut ReadBuffer) -> Result<Option<Vec<u8>>, BodyError> {
    let data = input.data();
    match data.iter().position(|&byte| byte == b'\n') {
        Some(at) => {
            if at == 0 || data[at - 1] != b'\r' || at - 1 > MAX_CHUNK_LINE {
                return Err(BodyError::BadChunk);
            }
            let line = data[..at - 1].to_vec();
            input.consume(at + 1);
            Ok(Some(line))
        }
        None if data.len() > MAX_CHUNK_LINE => Err(BodyError::BadChunk),
        None => Ok(None),
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
    use super::*;
    use proptest::prelude::*;

    /// Feeds `wire` to a decoder in pieces of the given sizes, with
    /// unlimited room; returns the body, or the first error.
    fn decode_in_pieces(
        framing: Framing,
        wire: &[u8],
        pieces: &[usize],
    ) -> Result<(Vec<u8>, usize), BodyError> {
        let mut decoder = BodyDecoder::new(framing, 1 << 20);
        let mut input = ReadBuffer::default();
        let mut body = Vec::new();
        let mut fed = 0;
        let mut sizes = pieces.iter().copied().cycle();
        loop {
            match decoder.advance(&mut input, &mut body, u64::MAX)? {
                Decoded::Complete => return Ok((body, input.data().len() + wire.len() - fed)),
                Decoded::NeedRoom => unreachable!("room is unlimited"),
                Decoded::NeedInput if fed == wire.len() => return Err(BodyError::Incomplete),
                Decoded::NeedInput => {
                    let size = sizes.next().unwrap_or(1).clamp(1, wire.len() - fed);
                    input.push(&wire[fed..fed + size]);
                    fed += size;
                }
            }
        }
    }

    fn chunked(body: &[u8], chunk_sizes: &[usize]) -> Vec<u8> {
        let mut wire = Vec::new();
        let mut rest = body;
        let mut sizes = chunk_sizes.iter().copied().cycle();
        while !rest.is_empty() {
            let size = sizes.next().unwrap_or(1).clamp(1, rest.len());
            wire.extend_from_slice(format!("{size:x}\r\n").as_bytes());
            wire.extend_from_slice(&rest[..size]);
            wire.extend_from_slice(b"\r\n");
            rest = &rest[size..];
        }
        wire.extend_from_slice(b"0\r\nX-Trailer: t\r\n\r\n");
        wire
    }

    proptest! {
        #[test]
        fn chunked_bodies_decode_the_same_however_they_arrive(
            body in proptest::collection::vec(any::<u8>(), 0..3000),
            chunk_sizes in proptest::collection::vec(1usize..700, 1..8),
            pieces in proptest::collection::vec(1usize..300, 1..8),
        ) {
            let mut wire = chunked(&body, &chunk_sizes);
            wire.extend_from_slice(b"GET /next");
            let (decoded, left) = decode_in_pieces(Framing::Chunked, &wire, &pieces)
                .expect("valid chunked body");
            prop_assert_eq!(decoded, body);
            prop_assert_eq!(left, b"GET /next".len(), "bytes after the body stay unread");
        }

        #[test]
        fn length_bodies_take_exactly_their_length(
            body in proptest::collection::vec(any::<u8>(), 1..3000),
            pieces in proptest::collection::vec(1usize..300, 1..8),
        ) {
            let mut wire = body.clone();
            wire.extend_from_slice(b"NEXT");
            let framing = Framing::Length(body.len() as u64);
            let (decoded, left) = decode_in_pieces(framing, &wire, &pieces).expect("whole body");
            prop_assert_eq!(decoded, body);
            prop_assert_eq!(left, 4);
        }
    }

    #[test]
    fn a_body_grows_only_as_far_as_its_room() {
        let mut decoder = BodyDecoder::new(Framing::Chunked, 1 << 20);
        let mut input = ReadBuffer::default();
        input.push(b"a\r\n0123456789\r\n0\r\n\r\n");
        let mut body = Vec::new();
        assert_eq!(
            decoder.advance(&mut input, &mut body, 4),
            Ok(Decoded::NeedRoom)
        );
        assert_eq!(body, b"0123");
        assert_eq!(
            decoder.advance(&mut input, &mut body, 64),
            Ok(Decoded::Complete)
        );
        assert_eq!(body, b"0123456789");
    }

    #[test]
    fn chunked_bodies_over_the_limit_or_badly_framed_are_refused() {
        let refused = |wire: &[u8]| decode_in_pieces(Framing::Chunked, wire, &[5]).err();
        let mut decoder = BodyDecoder::new(Framing::Chunked, 8);
        let mut input = ReadBuffer::default();
        input.push(b"9\r\n");
        assert_eq!(
            decoder.advance(&mut input, &mut Vec::new(), u64::MAX),
            Err(BodyError::TooLarge)
        );
        assert_eq!(
            refused(b"3\r\nabcX\r\n0\r\n\r\n"),
            Some(BodyError::BadChunk)
        );
        assert_eq!(refused(b"3\nabc\r\n0\r\n\r\n"), Some(BodyError::BadChunk));
        assert_eq!(refused(&[b'1'; 2000]), Some(BodyError::BadChunk));
        assert_eq!(refused(b"3\r\nab"), Some(BodyError::Incomplete));
    }

    #[test]
    fn chunk_sizes() {
        assert_eq!(parse_chunk_size(b"1a").ok(), Some(26));
        assert_eq!(parse_chunk_size(b"0;name=value").ok(), Some(0));
        for bad in [&b""[..], b"zz", b" 1", b"-1", b"1 ", b"11111111111111111"] {
            assert!(parse_chunk_size(bad).is_err(), "{bad:?}");
        }
    }
}
