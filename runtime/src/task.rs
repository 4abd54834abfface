//! The unit the scheduler runs. Owns nothing but the contract.

use std::sync::Arc;

/// Something the scheduler can run: in weft, an actor's cell.
///
/// Contract: whoever makes a task runnable passes it to
/// [`Handle::schedule`](crate::Handle::schedule) exactly once per transition
/// to "runnable"; the task's own state machine guarantees it is never queued
/// twice or run by two threads at once. `run` must not block and must not
/// unwind (weft's cells catch handler panics themselves).
pub trait Task: Send + Sync + 'static {
    /// Runs one turn (a bounded batch of work), on a worker thread.
    fn run(self: Arc<Self>);

    /// A non-zero id for diagnostics (slow-turn reports); weft's actors
    /// return their `ActorId`.
    fn id(&self) -> u64 {
        u64::MAX
    }
}
