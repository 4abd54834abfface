//! What every example does with its command line and its logs: `--help`
//! (or `-h`) prints the usage and what the example shows; a bad argument
//! prints one line saying what is wrong and the usage, and exits with 2;
//! weft's logs (slow handlers, restarts, refused accepts) go to stderr
//! through `tracing-subscriber`, at `warn` unless `RUST_LOG` says
//! otherwise (`RUST_LOG=weft=debug`, `RUST_LOG=info`).

// Each example uses the part it needs.
#![allow(dead_code)]

use std::process::ExitCode;

/// One example's command line.
pub struct Cli {
    name: &'static str,
    usage: &'static str,
    args: Vec<String>,
}

impl Cli {
    /// Reads the arguments; answers `--help` (and exits) and installs
    /// the log subscriber. `usage` is what follows
    /// `cargo run --release --example NAME --`; `about` is one paragraph.
    pub fn new(name: &'static str, usage: &'static str, about: &str) -> Cli {
        let args: Vec<String> = std::env::args().skip(1).collect();
        if args.iter().any(|a| a == "--help" || a == "-h") {
            println!("usage: cargo run --release --example {name} -- {usage}\n\n{about}");
            std::process::exit(0);
        }
        init_logs();
        Cli { name, usage, args }
    }

    /// The arguments after the program's name; more than `most` is a
    /// usage error.
    pub fn args_at_most(&self, most: usize) -> &[String] {
        if let Some(extra) = self.args.get(most) {
            self.fail(format!("unexpected argument {extra:?}"));
        }
        &self.args
    }

    /// The arguments after the program's name.
    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// Says what is wrong and how to call the example, and exits with
    /// status 2.
    pub fn fail(&self, problem: impl std::fmt::Display) -> ! {
        eprintln!(
            "{}: {problem}\nusage: cargo run --release --example {} -- {}",
            self.name, self.name, self.usage
        );
        std::process::exit(2)
    }

    /// Reports an error of the running example (not of its arguments)
    /// with its chain of causes (`cannot listen on 127.0.0.1:7000: Address
    /// already in use`); exit status 1.
    pub fn error(&self, error: impl std::error::Error) -> ExitCode {
        eprintln!("{}: {}", self.name, chain(&error));
        ExitCode::FAILURE
    }
}

/// An error and its causes, joined by ": ". weft's errors keep the OS
/// error (or rustls', or a child's) as their `source`, not in their own
/// message, so that a printed chain says each once.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        next = cause.source();
    }
    text
}

/// Sends `tracing` events to stderr, filtered by `RUST_LOG` (default
/// `warn`). Called once, by `Cli::new`.
fn init_logs() {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
