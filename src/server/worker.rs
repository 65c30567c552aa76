//! A worker thread: takes a connection whose request is complete in
//! memory, runs the handler, queues the response, serves the further
//! requests already complete in its buffer (a bounded number per turn),
//! writes without blocking, and hands the connection back to the registry:
//! what the socket did not take is finished by the poller.

use crossbeam_channel::Receiver;

use super::admin;
use super::conn::{Conn, Job, Next};
use super::running::set_running;
use super::serve::ServeContext;

/// Serves connections until the queue is closed and empty.
pub(crate) fn run(id: usize, queue: &Receiver<Job>, context: &ServeContext) {
    while let Ok(Job::Serve(mut conn)) = queue.recv() {
        context.pollers.handling(&conn);
        // The requests already buffered behind the first are served too
        // (no read: the socket is the poller's).
        let next = context.serve_turn(&mut conn, &mut 0, false, |conn| {
            Some(serve_one(id, conn, context))
        });
        if let Some(conn) = context.pollers.transition(conn, next) {
            context.pollers.transition(conn, Next::Poll);
        }
    }
    context.handler.worker_exit();
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
