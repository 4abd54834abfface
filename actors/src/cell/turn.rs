//! One turn of an actor: what the runner does while it owns the cell.
//!
//! Owns: the actor's private state (`Inner`: its life, its turn buffer,
//! the `Ctx` state that persists between turns, including the outbox of a
//! muted actor) and the turn itself: run `started` once, handle pending
//! signals, flush held sends, then handle up to `budget` messages.
//!
//! Invariants: only the runner (see `state.rs`'s ownership rule) touches
//! `Inner`; a muted actor (non-empty outbox) handles no message until its
//! outbox is delivered; signals are checked before every message.
//! Must not touch: the mailbox except through the `Cell` methods of
//! `mailbox.rs`.

use std::collections::VecDeque;
use std::sync::Arc;

use weft_runtime::TimerKey;

use super::mailbox::{Envelope, Queue, Room};
use super::{AnyCell, Cell, Signal};
use crate::actor::{Actor, Stopping};
use crate::ctx::Ctx;
use crate::exit::{ExitReason, ExitSignal};

/// A held send in a muted actor's outbox. Called with the sending cell
/// and how to treat the receiver's capacity.
pub(crate) type Outgoing = Box<dyn FnMut(&Arc<dyn AnyCell>, Room) -> Flush + Send>;

/// What became of a held send.
pub(crate) enum Flush {
    Sent,
    /// The receiver is still full; the sender waits for room (muted).
    Full,
    /// The receiver has exited; the message is dropped.
    Dead,
}

/// Receives the outcome of an actor's `started`.
pub(crate) type StartNotice = Box<dyn FnOnce(Result<(), ExitReason>) + Send>;

/// The parts of `Ctx` that persist between turns.
#[repr(C)]
pub(crate) struct CtxState<A: Actor> {
    pub(crate) rare: Option<Box<CtxRare<A>>>,
    pub(crate) stop: Option<Box<ExitReason>>,
}

pub(crate) struct CtxRare<A: Actor> {
    pub(crate) outbox: VecDeque<Outgoing>,
    pub(crate) trap: Option<Box<dyn Fn(ExitSignal) -> A::Msg + Send>>,
    pub(crate) intervals: Vec<TimerKey>,
    /// Told once how `started` went (for a parent that asked).
    pub(crate) on_start: Option<StartNotice>,
    /// The actor holds its start notice until `Ctx::start_complete`.
    pub(crate) start_held: bool,
}

impl<A: Actor> CtxRare<A> {
    fn is_empty(&self) -> bool {
        self.outbox.is_empty()
            && self.trap.is_none()
            && self.intervals.is_empty()
            && self.on_start.is_none()
            && !self.start_held
    }

    pub(crate) fn new() -> Self {
        CtxRare {
            outbox: VecDeque::new(),
            trap: None,
            intervals: Vec::new(),
            on_start: None,
            start_held: false,
        }
    }
}

impl<A: Actor> CtxState<A> {
    pub(crate) fn rare(&mut self) -> &mut CtxRare<A> {
        self.rare.get_or_insert_with(|| Box::new(CtxRare::new()))
    }

    pub(crate) fn muted(&self) -> bool {
        self.rare.as_ref().is_some_and(|r| !r.outbox.is_empty())
    }
}

/// Where an actor is in its life; one tag for "started yet?" and "gone?".
pub(crate) enum Life<A> {
    Fresh(A),
    Running(A),
    Gone,
}

/// Everything only the runner touches.
#[repr(C)]
pub(crate) struct Inner<A: Actor> {
    pub(crate) ctx: CtxState<A>,
    pub(crate) life: Life<A>,
    pub(crate) batch: Queue<A::Msg>,
}

/// How a turn ended.
pub(crate) enum Outcome {
    Idle,
    Yield,
    Exit(ExitReason),
}

impl<A: Actor> Cell<A> {
    /// One turn: `started` if not yet run, then up to `budget` messages.
    pub(crate) fn turn(self: &Arc<Self>, inner: &mut Inner<A>, budget: usize) -> Outcome {
        let Inner {
            life,
            batch,
            ctx: cs,
        } = inner;
        if let Life::Fresh(_) = life {
            if let Err(reason) = self.run_started(life, cs) {
                return Outcome::Exit(reason);
            }
        }
        let Life::Running(actor) = life else {
            return Outcome::Idle;
        };
        if let Err(reason) = self.check_signals(actor, cs) {
            return Outcome::Exit(reason);
        }
        if !self.flush_outbox(cs) {
            self.state.set_muted();
            return Outcome::Idle;
        }
        let mut handled = 0;
        // Messages sent before this turn began are in the mailbox; any sent
        // since then set NOTIFIED, so the mailbox is only locked again when
        // that flag says there is something to take.
        let mut look = true;
        loop {
            if let Err(reason) = self.check_signals(actor, cs) {
                return Outcome::Exit(reason);
            }
            if batch.is_empty() {
                if !look && !self.state.take_notified() {
                    return Outcome::Idle;
                }
                look = false;
                if !self.refill(batch) {
                    continue;
                }
            }
            if handled == budget {
                return Outcome::Yield;
            }
            let Some(envelope) = batch.pop() else {
                continue;
            };
            handled += 1;
            let result = match envelope {
                Envelope::User(msg) | Envelope::Internal(msg) => {
                    actor.handle(msg, &mut Ctx::new(self, cs))
                }
                Envelope::Stop(reason) => {
                    return Outcome::Exit(reason.map_or(ExitReason::Normal, |r| *r))
                }
            };
            if let Err(e) = result {
                return Outcome::Exit(ExitReason::Error(e.into()));
            }
            if let Some(reason) = cs.stop.take() {
                return Outcome::Exit(*reason);
            }
            if cs.muted() {
                self.state.set_muted();
                return Outcome::Idle;
            }
        }
    }

    /// Runs `started` and sends the start notice unless it is held.
    fn run_started(
        self: &Arc<Self>,
        life: &mut Life<A>,
        cs: &mut CtxState<A>,
    ) -> Result<(), ExitReason> {
        let Life::Fresh(actor) = std::mem::replace(life, Life::Gone) else {
            unreachable!("start is only called on a fresh actor")
        };
        *life = Life::Running(actor);
        let Life::Running(actor) = life else {
            unreachable!("just set")
        };
        if let Err(e) = actor.started(&mut Ctx::new(self, cs)) {
            return Err(ExitReason::Error(e.into()));
        }
        if let Some(notice) = cs
            .rare
            .as_mut()
            .filter(|r| !r.start_held)
            .and_then(|r| r.on_start.take())
        {
            notice(Ok(()));
            // The notice was all the rare state held: give it back.
            if cs.rare.as_ref().is_some_and(|r| r.is_empty()) {
                cs.rare = None;
            }
        }
        match cs.stop.take() {
            Some(reason) => Err(*reason),
            None => Ok(()),
        }
    }

    /// Handles pending signals, if any; `Err` with the reason to exit.
    #[inline]
    fn check_signals(
        self: &Arc<Self>,
        actor: &mut A,
        cs: &mut CtxState<A>,
    ) -> Result<(), ExitReason> {
        if !self.state.has_signal() {
            return Ok(());
        }
        self.handle_signals(actor, cs)
    }

    #[cold]
    fn handle_signals(
        self: &Arc<Self>,
        actor: &mut A,
        cs: &mut CtxState<A>,
    ) -> Result<(), ExitReason> {
        for signal in self.take_signals() {
            match signal {
                Signal::Kill(ExitReason::Killed) => return Err(ExitReason::Killed),
                Signal::Kill(reason) => {
                    if actor.stopping(&reason, &mut Ctx::new(self, cs)) == Stopping::Stop {
                        return Err(reason);
                    }
                }
                Signal::LinkExit(exit) => {
                    let trap = cs.rare.as_ref().and_then(|r| r.trap.as_ref());
                    if let Some(trap) = trap {
                        let msg = trap(exit);
                        actor
                            .handle(msg, &mut Ctx::new(self, cs))
                            .map_err(|e| ExitReason::Error(e.into()))?;
                    } else if exit.reason.is_abnormal() {
                        return Err(ExitReason::Linked {
                            from: exit.from,
                            reason: Box::new(exit.reason),
                        });
                    }
                }
            }
        }
        match cs.stop.take() {
            Some(reason) => Err(*reason),
            None => Ok(()),
        }
    }

    /// Tries to deliver what a muted actor holds; true when the outbox is
    /// empty (the actor may handle messages again).
    fn flush_outbox(self: &Arc<Self>, cs: &mut CtxState<A>) -> bool {
        let Some(rare) = cs.rare.as_mut() else {
            return true;
        };
        if rare.outbox.is_empty() {
            return true;
        }
        let me: Arc<dyn AnyCell> = self.clone();
        while let Some(item) = rare.outbox.front_mut() {
            match item(&me, Room::Bounded) {
                Flush::Sent => {}
                Flush::Dead => {
                    tracing::debug!(actor = %self.id, "held message dropped: its receiver stopped");
                }
                Flush::Full => return false,
            }
            rare.outbox.pop_front();
        }
        self.state.clear_muted();
        self.unmute();
        true
    }
}
