//! The kubelet's termination sequence, played against the real binary with the values that
//! `kubernetes/deployment.yaml` and `kubernetes/configmap.yaml` give it.
//!
//! When a pod is deleted, the pod leaves the Service endpoints and the kubelet runs the preStop
//! hook: an HTTP GET of the drain endpoint on the admin port, which the service answers once its
//! drain has ended. Then the kubelet sends SIGTERM, and SIGKILL if the container is still
//! running `terminationGracePeriodSeconds` after the preStop hook *started*. Here the service is
//! started with the environment the manifests give its container and put under keep-alive
//! load; then the deletion is played: the hook is called, and while kube-proxy and the ingress
//! controllers have not all heard of it (endpoint propagation, played as [`PROPAGATION`]) new
//! connections keep coming; then clients go elsewhere. The hook must be answered once traffic
//! has stopped for `DRAIN_QUIET`, SIGTERM follows, and SIGKILL comes only at the grace period's
//! end, which a correct service never reaches.
//!
//! `tests/kubernetes_manifests.rs` checks the manifests as documents; this file checks that the
//! process behaves as they promise.

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, ExitStatus, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use support::arrivals::NewConnections;
use support::manifests::{api_container, items, load_one, parse_duration, pod_spec};
use support::server_process::run_bounded;
use support::{Client, Dial, Service, dial, get};
use yaml_rust2::Yaml;

/// How long new connections keep coming once the hook has started: kube-proxy and the ingress
/// controllers hearing of the deletion one after another.
const PROPAGATION: Duration = Duration::from_millis(1500);
/// The pace of the new connections during [`PROPAGATION`], besides the load clients'.
const PROPAGATION_PACE: Duration = Duration::from_millis(50);
/// How much later than `DRAIN_QUIET` after the last new connection the drain may end: the
/// coordinator's wake-up and a loaded machine's scheduling.
const LATE_MARGIN: Duration = Duration::from_millis(400);
/// Keep-alive clients looping over [`CLIENT_CYCLE`].
const LOAD_CLIENTS: usize = 8;
/// What each load client asks, in turn, as soon as it has the previous answer.
const CLIENT_CYCLE: [&str; 3] = ["/test/sleep", "/", "/readyz"];
/// How long `/test/sleep` sleeps, in milliseconds. Client `i`'s first sleep is `i / LOAD_CLIENTS`
/// of it, so that SIGTERM finds requests at every stage of their sleep.
const SLEEP_MS: usize = 50;
/// Longest wait for every load client to be answered once before the preStop sleep starts.
const WARM_UP_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest wait for a log line that shows a shutdown step was reached.
const LOG_TIMEOUT: Duration = Duration::from_secs(10);
/// From the preStop hook's answer to exit when every request takes 50 ms: the requests in
/// flight, the last call for idle keep-alive connections (300 ms by default), the cleanup
/// hooks. This is "well before the grace period", with room for a loaded two-core machine.
const EXPECTED_EXIT_WITHIN: Duration = Duration::from_secs(5);
/// Longest wait for a process to be reaped once SIGKILL was sent.
const REAP_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the load clients to report once the service has exited. Each ends at its
/// next connect, which is refused, or within its read timeout.
const CLIENTS_END_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for a service with an impossible configuration to exit. It should take
/// milliseconds; this bound is for a loaded machine.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(10);

// -------------------------------------------------------------------------------------------
// What the manifests say
// -------------------------------------------------------------------------------------------

/// The termination settings of the `api` container, read from the manifests.
#[derive(Debug)]
struct PodTermination {
    /// `spec.template.spec.terminationGracePeriodSeconds`: from the start of preStop to SIGKILL.
    grace_period: Duration,
    /// `lifecycle.preStop.httpGet.path` of the `api` container.
    pre_stop_path: String,
    /// The container's `DRAIN_QUIET`, `DRAIN_MIN` and `DRAIN_MAX`.
    drain_quiet: Duration,
    drain_min: Duration,
    drain_max: Duration,
    /// The container's `SHUTDOWN_TIMEOUT`.
    shutdown_timeout: Duration,
    /// The container's `CLEANUP_TIMEOUT`.
    cleanup_timeout: Duration,
    /// The container's environment as the kubelet builds it (`envFrom` the ConfigMap, then the
    /// literal `env` values), minus what cannot apply to a process on 127.0.0.1 in a test:
    /// `LISTEN_ADDR` and `ADMIN_LISTEN` (replaced by `--listen 127.0.0.1:0` and
    /// `--admin-listen 127.0.0.1:0`), values from Secrets and paths into the Secret volume
    /// (`DATABASE_URL_FILE`, ...: no PostgreSQL or Redis here, the in-memory store) and
    /// `RUST_LOG` (the test reads the `info` log).
    env: BTreeMap<String, String>,
}

/// Positive whole seconds from a manifest field.
fn seconds_field(yaml: &Yaml, what: &str) -> Duration {
    match yaml.as_i64() {
        Some(seconds) if seconds > 0 => Duration::from_secs(seconds.unsigned_abs()),
        _ => panic!("{what} must be a positive integer of seconds, found {yaml:?}"),
    }
}

impl PodTermination {
    fn from_manifests() -> Self {
        let deployment = load_one("deployment.yaml", "Deployment");
        let configmap = load_one("configmap.yaml", "ConfigMap");
        let pod = pod_spec(&deployment);
        let api = api_container(&deployment).expect("deployment.yaml has a container named `api`");

        let grace_period = seconds_field(
            &pod["terminationGracePeriodSeconds"],
            "deployment.yaml spec.template.spec.terminationGracePeriodSeconds",
        );
        let hook = &api["lifecycle"]["preStop"]["httpGet"];
        let pre_stop_path = hook["path"]
            .as_str()
            .expect("deployment.yaml container `api` has lifecycle.preStop.httpGet.path")
            .to_owned();
        assert_eq!(
            hook["port"].as_str(),
            Some("admin"),
            "the preStop hook goes to the container port named `admin` (ADMIN_LISTEN)"
        );

        // envFrom first (a later source wins), then env, which wins over envFrom.
        let configmap_name = configmap["metadata"]["name"]
            .as_str()
            .expect("configmap.yaml has metadata.name");
        let mut env = BTreeMap::new();
        for source in items(&api["envFrom"]) {
            let prefix = source["prefix"].as_str().unwrap_or_default();
            let reference = &source["configMapRef"];
            if reference["name"].as_str() != Some(configmap_name) {
                continue;
            }
            let data = configmap["data"]
                .as_hash()
                .expect("configmap.yaml has a data map");
            for (key, value) in data {
                let (Some(key), Some(value)) = (key.as_str(), value.as_str()) else {
                    panic!("configmap.yaml data must map strings to strings: {key:?}: {value:?}");
                };
                env.insert(format!("{prefix}{key}"), value.to_owned());
            }
        }
        // Where the container sees Secrets as files: the mounts of secret and projected volumes.
        let secret_mounts: Vec<&str> = items(&api["volumeMounts"])
            .iter()
            .filter(|mount| {
                items(&pod["volumes"]).iter().any(|volume| {
                    volume["name"] == mount["name"]
                        && (volume["secret"].is_hash() || volume["projected"].is_hash())
                })
            })
            .filter_map(|mount| mount["mountPath"].as_str())
            .collect();
        for entry in items(&api["env"]) {
            let name = entry["name"].as_str().expect("an env entry has a name");
            match entry["value"].as_str() {
                // A file of the Secret volume, which does not exist here.
                Some(value)
                    if secret_mounts
                        .iter()
                        .any(|mount| Path::new(value).starts_with(mount)) =>
                {
                    env.remove(name);
                }
                Some(value) => {
                    env.insert(name.to_owned(), value.to_owned());
                }
                // From a Secret: not here (see `env`).
                None => {
                    env.remove(name);
                }
            }
        }
        for replaced in ["LISTEN_ADDR", "ADMIN_LISTEN", "RUST_LOG"] {
            env.remove(replaced);
        }

        let duration_of = |var: &str| {
            let text = env.get(var).unwrap_or_else(|| {
                panic!(
                    "the `api` container gets no {var} from deployment.yaml or ConfigMap \
                     {configmap_name}; the service would run with its default"
                )
            });
            parse_duration(text).unwrap_or_else(|error| panic!("{var}: {error}"))
        };
        let drain_quiet = duration_of("DRAIN_QUIET");
        let drain_min = duration_of("DRAIN_MIN");
        let drain_max = duration_of("DRAIN_MAX");
        let shutdown_timeout = duration_of("SHUTDOWN_TIMEOUT");
        let cleanup_timeout = duration_of("CLEANUP_TIMEOUT");
        let grace_env = env
            .get("GRACE_PERIOD_SECONDS")
            .expect("the `api` container sets GRACE_PERIOD_SECONDS in deployment.yaml");
        assert!(
            grace_env.parse::<u64>().is_ok(),
            "GRACE_PERIOD_SECONDS is {grace_env:?}, not a whole number of seconds"
        );
        Self {
            grace_period,
            pre_stop_path,
            drain_quiet,
            drain_min,
            drain_max,
            shutdown_timeout,
            cleanup_timeout,
            env,
        }
    }

    fn env_pairs(&self) -> Vec<(&str, &str)> {
        self.env
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str()))
            .collect()
    }
}

// -------------------------------------------------------------------------------------------
// The load
// -------------------------------------------------------------------------------------------

/// One complete response a load client got.
#[derive(Debug)]
struct Answer {
    path: &'static str,
    /// Just before the request was written.
    written: Instant,
    /// Just after the response was read in full.
    answered: Instant,
    status: u16,
    body: String,
    closes: bool,
}

/// What one load client saw.
#[derive(Debug, Default)]
struct ClientRecord {
    id: usize,
    answers: Vec<Answer>,
    connections: u32,
    /// Whether the client went elsewhere once the endpoints had dropped the pod, as it should:
    /// at its first `Connection: close` after [`PROPAGATION`].
    went_elsewhere: bool,
    /// Lost requests and failed connects, described.
    failures: Vec<String>,
}

/// A keep-alive client: it writes its next request as soon as it has an answer and reconnects
/// after `Connection: close`, until `propagated` is set: then it goes elsewhere at its next
/// `Connection: close`. A refused connect ends it as a failure.
fn run_load_client(
    id: usize,
    addr: SocketAddr,
    first_answer: &Sender<usize>,
    propagated: &AtomicBool,
) -> ClientRecord {
    let mut record = ClientRecord {
        id,
        ..ClientRecord::default()
    };
    let mut sleep_ms = id * SLEEP_MS / LOAD_CLIENTS;
    let mut next = 0;
    loop {
        let mut client = match dial(addr) {
            Dial::Accepted(stream) => Client::from_stream(stream),
            Dial::Refused => {
                record.failures.push(format!(
                    "client {id}: connect {} refused while the endpoints still sent it here",
                    record.connections + 1
                ));
                return record;
            }
            Dial::Failed(error) => {
                record.failures.push(format!(
                    "client {id}: connect {} failed with {error:?}; expected accepted or refused",
                    record.connections + 1
                ));
                return record;
            }
        };
        record.connections += 1;
        let mut previous: Option<Instant> = None;
        loop {
            let path = CLIENT_CYCLE[next];
            next = (next + 1) % CLIENT_CYCLE.len();
            let target = if path == "/test/sleep" {
                let target = format!("{path}?ms={sleep_ms}");
                sleep_ms = SLEEP_MS;
                target
            } else {
                path.to_owned()
            };
            let written = Instant::now();
            let quiet = previous.map(|answered| written - answered);
            let result = client
                .stream
                .write_all(format!("GET {target} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
                .map_err(|error| format!("writing it failed: {error:?}"))
                .and_then(|()| client.try_read_response());
            let response = match result {
                Ok(response) => response,
                Err(error) => {
                    record.failures.push(format!(
                        "client {id}: GET {path} on connection {} (quiet for {quiet:?} before it) got \
                         no complete response: {error}",
                        record.connections
                    ));
                    return record;
                }
            };
            let answered = Instant::now();
            if record.answers.is_empty() {
                let _ = first_answer.send(id);
            }
            let closes = response.closes();
            record.answers.push(Answer {
                path,
                written,
                answered,
                status: response.status,
                body: response.text(),
                closes,
            });
            previous = Some(answered);
            if closes {
                if propagated.load(Ordering::SeqCst) {
                    record.went_elsewhere = true;
                    return record;
                }
                break;
            }
        }
    }
}

// -------------------------------------------------------------------------------------------
// The kubelet
// -------------------------------------------------------------------------------------------

/// How the process ended, as the kubelet saw it.
struct Ending {
    service: Service,
    status: ExitStatus,
    /// When the exit was noticed.
    at: Instant,
    /// Whether the grace period ran out and SIGKILL was sent.
    killed: bool,
}

/// Waits for `service` to exit until `sigkill_at`, and SIGKILLs it (by its PID) if it is still
/// running then, as the kubelet does.
fn wait_or_sigkill(mut service: Service, sigkill_at: Instant) -> Ending {
    let pid = service.pid();
    let (exit_tx, exit_rx) = crossbeam_channel::bounded(1);
    // The waiter gives up (and panics) only after the SIGKILL below had time to work.
    let wait_for = sigkill_at.saturating_duration_since(Instant::now()) + REAP_TIMEOUT;
    std::thread::spawn(move || {
        let status = service.wait_exit(wait_for);
        let _ = exit_tx.send((service, status));
    });
    match exit_rx.recv_deadline(sigkill_at) {
        Ok((service, status)) => Ending {
            service,
            status,
            at: Instant::now(),
            killed: false,
        },
        Err(_) => {
            let killed = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status()
                .expect("run kill");
            assert!(killed.success(), "kill -KILL {pid} failed");
            let (service, status) = exit_rx.recv_timeout(REAP_TIMEOUT).unwrap_or_else(|_| {
                panic!("the service (PID {pid}) was not reaped within {REAP_TIMEOUT:?} of SIGKILL")
            });
            Ending {
                service,
                status,
                at: Instant::now(),
                killed: true,
            }
        }
    }
}

#[test]
fn a_pod_deleted_under_load_drains_until_traffic_stops_within_its_grace_period_and_loses_nothing() {
    let pod = PodTermination::from_manifests();
    eprintln!("from the manifests: {pod:?}");

    // The service refuses to start when its timeouts do not fit GRACE_PERIOD_SECONDS: starting
    // (logging `listening on`) is the first assertion. `start_with_env` panics with the log
    // (and its configuration error) otherwise.
    let env = pod.env_pairs();
    let service = Service::start_with_env(
        &["--enable-test-routes", "--admin-listen", "127.0.0.1:0"],
        &env,
    );
    let addr = service.addr;
    let admin = service.admin_addr();

    // 0. The drain endpoint is not on the port the Service sends clients to.
    let through_service = get(addr, &pod.pre_stop_path);
    assert_eq!(
        through_service.status,
        404,
        "GET {} on the service port: {}",
        pod.pre_stop_path,
        through_service.text()
    );
    assert_eq!(
        get(addr, "/readyz").status,
        200,
        "GET {} on the service port began a drain",
        pod.pre_stop_path
    );

    // 1. Load.
    let propagated = Arc::new(AtomicBool::new(false));
    let (first_tx, first_rx) = crossbeam_channel::unbounded();
    let (record_tx, record_rx) = crossbeam_channel::unbounded();
    for id in 0..LOAD_CLIENTS {
        let first_tx = first_tx.clone();
        let record_tx = record_tx.clone();
        let propagated = Arc::clone(&propagated);
        std::thread::Builder::new()
            .name(format!("load-client-{id}"))
            .spawn(move || {
                let _ = record_tx.send(run_load_client(id, addr, &first_tx, &propagated));
            })
            .expect("spawn a load client");
    }
    let warm_up_deadline = Instant::now() + WARM_UP_TIMEOUT;
    for answered in 0..LOAD_CLIENTS {
        first_rx.recv_deadline(warm_up_deadline).unwrap_or_else(|_| {
            panic!(
                "timed out after {WARM_UP_TIMEOUT:?} waiting for every load client to be answered once; \
                 {answered} of {LOAD_CLIENTS} were; log:\n{}",
                service.log_text()
            )
        });
    }

    // 2. preStop: the pod leaves the endpoints and the kubelet calls the hook, which returns
    // when the drain has ended. The grace period runs from here.
    let pre_stop_started = Instant::now();
    let sigkill_at = pre_stop_started + pod.grace_period;
    let hook = {
        let path = pod.pre_stop_path.clone();
        std::thread::spawn(move || {
            let answer = get(admin, &path);
            (answer, Instant::now())
        })
    };
    service.wait_for_log("shutdown: drain_request received", LOG_TIMEOUT);
    let draining_seen = Instant::now();
    // New connections keep coming while the deletion propagates; then every client goes
    // elsewhere. The passage of time is what is played here, not a synchronisation.
    let newcomers = NewConnections::start(
        addr,
        PROPAGATION_PACE,
        pre_stop_started + PROPAGATION,
        draining_seen,
    );
    std::thread::sleep(PROPAGATION.saturating_sub(pre_stop_started.elapsed()));
    propagated.store(true, Ordering::SeqCst);
    let newcomers = newcomers.finish();
    let (hook_answer, hook_done) = hook.join().expect("the preStop hook");

    // 3. SIGTERM once the hook returned, as the kubelet does; the process may have exited by
    // then (it finishes its shutdown by itself once drained).
    let mut service = service;
    let sigterm_found_it_running = service.signal_unless_exited("TERM");
    let refused_after_close = match dial(addr) {
        Dial::Refused => Ok(()),
        Dial::Accepted(_) => Err("accepted".to_owned()),
        Dial::Failed(error) => Err(format!("failed with {error:?}")),
    };

    // 4. SIGKILL only if it is still running when the grace period ends.
    let ending = wait_or_sigkill(service, sigkill_at);
    let service = ending.service;
    let took = ending.at - hook_done;

    let clients_deadline = Instant::now() + CLIENTS_END_TIMEOUT;
    let mut records: Vec<ClientRecord> = (0..LOAD_CLIENTS)
        .map(|reported| {
            record_rx.recv_deadline(clients_deadline).unwrap_or_else(|_| {
                panic!(
                    "timed out after {CLIENTS_END_TIMEOUT:?} waiting for the load clients to end once the \
                     service had exited; {reported} of {LOAD_CLIENTS} did"
                )
            })
        })
        .collect();
    records.sort_by_key(|record| record.id);

    // 5. What the kubelet saw.
    assert!(
        !ending.killed,
        "the service was still running at the end of the grace period ({:?} after the preStop \
         hook started) and the kubelet SIGKILLed it; log:\n{}",
        pod.grace_period,
        service.log_text()
    );
    assert_eq!(
        ending.status.code(),
        Some(0),
        "exit status ({:?}); log:\n{}",
        ending.status,
        service.log_text()
    );
    assert_eq!(
        hook_answer.status,
        200,
        "the preStop hook's answer: {}",
        hook_answer.text()
    );
    let hook_took = hook_done - pre_stop_started;
    let remaining = sigkill_at.saturating_duration_since(ending.at);
    eprintln!(
        "preStop hook answered after {hook_took:?}; exited {took:?} after it (SIGTERM found it \
         running: {sigterm_found_it_running}); {remaining:?} of the grace period were left"
    );
    assert!(
        took < EXPECTED_EXIT_WITHIN,
        "the service took {took:?} from the hook's answer to exit; with 50 ms requests it should \
         take well under {EXPECTED_EXIT_WITHIN:?} (SHUTDOWN_TIMEOUT is {:?}); log:\n{}",
        pod.shutdown_timeout,
        service.log_text()
    );

    // What the clients saw.
    let failures: Vec<&str> = records
        .iter()
        .flat_map(|record| record.failures.iter().map(String::as_str))
        .chain(newcomers.failures.iter().map(String::as_str))
        .collect();
    assert!(
        failures.is_empty() && newcomers.refused == 0,
        "{} requests lost or connects failed, {} new connections refused:\n{}\nlog:\n{}",
        failures.len(),
        newcomers.refused,
        failures.join("\n"),
        service.log_text()
    );
    assert!(
        newcomers.answered > 0,
        "no new connection during the propagation"
    );
    let stayed: Vec<usize> = records
        .iter()
        .filter(|record| !record.went_elsewhere)
        .map(|record| record.id)
        .collect();
    assert!(
        stayed.is_empty(),
        "load clients {stayed:?} did not go elsewhere"
    );
    if let Err(how) = refused_after_close {
        panic!(
            "a connect once the preStop hook was answered was {how}; expected ECONNREFUSED \
             (the listener closes when the drain ends)"
        );
    }

    let mut wrong = Vec::new();
    let (mut readyz_503, mut closing) = (0, 0);
    for record in &records {
        let id = record.id;
        let during_drain = record
            .answers
            .iter()
            .filter(|answer| answer.written >= draining_seen && answer.answered <= hook_done)
            .count();
        if during_drain == 0 {
            wrong.push(format!("client {id}: no request answered during the drain"));
        }
        for answer in &record.answers {
            let Answer {
                path,
                status,
                body,
                closes,
                ..
            } = answer;
            closing += u64::from(*closes);
            if *path == "/readyz" {
                if answer.answered < pre_stop_started && *status != 200 {
                    wrong.push(format!(
                        "client {id}: /readyz answered {status} {body:?} before the preStop hook; \
                         expected 200"
                    ));
                }
                if answer.written > draining_seen && *status != 503 {
                    wrong.push(format!(
                        "client {id}: /readyz written once the service was draining answered {status} \
                         {body:?}; expected 503"
                    ));
                }
                readyz_503 += u32::from(*status == 503);
            } else if *status != 200 || body != "ok" {
                wrong.push(format!(
                    "client {id}: GET {path} answered {status} {body:?}; expected 200 \"ok\""
                ));
            }
            if *closes && answer.answered < pre_stop_started {
                wrong.push(format!(
                    "client {id}: GET {path} answered with Connection: close before the preStop hook"
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // What the service says. Every answer once the hook was called carries Connection: close
    // (these clients do not pipeline), and only those: they are the requests it drained.
    let report = service.report();
    assert_eq!(report["trigger"], "drain_request", "report {report}");
    assert_eq!(report["outcome"], "clean", "report {report}");
    assert_eq!(report["requests_abandoned"], 0, "report {report}");
    assert_eq!(report["requests_refused_503"], 0, "report {report}");
    support::assert_nothing_lost(&report);
    // The hook's own answer is drained too.
    assert_eq!(
        report["requests_drained"],
        closing + newcomers.answered + 1,
        "report {report} vs {closing} load answers, {} new connections and the hook's answer, \
         with Connection: close",
        newcomers.answered
    );
    assert_eq!(
        hook_answer.json()["drain"],
        report["drain"],
        "the hook's answer is the report's drain"
    );
    let drain = &report["drain"];
    assert_eq!(drain["reason"], "quiet", "report {report}");
    let length = Duration::from_millis(drain["length_ms"].as_u64().expect("drain.length_ms"));
    let last = Duration::from_millis(
        drain["last_connection_ms"]
            .as_u64()
            .unwrap_or_else(|| panic!("no new connection counted: {report}")),
    );
    assert!(
        length >= last + pod.drain_quiet && length <= last + pod.drain_quiet + LATE_MARGIN,
        "the drain lasted {length:?}, its last new connection at {last:?}: expected it to end \
         DRAIN_QUIET {:?} after that, within {LATE_MARGIN:?}",
        pod.drain_quiet
    );
    assert!(
        length >= pod.drain_min && length < pod.drain_max,
        "the drain lasted {length:?}; DRAIN_MIN {:?}, DRAIN_MAX {:?}",
        pod.drain_min,
        pod.drain_max
    );

    let answers: usize = records.iter().map(|record| record.answers.len()).sum();
    let connections: u32 = records.iter().map(|record| record.connections).sum();
    eprintln!(
        "drain {length:?} (last new connection at {last:?}, propagation played for \
         {PROPAGATION:?}); {answers} load answers on {connections} connections, {} new \
         connections answered, {readyz_503} /readyz 503 while draining, {closing} load answers \
         drained; report {report}",
        newcomers.answered
    );
}

// -------------------------------------------------------------------------------------------
// The budget
// -------------------------------------------------------------------------------------------

/// Runs the binary with `env`, which it must refuse at start; returns its output. SIGKILLs it
/// and panics if it is still running after [`REFUSAL_TIMEOUT`].
fn run_expecting_refusal(env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(support::binary());
    command
        .args(["--listen", "127.0.0.1:0", "--enable-test-routes"])
        .env("RUST_LOG", "info")
        .envs(env.iter().copied());
    run_bounded(
        &mut command,
        REFUSAL_TIMEOUT,
        "the service started with a grace period too short for its timeouts",
    )
    .unwrap_or_else(|error| panic!("{error}"))
}

#[test]
fn the_kubelet_never_cuts_a_drain_short_and_a_grace_period_too_short_is_refused_at_start() {
    let pod = PodTermination::from_manifests();

    // Every phase at its maximum still ends before SIGKILL: the drain (started by the preStop
    // hook, when the grace period starts) at DRAIN_MAX, then SHUTDOWN_TIMEOUT, then the cleanup.
    let needed = pod.drain_max + pod.shutdown_timeout + pod.cleanup_timeout;
    assert!(
        needed < pod.grace_period,
        "DRAIN_MAX {:?} + SHUTDOWN_TIMEOUT {:?} + CLEANUP_TIMEOUT {:?} = {needed:?} does not fit \
         in terminationGracePeriodSeconds {:?}: the kubelet could SIGKILL the pod while it is \
         still draining",
        pod.drain_max,
        pod.shutdown_timeout,
        pod.cleanup_timeout,
        pod.grace_period
    );

    // The service checks its own timeouts against GRACE_PERIOD_SECONDS at start.
    let too_short = needed
        .checked_sub(Duration::from_nanos(1))
        .unwrap_or_default()
        .as_secs()
        .to_string();
    let mut env = pod.env_pairs();
    env.retain(|(key, _)| *key != "GRACE_PERIOD_SECONDS");
    env.push(("GRACE_PERIOD_SECONDS", &too_short));
    let started = Instant::now();
    let output = run_expecting_refusal(&env);
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!(
        "GRACE_PERIOD_SECONDS={too_short}: exited in {took:?} with {:?}",
        output.status
    );
    assert!(
        output.status.code().is_some_and(|code| code != 0),
        "with GRACE_PERIOD_SECONDS={too_short} < DRAIN_MAX {:?} + SHUTDOWN_TIMEOUT {:?} + \
         CLEANUP_TIMEOUT {:?}: exit status {:?}, expected a non-zero exit code; stderr:\n{stderr}",
        pod.drain_max,
        pod.shutdown_timeout,
        pod.cleanup_timeout,
        output.status
    );
    assert!(
        !stderr.contains("listening on"),
        "with GRACE_PERIOD_SECONDS={too_short} the service started listening before it exited; \
         stderr:\n{stderr}"
    );
    assert!(
        stderr.contains("GRACE_PERIOD_SECONDS"),
        "the error for GRACE_PERIOD_SECONDS={too_short} does not name GRACE_PERIOD_SECONDS; \
         stderr:\n{stderr}"
    );
}
