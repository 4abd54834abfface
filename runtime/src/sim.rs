//! Deterministic simulation: a runtime whose tasks all run on the thread
//! that drives it, one at a time, the next chosen by a seeded generator
//! among the runnable ones; whose clock is virtual and jumps to the next
//! timer when nothing is runnable; and whose blocking-pool jobs run
//! inline, at a seeded point, like any other task. The same seed gives the
//! same sequence of turns, which the trace hash summarises.
//!
//! Owns: the runnable set, the generator, the virtual clock's advance,
//! and the trace. Must not touch: what a task is (it only calls
//! `Task::run`), or the layers above (they add their own events with
//! [`Simulation::record`] and draw from [`Simulation::random`]).
//!
//! Invariants:
//! * Only the driving thread runs tasks; while one runs,
//!   [`on_worker_thread`](crate::on_worker_thread) is true (a handler
//!   that would block is refused as on a worker).
//! * The runnable set is kept in task-id order, so the choice depends on
//!   the seed and on which tasks are runnable, not on the order in which
//!   they became runnable.
//! * Time moves only in [`Simulation::step`] (to the next timer, when
//!   nothing is runnable) and [`Simulation::run_for`] (to its end).

use std::cell::Cell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::scheduler::TaskRef;
use crate::task::Task;
use crate::time::{ManualClock, Timers};

thread_local! {
    /// Set while a simulated task runs on this thread.
    static IN_TURN: Cell<bool> = const { Cell::new(false) };
}

/// Whether a simulated task is running on this thread.
pub(crate) fn in_sim_turn() -> bool {
    IN_TURN.with(Cell::get)
}

/// The seed to use: `WEFT_SEED` when set (to reproduce a reported run),
/// else `default`.
///
/// ```
/// let seed = weft_runtime::seed_from_env(7);
/// assert!(std::env::var("WEFT_SEED").is_ok() || seed == 7);
/// ```
pub fn seed_from_env(default: u64) -> u64 {
    std::env::var("WEFT_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(default)
}

/// A seed whose run broke the scenario's invariants
/// ([`check_seeds`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("seed {seed} failed (run {run} of the check): {error}; reproduce it with WEFT_SEED={seed}")]
pub struct SeedFailure {
    /// The seed.
    pub seed: u64,
    /// Which run of the check it was (1 for the first).
    pub run: u64,
    /// What the scenario reported, or its panic's message.
    pub error: String,
}

/// Runs `scenario` once per seed, in order, and stops at the first that
/// returns an error or panics, reporting its seed. With `WEFT_SEED` set,
/// runs only that seed (to reproduce a failure). Returns how many seeds
/// ran.
///
/// ```
/// let ran = weft_runtime::check_seeds(0..20, |seed| {
///     if seed == 13 { Err("unlucky".into()) } else { Ok(()) }
/// });
/// if std::env::var("WEFT_SEED").is_err() {
///     let failure = ran.unwrap_err();
///     assert_eq!((failure.seed, failure.run), (13, 14));
/// }
/// ```
pub fn check_seeds(
    seeds: impl IntoIterator<Item = u64>,
    mut scenario: impl FnMut(u64) -> Result<(), String>,
) -> Result<u64, SeedFailure> {
    let only = std::env::var("WEFT_SEED")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    let seeds: Box<dyn Iterator<Item = u64>> = match only {
        Some(seed) => Box::new(std::iter::once(seed)),
        None => Box::new(seeds.into_iter()),
    };
    let mut run = 0;
    for seed in seeds {
        run += 1;
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| scenario(seed)));
        let error = match outcome {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e,
            Err(panic) => panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into()),
        };
        return Err(SeedFailure { seed, run, error });
    }
    Ok(run)
}

/// One event of a simulation's trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceEvent {
    /// What happened: 1 a turn (`word`: the task, numbered by its first
    /// turn), 2 a jump of the clock (`word`: the deadline in ns), 3 an
    /// injected slow turn (`word`: its length in ns); 16 and up, events
    /// of the layers above (`Simulation::record`'s `kind` + 16).
    pub kind: u64,
    /// When, on the virtual clock.
    pub at: Duration,
    /// Its detail.
    pub word: u64,
}

/// Two runs of one seed that did not do the same
/// ([`check_determinism`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "seed {seed} ran differently twice: the traces part at event {index} ({first:?} then {second:?}); something outside the simulation decides (a clock read, a thread, a hash map's order, OS randomness)"
)]
pub struct Nondeterminism {
    /// The seed.
    pub seed: u64,
    /// The first event that differs.
    pub index: usize,
    /// That event in the first run (`None`: the run had ended).
    pub first: Option<TraceEvent>,
    /// And in the second.
    pub second: Option<TraceEvent>,
}

/// Runs `scenario` twice for each seed (it builds its simulation, keeps
/// its trace with [`Simulation::keep_trace`] and returns
/// [`Simulation::trace_events`]) and reports the first seed whose two
/// runs differ, with the first event where they part: the check that a
/// program's behaviour depends on the seed alone.
///
/// ```
/// use std::time::Duration;
/// use weft_runtime::{check_determinism, Runtime};
///
/// let checked = check_determinism(0..3, |seed| {
///     let rt = Runtime::builder().simulation(seed).build().unwrap();
///     let sim = rt.handle().simulation().unwrap();
///     sim.keep_trace();
///     rt.handle().call_later(Duration::from_secs(1), || {});
///     sim.run_for(Duration::from_secs(2));
///     sim.trace_events()
/// });
/// assert!(checked.is_ok());
/// ```
pub fn check_determinism(
    seeds: impl IntoIterator<Item = u64>,
    mut scenario: impl FnMut(u64) -> Vec<TraceEvent>,
) -> Result<(), Nondeterminism> {
    for seed in seeds {
        let a = scenario(seed);
        let b = scenario(seed);
        if a != b {
            let index = a
                .iter()
                .zip(&b)
                .position(|(x, y)| x != y)
                .unwrap_or(a.len().min(b.len()));
            return Err(Nondeterminism {
                seed,
                index,
                first: a.get(index).copied(),
                second: b.get(index).copied(),
            });
        }
    }
    Ok(())
}

/// SplitMix64: small, fast, and good enough to choose among tasks.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// The trace: a running hash of its events, word by word, and (when
/// asked for) the events themselves.
#[derive(Debug)]
struct Trace {
    hash: u64,
    events: u64,
    /// Kept only after `Simulation::keep_trace`.
    log: Option<Vec<TraceEvent>>,
    /// Task ids as first seen (ids are process-wide; their order of
    /// first appearance is what a run determines).
    seen: HashMap<u64, u64, BuildHasherDefault<IdHasher>>,
}

impl Trace {
    fn mix(&mut self, word: u64) {
        // One multiply-xorshift round per word (FNV's prime, then a
        // fold of the high bits): order-sensitive and cheap.
        self.hash = (self.hash ^ word).wrapping_mul(0x0100_0000_01b3);
        self.hash ^= self.hash >> 29;
    }
}

/// Hashes a task id for the `seen` map (ids are already well spread).
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// What one lock guards: the runnable set, the generator, the trace.
struct State {
    rng: Rng,
    /// Slow turns: the chance of one, and the most it takes.
    slow: (f64, Duration),
    /// Runnable tasks, sorted by id.
    ready: Vec<(u64, TaskRef)>,
    trace: Trace,
}

pub(crate) struct SimCore {
    seed: u64,
    state: Mutex<State>,
    clock: ManualClock,
    timers: std::sync::OnceLock<std::sync::Weak<Timers>>,
    turns: AtomicU64,
    /// Ids for blocking jobs (above every actor id).
    next_job: AtomicU64,
    /// Told of each turn's task before it runs (`None` after).
    turn_hook: std::sync::OnceLock<TurnHook>,
}

type TurnHook = Box<dyn Fn(Option<u64>) + Send + Sync>;

impl SimCore {
    pub(crate) fn new(seed: u64, clock: ManualClock) -> Arc<SimCore> {
        Arc::new(SimCore {
            seed,
            state: Mutex::new(State {
                rng: Rng(seed),
                slow: (0.0, Duration::ZERO),
                ready: Vec::new(),
                trace: Trace {
                    hash: 0xcbf2_9ce4_8422_2325,
                    events: 0,
                    log: None,
                    seen: HashMap::default(),
                },
            }),
            clock,
            timers: std::sync::OnceLock::new(),
            turns: AtomicU64::new(0),
            next_job: AtomicU64::new(1 << 62),
            turn_hook: std::sync::OnceLock::new(),
        })
    }

    pub(crate) fn attach(&self, timers: &Arc<Timers>) {
        let _ = self.timers.set(Arc::downgrade(timers));
    }

    /// Makes `task` runnable.
    pub(crate) fn schedule(&self, task: TaskRef) {
        let id = task.id();
        let mut st = self.state.lock();
        let at = st.ready.partition_point(|(other, _)| *other < id);
        st.ready.insert(at, (id, task));
    }

    /// A blocking-pool job, run as a task at a seeded point.
    pub(crate) fn spawn_job(&self, job: Box<dyn FnOnce() + Send>) {
        let id = self.next_job.fetch_add(1, Ordering::Relaxed);
        self.schedule(Arc::new(Job {
            id,
            job: Mutex::new(Some(job)),
        }));
    }

    fn random(&self) -> u64 {
        self.state.lock().rng.next()
    }

    fn record(&self, kind: u64, word: u64) {
        let now = self.clock.now().as_nanos() as u64;
        let mut st = self.state.lock();
        Self::record_in(&mut st.trace, kind, now, word);
    }

    fn record_in(t: &mut Trace, kind: u64, now: u64, word: u64) {
        if let Some(log) = &mut t.log {
            log.push(TraceEvent {
                kind,
                at: Duration::from_nanos(now),
                word,
            });
        }
        t.events += 1;
        t.mix(kind);
        t.mix(now);
        t.mix(word);
    }

    /// Runs one runnable task, if any.
    fn run_one(&self) -> bool {
        let now = self.clock.now().as_nanos() as u64;
        let (id, task) = {
            let mut st = self.state.lock();
            if st.ready.is_empty() {
                return false;
            }
            let at = (st.rng.next() % st.ready.len() as u64) as usize;
            let (id, task) = st.ready.remove(at);
            let n = st.trace.seen.len() as u64;
            let normal = *st.trace.seen.entry(id).or_insert(n);
            Self::record_in(&mut st.trace, 1, now, normal);
            (id, task)
        };
        self.turns.fetch_add(1, Ordering::Relaxed);
        let hook = self.turn_hook.get();
        if let Some(hook) = hook {
            hook(Some(id));
        }
        IN_TURN.with(|c| c.set(true));
        task.run();
        IN_TURN.with(|c| c.set(false));
        if let Some(hook) = hook {
            hook(None);
        }
        self.maybe_slow();
        true
    }

    /// An injected slow turn: the clock moves on while the turn "ran"
    /// (timers due meanwhile fire).
    fn maybe_slow(&self) {
        let took = {
            let mut st = self.state.lock();
            let (p, max) = st.slow;
            if p <= 0.0 || ((st.rng.next() >> 11) as f64 / (1u64 << 53) as f64) >= p {
                return;
            }
            let nanos = max.as_nanos() as u64;
            let took = Duration::from_nanos(st.rng.next() % nanos.max(1) + 1);
            let now = self.clock.now().as_nanos() as u64;
            Self::record_in(&mut st.trace, 3, now, took.as_nanos() as u64);
            took
        };
        self.clock.advance(took);
    }

    fn next_deadline(&self) -> Option<Duration> {
        self.timers.get()?.upgrade()?.next_deadline()
    }
}

/// A blocking-pool job in a simulation.
struct Job {
    id: u64,
    job: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl Task for Job {
    fn run(self: Arc<Self>) {
        if let Some(job) = self.job.lock().take() {
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
                tracing::error!("a blocking job panicked in the simulation");
            }
        }
    }

    fn id(&self) -> u64 {
        self.id
    }
}

/// What one [`Simulation::step`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Ran one task's turn.
    Ran,
    /// Nothing was runnable: virtual time jumped to the next timer (now
    /// this), which fired.
    Advanced(Duration),
    /// Nothing was runnable and no timer is pending.
    Idle,
}

/// The driver of a simulated runtime ([`Builder::simulation`]): runs its
/// tasks on the calling thread, chosen by the seed, and moves its virtual
/// clock. Cheap to clone; every clone drives the same simulation (from
/// one thread at a time).
///
/// [`Builder::simulation`]: crate::Builder::simulation
///
/// ```
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use std::sync::Arc;
/// use std::time::Duration;
/// use weft_runtime::Runtime;
///
/// let rt = Runtime::builder().simulation(42).build().unwrap();
/// let sim = rt.handle().simulation().unwrap();
/// let fired = Arc::new(AtomicBool::new(false));
/// let f = fired.clone();
/// rt.handle().call_later(Duration::from_secs(3600), move || f.store(true, Ordering::SeqCst));
/// sim.run_for(Duration::from_secs(3601)); // an hour passes at once
/// assert!(fired.load(Ordering::SeqCst));
/// assert_eq!(sim.now(), Duration::from_secs(3601));
/// ```
#[derive(Clone)]
pub struct Simulation {
    pub(crate) core: Arc<SimCore>,
}

impl std::fmt::Debug for Simulation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulation")
            .field("seed", &self.core.seed)
            .field("now", &self.now())
            .field("turns", &self.turns())
            .finish()
    }
}

impl Simulation {
    /// The seed this simulation was built with.
    pub fn seed(&self) -> u64 {
        self.core.seed
    }

    /// Virtual time since the simulation started.
    pub fn now(&self) -> Duration {
        self.core.clock.now()
    }

    /// Runs one runnable task (chosen by the seed); when none is, moves
    /// virtual time to the next timer and fires it.
    pub fn step(&self) -> Step {
        if self.core.run_one() {
            Step::Ran
        } else if self.jump(Duration::MAX) {
            Step::Advanced(self.now())
        } else {
            Step::Idle
        }
    }

    /// Moves the clock to the next timer's deadline, firing what is
    /// due, if that is no later than `end`; whether it did.
    fn jump(&self, end: Duration) -> bool {
        match self.core.next_deadline() {
            Some(at) if at <= end => {
                let now = self.now();
                self.core.record(2, at.as_nanos() as u64);
                self.core.clock.advance(at.saturating_sub(now));
                true
            }
            _ => false,
        }
    }

    /// Runs runnable tasks until none is, without moving time; how many
    /// turns ran.
    pub fn run_ready(&self) -> u64 {
        let mut n = 0;
        while self.core.run_one() {
            n += 1;
        }
        n
    }

    /// Runs the simulation for `d` of virtual time: tasks, then timers as
    /// they come due, until the next event would be later than `d` from
    /// now; the clock then stands at exactly that point.
    pub fn run_for(&self, d: Duration) {
        let end = self.now().saturating_add(d);
        while self.core.run_one() || self.jump(end) {}
        let now = self.now();
        if end > now {
            self.core.clock.advance(end - now);
            self.run_ready();
        }
    }

    /// Runs until `done` holds (checked after each step) or `limit` of
    /// virtual time has passed; whether it held. Stops early, false, if
    /// nothing is left to run and no timer is pending.
    pub fn run_until(&self, limit: Duration, mut done: impl FnMut() -> bool) -> bool {
        let end = self.now().saturating_add(limit);
        loop {
            if done() {
                return true;
            }
            if !self.core.run_one() && !self.jump(end) {
                return done();
            }
        }
    }

    /// The next number from the simulation's generator (for the layers
    /// above: latencies, losses, injected faults).
    pub fn random(&self) -> u64 {
        self.core.random()
    }

    /// True with probability `p` (drawn from the generator).
    pub fn chance(&self, p: f64) -> bool {
        ((self.core.random() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    /// Injects slow turns: after each turn, with probability `p`, the
    /// virtual clock moves on by up to `max` as if the turn had taken
    /// that long (timers due meanwhile fire, so timeouts race the work).
    /// `p` 0 (the default) turns it off.
    pub fn set_slow_turns(&self, p: f64, max: Duration) {
        self.core.state.lock().slow = (p.clamp(0.0, 1.0), max);
    }

    /// A duration drawn uniformly from `low..=high`.
    pub fn between(&self, low: Duration, high: Duration) -> Duration {
        if high <= low {
            return low;
        }
        let span = (high - low).as_nanos() as u64;
        low + Duration::from_nanos(self.core.random() % (span + 1))
    }

    /// Adds an event of the layers above (a delivery, a fault) to the
    /// trace: `kind` names what happened, `word` its detail.
    pub fn record(&self, kind: u64, word: u64) {
        self.core.record(kind.wrapping_add(16), word);
    }

    /// A hash of everything that happened so far (every turn, by task
    /// and virtual time, every jump of the clock, and what the layers
    /// above recorded): the same seed and program give the same hash.
    pub fn trace_hash(&self) -> u64 {
        self.core.state.lock().trace.hash
    }

    /// How many events the trace holds.
    pub fn trace_len(&self) -> u64 {
        self.core.state.lock().trace.events
    }

    /// Keeps every trace event from now on (not only the hash), for
    /// [`trace_events`](Self::trace_events): to find where two runs of
    /// one seed part ways ([`check_determinism`] does).
    pub fn keep_trace(&self) {
        let mut st = self.core.state.lock();
        if st.trace.log.is_none() {
            st.trace.log = Some(Vec::new());
        }
    }

    /// The events kept since [`keep_trace`](Self::keep_trace).
    pub fn trace_events(&self) -> Vec<TraceEvent> {
        self.core.state.lock().trace.log.clone().unwrap_or_default()
    }

    /// Turns run so far.
    pub fn turns(&self) -> u64 {
        self.core.turns.load(Ordering::Relaxed)
    }

    /// Installs `hook`, told the id of each task before its turn runs
    /// and `None` after it (the simulated network uses it to know which
    /// host a turn runs on). One hook per simulation: false if one was
    /// installed already.
    pub fn on_turn(&self, hook: impl Fn(Option<u64>) + Send + Sync + 'static) -> bool {
        self.core.turn_hook.set(Box::new(hook)).is_ok()
    }

    /// Tasks runnable now.
    pub fn runnable(&self) -> usize {
        self.core.state.lock().ready.len()
    }

    /// Drops every runnable task without running it (at shutdown, to
    /// break the cycles runtime -> task -> handle).
    pub(crate) fn clear(&self) {
        let old = std::mem::take(&mut self.core.state.lock().ready);
        drop(old);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_is_the_published_sequence() {
        // The first outputs for seed 0 (as in the reference code).
        let mut r = Rng(0);
        assert_eq!(r.next(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next(), 0x6E78_9E6A_A1B9_65F4);
    }
}
