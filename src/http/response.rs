//! Responses and how they are written on the wire.

use std::borrow::Cow;

use super::date;
use super::status::StatusCode;
use super::wire_error::WireError;

/// A response: status, extra headers and a body held in memory.
///
/// `Content-Length`, `Date`, `Connection` and `Transfer-Encoding` are
/// written by the engine; set here, they are dropped (and logged).
#[derive(Debug, Clone)]
pub struct Response {
    status: StatusCode,
    headers: Vec<(Cow<'static, str>, Cow<'static, str>)>,
    body: Cow<'static, [u8]>,
}

impl Response {
    /// A response with this status and body, and no extra headers.
    pub fn new(status: StatusCode, body: impl Into<Cow<'static, [u8]>>) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// A plain-text body with this status.
    pub fn text(status: StatusCode, body: impl Into<Cow<'static, str>>) -> Self {
        let body = match body.into() {
            Cow::Borrowed(text) => Cow::Borrowed(text.as_bytes()),
            Cow::Owned(text) => Cow::Owned(text.into_bytes()),
        };
        Self::new(status, body).with_header("Content-Type", "text/plain; charset=utf-8")
    }

    /// A JSON body serialised from `value`; if `value` cannot be
    /// serialised (a map with keys that are not strings, a `Serialize`
    /// impl that fails), the error is logged and the answer is
    /// [`WireError::Internal`] instead.
    pub fn json(status: StatusCode, value: &impl serde::Serialize) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => Self::json_body(status, body),
            Err(error) => {
                log::error!("a {} response could not be serialised: {error}", status.0);
                WireError::Internal.response()
            }
        }
    }

    /// The short JSON error every error answer uses:
    /// `{"error": <reason>, "message": ..., "code": ...}`.
    ///
    /// The service's own answers come from [`WireError`],
    /// which holds the status and code of each; this is for an embedder's
    /// own codes.
    pub fn error(status: StatusCode, message: &str, code: &str) -> Self {
        let body =
            serde_json::json!({ "error": status.reason(), "message": message, "code": code });
        // A `Value` always serialises (its keys are strings), so an error
        // answer never depends on `json`'s fallback.
        Self::json_body(status, body.to_string().into_bytes())
    }

    fn json_body(status: StatusCode, body: Vec<u8>) -> Self {
        Self::new(status, body).with_header("Content-Type", "application/json")
    }

    /// Adds a header; a field that may appear only once (`Content-Type`,
    /// `Location`, `Retry-After`, ...: RFC 9110 5.3) replaces the value
    /// set before, such as the `Content-Type` of [`text`](Self::text) or
    /// [`json`](Self::json).
    #[must_use]
    pub fn with_header(
        mut self,
        name: impl Into<Cow<'static, str>>,
        value: impl Into<Cow<'static, str>>,
    ) -> Self {
        let name = name.into();
        if is_singleton_field(&name) {
            self.headers
                .retain(|(set, _)| !set.eq_ignore_ascii_case(&name));
        }
        self.headers.push((name, value.into()));
        self
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The first header with this name (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(candidate, _)| candidate.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_ref())
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Appends the response to `out`, as HTTP/1.1, with the `Connection`
    /// header `connection` says. A `HEAD` response keeps its
    /// `Content-Length` but sends no body.
    pub(crate) fn write_to(
        &self,
        out: &mut Vec<u8>,
        connection: ConnectionHeader,
        head_only: bool,
    ) {
        let mut digits = itoa::Buffer::new();
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(digits.format(self.status.0).as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.status.reason().as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(b"Date: ");
        date::append_now(out);
        out.extend_from_slice(b"\r\n");
        // `with_header` keeps one of each singleton field, so none is sent
        // twice.
        for (name, value) in &self.headers {
            if is_framing_header(name) {
                log::warn!("dropped a response header the engine writes itself: {name:?}");
            } else if is_safe_header_text(name) && is_safe_header_text(value) {
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(b": ");
                out.extend_from_slice(value.as_bytes());
                out.extend_from_slice(b"\r\n");
            } else {
                log::warn!("dropped a response header with a line break in it: {name:?}");
            }
        }
        out.extend_from_slice(b"Content-Length: ");
        out.extend_from_slice(digits.format(self.body.len()).as_bytes());
        out.extend_from_slice(b"\r\n");
        match connection {
            ConnectionHeader::Close => out.extend_from_slice(b"Connection: close\r\n"),
            ConnectionHeader::KeepAlive => out.extend_from_slice(b"Connection: keep-alive\r\n"),
            ConnectionHeader::None => {}
        }
        out.extend_from_slice(b"\r\n");
        if !head_only {
            out.extend_from_slice(&self.body);
        }
    }
}

/// The `Connection` header a response carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnectionHeader {
    /// The server closes the connection after this response.
    Close,
    /// An HTTP/1.0 client asked to keep the connection and it is kept.
    KeepAlive,
    /// HTTP/1.1 persistence, the default: nothing to say.
    None,
}

/// Headers that frame the message or the connection: only the engine may
/// write them, or a client and a proxy could read the stream differently.
/// Fields a response may carry once at most (RFC 9110 5.3: not lists),
/// among those a handler is likely to set.
fn is_singleton_field(name: &str) -> bool {
    [
        "age",
        "content-location",
        "content-range",
        "content-type",
        "etag",
        "expires",
        "last-modified",
        "location",
        "retry-after",
        "server",
    ]
    .iter()
    .any(|singleton| name.eq_ignore_ascii_case(singleton))
}

fn is_framing_header(name: &str) -> bool {
    ["content-length", "transfer-encoding", "connection", "date"]
        .iter()
        .any(|reserved| name.eq_ignore_ascii_case(reserved))
}

/// How an error of the table is answered (beside every other response,
/// so that the table itself needs nothing but [`StatusCode`]).
impl WireError {
    /// The answer: the JSON error body with the table's message, and
    /// `Retry-After: 1` where the table says so.
    pub fn response(self) -> Response {
        self.response_with_message(self.message())
    }

    /// The same answer with a detailed message instead of the table's
    /// (which field is wrong, and why).
    pub fn response_with_message(self, message: &str) -> Response {
        let response = Response::error(self.status(), message, self.code());
        if self.retry_after() {
            response.with_header("Retry-After", "1")
        } else {
            response
        }
    }
}

/// A header name or value a handler built must not split the head.
fn is_safe_header_text(text: &str) -> bool {
    !text.bytes().any(|byte| byte == b'\r' || byte == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_length_date_and_close() {
        let mut out = Vec::new();
        Response::text(StatusCode::OK, "ok").write_to(&mut out, ConnectionHeader::Close, false);
        let text = String::from_utf8(out).expect("ascii");
        assert!(text.starts_with("HTTP/1.1 200 OK\r\nDate: "), "{text}");
        assert!(
            text.contains("\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"),
            "{text}"
        );
    }

    #[test]
    fn error_body_is_short_json() {
        let response = Response::error(StatusCode::NOT_FOUND, "no such page", "SHOP-4040");
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(response.header("Content-Type"), Some("application/json"));
        let value: serde_json::Value = serde_json::from_slice(response.body()).expect("json");
        assert_eq!(value["error"], "Not Found");
        assert_eq!(value["message"], "no such page");
        assert_eq!(value["code"], "SHOP-4040");
    }

    /// A value whose serialisation always fails.
    struct Unserialisable;

    impl serde::Serialize for Unserialisable {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("this value cannot be serialised"))
        }
    }

    #[test]
    fn a_body_that_cannot_be_serialised_is_an_internal_error_not_an_empty_200() {
        let response = Response::json(StatusCode::OK, &Unserialisable);
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(response.header("Content-Type"), Some("application/json"));
        let value: serde_json::Value = serde_json::from_slice(response.body()).expect("json");
        assert_eq!(value["code"], WireError::Internal.code());
        assert_eq!(value["message"], WireError::Internal.message());
    }

    #[test]
    fn framing_headers_from_a_handler_are_dropped() {
        let mut out = Vec::new();
        Response::text(StatusCode::OK, "ok")
            .with_header("Content-Length", "999")
            .with_header("connection", "keep-alive")
            .write_to(&mut out, ConnectionHeader::Close, false);
        let text = String::from_utf8(out).expect("ascii");
        assert_eq!(text.matches("Content-Length").count(), 1, "{text}");
        assert!(!text.contains("keep-alive"), "{text}");
    }

    #[test]
    fn a_singleton_field_set_again_replaces_the_first_and_is_sent_once() {
        let mut out = Vec::new();
        Response::text(StatusCode::OK, "ok")
            .with_header(
                "content-type",
                "application/openmetrics-text; version=1.0.0",
            )
            .with_header("Vary", "Accept")
            .with_header("Vary", "Accept-Encoding")
            .write_to(&mut out, ConnectionHeader::None, false);
        let text = String::from_utf8(out).expect("ascii");
        assert_eq!(
            text.to_ascii_lowercase().matches("content-type:").count(),
            1,
            "{text}"
        );
        assert!(
            text.contains("content-type: application/openmetrics-text"),
            "{text}"
        );
        assert_eq!(
            text.matches("Vary:").count(),
            2,
            "a list field may repeat: {text}"
        );
    }

    #[test]
    fn header_injection_is_dropped() {
        let mut out = Vec::new();
        Response::text(StatusCode::OK, "ok")
            .with_header("X-Evil", "a\r\nSet-Cookie: b")
            .write_to(&mut out, ConnectionHeader::None, false);
        assert!(!String::from_utf8_lossy(&out).contains("Set-Cookie"));
    }
}
