//! The UDP row of the `net` group: `udp-echo-rr`, 50 flows (a client
//! socket each), 64-byte datagram, wait for the echo, repeat, 10 s:
//! datagrams/s, p50/p99 latency and the server's CPU per datagram.
//! Servers, pinned to the server core: weft's `udp_echo` example, tokio's
//! `UdpSocket` (`recv_from` then `send_to`, one worker when pinned), a raw
//! mio loop (read until `WouldBlock`, answer at once) and Twisted
//! (`bench/twisted/udp_echo_server.py`).
//!
//! `udp-flood`: two sender threads on the load core send 64-byte
//! datagrams to one socket as fast as they can for 10 s; the server counts
//! what it received and answers a final `count?` datagram with the count.
//! Datagrams/s received, the server's CPU per datagram, and the share
//! the kernel dropped (sent but never received). Servers: weft (a counting
//! protocol in this binary), tokio's `UdpSocket`, a raw mio loop, Twisted
//! (`bench/twisted/udp_sink.py`).
//!
//! `udp-flood-gso`: the same, but each sender's system call carries a run
//! of 64 datagrams cut by the kernel (`UDP_SEGMENT`), so the senders cost
//! far less per datagram and the receiving socket is what limits the
//! rate. weft's sink turns on receive offload (`DatagramOptions::gro`):
//! a run arrives in one receive and is split back into its datagrams;
//! the others receive one datagram per call, as their APIs do.
//!
//! `WEFT_UDP_ECHO_ARGS` (for example `--batch`) is passed to weft's
//! `udp_echo` server, to measure its options before and after.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use mio::net::UdpSocket as MioUdp;
use mio::{Events, Interest, Poll, Token};

use crate::emit;
use crate::net::{percentile, secs, Kind, Server};

/// Runs one UDP (job, system) in this child.
pub fn run(job: &str, system: &str) -> bool {
    match job {
        "udp-echo-rr" => echo_rr(system),
        "udp-flood" => flood(system, false),
        "udp-flood-gso" => flood(system, true),
        _ => false,
    }
}

fn echo_rr(system: &str) -> bool {
    let extra: Vec<String> = match (system, std::env::var("WEFT_UDP_ECHO_ARGS")) {
        ("weft", Ok(args)) => args.split_whitespace().map(String::from).collect(),
        _ => Vec::new(),
    };
    let Some(server) = Server::start(system, Kind::Udp, &extra) else {
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

/// Sends `n` 64-byte datagrams on a connected socket in one `sendmmsg`
/// (so that one load core can outrun one receiving core); how many went.
fn send_batch(s: &UdpSocket, n: usize) -> u64 {
    use std::os::fd::AsRawFd;
    let msg = [b'f'; 64];
    let mut iovs: Vec<nix::libc::iovec> = (0..n)
        .map(|_| nix::libc::iovec {
            iov_base: msg.as_ptr() as *mut _,
            iov_len: msg.len(),
        })
        .collect();
    // SAFETY: zeroed mmsghdrs are valid (no name, no control); each
    // points at one iovec of `iovs`, which points at `msg`; all outlive
    // the call, and sendmmsg only reads them.
    let mut hdrs: Vec<nix::libc::mmsghdr> = (0..n).map(|_| unsafe { std::mem::zeroed() }).collect();
    for (h, iov) in hdrs.iter_mut().zip(iovs.iter_mut()) {
        h.msg_hdr.msg_iov = iov;
        h.msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: as above; `n` headers.
    let rc = unsafe { nix::libc::sendmmsg(s.as_raw_fd(), hdrs.as_mut_ptr(), n as _, 0) };
    rc.max(0) as u64
}

/// Sends `n` 64-byte datagrams on a connected socket in one `sendmsg`
/// the kernel cuts into datagrams (`UDP_SEGMENT`); how many went.
fn send_segmented(s: &UdpSocket, n: usize) -> u64 {
    use nix::libc;
    use std::os::fd::AsRawFd;
    let data = vec![b'g'; 64 * n];
    let mut control = [0u64; 4];
    // SAFETY: the msghdr points at one iovec over `data` (only read) and
    // at `control`, each with its true length; the one control message
    // is written within `control` through CMSG_FIRSTHDR/CMSG_DATA.
    let rc = unsafe {
        let mut iov = libc::iovec {
            iov_base: data.as_ptr() as *mut _,
            iov_len: data.len(),
        };
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(2) as _;
        let hdr = libc::CMSG_FIRSTHDR(&msg);
        (*hdr).cmsg_level = libc::SOL_UDP;
        (*hdr).cmsg_type = libc::UDP_SEGMENT;
        (*hdr).cmsg_len = libc::CMSG_LEN(2) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(hdr).cast::<u16>(), 64);
        libc::sendmsg(s.as_raw_fd(), &msg, 0)
    };
    if rc > 0 {
        n as u64
    } else {
        0
    }
}

fn flood(system: &str, gso: bool) -> bool {
    let job = if gso { "udp-flood-gso" } else { "udp-flood" };
    let extra = if gso {
        vec!["gro".to_string()]
    } else {
        Vec::new()
    };
    let Some(server) = Server::start(system, Kind::UdpSink, &extra) else {
        return false;
    };
    let dur = Duration::from_secs(secs());
    let target = server.addr;
    let cpu0 = server.cpu_secs();
    let end = Instant::now() + dur;
    let senders: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn(move || {
                let s = UdpSocket::bind("127.0.0.1:0").unwrap();
                s.connect(target).unwrap();
                let mut sent = 0u64;
                while Instant::now() < end {
                    sent += if gso {
                        send_segmented(&s, 64)
                    } else {
                        send_batch(&s, 64)
                    };
                }
                sent
            })
        })
        .collect();
    let sent: u64 = senders.into_iter().map(|t| t.join().unwrap()).sum();
    // Let the server finish what is queued, then ask for its count.
    std::thread::sleep(Duration::from_millis(300));
    let cpu = server.cpu_secs() - cpu0;
    let q = UdpSocket::bind("127.0.0.1:0").unwrap();
    q.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = [0u8; 64];
    let mut got = None;
    for _ in 0..5 {
        q.send_to(b"count?", target).unwrap();
        if let Ok((n, _)) = q.recv_from(&mut buf) {
            got = std::str::from_utf8(&buf[..n])
                .ok()
                .and_then(|t| t.trim().parse::<u64>().ok());
            if got.is_some() {
                break;
            }
        }
    }
    let Some(received) = got else {
        eprintln!("{job}: {system} did not answer count?");
        return false;
    };
    emit(job, "per_s", received as f64 / dur.as_secs_f64());
    emit(
        &format!("{job}-cpu"),
        "us",
        cpu * 1e6 / received.max(1) as f64,
    );
    emit(
        &format!("{job}-lost"),
        "pct",
        100.0 * sent.saturating_sub(received) as f64 / sent.max(1) as f64,
    );
    true
}

// ---- servers run by this binary (`--serve NAME`) ----

/// Runs the UDP server `name` on 127.0.0.1 until killed; false if unknown.
pub fn serve(name: &str, args: &[String]) -> bool {
    match name {
        "tokio-udp-echo" => tokio_udp_echo(),
        "mio-udp-echo" => mio_udp_echo(),
        "weft-udp-sink" => weft_udp_sink(args.iter().any(|a| a == "gro")),
        "tokio-udp-sink" => tokio_udp_sink(),
        "mio-udp-sink" => mio_udp_sink(),
        _ => return false,
    }
    true
}

/// Counts datagrams; answers `count?` with the count.
struct Sink {
    count: u64,
}

impl weft::io::datagram::DatagramProtocol for Sink {
    type Msg = ();

    fn datagram(
        &mut self,
        sock: &mut weft::io::datagram::Dgram<'_, '_, Self>,
        data: &[u8],
        from: &weft::io::Address,
    ) -> weft::ActorResult {
        if data == b"count?" {
            let _ = sock.send_to(self.count.to_string().as_bytes(), from);
        } else {
            self.count += 1;
        }
        Ok(())
    }
}

/// The kernel receive buffer every sink asks for.
const SINK_RCVBUF: usize = 4 << 20;

/// `gro`: receive offload on (`WEFT_UDP_GRO=0` measures without it).
fn weft_udp_sink(gro: bool) {
    let rt = weft::Runtime::builder().build().expect("runtime");
    let gro = gro && std::env::var("WEFT_UDP_GRO").map_or(true, |v| v != "0");
    // `recvmmsg` batches of 64 (WEFT_UDP_BATCH=1 measures without); with
    // GRO each slot is 64 KiB, so 8 of them.
    let batch = std::env::var("WEFT_UDP_BATCH")
        .ok()
        .and_then(|b| b.parse().ok())
        .unwrap_or(if gro { 8 } else { 64 });
    let options = weft::io::datagram::DatagramOptions::new()
        .recv_buffer(SINK_RCVBUF)
        .recv_size(2048)
        .batch(batch)
        .gro(gro);
    let sock = weft::io::datagram::listen_udp(
        rt.handle(),
        "127.0.0.1:0".parse().unwrap(),
        options,
        Sink { count: 0 },
    )
    .expect("bind");
    println!("weft udp sink: listening on {}", sock.local_addr());
    rt.run().expect("run");
}

fn tokio_udp_sink() {
    crate::tokio_multi(crate::cores()).block_on(async {
        let std = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket2::SockRef::from(&std)
            .set_recv_buffer_size(SINK_RCVBUF)
            .unwrap();
        std.set_nonblocking(true).unwrap();
        let s = tokio::net::UdpSocket::from_std(std).unwrap();
        println!("tokio udp sink: listening on {}", s.local_addr().unwrap());
        let mut buf = vec![0u8; 65536];
        let mut count = 0u64;
        loop {
            if let Ok((n, from)) = s.recv_from(&mut buf).await {
                if &buf[..n] == b"count?" {
                    let _ = s.send_to(count.to_string().as_bytes(), from).await;
                } else {
                    count += 1;
                }
            }
        }
    });
}

fn mio_udp_sink() {
    let mut poll = Poll::new().unwrap();
    let mut events = Events::with_capacity(64);
    let std = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket2::SockRef::from(&std)
        .set_recv_buffer_size(SINK_RCVBUF)
        .unwrap();
    std.set_nonblocking(true).unwrap();
    let mut s = MioUdp::from_std(std);
    poll.registry()
        .register(&mut s, Token(0), Interest::READABLE)
        .unwrap();
    println!("mio udp sink: listening on {}", s.local_addr().unwrap());
    let mut buf = vec![0u8; 65536];
    let mut count = 0u64;
    loop {
        poll.poll(&mut events, None).unwrap();
        while let Ok((n, from)) = s.recv_from(&mut buf) {
            if &buf[..n] == b"count?" {
                let _ = s.send_to(count.to_string().as_bytes(), from);
            } else {
                count += 1;
            }
        }
    }
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
