//! A worker thread: takes a connection whose request is complete in
//! memory, runs the handler, queues the response, serves the further
//! requests already complete in its buffer (a bounded number per turn),
//! writes without blocking, and hands the connection back to the registry:
//! what the socket did not take is finished by the poller.

use std::sync::atomic::Ordering;

use crossbeam_channel::Receiver;

use super::admin;
use super::conn::{Conn, Next};
use super::registry::shutting_down;
use super::running::set_running;
use super::serve::{MAX_PENDING_OUTPUT, MAX_REQUESTS_PER_TURN, ServeContext};

/// Serves connections until the queue is closed and empty.
pub(crate) fn run(id: usize, queue: &Receiver<Box<Conn>>, context: &ServeContext) {
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
fn serve_turn(id: usize, conn: &mut Conn, context: &ServeContext) -> Next {
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
fn serve_one(id: usize, conn: &mut Conn, context: &ServeContext) -> bool {
    set_running(
        &context.running[id],
        Some((conn.http.method(), conn.http.path())),
    );
    context.note_request(conn);
    let drain = conn.admin && conn.http.path() == admin::DRAIN_PATH;
    let answer = ServeContext::run_handler(conn, &format_args!("worker {id}"), |request| {
        Some(if drain {
            admin::drain(request.method(), &context.lifecycle, context.longest_drain)
        } else {
            context.handler.handle(request)
        })
    })
    .expect("BUG: a worker's handler always answers");
    set_running(&context.running[id], None);
    context.queue_answer(conn, answer)
}
