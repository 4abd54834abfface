//! A snapshot of the runtime's counters ([`Handle::metrics`]): per worker,
//! turns, steals, sleeps, reactor polls and time busy; timers pending; the
//! blocking pool; registered I/O sources.
//!
//! Owns: nothing but the snapshot types. The counters live in each
//! worker's slot (`watchdog.rs`), written by that worker alone with
//! relaxed stores on its own cache line, and are summed only when read,
//! so they cost the hot path a load and a store each and are always on.
//! Must not touch: the actor layer (actor counts and mailboxes are the
//! layer above's own snapshot).
//!
//! [`Handle::metrics`]: crate::Handle::metrics

use std::time::Duration;

use crate::BlockingStats;

/// One worker thread's counters since the runtime started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerMetrics {
    /// Tasks run (an actor's turn is one).
    pub turns: u64,
    /// Tasks taken from other workers' queues.
    pub steals: u64,
    /// Times the worker went to sleep for want of work (in the reactor, or
    /// parked while another worker drove it).
    pub parks: u64,
    /// Reactor polls it made, waiting or not.
    pub polls: u64,
    /// Time asleep.
    pub idle: Duration,
    /// Time awake since the workers started (running tasks, looking for
    /// them, polling without waiting): `uptime - idle`.
    pub busy: Duration,
}

/// What [`Handle::metrics`](crate::Handle::metrics) returns.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct RuntimeMetrics {
    /// Since the worker threads started (zero before `run`).
    pub uptime: Duration,
    /// One entry per worker thread, in index order.
    pub workers: Vec<WorkerMetrics>,
    /// Timers armed and not yet fired or cancelled.
    pub timers_pending: usize,
    /// The blocking pool.
    pub blocking: BlockingStats,
    /// Sources registered with the reactor (sockets, pipes, watched
    /// descriptors).
    pub io_sources: usize,
}

impl RuntimeMetrics {
    /// Turns run by all workers.
    pub fn turns(&self) -> u64 {
        self.workers.iter().map(|w| w.turns).sum()
    }

    /// Steals by all workers.
    pub fn steals(&self) -> u64 {
        self.workers.iter().map(|w| w.steals).sum()
    }

    /// Sleeps of all workers.
    pub fn parks(&self) -> u64 {
        self.workers.iter().map(|w| w.parks).sum()
    }

    /// Reactor polls of all workers.
    pub fn polls(&self) -> u64 {
        self.workers.iter().map(|w| w.polls).sum()
    }

    /// Time busy, summed over the workers.
    pub fn busy(&self) -> Duration {
        self.workers.iter().map(|w| w.busy).sum()
    }
}
