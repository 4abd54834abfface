//! `Builder`: every setting of a runtime, checked in `build()`.

use std::time::Duration;

use crate::error::RuntimeError;
use crate::runtime::Runtime;
use crate::time::{Clock, ManualClock};

/// Configures and builds a [`Runtime`].
///
/// ```
/// use weft_runtime::Runtime;
///
/// let rt = Runtime::builder()
///     .workers(2)
///     .turn_budget(64)
///     .blocking_threads(8)
///     .build()
///     .expect("valid settings");
/// assert_eq!(rt.handle().workers(), 2);
/// ```
#[must_use = "a Builder does nothing until `build` is called"]
#[derive(Clone)]
pub struct Builder {
    pub(crate) workers: usize,
    pub(crate) budget: usize,
    pub(crate) clock: Option<ManualClock>,
    pub(crate) blocking_threads: usize,
    pub(crate) blocking_queue: usize,
    pub(crate) blocking_keep_alive: Duration,
    pub(crate) signals: Signals,
    pub(crate) name: String,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) slow_turn: Option<Duration>,
    pub(crate) on_slow_turn: Option<crate::watchdog::Report>,
    pub(crate) simulation: Option<u64>,
}

/// Whether `Runtime::run` turns SIGINT and SIGTERM into a graceful
/// shutdown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signals {
    /// SIGINT and SIGTERM ask for a graceful shutdown while `run` runs.
    /// The self-pipe this needs is opened by `build` (so a program at its
    /// descriptor limit fails there, not in `run`). Several runtimes in
    /// one process may each use this: a signal shuts every running one
    /// down. While none runs, the signals keep the meaning they had before
    /// (by default, they terminate the process).
    GracefulShutdown,
    /// Leave the process's signal dispositions alone.
    Ignore,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("workers", &self.workers)
            .field("budget", &self.budget)
            .field("manual_clock", &self.clock.is_some())
            .field("blocking_threads", &self.blocking_threads)
            .field("blocking_queue", &self.blocking_queue)
            .field("signals", &self.signals)
            .field("name", &self.name)
            .field("slow_turn", &self.slow_turn)
            .finish_non_exhaustive()
    }
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            budget: 64,
            clock: None,
            blocking_threads: 64,
            blocking_queue: 4096,
            blocking_keep_alive: Duration::from_secs(10),
            signals: Signals::GracefulShutdown,
            name: "weft".to_string(),
            shutdown_timeout: Duration::from_secs(30),
            slow_turn: Some(Duration::from_millis(100)),
            on_slow_turn: None,
            simulation: None,
        }
    }
}

impl Builder {
    /// The default settings: one worker per core, budget 64, real clock.
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of scheduler worker threads (at least 1).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// One worker thread: every actor runs on it, one at a time.
    pub fn single_threaded(self) -> Self {
        self.workers(1)
    }

    /// How many messages an actor handles in one turn before it yields its
    /// worker to others (fairness). At least 1.
    pub fn turn_budget(mut self, budget: usize) -> Self {
        self.budget = budget;
        self
    }

    /// A deterministic simulation seeded with `seed` instead of worker
    /// threads: every task runs on the thread that drives
    /// [`Handle::simulation`](crate::Handle::simulation), the next chosen
    /// by the seed among the runnable ones; the clock is virtual and jumps
    /// to the next timer when nothing is runnable; blocking-pool jobs run
    /// as tasks. The OS's sockets are not polled: simulated programs use
    /// a simulated network. No signal handling, no watchdog.
    pub fn simulation(mut self, seed: u64) -> Self {
        self.simulation = Some(seed);
        self.workers = 1;
        self.signals = Signals::Ignore;
        self.slow_turn = None;
        self
    }

    /// Replace the real clock by a manual one (tests).
    pub fn manual_clock(mut self, clock: ManualClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The most threads the blocking pool starts (at least 1).
    pub fn blocking_threads(mut self, n: usize) -> Self {
        self.blocking_threads = n;
        self
    }

    /// How many jobs may wait for a blocking thread before submits are
    /// refused.
    pub fn blocking_queue(mut self, n: usize) -> Self {
        self.blocking_queue = n;
        self
    }

    /// How long an idle blocking thread waits for work before it exits.
    pub fn blocking_keep_alive(mut self, d: Duration) -> Self {
        self.blocking_keep_alive = d;
        self
    }

    /// What `run` does with SIGINT/SIGTERM.
    pub fn signals(mut self, signals: Signals) -> Self {
        self.signals = signals;
        self
    }

    /// The prefix of the runtime's thread names.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// How long the `During` shutdown phase waits for actors to stop before
    /// the runtime gives up on them.
    pub fn shutdown_timeout(mut self, d: Duration) -> Self {
        self.shutdown_timeout = d;
        self
    }

    /// A turn that holds its worker longer than this is reported (default
    /// 100 ms; `None` turns the watchdog off).
    pub fn slow_turn_threshold(mut self, threshold: Option<Duration>) -> Self {
        self.slow_turn = threshold;
        self
    }

    /// What to do with a slow turn (default: a `tracing` warning naming
    /// the actor).
    pub fn on_slow_turn(mut self, f: impl Fn(crate::SlowTurn) + Send + Sync + 'static) -> Self {
        self.on_slow_turn = Some(std::sync::Arc::new(f));
        self
    }

    /// Checks the settings and starts the worker threads.
    pub fn build(self) -> Result<Runtime, RuntimeError> {
        let invalid = |setting, reason: &str| {
            Err(RuntimeError::InvalidSetting {
                setting,
                reason: reason.to_string(),
            })
        };
        if self.workers == 0 {
            return invalid("workers", "must be at least 1");
        }
        if self.workers > 1024 {
            return invalid("workers", "must be at most 1024");
        }
        if self.budget == 0 {
            return invalid("turn_budget", "must be at least 1");
        }
        if self.blocking_threads == 0 {
            return invalid("blocking_threads", "must be at least 1");
        }
        if self.slow_turn.is_some_and(|t| t.is_zero()) {
            return invalid("slow_turn_threshold", "must be more than zero (or None)");
        }
        if self.name.is_empty() {
            return invalid("name", "must not be empty");
        }
        let clock = match (&self.clock, self.simulation) {
            (Some(manual), _) => Clock::Manual(manual.clone()),
            (None, Some(_)) => Clock::Manual(crate::ManualClock::new()),
            (None, None) => Clock::real(),
        };
        Runtime::start(self, clock)
    }
}
