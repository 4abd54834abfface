//! Stress of the cell state machine: with a turn budget of 1 and many
//! senders, a lost wake-up shows up as a missing message (the bounded ask
//! fails) and a double run as an overlapping handler.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;
use weft::prelude::*;

struct Exclusive {
    inside: Arc<AtomicBool>,
    overlaps: Arc<AtomicUsize>,
    count: u64,
}
enum ExMsg {
    Hit,
    Count(ReplyTo<u64>),
}
impl Actor for Exclusive {
    type Msg = ExMsg;
    fn handle(&mut self, msg: ExMsg, _ctx: &mut Ctx<'_, Self>) -> ActorResult {
        if self.inside.swap(true, Ordering::SeqCst) {
            self.overlaps.fetch_add(1, Ordering::SeqCst);
        }
        match msg {
            ExMsg::Hit => self.count += 1,
            ExMsg::Count(r) => r.send(self.count),
        }
        self.inside.store(false, Ordering::SeqCst);
        Ok(())
    }
}

/// Relays hits to the next actor, so workers schedule each other too.
struct Relay {
    next: Addr<Exclusive>,
}
impl Actor for Relay {
    type Msg = ();
    fn handle(&mut self, _m: (), ctx: &mut Ctx<'_, Self>) -> ActorResult {
        ctx.send(&self.next, ExMsg::Hit)
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}

#[test]
fn no_lost_wakeup_no_double_run() {
    for round in 0..20 {
        let rt = Runtime::builder()
            .workers(2)
            .turn_budget(1)
            .shutdown_timeout(WAIT)
            .build()
            .unwrap();
        let overlaps = Arc::new(AtomicUsize::new(0));
        let targets: Vec<_> = (0..4)
            .map(|_| {
                rt.handle().spawn(Exclusive {
                    inside: Arc::new(AtomicBool::new(false)),
                    overlaps: overlaps.clone(),
                    count: 0,
                })
            })
            .collect();
        let relays: Vec<_> = targets
            .iter()
            .map(|t| rt.handle().spawn(Relay { next: t.clone() }))
            .collect();
        let per_thread = 5_000u64;
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let direct = targets[i].clone();
                let relay = relays[(i + 1) % 4].clone();
                std::thread::spawn(move || {
                    for n in 0..per_thread {
                        if n % 2 == 0 {
                            direct.send_timeout(ExMsg::Hit, WAIT).ok().unwrap();
                        } else {
                            relay.send_timeout((), WAIT).ok().unwrap();
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // Every message must arrive: the relays forward asynchronously, so
        // poll the totals until they add up (bounded by WAIT).
        let deadline = std::time::Instant::now() + WAIT;
        let mut total = 0;
        while std::time::Instant::now() < deadline {
            total = targets
                .iter()
                .map(|t| t.ask_wait(ExMsg::Count, WAIT).unwrap())
                .sum::<u64>();
            if total == 4 * per_thread {
                break;
            }
            std::thread::yield_now();
        }
        assert_eq!(total, 4 * per_thread, "round {round}: messages lost");
        assert_eq!(
            overlaps.load(Ordering::SeqCst),
            0,
            "round {round}: double run"
        );
    }
}

/// Passes a token around a ring; each hop meets an idle receiver, the
/// senders' lock-free path. Several tokens run at once so receivers are
/// sometimes busy (the locked path) and sometimes idle.
struct Ring {
    next: Option<Addr<Ring>>,
    inside: Arc<AtomicBool>,
    overlaps: Arc<AtomicUsize>,
    done: std::sync::mpsc::Sender<u64>,
}
enum RingMsg {
    Next(Addr<Ring>),
    Token(u64, u64),
}
impl Actor for Ring {
    type Msg = RingMsg;
    fn handle(&mut self, msg: RingMsg, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        if self.inside.swap(true, Ordering::SeqCst) {
            self.overlaps.fetch_add(1, Ordering::SeqCst);
        }
        match msg {
            RingMsg::Next(n) => self.next = Some(n),
            RingMsg::Token(id, 0) => self.done.send(id)?,
            RingMsg::Token(id, left) => {
                let next = self.next.as_ref().ok_or("no next")?;
                ctx.send(next, RingMsg::Token(id, left - 1))
                    .map_err(|e| e.to_string())?;
            }
        }
        self.inside.store(false, Ordering::SeqCst);
        Ok(())
    }
}

#[test]
fn tokens_around_a_ring_all_arrive() {
    let rt = runtime(2);
    let overlaps = Arc::new(AtomicUsize::new(0));
    let (done, arrived) = std::sync::mpsc::channel();
    let ring: Vec<_> = (0..8)
        .map(|_| {
            rt.handle().spawn(Ring {
                next: None,
                inside: Arc::new(AtomicBool::new(false)),
                overlaps: overlaps.clone(),
                done: done.clone(),
            })
        })
        .collect();
    for (i, a) in ring.iter().enumerate() {
        a.send(RingMsg::Next(ring[(i + 1) % 8].clone()))
            .ok()
            .unwrap();
    }
    for id in 0..4u64 {
        ring[id as usize]
            .send(RingMsg::Token(id, 100_000))
            .ok()
            .unwrap();
    }
    let mut got: Vec<u64> = (0..4).map(|_| recv(&arrived)).collect();
    got.sort();
    assert_eq!(got, vec![0, 1, 2, 3]);
    assert_eq!(overlaps.load(Ordering::SeqCst), 0);
}
