//! Cleanup hooks: registered by name, run once after the drain, last
//! registered first, each on its own thread with its own share of the
//! cleanup timeout, so an error, a panic or a hang in one never stops the
//! others.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::sync;

type HookFn = Box<dyn FnOnce() -> Result<(), String> + Send>;

struct Hook {
    name: String,
    run: HookFn,
}

/// The registered hooks, taken out (so run at most once) by [`Cleanup::run`].
#[derive(Default)]
pub(crate) struct Cleanup {
    hooks: Mutex<Vec<Hook>>,
}

impl std::fmt::Debug for Cleanup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let count = sync::lock(&self.hooks).len();
        f.debug_struct("Cleanup").field("hooks", &count).finish()
    }
}

/// How one hook ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome", content = "detail")]
pub enum HookOutcome {
    /// It returned `Ok`.
    Ok,
    /// It returned an error, with this message.
    Failed(String),
    /// It panicked.
    Panicked,
    /// It was still running when its share of the timeout ran out; its
    /// thread is left behind.
    TimedOut,
}

/// One hook's name, outcome and duration, for the shutdown report.
#[derive(Debug, Clone, Serialize)]
pub struct HookReport {
    /// The name it was registered with.
    pub name: String,
    /// How it ended.
    #[serde(flatten)]
    pub outcome: HookOutcome,
    /// How long it ran (or was waited for), in milliseconds.
    pub ms: u64,
}

impl Cleanup {
    pub(crate) fn register<F, E>(&self, name: &str, hook: F)
    where
        F: FnOnce() -> Result<(), E> + Send + 'static,
        E: std::fmt::Display,
    {
        let run: HookFn = Box::new(move || hook().map_err(|error| error.to_string()));
        sync::lock(&self.hooks).push(Hook {
            name: name.to_owned(),
            run,
        });
    }

    /// Runs every hook not run yet, last registered first, and returns how
    /// each ended. Takes at most `timeout`: each hook may use an equal
    /// share of what is left when it starts, so a hang in one leaves time
    /// for the rest.
    pub(crate) fn run(&self, timeout: Duration) -> Vec<HookReport> {
        let hooks = std::mem::take(&mut *sync::lock(&self.hooks));
        let deadline = Instant::now() + timeout;
        let count = hooks.len();
        hooks
            .into_iter()
            .rev()
            .enumerate()
            .map(|(index, hook)| {
                let left = deadline.saturating_duration_since(Instant::now());
                let share = left / u32::try_from(count - index).unwrap_or(u32::MAX);
                run_one(hook, share)
            })
            .collect()
    }
}

fn run_one(hook: Hook, timeout: Duration) -> HookReport {
    let Hook { name, run } = hook;
    log::info!(
        "cleanup: running hook {name:?} (timeout {} ms)",
        timeout.as_millis()
    );
    let started = Instant::now();
    let (done_tx, done_rx) = crossbeam_channel::bounded(1);
    let spawned = std::thread::Builder::new()
        .name(format!("cleanup-{name}"))
        .spawn(move || {
            // A panic drops `done_tx` unsent, which the receiver sees as
            // disconnection.
            let result = run();
            let _ = done_tx.send(result);
        });
    let outcome = match spawned {
        Err(error) => HookOutcome::Failed(format!("could not start its thread: {error}")),
        Ok(thread) => match done_rx.recv_timeout(timeout) {
            Ok(Ok(())) => {
                let _ = thread.join();
                HookOutcome::Ok
            }
            Ok(Err(message)) => {
                let _ = thread.join();
                HookOutcome::Failed(message)
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                let _ = thread.join();
                HookOutcome::Panicked
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => HookOutcome::TimedOut,
        },
    };
    let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    match &outcome {
        HookOutcome::Ok => log::info!("cleanup: hook {name:?} finished in {ms} ms"),
        HookOutcome::Failed(message) => {
            log::error!("cleanup: hook {name:?} failed after {ms} ms: {message}")
        }
        HookOutcome::Panicked => log::error!("cleanup: hook {name:?} panicked after {ms} ms"),
        HookOutcome::TimedOut => {
            log::error!("cleanup: hook {name:?} still running after {ms} ms; left behind")
        }
    }
    HookReport { name, outcome, ms }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn recorder() -> (Arc<Mutex<Vec<&'static str>>>, Cleanup) {
        (Arc::new(Mutex::new(Vec::new())), Cleanup::default())
    }

    #[test]
    fn hooks_run_in_reverse_registration_order() {
        let (ran, cleanup) = recorder();
        for name in ["first", "second", "third"] {
            let ran = Arc::clone(&ran);
            cleanup.register(name, move || {
                ran.lock().expect("lock").push(name);
                Ok::<(), String>(())
            });
        }
        let reports = cleanup.run(Duration::from_secs(5));
        assert_eq!(*ran.lock().expect("lock"), ["third", "second", "first"]);
        assert!(
            reports
                .iter()
                .all(|report| report.outcome == HookOutcome::Ok)
        );
    }

    #[test]
    fn a_hook_runs_once_even_if_cleanup_runs_twice() {
        let (ran, cleanup) = recorder();
        let inner = Arc::clone(&ran);
        cleanup.register("once", move || {
            inner.lock().expect("lock").push("once");
            Ok::<(), String>(())
        });
        cleanup.run(Duration::from_secs(5));
        assert!(cleanup.run(Duration::from_secs(5)).is_empty());
        assert_eq!(ran.lock().expect("lock").len(), 1);
    }

    #[test]
    fn error_panic_and_hang_do_not_stop_the_others() {
        let (ran, cleanup) = recorder();
        let last = Arc::clone(&ran);
        cleanup.register("runs-last", move || {
            last.lock().expect("lock").push("runs-last");
            Ok::<(), String>(())
        });
        cleanup.register("errors", || Err("disk full"));
        cleanup.register("panics", || -> Result<(), String> { panic!("hook bug") });
        let (release_tx, release_rx) = crossbeam_channel::bounded::<()>(0);
        cleanup.register("hangs", move || {
            let _ = release_rx.recv();
            Ok::<(), String>(())
        });
        let started = Instant::now();
        // Four hooks in 2 s: the hanging one, first to run, gets 500 ms.
        let reports = cleanup.run(Duration::from_secs(2));
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "cleanup took {:?}",
            started.elapsed()
        );
        let outcomes: Vec<_> = reports
            .iter()
            .map(|report| (report.name.as_str(), report.outcome.clone()))
            .collect();
        assert_eq!(
            outcomes,
            [
                ("hangs", HookOutcome::TimedOut),
                ("panics", HookOutcome::Panicked),
                ("errors", HookOutcome::Failed("disk full".into())),
                ("runs-last", HookOutcome::Ok),
            ]
        );
        assert_eq!(*ran.lock().expect("lock"), ["runs-last"]);
        drop(release_tx);
    }
}
