//! TCP end to end on 127.0.0.1 with OS-chosen ports: echo correctness,
//! half-close, resets, connect errors and timeouts, idle timeout, the
//! connection limit, stop modes, a panicking handler among healthy ones,
//! flow control under a flood and a reader that never reads, graceful
//! shutdown, and 1,000 connections at once. (EMFILE is in `tcp_emfile.rs`,
//! in a child process of its own.)

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use common::*;
use proptest::prelude::*;
use weft::io::{ConnectError, ListenError, Listening};
use weft::prelude::*;

/// Echoes; reports how it ended; panics when it reads "panic".
struct Echo {
    closed: Option<Sender<CloseReason>>,
}

impl Protocol for Echo {
    type Msg = ();

    fn data(&mut self, conn: &mut Conn<'_, '_, Self>, data: &[u8]) -> ActorResult {
        if data.starts_with(b"panic") {
            panic!("told to panic");
        }
        conn.write(data)?;
        Ok(())
    }

    fn closed(&mut self, _conn: &mut Conn<'_, '_, Self>, reason: &CloseReason) {
        if let Some(tx) = &self.closed {
            let _ = tx.send(reason.clone());
        }
    }
}

fn echo() -> Echo {
    Echo { closed: None }
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn listen_echo(rt: &Runtime, options: ListenOptions) -> Listening<Echo> {
    listen_tcp(rt.handle(), loopback(), options, echo).expect("listens")
}

fn client(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connects");
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.set_write_timeout(Some(WAIT)).unwrap();
    s
}

fn read_exactly(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    s.read_exact(&mut buf).expect("reads the echo in time");
    buf
}

/// Waits (bounded) until `cond` holds.
fn shared_echo_server() -> SocketAddr {
    static SERVER: OnceLock<(Runtime, SocketAddr)> = OnceLock::new();
    SERVER
        .get_or_init(|| {
            let rt = runtime(2);
            let addr = listen_echo(&rt, ListenOptions::new()).local_addr();
            (rt, addr)
        })
        .1
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Whatever the sizes and however the writes are split, every byte
    /// comes back in order.
    #[test]
    fn echo_returns_every_byte_in_order(
        data in proptest::collection::vec(any::<u8>(), 0..300_000),
        mut splits in proptest::collection::vec(0usize..300_000, 0..8),
    ) {
        let mut s = client(shared_echo_server());
        let mut reader = s.try_clone().unwrap();
        let len = data.len();
        let expected = data.clone();
        let got = std::thread::spawn(move || {
            let mut got = Vec::with_capacity(len);
            reader.read_to_end(&mut got).map(|_| got)
        });
        splits.retain(|&p| p < len);
        splits.sort_unstable();
        let mut at = 0;
        for p in splits.into_iter().chain([len]) {
            s.write_all(&data[at..p]).unwrap();
            at = p;
        }
        s.shutdown(Shutdown::Write).unwrap();
        let got = got.join().unwrap().expect("reads the echo in time");
        prop_assert_eq!(got.len(), expected.len());
        prop_assert!(got == expected);
    }
}

/// Counts what it reads; at the end of input, answers with the count
/// (after the peer's half-close) and closes.
struct Count(usize);

impl Protocol for Count {
    type Msg = ();
    fn data(&mut self, _conn: &mut Conn<'_, '_, Self>, data: &[u8]) -> ActorResult {
        self.0 += data.len();
        Ok(())
    }
    fn read_closed(&mut self, conn: &mut Conn<'_, '_, Self>) -> ActorResult {
        conn.write(format!("{} bytes\n", self.0).as_bytes())?;
        conn.close();
        Ok(())
    }
}

#[test]
fn half_close_answer_after_the_peers_end() {
    let rt = runtime(2);
    let l = listen_tcp(rt.handle(), loopback(), ListenOptions::new(), || Count(0)).unwrap();
    let mut s = client(l.local_addr());
    s.write_all(&[7u8; 100_000]).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert_eq!(answer, "100000 bytes\n");
}

#[test]
fn reset_by_peer_is_reported_and_counted() {
    let rt = runtime(2);
    let (tx, rx) = mpsc::channel();
    let tx = parking_lot::Mutex::new(tx);
    let l = listen_tcp(rt.handle(), loopback(), ListenOptions::new(), move || {
        Echo {
            closed: Some(tx.lock().clone()),
        }
    })
    .unwrap();
    let mut s = client(l.local_addr());
    s.write_all(b"hi").unwrap();
    assert_eq!(read_exactly(&mut s, 2), b"hi");
    socket2::SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(s); // RST
    assert_eq!(recv(&rx), CloseReason::PeerReset);
    eventually("the connection is counted closed", || {
        l.stats().closed == 1 && l.stats().active == 0
    });
}

#[test]
fn a_panicking_handler_among_healthy_ones() {
    let rt = runtime(2);
    let l = listen_echo(&rt, ListenOptions::new());
    let mut healthy: Vec<TcpStream> = (0..8).map(|_| client(l.local_addr())).collect();
    let mut bad = client(l.local_addr());
    for (i, s) in healthy.iter_mut().enumerate() {
        s.write_all(format!("hello {i}").as_bytes()).unwrap();
    }
    bad.write_all(b"panic").unwrap();
    // The failed connection is reset (or closed) and counted...
    let mut buf = [0u8; 16];
    match bad.read(&mut buf) {
        Ok(0) => {}
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset),
        Ok(n) => panic!("a panicked handler answered {n} bytes"),
    }
    eventually("the panic is counted", || l.stats().failed == 1);
    // ...and nobody else notices.
    for (i, s) in healthy.iter_mut().enumerate() {
        let want = format!("hello {i}");
        assert_eq!(read_exactly(s, want.len()), want.as_bytes());
        s.write_all(b"again").unwrap();
        assert_eq!(read_exactly(s, 5), b"again");
    }
    assert_eq!(l.stats().active, 8);
    assert_eq!(l.stats().failed, 1);
}

#[test]
fn connect_refused_bad_address_and_unresolvable_names_are_errors() {
    let rt = runtime(1);
    // A port nobody listens on: bind one, then let it go.
    let port = std::net::TcpListener::bind(loopback())
        .unwrap()
        .local_addr()
        .unwrap();
    let err = connect_tcp(rt.handle(), port, ConnectOptions::new(), echo())
        .wait(WAIT)
        .unwrap_err();
    assert_eq!(err, ConnectError::Refused(port.into()));

    for bad in [
        "127.0.0.1",
        "127.0.0.1:99999",
        ":80",
        "::1:80",
        "host name:80",
    ] {
        let err = connect_tcp(rt.handle(), bad, ConnectOptions::new(), echo())
            .wait(WAIT)
            .unwrap_err();
        assert!(
            matches!(err, ConnectError::BadAddress { .. }),
            "{bad}: {err:?}"
        );
    }

    // Name resolution fails (a fixed resolver: tests never ask real DNS).
    let resolver: weft::io::Resolver =
        Arc::new(|_host, _port| Err(std::io::Error::other("no such host")));
    let err = connect_tcp(
        rt.handle(),
        "nowhere.invalid:80",
        ConnectOptions::new().resolver(resolver),
        echo(),
    )
    .wait(WAIT)
    .unwrap_err();
    assert!(
        matches!(&err, ConnectError::Unresolvable { name, .. } if name == "nowhere.invalid:80"),
        "{err:?}"
    );
}

/// Remembers what it read; forwards it to the test.
struct Client(Sender<Vec<u8>>);

impl Protocol for Client {
    type Msg = Vec<u8>;
    fn data(&mut self, _conn: &mut Conn<'_, '_, Self>, data: &[u8]) -> ActorResult {
        let _ = self.0.send(data.to_vec());
        Ok(())
    }
    fn message(&mut self, conn: &mut Conn<'_, '_, Self>, msg: Vec<u8>) -> ActorResult {
        conn.write(&msg)?;
        Ok(())
    }
}

#[test]
fn connect_by_name_resolved_off_the_workers_then_talk() {
    let rt = runtime(2);
    let l = listen_echo(&rt, ListenOptions::new());
    let (tx, rx) = mpsc::channel();
    let target = format!("localhost:{}", l.local_addr().port());
    // Resolve "localhost" to the loopback address only (IPv6 may be off).
    let resolver: weft::io::Resolver = Arc::new(|host, port| {
        assert_eq!(host, "localhost");
        Ok(vec![SocketAddr::from(([127, 0, 0, 1], port))])
    });
    let connecting = connect_tcp(
        rt.handle(),
        target,
        ConnectOptions::new().resolver(resolver),
        Client(tx),
    );
    // Sent before the connection opened: held, then delivered in order.
    connecting.conn().send(b"early ".to_vec()).unwrap();
    let conn = connecting.wait(WAIT).expect("connects");
    conn.send(b"late".to_vec()).unwrap();
    let mut got = Vec::new();
    while got.len() < 10 {
        got.extend(recv(&rx));
    }
    assert_eq!(got, b"early late");
    assert!(conn.close());
    eventually("the client connection ends", || conn.is_closed());
}

#[test]
fn connect_with_a_bind_address() {
    let rt = runtime(1);
    let server = std::net::TcpListener::bind(loopback()).unwrap();
    let (tx, _rx) = mpsc::channel();
    let conn = connect_tcp(
        rt.handle(),
        server.local_addr().unwrap(),
        ConnectOptions::new().bind("127.0.0.1:0".parse().unwrap()),
        Client(tx),
    )
    .wait(WAIT)
    .expect("connects from a bound address");
    let (_accepted, peer) = server.accept().unwrap();
    assert_eq!(peer.ip(), std::net::Ipv4Addr::LOCALHOST);
    conn.abort();
}

#[test]
fn connect_times_out_against_a_full_backlog() {
    let rt = runtime(1);
    // Backlog 0 holds one connection; nobody accepts; later SYNs are
    // dropped, so the next connect can only time out.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&loopback().into()).unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    let mut outcome = None;
    for _ in 0..8 {
        let (tx, _rx) = mpsc::channel();
        let result = connect_tcp(
            rt.handle(),
            addr,
            ConnectOptions::new().timeout(Duration::from_millis(300)),
            Client(tx),
        )
        .wait(WAIT);
        match result {
            Ok(conn) => fillers.push(conn), // still room in the backlog
            Err(e) => {
                outcome = Some(e);
                break;
            }
        }
    }
    assert_eq!(outcome, Some(ConnectError::TimedOut));
}

#[test]
fn idle_connections_close_on_the_manual_clock() {
    let (rt, clock) = manual_runtime(2);
    let opts =
        ListenOptions::new().conn(ConnOptions::new().idle_timeout(Some(Duration::from_secs(10))));
    let l = listen_echo(&rt, opts);
    let mut s = client(l.local_addr());
    s.write_all(b"x").unwrap();
    assert_eq!(read_exactly(&mut s, 1), b"x");
    s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let mut waited = 0;
    let mut buf = [0u8; 8];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => panic!("unexpected {n} bytes"),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("unexpected error {e}"),
        }
        assert!(waited < 60, "no idle timeout after {waited} s");
        clock.advance(Duration::from_secs(1));
        waited += 1;
    }
    assert!(
        waited >= 10,
        "closed after {waited} s, before the idle timeout"
    );
}

#[test]
fn max_connections_pauses_accepting_until_one_ends() {
    let rt = runtime(2);
    let l = listen_echo(&rt, ListenOptions::new().max_connections(2));
    let mut a = client(l.local_addr());
    let mut b = client(l.local_addr());
    a.write_all(b"a").unwrap();
    b.write_all(b"b").unwrap();
    assert_eq!(read_exactly(&mut a, 1), b"a");
    assert_eq!(read_exactly(&mut b, 1), b"b");
    // The third is connected by the kernel but not accepted.
    let mut c = client(l.local_addr());
    c.write_all(b"c").unwrap();
    c.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 1];
    assert!(c.read(&mut buf).is_err(), "a third connection was served");
    assert_eq!(l.stats().accepted, 2);
    assert!(l.stats().at_limit);
    drop(a);
    c.set_read_timeout(Some(WAIT)).unwrap();
    assert_eq!(read_exactly(&mut c, 1), b"c");
    assert_eq!(l.stats().accepted, 3);
}

#[test]
fn binding_a_busy_address_is_an_error() {
    let rt = runtime(1);
    let l = listen_echo(&rt, ListenOptions::new());
    let err = listen_tcp(rt.handle(), l.local_addr(), ListenOptions::new(), echo)
        .expect_err("the port is taken");
    assert!(
        matches!(&err, ListenError::Bind { source, .. } if source.kind() == ErrorKind::AddrInUse),
        "{err}"
    );
}

#[test]
fn stop_close_ends_connections_and_stop_drain_waits_for_them() {
    let rt = runtime(2);
    // Close: the open connection gets its end; the port is released.
    let l = listen_echo(&rt, ListenOptions::new());
    let mut s = client(l.local_addr());
    s.write_all(b"1").unwrap();
    assert_eq!(read_exactly(&mut s, 1), b"1");
    assert!(l.stop(StopMode::Close));
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    assert!(l.wait_stopped(WAIT));
    assert!(TcpStream::connect(l.local_addr()).is_err());

    // Drain: connections go on until they end; then the listener exits.
    let l = listen_echo(&rt, ListenOptions::new());
    let mut s = client(l.local_addr());
    s.write_all(b"2").unwrap();
    assert_eq!(read_exactly(&mut s, 1), b"2");
    assert!(l.stop(StopMode::Drain));
    eventually("the listening socket is closed", || {
        TcpStream::connect(l.local_addr()).is_err()
    });
    s.write_all(b"still served").unwrap();
    assert_eq!(read_exactly(&mut s, 12), b"still served");
    assert!(!l.wait_stopped(Duration::from_millis(50)));
    drop(s);
    assert!(l.wait_stopped(WAIT), "the drained listener did not exit");
}

#[test]
fn a_100_mb_flood_into_a_slow_protocol_stays_bounded_and_loses_nothing() {
    const TOTAL: usize = 100 * 1024 * 1024;
    let rt = runtime(2);
    let sink = SlowSink::start(&rt);
    let (peak, total, sum) = (sink.peak.clone(), sink.total.clone(), sink.sum.clone());
    let l = listen_tcp(
        rt.handle(),
        loopback(),
        ListenOptions::new(),
        sink.factory(),
    )
    .unwrap();
    let mut s = client(l.local_addr());
    s.set_write_timeout(Some(Duration::from_secs(120))).unwrap();
    let chunk: Vec<u8> = (0..64 * 1024).map(|i| (i * 7 % 251) as u8).collect();
    let mut expected_sum = 0u64;
    let mut sent = 0;
    while sent < TOTAL {
        let n = chunk.len().min(TOTAL - sent);
        s.write_all(&chunk[..n]).unwrap();
        expected_sum += chunk[..n].iter().map(|&b| b as u64).sum::<u64>();
        sent += n;
    }
    drop(s);
    eventually_long("the consumer has every byte", || {
        total.load(Ordering::SeqCst) as usize == TOTAL
    });
    // Every byte arrived (the sum does not depend on how reads cut it).
    assert_eq!(sum.load(Ordering::SeqCst), expected_sum);
    let peak = peak.load(Ordering::SeqCst);
    // Bounded by the consumer's mailbox, not by the flood: the batch the
    // consumer is working through (at most 8), the 8 waiting behind it and
    // the one send held back while the connection is muted, each at most
    // one read (64 KiB).
    assert!(
        peak <= (2 * 8 + 1) * 64 * 1024,
        "{peak} bytes were in flight inside the server"
    );
}

fn eventually_long(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_reader_that_never_reads_cannot_grow_the_write_buffer() {
    let rt = runtime(2);
    let high = 64 * 1024;
    let l = listen_echo(
        &rt,
        ListenOptions::new().conn(ConnOptions::new().watermarks(high, 16 * 1024)),
    );
    let mut s = client(l.local_addr());
    s.set_nonblocking(true).unwrap();
    // Write until the whole path (our buffer, the server's kernel buffers
    // and its write buffer) is full and nothing moves for a while.
    let chunk = vec![b'f'; 64 * 1024];
    let mut written = 0usize;
    let mut stalled_since = Instant::now();
    while stalled_since.elapsed() < Duration::from_millis(300) {
        match s.write(&chunk) {
            Ok(n) => {
                written += n;
                stalled_since = Instant::now();
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => panic!("write failed: {e}"),
        }
        assert!(
            written < 1 << 30,
            "the server accepted a gigabyte without reading being paused"
        );
    }
    let peak = l.stats().peak_write_buffer;
    assert!(
        peak <= high + 64 * 1024,
        "the server buffered {peak} bytes for a peer that does not read"
    );
    // Nothing was lost: read it all back.
    s.set_nonblocking(false).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut back = Vec::new();
    s.read_to_end(&mut back).unwrap();
    assert_eq!(back.len(), written);
}

/// Writes `n` bytes as soon as it is connected.
struct Blurt(usize);

impl Protocol for Blurt {
    type Msg = ();
    fn connected(&mut self, conn: &mut Conn<'_, '_, Self>) -> ActorResult {
        let data: Vec<u8> = (0..self.0).map(|i| (i % 256) as u8).collect();
        conn.write(&data)?;
        Ok(())
    }
    fn data(&mut self, _conn: &mut Conn<'_, '_, Self>, _data: &[u8]) -> ActorResult {
        Ok(())
    }
}

#[test]
fn graceful_shutdown_flushes_pending_writes() {
    // More than the kernel's socket buffers hold, so some must wait in
    // the connection's own buffer when the shutdown comes.
    const N: usize = 24 * 1024 * 1024;
    let rt = runtime(2);
    let opts = ListenOptions::new().conn(ConnOptions::new().max_write_buffer(2 * N));
    let l = listen_tcp(rt.handle(), loopback(), opts, || Blurt(N)).unwrap();
    let mut s = client(l.local_addr());
    eventually("the connection is open and has written", || {
        l.stats().peak_write_buffer > 0
    });
    let stopper = std::thread::spawn(move || rt.shutdown_and_wait());
    std::thread::sleep(Duration::from_millis(50));
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    stopper.join().unwrap().expect("shutdown completes in time");
    assert_eq!(got.len(), N, "the shutdown cut pending writes");
    assert!(got.iter().enumerate().all(|(i, &b)| b == (i % 256) as u8));
}

/// Raises the soft descriptor limit to `want`, or as far as the hard
/// limit allows if that still leaves `need`.
fn raise_fd_limit(want: u64, need: u64) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if soft < want {
        let target = want.min(hard);
        assert!(
            target >= need,
            "this test needs {need} file descriptors; the hard limit is {hard}"
        );
        setrlimit(Resource::RLIMIT_NOFILE, target, hard).unwrap();
    }
}

#[test]
fn a_thousand_connections_echo_at_once() {
    const N: usize = 1000;
    // Both ends of every connection live in this process.
    raise_fd_limit(4 * N as u64, 2 * N as u64 + 200);
    let rt = runtime(2);
    let l = listen_echo(&rt, ListenOptions::new());
    let mut clients: Vec<TcpStream> = (0..N).map(|_| client(l.local_addr())).collect();
    for (i, s) in clients.iter_mut().enumerate() {
        s.write_all(format!("{i:06}").as_bytes()).unwrap();
    }
    for (i, s) in clients.iter_mut().enumerate() {
        assert_eq!(read_exactly(s, 6), format!("{i:06}").as_bytes());
    }
    eventually("all are active", || l.stats().active == N);
    drop(clients);
    eventually("all are closed", || l.stats().active == 0);
    assert_eq!(l.stats().closed, N as u64);
    assert_eq!(l.stats().failed, 0);
    // Every connection actor is gone: only the listener and its
    // connection supervisor remain.
    eventually("the connection actors have exited", || {
        weft::actors::live_actors(rt.handle()) == 2
    });
}

#[test]
fn connect_by_name_with_the_system_resolver() {
    let rt = runtime(2);
    let l = listen_echo(&rt, ListenOptions::new());
    let (tx, rx) = mpsc::channel();
    // "localhost" comes from /etc/hosts; if it also names ::1, where
    // nobody listens, the next address is tried.
    let conn = connect_tcp(
        rt.handle(),
        format!("localhost:{}", l.local_addr().port()),
        ConnectOptions::new(),
        Client(tx),
    )
    .wait(WAIT)
    .expect("localhost resolves and connects");
    conn.send(b"by name".to_vec()).unwrap();
    let mut got = Vec::new();
    while got.len() < 7 {
        got.extend(recv(&rx));
    }
    assert_eq!(got, b"by name");
}

#[test]
fn reuse_port_lets_several_listeners_share_a_port() {
    let rt = runtime(2);
    let opts = ListenOptions::new().reuse_port(true);
    let a = listen_echo(&rt, opts.clone());
    let b = listen_tcp(rt.handle(), a.local_addr(), opts, echo).expect("shares the port");
    assert_eq!(a.local_addr(), b.local_addr());
    // The kernel spreads connections over both; all are served.
    let mut clients: Vec<TcpStream> = (0..32).map(|_| client(a.local_addr())).collect();
    for s in clients.iter_mut() {
        s.write_all(b"rp").unwrap();
        assert_eq!(read_exactly(s, 2), b"rp");
    }
    assert_eq!(a.stats().accepted + b.stats().accepted, 32);
}

#[test]
fn several_listeners_on_one_port_share_the_work_and_stop_together() {
    let rt = runtime(2);
    let l = listen_echo(&rt, ListenOptions::new().listeners(3));
    assert_eq!(l.addrs().len(), 3);
    let mut clients: Vec<TcpStream> = (0..60).map(|_| client(l.local_addr())).collect();
    for s in clients.iter_mut() {
        s.write_all(b"ml").unwrap();
        assert_eq!(read_exactly(s, 2), b"ml");
    }
    // Counters are summed over the three.
    assert_eq!(l.stats().accepted, 60);
    assert_eq!(l.stats().active, 60);
    assert!(l.stop(StopMode::Close));
    for s in clients.iter_mut() {
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).unwrap();
    }
    assert!(l.wait_stopped(WAIT));
    assert!(TcpStream::connect(l.local_addr()).is_err());
}

/// Records what it reads and how it closed.
struct Greeted(Sender<String>);
impl Protocol for Greeted {
    type Msg = ();
    fn data(&mut self, _conn: &mut Conn<'_, '_, Self>, data: &[u8]) -> ActorResult {
        let _ = self.0.send(String::from_utf8_lossy(data).into_owned());
        Ok(())
    }
    fn closed(&mut self, _conn: &mut Conn<'_, '_, Self>, reason: &CloseReason) {
        let _ = self.0.send(format!("closed: {reason:?}"));
    }
}

/// Holds the only worker: until told (`Gate`), or for a moment (`Nap`).
struct Blocker;
enum BlockerMsg {
    Gate(mpsc::Sender<()>, mpsc::Receiver<()>),
    Nap,
}
impl Actor for Blocker {
    type Msg = BlockerMsg;
    fn handle(&mut self, msg: BlockerMsg, _ctx: &mut Ctx<'_, Self>) -> ActorResult {
        match msg {
            BlockerMsg::Gate(entered, open) => {
                entered.send(())?;
                open.recv_timeout(WAIT)?;
            }
            BlockerMsg::Nap => std::thread::sleep(Duration::from_millis(200)),
        }
        Ok(())
    }
}

/// A server that greets and closes at once: its bytes and its FIN come
/// with the very event that completes the client's connect (the worker
/// was busy meanwhile), and the client still reads them and closes.
#[test]
fn bytes_that_arrive_with_the_connect_event_are_read() {
    let rt = runtime(1);
    let server = std::net::TcpListener::bind(loopback()).unwrap();
    let addr = server.local_addr().unwrap();
    let greeter = std::thread::spawn(move || {
        let (mut s, _) = server.accept().unwrap();
        s.write_all(b"hello\n").unwrap();
    });
    // The worker runs the connect, then naps before it can see the
    // connect's event: gate it while both are queued, in that order.
    // (Two actors: a message to the gate itself would be handled in the
    // gate's own turn, before the connect.)
    let (gate, napper) = (rt.handle().spawn(Blocker), rt.handle().spawn(Blocker));
    let (entered_tx, entered) = mpsc::channel();
    let (open, open_rx) = mpsc::channel();
    gate.send(BlockerMsg::Gate(entered_tx, open_rx)).unwrap();
    recv(&entered);
    let (tx, rx) = mpsc::channel();
    let connecting = connect_tcp(rt.handle(), addr, ConnectOptions::new(), Greeted(tx));
    napper.send(BlockerMsg::Nap).unwrap();
    open.send(()).unwrap();
    greeter.join().unwrap();
    let conn = connecting.wait(WAIT).expect("connects");
    assert_eq!(recv(&rx), "hello\n");
    assert_eq!(recv(&rx), "closed: Clean");
    eventually("the connection actor exits", || conn.is_closed());
}
