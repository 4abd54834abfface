//! A small SMTP-like line protocol that upgrades to TLS on `STARTTLS`
//! (RFC 3207's shape, Twisted's `startTLS`): the connection starts in
//! plaintext, the client says `EHLO`, sees `STARTTLS` offered, says
//! `STARTTLS`, and the same connection actor, running the same protocol,
//! carries on encrypted. Without a certificate it makes a self-signed one
//! for `localhost` and 127.0.0.1 and prints the exact `openssl s_client`
//! command that talks to it.
//!
//! Run:   cargo run --release --example starttls -- [ADDR [CERT.pem KEY.pem]]
//!        (default address 127.0.0.1:2525)
//! Talk:  the command it prints, e.g.
//!        openssl s_client -starttls smtp -crlf -connect 127.0.0.1:2525 -CAfile /tmp/weft-starttls-1234.pem -quiet
//!        then type `ECHO hello` (answered `250 hello`) and `QUIT`.
//! Stop:  Ctrl-C (or SIGTERM).
//!
//! Commands (one per line, CRLF or LF, case-insensitive verbs):
//! `EHLO name` (lists `STARTTLS` until the connection is encrypted),
//! `HELO name`, `STARTTLS`, `NOOP`, `HELP`, `ECHO text` (only once
//! encrypted: before, `530 Must issue a STARTTLS command first`), `QUIT`.
//! Anything else is `500`; a line over 1000 bytes is `500` and closes.
//! Bytes the client sent after its `STARTTLS` line in the same packet are
//! handed to TLS (they are its first handshake bytes), not read as
//! commands.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use weft::io::tls::{self, TlsInfo, TlsRole};
use weft::prelude::*;

#[path = "shared/cert.rs"]
mod cert;
use cert::ServerCert;

#[path = "shared/cli.rs"]
mod cli;

/// The longest command line (SMTP's limit, CRLF included).
const MAX_LINE: usize = 1000;

/// One client's session.
struct Session {
    config: Arc<tls::rustls::ServerConfig>,
    line: Vec<u8>,
    /// `STARTTLS` accepted: the handshake is under way or done.
    upgraded: bool,
    /// The handshake completed.
    secure: bool,
}

/// What a command line asks of the connection.
enum Next {
    Continue,
    /// Upgrade; what followed the line goes to TLS.
    StartTls,
    Close,
}

impl Session {
    fn command(
        &mut self,
        conn: &mut Conn<'_, '_, Self>,
        line: &str,
    ) -> Result<Next, Box<dyn std::error::Error + Send + Sync>> {
        let (verb, arg) = line.split_once(' ').unwrap_or((line, ""));
        let reply = match verb.to_ascii_uppercase().as_str() {
            "EHLO" if self.secure => format!("250-weft greets {arg}\r\n250 HELP\r\n"),
            "EHLO" => format!("250-weft greets {arg}\r\n250-STARTTLS\r\n250 HELP\r\n"),
            "HELO" => format!("250 weft greets {arg}\r\n"),
            "NOOP" => "250 OK\r\n".into(),
            "HELP" => "214 EHLO HELO STARTTLS NOOP HELP ECHO QUIT\r\n".into(),
            "STARTTLS" if self.upgraded => "503 TLS already active\r\n".into(),
            "STARTTLS" => {
                conn.write(b"220 Ready to start TLS\r\n")?;
                return Ok(Next::StartTls);
            }
            "ECHO" if self.secure => format!("250 {arg}\r\n"),
            "ECHO" => "530 Must issue a STARTTLS command first\r\n".into(),
            "QUIT" => {
                conn.write(b"221 Bye\r\n")?;
                return Ok(Next::Close);
            }
            _ => "500 Command unrecognized\r\n".into(),
        };
        conn.write(reply.as_bytes())?;
        Ok(Next::Continue)
    }
}

impl Protocol for Session {
    type Msg = ();

    fn connected(&mut self, conn: &mut Conn<'_, '_, Self>) -> ActorResult {
        conn.write(b"220 weft starttls example ready\r\n")?;
        Ok(())
    }

    fn tls_ready(&mut self, conn: &mut Conn<'_, '_, Self>, info: &TlsInfo) -> ActorResult {
        self.secure = true;
        println!(
            "starttls: {}: upgraded to {:?}",
            conn.peer_addr()?,
            info.version
                .unwrap_or(tls::rustls::ProtocolVersion::Unknown(0))
        );
        Ok(())
    }

    fn data(&mut self, conn: &mut Conn<'_, '_, Self>, data: &[u8]) -> ActorResult {
        for (i, &b) in data.iter().enumerate() {
            if b != b'\n' {
                if self.line.len() == MAX_LINE {
                    conn.write(b"500 Line too long\r\n")?;
                    conn.close();
                    return Ok(());
                }
                self.line.push(b);
                continue;
            }
            let raw = std::mem::take(&mut self.line);
            let text = String::from_utf8_lossy(&raw);
            match self.command(conn, text.trim_end_matches('\r'))? {
                Next::Continue => {}
                Next::Close => {
                    conn.close();
                    return Ok(());
                }
                Next::StartTls => {
                    self.upgraded = true;
                    // The rest of this chunk is the client's first TLS
                    // bytes: TLS reads it before the socket.
                    conn.start_tls(TlsRole::Server(self.config.clone()), &data[i + 1..])?;
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

fn main() -> ExitCode {
    let cli = cli::Cli::new(
        "starttls",
        "[ADDR [CERT.pem KEY.pem]]",
        "A small SMTP-like line protocol that upgrades to TLS on `STARTTLS` (RFC 3207's shape, Twisted's `startTLS`): the connection starts in plaintext, the client says `EHLO`, sees `STARTTLS` offered, says `STARTTLS`, and the same connection actor, running the same protocol, carries on encrypted. Without a certificate it makes a self-signed one for `localhost` and 127.0.0.1 and prints the exact `openssl s_client` command that talks to it.",
    );
    let args: Vec<String> = cli.args_at_most(3).to_vec();
    let arg = args
        .first()
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:2525".into());
    let addr: SocketAddr = match arg.parse() {
        Ok(addr) => addr,
        Err(e) => {
            cli.fail(format!("bad address {arg:?} ({e}); expected IP:PORT"));
        }
    };
    let cert = match ServerCert::load_or_make("starttls", args.get(1), args.get(2)) {
        Ok(cert) => cert,
        Err((e, code)) => {
            eprintln!("starttls: {e}");
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
            eprintln!("starttls: cannot start the runtime: {}", cli::chain(&e));
            return ExitCode::FAILURE;
        }
    };
    let factory = move || Session {
        config: config.clone(),
        line: Vec::new(),
        upgraded: false,
        secure: false,
    };
    let listening = match listen_tcp(rt.handle(), addr, ListenOptions::new(), factory) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("starttls: {}", cli::chain(&e));
            return ExitCode::FAILURE;
        }
    };
    let local = listening.local_addr();
    let ca_file = cert.ca_file.clone();
    rt.handle().on_startup(move || {
        println!("starttls: listening on {local}");
        println!(
            "starttls: talk to it with: openssl s_client -starttls smtp -crlf -connect {local} -CAfile {ca_file} -quiet"
        );
    });
    let result = rt.run();
    drop(cert);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("starttls: {}", cli::chain(&e));
            ExitCode::FAILURE
        }
    }
}
