//! The per-connection read buffer: bytes received but not yet consumed.

use std::io;

use super::transport::Transport;

/// Size a read buffer starts at when it is first used.
const INITIAL_CAPACITY: usize = 4 * 1024;

/// Received bytes in `bytes[start..end]`.
#[derive(Debug, Default)]
pub(crate) struct ReadBuffer {
    bytes: Vec<u8>,
    start: usize,
    end: usize,
}

impl ReadBuffer {
    /// The bytes received and not consumed yet.
    pub(crate) fn data(&self) -> &[u8] {
        &self.bytes[self.start..self.end]
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.start == self.end
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

    /// Reads what the socket has now. `Ok(None)` when the buffer already
    /// holds `max_len` bytes; `Ok(Some(0))` at end of stream.
    pub(crate) fn fill_now(
        &mut self,
        transport: &mut Transport,
        max_len: usize,
    ) -> io::Result<Option<usize>> {
        let Some(spare) = self.spare(max_len) else {
            return Ok(None);
        };
        let read = transport.read_now(spare)?;
        self.end += read;
        Ok(Some(read))
    }

    /// Reads at least one byte, waiting until `deadline`; `Ok(0)` at end of
    /// stream.
    pub(crate) fn fill_until(
        &mut self,
        transport: &mut Transport,
        deadline: std::time::Instant,
    ) -> io::Result<usize> {
        let spare = self
            .spare(INITIAL_CAPACITY)
            .ok_or(io::ErrorKind::OutOfMemory)?;
        let read = transport.read_until(spare, deadline)?;
        self.end += read;
        Ok(read)
    }
}
