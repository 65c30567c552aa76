//! Every error answer this service sends, in one table.
//!
//! The module is private; [`WireError`] is re-exported at the crate root,
//! and its docs (the ones rustdoc renders) explain the `DRYAD-` codes and
//! hold the table of them, which a unit test checks against
//! [`WireError::ALL`] and the table in [`WireError::row`], so the docs
//! cannot drift from what is sent.

use std::fmt;

use super::status::StatusCode;

/// An error answer this service sends: its status, stable code and
/// message, from one table.
///
/// `DRYAD` is the prefix of every error code this service sends, as
/// `DRYAD-<AREA>-<NNNN>`, where the area says whose error it is:
///
/// - `HTTP`: the request's framing, refused by the engine before any
///   handler sees it;
/// - `SYS`: the server's own state: overload, memory, shutdown, an
///   internal error;
/// - `APP`: the reference service's validation of a request;
/// - `DB`: the reference service's database.
///
/// The first digit is the status class (4 for a 4xx answer, 5 for a
/// 5xx). Every error answer has the body
///
/// ```json
/// {"error": "<reason phrase>", "message": "<for a human>", "code": "DRYAD-..."}
/// ```
///
/// with `Content-Type: application/json`. The code is what a client
/// matches on: codes are stable (one is never reused for another meaning)
/// and unique. Messages are for people and may change; some answers carry
/// a detailed message (which field is wrong, and why). Numbers are unique
/// across areas too, and a number's first digit is its status class.
///
/// An answer marked "`Retry-After: 1`" carries that header; retrying one
/// marked "no" sends the same refusal again.
///
/// | code | status | variant | meaning | retry? |
/// |------|--------|---------|---------|--------|
/// | `DRYAD-HTTP-4001` | 400 | [`MalformedHead`](WireError::MalformedHead) | the request head is not valid HTTP/1.x | no: fix the request |
/// | `DRYAD-HTTP-4002` | 400 | [`BadContentLength`](WireError::BadContentLength) | `Content-Length` is not a number, or two of them disagree | no: fix the request |
/// | `DRYAD-HTTP-4003` | 400 | [`BadChunk`](WireError::BadChunk) | the chunked body framing is invalid | no: fix the request |
/// | `DRYAD-HTTP-4004` | 400 | [`AmbiguousFraming`](WireError::AmbiguousFraming) | both `Content-Length` and `Transfer-Encoding` were sent | no: fix the request |
/// | `DRYAD-HTTP-4005` | 400 | [`BodyIncomplete`](WireError::BodyIncomplete) | the client ended its side before the end of the body | yes, sending the whole body |
/// | `DRYAD-HTTP-4006` | 400 | [`BadHost`](WireError::BadHost) | `Host` is missing (HTTP/1.1), repeated, or not an authority | no: fix the request |
/// | `DRYAD-HTTP-4007` | 400 | [`BadTransferEncoding`](WireError::BadTransferEncoding) | `Transfer-Encoding` lists no coding, `chunked` twice, or `chunked` not last | no: fix the request |
/// | `DRYAD-HTTP-4080` | 408 | [`HeadTimedOut`](WireError::HeadTimedOut) | the request head did not arrive within `header_timeout` | yes, on a new connection |
/// | `DRYAD-HTTP-4081` | 408 | [`BodyTimedOut`](WireError::BodyTimedOut) | the body arrived slower than `min_body_rate`, or not within `body_timeout` | yes, on a new connection, sending faster |
/// | `DRYAD-HTTP-4131` | 413 | [`BodyTooLarge`](WireError::BodyTooLarge) | the body (declared, or chunked as it arrives) is larger than `max_body_bytes` | no: send a smaller body |
/// | `DRYAD-HTTP-4141` | 414 | [`UriTooLong`](WireError::UriTooLong) | the request target is longer than `max_uri_bytes` | no: shorten the target |
/// | `DRYAD-HTTP-4311` | 431 | [`HeadTooLarge`](WireError::HeadTooLarge) | the request head is larger than `max_head_bytes` | no: send fewer or shorter headers |
/// | `DRYAD-HTTP-4312` | 431 | [`TooManyHeaders`](WireError::TooManyHeaders) | more header fields than `max_headers` | no: send fewer headers |
/// | `DRYAD-HTTP-5011` | 501 | [`UnsupportedTransferEncoding`](WireError::UnsupportedTransferEncoding) | a `Transfer-Encoding` other than `chunked` | no: send `chunked` or `Content-Length` |
/// | `DRYAD-HTTP-5051` | 505 | [`UnsupportedVersion`](WireError::UnsupportedVersion) | an HTTP major version other than 1 | no: use HTTP/1.1 |
/// | `DRYAD-SYS-5000` | 500 | [`Internal`](WireError::Internal) | a bug: the handler panicked, or the answer could not be built | maybe: an idempotent request may succeed again; report it |
/// | `DRYAD-SYS-5001` | 503 | [`Overloaded`](WireError::Overloaded) | every worker queue slot is taken | yes, after `Retry-After: 1` |
/// | `DRYAD-SYS-5002` | 503 | [`TooManyConnections`](WireError::TooManyConnections) | `max_connections` are open and none is idle | yes, after `Retry-After: 1` |
/// | `DRYAD-SYS-5003` | 503 | [`ShutdownDeadline`](WireError::ShutdownDeadline) | the server is stopping and did not get to this request; it was never run | yes, safe: on another instance |
/// | `DRYAD-SYS-5004` | 503 | [`OutOfMemory`](WireError::OutOfMemory) | the body waited a second for room in `max_buffered_bytes` | yes, after `Retry-After: 1` |
/// | `DRYAD-SYS-5005` | 503 | [`NotReadyShuttingDown`](WireError::NotReadyShuttingDown) | `/readyz`: the server is shutting down | no: send traffic elsewhere |
/// | `DRYAD-SYS-5006` | 503 | [`SpoolFailed`](WireError::SpoolFailed) | a large request body could not be written to the spool; nothing was stored | yes, later |
/// | `DRYAD-APP-4011` | 400 | [`BadSleep`](WireError::BadSleep) | `/test/sleep` (test routes only): `ms` is not a whole number | no: fix the request |
/// | `DRYAD-APP-4012` | 400 | [`InvalidJson`](WireError::InvalidJson) | the body is not valid JSON | no: fix the body |
/// | `DRYAD-APP-4013` | 400 | [`BadIdempotencyKey`](WireError::BadIdempotencyKey) | `Idempotency-Key` is not 1 to 255 visible ASCII characters | no: fix the key |
/// | `DRYAD-APP-4014` | 400 | [`BadAfter`](WireError::BadAfter) | `after` is not an event id | no: fix the query |
/// | `DRYAD-APP-4015` | 400 | [`BadLimit`](WireError::BadLimit) | `limit` is not a number from 1 to the largest page | no: fix the query |
/// | `DRYAD-APP-4040` | 404 | [`NoSuchRoute`](WireError::NoSuchRoute) | no route has this path | no |
/// | `DRYAD-APP-4041` | 404 | [`NoSuchEvent`](WireError::NoSuchEvent) | no event has this id | no |
/// | `DRYAD-APP-4050` | 405 | [`MethodNotAllowed`](WireError::MethodNotAllowed) | the route does not take this method; `Allow` lists those it takes | no: use a method from `Allow` |
/// | `DRYAD-APP-4091` | 409 | [`IdempotencyKeyConflict`](WireError::IdempotencyKeyConflict) | this `Idempotency-Key` was used for a different event | no: use a new key for a new event |
/// | `DRYAD-APP-4221` | 422 | [`InvalidEvent`](WireError::InvalidEvent) | the event is valid JSON but not a valid event (the message says why) | no: fix the event |
/// | `DRYAD-DB-5031` | 503 | [`DatabaseUnavailable`](WireError::DatabaseUnavailable) | the database failed or is unreachable; nothing was stored | yes, after `Retry-After: 1`, with the same `Idempotency-Key` |
/// | `DRYAD-DB-5032` | 503 | [`NotReadyDatabase`](WireError::NotReadyDatabase) | `/readyz`: the database is unreachable | yes: probe again |
///
/// The table above is checked against [`WireError::ALL`] by a unit test.
///
/// ```
/// use gremlins_api::{StatusCode, WireError};
///
/// let error = WireError::NoSuchRoute;
/// assert_eq!(error.status(), StatusCode::NOT_FOUND);
/// assert_eq!(error.code(), "DRYAD-APP-4040");
/// assert_eq!(error.response().status(), StatusCode::NOT_FOUND);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WireError {
    /// 400 `DRYAD-HTTP-4001`: the request head is not valid HTTP/1.x; do
    /// not retry it unchanged.
    MalformedHead,
    /// 400 `DRYAD-HTTP-4002`: `Content-Length` is not a number, or two of
    /// them disagree; do not retry it unchanged.
    BadContentLength,
    /// 400 `DRYAD-HTTP-4003`: the chunked framing of the body is invalid;
    /// do not retry it unchanged.
    BadChunk,
    /// 400 `DRYAD-HTTP-4004`: both `Content-Length` and
    /// `Transfer-Encoding` were sent; do not retry it unchanged.
    AmbiguousFraming,
    /// 400 `DRYAD-HTTP-4005`: the client ended its side of the connection
    /// before the end of the body; retry with the whole body.
    BodyIncomplete,
    /// 400 `DRYAD-HTTP-4006`: `Host` is missing (HTTP/1.1), repeated, or
    /// not an authority; do not retry it unchanged.
    BadHost,
    /// 400 `DRYAD-HTTP-4007`: `Transfer-Encoding` lists no coding, lists
    /// `chunked` more than once, or not last (RFC 9112 6.1): the body's
    /// length cannot be known; do not retry it unchanged.
    BadTransferEncoding,
    /// 408 `DRYAD-HTTP-4080`: the request head did not arrive within
    /// `header_timeout`; retry on a new connection.
    HeadTimedOut,
    /// 408 `DRYAD-HTTP-4081`: the body arrived too slowly or not within
    /// `body_timeout`; retry on a new connection, sending faster.
    BodyTimedOut,
    /// 413 `DRYAD-HTTP-4131`: the body, as declared by `Content-Length` or
    /// as it arrives chunked, is larger than `max_body_bytes`; do not retry
    /// it unchanged.
    BodyTooLarge,
    /// 414 `DRYAD-HTTP-4141`: the request target is longer than
    /// `max_uri_bytes`; do not retry it unchanged.
    UriTooLong,
    /// 431 `DRYAD-HTTP-4311`: the request head is larger than
    /// `max_head_bytes`; do not retry it unchanged.
    HeadTooLarge,
    /// 431 `DRYAD-HTTP-4312`: more header fields than `max_headers`; do
    /// not retry it unchanged.
    TooManyHeaders,
    /// 501 `DRYAD-HTTP-5011`: a `Transfer-Encoding` other than `chunked`;
    /// do not retry it unchanged.
    UnsupportedTransferEncoding,
    /// 505 `DRYAD-HTTP-5051`: the request's HTTP major version is not 1
    /// (RFC 9110 15.6.6); do not retry it unchanged.
    UnsupportedVersion,
    /// 500 `DRYAD-SYS-5000`: a bug (the handler panicked, or the answer
    /// could not be built); an idempotent request may be retried.
    Internal,
    /// 503 `DRYAD-SYS-5001`, with `Retry-After: 1`: every worker queue
    /// slot is taken; retry after a second.
    Overloaded,
    /// 503 `DRYAD-SYS-5002`, with `Retry-After: 1`: `max_connections` are
    /// open and none is idle; retry after a second.
    TooManyConnections,
    /// 503 `DRYAD-SYS-5003`: the server is stopping and did not get to
    /// the request, which was never run; safe to retry (on another
    /// instance).
    ShutdownDeadline,
    /// 503 `DRYAD-SYS-5004`, with `Retry-After: 1`: the body waited a
    /// second for room in the memory budget; retry after a second.
    OutOfMemory,
    /// 503 `DRYAD-SYS-5005` from `/readyz`: the server is shutting down;
    /// do not retry, send traffic elsewhere.
    NotReadyShuttingDown,
    /// 503 `DRYAD-SYS-5006`: a large request body could not be written to
    /// the spool, so nothing was stored; retry later.
    SpoolFailed,
    /// 400 `DRYAD-APP-4011` from `/test/sleep`: `ms` is not a whole number
    /// of milliseconds; do not retry it unchanged.
    BadSleep,
    /// 400 `DRYAD-APP-4012`: the body is not valid JSON; do not retry it
    /// unchanged.
    InvalidJson,
    /// 400 `DRYAD-APP-4013`: `Idempotency-Key` is not 1 to 255 visible
    /// ASCII characters; do not retry it unchanged.
    BadIdempotencyKey,
    /// 400 `DRYAD-APP-4014`: `after` is not an event id; do not retry it
    /// unchanged.
    BadAfter,
    /// 400 `DRYAD-APP-4015`: `limit` is out of range; do not retry it
    /// unchanged.
    BadLimit,
    /// 404 `DRYAD-APP-4040`: no route has this path; do not retry.
    NoSuchRoute,
    /// 404 `DRYAD-APP-4041`: no event has this id; do not retry.
    NoSuchEvent,
    /// 405 `DRYAD-APP-4050`: the route does not take this method (the
    /// caller adds `Allow`); retry with a method it lists.
    MethodNotAllowed,
    /// 409 `DRYAD-APP-4091`: the `Idempotency-Key` was used for a
    /// different event; do not retry, use a new key for a new event.
    IdempotencyKeyConflict,
    /// 422 `DRYAD-APP-4221`: valid JSON but not a valid event (a detailed
    /// message says why); do not retry it unchanged.
    InvalidEvent,
    /// 503 `DRYAD-DB-5031`, with `Retry-After: 1`: the database failed, so
    /// nothing was stored; retry after a second with the same
    /// `Idempotency-Key`.
    DatabaseUnavailable,
    /// 503 `DRYAD-DB-5032` from `/readyz`: the database is unreachable;
    /// probe again.
    NotReadyDatabase,
}

/// One row of the table.
#[derive(Debug, Clone, Copy)]
struct Row {
    status: StatusCode,
    code: &'static str,
    message: &'static str,
    retry_after: bool,
}

impl Row {
    const fn new(status: StatusCode, code: &'static str, message: &'static str) -> Self {
        Self {
            status,
            code,
            message,
            retry_after: false,
        }
    }

    /// The answer carries `Retry-After: 1`.
    const fn retry_after(self) -> Self {
        Self {
            retry_after: true,
            ..self
        }
    }
}

impl WireError {
    /// Every variant, in the order of the table.
    pub const ALL: &'static [Self] = &[
        Self::MalformedHead,
        Self::BadContentLength,
        Self::BadChunk,
        Self::AmbiguousFraming,
        Self::BodyIncomplete,
        Self::BadHost,
        Self::BadTransferEncoding,
        Self::HeadTimedOut,
        Self::BodyTimedOut,
        Self::BodyTooLarge,
        Self::UriTooLong,
        Self::HeadTooLarge,
        Self::TooManyHeaders,
        Self::UnsupportedTransferEncoding,
        Self::UnsupportedVersion,
        Self::Internal,
        Self::Overloaded,
        Self::TooManyConnections,
        Self::ShutdownDeadline,
        Self::OutOfMemory,
        Self::NotReadyShuttingDown,
        Self::SpoolFailed,
        Self::BadSleep,
        Self::InvalidJson,
        Self::BadIdempotencyKey,
        Self::BadAfter,
        Self::BadLimit,
        Self::NoSuchRoute,
        Self::NoSuchEvent,
        Self::MethodNotAllowed,
        Self::IdempotencyKeyConflict,
        Self::InvalidEvent,
        Self::DatabaseUnavailable,
        Self::NotReadyDatabase,
    ];

    /// The table: the one place a status, code and message are written.
    const fn row(self) -> Row {
        use StatusCode as S;
        match self {
            Self::MalformedHead => {
                Row::new(S::BAD_REQUEST, "DRYAD-HTTP-4001", "malformed request head")
            }
            Self::BadContentLength => Row::new(
                S::BAD_REQUEST,
                "DRYAD-HTTP-4002",
                "invalid or conflicting Content-Length",
            ),
            Self::BadChunk => Row::new(
                S::BAD_REQUEST,
                "DRYAD-HTTP-4003",
                "invalid chunked encoding",
            ),
            Self::AmbiguousFraming => Row::new(
                S::BAD_REQUEST,
                "DRYAD-HTTP-4004",
                "both Content-Length and Transfer-Encoding sent",
            ),
            Self::BodyIncomplete => Row::new(
                S::BAD_REQUEST,
                "DRYAD-HTTP-4005",
                "request body ended early",
            ),
            Self::BadHost => Row::new(
                S::BAD_REQUEST,
                "DRYAD-HTTP-4006",
                "exactly one valid Host header is required",
            ),
            Self::BadTransferEncoding => Row::new(
                S::BAD_REQUEST,
                "DRYAD-HTTP-4007",
                "Transfer-Encoding must end with chunked, once",
            ),
            Self::HeadTimedOut => Row::new(
                S::REQUEST_TIMEOUT,
                "DRYAD-HTTP-4080",
                "request head not received in time",
            ),
            Self::BodyTimedOut => Row::new(
                S::REQUEST_TIMEOUT,
                "DRYAD-HTTP-4081",
                "request body timed out",
            ),
            Self::BodyTooLarge => Row::new(
                S::PAYLOAD_TOO_LARGE,
                "DRYAD-HTTP-4131",
                "request body too large",
            ),
            Self::UriTooLong => Row::new(
                S::URI_TOO_LONG,
                "DRYAD-HTTP-4141",
                "request target too long",
            ),
            Self::HeadTooLarge => Row::new(
                S::HEADER_FIELDS_TOO_LARGE,
                "DRYAD-HTTP-4311",
                "request head too large",
            ),
            Self::TooManyHeaders => Row::new(
                S::HEADER_FIELDS_TOO_LARGE,
                "DRYAD-HTTP-4312",
                "too many header fields",
            ),
            Self::UnsupportedTransferEncoding => Row::new(
                S::NOT_IMPLEMENTED,
                "DRYAD-HTTP-5011",
                "only chunked transfer coding is supported",
            ),
            Self::UnsupportedVersion => Row::new(
                S::HTTP_VERSION_NOT_SUPPORTED,
                "DRYAD-HTTP-5051",
                "only HTTP/1.x is supported",
            ),
            Self::Internal => {
                Row::new(S::INTERNAL_SERVER_ERROR, "DRYAD-SYS-5000", "internal error")
            }
            Self::Overloaded => Row::new(
                S::SERVICE_UNAVAILABLE,
                "DRYAD-SYS-5001",
                "server overloaded, retry",
            )
            .retry_after(),
            Self::TooManyConnections => Row::new(
                S::SERVICE_UNAVAILABLE,
                "DRYAD-SYS-5002",
                "too many connections",
            )
            .retry_after(),
            Self::ShutdownDeadline => Row::new(
                S::SERVICE_UNAVAILABLE,
                "DRYAD-SYS-5003",
                "Server is shutting down",
            ),
            Self::OutOfMemory => Row::new(
                S::SERVICE_UNAVAILABLE,
                "DRYAD-SYS-5004",
                "server busy: no memory left for requests, retry",
            )
            .retry_after(),
            Self::NotReadyShuttingDown => {
                Row::new(S::SERVICE_UNAVAILABLE, "DRYAD-SYS-5005", "shutting down")
            }
            Self::SpoolFailed => Row::new(
                S::SERVICE_UNAVAILABLE,
                "DRYAD-SYS-5006",
                "could not buffer the request body",
            ),
            Self::BadSleep => Row::new(
                S::BAD_REQUEST,
                "DRYAD-APP-4011",
                "ms must be a whole number of milliseconds",
            ),
            Self::InvalidJson => {
                Row::new(S::BAD_REQUEST, "DRYAD-APP-4012", "body is not valid JSON")
            }
            Self::BadIdempotencyKey => Row::new(
                S::BAD_REQUEST,
                "DRYAD-APP-4013",
                "Idempotency-Key must be 1 to 255 visible ASCII characters",
            ),
            Self::BadAfter => Row::new(
                S::BAD_REQUEST,
                "DRYAD-APP-4014",
                "`after` must be an event id",
            ),
            Self::BadLimit => Row::new(S::BAD_REQUEST, "DRYAD-APP-4015", "`limit` is out of range"),
            Self::NoSuchRoute => Row::new(S::NOT_FOUND, "DRYAD-APP-4040", "no such route"),
            Self::NoSuchEvent => Row::new(S::NOT_FOUND, "DRYAD-APP-4041", "no such event"),
            Self::MethodNotAllowed => Row::new(
                S::METHOD_NOT_ALLOWED,
                "DRYAD-APP-4050",
                "method not allowed on this route",
            ),
            Self::IdempotencyKeyConflict => Row::new(
                S::CONFLICT,
                "DRYAD-APP-4091",
                "this Idempotency-Key was used for a different event",
            ),
            Self::InvalidEvent => {
                Row::new(S::UNPROCESSABLE_ENTITY, "DRYAD-APP-4221", "invalid event")
            }
            Self::DatabaseUnavailable => Row::new(
                S::SERVICE_UNAVAILABLE,
                "DRYAD-DB-5031",
                "the database is unavailable; retry later (with the same Idempotency-Key)",
            )
            .retry_after(),
            Self::NotReadyDatabase => Row::new(
                S::SERVICE_UNAVAILABLE,
                "DRYAD-DB-5032",
                "the database is unreachable",
            ),
        }
    }

    /// The HTTP status it is answered with.
    pub const fn status(self) -> StatusCode {
        self.row().status
    }

    /// The stable code, `DRYAD-<AREA>-<NNNN>`.
    pub const fn code(self) -> &'static str {
        self.row().code
    }

    /// The message a [`response`](Self::response) carries.
    pub const fn message(self) -> &'static str {
        self.row().message
    }

    /// Whether the answer carries `Retry-After: 1`.
    pub const fn retry_after(self) -> bool {
        self.row().retry_after
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message(), self.code())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use super::*;

    /// `(area, number)` of a well-formed code.
    fn parts(code: &str) -> (&str, &str) {
        let rest = code
            .strip_prefix("DRYAD-")
            .unwrap_or_else(|| panic!("{code} does not start with DRYAD-"));
        let (area, number) = rest
            .split_once('-')
            .unwrap_or_else(|| panic!("{code} has no area"));
        assert!(
            ["HTTP", "SYS", "APP", "DB"].contains(&area),
            "{code}: unknown area"
        );
        assert!(
            number.len() == 4 && number.bytes().all(|byte| byte.is_ascii_digit()),
            "{code}: not four digits"
        );
        (area, number)
    }

    #[test]
    fn codes_are_well_formed_and_sent_with_an_error_status() {
        for error in WireError::ALL {
            let (_, number) = parts(error.code());
            let status = error.status().0;
            assert!(
                (400..600).contains(&status),
                "{error:?}: {status} is not an error status"
            );
            assert_eq!(
                number.as_bytes()[0],
                status.to_string().as_bytes()[0],
                "{error:?}: {} is not in the class of {status}",
                error.code()
            );
            assert!(!error.message().is_empty(), "{error:?}");
            assert!(!error.status().reason().is_empty(), "{error:?}");
        }
    }

    #[test]
    fn codes_are_unique() {
        let mut seen = HashSet::new();
        for error in WireError::ALL {
            assert!(seen.insert(error.code()), "{} twice", error.code());
        }
        let variants: HashSet<_> = WireError::ALL.iter().collect();
        assert_eq!(
            variants.len(),
            WireError::ALL.len(),
            "a variant twice in ALL"
        );
    }

    #[test]
    fn numbers_are_unique_across_areas() {
        let mut areas: HashMap<&str, Vec<&str>> = HashMap::new();
        for error in WireError::ALL {
            let (area, number) = parts(error.code());
            areas.entry(number).or_default().push(area);
        }
        for (number, used_by) in areas {
            assert_eq!(used_by.len(), 1, "{number} is used by {used_by:?}");
        }
    }

    /// The variants as declared in this file's `enum`.
    fn declared_variants() -> Vec<&'static str> {
        let source = include_str!("wire_error.rs");
        let start = source
            .find("pub enum WireError {")
            .expect("the enum is declared");
        let body = &source[start..];
        let body = &body[..body.find("\n}").expect("the enum ends")];
        body.lines()
            .skip(1)
            .map(str::trim)
            .filter(|line| !line.starts_with("///") && !line.is_empty())
            .map(|line| line.strip_suffix(',').expect("a unit variant"))
            .collect()
    }

    #[test]
    fn all_lists_every_variant_in_declaration_order() {
        let listed: Vec<String> = WireError::ALL
            .iter()
            .map(|error| format!("{error:?}"))
            .collect();
        assert_eq!(listed, declared_variants());
    }

    /// The rows of the table in the docs of [`WireError`], as cells.
    fn documented_rows() -> Vec<Vec<&'static str>> {
        include_str!("wire_error.rs")
            .lines()
            .filter(|line| line.starts_with("/// | `DRYAD-"))
            .map(|line| {
                let row = line
                    .strip_prefix("/// | ")
                    .and_then(|row| row.strip_suffix(" |"))
                    .unwrap_or_else(|| panic!("a table row: {line}"));
                row.split(" | ").collect()
            })
            .collect()
    }

    #[test]
    fn the_documented_table_lists_exactly_all() {
        let rows = documented_rows();
        assert_eq!(rows.len(), WireError::ALL.len(), "rows in the docs");
        for (row, error) in rows.iter().zip(WireError::ALL) {
            assert_eq!(row.len(), 5, "{row:?}");
            assert_eq!(row[0], format!("`{}`", error.code()), "{row:?}");
            assert_eq!(row[1], error.status().0.to_string(), "{row:?}");
            assert_eq!(
                row[2],
                format!("[`{error:?}`](WireError::{error:?})"),
                "{row:?}"
            );
            let retry = &row[4];
            assert_eq!(
                retry.contains("Retry-After: 1"),
                error.row().retry_after,
                "{error:?}: the retry column and the table disagree on Retry-After"
            );
            assert!(
                retry.starts_with("yes") || retry.starts_with("no") || retry.starts_with("maybe"),
                "{row:?}"
            );
        }
    }

    #[test]
    fn a_response_carries_the_row() {
        for error in WireError::ALL {
            let response = error.response();
            assert_eq!(response.status(), error.status());
            let body: serde_json::Value =
                serde_json::from_slice(response.body()).expect("a JSON body");
            assert_eq!(body["error"], error.status().reason());
            assert_eq!(body["message"], error.message());
            assert_eq!(body["code"], error.code());
            assert_eq!(response.header("Content-Type"), Some("application/json"));
            assert_eq!(
                response.header("Retry-After").is_some(),
                error.row().retry_after,
                "{error:?}"
            );
        }
    }

    #[test]
    fn a_detailed_message_keeps_status_code_and_retry_after() {
        let response = WireError::DatabaseUnavailable.response_with_message("pool exhausted");
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.header("Retry-After"), Some("1"));
        let body: serde_json::Value = serde_json::from_slice(response.body()).expect("json");
        assert_eq!(body["message"], "pool exhausted");
        assert_eq!(body["code"], "DRYAD-DB-5031");
    }
}
