//! Minimal axum server used as a baseline by `benches/compare.sh`.
//!
//! `axum-ok ADDR`: tokio multi-thread runtime (one worker per core), serving
//! `GET /` with `ok` and `GET /test/sleep?ms=N` (`tokio::time::sleep`, then
//! `ok`). For `benches/attack.sh` also `GET /healthz` (`ok`), `POST /`
//! (reads the whole body, then `ok`) and `GET /test/bytes?n=N` (N bytes of
//! `x`, capped). On SIGTERM or SIGINT it shuts down gracefully with
//! `axum::serve(..).with_graceful_shutdown(..)`: stops accepting, lets
//! in-flight requests finish, then exits 0.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::routing::get;
use axum::routing::post;
use gremlins_bench_reference::{MAX_BYTES, MAX_SLEEP_MS};
use tokio::signal::unix::{SignalKind, signal};

#[tokio::main]
async fn main() -> ExitCode {
    let Some(addr) = std::env::args().nth(1) else {
        eprintln!("usage: axum-ok ADDR");
        return ExitCode::from(2);
    };
    let listener = match tokio::net::TcpListener::bind(&addr).await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("axum-ok: cannot listen on {addr}: {err}");
            return ExitCode::FAILURE;
        }
    };
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .route("/", post(|_body: Bytes| async { "ok" }))
        .route("/healthz", get(|| async { "ok" }))
        .route("/test/sleep", get(sleep))
        .route("/test/bytes", get(bytes));
    eprintln!("listening on {addr}");
    match axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("axum-ok: server error: {err}");
            ExitCode::FAILURE
        }
    }
}

/// `GET /test/sleep?ms=N`: sleeps N ms (capped) without blocking a runtime thread.
async fn sleep(Query(params): Query<HashMap<String, String>>) -> (StatusCode, &'static str) {
    match params.get("ms").and_then(|ms| ms.parse::<u64>().ok()) {
        Some(ms) => {
            tokio::time::sleep(Duration::from_millis(ms.min(MAX_SLEEP_MS))).await;
            (StatusCode::OK, "ok")
        }
        None => (StatusCode::BAD_REQUEST, "bad ms"),
    }
}

/// `GET /test/bytes?n=N`: a body of N bytes (capped), for responses as large
/// as gremlins-api's event pages.
async fn bytes(Query(params): Query<HashMap<String, String>>) -> (StatusCode, String) {
    match params.get("n").and_then(|n| n.parse::<usize>().ok()) {
        Some(n) => (StatusCode::OK, "x".repeat(n.min(MAX_BYTES))),
        None => (StatusCode::BAD_REQUEST, String::from("bad n")),
    }
}

/// Resolves on the first SIGTERM or SIGINT.
async fn shutdown_signal() {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        eprintln!("axum-ok: cannot install signal handlers; graceful shutdown disabled");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => eprintln!("axum-ok: SIGTERM, draining"),
        _ = int.recv() => eprintln!("axum-ok: SIGINT, draining"),
    }
}
