//! The `dist` group: Erlang distribution between two nodes on loopback,
//! each its own OS process, for `WEFT_BENCH_SECS` (10 s):
//!
//! * `dist-rr`: round trips, one message in flight (a `{Pid, N}` to a
//!   process registered as `echo` on the other node, which sends `N` back
//!   to `Pid`; the next goes when the answer is in);
//! * `dist-msgs`: messages per second one way, pipelined (`{Pid, N}` to a
//!   process registered as `sink`, which acknowledges every 1,000th with
//!   the count so far; the sender keeps at most 10,000 unacknowledged).
//!
//! Systems: `weft` (weft node A in the child against weft node B in a
//! second process, this binary run with `--dist-peer`), `weft-erl` (weft
//! node A against an `erl` node), `erl` (an `erl` node against an `erl`
//! node: the same echo and sink, written in Erlang). Each child runs its
//! own EPMD on a free port; every process it starts is killed when the
//! child ends.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use weft::dist::eetf::{FixInteger, Pid, Term, Tuple};
use weft::dist::{DistSender, Incoming, Node, NodeOptions};
use weft::prelude::*;

use crate::emit;

/// The jobs of the group.
pub const JOBS: [&str; 2] = ["dist-rr", "dist-msgs"];

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

/// The other node's processes, in Erlang: `echo` answers `{From, X}`
/// with `X`; `sink` counts and acknowledges every 1,000th message.
const PEER: &str = "register(echo, spawn(fun() -> \
        Loop = fun L() -> receive {From, X} -> From ! X, L() end end, Loop() end)), \
    register(sink, spawn(fun() -> \
        Loop = fun L(C) -> receive {From, _} -> C1 = C + 1, \
            case C1 rem 1000 of 0 -> From ! C1; _ -> ok end, L(C1) end end, Loop(0) end)), \
    io:format(\"ready~n\"), receive stop -> ok end.";

/// Messages the pipelined sender keeps unacknowledged, and the batch an
/// acknowledgement stands for.
const WINDOW: u64 = 10_000;
const ACK_EVERY: u64 = 1_000;

/// The peer node's name.
const PEER_NODE: &str = "bench_p@127.0.0.1";

/// Runs one (job, system) in this child.
pub fn run(job: &str, system: &str) -> bool {
    if !JOBS.contains(&job) {
        return false;
    }
    let Some((_epmd, port)) = epmd() else {
        eprintln!("dist: epmd did not start (is erlang-base installed?)");
        return false;
    };
    let secs = crate::net::secs();
    // The other node, in its own process.
    let _peer = match system {
        "weft" => weft_peer_process(port),
        "weft-erl" | "erl" => erl("bench_p", port, PEER, true).map(|(g, _)| g),
        _ => return false,
    };
    if _peer.is_none() {
        eprintln!("dist: the peer node did not start");
        return false;
    }
    let n = match (job, system) {
        ("dist-rr", "erl") => erl_rr(port, secs),
        ("dist-msgs", "erl") => erl_msgs(port, secs),
        ("dist-rr", _) => weft_rr(port, secs),
        (_, _) => weft_msgs(port, secs),
    };
    let Some(n) = n else {
        return false;
    };
    emit(job, "per_s", n as f64 / secs as f64);
    true
}

/// This binary as the weft peer node (`--dist-peer EPMD_PORT`), ready
/// once it printed `ready`.
fn weft_peer_process(epmd: u16) -> Option<Guard> {
    let mut child = Command::new(std::env::current_exe().ok()?)
        .args(["--dist-peer", &epmd.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .ok()?;
    let mut lines = BufReader::new(child.stdout.take()?)
        .lines()
        .map_while(Result::ok);
    let guard = Guard(child);
    (lines.next()? == "ready").then_some(guard)
}

/// The weft peer node: `echo` and `sink` as the Erlang peer has them;
/// runs until its standard input closes (the child that started it
/// ended).
pub fn serve_peer(epmd: &str) {
    let Ok(port) = epmd.parse::<u16>() else {
        eprintln!("--dist-peer EPMD_PORT");
        return;
    };
    let Ok(rt) = Runtime::builder().build() else {
        return;
    };
    let opts = NodeOptions::new().epmd_port(port);
    let Ok(node) = Node::start(rt.handle(), PEER_NODE, COOKIE, opts) else {
        eprintln!("dist: the weft peer node did not start");
        return;
    };
    let echo = rt.handle().spawn(Echo(node.sender()));
    node.register("echo", &echo);
    let sink = rt.handle().spawn(Sink {
        node: node.sender(),
        count: 0,
    });
    node.register("sink", &sink);
    println!("ready");
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut std::io::stdin(), &mut rest);
}

/// Counts `{From, _}` and sends the count to `From` every 1,000th.
struct Sink {
    node: DistSender,
    count: u64,
}

impl Actor for Sink {
    type Msg = Incoming;
    fn handle(&mut self, msg: Incoming, _ctx: &mut Ctx<'_, Self>) -> ActorResult {
        self.count += 1;
        if self.count.is_multiple_of(ACK_EVERY) {
            if let Term::Tuple(t) = &msg.message {
                if let Some(Term::Pid(from)) = t.elements.first() {
                    let _ = self.node.send(from, self.count as i64);
                }
            }
        }
        Ok(())
    }
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

/// Round trips from a weft node to the peer node for `secs`.
fn weft_rr(epmd: u16, secs: u64) -> Option<u64> {
    let rt = Runtime::builder().build().ok()?;
    let opts = NodeOptions::new().epmd_port(epmd);
    let a = Node::start(rt.handle(), "bench_a@127.0.0.1", COOKIE, opts).ok()?;
    let to = PEER_NODE.to_string();
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
    measure(&count, secs)
}

/// The pipelined sender: a window of messages out, 1,000 more for each
/// acknowledgement; a `Backlogged` refusal is retried a millisecond
/// later.
struct Pump {
    node: DistSender,
    me: Pid,
    /// Messages owed (acknowledged room not yet used).
    owed: u64,
    acked: Arc<AtomicU64>,
}

enum PumpMsg {
    Ack(Incoming),
    Retry,
}

impl Pump {
    fn pump(&mut self, ctx: &mut Ctx<'_, Self>) {
        while self.owed > 0 {
            let msg = (self.me.clone(), 0i64);
            match self.node.send_named("sink", PEER_NODE, msg) {
                Ok(()) => self.owed -= 1,
                Err(_) => {
                    ctx.send_later(Duration::from_millis(1), PumpMsg::Retry);
                    return;
                }
            }
        }
    }
}

impl Actor for Pump {
    type Msg = PumpMsg;
    fn handle(&mut self, msg: PumpMsg, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        if let PumpMsg::Ack(ack) = msg {
            if let Ok(count) = ack.decode::<i64>() {
                self.acked.store(count as u64, Ordering::Relaxed);
            }
            let was_idle = self.owed == 0;
            self.owed += ACK_EVERY;
            if !was_idle {
                return Ok(()); // a retry is already armed
            }
        }
        self.pump(ctx);
        Ok(())
    }
}

/// Messages per second from a weft node to the peer's sink for `secs`.
fn weft_msgs(epmd: u16, secs: u64) -> Option<u64> {
    let rt = Runtime::builder().build().ok()?;
    let opts = NodeOptions::new().epmd_port(epmd);
    let a = Node::start(rt.handle(), "bench_a@127.0.0.1", COOKIE, opts).ok()?;
    a.connect(PEER_NODE, Duration::from_secs(10)).ok()?;
    let acked = Arc::new(AtomicU64::new(0));
    let pump = rt.handle().spawn(Pump {
        node: a.sender(),
        me: a.pid(),
        owed: WINDOW,
        acked: acked.clone(),
    });
    a.set_inbox(pump.recipient_map(PumpMsg::Ack));
    let _ = pump.send(PumpMsg::Retry);
    measure(&acked, secs)
}

/// The growth of `count` over `secs`, once it started moving.
fn measure(count: &AtomicU64, secs: u64) -> Option<u64> {
    let start = Instant::now();
    while count.load(Ordering::Relaxed) == 0 {
        if start.elapsed() > Duration::from_secs(10) {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let before = count.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(secs));
    Some(count.load(Ordering::Relaxed) - before)
}

/// Round trips between two `erl` nodes for `secs`.
fn erl_rr(epmd: u16, secs: u64) -> Option<u64> {
    let script = format!(
        "true = net_kernel:connect_node('{PEER_NODE}'), \
         T0 = erlang:monotonic_time(millisecond), \
         Loop = fun L(N) -> case erlang:monotonic_time(millisecond) - T0 > {ms} of \
             true -> N; \
             false -> {{echo, '{PEER_NODE}'}} ! {{self(), N}}, receive _ -> L(N + 1) end end end, \
         io:format(\"~p~n\", [Loop(0)]), halt().",
        ms = secs * 1000
    );
    let (_client, mut lines) = erl("bench_c", epmd, &script, false)?;
    lines.next()?.trim().parse().ok()
}

/// Pipelined messages per second between two `erl` nodes for `secs`
/// (the same window and acknowledgements as `weft_msgs`; timed from the
/// first acknowledgement, as there).
fn erl_msgs(epmd: u16, secs: u64) -> Option<u64> {
    let script = format!(
        "true = net_kernel:connect_node('{PEER_NODE}'), \
         To = {{sink, '{PEER_NODE}'}}, \
         Send = fun S(0) -> ok; S(K) -> To ! {{self(), 0}}, S(K - 1) end, \
         Send({WINDOW}), \
         First = receive A0 -> A0 end, Send({ACK_EVERY}), \
         T0 = erlang:monotonic_time(millisecond), \
         Loop = fun L(Last) -> case erlang:monotonic_time(millisecond) - T0 > {ms} of \
             true -> Last; \
             false -> receive A -> Send({ACK_EVERY}), L(A) end end end, \
         io:format(\"~p~n\", [Loop(First) - First]), halt().",
        ms = secs * 1000
    );
    let (_client, mut lines) = erl("bench_c", epmd, &script, false)?;
    lines.next()?.trim().parse().ok()
}
