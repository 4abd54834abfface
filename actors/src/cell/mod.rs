//! `Cell<A>`: one actor's home. A cell *is* the runtime's `Task`.
//!
//! The cell is split by concept:
//!
//! | file | owns |
//! | --- | --- |
//! | `state.rs` | `State`: the scheduling state machine (one atomic byte, named transitions, the ownership rule) |
//! | `mailbox.rs` | the queue, capacity and the pushes into it; blocked senders; the watch table |
//! | `turn.rs` | the actor's private state (`Inner`) and one turn of its run loop |
//! | `watch.rs` | monitors, links and children, released when either side exits |
//! | `exit.rs` | the exit sequence, every user value behind the panic boundary |
//! | `home.rs` | thread-worker actors (a cell on its own OS thread) |
//!
//! This file holds the cell itself, its type-erased face `AnyCell`, and
//! `Task::run`: take the cell (`to_running`), run a turn behind
//! `catch_unwind`, then go idle, yield, or exit.
//!
//! Must not touch: sockets, supervisors, or the scheduler's internals
//! (scheduling goes through `Handle::schedule`).

mod exit;
mod home;
mod mailbox;
mod state;
mod turn;
mod watch;

use std::cell::UnsafeCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Weak};
use std::thread::Thread;

use parking_lot::Mutex;
use weft_runtime::{Handle, Task};

pub(crate) use home::{run_on_thread, ThreadHome};
pub(crate) use mailbox::{Deliver, Room};
pub(crate) use turn::{CtxRare, CtxState, Flush, Outgoing, StartNotice};

use crate::actor::Actor;
use crate::exit::{ActorId, ExitReason, ExitSignal};
use mailbox::{Mailbox, Queue};
use state::{State, ToIdle};
use turn::{Inner, Life, Outcome};

/// Urgent, out-of-band requests, handled before the next message.
pub(crate) enum Signal {
    Kill(ExitReason),
    LinkExit(ExitSignal),
}

/// A sender blocked on a full mailbox.
pub(crate) enum Waiter {
    Thread(Thread),
    Actor(Arc<dyn AnyCell>),
}

impl Waiter {
    fn wake(self) {
        match self {
            Waiter::Thread(t) => t.unpark(),
            Waiter::Actor(cell) => cell.wake(),
        }
    }
}

/// One actor. See the module doc and `state.rs`.
///
/// Field order is fixed (`repr(C)`) and chosen for the two threads that
/// touch a busy actor per message: a sender writes the mailbox (first),
/// the runner writes its turn buffer and the actor (last, in `Inner`), and
/// the read-mostly fields lie between. Left to the compiler, the order put
/// them so that a busy actor's throughput swung threefold with the
/// allocation's place in memory (a sender thread's counting rate from 9 to
/// 33 M messages/s); in this order it holds steady.
#[repr(C)]
pub(crate) struct Cell<A: Actor> {
    mailbox: Mutex<Mailbox<A::Msg>>,
    state: State,
    /// The most user messages the mailbox has held at once, saturating at
    /// `u16::MAX` (written under the mailbox lock; it sits in the padding
    /// between `state` and `slot`, so it costs the cell no bytes).
    high: AtomicU16,
    /// This cell's slot in the runtime's live-actor table.
    slot: u32,
    id: ActorId,
    pub(crate) handle: Handle,
    inner: UnsafeCell<Inner<A>>,
}

// SAFETY: `inner` is only accessed by the party that owns the cell's state
// (the ownership rule of `state.rs`), so sharing `&Cell` across threads
// never gives two threads access to `inner` at once; everything else is
// atomics or behind a mutex. `A: Send` lets the actor move between worker
// threads.
unsafe impl<A: Actor> Sync for Cell<A> {}

/// The type-erased face of a cell, for links, monitors, waiters, children
/// and the runtime-wide registry.
pub(crate) trait AnyCell: Send + Sync + 'static {
    fn id(&self) -> ActorId;
    /// The actor's type and id, for diagnostics.
    fn describe(&self) -> String;
    fn is_dead(&self) -> bool;
    /// Delivers an urgent signal; false if the actor already exited.
    fn signal(self: Arc<Self>, signal: Signal) -> bool;
    /// Makes the cell run a turn (a muted sender retries its outbox).
    fn wake(self: Arc<Self>);
    /// Queues a graceful stop; false if the actor already exited.
    fn stop_gracefully(self: Arc<Self>, reason: ExitReason) -> bool;
    /// See `Cell::try_mute`.
    fn try_mute(&self, on: ActorId) -> bool;
    /// Registers a monitor on this actor; hands `deliver` back with the
    /// exit reason if it already exited.
    fn add_monitor(&self, reference: u64, deliver: Deliver) -> Result<(), (Deliver, ExitReason)>;
    /// Removes a monitor on this actor (before it fired).
    fn remove_monitor(&self, reference: u64) -> Option<Deliver>;
    /// This actor (the watcher) monitors `target` under `reference`.
    fn note_monitoring(&self, reference: u64, target: Weak<dyn AnyCell>);
    /// The monitor `reference` fired or was removed: drop the note.
    fn forget_monitoring(&self, reference: u64) -> Option<Weak<dyn AnyCell>>;
    /// Adds this actor's side of a link to `other`; the exit reason if
    /// this actor already exited.
    fn add_link(&self, other: ActorId, cell: Weak<dyn AnyCell>) -> Result<(), ExitReason>;
    /// Removes this actor's side of a link to `other`.
    fn remove_link(&self, other: ActorId) -> bool;
    /// A linked actor exited (see `watch.rs`).
    fn link_exit(self: Arc<Self>, from: ActorId, reason: ExitReason);
    /// Records a child spawned by this actor.
    fn add_child(&self, child: ActorId, cell: Weak<dyn AnyCell>);
    /// A child exited: drop it from this actor's table.
    fn forget_child(&self, child: ActorId);
    /// Entries in this actor's watch table.
    fn watch_entries(&self) -> usize;
    /// What the live view shows of this actor (one lock of its mailbox).
    fn info(&self) -> crate::observe::ActorInfo;
}

/// How a cell starts out, besides its actor and identity.
pub(crate) struct Birth {
    pub(crate) capacity: u32,
    /// The mailbox's weight limit (`u32::MAX`: none).
    pub(crate) max_weight: u32,
    /// Set for a thread-worker actor.
    pub(crate) home: Option<Arc<ThreadHome>>,
    /// Told how `started` went.
    pub(crate) on_start: Option<StartNotice>,
}

impl Birth {
    pub(crate) fn new(capacity: u32) -> Self {
        Birth {
            capacity,
            max_weight: u32::MAX,
            home: None,
            on_start: None,
        }
    }
}

impl<A: Actor> Cell<A> {
    pub(crate) fn new(actor: A, handle: Handle, id: ActorId, slot: u32, birth: Birth) -> Arc<Self> {
        let Birth {
            capacity,
            max_weight,
            home,
            on_start,
        } = birth;
        let homed = home.is_some();
        Arc::new(Cell {
            state: State::new(homed),
            high: AtomicU16::new(0),
            slot,
            id,
            handle,
            mailbox: Mutex::new(Mailbox::new(capacity, max_weight, home)),
            inner: UnsafeCell::new(Inner {
                life: Life::Fresh(actor),
                batch: Queue::new(),
                ctx: CtxState {
                    stop: None,
                    rare: on_start.map(|f| {
                        Box::new(CtxRare {
                            on_start: Some(f),
                            ..CtxRare::new()
                        })
                    }),
                },
            }),
        })
    }

    pub(crate) fn actor_id(&self) -> ActorId {
        self.id
    }

    pub(crate) fn slot(&self) -> u32 {
        self.slot
    }

    pub(crate) fn capacity(&self) -> usize {
        self.mailbox.lock().capacity as usize
    }

    pub(crate) fn queued(&self) -> usize {
        self.mailbox.lock().len as usize
    }

    pub(crate) fn queued_weight(&self) -> usize {
        self.mailbox.lock().weight as usize
    }

    pub(crate) fn dead(&self) -> bool {
        self.state.is_dead()
    }

    fn schedule(self: &Arc<Self>) {
        if !self.state.is_homed() {
            return self.handle.schedule(self.clone());
        }
        // A thread-worker actor (rare): its home is in the mailbox's rare
        // part, which keeps every other cell a word smaller.
        let home = self
            .mailbox
            .lock()
            .rare
            .as_ref()
            .and_then(|r| r.home.clone());
        if let Some(home) = home {
            home.notify();
        }
    }

    /// Makes the cell runnable for its first turn (`started`).
    pub(crate) fn start(self: &Arc<Self>) {
        if self.state.notify_after_push() {
            self.schedule();
        }
    }

    /// Gives up the cell; runs again (through the queue) if something
    /// arrived meanwhile.
    fn go_idle(self: &Arc<Self>) {
        if self.state.to_idle() == ToIdle::MustRun {
            self.yield_now();
        }
    }

    fn yield_now(self: &Arc<Self>) {
        self.state.to_yield();
        self.schedule();
    }
}

impl<A: Actor> Task for Cell<A> {
    fn id(&self) -> u64 {
        self.id.0
    }

    fn run(self: Arc<Self>) {
        self.state.to_running();
        // SAFETY: `to_running` made this thread the owner of the cell's
        // state (the ownership rule of `state.rs`) until `go_idle` or
        // `yield_now` gives it up, or forever once `exit` marks it dead.
        let inner = unsafe { &mut *self.inner.get() };
        let budget = self.handle.turn_budget();
        // A span per turn, so that every event of the turn (the handler's
        // own, an exit's) says which actor it came from. At INFO: with no
        // subscriber, or one below INFO, it is one relaxed load and no
        // span (measured: see BENCHMARKS.md).
        let span = tracing::info_span!(
            "actor",
            id = self.id.0,
            actor_type = std::any::type_name::<A>()
        );
        let entered = span.enter();
        let outcome = catch_unwind(AssertUnwindSafe(|| self.turn(inner, budget)))
            .unwrap_or_else(|panic| Outcome::Exit(ExitReason::from_panic(panic)));
        match outcome {
            Outcome::Idle => {
                drop(entered);
                self.go_idle()
            }
            Outcome::Yield => {
                drop(entered);
                self.yield_now()
            }
            Outcome::Exit(reason) => self.exit(inner, reason),
        }
    }
}

impl<A: Actor> AnyCell for Cell<A> {
    fn id(&self) -> ActorId {
        self.id
    }

    fn describe(&self) -> String {
        format!("{}{}", std::any::type_name::<A>(), self.id)
    }

    fn is_dead(&self) -> bool {
        self.dead()
    }

    fn signal(self: Arc<Self>, signal: Signal) -> bool {
        {
            let mut mb = self.mailbox.lock();
            if self.state.is_closed() {
                return false;
            }
            mb.rare().signals.push(signal);
            self.state.set_signal();
        }
        if self.state.notify() {
            self.schedule();
        }
        true
    }

    fn wake(self: Arc<Self>) {
        if self.state.notify() {
            self.schedule();
        }
    }

    fn stop_gracefully(self: Arc<Self>, reason: ExitReason) -> bool {
        self.push_stop(reason)
    }

    fn try_mute(&self, on: ActorId) -> bool {
        Cell::try_mute(self, on)
    }

    fn add_monitor(&self, reference: u64, deliver: Deliver) -> Result<(), (Deliver, ExitReason)> {
        self.watch_add_monitor(reference, deliver)
    }

    fn remove_monitor(&self, reference: u64) -> Option<Deliver> {
        self.watch_remove_monitor(reference)
    }

    fn note_monitoring(&self, reference: u64, target: Weak<dyn AnyCell>) {
        self.watch_note_monitoring(reference, target)
    }

    fn forget_monitoring(&self, reference: u64) -> Option<Weak<dyn AnyCell>> {
        self.watch_forget_monitoring(reference)
    }

    fn add_link(&self, other: ActorId, cell: Weak<dyn AnyCell>) -> Result<(), ExitReason> {
        self.watch_add_link(other, cell)
    }

    fn remove_link(&self, other: ActorId) -> bool {
        self.watch_remove_link(other)
    }

    fn link_exit(self: Arc<Self>, from: ActorId, reason: ExitReason) {
        if self.watch_link_exit(from, reason) && self.state.notify() {
            self.schedule();
        }
    }

    fn add_child(&self, child: ActorId, cell: Weak<dyn AnyCell>) {
        self.watch_add_child(child, cell)
    }

    fn forget_child(&self, child: ActorId) {
        self.watch_forget_child(child)
    }

    fn watch_entries(&self) -> usize {
        self.watch_len()
    }

    fn info(&self) -> crate::observe::ActorInfo {
        let mb = self.mailbox.lock();
        crate::observe::ActorInfo {
            id: self.id,
            type_name: std::any::type_name::<A>(),
            parent: mb.rare.as_ref().and_then(|r| r.watch.parent()).map(ActorId),
            name: None,
            mailbox: mb.len as usize,
            mailbox_high_water: self.high.load(Ordering::Relaxed) as usize,
            mailbox_capacity: mb.capacity as usize,
            relations: mb.rare.as_ref().map_or(0, |r| r.watch.len()),
            thread_worker: mb.rare.as_ref().is_some_and(|r| r.home.is_some()),
        }
    }
}

#[cfg(test)]
mod tests {
    /// The spawn benchmark's bytes-per-idle-actor target (256 B) depends on
    /// the cell staying this small; a field added carelessly fails here.
    #[test]
    fn a_cell_costs_at_most_176_bytes_plus_the_actor() {
        #[allow(dead_code)]
        struct A([u64; 3]);
        impl crate::Actor for A {
            type Msg = ();
            fn handle(&mut self, _m: (), _c: &mut crate::Ctx<'_, Self>) -> crate::ActorResult {
                Ok(())
            }
        }
        let cell = std::mem::size_of::<super::Cell<A>>();
        assert!(
            cell <= 176 + std::mem::size_of::<A>(),
            "Cell is {cell} bytes"
        );
        assert_eq!(std::mem::size_of::<super::mailbox::Envelope<()>>(), 16);
    }
}
