//! Child processes as actors, against real programs (`sh`, `cat`,
//! `sleep`, `true`, a script the test writes): output on each
//! descriptor, exited then ended, signals, descriptors the child sees,
//! environment and argv passed exactly, spawn errors as values, stdin and
//! end of file, a flood through `cat` read slowly, no zombies (pidfd and
//! SIGCHLD), a process actor restarted by its supervisor, and a PTY (its
//! name, size and resize, Ctrl-C).
#![cfg(feature = "process")]

mod common;

use std::collections::BTreeMap;
use std::sync::mpsc::{self, Sender};
use std::time::Duration;

use common::*;
use weft::io::process::{
    spawn_process, FdSpec, Proc, ProcessActor, ProcessProtocol, ProcessSpec, ProcessStatus,
    SignalError, SpawnError, SpawnStep,
};
use weft::prelude::*;

/// What a process protocol reports, in order.
#[derive(Debug, Clone, PartialEq)]
enum Ev {
    Started(i32),
    Data(i32, Vec<u8>),
    Closed(i32),
    Exited(ProcessStatus),
    Ended(ProcessStatus),
    SignalAfterExit(Result<(), SignalError>),
}

/// Records everything; writes `input` to stdin then closes it; signals
/// itself after exit when asked.
struct Record {
    tx: Sender<Ev>,
    input: Option<Vec<u8>>,
    signal_after_exit: bool,
}

impl Record {
    fn new(tx: Sender<Ev>) -> Self {
        Record {
            tx,
            input: None,
            signal_after_exit: false,
        }
    }
}

enum Cmd {
    Signal(nix::sys::signal::Signal),
}

impl ProcessProtocol for Record {
    type Msg = Cmd;
    fn started(&mut self, proc: &mut Proc<'_, '_, Self>) -> ActorResult {
        let _ = self.tx.send(Ev::Started(proc.pid()));
        if let Some(input) = self.input.take() {
            proc.write(0, &input)?;
            proc.close_fd(0);
        }
        Ok(())
    }
    fn data(&mut self, _proc: &mut Proc<'_, '_, Self>, fd: i32, data: &[u8]) -> ActorResult {
        let _ = self.tx.send(Ev::Data(fd, data.to_vec()));
        Ok(())
    }
    fn fd_closed(&mut self, _proc: &mut Proc<'_, '_, Self>, fd: i32) -> ActorResult {
        let _ = self.tx.send(Ev::Closed(fd));
        Ok(())
    }
    fn exited(&mut self, proc: &mut Proc<'_, '_, Self>, status: ProcessStatus) -> ActorResult {
        let _ = self.tx.send(Ev::Exited(status));
        if self.signal_after_exit {
            let r = proc.signal(nix::sys::signal::Signal::SIGTERM);
            let _ = self.tx.send(Ev::SignalAfterExit(r));
        }
        Ok(())
    }
    fn ended(&mut self, _proc: &mut Proc<'_, '_, Self>, status: ProcessStatus) {
        let _ = self.tx.send(Ev::Ended(status));
    }
    fn message(&mut self, proc: &mut Proc<'_, '_, Self>, msg: Cmd) -> ActorResult {
        match msg {
            Cmd::Signal(s) => proc.signal(s)?,
        }
        Ok(())
    }
}

/// Every event until `Ended`, with the output joined per descriptor.
struct Run {
    events: Vec<Ev>,
    output: BTreeMap<i32, Vec<u8>>,
    status: ProcessStatus,
}

fn until_ended(rx: &mpsc::Receiver<Ev>) -> Run {
    let mut events = Vec::new();
    let mut output: BTreeMap<i32, Vec<u8>> = BTreeMap::new();
    loop {
        let ev = recv(rx);
        if let Ev::Data(fd, data) = &ev {
            output.entry(*fd).or_default().extend_from_slice(data);
        }
        events.push(ev.clone());
        if let Ev::Ended(status) = ev {
            return Run {
                events,
                output,
                status,
            };
        }
    }
}

fn sh(script: &str) -> ProcessSpec {
    ProcessSpec::new("sh").args(["-c", script])
}

fn text(run: &Run, fd: i32) -> String {
    String::from_utf8_lossy(run.output.get(&fd).map_or(&[][..], |v| v)).into_owned()
}

#[test]
fn output_on_each_descriptor_then_exited_then_ended() {
    let rt = runtime(2);
    let (tx, rx) = mpsc::channel();
    let child = spawn_process(
        rt.handle(),
        sh("echo out; echo err >&2; exit 3"),
        Record::new(tx),
    )
    .expect("sh starts");
    let run = until_ended(&rx);
    assert_eq!(run.events[0], Ev::Started(child.pid()));
    assert_eq!(text(&run, 1), "out\n");
    assert_eq!(text(&run, 2), "err\n");
    assert_eq!(run.status, ProcessStatus::Exited(3));
    let exited = run
        .events
        .iter()
        .position(|e| matches!(e, Ev::Exited(_)))
        .expect("exited");
    assert_eq!(run.events[exited], Ev::Exited(ProcessStatus::Exited(3)));
    // Both outputs closed, and the last event is Ended.
    assert!(run.events.contains(&Ev::Closed(1)));
    assert!(run.events.contains(&Ev::Closed(2)));
    assert!(matches!(run.events.last(), Some(Ev::Ended(_))));
}

#[test]
fn a_signal_ends_the_child_and_signalling_after_exit_is_an_error() {
    let rt = runtime(2);
    let (tx, rx) = mpsc::channel();
    let mut protocol = Record::new(tx);
    protocol.signal_after_exit = true;
    let child = spawn_process(rt.handle(), ProcessSpec::new("sleep").arg("100"), protocol)
        .expect("sleep starts");
    assert!(matches!(recv(&rx), Ev::Started(_)));
    child
        .send(Cmd::Signal(nix::sys::signal::Signal::SIGTERM))
        .unwrap();
    let run = until_ended(&rx);
    let term = ProcessStatus::Signaled {
        signal: nix::libc::SIGTERM,
        core_dumped: false,
    };
    assert_eq!(run.status, term);
    assert!(run.events.contains(&Ev::Exited(term)));
    assert!(run
        .events
        .contains(&Ev::SignalAfterExit(Err(SignalError::Exited))));
}

#[test]
fn exited_comes_at_once_and_ended_when_a_background_child_lets_the_pipe_go() {
    let rt = runtime(2);
    let (tx, rx) = mpsc::channel();
    // The background `sleep` keeps stdout open for a moment after the
    // shell exits.
    spawn_process(
        rt.handle(),
        sh("(sleep 0.3; echo late) & exit 0"),
        Record::new(tx),
    )
    .expect("sh starts");
    let run = until_ended(&rx);
    let exited = run
        .events
        .iter()
        .position(|e| *e == Ev::Exited(ProcessStatus::Exited(0)))
        .expect("exited");
    let late = run
        .events
        .iter()
        .position(|e| *e == Ev::Data(1, b"late\n".to_vec()))
        .expect("the background child's output");
    assert!(exited < late, "{:?}", run.events);
    assert_eq!(run.status, ProcessStatus::Exited(0));
}

#[test]
fn an_extra_descriptor_is_read_and_only_the_mapped_ones_are_open_in_the_child() {
    let rt = runtime(2);
    let (tx, rx) = mpsc::channel();
    // The child lists its own descriptors (ls's directory handle aside).
    let spec = sh("echo three >&3; ls /proc/self/fd >&1")
        .fd(3, FdSpec::Output)
        .fd(2, FdSpec::Closed);
    spawn_process(rt.handle(), spec, Record::new(tx)).expect("sh starts");
    let run = until_ended(&rx);
    assert_eq!(text(&run, 3), "three\n");
    let mut fds: Vec<i32> = text(&run, 1)
        .split_whitespace()
        .map(|f| f.parse().unwrap())
        .collect();
    fds.sort_unstable();
    // 0, 1 and 3, plus the one `ls` opened to read the directory (the
    // lowest free number: 2).
    assert_eq!(fds, [0, 1, 2, 3], "{}", text(&run, 1));
    assert_eq!(run.status, ProcessStatus::Exited(0));
}

#[test]
fn environment_inherit_clear_and_custom() {
    let rt = runtime(2);
    std::env::set_var("WEFT_PROCESS_TEST_INHERITED", "from the parent");
    let run_env = |spec: ProcessSpec| {
        let (tx, rx) = mpsc::channel();
        spawn_process(rt.handle(), spec, Record::new(tx)).expect("env starts");
        let run = until_ended(&rx);
        assert!(run.status.success());
        text(&run, 1)
    };
    let inherited = run_env(ProcessSpec::new("/usr/bin/env"));
    assert!(inherited.contains("WEFT_PROCESS_TEST_INHERITED=from the parent\n"));
    let custom = run_env(
        ProcessSpec::new("/usr/bin/env")
            .env("ADDED", "yes")
            .env_remove("WEFT_PROCESS_TEST_INHERITED"),
    );
    assert!(custom.contains("ADDED=yes\n"));
    assert!(!custom.contains("WEFT_PROCESS_TEST_INHERITED"));
    let cleared = run_env(
        ProcessSpec::new("/usr/bin/env")
            .env_clear()
            .env("ONLY", "this"),
    );
    assert_eq!(cleared, "ONLY=this\n");
}

#[test]
fn argv_is_passed_exactly_including_argv0() {
    let rt = runtime(2);
    let (tx, rx) = mpsc::channel();
    let args = ["with space", "'quoted' \"twice\"", "naïve ✓", "", "$HOME;*"];
    // `$0` is argv[0]; each argument on its own line, as given.
    let spec = ProcessSpec::new("sh")
        .argv0("custom-name")
        .args([
            "-c",
            "echo \"$0\"; for a in \"$@\"; do printf '%s\\n' \"$a\"; done",
            "zero",
        ])
        .args(args);
    spawn_process(rt.handle(), spec, Record::new(tx)).expect("sh starts");
    let run = until_ended(&rx);
    let mut expected = String::from("zero\n");
    for a in args {
        expected.push_str(a);
        expected.push('\n');
    }
    assert_eq!(text(&run, 1), expected);
}

#[test]
fn spawn_failures_are_values_and_leave_nothing_behind() {
    let rt = runtime(2);
    let (tx, _rx) = mpsc::channel();
    let missing = spawn_process(
        rt.handle(),
        ProcessSpec::new("weft-no-such-program"),
        Record::new(tx.clone()),
    )
    .expect_err("a missing program");
    assert!(matches!(missing, SpawnError::NotFound { .. }), "{missing}");
    let missing_path = spawn_process(
        rt.handle(),
        ProcessSpec::new("/nonexistent/weft/program"),
        Record::new(tx.clone()),
    )
    .expect_err("a missing path");
    assert!(
        matches!(missing_path, SpawnError::NotFound { .. }),
        "{missing_path}"
    );
    // A file that is not executable.
    let dir = std::env::temp_dir().join(format!("weft-process-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let plain = dir.join("not-executable");
    std::fs::write(&plain, "#!/bin/sh\necho hi\n").unwrap();
    let refused = spawn_process(
        rt.handle(),
        ProcessSpec::new(&plain),
        Record::new(tx.clone()),
    )
    .expect_err("not executable");
    match &refused {
        SpawnError::Os { step, source, .. } => {
            assert_eq!(*step, SpawnStep::Exec);
            assert_eq!(source.kind(), std::io::ErrorKind::PermissionDenied);
        }
        other => panic!("{other}"),
    }
    // A working directory that does not exist.
    let bad_dir = spawn_process(
        rt.handle(),
        ProcessSpec::new("true").cwd("/nonexistent/weft/dir"),
        Record::new(tx),
    )
    .expect_err("a bad directory");
    match &bad_dir {
        SpawnError::Os { step, source, .. } => {
            assert_eq!(*step, SpawnStep::Cwd);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("{other}"),
    }
    assert!(
        bad_dir.to_string().contains("working directory"),
        "{bad_dir}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    // The children that failed were reaped (other tests' children may be
    // between exit and reaping for a moment).
    eventually("no zombie child", no_zombies);
}

#[test]
fn a_shebang_script_runs_and_stdin_is_written_then_closed() {
    let rt = runtime(2);
    let dir = std::env::temp_dir().join(format!("weft-process-sb-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("upper.sh");
    std::fs::write(&script, "#!/bin/sh\ntr a-z A-Z\necho done\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (tx, rx) = mpsc::channel();
    let mut protocol = Record::new(tx);
    protocol.input = Some(b"hello child\n".to_vec());
    spawn_process(rt.handle(), ProcessSpec::new(&script), protocol).expect("the script starts");
    let run = until_ended(&rx);
    // `tr` saw end of file (else "done" never comes).
    assert_eq!(text(&run, 1), "HELLO CHILD\ndone\n");
    assert!(run.status.success());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Streams `total` bytes into `cat` and reads them back slowly (the
/// protocol pauses its reading for a while after each chunk).
struct Flood {
    total: usize,
    sent: usize,
    got: usize,
    sum_in: u64,
    sum_out: u64,
    chunks: usize,
    done: Sender<(usize, u64, u64, usize)>,
}

impl Flood {
    fn pump(&mut self, proc: &mut Proc<'_, '_, Self>) -> ActorResult {
        while self.sent < self.total {
            let n = (self.total - self.sent).min(64 * 1024);
            let chunk: Vec<u8> = (self.sent..self.sent + n)
                .map(|i| (i % 251) as u8)
                .collect();
            match proc.write(0, &chunk) {
                Ok(()) => {
                    self.sum_in = chunk.iter().fold(self.sum_in, |s, b| s + u64::from(*b));
                    self.sent += n;
                }
                Err(_) => return Ok(()),
            }
        }
        proc.close_fd(0);
        Ok(())
    }
}

impl ProcessProtocol for Flood {
    type Msg = ();
    fn started(&mut self, proc: &mut Proc<'_, '_, Self>) -> ActorResult {
        self.pump(proc)
    }
    fn write_paused(&mut self, _proc: &mut Proc<'_, '_, Self>, _fd: i32) {}
    fn write_resumed(&mut self, proc: &mut Proc<'_, '_, Self>) {
        let _ = self.pump(proc);
    }
    fn data(&mut self, proc: &mut Proc<'_, '_, Self>, _fd: i32, data: &[u8]) -> ActorResult {
        self.got += data.len();
        self.chunks += 1;
        self.sum_out = data.iter().fold(self.sum_out, |s, b| s + u64::from(*b));
        // A slow reader.
        std::thread::sleep(Duration::from_micros(50));
        let _ = proc;
        Ok(())
    }
    fn ended(&mut self, _proc: &mut Proc<'_, '_, Self>, _status: ProcessStatus) {
        let _ = self
            .done
            .send((self.got, self.sum_in, self.sum_out, self.chunks));
    }
}

#[test]
fn a_hundred_mb_through_cat_read_slowly_arrive_intact() {
    const TOTAL: usize = 100 * 1024 * 1024;
    let rt = runtime(2);
    let (done, finished) = mpsc::channel();
    let flood = Flood {
        total: TOTAL,
        sent: 0,
        got: 0,
        sum_in: 0,
        sum_out: 0,
        chunks: 0,
        done,
    };
    spawn_process(rt.handle(), ProcessSpec::new("cat"), flood).expect("cat starts");
    let (got, sum_in, sum_out, chunks) = finished
        .recv_timeout(Duration::from_secs(120))
        .expect("cat ended");
    assert_eq!(got, TOTAL);
    assert_eq!(sum_in, sum_out);
    // Read from a pipe: never more than a read's worth at once.
    assert!(chunks >= TOTAL / (64 * 1024), "{chunks} chunks");
}

#[test]
fn hundreds_of_children_leave_no_zombie() {
    many_children_leave_no_zombie(false);
}

#[test]
fn hundreds_of_children_leave_no_zombie_with_the_sigchld_fallback() {
    many_children_leave_no_zombie(true);
}

fn many_children_leave_no_zombie(use_sigchld: bool) {
    let rt = runtime(2);
    let (tx, rx) = mpsc::channel();
    // 500 in all, at most 100 at once (four descriptors each: a
    // 1024-descriptor limit must do).
    let spawn = || {
        let spec = ProcessSpec::new("true").use_sigchld(use_sigchld);
        spawn_process(rt.handle(), spec, Record::new(tx.clone())).expect("true starts");
    };
    let mut spawned = 0;
    while spawned < 100 {
        spawn();
        spawned += 1;
    }
    let mut ended = 0;
    let mut pids = Vec::new();
    while ended < 500 {
        match recv(&rx) {
            Ev::Started(pid) => pids.push(pid),
            Ev::Ended(status) => {
                assert!(status.success());
                ended += 1;
                if spawned < 500 {
                    spawn();
                    spawned += 1;
                }
            }
            _ => {}
        }
    }
    // Ended comes after the reaping: none of them is left as a zombie.
    for pid in pids {
        assert!(!is_our_zombie(&pid.to_string()), "{pid} is a zombie");
    }
}

#[test]
fn a_child_of_std_process_command_is_not_reaped_by_weft() {
    let rt = runtime(2);
    let mut other = std::process::Command::new("sh")
        .args(["-c", "exit 7"])
        .spawn()
        .unwrap();
    // weft reaps its own children meanwhile, with a pidfd and with
    // SIGCHLD (which the other child's exit raises too).
    let (tx, rx) = mpsc::channel();
    for i in 0..20 {
        let spec = ProcessSpec::new("true").use_sigchld(i % 2 == 0);
        spawn_process(rt.handle(), spec, Record::new(tx.clone())).unwrap();
    }
    let mut ended = 0;
    while ended < 20 {
        if let Ev::Ended(_) = recv(&rx) {
            ended += 1;
        }
    }
    // The other child's status is still there for its owner.
    let status = other.wait().expect("its owner can wait for it");
    assert_eq!(status.code(), Some(7));
}

#[test]
fn a_failing_process_actor_is_restarted_by_its_supervisor() {
    use weft::supervisor::{ChildSpec, Intensity, Restart, Strategy, Supervisor, SupervisorSpec};
    let rt = runtime(2);
    let (tx, rx) = mpsc::channel();
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .intensity(Intensity {
            max_restarts: 10,
            within: Duration::from_secs(60),
        })
        .child(
            ChildSpec::worker("flaky", move || {
                ProcessActor::new(sh("echo run; exit 1"), Record::new(tx.clone()))
            })
            .restart(Restart::Permanent),
        );
    let _sup = rt.handle().spawn(Supervisor::new(spec));
    // Each run ends (the actor stops normally) and is started again.
    let mut runs = 0;
    while runs < 3 {
        if let Ev::Ended(status) = recv(&rx) {
            assert_eq!(status, ProcessStatus::Exited(1));
            runs += 1;
        }
    }
}

/// The fields of `/proc/PID/stat` after the command name (state, parent,
/// process group, session...); None once the process is gone.
fn stat_fields(pid: &str) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(String::from).collect())
}

/// `pid` is a zombie child of this test process.
fn is_our_zombie(pid: &str) -> bool {
    let me = std::process::id().to_string();
    stat_fields(pid).is_some_and(|f| f.len() > 1 && f[0] == "Z" && f[1] == me)
}

/// No child of this test process is a zombie.
fn no_zombies() -> bool {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .all(|entry| !is_our_zombie(&entry.file_name().to_string_lossy()))
}

/// Waits for output on descriptor 1 containing `want`; returns it all.
fn output_until(rx: &mpsc::Receiver<Ev>, want: &str) -> String {
    let mut seen = String::new();
    while !seen.contains(want) {
        match recv(rx) {
            Ev::Data(1, data) => seen.push_str(&String::from_utf8_lossy(&data)),
            Ev::Ended(status) => panic!("ended ({status}) before {want:?}: {seen:?}"),
            _ => {}
        }
    }
    seen
}

#[test]
fn under_a_pty_the_child_has_a_terminal_of_the_given_size() {
    let rt = runtime(2);
    let (tx, rx) = mpsc::channel();
    spawn_process(
        rt.handle(),
        ProcessSpec::new("tty").pty(24, 80),
        Record::new(tx),
    )
    .expect("tty starts");
    let run = until_ended(&rx);
    // The end of a PTY (EIO) is a clean end.
    assert_eq!(run.status, ProcessStatus::Exited(0), "{}", text(&run, 1));
    assert!(text(&run, 1).starts_with("/dev/pts/"), "{}", text(&run, 1));
    assert!(run.events.contains(&Ev::Closed(1)));

    // The size, and a resize the child sees.
    struct Sizes {
        tx: Sender<Ev>,
    }
    enum Do {
        Resize,
        Line,
    }
    impl ProcessProtocol for Sizes {
        type Msg = Do;
        fn data(&mut self, _p: &mut Proc<'_, '_, Self>, fd: i32, data: &[u8]) -> ActorResult {
            let _ = self.tx.send(Ev::Data(fd, data.to_vec()));
            Ok(())
        }
        fn message(&mut self, p: &mut Proc<'_, '_, Self>, msg: Do) -> ActorResult {
            match msg {
                Do::Resize => p.resize(30, 100)?,
                Do::Line => p.write(0, b"go\n")?,
            }
            Ok(())
        }
        fn ended(&mut self, _p: &mut Proc<'_, '_, Self>, status: ProcessStatus) {
            let _ = self.tx.send(Ev::Ended(status));
        }
    }
    let (tx, rx) = mpsc::channel();
    let child = spawn_process(
        rt.handle(),
        sh("stty size; read x; stty size").pty(24, 80),
        Sizes { tx },
    )
    .expect("sh starts");
    output_until(&rx, "24 80");
    child.send(Do::Resize).unwrap();
    child.send(Do::Line).unwrap();
    output_until(&rx, "30 100");
    let run = until_ended(&rx);
    assert!(run.status.success(), "{}", run.status);
}

#[test]
fn ctrl_c_typed_into_the_pty_interrupts_the_child() {
    let rt = runtime(2);
    let (tx, rx) = mpsc::channel();
    struct Interrupt {
        tx: Sender<Ev>,
    }
    impl ProcessProtocol for Interrupt {
        type Msg = ();
        fn started(&mut self, p: &mut Proc<'_, '_, Self>) -> ActorResult {
            let _ = self.tx.send(Ev::Started(p.pid()));
            Ok(())
        }
        fn data(&mut self, _p: &mut Proc<'_, '_, Self>, fd: i32, data: &[u8]) -> ActorResult {
            let _ = self.tx.send(Ev::Data(fd, data.to_vec()));
            Ok(())
        }
        fn message(&mut self, p: &mut Proc<'_, '_, Self>, _msg: ()) -> ActorResult {
            p.write(0, b"\x03")?;
            Ok(())
        }
        fn ended(&mut self, _p: &mut Proc<'_, '_, Self>, status: ProcessStatus) {
            let _ = self.tx.send(Ev::Ended(status));
        }
    }
    // The shell says when it is about to become `sleep`.
    let child = spawn_process(
        rt.handle(),
        sh("echo ready; exec sleep 100").pty(24, 80),
        Interrupt { tx },
    )
    .expect("sh starts");
    output_until(&rx, "ready");
    // `exec` replaces the shell with sleep in the same process (were the
    // Ctrl-C to come before, it would end the shell with SIGINT too).
    child.send(()).unwrap();
    let run = until_ended(&rx);
    assert_eq!(
        run.status,
        ProcessStatus::Signaled {
            signal: nix::libc::SIGINT,
            core_dumped: false
        }
    );
}

/// The state letter of `pid` in /proc (None once it is gone).
fn proc_state(pid: i32) -> Option<String> {
    stat_fields(&pid.to_string())?.into_iter().next()
}

fn started_pid(rx: &mpsc::Receiver<Ev>) -> i32 {
    loop {
        if let Ev::Started(pid) = recv(rx) {
            return pid;
        }
    }
}

#[test]
fn a_stopped_actor_kills_its_child_by_default_and_can_terminate_or_leave_it() {
    use weft::io::process::OnStop;
    let rt = runtime(2);
    // Kill (the default): gone with its actor, reaped.
    let (tx, rx) = mpsc::channel();
    let child = spawn_process(
        rt.handle(),
        ProcessSpec::new("sleep").arg("100"),
        Record::new(tx),
    )
    .unwrap();
    let pid = started_pid(&rx);
    child.addr().stop();
    eventually("the killed child is reaped", || proc_state(pid).is_none());

    // Terminate: SIGTERM, reaped by the blocking pool.
    let (tx, rx) = mpsc::channel();
    let spec = ProcessSpec::new("sleep")
        .arg("100")
        .on_stop(OnStop::Terminate(Duration::from_secs(5)));
    let child = spawn_process(rt.handle(), spec, Record::new(tx)).unwrap();
    let pid = started_pid(&rx);
    child.addr().stop();
    eventually("the terminated child is reaped", || {
        proc_state(pid).is_none()
    });

    // Leave: it outlives its actor, and is reaped when it ends.
    let (tx, rx) = mpsc::channel();
    let spec = ProcessSpec::new("sleep").arg("100").on_stop(OnStop::Leave);
    let child = spawn_process(rt.handle(), spec, Record::new(tx)).unwrap();
    let pid = started_pid(&rx);
    let addr = child.addr().clone();
    addr.stop();
    eventually("the actor stopped", || addr.is_stopped());
    let state = proc_state(pid);
    assert!(
        state.as_deref().is_some_and(|s| s != "Z"),
        "the left child is {state:?}"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    eventually("the left child is reaped when it ends", || {
        proc_state(pid).is_none()
    });
}

#[test]
fn a_protocol_that_pauses_reading_leaves_a_fast_child_blocked_on_its_pipe() {
    struct Paused {
        tx: Sender<Ev>,
        got: usize,
    }
    impl ProcessProtocol for Paused {
        type Msg = bool;
        fn started(&mut self, p: &mut Proc<'_, '_, Self>) -> ActorResult {
            p.pause_reading();
            let _ = self.tx.send(Ev::Started(p.pid()));
            Ok(())
        }
        fn data(&mut self, p: &mut Proc<'_, '_, Self>, _fd: i32, data: &[u8]) -> ActorResult {
            self.got += data.len();
            if self.got > 1 << 20 {
                // Enough: it flowed once resumed.
                let _ = self.tx.send(Ev::Data(1, b"flowing".to_vec()));
                p.kill()?;
                self.got = 0;
            }
            Ok(())
        }
        fn message(&mut self, p: &mut Proc<'_, '_, Self>, resume: bool) -> ActorResult {
            let _ = self.tx.send(Ev::Data(0, self.got.to_string().into_bytes()));
            if resume {
                p.resume_reading();
            }
            Ok(())
        }
        fn ended(&mut self, _p: &mut Proc<'_, '_, Self>, status: ProcessStatus) {
            let _ = self.tx.send(Ev::Ended(status));
        }
    }
    let rt = runtime(2);
    let (tx, rx) = mpsc::channel();
    let child = spawn_process(rt.handle(), ProcessSpec::new("yes"), Paused { tx, got: 0 })
        .expect("yes starts");
    let pid = started_pid(&rx);
    // `yes` fills the pipe and blocks in the kernel: nothing was read.
    eventually("yes is blocked writing", || {
        std::fs::read_to_string(format!("/proc/{pid}/wchan"))
            .is_ok_and(|w| w.contains("pipe_write"))
    });
    child.send(false).unwrap();
    assert_eq!(recv(&rx), Ev::Data(0, b"0".to_vec()));
    // Resumed, it flows.
    child.send(true).unwrap();
    assert_eq!(recv(&rx), Ev::Data(0, b"0".to_vec()));
    assert_eq!(recv(&rx), Ev::Data(1, b"flowing".to_vec()));
    let run = until_ended(&rx);
    assert_eq!(run.status.signal(), Some(nix::libc::SIGKILL));
}

#[test]
fn a_user_and_group_are_switched_or_refused_with_the_os_error() {
    let rt = runtime(2);
    let (tx, rx) = mpsc::channel();
    let spec = sh("id -u; id -g; id -G")
        .uid(65534)
        .gid(65534)
        .groups(vec![65534]);
    let result = spawn_process(rt.handle(), spec, Record::new(tx));
    // SAFETY: geteuid has no preconditions.
    if unsafe { nix::libc::geteuid() } == 0 {
        result.expect("root may switch");
        let run = until_ended(&rx);
        assert_eq!(text(&run, 1), "65534\n65534\n65534\n");
    } else {
        match result {
            Err(SpawnError::Os { step, source, .. }) => {
                assert_eq!(step, SpawnStep::Groups);
                assert_eq!(source.raw_os_error(), Some(nix::libc::EPERM));
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn a_new_session_or_process_group_is_the_childs_own() {
    let rt = runtime(2);
    // The shell reads its own pid, process group and session.
    let ids = |session: weft::io::process::Session| {
        let (tx, rx) = mpsc::channel();
        let spec = sh("read -r line < /proc/$$/stat; echo \"$line\"").session(session);
        let child = spawn_process(rt.handle(), spec, Record::new(tx)).unwrap();
        let run = until_ended(&rx);
        let line = text(&run, 1);
        let (_, rest) = line.rsplit_once(')').expect("a stat line");
        let f: Vec<i32> = rest
            .split_whitespace()
            .skip(2)
            .take(2)
            .map(|v| v.parse().unwrap())
            .collect();
        (child.pid(), f[0], f[1])
    };
    let my_session = nix::unistd::getsid(None).unwrap().as_raw();
    let (pid, pgrp, sid) = ids(weft::io::process::Session::NewSession);
    assert_eq!((pgrp, sid), (pid, pid));
    let (pid, pgrp, sid) = ids(weft::io::process::Session::NewGroup);
    assert_eq!((pgrp, sid), (pid, my_session));
    let (pid, pgrp, sid) = ids(weft::io::process::Session::Inherit);
    assert_ne!(pgrp, pid);
    assert_eq!(sid, my_session);
}

#[test]
fn a_protocol_muted_by_a_full_mailbox_stops_reading_and_loses_nothing() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    const TOTAL: usize = 10_000_000;
    struct ToSlow {
        to: Addr<Slow>,
        in_flight: Arc<AtomicUsize>,
        done: Sender<ProcessStatus>,
    }
    impl ProcessProtocol for ToSlow {
        type Msg = ();
        fn data(&mut self, p: &mut Proc<'_, '_, Self>, _fd: i32, data: &[u8]) -> ActorResult {
            self.in_flight.fetch_add(data.len(), Ordering::SeqCst);
            // A full mailbox mutes this actor: it reads no more meanwhile.
            let _ = p.ctx().send(&self.to, data.to_vec());
            Ok(())
        }
        fn ended(&mut self, _p: &mut Proc<'_, '_, Self>, status: ProcessStatus) {
            let _ = self.done.send(status);
        }
    }
    let rt = runtime(2);
    let sink = SlowSink::start(&rt);
    let (to, in_flight) = sink.target();
    let (done, ended) = mpsc::channel();
    let spec = sh(&format!("head -c {TOTAL} /dev/zero"));
    spawn_process(
        rt.handle(),
        spec,
        ToSlow {
            to,
            in_flight,
            done,
        },
    )
    .unwrap();
    assert!(recv(&ended).success());
    eventually("the consumer has every byte", || {
        sink.total.load(Ordering::SeqCst) as usize == TOTAL
    });
    // Bounded by the consumer's mailbox (8 behind the one it works on,
    // and the send held while muted), each at most one read (64 KiB).
    let peak = sink.peak.load(Ordering::SeqCst);
    assert!(peak <= (2 * 8 + 1) * 64 * 1024, "{peak} bytes in flight");
}
