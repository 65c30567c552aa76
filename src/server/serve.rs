//! Serving a request, wherever it runs (a worker, or the poller for an
//! answer the handler gives at once): what serving needs, the drain's
//! count of new requests, the response queued with the right keep-alive,
//! and a panic answered 500.

use std::fmt::Display;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::conn::{Conn, Next};
use super::handler::Handler;
use super::pollers::Pollers;
use super::registry::shutting_down;
use super::running::RunningSlot;
use crate::http::{KeepAlive, Limits, Request, Response, WireError};
use crate::lifecycle::Lifecycle;

/// Stop serving more pipelined requests in a turn once this much of their
/// responses is waiting to be written (backpressure on a client that does
/// not read).
const MAX_PENDING_OUTPUT: usize = 64 * 1024;
/// Requests one connection may have served in one turn (of a worker, or
/// of the poller's answers at once); a client that keeps pipelining then
/// goes to the back of the queue, so it cannot hold a thread for as long
/// as it keeps sending.
const MAX_REQUESTS_PER_TURN: u32 = 64;

/// What serving requests needs, shared by the workers and the pollers.
pub(crate) struct ServeContext {
    pub(crate) pollers: Arc<Pollers>,
    pub(crate) lifecycle: Arc<Lifecycle>,
    pub(crate) handler: Arc<dyn Handler>,
    pub(crate) limits: Limits,
    pub(crate) max_requests_per_connection: u32,
    /// What the drain endpoint waits for at most.
    pub(crate) longest_drain: Duration,
    /// One per worker: the request it is running.
    pub(crate) running: Arc<[RunningSlot]>,
}

impl ServeContext {
    /// Serves the connection's complete request with `serve_one` (whether
    /// the connection stays open, or `None` when it declines), then those
    /// behind it, reading the socket for them only with `read_socket` (the
    /// poller's); `served` counts the turn's requests, at most
    /// `MAX_REQUESTS_PER_TURN`. Says where the connection goes next: a
    /// request declined, or one past the bound, goes to a worker
    /// (`Next::Serve`); past the shutdown deadline, it is refused.
    pub(crate) fn serve_turn(
        &self,
        conn: &mut Conn,
        served: &mut u32,
        read_socket: bool,
        mut serve_one: impl FnMut(&mut Conn) -> Option<bool>,
    ) -> Next {
        let lifecycle = &self.lifecycle;
        while *served < MAX_REQUESTS_PER_TURN {
            if lifecycle.deadline_passed() {
                lifecycle
                    .counts
                    .refused_shutting_down
                    .fetch_add(1, Ordering::Relaxed);
                return Next::Refuse(shutting_down());
            }
            let Some(open) = serve_one(conn) else {
                return Next::Serve;
            };
            *served += 1;
            if !open || conn.http.pending_output() >= MAX_PENDING_OUTPUT {
                break;
            }
            match conn.advance(&self.limits, lifecycle, read_socket) {
                Next::Serve => {}
                next => return next,
            }
        }
        conn.advance(&self.limits, lifecycle, read_socket)
    }

    /// Notes a request about to be served: while draining, a request on
    /// the service's listeners is traffic (the admin listener's are not).
    pub(crate) fn note_request(&self, conn: &Conn) {
        if !conn.admin && self.lifecycle.is_shutting_down() {
            self.lifecycle.arrivals.request();
        }
    }

    /// Runs `answer` on the connection's request, a panic caught and
    /// logged as `thread`'s. `None` when it declined.
    pub(crate) fn run_handler(
        conn: &mut Conn,
        thread: &dyn Display,
        answer: impl FnOnce(&mut Request<'_>) -> Option<Response>,
    ) -> Option<Result<Response, Panicked>> {
        match catch_unwind(AssertUnwindSafe(|| answer(&mut conn.http.request()))) {
            Ok(answer) => answer.map(Ok),
            Err(_) => {
                log::error!(
                    "{thread}: handler panicked on {} {}",
                    conn.http.method(),
                    conn.http.path()
                );
                Some(Err(Panicked))
            }
        }
    }

    /// Queues the handler's answer (500 if it panicked); returns whether
    /// the connection stays open.
    pub(crate) fn queue_answer(&self, conn: &mut Conn, answer: Result<Response, Panicked>) -> bool {
        let handler_ok = answer.is_ok();
        let response = answer.unwrap_or_else(|Panicked| WireError::Internal.response());
        let served = conn.http.served() + 1;
        let limit_reached =
            self.max_requests_per_connection != 0 && served >= self.max_requests_per_connection;
        // Read once: the keep-alive decision and the drained count must agree.
        let shutting_down = self.lifecycle.is_shutting_down();
        let keep_alive = if !handler_ok || limit_reached {
            KeepAlive::No
        } else if shutting_down {
            // Answer what the client already sent; close after the last.
            KeepAlive::IfPipelined
        } else {
            KeepAlive::Yes
        };
        let open = conn.answer(&response, keep_alive);
        if shutting_down {
            self.lifecycle
                .counts
                .drained
                .fetch_add(1, Ordering::Relaxed);
        }
        open
    }
}

/// The handler panicked; it is answered 500 and the connection closes.
#[derive(Debug)]
pub(crate) struct Panicked;
