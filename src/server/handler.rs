//! [`Handler`]: what answers requests, on the worker threads.

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
