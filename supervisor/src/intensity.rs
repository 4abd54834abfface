//! Restart intensity (OTP's `intensity` and `period`) and restart back-off.
//!
//! Owns: the bookkeeping that decides whether one more restart is allowed,
//! and how long to wait before it. Time is passed in (the runtime's clock,
//! so a test drives it with the manual clock); nothing here reads a clock.
//!
//! Invariant: `RestartWindow` keeps at most `max_restarts + 1` timestamps,
//! so its memory is bounded whatever the churn.

use std::collections::VecDeque;
use std::time::Duration;

/// At most `max_restarts` restarts within `within`; one more and the
/// supervisor gives up (stops its children and exits, escalating).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Intensity {
    /// Restarts allowed within the window.
    pub max_restarts: u32,
    /// The window.
    pub within: Duration,
}

impl Default for Intensity {
    /// OTP's default: 1 restart in 5 seconds.
    fn default() -> Self {
        Intensity {
            max_restarts: 1,
            within: Duration::from_secs(5),
        }
    }
}

/// The restart was one too many for the supervisor's intensity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("more than {max_restarts} restarts within {within:?}")]
pub struct IntensityExceeded {
    /// The intensity that was exceeded.
    pub max_restarts: u32,
    /// Its window.
    pub within: Duration,
}

/// The recent restarts of one supervisor.
#[derive(Debug, Default)]
pub struct RestartWindow {
    intensity: Intensity,
    restarts: VecDeque<Duration>,
}

impl RestartWindow {
    /// An empty window for `intensity`.
    pub fn new(intensity: Intensity) -> Self {
        RestartWindow {
            intensity,
            restarts: VecDeque::new(),
        }
    }

    /// Records a restart at `now`; an error when it makes more than
    /// `max_restarts` within the window (the restart must not happen).
    pub fn record(&mut self, now: Duration) -> Result<(), IntensityExceeded> {
        while let Some(&oldest) = self.restarts.front() {
            if now.saturating_sub(oldest) >= self.intensity.within {
                self.restarts.pop_front();
            } else {
                break;
            }
        }
        self.restarts.push_back(now);
        if self.restarts.len() > self.intensity.max_restarts as usize {
            return Err(IntensityExceeded {
                max_restarts: self.intensity.max_restarts,
                within: self.intensity.within,
            });
        }
        Ok(())
    }

    /// Restarts counted in the current window.
    pub fn recent(&self) -> usize {
        self.restarts.len()
    }
}

/// A growing delay before restarts of a child that keeps failing (beyond
/// OTP): `initial`, then multiplied by `factor` up to `max`; back to
/// `initial` once the child has run for `reset_after` without failing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    /// The first delay.
    pub initial: Duration,
    /// The largest delay.
    pub max: Duration,
    /// The growth per consecutive failure (at least 1).
    pub factor: f64,
    /// A child that ran this long without failing starts again at
    /// `initial`.
    pub reset_after: Duration,
}

/// The state of one child's back-off.
#[derive(Clone, Debug, Default)]
pub struct BackoffState {
    next: Option<Duration>,
    started_at: Option<Duration>,
}

impl BackoffState {
    /// The child was (re)started at `now`.
    pub fn started(&mut self, now: Duration) {
        self.started_at = Some(now);
    }

    /// The child failed at `now`: how long to wait before restarting it.
    pub fn delay(&mut self, policy: &Backoff, now: Duration) -> Duration {
        let quiet = self
            .started_at
            .is_some_and(|s| now.saturating_sub(s) >= policy.reset_after);
        let delay = match self.next {
            Some(next) if !quiet => next,
            _ => policy.initial,
        };
        let grown = delay.mul_f64(policy.factor.max(1.0));
        self.next = Some(grown.min(policy.max));
        delay.min(policy.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn intensity_allows_max_restarts_within_the_window() {
        let mut w = RestartWindow::new(Intensity {
            max_restarts: 3,
            within: s(10),
        });
        assert!(w.record(s(0)).is_ok());
        assert!(w.record(s(1)).is_ok());
        assert!(w.record(s(2)).is_ok());
        let err = w.record(s(9)).unwrap_err();
        assert_eq!(err.max_restarts, 3);
    }

    #[test]
    fn old_restarts_leave_the_window() {
        let mut w = RestartWindow::new(Intensity {
            max_restarts: 2,
            within: s(10),
        });
        assert!(w.record(s(0)).is_ok());
        assert!(w.record(s(5)).is_ok());
        // The one at 0 s is 10 s old at 10 s: out of the window.
        assert!(w.record(s(10)).is_ok());
        assert_eq!(w.recent(), 2);
        assert!(w.record(s(14)).is_err());
    }

    #[test]
    fn zero_restarts_allowed_means_the_first_failure_escalates() {
        let mut w = RestartWindow::new(Intensity {
            max_restarts: 0,
            within: s(1),
        });
        assert!(w.record(s(0)).is_err());
    }

    #[test]
    fn the_window_stays_bounded_under_churn() {
        let mut w = RestartWindow::new(Intensity {
            max_restarts: 5,
            within: Duration::from_millis(100),
        });
        for i in 0..100_000u64 {
            assert!(w.record(Duration::from_millis(i * 50)).is_ok());
            assert!(w.recent() <= 6);
        }
    }

    #[test]
    fn backoff_grows_caps_and_resets_after_quiet() {
        let policy = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            factor: 2.0,
            reset_after: s(30),
        };
        let mut b = BackoffState::default();
        let ms = |n| Duration::from_millis(n);
        b.started(s(0));
        // Each restart fails a second later (a child that fails at start).
        let delays: Vec<_> = (0..6)
            .map(|i| {
                let d = b.delay(&policy, s(i));
                b.started(s(i));
                d
            })
            .collect();
        assert_eq!(
            delays,
            vec![ms(100), ms(200), ms(400), ms(800), ms(1000), ms(1000)]
        );
        // Ran quietly for 30 s since the last start: back to the start.
        b.started(s(10));
        assert_eq!(b.delay(&policy, s(40)), ms(100));
        // Restarted at once and failing again: the curve climbs anew.
        b.started(s(40));
        assert_eq!(b.delay(&policy, s(41)), ms(200));
    }
}
