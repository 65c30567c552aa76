//! One client connection as the engine sees it: buffers, the head being
//! read, the body of the current request, responses waiting to be written.

use std::io;
use std::net::TcpStream;
use std::time::Instant;

use super::body::{Body, BodyState};
use super::buffer::ReadBuffer;
use super::head::{self, Head, HeadError, Parsed, Version};
use super::limits::Limits;
use super::request::Request;
use super::response::{ConnectionHeader, Response};
use super::transport::Transport;

/// What [`Connection::poll_head`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadStatus {
    /// A complete head was parsed; [`Connection::request`] gives it.
    Ready,
    /// Not enough bytes yet: park the connection until more arrive.
    Incomplete,
    /// The client closed the connection, or it failed.
    Closed,
}

/// Whether the server wants a connection kept open after a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepAlive {
    /// Keep it open if the client wants to.
    Yes,
    /// Close it after this response.
    No,
    /// Keep it open only for requests the client already sent (pipelined
    /// bytes already received); close after the last of them.
    IfPipelined,
}

/// Memory a connection needs only while a worker serves it. Workers lend
/// theirs to connections that hold none, so an idle connection costs no
/// buffer at all.
#[derive(Debug, Default)]
pub struct Buffers {
    read: ReadBuffer,
    write: Vec<u8>,
    head: Head,
}

impl Buffers {
    fn is_idle(&self) -> bool {
        self.read.is_empty() && self.write.is_empty()
    }
}

/// One client connection.
#[derive(Debug)]
pub struct Connection {
    transport: Transport,
    buffers: Buffers,
    body: BodyState,
    served: u32,
    /// When the first byte of the head being read arrived.
    head_started: Option<Instant>,
}

impl Connection {
    /// Wraps an accepted stream, which must be in non-blocking mode.
    pub fn new(stream: TcpStream) -> Self {
        Self {
            transport: Transport::new(stream),
            buffers: Buffers::default(),
            body: BodyState::default(),
            served: 0,
            head_started: None,
        }
    }

    /// The socket, for registering with a poller.
    pub fn stream(&self) -> &TcpStream {
        self.transport.stream()
    }

    /// How many responses have been queued on this connection.
    pub fn served(&self) -> u32 {
        self.served
    }

    /// When the first byte of a head still incomplete arrived, if any.
    pub fn head_started(&self) -> Option<Instant> {
        self.head_started
    }

    /// Swaps buffers with `spare` when this connection holds no data in
    /// its own: call with a worker's spare buffers when a turn starts and
    /// again when it ends.
    pub fn exchange_buffers(&mut self, spare: &mut Buffers) {
        if self.buffers.is_idle() {
            std::mem::swap(&mut self.buffers, spare);
        }
    }

    /// Parses a head from what is buffered, reading what the socket has
    /// now if that is not enough. Never waits.
    pub fn poll_head(&mut self, limits: &Limits) -> Result<HeadStatus, HeadError> {
        loop {
            if !self.buffers.read.is_empty() {
                match head::parse(self.buffers.read.data(), limits, &mut self.buffers.head)? {
                    Parsed::Complete(len) => {
                        self.buffers.read.consume(len);
                        self.head_started = None;
                        let head = &self.buffers.head;
                        self.body = BodyState::start(
                            head.framing,
                            head.expects_continue,
                            limits.max_body_bytes,
                            limits.body_timeout,
                        );
                        return Ok(HeadStatus::Ready);
                    }
                    Parsed::Partial => {
                        self.head_started.get_or_insert_with(Instant::now);
                    }
                }
            }
            match self
                .buffers
                .read
                .fill_now(&mut self.transport, limits.max_head_bytes)
            {
                Ok(Some(0)) => return Ok(HeadStatus::Closed),
                Ok(Some(_)) => {}
                Ok(None) => return Err(HeadError::TooLarge),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(HeadStatus::Incomplete);
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Ok(HeadStatus::Closed),
            }
        }
    }

    /// Whether bytes of a next request are already buffered.
    pub fn has_buffered_input(&self) -> bool {
        !self.buffers.read.is_empty()
    }

    /// The request whose head [`poll_head`](Self::poll_head) just parsed.
    pub fn request(&mut self) -> Request<'_> {
        Request {
            head: &self.buffers.head,
            body: Body {
                transport: &mut self.transport,
                buffer: &mut self.buffers.read,
                output: &mut self.buffers.write,
                state: &mut self.body,
            },
        }
    }

    /// Method of the request being served.
    pub fn method(&self) -> &str {
        self.buffers.head.method()
    }

    /// Path of the request being served.
    pub fn path(&self) -> &str {
        self.buffers.head.path()
    }

    /// Queues the response to the request being served. The connection is
    /// kept open only if `keep_alive` allows it, the client wants it, and
    /// any body the handler left unread could be drained. Returns whether
    /// it is kept open; if not, the response carries `Connection: close`.
    pub fn respond(&mut self, response: &Response, keep_alive: KeepAlive) -> bool {
        let mut request = self.request();
        let reusable = keep_alive != KeepAlive::No
            && request.head.client_keep_alive
            && request.body.drain()
            && (keep_alive == KeepAlive::Yes || !self.buffers.read.is_empty());
        let head_only = self.buffers.head.method() == "HEAD";
        let connection = match (reusable, self.buffers.head.version) {
            (false, _) => ConnectionHeader::Close,
            (true, Some(Version::Http10)) => ConnectionHeader::KeepAlive,
            (true, _) => ConnectionHeader::None,
        };
        response.write_to(&mut self.buffers.write, connection, head_only);
        self.served += 1;
        reusable
    }

    /// Queues a response with `Connection: close`, for a request that could
    /// not be parsed or will not be served.
    pub fn respond_and_close(&mut self, response: &Response) {
        response.write_to(&mut self.buffers.write, ConnectionHeader::Close, false);
        self.served += 1;
    }

    /// Bytes of responses queued and not written yet.
    pub fn pending_output(&self) -> usize {
        self.buffers.write.len()
    }

    /// Writes every queued response, waiting at most `write_timeout`.
    pub fn flush(&mut self, limits: &Limits) -> io::Result<()> {
        if self.buffers.write.is_empty() {
            return Ok(());
        }
        let deadline = Instant::now() + limits.write_timeout;
        let result = self
            .transport
            .write_all_until(&self.buffers.write, deadline);
        self.buffers.write.clear();
        result
    }

    /// Writes what the socket takes now of the queued responses, never
    /// waiting, and drops the rest: for short final answers from threads
    /// that must not block.
    pub fn flush_now(&mut self) {
        let _ = self.transport.write_now(&self.buffers.write);
        self.buffers.write.clear();
    }

    /// Makes the connection ready to be parked on a poller.
    pub fn prepare_to_park(&mut self) -> io::Result<()> {
        self.transport.make_nonblocking()
    }

    /// Reads and throws away what the client sends, while the connection
    /// lingers after a final response. Returns `Ok(true)` at end of stream.
    pub fn discard_input(&mut self) -> io::Result<bool> {
        let mut scratch = [0u8; 4 * 1024];
        loop {
            match self.transport.read_now(&mut scratch) {
                Ok(0) => return Ok(true),
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
    }

    /// Whether the client has sent bytes not read yet (buffered here or in
    /// the socket), without waiting and without consuming them.
    pub fn has_input_waiting(&self) -> bool {
        let mut byte = [0u8; 1];
        self.has_buffered_input() || matches!(self.transport.stream().peek(&mut byte), Ok(1))
    }

    /// Sends FIN after the last response, so the client reads it before
    /// the connection is closed.
    pub fn shutdown_write(&self) {
        let _ = self.transport.stream().shutdown(std::net::Shutdown::Write);
    }
}
