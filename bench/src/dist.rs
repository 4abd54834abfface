//! The `dist` group: Erlang distribution round trips on loopback, one
//! message in flight (`dist-rr`: a `{Pid, N}` to a process registered as
//! `echo` on the other node, which sends `N` back to `Pid`; the next goes
//! when the answer is in), for `WEFT_BENCH_SECS` (10 s).
//!
//! Systems: `weft` (two weft nodes in one process: node A's inbox actor
//! sends, node B's registered actor answers), `weft-erl` (weft node A
//! against an `erl` node's echo process), `erl` (two `erl` nodes: a loop
//! in one against the same echo process in the other). Each child runs
//! its own EPMD on a free port; every `erl` and `epmd` it starts is
//! killed when the child ends.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use weft::dist::eetf::{FixInteger, Term, Tuple};
use weft::dist::{DistSender, Incoming, Node, NodeOptions};
use weft::prelude::*;

use crate::emit;

/// The jobs of the group.
pub const JOBS: [&str; 1] = ["dist-rr"];

/// The systems of the group.
pub const SYSTEMS: [&str; 3] = ["weft", "weft-erl", "erl"];

const COOKIE: &str = "bench";

/// Kills the process when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

fn epmd() -> Option<(Guard, u16)> {
    let port = free_port();
    let child = Command::new("epmd")
        .args(["-port", &port.to_string(), "-address", "127.0.0.1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Some((Guard(child), port))
}

/// An `erl -name NAME@127.0.0.1` running `script`; waits for its first
/// line if `ready` is set.
fn erl(
    name: &str,
    epmd: u16,
    script: &str,
    ready: bool,
) -> Option<(Guard, impl Iterator<Item = String>)> {
    let mut child = Command::new("erl")
        .args([
            "-name",
            &format!("{name}@127.0.0.1"),
            "-setcookie",
            COOKIE,
            "-noshell",
            "-eval",
            script,
        ])
        .env("ERL_EPMD_PORT", epmd.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut lines = BufReader::new(child.stdout.take()?)
        .lines()
        .map_while(Result::ok);
    if ready && lines.next()? != "ready" {
        return None;
    }
    Some((Guard(child), lines))
}

const ECHO: &str = "register(echo, self()), io:format(\"ready~n\"), \
    Loop = fun L() -> receive {From, X} -> From ! X, L() end end, Loop().";

/// Runs one (job, system) in this child.
pub fn run(job: &str, system: &str) -> bool {
    if job != "dist-rr" {
        return false;
    }
    let Some((_epmd, port)) = epmd() else {
        eprintln!("dist: epmd did not start (is erlang-base installed?)");
        return false;
    };
    let secs = crate::net::secs();
    let n = match system {
        "weft" => weft_rr(port, secs, None),
        "weft-erl" => {
            let Some((_erl, _)) = erl("bench_e", port, ECHO, true) else {
                return false;
            };
            weft_rr(port, secs, Some("bench_e@127.0.0.1"))
        }
        "erl" => erl_rr(port, secs),
        _ => return false,
    };
    let Some(n) = n else {
        return false;
    };
    emit("dist-rr", "per_s", n as f64 / secs as f64);
    true
}

/// Node B's echo: `{Pid, N}` answered `N` to `Pid`.
struct Echo(DistSender);

impl Actor for Echo {
    type Msg = Incoming;
    fn handle(&mut self, msg: Incoming, _ctx: &mut Ctx<'_, Self>) -> ActorResult {
        if let Term::Tuple(t) = msg.message {
            if let [Term::Pid(from), n] = t.elements.as_slice() {
                let _ = self.0.send(from, n.clone());
            }
        }
        Ok(())
    }
}

/// Node A's inbox: counts each answer and sends the next question.
struct Asker {
    node: DistSender,
    me: Term,
    to: String,
    count: Arc<AtomicU64>,
}

impl Actor for Asker {
    type Msg = Incoming;
    fn handle(&mut self, _answer: Incoming, _ctx: &mut Ctx<'_, Self>) -> ActorResult {
        let n = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        let q = Term::Tuple(Tuple::from(vec![
            self.me.clone(),
            Term::FixInteger(FixInteger::from((n % 1_000_000) as i32)),
        ]));
        let _ = self.node.send_named("echo", &self.to, q);
        Ok(())
    }
}

/// Round trips from a weft node to `peer` (another weft node in this
/// process when `None`) for `secs`.
fn weft_rr(epmd: u16, secs: u64, peer: Option<&str>) -> Option<u64> {
    let rt = Runtime::builder().build().ok()?;
    let opts = || NodeOptions::new().epmd_port(epmd);
    let a = Node::start(rt.handle(), "bench_a@127.0.0.1", COOKIE, opts()).ok()?;
    let b = match peer {
        Some(_) => None,
        None => {
            let b = Node::start(rt.handle(), "bench_b@127.0.0.1", COOKIE, opts()).ok()?;
            let echo = rt.handle().spawn(Echo(b.sender()));
            b.register("echo", &echo);
            Some(b)
        }
    };
    let to = peer.unwrap_or("bench_b@127.0.0.1").to_string();
    a.connect(&to, Duration::from_secs(10)).ok()?;
    let count = Arc::new(AtomicU64::new(0));
    let asker = Asker {
        node: a.sender(),
        me: Term::Pid(a.pid()),
        to: to.clone(),
        count: count.clone(),
    };
    // The inbox first, then the first question: one in flight.
    let first = Term::Tuple(Tuple::from(vec![
        Term::Pid(a.pid()),
        Term::FixInteger(FixInteger::from(0)),
    ]));
    let inbox = rt.handle().spawn(asker);
    a.set_inbox(inbox.recipient());
    a.send_named("echo", &to, first).ok()?;
    let start = Instant::now();
    while count.load(Ordering::Relaxed) == 0 {
        if start.elapsed() > Duration::from_secs(10) {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let before = count.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(secs));
    let n = count.load(Ordering::Relaxed) - before;
    drop(b);
    drop(a);
    Some(n)
}

/// Round trips between two `erl` nodes for `secs`.
fn erl_rr(epmd: u16, secs: u64) -> Option<u64> {
    let (_echo, _) = erl("bench_e", epmd, ECHO, true)?;
    let script = format!(
        "true = net_kernel:connect_node('bench_e@127.0.0.1'), \
         T0 = erlang:monotonic_time(millisecond), \
         Loop = fun L(N) -> case erlang:monotonic_time(millisecond) - T0 > {ms} of \
             true -> N; \
             false -> {{echo, 'bench_e@127.0.0.1'}} ! {{self(), N}}, receive _ -> L(N + 1) end end end, \
         io:format(\"~p~n\", [Loop(0)]), halt().",
        ms = secs * 1000
    );
    let (_client, mut lines) = erl("bench_c", epmd, &script, false)?;
    lines.next()?.trim().parse().ok()
}
