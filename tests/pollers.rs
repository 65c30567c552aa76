//! `--pollers N`: several poller threads share the connections, and
//! everything that spans them (the shutdown's drain, `max_connections`)
//! still holds, through the real binary.

mod support;

use std::time::Duration;

use support::{Client, Service, assert_nothing_lost};

/// Longest wait for the service to exit once it should.
const EXIT_TIMEOUT: Duration = Duration::from_secs(20);

/// The names of the process's threads.
fn thread_names(pid: u32) -> Vec<String> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the service's threads");
    let mut names: Vec<String> = tasks
        .filter_map(|task| {
            let path = task.ok()?.path().join("comm");
            Some(std::fs::read_to_string(path).ok()?.trim().to_owned())
        })
        .collect();
    names.sort();
    names
}

#[test]
fn two_pollers_serve_every_connection_and_the_drain_waits_for_both() {
    let mut service = Service::start(&["--pollers", "2", "--enable-test-routes"]);
    // A thread names itself once it runs, so a name may lag its start.
    let pollers = |names: &[String]| {
        names
            .iter()
            .filter(|name| name.starts_with("poller-"))
            .count()
    };
    support::wait_until(Duration::from_secs(5), "two threads named poller-N", || {
        pollers(&thread_names(service.pid())) >= 2
    });
    let names = thread_names(service.pid());
    assert_eq!(pollers(&names), 2, "threads: {names:?}");
    assert!(service.log_text().contains("and 2 pollers"));

    // Connections land on both pollers (round-robin); each serves its own.
    let mut clients: Vec<Client> = (0..8).map(|_| Client::connect(service.addr)).collect();
    for round in 0..20 {
        for (index, client) in clients.iter_mut().enumerate() {
            let response = client.get("/");
            assert_eq!(response.status, 200, "client {index}, round {round}");
        }
    }
    // A slow request on every connection, then SIGTERM: the drain must
    // wait for the requests of both pollers.
    for client in &mut clients {
        client.send(b"GET /test/sleep?ms=1000 HTTP/1.1\r\nHost: test\r\n\r\n");
    }
    // The /metrics request itself is one in flight too.
    support::wait_until(
        Duration::from_secs(10),
        "the 8 slow requests to be in flight",
        || support::metric(service.addr, "gremlins_in_flight_requests") >= 9,
    );
    service.signal("TERM");
    for (index, client) in clients.iter_mut().enumerate() {
        let response = client.read_response();
        assert!(
            response.status == 200 && response.closes(),
            "client {index}: {response:?}"
        );
    }
    service.assert_exit_code(0, EXIT_TIMEOUT);
    let report = service.report();
    assert_eq!(report["outcome"], "clean", "report {report}");
    assert_eq!(report["requests_drained"], 8, "report {report}");
    assert_eq!(report["requests_abandoned"], 0, "report {report}");
    assert_nothing_lost(&report);
}

#[test]
fn max_connections_reclaims_the_longest_idle_connection_of_any_poller() {
    let mut service = Service::start(&["--pollers", "2", "--max-connections", "4"]);
    // Four idle keep-alive connections, two on each poller (round-robin).
    let mut idle: Vec<Client> = (0..4).map(|_| Client::connect(service.addr)).collect();
    for client in &mut idle {
        assert_eq!(client.get("/").status, 200);
    }
    // Four newcomers, one after the other, each kept open: each is
    // admitted by closing the longest-idle connection of either poller,
    // so the four older ones go, in order, from both pollers.
    let mut newcomers = Vec::new();
    for (index, older) in idle.iter_mut().enumerate() {
        let mut client = Client::connect(service.addr);
        let response = client.get("/");
        assert_eq!(response.status, 200, "newcomer {index}: {response:?}");
        support::assert_closed(older, &format!("idle connection {index}"));
        newcomers.push(client);
    }
    service.signal("TERM");
    service.assert_exit_code(0, EXIT_TIMEOUT);
}
