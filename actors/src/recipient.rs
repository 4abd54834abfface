//! `Recipient<M>`: an address for one message type, whatever the actor.
//!
//! Owns: type erasure over `Cell<A>` plus a conversion `M -> A::Msg`, so
//! components hand each other addresses without naming actor types.

use std::fmt;
use std::sync::Arc;

use crate::actor::Actor;
use crate::addr::SendError;
use crate::cell::Cell;
use crate::exit::ActorId;

trait Deliver<M>: Send + Sync {
    fn send(&self, msg: M) -> Result<(), SendError<M>>;
    fn id(&self) -> ActorId;
    fn is_stopped(&self) -> bool;
}

struct Mapped<A: Actor, F> {
    cell: Arc<Cell<A>>,
    map: F,
}

impl<A, M, F> Deliver<M> for Mapped<A, F>
where
    A: Actor,
    F: Fn(M) -> A::Msg + Send + Sync,
{
    fn send(&self, msg: M) -> Result<(), SendError<M>> {
        self.cell.push_with(msg, &self.map)
    }
    fn id(&self) -> ActorId {
        self.cell.actor_id()
    }
    fn is_stopped(&self) -> bool {
        self.cell.dead()
    }
}

/// An address that accepts messages of type `M` (made by
/// `Addr::recipient` or `Addr::recipient_map`). `Send + Sync + Clone`.
///
/// ```
/// use weft_actors::{Actor, ActorResult, Ctx, Recipient, Spawn};
/// use weft_runtime::Runtime;
///
/// struct Log;
/// enum LogMsg { Line(String) }
/// impl Actor for Log {
///     type Msg = LogMsg;
///     fn handle(&mut self, _m: LogMsg, _c: &mut Ctx<'_, Self>) -> ActorResult { Ok(()) }
/// }
///
/// let rt = Runtime::builder().workers(1).build().unwrap();
/// let log = rt.handle().spawn(Log);
/// let lines: Recipient<String> = log.recipient_map(LogMsg::Line);
/// lines.send("hello".to_string()).unwrap();
/// ```
pub struct Recipient<M> {
    inner: Arc<dyn Deliver<M>>,
}

impl<M> Clone for Recipient<M> {
    fn clone(&self) -> Self {
        Recipient {
            inner: self.inner.clone(),
        }
    }
}

impl<M> fmt::Debug for Recipient<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Recipient{}", self.inner.id())
    }
}

impl<M: Send + 'static> Recipient<M> {
    pub(crate) fn new<A: Actor>(
        cell: Arc<Cell<A>>,
        map: impl Fn(M) -> A::Msg + Send + Sync + 'static,
    ) -> Self {
        Recipient {
            inner: Arc::new(Mapped { cell, map }),
        }
    }

    /// Queues `msg` without blocking (same rules as `Addr::send`).
    pub fn send(&self, msg: M) -> Result<(), SendError<M>> {
        self.inner.send(msg)
    }

    /// The receiving actor's id.
    pub fn id(&self) -> ActorId {
        self.inner.id()
    }

    /// Whether the receiving actor has exited.
    pub fn is_stopped(&self) -> bool {
        self.inner.is_stopped()
    }
}
