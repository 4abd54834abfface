//! `Core`: everything of a connection but its protocol (so both can be
//! borrowed at once): the transport and its registration, the readiness
//! flags, the write buffer with its flush, and the close state.
//!
//! Invariants: `wbuf[wpos..]` is what the socket has not taken; a write
//! past `max_write_buffer` is refused whole, before any of it reaches the
//! socket (nothing half-taken); an empty buffer above `KEEP_CAPACITY`
//! gives its memory back.
//!
//! Must not touch: the protocol or the actor context (the callers in
//! `mod.rs` and `handle.rs` do that).

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use weft_runtime::IoToken;

use super::options::{ConnOptions, WriteError};
#[cfg(not(feature = "tls"))]
use super::TlsLayer;
use crate::protocol::CloseReason;
use crate::stats::Shared;
#[cfg(feature = "tls")]
use crate::tls::layer::TlsLayer;
use crate::transport::Transport;

/// A write of at least this many bytes goes straight to an empty socket
/// buffer instead of being copied into the write buffer first.
const DIRECT_WRITE: usize = 16 * 1024;
/// The most a TLS read loop lets gather before it flushes.
const COALESCE: usize = 64 * 1024;
/// An empty write buffer whose capacity is above this gives it back.
const KEEP_CAPACITY: usize = 64 * 1024;
/// What one queued descriptor counts as toward the watermarks and the
/// write-buffer limit, in bytes.
pub(crate) const FD_WEIGHT: usize = 1024;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Closing {
    No,
    Clean,
    Idle,
    Shutdown,
    Abort,
}

impl Closing {
    pub(crate) fn reason(self) -> CloseReason {
        match self {
            Closing::Idle => CloseReason::IdleTimeout,
            Closing::Shutdown => CloseReason::Shutdown,
            Closing::Abort => CloseReason::Aborted,
            Closing::No | Closing::Clean => CloseReason::Clean,
        }
    }
}

/// Everything of a connection but its protocol (so both can be borrowed
/// at once).
pub(crate) struct Core {
    /// The socket (or in-memory end); `Closed` once released.
    pub(crate) io: Transport,
    /// The reactor registration of a TCP socket.
    pub(crate) token: Option<IoToken>,
    /// The write buffer; `wbuf[wpos..]` is what the socket has not taken.
    pub(crate) wbuf: Vec<u8>,
    pub(crate) wpos: usize,
    pub(crate) opts: Arc<ConnOptions>,
    /// The listener's counters, for an accepted connection.
    pub(crate) shared: Option<Arc<Shared>>,
    /// The idle timeout in force, when it was last active, and the
    /// generation that makes an older timer's check stale.
    pub(crate) idle: Option<Duration>,
    pub(crate) last_active: Duration,
    pub(crate) idle_gen: u32,
    /// An edge said readable and no `WouldBlock` (or drained short read)
    /// has been seen since.
    pub(crate) readable: bool,
    /// The socket takes writes (cleared by `WouldBlock`).
    pub(crate) writable: bool,
    /// Inside a TLS read loop: writes gather in the buffer (up to
    /// [`Core::coalesce_limit`]) and go out when the loop ends, so the
    /// replies to several 16 KiB records leave in one system call.
    pub(crate) coalesce: bool,
    /// The protocol (or the default `write_paused`) paused reading.
    pub(crate) read_paused: bool,
    /// The protocol was told `write_paused` and not yet `write_resumed`.
    pub(crate) write_paused: bool,
    /// The peer's end of input was read.
    pub(crate) read_eof: bool,
    /// The reactor reported the read side closed (or an error): a short
    /// read no longer means drained, the end is still to be read.
    pub(crate) hup_seen: bool,
    /// `shutdown_write` was asked: shut once the buffer is flushed.
    pub(crate) shut_pending: bool,
    /// Our write side is shut.
    pub(crate) write_shut: bool,
    /// Reading resumed in a callback: send `ReadMore` after it.
    pub(crate) kick_read: bool,
    /// `last_active` was set during the message being handled.
    pub(crate) touched: bool,
    /// Whether (and why) the connection is closing.
    pub(crate) closing: Closing,
    /// The protocol asked `is_write_paused` and was told yes: it stopped
    /// producing, so it must be told to resume even if `write_paused` was
    /// never called (the flush after the callback may drain the buffer).
    pub(crate) paused_seen: std::cell::Cell<bool>,
    /// The protocol wrote since it was last told the buffer drained.
    pub(crate) drain_wanted: bool,
    /// The TLS layer, once the connection runs TLS.
    pub(crate) tls: Option<Box<TlsLayer>>,
    /// Bytes the socket took over the connection's life (the positions
    /// of `fds_out` are counted in it).
    pub(crate) sent: u64,
    /// Descriptors to send, each batch with the byte at its stream
    /// position (ascending; every position is within the buffer).
    pub(crate) fds_out: VecDeque<(u64, Vec<OwnedFd>)>,
    /// Descriptors in `fds_out`.
    pub(crate) fds_queued: usize,
}

impl Core {
    pub(crate) fn new(io: Transport, opts: Arc<ConnOptions>, shared: Option<Arc<Shared>>) -> Self {
        Core {
            io,
            token: None,
            wbuf: Vec::new(),
            wpos: 0,
            idle: opts.idle_timeout,
            opts,
            shared,
            last_active: Duration::ZERO,
            idle_gen: 0,
            readable: false,
            writable: false,
            coalesce: false,
            read_paused: false,
            write_paused: false,
            read_eof: false,
            hup_seen: false,
            shut_pending: false,
            write_shut: false,
            kick_read: false,
            touched: false,
            closing: Closing::No,
            paused_seen: std::cell::Cell::new(false),
            drain_wanted: false,
            tls: None,
            sent: 0,
            fds_out: VecDeque::new(),
            fds_queued: 0,
        }
    }

    /// Runs TLS over the transport from the start.
    #[cfg(feature = "tls")]
    pub(crate) fn with_tls(mut self, layer: TlsLayer) -> Self {
        self.tls = Some(Box::new(layer));
        self
    }

    /// What is queued and not yet taken by the socket: the write buffer,
    /// under TLS the plaintext waiting for the handshake, and
    /// [`FD_WEIGHT`] per queued descriptor.
    pub(crate) fn buffered(&self) -> usize {
        self.wbuf.len() - self.wpos
            + self.tls.as_ref().map_or(0, |t| t.early.len())
            + self.fds_queued * FD_WEIGHT
    }

    /// Why the connection ended when writing failed with `e`: the
    /// error's reason, except that after the peer's TLS close_notify a
    /// failure to deliver only our own close_notify is a clean end (the
    /// peer said it was done and closed its socket; nothing of ours that
    /// it would read was lost).
    pub(crate) fn write_failed(&self, e: &io::Error) -> CloseReason {
        match &self.tls {
            Some(tls) if self.read_eof && tls.close_sent && self.buffered() <= tls.close_len => {
                CloseReason::Clean
            }
            _ => CloseReason::from_io(e),
        }
    }

    /// Drops everything queued (an abort, or the transport released);
    /// queued descriptors are closed.
    pub(crate) fn discard_output(&mut self) {
        self.wbuf = Vec::new();
        self.wpos = 0;
        self.fds_out.clear();
        self.fds_queued = 0;
    }

    /// Moves what TLS has to send (handshake, alerts) into the buffer.
    pub(crate) fn pump_tls(&mut self) {
        if let Some(tls) = &mut self.tls {
            tls.pump_out(&mut self.wbuf);
        }
    }

    /// Whether a flush can wait for the end of the read loop: what is
    /// buffered stays below one read's worth and the high watermark.
    pub(crate) fn can_defer_flush(&self) -> bool {
        self.coalesce && self.buffered() < COALESCE.min(self.opts.high_water)
    }

    pub(crate) fn can_read(&self) -> bool {
        self.readable
            && !self.read_paused
            && !self.read_eof
            && self.closing == Closing::No
            && !self.io.is_closed()
    }

    pub(crate) fn can_write(&self) -> bool {
        !self.io.is_closed() && self.closing == Closing::No && !self.shut_pending
    }

    /// Writes what is buffered until done or `WouldBlock`.
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        self.pump_tls();
        while self.wpos < self.wbuf.len() && self.writable {
            let written = if self.fds_out.is_empty() {
                self.io.write(&self.wbuf[self.wpos..])
            } else {
                self.write_marked()
            };
            match written {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.wpos += n;
                    self.sent += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.wpos == self.wbuf.len() {
            self.wpos = 0;
            if self.wbuf.capacity() > KEEP_CAPACITY {
                self.wbuf = Vec::new();
            } else {
                self.wbuf.clear();
            }
        } else if self.wpos >= 4096 && self.wpos * 2 >= self.wbuf.len() {
            self.wbuf.drain(..self.wpos);
            self.wpos = 0;
        }
        Ok(())
    }

    /// One write when descriptors are queued: up to the next batch's
    /// byte with `write`, or from it with `sendmsg` carrying the batch
    /// (up to the batch after). The batch is sent (and closed here) once
    /// any of its bytes went.
    fn write_marked(&mut self) -> io::Result<usize> {
        let (at, _) = self.fds_out[0];
        let ahead = (at - self.sent) as usize;
        if ahead > 0 {
            return self.io.write(&self.wbuf[self.wpos..self.wpos + ahead]);
        }
        let end = match self.fds_out.get(1) {
            Some((next, _)) => self.wpos + (next - self.sent) as usize,
            None => self.wbuf.len(),
        };
        let raw: Vec<RawFd> = self.fds_out[0].1.iter().map(|fd| fd.as_raw_fd()).collect();
        let n = self.io.send_with_fds(&self.wbuf[self.wpos..end], &raw)?;
        if n > 0 {
            if let Some((_, fds)) = self.fds_out.pop_front() {
                self.fds_queued -= fds.len();
            }
        }
        Ok(n)
    }

    /// `Conn::send_fds`: the checks, then `data` buffered (never written
    /// directly) with the batch marked at its first byte.
    pub(crate) fn buffer_fds<F: AsFd>(&mut self, data: &[u8], fds: &[F]) -> Result<(), WriteError> {
        if !self.io.is_unix() || self.tls.is_some() {
            return Err(if self.can_write() {
                WriteError::FdsUnsupported
            } else {
                WriteError::Closed
            });
        }
        if fds.len() > crate::unix::MAX_FDS_PER_MESSAGE {
            return Err(WriteError::TooManyFds(fds.len()));
        }
        if data.len() < fds.len() {
            return Err(WriteError::FdsExceedBytes {
                fds: fds.len(),
                bytes: data.len(),
            });
        }
        let fds = fds
            .iter()
            .map(|fd| fd.as_fd().try_clone_to_owned())
            .collect::<io::Result<Vec<OwnedFd>>>()
            .map_err(|e| WriteError::FdDup(e.to_string()))?;
        let weight = fds.len() * FD_WEIGHT;
        let at = self.sent + (self.wbuf.len() - self.wpos) as u64;
        self.buffer_inner(&[data], weight, false)?;
        if !fds.is_empty() {
            self.fds_queued += fds.len();
            self.fds_out.push_back((at, fds));
        }
        Ok(())
    }

    pub(crate) fn buffer(&mut self, parts: &[&[u8]]) -> Result<(), WriteError> {
        self.buffer_inner(parts, 0, true)
    }

    /// Buffers `parts` (plus `extra` bytes of weight toward the limit),
    /// writing them straight to the socket when `direct_ok` and worth it.
    fn buffer_inner(
        &mut self,
        parts: &[&[u8]],
        extra: usize,
        direct_ok: bool,
    ) -> Result<(), WriteError> {
        if !self.can_write() {
            return Err(WriteError::Closed);
        }
        let len: usize = parts.iter().map(|p| p.len()).sum::<usize>() + extra;
        let limit = self.opts.max_write_buffer.max(self.opts.high_water);
        // The limit first: a refused write has taken nothing, not even
        // the part a direct write would have handed to the socket.
        if self.buffered() + len > limit {
            if self.writable {
                // An error shows again on the next flush, which closes.
                let _ = self.flush();
            }
            if self.buffered() + len > limit {
                return Err(WriteError::BufferFull {
                    buffered: self.buffered(),
                    limit,
                });
            }
        }
        self.drain_wanted |= len > 0;
        let direct = direct_ok
            && self.buffered() == 0
            && self.writable
            && len >= DIRECT_WRITE
            && !self.coalesce;
        if let Some(tls) = &mut self.tls {
            if direct && tls.is_ready() {
                self.writable = tls.write_direct(parts, &mut self.io, &mut self.wbuf);
            } else {
                tls.write(parts, &mut self.wbuf);
            }
            if let Some(shared) = &self.shared {
                shared.note_buffered(self.buffered());
            }
            return Ok(());
        }
        let mut skip = 0;
        if direct {
            let written = match parts {
                [one] => self.io.write(one),
                _ => {
                    let slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
                    self.io.write_vectored(&slices)
                }
            };
            match written {
                Ok(n) => {
                    skip = n;
                    self.sent += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable = false,
                // The error shows again on the next flush, where it closes
                // the connection; here the data is buffered as usual.
                Err(_) => {}
            }
        }
        for part in parts {
            if skip >= part.len() {
                skip -= part.len();
                continue;
            }
            self.wbuf.extend_from_slice(&part[skip..]);
            skip = 0;
        }
        if let Some(shared) = &self.shared {
            shared.note_buffered(self.buffered());
        }
        Ok(())
    }
}
