//! Supervisors: strategies, restart types, intensity and escalation,
//! ordered shutdown with timeouts (manual clock), start failures.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use common::*;
use weft::prelude::*;
use weft::supervisor::{
    ChildInfo, ChildSpec, Intensity, Restart, Shutdown, Strategy, Supervisor, SupervisorMsg,
    SupervisorSpec,
};

#[derive(Debug)]
enum Event {
    Started(&'static str, Addr<Probe>),
    Stopped(&'static str, String),
    Blocked(&'static str),
}

struct Probe {
    name: &'static str,
    events: mpsc::Sender<Event>,
    count: u32,
}

enum ProbeMsg {
    Inc,
    Get(ReplyTo<u32>),
    Panic,
    Fail,
    StopNormal,
    Block(mpsc::Receiver<()>),
}

impl Actor for Probe {
    type Msg = ProbeMsg;
    fn started(&mut self, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        self.events.send(Event::Started(self.name, ctx.address()))?;
        Ok(())
    }
    fn handle(&mut self, msg: ProbeMsg, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        match msg {
            ProbeMsg::Inc => self.count += 1,
            ProbeMsg::Get(r) => r.send(self.count),
            ProbeMsg::Panic => panic!("{} crashed", self.name),
            ProbeMsg::Fail => return Err(format!("{} failed", self.name).into()),
            ProbeMsg::StopNormal => ctx.stop(),
            ProbeMsg::Block(gate) => {
                self.events.send(Event::Blocked(self.name))?;
                let _ = gate.recv_timeout(WAIT);
            }
        }
        Ok(())
    }
    fn stopped(&mut self, reason: &ExitReason, _ctx: &mut Ctx<'_, Self>) {
        let _ = self
            .events
            .send(Event::Stopped(self.name, reason.to_string()));
    }
}

fn probe(name: &'static str, events: &mpsc::Sender<Event>) -> ChildSpec {
    let events = events.clone();
    ChildSpec::worker(name, move || Probe {
        name,
        events: events.clone(),
        count: 0,
    })
}

struct Tree {
    sup: Addr<Supervisor>,
    events: mpsc::Receiver<Event>,
    probes: std::collections::HashMap<&'static str, Addr<Probe>>,
}

impl Tree {
    fn next(&mut self) -> String {
        match recv(&self.events) {
            Event::Started(name, addr) => {
                self.probes.insert(name, addr);
                format!("started {name}")
            }
            Event::Stopped(name, reason) => format!("stopped {name}: {reason}"),
            Event::Blocked(name) => format!("blocked {name}"),
        }
    }

    fn take(&mut self, n: usize) -> Vec<String> {
        (0..n).map(|_| self.next()).collect()
    }

    fn probe(&self, name: &str) -> &Addr<Probe> {
        &self.probes[name]
    }

    fn children(&self) -> Vec<ChildInfo> {
        self.sup
            .ask_wait(SupervisorMsg::WhichChildren, WAIT)
            .expect("supervisor answers")
    }
}

fn tree(
    rt: &Runtime,
    strategy: Strategy,
    intensity: Intensity,
    children: impl FnOnce(&mpsc::Sender<Event>) -> Vec<ChildSpec>,
) -> Tree {
    let (tx, events) = mpsc::channel();
    let mut spec = SupervisorSpec::new(strategy).intensity(intensity);
    for child in children(&tx) {
        spec = spec.child(child);
    }
    let sup = rt.handle().spawn(Supervisor::new(spec));
    let mut t = Tree {
        sup,
        events,
        probes: Default::default(),
    };
    let n = t.children().len();
    let started = t.take(n);
    assert!(
        started.iter().all(|e| e.starts_with("started")),
        "{started:?}"
    );
    t
}

fn lenient() -> Intensity {
    Intensity {
        max_restarts: 100,
        within: Duration::from_secs(1),
    }
}

fn abc(tx: &mpsc::Sender<Event>) -> Vec<ChildSpec> {
    vec![probe("a", tx), probe("b", tx), probe("c", tx)]
}

#[test]
fn one_for_one_restarts_only_the_failed_child_with_fresh_state() {
    let rt = runtime(2);
    let mut t = tree(&rt, Strategy::OneForOne, lenient(), abc);
    t.probe("a").send(ProbeMsg::Inc).unwrap();
    t.probe("b").send(ProbeMsg::Inc).unwrap();
    t.probe("b").send(ProbeMsg::Panic).unwrap();
    assert_eq!(t.take(2), vec!["stopped b: panic: b crashed", "started b"]);
    assert_eq!(
        t.probe("b").ask_wait(ProbeMsg::Get, WAIT).unwrap(),
        0,
        "fresh state"
    );
    assert_eq!(
        t.probe("a").ask_wait(ProbeMsg::Get, WAIT).unwrap(),
        1,
        "sibling kept its state"
    );
    let children = t.children();
    assert_eq!(children[1].restarts, 1);
    assert_eq!(children[0].restarts, 0);
    assert_eq!(
        children[1].addr.as_ref().map(|a| a.id()),
        Some(t.probe("b").id())
    );
    // An error return is a failure too.
    t.probe("c").send(ProbeMsg::Inc).unwrap();
    t.probe("c").send(ProbeMsg::Fail).unwrap();
    assert_eq!(t.take(2), vec!["stopped c: error: c failed", "started c"]);
    assert_eq!(t.probe("c").ask_wait(ProbeMsg::Get, WAIT).unwrap(), 0);
    assert_eq!(t.probe("a").ask_wait(ProbeMsg::Get, WAIT).unwrap(), 1);
}

#[test]
fn one_for_all_restarts_everyone_in_order() {
    let rt = runtime(2);
    let mut t = tree(&rt, Strategy::OneForAll, lenient(), abc);
    t.probe("b").send(ProbeMsg::Panic).unwrap();
    assert_eq!(
        t.take(6),
        vec![
            "stopped b: panic: b crashed",
            "stopped c: shutdown",
            "stopped a: shutdown",
            "started a",
            "started b",
            "started c",
        ]
    );
}

#[test]
fn rest_for_one_restarts_the_later_children() {
    let rt = runtime(2);
    let mut t = tree(&rt, Strategy::RestForOne, lenient(), abc);
    let a = t.probe("a").clone();
    t.probe("b").send(ProbeMsg::Panic).unwrap();
    assert_eq!(
        t.take(4),
        vec![
            "stopped b: panic: b crashed",
            "stopped c: shutdown",
            "started b",
            "started c"
        ]
    );
    assert_eq!(t.probe("a"), &a, "a is untouched");
}

#[test]
fn restart_types_on_normal_and_abnormal_exits() {
    let rt = runtime(2);
    let mut t = tree(&rt, Strategy::OneForOne, lenient(), |tx| {
        vec![
            probe("perm", tx),
            probe("trans", tx).restart(Restart::Transient),
            probe("temp", tx).restart(Restart::Temporary),
        ]
    });
    t.probe("perm").send(ProbeMsg::StopNormal).unwrap();
    assert_eq!(t.take(2), vec!["stopped perm: normal", "started perm"]);
    t.probe("trans").send(ProbeMsg::StopNormal).unwrap();
    assert_eq!(t.next(), "stopped trans: normal");
    t.probe("temp").send(ProbeMsg::Panic).unwrap();
    assert_eq!(t.next(), "stopped temp: panic: temp crashed");
    assert_silent(&t.events);
    let children = t.children();
    assert!(children[1].addr.is_none() && children[2].addr.is_none());

    let mut t = tree(&rt, Strategy::OneForOne, lenient(), |tx| {
        vec![probe("trans", tx).restart(Restart::Transient)]
    });
    t.probe("trans").send(ProbeMsg::Panic).unwrap();
    assert_eq!(
        t.take(2),
        vec!["stopped trans: panic: trans crashed", "started trans"]
    );
}

/// Watches one supervisor and reports its exit.
struct Watcher {
    tx: mpsc::Sender<String>,
}
enum WatchMsg {
    Watch(Addr<Supervisor>, ReplyTo<()>),
    Down(Down),
}
impl Actor for Watcher {
    type Msg = WatchMsg;
    fn handle(&mut self, msg: WatchMsg, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        match msg {
            WatchMsg::Watch(a, r) => {
                ctx.monitor(&a, WatchMsg::Down);
                r.send(());
            }
            WatchMsg::Down(d) => self.tx.send(d.reason.to_string())?,
        }
        Ok(())
    }
}

fn watch(rt: &Runtime, sup: &Addr<Supervisor>) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let w = rt.handle().spawn(Watcher { tx });
    w.ask_wait(|r| WatchMsg::Watch(sup.clone(), r), WAIT)
        .unwrap();
    rx
}

#[test]
fn intensity_window_on_the_manual_clock_then_escalation_in_reverse_order() {
    let (rt, clock) = manual_runtime(2);
    let intensity = Intensity {
        max_restarts: 2,
        within: Duration::from_secs(10),
    };
    let mut t = tree(&rt, Strategy::OneForOne, intensity, abc);
    let exits = watch(&rt, &t.sup);
    t.probe("b").send(ProbeMsg::Panic).unwrap();
    assert_eq!(t.take(2)[1], "started b");
    t.probe("b").send(ProbeMsg::Panic).unwrap();
    assert_eq!(t.take(2)[1], "started b");
    // The window moves on: the first two restarts no longer count.
    clock.advance(Duration::from_secs(10));
    t.probe("b").send(ProbeMsg::Panic).unwrap();
    assert_eq!(t.take(2)[1], "started b");
    t.probe("b").send(ProbeMsg::Panic).unwrap();
    assert_eq!(t.take(2)[1], "started b");
    // The third within 10 s is one too many.
    t.probe("a").send(ProbeMsg::Panic).unwrap();
    assert_eq!(
        t.take(3),
        vec![
            "stopped a: panic: a crashed",
            "stopped c: shutdown",
            "stopped b: shutdown"
        ]
    );
    let reason = recv(&exits);
    assert!(reason.contains("restart intensity exceeded"), "{reason}");
    assert!(reason.contains("child `a`"), "{reason}");
    assert!(reason.contains("a crashed"), "{reason}");
}

#[test]
fn nested_supervisors_escalate_to_the_parent() {
    let rt = runtime(2);
    let (tx, events) = mpsc::channel();
    let inner = SupervisorSpec::new(Strategy::OneForOne)
        .intensity(Intensity {
            max_restarts: 0,
            within: Duration::from_secs(5),
        })
        .child(probe("w", &tx));
    let root = SupervisorSpec::new(Strategy::OneForOne)
        .intensity(lenient())
        .child(ChildSpec::supervisor("inner", inner));
    let sup = rt.handle().spawn(Supervisor::new(root));
    let mut t = Tree {
        sup,
        events,
        probes: Default::default(),
    };
    assert_eq!(t.next(), "started w");
    let first = t.probe("w").clone();
    first.send(ProbeMsg::Panic).unwrap();
    // The inner supervisor gives up at once; the root restarts it, and with
    // it a fresh worker.
    assert_eq!(t.take(2), vec!["stopped w: panic: w crashed", "started w"]);
    assert_ne!(t.probe("w"), &first);
    assert_eq!(t.children()[0].restarts, 1);
}

#[test]
fn shutdown_stops_children_in_reverse_order_and_kills_after_the_timeout() {
    let (rt, clock) = manual_runtime(3);
    let mut t = tree(&rt, Strategy::OneForOne, lenient(), |tx| {
        vec![
            probe("a", tx),
            probe("b", tx).shutdown(Shutdown::Timeout(Duration::from_secs(2))),
            probe("c", tx).shutdown(Shutdown::Brutal),
        ]
    });
    let exits = watch(&rt, &t.sup);
    // b will not stop while its handler is blocked.
    let (release, gate) = mpsc::channel();
    t.probe("b").send(ProbeMsg::Block(gate)).unwrap();
    assert_eq!(t.next(), "blocked b");
    t.sup.send(SupervisorMsg::Shutdown).ok().unwrap();
    assert_eq!(t.next(), "stopped c: killed");
    // The supervisor waits for b until its timeout, and no longer.
    assert_silent(&t.events);
    assert_silent(&exits);
    clock.advance(Duration::from_secs(2));
    assert_eq!(t.next(), "stopped a: shutdown");
    assert_eq!(recv(&exits), "shutdown");
    // Once b's handler returns, the kill takes effect.
    release.send(()).unwrap();
    let b = t.next();
    assert!(
        b == "stopped b: shutdown" || b == "stopped b: killed",
        "{b}"
    );
}

/// Spawns a supervisor and reports how its start went.
struct Starter {
    tx: mpsc::Sender<Result<(), String>>,
}
enum StarterMsg {
    Start(SupervisorSpec),
    Started(Result<(), ExitReason>),
}
impl Actor for Starter {
    type Msg = StarterMsg;
    fn handle(&mut self, msg: StarterMsg, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        match msg {
            StarterMsg::Start(spec) => {
                ctx.spawn_notify(
                    Supervisor::new(spec),
                    SpawnOptions::new(),
                    StarterMsg::Started,
                )?;
            }
            StarterMsg::Started(r) => self.tx.send(r.map_err(|e| e.to_string()))?,
        }
        Ok(())
    }
}

struct FailsToStart;
impl Actor for FailsToStart {
    type Msg = ();
    fn started(&mut self, _ctx: &mut Ctx<'_, Self>) -> ActorResult {
        Err("port 80 busy".into())
    }
    fn handle(&mut self, _m: (), _c: &mut Ctx<'_, Self>) -> ActorResult {
        Ok(())
    }
}

#[test]
fn a_child_start_failure_fails_the_supervisor_start_naming_the_child() {
    let rt = runtime(2);
    let (tx, events) = mpsc::channel();
    let (started_tx, started) = mpsc::channel();
    let starter = rt.handle().spawn(Starter { tx: started_tx });
    let ok = SupervisorSpec::new(Strategy::OneForOne).child(probe("a", &tx));
    starter.send(StarterMsg::Start(ok)).ok().unwrap();
    assert_eq!(recv(&started), Ok(()));
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .child(probe("a2", &tx))
        .child(ChildSpec::worker("listener", || FailsToStart))
        .child(probe("never", &tx));
    starter.send(StarterMsg::Start(spec)).ok().unwrap();
    let err = recv(&started).unwrap_err();
    assert!(err.contains("child `listener` failed to start"), "{err}");
    assert!(err.contains("port 80 busy"), "{err}");
    let mut seen: Vec<String> = Vec::new();
    for _ in 0..3 {
        seen.push(match recv(&events) {
            Event::Started(n, _) => format!("started {n}"),
            Event::Stopped(n, r) => format!("stopped {n}: {r}"),
            Event::Blocked(n) => format!("blocked {n}"),
        });
    }
    assert_eq!(
        seen,
        vec!["started a", "started a2", "stopped a2: shutdown"]
    );
    assert_silent(&events);
}

fn app_runtime() -> Runtime {
    Runtime::builder()
        .workers(2)
        .signals(weft::runtime::Signals::Ignore)
        .shutdown_timeout(WAIT)
        .build()
        .unwrap()
}

#[test]
fn the_application_stops_its_tree_in_order_when_the_runtime_shuts_down() {
    let rt = app_runtime();
    let (tx, events) = mpsc::channel();
    let inner = SupervisorSpec::new(Strategy::OneForOne)
        .child(probe("b1", &tx))
        .child(probe("b2", &tx));
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .child(probe("a", &tx))
        .child(ChildSpec::supervisor("b", inner))
        .child(probe("c", &tx));
    let handle = rt.handle().clone();
    let stopper = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for _ in 0..4 {
            if let Event::Started(n, _) = recv(&events) {
                seen.push(n);
            }
        }
        handle.shutdown();
        let mut stopped = Vec::new();
        for _ in 0..4 {
            if let Event::Stopped(n, r) = recv(&events) {
                stopped.push(format!("{n}: {r}"));
            }
        }
        (seen, stopped)
    });
    let reason = weft::supervisor::run_application(&rt, spec).unwrap();
    assert!(matches!(reason, ExitReason::Shutdown), "{reason}");
    let (started, stopped) = stopper.join().unwrap();
    assert_eq!(started, vec!["a", "b1", "b2", "c"]);
    assert_eq!(
        stopped,
        vec!["c: shutdown", "b2: shutdown", "b1: shutdown", "a: shutdown"]
    );
}

#[test]
fn the_application_ends_with_the_roots_escalated_reason() {
    let rt = app_runtime();
    let (tx, events) = mpsc::channel();
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .intensity(Intensity {
            max_restarts: 0,
            within: Duration::from_secs(60),
        })
        .child(probe("fragile", &tx));
    let crasher = std::thread::spawn(move || {
        if let Event::Started(_, addr) = recv(&events) {
            addr.send(ProbeMsg::Panic).ok().unwrap();
        }
    });
    let reason = weft::supervisor::run_application(&rt, spec).unwrap();
    crasher.join().unwrap();
    let text = reason.to_string();
    assert!(text.contains("restart intensity exceeded"), "{text}");
    assert!(text.contains("fragile crashed"), "{text}");
}

#[test]
fn a_tree_dump_shows_every_child_nested() {
    let rt = runtime(2);
    let (tx, events) = mpsc::channel();
    let inner = SupervisorSpec::new(Strategy::OneForAll).child(probe("leaf", &tx));
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .intensity(lenient())
        .child(probe("worker", &tx).restart(Restart::Transient))
        .child(ChildSpec::supervisor("pool", inner));
    let root = rt.handle().spawn(Supervisor::new(spec));
    let mut worker = None;
    for _ in 0..2 {
        if let Event::Started("worker", addr) = recv(&events) {
            worker = Some(addr);
        }
    }
    worker.unwrap().send(ProbeMsg::Panic).unwrap();
    let _ = recv(&events); // stopped
    let _ = recv(&events); // started again
    let dump = weft::supervisor::tree_dump(&root, WAIT);
    let lines: Vec<&str> = dump.lines().collect();
    assert_eq!(lines.len(), 4, "{dump}");
    assert!(
        lines[0].ends_with("(root)") && lines[0].contains("Supervisor"),
        "{dump}"
    );
    assert!(
        lines[1].starts_with("  worker [Worker, Transient, restarts 1]"),
        "{dump}"
    );
    assert!(lines[1].contains("Probe"), "{dump}");
    assert!(
        lines[2].starts_with("  pool [Supervisor, Permanent, restarts 0]"),
        "{dump}"
    );
    assert!(
        lines[3].starts_with("    leaf [Worker, Permanent, restarts 0]"),
        "{dump}"
    );
}

#[test]
fn restarts_back_off_along_the_configured_curve() {
    let (rt, clock) = manual_runtime(2);
    let backoff = weft::supervisor::Backoff {
        initial: Duration::from_millis(100),
        max: Duration::from_millis(300),
        factor: 2.0,
        reset_after: Duration::from_secs(10),
    };
    let mut t = tree(&rt, Strategy::OneForOne, lenient(), |tx| {
        vec![probe("flaky", tx).backoff(backoff)]
    });
    let ms = Duration::from_millis;
    // Each failure waits longer: 100, 200, then capped at 300 ms.
    // The supervisor has taken the exit in (and armed its back-off timer)
    // once it reports the child as not running.
    let settle = |t: &Tree| {
        let deadline = std::time::Instant::now() + WAIT;
        while t.children()[0].addr.is_some() && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
    };
    for delay in [100, 200, 300, 300] {
        t.probe("flaky").send(ProbeMsg::Panic).unwrap();
        assert_eq!(t.next(), "stopped flaky: panic: flaky crashed");
        settle(&t);
        clock.advance(ms(delay - 1));
        assert_silent(&t.events);
        clock.advance(ms(1));
        assert_eq!(t.next(), "started flaky", "after {delay} ms");
    }
    // Quiet for the reset period: back to the first step.
    clock.advance(Duration::from_secs(10));
    t.probe("flaky").send(ProbeMsg::Panic).unwrap();
    assert_eq!(t.next(), "stopped flaky: panic: flaky crashed");
    settle(&t);
    clock.advance(ms(99));
    assert_silent(&t.events);
    clock.advance(ms(1));
    assert_eq!(t.next(), "started flaky");
}
