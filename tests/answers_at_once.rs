//! The health checks are answered at once on the poller thread
//! (`Handler::handle_inline`), never queued for a worker: a liveness probe
//! is answered while every worker is busy, and pipelined requests keep
//! their order when some are answered at once and others by a worker.

mod support;

use std::io::ErrorKind;

use support::{Client, Service};

/// How long the one worker is kept busy: the health checks must be
/// answered before its answer.
const BUSY_MS: u64 = 3000;

#[test]
fn health_checks_are_answered_while_every_worker_is_busy() {
    let service = Service::start(&["--workers", "1", "--enable-test-routes"]);
    let mut busy = Client::connect(service.addr);
    busy.send(format!("GET /test/sleep?ms={BUSY_MS} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());

    let mut probe = Client::connect(service.addr);
    for path in ["/healthz", "/", "/healthz"] {
        let response = probe.get(path);
        assert_eq!(response.status, 200, "GET {path}: {}", response.text());
        assert_eq!(response.text(), "ok", "GET {path}");
    }
    // The slow request is not answered yet: the one worker (busy with it,
    // or about to be) did not answer the checks.
    busy.stream.set_nonblocking(true).expect("non-blocking");
    match busy.stream.peek(&mut [0u8; 1]) {
        Err(error) if error.kind() == ErrorKind::WouldBlock => {}
        other => panic!("the slow request was answered before the health checks: {other:?}"),
    }
    busy.stream.set_nonblocking(false).expect("blocking");
    let slept = busy.read_response();
    assert_eq!(slept.status, 200, "{}", slept.text());
}

#[test]
fn pipelined_requests_keep_their_order_across_poller_and_worker() {
    let service = Service::start(&["--workers", "1", "--enable-test-routes"]);
    let mut client = Client::connect(service.addr);
    // 150 answered at once (more than one turn's bound of 64, so some go
    // to the worker), one the worker must answer, then 10 more.
    let mut paths: Vec<&str> = vec!["/"; 150];
    paths.push("/test/sleep?ms=1");
    paths.extend(["/healthz"; 10]);
    let pipelined: String = paths
        .iter()
        .map(|path| format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n"))
        .collect();
    client.send(pipelined.as_bytes());
    for (index, path) in paths.iter().enumerate() {
        let response = client.read_response();
        assert_eq!(response.status, 200, "response {index} (GET {path})");
        assert!(!response.closes(), "response {index} closes the connection");
    }
    // Still open and served.
    assert_eq!(client.get("/").text(), "ok");
    let metrics = client.get("/metrics").text();
    assert!(
        metrics.contains(r#"route="/healthz""#),
        "the health checks answered at once are counted in /metrics:\n{metrics}"
    );
}
