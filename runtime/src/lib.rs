//! weft-runtime: the actor-agnostic bottom layer of weft.
//!
//! Owns: the scheduler (worker threads, run queues, stealing), the reactor
//! (one mio `Poll` driven by an idle worker), the timer wheel and the clock
//! (real or manual), the bounded blocking pool, system-event hooks
//! (start-up; shutdown before/during/after) and SIGINT/SIGTERM handling.
//!
//! It runs [`Task`]s, calls [`ReadySink`]s with readiness and runs timer
//! callbacks; it knows nothing of actors or message types. It must not
//! import any weft crate above it.
//!
//! ```
//! use std::sync::mpsc;
//! use std::time::Duration;
//! use weft_runtime::Runtime;
//!
//! let rt = Runtime::builder().workers(2).build().unwrap();
//! let (tx, rx) = mpsc::channel();
//! rt.handle().call_later(Duration::from_millis(5), move || tx.send("fired").unwrap());
//! assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), "fired");
//! ```

#![deny(missing_docs)]

mod blocking;
mod builder;
mod error;
mod events;
mod metrics;
mod reactor;
mod runtime;
mod scheduler;
mod signal;
mod sim;
mod sync;
mod task;
mod time;
mod watchdog;

pub use blocking::BlockingStats;
pub use builder::{Builder, Signals};
pub use error::RuntimeError;
pub use events::Phase;
pub use metrics::{RuntimeMetrics, WorkerMetrics};
/// A signal's name (`Signal::SIGHUP`), for [`Handle::subscribe_signal`].
pub use nix::sys::signal::Signal;
pub use reactor::{IoToken, Readiness, ReadySink};
pub use runtime::{Handle, Runtime};
pub use scheduler::on_worker_thread;
pub use signal::SignalSubscription;
pub use sim::{
    check_determinism, check_seeds, seed_from_env, Nondeterminism, SeedFailure, Simulation, Step,
    TraceEvent,
};
pub use task::Task;
pub use time::{Clock, ManualClock, MissedTicks, TimerKey, TICK};
pub use watchdog::SlowTurn;

/// mio, re-exported so that upper layers and users register sources with
/// the same version the reactor uses.
pub use mio;
