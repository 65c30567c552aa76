//! The events API: `POST /v1/events`, `GET /v1/events/{id}`,
//! `GET /v1/events?after=ID&limit=N`.

use serde::Deserialize;

use super::services::Services;
use super::spool::SpoolError;
use super::store::{Inserted, NewEvent, StoreError};
use crate::http::WireError;
use crate::http::{Request, Response, StatusCode};

/// Longest event type accepted.
const MAX_TYPE_LEN: usize = 128;
/// Longest `Idempotency-Key` accepted.
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;
/// Page size when `limit` is not given, and the largest allowed.
const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;

/// The body of `POST /v1/events`. Unknown fields are refused, so a typo
/// (`"paylod"`) is an error instead of an empty event.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateEvent {
    #[serde(rename = "type")]
    kind: String,
    payload: serde_json::Map<String, serde_json::Value>,
}

fn unavailable(services: &Services, error: &StoreError) -> Response {
    services.metrics.database_errors.inc();
    log::error!("events: {error}");
    WireError::DatabaseUnavailable.response()
}

fn invalid(message: &str) -> Response {
    WireError::InvalidEvent.response_with_message(message)
}

/// Whether an object's `key` or `value` holds NUL anywhere, at any depth.
fn has_nul(key: &str, value: &serde_json::Value) -> bool {
    key.contains('\0') || value_has_nul(value)
}

/// Whether a JSON value holds NUL in any string or key, at any depth.
fn value_has_nul(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(text) => text.contains('\0'),
        serde_json::Value::Array(items) => items.iter().any(value_has_nul),
        serde_json::Value::Object(fields) => fields.iter().any(|(key, value)| has_nul(key, value)),
        serde_json::Value::Null | serde_json::Value::Bool(_) | serde_json::Value::Number(_) => {
            false
        }
    }
}

fn event_json(status: StatusCode, event: &super::store::Event) -> Response {
    Response::json(status, event)
}

/// `POST /v1/events`: 201 with the stored event once it is committed.
pub(crate) fn create(services: &Services, request: &mut Request<'_>) -> Response {
    let key = match request.header("Idempotency-Key").map(str::trim) {
        None => None,
        Some(key)
            if !key.is_empty()
                && key.len() <= MAX_IDEMPOTENCY_KEY_LEN
                && key.bytes().all(|byte| byte.is_ascii_graphic()) =>
        {
            Some(key.to_owned())
        }
        Some(_) => {
            return WireError::BadIdempotencyKey.response();
        }
    };
    let body = match services.spool.read_body(request) {
        Ok(body) => body,
        Err(SpoolError::Body(error)) => return error.wire_error().response(),
        Err(SpoolError::Io(error)) => {
            log::error!("events: spooling a request body failed: {error}");
            return WireError::SpoolFailed.response();
        }
    };
    let parsed: CreateEvent = match body.json() {
        Ok(parsed) => parsed,
        Err(error) if error.is_data() => return invalid(&format!("invalid event: {error}")),
        Err(error) => {
            return WireError::InvalidJson
                .response_with_message(&format!("body is not valid JSON: {error}"));
        }
    };
    if parsed.kind.trim().is_empty() || parsed.kind.len() > MAX_TYPE_LEN {
        return invalid(&format!(
            "`type` must be a non-empty string of at most {MAX_TYPE_LEN} bytes"
        ));
    }
    // PostgreSQL refuses NUL in TEXT and JSONB: refused here, so it is the
    // client's error and not the database's, whichever store serves.
    if parsed.kind.contains('\0') {
        return invalid("`type` must not contain NUL (\\u0000)");
    }
    if parsed
        .payload
        .iter()
        .any(|(key, value)| has_nul(key, value))
    {
        return invalid("`payload` must not contain NUL (\\u0000) in any key or string");
    }
    let event = NewEvent {
        kind: parsed.kind,
        payload: serde_json::Value::Object(parsed.payload),
    };
    match services.store.insert(&event, key.as_deref()) {
        Ok(Inserted::Created(stored)) => event_json(StatusCode::CREATED, &stored),
        Ok(Inserted::Replayed(first)) => {
            event_json(StatusCode::CREATED, &first).with_header("Idempotency-Replayed", "true")
        }
        Ok(Inserted::KeyConflict) => WireError::IdempotencyKeyConflict.response(),
        Err(error) => unavailable(services, &error),
    }
}

/// `GET /v1/events/{id}`, through the cache.
pub(crate) fn get(services: &Services, id: &str) -> Response {
    let Some(id) = id.parse::<i64>().ok().filter(|id| *id > 0) else {
        return WireError::NoSuchEvent.response();
    };
    if let Some(cached) = services.cache.get_event(id) {
        return event_json(StatusCode::OK, &cached);
    }
    match services.store.get(id) {
        Ok(Some(event)) => {
            services.cache.put_event(&event);
            event_json(StatusCode::OK, &event)
        }
        Ok(None) => WireError::NoSuchEvent.response(),
        Err(error) => unavailable(services, &error),
    }
}

/// `GET /v1/events?after=ID&limit=N`: a page in id order, and where the
/// next one starts.
pub(crate) fn list(services: &Services, request: &Request<'_>) -> Response {
    let after = match request.query_param("after").map(str::parse::<i64>) {
        None => 0,
        Some(Ok(after)) if after >= 0 => after,
        Some(_) => {
            return WireError::BadAfter.response();
        }
    };
    let limit = match request.query_param("limit").map(str::parse::<u32>) {
        None => DEFAULT_PAGE,
        Some(Ok(limit)) if (1..=MAX_PAGE).contains(&limit) => limit,
        Some(_) => {
            return WireError::BadLimit
                .response_with_message(&format!("`limit` must be between 1 and {MAX_PAGE}"));
        }
    };
    match services.store.list(after, limit) {
        Ok(events) => {
            let next_after = (events.len() == limit as usize)
                .then(|| events.last().map(|event| event.id))
                .flatten();
            Response::json(
                StatusCode::OK,
                &serde_json::json!({ "events": events, "next_after": next_after }),
            )
        }
        Err(error) => unavailable(services, &error),
    }
}
