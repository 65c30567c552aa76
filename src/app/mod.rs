//! The reference service: its routes, health and readiness, metrics, the
//! events API over its store and cache, and the test-only routes.

mod cache;
mod clients;
mod config;
mod counters;
mod events;
mod metrics;
mod redact;
mod services;
mod spool;
mod store;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::http::WireError;
use crate::http::{Request, Response, StatusCode};
use crate::lifecycle::ShutdownHandle;
use crate::server::{Handler, Stats};
use crate::sync;

use cache::Cache;
pub use config::ServiceConfig;
use counters::{PeriodicFlush, RequestCounters};
use metrics::{Metrics, RequestLabels};
use services::Services;
use spool::Spool;

/// Longest sleep `/test/sleep` accepts, so a typo cannot park a worker for
/// hours.
const MAX_TEST_SLEEP: Duration = Duration::from_secs(600);
/// How long a dependency check behind `/readyz` is reused, so probes do
/// not load the database.
const READINESS_CACHE: Duration = Duration::from_secs(1);

/// The reference service's router.
#[derive(Debug)]
pub struct App {
    services: Services,
    counters: Arc<RequestCounters>,
    shutdown: ShutdownHandle,
    test_routes: bool,
    /// The last dependency check's result and when it finished. Written by
    /// the worker holding `checking` when its check ends, read by every
    /// `/readyz`; the lock is held only to copy the value in or out, never
    /// during a check.
    readiness: Mutex<Option<(Instant, bool)>>,
    /// Whether a worker is running a dependency check now. Set by the
    /// `/readyz` that finds the result expired (a compare-exchange, so one
    /// worker wins), cleared by that worker's [`Checking`] guard. While it
    /// is set, other `/readyz` answer from the last result instead of
    /// checking too, so a hung database occupies at most one worker.
    /// Acquire/Release: the winner's check happens after the previous
    /// winner's write of `readiness`.
    checking: AtomicBool,
}

/// Clears [`App::checking`] when dropped, so a panicking check does not
/// stop readiness checks for good.
struct Checking<'a>(&'a AtomicBool);

impl Drop for Checking<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl App {
    /// Builds the service from `config`: opens the store and cache
    /// (lazily: nothing connects yet), checks the spool can write under the
    /// temp dir (its dir is created with the first spooled body), starts the
    /// counter flush, and registers the cleanup hooks `cleanup_temp_files`
    /// and `flush_metrics` (which run in the reverse order). `/metrics`
    /// reads the server's numbers through `stats` ([`Server::stats`]).
    ///
    /// [`Server::stats`]: crate::Server::stats
    ///
    /// Fails when no file can be created under the system temp dir
    /// (`TMPDIR`) or the counter flush thread cannot be started; the
    /// error's message says which.
    pub fn new(
        config: &ServiceConfig,
        shutdown: ShutdownHandle,
        stats: Stats,
    ) -> std::io::Result<Self> {
        if config.test_routes {
            log::warn!(
                "TEST ROUTES ENABLED: /test/sleep and /test/panic are served; never do this in production"
            );
        }
        let store = store::open(config);
        let cache = Arc::new(Cache::new(
            config.redis_url.as_deref(),
            config.redis_timeout,
            config.cache_ttl,
        ));
        let spool = Arc::new(
            Spool::create(config.spool_threshold_bytes).map_err(|error| {
                std::io::Error::new(
                    error.kind(),
                    format!(
                        "could not create a spool file under {}: {error}",
                        std::env::temp_dir().display()
                    ),
                )
            })?,
        );
        let counters = Arc::new(RequestCounters::default());
        {
            let spool = Arc::clone(&spool);
            shutdown.register_cleanup("cleanup_temp_files", move || spool.remove());
        }
        if cache.is_enabled() {
            let flush = PeriodicFlush::start(
                Arc::clone(&counters),
                Arc::clone(&cache),
                config.counter_flush_interval,
            )
            .map_err(|error| {
                std::io::Error::new(
                    error.kind(),
                    format!("could not start the counter flush thread: {error}"),
                )
            })?;
            let counters = Arc::clone(&counters);
            let cache = Arc::clone(&cache);
            shutdown.register_cleanup("flush_metrics", move || {
                flush.stop();
                counters.flush(&cache)
            });
        }
        Ok(Self {
            services: Services {
                store,
                metrics: Metrics::new(stats, cache.errors()),
                cache,
                spool,
            },
            counters,
            shutdown,
            test_routes: config.test_routes,
            readiness: Mutex::new(None),
            checking: AtomicBool::new(false),
        })
    }

    fn readyz(&self) -> Response {
        self.readyz_from_memory()
            .unwrap_or_else(|| Self::readiness_answer(self.readiness()))
    }

    /// The readiness answer when it needs no check: shutting down, or the
    /// last check is younger than [`READINESS_CACHE`].
    fn readyz_from_memory(&self) -> Option<Response> {
        if self.shutdown.is_shutting_down() {
            return Some(WireError::NotReadyShuttingDown.response());
        }
        match *sync::lock(&self.readiness) {
            Some((checked, ready)) if checked.elapsed() < READINESS_CACHE => {
                Some(Self::readiness_answer(ready))
            }
            _ => None,
        }
    }

    fn readiness_answer(ready: bool) -> Response {
        if ready {
            Response::text(StatusCode::OK, "ready")
        } else {
            WireError::NotReadyDatabase.response()
        }
    }

    /// Whether the dependencies are ready, checked again: one worker checks
    /// (bounded by the store's own timeout) while the others answer from
    /// the last result, or "not ready" before the first check ended.
    fn readiness(&self) -> bool {
        let last = *sync::lock(&self.readiness);
        if self
            .checking
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return last.is_some_and(|(_, ready)| ready);
        }
        let _checking = Checking(&self.checking);
        let ready = self.services.store.check().is_ok();
        *sync::lock(&self.readiness) = Some((Instant::now(), ready));
        ready
    }

    fn test_sleep(request: &Request<'_>) -> Response {
        let Some(millis) = request
            .query_param("ms")
            .and_then(|ms| ms.parse::<u64>().ok())
        else {
            return WireError::BadSleep.response();
        };
        std::thread::sleep(Duration::from_millis(millis).min(MAX_TEST_SLEEP));
        Response::text(StatusCode::OK, "ok")
    }

    /// Routes a request whose answer is made from memory at once (no I/O,
    /// no wait): the health checks; `None` for every other.
    fn route_from_memory(&self, request: &Request<'_>) -> Option<(&'static str, Response)> {
        if !matches!(request.method(), "GET" | "HEAD") {
            return None;
        }
        match request.path() {
            "/" => Some(("/", Response::text(StatusCode::OK, "ok"))),
            "/healthz" => Some(("/healthz", Response::text(StatusCode::OK, "ok"))),
            "/readyz" => self
                .readyz_from_memory()
                .map(|response| ("/readyz", response)),
            _ => None,
        }
    }

    /// Routes a request: the route template (for metrics) and the answer.
    fn route(&self, request: &mut Request<'_>) -> (&'static str, Response) {
        if let Some(routed) = self.route_from_memory(request) {
            return routed;
        }
        let method = request.method();
        let read = matches!(method, "GET" | "HEAD");
        let path = request.path();
        let wrong_method = |route: &'static str, allow: &'static str| {
            let response = WireError::MethodNotAllowed
                .response()
                .with_header("Allow", allow);
            (route, response)
        };
        if let Some(id) = path.strip_prefix("/v1/events/") {
            return if read {
                ("/v1/events/{id}", events::get(&self.services, id))
            } else {
                wrong_method("/v1/events/{id}", "GET, HEAD")
            };
        }
        match (path, read) {
            ("/readyz", true) => ("/readyz", self.readyz()),
            ("/metrics", true) => ("/metrics", self.services.metrics.render()),
            ("/v1/events", true) => ("/v1/events", events::list(&self.services, request)),
            ("/v1/events", false) if method == "POST" => {
                ("/v1/events", events::create(&self.services, request))
            }
            ("/v1/events", false) => wrong_method("/v1/events", "GET, HEAD, POST"),
            ("/test/sleep", true) if self.test_routes => ("/test/sleep", Self::test_sleep(request)),
            ("/test/panic", true) if self.test_routes => panic!("/test/panic was requested"),
            ("/" | "/healthz" | "/readyz" | "/metrics", false) => {
                wrong_method("other", "GET, HEAD")
            }
            _ => ("other", WireError::NoSuchRoute.response()),
        }
    }
}

/// The methods the request counter names; others count as `OTHER`.
fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        _ => "OTHER",
    }
}

impl App {
    /// Counts an answer in the metrics and, with a cache, the counters.
    fn counted(
        &self,
        method: &'static str,
        (route, response): (&'static str, Response),
    ) -> Response {
        let status = response.status().0;
        self.services.metrics.record(RequestLabels {
            route,
            method,
            status,
        });
        if self.services.cache.is_enabled() {
            self.counters.record(route, method, status);
        }
        response
    }
}

impl Handler for App {
    fn handle(&self, request: &mut Request<'_>) -> Response {
        let method = method_label(request.method());
        let routed = self.route(request);
        self.counted(method, routed)
    }

    /// The health checks, answered from memory (see `route_from_memory`).
    fn handle_inline(&self, request: &mut Request<'_>) -> Option<Response> {
        let method = method_label(request.method());
        let routed = self.route_from_memory(request)?;
        Some(self.counted(method, routed))
    }

    /// Closes this worker's connections: PostgreSQL (which sends
    /// Terminate) first, then Redis.
    fn worker_exit(&self) {
        store::close_worker_connection();
        cache::close_worker_connection();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::ParsedRequest;
    use crate::{Server, ServerConfig};

    /// The app over the in-memory store, on a server bound to a free port
    /// and never run (its handle and numbers are what the app reads).
    fn reference_app(test_routes: bool) -> (Server, App) {
        let config = ServerConfig {
            listen: "127.0.0.1:0".parse().expect("an address"),
            ..ServerConfig::default()
        };
        let server = Server::bind(config).expect("bind a free port on 127.0.0.1");
        let service = ServiceConfig {
            test_routes,
            ..ServiceConfig::default()
        };
        let app =
            App::new(&service, server.shutdown_handle(), server.stats()).expect("the app builds");
        (server, app)
    }

    /// The route template and the answer for `method path`.
    fn ask(app: &App, method: &str, path: &str) -> (&'static str, Response) {
        let bytes = format!("{method} {path} HTTP/1.1\r\nHost: t\r\n\r\n");
        let parsed = ParsedRequest::parse(bytes.as_bytes()).expect("a well-framed request");
        app.route(&mut parsed.request())
    }

    fn code(response: &Response) -> String {
        let body: serde_json::Value = serde_json::from_slice(response.body()).expect("JSON");
        body["code"].as_str().unwrap_or_default().to_owned()
    }

    #[test]
    fn routes_answer_by_path_and_method_under_their_templates() {
        let (_server, app) = reference_app(false);
        let (route, response) = ask(&app, "GET", "/healthz");
        assert_eq!((route, response.status()), ("/healthz", StatusCode::OK));
        let (route, response) = ask(&app, "HEAD", "/");
        assert_eq!((route, response.status()), ("/", StatusCode::OK));
        let (route, response) = ask(&app, "GET", "/v1/events/17");
        assert_eq!(route, "/v1/events/{id}");
        assert_eq!(code(&response), WireError::NoSuchEvent.code());
        let (route, response) = ask(&app, "GET", "/nope");
        assert_eq!(route, "other");
        assert_eq!(code(&response), WireError::NoSuchRoute.code());
    }

    #[test]
    fn a_wrong_method_is_405_with_the_methods_the_route_takes() {
        let (_server, app) = reference_app(false);
        let (_, response) = ask(&app, "DELETE", "/v1/events");
        assert_eq!(code(&response), WireError::MethodNotAllowed.code());
        assert_eq!(response.header("Allow"), Some("GET, HEAD, POST"));
        let (_, response) = ask(&app, "POST", "/healthz");
        assert_eq!(response.header("Allow"), Some("GET, HEAD"));
        let (_, response) = ask(&app, "PUT", "/v1/events/1");
        assert_eq!(response.header("Allow"), Some("GET, HEAD"));
    }

    #[test]
    fn readiness_fails_once_shutdown_starts() {
        let (server, app) = reference_app(false);
        assert_eq!(ask(&app, "GET", "/readyz").1.status(), StatusCode::OK);
        // The coordinator of a running server sets the phase when the
        // shutdown starts; this server does not run, so it is set here.
        server
            .shutdown_handle()
            .lifecycle
            .set_phase(crate::lifecycle::Phase::Draining);
        let (_, response) = ask(&app, "GET", "/readyz");
        assert_eq!(code(&response), WireError::NotReadyShuttingDown.code());
    }

    #[test]
    fn test_routes_exist_only_when_enabled() {
        let (_server, app) = reference_app(false);
        let (_, response) = ask(&app, "GET", "/test/sleep?ms=1");
        assert_eq!(code(&response), WireError::NoSuchRoute.code());
        let (_server, app) = reference_app(true);
        let (route, response) = ask(&app, "GET", "/test/sleep?ms=1");
        assert_eq!((route, response.status()), ("/test/sleep", StatusCode::OK));
        let (_, response) = ask(&app, "GET", "/test/sleep?ms=soon");
        assert_eq!(code(&response), WireError::BadSleep.code());
    }

    #[test]
    fn metrics_are_one_openmetrics_text() {
        let (_server, app) = reference_app(false);
        let (route, response) = ask(&app, "GET", "/metrics");
        assert_eq!(route, "/metrics");
        let text = std::str::from_utf8(response.body()).expect("UTF-8");
        assert!(
            text.contains("# TYPE gremlins_open_connections gauge"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
