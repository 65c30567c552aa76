//! The server's counts of what happened since it started: the one place
//! they are kept. The shutdown report and [`Stats`] read them here.
//!
//! Every count is a plain `AtomicU64` that only grows, added to by the
//! thread that sees the event, with `Relaxed` ordering: a count orders no
//! other memory, so a reader needs nothing but the value, and a value a
//! few events old is as good as the newest at the moment it is read. The
//! report reads them after the threads that add to them were joined (or,
//! for abandoned workers, given up on), and a join orders everything the
//! thread did before it; so the report's values are final.
//!
//! The gauges (requests in flight, open connections) are not here: they
//! are the in-flight trackers the drain waits on, in
//! [`Lifecycle`](super::Lifecycle).
//!
//! [`Stats`]: crate::server::Stats

use std::sync::atomic::AtomicU64;

/// The counts; see the module docs for the ordering.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Request heads fully received. Added to by the thread that parses a
    /// head (the poller, or a worker for a pipelined one); read by the
    /// report and by `Stats`.
    pub(crate) requests_received: AtomicU64,
    /// Responses to those requests written to their last byte. Added to by
    /// the thread that finishes the write (a worker or the poller); read
    /// by the report and by `Stats`. Short of `requests_received` only by
    /// requests abandoned at the deadline or whose client could not be
    /// written to.
    pub(crate) responses_written: AtomicU64,
    /// Requests answered after the shutdown trigger. Added to by the
    /// workers; read by the report and by `Stats`.
    pub(crate) drained: AtomicU64,
    /// Requests answered 503 `DRYAD-SYS-5003` because the shutdown
    /// deadline had passed. Added to by the workers (a request reached
    /// after the deadline) and the shutdown sequence (requests still
    /// queued); read by the report and by `Stats`.
    pub(crate) refused_shutting_down: AtomicU64,
    /// Idle keep-alive connections closed at last call. Added to by the
    /// poller; read by the report and by `Stats`.
    pub(crate) closed_idle: AtomicU64,
    /// Requests answered 503 `DRYAD-SYS-5001` because the worker queue was
    /// full. Added to by the thread that queues a request (the poller or a
    /// worker); read by `Stats`.
    pub(crate) refused_overloaded: AtomicU64,
    /// Connections answered 503 `DRYAD-SYS-5002` beyond `max_connections`
    /// with none idle. Added to by the acceptor; read by `Stats`.
    pub(crate) refused_over_capacity: AtomicU64,
    /// Idle keep-alive connections closed to admit a new one at
    /// `max_connections`. Added to by the acceptor; read by `Stats`.
    pub(crate) reclaimed_idle: AtomicU64,
    /// Accept calls that failed for lack of resources (EMFILE and the
    /// like). Added to by the acceptor; read by `Stats`.
    pub(crate) accept_errors: AtomicU64,
}
