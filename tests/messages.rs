//! Message delivery: order, nothing lost, full and stopped mailboxes.

mod common;

use std::collections::HashMap;
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use weft::prelude::*;

struct Tally {
    last: HashMap<u32, u64>,
    count: u64,
    out_of_order: u64,
}

enum TallyMsg {
    Item { sender: u32, seq: u64 },
    Get(ReplyTo<(u64, u64)>),
}

impl Actor for Tally {
    type Msg = TallyMsg;
    fn handle(&mut self, msg: TallyMsg, _ctx: &mut Ctx<'_, Self>) -> ActorResult {
        match msg {
            TallyMsg::Item { sender, seq } => {
                let last = self.last.entry(sender).or_insert(0);
                if seq != *last + 1 {
                    self.out_of_order += 1;
                }
                *last = seq;
                self.count += 1;
            }
            TallyMsg::Get(r) => r.send((self.count, self.out_of_order)),
        }
        Ok(())
    }
}

fn tally() -> Tally {
    Tally {
        last: HashMap::new(),
        count: 0,
        out_of_order: 0,
    }
}

#[test]
fn concurrent_senders_lose_nothing_and_keep_order() {
    let rt = runtime(2);
    let addr = rt.handle().spawn(tally());
    let threads: Vec<_> = (0..4u32)
        .map(|sender| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                for seq in 1..=100_000u64 {
                    addr.send_timeout(TallyMsg::Item { sender, seq }, WAIT)
                        .unwrap_or_else(|e| panic!("send failed: {e}"));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let (count, out_of_order) = addr.ask_wait(TallyMsg::Get, WAIT).unwrap();
    assert_eq!(count, 400_000);
    assert_eq!(out_of_order, 0);
}

/// Blocks its worker on a gate for the first message, so the test can
/// fill the mailbox deterministically; says when it is inside.
struct Gated {
    gate: Option<mpsc::Receiver<()>>,
    entered: Option<mpsc::Sender<()>>,
    handled: u32,
}

enum GatedMsg {
    Work(u32),
    Count(ReplyTo<u32>),
}

impl Actor for Gated {
    type Msg = GatedMsg;
    fn handle(&mut self, msg: GatedMsg, _ctx: &mut Ctx<'_, Self>) -> ActorResult {
        match msg {
            GatedMsg::Work(_) => {
                if let Some(gate) = self.gate.take() {
                    if let Some(entered) = self.entered.take() {
                        entered.send(())?;
                    }
                    gate.recv_timeout(WAIT)?;
                }
                self.handled += 1;
            }
            GatedMsg::Count(r) => r.send(self.handled),
        }
        Ok(())
    }
}

#[test]
fn full_mailbox_hands_the_message_back() {
    let rt = runtime(2);
    let (open, gate) = mpsc::channel();
    let (entered_tx, entered) = mpsc::channel();
    let addr = rt
        .handle()
        .spawn_with(
            Gated {
                gate: Some(gate),
                entered: Some(entered_tx),
                handled: 0,
            },
            SpawnOptions::new().capacity(2),
        )
        .unwrap();
    addr.send(GatedMsg::Work(1)).unwrap();
    // The actor took Work(1) and is busy with it: its mailbox is empty and
    // holds two more.
    recv(&entered);
    addr.send(GatedMsg::Work(2)).unwrap();
    addr.send(GatedMsg::Work(3)).unwrap();
    assert_eq!(addr.queued(), 2);
    match addr.send(GatedMsg::Work(4)) {
        Err(SendError::Full(GatedMsg::Work(4))) => {}
        other => panic!("expected Full(Work(4)), got {other:?}"),
    }
    // A plain thread may wait for room instead, with a bound.
    match addr.send_timeout(GatedMsg::Work(5), Duration::from_millis(20)) {
        Err(SendError::Timeout(GatedMsg::Work(5))) => {}
        other => panic!("expected Timeout(Work(5)), got {other:?}"),
    }
    // Once the actor takes its mailbox, a waiting sender gets in.
    open.send(()).unwrap();
    addr.send_timeout(GatedMsg::Work(6), WAIT).unwrap();
    assert_eq!(addr.ask_wait(GatedMsg::Count, WAIT).unwrap(), 4);
}

#[test]
fn zero_capacity_is_an_error() {
    let rt = runtime(1);
    let r = rt.handle().spawn_with(
        Gated {
            gate: None,
            entered: None,
            handled: 0,
        },
        SpawnOptions::new().capacity(0),
    );
    assert!(matches!(r, Err(weft::actors::SpawnError::ZeroCapacity)));
}

#[test]
fn stopped_actor_hands_the_message_back_with_an_error() {
    let rt = runtime(1);
    let addr = recorder::<u32>(&rt);
    let (tx, rx) = mpsc::channel();
    let watcher = rt.handle().spawn(Watch { tx });
    watcher.send(WatchMsg::Watch(addr.clone())).unwrap();
    assert!(addr.stop());
    let down = recv(&rx);
    assert!(matches!(down.reason, ExitReason::Normal));
    assert!(addr.is_stopped());
    match addr.send(RecMsg::Record(7)) {
        Err(SendError::Stopped(RecMsg::Record(7))) => {}
        other => panic!("expected Stopped(Record(7)), got {:?}", other.is_ok()),
    }
    assert!(
        !addr.stop(),
        "stopping twice reports it had already stopped"
    );
}

struct Watch {
    tx: mpsc::Sender<Down>,
}
enum WatchMsg {
    Watch(Addr<Recorder<u32>>),
    Down(Down),
}
impl Actor for Watch {
    type Msg = WatchMsg;
    fn handle(&mut self, msg: WatchMsg, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        match msg {
            WatchMsg::Watch(a) => {
                ctx.monitor(&a, WatchMsg::Down);
            }
            WatchMsg::Down(d) => self.tx.send(d)?,
        }
        Ok(())
    }
}

/// kameo#84: a small mailbox that fills before `started` finishes must not
/// deadlock, and `started` may send to itself.
struct SelfStarter {
    tx: mpsc::Sender<&'static str>,
}
impl Actor for SelfStarter {
    type Msg = &'static str;
    fn started(&mut self, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        ctx.send_self("from started (internal)");
        let me = ctx.address();
        // The external sender may already have filled the only slot.
        if let Err(e) = me.send("from started (addr)") {
            self.tx
                .send(if e.is_stopped() { "stopped?" } else { "full" })?;
        }
        Ok(())
    }
    fn handle(&mut self, msg: &'static str, _ctx: &mut Ctx<'_, Self>) -> ActorResult {
        self.tx.send(msg)?;
        Ok(())
    }
}

#[test]
fn capacity_one_mailbox_does_not_deadlock_at_start() {
    let rt = runtime(2);
    let (tx, rx) = mpsc::channel();
    let addr = rt
        .handle()
        .spawn_with(SelfStarter { tx }, SpawnOptions::new().capacity(1))
        .unwrap();
    let early = addr.send("early");
    let mut got = Vec::new();
    let expected = if early.is_ok() { 3 } else { 2 };
    for _ in 0..expected {
        got.push(recv(&rx));
    }
    assert!(got.contains(&"from started (internal)"));
    assert!(!got.contains(&"stopped?"));
    if early.is_ok() {
        assert!(got.contains(&"early"));
    }
}

#[test]
fn recipient_and_registry_deliver() {
    let rt = runtime(1);
    let rec = recorder::<String>(&rt);
    let lines: Recipient<String> = rec.recipient_map(RecMsg::Record);
    lines.send("a".into()).unwrap();
    lines.clone().send("b".into()).unwrap();
    assert_eq!(recorded(&rec), vec!["a".to_string(), "b".to_string()]);

    let names = weft::actors::Registry::of(rt.handle());
    names.register("log", &rec).unwrap();
    let other = recorder::<String>(&rt);
    assert!(matches!(
        names.register("log", &other),
        Err(weft::actors::NameError::Taken(_))
    ));
    assert_eq!(names.lookup::<Recorder<String>>("log"), Some(rec.clone()));
    assert_eq!(names.lookup::<Recorder<u8>>("log"), None, "wrong type");
    rec.stop();
    let deadline = std::time::Instant::now() + WAIT;
    while !rec.is_stopped() && std::time::Instant::now() < deadline {
        std::thread::yield_now();
    }
    assert_eq!(
        names.lookup::<Recorder<String>>("log"),
        None,
        "dead names are freed"
    );
    names.register("log", &other).unwrap();
    assert!(lines.send("c".into()).is_err());
}
