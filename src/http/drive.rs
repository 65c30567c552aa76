//! A connection driven from bytes alone, with no client: for the
//! engine's property tests and its fuzz targets, which need to cut a
//! byte stream where they choose.

use std::net::{TcpListener, TcpStream};

use super::connection::{Connection, KeepAlive, ReadStatus};
use super::limits::Limits;
use super::request::RequestError;
use super::response::Response;
use super::status::StatusCode;

/// What the engine made of a byte stream: each request's method, target
/// and body, in order; the error that ended it, if any; and every byte
/// it queued to send (the answers, `ok` to each request), each `Date`
/// value written `-` so that two runs compare equal.
pub(crate) type Served = (
    Vec<(String, String, Vec<u8>)>,
    Option<RequestError>,
    Vec<u8>,
);

thread_local! {
    /// One loopback connection per thread, both ends, opened once: each
    /// driven connection gets a duplicate of the server end, which it never
    /// reads or writes, so runs (thousands a second when fuzzing) open no
    /// connection of their own.
    static SOCKETS: (TcpStream, TcpStream) = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let client =
            TcpStream::connect(listener.local_addr().expect("an address")).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        (client, server)
    };
}

/// Feeds `pieces` of a byte stream to a connection one at a time, as if
/// each arrived from the socket, serving every request that completes
/// (answered `ok` and kept alive) until the stream ends or a request is
/// refused. The connection's socket is a loopback one that is never read
/// or written: the test owns the cuts.
pub(crate) fn serve_in_pieces(pieces: &[&[u8]]) -> Served {
    let server = SOCKETS.with(|(_client, server)| server.try_clone().expect("duplicate a socket"));
    let mut connection = Connection::new(server);
    let limits = Limits::default();
    let mut served = Vec::new();
    let mut error = None;
    'pieces: for piece in pieces {
        connection.push_input(piece);
        loop {
            match connection.read(&limits, false, &mut |_| true) {
                Ok(ReadStatus::Request) => {
                    let request = connection.request();
                    let target = match request.query() {
                        Some(query) => format!("{}?{query}", request.path()),
                        None => request.path().to_owned(),
                    };
                    served.push((request.method().to_owned(), target, request.body().to_vec()));
                    connection.respond(&Response::text(StatusCode::OK, "ok"), KeepAlive::Yes);
                }
                Ok(ReadStatus::NeedInput | ReadStatus::NeedRoom | ReadStatus::Closed) => break,
                Err(refused) => {
                    connection.respond_and_close(&refused.response());
                    error = Some(refused);
                    break 'pieces;
                }
            }
        }
    }
    (served, error, without_dates(connection.queued_output()))
}

/// `stream` cut at the offsets `at` (each at most its length, in any
/// order), in order.
pub(crate) fn cut_at<'a>(stream: &'a [u8], at: &[usize]) -> Vec<&'a [u8]> {
    let mut ends: Vec<usize> = at.iter().map(|&end| end.min(stream.len())).collect();
    ends.sort_unstable();
    let mut pieces = Vec::with_capacity(ends.len() + 1);
    let mut start = 0;
    for end in ends {
        pieces.push(&stream[start..end]);
        start = end;
    }
    pieces.push(&stream[start..]);
    pieces
}

/// `output` with every `Date` field's value replaced by `-`.
fn without_dates(output: &[u8]) -> Vec<u8> {
    const DATE: &[u8] = b"\r\nDate: ";
    let mut kept = Vec::with_capacity(output.len());
    let mut rest = output;
    while let Some(at) = rest.windows(DATE.len()).position(|window| window == DATE) {
        let value = at + DATE.len();
        let end = rest[value..]
            .windows(2)
            .position(|window| window == b"\r\n")
            .map_or(rest.len(), |length| value + length);
        kept.extend_from_slice(&rest[..value]);
        kept.push(b'-');
        rest = &rest[end..];
    }
    kept.extend_from_slice(rest);
    kept
}
