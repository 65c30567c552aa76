//! A worker thread: takes a connection whose request is complete in
//! memory, runs the handler, queues the response, serves the further
//! requests already complete in its buffer (a bounded number per turn),
//! writes without blocking, and hands the connection back to the registry:
//! what the socket did not take is finished by the poller.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use super::admin;
use super::conn::{Conn, Next};
use super::handler::Handler;
use super::pollers::Pollers;
use super::registry::shutting_down;
use crate::http::WireError;
use crate::http::{KeepAlive, Limits};
use crate::lifecycle::{AbandonedRequest, Lifecycle};
use crate::sync;

/// Stop serving more pipelined requests in a turn once this much of their
/// responses is waiting to be written (backpressure on a client that does
/// not read).
const MAX_PENDING_OUTPUT: usize = 64 * 1024;
/// Requests one connection may have served in one turn of a worker; a
/// client that keeps pipelining then goes to the back of the queue, so it
/// cannot hold a worker for as long as it keeps sending.
const MAX_REQUESTS_PER_TURN: u32 = 64;

/// The request a worker is running, for the abandoned-request log.
#[derive(Debug, Default)]
pub(crate) struct Running {
    current: Option<(Instant, String, String)>,
}

/// One per worker; written by that worker, read at the deadline.
pub(crate) type RunningSlot = Mutex<Running>;

pub(crate) fn running_requests(slots: &[RunningSlot]) -> Vec<AbandonedRequest> {
    slots
        .iter()
        .enumerate()
        .filter_map(|(worker, slot)| {
            let running = sync::lock(slot);
            running
                .current
                .as_ref()
                .map(|(started, method, path)| AbandonedRequest {
                    method: method.clone(),
                    path: path.clone(),
                    age_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                    worker,
                })
        })
        .collect()
}

/// What a worker needs, shared with the server.
pub(crate) struct WorkerContext {
    pub(crate) pollers: Arc<Pollers>,
    pub(crate) lifecycle: Arc<Lifecycle>,
    pub(crate) handler: Arc<dyn Handler>,
    pub(crate) limits: Limits,
    pub(crate) max_requests_per_connection: u32,
    /// What the drain endpoint waits for at most.
    pub(crate) longest_drain: Duration,
    pub(crate) running: Arc<[RunningSlot]>,
}

/// Serves connections until the queue is closed and empty.
pub(crate) fn run(id: usize, queue: &Receiver<Box<Conn>>, context: &WorkerContext) {
    for mut conn in queue.iter() {
        context.pollers.handling(&conn);
        let next = serve_turn(id, &mut conn, context);
        if let Some(conn) = context.pollers.transition(conn, next) {
            context.pollers.transition(conn, Next::Poll);
        }
    }
    context.handler.worker_exit();
}

/// Serves the complete request the connection carries and those behind
/// it already buffered, then says where it goes next.
fn serve_turn(id: usize, conn: &mut Conn, context: &WorkerContext) -> Next {
    let lifecycle = &context.lifecycle;
    for _ in 0..MAX_REQUESTS_PER_TURN {
        if lifecycle.deadline_passed() {
            lifecycle
                .counts
                .refused_shutting_down
                .fetch_add(1, Ordering::Relaxed);
            return Next::Refuse(shutting_down());
        }
        let open = serve_one(id, conn, context);
        if !open || conn.http.pending_output() >= MAX_PENDING_OUTPUT {
            break;
        }
        // The next request, if it is all buffered already (no read).
        match conn.advance(&context.limits, lifecycle, false) {
            Next::Serve => {}
            next => return next,
        }
    }
    conn.advance(&context.limits, lifecycle, false)
}

/// Runs the handler on one request and queues its response; returns
/// whether the connection stays open.
fn serve_one(id: usize, conn: &mut Conn, context: &WorkerContext) -> bool {
    let lifecycle = &context.lifecycle;
    set_running(
        &context.running[id],
        Some((conn.http.method(), conn.http.path())),
    );
    if !conn.admin && lifecycle.is_shutting_down() {
        lifecycle.arrivals.request();
    }
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        if conn.admin && conn.http.path() == admin::DRAIN_PATH {
            admin::drain(conn.http.method(), lifecycle, context.longest_drain)
        } else {
            context.handler.handle(&mut conn.http.request())
        }
    }));
    set_running(&context.running[id], None);
    let (response, handler_ok) = match outcome {
        Ok(response) => (response, true),
        Err(_) => {
            log::error!(
                "worker {id}: handler panicked on {} {}",
                conn.http.method(),
                conn.http.path()
            );
            (WireError::Internal.response(), false)
        }
    };
    let served = conn.http.served() + 1;
    let limit_reached =
        context.max_requests_per_connection != 0 && served >= context.max_requests_per_connection;
    // Read once: the keep-alive decision and the drained count must agree.
    let shutting_down = lifecycle.is_shutting_down();
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
        lifecycle.counts.drained.fetch_add(1, Ordering::Relaxed);
    }
    open
}

fn set_running(slot: &RunningSlot, request: Option<(&str, &str)>) {
    let mut running = sync::lock(slot);
    match request {
        Some((method, path)) => match &mut running.current {
            Some((started, current_method, current_path)) => {
                *started = Instant::now();
                current_method.clear();
                current_method.push_str(method);
                current_path.clear();
                current_path.push_str(path);
            }
            None => running.current = Some((Instant::now(), method.to_owned(), path.to_owned())),
        },
        None => running.current = None,
    }
}
