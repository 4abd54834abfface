//! The dynamic supervisor: children on demand, per-child arguments,
//! restarts with the same argument, churn without leaks.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use common::*;
use weft::prelude::*;
use weft::supervisor::{DynamicMsg, DynamicSpec, DynamicSupervisor, Intensity, Restart};

/// Reports its argument when it starts; exits at once if told to.
struct Worker {
    arg: u32,
    quit_at_start: bool,
    fail_at_start: bool,
    events: Option<mpsc::Sender<u32>>,
}
enum WorkerMsg {
    Panic,
}
impl Actor for Worker {
    type Msg = WorkerMsg;
    fn started(&mut self, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        if self.fail_at_start {
            return Err("cannot start".into());
        }
        if let Some(events) = &self.events {
            events.send(self.arg)?;
        }
        if self.quit_at_start {
            ctx.stop();
        }
        Ok(())
    }
    fn handle(&mut self, WorkerMsg::Panic: WorkerMsg, _ctx: &mut Ctx<'_, Self>) -> ActorResult {
        panic!("worker {} crashed", self.arg)
    }
}

type Sup = DynamicSupervisor<Worker, u32>;

fn count(sup: &Addr<Sup>) -> usize {
    sup.ask_wait(DynamicMsg::Count, WAIT).unwrap()
}

#[test]
fn fifty_thousand_children_start_and_exit_and_the_books_empty() {
    let rt = runtime(2);
    let sup = rt
        .handle()
        .spawn(DynamicSupervisor::new(DynamicSpec::new(|arg| Worker {
            arg,
            quit_at_start: true,
            fail_at_start: false,
            events: None,
        })));
    let before = weft::actors::live_actors(rt.handle());
    for i in 0..50_000 {
        sup.send_timeout(DynamicMsg::StartChildQuiet(i), WAIT)
            .ok()
            .unwrap();
    }
    let deadline = std::time::Instant::now() + WAIT;
    while count(&sup) > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(count(&sup), 0, "every child's bookkeeping is gone");
    let deadline = std::time::Instant::now() + WAIT;
    while weft::actors::live_actors(rt.handle()) > before && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(weft::actors::live_actors(rt.handle()), before);
}

#[test]
fn a_permanent_child_restarts_with_its_own_argument() {
    let rt = runtime(2);
    let (tx, events) = mpsc::channel();
    let spec = DynamicSpec::new(move |arg| Worker {
        arg,
        quit_at_start: false,
        fail_at_start: false,
        events: Some(tx.clone()),
    })
    .restart(Restart::Permanent)
    .intensity(Intensity {
        max_restarts: 10,
        within: Duration::from_secs(1),
    });
    let sup = rt.handle().spawn(DynamicSupervisor::new(spec));
    let seven = sup
        .ask_wait(|r| DynamicMsg::StartChild(7, r), WAIT)
        .unwrap()
        .unwrap();
    let _nine = sup
        .ask_wait(|r| DynamicMsg::StartChild(9, r), WAIT)
        .unwrap()
        .unwrap();
    assert_eq!((recv(&events), recv(&events)), (7, 9));
    seven.send(WorkerMsg::Panic).ok().unwrap();
    assert_eq!(recv(&events), 7, "restarted with the same argument");
    assert_eq!(count(&sup), 2);
    assert_silent(&events);
}

#[test]
fn a_failed_child_start_is_the_reply() {
    let rt = runtime(2);
    let sup = rt
        .handle()
        .spawn(DynamicSupervisor::new(DynamicSpec::new(|arg| Worker {
            arg,
            quit_at_start: false,
            fail_at_start: true,
            events: None,
        })));
    let reply = sup
        .ask_wait(|r| DynamicMsg::StartChild(1, r), WAIT)
        .unwrap();
    let reason = reply.unwrap_err();
    assert_eq!(reason.to_string(), "error: cannot start");
    let deadline = std::time::Instant::now() + WAIT;
    while count(&sup) > 0 && std::time::Instant::now() < deadline {
        std::thread::yield_now();
    }
    assert_eq!(count(&sup), 0, "temporary: not restarted, not kept");
}

#[test]
fn shutdown_stops_every_child_then_the_supervisor() {
    let rt = runtime(2);
    let (tx, events) = mpsc::channel();
    let sup = rt
        .handle()
        .spawn(DynamicSupervisor::new(DynamicSpec::new(move |arg| {
            Worker {
                arg,
                quit_at_start: false,
                fail_at_start: false,
                events: Some(tx.clone()),
            }
        })));
    let children: Vec<_> = (0..10)
        .map(|i| {
            sup.ask_wait(|r| DynamicMsg::StartChild(i, r), WAIT)
                .unwrap()
                .unwrap()
        })
        .collect();
    for _ in 0..10 {
        recv(&events);
    }
    sup.send(DynamicMsg::Shutdown).ok().unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while !sup.is_stopped() && std::time::Instant::now() < deadline {
        std::thread::yield_now();
    }
    assert!(sup.is_stopped());
    assert!(children.iter().all(|c| c.is_stopped()));
    // A supervisor that is gone starts nothing.
    assert!(sup
        .ask_wait(|r| DynamicMsg::StartChild(99, r), WAIT)
        .is_err());
}
