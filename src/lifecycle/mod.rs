//! Phases and the deadline, the in-flight tracker, cleanup hooks, signals
//! and the shutdown report.

mod cleanup;
pub(crate) mod coordinator;
mod counters;
pub(crate) mod drain;
pub(crate) mod inflight;
mod notify;
mod report;
mod restarts;
mod signals;
mod state;

pub use cleanup::{HookOutcome, HookReport};
pub use drain::{DrainEnd, DrainSummary};
#[cfg(feature = "internals")]
pub use inflight::InFlight;
pub(crate) use inflight::InFlightGuard;
pub use report::{
    AbandonedRequest, EXIT_CLEAN, EXIT_CLEANUP_FAILED, EXIT_DRAIN_TIMED_OUT, EXIT_FORCED_BASE,
    EXIT_THREAD_DIED, Outcome, PhaseDurations, ShutdownReport,
};
pub use restarts::{RestartOutcome, RestartRecord};
pub use signals::SignalListener;
pub(crate) use state::Lifecycle;
pub use state::{Phase, ShutdownHandle, Trigger};
