//! The HTTP/1.1 engine: request heads, body framing, responses and
//! keep-alive rules, on `httparse`, with strict limits.
//!
//! It knows nothing of the application, of threads or of shutdown, and it
//! never waits: the server tells a [`Connection`] to read what its socket
//! has ([`Connection::read`], head then the whole body into memory) and to
//! write what it can ([`Connection::write`]), and decides, per request,
//! whether to keep the connection alive.
//!
//! # What it reads, against RFC 9110 and RFC 9112
//!
//! Every part of a request the engine interprets, the rule, what the
//! engine does, and the test that shows it (in `tests/http_conformance.rs`
//! unless named `bad_input::`). Refusals close the connection after the
//! answer; their codes are in [`WireError`].
//!
//! | part | rule | what the engine does | test |
//! |---|---|---|---|
//! | request-line | 9112 3: `method SP target SP HTTP/D.D`, one space each | anything else (a space in the target, a bare word) is 400 `HTTP-4001` | `field_syntax_errors_are_400_and_a_bare_lf_ends_a_line` |
//! | HTTP version | 9110 2.5: a higher minor version of 1 is processed as the highest known; 9110 15.6.6: 505 for a major version not supported | `HTTP/1.2`..`HTTP/1.9` served as HTTP/1.1; another major version 505 `HTTP-5051`; `HTTP/1.10` 400 | `a_higher_minor_version_is_served_as_http11_and_another_major_version_gets_505` |
//! | origin-form target | 9112 3.2.1 | path and query split at the first `?` | `keep_alive_connection_serves_several_requests` |
//! | absolute-form target | 9112 3.2.2: a server MUST accept it, and ignore `Host` for the target's authority | served by its path (none: `/`); [`Request::host`] is the authority; only `http` and `https`; no authority or userinfo: 400 | `an_absolute_form_target_is_served_by_its_path_and_its_authority_replaces_host` |
//! | asterisk-form target | 9112 3.2.4: OPTIONS only | `OPTIONS *` reaches the handler with the path `*`; any other method 400 | `the_asterisk_form_is_for_options_only` |
//! | authority-form target | 9112 3.2.3: CONNECT only | `CONNECT host:port` reaches the handler with the path `/`; with another method 400 | `field_syntax_errors_are_400_and_a_bare_lf_ends_a_line` |
//! | line endings | 9112 2.2: a recipient MAY take a bare LF as a line end; a bare CR MUST be invalid | bare LF ends a line; bare CR 400 | `field_syntax_errors_are_400_and_a_bare_lf_ends_a_line` |
//! | whitespace before the first field | 9112 2.2: reject, or ignore the line | 400 | `field_syntax_errors_are_400_and_a_bare_lf_ends_a_line` |
//! | field name | 9112 5.1: whitespace before the colon MUST be rejected with 400; 9110 5.1 token | 400 | `field_syntax_errors_are_400_and_a_bare_lf_ends_a_line`, `bad_input::malformed_heads_get_a_clear_4xx_or_501` |
//! | obs-fold | 9112 5.2: in a request, reject with 400 or replace with SP | 400 | `field_syntax_errors_are_400_and_a_bare_lf_ends_a_line` |
//! | NUL, CR, LF, other control bytes in a value | 9110 5.5: MUST reject or replace CR, LF, NUL | 400 | `field_syntax_errors_are_400_and_a_bare_lf_ends_a_line` |
//! | `Host` | 9112 3.2: exactly one in HTTP/1.1, a valid authority, else 400 | one required (HTTP/1.1), at most one (HTTP/1.0); no white space, `/ ? # @ , \` or control bytes | `http11_request_without_exactly_one_host_is_rejected_with_400` |
//! | `Content-Length` | 9110 8.6, 9112 6.3: digits only; differing values are an error; a list of equal values may be taken as one | digits only, no sign or space inside; equal repeats (as lines or a list) are one; differing: 400 `HTTP-4002`; above `max_body_bytes`: 413 before reading | `bad_input::conflicting_content_lengths_are_rejected_with_400`, `bad_input::huge_content_length_is_refused_with_413_without_reading_the_body` |
//! | `Transfer-Encoding` | 9112 6.1: chunked once, last; unknown coding 501; 9112 6.3: chunked not last is 400 | the codings of every line in order, empty elements ignored; `chunked` alone: chunked; twice, not last, or no coding: 400 `HTTP-4007`; another coding before it: 501 `HTTP-5011`; in HTTP/1.0: 501 | `chunked_twice_or_not_last_is_400_and_an_unknown_coding_before_it_is_501`, `empty_list_elements_are_ignored_in_every_list_field_the_engine_reads` |
//! | `Transfer-Encoding` with `Content-Length` | 9112 6.1: a server MAY reject, and MUST close after | 400 `HTTP-4004` and close | `bad_input::both_content_length_and_transfer_encoding_are_rejected_with_400` |
//! | chunk size and extensions | 9112 7.1: hex size, `;ext` ignored | hex digits only, at most 1 KiB a line, extensions skipped; anything else 400 `HTTP-4003` | `chunked_request_body_is_decoded_with_extensions_and_trailers`, `bad_input::bad_chunked_framing_is_rejected_with_400`, `bad_input::chunk_lines_longer_than_1_kib_are_rejected_with_400` |
//! | trailers | 9112 7.1.2: MAY be discarded | read (at most 8 KiB) and discarded | `chunked_request_body_is_decoded_with_extensions_and_trailers` |
//! | `Connection` | 9110 7.6.1 list; 9112 9.3: `close`, and HTTP/1.0 `keep-alive` | list elements, empty ones ignored; `close` closes after the answer; HTTP/1.0 is kept alive only with `keep-alive` | `empty_list_elements_are_ignored_in_every_list_field_the_engine_reads`, `http10_request_with_keep_alive_keeps_the_connection_open` |
//! | `Expect` | 9110 10.1.1: `100-continue` | a list element `100-continue` on an HTTP/1.1 request with a body gets `100 Continue` once the head passed its checks and the body has room; other expectations are ignored | `expect_continue_is_answered_by_the_engine_before_the_handler_runs`, `empty_list_elements_are_ignored_in_every_list_field_the_engine_reads` |
//! | `HEAD` | 9110 9.3.2: the same fields as GET, no content | every answer to a parsed HEAD, errors included, has its `Content-Length` and no body | `head_response_has_content_length_but_no_body`, `error_answers_to_head_carry_no_body` |
//! | singleton response fields | 9110 5.3: not sent twice | `Response::with_header` replaces a singleton field (`Content-Type`, `Location`, `Retry-After`, ...) set before | `metrics_answer_with_one_content_type_the_openmetrics_one` |

mod body;
mod buffer;
mod connection;
mod date;
#[cfg(any(test, feature = "internals"))]
pub(crate) mod drive;
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

/// [`crate::fuzzing::parse_head`].
#[cfg(feature = "internals")]
pub(crate) fn parse_head_for_fuzzing(bytes: &[u8]) -> Result<Option<usize>, HeadError> {
    match head::parse(bytes, &Limits::default(), &mut head::Head::default())? {
        head::Parsed::Complete(length) => Ok(Some(length)),
        head::Parsed::Partial => Ok(None),
    }
}

/// [`crate::fuzzing::decode_chunked`].
#[cfg(feature = "internals")]
pub(crate) fn decode_chunked_for_fuzzing(
    wire: &[u8],
    cuts: &[usize],
) -> Result<Option<(Vec<u8>, usize)>, BodyError> {
    let limits = Limits::default();
    let mut decoder = body::BodyDecoder::new(head::Framing::Chunked, limits.max_body_bytes);
    let mut input = ReadBuffer::default();
    let mut decoded = Vec::new();
    let mut fed = 0;
    let mut ends: Vec<usize> = cuts.iter().map(|cut| cut % (wire.len() + 1)).collect();
    ends.sort_unstable();
    ends.push(wire.len());
    for end in ends {
        if end < fed {
            continue;
        }
        input.push(&wire[fed..end]);
        fed = end;
        if decoder.advance(&mut input, &mut decoded, limits.max_body_bytes)?
            == body::Decoded::Complete
        {
            return Ok(Some((decoded, input.data().len() + wire.len() - fed)));
        }
    }
    Ok(None)
}
