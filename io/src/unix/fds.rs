//! The system calls of descriptor passing: `recvmsg` with room for
//! `SCM_MAX_FD` descriptors (close-on-exec), `sendmsg` with one
//! `SCM_RIGHTS` message, and the stream half of a UNIX connection
//! ([`UnixIo`]) that the transport reads and writes through.
//!
//! `recvmsg` is called through libc rather than nix: nix's control
//! message iterator refuses a truncated (`MSG_CTRUNC`) message, and the
//! descriptors the kernel did install in it would leak. Parsing it here
//! takes every installed descriptor into an `OwnedFd`.
//!
//! Must not touch: buffering or the protocol (`conn/`).

use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::libc;
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr as NixUnixAddr};
use weft_runtime::mio::net::UnixStream;

/// The most descriptors one `SCM_RIGHTS` message carries (Linux's
/// `SCM_MAX_FD`).
pub const MAX_FDS_PER_MESSAGE: usize = 253;

/// Bytes of a control buffer that holds one `SCM_RIGHTS` message of
/// [`MAX_FDS_PER_MESSAGE`] descriptors, in `u64` words (cmsghdr alignment).
const CMSG_WORDS: usize = {
    let header = std::mem::size_of::<libc::cmsghdr>();
    let data = MAX_FDS_PER_MESSAGE * std::mem::size_of::<RawFd>();
    let align = std::mem::size_of::<usize>();
    let space = header.next_multiple_of(align) + data.next_multiple_of(align);
    space.div_ceil(8)
};

/// A connected UNIX stream socket and what its last read received
/// besides bytes.
pub(crate) struct UnixIo {
    pub(crate) stream: UnixStream,
    /// The control buffer (allocated on the first read).
    cmsg: Vec<u64>,
    /// Descriptors that came with the last read and were not taken yet;
    /// the next read drops (closes) them.
    pub(crate) rx_fds: Vec<OwnedFd>,
    /// The last read's control message was truncated (`MSG_CTRUNC`).
    pub(crate) rx_truncated: bool,
    /// The protocol takes descriptors (`Protocol::RECEIVES_FDS`): read
    /// with room for them. Otherwise the kernel closes any that come, and
    /// says so with `MSG_CTRUNC` (`rx_dropped`).
    pub(crate) take_fds: bool,
    /// The last read stopped at descriptors the protocol does not take
    /// (the kernel closed them); more bytes may follow at once.
    pub(crate) rx_dropped: bool,
    /// Descriptors were dropped on this connection (warned once).
    warned: bool,
}

impl UnixIo {
    pub(crate) fn new(stream: UnixStream) -> Self {
        UnixIo {
            stream,
            cmsg: Vec::new(),
            rx_fds: Vec::new(),
            rx_truncated: false,
            take_fds: false,
            rx_dropped: false,
            warned: false,
        }
    }

    /// Reads bytes; descriptors that came with them go to `rx_fds`.
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.rx_fds.clear();
        self.rx_truncated = false;
        self.rx_dropped = false;
        let fd = self.stream.as_raw_fd();
        if !self.take_fds {
            // No room for descriptors: cheaper (measured: the control
            // buffer costs a few percent of a small request's round trip).
            let (n, dropped) = recv_with_fds(fd, buf, &mut [], &mut self.rx_fds)?;
            if dropped {
                self.rx_dropped = true;
                if !std::mem::replace(&mut self.warned, true) {
                    tracing::warn!(
                        "the peer sent descriptors; this protocol does not take them                          (Protocol::RECEIVES_FDS), so they were closed"
                    );
                }
            }
            return Ok(n);
        }
        if self.cmsg.is_empty() {
            self.cmsg = vec![0u64; CMSG_WORDS];
        }
        let (n, truncated) = recv_with_fds(fd, buf, &mut self.cmsg, &mut self.rx_fds)?;
        self.rx_truncated = truncated;
        Ok(n)
    }

    pub(crate) fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.write(buf)
    }

    pub(crate) fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.stream.write_vectored(bufs)
    }

    /// Sends `buf` with `fds` attached to its first byte.
    pub(crate) fn send_with_fds(&mut self, buf: &[u8], fds: &[RawFd]) -> io::Result<usize> {
        let iov = [IoSlice::new(buf)];
        let cmsg = [ControlMessage::ScmRights(fds)];
        sendmsg::<NixUnixAddr>(
            self.stream.as_raw_fd(),
            &iov,
            &cmsg,
            MsgFlags::MSG_NOSIGNAL,
            None,
        )
        .map_err(io::Error::from)
    }

    /// Drains what the peer sent (before an in-order close).
    pub(crate) fn discard_input(&mut self) {
        let mut sink = [0u8; 4096];
        for _ in 0..64 {
            match self.stream.read(&mut sink) {
                Ok(n) if n > 0 => continue,
                _ => break,
            }
        }
    }
}

/// `recvmsg` into `buf`, taking the descriptors of any `SCM_RIGHTS`
/// message into `out` (close-on-exec); returns the byte count and whether
/// the control data was truncated.
fn recv_with_fds(
    fd: RawFd,
    buf: &mut [u8],
    cmsg: &mut [u64],
    out: &mut Vec<OwnedFd>,
) -> io::Result<(usize, bool)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: an all-zero msghdr is a valid value (null pointers, zero
    // lengths); the fields that matter are set below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !cmsg.is_empty() {
        msg.msg_control = cmsg.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(cmsg) as _;
    }
    // SAFETY: `msg` points at `iov` (which points at `buf`) and at
    // `cmsg`, all alive and exclusively borrowed for the call, with their
    // true lengths; the kernel writes only within them.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let truncated = msg.msg_flags & libc::MSG_CTRUNC != 0;
    if msg.msg_controllen > 0 {
        // SAFETY: the kernel filled `msg_controllen` bytes of the control
        // buffer with well-formed cmsghdrs; CMSG_FIRSTHDR/NXTHDR stay
        // within `msg_control .. msg_control + msg_controllen`.
        let mut hdr = unsafe { libc::CMSG_FIRSTHDR(&msg) };
        while !hdr.is_null() {
            // SAFETY: `hdr` is non-null and within the control buffer
            // (above); cmsghdr is plain data, read unaligned to be safe.
            let h: libc::cmsghdr = unsafe { std::ptr::read_unaligned(hdr) };
            if h.cmsg_level == libc::SOL_SOCKET && h.cmsg_type == libc::SCM_RIGHTS {
                // SAFETY: CMSG_LEN(0) is arithmetic on a constant.
                let header = unsafe { libc::CMSG_LEN(0) } as usize;
                let count = (h.cmsg_len as usize).saturating_sub(header) / 4;
                // SAFETY: CMSG_DATA points at the message's payload,
                // `count` descriptors that fit within `cmsg_len`.
                let data = unsafe { libc::CMSG_DATA(hdr) };
                for i in 0..count {
                    // SAFETY: within the payload (above); unaligned read.
                    let raw: RawFd =
                        unsafe { std::ptr::read_unaligned(data.cast::<RawFd>().add(i)) };
                    if raw >= 0 {
                        // SAFETY: the kernel just installed `raw` in our
                        // table for this message; nothing else owns it.
                        out.push(unsafe { OwnedFd::from_raw_fd(raw) });
                    }
                }
            }
            // SAFETY: `hdr` is a header within the buffer described by `msg`.
            hdr = unsafe { libc::CMSG_NXTHDR(&msg, hdr) };
        }
    }
    Ok((n as usize, truncated))
}

/// Peer credentials of a connected UNIX socket.
pub(crate) fn peer_cred(fd: &impl std::os::fd::AsFd) -> io::Result<crate::unix::PeerCred> {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    let c = getsockopt(fd, PeerCredentials).map_err(io::Error::from)?;
    Ok(crate::unix::PeerCred {
        pid: c.pid(),
        uid: c.uid(),
        gid: c.gid(),
    })
}
