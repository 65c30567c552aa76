//! The shutdown report, logged as one line of JSON last, and the exit
//! code it implies.

use serde::Serialize;

use super::cleanup::{HookOutcome, HookReport};

/// Exit code: every request finished and every hook succeeded.
pub const EXIT_CLEAN: u8 = 0;
/// Exit code: the drain reached `shutdown_timeout` with connections still
/// open: requests still running were abandoned (and logged), or a client
/// was still sending a head or a body.
pub const EXIT_DRAIN_TIMED_OUT: u8 = 3;
/// Exit code: the drain finished but a cleanup hook failed, panicked or
/// timed out.
pub const EXIT_CLEANUP_FAILED: u8 = 4;
/// Exit code: a thread the server cannot run without (the acceptor or the
/// poller) died; the report's `failed_thread` names it. The server shut
/// down as gracefully as it still could.
pub const EXIT_THREAD_DIED: u8 = 5;
/// Exit codes 128 + signal number mean a second signal forced the exit
/// (143 for SIGTERM, 130 for SIGINT); no report is written then.
pub const EXIT_FORCED_BASE: u8 = 128;

/// A request still running at the deadline.
#[derive(Debug, Clone, Serialize)]
pub struct AbandonedRequest {
    /// Its method.
    pub method: String,
    /// Its path.
    pub path: String,
    /// How long it had been running, in milliseconds.
    pub age_ms: u64,
    /// The worker running it.
    pub worker: usize,
}

/// How long each phase took, in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PhaseDurations {
    /// Serving on, with `/readyz` 503, before closing the listener.
    pub drain_delay_ms: u64,
    /// From closing the listener until every connection was closed (or the
    /// deadline).
    pub drain_ms: u64,
    /// Running the cleanup hooks.
    pub cleanup_ms: u64,
    /// Stopping the poller and joining the workers.
    pub stop_ms: u64,
    /// From the trigger until the report.
    pub total_ms: u64,
}

/// What the shutdown did, as logged in its last line.
#[derive(Debug, Clone, Serialize)]
pub struct ShutdownReport {
    /// `SIGTERM`, `SIGINT` or `handle`.
    pub trigger: String,
    /// `clean`, `drain_timed_out`, `cleanup_failed` or `thread_died`.
    pub outcome: &'static str,
    /// The process exit code this outcome maps to.
    pub exit_code: u8,
    /// Time per phase.
    pub phases: PhaseDurations,
    /// Requests completed after the trigger.
    pub requests_drained: u64,
    /// Request heads fully received since the server started.
    pub requests_received: u64,
    /// Responses to those requests written to their last byte since the
    /// server started. Equal to `requests_received` when nothing was lost;
    /// short of it by the requests abandoned at the deadline and those
    /// whose client could not be written to.
    pub responses_written: u64,
    /// Requests still running at the deadline.
    pub requests_abandoned: usize,
    /// Requests answered 503 `DRYAD-SYS-5003` at the deadline.
    pub requests_refused_503: u64,
    /// Idle keep-alive connections closed at last call.
    pub connections_closed_idle: u64,
    /// The thread whose death ended the process, if one did.
    pub failed_thread: Option<&'static str>,
    /// The abandoned requests themselves.
    pub abandoned: Vec<AbandonedRequest>,
    /// Each cleanup hook, in the order it ran.
    pub hooks: Vec<HookReport>,
}

impl ShutdownReport {
    /// The outcome and exit code for a drain result and hook reports.
    pub(crate) fn outcome_of(
        failed_thread: Option<&str>,
        drained: bool,
        hooks: &[HookReport],
    ) -> (&'static str, u8) {
        if failed_thread.is_some() {
            ("thread_died", EXIT_THREAD_DIED)
        } else if !drained {
            ("drain_timed_out", EXIT_DRAIN_TIMED_OUT)
        } else if hooks.iter().any(|hook| hook.outcome != HookOutcome::Ok) {
            ("cleanup_failed", EXIT_CLEANUP_FAILED)
        } else {
            ("clean", EXIT_CLEAN)
        }
    }

    /// The report as one line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::json!({ "shutdown_report": self }).to_string()
    }
}
