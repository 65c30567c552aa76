//! The PostgreSQL and Redis connections each worker thread owns.
//!
//! They live in one thread-local and are closed by [`close_all`] when the
//! worker exits: PostgreSQL (which sends Terminate) first, then Redis. Each is tagged with the store or cache that opened it, so two
//! services in one process never share a connection.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_channel::Receiver;

/// A connection and the id of the store or cache that owns it.
pub(crate) struct Owned<T> {
    pub(crate) owner: u64,
    pub(crate) connection: T,
}

/// A PostgreSQL connect attempt still running on its own thread.
pub(crate) type PendingConnect<T> = Receiver<Result<T, String>>;

/// One worker's connections.
pub(crate) struct WorkerClients {
    pub(crate) postgres: Option<Owned<super::store::PostgresConnection>>,
    pub(crate) postgres_pending: Option<Owned<PendingConnect<super::store::PostgresConnection>>>,
    pub(crate) redis: Option<Owned<redis::Connection>>,
}

thread_local! {
    static CLIENTS: RefCell<WorkerClients> = const {
        RefCell::new(WorkerClients { postgres: None, postgres_pending: None, redis: None })
    };
}

/// Runs `f` with this thread's connections.
pub(crate) fn with<R>(f: impl FnOnce(&mut WorkerClients) -> R) -> R {
    CLIENTS.with_borrow_mut(f)
}

/// Closes this thread's connections, PostgreSQL first, then Redis. Must
/// run before the thread's locals are destroyed: the PostgreSQL driver
/// needs its runtime's own thread-local to close cleanly.
pub(crate) fn close_all() {
    with(|clients| {
        clients.postgres_pending = None;
        clients.postgres = None;
        clients.redis = None;
    });
}

/// A fresh owner id for a store or cache.
pub(crate) fn next_owner_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
