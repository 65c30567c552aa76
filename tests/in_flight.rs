//! The in-flight request count as `/metrics` shows it
//! (`gremlins_in_flight_requests`): a request counts from its parsed head
//! until the last byte of its response is written, whatever happened in
//! between (a panic, a refusal, pipelining), and not a moment longer. The
//! shutdown drain waits on this count, so a request it forgets is lost work
//! and one it keeps wedges the drain.
//!
//! The `/metrics` request that reads the gauge is in flight itself: a value
//! of 1 means nothing else is. A client has the last byte of a response a
//! moment before the server counts it written, so a reading is taken only
//! once the server has finished with every request before it: on the same
//! keep-alive connection (the server reads a next request only after the
//! previous response is written), or after the server closed the other
//! connections cleanly (its FIN follows the end of their requests).
//! Readings on a connection of their own ask to close and wait for it.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::{Client, Service, assert_closed};

/// The gauge, read with `GET /metrics` on `client`'s connection.
fn in_flight(client: &mut Client) -> i64 {
    let response = client.get("/metrics");
    assert_eq!(response.status, 200, "GET /metrics: {response:?}");
    support::metric_in(&response.text(), "gremlins_in_flight_requests")
}

/// The gauge, read on a fresh connection that asks to close; returns once
/// the server has closed it, so that this reading is over too.
fn in_flight_then_close(addr: SocketAddr) -> i64 {
    let mut client = Client::connect(addr);
    client.send(b"GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    let response = client.read_response();
    assert_eq!(response.status, 200, "GET /metrics: {response:?}");
    assert_closed(&mut client, "a /metrics reading with Connection: close");
    support::metric_in(&response.text(), "gremlins_in_flight_requests")
}

/// Asserts that a reading saw nothing in flight but itself, `after` what.
fn assert_reads_only_itself(value: i64, after: &str) {
    assert_eq!(
        value, 1,
        "gremlins_in_flight_requests after {after}: expected 1 (the /metrics request itself), got {value}"
    );
}

/// Asserts, on a connection of its own, that nothing else is in flight.
fn assert_nothing_else_in_flight(addr: SocketAddr, after: &str) {
    assert_reads_only_itself(in_flight_then_close(addr), after);
}

#[test]
fn in_flight_gauge_returns_to_exactly_itself_after_normal_panicking_refused_and_pipelined_requests()
{
    let service = Service::start(&["--workers", "2", "--enable-test-routes"]);
    let addr = service.addr;
    assert_nothing_else_in_flight(addr, "start");

    // Normal requests, read back on the same keep-alive connection.
    let mut keep_alive = Client::connect(addr);
    for path in ["/", "/healthz", "/readyz"] {
        keep_alive.get(path);
        assert_reads_only_itself(in_flight(&mut keep_alive), &format!("GET {path}"));
    }

    // A panicking handler: answered 500 and closed.
    for round in 0..3 {
        let mut client = Client::connect(addr);
        let response = client.get("/test/panic");
        assert_eq!(response.status, 500, "panic {round}: {response:?}");
        assert_closed(&mut client, "after a panic");
        assert_nothing_else_in_flight(addr, &format!("handler panic {round}"));
    }

    // Refused: a malformed head, and a body over the limit.
    for (what, request, status) in [
        ("a malformed head", &b"NOT HTTP\r\n\r\n"[..], 400),
        (
            "a body over the limit",
            b"POST /v1/events HTTP/1.1\r\nHost: t\r\nContent-Length: 100000000000000\r\n\r\n",
            413,
        ),
    ] {
        let mut client = Client::connect(addr);
        client.send(request);
        let response = client.read_response();
        assert_eq!(response.status, status, "{what}: {response:?}");
        assert_closed(&mut client, what);
        assert_nothing_else_in_flight(addr, what);
    }

    // Pipelined: ten requests in one write, all answered, then the reading
    // on the same connection.
    let mut pipelining = Client::connect(addr);
    pipelining.send("GET / HTTP/1.1\r\nHost: test\r\n\r\n".repeat(10).as_bytes());
    for index in 0..10 {
        let response = pipelining.read_response();
        assert_eq!(
            response.status, 200,
            "pipelined request {index}: {response:?}"
        );
    }
    assert_reads_only_itself(in_flight(&mut pipelining), "ten pipelined requests");
    // A pipelined panic in the middle: the request before it answered, the
    // connection closed after its 500.
    let mut client = Client::connect(addr);
    client.send(
        b"GET / HTTP/1.1\r\nHost: t\r\n\r\nGET /test/panic HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    assert_eq!(
        client.read_response().status,
        200,
        "before the pipelined panic"
    );
    assert_eq!(client.read_response().status, 500, "the pipelined panic");
    assert_closed(&mut client, "after a pipelined panic");
    assert_nothing_else_in_flight(addr, "a pipelined panic");
}

/// Creates `count` events of about `bytes` each, so that listing them
/// makes a response of about `count * bytes`; each on a connection that
/// closes after it, so the server is done with them when this returns.
fn create_large_events(addr: SocketAddr, count: usize, bytes: usize) {
    let filler = "x".repeat(bytes);
    for index in 0..count {
        let mut client = Client::connect(addr);
        let body = format!(r#"{{"type":"large","payload":{{"filler":"{filler}"}}}}"#);
        client.send(
            format!(
                "POST /v1/events HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
        let response = client.read_response();
        assert_eq!(
            response.status,
            201,
            "large event {index}: {}",
            response.text()
        );
        assert_closed(&mut client, "after creating a large event");
    }
}

/// Events listed by [`LARGE_LIST`]: 7 of 850 KB, a response of about 6 MB,
/// more than a loopback socket buffers on both ends (the client's receive
/// buffer is shrunk, the server's send buffer grows to 4 MB at most).
const LARGE_EVENTS: usize = 7;
const LARGE_EVENT_BYTES: usize = 850 * 1024;
const LARGE_LIST: &str = "GET /v1/events?limit=7 HTTP/1.1\r\nHost: test\r\n\r\n";

/// A connection whose receive buffer is as small as the kernel allows,
/// which sends `request` and then reads nothing until told to.
fn non_reading_client(addr: SocketAddr, request: &str) -> Client {
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .expect("a TCP socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    socket
        .connect_timeout(&addr.into(), support::CONNECT_TIMEOUT)
        .expect("connect to the service");
    let mut client = Client::from_stream(socket.into());
    client.send(request.as_bytes());
    // The first byte of the answer: the server is writing it now.
    let mut byte = [0u8; 1];
    let peeked =
        support::peek_retrying(&client.stream, &mut byte).expect("the start of the answer");
    assert_eq!(peeked, 1, "the server closed instead of answering");
    client
}

#[test]
fn in_flight_gauge_counts_a_response_until_its_last_byte_is_written() {
    let service = Service::start(&["--workers", "2"]);
    create_large_events(service.addr, LARGE_EVENTS, LARGE_EVENT_BYTES);
    assert_nothing_else_in_flight(service.addr, "creating the events");

    let mut slow_reader = non_reading_client(service.addr, LARGE_LIST);
    let value = in_flight_then_close(service.addr);
    assert!(
        value >= 2,
        "gremlins_in_flight_requests while a 6 MB response is still being written to a client that \
         does not read: expected at least 2 (that request and this /metrics), got {value}"
    );

    let response = slow_reader.read_response();
    assert_eq!(response.status, 200, "the large list");
    assert!(
        response.body.len() > LARGE_EVENTS * LARGE_EVENT_BYTES,
        "the large list has {} bytes",
        response.body.len()
    );
    assert_reads_only_itself(
        in_flight(&mut slow_reader),
        "the large response was read to its end",
    );
}

#[test]
fn a_client_that_never_reads_a_large_response_is_closed_after_the_write_timeout() {
    const WRITE_TIMEOUT: Duration = Duration::from_secs(1);
    const CLOSE_BOUND: Duration = Duration::from_secs(10);
    let service = Service::start(&["--workers", "2", "--write-timeout", "1s"]);
    create_large_events(service.addr, LARGE_EVENTS, LARGE_EVENT_BYTES);
    let mut observer = Client::connect(service.addr);
    let started = Instant::now();
    let mut never_reads = non_reading_client(service.addr, LARGE_LIST);

    // The server's side of the connection closes at the write timeout;
    // its FIN waits behind the unread bytes, so the client cannot see it
    // without reading. The gauge of open connections shows it: retried
    // (without sleeping) until only the observer's is left.
    let gauge = "gremlins_open_connections";
    loop {
        let open = support::metric_in(&observer.get("/metrics").text(), gauge);
        if open == 1 {
            break;
        }
        assert!(
            started.elapsed() < CLOSE_BOUND,
            "a client that reads nothing of a 6 MB response was still connected {CLOSE_BOUND:?} \
             later ({gauge} {open}); the write timeout is {WRITE_TIMEOUT:?}"
        );
    }
    let closed_after = started.elapsed();
    assert!(
        closed_after >= WRITE_TIMEOUT,
        "the connection was closed {closed_after:?} after the request, before the write timeout"
    );

    // What the client finds once it reads: part of the answer, then the
    // end of the connection.
    let mut received = Vec::new();
    let ended = std::io::Read::read_to_end(&mut never_reads.stream, &mut received);
    assert!(
        received.len() < LARGE_EVENTS * LARGE_EVENT_BYTES,
        "the client received {} bytes, the whole answer, though it never read in time ({ended:?})",
        received.len()
    );
    assert!(
        received.starts_with(b"HTTP/1.1 200 "),
        "the answer's start: {:?}",
        String::from_utf8_lossy(&received[..received.len().min(64)])
    );
    support::assert_still_serving(service.addr);
}
