//! The service speaks systemd's protocols, through the real thing: socket
//! activation by `systemd-socket-activate` (Debian's `systemd` package)
//! and by an inherited descriptor with a socket filter left on it; the
//! notify protocol on a socket the test binds; the watchdog, which stops
//! when the poller is stuck.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::{Duration, Instant};

use support::notify::{NotifySocket, field};
use support::{CONNECT_TIMEOUT, RESPONSE_TIMEOUT, START_TIMEOUT, Service, binary};

const EXIT_TIMEOUT: Duration = Duration::from_secs(15);

/// A port nobody listens on now (bound, then closed).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// `GET /` on a new connection, whole answer.
fn get_root(addr: SocketAddr) -> Result<String, String> {
    let mut stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
        .map_err(|error| format!("connect to {addr}: {error}"))?;
    stream
        .set_read_timeout(Some(RESPONSE_TIMEOUT))
        .map_err(|error| error.to_string())?;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .map_err(|error| format!("write: {error}"))?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(|error| format!("read: {error}"))?;
    Ok(answer)
}

#[test]
fn systemd_socket_activate_hands_its_socket_to_the_service() {
    let Some(activate) = support::server_process::find_in_path("systemd-socket-activate") else {
        panic!(
            "systemd-socket-activate is missing: install Debian's systemd package \
             (apt-get install systemd; .ci/test does)"
        );
    };
    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    // systemd-socket-activate starts the service at the first connection:
    // this client makes it, and is served by the service from the backlog.
    let first = std::thread::spawn(move || {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match get_root(addr) {
                Ok(answer) => return Ok(answer),
                // Refused until systemd-socket-activate listens.
                Err(error) if Instant::now() < deadline && error.contains("refused") => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(error) => return Err(error),
            }
        }
    });
    let mut command = Command::new(activate);
    command
        .arg("-l")
        .arg(addr.to_string())
        .arg(binary())
        // Not bound: the service must serve the socket it is given.
        .args(["--listen", "127.0.0.1:1"]);
    let mut service = Service::spawn(command, &[]);
    assert_eq!(
        service.addr, addr,
        "the service listens on the given socket"
    );
    let answer = first
        .join()
        .expect("the first client")
        .expect("the first connection, queued before the service started, is served");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let log = service.log_text();
    assert!(
        log.contains("took listening socket 3 (") && log.contains(&addr.to_string()),
        "the log says which socket it took:\n{log}"
    );
    assert!(log.contains("not binding --listen 127.0.0.1:1"), "{log}");
    let answer = get_root(addr).expect("a second connection");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let (code, _) = service.terminate(EXIT_TIMEOUT);
    assert_eq!(code, 0, "{}", service.log_text());
    support::assert_nothing_lost(&service.report());
}

#[test]
fn an_inherited_socket_with_a_filter_left_on_it_serves() {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("a socket");
    let addr: SocketAddr = ([127, 0, 0, 1], 0).into();
    socket.bind(&addr.into()).expect("bind");
    socket.listen(128).expect("listen");
    let addr = socket
        .local_addr()
        .expect("address")
        .as_socket()
        .expect("an IP address");
    // What a graceful stop leaves on a socket that outlives it: a filter
    // that drops every new handshake.
    socket
        .attach_filter(&[socket2::SockFilter::new(0x06, 0, 0, 0)])
        .expect("attach a drop-everything filter");
    // Passed as descriptor 3 with LISTEN_PID naming the service: bash
    // moves it into place and execs (keeping its PID) into the service.
    let fd = socket.as_raw_fd();
    socket.set_cloexec(false).expect("inheritable");
    let into_place = if fd == 3 {
        String::new()
    } else {
        format!("exec 3<&{fd} {fd}<&-; ")
    };
    let script = format!(
        "{into_place}export LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=http; exec \"$0\" \"$@\""
    );
    // bash: dash takes only one-digit descriptors in redirections.
    let mut command = Command::new("bash");
    command
        .arg("-c")
        .arg(script)
        .arg(binary())
        .args(["--listen", "127.0.0.1:1"]);
    let mut service = Service::spawn(command, &[]);
    drop(socket);
    assert_eq!(service.addr, addr);
    let log = service.log_text();
    assert!(
        log.contains("removed a socket filter left on an inherited listener"),
        "{log}"
    );
    assert!(log.contains("took listening socket 3 (http)"), "{log}");
    let answer = get_root(addr).expect("served once the filter is gone");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let (code, _) = service.terminate(EXIT_TIMEOUT);
    assert_eq!(code, 0, "{}", service.log_text());
}

#[test]
fn the_manager_hears_ready_then_stopping_with_the_time_the_stop_needs() {
    let notify = NotifySocket::bind();
    let mut service = Service::start_with_env(
        &["--shutdown-timeout", "7s", "--cleanup-timeout", "2s"],
        &[("NOTIFY_SOCKET", notify.path())],
    );
    let (before, ready) = notify.wait_for("READY=1", START_TIMEOUT);
    assert!(before.is_empty(), "nothing before READY=1: {before:?}");
    assert_eq!(ready, "READY=1\n");
    service.signal("TERM");
    let (before, stopping) = notify.wait_for("STOPPING=1", EXIT_TIMEOUT);
    assert!(before.is_empty(), "nothing between: {before:?}");
    assert_eq!(stopping, "STOPPING=1\n");
    let (_, extend) = notify.wait_for("EXTEND_TIMEOUT_USEC=", EXIT_TIMEOUT);
    // The shutdown and cleanup timeouts, and a second for the exit.
    assert_eq!(field(&extend, "EXTEND_TIMEOUT_USEC"), Some("10000000"));
    service.assert_exit_code(0, EXIT_TIMEOUT);
    assert_eq!(
        notify.all(),
        [
            "READY=1\n",
            "STOPPING=1\n",
            "EXTEND_TIMEOUT_USEC=10000000\n"
        ],
        "every message, in order"
    );
}

#[test]
fn the_watchdog_pings_while_idle_and_stops_when_the_poller_is_stuck() {
    let notify = NotifySocket::bind();
    let service = Service::start_with_env(
        &[
            "--enable-test-routes",
            "--test-stall-poller-after",
            "1500ms",
        ],
        &[
            ("NOTIFY_SOCKET", notify.path()),
            // Every 100 ms.
            ("WATCHDOG_USEC", "200000"),
        ],
    );
    notify.wait_for("READY=1", START_TIMEOUT);
    // Idle: the poller waits on nothing but its waker, and still answers.
    let pings = notify
        .during(Duration::from_millis(800))
        .into_iter()
        .filter(|(_, message)| message == "WATCHDOG=1\n")
        .count();
    assert!(
        pings >= 4,
        "about 8 pings in 800 ms while idle, got {pings}: {:?}",
        notify.all()
    );
    service.wait_for_log("poller: stalling", START_TIMEOUT);
    // A tick under way when the poller stalled may still ping once.
    let stalled = Instant::now();
    let after: Vec<Duration> = notify
        .during(Duration::from_millis(1200))
        .into_iter()
        .filter(|(_, message)| message == "WATCHDOG=1\n")
        .map(|(at, _)| at.saturating_duration_since(stalled))
        .collect();
    assert!(
        after.iter().all(|at| *at < Duration::from_millis(250)),
        "no ping once the poller is stuck; pings at {after:?} after the stall"
    );
    service.wait_for_log("watchdog: the poller did not answer", START_TIMEOUT);
    // The stuck service is killed (by its PID) when `service` is dropped.
}
