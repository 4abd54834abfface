//! A supervision tree keeping a flaky external command alive: the command
//! runs under a `ProcessActor`; when it exits with a failure the actor
//! fails, and the supervisor starts it again after a growing back-off,
//! until the restart intensity (4 restarts within 30 s) is exceeded and
//! the tree gives up. Each start and each exit is printed.
//!
//! Run:   cargo run --release --example proc_supervisor
//!        (default command: sh -c 'echo working; sleep 0.5; exit 1')
//!        cargo run --release --example proc_supervisor -- sh -c 'echo up; sleep 3; exit 2'
//! Shows: proc_supervisor: start 1: pid 4242
//!        [4242] working
//!        proc_supervisor: pid 4242 exited with code 1
//!        proc_supervisor: start 2: pid 4250   (after 100 ms, then 200, 400...)
//!        ...
//!        proc_supervisor: gave up: ...
//! Stop:  Ctrl-C stops the tree (the running command is killed).
//!
//! A command that exits with code 0 is done: the child is `Transient`, so
//! a clean exit is not restarted, and the program ends.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use weft::io::process::{Proc, ProcessActor, ProcessProtocol, ProcessSpec, ProcessStatus};
use weft::prelude::*;
use weft::supervisor::{
    run_application, Backoff, ChildSpec, Intensity, Restart, Strategy, SupervisorSpec,
};

#[path = "shared/cli.rs"]
mod cli;

/// Prints the command's output; fails the actor when the command fails.
struct Watch {
    starts: Arc<AtomicU32>,
}

impl ProcessProtocol for Watch {
    type Msg = ();

    fn started(&mut self, proc: &mut Proc<'_, '_, Self>) -> ActorResult {
        let n = self.starts.fetch_add(1, Ordering::SeqCst) + 1;
        println!("proc_supervisor: start {n}: pid {}", proc.pid());
        Ok(())
    }

    fn data(&mut self, proc: &mut Proc<'_, '_, Self>, _fd: i32, data: &[u8]) -> ActorResult {
        for line in String::from_utf8_lossy(data).lines() {
            println!("[{}] {line}", proc.pid());
        }
        Ok(())
    }

    fn exited(&mut self, proc: &mut Proc<'_, '_, Self>, status: ProcessStatus) -> ActorResult {
        println!("proc_supervisor: pid {} {status}", proc.pid());
        if status.success() {
            Ok(())
        } else {
            // A failure: the supervisor restarts it (after the back-off).
            Err(format!("the command {status}").into())
        }
    }

    fn ended(&mut self, proc: &mut Proc<'_, '_, Self>, _status: ProcessStatus) {
        // Done for good: end the program.
        proc.ctx().runtime().shutdown();
    }
}

fn main() -> ExitCode {
    let cli = cli::Cli::new(
        "proc_supervisor",
        "[PROGRAM [ARGS...]]",
        "A supervision tree keeping a flaky external command alive: the command runs under a `ProcessActor`; when it exits with a failure the actor fails, and the supervisor starts it again after a growing back-off, until the restart intensity (4 restarts within 30 s) is exceeded and the tree gives up. Each start and each exit is printed.",
    );
    let mut args: Vec<String> = cli.args().to_vec();
    if args.is_empty() {
        args = ["sh", "-c", "echo working; sleep 0.5; exit 1"]
            .map(String::from)
            .to_vec();
    }
    let rt = match Runtime::builder().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!(
                "proc_supervisor: cannot start the runtime: {}",
                cli::chain(&e)
            );
            return ExitCode::FAILURE;
        }
    };
    let starts = Arc::new(AtomicU32::new(0));
    let command = args.clone();
    let counter = starts.clone();
    let child = ChildSpec::worker("command", move || {
        let spec = ProcessSpec::new(&command[0]).args(&command[1..]);
        ProcessActor::new(
            spec,
            Watch {
                starts: counter.clone(),
            },
        )
    })
    .restart(Restart::Transient)
    .backoff(Backoff {
        initial: Duration::from_millis(100),
        max: Duration::from_secs(2),
        factor: 2.0,
        reset_after: Duration::from_secs(10),
    });
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .intensity(Intensity {
            max_restarts: 4,
            within: Duration::from_secs(30),
        })
        .child(child);
    match run_application(&rt, spec) {
        Ok(ExitReason::Shutdown) | Ok(ExitReason::Normal) => ExitCode::SUCCESS,
        Ok(reason) => {
            println!(
                "proc_supervisor: gave up after {} starts: {reason}",
                starts.load(Ordering::SeqCst)
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("proc_supervisor: {}", cli::chain(&e));
            ExitCode::FAILURE
        }
    }
}
