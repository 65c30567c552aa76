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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use serde_json::Value;

    use super::*;
    use crate::app::cache::Cache;
    use crate::app::metrics::Metrics;
    use crate::app::spool::Spool;
    use crate::app::store::MemoryStore;
    use crate::http::ParsedRequest;
    use crate::{Server, ServerConfig};

    /// The handlers' services over the in-memory store, with no cache (and
    /// the metrics of a server bound to a free port, never run).
    fn services() -> Services {
        let config = ServerConfig {
            listen: "127.0.0.1:0".parse().expect("an address"),
            ..ServerConfig::default()
        };
        let server = Server::bind(config).expect("bind a free port on 127.0.0.1");
        let cache = Cache::new(None, Duration::from_millis(100), Duration::from_secs(1));
        Services {
            store: Arc::new(MemoryStore::default()),
            metrics: Metrics::new(server.stats(), cache.errors()),
            cache: Arc::new(cache),
            spool: Arc::new(Spool::create(1024).expect("a spool dir under the temp dir")),
        }
    }

    /// `POST /v1/events` with `body` and, if given, an `Idempotency-Key`.
    fn post(services: &Services, body: &str, key: Option<&str>) -> Response {
        let key = key.map_or(String::new(), |key| format!("Idempotency-Key: {key}\r\n"));
        let bytes = format!(
            "POST /v1/events HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n{key}\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let parsed = ParsedRequest::parse(bytes.as_bytes()).expect("a well-framed request");
        create(services, &mut parsed.request())
    }

    fn list_page(services: &Services, query: &str) -> Response {
        let bytes = format!("GET /v1/events?{query} HTTP/1.1\r\nHost: t\r\n\r\n");
        let parsed = ParsedRequest::parse(bytes.as_bytes()).expect("a well-framed request");
        list(services, &parsed.request())
    }

    fn json(response: &Response) -> Value {
        serde_json::from_slice(response.body()).expect("a JSON body")
    }

    /// Asserts `response` is the error answer `expected`.
    fn assert_answer(response: &Response, expected: WireError) {
        assert_eq!(response.status(), expected.status(), "{response:?}");
        assert_eq!(json(response)["code"], expected.code(), "{response:?}");
    }

    #[test]
    fn a_posted_event_is_stored_and_answered_201_with_its_id() {
        let services = services();
        let response = post(&services, r#"{"type":"signup","payload":{"user":7}}"#, None);
        assert_eq!(response.status(), StatusCode::CREATED, "{response:?}");
        let event = json(&response);
        assert_eq!(event["type"], "signup");
        assert_eq!(event["payload"]["user"], 7);
        let id = event["id"].as_i64().expect("an id");
        let stored = get(&services, &id.to_string());
        assert_eq!(json(&stored), event);
    }

    #[test]
    fn the_same_idempotency_key_replays_the_first_event_and_a_different_event_conflicts() {
        let services = services();
        let body = r#"{"type":"pay","payload":{"cents":100}}"#;
        let first = post(&services, body, Some("k-1"));
        let again = post(&services, body, Some("k-1"));
        assert_eq!(again.status(), StatusCode::CREATED);
        assert_eq!(again.header("Idempotency-Replayed"), Some("true"));
        assert_eq!(json(&again), json(&first));
        let other = post(
            &services,
            r#"{"type":"pay","payload":{"cents":999}}"#,
            Some("k-1"),
        );
        assert_answer(&other, WireError::IdempotencyKeyConflict);
        assert_answer(
            &post(&services, body, Some("has space")),
            WireError::BadIdempotencyKey,
        );
    }

    #[test]
    fn invalid_events_are_refused_with_their_codes() {
        let services = services();
        assert_answer(&post(&services, "{not json", None), WireError::InvalidJson);
        assert_answer(
            &post(&services, r#"{"type":"t","paylod":{}}"#, None),
            WireError::InvalidEvent,
        );
        assert_answer(
            &post(&services, r#"{"type":"","payload":{}}"#, None),
            WireError::InvalidEvent,
        );
        assert_answer(
            &post(
                &services,
                r#"{"type":"t","payload":{"a":"x\u0000y"}}"#,
                None,
            ),
            WireError::InvalidEvent,
        );
        assert_answer(
            &post(&services, r#"{"type":"t","payload":[1]}"#, None),
            WireError::InvalidEvent,
        );
    }

    #[test]
    fn a_body_over_the_spool_threshold_is_read_from_its_file() {
        let services = services();
        let big = "x".repeat(4096);
        let response = post(
            &services,
            &format!(r#"{{"type":"big","payload":{{"text":"{big}"}}}}"#),
            None,
        );
        assert_eq!(response.status(), StatusCode::CREATED, "{response:?}");
        assert_eq!(json(&response)["payload"]["text"], big.as_str());
    }

    #[test]
    fn unknown_and_malformed_ids_are_not_found() {
        let services = services();
        assert_answer(&get(&services, "12345"), WireError::NoSuchEvent);
        assert_answer(&get(&services, "abc"), WireError::NoSuchEvent);
        assert_answer(&get(&services, "-1"), WireError::NoSuchEvent);
    }

    #[test]
    fn pages_come_in_id_order_and_say_where_the_next_starts() {
        let services = services();
        for index in 0..5 {
            let body = format!(r#"{{"type":"n","payload":{{"i":{index}}}}}"#);
            assert_eq!(post(&services, &body, None).status(), StatusCode::CREATED);
        }
        let page = json(&list_page(&services, "limit=2"));
        let ids: Vec<i64> = page["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|event| event["id"].as_i64().expect("an id"))
            .collect();
        assert_eq!(ids.len(), 2);
        assert!(ids[0] < ids[1], "{ids:?}");
        assert_eq!(page["next_after"], ids[1]);
        let rest = json(&list_page(&services, &format!("after={}&limit=10", ids[1])));
        assert_eq!(rest["events"].as_array().expect("events").len(), 3);
        assert_eq!(rest["next_after"], Value::Null);
        assert_answer(&list_page(&services, "limit=0"), WireError::BadLimit);
        assert_answer(&list_page(&services, "after=x"), WireError::BadAfter);
    }
}
