//! `http_hello` over TLS: the same HTTP/1.1 protocol (`Hello, World!` for
//! `GET /`, keep-alive, pipelining, 400/404/405 for what it does not
//! serve), behind `listen_tls` with ALPN `http/1.1`. Without a
//! certificate it makes a self-signed one for `localhost` and 127.0.0.1
//! and prints the exact `curl` command that trusts it.
//!
//! Run:   cargo run --release --example https_hello -- [ADDR [CERT.pem KEY.pem]]
//!        (default address 127.0.0.1:8443)
//! Talk:  the command it prints, e.g.
//!        curl --cacert /tmp/weft-https-hello-1234.pem https://127.0.0.1:8443/
//!        (add -v to see "ALPN: server accepted http/1.1")
//! Stop:  Ctrl-C (or SIGTERM): open connections finish what they owe,
//!        send close_notify and close.
//!
//! A client that offers ALPN but not `http/1.1` (only `h2`, say) is
//! refused in the handshake with a `no_application_protocol` alert; one
//! that offers no ALPN at all is served HTTP/1.1. Idle connections close
//! after 60 s.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use weft::prelude::*;

#[path = "shared/cert.rs"]
mod cert;
#[path = "shared/http.rs"]
mod http;
use cert::ServerCert;
use http::Http;

#[path = "shared/cli.rs"]
mod cli;

fn main() -> ExitCode {
    let cli = cli::Cli::new(
        "https_hello",
        "[ADDR [CERT.pem KEY.pem]]",
        "`http_hello` over TLS: the same HTTP/1.1 protocol (`Hello, World!` for `GET /`, keep-alive, pipelining, 400/404/405 for what it does not serve), behind `listen_tls` with ALPN `http/1.1`. Without a certificate it makes a self-signed one for `localhost` and 127.0.0.1 and prints the exact `curl` command that trusts it.",
    );
    let args: Vec<String> = cli.args_at_most(3).to_vec();
    let arg = args
        .first()
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:8443".into());
    let addr: SocketAddr = match arg.parse() {
        Ok(addr) => addr,
        Err(e) => {
            cli.fail(format!("bad address {arg:?} ({e}); expected IP:PORT"));
        }
    };
    let cert = match ServerCert::load_or_make("https-hello", args.get(1), args.get(2)) {
        Ok(cert) => cert,
        Err((e, code)) => {
            eprintln!("https_hello: {e}");
            return ExitCode::from(code);
        }
    };
    let config = match cert.builder().alpn([b"http/1.1"]).build() {
        Ok(config) => config,
        Err(e) => {
            cli.fail(format!("{e}"));
        }
    };
    let rt = match Runtime::builder().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("https_hello: cannot start the runtime: {}", cli::chain(&e));
            return ExitCode::FAILURE;
        }
    };
    let options =
        ListenOptions::new().conn(ConnOptions::new().idle_timeout(Some(Duration::from_secs(60))));
    let listening = match listen_tls(rt.handle(), addr, options, config, Http::default) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("https_hello: {}", cli::chain(&e));
            return ExitCode::FAILURE;
        }
    };
    // Printed once `run` has installed the signal handlers.
    let local = listening.local_addr();
    let ca_file = cert.ca_file.clone();
    rt.handle().on_startup(move || {
        println!("https_hello: listening on https://{local}/");
        println!("https_hello: talk to it with: curl --cacert {ca_file} https://{local}/");
    });
    let result = rt.run();
    drop(cert);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("https_hello: {}", cli::chain(&e));
            ExitCode::FAILURE
        }
    }
}
