//! Per-runtime actor bookkeeping: spawning, the set of live actors, and
//! stopping them all in the `During` phase of shutdown.
//!
//! Owns: the live-actor table (sharded by id), the live count, the join
//! handles of thread-worker actors, and the name table (see `registry.rs`).
//! Invariant: an actor is in the table from spawn until its exit completes;
//! shutdown stops every actor in it (repeatedly, until none is left or the
//! runtime's shutdown timeout passes) and joins thread-worker threads.
//! Must not touch: cells' internals (only the `AnyCell` face).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use parking_lot::{Condvar, Mutex};
use slab::Slab;
use weft_runtime::{Handle, Phase};

use crate::actor::Actor;
use crate::addr::Addr;
use crate::cell::{run_on_thread, AnyCell, Birth, Cell, Signal, ThreadHome};
use crate::exit::{ActorId, ExitReason};

/// The mailbox capacity of actors spawned without options.
pub const DEFAULT_CAPACITY: usize = 1024;

const SHARDS: usize = 32;

/// Strong references: an actor lives until it exits, whether or not anyone
/// holds its address (Erlang's semantics), so its timers and I/O keep
/// reaching it.
/// A slab per shard: dense (freed slots are reused), and the slot index
/// lives in the cell, so removal is O(1) with no hashing.
type Table = Slab<Arc<dyn AnyCell>>;

pub(crate) struct System {
    shards: Box<[Mutex<Table>]>,
    live: AtomicUsize,
    none_live: Condvar,
    none_live_lock: Mutex<()>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Actors still alive when shutdown gave up on them, by id: their
    /// names, so that the runtime can report what holds a worker after
    /// the live table was let go.
    left_behind: Mutex<Vec<(ActorId, String)>>,
    /// Which muted actor waits on which (see `MuteGraph`).
    pub(crate) mutes: MuteGraph,
    pub(crate) names: DashMap<Box<str>, (ActorId, Box<dyn std::any::Any + Send + Sync>)>,
    /// Per-runtime state of the layers above, one value per type
    /// (`extension`).
    extensions: DashMap<std::any::TypeId, Arc<dyn std::any::Any + Send + Sync>>,
    /// Told of every actor spawned (`on_spawn`).
    on_spawn: OnceLock<SpawnHook>,
}

type SpawnHook = Box<dyn Fn(ActorId) + Send + Sync>;

/// Options for [`Spawn::spawn_with`].
#[must_use = "options do nothing until passed to `spawn_with`"]
#[derive(Clone, Debug)]
pub struct SpawnOptions {
    capacity: usize,
    max_weight: Option<usize>,
}

impl Default for SpawnOptions {
    fn default() -> Self {
        SpawnOptions {
            capacity: DEFAULT_CAPACITY,
            max_weight: None,
        }
    }
}

impl SpawnOptions {
    /// Default options (capacity [`DEFAULT_CAPACITY`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// The mailbox capacity: how many user messages may wait (at least 1).
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// Also bounds the mailbox by weight: once the messages waiting weigh
    /// `max` or more in all (each as [`Actor::weigh`] says, e.g. its bytes),
    /// the mailbox is full, whatever their count. A message is accepted
    /// while the total is below `max`, so the total exceeds it by at most
    /// one message. A connection forwarding 64 KiB chunks to an actor
    /// with `max_weight(1 << 20)` parks at most about 1 MiB there, not
    /// `capacity` times 64 KiB. Values above `u32::MAX - 1` are clamped.
    pub fn max_weight(mut self, max: usize) -> Self {
        self.max_weight = Some(max);
        self
    }
}

/// Why an actor could not be spawned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpawnError {
    /// A mailbox needs room for at least one message.
    #[error("mailbox capacity must be at least 1")]
    ZeroCapacity,
    /// A weight limit must let at least one message in.
    #[error("mailbox weight limit must be at least 1")]
    ZeroWeight,
    /// A mailbox holds at most `u32::MAX` messages.
    #[error("mailbox capacity {0} is larger than {max}", max = u32::MAX)]
    CapacityTooLarge(usize),
    /// The OS refused the thread of a thread-worker actor.
    #[error("could not start the actor's thread")]
    Thread(#[source] std::io::Error),
}

/// Spawning actors on a runtime: implemented for `weft_runtime::Handle`.
///
/// ```
/// use weft_actors::{Actor, ActorResult, Ctx, Spawn, SpawnOptions};
///
/// struct Worker;
/// impl Actor for Worker {
///     type Msg = ();
///     fn handle(&mut self, _: (), _ctx: &mut Ctx<'_, Self>) -> ActorResult {
///         Ok(())
///     }
/// }
///
/// let rt = weft_runtime::Runtime::builder().build().unwrap();
/// let a = rt.handle().spawn(Worker);
/// // A small mailbox: senders are told `Full` (or muted) past 16 messages.
/// let b = rt.handle().spawn_with(Worker, SpawnOptions::new().capacity(16)).unwrap();
/// assert_ne!(a.id(), b.id());
/// assert_eq!(b.capacity(), 16);
/// ```
pub trait Spawn {
    /// Spawns `actor` on the runtime's workers with default options.
    fn spawn<A: Actor>(&self, actor: A) -> Addr<A>;

    /// Spawns `actor` with `options`.
    fn spawn_with<A: Actor>(&self, actor: A, options: SpawnOptions) -> Result<Addr<A>, SpawnError>;

    /// Spawns a thread-worker actor: it runs on its own OS thread (for a
    /// library that blocks), with the same `Addr` and messages as any
    /// other actor. The thread ends when the actor stops.
    fn spawn_thread<A: Actor>(
        &self,
        actor: A,
        options: SpawnOptions,
    ) -> Result<Addr<A>, SpawnError>;
}

/// The cell's start from the options (capacity and weight limit checked).
pub(crate) fn check(options: &SpawnOptions) -> Result<Birth, SpawnError> {
    let capacity = match u32::try_from(options.capacity) {
        Ok(0) => return Err(SpawnError::ZeroCapacity),
        Ok(c) => c,
        Err(_) => return Err(SpawnError::CapacityTooLarge(options.capacity)),
    };
    let mut birth = Birth::new(capacity);
    if let Some(max) = options.max_weight {
        if max == 0 {
            return Err(SpawnError::ZeroWeight);
        }
        birth.max_weight = u32::try_from(max).unwrap_or(u32::MAX - 1).min(u32::MAX - 1);
    }
    Ok(birth)
}

impl Spawn for Handle {
    fn spawn<A: Actor>(&self, actor: A) -> Addr<A> {
        spawn_cell(self, actor, Birth::new(DEFAULT_CAPACITY as u32), None)
    }

    fn spawn_with<A: Actor>(&self, actor: A, options: SpawnOptions) -> Result<Addr<A>, SpawnError> {
        Ok(spawn_cell(self, actor, check(&options)?, None))
    }

    fn spawn_thread<A: Actor>(
        &self,
        actor: A,
        options: SpawnOptions,
    ) -> Result<Addr<A>, SpawnError> {
        let home = ThreadHome::new();
        let system = System::get(self);
        let birth = Birth {
            home: Some(home.clone()),
            ..check(&options)?
        };
        let cell = system.insert(|id, slot| Cell::new(actor, self.clone(), id, slot, birth));
        let (thread_cell, thread_home) = (cell.clone(), home.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("weft-actor{}", cell.actor_id()))
            .spawn(move || run_on_thread(thread_cell, thread_home));
        let join = match spawned {
            Ok(join) => join,
            Err(e) => {
                system.exited(cell.actor_id(), cell.slot());
                return Err(SpawnError::Thread(e));
            }
        };
        let _ = home.thread.set(join.thread().clone());
        system.threads.lock().push(join);
        cell.start();
        Ok(Addr { cell })
    }
}

/// Creates an actor's cell, records it as `parent`'s child (before it can
/// run, so a child that exits at once still leaves the parent's table),
/// and makes it runnable.
pub(crate) fn spawn_cell<A: Actor>(
    handle: &Handle,
    actor: A,
    birth: Birth,
    parent: Option<&Arc<dyn AnyCell>>,
) -> Addr<A> {
    let system = System::get(handle);
    let cell = system.insert(|id, slot| Cell::new(actor, handle.clone(), id, slot, birth));
    if let Some(hook) = system.on_spawn.get() {
        hook(cell.actor_id());
    }
    if let Some(parent) = parent {
        cell.watch_set_parent(parent.id(), Arc::downgrade(parent));
        let child: Arc<dyn AnyCell> = cell.clone();
        parent.add_child(cell.actor_id(), Arc::downgrade(&child));
    }
    cell.start();
    Addr { cell }
}

impl System {
    fn new(handle: &Handle) -> Self {
        let namer_handle = handle.clone();
        handle.set_task_namer(move |id| System::of(&namer_handle)?.describe(ActorId(id)));
        let hook_handle = handle.clone();
        handle.on_shutdown(Phase::During, move || {
            if let Some(system) = System::of(&hook_handle) {
                system.stop_all(&hook_handle);
            }
        });
        System {
            shards: (0..SHARDS).map(|_| Mutex::new(Table::default())).collect(),
            live: AtomicUsize::new(0),
            none_live: Condvar::new(),
            none_live_lock: Mutex::new(()),
            threads: Mutex::new(Vec::new()),
            left_behind: Mutex::new(Vec::new()),
            mutes: MuteGraph::default(),
            names: DashMap::new(),
            extensions: DashMap::new(),
            on_spawn: OnceLock::new(),
        }
    }

    /// The actor layer's state of `handle`'s runtime.
    pub(crate) fn of(handle: &Handle) -> Option<&System> {
        handle.layer_state(System::new)
    }

    pub(crate) fn get(handle: &Handle) -> &System {
        Self::of(handle).expect("weft-actors is the only layer that stores runtime state")
    }

    fn shard(&self, id: ActorId) -> &Mutex<Table> {
        &self.shards[(id.0 as usize) % SHARDS]
    }

    /// Creates a cell with a fresh id in a slot of the live table.
    fn insert<A: Actor>(&self, make: impl FnOnce(ActorId, u32) -> Arc<Cell<A>>) -> Arc<Cell<A>> {
        let id = ActorId::next();
        self.live.fetch_add(1, Ordering::AcqRel);
        let mut table = self.shard(id).lock();
        let entry = table.vacant_entry();
        let slot = u32::try_from(entry.key()).expect("fewer than 2^32 actors per shard");
        let cell = make(id, slot);
        entry.insert(cell.clone());
        cell
    }

    pub(crate) fn exited(&self, id: ActorId, slot: u32) {
        self.shard(id).lock().try_remove(slot as usize);
        if self.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            let _guard = self.none_live_lock.lock();
            self.none_live.notify_all();
        }
    }

    /// Every cell in the live table (each shard locked in turn, briefly).
    pub(crate) fn cells(&self) -> Vec<Arc<dyn AnyCell>> {
        let mut out = Vec::with_capacity(self.live());
        for shard in self.shards.iter() {
            out.extend(shard.lock().iter().map(|(_, c)| c.clone()));
        }
        out
    }

    /// The live cell with `id` (a scan of one shard: only for
    /// diagnostics).
    pub(crate) fn cell(&self, id: ActorId) -> Option<Arc<dyn AnyCell>> {
        self.shard(id)
            .lock()
            .iter()
            .find(|(_, c)| c.id() == id)
            .map(|(_, c)| c.clone())
    }

    /// The type and id of a live actor (a scan of one shard: only for
    /// diagnostics).
    fn describe(&self, id: ActorId) -> Option<String> {
        let live = self
            .shard(id)
            .lock()
            .iter()
            .find(|(_, c)| c.id() == id)
            .map(|(_, c)| c.describe());
        live.or_else(|| {
            self.left_behind
                .lock()
                .iter()
                .find(|(i, _)| *i == id)
                .map(|(_, name)| name.clone())
        })
    }

    /// How many actors are alive on this runtime.
    pub(crate) fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    fn stop_all(&self, handle: &Handle) {
        let deadline = Instant::now() + handle.shutdown_timeout();
        loop {
            let cells: Vec<Arc<dyn AnyCell>> = self
                .shards
                .iter()
                .flat_map(|s| s.lock().iter().map(|(_, c)| c.clone()).collect::<Vec<_>>())
                .collect();
            for cell in cells {
                cell.signal(Signal::Kill(ExitReason::Shutdown));
            }
            if let Some(sim) = handle.simulation() {
                // Simulated: this thread runs the stopping actors (and
                // the timers they may wait for) itself.
                let stopped = sim.run_until(handle.shutdown_timeout(), || self.live() == 0);
                if stopped || sim.runnable() == 0 {
                    break;
                }
                continue;
            }
            // Wait a little, then look again: actors may spawn others while
            // they stop, and those must be stopped too.
            let mut guard = self.none_live_lock.lock();
            if self.live() > 0 {
                let step = (Instant::now() + Duration::from_millis(20)).min(deadline);
                self.none_live.wait_until(&mut guard, step);
            }
            drop(guard);
            if self.live() == 0 || Instant::now() >= deadline {
                break;
            }
        }
        if self.live() > 0 {
            let left: Vec<(ActorId, String)> = self
                .shards
                .iter()
                .flat_map(|s| {
                    s.lock()
                        .iter()
                        .map(|(_, c)| (c.id(), c.describe()))
                        .collect::<Vec<_>>()
                })
                .collect();
            tracing::error!(
                live = left.len(),
                actors = ?left.iter().map(|(_, name)| name).collect::<Vec<_>>(),
                "actors still running after the shutdown timeout"
            );
            *self.left_behind.lock() = left;
        }
        // Whatever did not stop is let go, so the runtime can be freed.
        for shard in self.shards.iter() {
            shard.lock().clear();
        }
        let threads = std::mem::take(&mut *self.threads.lock());
        for t in threads {
            if t.is_finished() || self.live() == 0 {
                let _ = t.join();
            }
        }
    }
}

/// The wait-for graph of muted actors: an edge `a → b` while actor `a`
/// holds a send for the full actor `b`. Muting is the slow path of a send,
/// so one lock per runtime serializes the decisions, and a decision sees
/// every earlier one: two actors that fill each other's mailboxes at the
/// same moment cannot both wait.
#[derive(Default)]
pub(crate) struct MuteGraph {
    edges: Mutex<HashMap<ActorId, ActorId>>,
}

impl MuteGraph {
    /// Longer wait chains are treated as cycles (the send is forced).
    const MAX_CHAIN: usize = 64;

    /// Records `who → on` unless `on` waits on `who` (or is `who`).
    pub(crate) fn try_mute(&self, who: ActorId, on: ActorId) -> bool {
        let mut edges = self.edges.lock();
        let mut at = on;
        for _ in 0..Self::MAX_CHAIN {
            if at == who {
                return false;
            }
            match edges.get(&at) {
                Some(next) => at = *next,
                None => {
                    edges.insert(who, on);
                    return true;
                }
            }
        }
        false
    }

    /// `who` holds nothing any more.
    pub(crate) fn unmute(&self, who: ActorId) {
        let mut edges = self.edges.lock();
        if edges.remove(&who).is_some() && edges.is_empty() && edges.capacity() > 1024 {
            edges.shrink_to_fit();
        }
    }
}

/// Per-runtime state for the layers above the actors (the I/O layer's
/// list of listeners, say): one value of each type per runtime, made by
/// `init` on first use and shared after.
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
///
/// #[derive(Default)]
/// struct Opened(AtomicUsize);
///
/// let rt = weft_runtime::Runtime::builder().build().unwrap();
/// weft_actors::extension(rt.handle(), Opened::default).0.fetch_add(1, Ordering::Relaxed);
/// let n = weft_actors::extension(rt.handle(), Opened::default).0.load(Ordering::Relaxed);
/// assert_eq!(n, 1);
/// ```
pub fn extension<T: std::any::Any + Send + Sync>(
    handle: &Handle,
    init: impl FnOnce() -> T,
) -> Arc<T> {
    let system = System::get(handle);
    let entry = system
        .extensions
        .entry(std::any::TypeId::of::<T>())
        .or_insert_with(|| Arc::new(init()))
        .clone();
    // The map's key is T's TypeId, so the value is a T.
    entry
        .downcast::<T>()
        .unwrap_or_else(|_| unreachable!("an extension stored under another type's id"))
}

/// The live actor with `id`, as an [`AnyAddr`](crate::AnyAddr) (to stop
/// or kill it), or `None` if it exited or never was.
pub fn actor_by_id(handle: &Handle, id: ActorId) -> Option<crate::AnyAddr> {
    let cell = System::of(handle)?.cell(id)?;
    Some(crate::AnyAddr { cell })
}

/// Installs `hook`, called with each new actor's id as it is spawned,
/// before it can run, on the spawning thread (the simulator uses it to
/// place actors on simulated hosts). One hook per runtime: false if one
/// was installed already.
pub fn on_spawn(handle: &Handle, hook: impl Fn(ActorId) + Send + Sync + 'static) -> bool {
    System::get(handle).on_spawn.set(Box::new(hook)).is_ok()
}

/// How many actors are alive on `handle`'s runtime (spawned and not yet
/// exited).
pub fn live_actors(handle: &Handle) -> usize {
    System::get(handle).live()
}
