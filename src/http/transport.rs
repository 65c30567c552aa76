//! A TCP stream read and written without blocking when it can be, and with
//! a deadline when it must wait.
//!
//! Connections live in non-blocking mode so a worker never waits on a slow
//! client's head. Reading a body or writing a large response may have to
//! wait; only then is the socket switched to blocking mode with a timeout,
//! and it is switched back before the connection is parked.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// The socket plus the mode it is in.
#[derive(Debug)]
pub(crate) struct Transport {
    stream: TcpStream,
    blocking: bool,
}

impl Transport {
    /// Wraps a stream that is already non-blocking.
    pub(crate) fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            blocking: false,
        }
    }

    pub(crate) fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Reads what is there now; `WouldBlock` when nothing is.
    pub(crate) fn read_now(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.set_blocking(false)?;
        (&self.stream).read(buf)
    }

    /// Reads at least one byte, waiting until `deadline` at the latest
    /// (`TimedOut` then).
    pub(crate) fn read_until(&mut self, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
        match self.read_now(buf) {
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            other => return other,
        }
        let timeout = remaining(deadline)?;
        self.set_blocking(true)?;
        self.stream.set_read_timeout(Some(timeout))?;
        (&self.stream).read(buf).map_err(timed_out)
    }

    /// Writes all of `data`, waiting until `deadline` at the latest.
    pub(crate) fn write_all_until(&mut self, mut data: &[u8], deadline: Instant) -> io::Result<()> {
        while !data.is_empty() {
            let written = match (&self.stream).write(data) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => written,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock && !self.blocking => {
                    self.set_blocking(true)?;
                    self.stream.set_write_timeout(Some(remaining(deadline)?))?;
                    continue;
                }
                Err(error) => return Err(timed_out(error)),
            };
            data = &data[written..];
            if self.blocking && !data.is_empty() {
                self.stream.set_write_timeout(Some(remaining(deadline)?))?;
            }
        }
        Ok(())
    }

    /// Writes what the socket takes now, never waiting.
    pub(crate) fn write_now(&mut self, data: &[u8]) -> io::Result<usize> {
        self.set_blocking(false)?;
        (&self.stream).write(data)
    }

    /// Puts the socket back in non-blocking mode, as the poller needs it.
    pub(crate) fn make_nonblocking(&mut self) -> io::Result<()> {
        self.set_blocking(false)
    }

    fn set_blocking(&mut self, blocking: bool) -> io::Result<()> {
        if self.blocking != blocking {
            self.stream.set_nonblocking(!blocking)?;
            self.blocking = blocking;
        }
        Ok(())
    }
}

/// Time left before `deadline`, or `TimedOut` if none is.
fn remaining(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(io::ErrorKind::TimedOut.into())
    } else {
        Ok(left)
    }
}

/// A socket timeout surfaces as `WouldBlock` on Unix; call it what it is.
fn timed_out(error: io::Error) -> io::Error {
    if error.kind() == io::ErrorKind::WouldBlock {
        io::ErrorKind::TimedOut.into()
    } else {
        error
    }
}
