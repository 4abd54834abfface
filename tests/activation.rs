//! systemd socket activation: the echo example under the real
//! `systemd-socket-activate` (it serves the passed socket and sends
//! `READY=1` and `STOPPING=1` to `NOTIFY_SOCKET`), and `listen_fds` in a
//! child process of its own (it changes its environment and descriptors
//! 3 and 4): a wrong `LISTEN_PID`, malformed variables, a closed
//! descriptor, names, close-on-exec, the variables cleared, one take.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, IntoRawFd};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::Command;

use common::*;
use weft::io::activation::{self, ActivationError};
use weft::io::adopt_listener;
use weft::prelude::*;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn echo_path() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/echo");
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let ok = Command::new(cargo)
            .args(["build", "--example", "echo"])
            .status()
            .unwrap()
            .success();
        assert!(ok, "building the echo example");
    }
    path
}

fn notice(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 256];
    let n = sock
        .recv(&mut buf)
        .expect("a notification within the timeout");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn echo_serves_the_socket_systemd_socket_activate_passes_and_notifies() {
    let dir = std::env::temp_dir().join(format!("weft-activation-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let notify_path = dir.join("notify.sock");
    let _ = std::fs::remove_file(&notify_path);
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(WAIT)).unwrap();

    let port = free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let (mut child, lines) = spawn_with_lines(
        Command::new("systemd-socket-activate")
            .arg("-l")
            .arg(addr.to_string())
            .arg("--fdname=echo")
            .arg("-E")
            .arg(format!("NOTIFY_SOCKET={}", notify_path.display()))
            .arg(echo_path()),
    );
    // It starts the server on the first connection.
    let mut c = None;
    eventually("systemd-socket-activate listens", || {
        c = TcpStream::connect(addr).ok();
        c.is_some()
    });
    let mut c = c.unwrap();
    c.set_read_timeout(Some(WAIT)).unwrap();
    c.write_all(b"activated\n").unwrap();
    let mut buf = [0u8; 10];
    c.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"activated\n");
    assert_eq!(
        recv(&lines),
        format!("echo: listening on {addr}, from socket activation")
    );
    assert_eq!(notice(&notify), "READY=1");

    // systemd-socket-activate execs the server in its own process.
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::SIGTERM).unwrap();
    assert_eq!(notice(&notify), "STOPPING=1");
    assert!(recv(&lines).contains("stopped; 1 connections served"));
    assert!(child.wait().unwrap().success());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn listen_fds_follows_the_protocol() {
    let (mut child, lines) = spawn_test_child("listen_fds_child", "WEFT_ACTIVATION_CHILD");
    let mut seen = Vec::new();
    loop {
        let line = recv(&lines);
        if line == "done" {
            break;
        }
        // The test harness's own lines come first.
        if !seen.is_empty() || line.starts_with("wrong pid") {
            seen.push(line);
        }
    }
    assert!(child.wait().unwrap().success(), "{seen:?}");
    assert_eq!(
        seen,
        [
            "wrong pid: none, cleared",
            "malformed: Malformed",
            "closed descriptor: BadDescriptor 4",
            "names: web,admin",
            "cloexec: true true",
            "cleared: true",
            "again: none",
            "served: adopted from activation",
        ]
    );
}

/// Places a fresh listener on descriptor `target`.
fn listener_at(target: i32) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let raw = l.into_raw_fd();
    if raw != target {
        nix::unistd::dup2(raw, target).unwrap();
        nix::unistd::close(raw).unwrap();
    }
    addr
}

fn cleared() -> bool {
    ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"]
        .iter()
        .all(|v| std::env::var_os(v).is_none())
}

fn set(pid: &str, fds: &str, names: &str) {
    std::env::set_var("LISTEN_PID", pid);
    std::env::set_var("LISTEN_FDS", fds);
    std::env::set_var("LISTEN_FDNAMES", names);
}

#[test]
#[ignore = "run by listen_fds_follows_the_protocol in a child process"]
fn listen_fds_child() {
    if std::env::var_os("WEFT_ACTIVATION_CHILD").is_none() {
        return;
    }
    let me = std::process::id().to_string();
    let web = listener_at(3);
    let _admin = listener_at(4);

    set("1", "2", "web:admin");
    let got = activation::listen_fds().unwrap();
    println!(
        "wrong pid: {}, {}",
        if got.is_empty() { "none" } else { "some" },
        if cleared() { "cleared" } else { "left" }
    );

    set(&me, "two", "");
    match activation::listen_fds() {
        Err(ActivationError::Malformed(_)) => println!("malformed: Malformed"),
        other => println!("malformed: {other:?}"),
    }

    // Descriptor 4 closed: nothing is claimed.
    let saved = nix::unistd::dup(4).unwrap();
    nix::unistd::close(4).unwrap();
    set(&me, "2", "web:admin");
    match activation::listen_fds() {
        Err(ActivationError::BadDescriptor { fd, .. }) => {
            println!("closed descriptor: BadDescriptor {fd}")
        }
        other => println!("closed descriptor: {other:?}"),
    }
    nix::unistd::dup2(saved, 4).unwrap();
    nix::unistd::close(saved).unwrap();

    set(&me, "2", "web:admin");
    let mut got = activation::listen_fds().unwrap();
    println!("names: {}", got.names().collect::<Vec<_>>().join(","));
    let cloexec = |fd: &std::os::fd::OwnedFd| {
        let flags = nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFD).unwrap();
        nix::fcntl::FdFlag::from_bits_truncate(flags).contains(nix::fcntl::FdFlag::FD_CLOEXEC)
    };
    let web_fd = got.take("web").unwrap();
    let admin_fd = got.take_index(1).unwrap();
    println!("cloexec: {} {}", cloexec(&web_fd), cloexec(&admin_fd));
    println!("cleared: {}", cleared());
    set(&me, "2", "web:admin");
    let again = activation::listen_fds().unwrap();
    println!("again: {}", if again.is_empty() { "none" } else { "some" });

    // The taken socket serves.
    let rt = runtime(1);
    let _listening = adopt_listener(rt.handle(), &web_fd, ListenOptions::new(), || Echo).unwrap();
    let mut c = TcpStream::connect(web).unwrap();
    c.set_read_timeout(Some(WAIT)).unwrap();
    c.write_all(b"x").unwrap();
    let mut b = [0u8; 1];
    c.read_exact(&mut b).unwrap();
    println!("served: adopted from activation");
    println!("done");
}
