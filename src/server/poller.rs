//! The readiness poller thread: owns every wait on a client. It reads
//! heads and whole bodies, finishes writes the workers could not, lets
//! lingering connections finish, answers what the handler answers at once
//! ([`Handler::handle_inline`]), queues the other complete requests for
//! the workers, and answers or closes those whose time ran out.
//!
//! [`Handler::handle_inline`]: super::Handler::handle_inline
//!
//! Readiness is edge-triggered: each socket is registered once, and a
//! request whose bytes are all there costs one read here.

use std::sync::atomic::Ordering;
use std::time::Instant;

use mio::Events;

use super::admin;
use super::conn::{Conn, Next};
use super::log_limit::RateLimitedWarning;
use super::registry::{self, Expired, Readiness, Registry, State, WAKER};
use super::serve::ServeContext;
use crate::http::WireError;
use crate::http::{BodyError, ReadBuffer, RequestError};

/// Most readiness events taken per wake-up.
const EVENTS_CAPACITY: usize = 1024;
/// Read buffers kept for reuse. A connection holds one only while it has
/// bytes not consumed yet: the poller lends one before it reads and takes
/// it back when the bytes are all parsed, so queued requests, requests
/// being served and idle connections hold none.
const SPARE_READ_BUFFERS: usize = 64;
/// A read buffer that grew past this (a large head) is not kept.
const MAX_KEPT_READ_BUFFER: usize = 64 * 1024;

/// What the tests ask of the poller.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TestHooks {
    /// Panic at the first connection.
    pub(crate) panic: bool,
    /// Stop responding from then on (sleep for a long time).
    pub(crate) stall_at: Option<Instant>,
}

/// How long a stall asked for by a test lasts: longer than any test.
const TEST_STALL: std::time::Duration = std::time::Duration::from_secs(600);

/// Runs poller `index` until its registry is asked to stop; then closes
/// every parked connection and returns.
pub(crate) fn run(mut poll: mio::Poll, index: usize, context: &ServeContext, test: TestHooks) {
    let registry = context.pollers.registry(index);
    let mut events = Events::with_capacity(EVENTS_CAPACITY);
    let mut slow_writers = RateLimitedWarning::default();
    let mut driver = Driver {
        index,
        registry,
        context,
        spare_reads: Vec::with_capacity(SPARE_READ_BUFFERS),
    };
    loop {
        let timeout = registry
            .next_deadline()
            .map(|deadline| deadline.saturating_duration_since(Instant::now()));
        if let Err(error) = poll.poll(&mut events, timeout) {
            if error.kind() != std::io::ErrorKind::Interrupted {
                log::error!("poller: wait failed: {error}");
            }
        }
        if test.stall_at.is_some_and(|at| Instant::now() >= at) {
            log::warn!("poller: stalling, as the test asked");
            std::thread::sleep(TEST_STALL);
        }
        registry.heartbeat.answer();
        if registry.stop_requested() {
            break;
        }
        for event in events.iter() {
            if event.token() == WAKER {
                continue;
            }
            assert!(!test.panic, "the poller panics, as the test asked");
            let read_closed = event.is_read_closed() || event.is_error();
            let readiness = Readiness {
                readable: event.is_readable() || read_closed,
                read_closed,
                writable: event.is_writable() || event.is_write_closed(),
            };
            if let Some(conn) = registry.ready(event.token().0, readiness) {
                driver.drive(conn);
            }
        }
        for conn in registry.take_to_poll() {
            driver.drive(conn);
        }
        if context.pollers.shed_slow_writers() > 0 {
            slow_writers.warn(|| {
                "memory budget used up: reset connections reading their responses too slowly".into()
            });
        }
        for conn in registry.take_room_waiters() {
            driver.drive(conn);
        }
        for expired in registry.expire(Instant::now()) {
            driver.expire(expired);
        }
    }
    registry.close_all_parked();
}

/// What the poller drives connections with.
struct Driver<'a> {
    /// Which poller this is, for its logs.
    index: usize,
    registry: &'a Registry,
    context: &'a ServeContext,
    spare_reads: Vec<ReadBuffer>,
}

impl Driver<'_> {
    /// Takes a connection as far as it goes, then where it says.
    fn drive(&mut self, mut conn: Box<Conn>) {
        let mut answered = 0;
        loop {
            self.registry.lend_buffers(&mut conn);
            let spare = &mut self.spare_reads;
            conn.http
                .lend_read_buffer(|| spare.pop().unwrap_or_default());
            let context = self.context;
            let mut next = conn.advance(&context.limits, &context.lifecycle, true);
            if matches!(next, Next::Serve) {
                next = self.answer_at_once(&mut conn, &mut answered);
            }
            if let Some(read) = conn.http.take_empty_read_buffer() {
                if self.spare_reads.len() < SPARE_READ_BUFFERS
                    && read.capacity() <= MAX_KEPT_READ_BUFFER
                {
                    self.spare_reads.push(read);
                }
            }
            match self.registry.transition(conn, next) {
                Some(again) => conn = again,
                None => return,
            }
        }
    }

    /// Answers the connection's complete request here if the handler
    /// answers it at once, and those behind it likewise (at most a turn's
    /// bound in all, counted in `answered`); says where the connection
    /// goes next: to a worker for the first request the handler declines.
    fn answer_at_once(&self, conn: &mut Conn, answered: &mut u32) -> Next {
        let context = self.context;
        let thread = format_args!("poller {}", self.index);
        context.serve_turn(conn, answered, true, |conn| {
            // The drain endpoint waits for the drain's end: a worker's.
            if conn.admin && conn.http.path() == admin::DRAIN_PATH {
                return None;
            }
            let answer = ServeContext::run_handler(conn, &thread, |request| {
                context.handler.handle_inline(request)
            })?;
            context.note_request(conn);
            Some(context.queue_answer(conn, answer))
        })
    }

    fn expire(&mut self, Expired { mut conn, state }: Expired) {
        let next = match state {
            // A request that arrived since the wait returned is served,
            // not cut off (the keep-alive race at last call).
            State::Idle if conn.http.has_input_waiting() => {
                conn.http.note_readable(false);
                return self.drive(conn);
            }
            // Its last response is still leaving the kernel, and moving:
            // not idle; a close now could cut it off.
            State::Idle if conn.still_receiving() => Next::Wait,
            State::Idle => {
                let lifecycle = &self.context.lifecycle;
                if lifecycle.is_shutting_down() {
                    lifecycle.counts.closed_idle.fetch_add(1, Ordering::Relaxed);
                }
                Next::Close
            }
            State::ReadingHead => Next::Refuse(WireError::HeadTimedOut.response()),
            State::ReadingBody => Next::Refuse(RequestError::Body(BodyError::TimedOut).response()),
            State::AwaitingRoom => Next::Refuse(registry::out_of_room()),
            // No room for writes, but the client reads what the kernel
            // holds: judged again later on what it takes there.
            State::Writing if self.registry.taking_from_kernel(&mut conn) => Next::Wait,
            // Too slow a reader, or a lingering client that stays.
            State::Writing | State::Lingering => Next::Close,
            State::Polling | State::Queued | State::Handling => {
                unreachable!("BUG: {state:?} has no timer")
            }
        };
        if let Some(conn) = self.registry.transition(conn, next) {
            self.drive(conn);
        }
    }
}
