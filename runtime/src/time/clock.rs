//! The clock: all time in a runtime comes from one `Clock`, either the real
//! monotonic clock or a `ManualClock` that a test advances.
//!
//! Owns: reading the time, and for the manual clock, driving the timers on
//! `advance`. Must not touch: the scheduler or the reactor.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use super::Timers;

/// Where a runtime's time comes from.
#[derive(Clone, Debug)]
pub enum Clock {
    /// The OS monotonic clock, counted from the runtime's start.
    Real(Instant),
    /// A clock that only moves when a test calls [`ManualClock::advance`].
    Manual(ManualClock),
}

impl Clock {
    /// The real clock, starting now.
    pub fn real() -> Self {
        Clock::Real(Instant::now())
    }

    /// Time since the clock's origin.
    pub fn now(&self) -> Duration {
        match self {
            Clock::Real(origin) => origin.elapsed(),
            Clock::Manual(m) => m.now(),
        }
    }

    /// Whether this is a manual clock.
    pub fn is_manual(&self) -> bool {
        matches!(self, Clock::Manual(_))
    }
}

/// A clock a test moves by hand, as Twisted's `task.Clock`.
///
/// `advance` moves time forward and, before it returns, fires every timer
/// that became due, on the calling thread. Timer messages are therefore in
/// their actors' mailboxes when `advance` returns.
///
/// ```
/// use std::time::Duration;
/// use weft_runtime::{ManualClock, Runtime};
///
/// let clock = ManualClock::new();
/// let rt = Runtime::builder().manual_clock(clock.clone()).build().unwrap();
/// clock.advance(Duration::from_secs(5));
/// assert_eq!(rt.handle().now(), Duration::from_secs(5));
/// ```
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    inner: Arc<ManualInner>,
}

#[derive(Debug, Default)]
struct ManualInner {
    nanos: AtomicU64,
    timers: OnceLock<Weak<Timers>>,
}

impl ManualClock {
    /// A manual clock at time zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// The clock's current time.
    pub fn now(&self) -> Duration {
        Duration::from_nanos(self.inner.nanos.load(Ordering::Acquire))
    }

    /// Moves the clock forward by `by` and fires what became due.
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.inner.nanos.fetch_add(by, Ordering::AcqRel);
        if let Some(timers) = self.inner.timers.get().and_then(Weak::upgrade) {
            timers.fire_due();
        }
    }

    pub(crate) fn attach(&self, timers: &Arc<Timers>) -> bool {
        self.inner.timers.set(Arc::downgrade(timers)).is_ok()
    }
}
