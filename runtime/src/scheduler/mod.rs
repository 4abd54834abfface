//! The scheduler: worker threads, run queues, stealing, and the idle path.
//!
//! Owns: the global injector, each worker's stealer, the sleeper list and
//! the shutdown flag. Each worker's own deque and LIFO slot live in a
//! thread-local (`worker.rs`), so scheduling from a worker touches no shared
//! line.
//!
//! Invariants (see ARCHITECTURE.md, "Scheduler"):
//! * A sleeper is listed with its mode (driving the reactor, or parked);
//!   `notify_one` wakes it the way its mode says.
//! * No wake-up is lost: the handshake is `sleepers.rs` (loom-checked).
//!   A spinner that finds work while more is queued wakes another worker.
//!
//! Must not touch: what a task is (it only calls `Task::run`).

mod sleepers;
mod worker;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::Duration;

use crossbeam_deque::{Injector, Stealer};
use crossbeam_utils::CachePadded;
use parking_lot::Mutex;

use crate::reactor::Reactor;
use crate::task::Task;
use crate::time::Timers;
use crate::watchdog::WorkerSlot;
use sleepers::Sleepers;

pub use worker::on_worker_thread;
pub(crate) use worker::{spawn_workers, try_schedule_local};

pub(crate) type TaskRef = Arc<dyn Task>;

/// How to wake a sleeping worker: it blocks in `epoll_wait` (driving the
/// reactor: wake it through the reactor's waker) or in `park`.
struct Waker {
    thread: Thread,
    driving: bool,
}

pub(crate) struct Scheduler {
    injector: Injector<TaskRef>,
    stealers: OnceLock<Vec<Stealer<TaskRef>>>,
    sleepers: Sleepers<Waker>,
    shutdown: AtomicBool,
    pub(crate) budget: usize,
    pub(crate) workers: usize,
    pub(crate) reactor: Arc<Reactor>,
    pub(crate) timers: Arc<Timers>,
    /// Called by the driving worker when SIGINT/SIGTERM arrived.
    pub(crate) on_signal: OnceLock<Box<dyn Fn() + Send + Sync>>,
    /// One per worker: what it runs, for the watchdog.
    pub(crate) slots: Box<[CachePadded<WorkerSlot>]>,
    /// Names tasks for slow-turn reports (installed by the layer above;
    /// cleared at shutdown, since it may hold the runtime's handle).
    pub(crate) namer: Mutex<Option<Namer>>,
    /// The watchdog thread, woken at shutdown.
    pub(crate) watchdog: OnceLock<Thread>,
    /// When the worker threads started (for the metrics' busy time).
    pub(crate) started: OnceLock<std::time::Instant>,
    /// A simulation's runnable set, which replaces the queues.
    pub(crate) sim: Option<Arc<crate::sim::SimCore>>,
}

/// Names a task by id.
pub(crate) type Namer = Box<dyn Fn(u64) -> Option<String> + Send + Sync>;

impl Scheduler {
    pub(crate) fn new(
        workers: usize,
        budget: usize,
        reactor: Arc<Reactor>,
        timers: Arc<Timers>,
        sim: Option<Arc<crate::sim::SimCore>>,
    ) -> Self {
        Scheduler {
            injector: Injector::new(),
            stealers: OnceLock::new(),
            sleepers: Sleepers::new(workers),
            shutdown: AtomicBool::new(false),
            budget,
            workers,
            reactor,
            timers,
            on_signal: OnceLock::new(),
            slots: (0..workers).map(|_| CachePadded::default()).collect(),
            namer: Mutex::new(None),
            watchdog: OnceLock::new(),
            started: OnceLock::new(),
            sim,
        }
    }

    /// The workers' counters now.
    pub(crate) fn metrics(&self) -> (Duration, Vec<crate::WorkerMetrics>) {
        let uptime = self.started.get().map_or(Duration::ZERO, |t| t.elapsed());
        let workers = self
            .slots
            .iter()
            .map(|slot| {
                let mut idle = Duration::from_nanos(slot.idle_ns.load(Ordering::Relaxed));
                // A sleep in progress counts up to now.
                let since = slot.asleep_since.load(Ordering::Relaxed);
                if since > 0 {
                    idle += uptime.saturating_sub(Duration::from_nanos(since - 1));
                }
                let idle = idle.min(uptime);
                crate::WorkerMetrics {
                    turns: slot.turn.load(Ordering::Relaxed),
                    steals: slot.steals.load(Ordering::Relaxed),
                    parks: slot.parks.load(Ordering::Relaxed),
                    polls: slot.polls.load(Ordering::Relaxed),
                    idle,
                    busy: uptime.saturating_sub(idle),
                }
            })
            .collect();
        (uptime, workers)
    }

    /// What worker `index` is running right now, by name (or task id).
    pub(crate) fn task_on(&self, index: usize) -> Option<String> {
        let id = self.slots.get(index)?.task.load(Ordering::Relaxed);
        (id != 0).then(|| self.name_of(id).unwrap_or_else(|| format!("task {id}")))
    }

    /// The name the layer above gives task `id`, if any.
    pub(crate) fn name_of(&self, id: u64) -> Option<String> {
        self.namer.lock().as_ref().and_then(|namer| namer(id))
    }

    /// Makes `task` runnable: on this worker's LIFO slot when called from
    /// one of this scheduler's workers, else on the injector.
    pub(crate) fn schedule(&self, task: TaskRef) {
        if let Some(sim) = &self.sim {
            sim.schedule(task);
            return;
        }
        if let Err(task) = try_schedule_local(self, task) {
            self.injector.push(task);
            self.notify_one();
        }
    }

    /// Wakes one sleeping worker, if any (after work was pushed).
    pub(crate) fn notify_one(&self) {
        if let Some(waker) = self.sleepers.to_wake() {
            self.wake(&waker);
        }
    }

    fn wake(&self, w: &Waker) {
        if w.driving {
            if let Err(e) = self.reactor.waker.wake() {
                tracing::error!(error = %e, "failed to wake the reactor");
            }
        } else {
            w.thread.unpark();
        }
    }

    fn start_spinning(&self) {
        self.sleepers.start_spinning();
    }

    fn stop_spinning(&self) {
        self.sleepers.stop_spinning();
    }

    fn add_sleeper(&self, index: usize, driving: bool) {
        let thread = std::thread::current();
        self.sleepers.list(index, Waker { thread, driving });
    }

    fn remove_sleeper(&self, index: usize) {
        self.sleepers.unlist(index);
    }

    pub(crate) fn is_shutdown(&self) -> bool {
        self.shutdown.load(Ordering::Acquire)
    }

    /// Drops every task left in the injector (after the workers stopped).
    pub(crate) fn drain_injector(&self) {
        while !self.injector.steal().is_empty() {}
    }

    /// Tells every worker to exit after its current task, and wakes them.
    pub(crate) fn shutdown(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
        for w in self.sleepers.take_all() {
            self.wake(&w);
        }
        // A worker between listing itself and sleeping re-checks the flag;
        // the reactor wake covers a driver that is not listed yet.
        let _ = self.reactor.waker.wake();
        if let Some(watchdog) = self.watchdog.get() {
            watchdog.unpark();
        }
    }
}
