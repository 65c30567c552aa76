//! The shutdown sequence: phases in order against one deadline.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::drain::{DrainEnd, DrainPolicy};
use super::report::{AbandonedRequest, Outcome, PhaseDurations, ShutdownReport};
use super::restarts::RestartOutcome;
use super::state::{Lifecycle, Phase, Trigger};

/// What the service manager is told the stop may take beyond the
/// shutdown and cleanup timeouts: the threads' stop and the exit.
const STOP_MARGIN: Duration = Duration::from_secs(1);

/// What the coordinator asks of the server at each step. The server
/// implements it; tests use a fake.
pub(crate) trait Drain {
    /// Stops admitting connections, accepts and registers those already in
    /// the kernel's backlog and those whose handshakes complete, until none
    /// is left or `until` passes, then closes the listener. With
    /// `hand_over` (a hot restart's successor serves the same sockets), it
    /// only stops accepting and leaves the sockets alone.
    fn stop_accepting(&mut self, until: Instant, hand_over: bool);
    /// Gives idle keep-alive connections until `until` to send one last
    /// request; quiet ones are closed then.
    fn last_call(&mut self, until: Instant);
    /// At the deadline: answers every connection still queued for a worker
    /// 503 `DRYAD-SYS-5003` and returns how many.
    fn refuse_queued(&mut self) -> u64;
    /// The requests still running.
    fn running(&self) -> Vec<AbandonedRequest>;
    /// Stops the poller and the workers; waits (at most until `deadline`)
    /// for every worker but the `abandoned` ones (by id) to exit.
    fn stop(&mut self, abandoned: &[usize], deadline: Instant);
}

/// The timeouts the sequence runs against.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub(crate) drain: DrainPolicy,
    pub(crate) shutdown: Duration,
    pub(crate) last_call: Duration,
    pub(crate) cleanup: Duration,
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Waits for a shutdown trigger, then runs the shutdown:
///
/// 1. Draining: `/readyz` turns 503 and responses say `Connection: close`
///    at once; connections are still accepted until the drain ends (a
///    fixed delay, or once traffic has stopped: see
///    [`DrainPolicy`]), at most `drain.longest()`.
/// 2. Closing: the backlog is accepted and the listener closed; idle
///    keep-alive connections get a last call.
/// 3. Waits until every connection is closed (their requests answered) or
///    the deadline, `shutdown` after the drain's end. Interrupted at the
///    deadline: queued requests get 503, running ones are abandoned and
///    logged.
/// 4. Cleanup hooks, bounded by `cleanup`.
/// 5. Workers stop (dropping their clients), bounded.
///
/// Afterwards the phase is `Exited` and the returned report says how it
/// went; the caller logs it and exits with its code.
pub(crate) fn run(
    lifecycle: &Lifecycle,
    timeouts: Timeouts,
    server: &mut impl Drain,
) -> ShutdownReport {
    let trigger = lifecycle.wait_for_trigger();
    let started = Instant::now();
    lifecycle.set_phase(Phase::Draining);
    // After a hot restart the successor serves the same sockets: there is
    // no load balancer to wait for, and the service manager hears from the
    // successor now.
    let hand_over = trigger == Trigger::Restart;
    let policy = if hand_over {
        DrainPolicy::NONE
    } else {
        timeouts.drain
    };
    if !hand_over {
        lifecycle.notify.stopping();
        lifecycle
            .notify
            .extend_timeout(policy.longest() + timeouts.shutdown + timeouts.cleanup + STOP_MARGIN);
    }
    log::info!(
        "shutdown: {} received; draining: /readyz now 503, responses close their connections; {}",
        trigger.name(),
        policy.describe()
    );
    let mut phases = PhaseDurations::default();

    let drain = policy.wait(&lifecycle.arrivals, started);
    phases.drain_delay_ms = millis(started.elapsed());
    if drain.reason != DrainEnd::None {
        log::info!(
            "shutdown: drain ended ({}) after {} ms: {} new connections (the last at {}), {} new \
             requests",
            drain.reason.name(),
            drain.length_ms,
            drain.new_connections,
            drain
                .last_connection_ms
                .map_or_else(|| "none".to_owned(), |ms| format!("{ms} ms")),
            drain.new_requests
        );
    }
    let deadline = Instant::now() + timeouts.shutdown;
    lifecycle.set_deadline(deadline);
    log::info!(
        "shutdown: closing the listener; deadline in {} ms",
        timeouts.shutdown.as_millis()
    );

    let closing_started = Instant::now();
    lifecycle.set_phase(Phase::Closing);
    // The last call starts first, so connections accepted from here on
    // get it too.
    let last_call = (Instant::now() + timeouts.last_call).min(deadline);
    server.last_call(last_call);
    // The backlog is admitted until it is empty, bounded by the deadline,
    // not by the last call: an accept that fails for lack of descriptors
    // (EMFILE) is retried as the last call closes idle connections, and a
    // connection the kernel completed is served, never reset.
    server.stop_accepting(deadline, hand_over);
    // The drain endpoint answers now, not when the drain ended: SIGTERM
    // follows its answer, and a client connecting after it must be
    // refused, not admitted (the listener is closed by now).
    lifecycle.arrivals.end(drain);
    log::info!(
        "shutdown: listener closed; {} connections open, {} requests in flight; idle connections get a \
         last call of {} ms",
        lifecycle.connections.count(),
        lifecycle.requests.count(),
        last_call
            .saturating_duration_since(Instant::now())
            .as_millis()
    );
    let drained = lifecycle.connections.wait_idle(deadline);
    let mut abandoned = Vec::new();
    if drained {
        log::info!(
            "shutdown: drain complete in {} ms",
            closing_started.elapsed().as_millis()
        );
    } else {
        let refused = server.refuse_queued();
        lifecycle
            .counts
            .refused_shutting_down
            .fetch_add(refused, Ordering::Relaxed);
        abandoned = server.running();
        log::warn!(
            "shutdown: deadline reached with {} requests running; {} queued requests answered 503",
            abandoned.len(),
            refused
        );
        for request in &abandoned {
            log::warn!(
                "shutdown: abandoned {} {} after {} ms on worker {}",
                request.method,
                request.path,
                request.age_ms,
                request.worker
            );
        }
    }
    // Under systemd, exiting first would get a predecessor that still
    // drains killed.
    lifecycle.restarts.wait_for_predecessor(deadline);
    phases.drain_ms = millis(closing_started.elapsed());

    let cleanup_started = Instant::now();
    lifecycle.set_phase(Phase::Cleanup);
    log::info!(
        "shutdown: running cleanup hooks (timeout {} ms)",
        timeouts.cleanup.as_millis()
    );
    let hooks = lifecycle.cleanup.run(timeouts.cleanup);
    phases.cleanup_ms = millis(cleanup_started.elapsed());

    let stop_started = Instant::now();
    // Idle workers exit at once; the wait is bounded by the same budget as
    // everything else, so exit never comes later than both timeouts.
    let abandoned_workers: Vec<usize> = abandoned.iter().map(|request| request.worker).collect();
    server.stop(&abandoned_workers, deadline + timeouts.cleanup);
    phases.stop_ms = millis(stop_started.elapsed());
    lifecycle.set_phase(Phase::Exited);
    phases.total_ms = millis(started.elapsed());
    log::info!("shutdown: workers stopped; exiting");

    let failed_thread = lifecycle.failed_thread.get().copied();
    let outcome = Outcome::of(failed_thread, drained, &hooks);
    let counts = &lifecycle.counts;
    let restarts = lifecycle.restarts.records();
    ShutdownReport {
        pid: std::process::id(),
        trigger,
        successor_pid: restarts
            .iter()
            .find(|restart| restart.outcome == RestartOutcome::TookOver)
            .and_then(|restart| restart.successor_pid),
        restarts,
        outcome,
        exit_code: outcome.exit_code(),
        drain,
        phases,
        requests_drained: counts.drained.load(Ordering::Relaxed),
        requests_received: counts.requests_received.load(Ordering::Relaxed),
        responses_written: counts.responses_written.load(Ordering::Relaxed),
        requests_abandoned: abandoned.len(),
        requests_refused_503: counts.refused_shutting_down.load(Ordering::Relaxed),
        connections_closed_idle: counts.closed_idle.load(Ordering::Relaxed),
        failed_thread,
        abandoned,
        hooks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::report::{EXIT_CLEAN, EXIT_DRAIN_TIMED_OUT};
    use std::sync::Arc;

    /// A server with nothing but the connections the test opens.
    #[derive(Default)]
    struct FakeServer {
        steps: Vec<&'static str>,
        running: Vec<AbandonedRequest>,
        reached_last_call: Option<crossbeam_channel::Sender<()>>,
    }

    impl Drain for FakeServer {
        fn stop_accepting(&mut self, _until: Instant, _hand_over: bool) {
            self.steps.push("stop_accepting");
        }
        fn last_call(&mut self, _until: Instant) {
            self.steps.push("last_call");
            if let Some(reached) = &self.reached_last_call {
                let _ = reached.send(());
            }
        }
        fn refuse_queued(&mut self) -> u64 {
            self.steps.push("refuse_queued");
            2
        }
        fn running(&self) -> Vec<AbandonedRequest> {
            self.running.clone()
        }
        fn stop(&mut self, _abandoned: &[usize], _deadline: Instant) {
            self.steps.push("stop");
        }
    }

    fn timeouts(shutdown: Duration) -> Timeouts {
        Timeouts {
            drain: DrainPolicy::NONE,
            shutdown,
            last_call: Duration::from_millis(10),
            cleanup: Duration::from_secs(1),
        }
    }

    #[test]
    fn a_tracked_connection_holds_the_drain_until_it_ends() {
        let lifecycle = Lifecycle::new();
        let connection = lifecycle.connections.enter();
        lifecycle.trigger(Trigger::Handle);
        let (reached_tx, reached_rx) = crossbeam_channel::bounded(1);
        let coordinator = {
            let lifecycle = Arc::clone(&lifecycle);
            std::thread::spawn(move || {
                let mut server = FakeServer {
                    reached_last_call: Some(reached_tx),
                    ..FakeServer::default()
                };
                let report = run(&lifecycle, timeouts(Duration::from_secs(10)), &mut server);
                (report, server.steps)
            })
        };
        reached_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("the coordinator should reach the last call");
        assert_eq!(
            lifecycle.phase(),
            Phase::Closing,
            "the drain must wait for the open connection"
        );
        assert!(!coordinator.is_finished());
        drop(connection);
        let (report, steps) = coordinator.join().expect("coordinator");
        assert_eq!(lifecycle.phase(), Phase::Exited);
        assert_eq!(report.exit_code, EXIT_CLEAN);
        assert_eq!(report.outcome, Outcome::Clean);
        assert_eq!(steps, ["last_call", "stop_accepting", "stop"]);
    }

    #[test]
    fn the_drain_gives_up_at_the_deadline_and_reports_what_is_left() {
        let lifecycle = Lifecycle::new();
        let _stuck = lifecycle.connections.enter();
        lifecycle.trigger(Trigger::Sigterm);
        let mut server = FakeServer {
            running: vec![AbandonedRequest {
                method: "GET".into(),
                path: "/slow".into(),
                age_ms: 90,
                worker: 3,
            }],
            ..FakeServer::default()
        };
        let started = Instant::now();
        let report = run(
            &lifecycle,
            timeouts(Duration::from_millis(100)),
            &mut server,
        );
        assert!(started.elapsed() >= Duration::from_millis(100));
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(report.exit_code, EXIT_DRAIN_TIMED_OUT);
        assert_eq!(report.trigger, Trigger::Sigterm);
        assert_eq!(report.requests_abandoned, 1);
        assert_eq!(report.requests_refused_503, 2);
        assert_eq!(report.abandoned[0].path, "/slow");
        assert_eq!(
            server.steps,
            ["last_call", "stop_accepting", "refuse_queued", "stop"]
        );
    }

    #[test]
    fn a_hook_runs_once_even_if_shutdown_is_asked_twice() {
        let lifecycle = Lifecycle::new();
        let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = Arc::clone(&runs);
        lifecycle.cleanup.register("count", move || {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok::<(), String>(())
        });
        lifecycle.trigger(Trigger::Handle);
        lifecycle.trigger(Trigger::Sigterm);
        let report = run(
            &lifecycle,
            timeouts(Duration::from_secs(1)),
            &mut FakeServer::default(),
        );
        assert_eq!(report.trigger, Trigger::Handle, "the first trigger wins");
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(report.hooks.len(), 1);
    }
}
