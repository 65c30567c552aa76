//! Time arithmetic that cannot panic, and threads that cannot die
//! silently: an absurd duration is refused at start, and a dead acceptor
//! or poller takes the server into shutdown with its own exit code and a
//! report that names the thread. Real processes on 127.0.0.1.

mod support;

use std::process::Command;
use std::time::Duration;

use support::server_process::run_bounded;
use support::{Client, Service};

/// `EXIT_THREAD_DIED`: a thread the server cannot run without died.
const EXIT_THREAD_DIED: i32 = 5;

#[test]
fn an_absurd_duration_is_refused_at_start_with_a_clear_message() {
    let output = run_bounded(
        Command::new(support::binary()).args([
            "--listen",
            "127.0.0.1:0",
            "--idle-timeout",
            "18446744073709551615",
        ]),
        support::START_TIMEOUT,
        "the service with an absurd idle timeout",
    )
    .unwrap_or_else(|error| panic!("{error}"));
    let log = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "exit status; log:\n{log}");
    assert!(
        log.contains("IDLE_TIMEOUT") && log.contains("longer than the longest supported"),
        "the message names the setting and the limit:\n{log}"
    );
    assert!(
        !log.contains("listening on"),
        "it must not start serving:\n{log}"
    );
}

/// Starts the service with a thread set to panic at its first connection,
/// makes one, and checks the exit code and the report.
fn assert_thread_death_shuts_down(thread: &str) {
    let mut service = Service::start(&[
        "--enable-test-routes",
        "--test-panic-thread",
        thread,
        "--shutdown-timeout",
        "2s",
    ]);
    let mut client = Client::connect(service.addr);
    client.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    service.wait_for_log(
        &format!("the {thread} thread died"),
        Duration::from_secs(10),
    );
    service.assert_exit_code(EXIT_THREAD_DIED, Duration::from_secs(15));
    let report = service.report();
    assert_eq!(report["outcome"], "thread_died", "{report}");
    assert_eq!(report["failed_thread"], thread, "{report}");
    assert_eq!(report["exit_code"], EXIT_THREAD_DIED, "{report}");
    // The thread died before the request was read: nothing was received,
    // so nothing was lost either.
    support::assert_nothing_lost(&report);
}

#[test]
fn a_dead_acceptor_shuts_the_server_down_with_exit_code_5_and_names_it() {
    assert_thread_death_shuts_down("acceptor");
}

#[test]
fn a_dead_poller_shuts_the_server_down_with_exit_code_5_and_names_it() {
    assert_thread_death_shuts_down("poller");
}
