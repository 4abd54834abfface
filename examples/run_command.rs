//! Runs the command given on the command line as a child process actor,
//! streams its standard output and standard error as they come (each line
//! labelled with where it came from), and prints how it exited; the
//! program's own exit code is the child's.
//!
//! Run:   cargo run --release --example run_command -- sh -c 'echo out; echo err >&2; exit 3'
//! Shows: [stdout] out
//!        [stderr] err
//!        run_command: sh exited with code 3
//! Also:  cargo run --release --example run_command -- no-such-program
//!        (a spawn error, reported as a value: "program ... not found")
//!
//! The child's stdin is this program's stdin, handed over as descriptor
//! 0 (`FdSpec::From`), so `cargo run --release --example run_command -- cat` echoes
//! what you type until Ctrl-D.

use std::os::fd::AsFd;
use std::process::ExitCode;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use weft::io::process::{spawn_process, FdSpec, Proc, ProcessProtocol, ProcessSpec, ProcessStatus};
use weft::prelude::*;

#[path = "shared/cli.rs"]
mod cli;

/// Prints the child's output line by line with a label.
struct Show {
    program: String,
    /// A partial line per descriptor (1 and 2).
    partial: [Vec<u8>; 2],
    exit_code: Arc<AtomicI32>,
}

impl Show {
    fn label(fd: i32) -> &'static str {
        if fd == 1 {
            "stdout"
        } else {
            "stderr"
        }
    }

    fn flush_partial(&mut self, fd: i32) {
        let i = (fd - 1) as usize;
        if !self.partial[i].is_empty() {
            let line = std::mem::take(&mut self.partial[i]);
            println!("[{}] {}", Self::label(fd), String::from_utf8_lossy(&line));
        }
    }
}

impl ProcessProtocol for Show {
    type Msg = ();

    fn data(&mut self, _proc: &mut Proc<'_, '_, Self>, fd: i32, data: &[u8]) -> ActorResult {
        let i = (fd - 1) as usize;
        for &b in data {
            if b == b'\n' {
                let line = std::mem::take(&mut self.partial[i]);
                println!("[{}] {}", Self::label(fd), String::from_utf8_lossy(&line));
            } else {
                self.partial[i].push(b);
            }
        }
        Ok(())
    }

    fn fd_closed(&mut self, _proc: &mut Proc<'_, '_, Self>, fd: i32) -> ActorResult {
        // A last line without a newline.
        self.flush_partial(fd);
        Ok(())
    }

    fn ended(&mut self, proc: &mut Proc<'_, '_, Self>, status: ProcessStatus) {
        println!("run_command: {} {status}", self.program);
        self.exit_code.store(status.shell_code(), Ordering::SeqCst);
        proc.ctx().runtime().shutdown();
    }
}

fn main() -> ExitCode {
    let cli = cli::Cli::new(
        "run_command",
        "PROGRAM [ARGS...]",
        "Runs the command given on the command line as a child process actor, streams its standard output and standard error as they come (each line labelled with where it came from), and prints how it exited; the program's own exit code is the child's.",
    );
    let args: Vec<String> = cli.args().to_vec();
    let Some(program) = args.first().cloned() else {
        cli.fail("no PROGRAM given");
    };
    let rt = match Runtime::builder().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("run_command: cannot start the runtime: {}", cli::chain(&e));
            return ExitCode::FAILURE;
        }
    };
    let stdin = match std::io::stdin().as_fd().try_clone_to_owned() {
        Ok(fd) => FdSpec::From(fd),
        Err(_) => FdSpec::Closed,
    };
    let spec = ProcessSpec::new(&program).args(&args[1..]).fd(0, stdin);
    let exit_code = Arc::new(AtomicI32::new(0));
    let show = Show {
        program: program.clone(),
        partial: [Vec::new(), Vec::new()],
        exit_code: exit_code.clone(),
    };
    if let Err(e) = spawn_process(rt.handle(), spec, show) {
        eprintln!("run_command: {}", cli::chain(&e));
        return ExitCode::from(127);
    }
    if let Err(e) = rt.run() {
        eprintln!("run_command: {}", cli::chain(&e));
        return ExitCode::FAILURE;
    }
    ExitCode::from(exit_code.load(Ordering::SeqCst).clamp(0, 255) as u8)
}
