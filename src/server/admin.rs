//! The admin listener's own endpoint, `/drain`: the platform (the
//! kubelet's `preStop` hook) asks for the drain before it sends SIGTERM,
//! and the answer comes when the drain has ended and the listener is
//! closed, so the hook lasts as long as the drain and SIGTERM follows once
//! traffic has stopped. Every other request on the admin listener goes to
//! the handler.

use std::time::{Duration, Instant};

use crate::http::{Response, StatusCode, WireError};
use crate::lifecycle::{Lifecycle, Trigger};

/// The drain endpoint's path on the admin listener.
pub(crate) const DRAIN_PATH: &str = "/drain";

/// Beyond the longest drain, how long the drain endpoint waits for the
/// coordinator to end it before it answers that it did not.
const DRAIN_ANSWER_MARGIN: Duration = Duration::from_secs(2);

/// Answers `GET` or `POST /drain`: starts the shutdown (as SIGTERM would;
/// nothing more if one is under way), waits until the drain has ended and
/// the listener is closed, at most `longest_drain` and a margin, and
/// answers 200 with the drain as the shutdown report gives it.
pub(crate) fn drain(method: &str, lifecycle: &Lifecycle, longest_drain: Duration) -> Response {
    if method != "GET" && method != "POST" {
        return WireError::MethodNotAllowed
            .response()
            .with_header("Allow", "GET, POST");
    }
    if !lifecycle.is_triggered() {
        log::info!("shutdown: asked for by the drain endpoint");
    }
    lifecycle.trigger(Trigger::DrainRequest);
    let until = Instant::now() + longest_drain + DRAIN_ANSWER_MARGIN;
    match lifecycle.arrivals.wait_for_end(until) {
        Some(drain) => Response::json(StatusCode::OK, &serde_json::json!({ "drain": drain })),
        None => WireError::Internal.response_with_message("the drain did not end in time"),
    }
}
