//! `Cell<A>`: one actor's home: its mailbox, its scheduling state machine
//! and one turn of its run loop. A cell *is* the runtime's `Task`.
//!
//! State machine (one `AtomicU8`, see ARCHITECTURE.md "Cell state
//! machine"): `NOTIFIED` (queued or must run again), `RUNNING`, `SIGNAL`
//! (an urgent signal is pending), `WAITERS` (blocked senders wait for room),
//! `DEAD` (exited; never scheduled again).
//!
//! Invariants:
//! * Exactly one party schedules the cell per idle → notified transition:
//!   the one whose `fetch_or(NOTIFIED)` saw neither `NOTIFIED`, `RUNNING`
//!   nor `DEAD`.
//! * `inner` (the actor, its turn buffer, its `Ctx` state) is touched only
//!   by the thread that moved the cell into `RUNNING`; it gives `RUNNING` up
//!   (idle CAS, or yield) before anyone else can take it.
//! * A message is accepted under the mailbox lock only while the mailbox is
//!   open and (for user messages) `len < capacity`; once `CLOSED` is set no
//!   message is accepted, so none can be stranded in a dead cell.
//!
//! Must not touch: sockets, supervisors, or the scheduler's internals
//! (scheduling goes through `Handle::schedule`).

use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::thread::Thread;

use parking_lot::Mutex;
use weft_runtime::{Handle, Task, TimerKey};

use crate::actor::{Actor, Stopping};
use crate::addr::SendError;
use crate::ctx::Ctx;
use crate::exit::{ActorId, Down, ExitReason, ExitSignal};
use crate::system::System;

pub(crate) const NOTIFIED: u8 = 1;
pub(crate) const RUNNING: u8 = 2;
pub(crate) const SIGNAL: u8 = 4;
pub(crate) const WAITERS: u8 = 8;
pub(crate) const DEAD: u8 = 16;
/// The mailbox accepts nothing more; set and read under the mailbox lock.
pub(crate) const CLOSED: u8 = 32;

pub(crate) enum Envelope<M> {
    /// A message from a sender: counts against the capacity.
    User(M),
    /// A runtime delivery the actor asked for (timer, reply, readiness,
    /// monitor notice, blocking result): not counted.
    Internal(M),
    /// A graceful stop, after the messages queued before it. `None` is
    /// `Normal` (no allocation for the common case); other reasons are
    /// boxed to keep the envelope, and so every queue slot, small.
    Stop(Option<Box<ExitReason>>),
}

/// A FIFO of envelopes with the first one held inline: an actor that
/// receives one message at a time (the common case) never touches the
/// heap buffer, and an idle actor that received a message holds none.
pub(crate) struct Queue<M> {
    first: Option<Envelope<M>>,
    rest: VecDeque<Envelope<M>>,
}

impl<M> Queue<M> {
    const fn new() -> Self {
        Queue {
            first: None,
            rest: VecDeque::new(),
        }
    }

    fn push(&mut self, e: Envelope<M>) {
        if self.first.is_none() && self.rest.is_empty() {
            self.first = Some(e);
        } else {
            self.rest.push_back(e);
        }
    }

    fn pop(&mut self) -> Option<Envelope<M>> {
        self.first.take().or_else(|| self.rest.pop_front())
    }

    fn is_empty(&self) -> bool {
        self.first.is_none() && self.rest.is_empty()
    }

    fn clear(&mut self) {
        self.first = None;
        self.rest = VecDeque::new();
    }
}

/// Urgent, out-of-band requests, handled before the next message.
pub(crate) enum Signal {
    Kill(ExitReason),
    LinkExit(ExitSignal),
}

pub(crate) enum Watcher {
    Monitor(Box<dyn FnOnce(Down) + Send>),
    Link(Weak<dyn AnyCell>),
}

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

#[derive(Default)]
struct Rare {
    waiters: Vec<Waiter>,
    watchers: Vec<Watcher>,
    signals: Vec<Signal>,
    exit: Option<ExitReason>,
}

struct Mailbox<M> {
    queue: Queue<M>,
    /// User messages in `queue`.
    len: u32,
    /// The most user messages `queue` may hold.
    capacity: u32,
    rare: Option<Box<Rare>>,
}

impl<M> Mailbox<M> {
    fn rare(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
    }
}

/// Where a cell runs: on the runtime's workers, or on its own thread.
pub(crate) struct ThreadHome {
    runnable: AtomicBool,
    pub(crate) thread: OnceLock<Thread>,
}

impl ThreadHome {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(ThreadHome {
            runnable: AtomicBool::new(false),
            thread: OnceLock::new(),
        })
    }

    fn notify(&self) {
        self.runnable.store(true, Ordering::Release);
        if let Some(t) = self.thread.get() {
            t.unpark();
        }
    }

    /// Blocks the home thread until the cell is runnable.
    pub(crate) fn wait_runnable(&self) {
        while !self.runnable.swap(false, Ordering::AcqRel) {
            std::thread::park();
        }
    }
}

/// A boxed send waiting in a muted actor's outbox.
pub(crate) type Outgoing = Box<dyn FnMut(&Arc<dyn AnyCell>) -> Flush + Send>;

pub(crate) enum Flush {
    Sent,
    Full,
    Dead,
}

/// The parts of `Ctx` that persist between turns.
pub(crate) struct CtxState<A: Actor> {
    pub(crate) stop: Option<Box<ExitReason>>,
    pub(crate) rare: Option<Box<CtxRare<A>>>,
}

pub(crate) struct CtxRare<A: Actor> {
    pub(crate) outbox: VecDeque<Outgoing>,
    pub(crate) children: Vec<Weak<dyn AnyCell>>,
    pub(crate) trap: Option<Box<dyn Fn(ExitSignal) -> A::Msg + Send>>,
    pub(crate) intervals: Vec<TimerKey>,
    /// Told once how `started` went (for a parent that asked).
    pub(crate) on_start: Option<StartNotice>,
    /// The actor holds its start notice until `Ctx::start_complete`.
    pub(crate) start_held: bool,
}

/// Receives the outcome of an actor's `started`.
pub(crate) type StartNotice = Box<dyn FnOnce(Result<(), ExitReason>) + Send>;

impl<A: Actor> CtxRare<A> {
    fn is_empty(&self) -> bool {
        self.outbox.is_empty()
            && self.children.is_empty()
            && self.trap.is_none()
            && self.intervals.is_empty()
            && self.on_start.is_none()
            && !self.start_held
    }

    fn new() -> Self {
        CtxRare {
            outbox: VecDeque::new(),
            children: Vec::new(),
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
enum Life<A> {
    Fresh(A),
    Running(A),
    Gone,
}

struct Inner<A: Actor> {
    life: Life<A>,
    batch: Queue<A::Msg>,
    ctx: CtxState<A>,
}

/// One actor. See the module doc for the state machine.
pub(crate) struct Cell<A: Actor> {
    state: AtomicU8,
    /// This cell's slot in the runtime's live-actor table.
    slot: u32,
    id: ActorId,
    pub(crate) handle: Handle,
    home: Option<Arc<ThreadHome>>,
    mailbox: Mutex<Mailbox<A::Msg>>,
    inner: UnsafeCell<Inner<A>>,
}

// SAFETY: `inner` is only accessed by the thread that owns the `RUNNING`
// bit (module invariant 2), so sharing `&Cell` across threads never gives
// two threads access to `inner` at once; everything else is atomics or
// behind a mutex. `A: Send` lets the actor move between worker threads.
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
    /// Adds a watcher; hands it back with the exit reason if already dead.
    fn add_watcher(&self, w: Watcher) -> Result<(), (Watcher, ExitReason)>;
    /// Makes the cell run a turn (a muted sender retries its outbox).
    fn wake(self: Arc<Self>);
    /// Queues a graceful stop; false if the actor already exited.
    fn stop_gracefully(self: Arc<Self>, reason: ExitReason) -> bool;
}

pub(crate) enum Outcome {
    Idle,
    Yield,
    Exit(ExitReason),
}

impl<A: Actor> Cell<A> {
    pub(crate) fn new(
        actor: A,
        handle: Handle,
        capacity: u32,
        home: Option<Arc<ThreadHome>>,
        id: ActorId,
        slot: u32,
        on_start: Option<StartNotice>,
    ) -> Arc<Self> {
        Arc::new(Cell {
            state: AtomicU8::new(0),
            slot,
            id,
            handle,
            home,
            mailbox: Mutex::new(Mailbox {
                queue: Queue::new(),
                len: 0,
                capacity,
                rare: None,
            }),
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

    /// Whether the mailbox is closed; callers hold the mailbox lock, which
    /// orders this read with the exit that set the bit.
    fn closed(&self) -> bool {
        self.state.load(Ordering::Acquire) & CLOSED != 0
    }

    pub(crate) fn dead(&self) -> bool {
        self.state.load(Ordering::Acquire) & DEAD != 0
    }

    fn schedule(self: &Arc<Self>) {
        match &self.home {
            None => self.handle.schedule(self.clone()),
            Some(home) => home.notify(),
        }
    }

    /// Sets `NOTIFIED | extra`; schedules the cell if it was idle.
    ///
    /// Called after the message was pushed under the mailbox lock. If
    /// `NOTIFIED` is already set, the runner has yet to clear it and will
    /// take the mailbox after clearing it, so the push is seen without an
    /// RMW on the state line (the lock orders the push before that take).
    fn notify(self: &Arc<Self>, extra: u8) {
        if extra == 0 && self.state.load(Ordering::Acquire) & NOTIFIED != 0 {
            return;
        }
        self.notify_always(extra);
    }

    /// Sets `NOTIFIED | extra` with an RMW; schedules the cell if it was
    /// idle. Used where no push precedes (waking a muted sender).
    fn notify_always(self: &Arc<Self>, extra: u8) {
        let prev = self.state.fetch_or(NOTIFIED | extra, Ordering::AcqRel);
        if prev & (NOTIFIED | RUNNING | DEAD) == 0 {
            self.schedule();
        }
    }

    /// Makes the cell runnable for its first turn (`started`).
    pub(crate) fn start(self: &Arc<Self>) {
        self.notify(0);
    }

    /// Accepts a user message built by `f` from `value`, if the mailbox is
    /// open and has room; otherwise hands `value` back.
    pub(crate) fn push_with<T>(
        self: &Arc<Self>,
        value: T,
        f: impl FnOnce(T) -> A::Msg,
    ) -> Result<(), SendError<T>> {
        self.try_push_with(value, f).map_err(|(e, _)| e)
    }

    /// As `push_with`, and on failure hands `f` back too, for a retry.
    pub(crate) fn try_push_with<T, F: FnOnce(T) -> A::Msg>(
        self: &Arc<Self>,
        value: T,
        f: F,
    ) -> Result<(), (SendError<T>, F)> {
        // Fast path: the receiver is idle. The sender whose CAS moves it
        // from idle to NOTIFIED owns it until it is scheduled, so an empty
        // turn buffer can take the message directly, without the lock.
        if self.state.load(Ordering::Relaxed) == 0
            && self
                .state
                .compare_exchange(0, NOTIFIED, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            // SAFETY: the state was idle (not RUNNING, not DEAD) and this
            // thread set NOTIFIED, so no thread runs the cell and none will
            // until `schedule` below hands it to one (the run queue orders
            // these writes before that run). The last runner finished with
            // `inner` before its Release CAS to idle, which our AcqRel CAS
            // read.
            let inner = unsafe { &mut *self.inner.get() };
            let result = if inner.batch.is_empty() {
                inner.batch.push(Envelope::User(f(value)));
                Ok(())
            } else {
                // A muted actor keeps its batch; go through the mailbox so
                // the capacity still bounds what it holds.
                self.push_locked(value, f)
            };
            self.schedule();
            return result;
        }
        let result = self.push_locked(value, f);
        if result.is_ok() {
            self.notify(0);
        }
        result
    }

    fn push_locked<T, F: FnOnce(T) -> A::Msg>(
        &self,
        value: T,
        f: F,
    ) -> Result<(), (SendError<T>, F)> {
        let mut mb = self.mailbox.lock();
        if self.closed() {
            return Err((SendError::Stopped(value), f));
        }
        if mb.len >= mb.capacity {
            return Err((SendError::Full(value), f));
        }
        mb.len += 1;
        mb.queue.push(Envelope::User(f(value)));
        Ok(())
    }

    /// Delivers a runtime-internal message (not counted against the
    /// capacity). Returns false if the actor has exited.
    pub(crate) fn push_internal(self: &Arc<Self>, msg: A::Msg) -> bool {
        {
            let mut mb = self.mailbox.lock();
            if self.closed() {
                return false;
            }
            mb.queue.push(Envelope::Internal(msg));
        }
        self.notify(0);
        true
    }

    /// Queues a graceful stop behind the messages already queued.
    pub(crate) fn push_stop(self: &Arc<Self>, reason: ExitReason) -> bool {
        {
            let mut mb = self.mailbox.lock();
            if self.closed() {
                return false;
            }
            let reason = match reason {
                ExitReason::Normal => None,
                other => Some(Box::new(other)),
            };
            mb.queue.push(Envelope::Stop(reason));
        }
        self.notify(0);
        true
    }

    /// Registers `w` to be woken when the mailbox has room again. Returns
    /// false (and registers nothing) if there is room now or the actor is
    /// gone: the caller should retry at once.
    pub(crate) fn wait_for_room(&self, w: Waiter) -> bool {
        let mut mb = self.mailbox.lock();
        if self.closed() {
            return false;
        }
        if mb.len < mb.capacity {
            return false;
        }
        mb.rare().waiters.push(w);
        self.state.fetch_or(WAITERS, Ordering::AcqRel);
        true
    }

    /// Takes everything queued into the (empty) turn buffer. Taking empties
    /// the mailbox, so blocked senders are woken.
    fn refill(&self, batch: &mut Queue<A::Msg>) -> bool {
        debug_assert!(batch.is_empty());
        let mut mb = self.mailbox.lock();
        if mb.queue.is_empty() {
            return false;
        }
        std::mem::swap(&mut mb.queue, batch);
        mb.len = 0;
        if self.state.load(Ordering::Acquire) & WAITERS == 0 {
            return true;
        }
        self.state.fetch_and(!WAITERS, Ordering::AcqRel);
        let waiters = mb
            .rare
            .as_mut()
            .map(|r| std::mem::take(&mut r.waiters))
            .unwrap_or_default();
        drop(mb);
        waiters.into_iter().for_each(Waiter::wake);
        true
    }

    fn take_signals(&self) -> Vec<Signal> {
        let mut mb = self.mailbox.lock();
        self.state.fetch_and(!SIGNAL, Ordering::AcqRel);
        match mb.rare.as_mut() {
            Some(r) => std::mem::take(&mut r.signals),
            None => Vec::new(),
        }
    }

    /// Handles pending signals; returns the exit reason if one is fatal.
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
        Ok(())
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
            match item(&me) {
                Flush::Sent => {}
                Flush::Dead => {
                    tracing::debug!(actor = %self.id, "held message dropped: its receiver stopped");
                }
                Flush::Full => return false,
            }
            rare.outbox.pop_front();
        }
        true
    }

    /// One turn: `started` if not yet run, then up to `budget` messages.
    fn turn(self: &Arc<Self>, inner: &mut Inner<A>, budget: usize) -> Outcome {
        let Inner {
            life,
            batch,
            ctx: cs,
        } = inner;
        if let Life::Fresh(_) = life {
            let Life::Fresh(actor) = std::mem::replace(life, Life::Gone) else {
                unreachable!("matched Fresh above")
            };
            *life = Life::Running(actor);
            let Life::Running(actor) = life else {
                unreachable!("just set")
            };
            if let Err(e) = actor.started(&mut Ctx::new(self, cs)) {
                return Outcome::Exit(ExitReason::Error(e.into()));
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
            if let Some(reason) = cs.stop.take() {
                return Outcome::Exit(*reason);
            }
        }
        let Life::Running(actor) = life else {
            return Outcome::Idle;
        };
        if self.state.load(Ordering::Acquire) & SIGNAL != 0 {
            if let Err(reason) = self.handle_signals(actor, cs) {
                return Outcome::Exit(reason);
            }
            if let Some(reason) = cs.stop.take() {
                return Outcome::Exit(*reason);
            }
        }
        if !self.flush_outbox(cs) {
            return Outcome::Idle;
        }
        let mut handled = 0;
        // Messages sent before this turn began are in the mailbox; any sent
        // since then set NOTIFIED, so the mailbox is only locked again when
        // that flag says there is something to take.
        let mut look = true;
        let outcome = loop {
            if self.state.load(Ordering::Acquire) & SIGNAL != 0 {
                if let Err(reason) = self.handle_signals(actor, cs) {
                    break Outcome::Exit(reason);
                }
                if let Some(reason) = cs.stop.take() {
                    break Outcome::Exit(*reason);
                }
            }
            if batch.is_empty() {
                if !look {
                    if self.state.load(Ordering::Acquire) & NOTIFIED == 0 {
                        break Outcome::Idle;
                    }
                    self.state.fetch_and(!NOTIFIED, Ordering::AcqRel);
                }
                look = false;
                if !self.refill(batch) {
                    continue;
                }
            }
            if handled == budget {
                break Outcome::Yield;
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
                    break Outcome::Exit(reason.map_or(ExitReason::Normal, |r| *r))
                }
            };
            if let Err(e) = result {
                break Outcome::Exit(ExitReason::Error(e.into()));
            }
            if let Some(reason) = cs.stop.take() {
                break Outcome::Exit(*reason);
            }
            if cs.muted() {
                break Outcome::Idle;
            }
        };
        outcome
    }

    /// Gives up `RUNNING`; runs again if something arrived meanwhile.
    fn go_idle(self: &Arc<Self>) {
        let mut s = self.state.load(Ordering::Acquire);
        loop {
            if s & (NOTIFIED | SIGNAL) != 0 {
                self.yield_now();
                return;
            }
            match self.state.compare_exchange_weak(
                s,
                s & !RUNNING,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(actual) => s = actual,
            }
        }
    }

    fn yield_now(self: &Arc<Self>) {
        self.state.fetch_or(NOTIFIED, Ordering::AcqRel);
        self.state.fetch_and(!RUNNING, Ordering::AcqRel);
        self.schedule();
    }

    /// The actor's last act: close the mailbox, drop what is queued, run
    /// `stopped`, stop children, tell watchers, wake blocked senders.
    fn exit(self: &Arc<Self>, inner: &mut Inner<A>, reason: ExitReason) {
        let (queue, rare) = {
            let mut mb = self.mailbox.lock();
            self.state.fetch_or(CLOSED, Ordering::AcqRel);
            let queue = std::mem::replace(&mut mb.queue, Queue::new());
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
        self.state.fetch_or(DEAD, Ordering::AcqRel);
        drop(queue);
        inner.batch.clear();
        if let Life::Running(mut actor) | Life::Fresh(mut actor) =
            std::mem::replace(&mut inner.life, Life::Gone)
        {
            let cs = &mut inner.ctx;
            let stopped = catch_unwind(AssertUnwindSafe(|| {
                actor.stopped(&reason, &mut Ctx::new(self, cs));
                drop(actor);
            }));
            if stopped.is_err() {
                tracing::error!(actor = %self.id, "`stopped` panicked");
            }
        }
        if reason.is_abnormal() {
            tracing::warn!(actor = %self.id, %reason, "actor exited");
        } else {
            tracing::debug!(actor = %self.id, %reason, "actor exited");
        }
        if let Some(mut ctx_rare) = inner.ctx.rare.take() {
            // `started` failed (or never ran): the parent learns why before
            // any monitor hears of the exit.
            if let Some(notice) = ctx_rare.on_start.take() {
                notice(Err(reason.clone()));
            }
            for key in &ctx_rare.intervals {
                self.handle.cancel_timer(*key);
            }
            for child in ctx_rare.children.iter().filter_map(Weak::upgrade) {
                child.signal(Signal::Kill(ExitReason::Shutdown));
            }
        }
        if let Some(rare) = rare {
            let Rare {
                waiters, watchers, ..
            } = *rare;
            for w in watchers {
                match w {
                    Watcher::Monitor(deliver) => deliver(Down {
                        id: self.id,
                        reason: reason.clone(),
                    }),
                    Watcher::Link(cell) => {
                        if let Some(cell) = cell.upgrade() {
                            cell.signal(Signal::LinkExit(ExitSignal {
                                from: self.id,
                                reason: reason.clone(),
                            }));
                        }
                    }
                }
            }
            waiters.into_iter().for_each(Waiter::wake);
        }
        if let Some(system) = System::of(&self.handle) {
            system.exited(self.id, self.slot);
        }
    }
}

impl<A: Actor> Task for Cell<A> {
    fn id(&self) -> u64 {
        self.id.0
    }

    fn run(self: Arc<Self>) {
        // NOTIFIED -> RUNNING in one step; the flag bits stay.
        let prev = self.state.fetch_xor(NOTIFIED | RUNNING, Ordering::AcqRel);
        debug_assert!(
            prev & NOTIFIED != 0 && prev & RUNNING == 0,
            "a cell ran without being notified, or twice at once"
        );
        // SAFETY: this thread just set RUNNING, which no other thread sets
        // while it is set (senders only set NOTIFIED when RUNNING is set,
        // and only schedule from the idle state), so it has sole access
        // to `inner` until it clears RUNNING in `go_idle`/`yield_now`, or
        // forever once DEAD is set.
        let inner = unsafe { &mut *self.inner.get() };
        let budget = self.handle.turn_budget();
        let outcome = catch_unwind(AssertUnwindSafe(|| self.turn(inner, budget)))
            .unwrap_or_else(|panic| Outcome::Exit(ExitReason::from_panic(panic)));
        match outcome {
            Outcome::Idle => self.go_idle(),
            Outcome::Yield => self.yield_now(),
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
            if self.closed() {
                return false;
            }
            mb.rare().signals.push(signal);
            self.state.fetch_or(SIGNAL, Ordering::AcqRel);
        }
        self.notify(SIGNAL);
        true
    }

    fn add_watcher(&self, w: Watcher) -> Result<(), (Watcher, ExitReason)> {
        let mut mb = self.mailbox.lock();
        if self.closed() {
            let reason = mb
                .rare
                .as_ref()
                .and_then(|r| r.exit.clone())
                .unwrap_or(ExitReason::Normal);
            return Err((w, reason));
        }
        mb.rare().watchers.push(w);
        Ok(())
    }

    fn wake(self: Arc<Self>) {
        self.notify_always(0);
    }

    fn stop_gracefully(self: Arc<Self>, reason: ExitReason) -> bool {
        self.push_stop(reason)
    }
}

/// Runs a thread-worker actor's cell on the calling thread until it exits.
pub(crate) fn run_on_thread<A: Actor>(cell: Arc<Cell<A>>, home: Arc<ThreadHome>) {
    loop {
        home.wait_runnable();
        cell.clone().run();
        if cell.dead() {
            break;
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
        assert_eq!(std::mem::size_of::<super::Envelope<()>>(), 16);
    }
}
