//! HTTP/1.1 conformance of the engine, over real sockets on 127.0.0.1:
//! keep-alive, HTTP/1.0, pipelining, chunked bodies, `Expect:
//! 100-continue`, unread bodies, `HEAD`, `Date` and the per-connection
//! request limit.
//!
//! Routes that do not read a body are tested on the reference binary; body
//! reading is tested on `support::EchoServer`, the library with an `/echo`
//! route.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, SystemTime};

use support::{
    CONNECT_TIMEOUT, Client, EchoServer, RESPONSE_TIMEOUT, Response, Service, assert_closed,
};

fn service(extra: &[&str]) -> Service {
    let mut args = vec!["--workers", "2"];
    args.extend_from_slice(extra);
    Service::start(&args)
}

/// Opens a raw connection with a read timeout.
fn connect(addr: std::net::SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).expect("connect to the server");
    stream
        .set_read_timeout(Some(RESPONSE_TIMEOUT))
        .expect("set the read timeout");
    stream
}

/// Reads until the server closes the connection; panics with what was read
/// if it does not within `RESPONSE_TIMEOUT`.
fn read_to_eof(stream: &mut TcpStream) -> Vec<u8> {
    let mut bytes = Vec::new();
    if let Err(error) = stream.read_to_end(&mut bytes) {
        panic!(
            "waiting for the server to close the connection: {error}; read so far: {:?}",
            String::from_utf8_lossy(&bytes)
        );
    }
    bytes
}

fn get_request(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n")
}

fn assert_keeps_alive(response: &Response, what: &str) {
    assert!(
        !response.closes(),
        "{what}: unexpected Connection: close: {response:?}"
    );
}

#[test]
fn keep_alive_connection_serves_several_requests() {
    let service = service(&[]);
    let mut client = Client::connect(service.addr);
    for (round, path) in ["/", "/healthz", "/readyz", "/", "/healthz", "/readyz"]
        .iter()
        .enumerate()
    {
        let response = client.get(path);
        assert_eq!(
            response.status, 200,
            "request {round} ({path}): {response:?}"
        );
        assert_keeps_alive(&response, &format!("request {round} ({path})"));
    }
    let response = client.get("/nope");
    assert_eq!(response.status, 404, "{response:?}");
    assert_keeps_alive(&response, "a 404 on a keep-alive connection");
    assert_eq!(client.get("/").text(), "ok", "after the 404");
}

#[test]
fn http10_request_is_answered_and_the_connection_closed() {
    let service = service(&[]);
    let mut client = Client::connect(service.addr);
    client.send(b"GET / HTTP/1.0\r\n\r\n");
    let response = client.read_response();
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.text(), "ok");
    assert!(
        response.closes(),
        "an HTTP/1.0 response without keep-alive must say Connection: close: {response:?}"
    );
    assert_closed(&mut client, "HTTP/1.0 without keep-alive");
}

#[test]
fn http10_request_with_keep_alive_keeps_the_connection_open() {
    let service = service(&[]);
    let mut client = Client::connect(service.addr);
    for round in 0..3 {
        client.send(b"GET /readyz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        let response = client.read_response();
        assert_eq!(response.status, 200, "round {round}: {response:?}");
        assert_eq!(response.text(), "ready");
        assert_keeps_alive(&response, &format!("HTTP/1.0 keep-alive, round {round}"));
    }
    // The last request of an HTTP/1.0 client that does not ask to keep the
    // connection closes it.
    client.send(b"GET / HTTP/1.0\r\n\r\n");
    let response = client.read_response();
    assert_eq!(response.status, 200, "{response:?}");
    assert!(response.closes(), "{response:?}");
    assert_closed(&mut client, "HTTP/1.0 after keep-alive ended");
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let service = service(&[]);
    // (request, status, body check): every body tells its route apart.
    let script: [(&str, u16, &str); 6] = [
        ("GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n", 200, "ready"),
        (
            "GET /nope HTTP/1.1\r\nHost: t\r\n\r\n",
            404,
            "DRYAD-APP-4040",
        ),
        ("GET / HTTP/1.1\r\nHost: t\r\n\r\n", 200, "ok"),
        (
            "DELETE /healthz HTTP/1.1\r\nHost: t\r\n\r\n",
            405,
            "DRYAD-APP-4050",
        ),
        (
            "GET /healthz?probe=1 HTTP/1.1\r\nHost: t\r\n\r\n",
            200,
            "ok",
        ),
        (
            "GET /elsewhere HTTP/1.1\r\nHost: t\r\n\r\n",
            404,
            "no such route",
        ),
    ];
    const ROUNDS: usize = 20;
    let mut batch = String::new();
    for _ in 0..ROUNDS {
        for (request, ..) in &script {
            batch.push_str(request);
        }
    }
    let mut client = Client::connect(service.addr);
    client.send(batch.as_bytes());
    for index in 0..ROUNDS * script.len() {
        let (request, status, body) = script[index % script.len()];
        let response = client
            .try_read_response()
            .unwrap_or_else(|error| panic!("response {index} ({request:?}): {error}"));
        assert_eq!(
            response.status, status,
            "response {index} answers {request:?}: {response:?}"
        );
        assert!(
            response.text().contains(body),
            "response {index} answers {request:?}, expected a body with {body:?}: {:?}",
            response.text()
        );
        assert_keeps_alive(&response, &format!("response {index}"));
    }
    assert_eq!(client.get("/readyz").text(), "ready", "after the pipeline");
}

#[test]
fn chunked_request_body_is_decoded_with_extensions_and_trailers() {
    let server = EchoServer::start(|_| {});
    let mut client = Client::connect(server.addr);
    client.send(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
          5;name=value\r\nhello\r\n\
          7;a;b=\"quoted\"\r\n, world\r\n\
          A\r\n0123456789\r\n\
          0;last=1\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n",
    );
    let response = client.read_response();
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.text(), "hello, world0123456789");
    assert_keeps_alive(&response, "after a chunked body with trailers");
    // The trailers were consumed: the next request is read as one.
    client.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nnext");
    let response = client.read_response();
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.text(), "next");
}

#[test]
fn chunked_body_larger_than_the_read_buffer_is_decoded() {
    let server = EchoServer::start(|_| {});
    let body: Vec<u8> = (0..300 * 1024)
        .map(|index| b'a' + (index % 26) as u8)
        .collect();
    let mut request =
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for chunk in body.chunks(1000) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let mut client = Client::connect(server.addr);
    client.send(&request);
    let response = client.read_response();
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.body.len(), body.len(), "decoded body length");
    assert!(
        response.body == body,
        "the decoded body differs from the one sent"
    );
    assert_eq!(
        client.get("/healthz").text(),
        "ok",
        "after a large chunked body"
    );
}

#[test]
fn expect_continue_gets_100_and_then_the_final_response_when_the_body_is_read() {
    let server = EchoServer::start(|_| {});
    let mut client = Client::connect(server.addr);
    client.send(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    );
    // The client waits for 100 before it sends the body.
    let interim = client
        .try_read_one()
        .unwrap_or_else(|error| panic!("waiting for 100 Continue: {error}"));
    assert_eq!(interim.status, 100, "{interim:?}");
    client.send(b"hello");
    let response = client.read_response();
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.text(), "hello");
    assert_keeps_alive(&response, "after 100-continue");

    // Same with a chunked body, and the connection still carries requests.
    client.send(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\
          Expect: 100-continue\r\n\r\n",
    );
    let interim = client
        .try_read_one()
        .unwrap_or_else(|error| panic!("waiting for the second 100 Continue: {error}"));
    assert_eq!(interim.status, 100, "{interim:?}");
    client.send(b"3\r\nabc\r\n0\r\n\r\n");
    let response = client.read_response();
    assert_eq!(response.text(), "abc", "{response:?}");
    assert_eq!(client.get("/healthz").text(), "ok");
}

/// RFC 9110 10.1.1: the server answers `100 Continue` itself, once the
/// head passed its checks, before the handler runs (which then sees the
/// whole body, even one it does not read).
#[test]
fn expect_continue_is_answered_by_the_engine_before_the_handler_runs() {
    let server = EchoServer::start(|_| {});
    let mut client = Client::connect(server.addr);
    client.send(
        b"POST /ignore HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    );
    let interim = client
        .try_read_one()
        .unwrap_or_else(|error| panic!("waiting for 100 Continue: {error}"));
    assert_eq!(interim.status, 100, "{interim:?}");
    client.send(b"hello");
    let response = client.read_response();
    assert_eq!(response.text(), "ignored", "{response:?}");
    assert_keeps_alive(&response, "a 100-continue body read by the engine");
    assert_eq!(client.get("/healthz").text(), "ok");
}

/// RFC 9110 10.1.1: a server that will not take the body answers the
/// final status instead of `100 Continue`.
#[test]
fn expect_continue_with_an_oversize_body_gets_413_and_no_100() {
    let service = service(&["--max-body-bytes", "1000"]);
    let mut client = Client::connect(service.addr);
    client.send(
        b"POST /v1/events HTTP/1.1\r\nHost: t\r\nContent-Length: 1001\r\nExpect: 100-continue\r\n\r\n",
    );
    let response = client
        .try_read_one()
        .unwrap_or_else(|error| panic!("waiting for the final response: {error}"));
    assert_eq!(
        response.status, 413,
        "no 100 Continue expected: {response:?}"
    );
    assert_eq!(response.json()["code"], "DRYAD-HTTP-4131", "{response:?}");
    assert!(response.closes(), "{response:?}");
    assert_closed(&mut client, "after 413 to a 100-continue request");
    support::assert_still_serving(service.addr);
}

#[test]
fn unread_body_is_skipped_and_the_next_request_is_answered() {
    let service = service(&[]);
    let mut client = Client::connect(service.addr);
    // A Content-Length body that looks like a request must not be served.
    let smuggled = "GET /nope HTTP/1.1\r\nHost: t\r\n\r\n";
    client.send(
        format!(
            "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{smuggled}{}",
            smuggled.len(),
            get_request("/readyz")
        )
        .as_bytes(),
    );
    let response = client.read_response();
    assert_eq!(response.status, 405, "{response:?}");
    assert_keeps_alive(&response, "a small unread body is drained");
    let response = client.read_response();
    assert_eq!(
        response.status, 200,
        "the body was misread as a request: {response:?}"
    );
    assert_eq!(response.text(), "ready");

    // The same with a chunked body, trailers included.
    client.send(
        format!(
            "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
             {:x}\r\n{smuggled}\r\n0\r\nX-Trailer: GET /nope HTTP/1.1\r\n\r\n{}",
            smuggled.len(),
            get_request("/readyz")
        )
        .as_bytes(),
    );
    let response = client.read_response();
    assert_eq!(response.status, 405, "{response:?}");
    assert_keeps_alive(&response, "a small unread chunked body is drained");
    let response = client.read_response();
    assert_eq!(
        response.status, 200,
        "the body was misread as a request: {response:?}"
    );
    assert_eq!(response.text(), "ready");
}

#[test]
fn a_large_unread_body_is_read_whole_and_never_misread_as_requests() {
    let service = service(&[]);
    let stream = connect(service.addr);
    let mut writer = stream.try_clone().expect("clone the stream");
    // 100 KiB full of requests, which the handler (405) never reads.
    let line = get_request("/nope");
    let body = line.repeat(100 * 1024 / line.len() + 1);
    let request = format!(
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}{}",
        body.len(),
        get_request("/readyz")
    );
    let writing = std::thread::spawn(move || {
        writer
            .set_write_timeout(Some(RESPONSE_TIMEOUT))
            .expect("set the write timeout");
        writer.write_all(request.as_bytes())
    });
    let mut client = Client::from_stream(stream);
    let response = client.read_response();
    assert_eq!(response.status, 405, "{response:?}");
    assert_keeps_alive(&response, "the whole body was read before the handler");
    let response = client.read_response();
    assert_eq!(
        (response.status, response.text().as_str()),
        (200, "ready"),
        "the body was misread as a request: {response:?}"
    );
    writing
        .join()
        .expect("the writer thread")
        .expect("the server took the whole request");
}

#[test]
fn head_response_has_content_length_but_no_body() {
    let service = service(&[]);
    let mut stream = connect(service.addr);
    stream
        .write_all(
            b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n\
              HEAD /nope HTTP/1.1\r\nHost: t\r\n\r\n\
              GET /readyz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        )
        .expect("write the requests");
    let bytes = read_to_eof(&mut stream);
    let text = String::from_utf8_lossy(&bytes).into_owned();
    // Three heads, and only the GET's body after the last one.
    let parts: Vec<&str> = text.split("\r\n\r\n").collect();
    assert_eq!(
        parts.len(),
        4,
        "three heads and one body expected: {text:?}"
    );
    let content_length = |head: &str| {
        head.lines()
            .find_map(|line| line.strip_prefix("Content-Length: "))
            .map(str::to_owned)
    };
    assert!(parts[0].starts_with("HTTP/1.1 200 OK\r\n"), "{text:?}");
    assert_eq!(content_length(parts[0]).as_deref(), Some("2"), "{text:?}");
    assert!(
        parts[1].starts_with("HTTP/1.1 404 Not Found\r\n"),
        "{text:?}"
    );
    let not_found_length = content_length(parts[1]).expect("a Content-Length on HEAD 404");
    assert_ne!(not_found_length, "0", "{text:?}");
    assert!(parts[2].starts_with("HTTP/1.1 200 OK\r\n"), "{text:?}");
    assert_eq!(parts[3], "ready", "{text:?}");
}

#[test]
fn every_response_carries_a_valid_date_header() {
    let service = service(&[]);
    let mut client = Client::connect(service.addr);
    let mut responses = vec![client.get("/"), client.get("/nope"), {
        client.send(b"PUT /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
        client.read_response()
    }];
    // A head the engine refuses before any handler runs.
    let mut refused = Client::connect(service.addr);
    refused.send(b"NOT HTTP AT ALL\r\n\r\n");
    responses.push(refused.read_response());
    assert_eq!(
        responses
            .iter()
            .map(|response| response.status)
            .collect::<Vec<_>>(),
        [200, 404, 405, 400]
    );
    for response in &responses {
        let date = response
            .header("date")
            .unwrap_or_else(|| panic!("no Date header: {response:?}"));
        let when = httpdate::parse_http_date(date)
            .unwrap_or_else(|error| panic!("Date {date:?} is not an HTTP date: {error}"));
        let skew = match when.duration_since(SystemTime::now()) {
            Ok(ahead) => ahead,
            Err(behind) => behind.duration(),
        };
        assert!(
            skew < Duration::from_secs(60),
            "Date {date:?} is {skew:?} off"
        );
    }
}

#[test]
fn connection_closes_after_max_requests_per_connection() {
    let service = service(&["--max-requests-per-connection", "3"]);
    let mut client = Client::connect(service.addr);
    for round in 1..=2 {
        let response = client.get("/");
        assert_eq!(response.status, 200, "{response:?}");
        assert_keeps_alive(&response, &format!("request {round} of 3"));
    }
    let last = client.get("/");
    assert_eq!(last.status, 200, "{last:?}");
    assert!(last.closes(), "the third request must close: {last:?}");
    assert_closed(&mut client, "after max_requests_per_connection");

    // Pipelined: requests beyond the limit are not answered.
    let mut client = Client::connect(service.addr);
    client.send(get_request("/readyz").repeat(5).as_bytes());
    for round in 1..=3 {
        let response = client.read_response();
        assert_eq!(
            response.text(),
            "ready",
            "pipelined request {round}: {response:?}"
        );
        assert_eq!(
            response.closes(),
            round == 3,
            "pipelined request {round}: {response:?}"
        );
    }
    assert_closed(&mut client, "after max_requests_per_connection, pipelined");
    support::assert_still_serving(service.addr);
}

#[test]
fn unknown_path_is_404_and_wrong_method_is_405_with_allow_as_json_errors() {
    let service = service(&[]);
    let mut client = Client::connect(service.addr);
    let missing = client.get("/no/such/route");
    assert_eq!(missing.status, 404, "{missing:?}");
    assert_eq!(missing.header("content-type"), Some("application/json"));
    let body = missing.json();
    assert_eq!(body["error"], "Not Found", "{body}");
    assert_eq!(body["code"], "DRYAD-APP-4040", "{body}");
    assert!(body["message"].is_string(), "{body}");

    client.send(b"POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
    let wrong = client.read_response();
    assert_eq!(wrong.status, 405, "{wrong:?}");
    assert_eq!(wrong.header("allow"), Some("GET, HEAD"), "{wrong:?}");
    let body = wrong.json();
    assert_eq!(body["error"], "Method Not Allowed", "{body}");
    assert_eq!(body["code"], "DRYAD-APP-4050", "{body}");
}

/// RFC 9112 section 3.2: "A server MUST respond with a 400 (Bad Request)
/// status code to any HTTP/1.1 request message that lacks a Host header
/// field and to any request message that contains more than one Host
/// header field line".
#[test]
fn http11_request_without_exactly_one_host_is_rejected_with_400() {
    let service = service(&[]);
    for request in [
        "GET / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: user@a\r\n\r\n",
    ] {
        let mut client = Client::connect(service.addr);
        client.send(request.as_bytes());
        let response = client.read_response();
        assert_eq!(response.status, 400, "answer to {request:?}: {response:?}");
    }
    support::assert_still_serving(service.addr);
}

/// Sends `request` on a new connection and returns everything the server
/// sends until it closes the connection.
fn exchange_to_eof(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut stream = connect(addr);
    stream.write_all(request).expect("write the request");
    String::from_utf8_lossy(&read_to_eof(&mut stream)).into_owned()
}

/// RFC 9112 section 3.2.2: "A server MUST accept the absolute-form in
/// requests" and, as an origin server, "MUST ignore the received Host
/// header field (if any) and instead use the host information of the
/// request-target".
#[test]
fn an_absolute_form_target_is_served_by_its_path_and_its_authority_replaces_host() {
    let server = EchoServer::start(|_| {});
    let answer = exchange_to_eof(
        server.addr,
        b"GET http://Example.com:8080/target?x=1 HTTP/1.1\r\nHost: other\r\nConnection: close\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer:?}");
    assert!(
        answer.ends_with("host=Example.com:8080 path=/target query=x=1"),
        "{answer:?}"
    );
    let answer = exchange_to_eof(
        server.addr,
        b"GET https://example.com HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n",
    );
    assert!(answer.ends_with("ok"), "no path is the path /: {answer:?}");
    // Still HTTP/1.1: Host is required (RFC 9112 3.2), and a target with
    // no authority is refused.
    for request in [
        "GET http://example.com/ HTTP/1.1\r\n\r\n",
        "GET http:///target HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET ftp://example.com/ HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        let answer = exchange_to_eof(server.addr, request.as_bytes());
        assert!(
            answer.starts_with("HTTP/1.1 400 "),
            "{request:?}: {answer:?}"
        );
    }
}

/// RFC 9110 section 5.6.1: "a recipient MUST accept empty list elements";
/// they are ignored, in every list-valued field the engine reads
/// (`Transfer-Encoding`, `Connection`, `Expect`).
#[test]
fn empty_list_elements_are_ignored_in_every_list_field_the_engine_reads() {
    let server = EchoServer::start(|_| {});
    let answer = exchange_to_eof(
        server.addr,
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: ,chunked\r\nConnection: , close,\r\n\r\n\
          3\r\nabc\r\n0\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer:?}");
    assert!(answer.contains("Connection: close\r\n"), "{answer:?}");
    assert!(answer.ends_with("\r\n\r\nabc"), "{answer:?}");

    let mut stream = connect(server.addr);
    stream
        .write_all(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nExpect: , 100-continue\r\n\
              Connection: close\r\n\r\n",
        )
        .expect("write the head");
    let mut interim = [0u8; 25];
    stream.read_exact(&mut interim).expect("the interim answer");
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(b"hi").expect("write the body");
    let rest = String::from_utf8_lossy(&read_to_eof(&mut stream)).into_owned();
    assert!(rest.ends_with("\r\n\r\nhi"), "{rest:?}");
}

/// RFC 9112 section 6.1: "A sender MUST NOT apply the chunked transfer
/// coding more than once to a message body", and section 6.3: "If a
/// Transfer-Encoding header field is present in a request and the chunked
/// transfer coding is not the final encoding, the message body length
/// cannot be determined reliably; the server MUST respond with the 400
/// (Bad Request) status code and then close the connection". A coding it
/// does not implement before `chunked` is 501 (section 6.1: "SHOULD
/// respond with 501").
#[test]
fn chunked_twice_or_not_last_is_400_and_an_unknown_coding_before_it_is_501() {
    let server = EchoServer::start(|_| {});
    for (request, status, code) in [
        (
            "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            "400",
            "DRYAD-HTTP-4007",
        ),
        (
            "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            "400",
            "DRYAD-HTTP-4007",
        ),
        (
            "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            "400",
            "DRYAD-HTTP-4007",
        ),
        (
            "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n",
            "400",
            "DRYAD-HTTP-4007",
        ),
        (
            "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: ,\r\n\r\n",
            "400",
            "DRYAD-HTTP-4007",
        ),
        (
            "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
            "501",
            "DRYAD-HTTP-5011",
        ),
    ] {
        let answer = exchange_to_eof(server.addr, request.as_bytes());
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status} ")) && answer.contains(code),
            "{request:?}: {answer:?}"
        );
        assert!(
            answer.contains("Connection: close\r\n"),
            "{request:?}: {answer:?}"
        );
    }
}

/// RFC 9110 section 2.5: a recipient of a higher minor version of
/// HTTP/1 "SHOULD process it as if it were the highest minor version
/// within that major version to which the recipient is conformant" (and
/// answers in that version); another major version is refused with 505
/// (section 15.6.6).
#[test]
fn a_higher_minor_version_is_served_as_http11_and_another_major_version_gets_505() {
    let server = EchoServer::start(|_| {});
    let answer = exchange_to_eof(
        server.addr,
        b"GET /target HTTP/1.2\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer:?}");
    assert!(answer.ends_with("path=/target query=-"), "{answer:?}");
    for request in [
        "GET / HTTP/2.0\r\nHost: t\r\n\r\n",
        "GET / HTTP/3.1\r\nHost: t\r\n\r\n",
    ] {
        let answer = exchange_to_eof(server.addr, request.as_bytes());
        assert!(
            answer.starts_with("HTTP/1.1 505 HTTP Version Not Supported\r\n")
                && answer.contains("DRYAD-HTTP-5051"),
            "{request:?}: {answer:?}"
        );
    }
    let answer = exchange_to_eof(server.addr, b"GET / HTTP/1.10\r\nHost: t\r\n\r\n");
    assert!(
        answer.starts_with("HTTP/1.1 400 "),
        "not HTTP-version syntax: {answer:?}"
    );
}

/// RFC 9112 section 3.2.4: "The asterisk-form of request-target is only
/// used for a server-wide OPTIONS request".
#[test]
fn the_asterisk_form_is_for_options_only() {
    let server = EchoServer::start(|_| {});
    let answer = exchange_to_eof(server.addr, b"GET * HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(
        answer.starts_with("HTTP/1.1 400 ") && answer.contains("DRYAD-HTTP-4001"),
        "{answer:?}"
    );
    let answer = exchange_to_eof(
        server.addr,
        b"OPTIONS * HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer:?}");
    assert!(answer.ends_with("path=* query=-"), "{answer:?}");
}

/// RFC 9110 section 9.3.2: "The server SHOULD send the same header fields
/// in response to a HEAD request as it would have sent if the request
/// method had been GET", and a response to HEAD has no content (section
/// 6.4.1), error answers included.
#[test]
fn error_answers_to_head_carry_no_body() {
    let server = EchoServer::start(|config| config.max_body_bytes = 1000);
    for request in [
        "HEAD /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n",
        "HEAD /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
        "HEAD /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    ] {
        let answer = exchange_to_eof(server.addr, request.as_bytes());
        let (head, body) = answer
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("{request:?}: no complete head: {answer:?}"));
        assert!(head.starts_with("HTTP/1.1 4"), "{request:?}: {answer:?}");
        assert!(head.contains("Content-Length: "), "{request:?}: {answer:?}");
        assert_eq!(body, "", "{request:?}: a body after the head: {answer:?}");
    }
}

/// RFC 9110 section 5.3: a field that is not a list "MUST NOT" be sent in
/// more than one field line; `Content-Type` is one (section 8.3), and a
/// scraper reads the first. `/metrics` sets its own, which replaces the
/// default of a text response.
#[test]
fn metrics_answer_with_one_content_type_the_openmetrics_one() {
    let service = service(&[]);
    let answer = exchange_to_eof(
        service.addr,
        b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    let head = answer.split("\r\n\r\n").next().unwrap_or_default();
    let content_types: Vec<&str> = head
        .lines()
        .filter(|line| line.to_ascii_lowercase().starts_with("content-type:"))
        .collect();
    assert_eq!(
        content_types,
        ["Content-Type: application/openmetrics-text; version=1.0.0; charset=utf-8"],
        "{head}"
    );
    assert!(answer.ends_with("# EOF\n"), "{answer:?}");
}

/// Field syntax the engine refuses with 400, each per its RFC rule:
/// RFC 9112 5.2 (obs-fold in a request: "MUST either reject the message by
/// sending a 400"), 5.1 ("MUST reject ... any received request message
/// that contains whitespace between a header field name and colon"), 2.2
/// (a bare CR "MUST consider that element to be invalid"; whitespace
/// before the first field line "MUST either reject the message as
/// invalid" or ignore that line), RFC 9110 5.5 (CR, LF or NUL in a value
/// "MUST either reject the message or replace" them; other control bytes
/// are not field content). A bare LF ends a line (RFC 9112 2.2: "MAY
/// recognize a single LF as a line terminator").
#[test]
fn field_syntax_errors_are_400_and_a_bare_lf_ends_a_line() {
    let server = EchoServer::start(|_| {});
    for request in [
        "GET /target HTTP/1.1\r\nHost: t\r\nX-Folded: a\r\n b\r\n\r\n",
        "GET /target HTTP/1.1\r\nHost : t\r\n\r\n",
        "GET /target HTTP/1.1\r\nHost: t\r\nX: a\rb\r\n\r\n",
        "GET /target HTTP/1.1\r\n Host: t\r\n\r\n",
        "GET /target HTTP/1.1\r\nHost: t\r\nX: a\0b\r\n\r\n",
        "GET /target HTTP/1.1\r\nHost: t\r\nX: a\x01b\r\n\r\n",
        "GET /tar get HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET example.com:443 HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET target HTTP/1.1\r\nHost: t\r\n\r\n",
    ] {
        let answer = exchange_to_eof(server.addr, request.as_bytes());
        assert!(
            answer.starts_with("HTTP/1.1 400 ") && answer.contains("DRYAD-HTTP-4001"),
            "{request:?}: {answer:?}"
        );
    }
    // The authority-form is CONNECT's (RFC 9112 3.2.3).
    let answer = exchange_to_eof(
        server.addr,
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nConnection: close\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer:?}");
    let answer = exchange_to_eof(
        server.addr,
        b"GET /target HTTP/1.1\nHost: t\nConnection: close\n\n",
    );
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer:?}");
    assert!(
        answer.ends_with("host=t path=/target query=-"),
        "{answer:?}"
    );
}

/// A client that ends its side (FIN) in the middle of a request is
/// answered at once (400 `DRYAD-HTTP-4005` for a body, a close for a
/// head), not when a timer runs out: the end may arrive in the same
/// readiness event as the last bytes, and no other event follows it.
#[test]
fn a_client_that_ends_its_side_mid_request_is_answered_at_once() {
    let server = EchoServer::start(|_| {});
    for (request, expected) in [
        (
            &b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 9\r\n\r\nhello"[..],
            "HTTP/1.1 400 ",
        ),
        (b"POST /echo HTTP/1.1\r\nHost: t\r\n", ""),
    ] {
        let mut stream = connect(server.addr);
        // Well before the 5 s grace of the body rate and the 10 s header
        // timeout, either of which would end the wait otherwise.
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("set the read timeout");
        stream.write_all(request).expect("write the request");
        stream
            .shutdown(std::net::Shutdown::Write)
            .expect("end the client's side");
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).unwrap_or_else(|error| {
            panic!(
                "no answer and no close within 2 s of the client's end ({error}): {:?}",
                String::from_utf8_lossy(request)
            )
        });
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with(expected), "{answer:?}");
    }
}
