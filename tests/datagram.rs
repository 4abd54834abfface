//! Datagram sockets: UNIX datagrams against Python's `socket` module
//! (a bound sender gets a reply at its address, an unbound one cannot be
//! answered), abstract names and connected sockets, a datagram longer
//! than the receive size reported as truncated, a full receiver as a
//! value with `send_ready` after it drains, too big and wrong-family
//! sends, the socket file's mode, stale file and removal, and adopting a
//! UNIX or UDP datagram socket.

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Mutex;

use common::*;
use weft::io::datagram::{
    adopt_datagram, connect_unix_datagram, listen_unix_datagram, DatagramError, DatagramOptions,
    DatagramProtocol, Dgram,
};
use weft::io::{AdoptError, ListenError};
use weft::prelude::*;

static SERIAL: Mutex<()> = Mutex::new(());

#[derive(Debug, PartialEq)]
enum Seen {
    Got(Vec<u8>, Address),
    Truncated(Vec<u8>, usize),
    Reply(Result<(), DatagramError>),
    Flooded(usize, Result<(), DatagramError>),
    Ready,
    Sent(Result<(), DatagramError>),
}

enum Cmd {
    /// Send 1 KiB datagrams to the address until one is refused.
    Flood(Address),
    SendTo(Vec<u8>, Address),
    Send(Vec<u8>),
}

/// Records what arrives and answers lower-case text with the upper-case
/// copy.
struct Probe {
    tx: Sender<Seen>,
}

impl DatagramProtocol for Probe {
    type Msg = Cmd;

    fn datagram(
        &mut self,
        sock: &mut Dgram<'_, '_, Self>,
        data: &[u8],
        from: &Address,
    ) -> ActorResult {
        let _ = self.tx.send(Seen::Got(data.to_vec(), from.clone()));
        // Answers lower case only, so two probes do not answer each other
        // for ever.
        if data.iter().any(u8::is_ascii_lowercase) {
            let reply = sock.send_to(&data.to_ascii_uppercase(), from);
            let _ = self.tx.send(Seen::Reply(reply));
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
        let _ = self.tx.send(Seen::Truncated(data.to_vec(), len));
        Ok(())
    }

    fn send_ready(&mut self, _sock: &mut Dgram<'_, '_, Self>) -> ActorResult {
        let _ = self.tx.send(Seen::Ready);
        Ok(())
    }

    fn message(&mut self, sock: &mut Dgram<'_, '_, Self>, cmd: Cmd) -> ActorResult {
        match cmd {
            Cmd::Flood(to) => {
                let chunk = [7u8; 1024];
                let mut n = 0;
                let last = loop {
                    match sock.send_to(&chunk, &to) {
                        Ok(()) => n += 1,
                        Err(e) => break Err(e),
                    }
                    if n > 100_000 {
                        break Ok(());
                    }
                };
                let _ = self.tx.send(Seen::Flooded(n, last));
            }
            Cmd::SendTo(data, to) => {
                let _ = self.tx.send(Seen::Sent(sock.send_to(&data, &to)));
            }
            Cmd::Send(data) => {
                let _ = self.tx.send(Seen::Sent(sock.send(&data)));
            }
        }
        Ok(())
    }
}

fn probe() -> (Probe, Receiver<Seen>) {
    let (tx, rx) = mpsc::channel();
    (Probe { tx }, rx)
}

const PY_CLIENT: &str = r#"
import socket, sys
server, mine = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.settimeout(10)
if mine != "-":
    s.bind(mine)
s.sendto(b"from python", server)
if mine != "-":
    data, addr = s.recvfrom(100)
    print(data.decode(), flush=True)
s.sendto(b"x" * 100, server)
print("sent", flush=True)
"#;

#[test]
fn python_senders_bound_and_unbound_and_a_truncated_datagram() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new("dgram-python");
    let path = dir.join("server.sock");
    let rt = runtime(2);
    let (p, rx) = probe();
    let sock = listen_unix_datagram(
        rt.handle(),
        &path,
        DatagramOptions::new().recv_size(16).unix_mode(0o620),
        p,
    )
    .unwrap();
    assert_eq!(sock.local_addr(), &Address::Unix(UnixAddr::path(&path)));
    let mode = Command::new("stat")
        .args(["-c", "%a"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&mode.stdout).trim(), "620");

    // A bound sender: its address comes with the datagram, and the reply
    // reaches it.
    let client = dir.join("client.sock");
    let (ok, out, err) = wait_output(spawn_guarded(
        Command::new("python3")
            .args(["-c", PY_CLIENT])
            .arg(&path)
            .arg(&client)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    ));
    assert!(ok, "{err}");
    assert_eq!(out, "FROM PYTHON\nsent\n");
    assert_eq!(
        recv(&rx),
        Seen::Got(
            b"from python".to_vec(),
            Address::Unix(UnixAddr::path(&client))
        )
    );
    assert_eq!(recv(&rx), Seen::Reply(Ok(())));
    // 100 bytes with a receive size of 16: reported, with its length.
    assert_eq!(recv(&rx), Seen::Truncated(vec![b'x'; 16], 100));

    // An unbound sender: its datagram arrives; it cannot be answered.
    let (ok, out, err) = wait_output(spawn_guarded(
        Command::new("python3")
            .args(["-c", PY_CLIENT])
            .arg(&path)
            .arg("-")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    ));
    assert!(ok, "{err}");
    assert_eq!(out, "sent\n");
    assert_eq!(
        recv(&rx),
        Seen::Got(b"from python".to_vec(), Address::Unix(UnixAddr::Unnamed))
    );
    assert!(matches!(
        recv(&rx),
        Seen::Reply(Err(DatagramError::Io {
            kind: std::io::ErrorKind::InvalidInput,
            ..
        }))
    ));
    assert_eq!(recv(&rx), Seen::Truncated(vec![b'x'; 16], 100));
    assert_eq!(
        sock.stats()
            .received
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
    assert_eq!(
        sock.stats()
            .truncated
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );

    assert!(sock.close());
    eventually("the socket file is removed on close", || !path.exists());
}

#[test]
fn a_full_receiver_is_a_value_and_send_ready_follows_when_it_drains() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new("dgram-full");
    let rt = runtime(2);
    let receiver_path = dir.join("slow.sock");
    let receiver = UnixDatagram::bind(&receiver_path).unwrap();
    let (p, rx) = probe();
    let sender =
        listen_unix_datagram(rt.handle(), UnixAddr::Unnamed, DatagramOptions::new(), p).unwrap();
    let to = Address::Unix(UnixAddr::path(&receiver_path));
    sender
        .send(Cmd::Flood(to.clone()))
        .unwrap_or_else(|_| panic!("send"));
    let sent = match recv(&rx) {
        Seen::Flooded(n, Err(DatagramError::WouldBlock)) => n,
        other => panic!("expected a refusal once the receiver was full: {other:?}"),
    };
    assert!(sent > 0);
    assert_eq!(
        sender
            .stats()
            .would_block
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    // The receiver drains: the sender is told it may send again.
    receiver.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 2048];
    let mut drained = 0;
    while receiver.recv(&mut buf).is_ok() {
        drained += 1;
    }
    assert_eq!(
        drained, sent,
        "everything sent arrived; nothing was dropped silently"
    );
    assert_eq!(recv(&rx), Seen::Ready);
    sender
        .send(Cmd::SendTo(b"again".to_vec(), to))
        .unwrap_or_else(|_| panic!("send"));
    assert_eq!(recv(&rx), Seen::Sent(Ok(())));
    receiver.set_nonblocking(false).unwrap();
    receiver.set_read_timeout(Some(WAIT)).unwrap();
    let n = receiver.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"again");
}

#[test]
fn connected_abstract_sockets_too_big_and_wrong_family() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let rt = runtime(2);
    let name = UnixAddr::abstract_name(format!("weft-dgram-{}", std::process::id()));
    let (p, server_rx) = probe();
    let _server =
        listen_unix_datagram(rt.handle(), name.clone(), DatagramOptions::new(), p).unwrap();
    let (p, client_rx) = probe();
    let client_name = UnixAddr::abstract_name(format!("weft-dgram-client-{}", std::process::id()));
    let client = connect_unix_datagram(
        rt.handle(),
        name.clone(),
        client_name.clone(),
        DatagramOptions::new(),
        p,
    )
    .unwrap();
    client
        .send(Cmd::Send(b"connected".to_vec()))
        .unwrap_or_else(|_| panic!("send"));
    assert_eq!(recv(&client_rx), Seen::Sent(Ok(())));
    assert_eq!(
        recv(&server_rx),
        Seen::Got(b"connected".to_vec(), Address::Unix(client_name.clone()))
    );
    assert_eq!(recv(&server_rx), Seen::Reply(Ok(())));
    assert_eq!(
        recv(&client_rx),
        Seen::Got(b"CONNECTED".to_vec(), Address::Unix(name.clone()))
    );

    client
        .send(Cmd::SendTo(vec![0u8; 1 << 20], Address::Unix(name.clone())))
        .unwrap_or_else(|_| panic!("send"));
    assert_eq!(
        recv(&client_rx),
        Seen::Sent(Err(DatagramError::TooBig { len: 1 << 20 }))
    );
    let inet = Address::Inet("127.0.0.1:9".parse().unwrap());
    client
        .send(Cmd::SendTo(b"x".to_vec(), inet))
        .unwrap_or_else(|_| panic!("send"));
    assert_eq!(
        recv(&client_rx),
        Seen::Sent(Err(DatagramError::WrongFamily {
            addr: "127.0.0.1:9".into()
        }))
    );
    // Connecting to nothing is an error at once.
    let (p, _rx) = probe();
    let nothing = UnixAddr::abstract_name("weft-nothing-listens-here");
    let err = connect_unix_datagram(
        rt.handle(),
        nothing,
        UnixAddr::Unnamed,
        DatagramOptions::new(),
        p,
    )
    .unwrap_err();
    assert!(
        matches!(&err, ListenError::Bind { source, .. } if source.kind() == std::io::ErrorKind::ConnectionRefused),
        "{err:?}"
    );
}

#[test]
fn stale_datagram_files_are_replaced_and_live_ones_refused() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new("dgram-stale");
    let rt = runtime(1);
    let path = dir.join("d.sock");
    drop(UnixDatagram::bind(&path).unwrap());
    let (p, _rx) = probe();
    let first = listen_unix_datagram(rt.handle(), &path, DatagramOptions::new(), p)
        .expect("a stale file is replaced");
    let (p, _rx) = probe();
    let busy = listen_unix_datagram(rt.handle(), &path, DatagramOptions::new(), p);
    assert!(
        matches!(&busy, Err(ListenError::Bind { source, .. }) if source.kind() == std::io::ErrorKind::AddrInUse),
        "{busy:?}"
    );
    first.close();
    eventually("removed", || !path.exists());
}

#[test]
fn adopted_unix_and_udp_datagram_sockets_and_a_wrong_kind() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new("dgram-adopt");
    let rt = runtime(2);

    let path = dir.join("adopted.sock");
    let original = UnixDatagram::bind(&path).unwrap();
    let (p, rx) = probe();
    let adopted = adopt_datagram(rt.handle(), &original, DatagramOptions::new(), p).unwrap();
    assert_eq!(adopted.local_addr(), &Address::Unix(UnixAddr::path(&path)));
    let client_path = dir.join("c.sock");
    let client = UnixDatagram::bind(&client_path).unwrap();
    client.set_read_timeout(Some(WAIT)).unwrap();
    client.send_to(b"hi", &path).unwrap();
    assert_eq!(
        recv(&rx),
        Seen::Got(b"hi".to_vec(), Address::Unix(UnixAddr::path(&client_path)))
    );
    let mut buf = [0u8; 16];
    let n = client.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"HI");
    adopted.close();
    eventually("closed", || adopted.addr().is_stopped());
    assert!(path.exists(), "an adopted socket's file is its owner's");

    // UDP, against Python.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = udp.local_addr().unwrap().port();
    let (p, rx) = probe();
    let _adopted = adopt_datagram(rt.handle(), &udp, DatagramOptions::new(), p).unwrap();
    let (ok, out, err) = wait_output(spawn_guarded(
        Command::new("python3")
            .args([
                "-c",
                "import socket,sys\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.settimeout(10)\ns.bind(('127.0.0.1',0))\ns.sendto(b'udp hello',('127.0.0.1',int(sys.argv[1])))\nprint(s.recvfrom(100)[0].decode(), s.getsockname()[1], flush=True)",
                &port.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    ));
    assert!(ok, "{err}");
    let (reply, py_port) = out.trim().rsplit_once(' ').unwrap();
    assert_eq!(reply, "UDP HELLO");
    let from: std::net::SocketAddr = format!("127.0.0.1:{py_port}").parse().unwrap();
    assert_eq!(
        recv(&rx),
        Seen::Got(b"udp hello".to_vec(), Address::Inet(from))
    );

    // A stream socket is not a datagram socket.
    let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    let (p, _rx) = probe();
    match adopt_datagram(rt.handle(), &a, DatagramOptions::new(), p) {
        Err(AdoptError::WrongKind { expected, .. }) => assert_eq!(expected, "a datagram socket"),
        other => panic!("{:?}", other.err()),
    }
}
