//! Where events live: PostgreSQL when `DATABASE_URL` is set, otherwise the
//! built-in in-memory store.

mod event;
mod memory;
mod postgres;

use std::sync::Arc;

use super::config::ServiceConfig;
use super::redact::redact_url;

pub(crate) use self::event::{Event, Inserted, NewEvent, Store, StoreError};
pub(crate) use self::memory::MemoryStore;
pub(crate) use self::postgres::PostgresStore;
pub(crate) use self::postgres::close_worker_connection;

/// The store the configuration asks for.
pub(crate) fn open(config: &ServiceConfig) -> Arc<dyn Store> {
    match &config.database_url {
        Some(url) => {
            log::info!("events store: PostgreSQL at {}", redact_url(url));
            Arc::new(PostgresStore::new(
                url,
                config.db_connect_timeout,
                config.db_statement_timeout,
            ))
        }
        None => {
            log::warn!(
                "events store: no DATABASE_URL configured: serving from the built-in in-memory store; \
                 data will not outlive the process"
            );
            Arc::new(MemoryStore::default())
        }
    }
}
