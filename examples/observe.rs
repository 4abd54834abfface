//! What weft shows of a running program: runtime metrics in Prometheus'
//! text format over HTTP, and a read-only debug console with the live
//! actor tree (Erlang's observer, on a socket), beside an echo server and
//! a small supervision tree to look at.
//!
//! Run:   cargo run --release --example observe -- [ECHO_ADDR] [METRICS_ADDR] [CONSOLE_ADDR]
//!        (defaults 127.0.0.1:7000, 127.0.0.1:9898, 127.0.0.1:9899)
//! Talk:  curl http://127.0.0.1:9898/metrics
//!        cargo run --release --example client -- 127.0.0.1:9899
//!        (or `nc 127.0.0.1 9899`), then type `help`, `tree`, `sup`,
//!        `stats` or `actor ID`
//! Stop:  Ctrl-C (or SIGTERM).
//!
//! The metrics come from `Handle::metrics()` (per worker: turns, steals,
//! sleeps, reactor polls, busy and idle time; timers; the blocking pool),
//! `weft::actors::observe` (live actors by type, mailbox high-water
//! marks) and `weft::io::listeners` (accepted, active, failed, accept
//! errors per listener). The console's `tree` is the live actor tree
//! (each actor's parent, type, registered name and mailbox); `sup` walks
//! the supervision tree by asking each supervisor for its children (on
//! the blocking pool, so the console's actor never waits), with each
//! child's restarts and mailbox. Every answer ends with an empty line.
//! In the tree, `flaky` crashes every 5 s and is restarted.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use weft::actors::observe;
use weft::io::ListenerStats;
use weft::prelude::*;
use weft::supervisor::{
    tree_dump_with, Application, ChildSpec, Intensity, Strategy, Supervisor, SupervisorSpec,
};
use weft::WorkerMetrics;

#[path = "shared/cli.rs"]
mod cli;

// ---- the program being observed ----

/// Echoes what it reads.
struct Echo;

impl Protocol for Echo {
    type Msg = ();
    fn data(&mut self, conn: &mut Conn<'_, '_, Self>, data: &[u8]) -> ActorResult {
        conn.write(data)?;
        Ok(())
    }
}

/// A worker that gives up every 5 s, so that `sup` shows restarts.
struct Flaky;

impl Actor for Flaky {
    type Msg = ();
    fn started(&mut self, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        ctx.send_later(Duration::from_secs(5), ());
        Ok(())
    }
    fn handle(&mut self, _m: (), _ctx: &mut Ctx<'_, Self>) -> ActorResult {
        Err("flaky gives up (it is restarted)".into())
    }
}

/// A worker registered by name that ticks once a second.
struct Ticker {
    ticks: u64,
}

impl Actor for Ticker {
    type Msg = ();
    fn started(&mut self, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        let me = ctx.address();
        weft::actors::Registry::of(ctx.runtime()).register("ticker", &me)?;
        ctx.send_interval(Duration::from_secs(1), MissedTicks::Skip, || ());
        Ok(())
    }
    fn handle(&mut self, _m: (), _ctx: &mut Ctx<'_, Self>) -> ActorResult {
        self.ticks += 1;
        Ok(())
    }
}

// ---- metrics over HTTP ----

/// `GET /metrics` in Prometheus' text format; anything else 404.
#[derive(Default)]
struct Metrics {
    pending: Vec<u8>,
}

impl Protocol for Metrics {
    type Msg = ();
    fn data(&mut self, conn: &mut Conn<'_, '_, Self>, data: &[u8]) -> ActorResult {
        self.pending.extend_from_slice(data);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        let (status, body) = match req.parse(&self.pending) {
            Ok(httparse::Status::Partial) if self.pending.len() < 8192 => return Ok(()),
            Ok(httparse::Status::Complete(_)) if req.path == Some("/metrics") => {
                ("200 OK", prometheus(conn.runtime()))
            }
            Ok(httparse::Status::Complete(_)) => ("404 Not Found", "try /metrics\n".into()),
            _ => ("400 Bad Request", "bad request\n".into()),
        };
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        conn.write_vectored(&[head.as_bytes(), body.as_bytes()])?;
        conn.close();
        Ok(())
    }
}

/// A per-worker metric: name, help, and how to read it.
type PerWorker = (&'static str, &'static str, fn(&WorkerMetrics) -> f64);
/// A per-listener metric: name, type, help, and how to read it.
type PerListener = (
    &'static str,
    &'static str,
    &'static str,
    fn(&ListenerStats) -> u64,
);

/// The runtime's metrics in Prometheus' text exposition format.
fn prometheus(handle: &Handle) -> String {
    let m = handle.metrics();
    let mut out = String::new();
    // A metric family's header; its name back.
    fn family<'n>(out: &mut String, name: &'n str, kind: &str, help: &str) -> &'n str {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        name
    }
    let mut lines = Vec::new();
    let per_worker: [PerWorker; 6] = [
        ("weft_worker_turns_total", "Tasks (actor turns) run.", |w| {
            w.turns as f64
        }),
        (
            "weft_worker_steals_total",
            "Tasks taken from other workers.",
            |w| w.steals as f64,
        ),
        (
            "weft_worker_parks_total",
            "Times the worker slept for want of work.",
            |w| w.parks as f64,
        ),
        ("weft_worker_polls_total", "Reactor polls.", |w| {
            w.polls as f64
        }),
        ("weft_worker_busy_seconds_total", "Time awake.", |w| {
            w.busy.as_secs_f64()
        }),
        ("weft_worker_idle_seconds_total", "Time asleep.", |w| {
            w.idle.as_secs_f64()
        }),
    ];
    for (name, help, get) in per_worker {
        let name = family(&mut out, name, "counter", help);
        for (i, w) in m.workers.iter().enumerate() {
            lines.push(format!("{name}{{worker=\"{i}\"}} {}", get(w)));
        }
        let _ = writeln!(out, "{}", lines.join("\n"));
        lines.clear();
    }
    let gauges = [
        ("weft_timers_pending", "Timers armed.", m.timers_pending),
        (
            "weft_blocking_threads",
            "Blocking pool threads.",
            m.blocking.threads,
        ),
        (
            "weft_blocking_queued",
            "Blocking jobs waiting.",
            m.blocking.queued,
        ),
        (
            "weft_io_sources",
            "Sources registered with the reactor.",
            m.io_sources,
        ),
    ];
    for (name, help, value) in gauges {
        let name = family(&mut out, name, "gauge", help);
        let _ = writeln!(out, "{name} {value}");
    }
    let actors = observe::actors(handle);
    let name = family(&mut out, "weft_actors", "gauge", "Live actors by type.");
    let mut by_type: std::collections::BTreeMap<String, (usize, usize)> = Default::default();
    for a in &actors {
        let e = by_type.entry(a.short_type()).or_default();
        e.0 += 1;
        e.1 = e.1.max(a.mailbox_high_water);
    }
    for (ty, (count, _)) in &by_type {
        let _ = writeln!(out, "{name}{{type=\"{}\"}} {count}", escape(ty));
    }
    let name = family(
        &mut out,
        "weft_mailbox_high_water",
        "gauge",
        "The deepest any live actor's mailbox has been, by type.",
    );
    for (ty, (_, high)) in &by_type {
        let _ = writeln!(out, "{name}{{type=\"{}\"}} {high}", escape(ty));
    }
    let listeners = weft::io::listeners(handle);
    let per_listener: [PerListener; 4] = [
        (
            "weft_listener_accepted_total",
            "counter",
            "Connections accepted.",
            |s| s.accepted,
        ),
        ("weft_listener_active", "gauge", "Connections open.", |s| {
            s.active as u64
        }),
        (
            "weft_listener_failed_total",
            "counter",
            "Connections whose protocol failed.",
            |s| s.failed,
        ),
        (
            "weft_listener_accept_errors_total",
            "counter",
            "Failed accepts.",
            |s| s.accept_errors,
        ),
    ];
    for (name, kind, help, get) in per_listener {
        let name = family(&mut out, name, kind, help);
        for l in &listeners {
            let addr = l.address().map(|a| a.to_string()).unwrap_or_default();
            let _ = writeln!(
                out,
                "{name}{{addr=\"{}\"}} {}",
                escape(&addr),
                get(&l.stats())
            );
        }
    }
    out
}

/// A label value with Prometheus' escapes.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

// ---- the console ----

/// A read-only console: a command per line, an answer ending with an
/// empty line.
struct Console {
    line: Vec<u8>,
    root: Addr<Supervisor>,
    /// Answers being computed off the actor.
    waiting: usize,
    /// The client ended its input: close once nothing is waited for.
    ended: bool,
}

/// An answer computed off the console's actor (the supervision walk).
enum ConsoleMsg {
    Answer(String),
}

impl Protocol for Console {
    type Msg = ConsoleMsg;

    fn connected(&mut self, conn: &mut Conn<'_, '_, Self>) -> ActorResult {
        conn.write(b"weft console: help, tree, sup, stats, actor ID\n\n")?;
        Ok(())
    }

    fn data(&mut self, conn: &mut Conn<'_, '_, Self>, data: &[u8]) -> ActorResult {
        for &b in data {
            if b != b'\n' {
                if self.line.len() < 1024 {
                    self.line.push(b);
                }
                continue;
            }
            let line = String::from_utf8_lossy(&self.line).trim().to_string();
            self.line.clear();
            self.command(conn, &line)?;
        }
        Ok(())
    }

    fn read_closed(&mut self, conn: &mut Conn<'_, '_, Self>) -> ActorResult {
        self.ended = true;
        if self.waiting == 0 {
            conn.close();
        }
        Ok(())
    }

    fn message(&mut self, conn: &mut Conn<'_, '_, Self>, msg: ConsoleMsg) -> ActorResult {
        let ConsoleMsg::Answer(text) = msg;
        conn.write(text.as_bytes())?;
        conn.write(b"\n")?;
        self.waiting -= 1;
        if self.ended && self.waiting == 0 {
            conn.close();
        }
        Ok(())
    }
}

impl Console {
    fn command(&mut self, conn: &mut Conn<'_, '_, Self>, line: &str) -> ActorResult {
        let mut words = line.split_whitespace();
        let answer = match (words.next(), words.next()) {
            (None, _) => return Ok(()),
            (Some("help"), _) => "help          this list\n\
                 tree          every live actor under its parent, with its mailbox\n\
                 sup           the supervision tree: children, restarts, mailboxes\n\
                 stats         runtime counters and listeners\n\
                 actor ID      one actor\n"
                .to_string(),
            (Some("tree"), _) => tree_text(conn.runtime()),
            (Some("stats"), _) => stats_text(conn.runtime()),
            (Some("actor"), Some(id)) => match id.trim_start_matches('#').parse::<u64>() {
                Ok(id) => match observe::actor(conn.runtime(), ActorId(id)) {
                    Some(info) => format!("{}\n", actor_line(&info)),
                    None => format!("no live actor #{id}\n"),
                },
                Err(_) => format!("not an actor id: {id:?}\n"),
            },
            (Some("sup"), _) => {
                // Asking each supervisor waits: done on the blocking pool,
                // the answer comes back as a message.
                let root = self.root.clone();
                let handle = conn.runtime().clone();
                conn.ctx().spawn_blocking(
                    move || sup_text(&handle, &root),
                    |text| {
                        ConnMsg::user(ConsoleMsg::Answer(
                            text.unwrap_or_else(|e| format!("the walk failed: {e}\n")),
                        ))
                    },
                )?;
                self.waiting += 1;
                return Ok(());
            }
            (Some(other), _) => format!("unknown command {other:?}; try help\n"),
        };
        conn.write(answer.as_bytes())?;
        conn.write(b"\n")?;
        Ok(())
    }
}

fn actor_line(info: &observe::ActorInfo) -> String {
    format!(
        "#{} {}{} mailbox {}/{} (high {}){}",
        info.id.0,
        info.short_type(),
        info.name
            .as_deref()
            .map(|n| format!(" \"{n}\""))
            .unwrap_or_default(),
        info.mailbox,
        info.mailbox_capacity,
        info.mailbox_high_water,
        info.parent
            .map(|p| format!(" parent #{}", p.0))
            .unwrap_or_default(),
    )
}

fn tree_text(handle: &Handle) -> String {
    let mut out = String::new();
    for (depth, info) in observe::tree(handle) {
        let _ = writeln!(out, "{}{}", "  ".repeat(depth), actor_line(&info));
    }
    out
}

fn stats_text(handle: &Handle) -> String {
    let m = handle.metrics();
    let mut out = format!(
        "uptime {:.1} s; {} turns, {} steals, {} sleeps, {} polls; busy {:.3} s\n",
        m.uptime.as_secs_f64(),
        m.turns(),
        m.steals(),
        m.parks(),
        m.polls(),
        m.busy().as_secs_f64()
    );
    let _ = writeln!(
        out,
        "{} actors, {} timers pending, {} I/O sources, blocking pool {} threads ({} queued)",
        weft::actors::live_actors(handle),
        m.timers_pending,
        m.io_sources,
        m.blocking.threads,
        m.blocking.queued
    );
    for l in weft::io::listeners(handle) {
        let s = l.stats();
        let _ = writeln!(
            out,
            "listener {}: {} accepted, {} active, {} failed, {} accept errors",
            l.address().map(|a| a.to_string()).unwrap_or_default(),
            s.accepted,
            s.active,
            s.failed,
            s.accept_errors
        );
    }
    out
}

/// The supervision tree under `root`, asked supervisor by supervisor
/// (each answers within a second), with each running child's mailbox.
fn sup_text(handle: &Handle, root: &Addr<Supervisor>) -> String {
    tree_dump_with(root, Duration::from_secs(1), |child| {
        child
            .addr
            .as_ref()
            .and_then(|a| observe::actor(handle, a.id()))
            .map(|info| actor_line(&info))
            .unwrap_or_else(|| "not running".into())
    })
}

fn main() -> ExitCode {
    let cli = cli::Cli::new(
        "observe",
        "[ECHO_ADDR] [METRICS_ADDR] [CONSOLE_ADDR]",
        "Runtime metrics in Prometheus' format over HTTP and a read-only debug console with the live actor tree, beside an echo server and a small supervision tree.",
    );
    let args = cli.args_at_most(3);
    let addr = |i: usize, default: &str| -> SocketAddr {
        let arg = args.get(i).map_or(default, String::as_str);
        arg.parse()
            .unwrap_or_else(|e| cli.fail(format!("bad address {arg:?} ({e}); expected IP:PORT")))
    };
    let (echo_at, metrics_at, console_at) = (
        addr(0, "127.0.0.1:7000"),
        addr(1, "127.0.0.1:9898"),
        addr(2, "127.0.0.1:9899"),
    );
    let rt = match Runtime::builder().build() {
        Ok(rt) => rt,
        Err(e) => return cli.error(e),
    };
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .intensity(Intensity {
            max_restarts: 1000,
            within: Duration::from_secs(1),
        })
        .child(ChildSpec::worker("ticker", || Ticker { ticks: 0 }))
        .child(ChildSpec::worker("flaky", || Flaky));
    let app = Application::start(&rt, spec);
    let root = app.root().clone();
    let echo = match listen_tcp(rt.handle(), echo_at, ListenOptions::new(), || Echo) {
        Ok(l) => l.local_addr(),
        Err(e) => return cli.error(e),
    };
    let metrics = match listen_tcp(
        rt.handle(),
        metrics_at,
        ListenOptions::new(),
        Metrics::default,
    ) {
        Ok(l) => l.local_addr(),
        Err(e) => return cli.error(e),
    };
    let console = match listen_tcp(rt.handle(), console_at, ListenOptions::new(), move || {
        Console {
            line: Vec::new(),
            root: root.clone(),
            waiting: 0,
            ended: false,
        }
    }) {
        Ok(l) => l.local_addr(),
        Err(e) => return cli.error(e),
    };
    rt.handle().on_startup(move || {
        println!(
            "observe: echo listening on {echo}, metrics on http://{metrics}/metrics, console on {console}"
        )
    });
    match app.run(&rt) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => cli.error(e),
    }
}
