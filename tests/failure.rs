//! Failure: panics and errors stop only their actor, with the reason, and
//! monitors and links learn it.

mod common;

use std::sync::mpsc;

use common::*;
use weft::prelude::*;

struct Fragile;
enum FragileMsg {
    Panic,
    Fail,
    Ping(ReplyTo<&'static str>),
}
impl Actor for Fragile {
    type Msg = FragileMsg;
    fn handle(&mut self, msg: FragileMsg, _ctx: &mut Ctx<'_, Self>) -> ActorResult {
        match msg {
            FragileMsg::Panic => panic!("boom"),
            FragileMsg::Fail => Err("bad input".into()),
            FragileMsg::Ping(r) => {
                r.send("pong");
                Ok(())
            }
        }
    }
}

/// Monitors and links to whatever it is told, and reports what it learns.
struct Observer {
    tx: mpsc::Sender<String>,
    trap: bool,
}
enum ObsMsg {
    Monitor(Addr<Fragile>),
    Link(Addr<Fragile>),
    Down(Down),
    Exit(ExitSignal),
    Ping(ReplyTo<()>),
}
impl Actor for Observer {
    type Msg = ObsMsg;
    fn started(&mut self, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        if self.trap {
            ctx.trap_exits(ObsMsg::Exit);
        }
        Ok(())
    }
    fn handle(&mut self, msg: ObsMsg, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        match msg {
            ObsMsg::Monitor(a) => {
                ctx.monitor(&a, ObsMsg::Down);
            }
            ObsMsg::Link(a) => ctx.link(&a),
            ObsMsg::Down(d) => self.tx.send(format!("down {}", d.reason))?,
            ObsMsg::Exit(e) => self.tx.send(format!("exit {}", e.reason))?,
            ObsMsg::Ping(r) => r.send(()),
        }
        Ok(())
    }
    fn stopped(&mut self, reason: &ExitReason, _ctx: &mut Ctx<'_, Self>) {
        let _ = self.tx.send(format!("observer stopped: {reason}"));
    }
}

fn observer(rt: &Runtime, trap: bool) -> (Addr<Observer>, mpsc::Receiver<String>) {
    let (tx, rx) = mpsc::channel();
    (rt.handle().spawn(Observer { tx, trap }), rx)
}

#[test]
fn panic_stops_only_that_actor_and_monitors_learn_the_reason() {
    let rt = runtime(2);
    let fragile = rt.handle().spawn(Fragile);
    let healthy = rt.handle().spawn(Fragile);
    let (obs, rx) = observer(&rt, false);
    obs.send(ObsMsg::Monitor(fragile.clone())).unwrap();
    // Make sure the monitor is in place before the crash.
    obs.ask_wait(ObsMsg::Ping, WAIT).unwrap();
    fragile.send(FragileMsg::Panic).unwrap();
    assert_eq!(recv(&rx), "down panic: boom");
    assert!(fragile.is_stopped());
    assert!(matches!(
        fragile.ask_wait(FragileMsg::Ping, WAIT),
        Err(AskError::Stopped)
    ));
    // Others and the runtime carry on.
    assert_eq!(healthy.ask_wait(FragileMsg::Ping, WAIT).unwrap(), "pong");
    let fresh = rt.handle().spawn(Fragile);
    assert_eq!(fresh.ask_wait(FragileMsg::Ping, WAIT).unwrap(), "pong");
}

#[test]
fn error_return_stops_with_the_error() {
    let rt = runtime(1);
    let fragile = rt.handle().spawn(Fragile);
    let (obs, rx) = observer(&rt, false);
    obs.send(ObsMsg::Monitor(fragile.clone())).unwrap();
    fragile.send(FragileMsg::Fail).unwrap();
    assert_eq!(recv(&rx), "down error: bad input");
}

#[test]
fn monitoring_a_dead_actor_reports_at_once() {
    let rt = runtime(1);
    let fragile = rt.handle().spawn(Fragile);
    fragile.kill();
    let (obs, rx) = observer(&rt, false);
    while !fragile.is_stopped() {
        std::thread::yield_now();
    }
    obs.send(ObsMsg::Monitor(fragile)).unwrap();
    assert_eq!(recv(&rx), "down killed");
}

#[test]
fn links_propagate_abnormal_exits_unless_trapped() {
    let rt = runtime(2);
    // Not trapping: the observer dies with the linked actor.
    let fragile = rt.handle().spawn(Fragile);
    let (obs, rx) = observer(&rt, false);
    obs.send(ObsMsg::Link(fragile.clone())).unwrap();
    obs.ask_wait(ObsMsg::Ping, WAIT).unwrap();
    fragile.send(FragileMsg::Panic).unwrap();
    let msg = recv(&rx);
    assert!(msg.starts_with("observer stopped: linked"), "{msg}");
    assert!(msg.contains("panic: boom"), "{msg}");

    // Trapping: the exit arrives as a message and the observer lives on.
    let fragile = rt.handle().spawn(Fragile);
    let (obs, rx) = observer(&rt, true);
    obs.send(ObsMsg::Link(fragile.clone())).unwrap();
    obs.ask_wait(ObsMsg::Ping, WAIT).unwrap();
    fragile.send(FragileMsg::Fail).unwrap();
    assert_eq!(recv(&rx), "exit error: bad input");
    assert!(!obs.is_stopped());

    // A normal exit does not kill a linked, non-trapping actor.
    let fragile = rt.handle().spawn(Fragile);
    let (obs, rx) = observer(&rt, false);
    obs.send(ObsMsg::Link(fragile.clone())).unwrap();
    obs.ask_wait(ObsMsg::Ping, WAIT).unwrap();
    fragile.stop();
    assert_silent(&rx);
    assert!(!obs.is_stopped());
}

struct FailsToStart;
impl Actor for FailsToStart {
    type Msg = ();
    fn started(&mut self, _ctx: &mut Ctx<'_, Self>) -> ActorResult {
        Err("port busy".into())
    }
    fn handle(&mut self, _m: (), _c: &mut Ctx<'_, Self>) -> ActorResult {
        Ok(())
    }
}

struct Parent {
    tx: mpsc::Sender<String>,
}
enum ParentMsg {
    Start(ReplyTo<Addr<Fragile>>),
    ChildDown(Down),
    Crash,
}
impl Actor for Parent {
    type Msg = ParentMsg;
    fn handle(&mut self, msg: ParentMsg, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        match msg {
            ParentMsg::Start(reply) => {
                let child = ctx.spawn(FailsToStart);
                ctx.monitor(&child, ParentMsg::ChildDown);
                reply.send(ctx.spawn(Fragile));
            }
            ParentMsg::ChildDown(d) => self.tx.send(format!("child {}", d.reason))?,
            ParentMsg::Crash => panic!("parent crash"),
        }
        Ok(())
    }
}

#[test]
fn failed_start_and_children_stop_with_their_parent() {
    let rt = runtime(2);
    let (tx, rx) = mpsc::channel();
    let parent = rt.handle().spawn(Parent { tx });
    let survivor = parent.ask_wait(ParentMsg::Start, WAIT).unwrap();
    assert_eq!(recv(&rx), "child error: port busy");
    let (obs, obs_rx) = observer(&rt, false);
    obs.send(ObsMsg::Monitor(survivor.clone())).unwrap();
    obs.ask_wait(ObsMsg::Ping, WAIT).unwrap();
    parent.send(ParentMsg::Crash).unwrap();
    assert_eq!(recv(&obs_rx), "down shutdown");
    assert!(survivor.is_stopped());
}

/// Finishes its work before stopping when asked to stop.
struct Finisher {
    tx: std::sync::mpsc::Sender<String>,
}

impl Actor for Finisher {
    type Msg = &'static str;
    fn handle(&mut self, msg: &'static str, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        let _ = self.tx.send(format!("handled {msg}"));
        if msg == "done" {
            ctx.stop_with(ExitReason::Shutdown);
        }
        Ok(())
    }
    fn stopping(&mut self, reason: &ExitReason, _ctx: &mut Ctx<'_, Self>) -> Stopping {
        let _ = self.tx.send(format!("stopping {reason}"));
        Stopping::Continue
    }
    fn stopped(&mut self, reason: &ExitReason, _ctx: &mut Ctx<'_, Self>) {
        let _ = self.tx.send(format!("stopped {reason}"));
    }
}

#[test]
fn a_stop_request_can_be_trapped_but_kill_cannot() {
    let rt = runtime(1);
    let (tx, rx) = std::sync::mpsc::channel();
    let a = rt.handle().spawn(Finisher { tx: tx.clone() });
    assert!(a.stop_with(ExitReason::Shutdown));
    assert_eq!(recv(&rx), "stopping shutdown");
    // Still running: it finishes its work, then stops itself.
    a.send("work").ok().unwrap();
    assert_eq!(recv(&rx), "handled work");
    a.send("done").ok().unwrap();
    assert_eq!(recv(&rx), "handled done");
    assert_eq!(recv(&rx), "stopped shutdown");

    let b = rt.handle().spawn(Finisher { tx });
    assert!(b.kill());
    assert_eq!(recv(&rx), "stopped killed");
    assert_silent(&rx);
}

/// A message whose `Drop` panics (a user type with a buggy destructor).
struct Grenade;
impl Drop for Grenade {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("Grenade dropped");
        }
    }
}

/// Blocks in its first message until the test opens the gate, so that the
/// messages sent meanwhile are still queued when it is killed; its
/// `stopped` panics too.
struct Hoarder {
    gate: mpsc::Receiver<()>,
}
impl Actor for Hoarder {
    type Msg = Option<Grenade>;
    fn handle(&mut self, msg: Option<Grenade>, _ctx: &mut Ctx<'_, Self>) -> ActorResult {
        self.gate.recv_timeout(WAIT)?;
        std::mem::forget(msg);
        Ok(())
    }
    fn stopped(&mut self, _reason: &ExitReason, _ctx: &mut Ctx<'_, Self>) {
        panic!("stopped panics too");
    }
}

/// Monitors with a map that panics.
struct BadMap;
impl Actor for BadMap {
    type Msg = Addr<Hoarder>;
    fn handle(&mut self, target: Addr<Hoarder>, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        ctx.monitor(&target, |_| panic!("the monitor's map panics"));
        Ok(())
    }
}

/// Every place weft drops or runs user values at an actor's exit is behind
/// the panic boundary: queued messages whose `Drop` panics (several: a
/// second panic during an unwind would abort the process), a panicking
/// `stopped`, a monitor whose map panics. On one worker, the runtime keeps
/// serving and the exit completes (the actor leaves the live table).
#[test]
fn panics_in_drops_and_notices_at_exit_never_take_down_a_worker() {
    let rt = runtime(1);
    let base = weft::actors::live_actors(rt.handle());
    let (open, gate) = mpsc::channel();
    let hoarder = rt.handle().spawn(Hoarder { gate });
    let bad = rt.handle().spawn(BadMap);
    bad.send(hoarder.clone()).unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while hoarder.relations() == 0 {
        assert!(std::time::Instant::now() < deadline, "monitor not placed");
        std::thread::yield_now();
    }
    hoarder.send(None).unwrap();
    for _ in 0..5 {
        assert!(hoarder.send(Some(Grenade)).is_ok(), "queued");
    }
    hoarder.kill();
    open.send(()).unwrap();
    let healthy = rt.handle().spawn(Fragile);
    assert_eq!(healthy.ask_wait(FragileMsg::Ping, WAIT), Ok("pong"));
    while !hoarder.is_stopped() || weft::actors::live_actors(rt.handle()) != base + 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the exit did not complete"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    assert_eq!(healthy.ask_wait(FragileMsg::Ping, WAIT), Ok("pong"));
    assert!(!bad.is_stopped());
}
