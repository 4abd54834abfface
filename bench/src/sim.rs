//! The `sim` group: what the deterministic simulation costs, against the
//! same work on the real runtime. Systems: `weft-sim` (a simulated
//! runtime: one thread, a seeded choice among runnable actors, virtual
//! time, the simulated network) and `weft` (the real runtime, one worker
//! per core, loopback TCP).
//!
//! * `sim-turns`: two actors passing a counter back and forth, 2,000,000
//!   messages; messages (each one a turn) per second of wall time.
//! * `sim-conns`: 10,000 connections to an echo server, 500 at a time:
//!   each connects, sends 64 bytes, reads them back and closes;
//!   connections per second of wall time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use weft::prelude::*;
use weft::sim::SimNet;

use crate::emit;

/// The jobs of the group.
pub const JOBS: [&str; 2] = ["sim-turns", "sim-conns"];

/// The systems of the group.
pub const SYSTEMS: [&str; 2] = ["weft-sim", "weft"];

const MESSAGES: u64 = 2_000_000;
const CONNECTIONS: u64 = 10_000;
const IN_FLIGHT: u64 = 500;

/// Runs one (job, system) in this child.
pub fn run(job: &str, system: &str) -> bool {
    let simulated = match system {
        "weft-sim" => true,
        "weft" => false,
        _ => return false,
    };
    let rt = if simulated {
        Runtime::builder().simulation(1).build()
    } else {
        Runtime::builder().build()
    };
    let Ok(rt) = rt else {
        return false;
    };
    let per_s = match job {
        "sim-turns" => turns(&rt),
        "sim-conns" => conns(&rt),
        _ => return false,
    };
    match per_s {
        Some(v) => {
            emit(job, "per_s", v);
            true
        }
        None => false,
    }
}

/// Passes the counter to its peer until it reaches the end.
struct Player {
    peer: Option<Addr<Player>>,
    done: mpsc::Sender<()>,
}

enum Play {
    Peer(Addr<Player>),
    Ball(u64),
}

impl Actor for Player {
    type Msg = Play;
    fn handle(&mut self, msg: Play, _ctx: &mut Ctx<'_, Self>) -> ActorResult {
        match msg {
            Play::Peer(p) => self.peer = Some(p),
            Play::Ball(n) if n >= MESSAGES => {
                let _ = self.done.send(());
            }
            Play::Ball(n) => {
                if let Some(p) = &self.peer {
                    let _ = p.send(Play::Ball(n + 1));
                }
            }
        }
        Ok(())
    }
}

fn turns(rt: &Runtime) -> Option<f64> {
    let (tx, rx) = mpsc::channel();
    let a = rt.handle().spawn(Player {
        peer: None,
        done: tx.clone(),
    });
    let b = rt.handle().spawn(Player {
        peer: Some(a.clone()),
        done: tx,
    });
    a.send(Play::Peer(b.clone())).ok()?;
    let start = Instant::now();
    a.send(Play::Ball(0)).ok()?;
    finish(rt, &rx, start).map(|secs| MESSAGES as f64 / secs)
}

/// Waits for the done signal: by running the simulation, or on the
/// channel.
fn finish(rt: &Runtime, rx: &mpsc::Receiver<()>, start: Instant) -> Option<f64> {
    match rt.handle().simulation() {
        Some(sim) => {
            let mut done = false;
            sim.run_until(Duration::from_secs(3600), || {
                done = done || rx.try_recv().is_ok();
                done
            });
            done.then(|| start.elapsed().as_secs_f64())
        }
        None => rx
            .recv_timeout(Duration::from_secs(120))
            .ok()
            .map(|()| start.elapsed().as_secs_f64()),
    }
}

struct Echo;

impl Protocol for Echo {
    type Msg = ();
    fn data(&mut self, conn: &mut Conn<'_, '_, Self>, data: &[u8]) -> ActorResult {
        conn.write(data)?;
        Ok(())
    }
}

/// One connection: 64 bytes out, 64 back, close; the driver hears.
struct Once {
    got: usize,
    driver: Addr<Driver>,
}

impl Protocol for Once {
    type Msg = ();
    fn connected(&mut self, conn: &mut Conn<'_, '_, Self>) -> ActorResult {
        conn.write(&[7u8; 64])?;
        Ok(())
    }
    fn data(&mut self, conn: &mut Conn<'_, '_, Self>, data: &[u8]) -> ActorResult {
        self.got += data.len();
        if self.got >= 64 {
            conn.close();
        }
        Ok(())
    }
    fn closed(&mut self, _conn: &mut Conn<'_, '_, Self>, _reason: &CloseReason) {
        let _ = self.driver.send(DriverMsg::Ended(self.got >= 64));
    }
}

/// Keeps `IN_FLIGHT` connections going until `CONNECTIONS` ended.
struct Driver {
    target: String,
    started: u64,
    ended: Arc<AtomicU64>,
    done: mpsc::Sender<()>,
}

enum DriverMsg {
    Start,
    Ended(bool),
}

impl Driver {
    fn start_one(&mut self, ctx: &mut Ctx<'_, Self>) {
        self.started += 1;
        let protocol = Once {
            got: 0,
            driver: ctx.address(),
        };
        let _ = connect_tcp(
            ctx.runtime(),
            self.target.as_str(),
            ConnectOptions::new(),
            protocol,
        );
    }
}

impl Actor for Driver {
    type Msg = DriverMsg;
    fn handle(&mut self, msg: DriverMsg, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        match msg {
            DriverMsg::Start => {
                while self.started < IN_FLIGHT.min(CONNECTIONS) {
                    self.start_one(ctx);
                }
            }
            DriverMsg::Ended(ok) => {
                if !ok {
                    return Err("a connection ended before its echo".into());
                }
                let n = self.ended.fetch_add(1, Ordering::Relaxed) + 1;
                if n == CONNECTIONS {
                    let _ = self.done.send(());
                } else if self.started < CONNECTIONS {
                    self.start_one(ctx);
                }
            }
        }
        Ok(())
    }
}

fn conns(rt: &Runtime) -> Option<f64> {
    let target = match SimNet::install(rt.handle()) {
        Ok(net) => {
            let server = net.host("server");
            let handle = rt.handle().clone();
            server
                .enter(|| listen_tcp(&handle, server.addr(7000), ListenOptions::new(), || Echo))
                .ok()?;
            // The clients run on a host of their own.
            let clients = net.host("clients");
            return run_driver(rt, "server:7000".into(), Some(clients));
        }
        Err(_) => {
            let listening = listen_tcp(
                rt.handle(),
                "127.0.0.1:0".parse().ok()?,
                ListenOptions::new(),
                || Echo,
            )
            .ok()?;
            let target = listening.local_addr().to_string();
            std::mem::forget(listening);
            target
        }
    };
    run_driver(rt, target, None)
}

fn run_driver(rt: &Runtime, target: String, host: Option<weft::sim::Host>) -> Option<f64> {
    let (tx, rx) = mpsc::channel();
    let ended = Arc::new(AtomicU64::new(0));
    let driver = Driver {
        target,
        started: 0,
        ended,
        done: tx,
    };
    let driver = match &host {
        Some(h) => h.enter(|| rt.handle().spawn(driver)),
        None => rt.handle().spawn(driver),
    };
    let start = Instant::now();
    driver.send(DriverMsg::Start).ok()?;
    finish(rt, &rx, start).map(|secs| CONNECTIONS as f64 / secs)
}
