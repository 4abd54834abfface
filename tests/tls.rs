//! TLS end to end on 127.0.0.1 with OS-chosen ports, weft against weft:
//! SNI and ALPN (and the default certificate without SNI, and no ALPN
//! overlap), client certificates, resumption (1.2 and 1.3), start_tls
//! normal and backwards, 64 MiB each way, bad certificates, garbage at
//! the listener, the handshake timeout on the manual clock, close_notify
//! versus truncation, a panic in the handshake callback, certificate
//! reload, a 100 MB flood into a slow protocol and a peer that never
//! reads (memory stays bounded, nothing is lost). (Real peers, `openssl` and `curl`, are in `tls_peers.rs`.)
#![cfg(feature = "tls")]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::time::Duration;

use common::certs;
use common::*;
use weft::io::tls::{
    self, rustls, ClientAuth, TlsClientBuilder, TlsInfo, TlsRole, TlsServerBuilder,
};
use weft::io::ConnectError;
use weft::prelude::*;

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// What a TLS echo server reports.
#[derive(Debug)]
enum Seen {
    Ready(TlsInfo),
    Closed(CloseReason),
}

/// Echoes; reports its handshake and its end; panics in `tls_ready` when
/// told to.
struct Echo {
    tx: Sender<Seen>,
    panic_on_ready: bool,
}

impl Protocol for Echo {
    type Msg = ();
    fn tls_ready(&mut self, _conn: &mut Conn<'_, '_, Self>, info: &TlsInfo) -> ActorResult {
        if self.panic_on_ready {
            panic!("the handshake callback panics");
        }
        let _ = self.tx.send(Seen::Ready(info.clone()));
        Ok(())
    }
    fn data(&mut self, conn: &mut Conn<'_, '_, Self>, data: &[u8]) -> ActorResult {
        conn.write(data)?;
        Ok(())
    }
    fn closed(&mut self, _conn: &mut Conn<'_, '_, Self>, reason: &CloseReason) {
        let _ = self.tx.send(Seen::Closed(reason.clone()));
    }
}

/// A client that collects what it reads and reports its end.
struct Collect {
    tx: Sender<Vec<u8>>,
    closed: Sender<CloseReason>,
    info: Sender<TlsInfo>,
}

impl Protocol for Collect {
    type Msg = Vec<u8>;
    fn tls_ready(&mut self, _conn: &mut Conn<'_, '_, Self>, info: &TlsInfo) -> ActorResult {
        let _ = self.info.send(info.clone());
        Ok(())
    }
    fn data(&mut self, _conn: &mut Conn<'_, '_, Self>, data: &[u8]) -> ActorResult {
        let _ = self.tx.send(data.to_vec());
        Ok(())
    }
    fn message(&mut self, conn: &mut Conn<'_, '_, Self>, msg: Vec<u8>) -> ActorResult {
        if msg == b"CLOSE" {
            conn.close();
        } else {
            conn.write(&msg)?;
        }
        Ok(())
    }
    fn closed(&mut self, _conn: &mut Conn<'_, '_, Self>, reason: &CloseReason) {
        let _ = self.closed.send(reason.clone());
    }
}

struct Client {
    conn: ConnRef<Collect>,
    data: mpsc::Receiver<Vec<u8>>,
    closed: mpsc::Receiver<CloseReason>,
    info: TlsInfo,
}

impl Client {
    fn read_exactly(&self, n: usize) -> Vec<u8> {
        let mut got = Vec::new();
        while got.len() < n {
            got.extend(recv(&self.data));
        }
        got
    }
}

fn connect(
    rt: &Runtime,
    addr: SocketAddr,
    options: ConnectOptions,
    config: Arc<rustls::ClientConfig>,
) -> Result<Client, ConnectError> {
    let (tx, data) = mpsc::channel();
    let (closed_tx, closed) = mpsc::channel();
    let (info_tx, info) = mpsc::channel();
    let protocol = Collect {
        tx,
        closed: closed_tx,
        info: info_tx,
    };
    let conn = connect_tls(rt.handle(), addr, options, config, protocol).wait(WAIT)?;
    Ok(Client {
        conn,
        data,
        closed,
        info: recv(&info),
    })
}

struct Server {
    listening: weft::io::Listening<Echo>,
    seen: mpsc::Receiver<Seen>,
}

fn serve(rt: &Runtime, config: Arc<rustls::ServerConfig>, options: ListenOptions) -> Server {
    serve_with(rt, config, options, false)
}

fn serve_with(
    rt: &Runtime,
    config: Arc<rustls::ServerConfig>,
    options: ListenOptions,
    panic_on_ready: bool,
) -> Server {
    let (tx, seen) = mpsc::channel();
    let listening = listen_tls(rt.handle(), loopback(), options, config, move || Echo {
        tx: tx.clone(),
        panic_on_ready,
    })
    .expect("listens");
    Server { listening, seen }
}

fn ready(seen: &mpsc::Receiver<Seen>) -> TlsInfo {
    match recv(seen) {
        Seen::Ready(info) => info,
        other => panic!("expected a handshake, got {other:?}"),
    }
}

fn closed(seen: &mpsc::Receiver<Seen>) -> CloseReason {
    loop {
        match recv(seen) {
            Seen::Closed(reason) => return reason,
            Seen::Ready(_) => {}
        }
    }
}

/// One CA, a default certificate for 127.0.0.1 and "default.test", and a
/// second for "other.test" chosen by SNI.
struct Pki {
    ca: certs::Ca,
    default: certs::Leaf,
    other: certs::Leaf,
}

fn pki() -> Pki {
    let ca = certs::ca("weft test CA");
    let default = ca.server(&["default.test", "127.0.0.1"]);
    let other = ca.server(&["other.test"]);
    Pki { ca, default, other }
}

impl Pki {
    fn server(&self) -> TlsServerBuilder {
        TlsServerBuilder::new()
            .cert(self.default.chain.clone(), self.default.key())
            .sni_cert("other.test", self.other.chain.clone(), self.other.key())
    }

    fn client(&self) -> TlsClientBuilder {
        TlsClientBuilder::new(tls::roots_from([self.ca.der()]).unwrap())
    }
}

#[test]
fn sni_picks_the_certificate_and_alpn_follows_the_server_preference() {
    let rt = runtime(2);
    let pki = pki();
    let server = serve(
        &rt,
        pki.server().alpn(["h2", "http/1.1"]).build().unwrap(),
        ListenOptions::new(),
    );
    let config = pki.client().alpn(["http/1.1", "h2"]).build().unwrap();
    let c = connect(
        &rt,
        server.listening.local_addr(),
        ConnectOptions::new().server_name("other.test"),
        config,
    )
    .expect("the handshake completes");
    // The client verified "other.test": the SNI certificate was served.
    assert_eq!(c.info.alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(c.info.peer_certificates[0], pki.other.chain[0]);
    let s = ready(&server.seen);
    assert_eq!(s.server_name.as_deref(), Some("other.test"));
    assert_eq!(s.alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(s.version, Some(rustls::ProtocolVersion::TLSv1_3));
    assert!(s.cipher_suite.is_some());
    assert!(!s.resumed);
    assert!(s.peer_certificates.is_empty(), "no client certificate");
    c.conn.send(b"hello over tls".to_vec()).unwrap();
    assert_eq!(c.read_exactly(14), b"hello over tls");
}

#[test]
fn a_client_without_sni_gets_the_default_certificate() {
    let rt = runtime(2);
    let pki = pki();
    let server = serve(&rt, pki.server().build().unwrap(), ListenOptions::new());
    // An IP target: rustls sends no SNI and verifies the IP SAN.
    let c = connect(
        &rt,
        server.listening.local_addr(),
        ConnectOptions::new(),
        pki.client().build().unwrap(),
    )
    .expect("the default certificate is served");
    assert_eq!(c.info.peer_certificates[0], pki.default.chain[0]);
    assert_eq!(ready(&server.seen).server_name, None);
}

#[test]
fn no_alpn_overlap_fails_the_handshake_with_a_clear_reason() {
    let rt = runtime(2);
    let pki = pki();
    let server = serve(
        &rt,
        pki.server().alpn(["h2"]).build().unwrap(),
        ListenOptions::new(),
    );
    let err = connect(
        &rt,
        server.listening.local_addr(),
        ConnectOptions::new(),
        pki.client().alpn(["imap"]).build().unwrap(),
    )
    .err()
    .expect("refused");
    match err {
        ConnectError::Tls { error, .. } => {
            assert!(
                error.to_string().contains("NoApplicationProtocol"),
                "{error}"
            );
        }
        other => panic!("expected a TLS error, got {other:?}"),
    }
}

#[test]
fn a_required_client_certificate_is_enforced_and_shown_to_the_protocol() {
    let rt = runtime(2);
    let pki = pki();
    let client_ca = certs::ca("weft client CA");
    let alice = client_ca.client("alice");
    let server = serve(
        &rt,
        pki.server()
            .client_auth(ClientAuth::Required(
                tls::roots_from([client_ca.der()]).unwrap(),
            ))
            .build()
            .unwrap(),
        ListenOptions::new(),
    );
    let addr = server.listening.local_addr();
    // Without a certificate: refused (TLS 1.3 reports it after the
    // client's side of the handshake, so the refusal may come as the
    // server's alert on the first read).
    let without = connect(
        &rt,
        addr,
        ConnectOptions::new(),
        pki.client().build().unwrap(),
    );
    match without {
        Err(ConnectError::Tls { .. }) => {}
        Ok(c) => {
            // The alert may already have closed it: a refused send is fine.
            let _ = c.conn.send(b"x".to_vec());
            match recv(&c.closed) {
                CloseReason::Tls(e) => {
                    assert!(e.to_string().contains("CertificateRequired"), "{e}")
                }
                other => panic!("expected a TLS alert, got {other:?}"),
            }
        }
        Err(other) => panic!("expected a TLS error, got {other:?}"),
    }
    // With one: the protocol sees the chain.
    let with = connect(
        &rt,
        addr,
        ConnectOptions::new(),
        pki.client()
            .client_cert(alice.chain.clone(), alice.key())
            .build()
            .unwrap(),
    )
    .expect("accepted");
    let info = loop {
        if let Seen::Ready(info) = recv(&server.seen) {
            break info;
        }
    };
    assert_eq!(info.peer_certificates[0], alice.chain[0]);
    with.conn.send(b"ok".to_vec()).unwrap();
    assert_eq!(with.read_exactly(2), b"ok");
}

#[test]
fn the_second_connection_resumes_on_tls_1_3_and_1_2() {
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let rt = runtime(2);
        let pki = pki();
        let server = serve(&rt, pki.server().build().unwrap(), ListenOptions::new());
        let config = pki.client().versions(&[version]).build().unwrap();
        let addr = server.listening.local_addr();
        let first = connect(&rt, addr, ConnectOptions::new(), config.clone()).unwrap();
        assert!(!first.info.resumed);
        // TLS 1.3 tickets come after the handshake: let them arrive.
        first.conn.send(b"1".to_vec()).unwrap();
        assert_eq!(first.read_exactly(1), b"1");
        assert!(!ready(&server.seen).resumed);
        let second = connect(&rt, addr, ConnectOptions::new(), config).unwrap();
        assert!(second.info.resumed, "{version:?}: client sees a resumption");
        assert!(ready(&server.seen).resumed, "{version:?}: server too");
        assert_eq!(second.info.version, Some(version.version));
    }
}

#[test]
fn bad_certificates_are_connect_errors() {
    let rt = runtime(2);
    let pki = pki();
    let stranger = certs::ca("someone else");
    let cases: Vec<(&str, certs::Leaf, &str)> = vec![
        (
            "untrusted",
            stranger.server(&["127.0.0.1"]),
            "UnknownIssuer",
        ),
        ("expired", pki.ca.expired_server(&["127.0.0.1"]), "Expired"),
        (
            "wrong name",
            pki.ca.server(&["elsewhere.test"]),
            "NotValidForName",
        ),
    ];
    for (what, leaf, expect) in cases {
        let server = serve(
            &rt,
            TlsServerBuilder::new()
                .cert(leaf.chain.clone(), leaf.key())
                .build()
                .unwrap(),
            ListenOptions::new(),
        );
        let err = connect(
            &rt,
            server.listening.local_addr(),
            ConnectOptions::new(),
            pki.client().build().unwrap(),
        )
        .err()
        .unwrap_or_else(|| panic!("{what}: connected"));
        match err {
            ConnectError::Tls { error, .. } => {
                assert!(
                    format!("{:?}", error.0).contains(expect),
                    "{what}: {error:?}"
                )
            }
            other => panic!("{what}: expected a TLS error, got {other:?}"),
        }
    }
}

#[test]
fn garbage_at_the_listener_closes_that_connection_only() {
    let rt = runtime(2);
    let pki = pki();
    let server = serve(&rt, pki.server().build().unwrap(), ListenOptions::new());
    let addr = server.listening.local_addr();
    let good = connect(
        &rt,
        addr,
        ConnectOptions::new(),
        pki.client().build().unwrap(),
    )
    .unwrap();
    let mut bad = TcpStream::connect(addr).unwrap();
    bad.set_read_timeout(Some(WAIT)).unwrap();
    bad.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    // The server answers with an alert (or nothing) and closes.
    let mut sink = Vec::new();
    let _ = bad.read_to_end(&mut sink);
    eventually("the bad connection is gone", || {
        server.listening.stats().active == 1
    });
    good.conn.send(b"still here".to_vec()).unwrap();
    assert_eq!(good.read_exactly(10), b"still here");
}

#[test]
fn a_silent_peer_is_closed_at_the_handshake_timeout_on_the_manual_clock() {
    let (rt, clock) = manual_runtime(2);
    let pki = pki();
    let server = serve(
        &rt,
        pki.server().build().unwrap(),
        ListenOptions::new().conn(ConnOptions::new().handshake_timeout(Duration::from_secs(30))),
    );
    let mut silent = TcpStream::connect(server.listening.local_addr()).unwrap();
    silent.set_read_timeout(Some(WAIT)).unwrap();
    eventually("accepted", || server.listening.stats().active == 1);
    clock.advance(Duration::from_secs(29));
    assert_eq!(server.listening.stats().active, 1, "not before the timeout");
    clock.advance(Duration::from_secs(2));
    let mut sink = Vec::new();
    let _ = silent.read_to_end(&mut sink);
    eventually("closed", || server.listening.stats().active == 0);
    assert_silent(&server.seen);
}

#[test]
fn close_sends_close_notify_and_a_bare_fin_is_truncation() {
    let rt = runtime(2);
    let pki = pki();
    let server = serve(&rt, pki.server().build().unwrap(), ListenOptions::new());
    let addr = server.listening.local_addr();
    // close(): the server sees a clean end (close_notify came first).
    let c = connect(
        &rt,
        addr,
        ConnectOptions::new(),
        pki.client().build().unwrap(),
    )
    .unwrap();
    ready(&server.seen);
    c.conn.send(b"CLOSE".to_vec()).unwrap();
    assert_eq!(closed(&server.seen), CloseReason::Clean);
    assert_eq!(recv(&c.closed), CloseReason::Clean);
    // A raw rustls client that drops TCP without close_notify.
    let config = pki.client().build().unwrap();
    let mut conn =
        rustls::ClientConnection::new(config, tls::server_name("127.0.0.1").unwrap()).unwrap();
    let mut sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).unwrap();
    }
    conn.writer().write_all(b"cut").unwrap();
    conn.complete_io(&mut sock).unwrap();
    sock.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(closed(&server.seen), CloseReason::Truncated);
}

#[test]
fn a_panic_in_the_handshake_callback_closes_only_that_connection() {
    let rt = runtime(2);
    let pki = pki();
    let panicking = serve_with(
        &rt,
        pki.server().build().unwrap(),
        ListenOptions::new(),
        true,
    );
    let healthy = serve(&rt, pki.server().build().unwrap(), ListenOptions::new());
    let r = connect(
        &rt,
        panicking.listening.local_addr(),
        ConnectOptions::new(),
        pki.client().build().unwrap(),
    );
    if let Ok(c) = r {
        // The client may finish its side first; then it sees the reset.
        let reason = recv(&c.closed);
        assert!(!reason.is_clean(), "{reason:?}");
    }
    eventually("the panicking connection ended", || {
        panicking.listening.stats().active == 0
    });
    assert_eq!(panicking.listening.stats().failed, 1);
    let ok = connect(
        &rt,
        healthy.listening.local_addr(),
        ConnectOptions::new(),
        pki.client().build().unwrap(),
    )
    .unwrap();
    ok.conn.send(b"fine".to_vec()).unwrap();
    assert_eq!(ok.read_exactly(4), b"fine");
}

#[test]
fn a_reloaded_configuration_serves_new_handshakes_and_spares_open_ones() {
    let rt = runtime(2);
    let pki = pki();
    let server = serve(&rt, pki.server().build().unwrap(), ListenOptions::new());
    let addr = server.listening.local_addr();
    let config = pki.client().no_resumption().build().unwrap();
    let before = connect(&rt, addr, ConnectOptions::new(), config.clone()).unwrap();
    assert_eq!(before.info.peer_certificates[0], pki.default.chain[0]);
    let renewed = pki.ca.server(&["127.0.0.1"]);
    assert!(server.listening.set_tls_config(
        TlsServerBuilder::new()
            .cert(renewed.chain.clone(), renewed.key())
            .build()
            .unwrap()
    ));
    let after = connect(&rt, addr, ConnectOptions::new(), config).unwrap();
    assert_eq!(after.info.peer_certificates[0], renewed.chain[0]);
    before.conn.send(b"old".to_vec()).unwrap();
    assert_eq!(before.read_exactly(3), b"old");
}

/// Sends `total` bytes of a pattern as the socket takes them (a pull
/// producer) and checks what comes back against the same pattern.
struct Pump {
    total: usize,
    sent: usize,
    got: usize,
    sums: (u64, u64),
    done: Sender<(usize, u64, u64)>,
}

fn pattern(offset: usize, len: usize) -> Vec<u8> {
    (offset..offset + len).map(|i| (i % 251) as u8).collect()
}

fn fold(sum: u64, data: &[u8]) -> u64 {
    data.iter()
        .fold(sum, |s, b| s.wrapping_mul(31).wrapping_add(u64::from(*b)))
}

impl Pump {
    fn produce(&mut self, conn: &mut Conn<'_, '_, Self>) -> ActorResult {
        if self.sent < self.total {
            let n = (self.total - self.sent).min(256 * 1024);
            let chunk = pattern(self.sent, n);
            self.sums.0 = fold(self.sums.0, &chunk);
            conn.write(&chunk)?;
            self.sent += n;
        }
        Ok(())
    }
}

impl Protocol for Pump {
    type Msg = ();
    fn connected(&mut self, conn: &mut Conn<'_, '_, Self>) -> ActorResult {
        self.produce(conn)
    }
    fn write_drained(&mut self, conn: &mut Conn<'_, '_, Self>) {
        let _ = self.produce(conn);
    }
    // A pull producer: it writes only when drained, and must keep reading
    // the echo meanwhile (the default would pause reading, and with the
    // echo server pausing too, neither side would move).
    fn write_paused(&mut self, _conn: &mut Conn<'_, '_, Self>) {}
    fn write_resumed(&mut self, _conn: &mut Conn<'_, '_, Self>) {}
    fn data(&mut self, _conn: &mut Conn<'_, '_, Self>, data: &[u8]) -> ActorResult {
        self.sums.1 = fold(self.sums.1, data);
        self.got += data.len();
        if self.got == self.total {
            let _ = self.done.send((self.got, self.sums.0, self.sums.1));
        }
        Ok(())
    }
}

/// 64 MiB each way through TLS with a checksum (weft on both ends: the
/// server echoes, the client streams and checks).
#[test]
fn sixty_four_mib_each_way_arrive_intact() {
    const TOTAL: usize = 64 << 20;
    let rt = runtime(2);
    let pki = pki();
    let server = serve(&rt, pki.server().build().unwrap(), ListenOptions::new());
    let (done, finished) = mpsc::channel();
    let pump = Pump {
        total: TOTAL,
        sent: 0,
        got: 0,
        sums: (0, 0),
        done,
    };
    let _conn = connect_tls(
        rt.handle(),
        server.listening.local_addr(),
        ConnectOptions::new(),
        pki.client().build().unwrap(),
        pump,
    )
    .wait(WAIT)
    .expect("connects");
    let (got, sent_sum, got_sum) = finished
        .recv_timeout(Duration::from_secs(120))
        .expect("all 64 MiB came back");
    assert_eq!(got, TOTAL);
    assert_eq!(sent_sum, got_sum, "the echo matches what was sent");
    assert_eq!(sent_sum, fold(0, &pattern(0, TOTAL)));
}

/// A line protocol with a STARTTLS upgrade, for either end: the side
/// that receives `STARTTLS` answers `GO` (in plaintext) and upgrades; the
/// other upgrades on `GO`, handing over what it read past it, and writes
/// `early` at once (buffered until the handshake is done).
struct Liner {
    side: &'static str,
    role: Option<TlsRole>,
    buf: Vec<u8>,
    tx: Sender<String>,
}

impl Protocol for Liner {
    type Msg = ();
    fn connected(&mut self, conn: &mut Conn<'_, '_, Self>) -> ActorResult {
        if self.side == "client" {
            conn.write(b"a\nSTARTTLS\n")?;
        }
        Ok(())
    }
    fn tls_ready(&mut self, conn: &mut Conn<'_, '_, Self>, _info: &TlsInfo) -> ActorResult {
        let _ = self.tx.send(format!("{} tls ready", self.side));
        if self.side == "client" {
            conn.write(b"b\n")?;
        }
        Ok(())
    }
    fn data(&mut self, conn: &mut Conn<'_, '_, Self>, data: &[u8]) -> ActorResult {
        self.buf.extend_from_slice(data);
        while let Some(end) = self.buf.iter().position(|b| *b == b'\n') {
            let line = String::from_utf8_lossy(&self.buf[..end]).to_string();
            let rest = self.buf[end + 1..].to_vec();
            self.buf.clear();
            let tls = conn.tls().is_some();
            match line.as_str() {
                "STARTTLS" => {
                    conn.write(b"GO\n")?;
                    conn.start_tls(self.role.take().expect("one upgrade"), &rest)?;
                    return Ok(());
                }
                "GO" => {
                    conn.start_tls(self.role.take().expect("one upgrade"), &rest)?;
                    conn.write(b"early\n")?;
                    return Ok(());
                }
                _ => {
                    let _ = self.tx.send(format!("{} got {line} tls={tls}", self.side));
                    if self.side == "server" {
                        conn.write(format!("echo {line}\n").as_bytes())?;
                    }
                }
            }
            self.buf = rest;
        }
        Ok(())
    }
}

fn upgrade_both_ways(server_is_tls_server: bool) {
    let rt = runtime(2);
    let pki = pki();
    let server_role = || TlsRole::Server(pki.server().build().unwrap());
    let client_role = || TlsRole::client(pki.client().build().unwrap(), "127.0.0.1").unwrap();
    let (server_role, client_role) = if server_is_tls_server {
        (server_role(), client_role())
    } else {
        (client_role(), server_role())
    };
    let (tx, rx) = mpsc::channel();
    let stx = tx.clone();
    let role = parking_lot::Mutex::new(Some(server_role));
    let listening = listen_tcp(rt.handle(), loopback(), ListenOptions::new(), move || {
        Liner {
            side: "server",
            role: role.lock().take(),
            buf: Vec::new(),
            tx: stx.clone(),
        }
    })
    .unwrap();
    let _client = connect_tcp(
        rt.handle(),
        listening.local_addr(),
        ConnectOptions::new(),
        Liner {
            side: "client",
            role: Some(client_role),
            buf: Vec::new(),
            tx,
        },
    )
    .wait(WAIT)
    .unwrap();
    let mut server = Vec::new();
    let mut client = Vec::new();
    while server.len() < 4 || client.len() < 4 {
        let line = recv(&rx);
        if line.starts_with("server") {
            server.push(line);
        } else {
            client.push(line);
        }
    }
    assert_eq!(
        server,
        [
            "server got a tls=false",
            "server tls ready",
            "server got early tls=true",
            "server got b tls=true",
        ]
    );
    assert_eq!(
        client,
        [
            "client got echo a tls=false",
            "client tls ready",
            "client got echo early tls=true",
            "client got echo b tls=true",
        ]
    );
}

#[test]
fn start_tls_upgrades_with_lines_before_and_after_in_order() {
    upgrade_both_ways(true);
}

#[test]
fn start_tls_backwards_the_tcp_client_is_the_tls_server() {
    // The listening side is the TLS client: its hello follows its `GO`
    // at once, so the other side reads both in one chunk and must hand
    // the hello over to TLS.
    upgrade_both_ways(false);
}

/// A blocking rustls client on a plain socket (the peer is not weft).
fn raw_client(pki: &Pki, addr: SocketAddr) -> (rustls::ClientConnection, TcpStream) {
    let config = pki.client().build().unwrap();
    let name = tls::server_name("127.0.0.1").unwrap();
    let tls = rustls::ClientConnection::new(config, name).unwrap();
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(120))).unwrap();
    (tls, s)
}

#[test]
fn a_100_mb_flood_through_tls_into_a_slow_protocol_stays_bounded_and_loses_nothing() {
    const TOTAL: usize = 100 * 1024 * 1024;
    let rt = runtime(2);
    let pki = pki();
    let sink = SlowSink::start(&rt);
    let (peak, total, sum) = (sink.peak.clone(), sink.total.clone(), sink.sum.clone());
    let l = listen_tls(
        rt.handle(),
        loopback(),
        ListenOptions::new(),
        pki.server().build().unwrap(),
        sink.factory(),
    )
    .unwrap();
    let (mut tls, mut s) = raw_client(&pki, l.local_addr());
    let mut stream = rustls::Stream::new(&mut tls, &mut s);
    let chunk: Vec<u8> = (0..64 * 1024).map(|i| (i * 7 % 251) as u8).collect();
    let mut expected_sum = 0u64;
    let mut sent = 0;
    while sent < TOTAL {
        let n = chunk.len().min(TOTAL - sent);
        stream.write_all(&chunk[..n]).unwrap();
        expected_sum += chunk[..n].iter().map(|&b| u64::from(b)).sum::<u64>();
        sent += n;
    }
    stream.conn.send_close_notify();
    stream.flush().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while total.load(Ordering::SeqCst) as usize != TOTAL {
        assert!(
            std::time::Instant::now() < deadline,
            "the consumer got only {} bytes",
            total.load(Ordering::SeqCst)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // Every byte arrived (the sum does not depend on how reads cut it).
    assert_eq!(sum.load(Ordering::SeqCst), expected_sum);
    // Bounded by the consumer's mailbox, not by the flood: the batch it
    // works through (at most 8), the 8 behind it and the one send held
    // while the connection is muted, each at most one read (64 KiB).
    let peak = peak.load(Ordering::SeqCst);
    assert!(
        peak <= (2 * 8 + 1) * 64 * 1024,
        "{peak} bytes were in flight inside the server"
    );
}

#[test]
fn a_tls_peer_that_never_reads_cannot_grow_the_write_buffer() {
    use std::io::ErrorKind;
    let rt = runtime(2);
    let pki = pki();
    let high = 64 * 1024;
    let server = serve(
        &rt,
        pki.server().build().unwrap(),
        ListenOptions::new().conn(ConnOptions::new().watermarks(high, 16 * 1024)),
    );
    let (mut tls, mut s) = raw_client(&pki, server.listening.local_addr());
    while tls.is_handshaking() {
        tls.complete_io(&mut s).unwrap();
    }
    s.set_nonblocking(true).unwrap();
    // Write until the whole path (our buffers, the kernel's, the server's
    // write buffer) is full and nothing moves for a while.
    let chunk = vec![b'f'; 64 * 1024];
    let mut written = 0usize;
    let mut stalled_since = std::time::Instant::now();
    while stalled_since.elapsed() < Duration::from_millis(300) {
        let mut moved = false;
        while tls.wants_write() {
            match tls.write_tls(&mut s) {
                Ok(_) => moved = true,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("write failed: {e}"),
            }
        }
        let n = tls.writer().write(&chunk).unwrap();
        written += n;
        if moved || n > 0 {
            stalled_since = std::time::Instant::now();
        } else {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(
            written < 1 << 30,
            "the server accepted a gigabyte without reading being paused"
        );
    }
    // Plaintext plus the records it became: one read's worth past the
    // high watermark, and a little framing.
    let peak = server.listening.stats().peak_write_buffer;
    assert!(
        peak <= high + 64 * 1024 + 1024,
        "the server buffered {peak} bytes for a peer that does not read"
    );
    // Nothing was lost: read it all back, then close_notify both ways.
    tls.send_close_notify();
    let mut back = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    'read: loop {
        assert!(
            std::time::Instant::now() < deadline,
            "{back} of {written} came back"
        );
        while tls.wants_write() {
            match tls.write_tls(&mut s) {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("write failed: {e}"),
            }
        }
        match tls.read_tls(&mut s) {
            Ok(0) => break,
            Ok(_) => {
                tls.process_new_packets().unwrap();
                loop {
                    match tls.reader().read(&mut buf) {
                        Ok(0) => break 'read,
                        Ok(n) => back += n,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) => panic!("read failed: {e}"),
                    }
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(1))
            }
            Err(e) => panic!("read failed: {e}"),
        }
    }
    assert_eq!(back, written);
    assert_eq!(closed(&server.seen), CloseReason::Clean);
}

#[test]
fn a_supervised_tls_listener_serves_its_slot_and_restarts_with_the_renewed_one() {
    use weft::io::{Listener, ListenerInfo, TlsConfigSlot};
    use weft::supervisor::{ChildSpec, Strategy, Supervisor, SupervisorMsg, SupervisorSpec};
    let rt = runtime(2);
    let pki = pki();
    let slot = TlsConfigSlot::new(pki.server().alpn(["first"]).build().unwrap());
    let (tx, seen) = mpsc::channel();
    let (info_tx, infos) = mpsc::channel::<ListenerInfo>();
    let for_child = slot.clone();
    let spec = SupervisorSpec::new(Strategy::OneForOne).child(ChildSpec::worker(
        "tls-listener",
        move || {
            let tx = tx.clone();
            let listener = Listener::new_tls(
                loopback(),
                ListenOptions::new(),
                for_child.clone(),
                move || Echo {
                    tx: tx.clone(),
                    panic_on_ready: false,
                },
            );
            let _ = info_tx.send(listener.info());
            listener
        },
    ));
    let sup = rt.handle().spawn(Supervisor::new(spec));
    // It binds when it starts; its info then has the address.
    let started = |infos: &mpsc::Receiver<ListenerInfo>| {
        let info = recv(infos);
        eventually("the listener is bound", || info.local_addr().is_some());
        info.local_addr().unwrap()
    };
    let client = pki.client().alpn(["first", "second"]).build().unwrap();
    let hello = |addr: SocketAddr| {
        let c = connect(&rt, addr, ConnectOptions::new(), client.clone()).expect("connects");
        // (Connections of a killed listener report their end first.)
        let server_side = loop {
            if let Seen::Ready(info) = recv(&seen) {
                break info;
            }
        };
        assert_eq!(server_side.alpn, c.info.alpn);
        c.conn.send(b"ping".to_vec()).unwrap();
        assert_eq!(c.read_exactly(4), b"ping");
        c
    };
    let addr = started(&infos);
    let first = hello(addr);
    assert_eq!(first.info.alpn.as_deref(), Some(&b"first"[..]));
    // Renewed through the slot: new handshakes use it, the open one goes on.
    slot.set(pki.server().alpn(["second"]).build().unwrap());
    let second = hello(addr);
    assert_eq!(second.info.alpn.as_deref(), Some(&b"second"[..]));
    first.conn.send(b"still".to_vec()).unwrap();
    assert_eq!(first.read_exactly(5), b"still");
    // Killed, it is restarted by its supervisor and serves the slot's
    // current configuration on its new address.
    let children = sup
        .ask_wait(SupervisorMsg::WhichChildren, WAIT)
        .expect("the supervisor answers");
    let listener = children[0].addr.clone().expect("the listener runs");
    assert!(listener.kill(ExitReason::Killed));
    let addr = started(&infos);
    let third = hello(addr);
    assert_eq!(third.info.alpn.as_deref(), Some(&b"second"[..]));
}

#[test]
fn a_tls_listener_keeps_the_connection_limit_idle_timeout_and_drain_of_tcp() {
    let (rt, clock) = manual_runtime(2);
    let pki = pki();
    let options = ListenOptions::new()
        .max_connections(1)
        .conn(ConnOptions::new().idle_timeout(Some(Duration::from_secs(10))));
    let server = serve(&rt, pki.server().build().unwrap(), options);
    let addr = server.listening.local_addr();
    let config = pki.client().build().unwrap();
    let first = connect(&rt, addr, ConnectOptions::new(), config.clone()).expect("connects");
    ready(&server.seen);
    // At the limit: the kernel connects a second, weft does not accept it,
    // so its handshake gets no answer.
    let (mut tls, mut s) = raw_client(&pki, addr);
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    assert!(
        tls.complete_io(&mut s).is_err(),
        "a second handshake was answered at the limit"
    );
    assert_eq!(server.listening.stats().accepted, 1);
    // The first ends: the second is accepted and its handshake completes.
    first.conn.send(b"CLOSE".to_vec()).unwrap();
    assert_eq!(closed(&server.seen), CloseReason::Clean);
    s.set_read_timeout(Some(WAIT)).unwrap();
    while tls.is_handshaking() {
        tls.complete_io(&mut s).unwrap();
    }
    ready(&server.seen);
    // Idle: closed at its timeout on the manual clock, not before.
    let mut waited = 0;
    while server.listening.stats().active > 0 {
        assert!(waited < 60, "no idle timeout after {waited} s");
        clock.advance(Duration::from_secs(1));
        waited += 1;
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(waited >= 10, "closed after {waited} s, before the timeout");
    assert_eq!(closed(&server.seen), CloseReason::IdleTimeout);
    // Drain: a stopped listener accepts no more but serves the open one.
    let last = connect(&rt, addr, ConnectOptions::new(), config).expect("connects");
    ready(&server.seen);
    assert!(server.listening.stop(StopMode::Drain));
    eventually("the listening socket is closed", || {
        TcpStream::connect(addr).is_err()
    });
    last.conn.send(b"still served".to_vec()).unwrap();
    assert_eq!(last.read_exactly(12), b"still served");
    assert!(!server.listening.wait_stopped(Duration::from_millis(50)));
    last.conn.send(b"CLOSE".to_vec()).unwrap();
    assert!(
        server.listening.wait_stopped(WAIT),
        "the drained listener did not exit"
    );
}
