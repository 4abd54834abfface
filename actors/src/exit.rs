//! Why actors stop, and the notices others receive about it.
//!
//! Owns: `ActorId`, `ExitReason`, `Down` (a monitor's notice), `ExitSignal`
//! (a linked or trapped exit). Must not touch: cells or scheduling.

use std::error::Error as StdError;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A process-wide unique actor id (never reused).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ActorId(pub u64);

/// Actor ids and monitor references come from one counter, so the two
/// are never equal (the watch table keys on both).
fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl ActorId {
    pub(crate) fn next() -> ActorId {
        ActorId(next_id())
    }
}

/// Names one monitor (from [`Ctx::monitor`](crate::Ctx::monitor)), to
/// remove it with [`Ctx::demonitor`](crate::Ctx::demonitor). Unique for
/// the life of the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MonitorRef(pub(crate) u64);

impl MonitorRef {
    pub(crate) fn next() -> MonitorRef {
        MonitorRef(next_id())
    }
}

impl fmt::Display for ActorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{}>", self.0)
    }
}

/// Why an actor stopped.
#[derive(Clone, Debug)]
pub enum ExitReason {
    /// It asked to stop (`Ctx::stop`), or was stopped gracefully.
    Normal,
    /// The runtime or its owner shut it down.
    Shutdown,
    /// Killed without finishing its queued messages.
    Killed,
    /// A handler (or `started`) returned this error.
    Error(Arc<dyn StdError + Send + Sync>),
    /// A handler panicked with this message.
    Panic(Arc<str>),
    /// A linked actor exited abnormally and this one did not trap exits.
    Linked {
        /// The linked actor that exited.
        from: ActorId,
        /// Its reason.
        reason: Box<ExitReason>,
    },
}

impl ExitReason {
    /// `Normal` and `Shutdown` are normal; everything else is a failure
    /// (links propagate failures, supervisors restart transient children
    /// on them).
    pub fn is_abnormal(&self) -> bool {
        !matches!(self, ExitReason::Normal | ExitReason::Shutdown)
    }

    /// An `Error` reason from any error value.
    pub fn error(e: impl StdError + Send + Sync + 'static) -> Self {
        ExitReason::Error(Arc::new(e))
    }

    pub(crate) fn from_panic(payload: Box<dyn std::any::Any + Send>) -> Self {
        ExitReason::Panic(panic_text(payload))
    }
}

/// The message of a caught panic.
pub(crate) fn panic_text(payload: Box<dyn std::any::Any + Send>) -> Arc<str> {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        Arc::from(*s)
    } else if let Some(s) = payload.downcast_ref::<String>() {
        Arc::from(s.as_str())
    } else {
        Arc::from("panic with a non-string payload")
    }
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitReason::Normal => f.write_str("normal"),
            ExitReason::Shutdown => f.write_str("shutdown"),
            ExitReason::Killed => f.write_str("killed"),
            ExitReason::Error(e) => write!(f, "error: {e}"),
            ExitReason::Panic(p) => write!(f, "panic: {p}"),
            ExitReason::Linked { from, reason } => write!(f, "linked {from} exited ({reason})"),
        }
    }
}

/// A monitor's notice that the watched actor exited.
#[derive(Clone, Debug)]
pub struct Down {
    /// The actor that exited.
    pub id: ActorId,
    /// Why.
    pub reason: ExitReason,
}

/// An exit signal from a linked actor, delivered as a message to an actor
/// that traps exits.
#[derive(Clone, Debug)]
pub struct ExitSignal {
    /// The linked actor that exited.
    pub from: ActorId,
    /// Why.
    pub reason: ExitReason,
}
