//! The byte streams a connection actor drives: a non-blocking TCP socket
//! registered with the reactor, or an in-memory pipe (see `memory.rs`).
//!
//! Owns: the non-blocking read/write/shutdown/abort calls and socket
//! options. Must not touch: buffering or flow control (`conn/`).

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};
use weft_runtime::mio::net::TcpStream;

use crate::memory::MemoryEnd;

/// The stream under one connection.
pub(crate) enum Transport {
    Tcp(TcpStream),
    Memory(MemoryEnd),
    /// Closed; every call fails with `NotConnected`.
    Closed,
}

fn not_connected() -> io::Error {
    io::Error::from(io::ErrorKind::NotConnected)
}

impl Transport {
    pub(crate) fn is_closed(&self) -> bool {
        matches!(self, Transport::Closed)
    }

    /// Whether a short read means the socket was drained: true for a TCP
    /// socket under epoll's edge-triggered mode on Linux, where any later
    /// arrival raises a new edge (saves the `WouldBlock` read per chunk).
    /// Not once the peer's end was reported: data and FIN can share one
    /// edge, and the end must still be read (the caller checks that).
    pub(crate) fn short_read_drains(&self) -> bool {
        cfg!(target_os = "linux") && matches!(self, Transport::Tcp(_))
    }

    pub(crate) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => s.read(buf),
            Transport::Memory(m) => m.read(buf),
            Transport::Closed => Err(not_connected()),
        }
    }

    pub(crate) fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => s.write_vectored(bufs),
            Transport::Memory(m) => m.write_vectored(bufs),
            Transport::Closed => Err(not_connected()),
        }
    }

    pub(crate) fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => s.write(buf),
            Transport::Memory(m) => m.write_vectored(&[IoSlice::new(buf)]),
            Transport::Closed => Err(not_connected()),
        }
    }

    pub(crate) fn shutdown_write(&mut self) -> io::Result<()> {
        match self {
            Transport::Tcp(s) => s.shutdown(Shutdown::Write),
            Transport::Memory(m) => {
                m.shutdown_write();
                Ok(())
            }
            Transport::Closed => Err(not_connected()),
        }
    }

    /// The pending socket error, if any (`SO_ERROR`).
    pub(crate) fn take_error(&self) -> io::Result<Option<io::Error>> {
        match self {
            Transport::Tcp(s) => s.take_error(),
            Transport::Memory(m) => Ok(m.take_error()),
            Transport::Closed => Ok(None),
        }
    }

    /// Closes in order: what was written is delivered, then the end.
    /// Unread input is discarded first, so the kernel sends FIN rather
    /// than RST (an RST could destroy our last reply at the peer).
    pub(crate) fn close(&mut self) {
        match std::mem::replace(self, Transport::Closed) {
            Transport::Tcp(mut s) => {
                let _ = s.shutdown(Shutdown::Write);
                let mut sink = [0u8; 4096];
                for _ in 0..64 {
                    match s.read(&mut sink) {
                        Ok(n) if n > 0 => continue,
                        _ => break,
                    }
                }
            }
            Transport::Memory(m) => m.close(false),
            Transport::Closed => {}
        }
    }

    /// Closes at once, discarding what is buffered: the peer sees a reset.
    pub(crate) fn abort(&mut self) {
        match std::mem::replace(self, Transport::Closed) {
            Transport::Tcp(s) => {
                let _ = SockRef::from(&s).set_linger(Some(Duration::ZERO));
            }
            Transport::Memory(m) => m.close(true),
            Transport::Closed => {}
        }
    }

    pub(crate) fn peer_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Transport::Tcp(s) => s.peer_addr(),
            Transport::Memory(m) => Ok(m.peer_addr()),
            Transport::Closed => Err(not_connected()),
        }
    }

    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Transport::Tcp(s) => s.local_addr(),
            Transport::Memory(m) => Ok(m.local_addr()),
            Transport::Closed => Err(not_connected()),
        }
    }

    pub(crate) fn set_nodelay(&self, on: bool) -> io::Result<()> {
        match self {
            Transport::Tcp(s) => s.set_nodelay(on),
            Transport::Memory(_) => Ok(()),
            Transport::Closed => Err(not_connected()),
        }
    }

    /// Keep-alive probes after `idle` without traffic; `None` turns them off.
    pub(crate) fn set_keepalive(&self, idle: Option<Duration>) -> io::Result<()> {
        match self {
            Transport::Tcp(s) => {
                let sock = SockRef::from(s);
                match idle {
                    Some(idle) => sock.set_tcp_keepalive(&TcpKeepalive::new().with_time(idle)),
                    None => sock.set_keepalive(false),
                }
            }
            Transport::Memory(_) => Ok(()),
            Transport::Closed => Err(not_connected()),
        }
    }
}
