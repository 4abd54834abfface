//! Ask and reply: a one-shot slot between an asker and the asked actor.
//!
//! Owns: `ReplyTo<R>` (the asked side) and `Pending<R>` (the asking side).
//! Invariant: a slot completes exactly once: with the reply, with
//! `Dropped` when the `ReplyTo` is dropped unanswered (including when the
//! asked actor stops with the request still queued), or with `Timeout`.
//! Nothing waits forever: `Pending::wait` takes a timeout, and an actor's
//! ask arms a timer.
//! Must not touch: cells (an actor's completion is a boxed callback).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::Thread;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Why an ask ended without a reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AskError {
    /// No reply within the timeout.
    #[error("no reply within the timeout")]
    Timeout,
    /// The reply handle was dropped unanswered (the asked actor stopped,
    /// or forgot to reply).
    #[error("the asked actor dropped the reply handle (it stopped or did not answer)")]
    Dropped,
    /// The asked actor had already stopped.
    #[error("the asked actor has stopped")]
    Stopped,
    /// The asked actor's mailbox was full.
    #[error("the asked actor's mailbox is full")]
    Full,
    /// `wait` was called on a runtime worker thread, which must not block;
    /// ask from an actor with `Ctx::ask` instead.
    #[error("cannot block a runtime worker thread waiting for a reply; use Ctx::ask")]
    WouldBlockWorker,
}

type Callback<R> = Box<dyn FnOnce(Result<R, AskError>) + Send>;

enum State<R> {
    Empty,
    Waiting(Thread),
    Callback(Callback<R>),
    Done(Result<R, AskError>),
    Closed,
}

pub(crate) struct Slot<R> {
    ready: AtomicBool,
    state: Mutex<State<R>>,
}

impl<R> Slot<R> {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Slot {
            ready: AtomicBool::new(false),
            state: Mutex::new(State::Empty),
        })
    }

    /// Completes the slot; later completions are ignored.
    pub(crate) fn complete(&self, result: Result<R, AskError>) {
        let mut st = self.state.lock();
        match std::mem::replace(&mut *st, State::Closed) {
            State::Empty => *st = State::Done(result),
            State::Waiting(thread) => {
                *st = State::Done(result);
                self.ready.store(true, Ordering::Release);
                drop(st);
                thread.unpark();
                return;
            }
            State::Callback(f) => {
                drop(st);
                f(result);
                return;
            }
            done @ State::Done(_) => *st = done,
            State::Closed => {}
        }
        self.ready.store(true, Ordering::Release);
    }

    /// Hands the result to `f` when it comes (at once if it has).
    pub(crate) fn on_complete(&self, f: Callback<R>) {
        let mut st = self.state.lock();
        match std::mem::replace(&mut *st, State::Closed) {
            State::Done(result) => {
                drop(st);
                f(result);
            }
            State::Closed => {}
            _ => *st = State::Callback(f),
        }
    }
}

/// The asked actor's handle for answering one request. Dropping it
/// unanswered ends the ask with [`AskError::Dropped`].
///
/// ```
/// use std::time::Duration;
/// use weft_actors::{Actor, ActorResult, Ctx, ReplyTo, Spawn};
///
/// struct Doubler;
/// impl Actor for Doubler {
///     type Msg = (u32, ReplyTo<u32>);
///     fn handle(&mut self, (n, reply): (u32, ReplyTo<u32>), _ctx: &mut Ctx<'_, Self>) -> ActorResult {
///         reply.send(n * 2); // answer; dropping `reply` instead ends the ask with `Dropped`
///         Ok(())
///     }
/// }
///
/// let rt = weft_runtime::Runtime::builder().build().unwrap();
/// let d = rt.handle().spawn(Doubler);
/// assert_eq!(d.ask_wait(|r| (21, r), Duration::from_secs(5)).unwrap(), 42);
/// ```
pub struct ReplyTo<R> {
    slot: Option<Arc<Slot<R>>>,
}

impl<R> std::fmt::Debug for ReplyTo<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReplyTo")
    }
}

impl<R> ReplyTo<R> {
    pub(crate) fn new(slot: Arc<Slot<R>>) -> Self {
        ReplyTo { slot: Some(slot) }
    }

    /// Sends the reply. If the asker gave up (timeout), it is dropped.
    pub fn send(mut self, value: R) {
        if let Some(slot) = self.slot.take() {
            slot.complete(Ok(value));
        }
    }
}

impl<R> Drop for ReplyTo<R> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            slot.complete(Err(AskError::Dropped));
        }
    }
}

/// The asking side of an ask made from a plain thread.
///
/// ```
/// use std::time::Duration;
/// use weft_actors::{Actor, ActorResult, Ctx, ReplyTo, Spawn};
///
/// struct Echo;
/// impl Actor for Echo {
///     type Msg = (String, ReplyTo<String>);
///     fn handle(&mut self, (s, reply): Self::Msg, _ctx: &mut Ctx<'_, Self>) -> ActorResult {
///         reply.send(s);
///         Ok(())
///     }
/// }
///
/// let rt = weft_runtime::Runtime::builder().build().unwrap();
/// let echo = rt.handle().spawn(Echo);
/// // Ask now, wait later (from a plain thread).
/// let pending = echo.ask(|r| ("hi".to_string(), r)).unwrap();
/// assert_eq!(pending.wait(Duration::from_secs(5)).unwrap(), "hi");
/// ```
#[must_use = "the reply is lost unless the `Pending` is waited on or given to `on_reply`"]
pub struct Pending<R> {
    slot: Arc<Slot<R>>,
    /// The simulation the answer comes from, if any: `wait` runs it.
    sim: Option<weft_runtime::Simulation>,
}

/// A fresh one-shot reply slot: the `ReplyTo` goes to whoever answers
/// (another layer, a thread, an actor), the `Pending` stays with the one
/// who waits (`Pending::wait` on a plain thread, `Ctx::on_reply` in an
/// actor). Dropping the `ReplyTo` unanswered completes it with `Dropped`.
///
/// ```
/// use std::time::Duration;
///
/// let (reply, pending) = weft_actors::reply_slot::<u32>();
/// std::thread::spawn(move || reply.send(7));
/// assert_eq!(pending.wait(Duration::from_secs(5)).unwrap(), 7);
/// ```
pub fn reply_slot<R>() -> (ReplyTo<R>, Pending<R>) {
    let slot = Slot::new();
    (ReplyTo::new(slot.clone()), Pending::new(slot))
}

/// How many times `wait` checks for a reply before parking the thread.
const SPINS: u32 = 200;

impl<R> Pending<R> {
    pub(crate) fn new(slot: Arc<Slot<R>>) -> Self {
        Pending { slot, sim: None }
    }

    /// A pending answer from an actor of `handle`'s runtime: in a
    /// simulation, `wait` runs the simulation until it comes.
    pub(crate) fn of(slot: Arc<Slot<R>>, handle: &weft_runtime::Handle) -> Self {
        Pending {
            slot,
            sim: handle.simulation(),
        }
    }

    /// Blocks this (non-worker) thread until the reply, an error, or
    /// `timeout` (Twisted's `blockingCallFromThread`). Asked of an actor
    /// of a simulation, it runs the simulation on this thread until the
    /// reply comes or `timeout` of virtual time has passed.
    pub fn wait(self, timeout: Duration) -> Result<R, AskError> {
        if weft_runtime::on_worker_thread() {
            return Err(AskError::WouldBlockWorker);
        }
        let timeout = match &self.sim {
            Some(sim) => {
                sim.run_until(timeout, || self.slot.ready.load(Ordering::Acquire));
                Duration::ZERO
            }
            None => timeout,
        };
        for _ in 0..SPINS {
            if self.slot.ready.load(Ordering::Acquire) {
                break;
            }
            std::hint::spin_loop();
        }
        let deadline = Instant::now() + timeout;
        let mut st = self.slot.state.lock();
        loop {
            match std::mem::replace(&mut *st, State::Closed) {
                State::Done(result) => return result,
                State::Empty | State::Waiting(_) => {
                    *st = State::Waiting(std::thread::current());
                }
                State::Callback(_) | State::Closed => return Err(AskError::Dropped),
            }
            let now = Instant::now();
            if now >= deadline {
                *st = State::Closed;
                return Err(AskError::Timeout);
            }
            drop(st);
            std::thread::park_timeout(deadline - now);
            st = self.slot.state.lock();
        }
    }

    pub(crate) fn slot(&self) -> &Arc<Slot<R>> {
        &self.slot
    }

    /// Whether the reply (or an error) has arrived.
    pub fn is_ready(&self) -> bool {
        self.slot.ready.load(Ordering::Acquire)
    }
}

impl<R> std::fmt::Debug for Pending<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pending")
    }
}
