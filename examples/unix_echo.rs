//! An echo server on a UNIX socket, greeting each client with what the
//! kernel says about it (its pid, uid and gid: `SO_PEERCRED`).
//!
//! Run:   cargo run --release --example unix_echo -- [--quiet] [PATH | @NAME] [MODE]
//!        (default /tmp/weft-echo.sock; `@name` is a Linux abstract
//!        name; MODE is the socket file's octal mode, default 600;
//!        `--quiet` leaves out the greeting, for the benchmark)
//! Talk:  cargo run --release --example client -- --unix /tmp/weft-echo.sock
//!        (or `nc -U /tmp/weft-echo.sock`; a greeting, then every line
//!        you type comes back)
//! Stop:  Ctrl-C (or SIGTERM): the listener closes and removes the
//!        socket file, the connections flush and close.
//!
//! A stale socket file left by a crashed run is replaced; if another
//! process is listening on the path, the server says so and exits.

use std::process::ExitCode;

use weft::prelude::*;

#[path = "shared/cli.rs"]
mod cli;

/// Greets with the peer's credentials (unless quiet), then writes back
/// what it reads.
struct Echo {
    quiet: bool,
}

impl Protocol for Echo {
    type Msg = ();

    fn connected(&mut self, conn: &mut Conn<'_, '_, Self>) -> ActorResult {
        if self.quiet {
            return Ok(());
        }
        let cred = conn.peer_cred()?;
        let hello = format!(
            "hello pid {} (uid {}, gid {}); I echo\n",
            cred.pid, cred.uid, cred.gid
        );
        conn.write(hello.as_bytes())?;
        Ok(())
    }

    fn data(&mut self, conn: &mut Conn<'_, '_, Self>, data: &[u8]) -> ActorResult {
        conn.write(data)?;
        Ok(())
    }
}

fn main() -> ExitCode {
    let cli = cli::Cli::new(
        "unix_echo",
        "[--quiet] [PATH | @NAME] [MODE]",
        "An echo server on a UNIX socket, greeting each client with what the kernel says about it (its pid, uid and gid: `SO_PEERCRED`).",
    );
    let mut args = cli.args_at_most(3).iter().cloned().peekable();
    let quiet = args.next_if(|a| a == "--quiet").is_some();
    let addr = UnixAddr::from(
        args.next()
            .unwrap_or_else(|| "/tmp/weft-echo.sock".into())
            .as_str(),
    );
    let mode = match args.next().map(|m| u32::from_str_radix(&m, 8)) {
        None => 0o600,
        Some(Ok(mode)) if mode <= 0o7777 => mode,
        Some(_) => {
            cli.fail("MODE is an octal file mode, e.g. 660");
        }
    };
    let rt = match Runtime::builder().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("unix_echo: cannot start the runtime: {}", cli::chain(&e));
            return ExitCode::FAILURE;
        }
    };
    let options = ListenOptions::new().unix_mode(mode);
    let listening = match listen_unix(rt.handle(), addr, options, move || Echo { quiet }) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("unix_echo: {}", cli::chain(&e));
            return ExitCode::FAILURE;
        }
    };
    let local = listening.local_addr();
    rt.handle()
        .on_startup(move || println!("unix_echo: listening on {local}"));
    let info = listening.info();
    if let Err(e) = rt.run() {
        eprintln!("unix_echo: {}", cli::chain(&e));
        return ExitCode::FAILURE;
    }
    println!(
        "unix_echo: stopped; {} connections served",
        info.stats().accepted
    );
    ExitCode::SUCCESS
}
