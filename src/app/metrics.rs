//! `GET /metrics`: Prometheus (OpenMetrics) text, through prometheus-client.

use std::sync::Mutex;
use std::sync::atomic::Ordering;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::cache::Cache;
use crate::http::{Response, StatusCode};
use crate::lifecycle::ShutdownHandle;
use crate::server::Stats;
use crate::sync;

/// Labels of the request counter. Routes are templates (`/v1/events/{id}`)
/// so the label set stays small.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct RequestLabels {
    /// The route template.
    pub(crate) route: &'static str,
    /// The method, or `OTHER`.
    pub(crate) method: &'static str,
    /// The response status.
    pub(crate) status: u16,
}

/// The service's metrics.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    /// PostgreSQL errors (connects and queries).
    pub(crate) database_errors: Counter,
    cache_errors: Counter,
    in_flight: Gauge,
    queue_depth: Gauge,
    buffered_bytes: Gauge,
    open_connections: Gauge,
    shutdown_phase: Gauge,
    overloaded: Counter,
    over_capacity: Counter,
    reclaimed_idle: Counter,
    /// Held by [`Metrics::render`] from syncing the counters copied from
    /// elsewhere (cache errors, refusals) to encoding them: each sync reads
    /// a counter and adds the difference, so two renders syncing at once
    /// would both add it. Rendering is rare, so renders simply queue.
    rendering: Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut metrics = Self {
            registry: Registry::default(),
            requests: Family::default(),
            database_errors: Counter::default(),
            cache_errors: Counter::default(),
            in_flight: Gauge::default(),
            buffered_bytes: Gauge::default(),
            queue_depth: Gauge::default(),
            open_connections: Gauge::default(),
            shutdown_phase: Gauge::default(),
            overloaded: Counter::default(),
            over_capacity: Counter::default(),
            reclaimed_idle: Counter::default(),
            rendering: Mutex::new(()),
        };
        let registry = &mut metrics.registry;
        registry.register(
            "gremlins_requests",
            "Requests answered, by route, method and status",
            metrics.requests.clone(),
        );
        registry.register(
            "gremlins_database_errors",
            "PostgreSQL connect and query errors",
            metrics.database_errors.clone(),
        );
        registry.register(
            "gremlins_cache_errors",
            "Redis errors",
            metrics.cache_errors.clone(),
        );
        registry.register(
            "gremlins_in_flight_requests",
            "Requests from parsed head to written response",
            metrics.in_flight.clone(),
        );
        registry.register(
            "gremlins_queue_depth",
            "Connections waiting for a worker",
            metrics.queue_depth.clone(),
        );
        registry.register(
            "gremlins_buffered_bytes",
            "Bytes of request bodies and unwritten responses held (of max_buffered_bytes)",
            metrics.buffered_bytes.clone(),
        );
        registry.register(
            "gremlins_open_connections",
            "Open client connections",
            metrics.open_connections.clone(),
        );
        registry.register(
            "gremlins_shutdown_phase",
            "0 running, 1 draining, 2 closing, 3 cleanup, 4 exited",
            metrics.shutdown_phase.clone(),
        );
        registry.register(
            "gremlins_refused_overloaded",
            "Requests refused 503 with a full queue",
            metrics.overloaded.clone(),
        );
        registry.register(
            "gremlins_refused_over_capacity",
            "Connections refused 503 beyond max_connections",
            metrics.over_capacity.clone(),
        );
        registry.register(
            "gremlins_reclaimed_idle_connections",
            "Idle keep-alive connections closed to admit a new one at max_connections",
            metrics.reclaimed_idle.clone(),
        );
        metrics
    }
}

impl Metrics {
    /// Counts one answered request.
    pub(crate) fn record(&self, labels: RequestLabels) {
        self.requests.get_or_create(&labels).inc();
    }

    /// The current values, as the response to `GET /metrics`.
    pub(crate) fn render(
        &self,
        shutdown: &ShutdownHandle,
        stats: &Stats,
        cache: &Cache,
    ) -> Response {
        let set_counter = |counter: &Counter, value: u64| {
            let seen = counter.get();
            if value > seen {
                counter.inc_by(value - seen);
            }
        };
        let gauge = |value: usize| i64::try_from(value).unwrap_or(i64::MAX);
        let _rendering = sync::lock(&self.rendering);
        self.in_flight.set(gauge(shutdown.in_flight_requests()));
        self.open_connections
            .set(gauge(shutdown.open_connections()));
        let snapshot = stats.snapshot();
        self.queue_depth.set(gauge(snapshot.queue_depth));
        self.buffered_bytes
            .set(i64::try_from(snapshot.buffered_bytes).unwrap_or(i64::MAX));
        self.shutdown_phase.set(shutdown.phase() as i64);
        set_counter(&self.cache_errors, cache.errors.load(Ordering::Relaxed));
        set_counter(&self.overloaded, snapshot.refused_overloaded);
        set_counter(&self.over_capacity, snapshot.refused_over_capacity);
        set_counter(&self.reclaimed_idle, snapshot.reclaimed_idle);
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            return Response::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "metrics could not be encoded",
                "DRYAD-SYS-5000",
            );
        }
        Response::text(StatusCode::OK, text).with_header(
            "Content-Type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )
    }
}
