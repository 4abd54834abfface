//! `Ctx<A>`: what a running actor can do besides changing its own state.
//!
//! Owns: sends with back-pressure (the outbox and muting), children,
//! timers as messages, blocking work with the result as a message, asks
//! whose reply arrives as a message, monitors, links, exit trapping, and
//! readiness of I/O sources as messages.
//! Invariant: every runtime delivery the actor asked for (timer, reply,
//! readiness, notice, blocking result) arrives as an internal message of
//! the actor's own type, exactly once per event, and never when the actor
//! has exited.
//! Must not touch: other actors' state (only their cells' mailbox API).

use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Weak};
use std::time::Duration;

use weft_runtime::mio::event::Source;
use weft_runtime::mio::Interest;
use weft_runtime::{Handle, IoToken, MissedTicks, Readiness, ReadySink, RuntimeError};

use crate::actor::Actor;
use crate::addr::{Addr, SendError};
use crate::any_addr::AnyAddr;
use crate::ask::{AskError, Pending, ReplyTo, Slot};
use crate::cell::{
    AnyCell, Birth, Cell, CtxState, Deliver, Flush, Room, Signal, StartNotice, Waiter,
};
use crate::exit::{panic_text, ActorId, Down, ExitReason, ExitSignal, MonitorRef};
use crate::system::{check, spawn_cell, SpawnError, SpawnOptions, DEFAULT_CAPACITY};
use crate::timer::TimerHandle;

/// A blocking job panicked; its message.
#[derive(Clone, Debug, thiserror::Error)]
#[error("blocking job panicked: {0}")]
pub struct JobPanicked(pub Arc<str>);

/// The context of a running actor, passed to every handler.
///
/// ```
/// use std::time::Duration;
/// use weft_actors::{Actor, ActorResult, Ctx, Spawn};
///
/// /// Counts to three on a timer, then stops itself.
/// struct Countdown(u32, std::sync::mpsc::Sender<u32>);
/// impl Actor for Countdown {
///     type Msg = ();
///     fn started(&mut self, ctx: &mut Ctx<'_, Self>) -> ActorResult {
///         ctx.send_later(Duration::from_millis(1), ());
///         Ok(())
///     }
///     fn handle(&mut self, _: (), ctx: &mut Ctx<'_, Self>) -> ActorResult {
///         self.0 += 1;
///         self.1.send(self.0)?;
///         if self.0 == 3 {
///             ctx.stop();
///         } else {
///             ctx.send_later(Duration::from_millis(1), ());
///         }
///         Ok(())
///     }
/// }
///
/// let rt = weft_runtime::Runtime::builder().build().unwrap();
/// let (tx, rx) = std::sync::mpsc::channel();
/// rt.handle().spawn(Countdown(0, tx));
/// let got: Vec<u32> = (0..3).map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap()).collect();
/// assert_eq!(got, [1, 2, 3]);
/// ```
pub struct Ctx<'a, A: Actor> {
    cell: &'a Arc<Cell<A>>,
    state: &'a mut CtxState<A>,
}

impl<'a, A: Actor> Ctx<'a, A> {
    pub(crate) fn new(cell: &'a Arc<Cell<A>>, state: &'a mut CtxState<A>) -> Self {
        Ctx { cell, state }
    }

    /// This actor's address.
    pub fn address(&self) -> Addr<A> {
        Addr {
            cell: self.cell.clone(),
        }
    }

    /// This actor's id.
    pub fn id(&self) -> ActorId {
        self.cell.actor_id()
    }

    /// The runtime this actor runs on.
    pub fn runtime(&self) -> &Handle {
        &self.cell.handle
    }

    /// Stops this actor (reason `Normal`) when the current handler returns.
    pub fn stop(&mut self) {
        self.stop_with(ExitReason::Normal);
    }

    /// Stops this actor with `reason` when the current handler returns.
    pub fn stop_with(&mut self, reason: ExitReason) {
        self.state.stop = Some(Box::new(reason));
    }

    /// Spawns a child actor: it is stopped (reason `Shutdown`) when this
    /// actor exits.
    pub fn spawn<B: Actor>(&mut self, actor: B) -> Addr<B> {
        let me: Arc<dyn AnyCell> = self.cell.clone();
        spawn_cell(
            &self.cell.handle,
            actor,
            Birth::new(DEFAULT_CAPACITY as u32),
            Some(&me),
        )
    }

    /// Spawns a child (as [`Ctx::spawn`], with `options`) and sends
    /// `map(outcome)` to this actor once the child's `started` has run:
    /// `Ok(())`, or `Err(reason)` if it failed or panicked. The notice
    /// arrives before any `Down` for that child. This is how a supervisor
    /// learns that a start failed.
    pub fn spawn_notify<B: Actor>(
        &mut self,
        actor: B,
        options: SpawnOptions,
        map: impl FnOnce(Result<(), ExitReason>) -> A::Msg + Send + 'static,
    ) -> Result<Addr<B>, SpawnError> {
        let birth = check(&options)?;
        let me = Arc::downgrade(self.cell);
        let notice: StartNotice = Box::new(move |outcome| {
            if let Some(me) = me.upgrade() {
                me.push_internal(map(outcome));
            }
        });
        let birth = Birth {
            on_start: Some(notice),
            ..birth
        };
        let parent: Arc<dyn AnyCell> = self.cell.clone();
        Ok(spawn_cell(&self.cell.handle, actor, birth, Some(&parent)))
    }

    /// Spawns a child and links to it (see [`Ctx::link`]).
    pub fn spawn_linked<B: Actor>(&mut self, actor: B) -> Addr<B> {
        let addr = self.spawn(actor);
        self.link(&addr);
        addr
    }

    /// Sends `msg` to `to`. If `to`'s mailbox is full, the message is held
    /// and this actor is *muted*: it handles nothing more until the held
    /// message (and any sent after it) has been delivered, so an overloaded
    /// actor slows its senders instead of growing. Per-receiver order is
    /// kept. `Err(Stopped)` if `to` has exited; a held message whose
    /// receiver exits before there is room is dropped.
    ///
    /// Muting never closes a cycle: if `to` is waiting (directly, or
    /// through other muted actors) on this actor, or is this actor, the
    /// send goes through over `to`'s capacity instead, so actors that
    /// flood each other slow down but never stop each other. When this
    /// actor exits, what it still holds is delivered (over capacity)
    /// rather than dropped.
    pub fn send<B: Actor>(&mut self, to: &Addr<B>, msg: B::Msg) -> Result<(), SendError<B::Msg>> {
        if self.state.muted() {
            if to.cell.dead() {
                return Err(SendError::Stopped(msg));
            }
            self.state
                .rare()
                .outbox
                .push_back(held(to.cell.clone(), msg));
            return Ok(());
        }
        match to.cell.push_with(msg, |m| m) {
            Err(SendError::Full(msg)) => {
                let mut item = held(to.cell.clone(), msg);
                let me: Arc<dyn AnyCell> = self.cell.clone();
                match item(&me, Room::Bounded) {
                    Flush::Sent | Flush::Dead => self.cell.unmute(),
                    Flush::Full => self.state.rare().outbox.push_back(item),
                }
                Ok(())
            }
            other => other,
        }
    }

    /// Whether a send of this turn was held back by a full mailbox: the
    /// actor is muted and handles no more messages until it is delivered.
    /// A producer (a connection reading its socket) stops producing now.
    pub fn is_muted(&self) -> bool {
        self.state.muted()
    }

    /// Sends `msg` to this actor itself, bypassing the capacity (it is
    /// bounded by what the actor itself sends). Safe in `started`.
    pub fn send_self(&mut self, msg: A::Msg) {
        self.cell.push_internal(msg);
    }

    /// Sends `msg` to this actor after `delay` (Twisted's `callLater`).
    pub fn send_later(&mut self, delay: Duration, msg: A::Msg) -> TimerHandle {
        let cell = Arc::downgrade(self.cell);
        let key = self.cell.handle.call_later(delay, move || {
            if let Some(cell) = cell.upgrade() {
                cell.push_internal(msg);
            }
        });
        TimerHandle::new(self.cell.handle.clone(), key)
    }

    /// Sends `make()` to this actor every `period` (Twisted's
    /// `LoopingCall`); `missed` says what happens when it runs late. The
    /// interval is cancelled when the actor exits.
    pub fn send_interval(
        &mut self,
        period: Duration,
        missed: MissedTicks,
        make: impl Fn() -> A::Msg + Send + Sync + 'static,
    ) -> TimerHandle {
        let cell = Arc::downgrade(self.cell);
        let key = self.cell.handle.call_every(period, missed, move || {
            if let Some(cell) = cell.upgrade() {
                cell.push_internal(make());
            }
        });
        self.state.rare().intervals.push(key);
        TimerHandle::new(self.cell.handle.clone(), key)
    }

    /// Runs `job` on the runtime's blocking pool and sends `map(result)` to
    /// this actor when it ends (Twisted's `deferToThread`). A panicking job
    /// yields `Err(JobPanicked)`. Refused if the pool is full.
    pub fn spawn_blocking<R: Send + 'static>(
        &mut self,
        job: impl FnOnce() -> R + Send + 'static,
        map: impl FnOnce(Result<R, JobPanicked>) -> A::Msg + Send + 'static,
    ) -> Result<(), RuntimeError> {
        let cell = Arc::downgrade(self.cell);
        self.cell.handle.spawn_blocking(move || {
            let result =
                catch_unwind(AssertUnwindSafe(job)).map_err(|p| JobPanicked(panic_text(p)));
            if let Some(cell) = cell.upgrade() {
                cell.push_internal(map(result));
            }
        })
    }

    /// Asks `to` and receives `map(reply)` as a message: the reply, or
    /// `Timeout` after `timeout`, or `Dropped`/`Stopped` if `to` stops or
    /// drops the reply handle. Exactly one message always arrives.
    pub fn ask<B: Actor, R: Send + 'static>(
        &mut self,
        to: &Addr<B>,
        make: impl FnOnce(ReplyTo<R>) -> B::Msg,
        timeout: Duration,
        map: impl FnOnce(Result<R, AskError>) -> A::Msg + Send + 'static,
    ) {
        let slot = Slot::<R>::new();
        let handle = self.cell.handle.clone();
        let timer_slot = slot.clone();
        let timer = handle.call_later(timeout, move || {
            timer_slot.complete(Err(AskError::Timeout));
        });
        let me = Arc::downgrade(self.cell);
        slot.on_complete(Box::new(move |result| {
            handle.cancel_timer(timer);
            if let Some(me) = me.upgrade() {
                me.push_internal(map(result));
            }
        }));
        let request = make(ReplyTo::new(slot.clone()));
        if let Err(SendError::Stopped(request)) = self.send(to, request) {
            slot.complete(Err(AskError::Stopped));
            drop(request);
        }
    }

    /// Called in `started`: the start notice a parent asked for (see
    /// [`Ctx::spawn_notify`]) is held until [`Ctx::start_complete`], for an
    /// actor whose start takes more than `started` (a supervisor whose
    /// children must start first). If the actor exits before completing,
    /// the notice carries the exit reason.
    pub fn hold_start(&mut self) {
        self.state.rare().start_held = true;
    }

    /// Sends the held start notice: `Ok(())`, or `Err(reason)` (then stop
    /// the actor too). Does nothing if no notice is held or it was sent.
    pub fn start_complete(&mut self, outcome: Result<(), ExitReason>) {
        let rare = self.state.rare();
        rare.start_held = false;
        if let Some(notice) = rare.on_start.take() {
            notice(outcome);
        }
    }

    /// Watches `to`: when it exits (or if it already has), this actor
    /// receives `map(Down)` with the reason (Erlang's `monitor`). Each call
    /// makes a new monitor; [`Ctx::demonitor`] removes one. A monitor is
    /// released when either side exits, so monitoring a long-lived actor
    /// from many short-lived ones leaves nothing behind on it.
    pub fn monitor<B: Actor>(
        &mut self,
        to: &Addr<B>,
        map: impl FnOnce(Down) -> A::Msg + Send + 'static,
    ) -> MonitorRef {
        self.monitor_any(&AnyAddr::from(to), map)
    }

    /// Watches an actor of any type (see [`Ctx::monitor`]).
    pub fn monitor_any(
        &mut self,
        to: &AnyAddr,
        map: impl FnOnce(Down) -> A::Msg + Send + 'static,
    ) -> MonitorRef {
        let reference = MonitorRef::next();
        let r = reference.0;
        let me = Arc::downgrade(self.cell);
        let deliver: Deliver = Box::new(move |down| {
            if let Some(me) = me.upgrade() {
                me.push_monitor_notice(r, map(down));
            }
        });
        // This side first: once the target holds the monitor, its exit
        // may fire it at once, and the firing removes this note.
        self.cell.note_monitoring(r, Arc::downgrade(&to.cell));
        if let Err((deliver, reason)) = to.cell.add_monitor(r, deliver) {
            deliver(Down {
                id: to.id(),
                reason,
            });
        }
        reference
    }

    /// Removes a monitor (Erlang's `demonitor`). `true`: it was removed
    /// before it fired, and its `Down` will never arrive. `false`: it had
    /// already fired (its `Down` is queued or handled) or was removed.
    pub fn demonitor(&mut self, reference: MonitorRef) -> bool {
        let Some(target) = self.cell.forget_monitoring(reference.0) else {
            return false;
        };
        match target.upgrade().and_then(|t| t.remove_monitor(reference.0)) {
            Some(deliver) => {
                drop(deliver);
                true
            }
            None => false,
        }
    }

    /// Links this actor and `to`: when either exits abnormally, the other
    /// exits too (reason `Linked`), unless it traps exits. Linking to an
    /// actor that has already exited delivers its exit at once. A pair is
    /// linked at most once (linking again does nothing), and the link is
    /// released when either side exits.
    pub fn link<B: Actor>(&mut self, to: &Addr<B>) {
        if to.id() == self.id() {
            return;
        }
        let me: Arc<dyn AnyCell> = self.cell.clone();
        let other: Arc<dyn AnyCell> = to.cell.clone();
        // This side first: once the other side holds the link, its exit
        // signals through this side's entry.
        if self.cell.add_link(to.id(), Arc::downgrade(&other)).is_err() {
            return; // this actor is exiting; nothing to link
        }
        if let Err(reason) = to.cell.add_link(self.id(), Arc::downgrade(&me)) {
            self.cell.remove_link(to.id());
            me.signal(Signal::LinkExit(ExitSignal {
                from: to.id(),
                reason,
            }));
        }
    }

    /// Removes the link to `to` (Erlang's `unlink`): from now on neither
    /// side's exit affects the other. An exit signal that `to` sent before
    /// this call may still arrive. `false` if there was no link.
    pub fn unlink<B: Actor>(&mut self, to: &Addr<B>) -> bool {
        let had = self.cell.remove_link(to.id());
        to.cell.remove_link(self.id());
        had
    }

    /// Turns exit signals from linked actors into messages `map(signal)`
    /// instead of exiting (Erlang's `trap_exit`).
    pub fn trap_exits(&mut self, map: impl Fn(ExitSignal) -> A::Msg + Send + 'static) {
        self.state.rare().trap = Some(Box::new(map));
    }

    /// Registers an I/O source with the reactor; each readiness event
    /// arrives as `map(readiness)`. Readiness is edge-triggered: read or
    /// write until `WouldBlock` before expecting the next one.
    pub fn register_io(
        &mut self,
        source: &mut dyn Source,
        interest: Interest,
        map: impl Fn(Readiness) -> A::Msg + Send + Sync + 'static,
    ) -> io::Result<IoToken> {
        let sink = Arc::new(IoSink {
            cell: Arc::downgrade(self.cell),
            map,
        });
        self.cell.handle.register(source, interest, sink)
    }

    /// Delivers `map()` to this actor each time `signal` arrives (SIGHUP
    /// to reload a configuration, SIGUSR1, SIGWINCH...), until the
    /// returned subscription is dropped: keep it in the actor's state, and
    /// it ends with the actor. Arrivals between two deliveries coalesce.
    /// The message bypasses the mailbox capacity, like readiness.
    ///
    /// ```no_run
    /// use weft_actors::{Actor, ActorResult, Ctx, Spawn};
    /// use weft_runtime::{Signal, SignalSubscription};
    ///
    /// struct Config { hup: Option<SignalSubscription>, loads: u32 }
    /// enum Msg { Reload }
    /// impl Actor for Config {
    ///     type Msg = Msg;
    ///     fn started(&mut self, ctx: &mut Ctx<'_, Self>) -> ActorResult {
    ///         self.hup = Some(ctx.on_signal(Signal::SIGHUP, || Msg::Reload)?);
    ///         Ok(())
    ///     }
    ///     fn handle(&mut self, Msg::Reload: Msg, _ctx: &mut Ctx<'_, Self>) -> ActorResult {
    ///         self.loads += 1; // read the configuration again
    ///         Ok(())
    ///     }
    /// }
    /// ```
    pub fn on_signal(
        &mut self,
        signal: weft_runtime::Signal,
        map: impl Fn() -> A::Msg + Send + Sync + 'static,
    ) -> io::Result<weft_runtime::SignalSubscription> {
        let sink = self.ready_sink(move |_| map());
        self.cell.handle.subscribe_signal(signal, sink)
    }

    /// A readiness sink that delivers `map(readiness)` to this actor, for
    /// a source that is not a mio `Source` (an in-memory transport, a
    /// readiness a library reports by callback). Calling `ready` on it
    /// from any thread sends the message, bypassing the mailbox capacity
    /// like `register_io` does; once the actor has exited it does nothing.
    pub fn ready_sink(
        &mut self,
        map: impl Fn(Readiness) -> A::Msg + Send + Sync + 'static,
    ) -> Arc<dyn ReadySink> {
        Arc::new(IoSink {
            cell: Arc::downgrade(self.cell),
            map,
        })
    }

    /// Delivers the outcome of `pending` to this actor as `map(outcome)`
    /// when it completes (at once if it has): the way an actor waits for
    /// a [`reply_slot`](crate::reply_slot) filled by some other layer
    /// without blocking its worker. Exactly one message arrives, unless
    /// this actor has exited by then.
    pub fn on_reply<R: Send + 'static>(
        &mut self,
        pending: Pending<R>,
        map: impl FnOnce(Result<R, AskError>) -> A::Msg + Send + 'static,
    ) {
        let me = Arc::downgrade(self.cell);
        pending.slot().on_complete(Box::new(move |result| {
            if let Some(me) = me.upgrade() {
                me.push_internal(map(result));
            }
        }));
    }

    /// Changes the interest of a source registered with `register_io`.
    pub fn reregister_io(
        &mut self,
        source: &mut dyn Source,
        token: &IoToken,
        interest: Interest,
    ) -> io::Result<()> {
        self.cell.handle.reregister(source, token, interest)
    }

    /// Removes a source registered with `register_io`.
    pub fn deregister_io(&mut self, source: &mut dyn Source, token: IoToken) -> io::Result<()> {
        self.cell.handle.deregister(source, token)
    }
}

/// A held send: retried by the muted actor until delivered or dead. With
/// `Room::Forced` (at exit), or when the sender may not be muted (its own
/// mailbox is full), it goes through over the receiver's capacity.
fn held<B: Actor>(target: Arc<Cell<B>>, msg: B::Msg) -> crate::cell::Outgoing {
    let mut slot = Some(msg);
    Box::new(move |me: &Arc<dyn AnyCell>, mut room: Room| loop {
        let Some(msg) = slot.take() else {
            return Flush::Sent;
        };
        match target.try_push_with(msg, |m| m, room) {
            Ok(()) => return Flush::Sent,
            Err((SendError::Full(msg), _)) => {
                slot = Some(msg);
                if !me.try_mute(target.actor_id()) {
                    room = Room::Forced;
                    continue;
                }
                if target.wait_for_room(Waiter::Actor(me.clone())) {
                    return Flush::Full;
                }
            }
            Err(_) => return Flush::Dead,
        }
    })
}

struct IoSink<A: Actor, F> {
    cell: Weak<Cell<A>>,
    map: F,
}

impl<A, F> ReadySink for IoSink<A, F>
where
    A: Actor,
    F: Fn(Readiness) -> A::Msg + Send + Sync + 'static,
{
    fn ready(&self, readiness: Readiness) {
        if let Some(cell) = self.cell.upgrade() {
            cell.push_internal((self.map)(readiness));
        }
    }
}
