//! Monitors, links and children: what actors register on each other, and
//! the guarantee that all of it is released when either side exits.
//!
//! Each relation has an entry on both sides, in each cell's watch table
//! (under its mailbox lock):
//!
//! | relation | on the watched/other side | on the watcher/this side |
//! | --- | --- | --- |
//! | monitor | `MonitoredBy(deliver)` keyed by the reference | `Monitoring(target)` keyed by the reference |
//! | link | `Link(this)` keyed by this id | `Link(other)` keyed by the other's id |
//! | child | `Child(child)` in the parent's table | `Parent(parent)` in the child's table |
//!
//! Whichever side exits first removes its entry from the other side (a
//! dying watcher removes its monitors from their targets; a firing monitor
//! removes the watcher's note; a dying child leaves its parent's table), so
//! a long-lived actor watched by millions of short-lived ones over a
//! server's life holds only the live ones. Two locks are never held at once.

use std::sync::Weak;

use super::mailbox::{Deliver, Watch, WatchKey};
use super::{AnyCell, Cell, Signal};
use crate::actor::Actor;
use crate::exit::{ActorId, ExitReason, ExitSignal};

impl<A: Actor> Cell<A> {
    /// The exit reason of an exited actor (under its mailbox lock).
    fn exit_reason(rare: Option<&super::mailbox::Rare>) -> ExitReason {
        rare.and_then(|r| r.exit.clone())
            .unwrap_or(ExitReason::Normal)
    }

    pub(crate) fn watch_add_monitor(
        &self,
        reference: u64,
        deliver: Deliver,
    ) -> Result<(), (Deliver, ExitReason)> {
        let mut mb = self.mailbox.lock();
        if self.state.is_closed() {
            return Err((deliver, Self::exit_reason(mb.rare.as_deref())));
        }
        mb.rare().watch.insert(
            WatchKey::monitored_by(reference),
            Watch::MonitoredBy(deliver),
        );
        Ok(())
    }

    pub(crate) fn watch_remove_monitor(&self, reference: u64) -> Option<Deliver> {
        match self
            .mailbox
            .lock()
            .unwatch(WatchKey::monitored_by(reference))
        {
            Some(Watch::MonitoredBy(deliver)) => Some(deliver),
            _ => None,
        }
    }

    pub(crate) fn watch_note_monitoring(&self, reference: u64, target: Weak<dyn AnyCell>) {
        let mut mb = self.mailbox.lock();
        if !self.state.is_closed() {
            mb.rare()
                .watch
                .insert(WatchKey::monitoring(reference), Watch::Monitoring(target));
        }
    }

    pub(crate) fn watch_forget_monitoring(&self, reference: u64) -> Option<Weak<dyn AnyCell>> {
        match self.mailbox.lock().unwatch(WatchKey::monitoring(reference)) {
            Some(Watch::Monitoring(target)) => Some(target),
            _ => None,
        }
    }

    pub(crate) fn watch_add_link(
        &self,
        other: ActorId,
        cell: Weak<dyn AnyCell>,
    ) -> Result<(), ExitReason> {
        let mut mb = self.mailbox.lock();
        if self.state.is_closed() {
            return Err(Self::exit_reason(mb.rare.as_deref()));
        }
        mb.rare()
            .watch
            .insert(WatchKey::link(other.0), Watch::Link(cell));
        Ok(())
    }

    pub(crate) fn watch_remove_link(&self, other: ActorId) -> bool {
        self.mailbox
            .lock()
            .unwatch(WatchKey::link(other.0))
            .is_some()
    }

    /// A linked actor exited: drop the link and, if it was still there,
    /// deliver the exit signal (both under the lock, so an `unlink` that
    /// removed the entry first also prevents the signal).
    pub(crate) fn watch_link_exit(&self, from: ActorId, reason: ExitReason) -> bool {
        let mut mb = self.mailbox.lock();
        if self.state.is_closed() || mb.unwatch(WatchKey::link(from.0)).is_none() {
            return false;
        }
        mb.rare()
            .signals
            .push(Signal::LinkExit(ExitSignal { from, reason }));
        self.state.set_signal();
        true
    }

    pub(crate) fn watch_add_child(&self, child: ActorId, cell: Weak<dyn AnyCell>) {
        let mut mb = self.mailbox.lock();
        if !self.state.is_closed() {
            mb.rare()
                .watch
                .insert(WatchKey::child(child.0), Watch::Child(cell));
        }
    }

    /// Records this actor's parent (before the actor first runs).
    pub(crate) fn watch_set_parent(&self, parent: ActorId, cell: Weak<dyn AnyCell>) {
        self.mailbox
            .lock()
            .rare()
            .watch
            .insert(WatchKey::parent(parent.0), Watch::Parent(cell));
    }

    pub(crate) fn watch_forget_child(&self, child: ActorId) {
        self.mailbox.lock().unwatch(WatchKey::child(child.0));
    }

    /// How many entries this actor's watch table holds (for tests and
    /// diagnostics).
    pub(crate) fn watch_len(&self) -> usize {
        self.mailbox
            .lock()
            .rare
            .as_ref()
            .map_or(0, |r| r.watch.len())
    }
}
