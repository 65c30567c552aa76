//! Restarting the service on one host, as its clients see it: real
//! processes on 127.0.0.1, real signals, and a mixed client load
//! (`support::load`) whose every request is classified.
//!
//! The first test shows what a plain stop and start costs, refused
//! connections, and so that the harness can see them: a restart test that
//! finds none means something only if this one finds some.
//!
//! One service process runs at a time (see [`one_at_a_time`]): the machine
//! has two cores shared with other builds.

mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use support::load::{ClientKind, Load, LoadMix, Mark};
use support::{Service, binary};

/// Longest wait for a service to exit after SIGTERM: the drain of a few
/// short requests and the last call for idle connections (300 ms).
const EXIT_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest wait for every kind of client to get a 2xx response from a
/// service that has just started listening.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// How many times the service is stopped and started again.
const RESTARTS: usize = 3;
/// The service's settings in these tests (besides `--listen`).
const ARGS: [&str; 3] = ["--enable-test-routes", "--workers", "8"];
/// The load: every kind of client, slow requests of 100 ms.
const MIX: LoadMix = LoadMix {
    keep_alive: 4,
    per_request_connection: 4,
    slow: 2,
    posts: 2,
    slow_ms: 100,
};

/// Serialises the tests of this file: one service process at a time.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static ONE: Mutex<()> = Mutex::new(());
    ONE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Starts the service on 127.0.0.1:`port` (0: a free port) and waits until
/// it logs that it listens.
fn start_on(port: u16) -> Service {
    let mut command = Command::new(binary());
    command
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .args(ARGS);
    Service::spawn(command, &[])
}

/// SIGTERM, then waits for a clean exit (0); returns how long it took.
fn stop(service: &mut Service, what: &str) -> Duration {
    let signalled = Instant::now();
    service.signal("TERM");
    let code = service.exit_code(EXIT_TIMEOUT);
    assert_eq!(
        code,
        0,
        "exit code of {what} after SIGTERM; log:\n{}",
        service.log_text()
    );
    signalled.elapsed()
}

#[test]
fn a_plain_stop_and_start_refuses_connections() {
    let _one = one_at_a_time();
    let mut service = start_on(0);
    let addr: SocketAddr = service.addr;
    let load = Load::start(addr, MIX);
    let mut seen =
        load.wait_for_ok_from_every_kind(Mark::LOAD_START, ANSWER_TIMEOUT, "to the first service");
    for restart in 1..=RESTARTS {
        let refused_before = seen.refused;
        let stopping = Instant::now();
        let drained = stop(&mut service, &format!("service {restart}"));
        // A 2xx on a connection made from here on comes from the new
        // service: the old one has exited.
        let new_service = load.mark();
        service = start_on(addr.port());
        let gap = stopping.elapsed();
        assert_eq!(
            service.addr, addr,
            "the new service listens where the old one did"
        );
        seen = load.wait_for_ok_from_every_kind(
            new_service,
            ANSWER_TIMEOUT,
            &format!("after the old service {restart} exited"),
        );
        eprintln!(
            "restart {restart}: the old service exited {drained:?} after SIGTERM, the new one \
             listened {gap:?} after it; {} connects refused meanwhile",
            seen.refused - refused_before
        );
    }
    let counts = load.stop();
    eprintln!("load over {RESTARTS} stops and starts: {counts:#}");
    stop(&mut service, "the last service");

    assert!(
        counts.refused > 0,
        "a stop and a start refused no connect: the harness cannot see refusals; {counts:#}"
    );
    for kind in ClientKind::ALL {
        assert!(
            counts.client(kind).ok > 0,
            "no {kind} request was answered: {counts:#}"
        );
    }
    // What a graceful stop promises besides the refusals: every request
    // the server could have received was answered (idle keep-alive
    // connections it closed are stale, not lost).
    assert_eq!(
        counts.failures(),
        counts.refused,
        "a plain stop and start should only refuse connects: {counts:#}"
    );
}
