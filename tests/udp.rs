//! UDP on 127.0.0.1 and ::1 with Python as the peer: datagram boundaries
//! kept (random sizes up to 64 KB), truncation reported, EMSGSIZE, a
//! connected socket told of refusal (and an unconnected one not),
//! broadcast refused and allowed, multicast (TTL and loopback defaults
//! and changes, join and leave, a non-multicast group refused, the
//! outgoing interface, two `reuse_addr` sockets on one group), IPv6, a
//! panicking protocol that stops only its socket, and one flow answered
//! while two others flood.

mod common;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, Sender};

use common::*;
use weft::io::datagram::{
    listen_udp, DatagramError, DatagramOptions, DatagramProtocol, DatagramRef, Dgram,
};
use weft::prelude::*;

#[derive(Debug, PartialEq)]
enum Seen {
    Got(usize, Address),
    Truncated(usize, usize),
    Refused,
    Result(String),
    Dest(std::net::IpAddr),
}

/// A question put to the socket from inside its actor.
type Question = Box<dyn FnOnce(&mut Dgram<'_, '_, Probe>) -> String + Send>;

/// What to do on the socket, sent as a message.
enum Cmd {
    SendTo(Vec<u8>, SocketAddr),
    Connect(SocketAddr),
    Send(Vec<u8>),
    Disconnect,
    /// Run a closure against the socket and report its answer.
    Call(Question),
}

/// Echoes (unless `quiet`), reports everything; panics on "panic".
struct Probe {
    tx: Sender<Seen>,
    quiet: bool,
}

impl DatagramProtocol for Probe {
    type Msg = Cmd;

    fn datagram(
        &mut self,
        sock: &mut Dgram<'_, '_, Self>,
        data: &[u8],
        from: &Address,
    ) -> ActorResult {
        if data == b"panic" {
            panic!("told to panic");
        }
        if let Some(dest) = sock.destination() {
            let _ = self.tx.send(Seen::Dest(dest));
        }
        let _ = self.tx.send(Seen::Got(data.len(), from.clone()));
        if !self.quiet {
            let _ = sock.send_to(data, from);
        }
        Ok(())
    }

    fn truncated(
        &mut self,
        _sock: &mut Dgram<'_, '_, Self>,
        data: &[u8],
        len: usize,
        _from: &Address,
    ) -> ActorResult {
        let _ = self.tx.send(Seen::Truncated(data.len(), len));
        Ok(())
    }

    fn refused(&mut self, _sock: &mut Dgram<'_, '_, Self>) -> ActorResult {
        let _ = self.tx.send(Seen::Refused);
        Ok(())
    }

    fn message(&mut self, sock: &mut Dgram<'_, '_, Self>, cmd: Cmd) -> ActorResult {
        let result = match cmd {
            Cmd::SendTo(data, to) => format!("{:?}", sock.send_to(&data, &Address::Inet(to))),
            Cmd::Connect(to) => format!(
                "{:?}",
                sock.connect(&Address::Inet(to)).map_err(|e| e.kind())
            ),
            Cmd::Send(data) => format!("{:?}", sock.send(&data)),
            Cmd::Disconnect => format!("{:?}", sock.disconnect().map_err(|e| e.kind())),
            Cmd::Call(f) => f(sock),
        };
        let _ = self.tx.send(Seen::Result(result));
        Ok(())
    }
}

fn udp(
    rt: &Runtime,
    addr: &str,
    options: DatagramOptions,
    quiet: bool,
) -> (DatagramRef<Probe>, Receiver<Seen>) {
    let (tx, rx) = mpsc::channel();
    let sock = listen_udp(
        rt.handle(),
        addr.parse().unwrap(),
        options,
        Probe { tx, quiet },
    )
    .expect("binds");
    (sock, rx)
}

fn port_of(sock: &DatagramRef<Probe>) -> SocketAddr {
    sock.local_addr().inet().unwrap()
}

fn ask(sock: &DatagramRef<Probe>, rx: &Receiver<Seen>, cmd: Cmd) -> String {
    if sock.send(cmd).is_err() {
        panic!("the socket's actor is gone");
    }
    loop {
        if let Seen::Result(r) = recv(rx) {
            return r;
        }
    }
}

fn call(
    sock: &DatagramRef<Probe>,
    rx: &Receiver<Seen>,
    f: impl FnOnce(&mut Dgram<'_, '_, Probe>) -> String + Send + 'static,
) -> String {
    ask(sock, rx, Cmd::Call(Box::new(f)))
}

const PY_BOUNDARIES: &str = r#"
import random, socket, sys
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(family, socket.SOCK_DGRAM)
s.settimeout(10)
target = (sys.argv[1], int(sys.argv[2]))
random.seed(7)
sizes = [1, 64, 1400, 1500, 9000, 65507 if family == socket.AF_INET else 65487] + [random.randint(1, 65000) for _ in range(30)]
for n in sizes:
    data = bytes(random.getrandbits(8) for _ in range(min(n, 64))) * (n // 64 + 1)
    data = data[:n]
    s.sendto(data, target)
    back, _ = s.recvfrom(70000)
    assert back == data, (n, len(back))
print("ok", len(sizes), flush=True)
"#;

#[test]
fn echo_keeps_datagram_boundaries_on_ipv4_and_ipv6() {
    let rt = runtime(2);
    for addr in ["127.0.0.1:0", "[::1]:0"] {
        let (sock, _rx) = udp(&rt, addr, DatagramOptions::new(), false);
        let local = port_of(&sock);
        let out = python(
            PY_BOUNDARIES,
            &[&local.ip().to_string(), &local.port().to_string()],
        );
        assert_eq!(out.trim(), "ok 36", "{addr}");
        assert_eq!(sock.stats().received.load(Ordering::Relaxed), 36);
        assert_eq!(sock.stats().sent.load(Ordering::Relaxed), 36);
    }
}

#[test]
fn truncation_is_reported_and_too_big_is_refused() {
    let rt = runtime(2);
    let (sock, rx) = udp(
        &rt,
        "127.0.0.1:0",
        DatagramOptions::new().recv_size(100),
        true,
    );
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.send_to(&[1u8; 1000], port_of(&sock)).unwrap();
    assert_eq!(recv(&rx), Seen::Truncated(100, 1000));
    assert_eq!(sock.stats().truncated.load(Ordering::Relaxed), 1);
    let to = client.local_addr().unwrap();
    assert_eq!(
        ask(&sock, &rx, Cmd::SendTo(vec![0u8; 70_000], to)),
        format!("{:?}", Err::<(), _>(DatagramError::TooBig { len: 70_000 }))
    );
    // A socket of the other family is refused before the kernel.
    assert_eq!(
        call(&sock, &rx, |s| format!(
            "{:?}",
            s.send_to(b"x", &Address::Unix(UnixAddr::path("/tmp/x")))
        )),
        format!(
            "{:?}",
            Err::<(), _>(DatagramError::WrongFamily {
                addr: "/tmp/x".into()
            })
        )
    );
}

#[test]
fn a_connected_socket_is_told_of_refusal_an_unconnected_one_is_not() {
    let rt = runtime(2);
    let closed = {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap()
    };
    let (sock, rx) = udp(&rt, "127.0.0.1:0", DatagramOptions::new(), true);
    // Unconnected: the ICMP error is not this socket's concern.
    assert_eq!(
        ask(&sock, &rx, Cmd::SendTo(b"anyone?".to_vec(), closed)),
        "Ok(())"
    );
    assert_silent(&rx);
    // Connected: it is.
    assert_eq!(ask(&sock, &rx, Cmd::Connect(closed)), "Ok(())");
    assert_eq!(ask(&sock, &rx, Cmd::Send(b"anyone?".to_vec())), "Ok(())");
    assert_eq!(recv(&rx), Seen::Refused);
    assert_eq!(ask(&sock, &rx, Cmd::Disconnect), "Ok(())");
    assert_eq!(
        ask(&sock, &rx, Cmd::Send(b"x".to_vec())),
        format!("{:?}", Err::<(), _>(DatagramError::NotConnected))
    );
}

#[test]
fn broadcast_is_refused_until_allowed() {
    let rt = runtime(2);
    let receiver = UdpSocket::bind("0.0.0.0:0").unwrap();
    receiver.set_read_timeout(Some(WAIT)).unwrap();
    let to: SocketAddr = format!("127.255.255.255:{}", receiver.local_addr().unwrap().port())
        .parse()
        .unwrap();
    let (plain, rx) = udp(&rt, "0.0.0.0:0", DatagramOptions::new(), true);
    assert_eq!(
        ask(&plain, &rx, Cmd::SendTo(b"all".to_vec(), to)),
        format!("{:?}", Err::<(), _>(DatagramError::Denied(to.to_string())))
    );
    let (allowed, rx) = udp(
        &rt,
        "0.0.0.0:0",
        DatagramOptions::new().broadcast(true),
        true,
    );
    assert_eq!(
        ask(&allowed, &rx, Cmd::SendTo(b"all".to_vec(), to)),
        "Ok(())"
    );
    let mut buf = [0u8; 8];
    let (n, _) = receiver.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"all");
    // And switched off again at run time.
    assert_eq!(
        call(&allowed, &rx, |s| format!(
            "{:?}",
            s.set_broadcast(false).map_err(|e| e.kind())
        )),
        "Ok(())"
    );
    assert!(ask(&allowed, &rx, Cmd::SendTo(b"all".to_vec(), to)).contains("Denied"));
}

#[test]
fn multicast_options_join_leave_and_two_members() {
    let rt = runtime(2);
    let group: Ipv4Addr = "239.255.43.17".parse().unwrap();
    let lo: Ipv4Addr = Ipv4Addr::LOCALHOST;
    let members_opts = DatagramOptions::new().reuse_addr(true);
    let (a, a_rx) = udp(&rt, "0.0.0.0:0", members_opts.clone(), true);
    let port = port_of(&a).port();
    let (b, b_rx) = udp(&rt, &format!("0.0.0.0:{port}"), members_opts, true);
    for (sock, rx) in [(&a, &a_rx), (&b, &b_rx)] {
        assert_eq!(
            call(sock, rx, move |s| format!(
                "{:?}",
                s.join_multicast_v4(group, lo).map_err(|e| e.kind())
            )),
            "Ok(())"
        );
    }
    // A sender with the defaults: TTL 1, loopback on; out by 127.0.0.1.
    let (sender, s_rx) = udp(&rt, "127.0.0.1:0", DatagramOptions::new(), true);
    assert_eq!(
        call(&sender, &s_rx, |s| format!("{:?}", s.multicast_ttl().ok())),
        "Some(1)"
    );
    assert_eq!(
        call(&sender, &s_rx, |s| format!("{:?}", s.multicast_loop().ok())),
        "Some(true)"
    );
    assert_eq!(
        call(&sender, &s_rx, move |s| {
            s.set_multicast_interface_v4(lo).unwrap();
            s.set_multicast_ttl(2).unwrap();
            format!(
                "{:?} {:?}",
                s.multicast_interface_v4().ok(),
                s.multicast_ttl().ok()
            )
        }),
        "Some(127.0.0.1) Some(2)"
    );
    let to = SocketAddr::from((group, port));
    assert_eq!(
        ask(&sender, &s_rx, Cmd::SendTo(b"to the group".to_vec(), to)),
        "Ok(())"
    );
    let from = port_of(&sender);
    assert_eq!(
        recv(&a_rx),
        Seen::Got(12, Address::Inet(from)),
        "both members receive"
    );
    assert_eq!(recv(&b_rx), Seen::Got(12, Address::Inet(from)));

    // b leaves: only a receives.
    assert_eq!(
        call(&b, &b_rx, move |s| format!(
            "{:?}",
            s.leave_multicast_v4(group, lo).map_err(|e| e.kind())
        )),
        "Ok(())"
    );
    assert_eq!(
        ask(&sender, &s_rx, Cmd::SendTo(b"again".to_vec(), to)),
        "Ok(())"
    );
    assert_eq!(recv(&a_rx), Seen::Got(5, Address::Inet(from)));
    assert_silent(&b_rx);

    // Loopback mode, set and read back. (Its effect cannot be shown on
    // `lo` itself: a datagram sent out of the loopback interface comes
    // back in through it whatever the mode says.)
    assert_eq!(
        call(&sender, &s_rx, |s| {
            s.set_multicast_loop(false).unwrap();
            format!("{:?}", s.multicast_loop().ok())
        }),
        "Some(false)"
    );
    let (quiet_sender, q_rx) = udp(
        &rt,
        "127.0.0.1:0",
        DatagramOptions::new().multicast_loop(false),
        true,
    );
    assert_eq!(
        call(&quiet_sender, &q_rx, |s| format!(
            "{:?}",
            s.multicast_loop().ok()
        )),
        "Some(false)"
    );

    // Joining something that is not a multicast group is an error value.
    let answer = call(&a, &a_rx, move |s| {
        format!("{:?}", s.join_multicast_v4(lo, lo).map_err(|e| e.kind()))
    });
    assert!(answer.starts_with("Err("), "{answer}");
}

#[test]
fn a_panicking_protocol_stops_only_its_socket() {
    let rt = runtime(2);
    let (bad, _bad_rx) = udp(&rt, "127.0.0.1:0", DatagramOptions::new(), false);
    let (good, good_rx) = udp(&rt, "127.0.0.1:0", DatagramOptions::new(), false);
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(WAIT)).unwrap();
    client.send_to(b"panic", port_of(&bad)).unwrap();
    eventually("the panicking socket's actor stopped", || {
        bad.addr().is_stopped()
    });
    client.send_to(b"still here", port_of(&good)).unwrap();
    let mut buf = [0u8; 32];
    let (n, _) = client.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"still here");
    assert!(matches!(recv(&good_rx), Seen::Got(10, _)));
}

#[test]
fn one_flow_is_answered_while_two_others_flood() {
    let rt = runtime(2);
    let (flooded, _rx) = udp(
        &rt,
        "127.0.0.1:0",
        DatagramOptions::new().recv_buffer(1 << 20),
        true,
    );
    let (answering, _arx) = udp(&rt, "127.0.0.1:0", DatagramOptions::new(), false);
    let target = port_of(&flooded);
    let flooders: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn(move || {
                let s = UdpSocket::bind("127.0.0.1:0").unwrap();
                for _ in 0..50_000 {
                    let _ = s.send_to(&[0u8; 64], target);
                }
            })
        })
        .collect();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 8];
    for i in 0..100u8 {
        client.send_to(&[i], port_of(&answering)).unwrap();
        let (n, _) = client
            .recv_from(&mut buf)
            .expect("answered while the other socket floods");
        assert_eq!(&buf[..n], &[i]);
    }
    for f in flooders {
        f.join().unwrap();
    }
    eventually("the flood was read", || {
        flooded.stats().received.load(Ordering::Relaxed) > 0
    });
}

#[test]
fn the_destination_of_each_datagram_on_request() {
    let rt = runtime(2);
    let (v4, rx) = udp(
        &rt,
        "0.0.0.0:0",
        DatagramOptions::new().dest_addr(true),
        true,
    );
    let port = port_of(&v4).port();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    for dest in ["127.0.0.1", "127.0.0.2"] {
        client.send_to(b"where?", (dest, port)).unwrap();
        assert_eq!(recv(&rx), Seen::Dest(dest.parse().unwrap()));
        assert!(matches!(recv(&rx), Seen::Got(6, _)));
    }
    // A multicast group is the destination of its datagrams.
    let group: Ipv4Addr = "239.255.43.18".parse().unwrap();
    assert_eq!(
        call(&v4, &rx, move |s| format!(
            "{:?}",
            s.join_multicast_v4(group, Ipv4Addr::LOCALHOST)
                .map_err(|e| e.kind())
        )),
        "Ok(())"
    );
    let mc = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
    mc.set_multicast_if_v4(&Ipv4Addr::LOCALHOST).unwrap();
    mc.send_to(b"group", &SocketAddr::from((group, port)).into())
        .unwrap();
    assert_eq!(recv(&rx), Seen::Dest(std::net::IpAddr::V4(group)));
    assert!(matches!(recv(&rx), Seen::Got(5, _)));

    let (v6, rx6) = udp(&rt, "[::]:0", DatagramOptions::new().dest_addr(true), true);
    let client6 = UdpSocket::bind("[::1]:0").unwrap();
    client6
        .send_to(b"six", ("::1", port_of(&v6).port()))
        .unwrap();
    assert_eq!(recv(&rx6), Seen::Dest("::1".parse().unwrap()));
    // Off by default.
    let (plain, rxp) = udp(&rt, "127.0.0.1:0", DatagramOptions::new(), true);
    client.send_to(b"x", port_of(&plain)).unwrap();
    assert!(matches!(recv(&rxp), Seen::Got(1, _)));
}

#[test]
fn batched_receiving_keeps_order_senders_and_truncation() {
    let rt = runtime(2);
    let options = DatagramOptions::new()
        .batch(16)
        .recv_size(2048)
        .recv_buffer(1 << 20);
    let (sock, rx) = udp(&rt, "127.0.0.1:0", options, true);
    let target = port_of(&sock);
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut expected = Vec::new();
    for i in 0..200usize {
        let (from, size) = if i % 3 == 0 {
            (&b, 100 + i)
        } else {
            (&a, 1 + i)
        };
        let size = if i == 150 { 3000 } else { size };
        from.send_to(&vec![i as u8; size], target).unwrap();
        expected.push((size, from.local_addr().unwrap()));
    }
    for (i, (size, from)) in expected.into_iter().enumerate() {
        let seen = recv(&rx);
        if size > 2048 {
            assert_eq!(seen, Seen::Truncated(2048, size), "datagram {i}");
        } else {
            assert_eq!(seen, Seen::Got(size, Address::Inet(from)), "datagram {i}");
        }
    }
    assert_eq!(sock.stats().received.load(Ordering::Relaxed), 199);
}

/// Keeps every datagram's bytes and counts `read_done` calls; on a
/// message, sends a batch or a segmented run.
struct Collect {
    tx: Sender<(Vec<u8>, Address)>,
    bursts: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// Replies gathered during a burst, sent in `read_done` (echo mode).
    pending: Option<Vec<(Vec<u8>, Address)>>,
}

/// What a `Collect` socket is told to send.
enum Out {
    Batch(
        Vec<(Vec<u8>, Address)>,
        Sender<Result<(), weft::io::datagram::BatchError>>,
    ),
    Segments(Vec<u8>, usize, Address, Sender<Result<(), DatagramError>>),
}

impl DatagramProtocol for Collect {
    type Msg = Out;

    fn datagram(
        &mut self,
        _sock: &mut Dgram<'_, '_, Self>,
        data: &[u8],
        from: &Address,
    ) -> ActorResult {
        if let Some(pending) = &mut self.pending {
            pending.push((data.to_vec(), from.clone()));
        }
        let _ = self.tx.send((data.to_vec(), from.clone()));
        Ok(())
    }

    fn read_done(&mut self, sock: &mut Dgram<'_, '_, Self>) -> ActorResult {
        self.bursts.fetch_add(1, Ordering::Relaxed);
        if let Some(pending) = &mut self.pending {
            let batch: Vec<(&[u8], &Address)> =
                pending.iter().map(|(d, a)| (d.as_slice(), a)).collect();
            sock.send_batch_to(&batch)?;
            pending.clear();
        }
        Ok(())
    }

    fn message(&mut self, sock: &mut Dgram<'_, '_, Self>, out: Out) -> ActorResult {
        match out {
            Out::Batch(items, reply) => {
                let batch: Vec<(&[u8], &Address)> =
                    items.iter().map(|(d, a)| (d.as_slice(), a)).collect();
                let _ = reply.send(sock.send_batch_to(&batch));
            }
            Out::Segments(data, segment, to, reply) => {
                let _ = reply.send(sock.send_segments_to(&data, segment, &to));
            }
        }
        Ok(())
    }
}

type Collected = (
    DatagramRef<Collect>,
    Receiver<(Vec<u8>, Address)>,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
);

fn collect(rt: &Runtime, addr: &str, options: DatagramOptions, echo: bool) -> Collected {
    let (tx, rx) = mpsc::channel();
    let bursts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let sock = listen_udp(
        rt.handle(),
        addr.parse().unwrap(),
        options,
        Collect {
            tx,
            bursts: bursts.clone(),
            pending: echo.then(Vec::new),
        },
    )
    .expect("binds");
    (sock, rx, bursts)
}

fn segments(
    sock: &DatagramRef<Collect>,
    data: Vec<u8>,
    segment: usize,
    to: SocketAddr,
) -> Result<(), DatagramError> {
    let (tx, rx) = mpsc::channel();
    assert!(sock
        .send(Out::Segments(data, segment, Address::Inet(to), tx))
        .is_ok());
    recv(&rx)
}

/// A run of 11 datagrams (10 of 100 bytes, one of 37) sent with
/// segmentation offload.
fn run_of_datagrams(seed: u8) -> Vec<u8> {
    (0..1037u32)
        .map(|i| seed.wrapping_add((i / 100) as u8))
        .collect()
}

#[test]
fn segmented_sends_arrive_as_ordinary_datagrams_at_a_python_peer() {
    let rt = runtime(2);
    let (sock, _rx, _) = collect(&rt, "127.0.0.1:0", DatagramOptions::new(), false);
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let to = peer.local_addr().unwrap();
    let data = run_of_datagrams(1);
    assert_eq!(segments(&sock, data.clone(), 100, to), Ok(()));
    let mut buf = [0u8; 2048];
    for (i, expect) in data.chunks(100).enumerate() {
        let (n, _) = peer.recv_from(&mut buf).expect("a segment arrives");
        assert_eq!(&buf[..n], expect, "segment {i}");
    }
    assert_eq!(sock.stats().sent.load(Ordering::Relaxed), 11);
    // More than 64 segments, or a run larger than a UDP datagram: refused.
    assert_eq!(
        segments(&sock, vec![0; 65 * 10], 10, to),
        Err(DatagramError::TooBig { len: 650 })
    );
    assert!(matches!(
        segments(&sock, vec![0; 70_000], 30_000, to),
        Err(DatagramError::TooBig { .. })
    ));
    // The other family is refused before the kernel.
    assert!(matches!(
        segments(&sock, vec![0; 300], 100, "[::1]:9".parse().unwrap()),
        Err(DatagramError::WrongFamily { .. })
    ));
}

#[test]
fn receive_offload_splits_runs_back_into_their_datagrams() {
    let rt = runtime(2);
    for addr in ["127.0.0.1:0", "[::1]:0"] {
        let options = DatagramOptions::new().gro(true).batch(4).recv_size(2048);
        let (receiver, rx, bursts) = collect(&rt, addr, options, false);
        let (sender, _srx, _) = collect(&rt, addr, DatagramOptions::new(), false);
        let to = port_of_collect(&receiver);
        let mut expected = Vec::new();
        for seed in 0..20u8 {
            let data = run_of_datagrams(seed.wrapping_mul(13));
            assert_eq!(segments(&sender, data.clone(), 100, to), Ok(()), "{addr}");
            expected.extend(data.chunks(100).map(<[u8]>::to_vec));
        }
        // A plain datagram between runs, and one longer than the receive
        // size, keep their boundaries and their truncation.
        let plain = UdpSocket::bind(to.ip().to_string() + ":0").unwrap();
        plain.send_to(b"plain", to).unwrap();
        expected.push(b"plain".to_vec());
        let from = sender.local_addr().clone();
        for (i, want) in expected.iter().enumerate() {
            let (got, who) = recv(&rx);
            assert_eq!(&got, want, "{addr}: datagram {i}");
            if i < 220 {
                assert_eq!(who, from, "{addr}: datagram {i}");
            }
        }
        assert_eq!(receiver.stats().received.load(Ordering::Relaxed), 221);
        plain.send_to(&[7u8; 3000], to).unwrap();
        eventually("the long datagram is reported", || {
            receiver.stats().truncated.load(Ordering::Relaxed) == 1
        });
        assert!(bursts.load(Ordering::Relaxed) >= 1);
    }
}

fn port_of_collect(sock: &DatagramRef<Collect>) -> SocketAddr {
    sock.local_addr().inet().unwrap()
}

#[test]
fn replies_gathered_in_a_burst_go_out_in_one_batch() {
    let rt = runtime(2);
    let (sock, _rx, bursts) = collect(
        &rt,
        "127.0.0.1:0",
        DatagramOptions::new().batch(8).recv_size(2048),
        true,
    );
    let out = python(
        r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(10)
target = ("127.0.0.1", int(sys.argv[1]))
sent = [bytes([i]) * (i + 1) for i in range(200)]
for d in sent:
    s.sendto(d, target)
back = sorted((s.recvfrom(4096)[0] for _ in sent), key=len)
assert back == sent, [len(b) for b in back]
print("ok", flush=True)
"#,
        &[&port_of_collect(&sock).port().to_string()],
    );
    assert_eq!(out.trim(), "ok");
    assert_eq!(sock.stats().sent.load(Ordering::Relaxed), 200);
    let n = bursts.load(Ordering::Relaxed);
    assert!((1..=200).contains(&n), "read_done ran {n} times");
}

#[test]
fn a_batch_stops_at_the_first_refused_datagram_and_says_how_many_went() {
    let rt = runtime(2);
    let (sock, _rx, _) = collect(&rt, "127.0.0.1:0", DatagramOptions::new(), false);
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let to = Address::Inet(peer.local_addr().unwrap());
    let mut items: Vec<(Vec<u8>, Address)> = (0..5u8).map(|i| (vec![i; 10], to.clone())).collect();
    items.push((b"wrong".to_vec(), Address::Unix(UnixAddr::path("/tmp/x"))));
    items.push((b"after".to_vec(), to.clone()));
    let (tx, rx) = mpsc::channel();
    assert!(sock.send(Out::Batch(items, tx)).is_ok());
    let err = recv(&rx).expect_err("the sixth is of the wrong family");
    assert_eq!(err.sent, 5);
    assert!(matches!(err.error, DatagramError::WrongFamily { .. }));
    let mut buf = [0u8; 64];
    for i in 0..5u8 {
        let (n, _) = peer.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], &[i; 10]);
    }
    // Too big in the middle: the ones before it went.
    let (tx, rx) = mpsc::channel();
    let items = vec![
        (b"one".to_vec(), to.clone()),
        (vec![0u8; 70_000], to.clone()),
    ];
    assert!(sock.send(Out::Batch(items, tx)).is_ok());
    let err = recv(&rx).expect_err("the second is too big");
    assert_eq!(err.sent, 1);
    assert_eq!(err.error, DatagramError::TooBig { len: 70_000 });
    let (n, _) = peer.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"one");
}

/// IPv6 multicast on the loopback interface: joining and leaving by
/// interface index, a non-multicast group refused, hops and loopback
/// defaults and changes. (Delivery is not tested: Linux's loopback has no
/// IPv6 multicast route, so a send there is "network unreachable".)
#[test]
fn ipv6_multicast_join_leave_and_options_on_the_loopback_interface() {
    let rt = runtime(2);
    let (sock, rx) = udp(&rt, "[::]:0", DatagramOptions::new(), true);
    let lo = nix::net::if_::if_nametoindex("lo").expect("lo has an index");
    let group: std::net::Ipv6Addr = "ff02::1:3".parse().unwrap();
    let join = move |s: &mut Dgram<'_, '_, Probe>| {
        format!("{:?}", s.join_multicast_v6(group, lo).map_err(|e| e.kind()))
    };
    assert_eq!(call(&sock, &rx, join), "Ok(())");
    // A unicast address is not a group.
    assert_ne!(
        call(&sock, &rx, move |s| format!(
            "{:?}",
            s.join_multicast_v6("::1".parse().unwrap(), lo)
                .map_err(|e| e.kind())
        )),
        "Ok(())"
    );
    assert_eq!(
        call(&sock, &rx, move |s| format!(
            "{:?}",
            s.leave_multicast_v6(group, lo).map_err(|e| e.kind())
        )),
        "Ok(())"
    );
    // Leaving again: not a member.
    assert_ne!(
        call(&sock, &rx, move |s| format!(
            "{:?}",
            s.leave_multicast_v6(group, lo).map_err(|e| e.kind())
        )),
        "Ok(())"
    );
    assert_eq!(
        call(&sock, &rx, |s| format!(
            "{:?} {:?}",
            s.multicast_ttl().ok(),
            s.multicast_loop().ok()
        )),
        "Some(1) Some(true)"
    );
    assert_eq!(
        call(&sock, &rx, |s| format!(
            "{:?} {:?} {:?} {:?}",
            s.set_multicast_ttl(5).map_err(|e| e.kind()),
            s.set_multicast_loop(false).map_err(|e| e.kind()),
            s.multicast_ttl().ok(),
            s.multicast_loop().ok()
        )),
        "Ok(()) Ok(()) Some(5) Some(false)"
    );
    assert_eq!(
        call(&sock, &rx, move |s| format!(
            "{:?} {:?}",
            s.multicast_interface_v6().ok(),
            s.set_multicast_interface_v6(lo).map_err(|e| e.kind())
        )),
        "Some(0) Ok(())"
    );
    assert_eq!(
        call(&sock, &rx, |s| format!(
            "{:?}",
            s.multicast_interface_v6().ok()
        )),
        format!("Some({lo})")
    );
}
