//! The HTTP/1.1 engine: request heads, body framing, responses and
//! keep-alive rules, on `httparse`, with strict limits.
//!
//! It knows nothing of the application or of shutdown: the server drives a
//! [`Connection`] step by step and decides, per request, whether to keep the
//! connection alive.

mod body;
mod buffer;
mod connection;
mod date;
mod head;
mod limits;
mod request;
mod response;
mod transport;

pub use body::BodyError;
pub use connection::{Buffers, Connection, HeadStatus, KeepAlive};
pub use head::HeadError;
pub use limits::{Limits, MAX_HEADERS_CEILING};
pub use request::Request;
pub use response::{Response, StatusCode};
