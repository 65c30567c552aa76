//! One client connection as the engine sees it: its buffers, how far the
//! next request has been read, and the responses waiting to be written.
//!
//! Every method returns at once: the socket is non-blocking, and waiting
//! for it is the server's business (its poller). Reading goes head first,
//! then the whole body into memory, so that a handler never waits on the
//! client; writing sends what the socket takes and keeps the rest.

use std::io::{self, Write};
use std::net::TcpStream;
use std::time::Instant;

use super::body::{BodyDecoder, BodyError, Decoded};
use super::buffer::{Fill, ReadBuffer};
use super::head::{self, Head, HeadError, Parsed, Version};
use super::limits::Limits;
use super::request::{Request, RequestError};
use super::response::{ConnectionHeader, Response};

/// The interim answer to `Expect: 100-continue`.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
/// Room asked for at a time for a chunked body, whose size is known only
/// as it arrives.
const CHUNKED_ROOM_STEP: u64 = 64 * 1024;
/// A buffer that grew past this is not kept for the next connection.
const MAX_KEPT_CAPACITY: usize = 64 * 1024;

/// What [`Connection::read`] got to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadStatus {
    /// A whole request (head and body) is in memory: serve it.
    Request,
    /// Waiting for the client: more bytes are needed.
    NeedInput,
    /// Waiting for the server: the body may not take more memory until
    /// the room callback allows it.
    NeedRoom,
    /// The client closed the connection between requests.
    Closed,
}

/// Whether the server wants a connection kept open after a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeepAlive {
    /// Keep it open if the client wants to.
    Yes,
    /// Close it after this response.
    No,
    /// Keep it open only for requests the client already sent (pipelined
    /// bytes already received); close after the last of them.
    IfPipelined,
}

/// What [`Connection::write`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Written {
    /// Everything queued is written.
    All,
    /// The socket took only part; the rest waits for it to drain.
    Partial,
}

/// Memory a connection needs only while a request is under way. Lent
/// from a pool, so an idle connection holds none. (Its read buffer is
/// lent apart, by the reader alone, for just as long as it holds bytes.)
#[derive(Debug, Default)]
pub(crate) struct Buffers {
    write: Vec<u8>,
    head: Head,
    body: Vec<u8>,
}

impl Buffers {
    /// Drops allocations a large request made, so a pooled buffer stays
    /// small.
    pub(crate) fn trim(&mut self) {
        if self.body.capacity() > MAX_KEPT_CAPACITY {
            self.body = Vec::new();
        }
        if self.write.capacity() > MAX_KEPT_CAPACITY {
            self.write = Vec::new();
        }
    }
}

/// How far the next request has been read.
#[derive(Debug, Clone, Copy)]
enum Stage {
    /// Nothing of it yet.
    Idle,
    /// Part of its head.
    Head,
    /// Its head; the body is being read.
    Body(BodyDecoder),
    /// All of it: waiting to be served.
    Ready,
}

/// One client connection.
#[derive(Debug)]
pub(crate) struct Connection {
    stream: TcpStream,
    read: ReadBuffer,
    buffers: Buffers,
    /// Whether `buffers` were lent (until they are taken back idle).
    lent: bool,
    stage: Stage,
    /// Bytes the body may hold, as allowed by the room callback.
    body_room: u64,
    continue_owed: bool,
    /// Bytes of `buffers.write` already sent.
    written: usize,
    /// Bytes sent on this connection in all.
    sent: u64,
    served: u32,
    /// When the first byte of the head being read arrived.
    head_started: Option<Instant>,
    /// The socket may hold bytes not read yet (set by readiness, cleared
    /// when a read finds the socket drained).
    may_read: bool,
    /// A response that closes the connection is queued: read no more.
    closing: bool,
    /// The client closed its side (readiness said so): reads go on until
    /// one returns the end, even after a short one, since no other
    /// readiness edge will come.
    peer_closed: bool,
}

impl Connection {
    /// Wraps an accepted stream, which must be in non-blocking mode.
    pub(crate) fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            read: ReadBuffer::default(),
            buffers: Buffers::default(),
            lent: false,
            stage: Stage::Idle,
            body_room: 0,
            continue_owed: false,
            written: 0,
            sent: 0,
            served: 0,
            head_started: None,
            // Registering an edge-triggered socket reports what is there.
            may_read: false,
            closing: false,
            peer_closed: false,
        }
    }

    /// The socket, for registering with a poller.
    pub(crate) fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// How many responses have been queued on this connection.
    pub(crate) fn served(&self) -> u32 {
        self.served
    }

    /// When the first byte of a head still incomplete arrived, if any.
    pub(crate) fn head_started(&self) -> Option<Instant> {
        self.head_started
    }

    /// Tells the connection its socket became readable.
    pub(crate) fn note_readable(&mut self, peer_closed: bool) {
        self.may_read = true;
        self.peer_closed |= peer_closed;
    }

    /// Whether the socket may hold bytes not read yet.
    pub(crate) fn may_read(&self) -> bool {
        self.may_read
    }

    /// Whether a request's head has been read and its response is not
    /// queued yet: a request in flight.
    pub(crate) fn has_request(&self) -> bool {
        matches!(self.stage, Stage::Body(_) | Stage::Ready)
    }

    /// Whether the request being read is in its body.
    pub(crate) fn reading_body(&self) -> bool {
        matches!(self.stage, Stage::Body(_))
    }

    /// Bytes of the body read so far.
    pub(crate) fn body_received(&self) -> u64 {
        self.buffers.body.len() as u64
    }

    /// Whether a response that closes the connection has been queued.
    pub(crate) fn is_closing(&self) -> bool {
        self.closing
    }

    /// Whether bytes of a next request are already buffered.
    pub(crate) fn has_buffered_input(&self) -> bool {
        !self.read.is_empty()
    }

    /// Takes the connection's buffers when it holds nothing in them (to
    /// give them back to a pool).
    pub(crate) fn take_buffers(&mut self) -> Option<Buffers> {
        let idle = self.lent
            && matches!(self.stage, Stage::Idle)
            && self.read.is_empty()
            && self.buffers.write.is_empty();
        idle.then(|| {
            self.lent = false;
            std::mem::take(&mut self.buffers)
        })
    }

    /// Gives a connection that holds no buffers a set of (empty) ones.
    pub(crate) fn lend_buffers(&mut self, take: impl FnOnce() -> Buffers) {
        if !self.lent {
            let mut lent = take();
            // Output already queued (a refusal) stays, at the same offsets.
            lent.write.append(&mut self.buffers.write);
            self.buffers = lent;
            self.lent = true;
        }
    }

    /// Gives the connection a read buffer if it has none, before a read.
    pub(crate) fn lend_read_buffer(&mut self, take: impl FnOnce() -> ReadBuffer) {
        if self.read.capacity() == 0 {
            self.read = take();
        }
    }

    /// Takes the read buffer back when it holds no bytes: a connection
    /// whose request is whole needs none while it is served.
    pub(crate) fn take_empty_read_buffer(&mut self) -> Option<ReadBuffer> {
        (self.read.is_empty() && self.read.capacity() > 0).then(|| std::mem::take(&mut self.read))
    }

    /// Reads the next request as far as the bytes there are allow,
    /// without waiting: the head (checked against `limits`), then the
    /// whole body. Reads the socket only when `read_socket` is set and it
    /// may have bytes. Before a body takes memory, `room(bytes)` is asked
    /// for it (and must say yes); `100 Continue` is queued once the head
    /// passed its checks and the body has room.
    pub(crate) fn read(
        &mut self,
        limits: &Limits,
        read_socket: bool,
        room: &mut dyn FnMut(u64) -> bool,
    ) -> Result<ReadStatus, RequestError> {
        if self.closing {
            return Ok(ReadStatus::NeedInput);
        }
        loop {
            match self.stage {
                Stage::Ready => return Ok(ReadStatus::Request),
                Stage::Idle | Stage::Head => {
                    if !self.read.is_empty() {
                        self.parse_head(limits).map_err(RequestError::Head)?;
                        if matches!(self.stage, Stage::Body(_) | Stage::Ready) {
                            continue;
                        }
                    }
                }
                Stage::Body(mut decoder) => {
                    if self.body_received() >= self.body_room {
                        let wanted = decoder.room_wanted(self.body_received(), CHUNKED_ROOM_STEP);
                        if !room(wanted) {
                            return Ok(ReadStatus::NeedRoom);
                        }
                        self.body_room += wanted;
                    }
                    if self.continue_owed {
                        self.continue_owed = false;
                        self.buffers.write.extend_from_slice(CONTINUE);
                    }
                    let decoded = decoder
                        .advance(&mut self.read, &mut self.buffers.body, self.body_room)
                        .map_err(RequestError::Body)?;
                    self.stage = match decoded {
                        Decoded::Complete => Stage::Ready,
                        Decoded::NeedInput | Decoded::NeedRoom => Stage::Body(decoder),
                    };
                    if decoded != Decoded::NeedInput {
                        continue;
                    }
                }
            }
            if !read_socket || !self.may_read {
                return Ok(ReadStatus::NeedInput);
            }
            match self.read.fill_from(&self.stream, limits.max_head_bytes) {
                Fill::Read { drained, .. } => self.may_read = !drained || self.peer_closed,
                Fill::WouldBlock => {
                    self.may_read = false;
                    return Ok(ReadStatus::NeedInput);
                }
                // Unread bytes stay in the socket (`may_read` stays set).
                Fill::Full => return Ok(ReadStatus::NeedInput),
                Fill::Closed => {
                    self.may_read = false;
                    return match self.stage {
                        Stage::Body(_) => Err(RequestError::Body(BodyError::Incomplete)),
                        _ => Ok(ReadStatus::Closed),
                    };
                }
            }
        }
    }

    fn parse_head(&mut self, limits: &Limits) -> Result<(), HeadError> {
        let buffers = &mut self.buffers;
        match head::parse(self.read.data(), limits, &mut buffers.head)? {
            Parsed::Complete(len) => {
                self.read.consume(len);
                buffers.body.clear();
                self.head_started = None;
                self.body_room = 0;
                self.stage = match buffers.head.framing {
                    Some(framing) => {
                        self.continue_owed = buffers.head.expects_continue;
                        Stage::Body(BodyDecoder::new(framing, limits.max_body_bytes))
                    }
                    None => Stage::Ready,
                };
            }
            Parsed::Partial => {
                self.head_started.get_or_insert_with(Instant::now);
                self.stage = Stage::Head;
            }
        }
        Ok(())
    }

    /// The request [`read`](Self::read) completed.
    pub(crate) fn request(&self) -> Request<'_> {
        Request::new(&self.buffers.head, &self.buffers.body)
    }

    /// Method of the request being served.
    pub(crate) fn method(&self) -> &str {
        self.buffers.head.method()
    }

    /// Path of the request being served.
    pub(crate) fn path(&self) -> &str {
        self.buffers.head.path()
    }

    /// Queues the response to the request read. The connection is kept
    /// open only if `keep_alive` allows it and the client wants it.
    /// Returns whether it is kept open; if not, the response carries
    /// `Connection: close` and nothing more is read.
    pub(crate) fn respond(&mut self, response: &Response, keep_alive: KeepAlive) -> bool {
        // Pipelined bytes may be buffered here or still in the socket (a
        // peek, only when it matters: while draining).
        let reusable = keep_alive != KeepAlive::No
            && self.buffers.head.client_keep_alive
            && (keep_alive == KeepAlive::Yes || self.has_input_waiting());
        let head = &self.buffers.head;
        let connection = match (reusable, head.version) {
            (false, _) => ConnectionHeader::Close,
            (true, Some(Version::Http10)) => ConnectionHeader::KeepAlive,
            (true, _) => ConnectionHeader::None,
        };
        response.write_to(&mut self.buffers.write, connection, head.is_head_request());
        self.finish_request(!reusable);
        reusable
    }

    /// Queues a response with `Connection: close`, for a request that could
    /// not be read or will not be served.
    pub(crate) fn respond_and_close(&mut self, response: &Response) {
        let head_only = self.buffers.head.is_head_request();
        response.write_to(&mut self.buffers.write, ConnectionHeader::Close, head_only);
        self.finish_request(true);
    }

    fn finish_request(&mut self, close: bool) {
        self.served += 1;
        self.stage = Stage::Idle;
        self.continue_owed = false;
        self.body_room = 0;
        self.buffers.body.clear();
        self.closing |= close;
    }

    /// Appends bytes as if they had been read from the socket.
    #[cfg(any(test, feature = "internals"))]
    pub(crate) fn push_input(&mut self, bytes: &[u8]) {
        self.read.push(bytes);
    }

    /// The responses queued and not written yet.
    #[cfg(any(test, feature = "internals"))]
    pub(crate) fn queued_output(&self) -> &[u8] {
        &self.buffers.write[self.written..]
    }

    /// Bytes of responses queued and not written yet.
    pub(crate) fn pending_output(&self) -> usize {
        self.buffers.write.len() - self.written
    }

    /// Bytes of memory the responses not written yet take (their buffer's
    /// capacity, which is what they cost).
    pub(crate) fn output_memory(&self) -> usize {
        if self.pending_output() == 0 {
            0
        } else {
            self.buffers.write.capacity()
        }
    }

    /// Bytes sent on this connection so far.
    pub(crate) fn bytes_sent(&self) -> u64 {
        self.sent
    }

    /// Writes what the socket takes of the queued responses, never
    /// waiting.
    pub(crate) fn write(&mut self) -> io::Result<Written> {
        while self.written < self.buffers.write.len() {
            match (&self.stream).write(&self.buffers.write[self.written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(count) => {
                    self.written += count;
                    self.sent += count as u64;
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(Written::Partial);
                }
                Err(error) => return Err(error),
            }
        }
        self.buffers.write.clear();
        self.written = 0;
        Ok(Written::All)
    }

    /// Reads and throws away what the client sends, while the connection
    /// lingers after a final response. Returns `Ok(true)` at end of stream.
    pub(crate) fn discard_input(&mut self) -> io::Result<bool> {
        let mut scratch = [0u8; 4 * 1024];
        loop {
            match io::Read::read(&mut &self.stream, &mut scratch) {
                Ok(0) => return Ok(true),
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    self.may_read = false;
                    return Ok(false);
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
    }

    /// Whether the client has sent bytes not read yet (buffered here or in
    /// the socket), without waiting and without consuming them.
    pub(crate) fn has_input_waiting(&self) -> bool {
        let mut byte = [0u8; 1];
        self.has_buffered_input() || matches!(self.stream.peek(&mut byte), Ok(1))
    }

    /// Bytes of responses the kernel still holds for this connection (sent
    /// but not yet acknowledged by the client, or not sent yet), where the
    /// system can tell.
    pub(crate) fn unacknowledged_output(&self) -> Option<u32> {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let mut queued: libc::c_int = 0;
            // SAFETY: the descriptor is this connection's open socket, and
            // TIOCOUTQ (SIOCOUTQ) writes one c_int through the pointer,
            // which points to a local of that type.
            #[allow(unsafe_code)]
            let done = unsafe { libc::ioctl(self.stream.as_raw_fd(), libc::TIOCOUTQ, &mut queued) };
            (done == 0).then(|| u32::try_from(queued).unwrap_or(0))
        }
        #[cfg(not(target_os = "linux"))]
        None
    }

    /// Makes closing the connection reset it (RST) instead of sending what
    /// the kernel still holds of it: for a connection given up on, so its
    /// memory is freed at once.
    pub(crate) fn reset_on_close(&self) {
        let _ = socket2::SockRef::from(&self.stream).set_linger(Some(std::time::Duration::ZERO));
    }

    /// Sends FIN after the last response, so the client reads it before
    /// the connection is closed.
    pub(crate) fn shutdown_write(&self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use crate::http::drive::{cut_at, serve_in_pieces};

    /// One request: method, target, body, and whether the body is sent
    /// chunked (in pieces of these sizes) or with `Content-Length`.
    fn request() -> impl Strategy<Value = (String, String, Vec<u8>, Option<Vec<usize>>)> {
        (
            prop::sample::select(vec!["GET", "POST", "PUT", "DELETE"]),
            "/[a-z0-9/]{0,20}(\\?[a-z0-9=&]{1,12})?",
            prop::collection::vec(any::<u8>(), 0..300),
            prop::option::of(prop::collection::vec(1usize..100, 1..5)),
        )
            .prop_map(|(method, target, body, chunks)| (method.to_owned(), target, body, chunks))
    }

    /// The request as a client writes it.
    fn serialize(method: &str, target: &str, body: &[u8], chunks: Option<&[usize]>) -> Vec<u8> {
        let mut wire = format!("{method} {target} HTTP/1.1\r\nHost: t\r\n").into_bytes();
        match chunks {
            Some(sizes) => {
                wire.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                let mut rest = body;
                for size in sizes.iter().cycle() {
                    if rest.is_empty() {
                        break;
                    }
                    let (chunk, after) = rest.split_at((*size).min(rest.len()));
                    wire.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                    wire.extend_from_slice(chunk);
                    wire.extend_from_slice(b"\r\n");
                    rest = after;
                }
                wire.extend_from_slice(b"0\r\n\r\n");
            }
            None => {
                wire.extend_from_slice(
                    format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes(),
                );
                wire.extend_from_slice(body);
            }
        }
        wire
    }

    proptest! {
        #[test]
        fn serialized_requests_parse_back_to_what_was_sent(
            requests in prop::collection::vec(request(), 1..4),
        ) {
            let mut wire = Vec::new();
            for (method, target, body, chunks) in &requests {
                wire.extend(serialize(method, target, body, chunks.as_deref()));
            }
            let (served, error, _) = serve_in_pieces(&[&wire]);
            prop_assert_eq!(error, None);
            let sent: Vec<_> = requests
                .iter()
                .map(|(method, target, body, _)| (method.clone(), target.clone(), body.clone()))
                .collect();
            prop_assert_eq!(served, sent);
        }

        #[test]
        fn a_byte_stream_cut_anywhere_is_served_the_same(
            requests in prop::collection::vec(request(), 1..4),
            garbage in prop::option::of(prop::collection::vec(any::<u8>(), 1..40)),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let mut wire = Vec::new();
            for (method, target, body, chunks) in &requests {
                wire.extend(serialize(method, target, body, chunks.as_deref()));
            }
            // Bytes that may not parse, after the valid requests.
            wire.extend(garbage.unwrap_or_default());
            let at: Vec<usize> = cuts.iter().map(|cut| cut.index(wire.len() + 1)).collect();
            let pieces = cut_at(&wire, &at);
            prop_assert_eq!(serve_in_pieces(&pieces), serve_in_pieces(&[&wire]));
        }
    }
}
