//! The connection URLs read from files (`DATABASE_URL_FILE`, `REDIS_URL_FILE`), as Kubernetes
//! mounts a Secret: the real binary, real files in a temp dir. The URL in a file is used as
//! given (less one trailing newline) and never logged; a file that cannot give a URL, or a URL
//! given twice, stops the service at start with a message naming the variable and the file.

mod support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use support::server_process::run_bounded;
use support::{Service, get};

/// A password that must appear in no log line.
const PASSWORD: &str = "pa55-from-the-secret-file";
/// Longest wait for the service to stop once it was told to (or refused to start).
const EXIT_TIMEOUT: Duration = Duration::from_secs(15);
/// Every variable that gives the service a URL, removed from the environment a test inherits.
const URL_VARIABLES: [&str; 4] = [
    "DATABASE_URL",
    "DATABASE_URL_FILE",
    "REDIS_URL",
    "REDIS_URL_FILE",
];

/// A PostgreSQL URL with a password, on a port of 127.0.0.1 where nothing listens (port 1 is
/// below the range ephemeral ports and test servers use).
fn unreachable_database_url() -> String {
    format!("postgres://gremlins:{PASSWORD}@127.0.0.1:1/gremlins")
}

fn write_file(path: &Path, content: &str) {
    std::fs::write(path, content)
        .unwrap_or_else(|error| panic!("cannot write {}: {error}", path.display()));
}

/// Runs the binary with `env`, which it must refuse at start; returns its output.
fn run_expecting_refusal(env: &[(&str, &str)], what: &str) -> Output {
    let mut command = Command::new(support::binary());
    command
        .args(["--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info");
    for var in URL_VARIABLES {
        command.env_remove(var);
    }
    command.envs(env.iter().copied());
    let output =
        run_bounded(&mut command, EXIT_TIMEOUT, what).unwrap_or_else(|error| panic!("{error}"));
    let log = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{what}: exit status; log:\n{log}"
    );
    assert!(
        !log.contains("listening on"),
        "{what}: it must not start serving:\n{log}"
    );
    assert!(
        !log.contains(PASSWORD),
        "{what}: the log shows the password:\n{log}"
    );
    output
}

#[test]
fn the_database_url_file_is_read_less_its_newline_and_the_url_never_logged() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = dir.path().join("DATABASE_URL");
    write_file(&file, &format!("{}\n", unreachable_database_url()));
    let file = file.to_str().expect("a UTF-8 temp path");
    let mut service = Service::start_with_env(&[], &[("DATABASE_URL_FILE", file)]);

    // The store starts on the file's URL: the newline is gone (the path ends the line), and the
    // password is redacted. It is logged before `listening on`, which `start` waited for, by
    // the same reader: it is in the log already.
    let log = service.log_text();
    assert!(
        log.lines().any(|line| line
            .ends_with("events store: PostgreSQL at postgres://gremlins:***@127.0.0.1:1/gremlins")),
        "the store starts on the URL of the file:\n{log}"
    );
    // And it is used: nothing listens there, so the service is not ready (the built-in store
    // would be).
    let ready = get(service.addr, "/readyz");
    assert_eq!(ready.status, 503, "/readyz: {}", ready.text());

    let (code, _) = service.terminate(EXIT_TIMEOUT);
    let log = service.log_text();
    assert_eq!(code, 0, "exit code; log:\n{log}");
    assert!(
        !log.contains(PASSWORD),
        "the log shows the password:\n{log}"
    );
}

#[test]
fn a_url_and_its_file_together_are_refused() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = dir.path().join("DATABASE_URL");
    write_file(&file, &unreachable_database_url());
    let url = unreachable_database_url();
    let output = run_expecting_refusal(
        &[
            ("DATABASE_URL", url.as_str()),
            (
                "DATABASE_URL_FILE",
                file.to_str().expect("a UTF-8 temp path"),
            ),
        ],
        "the service given DATABASE_URL and DATABASE_URL_FILE",
    );
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(
        log.contains(
            "DATABASE_URL (--database-url) and DATABASE_URL_FILE (--database-url-file) are both set"
        ),
        "the message names both variables:\n{log}"
    );
}

#[test]
fn a_missing_database_url_file_is_refused_naming_the_variable_and_the_file() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = dir.path().join("DATABASE_URL");
    let file = file.to_str().expect("a UTF-8 temp path");
    let output = run_expecting_refusal(
        &[("DATABASE_URL_FILE", file)],
        "the service given a DATABASE_URL_FILE that does not exist",
    );
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(
        log.contains(&format!(
            "DATABASE_URL_FILE (--database-url-file) names {file}, which cannot be read"
        )),
        "the message names the variable and the file:\n{log}"
    );
}

#[test]
fn an_empty_or_unreadable_url_file_is_refused() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let empty = dir.path().join("DATABASE_URL");
    write_file(&empty, "\n");
    let empty = empty.to_str().expect("a UTF-8 temp path");
    let output = run_expecting_refusal(
        &[("DATABASE_URL_FILE", empty)],
        "the service given an empty DATABASE_URL_FILE",
    );
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(
        log.contains(&format!(
            "DATABASE_URL_FILE (--database-url-file) names {empty}, which is empty"
        )),
        "{log}"
    );

    // A directory cannot be read as a file, whoever runs the test (root reads any mode).
    let unreadable = dir.path().to_str().expect("a UTF-8 temp path");
    let output = run_expecting_refusal(
        &[("REDIS_URL_FILE", unreadable)],
        "the service given a REDIS_URL_FILE that is a directory",
    );
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(
        log.contains(&format!(
            "REDIS_URL_FILE (--redis-url-file) names {unreadable}, which cannot be read"
        )),
        "{log}"
    );
}

#[test]
fn a_redis_url_file_absent_from_its_directory_means_no_cache() {
    // As a Secret volume without the optional REDIS_URL key: the directory, but no file.
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = dir.path().join("REDIS_URL");
    let file = file.to_str().expect("a UTF-8 temp path");
    let mut service = Service::start_with_env(&[], &[("REDIS_URL_FILE", file)]);
    // Logged before `listening on`, which `start` waited for: it is in the log already.
    let log = service.log_text();
    assert!(
        log.contains(&format!(
            "REDIS_URL_FILE (--redis-url-file): {file} does not exist: REDIS_URL is unset"
        )) && log.contains("cache: no REDIS_URL configured"),
        "the cache is off, and the log says why:\n{log}"
    );
    let (code, _) = service.terminate(EXIT_TIMEOUT);
    assert_eq!(code, 0, "exit code; log:\n{}", service.log_text());

    // A directory that is missing too is a wrong path, not an absent key.
    let wrong = dir.path().join("missing").join("REDIS_URL");
    let wrong = wrong.to_str().expect("a UTF-8 temp path");
    let output = run_expecting_refusal(
        &[("REDIS_URL_FILE", wrong)],
        "the service given a REDIS_URL_FILE in a directory that does not exist",
    );
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(
        log.contains(&format!(
            "REDIS_URL_FILE (--redis-url-file) names {wrong}, which cannot be read"
        )),
        "{log}"
    );
}
