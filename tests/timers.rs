//! Timers as messages, tested on the manual clock (no sleeps).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use weft::prelude::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Records timer messages; can arm timers on request.
struct Clocked {
    seen: Vec<&'static str>,
    handles: Vec<TimerHandle>,
}
enum ClockedMsg {
    Fired(&'static str),
    Later(Duration, &'static str, ReplyTo<TimerHandle>),
    Every(Duration, MissedTicks, &'static str, ReplyTo<TimerHandle>),
    Seen(ReplyTo<Vec<&'static str>>),
    Stop,
}
impl Actor for Clocked {
    type Msg = ClockedMsg;
    fn handle(&mut self, msg: ClockedMsg, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        match msg {
            ClockedMsg::Fired(name) => self.seen.push(name),
            ClockedMsg::Later(d, name, r) => {
                let h = ctx.send_later(d, ClockedMsg::Fired(name));
                self.handles.push(h.clone());
                r.send(h);
            }
            ClockedMsg::Every(d, missed, name, r) => {
                r.send(ctx.send_interval(d, missed, move || ClockedMsg::Fired(name)))
            }
            ClockedMsg::Seen(r) => r.send(std::mem::take(&mut self.seen)),
            ClockedMsg::Stop => ctx.stop(),
        }
        Ok(())
    }
}

fn clocked(rt: &Runtime) -> Addr<Clocked> {
    rt.handle().spawn(Clocked {
        seen: Vec::new(),
        handles: Vec::new(),
    })
}

fn later(a: &Addr<Clocked>, d: u64, name: &'static str) -> TimerHandle {
    a.ask_wait(|r| ClockedMsg::Later(ms(d), name, r), WAIT)
        .unwrap()
}

fn every(a: &Addr<Clocked>, d: u64, missed: MissedTicks, name: &'static str) -> TimerHandle {
    a.ask_wait(|r| ClockedMsg::Every(ms(d), missed, name, r), WAIT)
        .unwrap()
}

fn seen(a: &Addr<Clocked>) -> Vec<&'static str> {
    a.ask_wait(ClockedMsg::Seen, WAIT).unwrap()
}

#[test]
fn fire_in_deadline_order_and_never_early() {
    let (rt, clock) = manual_runtime(2);
    let a = clocked(&rt);
    later(&a, 30, "c");
    later(&a, 10, "a");
    later(&a, 20, "b");
    clock.advance(ms(9));
    assert!(seen(&a).is_empty(), "nothing is due before 10 ms");
    clock.advance(ms(1));
    assert_eq!(seen(&a), vec!["a"]);
    clock.advance(ms(100));
    assert_eq!(seen(&a), vec!["b", "c"]);
}

/// Equal deadlines arrive in the order they were set (Twisted's order),
/// whether they sit in the wheel's first level (5 ms) or cascade down from
/// a higher one (5 s, 10 min), and when set at different moments.
#[test]
fn equal_deadlines_arrive_in_the_order_set() {
    let (rt, clock) = manual_runtime(2);
    let a = clocked(&rt);
    for (delay, names) in [
        (5, ["a1", "a2", "a3"]),
        (5_000, ["b1", "b2", "b3"]),
        (600_000, ["c1", "c2", "c3"]),
    ] {
        for name in names {
            later(&a, delay, name);
        }
        clock.advance(ms(delay));
        assert_eq!(seen(&a), names.to_vec());
    }
    // Set 3 s apart, due at the same moment: d1 (at 0 for 5 s) was placed
    // in a higher level than d2 (at 3 s for 2 s).
    later(&a, 5_000, "d1");
    clock.advance(ms(3_000));
    later(&a, 2_000, "d2");
    clock.advance(ms(2_000));
    assert_eq!(seen(&a), vec!["d1", "d2"]);
}

#[test]
fn cancel_reset_and_delay() {
    let (rt, clock) = manual_runtime(1);
    let a = clocked(&rt);
    let cancelled = later(&a, 10, "cancelled");
    let reset = later(&a, 10, "reset");
    let delayed = later(&a, 10, "delayed");
    assert!(cancelled.cancel());
    assert!(!cancelled.cancel(), "a second cancel is a no-op");
    assert!(reset.reset(ms(50)));
    assert!(delayed.delay(ms(15)));
    assert_eq!(delayed.deadline(), Some(ms(25)));
    clock.advance(ms(24));
    assert!(seen(&a).is_empty());
    clock.advance(ms(1));
    assert_eq!(seen(&a), vec!["delayed"]);
    assert!(!delayed.is_pending());
    assert!(!delayed.cancel(), "cancelling a fired timer does nothing");
    clock.advance(ms(25));
    assert_eq!(seen(&a), vec!["reset"]);
    // Handles work from any thread.
    let h = later(&a, 10, "from-thread");
    std::thread::spawn(move || assert!(h.cancel()))
        .join()
        .unwrap();
    clock.advance(ms(100));
    assert!(seen(&a).is_empty());
}

#[test]
fn intervals_and_their_late_behaviour() {
    let (rt, clock) = manual_runtime(1);
    let a = clocked(&rt);
    let tick = every(&a, 10, MissedTicks::Burst, "tick");
    clock.advance(ms(35));
    assert_eq!(seen(&a), vec!["tick"; 3]);
    tick.cancel();

    let burst = every(&a, 10, MissedTicks::Burst, "burst");
    clock.advance(ms(50));
    assert_eq!(seen(&a), vec!["burst"; 5], "burst catches up every period");
    burst.cancel();

    let start = rt.handle().now();
    let skip = every(&a, 10, MissedTicks::Skip, "skip");
    clock.advance(ms(55));
    assert_eq!(seen(&a), vec!["skip"], "skip fires once for the missed run");
    assert_eq!(
        skip.deadline(),
        Some(start + ms(60)),
        "and keeps the schedule"
    );
    skip.cancel();

    let now = rt.handle().now();
    let delay = every(&a, 10, MissedTicks::Delay, "delay");
    clock.advance(ms(55));
    assert_eq!(seen(&a), vec!["delay"]);
    assert_eq!(
        delay.deadline(),
        Some(now + ms(65)),
        "delay counts from the late run"
    );
}

#[test]
fn an_actors_intervals_end_with_it() {
    let (rt, clock) = manual_runtime(1);
    let a = clocked(&rt);
    let h = every(&a, 10, MissedTicks::Skip, "tick");
    assert_eq!(rt.handle().pending_timers(), 1);
    a.send(ClockedMsg::Stop).unwrap();
    // The exit cancels the interval (after the mailbox closes, so poll).
    let deadline = std::time::Instant::now() + WAIT;
    while h.is_pending() && std::time::Instant::now() < deadline {
        std::thread::yield_now();
    }
    assert!(a.is_stopped());
    assert!(!h.is_pending());
    assert_eq!(rt.handle().pending_timers(), 0);
    clock.advance(ms(100));
}

#[test]
fn a_million_timers_half_cancelled() {
    let (rt, clock) = manual_runtime(1);
    let handle = rt.handle();
    let fired = Arc::new(AtomicUsize::new(0));
    let mut keys = Vec::with_capacity(1_000_000);
    for i in 0..1_000_000u64 {
        let fired = fired.clone();
        keys.push(handle.call_later(ms(1 + i % 1000), move || {
            fired.fetch_add(1, Ordering::Relaxed);
        }));
    }
    assert_eq!(handle.pending_timers(), 1_000_000);
    for k in keys.iter().step_by(2) {
        assert!(handle.cancel_timer(*k));
    }
    assert_eq!(handle.pending_timers(), 500_000);
    clock.advance(ms(999));
    let before_last = fired.load(Ordering::Relaxed);
    assert!(before_last < 500_000);
    clock.advance(ms(1));
    assert_eq!(fired.load(Ordering::Relaxed), 500_000);
    assert_eq!(handle.pending_timers(), 0);
}

#[test]
fn real_clock_timers_fire() {
    let rt = runtime(2);
    let a = clocked(&rt);
    later(&a, 5, "real");
    let deadline = std::time::Instant::now() + WAIT;
    let mut got = Vec::new();
    while got.is_empty() && std::time::Instant::now() < deadline {
        got = seen(&a);
        std::thread::yield_now();
    }
    assert_eq!(got, vec!["real"]);
}
