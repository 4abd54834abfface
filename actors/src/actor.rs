//! The `Actor` trait: what a user implements.

use std::error::Error as StdError;

use crate::ctx::Ctx;
use crate::exit::ExitReason;

/// What a handler returns: `Err` stops the actor with
/// `ExitReason::Error`. Any error type converts with `?`.
pub type ActorResult = Result<(), Box<dyn StdError + Send + Sync>>;

/// An actor: private state plus a handler for one message type.
///
/// A weft actor is never run by two threads at once, so its state needs no
/// lock. Its handlers must not block (use `Ctx::spawn_blocking` or a
/// thread-worker actor for blocking work). A handler that returns `Err` or
/// panics stops the actor; the panic never leaves the actor.
///
/// ```
/// use std::time::Duration;
/// use weft_actors::{Actor, ActorResult, Ctx, ReplyTo, Spawn};
/// use weft_runtime::Runtime;
///
/// struct Counter(u64);
/// enum Msg { Add(u64), Get(ReplyTo<u64>) }
///
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
/// let rt = Runtime::builder().workers(1).build().unwrap();
/// let counter = rt.handle().spawn(Counter(0));
/// counter.send(Msg::Add(2)).ok().unwrap();
/// let n = counter.ask_wait(Msg::Get, Duration::from_secs(5)).unwrap();
/// assert_eq!(n, 2);
/// ```
pub trait Actor: Send + Sized + 'static {
    /// The one type of message this actor handles.
    type Msg: Send + 'static;

    /// Runs once, before the first message. `Err` stops the actor.
    /// Messages sent meanwhile wait in the mailbox; `started` may send to
    /// itself.
    fn started(&mut self, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        let _ = ctx;
        Ok(())
    }

    /// Handles one message.
    fn handle(&mut self, msg: Self::Msg, ctx: &mut Ctx<'_, Self>) -> ActorResult;

    /// How much a message sent to this actor weighs against its mailbox's
    /// weight limit ([`SpawnOptions::max_weight`](crate::SpawnOptions::max_weight)):
    /// for a chunk of bytes, its length. The default weighs nothing, so
    /// only the message count ([`SpawnOptions::capacity`](crate::SpawnOptions::capacity))
    /// bounds the mailbox.
    fn weigh(msg: &Self::Msg) -> usize {
        let _ = msg;
        0
    }

    /// Asked when another actor, a supervisor or the runtime's shutdown
    /// requests a stop with `reason` (`Addr::stop_with`, a supervisor's
    /// ordered shutdown, `Handle::shutdown`). Return [`Stopping::Stop`]
    /// (the default) to stop before the next message, or
    /// [`Stopping::Continue`] to keep running and finish first (flush a
    /// socket, hand work back), then stop with `Ctx::stop_with`. This is
    /// Erlang's trapped `shutdown` exit: whoever asked still bounds the
    /// wait (a supervisor kills after its shutdown timeout). `Addr::kill`
    /// is never asked: it stops the actor regardless.
    fn stopping(&mut self, reason: &ExitReason, ctx: &mut Ctx<'_, Self>) -> Stopping {
        let _ = (reason, ctx);
        Stopping::Stop
    }

    /// Runs once when the actor stops, whatever the reason (also after a
    /// panic). The mailbox is already closed.
    fn stopped(&mut self, reason: &ExitReason, ctx: &mut Ctx<'_, Self>) {
        let _ = (reason, ctx);
    }
}

/// The answer of [`Actor::stopping`] to a stop request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopping {
    /// Stop before the next message (the default).
    Stop,
    /// Keep running; the actor stops itself when it is ready.
    Continue,
}
