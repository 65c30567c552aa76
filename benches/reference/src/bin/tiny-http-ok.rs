//! Minimal tiny_http 0.12 server used as a baseline by `benches/compare.sh`.
//!
//! `tiny-http-ok ADDR [THREADS]`: serves `GET /` with `200 ok` and
//! `GET /test/sleep?ms=N` (blocks the worker with `thread::sleep`, then `ok`),
//! with THREADS (default 4) worker threads each looping on `Server::recv()`,
//! as tiny_http's own examples do. No graceful shutdown: SIGTERM takes its
//! default action and kills the process.

use std::process::ExitCode;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use gremlins_bench_reference::sleep_ms_from_query;
use tiny_http::{Response, Server};

/// Worker threads when no second argument is given.
const DEFAULT_THREADS: usize = 4;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(addr) = args.next() else {
        eprintln!("usage: tiny-http-ok ADDR [THREADS]");
        return ExitCode::from(2);
    };
    let threads = match args.next().map(|t| t.parse::<usize>()) {
        None => DEFAULT_THREADS,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("tiny-http-ok: THREADS must be a positive integer");
            return ExitCode::from(2);
        }
    };
    let server = match Server::http(&addr) {
        Ok(server) => Arc::new(server),
        Err(err) => {
            eprintln!("tiny-http-ok: cannot listen on {addr}: {err}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("listening on {addr} with {threads} threads");

    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let server = Arc::clone(&server);
            thread::spawn(move || serve(&server))
        })
        .collect();
    for handle in handles {
        if handle.join().is_err() {
            eprintln!("tiny-http-ok: a worker thread panicked");
        }
    }
    ExitCode::SUCCESS
}

/// Answers requests until `recv` fails (it never does while the server lives).
fn serve(server: &Server) {
    while let Ok(request) = server.recv() {
        let url = request.url().to_owned();
        let (path, query) = url.split_once('?').unwrap_or((url.as_str(), ""));
        let response = match path {
            "/" => Response::from_string("ok"),
            "/test/sleep" => match sleep_ms_from_query(query) {
                Some(ms) => {
                    thread::sleep(Duration::from_millis(ms));
                    Response::from_string("ok")
                }
                None => Response::from_string("bad ms").with_status_code(400),
            },
            _ => Response::from_string("not found").with_status_code(404),
        };
        // A client that went away is not the server's problem.
        let _ = request.respond(response);
    }
}
