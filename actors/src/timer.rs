//! `TimerHandle`: a pending delayed or periodic message, as seen by
//! actors and any thread.
//!
//! Owns nothing but the handle: the entry lives in the runtime's timer
//! wheel, so a timer costs one wheel entry, not an actor.

use std::time::Duration;

use weft_runtime::{Handle, TimerKey};

/// A timer that will send a message (made by `Ctx::send_later` or
/// `Ctx::send_interval`). `Send + Sync + Clone`: cancel, reset or delay it
/// from any thread. Operations on a timer that already fired (a one-shot)
/// or was cancelled do nothing and return `false`.
///
/// ```
/// use std::time::Duration;
/// use weft_actors::{Actor, ActorResult, Ctx, Spawn, TimerHandle};
/// use weft_runtime::MissedTicks;
///
/// /// Ticks until told to stop; the timer is cancelled from outside.
/// struct Ticker(std::sync::mpsc::Sender<TimerHandle>);
/// impl Actor for Ticker {
///     type Msg = ();
///     fn started(&mut self, ctx: &mut Ctx<'_, Self>) -> ActorResult {
///         let timer = ctx.send_interval(Duration::from_secs(3600), MissedTicks::Skip, || ());
///         self.0.send(timer)?;
///         Ok(())
///     }
///     fn handle(&mut self, _: (), _ctx: &mut Ctx<'_, Self>) -> ActorResult {
///         Ok(())
///     }
/// }
///
/// let rt = weft_runtime::Runtime::builder().build().unwrap();
/// let (tx, rx) = std::sync::mpsc::channel();
/// rt.handle().spawn(Ticker(tx));
/// let timer = rx.recv_timeout(Duration::from_secs(5)).unwrap();
/// assert!(timer.is_pending());
/// assert!(timer.cancel());
/// assert!(!timer.is_pending());
/// ```
#[derive(Clone, Debug)]
pub struct TimerHandle {
    handle: Handle,
    key: TimerKey,
}

impl TimerHandle {
    pub(crate) fn new(handle: Handle, key: TimerKey) -> Self {
        TimerHandle { handle, key }
    }

    /// Cancels the timer: its message will not be sent.
    pub fn cancel(&self) -> bool {
        self.handle.cancel_timer(self.key)
    }

    /// Moves the deadline to `delay` from now (Twisted's `reset`).
    pub fn reset(&self, delay: Duration) -> bool {
        self.handle.reset_timer(self.key, delay)
    }

    /// Pushes the deadline back by `by` (Twisted's `delay`).
    pub fn delay(&self, by: Duration) -> bool {
        self.handle.delay_timer(self.key, by)
    }

    /// The deadline on the runtime's clock, while pending.
    pub fn deadline(&self) -> Option<Duration> {
        self.handle.timer_deadline(self.key)
    }

    /// Whether the timer is still pending.
    pub fn is_pending(&self) -> bool {
        self.deadline().is_some()
    }
}
