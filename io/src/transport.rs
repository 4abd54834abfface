//! The byte streams a connection actor drives: a non-blocking TCP or UNIX
//! stream socket registered with the reactor, or an in-memory pipe (see
//! `memory.rs`).
//!
//! Owns: the non-blocking read/write/shutdown/abort calls and socket
//! options. Must not touch: buffering or flow control (`conn/`).

use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;
use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};
use weft_runtime::mio::net::TcpStream;

use crate::addr::{Address, UnixAddr};
use crate::memory::MemoryEnd;
use crate::unix::UnixIo;

/// The stream under one connection.
pub(crate) enum Transport {
    Tcp(TcpStream),
    Unix(Box<UnixIo>),
    Memory(MemoryEnd),
    /// A stream of the simulated network.
    Sim(crate::sim::SimEnd),
    /// Closed; every call fails with `NotConnected`.
    Closed,
}

fn not_connected() -> io::Error {
    io::Error::from(io::ErrorKind::NotConnected)
}

impl Transport {
    /// The socket to register with the reactor (none for an in-memory end).
    pub(crate) fn source(&mut self) -> Option<&mut dyn weft_runtime::mio::event::Source> {
        match self {
            Transport::Tcp(s) => Some(s),
            Transport::Unix(u) => Some(&mut u.stream),
            Transport::Memory(_) | Transport::Sim(_) | Transport::Closed => None,
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        matches!(self, Transport::Closed)
    }

    /// Whether a short read means the socket was drained: true for a TCP
    /// socket under epoll's edge-triggered mode on Linux, where any later
    /// arrival raises a new edge (saves the `WouldBlock` read per chunk).
    /// Not once the peer's end was reported: data and FIN can share one
    /// edge, and the end must still be read (the caller checks that).
    /// A UNIX stream read stops early after bytes that carried
    /// descriptors, so such a read does not mean drained.
    pub(crate) fn short_read_drains(&self) -> bool {
        cfg!(target_os = "linux")
            && match self {
                Transport::Tcp(_) => true,
                Transport::Unix(u) => u.rx_fds.is_empty() && !u.rx_truncated && !u.rx_dropped,
                _ => false,
            }
    }

    /// The descriptors that came with the last read (and whether some
    /// were lost to truncation), if any.
    pub(crate) fn take_fds(&mut self) -> Option<(Vec<std::os::fd::OwnedFd>, bool)> {
        match self {
            Transport::Unix(u) if !u.rx_fds.is_empty() || u.rx_truncated => {
                let truncated = std::mem::take(&mut u.rx_truncated);
                Some((std::mem::take(&mut u.rx_fds), truncated))
            }
            _ => None,
        }
    }

    /// Whether descriptors can be sent over this transport.
    pub(crate) fn is_unix(&self) -> bool {
        matches!(self, Transport::Unix(_))
    }

    /// Writes `buf` with `fds` attached to its first byte (UNIX only).
    pub(crate) fn send_with_fds(
        &mut self,
        buf: &[u8],
        fds: &[std::os::fd::RawFd],
    ) -> io::Result<usize> {
        match self {
            Transport::Unix(u) => u.send_with_fds(buf, fds),
            Transport::Closed => Err(not_connected()),
            _ => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "descriptors travel only over UNIX sockets",
            )),
        }
    }

    pub(crate) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => s.read(buf),
            Transport::Unix(u) => u.read(buf),
            Transport::Memory(m) => m.read(buf),
            Transport::Sim(m) => m.read(buf),
            Transport::Closed => Err(not_connected()),
        }
    }

    pub(crate) fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => s.write_vectored(bufs),
            Transport::Unix(u) => u.write_vectored(bufs),
            Transport::Memory(m) => m.write_vectored(bufs),
            Transport::Sim(m) => m.write_vectored(bufs),
            Transport::Closed => Err(not_connected()),
        }
    }

    pub(crate) fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => s.write(buf),
            Transport::Unix(u) => u.write(buf),
            Transport::Memory(m) => m.write_vectored(&[IoSlice::new(buf)]),
            Transport::Sim(m) => m.write_vectored(&[IoSlice::new(buf)]),
            Transport::Closed => Err(not_connected()),
        }
    }

    pub(crate) fn shutdown_write(&mut self) -> io::Result<()> {
        match self {
            Transport::Tcp(s) => s.shutdown(Shutdown::Write),
            Transport::Unix(u) => u.stream.shutdown(Shutdown::Write),
            Transport::Memory(m) => {
                m.shutdown_write();
                Ok(())
            }
            Transport::Sim(m) => {
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
            Transport::Unix(u) => u.stream.take_error(),
            Transport::Memory(m) => Ok(m.take_error()),
            Transport::Sim(m) => Ok(m.take_error()),
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
            Transport::Unix(mut u) => {
                let _ = u.stream.shutdown(Shutdown::Write);
                u.discard_input();
            }
            Transport::Memory(m) => m.close(false),
            Transport::Sim(m) => m.close(false),
            Transport::Closed => {}
        }
    }

    /// Closes at once, discarding what is buffered: the peer sees a reset
    /// (over UNIX, `ECONNRESET` when unread input is discarded, else the
    /// end of input).
    pub(crate) fn abort(&mut self) {
        match std::mem::replace(self, Transport::Closed) {
            Transport::Tcp(s) => {
                let _ = SockRef::from(&s).set_linger(Some(Duration::ZERO));
            }
            Transport::Unix(_) => {}
            Transport::Memory(m) => m.close(true),
            Transport::Sim(m) => m.close(true),
            Transport::Closed => {}
        }
    }

    pub(crate) fn peer_addr(&self) -> io::Result<Address> {
        match self {
            Transport::Tcp(s) => s.peer_addr().map(Address::Inet),
            Transport::Unix(u) => u
                .stream
                .peer_addr()
                .map(|a| Address::Unix(UnixAddr::from_std(&a))),
            Transport::Memory(m) => Ok(Address::Inet(m.peer_addr())),
            Transport::Sim(m) => m.peer_addr(),
            Transport::Closed => Err(not_connected()),
        }
    }

    pub(crate) fn local_addr(&self) -> io::Result<Address> {
        match self {
            Transport::Tcp(s) => s.local_addr().map(Address::Inet),
            Transport::Unix(u) => u
                .stream
                .local_addr()
                .map(|a| Address::Unix(UnixAddr::from_std(&a))),
            Transport::Memory(m) => Ok(Address::Inet(m.local_addr())),
            Transport::Sim(m) => Ok(m.local_addr()),
            Transport::Closed => Err(not_connected()),
        }
    }

    /// The peer's credentials (UNIX sockets only).
    pub(crate) fn peer_cred(&self) -> io::Result<crate::unix::PeerCred> {
        match self {
            Transport::Unix(u) => crate::unix::fds::peer_cred(&u.stream),
            Transport::Closed => Err(not_connected()),
            _ => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "peer credentials exist only for UNIX sockets",
            )),
        }
    }

    pub(crate) fn set_nodelay(&self, on: bool) -> io::Result<()> {
        match self {
            Transport::Tcp(s) => s.set_nodelay(on),
            Transport::Unix(_) | Transport::Memory(_) | Transport::Sim(_) => Ok(()),
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
            Transport::Unix(_) | Transport::Memory(_) | Transport::Sim(_) => Ok(()),
            Transport::Closed => Err(not_connected()),
        }
    }
}
