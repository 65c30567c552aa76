//! The reference service: its routes, health and readiness, and the
//! test-only routes.

use std::time::Duration;

use crate::http::{Request, Response, StatusCode};
use crate::lifecycle::ShutdownHandle;
use crate::server::Handler;

/// Longest sleep `/test/sleep` accepts, so a typo cannot park a worker for
/// hours.
const MAX_TEST_SLEEP: Duration = Duration::from_secs(600);

/// The reference service's router.
#[derive(Debug, Clone)]
pub struct App {
    shutdown: ShutdownHandle,
    test_routes: bool,
}

impl App {
    /// The service; `test_routes` adds `/test/sleep` and `/test/panic`.
    pub fn new(shutdown: ShutdownHandle, test_routes: bool) -> Self {
        if test_routes {
            log::warn!(
                "TEST ROUTES ENABLED: /test/sleep and /test/panic are served; never do this in production"
            );
        }
        Self {
            shutdown,
            test_routes,
        }
    }

    fn readyz(&self) -> Response {
        if self.shutdown.is_shutting_down() {
            Response::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting down",
                "DRYAD-SYS-5031",
            )
        } else {
            Response::text(StatusCode::OK, "ready")
        }
    }

    fn test_sleep(request: &Request<'_>) -> Response {
        let Some(millis) = request
            .query_param("ms")
            .and_then(|ms| ms.parse::<u64>().ok())
        else {
            return Response::error(
                StatusCode::BAD_REQUEST,
                "ms must be a whole number of milliseconds",
                "DRYAD-APP-4001",
            );
        };
        std::thread::sleep(Duration::from_millis(millis).min(MAX_TEST_SLEEP));
        Response::text(StatusCode::OK, "ok")
    }
}

/// What a path allows, and the response for a method it allows.
enum Route {
    Found(Response),
    WrongMethod(&'static str),
    Missing,
}

impl Handler for App {
    fn handle(&self, request: &mut Request<'_>) -> Response {
        let get = matches!(request.method(), "GET" | "HEAD");
        let route = match request.path() {
            "/" if get => Route::Found(Response::text(StatusCode::OK, "ok")),
            "/healthz" if get => Route::Found(Response::text(StatusCode::OK, "ok")),
            "/readyz" if get => Route::Found(self.readyz()),
            "/test/sleep" if self.test_routes && get => Route::Found(Self::test_sleep(request)),
            "/test/panic" if self.test_routes && get => panic!("/test/panic was requested"),
            "/" | "/healthz" | "/readyz" => Route::WrongMethod("GET, HEAD"),
            "/test/sleep" | "/test/panic" if self.test_routes => Route::WrongMethod("GET, HEAD"),
            _ => Route::Missing,
        };
        match route {
            Route::Found(response) => response,
            Route::WrongMethod(allow) => Response::error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this route",
                "DRYAD-APP-4050",
            )
            .with_header("Allow", allow),
            Route::Missing => {
                Response::error(StatusCode::NOT_FOUND, "no such route", "DRYAD-APP-4040")
            }
        }
    }
}
