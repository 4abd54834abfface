//! A minimal HTTP/1.1 server answering `Hello, World!` to `GET /`, with
//! keep-alive and pipelining, for `curl` and `wrk`.
//!
//! Run:   cargo run --release --example http_hello -- [ADDR]   (default 127.0.0.1:8080)
//! Talk:  curl -i http://127.0.0.1:8080/
//!        wrk -t1 -c100 -d10s http://127.0.0.1:8080/
//! Stop:  Ctrl-C (or SIGTERM): open connections finish what they owe, then close.
//!
//! The request parser never panics on bad input: a malformed request line
//! or header, an oversized head, a bad `Content-Length` or a chunked body
//! gets `400 Bad Request` (or `431`/`501`) and the connection closes.
//! Other paths get 404, other methods 405. Idle connections close after
//! 60 s. The protocol is in `shared/http.rs` (`https_hello` runs it over
//! TLS).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use weft::prelude::*;

#[path = "shared/http.rs"]
mod http;
use http::Http;

#[path = "shared/cli.rs"]
mod cli;

fn main() -> ExitCode {
    let cli = cli::Cli::new(
        "http_hello",
        "[ADDR]",
        "A minimal HTTP/1.1 server answering `Hello, World!` to `GET /`, with keep-alive and pipelining, for `curl` and `wrk`.",
    );
    let arg = cli
        .args_at_most(1)
        .first()
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let addr: SocketAddr = match arg.parse() {
        Ok(addr) => addr,
        Err(e) => {
            cli.fail(format!("bad address {arg:?} ({e}); expected IP:PORT"));
        }
    };
    let rt = match Runtime::builder().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("http_hello: cannot start the runtime: {}", cli::chain(&e));
            return ExitCode::FAILURE;
        }
    };
    let options =
        ListenOptions::new().conn(ConnOptions::new().idle_timeout(Some(Duration::from_secs(60))));
    let listening = match listen_tcp(rt.handle(), addr, options, Http::default) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("http_hello: {}", cli::chain(&e));
            return ExitCode::FAILURE;
        }
    };
    // Printed once `run` has installed the signal handlers.
    let local = listening.local_addr();
    rt.handle()
        .on_startup(move || println!("http_hello: listening on http://{local}/"));
    match rt.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("http_hello: {}", cli::chain(&e));
            ExitCode::FAILURE
        }
    }
}
