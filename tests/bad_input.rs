//! Malformed and hostile input: each gets a clear 4xx (or the connection is
//! closed), costs bounded memory and time, and the server goes on serving
//! everyone else, which every test checks at its end.
//!
//! Body framing errors are tested on `support::EchoServer` (the library with
//! an `/echo` route that reads the body); everything else on the binary.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;

use support::{
    Client, EchoServer, RESPONSE_TIMEOUT, Response, Service, assert_closed, assert_still_serving,
};

fn service(extra: &[&str]) -> Service {
    let mut args = vec!["--workers", "2"];
    args.extend_from_slice(extra);
    Service::start(&args)
}

/// Asserts an error answer: status, JSON `code`, and `Connection: close`.
fn assert_error(response: &Response, status: u16, code: &str, what: &str) {
    assert_eq!(response.status, status, "{what}: {response:?}");
    let body = response.json();
    assert_eq!(body["code"], code, "{what}: {body}");
    assert!(
        body["error"].is_string() && body["message"].is_string(),
        "{what}: {body}"
    );
    assert!(
        response.closes(),
        "{what}: the connection must close: {response:?}"
    );
}

/// Sends `request` on a fresh connection and reads the answer.
fn exchange(addr: SocketAddr, request: &[u8]) -> (Client, Response) {
    let mut client = Client::connect(addr);
    client.send(request);
    let response = client.read_response();
    (client, response)
}

/// Writes `bytes` from another thread (the server may answer and close
/// before it has read them all: the write's error is returned, not
/// unwrapped), so that the caller can read the answer meanwhile.
fn write_in_background(stream: &TcpStream, bytes: Vec<u8>) -> JoinHandle<std::io::Result<()>> {
    let mut writer = stream.try_clone().expect("clone the stream");
    writer
        .set_write_timeout(Some(RESPONSE_TIMEOUT))
        .expect("set the write timeout");
    std::thread::spawn(move || writer.write_all(&bytes))
}

#[test]
fn huge_content_length_is_refused_with_413_without_reading_the_body() {
    let service = service(&[]);
    // Only the head is sent: the answer must not wait for the body.
    let (mut client, response) = exchange(
        service.addr,
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100000000000000\r\n\r\n",
    );
    assert_error(
        &response,
        413,
        "DRYAD-HTTP-4131",
        "Content-Length: 100000000000000",
    );
    assert_closed(&mut client, "after 413");
    // A value that does not even fit in 64 bits, with some body bytes.
    let (mut client, response) = exchange(
        service.addr,
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999999999999999999999\r\n\r\nabc",
    );
    assert_error(
        &response,
        413,
        "DRYAD-HTTP-4131",
        "a 26-digit Content-Length",
    );
    assert_closed(&mut client, "after 413");
    assert!(
        service.status_field("VmHWM") < 64 * 1024,
        "the server's peak memory grew past 64 MiB"
    );
    assert_still_serving(service.addr);
}

#[test]
fn conflicting_content_lengths_are_rejected_with_400() {
    let service = service(&[]);
    for request in [
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5, 6\r\n\r\nhello!",
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: -5\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 0x10\r\n\r\n",
    ] {
        let (mut client, response) = exchange(service.addr, request.as_bytes());
        assert_error(&response, 400, "DRYAD-HTTP-4002", request);
        assert_closed(&mut client, request);
    }
    assert_still_serving(service.addr);
}

#[test]
fn both_content_length_and_transfer_encoding_are_rejected_with_400() {
    let service = service(&[]);
    for request in [
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n\
         0\r\n\r\nGET /nope HTTP/1.1\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n\
         0\r\n\r\n",
    ] {
        let (mut client, response) = exchange(service.addr, request.as_bytes());
        assert_error(&response, 400, "DRYAD-HTTP-4004", request);
        assert_closed(&mut client, request);
    }
    assert_still_serving(service.addr);
}

#[test]
fn malformed_heads_get_a_clear_4xx_or_501() {
    let service = service(&["--max-uri-bytes", "1024"]);
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(2000));
    let cases: [(&str, u16, &str); 6] = [
        ("NOT HTTP AT ALL\r\n\r\n", 400, "DRYAD-HTTP-4001"),
        (
            "GET / HTTP/1.1\r\nBad Header Name: v\r\n\r\n",
            400,
            "DRYAD-HTTP-4001",
        ),
        (
            "GET / HTTP/1.1\r\nHost: t\r\nX: a\0b\r\n\r\n",
            400,
            "DRYAD-HTTP-4001",
        ),
        (&long_uri, 414, "DRYAD-HTTP-4141"),
        (
            "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            501,
            "DRYAD-HTTP-5011",
        ),
        (
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            501,
            "DRYAD-HTTP-5011",
        ),
    ];
    for (request, status, code) in cases {
        let (mut client, response) = exchange(service.addr, request.as_bytes());
        assert_error(&response, status, code, request);
        assert_closed(&mut client, request);
    }
    assert_still_serving(service.addr);
}

#[test]
fn bad_chunked_framing_is_rejected_with_400() {
    let server = EchoServer::start(|_| {});
    let head = "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n";
    let bodies: [(&str, &str); 7] = [
        ("a size that is not hex", "zz\r\nhello\r\n0\r\n\r\n"),
        ("a negative size", "-5\r\nhello\r\n0\r\n\r\n"),
        ("an empty size line", "\r\nhello\r\n0\r\n\r\n"),
        ("no CRLF after the data", "5\r\nhelloXX0\r\n\r\n"),
        ("a bare LF after the size", "5\nhello\r\n0\r\n\r\n"),
        (
            "a size that overflows 64 bits",
            "10000000000000000\r\nhello\r\n0\r\n\r\n",
        ),
        ("spaces inside the size", "5 5\r\nhello\r\n0\r\n\r\n"),
    ];
    for (what, body) in bodies {
        let (mut client, response) = exchange(server.addr, format!("{head}{body}").as_bytes());
        assert_error(&response, 400, "DRYAD-HTTP-4003", what);
        assert_closed(&mut client, what);
    }
    assert_still_serving(server.addr);
}

/// The chunked decoder documents 1 KiB as the longest chunk-size or
/// trailer line it accepts; that must not depend on how the bytes happen to
/// arrive (here in one write, so the whole line is buffered at once).
#[test]
fn chunk_lines_longer_than_1_kib_are_rejected_with_400() {
    let server = EchoServer::start(|_| {});
    let head = "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n";
    let long = "x".repeat(2000);
    let cases = [
        (
            "a chunk-size line with a 2000-byte extension",
            format!("{head}5;{long}\r\nhello\r\n0\r\n\r\n"),
        ),
        (
            "a 2000-byte trailer line",
            format!("{head}5\r\nhello\r\n0\r\nX-Trailer: {long}\r\n\r\n"),
        ),
    ];
    for (what, request) in cases {
        let (mut client, response) = exchange(server.addr, request.as_bytes());
        assert_error(&response, 400, "DRYAD-HTTP-4003", what);
        assert_closed(&mut client, what);
    }
    assert_still_serving(server.addr);
}

#[test]
fn chunked_body_over_the_limit_is_refused_with_413() {
    let server = EchoServer::start(|config| config.max_body_bytes = 1000);
    let head = "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n";
    let chunk = format!("1f4\r\n{}\r\n", "a".repeat(500));
    let cases = [
        (
            "three 500-byte chunks",
            format!("{head}{}0\r\n\r\n", chunk.repeat(3)),
        ),
        (
            "one chunk of 2^64-1 bytes",
            format!("{head}ffffffffffffffff\r\nabc"),
        ),
    ];
    for (what, request) in cases {
        let (mut client, response) = exchange(server.addr, request.as_bytes());
        assert_error(&response, 413, "DRYAD-HTTP-4131", what);
        assert_closed(&mut client, what);
    }
    // Exactly at the limit is fine.
    let (_, response) = exchange(
        server.addr,
        format!("{head}{}1f4\r\n{}\r\n0\r\n\r\n", chunk, "b".repeat(500)).as_bytes(),
    );
    assert_eq!(response.status, 200, "a body of exactly max_body_bytes");
    assert_eq!(response.body.len(), 1000);
    assert_still_serving(server.addr);
}

#[test]
fn one_mebibyte_header_is_refused_with_431() {
    let service = service(&[]);
    let stream = Client::connect(service.addr).stream;
    let mut request = b"GET / HTTP/1.1\r\nHost: t\r\nX-Huge: ".to_vec();
    request.resize(request.len() + 1024 * 1024, b'a');
    request.extend_from_slice(b"\r\n\r\n");
    let writing = write_in_background(&stream, request);
    let mut client = Client::from_stream(stream);
    let response = client.read_response();
    assert_error(&response, 431, "DRYAD-HTTP-4311", "a 1 MiB header");
    assert_closed(&mut client, "after 431");
    // Whether the whole megabyte was taken or the write failed does not
    // matter; that the writer finished does.
    let _ = writing.join().expect("the writer thread");
    assert_still_serving(service.addr);
}

#[test]
fn ten_thousand_headers_are_refused_with_431() {
    let service = service(&[]);
    let mut request = b"GET / HTTP/1.1\r\nHost: t\r\n".to_vec();
    for index in 0..10_000 {
        request.extend_from_slice(format!("X-Header-{index}: v\r\n").as_bytes());
    }
    request.extend_from_slice(b"\r\n");
    let stream = Client::connect(service.addr).stream;
    let writing = write_in_background(&stream, request);
    let mut client = Client::from_stream(stream);
    let response = client.read_response();
    assert_eq!(response.status, 431, "10,000 headers: {response:?}");
    assert!(response.closes(), "{response:?}");
    assert_closed(&mut client, "after 431");
    let _ = writing.join().expect("the writer thread");

    // A head small in bytes but with more than --max-headers (64) fields.
    let many: String = (0..100).map(|index| format!("X-{index}: v\r\n")).collect();
    let (mut client, response) = exchange(
        service.addr,
        format!("GET / HTTP/1.1\r\nHost: t\r\n{many}\r\n").as_bytes(),
    );
    assert_error(&response, 431, "DRYAD-HTTP-4312", "100 headers");
    assert_closed(&mut client, "after 431");
    assert_still_serving(service.addr);
}

/// With as many pipelining clients as workers, each with thousands of
/// slow requests already sent, a worker never runs out of work on its
/// connection; its turn is bounded, so a new client still gets a worker
/// long before the pipelines are done (about 3 s of work each).
#[test]
fn pipelining_clients_do_not_hold_every_worker() {
    const FLOODERS: usize = 2; // = the service's workers
    const REQUESTS_EACH: usize = 3_000; // 1 ms each
    const PROMPT: Duration = Duration::from_secs(1);
    let service = service(&["--enable-test-routes"]);
    let request = b"GET /test/sleep?ms=1 HTTP/1.1\r\nHost: t\r\n\r\n";
    let flooders: Vec<_> = (0..FLOODERS)
        .map(|_| {
            let stream = Client::connect(service.addr).stream;
            let writing = write_in_background(&stream, request.repeat(REQUESTS_EACH));
            (stream, writing)
        })
        .collect();
    // Both pipelines are being served once each has its first response.
    for (stream, _) in &flooders {
        let mut byte = [0u8; 1];
        stream
            .set_read_timeout(Some(RESPONSE_TIMEOUT))
            .expect("read timeout");
        support::peek_retrying(stream, &mut byte).expect("a flooder's first response");
    }
    let started = Instant::now();
    let response = support::get(service.addr, "/healthz");
    let took = started.elapsed();
    assert_eq!(response.status, 200);
    assert!(
        took < PROMPT,
        "a new client waited {took:?} while {FLOODERS} clients pipelined on {FLOODERS} workers"
    );
    drop(service);
    for (_, writing) in flooders {
        let _ = writing.join();
    }
}

#[test]
fn pipelining_flood_of_100000_requests_is_answered_in_order_in_bounded_memory() {
    const REQUESTS: usize = 100_000;
    // Each route answers a different status or body, so order shows.
    let routes: [(&str, u16, &str); 3] = [
        ("/", 200, "ok"),
        ("/nope", 404, "DRYAD-APP-4040"),
        ("/readyz", 200, "ready"),
    ];
    let service = service(&[]);
    let mut flood = Vec::with_capacity(REQUESTS * 32);
    for index in 0..REQUESTS {
        let path = routes[index % routes.len()].0;
        flood.extend_from_slice(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    }
    let stream = Client::connect(service.addr).stream;
    let writing = write_in_background(&stream, flood);
    let mut client = Client::from_stream(stream);
    let started = Instant::now();
    for index in 0..REQUESTS {
        let (path, status, body) = routes[index % routes.len()];
        let response = client
            .try_read_response()
            .unwrap_or_else(|error| panic!("response {index} of {REQUESTS} ({path}): {error}"));
        assert!(
            response.status == status && response.text().contains(body),
            "response {index} of {REQUESTS} should answer {path}: {response:?}"
        );
    }
    writing
        .join()
        .expect("the writer thread")
        .expect("writing the flood");
    let peak_kib = service.status_field("VmHWM");
    eprintln!(
        "{REQUESTS} pipelined responses read in {:?}; server peak RSS {peak_kib} kB",
        started.elapsed()
    );
    assert!(
        peak_kib < 64 * 1024,
        "the server's peak resident memory is {peak_kib} kB, over 64 MiB"
    );
    assert_still_serving(service.addr);
}

/// What a stalled connection saw by the time it was closed.
#[derive(Debug)]
enum Ending {
    /// A 408 answer, then EOF.
    TimedOut408,
    /// EOF (or a reset) without an answer.
    Closed,
}

/// Waits until the server closes `stream`, before `deadline`; returns how.
fn wait_for_close(stream: &mut TcpStream, deadline: Instant) -> Result<Ending, String> {
    let mut received = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "still open at the deadline, having sent {:?}",
                String::from_utf8_lossy(&received)
            ));
        }
        stream
            .set_read_timeout(Some(left))
            .expect("set the read timeout");
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(count) => received.extend_from_slice(&chunk[..count]),
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    if received.is_empty() {
        Ok(Ending::Closed)
    } else if received.starts_with(b"HTTP/1.1 408 ") {
        Ok(Ending::TimedOut408)
    } else {
        Err(format!(
            "closed after an unexpected answer: {:?}",
            String::from_utf8_lossy(&received)
        ))
    }
}

#[test]
fn slowloris_connections_are_closed_after_the_header_timeout_while_others_are_served() {
    const STALLED: usize = 500;
    // Far more than the 1 s header timeout, for a loaded machine.
    const CLOSE_BOUND: Duration = Duration::from_secs(15);
    // An idle timeout far longer than the bound: only the header timeout
    // can close the stalled connections in time.
    let service = service(&["--header-timeout", "1s", "--idle-timeout", "60s"]);
    let opened = Instant::now();
    let mut stalled: Vec<TcpStream> = (0..STALLED)
        .map(|_| {
            let mut stream = Client::connect(service.addr).stream;
            stream
                .write_all(b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: ")
                .expect("write a partial head");
            stream
        })
        .collect();
    // Meanwhile, a normal client is served.
    assert_still_serving(service.addr);
    let mut client = Client::connect(service.addr);
    assert_eq!(client.get("/readyz").text(), "ready");

    let deadline = opened + CLOSE_BOUND;
    let mut answered_408 = 0;
    for (index, stream) in stalled.iter_mut().enumerate() {
        match wait_for_close(stream, deadline) {
            Ok(Ending::TimedOut408) => answered_408 += 1,
            Ok(Ending::Closed) => {}
            Err(error) => panic!(
                "stalled connection {index} of {STALLED}, {:?} after opening: {error}",
                opened.elapsed()
            ),
        }
    }
    eprintln!(
        "{STALLED} stalled connections closed within {:?} ({answered_408} with a 408)",
        opened.elapsed()
    );
    assert_still_serving(service.addr);
}

#[test]
fn trickling_head_is_cut_off_at_the_header_timeout() {
    // A client that keeps sending a byte of its head now and then must not
    // reset the clock: the timeout runs from the first byte.
    const HEADER_TIMEOUT: Duration = Duration::from_secs(1);
    const CLOSE_BOUND: Duration = Duration::from_secs(15);
    // How often the client sends one more byte of its head: well within the
    // header timeout, so that the head keeps arriving until it is cut off.
    const TRICKLE_INTERVAL: Duration = Duration::from_millis(100);
    // An idle timeout far longer than the bound: only the header timeout
    // can close the connection in time.
    let service = service(&["--header-timeout", "1s", "--idle-timeout", "60s"]);
    let mut stream = Client::connect(service.addr).stream;
    let started = Instant::now();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n")
        .expect("write the start of a head");
    let mut reader = stream.try_clone().expect("clone the stream");
    let (stop, stopped) = crossbeam_channel::bounded::<()>(1);
    let trickling = std::thread::spawn(move || {
        // Passing time is the point here: one byte every TRICKLE_INTERVAL,
        // until told to stop (the sender is dropped) or the server closes.
        while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(TRICKLE_INTERVAL) {
            if stream.write_all(b"X").is_err() {
                return;
            }
        }
    });
    let ending = wait_for_close(&mut reader, started + CLOSE_BOUND)
        .unwrap_or_else(|error| panic!("a trickling head: {error}"));
    let took = started.elapsed();
    drop(stop);
    trickling.join().expect("the trickling thread");
    assert!(
        took >= HEADER_TIMEOUT - Duration::from_millis(100),
        "closed after {took:?}, before the header timeout ({ending:?})"
    );
    assert!(
        took < CLOSE_BOUND,
        "the trickling head was not cut off ({took:?}, {ending:?})"
    );
    assert_still_serving(service.addr);
}

/// File descriptors the process `pid` has open.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read /proc/PID/fd")
        .count()
}

#[test]
fn refused_connection_is_let_go_after_the_linger_time_even_if_the_client_stays() {
    // After a final answer the server reads and discards what the client
    // still sends for a short while (2 s), then closes its socket. A client
    // that neither sends nor closes must not hold a server descriptor for
    // the whole (here 60 s) idle timeout.
    const REFUSED: usize = 20;
    const LINGER_BOUND: Duration = Duration::from_secs(5);
    let service = service(&["--idle-timeout", "60s"]);
    let baseline = open_fds(service.pid());
    let mut clients: Vec<Client> = (0..REFUSED)
        .map(|index| {
            let (client, response) = exchange(service.addr, b"NOT HTTP\r\n\r\n");
            assert_error(
                &response,
                400,
                "DRYAD-HTTP-4001",
                &format!("client {index}"),
            );
            client
        })
        .collect();
    for client in &mut clients {
        assert_closed(client, "the server's side after 400");
    }
    // Passing time is the point here: past the linger time, with margin.
    std::thread::sleep(LINGER_BOUND);
    let held = open_fds(service.pid()).saturating_sub(baseline);
    assert!(
        held == 0,
        "{held} of {REFUSED} refused connections still hold a server descriptor {LINGER_BOUND:?} \
         after their answer"
    );
    drop(clients);
    assert_still_serving(service.addr);
}

#[test]
fn connections_beyond_max_connections_get_503_when_none_is_idle() {
    const MAX: usize = 20;
    let service = service(&["--max-connections", "20"]);
    // Each connection is busy: its request is in flight, its body awaited.
    // The `100 Continue` proves the server read the head, so none of them
    // is an idle connection it could reclaim.
    let event = br#"{"type":"busy","payload":{}}"#;
    let mut busy: Vec<Client> = (0..MAX)
        .map(|index| {
            let mut client = Client::connect(service.addr);
            client.send(
                format!(
                    "POST /v1/events HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\nExpect: 100-continue\r\n\r\n",
                    event.len()
                )
                .as_bytes(),
            );
            let interim = client.try_read_one().expect("100 Continue");
            assert_eq!(interim.status, 100, "busy connection {index}: {interim:?}");
            client
        })
        .collect();

    // The extra connection is answered at once, without sending anything.
    let mut extra = Client::connect(service.addr);
    let response = extra.read_response();
    assert_error(
        &response,
        503,
        "DRYAD-SYS-5002",
        "connection over max_connections",
    );
    assert_eq!(response.header("retry-after"), Some("1"), "{response:?}");
    assert_closed(&mut extra, "the refused connection");

    for (index, client) in busy.iter_mut().enumerate() {
        client.send(event);
        let response = client.read_response();
        assert_eq!(
            response.status, 201,
            "busy connection {index}: {response:?}"
        );
        assert!(!response.closes(), "busy connection {index}: {response:?}");
    }
}

#[test]
fn max_connections_full_of_idle_connections_closes_the_oldest_idle_one_for_a_new_client() {
    const MAX: usize = 20;
    let service = service(&["--max-connections", "20", "--idle-timeout", "60s"]);
    let mut idle: Vec<Client> = (0..MAX)
        .map(|index| {
            let mut client = Client::connect(service.addr);
            let response = client.get("/");
            assert_eq!(response.status, 200, "connection {index}: {response:?}");
            client
        })
        .collect();

    let response = support::get(service.addr, "/healthz");
    assert_eq!(
        response.status, 200,
        "a new client at max_connections: {response:?}"
    );
    idle[0].assert_clean_close_within(
        support::CLOSE_TIMEOUT,
        "the connection idle the longest, to admit a new one",
    );
    for (index, client) in idle.iter_mut().enumerate().skip(1) {
        let response = client.get("/healthz");
        assert_eq!(
            response.status, 200,
            "idle connection {index}: {response:?}"
        );
    }
    let metrics = support::get(service.addr, "/metrics").text();
    assert!(
        metrics.contains("gremlins_reclaimed_idle_connections_total 1")
            || metrics.contains("gremlins_reclaimed_idle_connections_total 2"),
        "reclaimed connections are counted:\n{metrics}"
    );
}

#[test]
fn panicking_handler_gets_500_and_the_worker_lives_on() {
    // One worker: if a panic killed it, nothing would be served after.
    let service = Service::start(&["--workers", "1", "--enable-test-routes"]);
    for round in 0..5 {
        let response = support::get(service.addr, "/test/panic");
        assert_error(&response, 500, "DRYAD-SYS-5000", &format!("panic {round}"));
        assert!(
            !response.text().contains("panic"),
            "the error body leaks internals: {}",
            response.text()
        );
    }
    // On a keep-alive connection too: answered, then closed.
    let mut client = Client::connect(service.addr);
    let response = client.get("/test/panic");
    assert_error(&response, 500, "DRYAD-SYS-5000", "panic on keep-alive");
    assert_closed(&mut client, "after a panic");
    service.wait_for_log("handler panicked", Duration::from_secs(10));
    assert_still_serving(service.addr);
    assert_eq!(support::get(service.addr, "/readyz").text(), "ready");
}

#[test]
fn a_body_that_stops_arriving_is_answered_408_after_the_body_timeout() {
    const BODY_TIMEOUT: Duration = Duration::from_millis(500);
    let service = service(&["--body-timeout", "500ms"]);
    let mut client = Client::connect(service.addr);
    let started = Instant::now();
    // 100 bytes announced, 10 sent, to a route that reads the body.
    client.send(
        b"POST /v1/events HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n{\"type\":\"x",
    );
    let response = client.read_response();
    let took = started.elapsed();
    assert_error(&response, 408, "DRYAD-HTTP-4081", "a body cut short");
    assert!(
        took >= BODY_TIMEOUT,
        "answered 408 {took:?} after the head, before the {BODY_TIMEOUT:?} body timeout"
    );
    assert!(
        took < BODY_TIMEOUT + Duration::from_secs(5),
        "answered 408 only {took:?} after the head; the body timeout is {BODY_TIMEOUT:?}"
    );
    assert_closed(&mut client, "after 408 for a body cut short");
    assert_still_serving(service.addr);
}

#[test]
fn a_full_worker_queue_answers_503_with_retry_after_instead_of_waiting() {
    // One worker busy for a second and one queue slot: of five requests
    // sent at once, at most two are taken, and the others are refused at
    // once, not left waiting.
    const CLIENTS: usize = 5;
    let service = Service::start(&[
        "--workers",
        "1",
        "--queue-capacity",
        "1",
        "--enable-test-routes",
    ]);
    let mut clients: Vec<Client> = (0..CLIENTS)
        .map(|_| {
            let mut client = Client::connect(service.addr);
            client.send(b"GET /test/sleep?ms=1000 HTTP/1.1\r\nHost: t\r\n\r\n");
            client
        })
        .collect();
    let mut refused = 0;
    for (index, client) in clients.iter_mut().enumerate() {
        let response = client.read_response();
        if response.status == 200 {
            continue;
        }
        assert_error(
            &response,
            503,
            "DRYAD-SYS-5001",
            &format!("client {index} with the queue full"),
        );
        assert_eq!(
            response.header("retry-after"),
            Some("1"),
            "client {index}: {response:?}"
        );
        assert_closed(client, "after 503 with the queue full");
        refused += 1;
    }
    assert!(
        refused >= CLIENTS - 2,
        "{refused} of {CLIENTS} requests refused; one worker and one queue slot take at most 2"
    );
    assert_still_serving(service.addr);
}
