//! The adaptive drain, through the real binary: after SIGTERM (or a
//! request to the admin listener's drain endpoint) the service keeps
//! accepting until no new connection and no new request has arrived for
//! `--drain-quiet`, within `--drain-min` and `--drain-max`; the shutdown
//! report says how long it lasted, why it ended and when the last new
//! connection came.

mod support;

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use support::arrivals::{NewConnections, Tally};
use support::{Client, DRAINING_LOG, Dial, Service, assert_nothing_lost, dial, get};

/// Longest wait for a service to exit when it is expected to.
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for the log line that shows a shutdown step was reached.
const LOG_TIMEOUT: Duration = Duration::from_secs(10);
/// How much later than its rule says the drain may end: the coordinator's
/// wake-up and a loaded machine's scheduling.
const LATE_MARGIN: Duration = Duration::from_millis(400);
/// The pace of the simulated endpoint propagation: a new connection this
/// often, far more often than the quiet time.
const PACE: Duration = Duration::from_millis(50);

/// Serialises the tests of this file: one service process at a time, so
/// timings are not skewed by another's load.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static ONE: Mutex<()> = Mutex::new(());
    ONE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).expect("milliseconds fit")
}

/// The report's `drain` object, with its numbers.
struct Drain {
    reason: String,
    length_ms: u64,
    last_connection_ms: Option<u64>,
    new_connections: u64,
}

fn drain_of(report: &serde_json::Value) -> Drain {
    let drain = &report["drain"];
    Drain {
        reason: drain["reason"].as_str().expect("drain.reason").to_owned(),
        length_ms: drain["length_ms"].as_u64().expect("drain.length_ms"),
        last_connection_ms: drain["last_connection_ms"].as_u64(),
        new_connections: drain["new_connections"]
            .as_u64()
            .expect("drain.new_connections"),
    }
}

/// Asserts that the drain lasted `expected`, or at most [`LATE_MARGIN`] more.
fn assert_ends_at(length_ms: u64, expected: Duration, report: &serde_json::Value) {
    assert!(
        length_ms >= ms(expected) && length_ms <= ms(expected + LATE_MARGIN),
        "drain of {length_ms} ms; expected {} to {} ms: {report}",
        ms(expected),
        ms(expected + LATE_MARGIN)
    );
}

/// Asserts the source lost nothing: every connection answered, none
/// refused (the listener was open for all of them).
fn assert_all_answered(tally: &Tally) {
    assert!(
        tally.failures.is_empty() && tally.refused == 0,
        "{} connections answered, {} refused, failures: {:?}",
        tally.answered,
        tally.refused,
        tally.failures
    );
    assert!(tally.answered > 0, "the source opened no connection");
}

/// SIGTERM; returns when the service logged that it drains.
fn stop(service: &Service) -> Instant {
    service.signal("TERM");
    service.wait_for_log(DRAINING_LOG, LOG_TIMEOUT);
    Instant::now()
}

#[test]
fn the_drain_ends_once_new_connections_stop_coming() {
    let _one = one_at_a_time();
    let quiet = Duration::from_secs(1);
    let mut service = Service::start(&["--drain-quiet", "1s", "--drain-max", "20s"]);
    let signalled = Instant::now();
    let propagation = Duration::from_millis(1500);
    let source = NewConnections::start(
        service.addr,
        PACE,
        signalled + propagation,
        signalled + Duration::from_secs(1),
    );
    let draining = stop(&service);
    let tally = source.finish();
    service.assert_exit_code(0, EXIT_TIMEOUT);

    assert_all_answered(&tally);
    let report = service.report();
    assert_nothing_lost(&report);
    let drain = drain_of(&report);
    assert_eq!(drain.reason, "quiet", "report {report}");
    let last = drain
        .last_connection_ms
        .unwrap_or_else(|| panic!("no connection counted during the drain: {report}"));
    let quiet_after_last = drain.length_ms - last;
    assert!(
        quiet_after_last >= ms(quiet) && quiet_after_last <= ms(quiet + LATE_MARGIN),
        "the listener closed {quiet_after_last} ms after the last new connection; expected \
         {} to {} ms: {report}",
        ms(quiet),
        ms(quiet + LATE_MARGIN)
    );
    let source_ran = ms(signalled + propagation - draining.min(signalled + propagation));
    assert!(
        last + 200 >= source_ran,
        "the last connection counted came at {last} ms, but the source ran {source_ran} ms \
         into the drain: {report}"
    );
    assert!(
        drain.new_connections >= tally.answered / 2,
        "{} new connections counted for {} answered: {report}",
        drain.new_connections,
        tally.answered
    );
    eprintln!(
        "drain: {} ms, ended {quiet_after_last} ms after the last of {} new connections \
         ({} answered by the source)",
        drain.length_ms, drain.new_connections, tally.answered
    );
}

#[test]
fn traffic_that_never_stops_ends_the_drain_at_drain_max() {
    let _one = one_at_a_time();
    let max = Duration::from_secs(2);
    let mut service = Service::start(&["--drain-quiet", "1s", "--drain-max", "2s"]);
    let signalled = Instant::now();
    // Until refused: well past drain_max.
    let source = NewConnections::start(
        service.addr,
        PACE,
        signalled + Duration::from_secs(15),
        signalled + Duration::from_secs(1),
    );
    stop(&service);
    let tally = source.finish();
    service.assert_exit_code(0, EXIT_TIMEOUT);

    assert_eq!(
        tally.refused, 1,
        "the source must end at a refusal: {tally:?}"
    );
    assert!(
        tally.failures.is_empty(),
        "every accepted connection must be answered: {:?}",
        tally.failures
    );
    let report = service.report();
    assert_nothing_lost(&report);
    let drain = drain_of(&report);
    assert_eq!(drain.reason, "max", "report {report}");
    assert_ends_at(drain.length_ms, max, &report);
    eprintln!(
        "drain: {} ms (max), {} new connections, {} answered, then refused",
        drain.length_ms, drain.new_connections, tally.answered
    );
}

#[test]
fn with_no_traffic_the_drain_ends_at_drain_min() {
    let _one = one_at_a_time();
    let min = Duration::from_secs(1);
    let mut service = Service::start(&[
        "--drain-quiet",
        "300ms",
        "--drain-min",
        "1s",
        "--drain-max",
        "20s",
    ]);
    stop(&service);
    service.assert_exit_code(0, EXIT_TIMEOUT);
    let report = service.report();
    let drain = drain_of(&report);
    assert_eq!(drain.reason, "quiet", "report {report}");
    assert_eq!(drain.last_connection_ms, None, "report {report}");
    assert_eq!(drain.new_connections, 0, "report {report}");
    assert_ends_at(drain.length_ms, min, &report);
    eprintln!("drain: {} ms with no traffic", drain.length_ms);
}

#[test]
fn the_drain_endpoint_answers_when_the_drain_has_ended_and_probes_there_do_not_hold_it() {
    let _one = one_at_a_time();
    let quiet = Duration::from_millis(500);
    let mut service = Service::start(&[
        "--admin-listen",
        "127.0.0.1:0",
        "--drain-quiet",
        "500ms",
        "--drain-max",
        "20s",
    ]);
    let admin = service.admin_addr();
    assert_eq!(
        get(admin, "/readyz").status,
        200,
        "/readyz on the admin listener"
    );
    let asked = Instant::now();
    let drain_request = std::thread::spawn(move || get(admin, "/drain"));
    service.wait_for_log("drain_request received", LOG_TIMEOUT);
    // Probes on the admin listener, as the kubelet's readiness probe goes
    // on during the drain, far more often than the quiet time: they must
    // not hold the drain open. The last one may race the listener's close.
    let mut probes = 0;
    let mut cut_off = Vec::new();
    while !drain_request.is_finished() && asked.elapsed() < Duration::from_secs(10) {
        let Dial::Accepted(stream) = dial(admin) else {
            break;
        };
        match Client::from_stream(stream)
            .try_exchange(b"GET /readyz HTTP/1.1\r\nHost: test\r\n\r\n")
        {
            Ok(readyz) => {
                assert_eq!(
                    readyz.status, 503,
                    "/readyz on the admin listener while draining"
                );
                probes += 1;
            }
            Err(error) => cut_off.push(error),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(cut_off.len() <= 1, "probes not answered: {cut_off:?}");
    let answer = drain_request.join().expect("the drain request");
    let answered_after = asked.elapsed();
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert!(
        answer.closes(),
        "the drain answer keeps its connection open"
    );
    service.assert_exit_code(0, EXIT_TIMEOUT);
    let report = service.report();
    assert_eq!(report["trigger"], "drain_request", "report {report}");
    assert_eq!(
        answer.json()["drain"],
        report["drain"],
        "the answer is the report's drain"
    );
    let drain = drain_of(&report);
    assert_eq!(
        (drain.reason.as_str(), drain.new_connections),
        ("quiet", 0),
        "{probes} admin probes counted as traffic: {report}"
    );
    assert!(probes >= 3, "only {probes} probes ran during the drain");
    assert!(
        answered_after >= quiet && answered_after <= quiet + LATE_MARGIN + LATE_MARGIN,
        "the drain endpoint answered after {answered_after:?}; expected about {quiet:?}"
    );
}

#[test]
fn the_drain_endpoint_is_only_on_the_admin_listener() {
    let _one = one_at_a_time();
    let mut service = Service::start(&["--admin-listen", "127.0.0.1:0"]);
    let admin = service.admin_addr();
    assert_ne!(admin.port(), service.addr.port());
    let on_service_port = get(service.addr, "/drain");
    assert_eq!(on_service_port.status, 404, "{}", on_service_port.text());
    let wrong_method = {
        let mut client = Client::connect(admin);
        client.send(b"DELETE /drain HTTP/1.1\r\nHost: test\r\n\r\n");
        client.read_response()
    };
    assert_eq!(wrong_method.status, 405, "{}", wrong_method.text());
    assert_eq!(wrong_method.header("allow"), Some("GET, POST"));
    assert_eq!(
        get(service.addr, "/readyz").status,
        200,
        "the service began to drain"
    );
    service.signal("TERM");
    service.assert_exit_code(0, EXIT_TIMEOUT);
    assert_eq!(service.report()["drain"]["reason"], "none");
}
