//! Slow and hostile clients against a fixed pool of workers: a worker never
//! waits on a client, so clients that trickle bodies or never read cost no
//! worker; minimum data rates end them; a memory budget bounds what they
//! make the server hold. Real processes and sockets on 127.0.0.1.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use support::{Client, EchoServer, Response, Service};

/// These tests load the machine (hundreds of sockets, timed clients): one
/// at a time, so that the timings one asserts are not another's noise.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A JSON event whose whole body is exactly `size` bytes.
fn event_of_size(size: usize) -> Vec<u8> {
    let frame = br#"{"type":"big","payload":{"data":""}}"#;
    let mut body = frame[..frame.len() - 3].to_vec();
    body.resize(size - 3, b'x');
    body.extend_from_slice(br#""}}"#);
    body
}

fn post_head(length: usize) -> String {
    format!(
        "POST /v1/events HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         Content-Length: {length}\r\n\r\n"
    )
}

/// Posts a small event on a fresh connection and returns the answer.
fn post_event(addr: SocketAddr) -> Response {
    let body = br#"{"type":"probe","payload":{}}"#;
    let mut client = Client::connect(addr);
    let mut request = post_head(body.len()).into_bytes();
    request.extend_from_slice(body);
    client
        .try_exchange(&request)
        .unwrap_or_else(|error| panic!("POST /v1/events: {error}"))
}

/// `GET /healthz` on a fresh connection; returns how long it took.
fn timed_healthz(addr: SocketAddr) -> Duration {
    let started = Instant::now();
    let response = support::get(addr, "/healthz");
    assert_eq!(response.status, 200, "/healthz: {response:?}");
    started.elapsed()
}

/// Connects `count` clients that each send a body head and then one body
/// byte a second, from one thread, for `duration` at most.
fn trickle_bodies(
    addr: SocketAddr,
    count: usize,
    duration: Duration,
) -> JoinHandle<Vec<TcpStream>> {
    let mut streams: Vec<TcpStream> = (0..count)
        .map(|_| {
            let mut stream = Client::connect(addr).stream;
            stream
                .write_all(post_head(1000).as_bytes())
                .expect("send a body head");
            stream
        })
        .collect();
    std::thread::spawn(move || {
        let started = Instant::now();
        while started.elapsed() < duration {
            for stream in &mut streams {
                // A client the server already answered may fail to write.
                let _ = stream.write_all(b"{");
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        streams
    })
}

/// Connects `count` clients that pipeline large requests and never read.
fn pipeline_without_reading(addr: SocketAddr, count: usize, path: &str) -> Vec<TcpStream> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").repeat(50);
    (0..count)
        .map(|_| {
            let mut stream = Client::connect(addr).stream;
            stream
                .write_all(request.as_bytes())
                .expect("pipeline requests");
            stream
        })
        .collect()
}

#[test]
fn two_hundred_slow_bodies_and_fifty_non_readers_hold_no_worker() {
    let _serial = one_at_a_time();
    let service = Service::start(&["--workers", "2", "--max-connections", "1024"]);
    // Events to make `GET /v1/events?limit=1000` a large answer.
    for _ in 0..100 {
        let mut client = Client::connect(service.addr);
        let body = event_of_size(2000);
        let mut request = post_head(body.len()).into_bytes();
        request.extend_from_slice(&body);
        let response = client.try_exchange(&request).expect("seed an event");
        assert_eq!(response.status, 201, "{response:?}");
    }
    let trickling = trickle_bodies(service.addr, 200, Duration::from_secs(4));
    let _pipeliners = pipeline_without_reading(service.addr, 50, "/v1/events?limit=1000");
    support::wait_until(
        Duration::from_secs(20),
        "the 250 attack connections open",
        || support::metric(service.addr, "gremlins_open_connections") >= 251,
    );

    let mut slowest = Duration::ZERO;
    let started = Instant::now();
    let mut probes = 0;
    while started.elapsed() < Duration::from_secs(3) {
        slowest = slowest.max(timed_healthz(service.addr));
        probes += 1;
        if probes % 10 == 0 {
            let response = post_event(service.addr);
            assert_eq!(
                response.status, 201,
                "a normal POST during the attack: {response:?}"
            );
        }
    }
    assert!(
        slowest < Duration::from_millis(100),
        "the slowest of {probes} /healthz probes during the attack took {slowest:?}"
    );
    assert!(
        support::metric(service.addr, "gremlins_open_connections") >= 251,
        "the attack connections were still open while probing"
    );
    drop(trickling.join().expect("the trickling thread"));
}

#[test]
fn a_legitimate_slow_upload_succeeds_while_a_one_byte_a_second_body_gets_408() {
    let _serial = one_at_a_time();
    let service = Service::start(&["--workers", "2"]);
    let addr = service.addr;
    let upload = std::thread::spawn(move || {
        // 64 KiB at 4 KiB/s: slow, but far above the minimum rate.
        let body = event_of_size(64 * 1024);
        let mut client = Client::connect(addr);
        client.send(post_head(body.len()).as_bytes());
        for chunk in body.chunks(4 * 1024) {
            client.send(chunk);
            std::thread::sleep(Duration::from_secs(1));
        }
        client.read_response()
    });

    let mut trickler = Client::connect(addr);
    trickler.send(post_head(1000).as_bytes());
    let started = Instant::now();
    trickler
        .stream
        .set_nonblocking(true)
        .expect("non-blocking trickler");
    let mut answer = Vec::new();
    while started.elapsed() < Duration::from_secs(15) {
        // One byte a second, until the server answers.
        let _ = trickler.stream.write(b"{");
        std::thread::sleep(Duration::from_secs(1));
        let mut chunk = [0u8; 4096];
        match trickler.stream.read(&mut chunk) {
            Ok(count) if count > 0 => {
                answer.extend_from_slice(&chunk[..count]);
                break;
            }
            _ => {}
        }
    }
    let elapsed = started.elapsed();
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 408") && answer.contains("DRYAD-HTTP-4081"),
        "a 1 byte/s body after {elapsed:?}: {answer:?}"
    );
    assert!(
        (Duration::from_secs(4)..Duration::from_secs(9)).contains(&elapsed),
        "408 after the 5 s grace and within a few seconds of it, not after {elapsed:?}"
    );

    let response = upload.join().expect("the upload thread");
    assert_eq!(
        response.status, 201,
        "the 64 KiB upload at 4 KiB/s: {response:?}"
    );
}

/// Connects with a 4 KiB receive buffer (so the kernels hold little of
/// the answer) and asks an echo server for 1 MiB.
fn ask_for_a_mebibyte_with_a_small_window(addr: SocketAddr) -> TcpStream {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("a socket");
    socket
        .set_recv_buffer_size(4096)
        .expect("a small receive buffer");
    socket
        .connect_timeout(&addr.into(), support::CONNECT_TIMEOUT)
        .expect("connect");
    let mut stream: TcpStream = socket.into();
    stream
        .write_all(b"GET /bytes?n=1048576 HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("send the request");
    stream
}

#[test]
fn a_steady_reader_is_kept_while_it_drains_what_the_kernel_holds() {
    let _serial = one_at_a_time();
    // 1 KiB/s at least after 1 s; the client reads 20 KiB/s for 8 s. The
    // kernels take hundreds of KiB of the 4 MiB answer at once, and the
    // socket has no room for more for far longer than the grace: the
    // client must be judged on what it takes from the kernel, not on what
    // the server could write (which is nothing for a while).
    let server = EchoServer::start(|config| {
        config.min_write_rate = 1024;
        config.min_rate_grace = Duration::from_secs(1);
    });
    let mut stream = TcpStream::connect(server.addr).expect("connect");
    stream
        .write_all(b"GET /bytes?n=4194304 HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("send the request");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    let started = Instant::now();
    let mut received = 0;
    // 2 KiB every 100 ms for 8 s.
    for _ in 0..80 {
        let mut chunk = [0u8; 2048];
        match support::read_retrying(&stream, &mut chunk) {
            Ok(0) => panic!("closed after {received} bytes, {:?}", started.elapsed()),
            Ok(count) => received += count,
            Err(error) => panic!(
                "cut off after {received} bytes, {:?}: {error}",
                started.elapsed()
            ),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        server.open_connections(),
        1,
        "the reader was let go after {received} bytes"
    );
}

#[test]
fn a_reader_at_100_bytes_a_second_of_a_1_mib_response_is_closed() {
    let _serial = one_at_a_time();
    let server = EchoServer::start(|_| {});
    let stream = ask_for_a_mebibyte_with_a_small_window(server.addr);
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("read timeout");
    support::wait_until(Duration::from_secs(5), "the server to accept", || {
        server.open_connections() == 1
    });
    // The server resets the connection when it gives up; the client sees
    // that only after reading what its kernel already holds, so watch the
    // server's side.
    let started = Instant::now();
    let mut received = 0;
    while server.open_connections() > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the slow reader was not let go within 15 s ({received} bytes read): the minimum \
             write rate applies after its 5 s grace"
        );
        let mut chunk = [0u8; 100];
        match support::read_retrying(&stream, &mut chunk) {
            Ok(0) => break,
            Ok(count) => received += count,
            Err(error) if error.kind() == ErrorKind::WouldBlock => {}
            Err(_) => break,
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "let go after {:?}, before the 5 s grace",
        started.elapsed()
    );
    assert!(
        received < 1024 * 1024,
        "the slow reader got the whole response ({received} bytes)"
    );
}

/// Runs `curl` with `args`, returning its standard output.
fn curl(args: &[&str]) -> JoinHandle<Result<Vec<u8>, String>> {
    let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
    std::thread::spawn(move || {
        let output = Command::new("curl")
            .args(["--silent", "--show-error", "--max-time", "120"])
            .args(&args)
            .output()
            .map_err(|error| format!("run curl: {error}"))?;
        if output.status.success() {
            Ok(output.stdout)
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    })
}

#[test]
fn curl_at_16_kib_a_second_downloads_and_uploads_1_mib() {
    let _serial = one_at_a_time();
    let server = EchoServer::start(|_| {});
    let upload_file = tempfile::NamedTempFile::new().expect("a temp file");
    std::fs::write(upload_file.path(), vec![b'u'; 1024 * 1024]).expect("write 1 MiB");
    let upload_path = format!("@{}", upload_file.path().display());
    let download = curl(&[
        "--limit-rate",
        "16k",
        &format!("http://{}/bytes?n=1048576", server.addr),
    ]);
    let upload = curl(&[
        "--limit-rate",
        "16k",
        "--data-binary",
        &upload_path,
        &format!("http://{}/ignore", server.addr),
    ]);
    let downloaded = download
        .join()
        .expect("curl download")
        .expect("the download");
    assert_eq!(downloaded.len(), 1024 * 1024, "the whole 1 MiB arrived");
    let answer = upload.join().expect("curl upload").expect("the upload");
    assert_eq!(answer, b"ignored", "the 1 MiB upload was answered");
}

#[test]
fn a_4_mib_budget_under_64_slow_1_mib_bodies_stays_bounded_and_answers_everyone() {
    let _serial = one_at_a_time();
    let service = Service::start(&["--workers", "4", "--max-buffered-bytes", "4MiB"]);
    let addr = service.addr;
    let clients: Vec<JoinHandle<Result<u16, String>>> = (0..64)
        .map(|_| {
            std::thread::spawn(move || {
                let body = event_of_size(1024 * 1024);
                let mut client = Client::connect(addr);
                client.send(post_head(body.len()).as_bytes());
                // 64 KiB every 100 ms, until all is sent or an answer came.
                for chunk in body.chunks(64 * 1024) {
                    let mut peek = [0u8; 1];
                    client
                        .stream
                        .set_nonblocking(true)
                        .map_err(|e| e.to_string())?;
                    let answered = matches!(client.stream.peek(&mut peek), Ok(1));
                    client
                        .stream
                        .set_nonblocking(false)
                        .map_err(|e| e.to_string())?;
                    if answered || client.stream.write_all(chunk).is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                client.try_read_response().map(|response| {
                    if response.status == 503 {
                        assert_eq!(response.header("retry-after"), Some("1"), "{response:?}");
                        assert_eq!(response.json()["code"], "DRYAD-SYS-5004", "{response:?}");
                    }
                    response.status
                })
            })
        })
        .collect();
    let statuses: Vec<u16> = clients
        .into_iter()
        .enumerate()
        .map(|(index, client)| {
            client
                .join()
                .expect("a client thread")
                .unwrap_or_else(|error| panic!("client {index} got no answer: {error}"))
        })
        .collect();
    let created = statuses.iter().filter(|status| **status == 201).count();
    let refused = statuses.iter().filter(|status| **status == 503).count();
    assert_eq!(
        created + refused,
        64,
        "every client got 201 or 503: {statuses:?}"
    );
    assert!(created >= 4, "the budget admits bodies: {statuses:?}");
    assert!(
        refused >= 1,
        "bodies that wait over a second for room get 503: {statuses:?}"
    );
    let peak_kib = service.status_field("VmHWM");
    assert!(
        peak_kib < 40 * 1024,
        "peak RSS {peak_kib} KiB: 64 MiB of bodies must not all be held at once"
    );
    support::wait_until(
        Duration::from_secs(10),
        "every reservation given back",
        || support::metric(addr, "gremlins_buffered_bytes") == 0,
    );
}

#[test]
fn pipelined_responses_come_back_in_order_when_some_are_large() {
    let _serial = one_at_a_time();
    let server = EchoServer::start(|_| {});
    let sizes: Vec<usize> = (0..24)
        .map(|index| {
            if index % 3 == 0 {
                300_000 + index
            } else {
                10 + index
            }
        })
        .collect();
    let requests: String = sizes
        .iter()
        .map(|size| format!("GET /bytes?n={size} HTTP/1.1\r\nHost: t\r\n\r\n"))
        .collect();
    let mut client = Client::connect(server.addr);
    client.send(requests.as_bytes());
    for (index, size) in sizes.iter().enumerate() {
        let response = client.read_response();
        assert_eq!(
            (response.status, response.body.len()),
            (200, *size),
            "response {index} out of order or cut"
        );
    }
}

#[test]
fn sigterm_during_a_slow_client_attack_exits_in_time_and_answers_every_normal_client() {
    let _serial = one_at_a_time();
    let mut service = Service::start(&["--workers", "2", "--shutdown-timeout", "10s"]);
    let addr = service.addr;
    let trickling = trickle_bodies(addr, 100, Duration::from_secs(12));
    let _pipeliners = pipeline_without_reading(addr, 20, "/healthz");
    support::wait_until(
        Duration::from_secs(20),
        "the attack connections open",
        || support::metric(addr, "gremlins_open_connections") >= 121,
    );
    // Normal clients: keep-alive requests, one after another, until the
    // service closes their connection or refuses a new one. Each is
    // connected and answered once before SIGTERM (a connect after the
    // listener closed would rightly be refused).
    let (answered_once, first_answers) = crossbeam_channel::unbounded();
    let normal: Vec<JoinHandle<(u32, Option<String>)>> = (0..4)
        .map(|_| {
            let answered_once = answered_once.clone();
            std::thread::spawn(move || {
                let mut answered = 0;
                let mut client = Client::connect(addr);
                let mut started = Some(answered_once);
                loop {
                    if answered > 0 {
                        if let Some(started) = started.take() {
                            let _ = started.send(());
                        }
                    }
                    match client.try_exchange(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n") {
                        Ok(response) if response.status == 200 && response.closes() => {
                            return (answered + 1, None);
                        }
                        Ok(response) if response.status == 200 => answered += 1,
                        Ok(response) => return (answered, Some(format!("{response:?}"))),
                        Err(error) => return (answered, Some(error)),
                    }
                }
            })
        })
        .collect();
    drop(answered_once);
    for client in 0..normal.len() {
        first_answers
            .recv_timeout(support::RESPONSE_TIMEOUT)
            .unwrap_or_else(|_| panic!("normal client {client} of 4 answered once before SIGTERM"));
    }
    let signalled = Instant::now();
    service.signal("TERM");
    let code = service.exit_code(Duration::from_secs(20));
    let took = signalled.elapsed();
    assert!(
        took < Duration::from_secs(11),
        "exit {took:?} after SIGTERM, past the 10 s shutdown timeout"
    );
    assert!(
        code == 0 || code == 3,
        "exit code {code}:\n{}",
        service.log_text()
    );
    for (index, client) in normal.into_iter().enumerate() {
        let (answered, lost) = client.join().expect("a normal client");
        assert!(answered > 0, "normal client {index} was never answered");
        assert_eq!(
            lost, None,
            "normal client {index} lost a request after {answered}"
        );
    }
    drop(trickling.join().expect("the trickling thread"));
}

#[test]
fn when_slow_readers_use_up_the_budget_they_are_reset_before_their_grace_and_others_served() {
    let _serial = one_at_a_time();
    let server = EchoServer::start(|config| {
        config.max_buffered_bytes = 4 * 1024 * 1024;
        config.workers = 4;
        // Readers on both pollers: the one the request waits on must not
        // be the only one to shed its readers.
        config.pollers = 2;
    });
    // Each asks for 1 MiB and never reads: 16 of them hold far more than
    // the 4 MiB budget in unwritten output.
    let readers: Vec<TcpStream> = (0..16)
        .map(|_| ask_for_a_mebibyte_with_a_small_window(server.addr))
        .collect();
    // Each response is made once its first bytes arrive.
    for reader in &readers {
        reader
            .set_read_timeout(Some(support::RESPONSE_TIMEOUT))
            .expect("read timeout");
        let mut first = [0u8; 1];
        assert_eq!(
            support::peek_retrying(reader, &mut first).expect("the response begins"),
            1
        );
    }
    let started = Instant::now();
    let mut client = Client::connect(server.addr);
    let response = client.get("/healthz");
    assert_eq!(
        response.status, 200,
        "a request while the budget is used up: {response:?}"
    );
    support::wait_until(
        Duration::from_secs(4),
        "slow readers reset under memory pressure",
        || server.open_connections() < 16,
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "slow readers were let go only after {:?}, not before their 5 s grace",
        started.elapsed()
    );
}
