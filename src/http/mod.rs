//! The HTTP/1.1 engine: request heads, body framing, responses and
//! keep-alive rules, on `httparse`, with strict limits.
//!
//! It knows nothing of the application, of threads or of shutdown, and it
//! never waits: the server tells a [`Connection`] to read what its socket
//! has ([`Connection::read`], head then the whole body into memory) and to
//! write what it can ([`Connection::write`]), and decides, per request,
//! whether to keep the connection alive.

mod body;
mod buffer;
mod connection;
mod date;
mod head;
mod limits;
mod request;
mod response;
mod status;
mod wire_error;

pub use body::BodyError;
pub(crate) use buffer::ReadBuffer;
pub(crate) use connection::{Buffers, Connection, KeepAlive, ReadStatus, Written};
pub use head::HeadError;
pub(crate) use limits::{Limits, MAX_HEADERS_CEILING};
pub use request::{ParsedRequest, Request, RequestError};
pub use response::Response;
pub use status::StatusCode;
pub use wire_error::WireError;
