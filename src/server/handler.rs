//! [`Handler`]: what answers requests, on the worker threads (or at once,
//! on the poller thread, for what it answers from memory).

use crate::http::{Request, Response};

/// Answers requests. Implemented for every
/// `Fn(&mut Request) -> Response + Send + Sync + 'static`.
///
/// Called on a worker thread; it may block (on a database, say) for as
/// long as it needs, within the shutdown timeout. A panic is answered with
/// 500 and the worker lives on.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request.
    fn handle(&self, request: &mut Request<'_>) -> Response;

    /// Answers a request at once, on the poller thread, when it can
    /// without blocking; `None` (the default) sends it to a worker, which
    /// calls [`handle`](Self::handle).
    ///
    /// For answers made from memory in microseconds: a health check, a
    /// constant, a value cached in memory. No I/O, no sleep, no lock that
    /// anyone holds across a blocking call: the poller reads and writes
    /// every connection, so none is served while this runs (a poller that
    /// stops answering fails the watchdog). What it pays for: the request
    /// skips the hand-off to a worker (a wake-up and a context switch),
    /// and is answered even when every worker is busy, so a liveness
    /// probe does not queue behind slow requests. A panic is answered with
    /// 500, as in `handle`.
    fn handle_inline(&self, request: &mut Request<'_>) -> Option<Response> {
        let _ = request;
        None
    }

    /// Called on each worker thread as it exits during shutdown, after its
    /// last request: the place to close connections the worker owns, in
    /// the order they must close. Does nothing by default.
    fn worker_exit(&self) {}
}

impl<F> Handler for F
where
    F: Fn(&mut Request<'_>) -> Response + Send + Sync + 'static,
{
    fn handle(&self, request: &mut Request<'_>) -> Response {
        self(request)
    }
}
