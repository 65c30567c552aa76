//! Responses and how they are written on the wire.

use std::borrow::Cow;
use std::io::Write;

use super::date;
use crate::WireError;

/// An HTTP status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StatusCode(pub u16);

impl StatusCode {
    /// 200 OK.
    pub const OK: Self = Self(200);
    /// 201 Created.
    pub const CREATED: Self = Self(201);
    /// 400 Bad Request.
    pub const BAD_REQUEST: Self = Self(400);
    /// 404 Not Found.
    pub const NOT_FOUND: Self = Self(404);
    /// 405 Method Not Allowed.
    pub const METHOD_NOT_ALLOWED: Self = Self(405);
    /// 408 Request Timeout.
    pub const REQUEST_TIMEOUT: Self = Self(408);
    /// 409 Conflict.
    pub const CONFLICT: Self = Self(409);
    /// 413 Content Too Large.
    pub const PAYLOAD_TOO_LARGE: Self = Self(413);
    /// 414 URI Too Long.
    pub const URI_TOO_LONG: Self = Self(414);
    /// 422 Unprocessable Content.
    pub const UNPROCESSABLE_ENTITY: Self = Self(422);
    /// 431 Request Header Fields Too Large.
    pub const HEADER_FIELDS_TOO_LARGE: Self = Self(431);
    /// 500 Internal Server Error.
    pub const INTERNAL_SERVER_ERROR: Self = Self(500);
    /// 501 Not Implemented.
    pub const NOT_IMPLEMENTED: Self = Self(501);
    /// 503 Service Unavailable.
    pub const SERVICE_UNAVAILABLE: Self = Self(503);

    /// The reason phrase sent on the status line and in error bodies.
    pub fn reason(self) -> &'static str {
        match self.0 {
            100 => "Continue",
            200 => "OK",
            201 => "Created",
            204 => "No Content",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            408 => "Request Timeout",
            409 => "Conflict",
            413 => "Content Too Large",
            414 => "URI Too Long",
            415 => "Unsupported Media Type",
            422 => "Unprocessable Content",
            429 => "Too Many Requests",
            431 => "Request Header Fields Too Large",
            500 => "Internal Server Error",
            501 => "Not Implemented",
            503 => "Service Unavailable",
            _ => "",
        }
    }
}

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
    /// The service's own answers come from [`WireError`](crate::WireError),
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

    /// Adds a header.
    #[must_use]
    pub fn with_header(
        mut self,
        name: impl Into<Cow<'static, str>>,
        value: impl Into<Cow<'static, str>>,
    ) -> Self {
        self.headers.push((name.into(), value.into()));
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
        let reason = self.status.reason();
        // Writing into a Vec cannot fail.
        let _ = write!(out, "HTTP/1.1 {} {reason}\r\n", self.status.0);
        out.extend_from_slice(b"Date: ");
        date::append_now(out);
        out.extend_from_slice(b"\r\n");
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
        let _ = write!(out, "Content-Length: {}\r\n", self.body.len());
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
fn is_framing_header(name: &str) -> bool {
    ["content-length", "transfer-encoding", "connection", "date"]
        .iter()
        .any(|reserved| name.eq_ignore_ascii_case(reserved))
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
    fn header_injection_is_dropped() {
        let mut out = Vec::new();
        Response::text(StatusCode::OK, "ok")
            .with_header("X-Evil", "a\r\nSet-Cookie: b")
            .write_to(&mut out, ConnectionHeader::None, false);
        assert!(!String::from_utf8_lossy(&out).contains("Set-Cookie"));
    }
}
