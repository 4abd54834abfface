//! The watchdog: notices a turn that holds a worker too long (a handler
//! that blocks) and reports it with the task's name, so the culprit can be
//! moved to the blocking pool or a thread-worker actor (axiom#32).
//!
//! Owns: one thread per runtime that samples each worker's slot every
//! quarter threshold. Invariants: the hot path pays three relaxed stores per
//! task run (turn number, task id in, task id out), nothing else; a stuck
//! turn is reported once. Must not touch: the tasks themselves (names come
//! from the namer that the layer above installs).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::scheduler::Scheduler;

/// What one worker is doing, written by the worker, read by the watchdog
/// and by `Handle::metrics`. Only its worker writes it (relaxed stores of
/// its own counters, on its own cache line).
#[derive(Default)]
pub(crate) struct WorkerSlot {
    /// Turns run so far (tasks run).
    pub(crate) turn: AtomicU64,
    /// `Task::id` of the running task; 0 when the worker runs nothing.
    pub(crate) task: AtomicU64,
    /// Tasks taken from other workers' queues.
    pub(crate) steals: AtomicU64,
    /// Times it went to sleep (in the reactor or parked).
    pub(crate) parks: AtomicU64,
    /// Reactor polls it made (blocking or not).
    pub(crate) polls: AtomicU64,
    /// Nanoseconds it spent asleep, in finished sleeps.
    pub(crate) idle_ns: AtomicU64,
    /// When the current sleep began, in nanoseconds since the workers
    /// started, plus one; 0 while awake (so a long sleep counts as idle
    /// before it ends).
    pub(crate) asleep_since: AtomicU64,
}

impl WorkerSlot {
    /// Adds one to a counter only this worker writes (no read-modify-write
    /// on the bus: a load and a store).
    #[inline]
    pub(crate) fn bump(counter: &AtomicU64, by: u64) {
        counter.store(
            counter.load(Ordering::Relaxed).wrapping_add(by),
            Ordering::Relaxed,
        );
    }
}

/// A turn that has held its worker longer than the threshold.
#[derive(Clone, Debug)]
pub struct SlowTurn {
    /// The worker's index.
    pub worker: usize,
    /// The task's id (for an actor, its `ActorId`).
    pub task: u64,
    /// What the layer above calls the task (for an actor, its type and id).
    pub name: Option<String>,
    /// How long the turn had run when it was noticed.
    pub held_for: Duration,
}

/// Reports a slow turn.
pub(crate) type Report = Arc<dyn Fn(SlowTurn) + Send + Sync>;

pub(crate) fn log(turn: SlowTurn) {
    tracing::warn!(
        worker = turn.worker,
        task = turn.task,
        name = turn.name.as_deref().unwrap_or("?"),
        held_ms = turn.held_for.as_millis() as u64,
        "a turn is holding a worker: blocking work belongs on the blocking pool or a thread-worker actor"
    );
}

struct Seen {
    turn: u64,
    task: u64,
    since: Instant,
    reported: bool,
}

pub(crate) fn spawn(
    scheduler: Arc<Scheduler>,
    threshold: Duration,
    report: Report,
    name: &str,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("{name}-watchdog"))
        .spawn(move || run(&scheduler, threshold, &report))
}

fn run(scheduler: &Scheduler, threshold: Duration, report: &Report) {
    let now = Instant::now();
    let mut seen: Vec<Seen> = (0..scheduler.slots.len())
        .map(|_| Seen {
            turn: 0,
            task: 0,
            since: now,
            reported: false,
        })
        .collect();
    let step = (threshold / 4).max(Duration::from_millis(1));
    while !scheduler.is_shutdown() {
        std::thread::park_timeout(step);
        let now = Instant::now();
        for (worker, (slot, seen)) in scheduler.slots.iter().zip(&mut seen).enumerate() {
            let turn = slot.turn.load(Ordering::Relaxed);
            let task = slot.task.load(Ordering::Relaxed);
            if task == 0 || turn != seen.turn || task != seen.task {
                *seen = Seen {
                    turn,
                    task,
                    since: now,
                    reported: false,
                };
                continue;
            }
            let held_for = now - seen.since;
            if !seen.reported && held_for >= threshold {
                seen.reported = true;
                report(SlowTurn {
                    worker,
                    task,
                    name: scheduler.name_of(task),
                    held_for,
                });
            }
        }
    }
}
