//! An echo server over TLS: every byte a client sends comes back,
//! encrypted. Without a certificate it makes a self-signed one for
//! `localhost` and 127.0.0.1 at start and writes it to a temporary file,
//! then prints the exact `openssl s_client` command that talks to it.
//!
//! Run:   cargo run --release --example tls_echo -- [--quiet] [ADDR [CERT.pem KEY.pem]]
//!        (default address 127.0.0.1:7443; `--quiet` does not print a line
//!        per handshake)
//! Talk:  the command it prints, e.g.
//!        openssl s_client -connect 127.0.0.1:7443 -CAfile /tmp/weft-tls-echo-1234.pem -quiet
//!        (type a line; it comes back)
//! Stop:  Ctrl-C (or SIGTERM): connections send close_notify and close,
//!        then the program prints its counters and exits.
//!
//! The connection actors are the TCP ones: a TLS connection runs the same
//! `Protocol`, with rustls between the socket and the write buffer; the
//! protocol runs once the handshake completed (`tls_ready` says what was
//! negotiated).

use std::net::SocketAddr;
use std::process::ExitCode;

use weft::io::tls::{self, TlsInfo};
use weft::prelude::*;

#[path = "shared/cert.rs"]
mod cert;
use cert::ServerCert;

#[path = "shared/cli.rs"]
mod cli;

/// Writes back what it reads; logs each handshake unless quiet.
struct Echo {
    quiet: bool,
}

impl Protocol for Echo {
    type Msg = ();

    fn tls_ready(&mut self, conn: &mut Conn<'_, '_, Self>, info: &TlsInfo) -> ActorResult {
        if self.quiet {
            return Ok(());
        }
        let peer = conn.peer_addr()?;
        println!(
            "tls_echo: {peer}: {:?} {:?}{}",
            info.version
                .unwrap_or(tls::rustls::ProtocolVersion::Unknown(0)),
            info.cipher_suite
                .unwrap_or(tls::rustls::CipherSuite::Unknown(0)),
            if info.resumed { " (resumed)" } else { "" }
        );
        Ok(())
    }

    fn data(&mut self, conn: &mut Conn<'_, '_, Self>, data: &[u8]) -> ActorResult {
        conn.write(data)?;
        Ok(())
    }
}

fn main() -> ExitCode {
    let cli = cli::Cli::new(
        "tls_echo",
        "[--quiet] [ADDR [CERT.pem KEY.pem]]",
        "An echo server over TLS: every byte a client sends comes back, encrypted. Without a certificate it makes a self-signed one for `localhost` and 127.0.0.1 at start and writes it to a temporary file, then prints the exact `openssl s_client` command that talks to it.",
    );
    let mut args: Vec<String> = cli.args_at_most(4).to_vec();
    let quiet = args.first().is_some_and(|a| a == "--quiet");
    if quiet {
        args.remove(0);
    }
    let arg = args
        .first()
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:7443".into());
    let addr: SocketAddr = match arg.parse() {
        Ok(addr) => addr,
        Err(e) => {
            cli.fail(format!(
                "bad address {arg:?} ({e}); expected IP:PORT, e.g. 127.0.0.1:7443"
            ));
        }
    };
    let cert = match ServerCert::load_or_make("tls-echo", args.get(1), args.get(2)) {
        Ok(cert) => cert,
        Err((e, code)) => {
            eprintln!("tls_echo: {e}");
            return ExitCode::from(code);
        }
    };
    let config = match cert.builder().build() {
        Ok(config) => config,
        Err(e) => {
            cli.fail(format!("{e}"));
        }
    };
    let rt = match Runtime::builder().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tls_echo: cannot start the runtime: {}", cli::chain(&e));
            return ExitCode::FAILURE;
        }
    };
    let listening = match listen_tls(rt.handle(), addr, ListenOptions::new(), config, move || {
        Echo { quiet }
    }) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("tls_echo: {}", cli::chain(&e));
            return ExitCode::FAILURE;
        }
    };
    let local = listening.local_addr();
    let ca_file = cert.ca_file.clone();
    rt.handle().on_startup(move || {
        println!("tls_echo: listening on {local}");
        println!(
            "tls_echo: talk to it with: openssl s_client -connect {local} -CAfile {ca_file} -quiet"
        );
    });
    let info = listening.info();
    if let Err(e) = rt.run() {
        eprintln!("tls_echo: {}", cli::chain(&e));
        return ExitCode::FAILURE;
    }
    drop(cert);
    let stats = info.stats();
    println!(
        "tls_echo: stopped; {} connections served, {} failed",
        stats.accepted, stats.failed
    );
    ExitCode::SUCCESS
}
