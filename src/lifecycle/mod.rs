//! Phases and the deadline, the in-flight tracker, cleanup hooks, signals
//! and the shutdown report.

mod cleanup;
pub(crate) mod coordinator;
mod counters;
pub mod inflight;
mod report;
mod signals;
mod state;

pub use cleanup::{HookOutcome, HookReport};
pub use inflight::{InFlight, InFlightGuard};
pub use report::{
    AbandonedRequest, EXIT_CLEAN, EXIT_CLEANUP_FAILED, EXIT_DRAIN_TIMED_OUT, EXIT_FORCED_BASE,
    EXIT_THREAD_DIED, Outcome, PhaseDurations, ShutdownReport,
};
pub use signals::SignalListener;
pub use state::{Lifecycle, Phase, ShutdownHandle, Trigger};
