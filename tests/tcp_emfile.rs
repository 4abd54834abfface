//! `accept` survives running out of file descriptors: the server runs in
//! a child process with a lowered `RLIMIT_NOFILE`; it backs off, keeps
//! listening, and serves the waiting clients once descriptors free up.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::*;
use weft::prelude::*;

fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").unwrap().count() as u64
}

/// The server, run only as the child of the test below.
#[test]
#[ignore = "run only as the child of accept_survives_emfile"]
fn emfile_child() {
    if std::env::var("WEFT_EMFILE_CHILD").is_err() {
        return;
    }
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let rt = Runtime::builder()
        .workers(2)
        .shutdown_timeout(WAIT)
        .build()
        .unwrap();
    let opts = ListenOptions::new().max_backoff(Duration::from_millis(50));
    let l = listen_tcp(rt.handle(), "127.0.0.1:0".parse().unwrap(), opts, || Echo).unwrap();
    // Once `run` has opened what it needs (the signal pipe), leave room
    // for four connections beyond what is open, and tell the parent.
    let port = l.local_addr().port();
    rt.handle().on_startup(move || {
        let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        setrlimit(Resource::RLIMIT_NOFILE, open_fds() + 4, hard).unwrap();
        println!("port {port}");
        std::io::stdout().flush().unwrap();
    });
    let info = l.info();
    rt.handle().on_shutdown(Phase::After, move || {
        let stats = info.stats();
        println!(
            "stats accepted={} accept_errors={}",
            stats.accepted, stats.accept_errors
        );
        std::io::stdout().flush().unwrap();
    });
    rt.run().unwrap();
}

fn echoes(s: &mut TcpStream, what: &[u8], timeout: Duration) -> bool {
    s.set_read_timeout(Some(timeout)).unwrap();
    let mut buf = vec![0u8; what.len()];
    s.read_exact(&mut buf).is_ok() && buf == what
}

#[test]
fn accept_survives_emfile() {
    let (mut child, rx) = spawn_test_child("emfile_child", "WEFT_EMFILE_CHILD");
    let port: u16 = loop {
        let line = recv(&rx);
        if let Some(p) = line.strip_prefix("port ") {
            break p.parse().unwrap();
        }
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));

    // Twelve clients: the kernel connects them all; the server can only
    // accept about four before accept fails with EMFILE.
    let mut clients: Vec<TcpStream> = (0..12)
        .map(|i| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(format!("client {i:02}").as_bytes()).unwrap();
            s
        })
        .collect();
    let mut served = Vec::new();
    let mut waiting = Vec::new();
    for (i, mut s) in clients.drain(..).enumerate() {
        let msg = format!("client {i:02}");
        if echoes(&mut s, msg.as_bytes(), Duration::from_millis(300)) {
            served.push(s);
        } else {
            waiting.push((i, s));
        }
    }
    assert!(!served.is_empty(), "no client was served at all");
    assert!(!waiting.is_empty(), "the descriptor limit did not bite");

    // Free the descriptors: the listener, still listening, recovers.
    drop(served);
    for (i, mut s) in waiting {
        let msg = format!("client {i:02}");
        assert!(
            echoes(&mut s, msg.as_bytes(), WAIT),
            "client {i} never served"
        );
        s.write_all(b"!").unwrap();
        assert!(echoes(&mut s, b"!", WAIT));
        // Dropped here: a later client may need this descriptor.
    }

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::SIGTERM,
    )
    .unwrap();
    let stats = loop {
        let line = recv(&rx);
        if line.starts_with("stats ") {
            break line;
        }
    };
    let status = child.wait().unwrap();
    assert!(status.success(), "server exited with {status}");
    assert!(stats.contains("accepted=12"), "{stats}");
    let errors: u64 = stats
        .split("accept_errors=")
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(errors > 0, "no accept error was seen: {stats}");
}
