//! Idle connections cost a file descriptor and a parked entry in the
//! poller, never a thread: hundreds of them do not starve the fixed pool of
//! workers, and each is closed when its idle timeout passes.
//!
//! File descriptors: the 500 connections here take 500 descriptors in this
//! test process and 500 in the server, plus a few dozen of their own. That
//! is under the common default soft limit (`ulimit -n` 1024), so nothing is
//! raised; a machine whose limit is lower would see connect or accept fail
//! (the server logs accept errors and keeps going; the test panics on
//! connect with the error).

mod support;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::{Client, Service};

/// Idle connections held open at once.
const IDLE: usize = 500;
/// How soon a new client must be answered while they are open: generous,
/// for a loaded 2-core CI machine; a starved pool would never answer.
const PROMPT: Duration = Duration::from_secs(2);

/// Starts the service with 2 workers and an idle timeout long enough that
/// no connection expires during the test.
fn service() -> Service {
    Service::start(&["--workers", "2", "--idle-timeout", "60s"])
}

/// Times one request on a fresh connection, asserting it succeeds.
fn timed_request(service: &Service) -> Duration {
    let started = Instant::now();
    let response = support::get(service.addr, "/healthz");
    let took = started.elapsed();
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.text(), "ok");
    took
}

#[test]
fn idle_keep_alive_connections_do_not_starve_workers() {
    let service = service();
    timed_request(&service);
    let threads_before = service.status_field("Threads");

    // Each connection is served once, so the server has accepted it and
    // now holds it idle between requests.
    let mut idle: Vec<Client> = (0..IDLE)
        .map(|index| {
            let mut client = Client::connect(service.addr);
            let response = client.get("/");
            assert_eq!(
                response.status, 200,
                "idle connection {index}: {response:?}"
            );
            assert!(!response.closes(), "idle connection {index}: {response:?}");
            client
        })
        .collect();

    let took = timed_request(&service);
    assert!(
        took < PROMPT,
        "a new client took {took:?} with {IDLE} idle connections open (bound {PROMPT:?})"
    );
    let threads_after = service.status_field("Threads");
    assert!(
        threads_after <= threads_before,
        "the server grew from {threads_before} to {threads_after} threads for {IDLE} idle connections"
    );

    // The idle connections are still served when they come back.
    for (index, client) in idle.iter_mut().enumerate().step_by(25) {
        let response = client.get("/readyz");
        assert_eq!(
            response.text(),
            "ready",
            "idle connection {index} again: {response:?}"
        );
    }
}

#[test]
fn silent_connections_do_not_starve_workers() {
    // Connections that never send a byte, not even a first request.
    let service = service();
    timed_request(&service);
    let threads_before = service.status_field("Threads");
    let silent: Vec<TcpStream> = (0..IDLE)
        .map(|_| Client::connect(service.addr).stream)
        .collect();
    // A served request after all of them were connected means the acceptor
    // has taken them all (it accepts in order).
    let took = timed_request(&service);
    assert!(
        took < PROMPT,
        "a new client took {took:?} with {IDLE} silent connections open (bound {PROMPT:?})"
    );
    let threads_after = service.status_field("Threads");
    assert!(
        threads_after <= threads_before,
        "the server grew from {threads_before} to {threads_after} threads for {IDLE} silent connections"
    );
    drop(silent);
}

#[test]
fn idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    const IDLE_TIMEOUT: Duration = Duration::from_millis(500);
    const CLOSE_BOUND: Duration = Duration::from_secs(10);
    let service = Service::start(&["--workers", "2", "--idle-timeout", "500ms"]);
    let mut client = Client::connect(service.addr);
    // Measured from before the request: the server's idle clock starts
    // after it answers, which is no earlier (a busy machine may hand the
    // answer to this client much later than it was sent).
    let idle_since = Instant::now();
    assert_eq!(client.get("/").status, 200);
    // Passing time is the point: the read waits for the server's close,
    // which must be a clean one (FIN), not a reset.
    client.assert_clean_close_within(CLOSE_BOUND, "an idle keep-alive connection");
    let took = idle_since.elapsed();
    assert!(
        took >= IDLE_TIMEOUT,
        "the idle connection was closed after {took:?}, before the idle timeout"
    );
    support::assert_still_serving(service.addr);
}
