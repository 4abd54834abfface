//! Monitors, links and children are released when either side exits: a
//! long-lived actor watched by many short-lived ones over a server's life
//! does not grow. Also `demonitor` and `unlink`.

mod common;

use std::sync::mpsc;

use common::*;
use weft::actors::live_actors;
use weft::prelude::*;

/// A long-lived actor others watch; answers pings.
struct Hub;
impl Actor for Hub {
    type Msg = ReplyTo<()>;
    fn handle(&mut self, r: ReplyTo<()>, _ctx: &mut Ctx<'_, Self>) -> ActorResult {
        r.send(());
        Ok(())
    }
}

/// A short-lived actor: monitors or links to the hub in `started`, then
/// exits at once.
struct Visitor {
    hub: Addr<Hub>,
    link: bool,
}
impl Actor for Visitor {
    type Msg = ();
    fn started(&mut self, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        if self.link {
            ctx.link(&self.hub);
        } else {
            ctx.monitor(&self.hub, |_| ());
        }
        ctx.stop();
        Ok(())
    }
    fn handle(&mut self, _m: (), _ctx: &mut Ctx<'_, Self>) -> ActorResult {
        Ok(())
    }
}

#[test]
fn monitors_and_links_of_exited_actors_leave_nothing_on_their_target() {
    let rt = runtime(2);
    let hub = rt.handle().spawn(Hub);
    let base = live_actors(rt.handle());
    for link in [false, true] {
        for _ in 0..20_000 {
            rt.handle().spawn(Visitor {
                hub: hub.clone(),
                link,
            });
        }
        eventually("every visitor exited", || live_actors(rt.handle()) == base);
        assert_eq!(hub.relations(), 0, "link: {link}");
    }
    hub.ask_wait(|r| r, WAIT).expect("the hub still serves");
}

/// Monitors many short-lived workers; reports each Down.
struct Boss {
    downs: mpsc::Sender<ActorId>,
    children: Vec<Addr<Worker>>,
}
enum BossMsg {
    Watch(Addr<Worker>),
    Spawn(usize),
    EndChildren,
    Down(Down),
    Relations(ReplyTo<usize>),
}
impl Actor for Boss {
    type Msg = BossMsg;
    fn handle(&mut self, msg: BossMsg, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        match msg {
            BossMsg::Watch(w) => {
                ctx.monitor(&w, BossMsg::Down);
            }
            BossMsg::Spawn(n) => {
                for _ in 0..n {
                    let child = ctx.spawn(Worker);
                    self.children.push(child);
                }
            }
            BossMsg::EndChildren => {
                for child in self.children.drain(..) {
                    ctx.send(&child, ()).ok();
                }
            }
            BossMsg::Down(d) => self.downs.send(d.id)?,
            BossMsg::Relations(r) => r.send(ctx.address().relations()),
        }
        Ok(())
    }
}

struct Worker;
impl Actor for Worker {
    type Msg = ();
    fn handle(&mut self, _m: (), ctx: &mut Ctx<'_, Self>) -> ActorResult {
        ctx.stop();
        Ok(())
    }
}

#[test]
fn a_watcher_and_a_parent_forget_the_actors_that_exited() {
    let rt = runtime(2);
    let (tx, rx) = mpsc::channel();
    let boss = rt.handle().spawn(Boss {
        downs: tx,
        children: Vec::new(),
    });
    let base = live_actors(rt.handle());
    let workers: Vec<_> = (0..2_000).map(|_| rt.handle().spawn(Worker)).collect();
    for w in &workers {
        boss.send_timeout(BossMsg::Watch(w.clone()), WAIT).unwrap();
    }
    // Once the boss has handled every Watch, it monitors 2,000 live actors.
    eventually("the boss watches every worker", || {
        boss.ask_wait(BossMsg::Relations, WAIT).unwrap() == 2_000
    });
    for w in &workers {
        w.send(()).unwrap();
    }
    for _ in 0..workers.len() {
        recv(&rx);
    }
    assert_eq!(boss.ask_wait(BossMsg::Relations, WAIT).unwrap(), 0);
    // Children spawned with Ctx::spawn leave the parent's table as they exit.
    boss.send(BossMsg::Spawn(5_000)).unwrap();
    eventually("the children started", || {
        live_actors(rt.handle()) == base + 5_000
    });
    assert_eq!(boss.ask_wait(BossMsg::Relations, WAIT).unwrap(), 5_000);
    boss.send(BossMsg::EndChildren).unwrap();
    eventually("the children exited", || live_actors(rt.handle()) == base);
    assert_eq!(boss.ask_wait(BossMsg::Relations, WAIT).unwrap(), 0);
}

/// Monitors or links on request; reports Downs and exit signals.
struct Watcher {
    tx: mpsc::Sender<String>,
    monitor: Option<MonitorRef>,
}
enum WatcherMsg {
    Monitor(Addr<Worker>),
    Demonitor(ReplyTo<bool>),
    Link(Addr<Worker>),
    Unlink(Addr<Worker>, ReplyTo<bool>),
    Down(Down),
    Ping(ReplyTo<()>),
}
impl Actor for Watcher {
    type Msg = WatcherMsg;
    fn handle(&mut self, msg: WatcherMsg, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        match msg {
            WatcherMsg::Monitor(w) => self.monitor = Some(ctx.monitor(&w, WatcherMsg::Down)),
            WatcherMsg::Demonitor(r) => {
                let m = self.monitor.take().expect("a monitor to remove");
                r.send(ctx.demonitor(m));
            }
            WatcherMsg::Link(w) => ctx.link(&w),
            WatcherMsg::Unlink(w, r) => r.send(ctx.unlink(&w)),
            WatcherMsg::Down(d) => self.tx.send(format!("down {}", d.reason))?,
            WatcherMsg::Ping(r) => r.send(()),
        }
        Ok(())
    }
}

/// A worker that fails when told to.
struct Failing;
impl Actor for Failing {
    type Msg = ();
    fn handle(&mut self, _m: (), _ctx: &mut Ctx<'_, Self>) -> ActorResult {
        Err("told to fail".into())
    }
}

#[test]
fn demonitor_before_the_exit_means_no_down_and_after_it_says_so() {
    let rt = runtime(2);
    let (tx, rx) = mpsc::channel();
    let watcher = rt.handle().spawn(Watcher { tx, monitor: None });
    let worker = rt.handle().spawn(Worker);
    watcher.send(WatcherMsg::Monitor(worker.clone())).unwrap();
    assert!(watcher.ask_wait(WatcherMsg::Demonitor, WAIT).unwrap());
    assert_eq!(worker.relations(), 0);
    assert_eq!(watcher.ask_wait(WatcherMsg::Ping, WAIT), Ok(()));
    assert_eq!(watcher.relations(), 0);
    worker.send(()).unwrap();
    eventually("the worker exited", || worker.is_stopped());
    watcher.ask_wait(WatcherMsg::Ping, WAIT).unwrap();
    assert_silent(&rx);
    // Monitoring a live worker again; this time it exits first.
    let worker = rt.handle().spawn(Worker);
    watcher.send(WatcherMsg::Monitor(worker.clone())).unwrap();
    watcher.ask_wait(WatcherMsg::Ping, WAIT).unwrap();
    worker.send(()).unwrap();
    assert_eq!(recv(&rx), "down normal");
    assert!(!watcher.ask_wait(WatcherMsg::Demonitor, WAIT).unwrap());
}

/// Links to a `Failing` actor on request (a `Worker`-typed link API is not
/// enough here, so this one is separate).
struct Partner;
enum PartnerMsg {
    Link(Addr<Failing>),
    Unlink(Addr<Failing>, ReplyTo<bool>),
    Ping(ReplyTo<()>),
}
impl Actor for Partner {
    type Msg = PartnerMsg;
    fn handle(&mut self, msg: PartnerMsg, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        match msg {
            PartnerMsg::Link(a) => ctx.link(&a),
            PartnerMsg::Unlink(a, r) => r.send(ctx.unlink(&a)),
            PartnerMsg::Ping(r) => r.send(()),
        }
        Ok(())
    }
}

#[test]
fn unlinked_actors_no_longer_share_their_fate() {
    let rt = runtime(2);
    let partner = rt.handle().spawn(Partner);
    let failing = rt.handle().spawn(Failing);
    partner.send(PartnerMsg::Link(failing.clone())).unwrap();
    partner.ask_wait(PartnerMsg::Ping, WAIT).unwrap();
    assert_eq!(failing.relations(), 1);
    assert!(partner
        .ask_wait(|r| PartnerMsg::Unlink(failing.clone(), r), WAIT)
        .unwrap());
    assert_eq!((failing.relations(), partner.relations()), (0, 0));
    failing.send(()).unwrap();
    eventually("the failing actor exited", || failing.is_stopped());
    assert_eq!(partner.ask_wait(PartnerMsg::Ping, WAIT), Ok(()));
    // Linked again (to a new one), its failure takes the partner down.
    let failing = rt.handle().spawn(Failing);
    partner.send(PartnerMsg::Link(failing.clone())).unwrap();
    partner.ask_wait(PartnerMsg::Ping, WAIT).unwrap();
    failing.send(()).unwrap();
    eventually("the partner exited with it", || partner.is_stopped());
}

#[test]
fn unlink_says_whether_there_was_a_link() {
    let rt = runtime(1);
    let (tx, _rx) = mpsc::channel();
    let watcher = rt.handle().spawn(Watcher { tx, monitor: None });
    let worker = rt.handle().spawn(Worker);
    watcher.send(WatcherMsg::Link(worker.clone())).unwrap();
    watcher.ask_wait(WatcherMsg::Ping, WAIT).unwrap();
    assert!(watcher
        .ask_wait(|r| WatcherMsg::Unlink(worker.clone(), r), WAIT)
        .unwrap());
    assert!(!watcher
        .ask_wait(|r| WatcherMsg::Unlink(worker.clone(), r), WAIT)
        .unwrap());
}
