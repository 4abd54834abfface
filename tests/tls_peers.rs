//! TLS against real peers on 127.0.0.1: `openssl s_client` (SNI, ALPN,
//! a client certificate, close_notify), `curl` (HTTPS with ALPN
//! `http/1.1`) and Python's `ssl` module (TLS 1.2 resumption) talking to
//! weft's `listen_tls`. The tools are on the machine image; `.ci/run`
//! installs them where they are missing.
#![cfg(feature = "tls")]

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;

use common::certs;
use common::*;
use weft::io::tls::{self, rustls, ClientAuth, TlsInfo, TlsServerBuilder};
use weft::prelude::*;

/// A directory of PEM files, removed when dropped.
struct Pems(PathBuf);

impl Pems {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("weft-tls-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Pems(dir)
    }

    fn write(&self, name: &str, contents: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path.to_string_lossy().into_owned()
    }
}

impl Drop for Pems {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[derive(Debug)]
enum Seen {
    Ready(TlsInfo),
    Closed(CloseReason),
}

/// Echoes; answers an HTTP request line with a small response.
struct Service {
    tx: Sender<Seen>,
}

impl Protocol for Service {
    type Msg = ();
    fn tls_ready(&mut self, _conn: &mut Conn<'_, '_, Self>, info: &TlsInfo) -> ActorResult {
        let _ = self.tx.send(Seen::Ready(info.clone()));
        Ok(())
    }
    fn data(&mut self, conn: &mut Conn<'_, '_, Self>, data: &[u8]) -> ActorResult {
        if data.starts_with(b"GET ") {
            conn.write(
                b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nConnection: close\r\n\r\nhello, tls!\n",
            )?;
            conn.close();
        } else {
            conn.write(data)?;
        }
        Ok(())
    }
    fn closed(&mut self, _conn: &mut Conn<'_, '_, Self>, reason: &CloseReason) {
        let _ = self.tx.send(Seen::Closed(reason.clone()));
    }
}

fn serve(
    rt: &Runtime,
    config: Arc<rustls::ServerConfig>,
) -> (weft::io::Listening<Service>, mpsc::Receiver<Seen>) {
    let (tx, rx) = mpsc::channel();
    let listening = listen_tls(
        rt.handle(),
        "127.0.0.1:0".parse().unwrap(),
        ListenOptions::new(),
        config,
        move || Service { tx: tx.clone() },
    )
    .unwrap();
    (listening, rx)
}

fn ready(rx: &mpsc::Receiver<Seen>) -> TlsInfo {
    match recv(rx) {
        Seen::Ready(info) => info,
        other => panic!("expected a handshake, got {other:?}"),
    }
}

fn closed(rx: &mpsc::Receiver<Seen>) -> CloseReason {
    loop {
        if let Seen::Closed(reason) = recv(rx) {
            return reason;
        }
    }
}

/// Collects chunks until `want` was seen (or the end of file).
fn read_until(rx: &mpsc::Receiver<Vec<u8>>, want: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    while !got.windows(want.len()).any(|w| w == want) {
        let chunk = recv(rx);
        if chunk.is_empty() {
            break;
        }
        got.extend_from_slice(&chunk);
    }
    got
}

#[test]
fn openssl_s_client_talks_to_listen_tls_with_sni_and_alpn() {
    let rt = runtime(2);
    let ca = certs::ca("weft test CA");
    let default = ca.server(&["127.0.0.1"]);
    let named = ca.server(&["named.test"]);
    let (listening, seen) = serve(
        &rt,
        TlsServerBuilder::new()
            .cert(default.chain.clone(), default.key())
            .sni_cert("named.test", named.chain.clone(), named.key())
            .alpn(["h2", "http/1.1"])
            .build()
            .unwrap(),
    );
    let pems = Pems::new("sclient");
    let ca_file = pems.write("ca.pem", &ca.pem());
    let port = listening.local_addr().port();
    let mut child = spawn_guarded(
        Command::new("openssl")
            .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
            .args(["-servername", "named.test", "-alpn", "http/1.1"])
            // `-quiet` implies `-ign_eof`; end of input must end the session.
            .args([
                "-CAfile",
                &ca_file,
                "-verify_return_error",
                "-quiet",
                "-no_ign_eof",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    let info = ready(&seen);
    assert_eq!(info.server_name.as_deref(), Some("named.test"));
    assert_eq!(info.alpn.as_deref(), Some(&b"http/1.1"[..]));
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"ping from openssl\n").unwrap();
    let stdout = chunks(&mut child);
    let got = read_until(&stdout, b"ping from openssl\n");
    assert!(got.ends_with(b"ping from openssl\n"), "{got:?}");
    // End of input: s_client sends close_notify, then closes.
    drop(stdin);
    assert_eq!(closed(&seen), CloseReason::Clean);
    assert!(child.wait().unwrap().success());
}

#[test]
fn openssl_s_client_with_and_without_a_required_client_certificate() {
    let rt = runtime(2);
    let ca = certs::ca("weft test CA");
    let server_cert = ca.server(&["127.0.0.1"]);
    let client_ca = certs::ca("weft client CA");
    let alice = client_ca.client("alice");
    let (listening, seen) = serve(
        &rt,
        TlsServerBuilder::new()
            .cert(server_cert.chain.clone(), server_cert.key())
            .client_auth(ClientAuth::Required(
                tls::roots_from([client_ca.der()]).unwrap(),
            ))
            .build()
            .unwrap(),
    );
    let pems = Pems::new("clientcert");
    let ca_file = pems.write("ca.pem", &ca.pem());
    let cert_file = pems.write("alice.pem", &alice.cert_pem);
    let key_file = pems.write("alice.key", &alice.key_pem);
    let port = listening.local_addr().port();
    let s_client = |extra: &[&str]| {
        let mut cmd = Command::new("openssl");
        cmd.args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
            .args(["-CAfile", &ca_file, "-verify_return_error", "-quiet"])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        cmd
    };
    // Without a certificate: the handshake is refused, the protocol never
    // runs, and s_client fails.
    let mut without = spawn_guarded(&mut s_client(&[]));
    let mut stdin = without.stdin.take().unwrap();
    let _ = stdin.write_all(b"hello?\n");
    let out = read_until(&chunks(&mut without), b"hello?");
    assert!(out.is_empty(), "nothing echoed: {out:?}");
    drop(stdin);
    assert!(!without.wait().unwrap().success());
    // With Alice's: the protocol sees her certificate.
    let mut with = spawn_guarded(&mut s_client(&["-cert", &cert_file, "-key", &key_file]));
    let mut stdin = with.stdin.take().unwrap();
    stdin.write_all(b"it is alice\n").unwrap();
    let got = read_until(&chunks(&mut with), b"it is alice\n");
    assert!(got.ends_with(b"it is alice\n"));
    let info = ready(&seen);
    assert_eq!(info.peer_certificates[0], alice.chain[0]);
}

#[test]
fn curl_fetches_over_https_with_alpn_http_1_1() {
    let rt = runtime(2);
    let ca = certs::ca("weft test CA");
    let cert = ca.server(&["localhost", "127.0.0.1"]);
    let (listening, seen) = serve(
        &rt,
        TlsServerBuilder::new()
            .cert(cert.chain.clone(), cert.key())
            .alpn(["http/1.1"])
            .build()
            .unwrap(),
    );
    let pems = Pems::new("curl");
    let ca_file = pems.write("ca.pem", &ca.pem());
    let port = listening.local_addr().port();
    let output = spawn_guarded(
        Command::new("curl")
            .args(["--silent", "--show-error", "--max-time", "10"])
            .args(["--cacert", &ca_file, "--http1.1"])
            .arg(format!("https://127.0.0.1:{port}/"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let output = wait_output(output);
    assert!(output.0, "curl failed: {}", output.2);
    assert_eq!(output.1, "hello, tls!\n");
    let info = ready(&seen);
    assert_eq!(info.alpn.as_deref(), Some(&b"http/1.1"[..]));
    // An untrusted server: curl refuses (its CA file does not match).
    let other = certs::ca("not trusted");
    let other_file = pems.write("other.pem", &other.pem());
    let refused = wait_output(spawn_guarded(
        Command::new("curl")
            .args(["--silent", "--show-error", "--max-time", "10"])
            .args(["--cacert", &other_file])
            .arg(format!("https://127.0.0.1:{port}/"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    ));
    assert!(!refused.0, "curl accepted an untrusted certificate");
}

/// Python's `ssl` module as the client: SNI, ALPN, TLS 1.2 session
/// resumption on the second connection, and close_notify both ways.
const PYTHON_CLIENT: &str = r#"
import socket, ssl, sys
port, ca = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=ca)
ctx.set_alpn_protocols(["h2", "http/1.1"])
ctx.maximum_version = ssl.TLSVersion.TLSv1_2
session = None
for _ in range(2):
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    s = ctx.wrap_socket(raw, server_hostname="named.test", session=session)
    s.sendall(b"ping from python\n")
    got = b""
    while not got.endswith(b"\n"):
        got += s.recv(100)
    print(s.version(), s.selected_alpn_protocol(), s.session_reused, got.decode().strip(), flush=True)
    session = s.session
    s.unwrap()
    raw.close()
"#;

#[test]
fn python_ssl_resumes_a_tls_1_2_session_with_sni_and_alpn() {
    let rt = runtime(2);
    let ca = certs::ca("weft test CA");
    let cert = ca.server(&["named.test"]);
    let (listening, seen) = serve(
        &rt,
        TlsServerBuilder::new()
            .cert(cert.chain.clone(), cert.key())
            .alpn(["http/1.1"])
            .build()
            .unwrap(),
    );
    let pems = Pems::new("python");
    let ca_file = pems.write("ca.pem", &ca.pem());
    let port = listening.local_addr().port().to_string();
    let (ok, out, err) = wait_output(spawn_guarded(
        Command::new("python3")
            .args(["-c", PYTHON_CLIENT, &port, &ca_file])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    ));
    assert!(ok, "python failed: {err}");
    assert_eq!(
        out,
        "TLSv1.2 http/1.1 False ping from python\nTLSv1.2 http/1.1 True ping from python\n"
    );
    let first = ready(&seen);
    assert_eq!(first.server_name.as_deref(), Some("named.test"));
    assert!(!first.resumed);
    assert_eq!(closed(&seen), CloseReason::Clean);
    let second = ready(&seen);
    assert!(second.resumed);
    assert_eq!(closed(&seen), CloseReason::Clean);
}
