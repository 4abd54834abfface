//! The runtime's error type.

use std::io;

/// What can go wrong in the runtime layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// A builder setting is out of range; says which and why.
    #[error("invalid runtime setting `{setting}`: {reason}")]
    InvalidSetting {
        /// The setting's name.
        setting: &'static str,
        /// Why the value was refused.
        reason: String,
    },
    /// The OS refused a resource the runtime needs (a thread, the poller).
    #[error("could not {what}")]
    Os {
        /// What the runtime was doing.
        what: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The blocking pool's queue is full; the job was not accepted.
    #[error("the blocking pool is full ({queued} jobs queued, {threads} threads busy)")]
    BlockingPoolFull {
        /// Jobs waiting.
        queued: usize,
        /// Threads running jobs.
        threads: usize,
    },
    /// The runtime is shutting down and takes no new work.
    #[error("the runtime is shutting down")]
    ShuttingDown,
    /// Shutdown took longer than the shutdown timeout: these (actors by
    /// type and id, or blocking-pool jobs) still held their threads, which
    /// were left behind (detached) so that shutdown could finish.
    #[error("shutdown timed out; left behind: {}", stuck.join(", "))]
    ShutdownTimedOut {
        /// What was still running.
        stuck: Vec<String>,
    },
    /// `run` was called twice.
    #[error("the runtime is already running or has run")]
    AlreadyRan,
}
