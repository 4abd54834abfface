//! The runtime: readiness as messages, the blocking pool, start-up and
//! shutdown, signals, wake-ups from foreign threads, builder errors.

mod common;

use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::Duration;

use common::*;
use weft::prelude::*;
use weft::runtime::mio::{unix::pipe, Interest};
use weft::runtime::{Readiness, RuntimeError, Signals};

/// Owns the read end of a pipe; reports every byte it reads.
struct PipeReader {
    rx: Option<pipe::Receiver>,
    out: mpsc::Sender<Vec<u8>>,
}
enum PipeMsg {
    Ready(Readiness),
}
impl Actor for PipeReader {
    type Msg = PipeMsg;
    fn started(&mut self, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        let rx = self.rx.as_mut().ok_or("no pipe")?;
        ctx.register_io(rx, Interest::READABLE, PipeMsg::Ready)?;
        Ok(())
    }
    fn handle(&mut self, PipeMsg::Ready(r): PipeMsg, _ctx: &mut Ctx<'_, Self>) -> ActorResult {
        assert!(r.is_readable() || r.is_read_closed());
        let rx = self.rx.as_mut().ok_or("no pipe")?;
        let mut buf = [0u8; 4096];
        // Edge-triggered: read until WouldBlock.
        loop {
            match rx.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => self.out.send(buf[..n].to_vec())?,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

#[test]
fn readiness_of_a_real_fd_arrives_as_a_message() {
    let rt = runtime(2);
    let (mut tx, rx) = pipe::new().unwrap();
    let (out, got) = mpsc::channel();
    let _reader = rt.handle().spawn(PipeReader { rx: Some(rx), out });
    // Give `started` a moment to register; the write may also come first,
    // since registration reports a pipe that is already readable.
    tx.write_all(b"hello").unwrap();
    assert_eq!(recv(&got), b"hello");
    tx.write_all(b"again").unwrap();
    assert_eq!(recv(&got), b"again");
}

#[test]
fn a_send_from_a_foreign_thread_wakes_an_idle_runtime_at_once() {
    // With a manual clock no timer can ever wake the workers, so a reply
    // proves the send itself woke the sleeping runtime (twisted#2080).
    let (rt, _clock) = manual_runtime(1);
    let rec = recorder::<u32>(&rt);
    std::thread::sleep(Duration::from_millis(20)); // let the worker go idle
    let sender = rec.clone();
    std::thread::spawn(move || sender.send(RecMsg::Record(1)).ok().unwrap())
        .join()
        .unwrap();
    assert_eq!(recorded(&rec), vec![1]);
}

#[test]
fn the_blocking_pool_never_exceeds_its_bound() {
    let rt = Runtime::builder()
        .workers(1)
        .blocking_threads(3)
        .blocking_queue(4)
        .build()
        .unwrap();
    let h = rt.handle();
    let release = Arc::new((Mutex::new(false), Condvar::new()));
    let running = Arc::new(AtomicUsize::new(0));
    let (done_tx, done_rx) = mpsc::channel();
    let mut accepted = 0;
    let mut refused = 0;
    for _ in 0..10 {
        let (release, running, done_tx) = (release.clone(), running.clone(), done_tx.clone());
        let first_three = accepted < 3;
        match h.spawn_blocking(move || {
            running.fetch_add(1, Ordering::SeqCst);
            if first_three {
                let (open, cv) = &*release;
                let mut open = open.lock().unwrap();
                while !*open {
                    open = cv.wait_timeout(open, WAIT).unwrap().0;
                }
            }
            done_tx.send(()).unwrap();
        }) {
            Ok(()) => accepted += 1,
            Err(RuntimeError::BlockingPoolFull { .. }) => refused += 1,
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert_eq!(accepted, 7, "3 running + 4 queued");
    assert_eq!(refused, 3);
    let stats = h.blocking_stats();
    assert!(stats.threads <= 3 && stats.peak_threads <= 3, "{stats:?}");
    *release.0.lock().unwrap() = true;
    release.1.notify_all();
    for _ in 0..7 {
        recv(&done_rx);
    }
    assert_eq!(h.blocking_stats().peak_threads, 3);
}

struct Deferrer {
    tx: mpsc::Sender<String>,
}
enum DeferMsg {
    Go(bool),
    Done(Result<u64, weft::actors::JobPanicked>),
}
impl Actor for Deferrer {
    type Msg = DeferMsg;
    fn handle(&mut self, msg: DeferMsg, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        match msg {
            DeferMsg::Go(panic) => ctx.spawn_blocking(
                move || {
                    if panic {
                        panic!("job failed");
                    }
                    std::thread::current().name().map_or(0, |n| n.len() as u64)
                },
                DeferMsg::Done,
            )?,
            DeferMsg::Done(r) => self.tx.send(match r {
                Ok(n) => format!("ok {}", n > 0),
                Err(e) => e.to_string(),
            })?,
        }
        Ok(())
    }
}

#[test]
fn blocking_work_comes_back_as_a_message() {
    let rt = runtime(1);
    let (tx, rx) = mpsc::channel();
    let d = rt.handle().spawn(Deferrer { tx });
    d.send(DeferMsg::Go(false)).unwrap();
    assert_eq!(recv(&rx), "ok true");
    d.send(DeferMsg::Go(true)).unwrap();
    assert_eq!(recv(&rx), "blocking job panicked: job failed");
}

struct Noted {
    tx: mpsc::Sender<String>,
}
impl Actor for Noted {
    type Msg = ();
    fn handle(&mut self, _m: (), _c: &mut Ctx<'_, Self>) -> ActorResult {
        Ok(())
    }
    fn stopped(&mut self, reason: &ExitReason, _ctx: &mut Ctx<'_, Self>) {
        let _ = self.tx.send(format!("actor stopped: {reason}"));
    }
}

fn threads_named(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with(prefix))
        .count()
}

#[test]
fn run_and_shutdown_run_hooks_in_order_and_leave_no_thread() {
    let rt = Runtime::builder()
        .workers(2)
        .name("wefthooks")
        .signals(Signals::Ignore)
        .build()
        .unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let h = rt.handle().clone();
    // Actors stop in the During phase, in registration order among its
    // hooks: the actor layer registers its hook with the first spawn.
    let _actor = h.spawn(Noted { tx: tx.clone() });
    for (phase, name) in [
        (Phase::After, "after"),
        (Phase::Before, "before"),
        (Phase::During, "during"),
    ] {
        let tx = tx.clone();
        h.on_shutdown(phase, move || tx.send(name.to_string()).unwrap());
    }
    let blocking_tx = tx.clone();
    h.spawn_blocking(move || blocking_tx.send("blocking ran".into()).unwrap())
        .unwrap();
    assert_eq!(recv(&rx), "blocking ran");
    {
        let tx = tx.clone();
        let h2 = h.clone();
        h.on_startup(move || {
            tx.send("startup".into()).unwrap();
            // Ask for shutdown from another thread once running.
            std::thread::spawn(move || h2.shutdown());
        });
    }
    assert!(threads_named("wefthooks") >= 2);
    rt.run().unwrap();
    let order: Vec<String> = rx.try_iter().collect();
    assert_eq!(
        order,
        vec![
            "startup",
            "before",
            "actor stopped: shutdown",
            "during",
            "after"
        ]
    );
    assert_eq!(
        threads_named("wefthooks"),
        0,
        "no runtime thread left behind"
    );
    assert!(matches!(rt.run(), Err(RuntimeError::AlreadyRan)));
}

#[test]
fn shutdown_can_be_asked_from_inside_an_actor() {
    struct Quitter;
    impl Actor for Quitter {
        type Msg = ();
        fn handle(&mut self, _m: (), ctx: &mut Ctx<'_, Self>) -> ActorResult {
            ctx.runtime().shutdown();
            Ok(())
        }
    }
    let rt = Runtime::builder()
        .workers(1)
        .signals(Signals::Ignore)
        .build()
        .unwrap();
    let q = rt.handle().spawn(Quitter);
    rt.handle().on_startup(move || q.send(()).ok().unwrap());
    rt.run().unwrap();
    assert!(rt.handle().is_shutting_down());
}

#[test]
fn bad_settings_are_errors() {
    for (b, setting) in [
        (Runtime::builder().workers(0), "workers"),
        (Runtime::builder().turn_budget(0), "turn_budget"),
        (Runtime::builder().blocking_threads(0), "blocking_threads"),
        (Runtime::builder().name(""), "name"),
    ] {
        match b.build() {
            Err(RuntimeError::InvalidSetting { setting: s, .. }) => assert_eq!(s, setting),
            Err(e) => panic!("wrong error {e}"),
            Ok(_) => panic!("{setting} accepted"),
        }
    }
}

/// The body of the signal test, run in a child process (see below): two
/// runtimes in one process, each running on its own thread.
#[test]
#[ignore = "run only as the child of sigterm_and_sigint_shut_down_gracefully"]
fn signal_child() {
    if std::env::var("WEFT_SIGNAL_CHILD").is_err() {
        return;
    }
    let (ready_tx, ready_rx) = mpsc::channel();
    let runners: Vec<_> = (0..2)
        .map(|_| {
            let ready = ready_tx.clone();
            std::thread::spawn(move || {
                let rt = Runtime::builder().workers(1).build().unwrap();
                let actor = rt.handle().spawn(Noted {
                    tx: mpsc::channel().0,
                });
                rt.handle().on_startup(move || ready.send(()).unwrap());
                rt.run().unwrap();
                assert!(actor.is_stopped());
            })
        })
        .collect();
    for _ in 0..2 {
        recv(&ready_rx);
    }
    println!("ready");
    std::io::stdout().flush().unwrap();
    for r in runners {
        r.join().unwrap();
    }
    println!("clean exit");
    std::io::stdout().flush().unwrap();
    // No runtime runs now: the signal has its default meaning again.
    std::thread::sleep(WAIT);
    println!("still alive");
}

/// SIGTERM and SIGINT shut every running runtime of the process down
/// gracefully (each has its own handler, chained by the registry); once no
/// runtime runs, the signal terminates the process as it did before weft.
#[test]
fn sigterm_and_sigint_shut_down_gracefully() {
    use std::os::unix::process::ExitStatusExt;
    for signal in [nix::sys::signal::SIGTERM, nix::sys::signal::SIGINT] {
        let (mut child, rx) = spawn_test_child("signal_child", "WEFT_SIGNAL_CHILD");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        while !recv(&rx).contains("ready") {}
        nix::sys::signal::kill(pid, signal).unwrap();
        while !recv(&rx).contains("clean exit") {}
        nix::sys::signal::kill(pid, signal).unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(signal as i32), "{signal}: {status}");
        let rest: Vec<String> = rx.try_iter().collect();
        assert!(!rest.iter().any(|l| l.contains("still alive")), "{rest:?}");
    }
}

/// Run as a child: with the descriptor limit leaving room for the
/// reactor but not for the signal pipe, `build` fails with a clear error
/// (rather than `run` failing later).
#[test]
#[ignore = "run only as the child of the signal pipe is opened at build"]
fn fd_limit_child() {
    if std::env::var("WEFT_FD_LIMIT_CHILD").is_err() {
        return;
    }
    use nix::sys::resource::{setrlimit, Resource};
    // The limit bounds descriptor *numbers*, not their count, and a new
    // descriptor takes the lowest free number: leave exactly the three
    // lowest free numbers usable, for the reactor (epoll, its duplicate for
    // the registry, eventfd); the signal pipe needs two more. (The descriptors the test harness inherited may
    // leave gaps, so counting them is not enough.)
    let open: std::collections::BTreeSet<u64> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    // read_dir's own descriptor is listed too but is closed by now.
    let open: std::collections::BTreeSet<u64> = open
        .into_iter()
        .filter(|fd| nix::fcntl::fcntl(*fd as i32, nix::fcntl::FcntlArg::F_GETFD).is_ok())
        .collect();
    let third_free = (0..).filter(|n| !open.contains(n)).nth(2).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, third_free + 1, third_free + 1).unwrap();
    match Runtime::builder().workers(1).build() {
        Err(e) => println!("build failed: {e}"),
        Ok(_) => println!("build succeeded"),
    }
    let quiet = Runtime::builder()
        .workers(1)
        .signals(Signals::Ignore)
        .build();
    println!(
        "without signals: {}",
        if quiet.is_ok() { "ok" } else { "failed" }
    );
}

#[test]
fn the_signal_pipe_is_opened_at_build() {
    let (mut child, rx) = spawn_test_child("fd_limit_child", "WEFT_FD_LIMIT_CHILD");
    let line = loop {
        let line = recv(&rx);
        if line.starts_with("build") {
            break line;
        }
    };
    assert!(line.contains("open the signal pipe"), "{line}");
    assert_eq!(recv(&rx), "without signals: ok");
    assert!(child.wait().unwrap().success());
}

/// Blocks its worker until the watchdog has reported this very turn.
struct Hog {
    reports: mpsc::Receiver<weft::runtime::SlowTurn>,
    out: mpsc::Sender<weft::runtime::SlowTurn>,
}
impl Actor for Hog {
    type Msg = ();
    fn handle(&mut self, _m: (), _ctx: &mut Ctx<'_, Self>) -> ActorResult {
        let report = self.reports.recv_timeout(WAIT)?;
        self.out.send(report)?;
        Ok(())
    }
}

#[test]
fn a_handler_that_holds_its_worker_is_reported_by_name() {
    let (tx, reports) = mpsc::channel();
    let rt = Runtime::builder()
        .workers(2)
        .slow_turn_threshold(Some(Duration::from_millis(20)))
        .on_slow_turn(move |turn| {
            let _ = tx.send(turn);
        })
        .build()
        .unwrap();
    let (out, got) = mpsc::channel();
    let hog = rt.handle().spawn(Hog { reports, out });
    hog.send(()).ok().unwrap();
    // While the hog holds one worker, the other keeps serving.
    let rec = recorder::<u8>(&rt);
    rec.send(RecMsg::Record(1)).ok().unwrap();
    assert_eq!(recorded(&rec), vec![1]);
    let report = recv(&got);
    assert_eq!(report.task, hog.id().0);
    let name = report.name.expect("the actor layer names its actors");
    assert!(name.contains("Hog"), "{name}");
    assert!(report.held_for >= Duration::from_millis(20));
}

#[test]
fn a_zero_slow_turn_threshold_is_an_error() {
    assert!(matches!(
        Runtime::builder()
            .slow_turn_threshold(Some(Duration::ZERO))
            .build(),
        Err(RuntimeError::InvalidSetting {
            setting: "slow_turn_threshold",
            ..
        })
    ));
}

#[test]
fn idle_blocking_threads_exit() {
    let rt = Runtime::builder()
        .workers(1)
        .blocking_threads(2)
        .blocking_keep_alive(Duration::from_millis(10))
        .build()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    for _ in 0..2 {
        let tx = tx.clone();
        rt.handle()
            .spawn_blocking(move || tx.send(()).unwrap())
            .unwrap();
    }
    recv(&rx);
    recv(&rx);
    let deadline = std::time::Instant::now() + WAIT;
    while rt.handle().blocking_stats().threads > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(rt.handle().blocking_stats().threads, 0, "idle threads exit");
    // And the pool grows again on demand.
    rt.handle()
        .spawn_blocking(move || tx.send(()).unwrap())
        .unwrap();
    recv(&rx);
}

/// A handler that never returns (until the test lets it go).
struct Stuck {
    entered: mpsc::Sender<()>,
    release: Arc<std::sync::atomic::AtomicBool>,
}
impl Actor for Stuck {
    type Msg = ();
    fn handle(&mut self, _m: (), _ctx: &mut Ctx<'_, Self>) -> ActorResult {
        self.entered.send(())?;
        let deadline = std::time::Instant::now() + 3 * WAIT;
        while !self.release.load(Ordering::SeqCst) && std::time::Instant::now() < deadline {
            std::hint::spin_loop();
        }
        Ok(())
    }
}

/// The shutdown timeout bounds shutdown: one handler stuck on a worker
/// does not hang `run`; it is named in the error and its thread is left
/// behind, while the rest shuts down.
#[test]
fn a_stuck_handler_cannot_hang_shutdown_past_its_timeout() {
    let rt = Runtime::builder()
        .workers(2)
        .shutdown_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let release = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (entered, entered_rx) = mpsc::channel();
    let stuck = rt.handle().spawn(Stuck {
        entered,
        release: release.clone(),
    });
    let healthy = rt.handle().spawn(Noted {
        tx: mpsc::channel().0,
    });
    stuck.send(()).unwrap();
    recv(&entered_rx);
    rt.handle().shutdown();
    let (done, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let result = rt.run();
        let _ = done.send(result);
    });
    let result = recv(&done_rx);
    release.store(true, Ordering::SeqCst);
    match result {
        Err(RuntimeError::ShutdownTimedOut { stuck: what }) => {
            assert_eq!(what.len(), 1, "{what:?}");
            assert!(what[0].contains("Stuck"), "{what:?}");
        }
        other => panic!("expected ShutdownTimedOut, got {other:?}"),
    }
    assert!(healthy.is_stopped());
}

/// `is_running` is Twisted's `reactor.running`: false before `run`, true
/// while its start-up hooks and actors run, false once shutdown is asked.
#[test]
fn is_running_follows_the_lifecycle() {
    let rt = Runtime::builder()
        .workers(1)
        .signals(Signals::Ignore)
        .build()
        .unwrap();
    assert!(!rt.handle().is_running());
    let (tx, rx) = mpsc::channel();
    let h = rt.handle().clone();
    rt.handle().on_startup(move || {
        tx.send(h.is_running()).unwrap();
        h.shutdown();
        tx.send(h.is_running()).unwrap();
    });
    rt.run().unwrap();
    assert_eq!((recv(&rx), recv(&rx)), (true, false));
    assert!(!rt.handle().is_running());
}
