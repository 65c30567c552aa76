//! Independent parsers check the engine's wire format:
//! - h11 (Python), a well-known HTTP/1.1 parser, reads the same 200+
//!   generated requests as the engine; they must agree on whether each is
//!   accepted and, when both accept it, on its body, except for the
//!   deliberate differences in [`DIFFERENCES`], each explained;
//! - prometheus-client's OpenMetrics parser (Python) reads `/metrics`.
//!
//! Both come from PyPI into a venv under `target/` (made on first use,
//! pinned versions), so `cargo test` alone runs this too.

mod support;

use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use support::{EchoServer, RESPONSE_TIMEOUT, Service};

/// What the venv holds.
const REQUIREMENTS: [&str; 2] = ["h11==0.16.0", "prometheus-client==0.26.0"];
/// Time allowed to make the venv (pip fetches two small packages).
const VENV_TIMEOUT: Duration = Duration::from_secs(300);

/// Cases where the engine and h11 differ on purpose: (case name, or a
/// pattern with one `*`, and why). Each must still differ.
const DIFFERENCES: &[(&str, &str)] = &[
    (
        "*/te-empty-element",
        "RFC 9110 5.6.1: a recipient MUST accept empty list elements, so `, chunked` is chunked; \
         h11 refuses it",
    ),
    (
        "*/te-and-cl",
        "RFC 9112 6.1 lets a server reject Transfer-Encoding with Content-Length, and the engine \
         does (the classic smuggling shape); h11 drops the Content-Length",
    ),
    (
        "*/chunk-size-space",
        "RFC 9112 7.1: chunk-size is 1*HEXDIG and white space may come only before a `;` \
         extension; h11 takes `5 ` as 5",
    ),
    (
        "post10/te-*",
        "RFC 9112 6.1: Transfer-Encoding in an HTTP/1.0 request means faulty framing; the engine \
         answers 501, h11 decodes it",
    ),
    ("post10/chunk-*", "as post10/te-*: chunked in HTTP/1.0"),
    (
        "host-invalid",
        "RFC 9112 3.2: a Host with an invalid value MUST get 400; h11 does not check the value",
    ),
    (
        "obs-fold",
        "RFC 9112 5.2: a server MUST reject obs-fold in a request with 400 or replace it; the \
         engine rejects, h11 unfolds",
    ),
    (
        "ctl",
        "RFC 9110 5.5: control bytes other than HTAB are not field content; the engine rejects \
         them, h11 accepts",
    ),
    (
        "http2",
        "RFC 9110 2.5 and 15.6.6: another major version cannot be read as HTTP/1.1, so 505; h11 \
         parses it as HTTP/1.x",
    ),
    (
        "leading-crlf",
        "RFC 9112 2.2: a server SHOULD ignore at least one empty line before the request-line; \
         h11 refuses it",
    ),
    (
        "asterisk-get",
        "RFC 9112 3.2.4: the asterisk-form is for OPTIONS only; h11 does not check the target",
    ),
    (
        "relative-target",
        "RFC 9112 3.2: a target is origin-, absolute-, authority- or asterisk-form; h11 does \
         not check the target",
    ),
];

/// Whether `name` is the case `pattern` names (one `*` matches anything).
fn matches(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        Some((prefix, suffix)) => {
            name.len() >= prefix.len() + suffix.len()
                && name.starts_with(prefix)
                && name.ends_with(suffix)
        }
        None => pattern == name,
    }
}

/// The venv's python, made with [`REQUIREMENTS`] when missing or stale.
fn python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-venv");
            let python = venv.join("bin/python");
            let stamp = venv.join(".requirements");
            let wanted = REQUIREMENTS.join(" ");
            if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
                return python;
            }
            let run = |command: &mut Command, what: &str| {
                let output = support::server_process::run_bounded(command, VENV_TIMEOUT, what)
                    .unwrap_or_else(|error| panic!("{error}"));
                assert!(
                    output.status.success(),
                    "{what} failed: {}",
                    support::server_process::output_text(&output)
                );
            };
            run(
                Command::new("python3").arg("-m").arg("venv").arg(&venv),
                "python3 -m venv (Debian package python3-venv)",
            );
            run(
                Command::new(&python)
                    .args([
                        "-m",
                        "pip",
                        "install",
                        "--quiet",
                        "--disable-pip-version-check",
                    ])
                    .args(REQUIREMENTS),
                "pip install of the independent parsers",
            );
            std::fs::write(&stamp, wanted).expect("write the venv's stamp");
            python
        })
        .clone()
}

/// Runs a Python script of `tests/python/` with `input` on stdin; its
/// stdout.
/// Longest a helper script may take; each answers in well under a second.
const PYTHON_TIMEOUT: Duration = Duration::from_secs(60);

fn run_python(script: &str, input: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(script);
    let mut child = Command::new(python())
        .arg(&path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the venv's python");
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = input.to_owned();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let pid = child.id();
    let (done, finished) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    let output = match finished.recv_timeout(PYTHON_TIMEOUT) {
        Ok(output) => output.expect("wait for python"),
        Err(_) => {
            let _ = support::server_process::send_signal("KILL", &[pid]);
            panic!("{script} did not answer within {PYTHON_TIMEOUT:?}; killed it");
        }
    };
    writer
        .join()
        .expect("the stdin writer")
        .expect("write python's stdin");
    assert!(
        output.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("python prints UTF-8")
}

/// Whether a request was accepted, and its body as read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Verdict {
    accepted: bool,
    body: Option<Vec<u8>>,
}

/// The generated requests: (name, bytes), every one distinct.
fn cases() -> Vec<(String, Vec<u8>)> {
    let mut cases = Vec::new();
    // Framing: the header lines and the bytes after the head.
    let framings: &[(&str, &str, &str)] = &[
        ("no-body", "", ""),
        ("cl", "Content-Length: 5\r\n", "hello"),
        ("cl-zero", "Content-Length: 0\r\n", ""),
        ("cl-list-equal", "Content-Length: 5, 5\r\n", "hello"),
        (
            "cl-lines-equal",
            "Content-Length: 5\r\nContent-Length: 5\r\n",
            "hello",
        ),
        (
            "cl-lines-differ",
            "Content-Length: 5\r\nContent-Length: 6\r\n",
            "hello!",
        ),
        ("cl-list-differ", "Content-Length: 5, 6\r\n", "hello!"),
        ("cl-sign", "Content-Length: +5\r\n", "hello"),
        ("cl-negative", "Content-Length: -5\r\n", ""),
        ("cl-hex", "Content-Length: 0x5\r\n", "hello"),
        ("cl-space-inside", "Content-Length: 5 5\r\n", "hello"),
        ("cl-empty", "Content-Length: \r\n", ""),
        ("cl-leading-zeros", "Content-Length: 005\r\n", "hello"),
        ("cl-short-body", "Content-Length: 9\r\n", "hello"),
        (
            "te-chunked",
            "Transfer-Encoding: chunked\r\n",
            "5\r\nhello\r\n0\r\n\r\n",
        ),
        (
            "te-chunked-upper",
            "Transfer-Encoding: CHUNKED\r\n",
            "5\r\nhello\r\n0\r\n\r\n",
        ),
        (
            "te-empty-element",
            "Transfer-Encoding: ,chunked\r\n",
            "5\r\nhello\r\n0\r\n\r\n",
        ),
        (
            "te-twice-list",
            "Transfer-Encoding: chunked, chunked\r\n",
            "5\r\nhello\r\n0\r\n\r\n",
        ),
        (
            "te-twice-lines",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
            "5\r\nhello\r\n0\r\n\r\n",
        ),
        (
            "te-gzip-chunked",
            "Transfer-Encoding: gzip, chunked\r\n",
            "5\r\nhello\r\n0\r\n\r\n",
        ),
        (
            "te-chunked-gzip",
            "Transfer-Encoding: chunked, gzip\r\n",
            "5\r\nhello\r\n0\r\n\r\n",
        ),
        ("te-gzip", "Transfer-Encoding: gzip\r\n", "hello"),
        ("te-identity", "Transfer-Encoding: identity\r\n", "hello"),
        ("te-empty", "Transfer-Encoding: \r\n", ""),
        (
            "te-and-cl",
            "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
            "5\r\nhello\r\n0\r\n\r\n",
        ),
        (
            "chunk-extension",
            "Transfer-Encoding: chunked\r\n",
            "5;name=value\r\nhello\r\n0\r\n\r\n",
        ),
        (
            "chunk-trailer",
            "Transfer-Encoding: chunked\r\n",
            "5\r\nhello\r\n0\r\nX-T: v\r\n\r\n",
        ),
        (
            "chunk-size-zeros",
            "Transfer-Encoding: chunked\r\n",
            "005\r\nhello\r\n0\r\n\r\n",
        ),
        (
            "chunk-size-upper",
            "Transfer-Encoding: chunked\r\n",
            "A\r\nhellohello\r\n0\r\n\r\n",
        ),
        (
            "chunk-size-bad",
            "Transfer-Encoding: chunked\r\n",
            "xyz\r\nhello\r\n0\r\n\r\n",
        ),
        (
            "chunk-size-space",
            "Transfer-Encoding: chunked\r\n",
            "5 \r\nhello\r\n0\r\n\r\n",
        ),
        (
            "chunk-size-negative",
            "Transfer-Encoding: chunked\r\n",
            "-5\r\nhello\r\n0\r\n\r\n",
        ),
        (
            "chunk-missing-crlf",
            "Transfer-Encoding: chunked\r\n",
            "5\r\nhelloX\r\n0\r\n\r\n",
        ),
        (
            "chunk-unfinished",
            "Transfer-Encoding: chunked\r\n",
            "5\r\nhello\r\n",
        ),
        (
            "chunk-two",
            "Transfer-Encoding: chunked\r\n",
            "3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n",
        ),
    ];
    let lines: &[(&str, &str)] = &[
        ("get11", "GET /echo HTTP/1.1"),
        ("post11", "POST /echo HTTP/1.1"),
        ("post10", "POST /echo HTTP/1.0"),
        ("put11", "PUT /echo?x=1 HTTP/1.1"),
        ("post12", "POST /echo HTTP/1.2"),
        ("absolute", "POST http://t/echo HTTP/1.1"),
    ];
    for (line_name, line) in lines {
        for (framing_name, fields, body) in framings {
            cases.push((
                format!("{line_name}/{framing_name}"),
                format!("{line}\r\nHost: t\r\n{fields}\r\n{body}").into_bytes(),
            ));
        }
    }
    // Field and request-line syntax, on a request with a body.
    let syntax: &[(&str, &str)] = &[
        (
            "host-missing-11",
            "POST /echo HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi",
        ),
        (
            "host-missing-10",
            "POST /echo HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi",
        ),
        (
            "host-twice",
            "POST /echo HTTP/1.1\r\nHost: a\r\nHost: b\r\nContent-Length: 2\r\n\r\nhi",
        ),
        (
            "host-invalid",
            "POST /echo HTTP/1.1\r\nHost: a b\r\nContent-Length: 2\r\n\r\nhi",
        ),
        (
            "obs-fold",
            "POST /echo HTTP/1.1\r\nHost: t\r\nX: a\r\n b\r\nContent-Length: 2\r\n\r\nhi",
        ),
        (
            "space-before-colon",
            "POST /echo HTTP/1.1\r\nHost : t\r\nContent-Length: 2\r\n\r\nhi",
        ),
        (
            "bare-lf",
            "POST /echo HTTP/1.1\nHost: t\nContent-Length: 2\n\nhi",
        ),
        (
            "bare-cr",
            "POST /echo HTTP/1.1\r\nHost: t\r\nX: a\rb\r\nContent-Length: 2\r\n\r\nhi",
        ),
        (
            "nul",
            "POST /echo HTTP/1.1\r\nHost: t\r\nX: a\0b\r\nContent-Length: 2\r\n\r\nhi",
        ),
        (
            "ctl",
            "POST /echo HTTP/1.1\r\nHost: t\r\nX: a\x01b\r\nContent-Length: 2\r\n\r\nhi",
        ),
        (
            "tab-in-value",
            "POST /echo HTTP/1.1\r\nHost: t\r\nX: a\tb\r\nContent-Length: 2\r\n\r\nhi",
        ),
        (
            "obs-text",
            "POST /echo HTTP/1.1\r\nHost: t\r\nX: caf\u{e9}\r\nContent-Length: 2\r\n\r\nhi",
        ),
        (
            "space-first-line",
            "POST /echo HTTP/1.1\r\n Host: t\r\nContent-Length: 2\r\n\r\nhi",
        ),
        (
            "empty-name",
            "POST /echo HTTP/1.1\r\nHost: t\r\n: v\r\nContent-Length: 2\r\n\r\nhi",
        ),
        (
            "no-colon",
            "POST /echo HTTP/1.1\r\nHost: t\r\nNoColon\r\nContent-Length: 2\r\n\r\nhi",
        ),
        (
            "lowercase-method",
            "post /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi",
        ),
        (
            "http2",
            "POST /echo HTTP/2.0\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi",
        ),
        (
            "http-lowercase",
            "POST /echo http/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi",
        ),
        (
            "double-space",
            "POST  /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi",
        ),
        (
            "space-in-target",
            "POST /e cho HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi",
        ),
        (
            "no-version",
            "POST /echo\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi",
        ),
        (
            "leading-crlf",
            "\r\nPOST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi",
        ),
        ("asterisk-get", "GET * HTTP/1.1\r\nHost: t\r\n\r\n"),
        ("asterisk-options", "OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n"),
        ("connect", "CONNECT t:443 HTTP/1.1\r\nHost: t:443\r\n\r\n"),
        ("relative-target", "GET echo HTTP/1.1\r\nHost: t\r\n\r\n"),
        ("unfinished-head", "POST /echo HTTP/1.1\r\nHost: t\r\n"),
        (
            "expect",
            "POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi",
        ),
        (
            "connection-list",
            "POST /echo HTTP/1.1\r\nHost: t\r\nConnection: , close\r\nContent-Length: 2\r\n\r\nhi",
        ),
    ];
    for (name, text) in syntax {
        cases.push(((*name).to_owned(), text.as_bytes().to_vec()));
    }
    cases
}

/// How the engine (the echo server, whose `/echo` answers the body back)
/// reads `request`, followed by the end of the client's output.
fn engine_verdict(addr: SocketAddr, request: &[u8]) -> Verdict {
    let mut stream =
        TcpStream::connect_timeout(&addr, support::CONNECT_TIMEOUT).expect("connect to the engine");
    stream
        .set_read_timeout(Some(RESPONSE_TIMEOUT))
        .expect("set a read timeout");
    stream.write_all(request).expect("write the request");
    stream
        .shutdown(Shutdown::Write)
        .expect("end the client's output");
    // The first final response, read to its end (an interim `100
    // Continue` skipped): a refusal closes the connection, an answer may
    // keep it open.
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(verdict) = final_response(&answer) {
            return verdict;
        }
        match support::read_retrying(&stream, &mut chunk) {
            Ok(0) | Err(_) => {
                return Verdict {
                    accepted: false,
                    body: None,
                };
            }
            Ok(count) => answer.extend_from_slice(&chunk[..count]),
        }
    }
}

/// The verdict of the first final response in `answer`, once it is all
/// there.
fn final_response(mut answer: &[u8]) -> Option<Verdict> {
    loop {
        let end = answer.windows(4).position(|window| window == b"\r\n\r\n")? + 4;
        let head = String::from_utf8_lossy(&answer[..end]).into_owned();
        if head.starts_with("HTTP/1.1 1") {
            answer = &answer[end..];
            continue;
        }
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("Content-Length: "))
            .and_then(|value| value.parse().ok())
            .unwrap_or(0);
        let body = answer.get(end..end + length)?;
        let accepted = head.starts_with("HTTP/1.1 2");
        return Some(Verdict {
            accepted,
            body: accepted.then(|| body.to_vec()),
        });
    }
}

fn h11_verdicts(requests: &[Vec<u8>]) -> Vec<Verdict> {
    let input = serde_json::to_string(
        &requests
            .iter()
            .map(|request| {
                request
                    .iter()
                    .map(|byte| format!("{byte:02x}"))
                    .collect::<String>()
            })
            .collect::<Vec<_>>(),
    )
    .expect("JSON");
    let output: Vec<serde_json::Value> =
        serde_json::from_str(&run_python("h11_verdicts.py", &input)).expect("h11's JSON");
    output
        .iter()
        .map(|verdict| Verdict {
            accepted: verdict["accepted"] == true,
            body: verdict["body"].as_str().map(|hex| {
                (0..hex.len())
                    .step_by(2)
                    .map(|at| u8::from_str_radix(&hex[at..at + 2], 16).expect("hex"))
                    .collect()
            }),
        })
        .collect()
}

#[test]
fn the_engine_and_h11_agree_on_every_framing_relevant_case_but_the_explained_ones() {
    let cases = cases();
    assert!(cases.len() >= 200, "only {} cases", cases.len());
    let server = EchoServer::start(|_| {});
    let requests: Vec<Vec<u8>> = cases.iter().map(|(_, bytes)| bytes.clone()).collect();
    let theirs = h11_verdicts(&requests);
    let mut unexplained = Vec::new();
    let mut explained_seen = Vec::new();
    for ((name, request), h11) in cases.iter().zip(&theirs) {
        let ours = engine_verdict(server.addr, request);
        // Only `/echo` answers the body back.
        let echoed = request.windows(6).any(|window| window == b"/echo ");
        let agree =
            ours.accepted == h11.accepted && (!ours.accepted || !echoed || ours.body == h11.body);
        let explained = DIFFERENCES
            .iter()
            .any(|(pattern, _)| matches(pattern, name));
        if !agree && !explained {
            unexplained.push(format!(
                "{name}: engine {ours:?}, h11 {h11:?}: {:?}",
                String::from_utf8_lossy(request)
            ));
        }
        if !agree && explained {
            explained_seen.push(name.clone());
        }
    }
    for (pattern, _) in DIFFERENCES {
        assert!(
            explained_seen.iter().any(|name| matches(pattern, name)),
            "{pattern} is listed in DIFFERENCES but names no case where the two differ"
        );
    }
    assert!(
        unexplained.is_empty(),
        "{} disagreements:\n{}",
        unexplained.len(),
        unexplained.join("\n")
    );
}

#[test]
fn metrics_parse_with_an_independent_openmetrics_parser() {
    let service = Service::start(&["--workers", "2"]);
    assert_eq!(support::get(service.addr, "/healthz").status, 200);
    let response = support::get(service.addr, "/metrics");
    assert_eq!(response.status, 200, "{response:?}");
    let families = run_python("openmetrics_families.py", &response.text());
    let families: Vec<String> = serde_json::from_str(&families).expect("the parser's JSON");
    for expected in [
        "gremlins_requests",
        "gremlins_open_connections",
        "gremlins_shutdown_phase",
        "gremlins_accept_errors",
    ] {
        assert!(
            families.iter().any(|family| family == expected),
            "{expected} not among the parsed families {families:?}"
        );
    }
}
