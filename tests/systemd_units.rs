//! The units in `systemd/`, checked offline with systemd's own tools
//! (Debian's `systemd` package; systemd need not be running): they
//! verify, their security exposure is at most 1.5, their stop timeout
//! covers the service's timeouts (and the service's grace check agrees),
//! and everything the service calls, a hot restart included, passes the
//! unit's system call filter (traced with `strace`).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::manifests::parse_duration;
use support::server_process::{find_in_path, output_text, run_bounded};
use support::{Service, binary};

const UNITS: [&str; 2] = ["gremlins-api.socket", "gremlins-api.service"];
/// Where the service unit expects the binary.
const INSTALLED_BINARY: &str = "/usr/local/bin/gremlins-api";
/// The most exposure `systemd-analyze security` may find.
const MAX_EXPOSURE: f64 = 1.5;
const TOOL_TIMEOUT: Duration = Duration::from_secs(60);
const EXIT_TIMEOUT: Duration = Duration::from_secs(20);
/// The stop timeout's margin over the service's own timeouts, as for
/// Kubernetes: the threads' stop and the exit.
const STOP_MARGIN: Duration = Duration::from_secs(2);

fn units_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd")
}

/// A tool from Debian's packages; fails naming the package when missing.
fn tool(program: &str, package: &str) -> PathBuf {
    find_in_path(program).unwrap_or_else(|| {
        panic!("{program} is missing: install Debian's {package} package (.ci/test does)")
    })
}

/// The units copied into a temp dir, the service's ExecStart pointing at
/// the binary under test (systemd-analyze checks that it exists).
fn copied_units() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temp dir");
    for unit in UNITS {
        let text = std::fs::read_to_string(units_dir().join(unit))
            .unwrap_or_else(|error| panic!("read systemd/{unit}: {error}"));
        std::fs::write(
            dir.path().join(unit),
            text.replace(INSTALLED_BINARY, binary()),
        )
        .expect("write the copy");
    }
    dir
}

/// The `[Service]` section's settings, each key with all its values in
/// order (`Environment=` and `SystemCallFilter=` appear several times).
fn service_settings() -> BTreeMap<String, Vec<String>> {
    let text = std::fs::read_to_string(units_dir().join("gremlins-api.service"))
        .expect("read systemd/gremlins-api.service");
    let mut settings: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut in_service = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_service = line == "[Service]";
        } else if in_service && !line.starts_with('#') {
            if let Some((key, value)) = line.split_once('=') {
                settings
                    .entry(key.to_owned())
                    .or_default()
                    .push(value.to_owned());
            }
        }
    }
    settings
}

/// The `Environment=` assignments of the service unit.
fn unit_environment() -> BTreeMap<String, String> {
    service_settings()
        .get("Environment")
        .into_iter()
        .flatten()
        .flat_map(|line| line.split_whitespace())
        .filter_map(|assignment| assignment.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}

#[test]
fn the_units_verify() {
    let analyze = tool("systemd-analyze", "systemd");
    let dir = copied_units();
    let mut command = Command::new(analyze);
    command.arg("verify").arg("--man=no");
    for unit in UNITS {
        command.arg(dir.path().join(unit));
    }
    let output = run_bounded(&mut command, TOOL_TIMEOUT, "systemd-analyze verify")
        .unwrap_or_else(|error| panic!("{error}"));
    let text = output_text(&output);
    assert!(
        output.status.success(),
        "systemd-analyze verify failed:\n{text}"
    );
    assert!(
        !text.contains("gremlins-api"),
        "systemd-analyze verify has something to say about the units:\n{text}"
    );
}

#[test]
fn the_service_is_exposed_at_most_1_5() {
    let analyze = tool("systemd-analyze", "systemd");
    let dir = copied_units();
    let output = run_bounded(
        Command::new(analyze)
            .args(["security", "--offline=true", "--no-pager"])
            .arg(dir.path().join("gremlins-api.service")),
        TOOL_TIMEOUT,
        "systemd-analyze security",
    )
    .unwrap_or_else(|error| panic!("{error}"));
    let text = output_text(&output);
    let exposure: f64 = text
        .lines()
        .find_map(|line| {
            let rest = line
                .split("Overall exposure level for gremlins-api.service: ")
                .nth(1)?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no overall exposure level in:\n{text}"));
    println!("systemd-analyze security: gremlins-api.service exposure {exposure}");
    assert!(
        exposure <= MAX_EXPOSURE,
        "exposure {exposure} is over {MAX_EXPOSURE}:\n{text}"
    );
}

#[test]
fn the_stop_timeout_covers_the_service_timeouts_and_the_service_agrees() {
    let settings = service_settings();
    let environment = unit_environment();
    let duration = |name: &str, default: &str| {
        parse_duration(environment.get(name).map_or(default, String::as_str))
            .unwrap_or_else(|error| panic!("{name}: {error}"))
    };
    let needed = duration("DRAIN_DELAY", "0s")
        + duration("SHUTDOWN_TIMEOUT", "30s")
        + duration("CLEANUP_TIMEOUT", "5s")
        + STOP_MARGIN;
    let stop_timeout = settings
        .get("TimeoutStopSec")
        .and_then(|values| values.last())
        .map(|value| {
            parse_duration(value).unwrap_or_else(|error| panic!("TimeoutStopSec: {error}"))
        })
        .expect("TimeoutStopSec is set");
    assert!(
        stop_timeout >= needed,
        "TimeoutStopSec {stop_timeout:?} must cover DRAIN_DELAY + SHUTDOWN_TIMEOUT + \
         CLEANUP_TIMEOUT + {STOP_MARGIN:?} = {needed:?}"
    );
    let grace = environment
        .get("GRACE_PERIOD_SECONDS")
        .expect("GRACE_PERIOD_SECONDS tells the service its grace period");
    assert_eq!(
        grace.parse::<u64>().ok(),
        Some(stop_timeout.as_secs()),
        "GRACE_PERIOD_SECONDS must equal TimeoutStopSec"
    );

    // The service starts with the unit's environment (on a free loopback
    // port) and stops cleanly...
    let env: Vec<(&str, &str)> = environment
        .iter()
        .filter(|(name, _)| name.as_str() != "LISTEN_ADDR")
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    let mut service = Service::start_with_env(&[], &env);
    let (code, _) = service.terminate(EXIT_TIMEOUT);
    assert_eq!(code, 0, "{}", service.log_text());
    // ...and refuses to start when the grace period is a second shorter
    // than its timeouts need.
    let short = (needed - STOP_MARGIN).as_secs().to_string();
    let output = run_bounded(
        Command::new(binary())
            .args(["--listen", "127.0.0.1:0"])
            .envs(env.iter().copied())
            .env("GRACE_PERIOD_SECONDS", &short),
        EXIT_TIMEOUT,
        "the service with too short a grace period",
    )
    .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(output.status.code(), Some(1), "{}", output_text(&output));
    assert!(
        output_text(&output).contains("GRACE_PERIOD_SECONDS"),
        "{}",
        output_text(&output)
    );
}

/// The system calls of a filter like `@system-service`, groups expanded,
/// as `systemd-analyze syscall-filter` lists them.
fn syscall_groups() -> BTreeMap<String, Vec<String>> {
    let analyze = tool("systemd-analyze", "systemd");
    let output = run_bounded(
        Command::new(analyze)
            .arg("syscall-filter")
            .arg("--no-pager"),
        TOOL_TIMEOUT,
        "systemd-analyze syscall-filter",
    )
    .unwrap_or_else(|error| panic!("{error}"));
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current = None;
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let entry = line.trim();
        if entry.is_empty() || entry.starts_with('#') {
            continue;
        }
        if line.starts_with('@') {
            current = Some(entry.to_owned());
            groups.insert(entry.to_owned(), Vec::new());
        } else if let (Some(group), Some(name)) = (&current, entry.split_whitespace().next()) {
            groups
                .entry(group.clone())
                .or_default()
                .push(name.to_owned());
        }
    }
    groups
}

fn expand(groups: &BTreeMap<String, Vec<String>>, entry: &str, into: &mut BTreeSet<String>) {
    if entry.starts_with('@') {
        for member in groups.get(entry).into_iter().flatten() {
            expand(groups, member, into);
        }
    } else {
        into.insert(entry.to_owned());
    }
}

#[test]
fn every_system_call_of_a_life_with_a_restart_passes_the_unit_filter() {
    let strace = tool("strace", "strace");
    let groups = syscall_groups();
    let (mut allowed, mut denied) = (BTreeSet::new(), BTreeSet::new());
    for filter in service_settings()
        .get("SystemCallFilter")
        .into_iter()
        .flatten()
    {
        let (into, entries) = match filter.strip_prefix('~') {
            Some(denials) => (&mut denied, denials),
            None => (&mut allowed, filter.as_str()),
        };
        for entry in entries.split_whitespace() {
            expand(&groups, entry, into);
        }
    }
    assert!(allowed.len() > 100, "@system-service expanded: {allowed:?}");

    let trace_dir = tempfile::tempdir().expect("a temp dir");
    let trace = trace_dir.path().join("trace");
    let mut command = Command::new(strace);
    command
        .args(["-f", "-qq", "-o"])
        .arg(&trace)
        .arg(binary())
        .args(["--listen", "127.0.0.1:0"]);
    let mut service = Service::spawn(command, &[]);
    assert_eq!(support::get(service.addr, "/").status, 200);
    let post = support::Client::connect(service.addr).try_exchange(
        b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Length: 25\r\nConnection: close\r\n\r\n{\"type\":\"x\",\"payload\":{}}",
    );
    assert!(post.is_ok_and(|response| response.status == 201));
    // The traced process is strace; the service is its child.
    let pid = main_pid(&service);
    signal("HUP", pid);
    let handed_over = service.wait_for_log("accepts after", EXIT_TIMEOUT);
    let successor = support::pid_after(&handed_over, "the successor, pid ");
    service.wait_for_log("shutdown_report", EXIT_TIMEOUT);
    assert_eq!(support::get(service.addr, "/").status, 200);
    signal("TERM", successor);
    service.assert_exit_code(0, EXIT_TIMEOUT);

    let traced = std::fs::read_to_string(&trace).expect("read the trace");
    let used: BTreeSet<String> = traced
        .lines()
        .filter_map(|line| {
            let call = line.split_whitespace().nth(1)?;
            let name = &call[..call.find('(')?];
            (!name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'))
            .then(|| name.to_owned())
        })
        .collect();
    assert!(
        used.contains("execve") && used.contains("accept4"),
        "{used:?}"
    );
    let refused: Vec<&String> = used
        .iter()
        .filter(|call| !allowed.contains(*call) || denied.contains(*call))
        .collect();
    println!("{} system calls used, all in the unit's filter", used.len());
    assert!(
        refused.is_empty(),
        "calls the unit's SystemCallFilter refuses: {refused:?}"
    );
}

/// The service's PID: strace's child.
fn main_pid(service: &Service) -> u32 {
    let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", service.pid()))
        .expect("strace's children");
    children
        .split_whitespace()
        .next()
        .and_then(|pid| pid.parse().ok())
        .expect("strace runs the service as its child")
}

fn signal(name: &str, pid: u32) {
    support::server_process::send_signal(name, &[pid])
        .unwrap_or_else(|error| panic!("kill -{name} {pid}: {error}"));
}
