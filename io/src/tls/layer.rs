//! The TLS layer inside a connection's transport: rustls' sans-I/O
//! connection between the socket and the write buffer.
//!
//! Plaintext the protocol writes is encrypted at once into the
//! connection's write buffer (so the watermarks and the limit count what
//! is queued, records included); before the handshake completes it waits
//! in `early` (counted too) and is encrypted when it does. Ciphertext is
//! read from `pending_in` first (bytes a protocol had read past a
//! `start_tls`), then from the socket.
//!
//! Invariant: rustls' own send buffer is emptied into the write buffer
//! after every call that can fill it (`pump_out`), so `Core::buffered`
//! sees everything that is still to go out.
//!
//! Must not touch: the protocol or the actor (the connection does).

use std::io::{self, Read, Write};
use std::sync::Arc;

use rustls::{
    ClientConfig, ClientConnection, Connection, HandshakeKind, ServerConfig, ServerConnection,
};
use rustls_pki_types::ServerName;

use super::TlsInfo;
use crate::transport::Transport;

pub(crate) struct TlsLayer {
    pub(crate) conn: Connection,
    /// Plaintext written before the handshake completed.
    pub(crate) early: Vec<u8>,
    /// Ciphertext that was read before TLS started (`start_tls`).
    pending_in: Vec<u8>,
    /// What the handshake negotiated, once it completed.
    pub(crate) info: Option<Box<TlsInfo>>,
    /// The transport reported end of input.
    pub(crate) eof: bool,
    /// The last `read_tls` got less from the socket than rustls asked
    /// for: the socket was drained at that moment.
    pub(crate) short_read: bool,
    /// Our close_notify is queued.
    pub(crate) close_sent: bool,
    /// The length of our close_notify record.
    pub(crate) close_len: usize,
}

impl TlsLayer {
    pub(crate) fn server(config: Arc<ServerConfig>) -> Result<Self, rustls::Error> {
        Ok(Self::new(ServerConnection::new(config)?.into()))
    }

    pub(crate) fn client(
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
    ) -> Result<Self, rustls::Error> {
        Ok(Self::new(ClientConnection::new(config, name)?.into()))
    }

    fn new(mut conn: Connection) -> Self {
        // weft bounds what is queued itself (`max_write_buffer`, counted
        // in `Core::buffer` before anything is taken).
        conn.set_buffer_limit(None);
        TlsLayer {
            conn,
            early: Vec::new(),
            pending_in: Vec::new(),
            info: None,
            eof: false,
            short_read: false,
            close_sent: false,
            close_len: 0,
        }
    }

    pub(crate) fn with_pending_input(mut self, bytes: &[u8]) -> Self {
        self.pending_in = bytes.to_vec();
        self
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.info.is_some()
    }

    /// Whether the handshake finished but was not yet reported.
    pub(crate) fn just_completed(&self) -> bool {
        self.info.is_none() && !self.conn.is_handshaking()
    }

    /// Moves what rustls has to send into `out`.
    pub(crate) fn pump_out(&mut self, out: &mut Vec<u8>) {
        while self.conn.wants_write() {
            match self.conn.write_tls(out) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }

    /// Encrypts `parts` into `out` (or keeps them until the handshake is
    /// done).
    pub(crate) fn write(&mut self, parts: &[&[u8]], out: &mut Vec<u8>) {
        if !self.is_ready() {
            for part in parts {
                self.early.extend_from_slice(part);
            }
            return;
        }
        for part in parts {
            // Without a buffer limit, rustls takes everything.
            let _ = self.conn.writer().write_all(part);
        }
        self.pump_out(out);
    }

    /// Encrypts `parts` and hands the records straight to `io` while it
    /// takes them (the caller checked nothing is queued ahead of them):
    /// one copy less than going through `out`, which gets only what the
    /// socket refused, so rustls holds nothing afterwards. False if the
    /// socket would block. Another error is left for the next flush of
    /// `out` (or the next read) to find.
    pub(crate) fn write_direct(
        &mut self,
        parts: &[&[u8]],
        io: &mut Transport,
        out: &mut Vec<u8>,
    ) -> bool {
        debug_assert!(self.is_ready() && out.is_empty());
        for part in parts {
            // Without a buffer limit, rustls takes everything.
            let _ = self.conn.writer().write_all(part);
        }
        let mut writable = true;
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut TransportWriter(io)) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    writable = e.kind() != io::ErrorKind::WouldBlock;
                    break;
                }
            }
        }
        self.pump_out(out);
        writable
    }

    /// Records the handshake's outcome and sends what was written during
    /// it. Returns the report.
    pub(crate) fn complete(&mut self, out: &mut Vec<u8>) -> TlsInfo {
        let server_name = match &self.conn {
            Connection::Server(s) => s.server_name().map(str::to_string),
            Connection::Client(_) => None,
        };
        let info = TlsInfo {
            alpn: self.conn.alpn_protocol().map(<[u8]>::to_vec),
            server_name,
            version: self.conn.protocol_version(),
            cipher_suite: self.conn.negotiated_cipher_suite().map(|s| s.suite()),
            resumed: self.conn.handshake_kind() == Some(HandshakeKind::Resumed),
            peer_certificates: self
                .conn
                .peer_certificates()
                .map(<[_]>::to_vec)
                .unwrap_or_default(),
        };
        self.info = Some(Box::new(info.clone()));
        let early = std::mem::take(&mut self.early);
        if !early.is_empty() {
            let _ = self.conn.writer().write_all(&early);
        }
        self.pump_out(out);
        info
    }

    /// Reads ciphertext: what was pending first, then the transport.
    pub(crate) fn read_tls(&mut self, io: &mut Transport) -> io::Result<usize> {
        self.short_read = false;
        if !self.pending_in.is_empty() {
            let mut slice = &self.pending_in[..];
            let n = self.conn.read_tls(&mut slice)?;
            self.pending_in.drain(..n);
            return Ok(n);
        }
        let mut reader = TransportReader { io, short: false };
        let n = self.conn.read_tls(&mut reader)?;
        self.short_read = reader.short;
        if n == 0 {
            self.eof = true;
        }
        Ok(n)
    }

    /// Queues close_notify (once).
    pub(crate) fn send_close(&mut self, out: &mut Vec<u8>) {
        if !self.close_sent {
            self.close_sent = true;
            self.conn.send_close_notify();
            let before = out.len();
            self.pump_out(out);
            self.close_len = out.len() - before;
        }
    }
}

/// The socket as rustls reads it; notes whether the socket gave less
/// than rustls asked for (a short read) and little (under
/// `SMALL_READ`): a request's worth, after which more is unlikely. A
/// large short read (a stream in flight) is followed by one more read,
/// which often finds the next segment already there.
const SMALL_READ: usize = 2048;

struct TransportReader<'a> {
    io: &'a mut Transport,
    short: bool,
}

struct TransportWriter<'a>(&'a mut Transport);

impl Write for TransportWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.0.write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for TransportReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.io.read(buf)?;
        self.short = n > 0 && n < buf.len() && n < SMALL_READ;
        Ok(n)
    }
}
