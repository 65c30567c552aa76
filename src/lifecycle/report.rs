//! The shutdown report, logged as one line of JSON last, and the exit
//! code it implies.

use serde::Serialize;

use super::cleanup::{HookOutcome, HookReport};
use super::drain::DrainSummary;
use super::restarts::RestartRecord;
use super::state::Trigger;

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

/// How the shutdown went, as the report's `outcome` says it; each maps to
/// one exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Outcome {
    /// Every request finished and every hook succeeded.
    Clean,
    /// The drain reached `shutdown_timeout` with connections still open.
    DrainTimedOut,
    /// The drain finished but a cleanup hook failed, panicked or timed out.
    CleanupFailed,
    /// A thread the server cannot run without died; the report's
    /// `failed_thread` names it.
    ThreadDied,
}

impl Outcome {
    /// The outcome of a shutdown: a dead thread first, then a drain that
    /// timed out, then a failed hook.
    pub(crate) fn of(failed_thread: Option<&str>, drained: bool, hooks: &[HookReport]) -> Self {
        if failed_thread.is_some() {
            Self::ThreadDied
        } else if !drained {
            Self::DrainTimedOut
        } else if hooks.iter().any(|hook| hook.outcome != HookOutcome::Ok) {
            Self::CleanupFailed
        } else {
            Self::Clean
        }
    }

    /// The process exit code for this outcome: [`EXIT_CLEAN`],
    /// [`EXIT_DRAIN_TIMED_OUT`], [`EXIT_CLEANUP_FAILED`] or
    /// [`EXIT_THREAD_DIED`].
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Clean => EXIT_CLEAN,
            Self::DrainTimedOut => EXIT_DRAIN_TIMED_OUT,
            Self::CleanupFailed => EXIT_CLEANUP_FAILED,
            Self::ThreadDied => EXIT_THREAD_DIED,
        }
    }
}

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
    /// Serving on, with `/readyz` 503, before closing the listener: the
    /// drain, fixed or adaptive (the report's `drain` says why it ended).
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
    /// This process.
    pub pid: u32,
    /// What started the shutdown: `SIGTERM`, `SIGINT`, `handle`,
    /// `thread_died` or `restart`.
    pub trigger: Trigger,
    /// The hot restart's successor that took over, when one did.
    pub successor_pid: Option<u32>,
    /// Every hot restart tried, in order, the failed ones too.
    pub restarts: Vec<RestartRecord>,
    /// `clean`, `drain_timed_out`, `cleanup_failed` or `thread_died`.
    pub outcome: Outcome,
    /// The process exit code the outcome maps to ([`Outcome::exit_code`]).
    pub exit_code: u8,
    /// The drain before the listener closed: its length, why it ended and
    /// what still arrived.
    pub drain: DrainSummary,
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
    /// The report as one line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::json!({ "shutdown_report": self }).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_outcome_is_serialised_as_the_report_names_it() {
        for (outcome, name, code) in [
            (Outcome::Clean, "clean", EXIT_CLEAN),
            (
                Outcome::DrainTimedOut,
                "drain_timed_out",
                EXIT_DRAIN_TIMED_OUT,
            ),
            (
                Outcome::CleanupFailed,
                "cleanup_failed",
                EXIT_CLEANUP_FAILED,
            ),
            (Outcome::ThreadDied, "thread_died", EXIT_THREAD_DIED),
        ] {
            assert_eq!(serde_json::to_value(outcome).expect("json"), name);
            assert_eq!(outcome.exit_code(), code, "{name}");
        }
    }

    #[test]
    fn a_dead_thread_outweighs_a_timed_out_drain_which_outweighs_a_failed_hook() {
        let failed = [HookReport {
            name: "flush".into(),
            outcome: HookOutcome::Panicked,
            ms: 1,
        }];
        assert_eq!(
            Outcome::of(Some("poller"), false, &failed),
            Outcome::ThreadDied
        );
        assert_eq!(Outcome::of(None, false, &failed), Outcome::DrainTimedOut);
        assert_eq!(Outcome::of(None, true, &failed), Outcome::CleanupFailed);
        assert_eq!(Outcome::of(None, true, &[]), Outcome::Clean);
    }
}
