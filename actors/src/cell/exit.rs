//! The exit sequence: an actor's last act, run once by its runner.
//!
//! Order: close the mailbox (nothing more is accepted) and mark the cell
//! dead; drop what is queued; run `stopped` and drop the actor; deliver
//! the sends a muted actor still holds, the ones `stopped` made included
//! (they were accepted, so they are not dropped); tell the parent that
//! asked how `started` went; cancel intervals; then settle every watch
//! entry (monitors get `Down`, links get the exit signal, the targets this
//! actor monitored forget it, children are stopped, the parent forgets
//! this child); wake blocked senders; leave the runtime's live table.
//!
//! Invariant: every piece of user code or user value touched here (a
//! message's `Drop`, `stopped`, a monitor's map, a held send) runs behind
//! its own panic boundary, so a panic in one of them is logged and the
//! rest of the sequence still runs: the worker thread is never taken down
//! and nothing registered on others is left behind.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use super::mailbox::{Queue, Rare, Room, Watch};
use super::turn::{Inner, Life};
use super::{AnyCell, Cell, Signal, Waiter};
use crate::actor::Actor;
use crate::ctx::Ctx;
use crate::exit::{Down, ExitReason};
use crate::system::System;

impl<A: Actor> Cell<A> {
    /// Runs `f` behind a panic boundary; a panic is logged with `what`.
    fn contain(&self, what: &str, f: impl FnOnce()) {
        if catch_unwind(AssertUnwindSafe(f)).is_err() {
            tracing::error!(actor = %self.id, "{what} panicked; ignored");
        }
    }

    /// Drops queued envelopes one at a time, each behind the boundary (a
    /// second panicking `Drop` during an unwind would abort the process).
    fn discard(&self, mut queue: Queue<A::Msg>) {
        while let Some(envelope) = queue.pop() {
            self.contain("dropping a queued message", || drop(envelope));
        }
    }

    pub(super) fn exit(self: &Arc<Self>, inner: &mut Inner<A>, reason: ExitReason) {
        let (queue, rare) = {
            let mut mb = self.mailbox.lock();
            self.state.close();
            let queue = mb.queue.take_all();
            let rare = mb.rare.take();
            // Kept for monitors that come later; a normal exit needs no
            // record (no `rare` on a closed mailbox means Normal).
            if !matches!(reason, ExitReason::Normal) {
                mb.rare = Some(Box::new(Rare {
                    exit: Some(reason.clone()),
                    ..Rare::default()
                }));
            }
            (queue, rare)
        };
        self.state.mark_dead();
        self.discard(queue);
        self.discard(inner.batch.take_all());
        if let Life::Running(mut actor) | Life::Fresh(mut actor) =
            std::mem::replace(&mut inner.life, Life::Gone)
        {
            let cs = &mut inner.ctx;
            self.contain("`stopped`", || {
                actor.stopped(&reason, &mut Ctx::new(self, cs))
            });
            self.contain("dropping the actor", || drop(actor));
        }
        // After `stopped`, which may send too.
        self.deliver_held(inner);
        if reason.is_abnormal() {
            tracing::warn!(actor = %self.id, %reason, "actor exited");
        } else {
            tracing::debug!(actor = %self.id, %reason, "actor exited");
        }
        self.settle_ctx(inner, &reason);
        if let Some(rare) = rare {
            self.settle_watches(*rare, &reason);
        }
        if let Some(system) = System::of(&self.handle) {
            system.exited(self.id, self.slot);
        }
    }

    /// Delivers a muted actor's held sends, over the receivers' capacity:
    /// `Ctx::send` accepted them, so they are not dropped.
    fn deliver_held(self: &Arc<Self>, inner: &mut Inner<A>) {
        let Some(rare) = inner.ctx.rare.as_mut() else {
            return;
        };
        if rare.outbox.is_empty() {
            return;
        }
        let me: Arc<dyn AnyCell> = self.clone();
        while let Some(mut item) = rare.outbox.pop_front() {
            self.contain("delivering a held message", || {
                item(&me, Room::Forced);
                drop(item);
            });
        }
        self.state.clear_muted();
        self.unmute();
    }

    /// The `Ctx` side: the start notice, intervals.
    fn settle_ctx(&self, inner: &mut Inner<A>, reason: &ExitReason) {
        if let Some(mut ctx_rare) = inner.ctx.rare.take() {
            // `started` failed (or never ran): the parent learns why before
            // any monitor hears of the exit.
            if let Some(notice) = ctx_rare.on_start.take() {
                self.contain("the start notice", || notice(Err(reason.clone())));
            }
            for key in &ctx_rare.intervals {
                self.contain("cancelling an interval", || {
                    self.handle.cancel_timer(*key);
                });
            }
            self.contain("dropping the actor's context", || drop(ctx_rare));
        }
    }

    /// Everything registered on this actor, or by it on others.
    fn settle_watches(&self, rare: Rare, reason: &ExitReason) {
        let Rare {
            waiters,
            signals,
            watch,
            ..
        } = rare;
        drop(signals);
        for (key, entry) in watch.into_entries() {
            match entry {
                Watch::MonitoredBy(deliver) => {
                    let down = Down {
                        id: self.id,
                        reason: reason.clone(),
                    };
                    self.contain("delivering a monitor's Down", || deliver(down));
                }
                Watch::Monitoring(target) => {
                    if let Some(target) = target.upgrade() {
                        let removed = target.remove_monitor(key.id());
                        self.contain("dropping a monitor", || drop(removed));
                    }
                }
                Watch::Link(other) => {
                    if let Some(other) = other.upgrade() {
                        other.link_exit(self.id, reason.clone());
                    }
                }
                Watch::Child(child) => {
                    if let Some(child) = child.upgrade() {
                        child.signal(Signal::Kill(ExitReason::Shutdown));
                    }
                }
                Watch::Parent(parent) => {
                    if let Some(parent) = parent.upgrade() {
                        parent.forget_child(self.id);
                    }
                }
            }
        }
        waiters.into_iter().for_each(Waiter::wake);
    }
}
