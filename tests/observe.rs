//! What weft shows of a running program, under a known load: the
//! runtime's counters (`Handle::metrics`), the live actor view
//! (`weft::actors::observe`: types, parents, names, mailbox depth and
//! high-water marks) and the listeners' counters (`weft::io::listeners`).
//! Exact where the count is exact (timers armed, actors of a type, a
//! mailbox held by a blocked actor, connections accepted).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::Duration;

use common::*;
use weft::actors::observe;
use weft::prelude::*;

/// Handles a message by waiting for permission on `gate` (so that the
/// test can hold it mid-turn while its mailbox fills).
struct Gated {
    entered: Sender<()>,
    gate: Receiver<()>,
}

impl Actor for Gated {
    type Msg = u32;
    fn handle(&mut self, _n: u32, _ctx: &mut Ctx<'_, Self>) -> ActorResult {
        let _ = self.entered.send(());
        let _ = self.gate.recv_timeout(WAIT);
        Ok(())
    }
}

struct Idle;
impl Actor for Idle {
    type Msg = ();
    fn handle(&mut self, _m: (), _ctx: &mut Ctx<'_, Self>) -> ActorResult {
        Ok(())
    }
}

struct OtherIdle;
impl Actor for OtherIdle {
    type Msg = ();
    fn handle(&mut self, _m: (), _ctx: &mut Ctx<'_, Self>) -> ActorResult {
        Ok(())
    }
}

/// Spawns two children and registers itself as "parent".
struct Parent {
    ready: Sender<Vec<ActorId>>,
}

impl Actor for Parent {
    type Msg = ();
    fn started(&mut self, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        let me = ctx.address();
        weft::actors::Registry::of(ctx.runtime()).register("parent", &me)?;
        let a = ctx.spawn(Idle);
        let b = ctx.spawn(OtherIdle);
        let _ = self.ready.send(vec![me.id(), a.id(), b.id()]);
        Ok(())
    }
    fn handle(&mut self, _m: (), _ctx: &mut Ctx<'_, Self>) -> ActorResult {
        Ok(())
    }
}

#[test]
fn a_blocked_actors_mailbox_depth_and_high_water_are_exact() {
    let rt = runtime(2);
    let (entered_tx, entered) = mpsc::channel();
    let (gate_tx, gate) = mpsc::channel();
    let actor = rt.handle().spawn(Gated {
        entered: entered_tx,
        gate,
    });
    actor.send(0).unwrap();
    recv(&entered);
    // Held mid-turn: the next ten wait in its mailbox.
    for n in 1..=10 {
        actor.send(n).unwrap();
    }
    let info = observe::actor(rt.handle(), actor.id()).expect("alive");
    assert_eq!(info.mailbox, 10);
    assert_eq!(info.mailbox_high_water, 10);
    assert_eq!(info.mailbox_capacity, weft::actors::DEFAULT_CAPACITY);
    assert_eq!(info.short_type(), "Gated");
    assert_eq!(info.parent, None);
    for _ in 0..=10 {
        gate_tx.send(()).unwrap();
    }
    for _ in 1..=10 {
        recv(&entered);
    }
    eventually("the mailbox drained", || {
        observe::actor(rt.handle(), actor.id()).is_some_and(|i| i.mailbox == 0)
    });
    let info = observe::actor(rt.handle(), actor.id()).unwrap();
    assert_eq!(info.mailbox_high_water, 10, "the mark stays at its peak");
    actor.stop();
    eventually("it exited", || {
        observe::actor(rt.handle(), actor.id()).is_none()
    });
}

#[test]
fn actors_are_counted_by_type_and_shown_under_their_parents() {
    let rt = runtime(2);
    let idle: Vec<_> = (0..5).map(|_| rt.handle().spawn(Idle)).collect();
    let other: Vec<_> = (0..3).map(|_| rt.handle().spawn(OtherIdle)).collect();
    let count = |name: &str| {
        observe::actors_by_type(rt.handle())
            .into_iter()
            .find(|(t, _)| observe::short_type(t) == name)
            .map_or(0, |(_, n)| n)
    };
    assert_eq!(count("Idle"), 5);
    assert_eq!(count("OtherIdle"), 3);
    let (tx, rx) = mpsc::channel();
    rt.handle().spawn(Parent { ready: tx });
    let ids = recv(&rx);
    assert_eq!(count("Idle"), 6);
    let tree = observe::tree(rt.handle());
    let at = tree
        .iter()
        .position(|(_, i)| i.id == ids[0])
        .expect("the parent is in the tree");
    let (depth, parent) = &tree[at];
    assert_eq!(parent.name.as_deref(), Some("parent"));
    assert_eq!(parent.relations, 2, "two children");
    // Its children follow it, one level deeper, in spawn order.
    assert_eq!(tree[at + 1].0, depth + 1);
    assert_eq!(tree[at + 1].1.id, ids[1]);
    assert_eq!(tree[at + 1].1.parent, Some(ids[0]));
    assert_eq!(tree[at + 2].1.id, ids[2]);
    assert_eq!(tree[at + 2].1.short_type(), "OtherIdle");
    for a in &idle {
        a.stop();
    }
    for a in &other {
        a.stop();
    }
    eventually("the eight stopped", || {
        count("OtherIdle") == 1 && count("Idle") == 1
    });
    assert!(observe::actor(rt.handle(), ActorId(u64::MAX)).is_none());
}

#[test]
fn runtime_counters_move_with_the_work() {
    let rt = runtime(2);
    let before = rt.handle().metrics();
    assert_eq!(before.workers.len(), 2);
    // Timers: exact.
    let keys: Vec<_> = (0..3)
        .map(|_| rt.handle().call_later(Duration::from_secs(3600), || {}))
        .collect();
    assert_eq!(
        rt.handle().metrics().timers_pending,
        before.timers_pending + 3
    );
    assert!(rt.handle().cancel_timer(keys[0]));
    assert_eq!(
        rt.handle().metrics().timers_pending,
        before.timers_pending + 2
    );
    // Turns: at least one per actor started (a turn may handle several
    // messages, so messages are no lower bound; actors are).
    let (tx, rx) = mpsc::channel::<()>();
    struct Hello(Sender<()>);
    impl Actor for Hello {
        type Msg = ();
        fn started(&mut self, ctx: &mut Ctx<'_, Self>) -> ActorResult {
            let _ = self.0.send(());
            ctx.stop();
            Ok(())
        }
        fn handle(&mut self, _m: (), _ctx: &mut Ctx<'_, Self>) -> ActorResult {
            Ok(())
        }
    }
    for _ in 0..100 {
        rt.handle().spawn(Hello(tx.clone()));
    }
    for _ in 0..100 {
        recv(&rx);
    }
    let after = rt.handle().metrics();
    assert!(
        after.turns() >= before.turns() + 100,
        "{} turns before, {} after a hundred actors ran",
        before.turns(),
        after.turns()
    );
    // Busy and idle add up to the uptime.
    for w in &after.workers {
        assert_eq!(w.busy + w.idle, after.uptime);
    }
    // The blocking pool: a job held shows a thread.
    let (hold_tx, hold) = mpsc::channel::<()>();
    let (began_tx, began) = mpsc::channel::<()>();
    rt.handle()
        .spawn_blocking(move || {
            let _ = began_tx.send(());
            let _ = hold.recv_timeout(WAIT);
        })
        .unwrap();
    recv(&began);
    assert!(rt.handle().metrics().blocking.threads >= 1);
    hold_tx.send(()).unwrap();
}

/// Echoes.
struct Echo;
impl Protocol for Echo {
    type Msg = ();
    fn data(&mut self, conn: &mut Conn<'_, '_, Self>, data: &[u8]) -> ActorResult {
        conn.write(data)?;
        Ok(())
    }
}

#[test]
fn listeners_are_listed_with_exact_counters_until_they_stop() {
    let rt = runtime(2);
    let sources = rt.handle().metrics().io_sources;
    let listening = listen_tcp(
        rt.handle(),
        "127.0.0.1:0".parse().unwrap(),
        ListenOptions::new(),
        || Echo,
    )
    .unwrap();
    let addr = listening.local_addr();
    let find = || {
        weft::io::listeners(rt.handle())
            .into_iter()
            .find(|l| l.local_addr() == Some(addr))
    };
    assert!(find().is_some(), "listed as soon as it is bound");
    eventually("its socket is registered", || {
        rt.handle().metrics().io_sources == sources + 1
    });
    for _ in 0..3 {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.write_all(b"x").unwrap();
        let mut b = [0u8; 1];
        s.read_exact(&mut b).unwrap();
    }
    eventually("three closed", || {
        find().is_some_and(|l| l.stats().closed == 3)
    });
    let stats = find().unwrap().stats();
    assert_eq!((stats.accepted, stats.active, stats.failed), (3, 0, 0));
    listening.stop(StopMode::Close);
    assert!(listening.info().wait_stopped(WAIT));
    assert!(find().is_none(), "a stopped listener is not listed");
}
