//! weft's benchmark harness: the workloads listed in BENCHMARKS.md, run for
//! weft and its peers (actix, ractor, tokio, crossbeam-channel) in one run.
//!
//! `cargo run --release --manifest-path bench/Cargo.toml -- actors [WORKLOAD] [--runs N]`
//! `cargo run --release --manifest-path bench/Cargo.toml -- net [WORKLOAD] [--runs N]`
//! (`net`: see `net.rs`; `WEFT_BENCH_SECS` shortens its 10 s workloads)
//!
//! Every (workload, system, run) executes in a fresh child process (this
//! binary re-executed with `--child`), so one system's threads, allocator
//! state or leaked memory never disturb the next measurement, and memory
//! figures are the child's own peak RSS growth. Runs interleave the
//! systems (run 1 of each, then run 2, ...), so the machine's drift weighs
//! on all alike. The parent prints one JSON line per cell as soon as its
//! workload's runs are done
//! (`{"group":..,"workload":..,"system":..,"median":..,"unit":..,"runs":..}`,
//! so a cut-off run still yields what it measured), then a table
//! (workloads down, systems across, weft/peer ratios).

mod actix_w;
mod chart;
mod crossbeam_w;
mod dist;
mod mem;
mod net;
mod procs;
mod ractor_w;
mod sim;
mod tls;
mod tokio_w;
mod udp;
mod unix;
mod weft_w;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Systems in table order.
const SYSTEMS: [&str; 5] = ["weft", "actix", "ractor", "tokio", "crossbeam"];

/// The actor jobs. A job may emit several figures (e.g. spawn -> spawn,
/// spawn-bytes).
const ACTOR_JOBS: [&str; 12] = [
    "ping-pong",
    "ping-pong-2w",
    "thread-ring",
    "counting",
    "fan-in",
    "spawn",
    "ask",
    "ask-actor",
    "timers",
    "timers-10k",
    "churn",
    "churn-bytes",
];

/// A child's answer for one figure.
pub fn emit(workload: &str, unit: &str, value: f64) {
    println!("RESULT {workload} {unit} {value}");
}

/// Sizes, exactly as BENCHMARKS.md gives them.
pub mod sizes {
    pub const PING_PONG: u64 = 1_000_000;
    pub const RING_ACTORS: usize = 503;
    pub const RING_HOPS: u64 = 10_000_000;
    pub const COUNTING: u64 = 10_000_000;
    pub const FAN_IN_PER_SENDER: u64 = 5_000_000;
    pub const SPAWN: usize = 1_000_000;
    pub const ASK: u64 = 1_000_000;
    pub const TIMERS: usize = 1_000_000;
    /// The small timers variant: the cost per timer should not change.
    pub const TIMERS_SMALL: usize = 10_000;
    /// Deadlines are spread over this span.
    pub const TIMER_SPAN_MS: u64 = 1_000;
    /// Supervised churn: children started, each handling one message.
    pub const CHURN: usize = 1_000_000;
    /// Supervised children kept alive to weigh the bookkeeping.
    pub const CHURN_ALIVE: usize = 100_000;
}

/// Timer `i` of `n` is due at `i / n` of the span after `start`: deadlines
/// spread evenly over the span from the moment arming began (not delays
/// from the moment each is set, which would stretch the span by the time
/// arming takes and put the floor of the last fire above the span). The
/// clock is read once per 1,024 timers, so the insert rate measures the
/// runtime rather than `Instant::now`.
pub struct TimerSpread {
    start: Instant,
    n: usize,
    elapsed: Duration,
}

impl TimerSpread {
    pub fn new(start: Instant, n: usize) -> Self {
        TimerSpread {
            start,
            n,
            elapsed: Duration::ZERO,
        }
    }

    /// The delay that makes timer `i` due on its place in the spread.
    pub fn delay(&mut self, i: usize) -> Duration {
        if i.is_multiple_of(1024) {
            self.elapsed = self.start.elapsed();
        }
        let at = Duration::from_micros((i as u64 * sizes::TIMER_SPAN_MS * 1000) / self.n as u64);
        at.saturating_sub(self.elapsed)
    }
}

/// The figure names of a timers job: `timers` or `timers-10k`.
pub fn timer_names(n: usize) -> (&'static str, &'static str) {
    if n == sizes::TIMERS {
        ("timers", "timers-last")
    } else {
        ("timers-10k", "timers-10k-last")
    }
}

/// Reports the spawn workload: actors/s since `start`, and bytes per actor
/// from the peak RSS growth, less `harness_bytes_each` (the harness's own
/// vector of handles, which is not the actors' cost).
pub fn emit_spawn(start: std::time::Instant, base: u64, peak: u64, harness_bytes_each: usize) {
    let n = sizes::SPAWN;
    emit("spawn", "per_s", n as f64 / start.elapsed().as_secs_f64());
    let harness = (n * harness_bytes_each) as u64;
    emit_bytes_each(
        "spawn-bytes",
        peak.saturating_sub(base).saturating_sub(harness),
        n,
    );
}

/// Reports `grown` bytes of RSS growth as bytes per item of `n`.
pub fn emit_bytes_each(workload: &str, grown: u64, n: usize) {
    emit(workload, "bytes", grown as f64 / n as f64);
}

/// A tokio current-thread runtime (the one-worker configuration).
pub fn tokio_current() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A tokio multi-thread runtime with `workers` workers.
pub fn tokio_multi(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// One worker per core, as the peers are configured.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

fn run_child(job: &str, system: &str) -> bool {
    let ran = if net::JOBS.contains(&job) {
        net::run(job, system)
    } else if dist::JOBS.contains(&job) {
        dist::run(job, system)
    } else if sim::JOBS.contains(&job) {
        sim::run(job, system)
    } else {
        run_actor_child(job, system)
    };
    if !ran {
        println!("NA");
    }
    ran
}

fn run_actor_child(job: &str, system: &str) -> bool {
    match system {
        "weft" => weft_w::run(job),
        "actix" => actix_w::run(job),
        "ractor" => ractor_w::run(job),
        "tokio" => tokio_w::run(job),
        "crossbeam" => crossbeam_w::run(job),
        _ => false,
    }
}

struct Cell {
    unit: String,
    values: Vec<f64>,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn spawn_child(
    job: &str,
    system: &str,
    timeout: Duration,
) -> Result<Vec<(String, String, f64)>, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = Command::new(exe)
        .args(["--child", job, system])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| e.to_string())?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line == "NA" => {
                let _ = child.wait();
                return Err("n/a".into());
            }
            Ok(line) => {
                let parts: Vec<&str> = line.split_whitespace().collect();
                if parts.len() == 4 && parts[0] == "RESULT" {
                    if let Ok(v) = parts[3].parse() {
                        out.push((parts[1].to_string(), parts[2].to_string(), v));
                    }
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("timeout after {}s", timeout.as_secs()));
            }
        }
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("child failed: {status}"));
    }
    Ok(out)
}

fn fmt_value(v: f64, unit: &str) -> String {
    match unit {
        "per_s" if v >= 1e6 => format!("{:.2} M/s", v / 1e6),
        "per_s" if v >= 1e3 => format!("{:.1} k/s", v / 1e3),
        "per_s" => format!("{v:.0} /s"),
        "bytes" => format!("{v:.0} B"),
        "us" if v >= 1e6 => format!("{:.3} s", v / 1e6),
        "us" => format!("{v:.1} us"),
        "mb_per_s" => format!("{v:.0} MB/s"),
        _ => format!("{v:.2} {unit}"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        let (job, system) = (&args[1], &args[2]);
        run_child(job, system);
        return;
    }
    if args.first().map(String::as_str) == Some("--dist-peer") {
        dist::serve_peer(args.get(1).map_or("", String::as_str));
        return;
    }
    if args.first().map(String::as_str) == Some("--serve") {
        net::serve(
            args.get(1).map_or("", String::as_str),
            args.get(2..).unwrap_or_default(),
        );
        return;
    }
    if args.first().map(String::as_str) == Some("chart") {
        std::process::exit(charts(
            args.get(1).map_or("BENCHMARKS.md", String::as_str),
            args.get(2).map_or("docs/charts", String::as_str),
        ));
    }
    let group = args.first().cloned().unwrap_or_else(|| "actors".into());
    let mut runs = 5;
    let mut only: Vec<String> = Vec::new();
    let all: &[&str] = match group.as_str() {
        "net" => &net::SYSTEMS,
        "dist" => &dist::SYSTEMS,
        "sim" => &sim::SYSTEMS,
        _ => &SYSTEMS,
    };
    let mut systems: Vec<String> = all.iter().map(|s| s.to_string()).collect();
    let mut i = 1;
    while i < args.len() {
        match args[i].as_str() {
            "--runs" => {
                runs = args.get(i + 1).and_then(|s| s.parse().ok()).unwrap_or(5);
                i += 1;
            }
            "--systems" => {
                systems = args
                    .get(i + 1)
                    .map(|s| s.split(',').map(String::from).collect())
                    .unwrap_or_default();
                i += 1;
            }
            other => only.push(other.to_string()),
        }
        i += 1;
    }
    let all_jobs: &[&str] = match group.as_str() {
        "actors" => &ACTOR_JOBS,
        "net" => &net::JOBS,
        "dist" => &dist::JOBS,
        "sim" => &sim::JOBS,
        _ => {
            eprintln!(
                "unknown group `{group}`: this harness has `actors`, `net`, `dist` and `sim`"
            );
            std::process::exit(2);
        }
    };
    if group == "net" {
        if let Err(e) = net::prepare() {
            eprintln!("net: {e}");
            std::process::exit(1);
        }
    }
    let jobs: Vec<&str> = all_jobs
        .iter()
        .copied()
        .filter(|j| only.is_empty() || only.iter().any(|o| o == j))
        .collect();
    eprintln!(
        "weft bench: group {group}, {runs} runs each, {} cores, jobs {:?}",
        cores(),
        jobs
    );
    // workload -> system -> cell
    let mut table: BTreeMap<String, BTreeMap<String, Cell>> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut notes: BTreeMap<(String, String), String> = BTreeMap::new();
    let group_start = Instant::now();
    for job in &jobs {
        // Runs interleave the systems (run 1 of each, then run 2 of
        // each, ...): the machine drifts by a factor of three over
        // minutes, and a drift must weigh on every system alike.
        let job_start = Instant::now();
        let mut emitted: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut failed: Vec<String> = Vec::new();
        for run in 0..runs {
            for system in &systems {
                if failed.contains(system) {
                    continue;
                }
                eprint!("\r{job:>14} run {}/{runs} {system:<10}   ", run + 1);
                // Let the machine settle: a peer that just freed gigabytes
                // (ractor's spawn peaks near 8 GB) keeps the kernel busy.
                std::thread::sleep(Duration::from_millis(500));
                match spawn_child(job, system, Duration::from_secs(180)) {
                    Ok(figures) => {
                        for (workload, unit, v) in figures {
                            if !order.contains(&workload) {
                                order.push(workload.clone());
                            }
                            let seen = emitted.entry(system.clone()).or_default();
                            if !seen.contains(&workload) {
                                seen.push(workload.clone());
                            }
                            table
                                .entry(workload)
                                .or_default()
                                .entry(system.clone())
                                .or_insert_with(|| Cell {
                                    unit: unit.clone(),
                                    values: Vec::new(),
                                })
                                .values
                                .push(v);
                        }
                    }
                    Err(e) => {
                        notes.insert((job.to_string(), system.clone()), e);
                        failed.push(system.clone());
                    }
                }
                // A cell is done after its last run (or a failed one): its
                // JSON line at once, so a run that is cut off still leaves
                // it.
                if run + 1 == runs || failed.last() == Some(system) {
                    for workload in emitted.get(system).into_iter().flatten() {
                        if let Some(cell) = table.get_mut(workload).and_then(|r| r.get_mut(system))
                        {
                            let m = median(&mut cell.values);
                            println!(
                                "{{\"group\":\"{group}\",\"workload\":\"{workload}\",\"system\":\"{system}\",\"median\":{m:.1},\"unit\":\"{}\",\"runs\":{}}}",
                                cell.unit,
                                cell.values.len()
                            );
                        }
                    }
                    let _ = std::io::Write::flush(&mut std::io::stdout());
                }
            }
        }
        eprintln!(
            "\r{job:>14} {:.1} s (group so far {:.0} s)              ",
            job_start.elapsed().as_secs_f64(),
            group_start.elapsed().as_secs_f64()
        );
    }
    eprintln!();
    println!();
    // Table.
    let peers: Vec<&String> = systems.iter().filter(|s| *s != "weft").collect();
    let mut header = format!("{:<14}", "workload");
    for s in &systems {
        header += &format!(" | {s:>12}");
    }
    for p in &peers {
        header += &format!(" | {:>10}", format!("weft/{p}"));
    }
    let mut text = String::new();
    text += &format!("{header}\n{}\n", "-".repeat(header.len()));
    for workload in &order {
        let row = table.get_mut(workload).expect("row exists");
        let mut line = format!("{workload:<14}");
        let mut medians: BTreeMap<String, f64> = BTreeMap::new();
        for s in &systems {
            match row.get_mut(s) {
                Some(cell) => {
                    let m = median(&mut cell.values);
                    medians.insert(s.clone(), m);
                    line += &format!(" | {:>12}", fmt_value(m, &cell.unit));
                }
                None => line += &format!(" | {:>12}", "n/a"),
            }
        }
        for p in &peers {
            match (medians.get("weft"), medians.get(*p)) {
                (Some(w), Some(v)) if *v > 0.0 => line += &format!(" | {:>9.2}x", w / v),
                _ => line += &format!(" | {:>10}", "-"),
            }
        }
        text += &format!("{line}\n");
    }
    print!("{text}");
    // The table as a chart, beside the harness (`weft-bench chart`
    // renders the tables BENCHMARKS.md records).
    if let Some(table) = chart::parse(&text) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("charts");
        let path = dir.join(format!("{group}.svg"));
        let svg = chart::svg(
            &format!("weft against its peers: {group} (this run)"),
            &table,
        );
        match std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, svg)) {
            Ok(()) => eprintln!("chart: {}", path.display()),
            Err(e) => eprintln!("chart: cannot write {}: {e}", path.display()),
        }
    }
    if !notes.is_empty() {
        println!();
        for ((job, system), why) in &notes {
            println!("note: {job} / {system}: {why}");
        }
    }
    println!(
        "(group {group}: {:.0} s in all)",
        group_start.elapsed().as_secs_f64()
    );
}

/// `weft-bench chart [MARKDOWN] [DIR]`: one SVG per table the document
/// records (BENCHMARKS.md by default), named after the heading above it,
/// into DIR (docs/charts by default); the exit status.
fn charts(markdown: &str, dir: &str) -> i32 {
    let text = match std::fs::read_to_string(markdown) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("chart: cannot read {markdown}: {e}");
            return 1;
        }
    };
    if let Err(e) = std::fs::create_dir_all(dir) {
        eprintln!("chart: cannot make {dir}: {e}");
        return 1;
    }
    for (slug, title, table) in chart::tables_in(&text) {
        let path = std::path::Path::new(dir).join(format!("{slug}.svg"));
        let svg = chart::svg(&format!("weft against its peers: {title}"), &table);
        if let Err(e) = std::fs::write(&path, svg) {
            eprintln!("chart: cannot write {}: {e}", path.display());
            return 1;
        }
        println!("{}", path.display());
    }
    0
}
