//! The mailbox: what waits for an actor, and what others registered on it.
//!
//! Owns: `Envelope` (user, internal, stop), `Queue` (the FIFO, first entry
//! inline), `Mailbox` (queue, counts, capacity, and the rarely used parts
//! boxed in `Rare`: blocked senders, pending signals, the exit record and
//! the watch table), and the `Cell` methods that push into it or take from
//! it.
//!
//! Invariants:
//! * A message is accepted only under the mailbox lock, only while the
//!   mailbox is open, and (for user messages) only while `len < capacity`
//!   and `weight < max_weight`;
//!   once closed nothing is accepted, so nothing is stranded in a dead cell.
//!   A forced push (a muted actor's held send at exit, or a send whose
//!   muting would close a cycle of muted actors) may exceed the capacity.
//! * Taking the mailbox empties it and wakes every blocked sender.
//! * Must not touch: the actor's state (`Inner`), which the runner owns.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use super::{AnyCell, Cell, Signal, ThreadHome, Waiter};
use crate::actor::Actor;
use crate::addr::SendError;
use crate::exit::{ActorId, Down, ExitReason};
use crate::system::System;

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
    pub(crate) const fn new() -> Self {
        Queue {
            first: None,
            rest: VecDeque::new(),
        }
    }

    #[inline]
    pub(crate) fn push(&mut self, e: Envelope<M>) {
        if self.first.is_none() && self.rest.is_empty() {
            self.first = Some(e);
        } else {
            self.rest.push_back(e);
        }
    }

    #[inline]
    pub(crate) fn pop(&mut self) -> Option<Envelope<M>> {
        self.first.take().or_else(|| self.rest.pop_front())
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.first.is_none() && self.rest.is_empty()
    }

    /// Empties the queue and gives its buffer back.
    pub(crate) fn take_all(&mut self) -> Queue<M> {
        std::mem::replace(self, Queue::new())
    }
}

/// A hasher for keys that are already unique integers (actor ids, monitor
/// references): one multiplication spreads them over the table.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Delivers a `Down` to a watcher (boxed: it carries the watcher's map).
pub(crate) type Deliver = Box<dyn FnOnce(Down) + Send>;

/// What another actor registered on this one, or this one on another.
/// Every entry is removed when either side exits, so an actor's table
/// holds only live relations.
pub(crate) enum Watch {
    /// Someone monitors this actor: deliver `Down` when it exits.
    MonitoredBy(Deliver),
    /// This actor monitors the target; on exit, remove the monitor there.
    Monitoring(Weak<dyn AnyCell>),
    /// A link: on exit, send the other an exit signal.
    Link(Weak<dyn AnyCell>),
    /// A child (spawned with `Ctx::spawn`): on exit, stop it.
    Child(Weak<dyn AnyCell>),
    /// This actor's parent: on exit, leave its table.
    Parent(Weak<dyn AnyCell>),
}

/// A key of the watch table: an actor id or a monitor reference (both from
/// one counter, so never equal) in the high bits, the kind in the low three.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) struct WatchKey(u64);

impl WatchKey {
    pub(crate) fn monitored_by(reference: u64) -> Self {
        WatchKey(reference << 3)
    }
    pub(crate) fn monitoring(reference: u64) -> Self {
        WatchKey((reference << 3) | 1)
    }
    pub(crate) fn link(other: u64) -> Self {
        WatchKey((other << 3) | 2)
    }
    pub(crate) fn child(child: u64) -> Self {
        WatchKey((child << 3) | 3)
    }
    pub(crate) fn parent(parent: u64) -> Self {
        WatchKey((parent << 3) | 4)
    }
    /// The actor id or monitor reference the key was made from.
    pub(crate) fn id(self) -> u64 {
        self.0 >> 3
    }
}

/// The watch table: a short vector while an actor has few relations (most
/// have none or one: a supervised child has its supervisor's monitor), a
/// hash map once it has many (a supervisor, a room).
pub(crate) enum WatchTable {
    Small(Vec<(WatchKey, Watch)>),
    Large(HashMap<WatchKey, Watch, BuildHasherDefault<IdHasher>>),
}

impl Default for WatchTable {
    fn default() -> Self {
        WatchTable::Small(Vec::new())
    }
}

impl WatchTable {
    /// Past this many entries the vector becomes a map.
    const SMALL: usize = 8;

    /// Adds (or replaces) the entry for `key`.
    pub(crate) fn insert(&mut self, key: WatchKey, entry: Watch) {
        match self {
            WatchTable::Small(v) => {
                if let Some(slot) = v.iter_mut().find(|(k, _)| *k == key) {
                    slot.1 = entry;
                } else if v.len() < Self::SMALL {
                    // One slot at a time: most tables hold one or two
                    // entries, and `push` would reserve four.
                    v.reserve_exact(1);
                    v.push((key, entry));
                } else {
                    let mut map: HashMap<_, _, _> = std::mem::take(v).into_iter().collect();
                    map.insert(key, entry);
                    *self = WatchTable::Large(map);
                }
            }
            WatchTable::Large(map) => {
                map.insert(key, entry);
            }
        }
    }

    /// Removes the entry for `key`; gives memory back once the table is
    /// mostly empty (a burst of watchers leaves nothing behind).
    pub(crate) fn remove(&mut self, key: WatchKey) -> Option<Watch> {
        match self {
            WatchTable::Small(v) => {
                let i = v.iter().position(|(k, _)| *k == key)?;
                let (_, entry) = v.swap_remove(i);
                if v.is_empty() {
                    *v = Vec::new();
                }
                Some(entry)
            }
            WatchTable::Large(map) => {
                let entry = map.remove(&key)?;
                if map.len() <= Self::SMALL / 2 {
                    *self = WatchTable::Small(std::mem::take(map).into_iter().collect());
                } else if map.capacity() > 64 && map.len() * 4 < map.capacity() {
                    map.shrink_to(map.len() * 2);
                }
                Some(entry)
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            WatchTable::Small(v) => v.len(),
            WatchTable::Large(map) => map.len(),
        }
    }

    /// The parent's id, if this actor was spawned by another (kind 4).
    pub(crate) fn parent(&self) -> Option<u64> {
        let is_parent = |k: &WatchKey| k.0 & 7 == 4;
        match self {
            WatchTable::Small(v) => v.iter().map(|(k, _)| *k).find(is_parent),
            WatchTable::Large(map) => map.keys().copied().find(is_parent),
        }
        .map(WatchKey::id)
    }

    /// Every entry, for the exit sequence.
    pub(crate) fn into_entries(self) -> Vec<(WatchKey, Watch)> {
        match self {
            WatchTable::Small(v) => v,
            WatchTable::Large(map) => map.into_iter().collect(),
        }
    }
}

#[derive(Default)]
pub(crate) struct Rare {
    pub(crate) waiters: Vec<Waiter>,
    pub(crate) signals: Vec<Signal>,
    pub(crate) watch: WatchTable,
    /// Why the actor exited (kept after exit for late monitors; absent
    /// means `Normal`).
    pub(crate) exit: Option<ExitReason>,
    /// Where a thread-worker actor runs (its cell's state says `HOMED`).
    pub(crate) home: Option<Arc<ThreadHome>>,
}

#[repr(C)]
pub(crate) struct Mailbox<M> {
    pub(crate) queue: Queue<M>,
    /// User messages in `queue`.
    pub(crate) len: u32,
    /// The most user messages `queue` may hold.
    pub(crate) capacity: u32,
    /// What the user messages in `queue` weigh (`Actor::weigh`).
    pub(crate) weight: u32,
    /// The mailbox is full once `weight` reaches this (`u32::MAX`: never).
    pub(crate) max_weight: u32,
    pub(crate) rare: Option<Box<Rare>>,
}

impl<M> Mailbox<M> {
    pub(crate) fn new(capacity: u32, max_weight: u32, home: Option<Arc<ThreadHome>>) -> Self {
        Mailbox {
            queue: Queue::new(),
            len: 0,
            capacity,
            weight: 0,
            max_weight,
            rare: home.map(|home| {
                Box::new(Rare {
                    home: Some(home),
                    ..Rare::default()
                })
            }),
        }
    }

    pub(crate) fn rare(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
    }

    #[inline]
    pub(crate) fn is_full(&self) -> bool {
        self.len >= self.capacity || self.weight >= self.max_weight
    }

    /// Removes a watch entry; frees the table's memory once it is mostly
    /// empty (a burst of watchers leaves nothing behind).
    pub(crate) fn unwatch(&mut self, key: WatchKey) -> Option<Watch> {
        self.rare.as_mut()?.watch.remove(key)
    }
}

/// How a push treats the capacity.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Room {
    /// Refuse a user message when the mailbox is full.
    Bounded,
    /// Accept it anyway (see the module invariants for when).
    Forced,
}

impl<A: Actor> Cell<A> {
    /// Accepts a user message built by `f` from `value`, if the mailbox is
    /// open and has room; otherwise hands `value` back.
    #[inline]
    pub(crate) fn push_with<T>(
        self: &Arc<Self>,
        value: T,
        f: impl FnOnce(T) -> A::Msg,
    ) -> Result<(), SendError<T>> {
        self.try_push_with(value, f, Room::Bounded)
            .map_err(|(e, _)| e)
    }

    /// As `push_with`, and on failure hands `f` back too, for a retry.
    #[inline]
    pub(crate) fn try_push_with<T, F: FnOnce(T) -> A::Msg>(
        self: &Arc<Self>,
        value: T,
        f: F,
        room: Room,
    ) -> Result<(), (SendError<T>, F)> {
        // Fast path: the receiver is idle. The sender that claims it owns
        // it until it is scheduled, so an empty turn buffer can take the
        // message directly, without the lock.
        if self.state.claim_idle() {
            // SAFETY: `claim_idle` made this thread the owner of the cell's
            // state until `schedule` below hands it to a runner (the run
            // queue orders these writes before that run); the last runner
            // finished with `inner` before its Release transition to idle,
            // which our AcqRel claim read.
            let inner = unsafe { &mut *self.inner.get() };
            let result = if inner.batch.is_empty() {
                inner.batch.push(Envelope::User(f(value)));
                Ok(())
            } else {
                // A muted actor keeps its batch; go through the mailbox so
                // the capacity still bounds what it holds.
                self.push_locked(value, f, room)
            };
            self.schedule();
            return result;
        }
        let result = self.push_locked(value, f, room);
        if result.is_ok() && self.state.notify_after_push() {
            self.schedule();
        }
        result
    }

    #[inline]
    fn push_locked<T, F: FnOnce(T) -> A::Msg>(
        &self,
        value: T,
        f: F,
        room: Room,
    ) -> Result<(), (SendError<T>, F)> {
        let mut mb = self.mailbox.lock();
        if self.state.is_closed() {
            return Err((SendError::Stopped(value), f));
        }
        if mb.is_full() && room == Room::Bounded {
            return Err((SendError::Full(value), f));
        }
        let msg = f(value);
        let weight = u32::try_from(A::weigh(&msg)).unwrap_or(u32::MAX);
        mb.len += 1;
        // Under the lock: only pushers write it.
        let len = u16::try_from(mb.len).unwrap_or(u16::MAX);
        if len > self.high.load(Ordering::Relaxed) {
            self.high.store(len, Ordering::Relaxed);
        }
        mb.weight = mb.weight.saturating_add(weight);
        mb.queue.push(Envelope::User(msg));
        Ok(())
    }

    /// Delivers a runtime-internal message (not counted against the
    /// capacity). Returns false if the actor has exited.
    #[inline]
    pub(crate) fn push_internal(self: &Arc<Self>, msg: A::Msg) -> bool {
        {
            let mut mb = self.mailbox.lock();
            if self.state.is_closed() {
                return false;
            }
            mb.queue.push(Envelope::Internal(msg));
        }
        if self.state.notify_after_push() {
            self.schedule();
        }
        true
    }

    /// A monitor this actor holds fired: drops its note and delivers the
    /// notice under one lock (a supervisor hears of every child's exit).
    pub(crate) fn push_monitor_notice(self: &Arc<Self>, reference: u64, msg: A::Msg) -> bool {
        {
            let mut mb = self.mailbox.lock();
            if self.state.is_closed() {
                return false;
            }
            mb.unwatch(WatchKey::monitoring(reference));
            mb.queue.push(Envelope::Internal(msg));
        }
        if self.state.notify_after_push() {
            self.schedule();
        }
        true
    }

    /// Queues a graceful stop behind the messages already queued.
    pub(crate) fn push_stop(self: &Arc<Self>, reason: ExitReason) -> bool {
        {
            let mut mb = self.mailbox.lock();
            if self.state.is_closed() {
                return false;
            }
            let reason = match reason {
                ExitReason::Normal => None,
                other => Some(Box::new(other)),
            };
            mb.queue.push(Envelope::Stop(reason));
        }
        if self.state.notify_after_push() {
            self.schedule();
        }
        true
    }

    /// Registers `w` to be woken when the mailbox has room again. Returns
    /// false (and registers nothing) if there is room now or the actor is
    /// gone: the caller should retry at once.
    pub(crate) fn wait_for_room(&self, w: Waiter) -> bool {
        let mut mb = self.mailbox.lock();
        if self.state.is_closed() || !mb.is_full() {
            return false;
        }
        mb.rare().waiters.push(w);
        self.state.set_waiters();
        true
    }

    /// Takes everything queued into the (empty) turn buffer. Taking empties
    /// the mailbox, so blocked senders are woken.
    #[inline]
    pub(crate) fn refill(&self, batch: &mut Queue<A::Msg>) -> bool {
        debug_assert!(batch.is_empty());
        let mut mb = self.mailbox.lock();
        if mb.queue.is_empty() {
            return false;
        }
        std::mem::swap(&mut mb.queue, batch);
        mb.len = 0;
        mb.weight = 0;
        if !self.state.take_waiters() {
            return true;
        }
        let waiters = mb
            .rare
            .as_mut()
            .map(|r| std::mem::take(&mut r.waiters))
            .unwrap_or_default();
        drop(mb);
        waiters.into_iter().for_each(Waiter::wake);
        true
    }

    pub(crate) fn take_signals(&self) -> Vec<Signal> {
        let mut mb = self.mailbox.lock();
        self.state.clear_signal();
        match mb.rare.as_mut() {
            Some(r) => std::mem::take(&mut r.signals),
            None => Vec::new(),
        }
    }

    /// The runner, about to hold a send for the full actor `on`: `true` if
    /// it may wait (it is muted on `on` from now on); `false` if `on`
    /// waits, directly or through other muted actors, on this one (or is
    /// this one), and the send must be forced instead: muting would close
    /// a cycle that nobody could break.
    pub(crate) fn try_mute(&self, on: ActorId) -> bool {
        System::get(&self.handle).mutes.try_mute(self.id, on)
    }

    /// The runner holds nothing any more.
    pub(crate) fn unmute(&self) {
        System::get(&self.handle).mutes.unmute(self.id);
    }
}
