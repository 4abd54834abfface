//! Adopting sockets made elsewhere: a listening TCP or UNIX socket, a
//! connected TCP or UNIX stream, and the descriptors that are refused
//! (a stream where a listener is wanted and the reverse, a datagram
//! socket, a file, a pipe). Stopping an adopted listener leaves the
//! caller's socket listening (no `shutdown()`) and its file in place.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};

use common::*;
use weft::io::{adopt_listener, adopt_stream, AdoptError};
use weft::prelude::*;

fn echo_round_trip(s: &mut (impl Read + Write), text: &[u8]) {
    s.write_all(text).unwrap();
    let mut buf = vec![0u8; text.len()];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(buf, text);
}

/// The original listener still accepts a connection (non-blocking now:
/// it shares the socket with weft's duplicate).
fn still_accepts(accept: impl FnMut() -> std::io::Result<()>) {
    let mut accept = accept;
    eventually("the caller's listener accepts", || match accept() {
        Ok(()) => true,
        Err(e) if e.kind() == ErrorKind::WouldBlock => false,
        Err(e) => panic!("accept on the caller's descriptor: {e}"),
    });
}

#[test]
fn an_adopted_tcp_listener_serves_and_stops_without_shutting_the_socket() {
    let rt = runtime(2);
    let original = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = original.local_addr().unwrap();
    let listening = adopt_listener(rt.handle(), &original, ListenOptions::new(), || Echo)
        .expect("a listening TCP socket is adopted");
    assert_eq!(listening.local_addr(), Address::Inet(addr));
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(WAIT)).unwrap();
    echo_round_trip(&mut c, b"adopted tcp");
    assert!(listening.stop(StopMode::Close));
    assert!(listening.wait_stopped(WAIT));
    // Still listening through the caller's descriptor.
    let _c2 = TcpStream::connect(addr).expect("the socket still listens");
    still_accepts(|| original.accept().map(drop));
}

#[test]
fn an_adopted_unix_listener_serves_and_leaves_its_file() {
    let dir = std::env::temp_dir().join(format!("weft-adopt-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("adopted.sock");
    let _ = std::fs::remove_file(&path);
    let rt = runtime(2);
    let original = UnixListener::bind(&path).unwrap();
    let listening = adopt_listener(rt.handle(), &original, ListenOptions::new(), || Echo)
        .expect("a listening UNIX socket is adopted");
    assert_eq!(listening.local_addr(), Address::Unix(UnixAddr::path(&path)));
    let mut c = UnixStream::connect(&path).unwrap();
    c.set_read_timeout(Some(WAIT)).unwrap();
    echo_round_trip(&mut c, b"adopted unix");
    listening.stop(StopMode::Close);
    assert!(listening.wait_stopped(WAIT));
    assert!(path.exists(), "an adopted listener's file is its owner's");
    let _c2 = UnixStream::connect(&path).expect("the socket still listens");
    still_accepts(|| original.accept().map(drop));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn adopted_tcp_and_unix_connections_run_a_protocol() {
    let rt = runtime(2);
    // TCP: the server's end of an accepted connection.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    client.set_read_timeout(Some(WAIT)).unwrap();
    let (server_end, _) = l.accept().unwrap();
    let conn = adopt_stream(rt.handle(), &server_end, ConnOptions::new(), Echo).unwrap();
    drop(server_end);
    echo_round_trip(&mut client, b"adopted tcp stream");
    assert!(conn.close());
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "closed in order");

    // UNIX: one end of a socketpair.
    let (mine, mut theirs) = UnixStream::pair().unwrap();
    theirs.set_read_timeout(Some(WAIT)).unwrap();
    let _conn = adopt_stream(rt.handle(), &mine, ConnOptions::new(), Echo).unwrap();
    drop(mine);
    echo_round_trip(&mut theirs, b"adopted socketpair");
}

#[test]
fn descriptors_of_the_wrong_kind_are_refused_with_what_they_are() {
    let rt = runtime(1);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let stream = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let file = std::fs::File::open("/dev/null").unwrap();
    let (pipe_r, _pipe_w) = nix::unistd::pipe().unwrap();

    match adopt_listener(rt.handle(), &stream, ListenOptions::new(), || Echo) {
        Err(AdoptError::WrongKind { found, .. }) => {
            assert_eq!(found, "a TCP/IP stream socket")
        }
        other => panic!("a connected stream as a listener: {:?}", other.err()),
    }
    match adopt_stream(rt.handle(), &l, ConnOptions::new(), Echo) {
        Err(AdoptError::WrongKind { found, .. }) => {
            assert_eq!(found, "a TCP/IP stream socket that listens")
        }
        other => panic!("a listener as a stream: {:?}", other.err()),
    }
    for result in [
        adopt_listener(rt.handle(), &udp, ListenOptions::new(), || Echo).err(),
        adopt_stream(rt.handle(), &udp, ConnOptions::new(), Echo).err(),
    ] {
        match result {
            Some(AdoptError::WrongKind { found, .. }) => {
                assert_eq!(found, "a TCP/IP datagram socket")
            }
            other => panic!("a UDP socket: {other:?}"),
        }
    }
    assert!(matches!(
        adopt_stream(rt.handle(), &file, ConnOptions::new(), Echo),
        Err(AdoptError::NotSocket { .. })
    ));
    let err = adopt_listener(rt.handle(), &pipe_r, ListenOptions::new(), || Echo).unwrap_err();
    assert!(matches!(err, AdoptError::NotSocket { .. }), "{err}");
    assert!(err.to_string().contains("is not a socket"), "{err}");
    // A number that names nothing (descriptors are allocated lowest
    // first, so no test of this binary ever gets this one).
    let closed = 999_999;
    // SAFETY: the number is closed on purpose; adopting only asks the
    // kernel about it (and is refused), it never reads or closes it.
    let dangling = unsafe { std::os::fd::BorrowedFd::borrow_raw(closed) };
    let err = adopt_stream(rt.handle(), dangling, ConnOptions::new(), Echo).unwrap_err();
    assert!(matches!(err, AdoptError::Invalid { .. }), "{err}");
    // The refused ones are untouched: the stream still works.
    let mut stream = stream;
    stream.write_all(b"still mine").unwrap();
}
