//! The UDP row of the `net` group: `udp-echo-rr`, 50 flows (a client
//! socket each), 64-byte datagram, wait for the echo, repeat, 10 s:
//! datagrams/s, p50/p99 latency and the server's CPU per datagram.
//! Servers, pinned to the server core: weft's `udp_echo` example, tokio's
//! `UdpSocket` (`recv_from` then `send_to`, one worker when pinned), a raw
//! mio loop (read until `WouldBlock`, answer at once) and Twisted
//! (`bench/twisted/udp_echo_server.py`).

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use mio::net::UdpSocket as MioUdp;
use mio::{Events, Interest, Poll, Token};

use crate::emit;
use crate::net::{percentile, secs, Kind, Server};

/// Runs one UDP (job, system) in this child.
pub fn run(job: &str, system: &str) -> bool {
    if job != "udp-echo-rr" {
        return false;
    }
    let Some(server) = Server::start(system, Kind::Udp, &[]) else {
        return false;
    };
    let dur = Duration::from_secs(secs());
    let cpu0 = server.cpu_secs();
    let (n, mut lat) = flows(server.addr, 50, 64, dur);
    let cpu = server.cpu_secs() - cpu0;
    lat.sort_unstable();
    emit("udp-echo-rr", "per_s", n as f64 / dur.as_secs_f64());
    emit("udp-echo-rr-p50", "us", percentile(&lat, 0.50));
    emit("udp-echo-rr-p99", "us", percentile(&lat, 0.99));
    emit("udp-echo-rr-cpu", "us", cpu * 1e6 / n.max(1) as f64);
    true
}

/// `n` connected client sockets each send `size` bytes and wait for the
/// echo; a datagram lost on the way is sent again after 200 ms.
fn flows(addr: SocketAddr, n: usize, size: usize, dur: Duration) -> (u64, Vec<u32>) {
    let mut poll = Poll::new().unwrap();
    let mut events = Events::with_capacity(256);
    let msg = vec![b'u'; size];
    let mut socks = Vec::new();
    for i in 0..n {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.connect(addr).unwrap();
        s.set_nonblocking(true).unwrap();
        let mut s = MioUdp::from_std(s);
        poll.registry()
            .register(&mut s, Token(i), Interest::READABLE)
            .unwrap();
        s.send(&msg).unwrap();
        socks.push((s, Instant::now()));
    }
    let mut lat = Vec::with_capacity(1 << 20);
    let mut done = 0u64;
    let mut buf = vec![0u8; 2048];
    let end = Instant::now() + dur;
    while Instant::now() < end {
        poll.poll(&mut events, Some(Duration::from_millis(50)))
            .unwrap();
        for ev in events.iter() {
            let (s, at) = &mut socks[ev.token().0];
            while s.recv(&mut buf).is_ok() {
                lat.push(at.elapsed().as_micros().min(u32::MAX as u128) as u32);
                done += 1;
                let _ = s.send(&msg);
                *at = Instant::now();
            }
        }
        // A lost datagram (a full buffer somewhere): send again.
        for (s, at) in socks.iter_mut() {
            if at.elapsed() > Duration::from_millis(200) {
                let _ = s.send(&msg);
                *at = Instant::now();
            }
        }
    }
    (done, lat)
}

// ---- servers run by this binary (`--serve NAME`) ----

/// Runs the UDP server `name` on 127.0.0.1 until killed; false if unknown.
pub fn serve(name: &str) -> bool {
    match name {
        "tokio-udp-echo" => tokio_udp_echo(),
        "mio-udp-echo" => mio_udp_echo(),
        _ => return false,
    }
    true
}

fn tokio_udp_echo() {
    crate::tokio_multi(crate::cores()).block_on(async {
        let s = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        println!("tokio udp echo: listening on {}", s.local_addr().unwrap());
        let mut buf = vec![0u8; 65536];
        loop {
            if let Ok((n, from)) = s.recv_from(&mut buf).await {
                let _ = s.send_to(&buf[..n], from).await;
            }
        }
    });
}

/// The ceiling of a readiness loop: one thread, edge-triggered, receive
/// until `WouldBlock`, answer each at once (a refused answer is dropped,
/// as every server here does).
fn mio_udp_echo() {
    let mut poll = Poll::new().unwrap();
    let mut events = Events::with_capacity(64);
    let mut s = MioUdp::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    poll.registry()
        .register(&mut s, Token(0), Interest::READABLE)
        .unwrap();
    println!("mio udp echo: listening on {}", s.local_addr().unwrap());
    let mut buf = vec![0u8; 65536];
    loop {
        poll.poll(&mut events, None).unwrap();
        while let Ok((n, from)) = s.recv_from(&mut buf) {
            let _ = s.send_to(&buf[..n], from);
        }
    }
}
