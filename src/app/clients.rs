//! What tags the PostgreSQL and Redis connections a worker thread owns
//! with the store or cache that opened them, so two services in one
//! process never share a connection.
//!
//! The store and the cache each keep their worker's connection in a
//! thread-local of their own, closed by the app's `worker_exit` in the
//! order they must close (PostgreSQL, which sends Terminate, first).

use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_channel::Receiver;

/// A connection and the id of the store or cache that owns it.
pub(crate) struct Owned<T> {
    pub(crate) owner: u64,
    pub(crate) connection: T,
}

/// A connect attempt still running on its own thread.
pub(crate) type PendingConnect<T> = Receiver<Result<T, String>>;

/// A fresh owner id for a store or cache.
pub(crate) fn next_owner_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
