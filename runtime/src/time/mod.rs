//! Timers: the wheel, the clock and the firing of expired callbacks.
//!
//! Owns: the runtime's one timer wheel (behind its own mutex) and its clock.
//! Invariants: the wheel lock is never held while a callback runs or while
//! the driver blocks in epoll; a timer never fires before its deadline
//! (deadlines round up to the next tick, "now" rounds down).
//! Must not touch: actors or their messages (callbacks are opaque closures).

mod clock;
mod once_fn;
pub mod wheel;

pub use clock::{Clock, ManualClock};

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use once_fn::OnceFn;
use wheel::{Key, Wheel};

/// The wheel's tick: the resolution of every timer.
pub const TICK: Duration = Duration::from_millis(1);

/// What an interval does when it fires late (its deadline passed by more
/// than a period before it could run), as tokio's `MissedTickBehavior`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MissedTicks {
    /// Fire once for every missed period, back to back, to catch up.
    Burst,
    /// Fire once now, then keep to the original schedule, skipping the
    /// periods that were missed.
    #[default]
    Skip,
    /// Fire once now and count the next period from now.
    Delay,
}

/// Names one scheduled timer of a runtime. Cancelling, resetting or
/// delaying with a key whose timer already fired or was cancelled does
/// nothing and returns `false`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerKey(Key);

/// What a wheel entry holds: a one-shot callback inline (see `OnceFn`),
/// or the rare interval, boxed.
enum Payload {
    Once(OnceFn),
    Every(Box<Interval>),
}

struct Interval {
    call: Arc<dyn Fn() + Send + Sync>,
    period: u64,
    missed: MissedTicks,
}

enum Call {
    Once(OnceFn),
    Every(Arc<dyn Fn() + Send + Sync>),
}

struct State {
    wheel: Wheel<Payload>,
    /// The tick the driver sleeps until (u64::MAX when it is not asleep on a
    /// timer); an insert before it wakes the driver.
    sleep_until: u64,
}

pub(crate) struct Timers {
    state: Mutex<State>,
    clock: Clock,
    waker: Arc<mio::Waker>,
    /// A lower bound on the earliest deadline (may be stale-early, never
    /// late): lets a busy worker skip the lock when nothing is due.
    next_due: AtomicU64,
}

/// Whole ticks in `d`, rounded up. In `u64` arithmetic: a `u128`
/// division (what `as_nanos` leads to) was a visible part of every timer
/// insert.
fn ticks_ceil(d: Duration) -> u64 {
    const TICK_NANOS: u32 = TICK.as_nanos() as u32;
    const PER_SEC: u64 = 1_000_000_000 / TICK_NANOS as u64;
    d.as_secs()
        .saturating_mul(PER_SEC)
        .saturating_add(u64::from(d.subsec_nanos().div_ceil(TICK_NANOS)))
}

fn tick_to_duration(tick: u64) -> Duration {
    Duration::from_nanos(tick.saturating_mul(TICK.as_nanos() as u64))
}

fn ticks_floor(d: Duration) -> u64 {
    const TICK_NANOS: u32 = TICK.as_nanos() as u32;
    const PER_SEC: u64 = 1_000_000_000 / TICK_NANOS as u64;
    d.as_secs()
        .saturating_mul(PER_SEC)
        .saturating_add(u64::from(d.subsec_nanos() / TICK_NANOS))
}

impl Timers {
    pub(crate) fn new(clock: Clock, waker: Arc<mio::Waker>) -> Arc<Self> {
        let timers = Arc::new(Timers {
            state: Mutex::new(State {
                wheel: Wheel::new(),
                sleep_until: u64::MAX,
            }),
            clock,
            waker,
            next_due: AtomicU64::new(u64::MAX),
        });
        if let Clock::Manual(m) = &timers.clock {
            m.attach(&timers);
        }
        timers
    }

    pub(crate) fn clock(&self) -> &Clock {
        &self.clock
    }

    fn deadline(&self, delay: Duration) -> u64 {
        ticks_ceil(self.clock.now().saturating_add(delay))
    }

    fn insert(&self, when: u64, payload: Payload) -> TimerKey {
        let mut st = self.state.lock();
        let key = st.wheel.insert(when, payload);
        self.lower_next_due(when);
        let wake = when < st.sleep_until;
        if wake {
            st.sleep_until = when;
        }
        drop(st);
        if wake && !self.clock.is_manual() {
            // A failed wake only delays the timer to the driver's next turn.
            let _ = self.waker.wake();
        }
        TimerKey(key)
    }

    /// Lowers the lower bound on the earliest deadline. Most inserts are
    /// later than it: a load, not a read-modify-write, decides that.
    fn lower_next_due(&self, when: u64) {
        if when < self.next_due.load(Ordering::Relaxed) {
            self.next_due.fetch_min(when, Ordering::Relaxed);
        }
    }

    pub(crate) fn once(&self, delay: Duration, f: impl FnOnce() + Send + 'static) -> TimerKey {
        self.insert(self.deadline(delay), Payload::Once(OnceFn::new(f)))
    }

    pub(crate) fn every(
        &self,
        period: Duration,
        missed: MissedTicks,
        call: Arc<dyn Fn() + Send + Sync>,
    ) -> TimerKey {
        let period = ticks_ceil(period).max(1);
        let when = ticks_ceil(self.clock.now()) + period;
        self.insert(
            when,
            Payload::Every(Box::new(Interval {
                call,
                period,
                missed,
            })),
        )
    }

    pub(crate) fn cancel(&self, key: TimerKey) -> bool {
        let removed = self.state.lock().wheel.remove(key.0);
        // Dropped after the lock is released: freeing the callback (and
        // what it captured) is no reason to hold up the firing thread.
        removed.is_some()
    }

    fn move_to(&self, key: TimerKey, when: u64) -> bool {
        let mut st = self.state.lock();
        let moved = st.wheel.reschedule(key.0, when);
        self.lower_next_due(when);
        let wake = moved && when < st.sleep_until;
        if wake {
            st.sleep_until = when;
        }
        drop(st);
        if wake && !self.clock.is_manual() {
            let _ = self.waker.wake();
        }
        moved
    }

    pub(crate) fn reset(&self, key: TimerKey, delay: Duration) -> bool {
        self.move_to(key, self.deadline(delay))
    }

    pub(crate) fn delay(&self, key: TimerKey, by: Duration) -> bool {
        let when = match self.state.lock().wheel.when(key.0) {
            Some(when) => when.saturating_add(ticks_ceil(by)),
            None => return false,
        };
        self.move_to(key, when)
    }

    pub(crate) fn deadline_of(&self, key: TimerKey) -> Option<Duration> {
        let when = self.state.lock().wheel.when(key.0)?;
        Some(tick_to_duration(when))
    }

    /// Drops every pending timer (at shutdown).
    pub(crate) fn clear(&self) {
        let old = std::mem::take(&mut self.state.lock().wheel);
        drop(old);
    }

    /// When the earliest pending timer is due.
    pub(crate) fn next_deadline(&self) -> Option<Duration> {
        self.state
            .lock()
            .wheel
            .next_deadline()
            .map(tick_to_duration)
    }

    pub(crate) fn pending(&self) -> usize {
        self.state.lock().wheel.len()
    }

    /// How long the driver may sleep before a timer is due (None: no timer,
    /// or a manual clock, which only moves by `advance`).
    pub(crate) fn sleep_timeout(&self) -> Option<Duration> {
        let mut st = self.state.lock();
        let next = st.wheel.next_deadline();
        if self.clock.is_manual() {
            st.sleep_until = u64::MAX;
            return None;
        }
        st.sleep_until = next.unwrap_or(u64::MAX);
        drop(st);
        let next = next?;
        let now = self.clock.now();
        let at = tick_to_duration(next);
        Some(at.saturating_sub(now))
    }

    /// Fires what is due if anything may be (cheap when nothing is).
    pub(crate) fn fire_if_due(&self) {
        if self.clock.is_manual() {
            return;
        }
        if ticks_floor(self.clock.now()) >= self.next_due.load(Ordering::Relaxed) {
            self.fire_due();
        }
    }

    /// Fires every timer due by the clock's current time, on this thread.
    pub(crate) fn fire_due(&self) {
        let now = ticks_floor(self.clock.now());
        let mut due = Vec::new();
        let mut calls = Vec::new();
        loop {
            {
                let mut st = self.state.lock();
                st.sleep_until = u64::MAX;
                st.wheel.poll(now, &mut due);
                for key in due.drain(..) {
                    let when = st.wheel.when(key).expect("expired key is live");
                    match st.wheel.value_mut(key) {
                        Some(Payload::Every(interval)) => {
                            calls.push(Call::Every(interval.call.clone()));
                            let period = interval.period;
                            let next = match interval.missed {
                                MissedTicks::Burst => when + period,
                                MissedTicks::Skip => {
                                    when + period * ((now.saturating_sub(when)) / period + 1)
                                }
                                MissedTicks::Delay => now.max(when) + period,
                            };
                            st.wheel.reschedule(key, next);
                        }
                        Some(Payload::Once(_)) => {
                            if let Some(Payload::Once(f)) = st.wheel.remove(key) {
                                calls.push(Call::Once(f));
                            }
                        }
                        None => {}
                    }
                }
                let next = st.wheel.next_deadline().unwrap_or(u64::MAX);
                self.next_due.store(next, Ordering::Relaxed);
            }
            if calls.is_empty() {
                return;
            }
            for call in calls.drain(..) {
                let result = catch_unwind(AssertUnwindSafe(|| match call {
                    Call::Once(f) => f.call(),
                    Call::Every(f) => f(),
                }));
                if result.is_err() {
                    tracing::error!("a timer callback panicked; the timer is dropped");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The u64 tick arithmetic agrees with the exact u128 one.
        #[test]
        fn ticks_round_as_the_exact_division_does(secs in 0u64..u64::MAX / 2_000, nanos in 0u32..1_000_000_000) {
            let d = Duration::new(secs, nanos);
            let exact = d.as_nanos();
            let tick = TICK.as_nanos();
            prop_assert_eq!(u128::from(ticks_ceil(d)), exact.div_ceil(tick));
            prop_assert_eq!(u128::from(ticks_floor(d)), exact / tick);
        }
    }
}
