//! The connection without the `tls` feature: the same names as `tls.rs`
//! and `tls/layer.rs`, on types that cannot be built (each holds an
//! `Infallible`), so `Core::tls` is always `None`, the `Handshaking`
//! phase never happens, and the plain-TCP code compiles unchanged with
//! no TLS code in it.
//!
//! Owns: nothing that runs. Must not touch: anything; a method here that
//! is ever called is a bug (each one's body proves it cannot be).

use std::convert::Infallible;
use std::marker::PhantomData;

use weft_actors::{ActorResult, Ctx};

use super::{Connection, Ending, Event};
use crate::connect::ConnectError;
use crate::protocol::Protocol;

/// A TLS handshake in progress: none without the `tls` feature.
pub(crate) struct Handshake<P: Protocol> {
    never: Infallible,
    _protocol: PhantomData<P>,
}

/// The TLS layer of a connection: none without the `tls` feature.
pub(crate) struct TlsLayer {
    never: Infallible,
    /// Plaintext written before the handshake completed.
    pub(crate) early: Vec<u8>,
    /// Whether close_notify was queued.
    pub(crate) close_sent: bool,
    /// The write buffer's length when it was.
    pub(crate) close_len: usize,
}

impl TlsLayer {
    pub(crate) fn is_ready(&self) -> bool {
        match self.never {}
    }

    pub(crate) fn pump_out(&mut self, _wbuf: &mut Vec<u8>) {
        match self.never {}
    }

    pub(crate) fn write(&mut self, _parts: &[&[u8]], _wbuf: &mut Vec<u8>) {
        match self.never {}
    }

    pub(crate) fn write_direct(
        &mut self,
        _parts: &[&[u8]],
        _io: &mut crate::transport::Transport,
        _wbuf: &mut Vec<u8>,
    ) -> bool {
        match self.never {}
    }
}

impl<P: Protocol> Connection<P> {
    pub(crate) fn handshake_start(&mut self, _ctx: &mut Ctx<'_, Self>) -> ActorResult {
        match &self.phase {
            super::Phase::Handshaking(h) => match h.never {},
            _ => Ok(()),
        }
    }

    pub(crate) fn handle_handshaking(
        &mut self,
        _msg: Event<P::Msg>,
        ctx: &mut Ctx<'_, Self>,
    ) -> ActorResult {
        self.handshake_start(ctx)
    }

    pub(crate) fn handshake_fail(
        &mut self,
        _error: ConnectError,
        _how: Ending,
        _ctx: &mut Ctx<'_, Self>,
    ) {
        if let super::Phase::Handshaking(h) = &self.phase {
            match h.never {}
        }
    }

    pub(crate) fn handshake_peer(&self) -> Option<crate::addr::Address> {
        None
    }

    pub(crate) fn tls_timed_out(&mut self, _ctx: &mut Ctx<'_, Self>) {}

    /// Without TLS there is no close_notify to send.
    pub(crate) fn send_tls_close(&mut self) -> bool {
        false
    }

    pub(crate) fn read_some_tls(&mut self, _ctx: &mut Ctx<'_, Self>) -> ActorResult {
        match self.core.tls.as_ref().map(|t| t.never) {
            Some(never) => match never {},
            None => Ok(()),
        }
    }
}
