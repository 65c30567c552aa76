//! The readiness poller thread: waits on every parked connection at once,
//! hands the ready ones to the workers through the bounded queue, lets
//! lingering ones finish, and closes those whose time ran out.

use std::sync::atomic::Ordering;
use std::time::Instant;

use crossbeam_channel::{Sender, TrySendError};
use polling::Events;

use super::Stats;
use super::log_limit::RateLimitedWarning;
use super::registry::{Conn, Ready, Registry, Wait};
use crate::http::{Response, StatusCode};
use crate::lifecycle::Lifecycle;

/// Runs until the registry is asked to stop; then closes every parked
/// connection and returns, dropping `queue` so the workers finish.
pub(crate) fn run(
    registry: &Registry,
    queue: Sender<Box<Conn>>,
    lifecycle: &Lifecycle,
    stats: &Stats,
) {
    let mut events = Events::new();
    let mut overloaded = RateLimitedWarning::default();
    loop {
        events.clear();
        let timeout = registry
            .next_deadline()
            .map(|deadline| deadline.saturating_duration_since(Instant::now()));
        if let Err(error) = registry.poller.wait(&mut events, timeout) {
            if error.kind() != std::io::ErrorKind::Interrupted {
                log::error!("poller: wait failed: {error}");
            }
        }
        if registry.stop_requested() {
            break;
        }
        for event in events.iter() {
            match registry.take_ready(event.key) {
                Some(Ready::Serve(conn)) => {
                    dispatch(registry, &queue, conn, stats, &mut overloaded)
                }
                Some(Ready::Linger(conn)) => registry.linger(conn),
                None => {}
            }
        }
        for ready in registry.take_requeued() {
            if let Ready::Serve(conn) = ready {
                dispatch(registry, &queue, conn, stats, &mut overloaded);
            }
        }
        for expired in registry.expire(Instant::now()) {
            let mut conn = expired.conn;
            match expired.wait {
                // A request that arrived since the wait returned is served,
                // not cut off (the keep-alive race at last call).
                Wait::Idle if conn.http.has_input_waiting() => {
                    dispatch(registry, &queue, conn, stats, &mut overloaded);
                }
                Wait::Idle => {
                    if lifecycle.is_shutting_down() {
                        lifecycle.closed_idle.fetch_add(1, Ordering::Relaxed);
                    }
                    registry.close(conn);
                }
                Wait::PartialHead => {
                    stats.header_timeouts.fetch_add(1, Ordering::Relaxed);
                    conn.http.respond_and_close(&Response::error(
                        StatusCode::REQUEST_TIMEOUT,
                        "request head not received in time",
                        "DRYAD-HTTP-4080",
                    ));
                    conn.http.flush_now();
                    conn.http.shutdown_write();
                    registry.linger(conn);
                }
                Wait::Linger => registry.close(conn),
            }
        }
    }
    registry.close_all_parked();
}

/// Queues a ready connection for a worker; when the queue is full, answers
/// 503 with `Retry-After` instead of waiting.
fn dispatch(
    registry: &Registry,
    queue: &Sender<Box<Conn>>,
    conn: Box<Conn>,
    stats: &Stats,
    overloaded: &mut RateLimitedWarning,
) {
    match queue.try_send(conn) {
        Ok(()) => {}
        Err(TrySendError::Full(mut conn)) => {
            stats.overloaded.fetch_add(1, Ordering::Relaxed);
            overloaded.warn(|| {
                format!(
                    "refused a request with 503: all {} queue slots are taken",
                    queue.len()
                )
            });
            conn.http.respond_and_close(
                &Response::error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "server overloaded, retry",
                    "DRYAD-SYS-5001",
                )
                .with_header("Retry-After", "1"),
            );
            conn.http.flush_now();
            conn.http.shutdown_write();
            registry.linger(conn);
        }
        Err(TrySendError::Disconnected(conn)) => registry.close(conn),
    }
}
