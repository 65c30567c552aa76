//! A worker thread: takes a ready connection from the queue, serves every
//! complete request it has (handler, response), and gives it back to the
//! poller, or closes it.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crossbeam_channel::Receiver;

use super::Handler;
use super::registry::{Conn, Registry, Wait};
use crate::http::{Buffers, HeadStatus, KeepAlive, Limits, Response, StatusCode};
use crate::lifecycle::{AbandonedRequest, InFlightGuard, Lifecycle};

/// Stop reading more pipelined requests once this much of their responses
/// is waiting to be written (backpressure on a client that does not read).
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
            let running = slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
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
    pub(crate) registry: Arc<Registry>,
    pub(crate) lifecycle: Arc<Lifecycle>,
    pub(crate) handler: Arc<dyn Handler>,
    pub(crate) limits: Limits,
    pub(crate) max_requests_per_connection: u32,
    pub(crate) running: Arc<[RunningSlot]>,
}

/// What to do with a connection after a turn.
enum Next {
    Park(Wait),
    /// Requests are buffered, but the turn is over.
    Requeue,
    Linger,
    Close,
}

/// Serves connections until the queue is closed and empty.
pub(crate) fn run(id: usize, queue: &Receiver<Box<Conn>>, context: &WorkerContext) {
    let mut spare = Buffers::default();
    let mut guards = Vec::new();
    for conn in queue.iter() {
        let mut next_conn = Some(conn);
        while let Some(mut conn) = next_conn.take() {
            conn.http.exchange_buffers(&mut spare);
            let next = serve_turn(id, &mut conn, context, &mut guards);
            conn.http.exchange_buffers(&mut spare);
            next_conn = match next {
                Next::Park(wait) => context.registry.park(conn, wait),
                Next::Requeue => {
                    context.registry.requeue(conn);
                    None
                }
                Next::Linger => {
                    conn.http.shutdown_write();
                    context.registry.linger(conn);
                    None
                }
                Next::Close => {
                    context.registry.close(conn);
                    None
                }
            };
        }
    }
    context.handler.worker_exit();
}

/// Serves every complete request the connection has, then says where it
/// goes next. Responses are written before their in-flight guards drop.
fn serve_turn(
    id: usize,
    conn: &mut Conn,
    context: &WorkerContext,
    guards: &mut Vec<InFlightGuard>,
) -> Next {
    let lifecycle = &context.lifecycle;
    let mut first = true;
    let mut served_this_turn = 0;
    loop {
        // After a response, read the socket again only if bytes are already
        // buffered: otherwise the poller says when more arrive, which saves
        // a read that would find nothing.
        if !first && !conn.http.has_buffered_input() {
            return finish(id, conn, context, guards, Next::Park(Wait::Idle));
        }
        first = false;
        if served_this_turn == MAX_REQUESTS_PER_TURN {
            return finish(id, conn, context, guards, Next::Requeue);
        }
        served_this_turn += 1;
        let status = match conn.http.poll_head(&context.limits) {
            Ok(status) => status,
            Err(error) => {
                let (status, code, message) = error.answer();
                conn.http
                    .respond_and_close(&Response::error(status, message, code));
                return finish(id, conn, context, guards, Next::Linger);
            }
        };
        match status {
            HeadStatus::Ready => {}
            HeadStatus::Incomplete => {
                let wait = if conn.http.has_buffered_input() {
                    Wait::PartialHead
                } else {
                    Wait::Idle
                };
                return finish(id, conn, context, guards, Next::Park(wait));
            }
            HeadStatus::Closed => return finish(id, conn, context, guards, Next::Close),
        }
        guards.push(lifecycle.requests.enter());
        lifecycle.requests_received.fetch_add(1, Ordering::Relaxed);
        if lifecycle.deadline_passed() {
            lifecycle.refused.fetch_add(1, Ordering::Relaxed);
            conn.http.respond_and_close(&shutting_down());
            return finish(id, conn, context, guards, Next::Linger);
        }
        set_running(
            &context.running[id],
            Some((conn.http.method(), conn.http.path())),
        );
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            context.handler.handle(&mut conn.http.request())
        }));
        let (response, handler_ok) = match outcome {
            Ok(response) => (response, true),
            Err(_) => {
                log::error!(
                    "worker {id}: handler panicked on {} {}",
                    conn.http.method(),
                    conn.http.path()
                );
                let response = Response::error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error",
                    "DRYAD-SYS-5000",
                );
                (response, false)
            }
        };
        let served = conn.http.served() + 1;
        let limit_reached = context.max_requests_per_connection != 0
            && served >= context.max_requests_per_connection;
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
        let open = conn.http.respond(&response, keep_alive);
        if shutting_down {
            lifecycle.drained.fetch_add(1, Ordering::Relaxed);
        }
        if !open {
            return finish(id, conn, context, guards, Next::Linger);
        }
        if conn.http.pending_output() >= MAX_PENDING_OUTPUT {
            let written = conn.http.flush(&context.limits).is_ok();
            end_requests(context, id, guards, written);
            if !written {
                return Next::Close;
            }
        }
    }
}

/// Writes what is queued, ends the requests it answers, and returns `next`
/// (or `Close` if the client cannot be written to).
fn finish(
    id: usize,
    conn: &mut Conn,
    context: &WorkerContext,
    guards: &mut Vec<InFlightGuard>,
    next: Next,
) -> Next {
    let written = conn.http.flush(&context.limits).is_ok();
    end_requests(context, id, guards, written);
    if written { next } else { Next::Close }
}

/// Ends the requests whose responses were queued (one guard each), after
/// the write that carried them: counted as written if it succeeded.
fn end_requests(
    context: &WorkerContext,
    id: usize,
    guards: &mut Vec<InFlightGuard>,
    written: bool,
) {
    if written {
        let count = u64::try_from(guards.len()).unwrap_or(u64::MAX);
        context
            .lifecycle
            .responses_written
            .fetch_add(count, Ordering::Relaxed);
    }
    guards.clear();
    set_running(&context.running[id], None);
}

fn set_running(slot: &RunningSlot, request: Option<(&str, &str)>) {
    let mut running = slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
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

/// The answer to a request that arrives after the shutdown deadline.
pub(crate) fn shutting_down() -> Response {
    Response::error(
        StatusCode::SERVICE_UNAVAILABLE,
        "Server is shutting down",
        "DRYAD-SYS-5003",
    )
}
