//! What the handlers work with: the store, the cache, the body spool and
//! the metrics.

use std::sync::Arc;

use super::cache::Cache;
use super::metrics::Metrics;
use super::spool::Spool;
use super::store::Store;

/// What the handlers work with.
#[derive(Debug)]
pub(crate) struct Services {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) cache: Arc<Cache>,
    pub(crate) spool: Arc<Spool>,
    pub(crate) metrics: Metrics,
}
