//! Minimal actix-web 4 server used as a baseline by `benches/compare.sh`.
//!
//! `actix-ok ADDR`: actix-web's defaults (one worker thread, each with its
//! own single-threaded runtime, per core), serving the same routes as
//! `axum-ok`: `GET /` with `ok`, `GET /test/sleep?ms=N`
//! (`actix_web::rt::time::sleep`, then `ok`), `GET /healthz` (`ok`),
//! `POST /` (reads the whole body, then `ok`) and `GET /test/bytes?n=N`
//! (N bytes of `x`, capped). Shutdown is actix's own signal handling:
//! SIGTERM stops accepting and exits 0 once the open connections have
//! closed, or after its default 30 s shutdown timeout; SIGINT and SIGQUIT
//! stop it without waiting. It does not close idle keep-alive connections
//! or answer `Connection: close` meanwhile, so clients that keep sending
//! on their connections keep being served until that timeout.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::web::{self, Bytes};
use actix_web::{App, HttpServer, Responder};
use gremlins_bench_reference::{MAX_BYTES, MAX_SLEEP_MS};

#[actix_web::main]
async fn main() -> ExitCode {
    let Some(addr) = std::env::args().nth(1) else {
        eprintln!("usage: actix-ok ADDR");
        return ExitCode::from(2);
    };
    let server = HttpServer::new(|| {
        App::new()
            .route("/", web::get().to(|| async { "ok" }))
            .route("/", web::post().to(|_body: Bytes| async { "ok" }))
            .route("/healthz", web::get().to(|| async { "ok" }))
            .route("/test/sleep", web::get().to(sleep))
            .route("/test/bytes", web::get().to(bytes))
    });
    let server = match server.bind(&addr) {
        Ok(server) => server,
        Err(err) => {
            eprintln!("actix-ok: cannot listen on {addr}: {err}");
            return ExitCode::FAILURE;
        }
    };
    match server.addrs().first() {
        Some(bound) => eprintln!("listening on {bound}"),
        None => eprintln!("listening on {addr}"),
    }
    match server.run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("actix-ok: server error: {err}");
            ExitCode::FAILURE
        }
    }
}

/// `GET /test/sleep?ms=N`: sleeps N ms (capped) without blocking the worker.
async fn sleep(params: web::Query<HashMap<String, String>>) -> impl Responder {
    match params.get("ms").and_then(|ms| ms.parse::<u64>().ok()) {
        Some(ms) => {
            actix_web::rt::time::sleep(Duration::from_millis(ms.min(MAX_SLEEP_MS))).await;
            "ok".customize()
        }
        None => "bad ms".customize().with_status(StatusCode::BAD_REQUEST),
    }
}

/// `GET /test/bytes?n=N`: a body of N bytes (capped), as axum-ok answers it.
async fn bytes(params: web::Query<HashMap<String, String>>) -> impl Responder {
    match params.get("n").and_then(|n| n.parse::<usize>().ok()) {
        Some(n) => "x".repeat(n.min(MAX_BYTES)).customize(),
        None => String::from("bad n")
            .customize()
            .with_status(StatusCode::BAD_REQUEST),
    }
}
