//! Datagram sockets as actors (Twisted's `DatagramProtocol`, and
//! `listenUDP` / `listenUNIXDatagram` / `connectUNIXDatagram` /
//! `adoptDatagramPort`):
//! one [`DatagramSocket`] actor per socket runs a user
//! [`DatagramProtocol`]. The protocol and its [`Dgram`] handle are the
//! same for UNIX datagram sockets and UDP.
//!
//! * Receiving: up to `read_budget` datagrams per turn, each with its
//!   sender's [`Address`]; a datagram longer than the receive size is
//!   never cut silently: it goes to [`DatagramProtocol::truncated`] with
//!   its real length (and is counted).
//! * Sending never blocks and never drops silently: a datagram the
//!   kernel cannot take now (the socket's buffer, or a UNIX receiver's
//!   queue, is full) is refused with [`DatagramError::WouldBlock`],
//!   counted, and the protocol is told [`send_ready`] when it can try
//!   again: on the next writable edge, or after a short back-off (a full
//!   UNIX receiver raises no readiness on an unconnected sender).
//! * Errors are values: too big (`EMSGSIZE`), an address of the wrong
//!   family, not connected, closed.
//!
//! Owns: the socket's registration, the receive loop, sending, the
//! counters. Must not touch: streams (`conn/`), binding policy (`unix/`).
//!
//! [`send_ready`]: DatagramProtocol::send_ready

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, SockRef, Socket, Type};
use weft_actors::{Actor, ActorResult, Addr, Ctx, ExitReason, SendError, Spawn};
use weft_runtime::mio::unix::SourceFd;
use weft_runtime::mio::Interest;
use weft_runtime::{Handle, IoToken, Readiness};

use crate::addr::{Address, UnixAddr};
use crate::conn::{put_buf, take_buf};
use crate::listener::ListenError;
use crate::unix::SocketFile;

/// Why a protocol callback failed (an `ActorResult`'s error).
type Failure = Box<dyn std::error::Error + Send + Sync>;

/// The most datagrams one `sendmmsg` takes (the kernel's `UIO_MAXIOV`).
const SEND_BATCH_MAX: usize = 1024;

/// The most segments one segmented send may carry (`UDP_MAX_SEGMENTS`
/// on the oldest kernels that have the offload).
const GSO_MAX_SEGMENTS: usize = 64;

/// A GRO receive slot: the largest run the kernel coalesces.
const GRO_BUFFER: usize = 64 * 1024;

/// The first wait before telling a protocol it may send again after a
/// refused send, when no writable edge comes; it doubles while sends keep
/// being refused, up to `RETRY_MAX`.
const RETRY: Duration = Duration::from_millis(2);
const RETRY_MAX: Duration = Duration::from_millis(100);

/// A protocol for one datagram socket. Every callback gets the
/// [`Dgram`] handle (send, connect, addresses, counters, the context).
///
/// ```
/// use weft_actors::ActorResult;
/// use weft_io::datagram::{DatagramProtocol, Dgram};
/// use weft_io::Address;
///
/// /// Answers every datagram with its upper-case copy.
/// struct Upper;
/// impl DatagramProtocol for Upper {
///     type Msg = ();
///     fn datagram(&mut self, sock: &mut Dgram<'_, '_, Self>, data: &[u8], from: &Address) -> ActorResult {
///         // A full receiver is a value; this protocol drops the reply then.
///         let _ = sock.send_to(&data.to_ascii_uppercase(), from);
///         Ok(())
///     }
/// }
/// ```
pub trait DatagramProtocol: Send + Sized + 'static {
    /// The protocol's own messages (from other actors and threads).
    type Msg: Send + 'static;

    /// The socket is open (its local address is `sock.local_addr()`).
    fn bound(&mut self, sock: &mut Dgram<'_, '_, Self>) -> ActorResult {
        let _ = sock;
        Ok(())
    }

    /// A datagram arrived from `from` (`UnixAddr::Unnamed` for an
    /// unbound UNIX sender).
    fn datagram(
        &mut self,
        sock: &mut Dgram<'_, '_, Self>,
        data: &[u8],
        from: &Address,
    ) -> ActorResult;

    /// A datagram of `len` bytes arrived, longer than the receive size:
    /// `data` is its first part. The default logs it; either way it is
    /// counted in [`DatagramStats::truncated`].
    fn truncated(
        &mut self,
        sock: &mut Dgram<'_, '_, Self>,
        data: &[u8],
        len: usize,
        from: &Address,
    ) -> ActorResult {
        let _ = (sock, data);
        tracing::warn!(%from, len, "a datagram longer than the receive size was cut");
        Ok(())
    }

    /// A turn's burst of datagrams is over (called once after each turn
    /// that delivered any): the place to send replies gathered during the
    /// burst with one [`Dgram::send_batch_to`] instead of one system call
    /// each.
    fn read_done(&mut self, sock: &mut Dgram<'_, '_, Self>) -> ActorResult {
        let _ = sock;
        Ok(())
    }

    /// A connected socket's peer refused (nothing listens there: UDP's
    /// ICMP port unreachable, or a UNIX peer that went away).
    fn refused(&mut self, sock: &mut Dgram<'_, '_, Self>) -> ActorResult {
        let _ = sock;
        Ok(())
    }

    /// A send was refused with `WouldBlock` since the last call: try
    /// again now.
    fn send_ready(&mut self, sock: &mut Dgram<'_, '_, Self>) -> ActorResult {
        let _ = sock;
        Ok(())
    }

    /// One of the protocol's own messages.
    fn message(&mut self, sock: &mut Dgram<'_, '_, Self>, msg: Self::Msg) -> ActorResult {
        let _ = (sock, msg);
        Ok(())
    }

    /// The socket closed (asked, or the actor is stopping).
    fn closed(&mut self, sock: &mut Dgram<'_, '_, Self>) {
        let _ = sock;
    }
}

/// Why a datagram was not sent. Nothing was sent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DatagramError {
    /// The kernel cannot take it now (the socket's buffer or the UNIX
    /// receiver's queue is full); `send_ready` follows.
    #[error("the datagram cannot be sent now (buffer or receiver full)")]
    WouldBlock,
    /// Larger than the socket can send (`EMSGSIZE`).
    #[error("a datagram of {len} bytes is too big for this socket")]
    TooBig {
        /// Its length.
        len: usize,
    },
    /// The address is not of this socket's family.
    #[error("{addr} is not an address for this socket's family")]
    WrongFamily {
        /// The address given.
        addr: String,
    },
    /// `send` on a socket that is not connected.
    #[error("the socket is not connected")]
    NotConnected,
    /// The peer refused (nothing receives there).
    #[error("refused: nothing receives at {0}")]
    Refused(String),
    /// The kernel denied it: a broadcast address without the broadcast
    /// option (`EACCES`), or a firewall rule (`EPERM`).
    #[error("sending to {0} is not allowed (a broadcast address without the broadcast option?)")]
    Denied(String),
    /// The socket is closed.
    #[error("the socket is closed")]
    Closed,
    /// Another OS error.
    #[error("{kind:?}: {message}")]
    Io {
        /// The error's kind.
        kind: io::ErrorKind,
        /// Its text.
        message: String,
    },
}

/// Why [`Dgram::send_batch_to`] stopped before the end.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{sent} datagrams of the batch were sent; the next was not: {error}")]
pub struct BatchError {
    /// How many of the batch went (the first `sent`).
    pub sent: usize,
    /// Why the next one did not.
    pub error: DatagramError,
}

/// A datagram socket's counters.
#[derive(Debug, Default)]
pub struct DatagramStats {
    /// Datagrams received whole.
    pub received: AtomicU64,
    /// Datagrams longer than the receive size.
    pub truncated: AtomicU64,
    /// Datagrams sent.
    pub sent: AtomicU64,
    /// Sends refused with `WouldBlock`.
    pub would_block: AtomicU64,
}

/// Options of a datagram socket. The socket options (broadcast, TTL,
/// IPv6-only, address reuse, buffer sizes, multicast) apply to UDP and are
/// ignored for UNIX sockets; `unix_mode` is the reverse.
#[must_use = "options do nothing until passed to a bind call"]
#[derive(Clone, Debug)]
pub struct DatagramOptions {
    recv_size: usize,
    read_budget: usize,
    unix_mode: Option<u32>,
    capacity: usize,
    broadcast: bool,
    ttl: Option<u32>,
    only_v6: Option<bool>,
    reuse_addr: bool,
    reuse_port: bool,
    recv_buffer: Option<usize>,
    send_buffer: Option<usize>,
    multicast_ttl: Option<u32>,
    multicast_loop: Option<bool>,
    dest_addr: bool,
    batch: usize,
    gro: bool,
}

impl Default for DatagramOptions {
    fn default() -> Self {
        DatagramOptions {
            recv_size: 64 * 1024,
            read_budget: 64,
            unix_mode: None,
            capacity: weft_actors::DEFAULT_CAPACITY,
            broadcast: false,
            ttl: None,
            only_v6: None,
            reuse_addr: false,
            reuse_port: false,
            recv_buffer: None,
            send_buffer: None,
            multicast_ttl: None,
            multicast_loop: None,
            dest_addr: false,
            batch: 1,
            gro: false,
        }
    }
}

impl DatagramOptions {
    /// Defaults: 64 KiB receive size, 64 datagrams per turn.
    pub fn new() -> Self {
        Self::default()
    }

    /// The largest datagram received whole (Twisted's `maxPacketSize`);
    /// longer ones go to `truncated`. At most 64 KiB.
    pub fn recv_size(mut self, bytes: usize) -> Self {
        self.recv_size = bytes.clamp(1, 64 * 1024);
        self
    }

    /// Datagrams handled per turn before other actors run (default 64).
    /// A receive call's datagrams are all handled, so with `batch` or
    /// `gro` a turn may pass the budget by what one call brought.
    pub fn read_budget(mut self, n: usize) -> Self {
        self.read_budget = n.max(1);
        self
    }

    /// A UNIX socket bound to a path: the file's permission bits.
    pub fn unix_mode(mut self, mode: u32) -> Self {
        self.unix_mode = Some(mode & 0o7777);
        self
    }

    /// The actor's mailbox capacity.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// UDP: may send to broadcast addresses (`SO_BROADCAST`; off by
    /// default, and a send to one is then `DatagramError::Denied`).
    pub fn broadcast(mut self, on: bool) -> Self {
        self.broadcast = on;
        self
    }

    /// UDP: the unicast TTL (IPv4) or hop limit (IPv6).
    pub fn ttl(mut self, ttl: u32) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// UDP on an IPv6 address: only IPv6 (`IPV6_V6ONLY`), or also IPv4
    /// through mapped addresses. Default: the system's.
    pub fn only_v6(mut self, on: bool) -> Self {
        self.only_v6 = Some(on);
        self
    }

    /// UDP: `SO_REUSEADDR` (several sockets on one multicast group and
    /// port, Twisted's `listenMultiple`).
    pub fn reuse_addr(mut self, on: bool) -> Self {
        self.reuse_addr = on;
        self
    }

    /// UDP: `SO_REUSEPORT` (the kernel spreads unicast datagrams over the
    /// sockets bound to the port).
    pub fn reuse_port(mut self, on: bool) -> Self {
        self.reuse_port = on;
        self
    }

    /// The kernel's receive buffer (`SO_RCVBUF`; it may double it).
    pub fn recv_buffer(mut self, bytes: usize) -> Self {
        self.recv_buffer = Some(bytes);
        self
    }

    /// The kernel's send buffer (`SO_SNDBUF`).
    pub fn send_buffer(mut self, bytes: usize) -> Self {
        self.send_buffer = Some(bytes);
        self
    }

    /// UDP: the TTL (hops) of multicast datagrams sent (default 1: the
    /// local network).
    pub fn multicast_ttl(mut self, ttl: u32) -> Self {
        self.multicast_ttl = Some(ttl);
        self
    }

    /// UDP: whether multicast datagrams sent come back to this host's
    /// members (default on).
    pub fn multicast_loop(mut self, on: bool) -> Self {
        self.multicast_loop = Some(on);
        self
    }

    /// UDP: receive up to `n` datagrams per system call (`recvmmsg`), into
    /// a buffer of `n` times the receive size that the socket keeps (so
    /// set a small `recv_size` with it). Each datagram is still its own
    /// `datagram` call. Not with `dest_addr` (which then wins). Default 1.
    pub fn batch(mut self, n: usize) -> Self {
        self.batch = n.clamp(1, 1024);
        self
    }

    /// UDP on Linux: generic receive offload (`UDP_GRO`). The kernel
    /// hands over a run of equal-sized datagrams from one sender as one
    /// buffer of up to 64 KiB, which the socket splits again: the
    /// protocol still gets each datagram in its own `datagram` call, with
    /// one system call per run instead of one per datagram. Each of the
    /// `batch` receive slots then takes 64 KiB. An opt-in (Twisted and
    /// the BSD socket API deliver one datagram per read); a kernel
    /// without it (before 5.0) makes the bind fail. Not with `dest_addr`
    /// (which then wins).
    pub fn gro(mut self, on: bool) -> Self {
        self.gro = on;
        self
    }

    /// Whether receiving goes through `recvmmsg` (batch or GRO).
    fn batched(&self, unix: bool) -> bool {
        (self.batch > 1 || self.gro) && !self.dest_addr && !unix
    }

    /// UDP: learn the address each datagram was sent to
    /// ([`Dgram::destination`], from `IP_PKTINFO` / `IPV6_RECVPKTINFO`):
    /// which of the host's addresses, or which multicast group, a socket
    /// bound to the wildcard address was reached at.
    pub fn dest_addr(mut self, on: bool) -> Self {
        self.dest_addr = on;
        self
    }

    /// Applies the socket options to a UDP socket before it binds. Each
    /// socket receives the multicast groups it joined, not every group
    /// some socket on the host joined (Linux's `IP_MULTICAST_ALL`, on by
    /// default there, is turned off).
    fn apply_udp(&self, sock: &Socket, v6: bool) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        {
            if v6 {
                // Linux 4.20 and later; older kernels keep their default.
                let _ = sock.set_multicast_all_v6(false);
            } else {
                sock.set_multicast_all_v4(false)?;
            }
        }
        if self.reuse_addr {
            sock.set_reuse_address(true)?;
        }
        if self.reuse_port {
            sock.set_reuse_port(true)?;
        }
        if let (true, Some(only)) = (v6, self.only_v6) {
            sock.set_only_v6(only)?;
        }
        if self.broadcast {
            sock.set_broadcast(true)?;
        }
        if let Some(ttl) = self.ttl {
            if v6 {
                sock.set_unicast_hops_v6(ttl)?;
            } else {
                sock.set_ttl_v4(ttl)?;
            }
        }
        if let Some(bytes) = self.recv_buffer {
            sock.set_recv_buffer_size(bytes)?;
        }
        if let Some(bytes) = self.send_buffer {
            sock.set_send_buffer_size(bytes)?;
        }
        if let Some(ttl) = self.multicast_ttl {
            if v6 {
                sock.set_multicast_hops_v6(ttl)?;
            } else {
                sock.set_multicast_ttl_v4(ttl)?;
            }
        }
        if let Some(on) = self.multicast_loop {
            if v6 {
                sock.set_multicast_loop_v6(on)?;
            } else {
                sock.set_multicast_loop_v4(on)?;
            }
        }
        // The one flag option asked: destination addresses, or GRO.
        let flag = if self.dest_addr {
            Some(if v6 {
                (nix::libc::IPPROTO_IPV6, nix::libc::IPV6_RECVPKTINFO)
            } else {
                (nix::libc::IPPROTO_IP, nix::libc::IP_PKTINFO)
            })
        } else if self.gro {
            Some((nix::libc::SOL_UDP, nix::libc::UDP_GRO))
        } else {
            None
        };
        if let Some((level, name)) = flag {
            let on: nix::libc::c_int = 1;
            // SAFETY: an int option with its size, on an open socket.
            let rc = unsafe {
                nix::libc::setsockopt(
                    sock.as_raw_fd(),
                    level,
                    name,
                    (&on as *const nix::libc::c_int).cast(),
                    std::mem::size_of::<nix::libc::c_int>() as nix::libc::socklen_t,
                )
            };
            if rc < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

/// A datagram socket actor's message.
pub struct DgramMsg<M>(Event<M>);

enum Event<M> {
    User(M),
    Io(Readiness),
    ReadMore,
    Retry,
    Close,
}

impl<M> DgramMsg<M> {
    /// Wraps a protocol message (for [`Ctx`] calls that take the actor's
    /// own message type).
    pub fn user(msg: M) -> Self {
        DgramMsg(Event::User(msg))
    }
}

impl<M> std::fmt::Debug for DgramMsg<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DgramMsg")
    }
}

/// Everything of a datagram socket but its protocol.
struct Core {
    fd: Option<OwnedFd>,
    /// A socket of the simulated network instead of `fd`.
    sim: Option<Arc<crate::sim::SimUdp>>,
    token: Option<IoToken>,
    unix: bool,
    local: Address,
    peer: Option<Address>,
    opts: DatagramOptions,
    stats: Arc<DatagramStats>,
    /// A send was refused: `send_ready` is owed.
    owed_ready: bool,
    /// The destination of the datagram being handled (`dest_addr`).
    dest: Option<std::net::IpAddr>,
    /// `recvmmsg`'s buffers (`batch` above 1, UDP).
    batch: Option<Box<Batch>>,
    retry_armed: bool,
    retry_delay: Duration,
    readable: bool,
    closing: bool,
    file: Option<SocketFile>,
}

/// The handle a [`DatagramProtocol`] gets in every callback.
///
/// ```
/// use std::time::Duration;
/// use weft_actors::ActorResult;
/// use weft_io::datagram::{listen_udp, DatagramOptions, DatagramProtocol, Dgram};
/// use weft_io::Address;
///
/// /// Answers "ping" with "pong" to whoever sent it.
/// struct Pong;
/// impl DatagramProtocol for Pong {
///     type Msg = ();
///     fn datagram(&mut self, sock: &mut Dgram<'_, '_, Self>, data: &[u8], from: &Address) -> ActorResult {
///         if data == b"ping" {
///             // A full send buffer is a value (WouldBlock), never a wait.
///             let _ = sock.send_to(b"pong", from);
///         }
///         Ok(())
///     }
/// }
///
/// let rt = weft_runtime::Runtime::builder().build().unwrap();
/// let sock = listen_udp(rt.handle(), "127.0.0.1:0".parse().unwrap(), DatagramOptions::new(), Pong).unwrap();
/// let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
/// client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
/// client.send_to(b"ping", sock.local_addr().inet().unwrap()).unwrap();
/// let mut buf = [0u8; 16];
/// let (n, _) = client.recv_from(&mut buf).unwrap();
/// assert_eq!(&buf[..n], b"pong");
/// ```
pub struct Dgram<'a, 'c, P: DatagramProtocol> {
    core: &'a mut Core,
    ctx: &'a mut Ctx<'c, DatagramSocket<P>>,
}

impl<'c, P: DatagramProtocol> Dgram<'_, 'c, P> {
    /// Sends `data` to `to` (an address of this socket's family).
    pub fn send_to(&mut self, data: &[u8], to: &Address) -> Result<(), DatagramError> {
        let addr = self.sockaddr(to)?;
        if let Some(sim) = &self.core.sim {
            let result = match addr.as_socket() {
                Some(a) => sim.send_to(data, a),
                None => Err(io::ErrorKind::InvalidInput.into()),
            };
            return self.core.sent(result, data.len(), Some(to));
        }
        let fd = self.core.fd.as_ref().ok_or(DatagramError::Closed)?;
        let result = SockRef::from(fd).send_to(data, &addr);
        let outcome = self.core.sent(result, data.len(), Some(to));
        self.arm_retry();
        outcome
    }

    /// Sends `data` to the connected peer.
    pub fn send(&mut self, data: &[u8]) -> Result<(), DatagramError> {
        let Some(peer) = self.core.peer.clone() else {
            return Err(DatagramError::NotConnected);
        };
        if self.core.sim.is_some() {
            return self.send_to(data, &peer);
        }
        let fd = self.core.fd.as_ref().ok_or(DatagramError::Closed)?;
        let result = SockRef::from(fd).send(data);
        let peer = self.core.peer.clone();
        let outcome = self.core.sent(result, data.len(), peer.as_ref());
        self.arm_retry();
        outcome
    }

    /// Sends several datagrams, each to its own address, in as few
    /// system calls as the OS allows (`sendmmsg`, up to 1024 a call).
    /// They go in order; the first the kernel refuses stops the batch,
    /// and the error says how many went before it and why it did not
    /// (a `WouldBlock` owes `send_ready`, as for `send_to`).
    pub fn send_batch_to(&mut self, datagrams: &[(&[u8], &Address)]) -> Result<(), BatchError> {
        let mut sent = 0;
        while sent < datagrams.len() {
            let part = &datagrams[sent..datagrams.len().min(sent + SEND_BATCH_MAX)];
            match self.send_part(part) {
                Ok(k) => sent += k,
                Err(error) => {
                    self.arm_retry();
                    return Err(BatchError { sent, error });
                }
            }
        }
        Ok(())
    }

    /// One `sendmmsg` of `part`: how many went, or why the first did not.
    fn send_part(&mut self, part: &[(&[u8], &Address)]) -> Result<usize, DatagramError> {
        // The prefix whose addresses are good goes; a bad one is the
        // error once it comes first.
        let mut addrs = Vec::with_capacity(part.len());
        for (_, to) in part {
            match self.sockaddr(to) {
                Ok(a) => addrs.push(a),
                Err(e) if addrs.is_empty() => return Err(e),
                Err(_) => break,
            }
        }
        let part = &part[..addrs.len()];
        if self.core.sim.is_some() {
            // Simulated: one by one.
            for (k, (data, to)) in part.iter().enumerate() {
                if let Err(e) = self.send_to(data, to) {
                    return if k == 0 { Err(e) } else { Ok(k) };
                }
            }
            return Ok(part.len());
        }
        let fd = self.core.fd.as_ref().ok_or(DatagramError::Closed)?;
        let mut iovs: Vec<nix::libc::iovec> = part
            .iter()
            .map(|(data, _)| nix::libc::iovec {
                iov_base: data.as_ptr() as *mut _,
                iov_len: data.len(),
            })
            .collect();
        // SAFETY: an all-zero mmsghdr is valid (no name, no data, no
        // control); each is then pointed at its own address and iovec.
        let mut hdrs: Vec<nix::libc::mmsghdr> = (0..part.len())
            .map(|_| unsafe { std::mem::zeroed() })
            .collect();
        for ((h, iov), addr) in hdrs.iter_mut().zip(iovs.iter_mut()).zip(addrs.iter()) {
            h.msg_hdr.msg_name = addr.as_ptr() as *mut _;
            h.msg_hdr.msg_namelen = addr.len();
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: `hdrs.len()` headers, each pointing at an address, an
        // iovec and the caller's bytes, all alive for the call; sendmmsg
        // only reads them (it writes `msg_len`, in `hdrs`).
        let rc = unsafe {
            nix::libc::sendmmsg(
                fd.as_raw_fd(),
                hdrs.as_mut_ptr(),
                hdrs.len() as _,
                nix::libc::MSG_DONTWAIT,
            )
        };
        if rc > 0 {
            let k = rc as usize;
            self.core.stats.sent.fetch_add(k as u64, Ordering::Relaxed);
            self.core.retry_delay = RETRY;
            return Ok(k);
        }
        let err = if rc == 0 {
            io::Error::from(io::ErrorKind::WouldBlock)
        } else {
            io::Error::last_os_error()
        };
        let (data, to) = part[0];
        // An error in is an error out; WouldBlock only to be total.
        Err(self
            .core
            .sent(Err(err), data.len(), Some(to))
            .err()
            .unwrap_or(DatagramError::WouldBlock))
    }

    /// Sends `data` to `to` as datagrams of `segment` bytes each (the
    /// last may be shorter) in one system call: generic segmentation
    /// offload (`UDP_SEGMENT`, Linux 4.18 and later; UDP only). The
    /// receiver sees ordinary datagrams. At most 64 segments; a segment
    /// larger than the route's MTU allows is refused with `TooBig` (the
    /// kernel does not fragment segmented sends), and a kernel or device
    /// without the offload gives an `Io` error: send them one by one then.
    pub fn send_segments_to(
        &mut self,
        data: &[u8],
        segment: usize,
        to: &Address,
    ) -> Result<(), DatagramError> {
        if segment == 0 || data.len() <= segment {
            return self.send_to(data, to);
        }
        if self.core.unix {
            return Err(DatagramError::Io {
                kind: io::ErrorKind::Unsupported,
                message: "segmentation offload on a UNIX socket".into(),
            });
        }
        let count = data.len().div_ceil(segment);
        if count > GSO_MAX_SEGMENTS || segment > u16::MAX as usize {
            return Err(DatagramError::TooBig { len: data.len() });
        }
        let addr = self.sockaddr(to)?;
        if self.core.sim.is_some() {
            // Simulated: the segments as the receiver sees them.
            for chunk in data.chunks(segment) {
                self.send_to(chunk, to)?;
            }
            return Ok(());
        }
        let fd = self.core.fd.as_ref().ok_or(DatagramError::Closed)?;
        let rc = send_segmented(fd.as_raw_fd(), data, segment as u16, &addr);
        let result = match rc {
            Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL) => {
                return Err(DatagramError::TooBig { len: segment });
            }
            other => other,
        };
        let outcome = self.core.sent(result, data.len(), Some(to));
        if outcome.is_ok() {
            // `sent` counted one; the others of the run.
            self.core
                .stats
                .sent
                .fetch_add(count as u64 - 1, Ordering::Relaxed);
        }
        self.arm_retry();
        outcome
    }

    /// `to` as the OS's address, if it is of this socket's family.
    fn sockaddr(&self, to: &Address) -> Result<socket2::SockAddr, DatagramError> {
        match (to, self.core.unix) {
            (Address::Unix(u), true) => u.to_sockaddr().map_err(|e| DatagramError::Io {
                kind: e.kind(),
                message: e.to_string(),
            }),
            // An IPv4 address from an IPv6 socket goes as its mapped form
            // (dual-stack); the reverse cannot go.
            (Address::Inet(std::net::SocketAddr::V4(a)), false) if self.is_v6() => {
                let mapped = std::net::SocketAddrV6::new(a.ip().to_ipv6_mapped(), a.port(), 0, 0);
                Ok(socket2::SockAddr::from(mapped))
            }
            (Address::Inet(a @ std::net::SocketAddr::V6(_)), false) if !self.is_v6() => {
                Err(DatagramError::WrongFamily {
                    addr: a.to_string(),
                })
            }
            (Address::Inet(a), false) => Ok(socket2::SockAddr::from(*a)),
            _ => Err(DatagramError::WrongFamily {
                addr: to.to_string(),
            }),
        }
    }

    /// Connects to `to`: `send` goes there, and only its datagrams are
    /// received.
    pub fn connect(&mut self, to: &Address) -> io::Result<()> {
        let addr = match (to, self.core.unix) {
            (Address::Unix(u), true) => u.to_sockaddr()?,
            (Address::Inet(a), false) => socket2::SockAddr::from(*a),
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{to} is not an address for this socket's family"),
                ))
            }
        };
        if self.core.sim.is_some() {
            self.core.peer = Some(to.clone());
            return Ok(());
        }
        let fd = self.core.fd.as_ref().ok_or(io::ErrorKind::NotConnected)?;
        SockRef::from(fd).connect(&addr)?;
        self.core.peer = Some(to.clone());
        Ok(())
    }

    /// Disconnects (a connected socket goes back to sending anywhere and
    /// receiving from anyone).
    pub fn disconnect(&mut self) -> io::Result<()> {
        if self.core.sim.is_some() {
            self.core.peer = None;
            return Ok(());
        }
        let fd = self.core.fd.as_ref().ok_or(io::ErrorKind::NotConnected)?;
        // An address of family AF_UNSPEC dissolves the association.
        // SAFETY: an all-zero sockaddr with family AF_UNSPEC, its size.
        let rc = unsafe {
            let mut addr: nix::libc::sockaddr = std::mem::zeroed();
            addr.sa_family = nix::libc::AF_UNSPEC as nix::libc::sa_family_t;
            nix::libc::connect(
                fd.as_raw_fd(),
                &addr,
                std::mem::size_of::<nix::libc::sockaddr>() as nix::libc::socklen_t,
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            // Linux answers AF_UNSPEC on a UDP socket with EAFNOSUPPORT
            // on some versions after disconnecting anyway.
            if e.raw_os_error() != Some(nix::libc::EAFNOSUPPORT) {
                return Err(e);
            }
        }
        self.core.peer = None;
        Ok(())
    }

    /// UDP: joins the IPv4 multicast `group` on the interface with address
    /// `interface` (`0.0.0.0`: the system's choice). A non-multicast
    /// group, or an interface that does not exist, is an error.
    pub fn join_multicast_v4(
        &mut self,
        group: std::net::Ipv4Addr,
        interface: std::net::Ipv4Addr,
    ) -> io::Result<()> {
        self.socket()?.join_multicast_v4(&group, &interface)
    }

    /// UDP: leaves an IPv4 group joined with `join_multicast_v4`.
    pub fn leave_multicast_v4(
        &mut self,
        group: std::net::Ipv4Addr,
        interface: std::net::Ipv4Addr,
    ) -> io::Result<()> {
        self.socket()?.leave_multicast_v4(&group, &interface)
    }

    /// UDP: joins `group` for datagrams from `source` only
    /// (source-specific multicast, `IP_ADD_SOURCE_MEMBERSHIP`).
    pub fn join_source_multicast_v4(
        &mut self,
        group: std::net::Ipv4Addr,
        source: std::net::Ipv4Addr,
        interface: std::net::Ipv4Addr,
    ) -> io::Result<()> {
        self.socket()?.join_ssm_v4(&source, &group, &interface)
    }

    /// UDP: joins the IPv6 multicast `group` on interface number
    /// `interface` (0: the system's choice).
    pub fn join_multicast_v6(
        &mut self,
        group: std::net::Ipv6Addr,
        interface: u32,
    ) -> io::Result<()> {
        self.socket()?.join_multicast_v6(&group, interface)
    }

    /// UDP: leaves an IPv6 group.
    pub fn leave_multicast_v6(
        &mut self,
        group: std::net::Ipv6Addr,
        interface: u32,
    ) -> io::Result<()> {
        self.socket()?.leave_multicast_v6(&group, interface)
    }

    /// UDP: the interface IPv4 multicast datagrams leave by.
    pub fn set_multicast_interface_v4(&mut self, interface: std::net::Ipv4Addr) -> io::Result<()> {
        self.socket()?.set_multicast_if_v4(&interface)
    }

    /// UDP: the interface IPv4 multicast datagrams leave by now.
    pub fn multicast_interface_v4(&self) -> io::Result<std::net::Ipv4Addr> {
        self.socket()?.multicast_if_v4()
    }

    /// UDP: the interface (by number; 0: the system's choice) IPv6
    /// multicast datagrams leave by.
    pub fn set_multicast_interface_v6(&mut self, interface: u32) -> io::Result<()> {
        self.socket()?.set_multicast_if_v6(interface)
    }

    /// UDP: the interface IPv6 multicast datagrams leave by now (0: the
    /// system's choice).
    pub fn multicast_interface_v6(&self) -> io::Result<u32> {
        self.socket()?.multicast_if_v6()
    }

    /// UDP: the TTL of multicast datagrams sent (IPv4; hops for IPv6).
    pub fn set_multicast_ttl(&mut self, ttl: u32) -> io::Result<()> {
        let sock = self.socket()?;
        if self.is_v6() {
            sock.set_multicast_hops_v6(ttl)
        } else {
            sock.set_multicast_ttl_v4(ttl)
        }
    }

    /// UDP: the TTL (hops) of multicast datagrams sent now.
    pub fn multicast_ttl(&self) -> io::Result<u32> {
        let sock = self.socket()?;
        if self.is_v6() {
            sock.multicast_hops_v6()
        } else {
            sock.multicast_ttl_v4()
        }
    }

    /// UDP: whether this host's members receive the multicast datagrams
    /// this socket sends.
    pub fn set_multicast_loop(&mut self, on: bool) -> io::Result<()> {
        let sock = self.socket()?;
        if self.is_v6() {
            sock.set_multicast_loop_v6(on)
        } else {
            sock.set_multicast_loop_v4(on)
        }
    }

    /// UDP: the multicast loopback mode now.
    pub fn multicast_loop(&self) -> io::Result<bool> {
        let sock = self.socket()?;
        if self.is_v6() {
            sock.multicast_loop_v6()
        } else {
            sock.multicast_loop_v4()
        }
    }

    /// UDP: allows or refuses sending to broadcast addresses.
    pub fn set_broadcast(&mut self, on: bool) -> io::Result<()> {
        self.socket()?.set_broadcast(on)
    }

    fn socket(&self) -> io::Result<SockRef<'_>> {
        if self.core.sim.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "socket options (multicast, broadcast) on a simulated socket",
            ));
        }
        match &self.core.fd {
            Some(fd) if !self.core.unix => Ok(SockRef::from(fd)),
            Some(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a UDP option on a UNIX socket",
            )),
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    fn is_v6(&self) -> bool {
        matches!(self.core.local, Address::Inet(std::net::SocketAddr::V6(_)))
    }

    /// This socket's address.
    pub fn local_addr(&self) -> &Address {
        &self.core.local
    }

    /// In `datagram` (and `truncated`) of a UDP socket with
    /// [`DatagramOptions::dest_addr`]: the address the datagram was sent
    /// to (one of this host's, or a multicast group). `None` otherwise.
    pub fn destination(&self) -> Option<std::net::IpAddr> {
        self.core.dest
    }

    /// The connected peer, if connected.
    pub fn peer_addr(&self) -> Option<&Address> {
        self.core.peer.as_ref()
    }

    /// The counters.
    pub fn stats(&self) -> &DatagramStats {
        &self.core.stats
    }

    /// Closes the socket once this callback returns.
    pub fn close(&mut self) {
        self.core.closing = true;
    }

    /// Sends this protocol `msg` after `delay` (a timer as a message).
    pub fn send_later(&mut self, delay: Duration, msg: P::Msg) -> weft_actors::TimerHandle {
        self.ctx.send_later(delay, DgramMsg(Event::User(msg)))
    }

    /// The runtime this socket runs on.
    pub fn runtime(&self) -> &Handle {
        self.ctx.runtime()
    }

    /// The actor context (timers, sends, spawning).
    pub fn ctx(&mut self) -> &mut Ctx<'c, DatagramSocket<P>> {
        self.ctx
    }

    /// A refused send owes `send_ready`: arm the back-off timer that
    /// gives it if no writable edge does first.
    fn arm_retry(&mut self) {
        let core = &mut *self.core;
        if core.owed_ready && !core.retry_armed {
            core.retry_armed = true;
            self.ctx
                .send_later(core.retry_delay, DgramMsg(Event::Retry));
            core.retry_delay = (core.retry_delay * 2).min(RETRY_MAX);
        }
    }
}

impl Core {
    /// The outcome of a send, counted; a refusal makes `send_ready` owed.
    /// Whether the socket is open (a descriptor, or a simulated socket).
    fn is_open(&self) -> bool {
        self.fd.is_some() || self.sim.is_some()
    }

    fn sent(
        &mut self,
        result: io::Result<usize>,
        len: usize,
        to: Option<&Address>,
    ) -> Result<(), DatagramError> {
        match result {
            Ok(_) => {
                self.stats.sent.fetch_add(1, Ordering::Relaxed);
                self.retry_delay = RETRY;
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.stats.would_block.fetch_add(1, Ordering::Relaxed);
                self.owed_ready = true;
                Err(DatagramError::WouldBlock)
            }
            Err(e) if e.raw_os_error() == Some(nix::libc::EMSGSIZE) => {
                Err(DatagramError::TooBig { len })
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Err(DatagramError::Refused(
                to.map(|a| a.to_string()).unwrap_or_default(),
            )),
            Err(e) if matches!(e.raw_os_error(), Some(nix::libc::EACCES | nix::libc::EPERM)) => {
                Err(DatagramError::Denied(
                    to.map(|a| a.to_string()).unwrap_or_default(),
                ))
            }
            Err(e) => Err(DatagramError::Io {
                kind: e.kind(),
                message: e.to_string(),
            }),
        }
    }
}

/// The actor that runs one datagram socket's [`DatagramProtocol`].
pub struct DatagramSocket<P: DatagramProtocol> {
    protocol: P,
    core: Core,
}

impl<P: DatagramProtocol> DatagramSocket<P> {
    fn dgram<'a, 'c>(core: &'a mut Core, ctx: &'a mut Ctx<'c, Self>) -> Dgram<'a, 'c, P> {
        Dgram { core, ctx }
    }

    /// Hands one received datagram to the protocol: whole, or cut to the
    /// receive size and reported as truncated.
    fn deliver(
        &mut self,
        ctx: &mut Ctx<'_, Self>,
        data: &[u8],
        len: usize,
        from: &Address,
    ) -> ActorResult {
        let size = self.core.opts.recv_size;
        let dgram = &mut Self::dgram(&mut self.core, ctx);
        if len > size {
            dgram.core.stats.truncated.fetch_add(1, Ordering::Relaxed);
            self.protocol
                .truncated(dgram, &data[..size.min(data.len())], len, from)
        } else {
            dgram.core.stats.received.fetch_add(1, Ordering::Relaxed);
            self.protocol.datagram(dgram, &data[..len], from)
        }
    }

    /// Receives with `recvmmsg`, `batch` slots per call at most; with GRO
    /// a slot may hold a run of datagrams, split here.
    fn read_batched(&mut self, ctx: &mut Ctx<'_, Self>) -> Result<usize, Failure> {
        let n = self.core.opts.batch;
        let gro = self.core.opts.gro;
        let chunk = if gro {
            GRO_BUFFER
        } else {
            self.core.opts.recv_size
        };
        let mut batch = self
            .core
            .batch
            .take()
            .unwrap_or_else(|| Box::new(Batch::new(n, chunk, gro)));
        let mut left = self.core.opts.read_budget;
        let mut delivered = 0;
        let result = loop {
            if left == 0 {
                ctx.send_self(DgramMsg(Event::ReadMore));
                break Ok(());
            }
            let Some(fd) = self.core.fd.as_ref().map(|f| f.as_raw_fd()) else {
                break Ok(());
            };
            if self.core.closing {
                break Ok(());
            }
            let asked = n.min(left);
            match batch.recv(fd, asked) {
                Ok(k) => {
                    let mut failed = None;
                    let before = delivered;
                    'slots: for i in 0..k {
                        let (len, from, segment) = batch.get(i);
                        let from = from
                            .map(Address::Inet)
                            .or_else(|| self.core.peer.clone())
                            .unwrap_or(Address::Unix(UnixAddr::Unnamed));
                        let data = batch.data(i);
                        // A GRO run of equal datagrams (the last may be
                        // shorter), or one datagram.
                        let piece = if segment > 0 && len > segment {
                            segment
                        } else {
                            len
                        };
                        let mut at = 0;
                        loop {
                            let this = piece.min(len - at);
                            let end = (at + this).min(data.len());
                            if let Err(e) = self.deliver(ctx, &data[at..end], this, &from) {
                                failed = Some(e);
                                break 'slots;
                            }
                            delivered += 1;
                            at += this;
                            if at >= len || self.core.closing {
                                break;
                            }
                        }
                        if self.core.closing {
                            break;
                        }
                    }
                    if let Some(e) = failed {
                        break Err(e);
                    }
                    // The budget counts datagrams (a GRO slot holds many).
                    left = left.saturating_sub((delivered - before).max(k));
                    if k < asked {
                        // Fewer than asked: the queue was empty (a new
                        // arrival raises a new edge).
                        self.core.readable = false;
                        break Ok(());
                    }
                }
                Err(nix::errno::Errno::EAGAIN) => {
                    self.core.readable = false;
                    break Ok(());
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(nix::errno::Errno::ECONNREFUSED) => {
                    if let Err(e) = self.protocol.refused(&mut Self::dgram(&mut self.core, ctx)) {
                        break Err(e);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "datagram receive failed");
                    self.core.readable = false;
                    break Ok(());
                }
            }
        };
        self.core.batch = Some(batch);
        result.map(|()| delivered)
    }

    /// One turn of receiving, then `read_done` if anything came.
    fn read_some(&mut self, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        let delivered = if self.core.opts.batched(self.core.unix) && self.core.sim.is_none() {
            self.read_batched(ctx)?
        } else {
            self.read_each(ctx)?
        };
        if delivered > 0 && !self.core.closing && self.core.is_open() {
            self.protocol
                .read_done(&mut Self::dgram(&mut self.core, ctx))?;
        }
        self.settle(ctx);
        Ok(())
    }

    /// Receives one datagram per call (`recvfrom`, or `recvmsg` for the
    /// destination address).
    fn read_each(&mut self, ctx: &mut Ctx<'_, Self>) -> Result<usize, Failure> {
        let mut delivered = 0;
        let mut buf = take_buf();
        let size = self.core.opts.recv_size.min(buf.len());
        let mut left = self.core.opts.read_budget;
        let result = loop {
            if left == 0 {
                ctx.send_self(DgramMsg(Event::ReadMore));
                break Ok(());
            }
            if self.core.closing {
                break Ok(());
            }
            let got = if let Some(sim) = &self.core.sim {
                match sim.recv(&mut buf[..size]) {
                    Ok((len, from)) => {
                        if self.core.opts.dest_addr {
                            self.core.dest = Some(sim.local_addr().ip());
                        }
                        Ok((len, socket2::SockAddr::from(from)))
                    }
                    Err(_) => Err(nix::errno::Errno::EAGAIN),
                }
            } else if let Some(fd) = self.core.fd.as_ref() {
                if self.core.opts.dest_addr {
                    recv_with_dest(fd.as_raw_fd(), &mut buf[..size]).map(|(len, from, dest)| {
                        self.core.dest = dest;
                        (len, from)
                    })
                } else {
                    recv_from(fd.as_raw_fd(), &mut buf[..size])
                }
            } else {
                break Ok(());
            };
            match got {
                Ok((len, from)) => {
                    left -= 1;
                    let from = to_address(&from)
                        .or_else(|| self.core.peer.clone())
                        .unwrap_or(Address::Unix(UnixAddr::Unnamed));
                    if let Err(e) = self.deliver(ctx, &buf[..len.min(size)], len, &from) {
                        break Err(e);
                    }
                    delivered += 1;
                }
                Err(nix::errno::Errno::EAGAIN) => {
                    self.core.readable = false;
                    break Ok(());
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(nix::errno::Errno::ECONNREFUSED) => {
                    if let Err(e) = self.protocol.refused(&mut Self::dgram(&mut self.core, ctx)) {
                        break Err(e);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "datagram receive failed");
                    self.core.readable = false;
                    break Ok(());
                }
            }
        };
        put_buf(buf);
        result.map(|()| delivered)
    }

    /// After a callback: close if asked.
    fn settle(&mut self, ctx: &mut Ctx<'_, Self>) {
        if self.core.closing && self.core.is_open() {
            self.release(ctx);
            self.protocol.closed(&mut Self::dgram(&mut self.core, ctx));
            ctx.stop();
        }
    }

    fn release(&mut self, ctx: &mut Ctx<'_, Self>) {
        if let (Some(token), Some(fd)) = (self.core.token.take(), self.core.fd.as_ref()) {
            let raw = fd.as_raw_fd();
            let _ = ctx.deregister_io(&mut SourceFd(&raw), token);
        }
        self.core.fd = None;
        if let Some(sim) = self.core.sim.take() {
            sim.close();
        }
        if let Some(file) = self.core.file.take() {
            file.remove();
        }
    }

    fn owe_ready(&mut self, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        if std::mem::take(&mut self.core.owed_ready) {
            self.protocol
                .send_ready(&mut Self::dgram(&mut self.core, ctx))?;
            self.settle(ctx);
        }
        Ok(())
    }
}

impl<P: DatagramProtocol> Actor for DatagramSocket<P> {
    type Msg = DgramMsg<P::Msg>;

    fn started(&mut self, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        if let Some(sim) = &self.core.sim {
            sim.attach(ctx.ready_sink(|r| DgramMsg(Event::Io(r))));
            self.protocol.bound(&mut Self::dgram(&mut self.core, ctx))?;
            self.settle(ctx);
            return Ok(());
        }
        let raw = self
            .core
            .fd
            .as_ref()
            .ok_or("a datagram socket without a descriptor")?
            .as_raw_fd();
        let token = ctx.register_io(
            &mut SourceFd(&raw),
            Interest::READABLE | Interest::WRITABLE,
            |r| DgramMsg(Event::Io(r)),
        )?;
        self.core.token = Some(token);
        self.protocol.bound(&mut Self::dgram(&mut self.core, ctx))?;
        self.settle(ctx);
        Ok(())
    }

    fn handle(&mut self, msg: Self::Msg, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        if !self.core.is_open() {
            return Ok(());
        }
        match msg.0 {
            Event::Io(r) => {
                if r.is_writable() {
                    self.owe_ready(ctx)?;
                }
                if r.is_readable() || r.is_error() {
                    self.core.readable = true;
                    self.read_some(ctx)?;
                }
            }
            Event::ReadMore => {
                if self.core.readable {
                    self.read_some(ctx)?;
                }
            }
            Event::Retry => {
                self.core.retry_armed = false;
                self.owe_ready(ctx)?;
            }
            Event::User(m) => {
                self.protocol
                    .message(&mut Self::dgram(&mut self.core, ctx), m)?;
                self.settle(ctx);
            }
            Event::Close => {
                self.core.closing = true;
                self.settle(ctx);
            }
        }
        Ok(())
    }

    fn stopped(&mut self, _reason: &ExitReason, ctx: &mut Ctx<'_, Self>) {
        if self.core.is_open() {
            self.release(ctx);
            self.protocol.closed(&mut Self::dgram(&mut self.core, ctx));
        }
    }
}

impl<P: DatagramProtocol> std::fmt::Debug for DatagramSocket<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatagramSocket")
            .field("local", &self.core.local)
            .finish_non_exhaustive()
    }
}

/// A datagram socket's address for other actors and threads.
pub struct DatagramRef<P: DatagramProtocol> {
    addr: Addr<DatagramSocket<P>>,
    local: Address,
    stats: Arc<DatagramStats>,
}

impl<P: DatagramProtocol> Clone for DatagramRef<P> {
    fn clone(&self) -> Self {
        DatagramRef {
            addr: self.addr.clone(),
            local: self.local.clone(),
            stats: self.stats.clone(),
        }
    }
}

impl<P: DatagramProtocol> DatagramRef<P> {
    /// Sends the protocol one of its messages.
    pub fn send(&self, msg: P::Msg) -> Result<(), SendError<P::Msg>> {
        self.addr
            .send(DgramMsg(Event::User(msg)))
            .map_err(|e| match e {
                SendError::Full(DgramMsg(Event::User(m))) => SendError::Full(m),
                SendError::Stopped(DgramMsg(Event::User(m))) => SendError::Stopped(m),
                SendError::Timeout(DgramMsg(Event::User(m))) => SendError::Timeout(m),
                _ => unreachable!("only user messages are sent here"),
            })
    }

    /// Closes the socket (the protocol is told `closed`); false if it had
    /// already closed.
    pub fn close(&self) -> bool {
        self.addr.send(DgramMsg(Event::Close)).is_ok()
    }

    /// The socket's address.
    pub fn local_addr(&self) -> &Address {
        &self.local
    }

    /// Its counters.
    pub fn stats(&self) -> &DatagramStats {
        &self.stats
    }

    /// The actor's address (to monitor or link it).
    pub fn addr(&self) -> &Addr<DatagramSocket<P>> {
        &self.addr
    }
}

impl<P: DatagramProtocol> std::fmt::Debug for DatagramRef<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatagramRef")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

/// `recvmsg` with `MSG_TRUNC` and room for one `IP_PKTINFO` or
/// `IPV6_PKTINFO` message: the datagram's real length (more than `buf`
/// holds when it was cut), its sender, and the address it was sent to.
fn recv_with_dest(
    fd: std::os::fd::RawFd,
    buf: &mut [u8],
) -> Result<(usize, socket2::SockAddr, Option<std::net::IpAddr>), nix::errno::Errno> {
    use nix::libc;
    let mut control = [0u64; 16];
    let mut dest = None;
    // SAFETY: `try_init` hands a zeroed sockaddr_storage and its length;
    // the msghdr points at it, at `buf` (exclusively borrowed) and at
    // `control`, each with its true length, so the kernel writes only
    // within them; the control messages are read only within
    // `msg_controllen` through CMSG_FIRSTHDR/NXTHDR, unaligned.
    let got = unsafe {
        socket2::SockAddr::try_init(|storage, len| {
            let mut iov = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_name = storage.cast();
            msg.msg_namelen = *len;
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = std::mem::size_of_val(&control) as _;
            let n = libc::recvmsg(fd, &mut msg, libc::MSG_TRUNC);
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            *len = msg.msg_namelen;
            let mut hdr = libc::CMSG_FIRSTHDR(&msg);
            while !hdr.is_null() {
                let h: libc::cmsghdr = std::ptr::read_unaligned(hdr);
                let data = libc::CMSG_DATA(hdr);
                if h.cmsg_level == libc::IPPROTO_IP && h.cmsg_type == libc::IP_PKTINFO {
                    let info: libc::in_pktinfo = std::ptr::read_unaligned(data.cast());
                    let ip = std::net::Ipv4Addr::from(u32::from_be(info.ipi_addr.s_addr));
                    dest = Some(std::net::IpAddr::V4(ip));
                } else if h.cmsg_level == libc::IPPROTO_IPV6 && h.cmsg_type == libc::IPV6_PKTINFO {
                    let info: libc::in6_pktinfo = std::ptr::read_unaligned(data.cast());
                    dest = Some(std::net::IpAddr::V6(info.ipi6_addr.s6_addr.into()));
                }
                hdr = libc::CMSG_NXTHDR(&msg, hdr);
            }
            Ok(n as usize)
        })
    };
    got.map(|(n, addr)| (n, addr, dest))
        .map_err(|e| nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0)))
}

/// `recvmmsg`'s buffers: `n` datagrams of `size` bytes, their senders'
/// addresses, and the headers that point at both (rebuilt before each
/// call, so nothing points into a moved value).
struct Batch {
    data: Vec<u8>,
    size: usize,
    addrs: Vec<nix::libc::sockaddr_storage>,
    iovs: Vec<nix::libc::iovec>,
    hdrs: Vec<nix::libc::mmsghdr>,
    /// Room for one `UDP_GRO` control message per slot (empty without GRO).
    control: Vec<[u64; 4]>,
}

// SAFETY: the raw pointers in `iovs` and `hdrs` point only into this
// value's own vectors and are rewritten before every use; the value is
// used by one thread at a time (the socket's actor).
unsafe impl Send for Batch {}

impl Batch {
    fn new(n: usize, size: usize, gro: bool) -> Self {
        Batch {
            control: if gro { vec![[0u64; 4]; n] } else { Vec::new() },
            data: vec![0u8; n * size],
            size,
            // SAFETY: all-zero bytes are valid for these plain C structs.
            addrs: (0..n).map(|_| unsafe { std::mem::zeroed() }).collect(),
            iovs: (0..n)
                .map(|_| nix::libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                })
                .collect(),
            // SAFETY: as above.
            hdrs: (0..n).map(|_| unsafe { std::mem::zeroed() }).collect(),
        }
    }

    /// Receives up to `want` datagrams without waiting; how many came.
    fn recv(&mut self, fd: std::os::fd::RawFd, want: usize) -> Result<usize, nix::errno::Errno> {
        let want = want.min(self.hdrs.len());
        for i in 0..want {
            let chunk = &mut self.data[i * self.size..(i + 1) * self.size];
            self.iovs[i] = nix::libc::iovec {
                iov_base: chunk.as_mut_ptr().cast(),
                iov_len: chunk.len(),
            };
            let h = &mut self.hdrs[i];
            h.msg_hdr.msg_name = (&mut self.addrs[i] as *mut nix::libc::sockaddr_storage).cast();
            h.msg_hdr.msg_namelen =
                std::mem::size_of::<nix::libc::sockaddr_storage>() as nix::libc::socklen_t;
            h.msg_hdr.msg_iov = &mut self.iovs[i];
            h.msg_hdr.msg_iovlen = 1;
            match self.control.get_mut(i) {
                Some(c) => {
                    h.msg_hdr.msg_control = c.as_mut_ptr().cast();
                    h.msg_hdr.msg_controllen = std::mem::size_of_val(c) as _;
                }
                None => {
                    h.msg_hdr.msg_control = std::ptr::null_mut();
                    h.msg_hdr.msg_controllen = 0;
                }
            }
            h.msg_len = 0;
        }
        // SAFETY: `want` headers, each pointing at its own address storage,
        // its own control buffer (or none) with its true length,
        // and one iovec over its own `size`-byte chunk of `data`, all
        // alive and exclusively borrowed for the call; no wait.
        let n = unsafe {
            nix::libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                want as _,
                nix::libc::MSG_DONTWAIT | nix::libc::MSG_TRUNC,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(nix::errno::Errno::last());
        }
        Ok(n as usize)
    }

    /// Slot `i` of the last call: its real length, its sender, and with
    /// GRO the size of the datagrams it holds (0: one datagram).
    fn get(&self, i: usize) -> (usize, Option<std::net::SocketAddr>, usize) {
        let len = self.hdrs[i].msg_len as usize;
        let segment = if self.control.is_empty() {
            0
        } else {
            self.segment(i)
        };
        let ss = &self.addrs[i];
        let from = match ss.ss_family as nix::libc::c_int {
            nix::libc::AF_INET => {
                // SAFETY: the family says the storage holds a sockaddr_in.
                let sin: nix::libc::sockaddr_in = unsafe {
                    std::ptr::read_unaligned((ss as *const nix::libc::sockaddr_storage).cast())
                };
                Some(std::net::SocketAddr::from((
                    std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                    u16::from_be(sin.sin_port),
                )))
            }
            nix::libc::AF_INET6 => {
                // SAFETY: the family says the storage holds a sockaddr_in6.
                let sin6: nix::libc::sockaddr_in6 = unsafe {
                    std::ptr::read_unaligned((ss as *const nix::libc::sockaddr_storage).cast())
                };
                Some(std::net::SocketAddr::V6(std::net::SocketAddrV6::new(
                    sin6.sin6_addr.s6_addr.into(),
                    u16::from_be(sin6.sin6_port),
                    sin6.sin6_flowinfo,
                    sin6.sin6_scope_id,
                )))
            }
            _ => None,
        };
        (len, from, segment)
    }

    /// The `UDP_GRO` segment size slot `i` carries, 0 if none.
    fn segment(&self, i: usize) -> usize {
        use nix::libc;
        let msg = &self.hdrs[i].msg_hdr;
        let mut segment = 0;
        // SAFETY: the kernel filled `msg_controllen` bytes of this slot's
        // control buffer; the headers are walked with CMSG_FIRSTHDR/NXTHDR
        // within it and read unaligned.
        unsafe {
            let mut hdr = libc::CMSG_FIRSTHDR(msg);
            while !hdr.is_null() {
                let h: libc::cmsghdr = std::ptr::read_unaligned(hdr);
                if h.cmsg_level == libc::SOL_UDP && h.cmsg_type == libc::UDP_GRO {
                    let size: libc::c_int = std::ptr::read_unaligned(libc::CMSG_DATA(hdr).cast());
                    segment = size.max(0) as usize;
                }
                hdr = libc::CMSG_NXTHDR(msg, hdr);
            }
        }
        segment
    }

    /// Datagram `i`'s bytes (its whole chunk; cut to its length by the caller).
    fn data(&self, i: usize) -> &[u8] {
        &self.data[i * self.size..(i + 1) * self.size]
    }
}

/// `sendmsg` of `data` to `addr` with a `UDP_SEGMENT` control message:
/// the kernel cuts it into datagrams of `segment` bytes.
fn send_segmented(
    fd: std::os::fd::RawFd,
    data: &[u8],
    segment: u16,
    addr: &socket2::SockAddr,
) -> io::Result<usize> {
    use nix::libc;
    let mut control = [0u64; 4];
    // SAFETY: the msghdr points at `addr`, one iovec over `data` (only
    // read) and `control`, each with its true length; the one control
    // message is written through CMSG_FIRSTHDR/CMSG_DATA within
    // `control`, whose CMSG_SPACE for a u16 fits in 32 bytes.
    let rc = unsafe {
        let mut iov = libc::iovec {
            iov_base: data.as_ptr() as *mut _,
            iov_len: data.len(),
        };
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_name = addr.as_ptr() as *mut _;
        msg.msg_namelen = addr.len();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(std::mem::size_of::<u16>() as u32) as _;
        let hdr = libc::CMSG_FIRSTHDR(&msg);
        (*hdr).cmsg_level = libc::SOL_UDP;
        (*hdr).cmsg_type = libc::UDP_SEGMENT;
        (*hdr).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<u16>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(hdr).cast::<u16>(), segment);
        libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT)
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc as usize)
    }
}

/// `recvfrom` with `MSG_TRUNC`: the datagram's real length (more than
/// `buf` holds when it was cut) and its sender.
fn recv_from(
    fd: std::os::fd::RawFd,
    buf: &mut [u8],
) -> Result<(usize, socket2::SockAddr), nix::errno::Errno> {
    // SAFETY: `try_init` hands a zeroed sockaddr_storage and its length;
    // `recvfrom` writes at most that much address and at most
    // `buf.len()` bytes into `buf`, which is exclusively borrowed.
    let got = unsafe {
        socket2::SockAddr::try_init(|storage, len| {
            let n = nix::libc::recvfrom(
                fd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                nix::libc::MSG_TRUNC,
                storage.cast(),
                len,
            );
            if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        })
    };
    got.map_err(|e| nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0)))
}

/// The OS's sender address as weft's (`None` when it gave none).
fn to_address(addr: &socket2::SockAddr) -> Option<Address> {
    if let Some(inet) = addr.as_socket() {
        return Some(Address::Inet(inet));
    }
    if addr.domain() == Domain::UNIX {
        if let Some(path) = addr.as_pathname() {
            return Some(Address::Unix(UnixAddr::Path(path.to_path_buf())));
        }
        if let Some(name) = addr.as_abstract_namespace() {
            return Some(Address::Unix(UnixAddr::Abstract(name.to_vec())));
        }
        return Some(Address::Unix(UnixAddr::Unnamed));
    }
    None
}

/// Spawns the actor for a socket of the simulated network.
fn spawn_sim_socket<P: DatagramProtocol>(
    handle: &Handle,
    sim: Arc<crate::sim::SimUdp>,
    options: DatagramOptions,
    protocol: P,
) -> io::Result<DatagramRef<P>> {
    let local = Address::Inet(sim.local_addr());
    let (fd, unix, peer, file) = (None, false, None, None);
    spawn_actor(
        handle,
        (fd, Some(sim)),
        unix,
        local,
        peer,
        file,
        options,
        protocol,
    )
}

/// Spawns the actor of a socket (a descriptor, or a simulated socket).
#[allow(clippy::too_many_arguments)]
fn spawn_actor<P: DatagramProtocol>(
    handle: &Handle,
    (fd, sim): (Option<OwnedFd>, Option<Arc<crate::sim::SimUdp>>),
    unix: bool,
    local: Address,
    peer: Option<Address>,
    file: Option<SocketFile>,
    options: DatagramOptions,
    protocol: P,
) -> io::Result<DatagramRef<P>> {
    let stats = Arc::new(DatagramStats::default());
    let capacity = options.capacity;
    let actor = DatagramSocket {
        protocol,
        core: Core {
            fd,
            sim,
            token: None,
            unix,
            local: local.clone(),
            peer,
            opts: options,
            stats: stats.clone(),
            owed_ready: false,
            dest: None,
            batch: None,
            retry_armed: false,
            retry_delay: RETRY,
            readable: false,
            closing: false,
            file,
        },
    };
    let addr = handle
        .spawn_with(actor, weft_actors::SpawnOptions::new().capacity(capacity))
        .map_err(|e| io::Error::other(e.to_string()))?;
    Ok(DatagramRef { addr, local, stats })
}

/// Spawns the actor for a bound (or adopted) socket.
pub(crate) fn spawn_socket<P: DatagramProtocol>(
    handle: &Handle,
    fd: OwnedFd,
    peer: Option<Address>,
    file: Option<SocketFile>,
    options: DatagramOptions,
    protocol: P,
) -> io::Result<DatagramRef<P>> {
    let sock = SockRef::from(&fd);
    sock.set_nonblocking(true)?;
    let local = sock.local_addr()?;
    let unix = local.domain() == Domain::UNIX;
    let local = if unix {
        Address::Unix(
            local
                .as_unix()
                .map(|a| UnixAddr::from_std(&a))
                .unwrap_or(UnixAddr::Unnamed),
        )
    } else {
        Address::Inet(local.as_socket().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "not an internet or UNIX socket",
            )
        })?)
    };
    spawn_actor(
        handle,
        (Some(fd), None),
        unix,
        local,
        peer,
        file,
        options,
        protocol,
    )
}

/// Binds a UNIX datagram socket to `addr` (a path, an abstract name, or
/// `UnixAddr::Unnamed` for an unbound one that can only send and receive
/// replies to nothing) and runs `protocol` on it (Twisted's
/// `listenUNIXDatagram`). A stale socket file at the path is replaced, a
/// live one is an error; the file is removed when the socket closes.
///
/// ```no_run
/// use weft_actors::ActorResult;
/// use weft_io::datagram::{listen_unix_datagram, DatagramOptions, DatagramProtocol, Dgram};
/// use weft_io::{Address, UnixAddr};
///
/// struct Log;
/// impl DatagramProtocol for Log {
///     type Msg = ();
///     fn datagram(&mut self, _sock: &mut Dgram<'_, '_, Self>, data: &[u8], from: &Address) -> ActorResult {
///         println!("{from}: {}", String::from_utf8_lossy(data));
///         Ok(())
///     }
/// }
///
/// let rt = weft_runtime::Runtime::builder().build().unwrap();
/// let sock = listen_unix_datagram(rt.handle(), UnixAddr::path("/tmp/log.sock"),
///                                 DatagramOptions::new(), Log).unwrap();
/// rt.run().unwrap();
/// ```
pub fn listen_unix_datagram<P: DatagramProtocol>(
    handle: &Handle,
    addr: impl Into<UnixAddr>,
    options: DatagramOptions,
    protocol: P,
) -> Result<DatagramRef<P>, ListenError> {
    let addr = addr.into();
    let bind_err = |source| ListenError::Bind {
        addr: Address::Unix(addr.clone()),
        source,
    };
    let (fd, file) = bind_unix_datagram(&addr, options.unix_mode).map_err(bind_err)?;
    spawn_socket(handle, fd, None, file, options, protocol).map_err(bind_err)
}

/// A UNIX datagram socket connected to `peer` (bound to `local`, or
/// unbound with `UnixAddr::Unnamed`) running `protocol` (Twisted's
/// `connectUNIXDatagram`): `Dgram::send` goes to the peer. Nothing
/// receiving at `peer` is an error here.
pub fn connect_unix_datagram<P: DatagramProtocol>(
    handle: &Handle,
    peer: impl Into<UnixAddr>,
    local: impl Into<UnixAddr>,
    options: DatagramOptions,
    protocol: P,
) -> Result<DatagramRef<P>, ListenError> {
    let peer = peer.into();
    let local = local.into();
    let err = |addr: &UnixAddr| {
        let addr = Address::Unix(addr.clone());
        move |source| ListenError::Bind { addr, source }
    };
    let (fd, file) = bind_unix_datagram(&local, options.unix_mode).map_err(err(&local))?;
    let target = peer.to_sockaddr().map_err(err(&peer))?;
    SockRef::from(&fd).connect(&target).map_err(err(&peer))?;
    spawn_socket(
        handle,
        fd,
        Some(Address::Unix(peer.clone())),
        file,
        options,
        protocol,
    )
    .map_err(err(&peer))
}

/// A UNIX datagram socket bound to `addr` (unbound for `Unnamed`), with
/// the stale-file and mode rules of stream listeners.
fn bind_unix_datagram(
    addr: &UnixAddr,
    mode: Option<u32>,
) -> io::Result<(OwnedFd, Option<SocketFile>)> {
    let sock = Socket::new(Domain::UNIX, Type::DGRAM, None)?;
    if *addr == UnixAddr::Unnamed {
        return Ok((sock.into(), None));
    }
    let sockaddr = addr.to_sockaddr()?;
    match (sock.bind(&sockaddr), addr.as_path()) {
        (Ok(()), _) => {}
        (Err(e), Some(path)) if e.kind() == io::ErrorKind::AddrInUse => {
            crate::unix::check_stale(path, &sockaddr, Type::DGRAM)?;
            sock.bind(&sockaddr)?;
        }
        (Err(e), _) => return Err(e),
    }
    let file = crate::unix::socket_file(addr, mode)?;
    Ok((sock.into(), file))
}

/// Binds a UDP socket to `addr` (port 0: the OS chooses) with `options`
/// (broadcast, TTL, IPv6-only, `SO_REUSEADDR`/`SO_REUSEPORT`, buffer
/// sizes, multicast TTL and loopback, receive size, read budget) and runs
/// `protocol` on it (Twisted's `listenUDP`; `listenMultiple` is
/// `reuse_addr(true)`). Addresses are typed: a host name is resolved by
/// the caller (on the blocking pool, `Ctx::spawn_blocking`), never by a
/// send. A bad or busy address is an error here.
///
/// ```no_run
/// use weft_actors::ActorResult;
/// use weft_io::datagram::{listen_udp, DatagramOptions, DatagramProtocol, Dgram};
/// use weft_io::Address;
///
/// struct Echo;
/// impl DatagramProtocol for Echo {
///     type Msg = ();
///     fn datagram(&mut self, sock: &mut Dgram<'_, '_, Self>, data: &[u8], from: &Address) -> ActorResult {
///         let _ = sock.send_to(data, from); // WouldBlock: dropped, and counted
///         Ok(())
///     }
/// }
///
/// let rt = weft_runtime::Runtime::builder().build().unwrap();
/// let sock = listen_udp(rt.handle(), "127.0.0.1:9000".parse().unwrap(),
///                       DatagramOptions::new(), Echo).unwrap();
/// println!("listening on {}", sock.local_addr());
/// rt.run().unwrap();
/// ```
pub fn listen_udp<P: DatagramProtocol>(
    handle: &Handle,
    addr: std::net::SocketAddr,
    options: DatagramOptions,
    protocol: P,
) -> Result<DatagramRef<P>, ListenError> {
    let bind_err = |source| ListenError::Bind {
        addr: Address::Inet(addr),
        source,
    };
    if let Some(net) = crate::sim::net_of(handle) {
        let sim = net.bind_udp(addr).map_err(bind_err)?;
        return spawn_sim_socket(handle, sim, options, protocol).map_err(bind_err);
    }
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, None).map_err(bind_err)?;
    options.apply_udp(&sock, addr.is_ipv6()).map_err(bind_err)?;
    sock.bind(&addr.into()).map_err(bind_err)?;
    spawn_socket(handle, sock.into(), None, None, options, protocol).map_err(bind_err)
}

pub use crate::adopt::adopt_datagram;
