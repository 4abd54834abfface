//! `Runtime` (the owner: run, shut down) and `Handle` (what everything
//! else holds: schedule, timers, I/O registration, blocking work, hooks).
//!
//! Owns: the lifecycle (idle → running → shutting down → stopped) and the
//! shutdown sequence: `Before` hooks, `During` hooks, `After` hooks, then the
//! workers stop and are joined, then the blocking pool. Invariant: the
//! sequence runs once, on one thread; whoever else asks for it waits for it.
//! Must not touch: actor types (upper layers keep their per-runtime state in
//! the `layer_state` slot and hook into the phases).

use std::any::Any;
use std::io;
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::event::Source;
use mio::Interest;
use parking_lot::{Condvar, Mutex};

use crate::blocking::{BlockingPool, BlockingStats};
use crate::builder::{Builder, Signals};
use crate::error::RuntimeError;
use crate::events::{run_hook, Phase, SystemEvents};
use crate::reactor::{IoToken, Reactor, ReadySink};
use crate::scheduler::{spawn_workers, Scheduler};
use crate::signal::SignalPipe;
use crate::task::Task;
use crate::time::{Clock, MissedTicks, TimerKey, Timers};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lifecycle {
    Idle,
    Running,
    ShutdownRequested,
    ShuttingDown,
    Stopped,
}

struct Shared {
    scheduler: Arc<Scheduler>,
    reactor: Arc<Reactor>,
    timers: Arc<Timers>,
    blocking: Arc<BlockingPool>,
    events: SystemEvents,
    lifecycle: Mutex<Lifecycle>,
    changed: Condvar,
    workers: Mutex<Vec<JoinHandle<()>>>,
    layer: OnceLock<Arc<dyn Any + Send + Sync>>,
    shutdown_timeout: Duration,
}

/// A weft runtime: worker threads, the reactor, timers, the blocking pool.
///
/// Workers start in [`Builder::build`]; actors can be spawned at once.
/// [`Runtime::run`] runs the start-up hooks and blocks until a shutdown is
/// requested (from any thread with [`Handle::shutdown`], or by SIGINT or
/// SIGTERM), then shuts down in order. Dropping a runtime that did not run
/// shuts it down too, so no thread is left behind.
///
/// ```
/// use std::time::Duration;
/// use weft_runtime::Runtime;
///
/// let rt = Runtime::builder().workers(1).build().unwrap();
/// let handle = rt.handle().clone();
/// rt.handle().on_startup(move || handle.shutdown());
/// rt.run().unwrap(); // returns once the hook asked for shutdown
/// ```
pub struct Runtime {
    handle: Handle,
}

/// A cheap, cloneable, `Send + Sync` reference to a runtime.
///
/// ```
/// use std::time::Duration;
///
/// let rt = weft_runtime::Runtime::builder().build().unwrap();
/// let handle = rt.handle().clone();
/// // A Handle goes to any thread: timers, blocking work, shutdown.
/// std::thread::spawn(move || {
///     handle.call_later(Duration::from_millis(10), {
///         let h = handle.clone();
///         move || h.shutdown()
///     });
/// });
/// rt.run().unwrap();
/// ```
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("workers", &self.workers())
            .finish_non_exhaustive()
    }
}

fn os(what: &'static str) -> impl FnOnce(io::Error) -> RuntimeError {
    move |source| RuntimeError::Os { what, source }
}

impl Runtime {
    /// A builder with the default settings.
    pub fn builder() -> Builder {
        Builder::new()
    }

    pub(crate) fn start(b: Builder, clock: Clock) -> Result<Runtime, RuntimeError> {
        let reactor = Arc::new(Reactor::new().map_err(os("create the reactor"))?);
        if b.signals == Signals::GracefulShutdown {
            let pipe = SignalPipe::open(&reactor).map_err(os("open the signal pipe"))?;
            let _ = reactor.signal_pipe.set(pipe);
        }
        let sim = match (b.simulation, &clock) {
            (Some(seed), Clock::Manual(manual)) => {
                Some(crate::sim::SimCore::new(seed, manual.clone()))
            }
            _ => None,
        };
        let timers = Timers::new(clock, reactor.waker.clone());
        if let Some(sim) = &sim {
            sim.attach(&timers);
        }
        let scheduler = Arc::new(Scheduler::new(
            b.workers,
            b.budget,
            reactor.clone(),
            timers.clone(),
            sim,
        ));
        let blocking = BlockingPool::new(
            b.blocking_threads,
            b.blocking_queue,
            b.blocking_keep_alive,
            b.name.clone(),
        );
        let shared = Arc::new(Shared {
            scheduler: scheduler.clone(),
            reactor,
            timers,
            blocking,
            events: SystemEvents::new(),
            lifecycle: Mutex::new(Lifecycle::Idle),
            changed: Condvar::new(),
            workers: Mutex::new(Vec::new()),
            layer: OnceLock::new(),
            shutdown_timeout: b.shutdown_timeout,
        });
        let weak = Arc::downgrade(&shared);
        let on_signal: Box<dyn Fn() + Send + Sync> = Box::new(move || {
            if let Some(shared) = weak.upgrade() {
                tracing::info!("signal received: shutting down");
                Handle { shared }.shutdown();
            }
        });
        let _ = scheduler.on_signal.set(on_signal);
        if scheduler.sim.is_some() {
            // The driving thread runs every task.
            return Ok(Runtime {
                handle: Handle { shared },
            });
        }
        let mut handles =
            spawn_workers(&scheduler, &b.name).map_err(os("spawn a worker thread"))?;
        if let Some(threshold) = b.slow_turn {
            let report = b
                .on_slow_turn
                .clone()
                .unwrap_or_else(|| Arc::new(crate::watchdog::log));
            match crate::watchdog::spawn(scheduler.clone(), threshold, report, &b.name) {
                Ok(h) => {
                    let _ = scheduler.watchdog.set(h.thread().clone());
                    handles.push(h);
                }
                Err(e) => {
                    scheduler.shutdown();
                    for h in handles {
                        let _ = h.join();
                    }
                    return Err(RuntimeError::Os {
                        what: "spawn the watchdog thread",
                        source: e,
                    });
                }
            }
        }
        *shared.workers.lock() = handles;
        Ok(Runtime {
            handle: Handle { shared },
        })
    }

    /// The runtime's handle.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Runs start-up hooks, then blocks until shutdown is requested and the
    /// shutdown sequence has completed.
    ///
    /// The shutdown timeout ([`Builder::shutdown_timeout`]) bounds the
    /// whole sequence: a handler that does not return (a `loop {}`, a
    /// blocking call on a worker) or a blocking-pool job that does not end
    /// is left behind on its (detached) thread, and `run` returns
    /// [`RuntimeError::ShutdownTimedOut`] naming what was stuck, so a
    /// service manager's stop is never hung by one bad handler.
    pub fn run(&self) -> Result<(), RuntimeError> {
        let shared = &self.handle.shared;
        {
            let mut state = shared.lifecycle.lock();
            match *state {
                Lifecycle::Idle => *state = Lifecycle::Running,
                Lifecycle::ShutdownRequested => {}
                _ => return Err(RuntimeError::AlreadyRan),
            }
        }
        let installed = match shared.reactor.signal_pipe.get() {
            Some(pipe) => Some(pipe.install().map_err(os("install signal handlers"))?),
            None => None,
        };
        shared.events.run_startup();
        if let Some(sim) = self.handle.simulation() {
            // Simulated: run until a shutdown is asked for, or nothing is
            // left to happen.
            while *shared.lifecycle.lock() == Lifecycle::Running {
                if sim.step() == crate::Step::Idle {
                    tracing::info!("the simulation has nothing left to run; shutting down");
                    break;
                }
            }
        }
        {
            let mut state = shared.lifecycle.lock();
            while *state == Lifecycle::Running && self.handle.simulation().is_none() {
                shared.changed.wait(&mut state);
            }
        }
        drop(installed);
        self.handle.complete_shutdown()
    }

    /// Shuts down now (hooks, actors, workers, pool) and waits for it,
    /// at most about the shutdown timeout (see [`Runtime::run`] for what
    /// happens to a handler that does not return).
    pub fn shutdown_and_wait(self) -> Result<(), RuntimeError> {
        self.handle.complete_shutdown()
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // A shutdown that timed out was reported (logged) already.
        let _ = self.handle.complete_shutdown();
    }
}

impl Handle {
    /// Makes a task runnable (see [`Task`] for the contract).
    pub fn schedule(&self, task: Arc<dyn Task>) {
        self.shared.scheduler.schedule(task);
    }

    /// The number of worker threads.
    pub fn workers(&self) -> usize {
        self.shared.scheduler.workers
    }

    /// Messages an actor may handle per turn.
    pub fn turn_budget(&self) -> usize {
        self.shared.scheduler.budget
    }

    /// Whether `other` is a handle to the same runtime.
    pub fn same_runtime(&self, other: &Handle) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    // ---- time ----

    /// The runtime's clock.
    pub fn clock(&self) -> &Clock {
        self.shared.timers.clock()
    }

    /// Time since the runtime's clock started.
    pub fn now(&self) -> Duration {
        self.shared.timers.clock().now()
    }

    /// Runs `f` once, `delay` from now, on a worker thread. `f` should only
    /// hand work on (send a message); it must not block.
    pub fn call_later(&self, delay: Duration, f: impl FnOnce() + Send + 'static) -> TimerKey {
        self.shared.timers.once(delay, f)
    }

    /// Runs `f` every `period` (at least one tick), first one period from
    /// now; `missed` says what happens when it runs late.
    pub fn call_every(
        &self,
        period: Duration,
        missed: MissedTicks,
        f: impl Fn() + Send + Sync + 'static,
    ) -> TimerKey {
        self.shared.timers.every(period, missed, Arc::new(f))
    }

    /// Cancels a timer; false if it already fired or was cancelled.
    pub fn cancel_timer(&self, key: TimerKey) -> bool {
        self.shared.timers.cancel(key)
    }

    /// Moves a pending timer to `delay` from now; false if it is gone.
    pub fn reset_timer(&self, key: TimerKey, delay: Duration) -> bool {
        self.shared.timers.reset(key, delay)
    }

    /// Pushes a pending timer's deadline back by `by`; false if it is gone.
    pub fn delay_timer(&self, key: TimerKey, by: Duration) -> bool {
        self.shared.timers.delay(key, by)
    }

    /// A pending timer's deadline on the runtime's clock.
    pub fn timer_deadline(&self, key: TimerKey) -> Option<Duration> {
        self.shared.timers.deadline_of(key)
    }

    /// How many timers are pending.
    pub fn pending_timers(&self) -> usize {
        self.shared.timers.pending()
    }

    /// A snapshot of the runtime's counters: per worker, turns, steals,
    /// sleeps, reactor polls and time busy; timers pending; the blocking
    /// pool; registered I/O sources. The counters are always on (each
    /// worker writes its own; they are summed here), so this is cheap
    /// enough to call from a metrics endpoint on every scrape.
    ///
    /// ```
    /// let rt = weft_runtime::Runtime::builder().workers(2).build().unwrap();
    /// let h = rt.handle().clone();
    /// rt.handle().on_startup(move || {
    ///     let m = h.metrics();
    ///     assert_eq!(m.workers.len(), 2);
    ///     println!("{} turns, {} timers pending", m.turns(), m.timers_pending);
    ///     h.shutdown();
    /// });
    /// rt.run().unwrap();
    /// ```
    pub fn metrics(&self) -> crate::RuntimeMetrics {
        let (uptime, workers) = self.shared.scheduler.metrics();
        crate::RuntimeMetrics {
            uptime,
            workers,
            timers_pending: self.shared.timers.pending(),
            blocking: self.shared.blocking.stats(),
            io_sources: self.shared.scheduler.reactor.registered(),
        }
    }

    // ---- I/O ----

    /// Registers `source` with the reactor; its readiness goes to `sink`.
    pub fn register(
        &self,
        source: &mut dyn Source,
        interest: Interest,
        sink: Arc<dyn ReadySink>,
    ) -> io::Result<IoToken> {
        self.shared.reactor.register(source, interest, sink)
    }

    /// Changes the interest of a registered source.
    pub fn reregister(
        &self,
        source: &mut dyn Source,
        token: &IoToken,
        interest: Interest,
    ) -> io::Result<()> {
        self.shared.reactor.reregister(source, token, interest)
    }

    /// Removes a source; its sink is dropped and gets no more readiness.
    pub fn deregister(&self, source: &mut dyn Source, token: IoToken) -> io::Result<()> {
        self.shared.reactor.deregister(source, token)
    }

    /// Tells `sink` (with [`Readiness::READ`](crate::Readiness)) each time
    /// `signal` arrives, until the returned subscription is dropped
    /// (Twisted installs such handlers in its reactor; a service reloads
    /// its configuration on SIGHUP). Arrivals between two deliveries
    /// coalesce into one, as the kernel's do. An error for a signal that
    /// cannot be caught (SIGKILL, SIGSTOP, SIGSEGV, SIGILL, SIGFPE).
    /// Actors use `Ctx::on_signal`.
    pub fn subscribe_signal(
        &self,
        signal: crate::Signal,
        sink: Arc<dyn ReadySink>,
    ) -> io::Result<crate::signal::SignalSubscription> {
        crate::signal::SignalHub::get(&self.shared.reactor)?.subscribe(signal as i32, sink)
    }

    // ---- blocking work ----

    /// Runs `job` on the blocking pool. Refused with `BlockingPoolFull`
    /// when the pool is at its thread limit and its queue is full, with
    /// `ShuttingDown` after shutdown, with `Os` if no thread could start.
    pub fn spawn_blocking(&self, job: impl FnOnce() + Send + 'static) -> Result<(), RuntimeError> {
        if let Some(sim) = &self.shared.scheduler.sim {
            if self.is_shutting_down() {
                return Err(RuntimeError::ShuttingDown);
            }
            sim.spawn_job(Box::new(job));
            return Ok(());
        }
        self.shared.blocking.spawn(Box::new(job))
    }

    /// The driver of this runtime if it is a simulation
    /// ([`Builder::simulation`]).
    pub fn simulation(&self) -> Option<crate::Simulation> {
        self.shared
            .scheduler
            .sim
            .as_ref()
            .map(|core| crate::Simulation { core: core.clone() })
    }

    /// A snapshot of the blocking pool.
    pub fn blocking_stats(&self) -> BlockingStats {
        self.shared.blocking.stats()
    }

    // ---- lifecycle ----

    /// Runs `hook` when `run` starts (Twisted's `callWhenRunning`).
    ///
    /// Every hook registered before `run` has finished its start-up hooks
    /// runs exactly once, in registration order, on `run`'s thread. Once
    /// start-up is over, `hook` runs at once on the calling thread, before
    /// this returns.
    pub fn on_startup(&self, hook: impl FnOnce() + Send + 'static) {
        if let Some(hook) = self.shared.events.on_startup(Box::new(hook)) {
            run_hook(hook);
        }
    }

    /// Runs `hook` in `phase` of shutdown.
    pub fn on_shutdown(&self, phase: Phase, hook: impl FnOnce() + Send + 'static) {
        self.shared.events.on_shutdown(phase, Box::new(hook));
    }

    /// Asks for a graceful shutdown; returns at once. `run` then performs
    /// it. Callable from any thread, including from inside an actor.
    pub fn shutdown(&self) {
        let mut state = self.shared.lifecycle.lock();
        if matches!(*state, Lifecycle::Idle | Lifecycle::Running) {
            *state = Lifecycle::ShutdownRequested;
            self.shared.changed.notify_all();
        }
    }

    /// Whether `run` is running and no shutdown was asked for (Twisted's
    /// `reactor.running`): false before `run`, true from its start-up
    /// hooks on, false again once a shutdown is requested.
    pub fn is_running(&self) -> bool {
        *self.shared.lifecycle.lock() == Lifecycle::Running
    }

    /// Whether shutdown was asked for or has happened.
    pub fn is_shutting_down(&self) -> bool {
        !matches!(
            *self.shared.lifecycle.lock(),
            Lifecycle::Idle | Lifecycle::Running
        )
    }

    /// How long the `During` phase gives actors to stop.
    pub fn shutdown_timeout(&self) -> Duration {
        self.shared.shutdown_timeout
    }

    /// The per-runtime state of the layer above (weft-actors keeps its
    /// bookkeeping here), created by `init` on first use.
    ///
    /// Invariant: one layer type per runtime; a second type gets `None`.
    pub fn layer_state<T: Any + Send + Sync>(&self, init: impl FnOnce(&Handle) -> T) -> Option<&T> {
        self.shared
            .layer
            .get_or_init(|| Arc::new(init(self)))
            .downcast_ref::<T>()
    }

    /// Installs how slow-turn reports name a task (the actor layer does
    /// this, so reports say which actor held the worker).
    pub fn set_task_namer(&self, namer: impl Fn(u64) -> Option<String> + Send + Sync + 'static) {
        *self.shared.scheduler.namer.lock() = Some(Box::new(namer));
    }

    fn complete_shutdown(&self) -> Result<(), RuntimeError> {
        let shared = &self.shared;
        {
            let mut state = shared.lifecycle.lock();
            loop {
                match *state {
                    Lifecycle::Stopped => return Ok(()),
                    Lifecycle::ShuttingDown => shared.changed.wait(&mut state),
                    _ => break,
                }
            }
            *state = Lifecycle::ShuttingDown;
        }
        let started = Instant::now();
        shared.events.run_phase(Phase::Before);
        shared.events.run_phase(Phase::During);
        shared.events.run_phase(Phase::After);
        shared.scheduler.shutdown();
        // The timeout bounds the whole sequence, with a short grace for
        // threads that are merely finishing a turn.
        let deadline = (started + shared.shutdown_timeout).max(Instant::now() + JOIN_GRACE);
        let workers = std::mem::take(&mut *shared.workers.lock());
        let mut stuck = Vec::new();
        for (index, _detached) in join_until(workers, deadline) {
            stuck.push(match shared.scheduler.task_on(index) {
                Some(task) => task,
                None => format!("worker thread {index}"),
            });
        }
        let blocking = shared.blocking.shutdown_until(deadline);
        if blocking > 0 {
            stuck.push(format!("{blocking} blocking-pool job(s)"));
        }
        // Break the cycles runtime -> queued task/timer/sink -> handle.
        shared.scheduler.drain_injector();
        if let Some(sim) = self.simulation() {
            sim.clear();
        }
        shared.timers.clear();
        shared.reactor.clear_sinks();
        shared.scheduler.namer.lock().take();
        *shared.lifecycle.lock() = Lifecycle::Stopped;
        shared.changed.notify_all();
        if stuck.is_empty() {
            return Ok(());
        }
        tracing::error!(
            stuck = ?stuck,
            timeout = ?shared.shutdown_timeout,
            "shutdown timed out; the stuck threads are left behind"
        );
        Err(RuntimeError::ShutdownTimedOut { stuck })
    }
}

/// How long shutdown waits for threads that are finishing a turn, even
/// when the shutdown timeout has already passed.
const JOIN_GRACE: Duration = Duration::from_millis(50);

/// Joins the threads that end by `deadline` (never the calling thread,
/// which may be one of them); returns the index and handle of each that
/// did not. Those are detached when the handles drop.
pub(crate) fn join_until(
    threads: Vec<JoinHandle<()>>,
    deadline: Instant,
) -> Vec<(usize, JoinHandle<()>)> {
    let me = std::thread::current().id();
    let mut pending: Vec<(usize, JoinHandle<()>)> = threads
        .into_iter()
        .enumerate()
        .filter(|(_, t)| t.thread().id() != me)
        .collect();
    let mut pause = Duration::from_micros(100);
    loop {
        let (done, rest): (Vec<_>, Vec<_>) =
            pending.into_iter().partition(|(_, t)| t.is_finished());
        for (_, t) in done {
            let _ = t.join();
        }
        pending = rest;
        if pending.is_empty() || Instant::now() >= deadline {
            return pending;
        }
        std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("handle", &self.handle)
            .finish()
    }
}
