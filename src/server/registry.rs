//! The connection registry: where every open connection is (its
//! [`State`], one per connection), the one function through which it moves
//! ([`Registry::transition`]), and when each waiting one expires.
//!
//! Acceptor, poller, workers and shutdown never move a connection
//! themselves: they say where it goes next ([`Next`]) and the registry
//! puts it there, with the right timer. A connection waiting on its client
//! (idle, reading, writing, lingering) or on room is parked in its slot; a
//! queued one is in the worker queue, and one being served or driven is
//! held by that thread, its slot saying so.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use mio::unix::SourceFd;
use mio::{Interest, Token};
use slab::Slab;

use super::budget::{Budget, Reservation};
use super::conn::{Conn, Job, Next, Rates, later};
use super::heartbeat::Heartbeat;
use super::log_limit::RateLimitedWarning;
use crate::http::WireError;
use crate::http::{Buffers, Connection, Response};
use crate::lifecycle::{InFlightGuard, Lifecycle};
use crate::sync;

/// Where a connection is, and what it waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Waiting for the first byte of a next request (idle keep-alive).
    Idle,
    /// Part of a head has arrived.
    ReadingHead,
    /// The head has arrived; the body is arriving.
    ReadingBody,
    /// The body waits for room in the memory budget.
    AwaitingRoom,
    /// With the poller, or handed to it to carry on.
    Polling,
    /// A whole request, queued for a worker.
    Queued,
    /// A worker is serving it.
    Handling,
    /// Responses wait for the client to read them.
    Writing,
    /// The final response is written; waiting for the client to close.
    Lingering,
}

impl State {
    /// Whether the connection waits for bytes from the client.
    fn reads(self) -> bool {
        matches!(
            self,
            Self::Idle | Self::ReadingHead | Self::ReadingBody | Self::Lingering
        )
    }
}

#[derive(Debug)]
struct Slot {
    id: u64,
    state: State,
    /// The connection, while it is parked here (waiting, or handed to the
    /// poller); `None` while the queue or a thread holds it.
    conn: Option<Box<Conn>>,
    deadline: Option<Instant>,
    /// The deadline of this connection's live record in the heap, if any.
    /// Records with another deadline are stale and skipped when they come
    /// up; one is added only when a deadline moves earlier than the live
    /// one (a later deadline is re-queued when the live record comes up),
    /// so a connection has a handful of records at most.
    timer_at: Option<Instant>,
    /// Readiness that arrived while the connection was away (edge
    /// triggered: it will not be reported again).
    readable: bool,
    /// The client closed its side, as readiness said while it was away.
    read_closed: bool,
    writable: bool,
}

#[derive(Debug, Default)]
struct Slots {
    slab: Slab<Slot>,
    /// Timer records: (deadline, key, id); see `Slot::timer_at`.
    timers: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    next_id: u64,
    /// Set at shutdown: idle connections must not be kept past it.
    last_call: Option<Instant>,
    /// Connections handed to the poller: (key, id).
    to_poll: Vec<(usize, u64)>,
    /// Connections waiting for room, first come first served: (key, id).
    awaiting_room: VecDeque<(usize, u64)>,
    /// The worker queue; dropped to stop the workers.
    queue: Option<Sender<Job>>,
}

/// What a readiness event says of a socket.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Readiness {
    /// It may be read (bytes, the end, or an error).
    pub(crate) readable: bool,
    /// The client closed its side: a read will return the end.
    pub(crate) read_closed: bool,
    /// It may be written.
    pub(crate) writable: bool,
}

/// The timeouts the registry's timers run on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub(crate) idle: Duration,
    pub(crate) header: Duration,
    pub(crate) rates: Rates,
}

/// How long a connection may linger after its final response.
const LINGER_TIMEOUT: Duration = Duration::from_secs(2);
/// An idle connection whose last response is still leaving the kernel is
/// looked at again after another idle timeout, and kept while the client
/// takes some of it between two looks (a slow download). From the last
/// call on, it is looked at again after this instead, so that the drain
/// waits no longer than needed (the remainder is often a delayed ACK).
const KERNEL_OUTPUT_CHECK: Duration = Duration::from_secs(1);
/// Under memory pressure a writing connection is judged on its rate
/// after this long, without waiting for the grace.
const SHED_AFTER: Duration = Duration::from_secs(1);
/// How long a body may wait for room before it is answered 503.
const ROOM_WAIT: Duration = Duration::from_secs(1);
/// Token of the poller's waker.
pub(crate) const WAKER: Token = Token(usize::MAX);
/// Sets of buffers kept for reuse by connections that start reading; an
/// idle connection gives its own back, so it holds none.
const POOLED_BUFFERS: usize = 64;

/// The registry and the poller its connections are registered with.
#[derive(Debug)]
pub(crate) struct Registry {
    /// Which poller's: its connections carry it.
    index: usize,
    poll_registry: mio::Registry,
    waker: Arc<mio::Waker>,
    slots: Mutex<Slots>,
    /// Set once by the server when the poller thread must stop; read by
    /// the poller after each wake-up.
    stopping: AtomicBool,
    timeouts: Timeouts,
    pub(crate) budget: Arc<Budget>,
    lifecycle: Arc<Lifecycle>,
    overloaded: Mutex<RateLimitedWarning>,
    /// Spare buffers: taken by the poller before it reads, given back by
    /// whoever parks a connection idle or closes it.
    pool: (Sender<Buffers>, Receiver<Buffers>),
    /// The poller's: answered each time its wait returns.
    pub(crate) heartbeat: Heartbeat,
}

/// A parked connection whose time ran out, and what it was waiting for.
#[derive(Debug)]
pub(crate) struct Expired {
    pub(crate) conn: Box<Conn>,
    pub(crate) state: State,
}

impl Registry {
    /// The registry of poller `index`, whose thread drives `poll` (woken
    /// by `waker`); it shares the memory budget and the worker queue with
    /// the other pollers' registries.
    pub(crate) fn new(
        index: usize,
        poll: &mio::Poll,
        waker: Arc<mio::Waker>,
        timeouts: Timeouts,
        budget: Arc<Budget>,
        queue: Sender<Job>,
        lifecycle: Arc<Lifecycle>,
    ) -> std::io::Result<Self> {
        Ok(Self {
            index,
            poll_registry: poll.registry().try_clone()?,
            waker,
            slots: Mutex::new(Slots {
                queue: Some(queue),
                ..Slots::default()
            }),
            stopping: AtomicBool::new(false),
            timeouts,
            budget,
            lifecycle,
            overloaded: Mutex::new(RateLimitedWarning::default()),
            pool: crossbeam_channel::bounded(POOLED_BUFFERS),
            heartbeat: Heartbeat::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        sync::lock(&self.slots)
    }

    fn wake_poller(&self) {
        let _ = self.waker.wake();
    }

    /// Registers a newly accepted connection (readable and writable, edge
    /// triggered, once for its whole life) and sends it `next`.
    pub(crate) fn insert(
        &self,
        http: Connection,
        open: InFlightGuard,
        admin: bool,
        next: Next,
    ) -> std::io::Result<()> {
        let mut slots = self.lock();
        let id = slots.next_id;
        slots.next_id += 1;
        let key = slots.slab.insert(Slot {
            id,
            state: State::Polling,
            conn: None,
            deadline: None,
            timer_at: None,
            readable: false,
            read_closed: false,
            writable: false,
        });
        let fd = http.stream().as_raw_fd();
        if let Err(error) = self.poll_registry.register(
            &mut SourceFd(&fd),
            Token(key),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            slots.slab.remove(key);
            return Err(error);
        }
        drop(slots);
        let conn = Box::new(Conn::new(
            http,
            self.index,
            key,
            id,
            Some(open),
            admin,
            Reservation::new(&self.budget),
        ));
        if let Some(conn) = self.transition(conn, next) {
            self.transition(conn, Next::Poll);
        }
        Ok(())
    }

    /// How many connections are registered (in any state).
    pub(crate) fn registered(&self) -> usize {
        self.lock().slab.len()
    }

    /// Moves a connection where `next` says. Returns it when it must be
    /// driven again at once (readiness arrived while it was away): the
    /// poller carries on with it; another thread sends it `Next::Poll`.
    pub(crate) fn transition(&self, mut conn: Box<Conn>, next: Next) -> Option<Box<Conn>> {
        let mut next = next;
        loop {
            next = match next {
                Next::Refuse(response) => {
                    conn.refuse(&response);
                    conn.write_out(&self.lifecycle).unwrap_or(Next::Linger)
                }
                Next::Linger => {
                    conn.open = None;
                    conn.http.shutdown_write();
                    match conn.http.discard_input() {
                        Ok(false) => return self.park(conn, State::Lingering),
                        Ok(true) | Err(_) => Next::Close,
                    }
                }
                Next::Close => {
                    self.close(conn);
                    return None;
                }
                Next::Serve => match self.queue(conn) {
                    Ok(()) => return None,
                    Err((returned, refusal)) => {
                        conn = returned;
                        Next::Refuse(refusal)
                    }
                },
                Next::Wait => {
                    let state = if conn.http.pending_output() > 0 {
                        conn.start_output_transfer();
                        State::Writing
                    } else if conn.http.reading_body() {
                        State::ReadingBody
                    } else if conn.http.has_buffered_input() {
                        State::ReadingHead
                    } else {
                        State::Idle
                    };
                    return self.park(conn, state);
                }
                Next::AwaitRoom => {
                    conn.room_wait_started = Some(Instant::now());
                    return self.park(conn, State::AwaitingRoom);
                }
                Next::Poll => {
                    let mut slots = self.lock();
                    let Some(slot) = Self::slot_of(&mut slots, &conn) else {
                        drop(slots);
                        self.close(conn);
                        return None;
                    };
                    slot.state = State::Polling;
                    slot.deadline = None;
                    let entry = (conn.key, conn.id);
                    slot.conn = Some(conn);
                    slots.to_poll.push(entry);
                    drop(slots);
                    self.wake_poller();
                    return None;
                }
            };
        }
    }

    fn slot_of<'s>(slots: &'s mut Slots, conn: &Conn) -> Option<&'s mut Slot> {
        slots
            .slab
            .get_mut(conn.key)
            .filter(|slot| slot.id == conn.id)
    }

    /// Queues a connection for a worker; when the queue is full, gives it
    /// back with the 503 it gets instead.
    fn queue(&self, conn: Box<Conn>) -> Result<(), (Box<Conn>, Response)> {
        let mut slots = self.lock();
        let (key, id) = (conn.key, conn.id);
        let Some(queue) = slots.queue.as_ref() else {
            // The workers are stopping: nothing more is queued.
            drop(slots);
            return Err((conn, shutting_down()));
        };
        let refusal = match queue.try_send(Job::Serve(conn)) {
            Ok(()) => {
                if let Some(slot) = slots.slab.get_mut(key).filter(|slot| slot.id == id) {
                    slot.state = State::Queued;
                }
                return Ok(());
            }
            Err(TrySendError::Full(Job::Serve(conn))) => {
                drop(slots);
                self.lifecycle
                    .counts
                    .refused_overloaded
                    .fetch_add(1, Ordering::Relaxed);
                sync::lock(&self.overloaded)
                    .warn(|| "refused a request with 503: every worker queue slot is taken".into());
                (conn, overloaded())
            }
            Err(TrySendError::Disconnected(Job::Serve(conn))) => {
                drop(slots);
                (conn, shutting_down())
            }
            Err(TrySendError::Full(Job::Stop) | TrySendError::Disconnected(Job::Stop)) => {
                unreachable!("BUG: the job sent was a request")
            }
        };
        Err(refusal)
    }

    /// Notes that a worker took a queued connection.
    pub(crate) fn handling(&self, conn: &Conn) {
        if let Some(slot) = Self::slot_of(&mut self.lock(), conn) {
            slot.state = State::Handling;
        }
    }

    /// Gives a connection that holds no buffers some, before it reads.
    pub(crate) fn lend_buffers(&self, conn: &mut Conn) {
        conn.http
            .lend_buffers(|| self.pool.1.try_recv().unwrap_or_default());
    }

    /// Takes back the buffers of a connection that holds nothing in them.
    fn reclaim_buffers(&self, conn: &mut Conn) {
        if let Some(mut buffers) = conn.http.take_buffers() {
            buffers.trim();
            let _ = self.pool.0.try_send(buffers);
        }
    }

    /// Parks a connection in `state` with its timer, unless readiness that
    /// arrived while it was away means it must be driven again now.
    fn park(&self, mut conn: Box<Conn>, state: State) -> Option<Box<Conn>> {
        let mut slots = self.lock();
        let last_call = slots.last_call;
        let Some(slot) = Self::slot_of(&mut slots, &conn) else {
            drop(slots);
            self.close(conn);
            return None;
        };
        if slot.readable {
            conn.http.note_readable(slot.read_closed);
        }
        let woken =
            (state.reads() && conn.http.may_read()) || (state == State::Writing && slot.writable);
        slot.readable = false;
        slot.read_closed = false;
        slot.writable = false;
        if woken {
            slot.state = State::Polling;
            return Some(conn);
        }
        if state == State::AwaitingRoom {
            // Closes the window between the failed reservation and this
            // registration: room given back meanwhile woke no one (see
            // `Budget::waiting`), so look again now that it would.
            self.budget.waiting.fetch_add(1, Ordering::SeqCst);
            if self.budget.has_room(conn.wants_room) {
                self.budget.waiting.fetch_sub(1, Ordering::SeqCst);
                slot.state = State::Polling;
                return Some(conn);
            }
        }
        if state == State::Idle {
            self.reclaim_buffers(&mut conn);
        }
        let deadline = self.deadline_for(state, &mut conn, last_call);
        let entry = (conn.key, conn.id);
        slot.state = state;
        slot.deadline = Some(deadline);
        slot.conn = Some(conn);
        let earlier = slot.timer_at.is_none_or(|at| deadline < at);
        if earlier {
            slot.timer_at = Some(deadline);
        }
        let first = slots
            .timers
            .peek()
            .is_none_or(|Reverse((first, ..))| deadline < *first);
        if earlier {
            slots.timers.push(Reverse((deadline, entry.0, entry.1)));
        }
        if state == State::AwaitingRoom {
            slots.awaiting_room.push_back(entry);
        }
        drop(slots);
        if first {
            // The poller may be asleep with a later timeout.
            self.wake_poller();
        }
        None
    }

    fn deadline_for(&self, state: State, conn: &mut Conn, last_call: Option<Instant>) -> Instant {
        let now = Instant::now();
        let rates = &self.timeouts.rates;
        match state {
            State::Idle => {
                if std::mem::take(&mut conn.idle_extended) {
                    let wait = match last_call {
                        Some(_) => KERNEL_OUTPUT_CHECK,
                        None => self.timeouts.idle,
                    };
                    return later(now, wait);
                }
                let idle = later(now, self.timeouts.idle);
                last_call.map_or(idle, |last_call| idle.min(last_call))
            }
            State::ReadingHead => later(
                conn.http.head_started().unwrap_or(now),
                self.timeouts.header,
            ),
            State::ReadingBody | State::Writing => conn.transfer_deadline(rates).unwrap_or(now),
            State::AwaitingRoom => later(conn.room_wait_started.unwrap_or(now), ROOM_WAIT),
            State::Lingering => *conn
                .linger_until
                .get_or_insert_with(|| later(now, LINGER_TIMEOUT)),
            State::Polling | State::Queued | State::Handling => {
                unreachable!("BUG: {state:?} is not a parked state")
            }
        }
    }

    /// Takes the connection a readiness event is for, if what it waits
    /// for is there; otherwise remembers the readiness for it.
    pub(crate) fn ready(&self, key: usize, readiness: Readiness) -> Option<Box<Conn>> {
        let Readiness {
            readable,
            read_closed,
            writable,
        } = readiness;
        let mut slots = self.lock();
        let slot = slots.slab.get_mut(key)?;
        let Some(conn) = slot.conn.as_mut() else {
            slot.readable |= readable;
            slot.read_closed |= read_closed;
            slot.writable |= writable;
            return None;
        };
        if readable {
            conn.http.note_readable(read_closed);
        }
        let wanted = (slot.state.reads() && readable) || (slot.state == State::Writing && writable);
        if !wanted {
            return None;
        }
        slot.state = State::Polling;
        slot.deadline = None;
        slot.conn.take()
    }

    /// Takes the connections handed to the poller.
    #[expect(
        clippy::vec_box,
        reason = "the boxes move on whole (to the queue, a thread)"
    )]
    pub(crate) fn take_to_poll(&self) -> Vec<Box<Conn>> {
        let mut slots = self.lock();
        let entries = std::mem::take(&mut slots.to_poll);
        entries
            .into_iter()
            .filter_map(|(key, id)| {
                let slot = slots.slab.get_mut(key).filter(|slot| slot.id == id)?;
                (slot.state == State::Polling).then(|| slot.conn.take())?
            })
            .collect()
    }

    /// Takes the connections waiting for room, first come first served,
    /// as long as the budget has room for what each asked for.
    #[expect(
        clippy::vec_box,
        reason = "the boxes move on whole (to the queue, a thread)"
    )]
    pub(crate) fn take_room_waiters(&self) -> Vec<Box<Conn>> {
        let mut taken = Vec::new();
        let mut slots = self.lock();
        while let Some(&(key, id)) = slots.awaiting_room.front() {
            let slot = slots
                .slab
                .get_mut(key)
                .filter(|slot| slot.id == id && slot.state == State::AwaitingRoom);
            let Some(slot) = slot else {
                // It left the wait (its time ran out, or it closed).
                slots.awaiting_room.pop_front();
                self.budget.waiting.fetch_sub(1, Ordering::SeqCst);
                continue;
            };
            let fits = slot
                .conn
                .as_ref()
                .is_some_and(|conn| self.budget.has_room(conn.wants_room));
            if !fits {
                break;
            }
            slot.state = State::Polling;
            slot.deadline = None;
            if let Some(mut conn) = slot.conn.take() {
                conn.resume_after_room_wait();
                taken.push(conn);
            }
            slots.awaiting_room.pop_front();
            self.budget.waiting.fetch_sub(1, Ordering::SeqCst);
        }
        taken
    }

    /// When requests wait for room: resets the connections whose output
    /// leaves slower than the minimum write rate (judged without the grace),
    /// so that slow readers, not the requests behind them, pay for the
    /// memory they hold. Returns how many it reset.
    pub(crate) fn shed_slow_writers(&self) -> usize {
        if self.budget.waiting.load(Ordering::SeqCst) == 0 {
            return 0;
        }
        let rates = &self.timeouts.rates;
        let shed: Vec<Box<Conn>> = {
            let mut slots = self.lock();
            slots
                .slab
                .iter_mut()
                .filter(|(_, slot)| slot.state == State::Writing)
                .filter(|(_, slot)| {
                    slot.conn
                        .as_ref()
                        .is_some_and(|conn| conn.writing_too_slowly(rates, SHED_AFTER))
                })
                .filter_map(|(_, slot)| slot.conn.take())
                .collect()
        };
        let count = shed.len();
        for conn in shed {
            self.close(conn);
        }
        count
    }

    /// Removes a connection and closes it; one with output still unwritten
    /// (a reader too slow, or gone) is reset, which frees what the kernel
    /// holds of it at once.
    pub(crate) fn close(&self, mut conn: Box<Conn>) {
        if conn.http.pending_output() > 0 {
            conn.http.reset_on_close();
        }
        self.reclaim_buffers(&mut conn);
        {
            let mut slots = self.lock();
            if Self::slot_of(&mut slots, &conn).is_some() {
                slots.slab.remove(conn.key);
            }
        }
        let fd = conn.http.stream().as_raw_fd();
        let _ = self.poll_registry.deregister(&mut SourceFd(&fd));
    }

    /// When the poller must wake for the next timer, if any.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.lock()
            .timers
            .peek()
            .map(|Reverse((deadline, ..))| *deadline)
    }

    /// Takes every parked connection whose deadline has passed.
    pub(crate) fn expire(&self, now: Instant) -> Vec<Expired> {
        let mut expired = Vec::new();
        let mut slots = self.lock();
        while let Some(Reverse((due, key, id))) = slots.timers.peek().copied() {
            if due > now {
                break;
            }
            slots.timers.pop();
            let Some(slot) = slots
                .slab
                .get_mut(key)
                .filter(|slot| slot.id == id && slot.timer_at == Some(due))
            else {
                continue;
            };
            slot.timer_at = None;
            let Some(deadline) = slot.deadline.filter(|_| slot.conn.is_some()) else {
                continue;
            };
            if deadline > now {
                slot.timer_at = Some(deadline);
                slots.timers.push(Reverse((deadline, key, id)));
                continue;
            }
            let state = slot.state;
            slot.state = State::Polling;
            slot.deadline = None;
            if let Some(conn) = slot.conn.take() {
                expired.push(Expired { conn, state });
            }
        }
        expired
    }

    /// From now on idle connections expire at `until` at the latest,
    /// including those parked already.
    pub(crate) fn begin_last_call(&self, until: Instant) {
        let mut slots = self.lock();
        slots.last_call = Some(until);
        // Deadlines only move earlier here, and queued records carry the
        // old ones: rebuild the heap (once, at shutdown) from the slots.
        let Slots { slab, timers, .. } = &mut *slots;
        timers.clear();
        for (key, slot) in slab.iter_mut() {
            slot.timer_at = None;
            if let Some(deadline) = slot.deadline.as_mut().filter(|_| slot.conn.is_some()) {
                if slot.state == State::Idle {
                    *deadline = (*deadline).min(until);
                }
                slot.timer_at = Some(*deadline);
                timers.push(Reverse((*deadline, key, slot.id)));
            }
        }
        drop(slots);
        self.wake_poller();
    }

    /// Closes the keep-alive connection idle the longest, to make room for
    /// a new one; returns whether there was one.
    /// At a write wait's end: whether the client is still taking what the
    /// kernel holds at the minimum rate (see `Conn::taking_from_kernel`).
    pub(crate) fn taking_from_kernel(&self, conn: &mut Conn) -> bool {
        conn.taking_from_kernel(&self.timeouts.rates)
    }

    /// When the longest-idle keep-alive connection's idle time ends, if
    /// there is one.
    pub(crate) fn longest_idle_until(&self) -> Option<Instant> {
        self.lock()
            .slab
            .iter()
            .filter(|(_, slot)| slot.state == State::Idle && slot.conn.is_some())
            .filter_map(|(_, slot)| slot.deadline)
            .min()
    }

    pub(crate) fn close_longest_idle(&self) -> bool {
        let conn = {
            let mut slots = self.lock();
            let oldest = slots
                .slab
                .iter()
                .filter(|(_, slot)| slot.state == State::Idle && slot.conn.is_some())
                .min_by_key(|(_, slot)| slot.deadline)
                .map(|(key, _)| key);
            oldest.and_then(|key| slots.slab.get_mut(key)?.conn.take())
        };
        match conn {
            Some(conn) => {
                self.close(conn);
                self.lifecycle
                    .counts
                    .reclaimed_idle
                    .fetch_add(1, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    /// Queues nothing more (a request that would be is answered 503):
    /// gives up this poller's end of the worker queue, if it still has it.
    pub(crate) fn close_queue(&self) -> Option<Sender<Job>> {
        self.lock().queue.take()
    }

    /// For the watchdog: whether the poller answered the last heartbeat;
    /// asks the next one and wakes the poller to answer it.
    pub(crate) fn poller_answered_then_ask(&self) -> bool {
        let answered = self.heartbeat.answered_then_ask();
        self.wake_poller();
        answered
    }

    /// Asks the poller thread to stop.
    pub(crate) fn request_stop(&self) {
        self.stopping.store(true, Ordering::Release);
        self.wake_poller();
    }

    pub(crate) fn stop_requested(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Closes every parked connection (at exit).
    pub(crate) fn close_all_parked(&self) {
        let parked: Vec<Box<Conn>> = {
            let mut slots = self.lock();
            slots
                .slab
                .iter_mut()
                .filter_map(|(_, slot)| slot.conn.take())
                .collect()
        };
        for conn in parked {
            self.close(conn);
        }
    }
}

/// The answer to a request when every queue slot is taken.
fn overloaded() -> Response {
    WireError::Overloaded.response()
}

/// The answer to a request that waited a second for room in the memory
/// budget.
pub(crate) fn out_of_room() -> Response {
    WireError::OutOfMemory.response()
}

/// The answer to a request that arrives after the shutdown deadline.
pub(crate) fn shutting_down() -> Response {
    WireError::ShutdownDeadline.response()
}
