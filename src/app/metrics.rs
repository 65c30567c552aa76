//! `GET /metrics`: Prometheus (OpenMetrics) text, through prometheus-client.
//!
//! Nothing is copied: the request counters and the dependency error
//! counters are prometheus-client counters, added to where the request is
//! answered or the error happens; the server's numbers are read from one
//! [`Stats`] snapshot each time the text is encoded, by
//! [`ServerCollector`].

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::http::{Response, StatusCode};
use crate::server::{Stats, StatsSnapshot};

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
    /// PostgreSQL errors (connects and queries), added to by the handler
    /// that saw one.
    pub(crate) database_errors: Counter,
}

impl Metrics {
    /// The metrics of a service on the server `stats` reads, with the
    /// cache's own error counter.
    pub(crate) fn new(stats: Stats, cache_errors: Counter) -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let database_errors = Counter::default();
        registry.register(
            "gremlins_requests",
            "Requests answered, by route, method and status",
            requests.clone(),
        );
        registry.register(
            "gremlins_database_errors",
            "PostgreSQL connect and query errors",
            database_errors.clone(),
        );
        registry.register("gremlins_cache_errors", "Redis errors", cache_errors);
        // Collectors are encoded after the registered metrics.
        registry.register_collector(Box::new(ServerCollector { stats }));
        Self {
            registry,
            requests,
            database_errors,
        }
    }

    /// Counts one answered request.
    pub(crate) fn record(&self, labels: RequestLabels) {
        self.requests.get_or_create(&labels).inc();
    }

    /// The current values, as the response to `GET /metrics`.
    pub(crate) fn render(&self) -> Response {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            return crate::http::WireError::Internal
                .response_with_message("metrics could not be encoded");
        }
        Response::text(StatusCode::OK, text).with_header(
            "Content-Type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )
    }
}

/// How a server number is exposed.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// A count since the start (named with `_total`).
    Counter,
    /// A value now.
    Gauge,
}

/// Encodes the server's numbers from one snapshot taken at encode time.
#[derive(Debug)]
struct ServerCollector {
    stats: Stats,
}

/// The server's metrics, in the order they are encoded: name, help (with
/// the full stop the registry adds to the help of registered metrics),
/// kind and value.
fn server_metrics(snapshot: &StatsSnapshot) -> [(&'static str, &'static str, Kind, u64); 9] {
    let size = |value: usize| u64::try_from(value).unwrap_or(u64::MAX);
    [
        (
            "gremlins_in_flight_requests",
            "Requests from parsed head to written response.",
            Kind::Gauge,
            size(snapshot.in_flight_requests),
        ),
        (
            "gremlins_queue_depth",
            "Connections waiting for a worker.",
            Kind::Gauge,
            size(snapshot.queue_depth),
        ),
        (
            "gremlins_buffered_bytes",
            "Bytes of request bodies and unwritten responses held (of max_buffered_bytes).",
            Kind::Gauge,
            snapshot.buffered_bytes,
        ),
        (
            "gremlins_open_connections",
            "Open client connections.",
            Kind::Gauge,
            size(snapshot.open_connections),
        ),
        (
            "gremlins_shutdown_phase",
            "0 running, 1 draining, 2 closing, 3 cleanup, 4 exited.",
            Kind::Gauge,
            u64::from(snapshot.phase as u8),
        ),
        (
            "gremlins_refused_overloaded",
            "Requests refused 503 with a full queue.",
            Kind::Counter,
            snapshot.refused_overloaded,
        ),
        (
            "gremlins_refused_over_capacity",
            "Connections refused 503 beyond max_connections.",
            Kind::Counter,
            snapshot.refused_over_capacity,
        ),
        (
            "gremlins_reclaimed_idle_connections",
            "Idle keep-alive connections closed to admit a new one at max_connections.",
            Kind::Counter,
            snapshot.reclaimed_idle,
        ),
        (
            "gremlins_accept_errors",
            "Accept calls that failed for lack of resources (EMFILE and the like).",
            Kind::Counter,
            snapshot.accept_errors,
        ),
    ]
}

impl Collector for ServerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let snapshot = self.stats.snapshot();
        for (name, help, kind, value) in server_metrics(&snapshot) {
            match kind {
                Kind::Counter => {
                    let counter = ConstCounter::new(value);
                    counter.encode(encoder.encode_descriptor(
                        name,
                        help,
                        None,
                        counter.metric_type(),
                    )?)?;
                }
                Kind::Gauge => {
                    let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
                    gauge.encode(encoder.encode_descriptor(
                        name,
                        help,
                        None,
                        gauge.metric_type(),
                    )?)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::Cache;
    use crate::{Server, ServerConfig};
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    /// The text as it was when each number was copied into its own
    /// registered metric, plus the accept-error counter.
    const EXPECTED: &str = r#"# HELP gremlins_requests Requests answered, by route, method and status.
# TYPE gremlins_requests counter
gremlins_requests_total{route="/v1/events/{id}",method="GET",status="404"} 1
# HELP gremlins_database_errors PostgreSQL connect and query errors.
# TYPE gremlins_database_errors counter
gremlins_database_errors_total 5
# HELP gremlins_cache_errors Redis errors.
# TYPE gremlins_cache_errors counter
gremlins_cache_errors_total 4
# HELP gremlins_in_flight_requests Requests from parsed head to written response.
# TYPE gremlins_in_flight_requests gauge
gremlins_in_flight_requests 1
# HELP gremlins_queue_depth Connections waiting for a worker.
# TYPE gremlins_queue_depth gauge
gremlins_queue_depth 0
# HELP gremlins_buffered_bytes Bytes of request bodies and unwritten responses held (of max_buffered_bytes).
# TYPE gremlins_buffered_bytes gauge
gremlins_buffered_bytes 0
# HELP gremlins_open_connections Open client connections.
# TYPE gremlins_open_connections gauge
gremlins_open_connections 2
# HELP gremlins_shutdown_phase 0 running, 1 draining, 2 closing, 3 cleanup, 4 exited.
# TYPE gremlins_shutdown_phase gauge
gremlins_shutdown_phase 0
# HELP gremlins_refused_overloaded Requests refused 503 with a full queue.
# TYPE gremlins_refused_overloaded counter
gremlins_refused_overloaded_total 3
# HELP gremlins_refused_over_capacity Connections refused 503 beyond max_connections.
# TYPE gremlins_refused_over_capacity counter
gremlins_refused_over_capacity_total 2
# HELP gremlins_reclaimed_idle_connections Idle keep-alive connections closed to admit a new one at max_connections.
# TYPE gremlins_reclaimed_idle_connections counter
gremlins_reclaimed_idle_connections_total 1
# HELP gremlins_accept_errors Accept calls that failed for lack of resources (EMFILE and the like).
# TYPE gremlins_accept_errors counter
gremlins_accept_errors_total 6
# EOF
"#;

    #[test]
    fn the_text_names_types_and_values_every_metric_as_before() {
        let config = ServerConfig {
            listen: "127.0.0.1:0".parse().expect("address"),
            ..ServerConfig::default()
        };
        let server = Server::bind(config).expect("bind");
        let lifecycle = &server.shutdown_handle().lifecycle;
        let counts = &lifecycle.counts;
        counts.refused_overloaded.store(3, Ordering::Relaxed);
        counts.refused_over_capacity.store(2, Ordering::Relaxed);
        counts.reclaimed_idle.store(1, Ordering::Relaxed);
        counts.accept_errors.store(6, Ordering::Relaxed);
        let _request = lifecycle.requests.enter();
        let _connections = [lifecycle.connections.enter(), lifecycle.connections.enter()];
        let cache = Cache::new(None, Duration::from_secs(1), Duration::from_secs(1));
        cache.errors().inc_by(4);
        let metrics = Metrics::new(server.stats(), cache.errors());
        metrics.database_errors.inc_by(5);
        // One label set: a family encodes its label sets in no set order.
        metrics.record(RequestLabels {
            route: "/v1/events/{id}",
            method: "GET",
            status: 404,
        });
        let response = metrics.render();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(String::from_utf8_lossy(response.body()), EXPECTED);
    }
}
