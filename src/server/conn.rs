//! A connection as the server holds it: the engine's [`Connection`], the
//! counts it takes part in (open connections, requests in flight), its
//! share of the memory budget and the clocks of its minimum data rates;
//! and the non-blocking steps the poller and the workers take with it.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::budget::Reservation;
use crate::http::{Connection, KeepAlive, Limits, ReadStatus, Response, Written};
use crate::lifecycle::{InFlightGuard, Lifecycle};

/// What the worker queue carries.
#[derive(Debug)]
pub(crate) enum Job {
    /// A connection with a whole request in memory, to serve.
    Serve(Box<Conn>),
    /// Exit: one per worker, queued behind every request at shutdown (by
    /// the pollers' `close_queue`).
    Stop,
}

/// Where a connection goes next, as its holder says.
#[derive(Debug)]
pub(crate) enum Next {
    /// Wait for the client: for bytes, or for it to read what is queued.
    Wait,
    /// Wait for room in the memory budget for its body.
    AwaitRoom,
    /// A whole request is in memory: queue it for a worker.
    Serve,
    /// Let the poller carry on with it.
    Poll,
    /// Answer this, close after it.
    Refuse(Response),
    /// Its final response is written: linger until the client closes.
    Linger,
    /// Close it now.
    Close,
}

/// A connection as the server tracks it.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) http: Connection,
    /// The poller whose registry holds it.
    pub(super) poller: usize,
    /// Its slot in that registry.
    pub(super) key: usize,
    /// Unique for the life of the process; tells a reused key's new
    /// connection from the old one's timer records and events.
    pub(super) id: u64,
    /// Counts the connection as open until it is dropped or starts to
    /// linger (its last response is written: it no longer holds the drain).
    pub(super) open: Option<InFlightGuard>,
    /// Accepted on the admin listener: its requests may ask for the drain
    /// and do not count as traffic for it.
    pub(crate) admin: bool,
    /// The request being read or served, from its whole head on.
    request: Option<InFlightGuard>,
    /// Requests whose responses are queued and not all written yet.
    answered: Vec<InFlightGuard>,
    pub(super) reservation: Reservation,
    /// Room the body asked for and did not get.
    pub(super) wants_room: u64,
    /// The body being read or the output being written, for its rate.
    pub(super) transfer: Option<Transfer>,
    /// When the wait for room began (that time is not the client's).
    pub(super) room_wait_started: Option<Instant>,
    /// When lingering must end, once it has started.
    pub(super) linger_until: Option<Instant>,
    /// What the kernel still held of the last response when the idle timer
    /// last ran out: a client still reading it is not idle.
    pub(super) kernel_output_seen: Option<u32>,
    /// The next idle wait is a look again (see `KERNEL_OUTPUT_CHECK`), even
    /// at last call: the client is still taking the last response from the
    /// kernel.
    pub(super) idle_extended: bool,
}

/// Which way a transfer goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Direction {
    /// A request body arriving.
    Body,
    /// Responses leaving.
    Output,
}

/// One body read or one stretch of writing, timed for its minimum rate.
#[derive(Debug, Clone, Copy)]
pub(super) struct Transfer {
    pub(super) direction: Direction,
    started: Instant,
    /// Bytes counted before it started.
    base: u64,
    /// Time the server held it back (waiting for room).
    paused: Duration,
    /// For output whose rate ran out: when the kernel was last looked at,
    /// and what the client had taken by then (see `taking_from_kernel`).
    kernel_look: Option<(Instant, u64)>,
}

/// The least time between two looks at what a client whose writes wait
/// takes from the kernel (see `Conn::taking_from_kernel`).
const KERNEL_LOOK: Duration = Duration::from_secs(5);

/// Minimum rates and totals for bodies and output.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rates {
    /// Body bytes per second at least, after `grace`; 0: no minimum.
    pub(crate) min_body_rate: u64,
    /// Output bytes per second at least, after `grace`; 0: no minimum.
    pub(crate) min_write_rate: u64,
    /// Time before a minimum rate applies.
    pub(crate) grace: Duration,
    /// Time a whole body may take.
    pub(crate) body_timeout: Duration,
    /// Time a stretch of writing may take.
    pub(crate) write_timeout: Duration,
}

/// `start + wait`, or a time so far off it never comes when that does not
/// exist (durations are validated, so this is a guard, not a path).
pub(crate) fn later(start: Instant, wait: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
    start
        .checked_add(wait)
        .or_else(|| start.checked_add(FAR))
        .unwrap_or(start)
}

impl Transfer {
    fn start(direction: Direction, base: u64) -> Self {
        Self {
            direction,
            started: Instant::now(),
            base,
            paused: Duration::ZERO,
            kernel_look: None,
        }
    }

    /// When it fails its rate or its total if no more bytes move: at
    /// `rate` bytes a second the bytes moved so far buy that much time,
    /// never less than `grace`, never more than `total`.
    fn deadline(&self, bytes: u64, rate: u64, grace: Duration, total: Duration) -> Instant {
        let moved = bytes.saturating_sub(self.base);
        let earned = match rate {
            0 => total,
            rate => Duration::from_secs_f64(moved as f64 / rate as f64)
                .max(grace)
                .min(total),
        };
        later(later(self.started, self.paused), earned)
    }
}

impl Conn {
    pub(super) fn new(
        http: Connection,
        poller: usize,
        key: usize,
        id: u64,
        open: Option<InFlightGuard>,
        admin: bool,
        reservation: Reservation,
    ) -> Self {
        Self {
            http,
            poller,
            key,
            id,
            open,
            admin,
            request: None,
            answered: Vec::new(),
            reservation,
            wants_room: 0,
            transfer: None,
            room_wait_started: None,
            linger_until: None,
            kernel_output_seen: None,
            idle_extended: false,
        }
    }

    /// Goes as far as the connection can without waiting: writes what is
    /// queued, then reads the next request (from the socket only when
    /// `read_socket`), and says where it goes next.
    pub(crate) fn advance(
        &mut self,
        limits: &Limits,
        lifecycle: &Lifecycle,
        read_socket: bool,
    ) -> Next {
        loop {
            if let Some(next) = self.write_out(lifecycle) {
                return next;
            }
            let Self {
                http,
                reservation,
                wants_room,
                ..
            } = self;
            let status = http.read(limits, read_socket, &mut |bytes| {
                let granted = reservation.try_grow_body(bytes);
                *wants_room = if granted { 0 } else { bytes };
                granted
            });
            self.track_request(lifecycle);
            return match status {
                // Its response may take memory too: not while there is none.
                Ok(ReadStatus::Request) if !self.reservation.room_for_response() => {
                    self.wants_room = 1;
                    Next::AwaitRoom
                }
                Ok(ReadStatus::Request) => {
                    self.end_transfer(Direction::Body);
                    Next::Serve
                }
                // A `100 Continue` was queued: write it, read on.
                Ok(ReadStatus::NeedInput) if self.http.pending_output() > 0 => continue,
                Ok(ReadStatus::NeedInput) => Next::Wait,
                Ok(ReadStatus::NeedRoom) => Next::AwaitRoom,
                Ok(ReadStatus::Closed) => Next::Close,
                Err(error) => Next::Refuse(error.response()),
            };
        }
    }

    /// Writes what is queued. `None` when all of it is written and the
    /// connection stays open; otherwise where it goes next.
    pub(super) fn write_out(&mut self, lifecycle: &Lifecycle) -> Option<Next> {
        if self.http.pending_output() > 0 {
            match self.http.write() {
                Ok(Written::All) => {
                    let answered = self.answered.len() as u64;
                    lifecycle
                        .counts
                        .responses_written
                        .fetch_add(answered, Ordering::Relaxed);
                    self.answered.clear();
                    self.reservation.set_output(0);
                    self.end_transfer(Direction::Output);
                }
                Ok(Written::Partial) => {
                    self.reservation
                        .set_output(self.http.output_memory() as u64);
                    return Some(Next::Wait);
                }
                Err(_) => return Some(Next::Close),
            }
        }
        self.http.is_closing().then_some(Next::Linger)
    }

    /// Counts a request from its whole head on, and starts its body's
    /// clock.
    fn track_request(&mut self, lifecycle: &Lifecycle) {
        if self.request.is_none() && self.http.has_request() {
            self.request = Some(lifecycle.requests.enter());
            self.kernel_output_seen = None;
            lifecycle
                .counts
                .requests_received
                .fetch_add(1, Ordering::Relaxed);
            if self.http.reading_body() {
                self.transfer = Some(Transfer::start(Direction::Body, 0));
            }
        }
    }

    fn end_transfer(&mut self, direction: Direction) {
        if self
            .transfer
            .is_some_and(|transfer| transfer.direction == direction)
        {
            self.transfer = None;
        }
    }

    /// Queues the response to the request read; returns whether the
    /// connection stays open (see [`Connection::respond`]).
    pub(crate) fn answer(&mut self, response: &Response, keep_alive: KeepAlive) -> bool {
        let open = self.http.respond(response, keep_alive);
        self.answered_one();
        open
    }

    /// Queues a final answer (an error, a refusal) and stops reading.
    pub(super) fn refuse(&mut self, response: &Response) {
        self.http.respond_and_close(response);
        self.answered_one();
    }

    fn answered_one(&mut self) {
        if let Some(request) = self.request.take() {
            self.answered.push(request);
        }
        self.reservation.release_body();
        self.end_transfer(Direction::Body);
    }

    /// Starts the clock of a stretch of writing, unless one runs.
    pub(super) fn start_output_transfer(&mut self) {
        if self.transfer.is_none() {
            self.transfer = Some(Transfer::start(Direction::Output, self.http.bytes_sent()));
        }
    }

    /// Bytes of responses the client has taken: written to the socket and
    /// no longer held by the kernel (acknowledged by the client's kernel).
    fn output_taken(&self) -> u64 {
        let held = self.http.unacknowledged_output().map_or(0, u64::from);
        self.http.bytes_sent().saturating_sub(held)
    }

    /// When a write wait's rate has run out: whether the client is still
    /// taking what the kernel already holds of its responses. A socket with
    /// no room makes no readiness, so a client reading steadily from a
    /// large kernel buffer would otherwise be judged on nothing. The first
    /// look only takes a reference (the client's own kernel buffer fills at
    /// once, whether its reader reads or not); each later one, at least
    /// [`KERNEL_LOOK`] after the last, asks for progress since: the
    /// client's kernel acknowledges in steps of a window update (up to
    /// 64 KiB on loopback), so a rate over so short a time would wrong
    /// a steady reader. As for an idle connection whose last response the
    /// kernel still holds. Within `write_timeout` in all.
    pub(super) fn taking_from_kernel(&mut self, rates: &Rates) -> bool {
        let taken = self.output_taken();
        let Some(transfer) = self
            .transfer
            .as_mut()
            .filter(|transfer| transfer.direction == Direction::Output)
        else {
            return false;
        };
        let now = Instant::now();
        let keeps = transfer
            .kernel_look
            .is_none_or(|(_, before)| taken > before);
        let in_time = transfer.started.elapsed() < rates.write_timeout;
        transfer.kernel_look = (keeps && in_time).then_some((now, taken));
        keeps && in_time
    }

    /// At the end of an idle wait: whether the client is still taking the
    /// last response from the kernel, and took some of it since the last
    /// look (so the connection is kept, and looked at again shortly).
    pub(super) fn still_receiving(&mut self) -> bool {
        let queued = self.http.unacknowledged_output().unwrap_or(0);
        let progressing = queued > 0 && self.kernel_output_seen.is_none_or(|seen| queued < seen);
        self.kernel_output_seen = progressing.then_some(queued);
        self.idle_extended = progressing;
        progressing
    }

    /// Stops charging the body's clock while it waits for room.
    pub(super) fn resume_after_room_wait(&mut self) {
        if let (Some(waited), Some(transfer)) = (self.room_wait_started.take(), &mut self.transfer)
        {
            transfer.paused += waited.elapsed();
        }
    }

    /// Whether this connection's output has been leaving slower than the
    /// minimum write rate for at least `judged_after`, grace or not: the
    /// first to go when memory runs out.
    pub(super) fn writing_too_slowly(&self, rates: &Rates, judged_after: Duration) -> bool {
        let Some(transfer) = self.transfer.filter(|t| t.direction == Direction::Output) else {
            return false;
        };
        let elapsed = transfer.started.elapsed().saturating_sub(transfer.paused);
        let moved = self.http.bytes_sent().saturating_sub(transfer.base);
        elapsed >= judged_after
            && (moved as f64) < rates.min_write_rate as f64 * elapsed.as_secs_f64()
    }

    /// When the current transfer fails its minimum rate or total, if one
    /// runs.
    pub(super) fn transfer_deadline(&self, rates: &Rates) -> Option<Instant> {
        let transfer = self.transfer?;
        Some(match transfer.direction {
            Direction::Body => transfer.deadline(
                self.http.body_received(),
                rates.min_body_rate,
                rates.grace,
                rates.body_timeout,
            ),
            Direction::Output => {
                let deadline = transfer.deadline(
                    self.http.bytes_sent(),
                    rates.min_write_rate,
                    rates.grace,
                    rates.write_timeout,
                );
                match transfer.kernel_look {
                    // The next look at what the client takes from the
                    // kernel, within the total.
                    Some((looked, _)) => deadline
                        .max(later(looked, rates.grace.max(KERNEL_LOOK)))
                        .min(later(transfer.started, rates.write_timeout)),
                    None => deadline,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transfer_earns_time_by_its_rate_after_the_grace() {
        let transfer = Transfer::start(Direction::Body, 0);
        let at =
            |bytes| transfer.deadline(bytes, 100, Duration::from_secs(5), Duration::from_secs(30));
        let start = transfer.started;
        assert_eq!(at(0), start + Duration::from_secs(5), "grace first");
        assert_eq!(
            at(1_000),
            start + Duration::from_secs(10),
            "1000 bytes at 100/s"
        );
        assert_eq!(
            at(1_000_000),
            start + Duration::from_secs(30),
            "never past the total"
        );
        let unlimited = transfer.deadline(0, 0, Duration::from_secs(5), Duration::from_secs(30));
        assert_eq!(
            unlimited,
            start + Duration::from_secs(30),
            "rate 0: the total only"
        );
    }

    #[test]
    fn an_absurd_wait_does_not_overflow() {
        let now = Instant::now();
        assert!(later(now, Duration::MAX) > now);
    }
}
