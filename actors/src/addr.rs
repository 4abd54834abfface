//! `Addr<A>`: the address of an actor, usable from any thread.
//!
//! Owns: sending from outside an actor (non-blocking `send`, thread-blocking
//! `send_timeout`), asks from plain threads, stop and kill requests.
//! Must not touch: the actor's state (only the cell's mailbox API).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::actor::Actor;
use crate::ask::{AskError, Pending, ReplyTo, Slot};
use crate::cell::{AnyCell, Cell, Room, Signal, Waiter};
use crate::exit::{ActorId, ExitReason};
use crate::recipient::Recipient;

/// Why a message was not accepted; the message is handed back.
#[derive(thiserror::Error)]
pub enum SendError<M> {
    /// The mailbox is at its capacity. Nothing was queued.
    #[error("the mailbox is full")]
    Full(M),
    /// The actor has stopped. Nothing was queued.
    #[error("the actor has stopped")]
    Stopped(M),
    /// `send_timeout` waited its whole timeout for room.
    #[error("timed out waiting for room in the mailbox")]
    Timeout(M),
}

impl<M> fmt::Debug for SendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SendError::Full(_) => "Full(..)",
            SendError::Stopped(_) => "Stopped(..)",
            SendError::Timeout(_) => "Timeout(..)",
        })
    }
}

impl<M> SendError<M> {
    /// The message that was not accepted.
    pub fn into_inner(self) -> M {
        match self {
            SendError::Full(m) | SendError::Stopped(m) | SendError::Timeout(m) => m,
        }
    }

    /// Whether the actor has stopped (as opposed to being busy).
    pub fn is_stopped(&self) -> bool {
        matches!(self, SendError::Stopped(_))
    }
}

/// The address of an actor of type `A`: `Send + Sync + Clone`, usable from
/// any thread, inside or outside a runtime.
///
/// `send` never blocks: a full mailbox hands the message back
/// (`SendError::Full`), a stopped actor hands it back with
/// `SendError::Stopped`. A plain thread that would rather wait uses
/// `send_timeout`; an actor uses `Ctx::send`, which holds the message and
/// mutes the sending actor until there is room.
///
/// ```
/// use std::time::Duration;
/// use weft_actors::{Actor, ActorResult, Ctx, ReplyTo, Spawn};
///
/// struct Counter(u64);
/// enum Msg {
///     Add(u64),
///     Get(ReplyTo<u64>),
/// }
/// impl Actor for Counter {
///     type Msg = Msg;
///     fn handle(&mut self, msg: Msg, _ctx: &mut Ctx<'_, Self>) -> ActorResult {
///         match msg {
///             Msg::Add(n) => self.0 += n,
///             Msg::Get(reply) => reply.send(self.0),
///         }
///         Ok(())
///     }
/// }
///
/// let rt = weft_runtime::Runtime::builder().build().unwrap();
/// let counter = rt.handle().spawn(Counter(0));
/// counter.send(Msg::Add(2)).unwrap();
/// counter.send(Msg::Add(3)).unwrap();
/// assert_eq!(counter.ask_wait(Msg::Get, Duration::from_secs(5)).unwrap(), 5);
/// ```
pub struct Addr<A: Actor> {
    pub(crate) cell: Arc<Cell<A>>,
}

impl<A: Actor> Clone for Addr<A> {
    fn clone(&self) -> Self {
        Addr {
            cell: self.cell.clone(),
        }
    }
}

impl<A: Actor> fmt::Debug for Addr<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Addr{}", self.cell.actor_id())
    }
}

impl<A: Actor> PartialEq for Addr<A> {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.cell, &other.cell)
    }
}

impl<A: Actor> Eq for Addr<A> {}

impl<A: Actor> Addr<A> {
    /// The actor's id.
    pub fn id(&self) -> ActorId {
        self.cell.actor_id()
    }

    /// Whether the actor has exited.
    pub fn is_stopped(&self) -> bool {
        self.cell.dead()
    }

    /// The mailbox capacity (user messages).
    pub fn capacity(&self) -> usize {
        self.cell.capacity()
    }

    /// User messages queued or being handled right now (a snapshot).
    pub fn queued(&self) -> usize {
        self.cell.queued()
    }

    /// What the user messages waiting in the mailbox weigh (see
    /// [`Actor::weigh`] and [`SpawnOptions::max_weight`](crate::SpawnOptions::max_weight); a snapshot).
    pub fn queued_weight(&self) -> usize {
        self.cell.queued_weight()
    }

    /// Queues `msg` without blocking.
    #[inline]
    pub fn send(&self, msg: A::Msg) -> Result<(), SendError<A::Msg>> {
        self.cell.push_with(msg, |m| m)
    }

    /// Queues `msg`, waiting up to `timeout` for room if the mailbox is
    /// full. On a runtime worker thread it never waits (a worker must not
    /// block): a full mailbox is `SendError::Full` at once.
    pub fn send_timeout(&self, msg: A::Msg, timeout: Duration) -> Result<(), SendError<A::Msg>> {
        // The common case (room) reads no clock.
        let mut msg = match self.send(msg) {
            Err(SendError::Full(m)) => m,
            other => return other,
        };
        if weft_runtime::on_worker_thread() {
            return Err(SendError::Full(msg));
        }
        let deadline = Instant::now() + timeout;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(SendError::Timeout(msg));
            }
            if self
                .cell
                .wait_for_room(Waiter::Thread(std::thread::current()))
            {
                std::thread::park_timeout(deadline - now);
            }
            msg = match self.send(msg) {
                Err(SendError::Full(m)) => m,
                other => return other,
            };
        }
    }

    /// Sends a request built around a fresh reply handle; the reply is
    /// waited for with [`Pending::wait`].
    pub fn ask<R: Send + 'static>(
        &self,
        make: impl FnOnce(ReplyTo<R>) -> A::Msg,
    ) -> Result<Pending<R>, AskError> {
        let slot = Slot::new();
        let reply = ReplyTo::new(slot.clone());
        match self.cell.push_with(reply, make) {
            Ok(()) => Ok(Pending::of(slot, &self.cell.handle)),
            Err(SendError::Stopped(_)) => Err(AskError::Stopped),
            Err(_) => Err(AskError::Full),
        }
    }

    /// Asks and blocks this (non-worker) thread for the reply, at most
    /// `timeout` in all (Twisted's `blockingCallFromThread`). A full
    /// mailbox is waited on within the same timeout.
    pub fn ask_wait<R: Send + 'static>(
        &self,
        make: impl FnOnce(ReplyTo<R>) -> A::Msg,
        timeout: Duration,
    ) -> Result<R, AskError> {
        if weft_runtime::on_worker_thread() {
            return Err(AskError::WouldBlockWorker);
        }
        let slot = Slot::new();
        let mut reply = ReplyTo::new(slot.clone());
        let mut make = make;
        let mut deadline = None;
        loop {
            match self.cell.try_push_with(reply, make, Room::Bounded) {
                Ok(()) => break,
                Err((SendError::Full(r), m)) => (reply, make) = (r, m),
                Err(_) => return Err(AskError::Stopped),
            }
            if let Some(sim) = self.cell.handle.simulation() {
                // Simulated: room comes only by running it.
                if sim.run_ready() == 0 {
                    return Err(AskError::Full);
                }
                continue;
            }
            let deadline = *deadline.get_or_insert_with(|| Instant::now() + timeout);
            let now = Instant::now();
            if now >= deadline {
                return Err(AskError::Full);
            }
            if self
                .cell
                .wait_for_room(Waiter::Thread(std::thread::current()))
            {
                std::thread::park_timeout(deadline - now);
            }
        }
        let left = deadline.map_or(timeout, |d: Instant| {
            d.saturating_duration_since(Instant::now())
        });
        Pending::of(slot, &self.cell.handle).wait(left)
    }

    /// Asks the actor to stop after the messages already queued
    /// (reason `Normal`). False if it had already stopped.
    pub fn stop(&self) -> bool {
        self.cell.push_stop(ExitReason::Normal)
    }

    /// Stops the actor before its next message, dropping what is queued
    /// (reason `Killed`). A handler already running finishes first: weft
    /// never interrupts a handler. False if it had already stopped.
    pub fn kill(&self) -> bool {
        self.cell.clone().signal(Signal::Kill(ExitReason::Killed))
    }

    /// Stops the actor before its next message with `reason`.
    pub fn stop_with(&self, reason: ExitReason) -> bool {
        self.cell.clone().signal(Signal::Kill(reason))
    }

    /// A type-erased address that accepts `A::Msg`.
    pub fn recipient(&self) -> Recipient<A::Msg> {
        Recipient::new(self.cell.clone(), |m| m)
    }

    /// A type-erased address that accepts `M` and converts it.
    pub fn recipient_map<M: Send + 'static>(
        &self,
        f: impl Fn(M) -> A::Msg + Send + Sync + 'static,
    ) -> Recipient<M> {
        Recipient::new(self.cell.clone(), f)
    }

    /// How many relations this actor holds right now: monitors on it and
    /// by it, links, children it spawned with `Ctx::spawn`, and its own
    /// parent if it is such a child. Each is
    /// released when either side exits (Erlang's `process_info` of
    /// `monitored_by`, `monitors` and `links`, as one count): a number that
    /// only grows over a server's life points at a leak.
    pub fn relations(&self) -> usize {
        self.cell.watch_len()
    }
}
