//! Thread-worker actors: a cell that runs on its own OS thread instead of
//! the runtime's workers (for a library that blocks).
//!
//! Owns: `ThreadHome` (the thread's wake-up flag) and the thread's loop.
//! Invariant: the home thread runs the cell exactly as a worker would
//! (`Task::run`), so the cell's state machine is the same; only
//! "schedule" differs (unpark the home thread instead of queueing).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;

use weft_runtime::Task;

use super::Cell;
use crate::actor::Actor;

/// Where a cell runs when it does not run on the runtime's workers.
pub(crate) struct ThreadHome {
    runnable: AtomicBool,
    pub(crate) thread: OnceLock<Thread>,
}

impl ThreadHome {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(ThreadHome {
            runnable: AtomicBool::new(false),
            thread: OnceLock::new(),
        })
    }

    /// Makes the home thread run the cell.
    pub(crate) fn notify(&self) {
        self.runnable.store(true, Ordering::Release);
        if let Some(t) = self.thread.get() {
            t.unpark();
        }
    }

    /// Blocks the home thread until the cell is runnable.
    fn wait_runnable(&self) {
        while !self.runnable.swap(false, Ordering::AcqRel) {
            std::thread::park();
        }
    }
}

/// Runs a thread-worker actor's cell on the calling thread until it exits.
pub(crate) fn run_on_thread<A: Actor>(cell: Arc<Cell<A>>, home: Arc<ThreadHome>) {
    loop {
        home.wait_runnable();
        cell.clone().run();
        if cell.dead() {
            break;
        }
    }
}
