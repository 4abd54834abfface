//! The TLS rows of the `net` group: weft's `tls_echo` example, a
//! tokio-rustls echo server (same rustls version, same `ring` provider,
//! same session settings: stateful cache plus stateless tickets) and
//! Twisted's `listenSSL` (pyOpenSSL) serve one ECDSA P-256 certificate
//! signed by a test CA; the server is pinned to the server core, this
//! child (the load generator) to the other.
//!
//! The load generator is a rustls client that does not verify the
//! server's certificate (as `openssl s_time` and h2load do not): its
//! cost per handshake stays below the server's, so the rows measure the
//! server. Every handshake ends with a one-byte echo, so the server has
//! finished its side (and sent its session tickets) before it is counted.
//!
//! Figures: `tls-handshake` new full handshakes/s and `tls-resumed`
//! resumed handshakes/s (each with `-cpu`: server CPU per handshake);
//! `tls-echo-rr` requests/s over 50 connections with 64-byte messages
//! (with `-p99` and `-cpu`); `tls-stream` MB/s echoed over 8 connections
//! (with `-cpu`: server CPU µs per MB);
//! `tls-idle-bytes` server RSS growth per idle TLS connection.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream as MioStream;
use mio::{Events, Interest, Poll, Token};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, HandshakeKind, SignatureScheme,
};

use crate::emit;
use crate::net::{connect, percentile, secs, set_linger_zero, Kind, Server};

/// Load-generator threads for the handshake rows (on one core: enough to
/// keep the server busy while some wait for the network).
const HANDSHAKE_THREADS: usize = 4;
/// Idle TLS connections held for `tls-idle`.
const IDLE_CONNS: usize = 5_000;

/// The certificate files for one child run, removed when dropped.
struct Pki {
    dir: PathBuf,
    chain: PathBuf,
    key: PathBuf,
}

impl Pki {
    fn make() -> Pki {
        use rcgen::{
            BasicConstraints, CertificateParams, DistinguishedName, DnType,
            ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
        };
        // Names set explicitly: rcgen's default subject makes a leaf look
        // self-issued, which OpenSSL rejects.
        let dn = |name: &str| {
            let mut dn = DistinguishedName::new();
            dn.push(DnType::OrganizationName, "weft bench");
            dn.push(DnType::CommonName, name);
            dn
        };
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.distinguished_name = dn("weft bench CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate().unwrap();
        let ca = ca.self_signed(&ca_key).unwrap();
        let mut leaf =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        leaf.distinguished_name = dn("localhost");
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().unwrap();
        let leaf = leaf.signed_by(&key, &ca, &ca_key).unwrap();
        let dir = std::env::temp_dir().join(format!("weft-bench-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let chain = dir.join("chain.pem");
        let key_file = dir.join("key.pem");
        std::fs::write(&chain, leaf.pem() + &ca.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        Pki {
            dir,
            chain,
            key: key_file,
        }
    }

    fn args(&self) -> Vec<String> {
        vec![
            self.chain.display().to_string(),
            self.key.display().to_string(),
        ]
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Accepts any certificate and signature: the load generator measures the
/// server, it does not authenticate it.
#[derive(Debug)]
struct NoVerify(Vec<SignatureScheme>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.clone()
    }
}

fn client_config(resume: bool) -> Arc<ClientConfig> {
    let provider = provider();
    let schemes = provider
        .signature_verification_algorithms
        .supported_schemes();
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoVerify(schemes)))
        .with_no_client_auth();
    if !resume {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Arc::new(config)
}

fn server_name() -> ServerName<'static> {
    ServerName::IpAddress(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST).into())
}

/// A blocking TLS connection: connect, handshake, echo `msg` once.
fn open(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
    msg: &[u8],
) -> std::io::Result<(TcpStream, ClientConnection)> {
    let mut s = connect(addr);
    let mut tls =
        ClientConnection::new(config.clone(), server_name()).map_err(std::io::Error::other)?;
    while tls.is_handshaking() {
        tls.complete_io(&mut s)?;
    }
    tls.writer().write_all(msg)?;
    while tls.wants_write() {
        tls.write_tls(&mut s)?;
    }
    let mut got = 0;
    let mut buf = [0u8; 256];
    while got < msg.len() {
        match tls.reader().read(&mut buf[..msg.len() - got]) {
            Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if tls.read_tls(&mut s)? == 0 {
                    return Err(ErrorKind::UnexpectedEof.into());
                }
                tls.process_new_packets().map_err(std::io::Error::other)?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok((s, tls))
}

/// Runs one TLS (job, system) in this child.
pub fn run(job: &str, system: &str) -> bool {
    let pki = Pki::make();
    let Some(server) = Server::start(system, Kind::Tls, &pki.args()) else {
        return false;
    };
    // A first handshake: the server is up and its certificate works.
    if let Err(e) = open(server.addr, &client_config(false), b"w") {
        eprintln!("tls: {system} does not complete a handshake: {e}");
        return false;
    }
    match job {
        "tls-handshake" => handshakes(&server),
        "tls-echo-rr" => echo_rr(&server),
        "tls-stream" => stream(&server),
        "tls-idle" => idle(&server),
        _ => return false,
    }
    true
}

/// Handshakes per second for `dur`, from several threads; returns the
/// count and how many of them were resumed.
fn handshake_loop(addr: SocketAddr, config: Arc<ClientConfig>, dur: Duration) -> (u64, u64) {
    let end = Instant::now() + dur;
    let threads: Vec<_> = (0..HANDSHAKE_THREADS)
        .map(|_| {
            let config = config.clone();
            std::thread::spawn(move || {
                let (mut n, mut resumed) = (0u64, 0u64);
                while Instant::now() < end {
                    let (s, tls) = open(addr, &config, b"h").expect("a benchmark handshake");
                    n += 1;
                    if tls.handshake_kind() == Some(HandshakeKind::Resumed) {
                        resumed += 1;
                    }
                    // Reset instead of TIME_WAIT: the client's ports last.
                    let _ = set_linger_zero(&s);
                }
                (n, resumed)
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().unwrap())
        .fold((0, 0), |(a, b), (n, r)| (a + n, b + r))
}

fn handshakes(server: &Server) {
    let dur = Duration::from_secs(secs());
    let cpu0 = server.cpu_secs();
    let (full, resumed) = handshake_loop(server.addr, client_config(false), dur);
    let cpu = server.cpu_secs() - cpu0;
    assert_eq!(resumed, 0, "resumption was off");
    emit("tls-handshake", "per_s", full as f64 / dur.as_secs_f64());
    emit("tls-handshake-cpu", "us", cpu * 1e6 / full.max(1) as f64);

    let config = client_config(true);
    // Prime the client's session cache.
    open(server.addr, &config, b"p").expect("a priming handshake");
    let cpu0 = server.cpu_secs();
    let (n, resumed) = handshake_loop(server.addr, config, dur);
    let cpu = server.cpu_secs() - cpu0;
    if resumed * 10 < n * 9 {
        eprintln!("tls-resumed: only {resumed} of {n} handshakes resumed");
    }
    emit("tls-resumed", "per_s", resumed as f64 / dur.as_secs_f64());
    emit("tls-resumed-cpu", "us", cpu * 1e6 / n.max(1) as f64);
}

/// A non-blocking client connection (handshaken before the loop starts).
struct Client {
    s: MioStream,
    tls: ClientConnection,
    at: Instant,
    written: usize,
    got: usize,
}

impl Client {
    fn open(addr: SocketAddr, config: &Arc<ClientConfig>, poll: &Poll, i: usize) -> Client {
        let (s, tls) = open(addr, config, b"o").expect("a benchmark connection");
        s.set_nonblocking(true).unwrap();
        let mut s = MioStream::from_std(s);
        poll.registry()
            .register(&mut s, Token(i), Interest::READABLE | Interest::WRITABLE)
            .unwrap();
        Client {
            s,
            tls,
            at: Instant::now(),
            written: 0,
            got: 0,
        }
    }

    /// Sends queued records until the socket refuses; false if it did.
    fn flush(&mut self) -> bool {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.s) {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
                Err(e) => panic!("tls write: {e}"),
            }
        }
        true
    }

    /// Reads and decrypts what the socket has; returns the plaintext
    /// byte count.
    fn receive(&mut self, buf: &mut [u8]) -> usize {
        let mut total = 0;
        loop {
            match self.tls.read_tls(&mut self.s) {
                Ok(0) => panic!("the server closed a benchmark connection"),
                Ok(_) => {
                    self.tls
                        .process_new_packets()
                        .unwrap_or_else(|e| panic!("tls: {e}"));
                    loop {
                        match self.tls.reader().read(buf) {
                            Ok(0) => panic!("the server closed a benchmark connection"),
                            Ok(n) => total += n,
                            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                            Err(e) => panic!("tls read: {e}"),
                        }
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return total,
                Err(e) => panic!("tls read: {e}"),
            }
        }
    }
}

fn echo_rr(server: &Server) {
    const CONNS: usize = 50;
    const SIZE: usize = 64;
    let dur = Duration::from_secs(secs());
    let config = client_config(false);
    let mut poll = Poll::new().unwrap();
    let mut events = Events::with_capacity(256);
    let mut conns: Vec<Client> = (0..CONNS)
        .map(|i| Client::open(server.addr, &config, &poll, i))
        .collect();
    let msg = [b'r'; SIZE];
    let mut buf = vec![0u8; 64 * 1024];
    let mut lat = Vec::with_capacity(1 << 20);
    let mut done = 0u64;
    let cpu0 = server.cpu_secs();
    for c in conns.iter_mut() {
        c.tls.writer().write_all(&msg).unwrap();
        c.flush();
        c.at = Instant::now();
    }
    let end = Instant::now() + dur;
    while Instant::now() < end {
        poll.poll(&mut events, Some(Duration::from_millis(50)))
            .unwrap();
        for ev in events.iter() {
            let c = &mut conns[ev.token().0];
            c.got += c.receive(&mut buf);
            while c.got >= SIZE {
                c.got -= SIZE;
                lat.push(c.at.elapsed().as_micros().min(u32::MAX as u128) as u32);
                done += 1;
                c.tls.writer().write_all(&msg).unwrap();
                c.at = Instant::now();
            }
            c.flush();
        }
    }
    let cpu = server.cpu_secs() - cpu0;
    lat.sort_unstable();
    emit("tls-echo-rr", "per_s", done as f64 / dur.as_secs_f64());
    emit("tls-echo-rr-p99", "us", percentile(&lat, 0.99));
    emit("tls-echo-rr-cpu", "us", cpu * 1e6 / done.max(1) as f64);
}

fn stream(server: &Server) {
    const CONNS: usize = 8;
    const AHEAD: usize = 1 << 20;
    let dur = Duration::from_secs(secs());
    let config = client_config(false);
    let mut poll = Poll::new().unwrap();
    let mut events = Events::with_capacity(64);
    let mut conns: Vec<Client> = (0..CONNS)
        .map(|i| Client::open(server.addr, &config, &poll, i))
        .collect();
    let chunk = vec![b's'; 64 * 1024];
    let mut buf = vec![0u8; 256 * 1024];
    let start = Instant::now();
    let end = start + dur;
    let mut total = 0u64;
    let pump = |c: &mut Client| loop {
        if !c.flush() || c.written - c.got >= AHEAD {
            return;
        }
        c.written += c.tls.writer().write(&chunk).unwrap();
    };
    let cpu0 = server.cpu_secs();
    for c in conns.iter_mut() {
        pump(c);
    }
    while Instant::now() < end {
        poll.poll(&mut events, Some(Duration::from_millis(50)))
            .unwrap();
        for ev in events.iter() {
            let c = &mut conns[ev.token().0];
            let n = c.receive(&mut buf);
            c.got += n;
            total += n as u64;
            pump(c);
        }
    }
    let cpu = server.cpu_secs() - cpu0;
    emit(
        "tls-stream",
        "mb_per_s",
        total as f64 / 1e6 / start.elapsed().as_secs_f64(),
    );
    emit(
        "tls-stream-cpu",
        "us",
        cpu * 1e6 / (total as f64 / 1e6).max(1.0),
    );
}

fn idle(server: &Server) {
    let config = client_config(false);
    std::thread::sleep(Duration::from_millis(300));
    let before = server.rss();
    let conns: Vec<_> = (0..IDLE_CONNS)
        .map(|_| open(server.addr, &config, b"i").expect("an idle connection"))
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let after = server.rss();
    emit(
        "tls-idle-bytes",
        "bytes",
        after.saturating_sub(before) as f64 / IDLE_CONNS as f64,
    );
    drop(conns);
}

// ---- the tokio-rustls server (`--serve tokio-rustls-echo CHAIN KEY`) ----

/// An echo server on tokio-rustls, configured as weft's `TlsServerBuilder`
/// configures rustls by default: the `ring` provider, the default
/// protocol versions, the stateful session cache plus stateless tickets.
pub fn tokio_rustls_echo(args: &[String]) {
    use rustls::pki_types::pem::PemObject;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (Some(chain), Some(key)) = (args.first(), args.get(1)) else {
        eprintln!("tokio-rustls-echo: give CHAIN.pem KEY.pem");
        return;
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(chain)
        .and_then(|certs| certs.collect())
        .expect("the certificate chain");
    let key = PrivateKeyDer::from_pem_file(key).expect("the key");
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("a server configuration");
    config.ticketer = rustls::crypto::ring::Ticketer::new().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    crate::tokio_multi(crate::cores()).block_on(async move {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!(
            "tokio-rustls echo: listening on {}",
            l.local_addr().unwrap()
        );
        loop {
            let Ok((s, _)) = l.accept().await else {
                continue;
            };
            let _ = s.set_nodelay(true);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut s) = acceptor.accept(s).await else {
                    return;
                };
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).await.is_err() || s.flush().await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
}
