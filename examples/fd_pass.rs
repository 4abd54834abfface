//! A pre-fork server, Twisted's `sendFileDescriptor` demo: the parent
//! accepts TCP connections and hands each socket, round robin, to a
//! worker process over a UNIX socket; the worker adopts it and serves it
//! (a greeting naming the worker, then an echo). The parent never reads
//! a byte of those connections.
//!
//! Run:   cargo run --release --example fd_pass -- [ADDR] [WORKERS]
//!        (default 127.0.0.1:7003 and 2 workers)
//! Talk:  cargo run --release --example client -- 127.0.0.1:7003
//!        (or `nc 127.0.0.1 7003`; several times: "served by worker PID"
//!        alternates between the workers; lines come back)
//! Stop:  Ctrl-C (or SIGTERM): the parent stops, its workers are killed
//!        with it (they are its child process actors).
//!
//! Shows: raw readiness on a listening socket (`Ctx::register_io`), a
//! UNIX listener whose connections take messages (`ConnRef::send`),
//! `Conn::send_fds`, a protocol that receives descriptors
//! (`RECEIVES_FDS`), `adopt_stream`, and child processes.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::process::ExitCode;

use weft::io::process::{spawn_process, Proc, ProcessProtocol, ProcessSpec, ProcessStatus};
use weft::io::{adopt_stream, ConnOptions};
use weft::prelude::*;
use weft::runtime::mio::net::TcpListener;
use weft::runtime::mio::Interest;

#[path = "shared/cli.rs"]
mod cli;

// ---- the parent ----

/// The parent's end of one worker's UNIX connection: sends it the
/// sockets the acceptor hands over.
struct WorkerLink {
    acceptor: Addr<Acceptor>,
}

impl Protocol for WorkerLink {
    type Msg = OwnedFd;

    fn connected(&mut self, conn: &mut Conn<'_, '_, Self>) -> ActorResult {
        let _ = self.acceptor.send(AcceptorMsg::Worker(conn.address()));
        Ok(())
    }

    fn message(&mut self, conn: &mut Conn<'_, '_, Self>, socket: OwnedFd) -> ActorResult {
        // One byte carries the descriptor; ours closes when `socket` drops.
        conn.send_fds(b"s", &[socket])?;
        Ok(())
    }

    fn data(&mut self, _conn: &mut Conn<'_, '_, Self>, _data: &[u8]) -> ActorResult {
        Ok(())
    }
}

enum AcceptorMsg {
    Ready,
    Worker(ConnRef<WorkerLink>),
}

/// Accepts TCP connections itself (not through a weft listener: it wants
/// the raw sockets) and deals them out to the workers.
struct Acceptor {
    listener: TcpListener,
    workers: Vec<ConnRef<WorkerLink>>,
    next: usize,
}

impl Actor for Acceptor {
    type Msg = AcceptorMsg;

    fn started(&mut self, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        // Registered for the actor's life (the process's, here).
        ctx.register_io(&mut self.listener, Interest::READABLE, |_| {
            AcceptorMsg::Ready
        })?;
        Ok(())
    }

    fn handle(&mut self, msg: AcceptorMsg, _ctx: &mut Ctx<'_, Self>) -> ActorResult {
        match msg {
            AcceptorMsg::Worker(link) => self.workers.push(link),
            AcceptorMsg::Ready => self.accept_all(),
        }
        Ok(())
    }
}

impl Acceptor {
    fn accept_all(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, peer)) => {
                    let mut socket = Some(OwnedFd::from(stream));
                    // Round robin over the workers still there, each tried
                    // once; with none that takes it, the socket is closed
                    // (the client sees its end).
                    let mut tries = self.workers.len();
                    while let Some(fd) = socket.take() {
                        if self.workers.is_empty() || tries == 0 {
                            eprintln!("fd_pass: no worker for {peer}");
                            break;
                        }
                        tries -= 1;
                        let i = self.next % self.workers.len();
                        self.next = self.next.wrapping_add(1);
                        match self.workers[i].send(fd) {
                            Ok(()) => {}
                            Err(SendError::Full(fd)) => socket = Some(fd),
                            Err(SendError::Stopped(fd) | SendError::Timeout(fd)) => {
                                eprintln!("fd_pass: a worker is gone");
                                self.workers.remove(i);
                                socket = Some(fd);
                            }
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    eprintln!("fd_pass: accept: {e}");
                    return;
                }
            }
        }
    }
}

/// Passes a worker's output through to ours.
struct Output;

impl ProcessProtocol for Output {
    type Msg = ();

    fn data(&mut self, _p: &mut Proc<'_, '_, Self>, _fd: i32, data: &[u8]) -> ActorResult {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(data);
        let _ = out.flush();
        Ok(())
    }

    fn ended(&mut self, p: &mut Proc<'_, '_, Self>, status: ProcessStatus) {
        println!("fd_pass: worker {} ended ({status})", p.pid());
    }
}

fn parent(addr: SocketAddr, workers: usize) -> ExitCode {
    let rt = match Runtime::builder().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fd_pass: cannot start the runtime: {}", cli::chain(&e));
            return ExitCode::FAILURE;
        }
    };
    let listener = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("fd_pass: cannot listen on {addr}: {}", cli::chain(&e));
            return ExitCode::FAILURE;
        }
    };
    let local = listener
        .local_addr()
        .expect("a bound socket has an address");
    let acceptor = rt.handle().spawn(Acceptor {
        listener,
        workers: Vec::new(),
        next: 0,
    });
    // The workers' way in: an abstract name, so there is no file to
    // clean up.
    let link = UnixAddr::abstract_name(format!("weft-fd-pass-{}", std::process::id()));
    let for_links = acceptor.clone();
    if let Err(e) = listen_unix(rt.handle(), link.clone(), ListenOptions::new(), move || {
        WorkerLink {
            acceptor: for_links.clone(),
        }
    }) {
        eprintln!("fd_pass: {}", cli::chain(&e));
        return ExitCode::FAILURE;
    }
    let exe = std::env::current_exe().expect("this program's path");
    let handle = rt.handle().clone();
    // The workers start once the parent runs (and has said where it
    // listens), so their lines come after that one.
    rt.handle().on_startup(move || {
        println!("fd_pass: listening on {local}, {workers} workers");
        for _ in 0..workers {
            let spec = ProcessSpec::new(&exe).args(["--worker".to_string(), link.to_string()]);
            if let Err(e) = spawn_process(&handle, spec, Output) {
                eprintln!("fd_pass: cannot start a worker: {}", cli::chain(&e));
                handle.shutdown();
                return;
            }
        }
    });
    match rt.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fd_pass: {}", cli::chain(&e));
            ExitCode::FAILURE
        }
    }
}

// ---- a worker ----

/// A worker's link to the parent: every descriptor it receives is a
/// client's socket, adopted as a connection of its own.
struct Sockets;

impl Protocol for Sockets {
    type Msg = ();
    const RECEIVES_FDS: bool = true;

    fn fds_received(&mut self, conn: &mut Conn<'_, '_, Self>, fds: Vec<OwnedFd>) -> ActorResult {
        for fd in fds {
            adopt_stream(conn.ctx().runtime(), &fd, ConnOptions::new(), Greeter)?;
        }
        Ok(())
    }

    fn data(&mut self, _conn: &mut Conn<'_, '_, Self>, _data: &[u8]) -> ActorResult {
        Ok(())
    }

    fn closed(&mut self, conn: &mut Conn<'_, '_, Self>, _reason: &CloseReason) {
        // The parent is gone: so is this worker.
        conn.ctx().runtime().shutdown();
    }
}

/// Says which worker serves the client, then echoes.
struct Greeter;

impl Protocol for Greeter {
    type Msg = ();

    fn connected(&mut self, conn: &mut Conn<'_, '_, Self>) -> ActorResult {
        let hello = format!("served by worker {}\n", std::process::id());
        conn.write(hello.as_bytes())?;
        Ok(())
    }

    fn data(&mut self, conn: &mut Conn<'_, '_, Self>, data: &[u8]) -> ActorResult {
        conn.write(data)?;
        Ok(())
    }
}

fn worker(link: &str) -> ExitCode {
    let rt = Runtime::builder().build().expect("the worker's runtime");
    let connecting = connect_unix(
        rt.handle(),
        UnixAddr::from(link),
        ConnectOptions::new(),
        Sockets,
    );
    if let Err(e) = connecting.wait(std::time::Duration::from_secs(10)) {
        eprintln!("fd_pass worker: cannot reach the parent: {e}");
        return ExitCode::FAILURE;
    }
    println!("fd_pass: worker {} ready", std::process::id());
    match rt.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}

fn main() -> ExitCode {
    let cli = cli::Cli::new(
        "fd_pass",
        "[ADDR] [WORKERS]",
        "A pre-fork server, Twisted's `sendFileDescriptor` demo: the parent accepts TCP connections and hands each socket, round robin, to a worker process over a UNIX socket; the worker adopts it and serves it (a greeting naming the worker, then an echo). The parent never reads a byte of those connections.",
    );
    let args: Vec<String> = cli.args_at_most(2).to_vec();
    if let [flag, link] = args.as_slice() {
        if flag == "--worker" {
            return worker(link);
        }
    }
    let arg = args
        .first()
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:7003".into());
    let Ok(addr) = arg.parse::<SocketAddr>() else {
        cli.fail(format!(
            "bad address {arg:?}; expected IP:PORT, e.g. 127.0.0.1:7003"
        ));
    };
    let workers = match args.get(1).map(|w| w.parse::<usize>()) {
        None => 2,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            cli.fail("WORKERS is a count, at least 1");
        }
    };
    parent(addr, workers)
}
