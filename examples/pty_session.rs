//! Runs a program on a pseudo-terminal, as a terminal emulator or an
//! `expect` script would: what it writes is shown as it comes, each line
//! typed here is forwarded to it, and Ctrl-C reaches it through the PTY
//! (typed as `^C`, so the terminal's line discipline sends SIGINT to its
//! foreground process group), not as a signal to this program.
//!
//! Run:   cargo run --release --example pty_session                 (an interactive `sh`)
//!        cargo run --release --example pty_session -- python3 -i
//! Talk:  type `tty` (a /dev/pts name: the child has a terminal),
//!        `stty size` (24 80), `sleep 100` then Ctrl-C (the sleep is
//!        interrupted, the shell lives on), `exit` to end.
//! Shows: the child's output (with the terminal's echo of what you typed),
//!        then `pty_session: sh exited with code 0`.
//!
//! End of input here (Ctrl-D on an empty line, or a closed pipe) is typed
//! into the PTY as `^D`; SIGTERM kills the child and ends the program.

use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use weft::io::process::{
    spawn_process, Proc, ProcMsg, ProcessProtocol, ProcessSpec, ProcessStatus,
};
use weft::prelude::*;
use weft::runtime::{Signal, SignalSubscription};

#[path = "shared/cli.rs"]
mod cli;

/// What the session is told from outside.
enum Input {
    Line(String),
    Eof,
    Interrupt,
    Terminate,
}

struct Session {
    program: String,
    signals: Vec<SignalSubscription>,
    exit_code: Arc<AtomicI32>,
}

impl ProcessProtocol for Session {
    type Msg = Input;

    fn started(&mut self, proc: &mut Proc<'_, '_, Self>) -> ActorResult {
        // Ctrl-C here becomes ^C there; SIGTERM ends the session.
        let ctx = proc.ctx();
        self.signals
            .push(ctx.on_signal(Signal::SIGINT, || ProcMsg::User(Input::Interrupt))?);
        self.signals
            .push(ctx.on_signal(Signal::SIGTERM, || ProcMsg::User(Input::Terminate))?);
        Ok(())
    }

    fn data(&mut self, _proc: &mut Proc<'_, '_, Self>, _fd: i32, data: &[u8]) -> ActorResult {
        let mut out = std::io::stdout().lock();
        out.write_all(data)?;
        out.flush()?;
        Ok(())
    }

    fn message(&mut self, proc: &mut Proc<'_, '_, Self>, input: Input) -> ActorResult {
        match input {
            Input::Line(line) => proc.write(0, line.as_bytes())?,
            Input::Eof => proc.write(0, b"\x04")?,
            Input::Interrupt => proc.write(0, b"\x03")?,
            Input::Terminate => {
                let _ = proc.kill();
            }
        }
        Ok(())
    }

    fn ended(&mut self, proc: &mut Proc<'_, '_, Self>, status: ProcessStatus) {
        println!("\npty_session: {} {status}", self.program);
        self.exit_code.store(status.shell_code(), Ordering::SeqCst);
        proc.ctx().runtime().shutdown();
    }
}

fn main() -> ExitCode {
    let cli = cli::Cli::new(
        "pty_session",
        "[PROGRAM [ARGS...]]",
        "Runs a program on a pseudo-terminal, as a terminal emulator or an `expect` script would: what it writes is shown as it comes, each line typed here is forwarded to it, and Ctrl-C reaches it through the PTY (typed as `^C`, so the terminal's line discipline sends SIGINT to its foreground process group), not as a signal to this program.",
    );
    let mut args: Vec<String> = cli.args().to_vec();
    if args.is_empty() {
        args = vec!["sh".into()];
    }
    // The session handles SIGINT and SIGTERM itself (see `started`).
    let rt = match Runtime::builder()
        .signals(weft::runtime::Signals::Ignore)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pty_session: cannot start the runtime: {}", cli::chain(&e));
            return ExitCode::FAILURE;
        }
    };
    let exit_code = Arc::new(AtomicI32::new(0));
    let session = Session {
        program: args[0].clone(),
        signals: Vec::new(),
        exit_code: exit_code.clone(),
    };
    let spec = ProcessSpec::new(&args[0]).args(&args[1..]).pty(24, 80);
    let child = match spawn_process(rt.handle(), spec, session) {
        Ok(child) => child,
        Err(e) => {
            eprintln!("pty_session: {}", cli::chain(&e));
            return ExitCode::from(127);
        }
    };
    // Lines typed here go to the child (a plain thread: reading stdin
    // blocks).
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(mut line) = line else { break };
            line.push('\n');
            if child.send(Input::Line(line)).is_err() {
                return;
            }
        }
        let _ = child.send(Input::Eof);
    });
    if let Err(e) = rt.run() {
        eprintln!("pty_session: {}", cli::chain(&e));
        return ExitCode::FAILURE;
    }
    ExitCode::from(exit_code.load(Ordering::SeqCst).clamp(0, 255) as u8)
}
