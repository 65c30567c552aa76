//! The per-connection read buffer: bytes received but not yet consumed.

use std::io::{self, Read};
use std::net::TcpStream;

/// Size a read buffer starts at when it is first used.
const INITIAL_CAPACITY: usize = 4 * 1024;

/// Received bytes in `bytes[start..end]`.
#[derive(Debug, Default)]
pub(crate) struct ReadBuffer {
    bytes: Vec<u8>,
    start: usize,
    end: usize,
}

/// What one read from the socket gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fill {
    /// This many bytes; `drained` when the socket had no more (a short
    /// read on a stream socket: what the kernel held is all here).
    Read { count: usize, drained: bool },
    /// Nothing there now.
    WouldBlock,
    /// The buffer already holds its most; nothing was read.
    Full,
    /// The client closed its side (or the connection failed).
    Closed,
}

impl ReadBuffer {
    /// The bytes received and not consumed yet.
    pub(crate) fn data(&self) -> &[u8] {
        &self.bytes[self.start..self.end]
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Bytes of memory the buffer holds.
    pub(crate) fn capacity(&self) -> usize {
        self.bytes.len()
    }

    /// Marks `count` bytes as consumed.
    pub(crate) fn consume(&mut self, count: usize) {
        self.start = (self.start + count).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Makes room for more bytes (compacting, then doubling up to
    /// `max_len`), returning the free space, or `None` when `max_len`
    /// bytes are already held.
    fn spare(&mut self, max_len: usize) -> Option<&mut [u8]> {
        if self.end == self.bytes.len() {
            if self.start > 0 {
                self.bytes.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else if self.bytes.len() < max_len {
                let grown =
                    (self.bytes.len() * 2).clamp(INITIAL_CAPACITY, max_len.max(INITIAL_CAPACITY));
                self.bytes.resize(grown, 0);
            } else {
                return None;
            }
        }
        Some(&mut self.bytes[self.end..])
    }

    /// Appends bytes as if they had been read from a socket (for requests
    /// built from bytes, and tests of the decoders).
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.bytes.truncate(self.end);
        self.bytes.extend_from_slice(bytes);
        self.end = self.bytes.len();
    }

    /// Reads what the (non-blocking) socket has now, holding at most
    /// `max_len` bytes. Never waits.
    pub(crate) fn fill_from(&mut self, mut stream: &TcpStream, max_len: usize) -> Fill {
        let Some(spare) = self.spare(max_len) else {
            return Fill::Full;
        };
        let room = spare.len();
        loop {
            return match stream.read(spare) {
                Ok(0) => Fill::Closed,
                Ok(count) => {
                    self.end += count;
                    Fill::Read {
                        count,
                        drained: count < room,
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => Fill::WouldBlock,
                Err(_) => Fill::Closed,
            };
        }
    }
}
