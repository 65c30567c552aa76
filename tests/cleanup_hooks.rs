//! Cleanup hooks as an embedding program sees them: registered on a
//! `ShutdownHandle`, run after the drain, last registered first, each
//! bounded, an error, a panic or a hang in one never stopping the others,
//! and the exit code saying whether they all succeeded.
//!
//! This test has its own `main` (`harness = false`): run with the
//! environment variable [`FIXTURE_ENV`] set, it is the embedding program (a
//! server built with the library, with the hooks that variable lists);
//! otherwise it runs the scenarios below, each against that program as a
//! child process that receives a real SIGTERM, and reports like libtest.
//!
//! Arguments: `--list` lists the scenarios; other words select the
//! scenarios whose name contains one of them (`--exact`: equal to one).

mod support;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use gremlins_api::{
    EXIT_CLEANUP_FAILED, Request, Response, Server, ServerConfig, SignalListener, StatusCode,
};
use serde_json::{Value, json};
use support::{Client, Service};

/// Set in the child's environment: the hooks to register, in registration
/// order, as `name:kind` separated by commas. Kinds: `ok`, `err`, `panic`,
/// `hang`. Every hook logs `hook ran: NAME after N finished requests` when
/// it starts.
const FIXTURE_ENV: &str = "GREMLINS_HOOK_FIXTURE";
/// Set in the child's environment: the cleanup timeout in milliseconds.
const CLEANUP_TIMEOUT_ENV: &str = "GREMLINS_HOOK_CLEANUP_TIMEOUT_MS";
/// How long the fixture's `/slow` route takes.
const SLOW_MS: u64 = 300;
/// Longest wait for the fixture to exit when it is expected to.
const EXIT_TIMEOUT: Duration = Duration::from_secs(20);
/// Slack on top of the cleanup timeout for the rest of the shutdown (drain,
/// stopping the threads, exit) and a loaded machine.
const EXIT_MARGIN: Duration = Duration::from_millis(1000);

// ---------------------------------------------------------------------------
// The fixture: an embedding program.

fn fixture(hooks: &str) -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
    let mut config = ServerConfig::default();
    config.listen = "127.0.0.1:0".parse().expect("a socket address");
    config.workers = 2;
    config.cleanup_timeout = Duration::from_millis(
        std::env::var(CLEANUP_TIMEOUT_ENV)
            .ok()
            .and_then(|ms| ms.parse().ok())
            .expect("GREMLINS_HOOK_CLEANUP_TIMEOUT_MS: the cleanup timeout in milliseconds"),
    );
    let server = Server::bind(config).expect("bind the fixture server");
    let handle = server.shutdown_handle();
    let finished = Arc::new(AtomicUsize::new(0));
    for hook in hooks.split(',') {
        let (name, kind) = hook.split_once(':').expect("hooks are listed as name:kind");
        let (label, kind) = (name.to_owned(), kind.to_owned());
        let finished = Arc::clone(&finished);
        handle.register_cleanup(name, move || -> Result<(), String> {
            let name = label;
            log::info!(
                "hook ran: {name} after {} finished requests",
                finished.load(Ordering::SeqCst)
            );
            match kind.as_str() {
                "ok" => Ok(()),
                "err" => Err(format!("{name} failed on purpose")),
                "panic" => panic!("{name} panics on purpose"),
                "hang" => loop {
                    std::thread::park();
                },
                other => panic!("unknown hook kind {other:?}"),
            }
        });
    }
    let _signals = SignalListener::install(handle.clone()).expect("install the signal handlers");
    let handler = move |request: &mut Request<'_>| {
        if request.path() == "/slow" {
            std::thread::sleep(Duration::from_millis(SLOW_MS));
            finished.fetch_add(1, Ordering::SeqCst);
        }
        Response::text(StatusCode::OK, "ok")
    };
    let report = server.run(handler).expect("run the fixture server");
    log::info!("{}", report.to_json());
    // Exit at once: a hook that hangs is still running on its thread.
    std::process::exit(i32::from(report.exit_code))
}

// ---------------------------------------------------------------------------
// The scenarios.

/// The fixture as a child process, with these hooks (registration order).
fn start(hooks: &[(&str, &str)], cleanup_timeout: Duration) -> Service {
    let spec: Vec<String> = hooks
        .iter()
        .map(|(name, kind)| format!("{name}:{kind}"))
        .collect();
    let spec = spec.join(",");
    let timeout = cleanup_timeout.as_millis().to_string();
    let program = std::env::current_exe().expect("the path of this test program");
    // A panicking hook counts as panicked once its thread has unwound, after
    // the panic hook printed the message; with RUST_BACKTRACE set (as it
    // often is where tests run) that means symbolising a backtrace, which on
    // a loaded machine can outlast the hook's share of the timeout. These
    // scenarios are about outcomes, not about backtraces.
    Service::spawn(
        Command::new(program),
        &[
            (FIXTURE_ENV, spec.as_str()),
            (CLEANUP_TIMEOUT_ENV, timeout.as_str()),
            ("RUST_BACKTRACE", "0"),
        ],
    )
}

/// The hooks' `hook ran:` log lines, in order, as (name, finished requests).
fn hooks_that_ran(service: &Service) -> Vec<(String, usize)> {
    service
        .log_text()
        .lines()
        .filter_map(|line| line.split("hook ran: ").nth(1))
        .map(|rest| {
            let (name, after) = rest
                .split_once(" after ")
                .expect("hook ran: NAME after N finished requests");
            let finished = after
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .expect("a count");
            (name.to_owned(), finished)
        })
        .collect()
}

/// The report's hooks array without the durations.
fn hook_outcomes(report: &Value) -> Vec<Value> {
    report["hooks"]
        .as_array()
        .expect("a hooks array in the report")
        .iter()
        .map(|hook| {
            let mut hook = hook.clone();
            hook.as_object_mut().expect("a hook object").remove("ms");
            hook
        })
        .collect()
}

fn hooks_run_last_registered_first_after_the_drain_and_exit_is_clean() {
    let mut service = start(
        &[("first", "ok"), ("second", "ok"), ("third", "ok")],
        Duration::from_secs(2),
    );
    let mut client = Client::connect(service.addr);
    client.send(b"GET /slow HTTP/1.1\r\nHost: test\r\n\r\n");
    let (code, _) = service.terminate(EXIT_TIMEOUT);
    let response = client.read_response();
    assert_eq!(
        response.status,
        200,
        "the request in flight at SIGTERM: {}",
        response.text()
    );
    assert_eq!(code, 0, "exit code; log:\n{}", service.log_text());
    // The report is logged last: once it is read, so are the hooks' lines.
    let report = service.report();
    support::assert_nothing_lost(&report);
    assert_eq!(
        hooks_that_ran(&service),
        [
            ("third".to_owned(), 1),
            ("second".to_owned(), 1),
            ("first".to_owned(), 1)
        ],
        "each hook, last registered first, ran after the request in flight had finished"
    );
    assert_eq!(report["outcome"], "clean", "report {report}");
    assert_eq!(
        hook_outcomes(&report),
        [
            json!({"name": "third", "outcome": "ok"}),
            json!({"name": "second", "outcome": "ok"}),
            json!({"name": "first", "outcome": "ok"}),
        ]
    );
}

fn an_erroring_panicking_or_hanging_hook_does_not_stop_the_others() {
    // Five hooks: the one that hangs is given up after its share, a quarter
    // of what is left when it starts (about 500 ms).
    let cleanup_timeout = Duration::from_secs(2);
    let registered = [
        ("registered-first", "ok"),
        ("errors", "err"),
        ("panics", "panic"),
        ("hangs", "hang"),
        ("registered-last", "ok"),
    ];
    let mut service = start(&registered, cleanup_timeout);
    let (code, took) = service.terminate(EXIT_TIMEOUT);
    assert_eq!(
        code,
        i32::from(EXIT_CLEANUP_FAILED),
        "exit code; log:\n{}",
        service.log_text()
    );
    assert!(
        took < cleanup_timeout + EXIT_MARGIN,
        "exit {took:?} after SIGTERM; the cleanup timeout is {cleanup_timeout:?}"
    );
    let report = service.report();
    support::assert_nothing_lost(&report);
    let ran: Vec<String> = hooks_that_ran(&service)
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    assert_eq!(
        ran,
        [
            "registered-last",
            "hangs",
            "panics",
            "errors",
            "registered-first"
        ],
        "the hooks that started, in order"
    );
    assert_eq!(report["outcome"], "cleanup_failed", "report {report}");
    assert_eq!(report["exit_code"], EXIT_CLEANUP_FAILED, "report {report}");
    assert_eq!(
        hook_outcomes(&report),
        [
            json!({"name": "registered-last", "outcome": "ok"}),
            json!({"name": "hangs", "outcome": "timed_out"}),
            json!({"name": "panics", "outcome": "panicked"}),
            json!({"name": "errors", "outcome": "failed", "detail": "errors failed on purpose"}),
            json!({"name": "registered-first", "outcome": "ok"}),
        ]
    );
    let cleanup_ms = report["phases"]["cleanup_ms"].as_u64().expect("cleanup_ms");
    assert!(
        u128::from(cleanup_ms) <= cleanup_timeout.as_millis() + 100,
        "cleanup took {cleanup_ms} ms"
    );
}

fn a_hook_that_never_returns_is_given_up_at_the_cleanup_timeout() {
    let cleanup_timeout = Duration::from_millis(800);
    let mut service = start(&[("hangs", "hang")], cleanup_timeout);
    let (code, took) = service.terminate(EXIT_TIMEOUT);
    assert_eq!(
        code,
        i32::from(EXIT_CLEANUP_FAILED),
        "exit code; log:\n{}",
        service.log_text()
    );
    assert!(
        (cleanup_timeout..cleanup_timeout + EXIT_MARGIN).contains(&took),
        "exit {took:?} after SIGTERM; expected at the {cleanup_timeout:?} cleanup timeout"
    );
    let report = service.report();
    support::assert_nothing_lost(&report);
    assert_eq!(
        hook_outcomes(&report),
        [json!({"name": "hangs", "outcome": "timed_out"})]
    );
    let waited = report["hooks"][0]["ms"].as_u64().expect("ms");
    assert!(
        u128::from(waited) >= cleanup_timeout.as_millis() - 10,
        "the only hook was given up after {waited} ms, before the {cleanup_timeout:?} it may use"
    );
}

fn a_hook_returning_an_error_makes_an_otherwise_clean_shutdown_exit_4() {
    let mut service = start(
        &[("flush", "ok"), ("close-pool", "err")],
        Duration::from_secs(2),
    );
    let (code, _) = service.terminate(EXIT_TIMEOUT);
    assert_eq!(
        code,
        i32::from(EXIT_CLEANUP_FAILED),
        "exit code; log:\n{}",
        service.log_text()
    );
    let report = service.report();
    support::assert_nothing_lost(&report);
    assert_eq!(report["outcome"], "cleanup_failed", "report {report}");
    assert_eq!(report["requests_abandoned"], 0, "report {report}");
    assert_eq!(
        hook_outcomes(&report),
        [
            json!({"name": "close-pool", "outcome": "failed", "detail": "close-pool failed on purpose"}),
            json!({"name": "flush", "outcome": "ok"}),
        ]
    );
}

// ---------------------------------------------------------------------------
// A small libtest-like runner.

const SCENARIOS: &[(&str, fn())] = &[
    (
        "hooks_run_last_registered_first_after_the_drain_and_exit_is_clean",
        hooks_run_last_registered_first_after_the_drain_and_exit_is_clean,
    ),
    (
        "an_erroring_panicking_or_hanging_hook_does_not_stop_the_others",
        an_erroring_panicking_or_hanging_hook_does_not_stop_the_others,
    ),
    (
        "a_hook_that_never_returns_is_given_up_at_the_cleanup_timeout",
        a_hook_that_never_returns_is_given_up_at_the_cleanup_timeout,
    ),
    (
        "a_hook_returning_an_error_makes_an_otherwise_clean_shutdown_exit_4",
        a_hook_returning_an_error_makes_an_otherwise_clean_shutdown_exit_4,
    ),
];

/// libtest options that take a value, so it is not read as a filter.
const OPTIONS_WITH_VALUE: &[&str] = &[
    "--test-threads",
    "--skip",
    "--format",
    "--color",
    "--logfile",
    "-Z",
];

fn main() -> ExitCode {
    if let Ok(hooks) = std::env::var(FIXTURE_ENV) {
        return fixture(&hooks);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut filters = Vec::new();
    let mut skips = Vec::new();
    let mut words = args.iter();
    while let Some(arg) = words.next() {
        if arg == "--skip" {
            skips.extend(words.next());
        } else if OPTIONS_WITH_VALUE.contains(&arg.as_str()) {
            words.next();
        } else if !arg.starts_with('-') {
            filters.push(arg.as_str());
        }
    }
    let flag = |name: &str| args.iter().any(|arg| arg == name);
    let exact = flag("--exact");
    let matches = |name: &str, pattern: &str| {
        if exact {
            name == pattern
        } else {
            name.contains(pattern)
        }
    };
    let selected: Vec<&(&str, fn())> = SCENARIOS
        .iter()
        .filter(|(name, _)| {
            filters.is_empty() || filters.iter().any(|filter| matches(name, filter))
        })
        .filter(|(name, _)| !skips.iter().any(|skip| matches(name, skip)))
        // None of these is #[ignore]d.
        .filter(|_| !flag("--ignored"))
        .collect();
    if flag("--list") {
        for (name, _) in &selected {
            println!("{name}: test");
        }
        return ExitCode::SUCCESS;
    }

    let started = Instant::now();
    println!("\nrunning {} tests", selected.len());
    let mut failed = Vec::new();
    for (name, scenario) in &selected {
        let scenario_started = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(scenario));
        let verdict = if outcome.is_ok() { "ok" } else { "FAILED" };
        println!(
            "test {name} ... {verdict} ({:.2}s)",
            scenario_started.elapsed().as_secs_f64()
        );
        if outcome.is_err() {
            failed.push(*name);
        }
    }
    if !failed.is_empty() {
        println!("\nfailures (their panic messages are above):");
        for name in &failed {
            println!("    {name}");
        }
    }
    println!(
        "\ntest result: {}. {} passed; {} failed; 0 ignored; 0 measured; {} filtered out; finished in {:.2}s\n",
        if failed.is_empty() { "ok" } else { "FAILED" },
        selected.len() - failed.len(),
        failed.len(),
        SCENARIOS.len() - selected.len(),
        started.elapsed().as_secs_f64()
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(101)
    }
}
