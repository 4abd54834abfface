//! System events: hooks run at start-up and in the three shutdown phases,
//! as Twisted's `addSystemEventTrigger` and `callWhenRunning`.
//!
//! Owns: the hook lists. Invariants: hooks of a phase run in registration
//! order, on the thread that runs the shutdown, each at most once; a panic
//! in a hook is logged and does not stop the others.
//! Must not touch: the scheduler (the shutdown sequence in `runtime.rs`
//! decides when each phase runs).

use std::panic::{catch_unwind, AssertUnwindSafe};

use parking_lot::Mutex;

/// A phase of shutdown. Hooks run phase by phase: every `Before` hook, then
/// every `During` hook (the actor layer stops actors here), then every
/// `After` hook; then the worker threads stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Before anything stops: the runtime is fully working.
    Before,
    /// Actors are stopped in this phase.
    During,
    /// Actors have stopped; workers still run.
    After,
}

/// A hook: run once.
pub(crate) type Hook = Box<dyn FnOnce() + Send>;

#[derive(Default)]
pub(crate) struct SystemEvents {
    startup: Mutex<Option<Vec<Hook>>>,
    phases: Mutex<[Vec<Hook>; 3]>,
}

fn index(phase: Phase) -> usize {
    match phase {
        Phase::Before => 0,
        Phase::During => 1,
        Phase::After => 2,
    }
}

pub(crate) fn run_hook(hook: Hook) {
    if catch_unwind(AssertUnwindSafe(hook)).is_err() {
        tracing::error!("a system event hook panicked");
    }
}

impl SystemEvents {
    pub(crate) fn new() -> Self {
        SystemEvents {
            startup: Mutex::new(Some(Vec::new())),
            phases: Mutex::default(),
        }
    }

    /// Queues `hook` for start-up; returns it back if start-up has passed.
    pub(crate) fn on_startup(&self, hook: Hook) -> Option<Hook> {
        match self.startup.lock().as_mut() {
            Some(list) => {
                list.push(hook);
                None
            }
            None => Some(hook),
        }
    }

    pub(crate) fn on_shutdown(&self, phase: Phase, hook: Hook) {
        self.phases.lock()[index(phase)].push(hook);
    }

    pub(crate) fn run_startup(&self) {
        // Hooks may add hooks; those run too, in order.
        loop {
            let hooks = match self.startup.lock().as_mut() {
                Some(list) if !list.is_empty() => std::mem::take(list),
                _ => break,
            };
            hooks.into_iter().for_each(run_hook);
        }
        *self.startup.lock() = None;
    }

    pub(crate) fn run_phase(&self, phase: Phase) {
        loop {
            let hooks = std::mem::take(&mut self.phases.lock()[index(phase)]);
            if hooks.is_empty() {
                break;
            }
            hooks.into_iter().for_each(run_hook);
        }
    }
}
