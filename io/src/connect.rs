//! Outgoing TCP connections: `connect_tcp` (Twisted's `connectTCP`).
//!
//! Owns: parsing the target, resolving a host name on the blocking pool
//! (getaddrinfo never runs on a worker), the non-blocking connect to each
//! resolved address in turn, the overall timeout, and turning failures
//! into [`ConnectError`] values. The connection actor is spawned at once
//! and runs this phase itself; its protocol is only called once connected.
//!
//! Must not touch: the listener, or the protocol before it is connected.

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Socket, Type};
use weft_actors::{reply_slot, Actor, Addr, AskError, Ctx, Pending, ReplyTo, Spawn, TimerHandle};
use weft_runtime::mio::net::TcpStream;
use weft_runtime::mio::Interest;
use weft_runtime::{Handle, Readiness};

#[cfg(feature = "tls")]
use rustls::ClientConfig;
#[cfg(feature = "tls")]
use rustls_pki_types::ServerName;

use crate::addr::{Address, UnixAddr};
#[cfg(feature = "tls")]
use crate::conn::Handshake;
use crate::conn::{ConnMsg, ConnOptions, ConnRef, Connection, Core, Event, Phase};
use crate::protocol::Protocol;
#[cfg(feature = "tls")]
use crate::tls::layer::TlsLayer;

/// What `connect_tls` hands the connecting phase: the client
/// configuration and the name to verify (nothing without the feature).
#[cfg(feature = "tls")]
type ClientTls = (Arc<ClientConfig>, ServerName<'static>);
#[cfg(not(feature = "tls"))]
type ClientTls = std::convert::Infallible;
use crate::transport::Transport;
use crate::unix::UnixIo;

/// The first and the longest wait before a UNIX connect that found the
/// listener's backlog full is tried again.
const UNIX_RETRY_MIN: Duration = Duration::from_millis(1);
const UNIX_RETRY_MAX: Duration = Duration::from_millis(100);

/// Where to connect: socket addresses, or a host name and port resolved
/// on the blocking pool. Built from a `SocketAddr`, a `"host:port"` or
/// `"[v6]:port"` string, or a `(host, port)` pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// Try these addresses in order.
    Addrs(Vec<SocketAddr>),
    /// Resolve `host`, then try each address.
    Host {
        /// The name.
        host: String,
        /// The port.
        port: u16,
    },
    /// Not a target; connecting fails with [`ConnectError::BadAddress`].
    Invalid {
        /// What was given.
        input: String,
        /// What is wrong with it.
        problem: &'static str,
    },
}

impl From<SocketAddr> for Target {
    fn from(addr: SocketAddr) -> Self {
        Target::Addrs(vec![addr])
    }
}

impl From<(&str, u16)> for Target {
    fn from((host, port): (&str, u16)) -> Self {
        if let Ok(ip) = host.parse::<std::net::IpAddr>() {
            return Target::Addrs(vec![SocketAddr::new(ip, port)]);
        }
        if host.is_empty() {
            return Target::Invalid {
                input: format!("{host}:{port}"),
                problem: "empty host name",
            };
        }
        Target::Host {
            host: host.to_string(),
            port,
        }
    }
}

impl From<&str> for Target {
    fn from(s: &str) -> Self {
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Target::Addrs(vec![addr]);
        }
        let invalid = |problem| Target::Invalid {
            input: s.to_string(),
            problem,
        };
        let Some((host, port)) = s.rsplit_once(':') else {
            return invalid("missing \":port\"");
        };
        if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
            return invalid("an IPv6 address needs brackets: \"[addr]:port\"");
        }
        let Ok(port) = port.parse::<u16>() else {
            return invalid("the port is not a number from 0 to 65535");
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.chars().any(char::is_whitespace) {
            return invalid("empty or malformed host name");
        }
        Target::from((host, port))
    }
}

impl From<String> for Target {
    fn from(s: String) -> Self {
        Target::from(s.as_str())
    }
}

/// A name resolver: host and port to addresses. Runs on the blocking pool.
pub type Resolver = Arc<dyn Fn(&str, u16) -> io::Result<Vec<SocketAddr>> + Send + Sync>;

/// Options of `connect_tcp`.
#[must_use = "options do nothing until passed to a connect call"]
#[derive(Clone)]
pub struct ConnectOptions {
    timeout: Duration,
    bind: Option<SocketAddr>,
    conn: ConnOptions,
    resolver: Option<Resolver>,
    server_name: Option<String>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            timeout: Duration::from_secs(30),
            bind: None,
            conn: ConnOptions::default(),
            resolver: None,
            server_name: None,
        }
    }
}

impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("timeout", &self.timeout)
            .field("bind", &self.bind)
            .field("conn", &self.conn)
            .finish_non_exhaustive()
    }
}

impl ConnectOptions {
    /// Defaults: 30 s timeout (resolution included), no bind address,
    /// default connection options, the system resolver.
    pub fn new() -> Self {
        Self::default()
    }

    /// Give up after `d` (resolution and every address tried, in all).
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }

    /// Bind the socket to this local address before connecting.
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.bind = Some(addr);
        self
    }

    /// Options of the connection once it is open.
    pub fn conn(mut self, conn: ConnOptions) -> Self {
        self.conn = conn;
        self
    }

    /// `connect_tls`: verify the server as `name` (a DNS name or an IP
    /// address) instead of the target's host.
    pub fn server_name(mut self, name: &str) -> Self {
        self.server_name = Some(name.to_string());
        self
    }

    /// Resolve names with `resolver` instead of the system's getaddrinfo
    /// (a test's fixed table, a custom DNS client).
    pub fn resolver(mut self, resolver: Resolver) -> Self {
        self.resolver = Some(resolver);
        self
    }
}

/// Why a connection could not be made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The target is not an address.
    #[error("bad address {input:?}: {problem}")]
    BadAddress {
        /// What was given.
        input: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The name did not resolve to any address.
    #[error("cannot resolve {name:?}: {reason}")]
    Unresolvable {
        /// The name.
        name: String,
        /// The resolver's error.
        reason: String,
    },
    /// Nothing listens there: the peer refused.
    #[error("connection refused by {0}")]
    Refused(Address),
    /// No connection within the timeout.
    #[error("connect timed out")]
    TimedOut,
    /// Another I/O error (unreachable network, bind address in use, ...).
    #[error("connecting to {addr:?} failed: {message}")]
    Io {
        /// The address being tried, if one was.
        addr: Option<Address>,
        /// The error's kind.
        kind: io::ErrorKind,
        /// The error's text.
        message: String,
    },
    /// The TLS handshake failed (`connect_tls`): an untrusted, expired or
    /// wrong-name certificate, the server's alert, no common protocol.
    #[cfg(feature = "tls")]
    #[error("TLS handshake with {addr:?} failed: {error}")]
    Tls {
        /// The server's address.
        addr: Option<Address>,
        /// rustls' error.
        error: crate::tls::TlsError,
    },
    /// The attempt was cancelled (closed, or its actor stopped).
    #[error("the connection attempt was aborted")]
    Aborted,
    /// The runtime refused the work (blocking pool full, shutting down,
    /// or `wait` called on a worker thread).
    #[error("runtime: {0}")]
    Runtime(String),
}

impl ConnectError {
    pub(crate) fn io(addr: Option<Address>, e: &io::Error) -> Self {
        match (e.kind(), addr) {
            (io::ErrorKind::ConnectionRefused, Some(addr)) => ConnectError::Refused(addr),
            (io::ErrorKind::TimedOut, _) => ConnectError::TimedOut,
            (kind, addr) => ConnectError::Io {
                addr,
                kind,
                message: e.to_string(),
            },
        }
    }
}

type Reply<P> = ReplyTo<Result<ConnRef<P>, ConnectError>>;

/// The state of a connection still connecting.
pub(crate) struct ConnectState<P: Protocol> {
    reply: Option<Reply<P>>,
    target: Option<Target>,
    addrs: VecDeque<SocketAddr>,
    current: Option<SocketAddr>,
    /// `connect_unix`: the address, and the delay before retrying a
    /// connect that found the backlog full.
    unix: Option<UnixAddr>,
    unix_retry: Duration,
    bind: Option<SocketAddr>,
    timeout: Duration,
    resolver: Option<Resolver>,
    timer: Option<TimerHandle>,
    last_error: Option<ConnectError>,
    /// Protocol messages that arrived before the connection opened.
    pub(crate) held: Vec<P::Msg>,
    /// `connect_tls`: the handshake to run once connected.
    tls: Option<ClientTls>,
}

/// A connection being made. `wait` for it from a plain thread, or have
/// the outcome sent to an actor with `notify`.
pub struct Connecting<P: Protocol> {
    pending: Pending<Result<ConnRef<P>, ConnectError>>,
    addr: Addr<Connection<P>>,
    /// A simulated runtime's driver: `wait` runs the simulation.
    sim: Option<weft_runtime::Simulation>,
}

impl<P: Protocol> Connecting<P> {
    /// Blocks this (non-worker) thread until connected or failed; after
    /// `timeout` the attempt is aborted and `TimedOut` returned.
    ///
    /// In a simulation, `wait` runs the simulation (on this thread) until
    /// the outcome is in or `timeout` of virtual time has passed.
    pub fn wait(self, timeout: Duration) -> Result<ConnRef<P>, ConnectError> {
        let timeout = match &self.sim {
            Some(sim) if !weft_runtime::on_worker_thread() => {
                sim.run_until(timeout, || self.pending.is_ready());
                Duration::ZERO
            }
            _ => timeout,
        };
        match self.pending.wait(timeout) {
            Ok(result) => result,
            Err(AskError::Timeout) => {
                let _ = self.addr.send(ConnMsg(Event::Abort));
                Err(ConnectError::TimedOut)
            }
            Err(AskError::WouldBlockWorker) => Err(ConnectError::Runtime(
                "Connecting::wait on a worker thread; use Connecting::notify".into(),
            )),
            Err(_) => Err(ConnectError::Aborted),
        }
    }

    /// Sends `map(outcome)` to the actor of `ctx` when connected or failed.
    pub fn notify<A: Actor>(
        self,
        ctx: &mut Ctx<'_, A>,
        map: impl FnOnce(Result<ConnRef<P>, ConnectError>) -> A::Msg + Send + 'static,
    ) {
        ctx.on_reply(self.pending, move |r| {
            map(r.unwrap_or_else(|_| Err(ConnectError::Aborted)))
        });
    }

    /// The connection, already usable: messages sent before it opens are
    /// handed to the protocol after `connected`.
    pub fn conn(&self) -> ConnRef<P> {
        ConnRef::new(self.addr.clone())
    }
}

/// Connects to `target` and runs `protocol` on the connection in its own
/// actor (Twisted's `connectTCP`). Returns at once; the name (if any) is
/// resolved on the blocking pool, and every failure is a [`ConnectError`].
///
/// ```no_run
/// use std::time::Duration;
/// use weft_io::{connect_tcp, Conn, ConnectOptions, Protocol};
/// use weft_actors::ActorResult;
///
/// struct Hello;
/// impl Protocol for Hello {
///     type Msg = ();
///     fn connected(&mut self, conn: &mut Conn<'_, '_, Self>) -> ActorResult {
///         conn.write(b"hello\n")?;
///         Ok(())
///     }
///     fn data(&mut self, _conn: &mut Conn<'_, '_, Self>, data: &[u8]) -> ActorResult {
///         println!("{}", String::from_utf8_lossy(data));
///         Ok(())
///     }
/// }
///
/// let rt = weft_runtime::Runtime::builder().build().unwrap();
/// let conn = connect_tcp(rt.handle(), "localhost:7000", ConnectOptions::new(), Hello)
///     .wait(Duration::from_secs(5));
/// ```
pub fn connect_tcp<P: Protocol>(
    handle: &Handle,
    target: impl Into<Target>,
    options: ConnectOptions,
    protocol: P,
) -> Connecting<P> {
    spawn_connecting(handle, target.into(), options, None, protocol)
}

/// Connects to `target`, runs a TLS handshake as a client with `config`,
/// and then runs `protocol` (Twisted's `connectSSL`). The server is
/// verified as the target's host (an IP target against the certificate's
/// IP addresses) unless [`ConnectOptions::server_name`] says otherwise.
/// The outcome comes once the handshake completed: a certificate that is
/// untrusted, expired or for another name, or the server's alert, is a
/// [`ConnectError::Tls`]; the connect timeout covers the handshake too.
/// The protocol is told [`tls_ready`](Protocol::tls_ready), then
/// `connected`.
///
/// ```no_run
/// use std::time::Duration;
/// use weft_io::{connect_tls, tls, Conn, ConnectOptions, Protocol};
/// use weft_actors::ActorResult;
///
/// struct Get;
/// impl Protocol for Get {
///     type Msg = ();
///     fn connected(&mut self, conn: &mut Conn<'_, '_, Self>) -> ActorResult {
///         conn.write(b"GET / HTTP/1.0\r\n\r\n")?;
///         Ok(())
///     }
///     fn data(&mut self, _conn: &mut Conn<'_, '_, Self>, data: &[u8]) -> ActorResult {
///         print!("{}", String::from_utf8_lossy(data));
///         Ok(())
///     }
/// }
///
/// let rt = weft_runtime::Runtime::builder().build().unwrap();
/// let roots = tls::load_roots("ca.pem").unwrap();
/// let config = tls::TlsClientBuilder::new(roots).alpn(["http/1.1"]).build().unwrap();
/// let conn = connect_tls(rt.handle(), "localhost:8443", ConnectOptions::new(), config, Get)
///     .wait(Duration::from_secs(5));
/// ```
#[cfg(feature = "tls")]
pub fn connect_tls<P: Protocol>(
    handle: &Handle,
    target: impl Into<Target>,
    options: ConnectOptions,
    config: Arc<ClientConfig>,
    protocol: P,
) -> Connecting<P> {
    let target = target.into();
    let name = match (&options.server_name, &target) {
        (Some(name), _) => Some(name.clone()),
        (None, Target::Host { host, .. }) => Some(host.clone()),
        (None, Target::Addrs(addrs)) => addrs.first().map(|a| a.ip().to_string()),
        (None, Target::Invalid { .. }) => None,
    };
    let tls = match name.as_deref().map(crate::tls::server_name) {
        Some(Ok(name)) => Some((config, name)),
        Some(Err(_)) => {
            let input = name.unwrap_or_default();
            return spawn_connecting(
                handle,
                Target::Invalid {
                    input,
                    problem: "not a valid TLS server name",
                },
                options,
                None,
                protocol,
            );
        }
        // An invalid target fails as such.
        None => None,
    };
    spawn_connecting(handle, target, options, tls, protocol)
}

/// `connect_unix`'s actor: the connecting phase with a UNIX address.
pub(crate) fn spawn_connect_unix<P: Protocol>(
    handle: &Handle,
    addr: UnixAddr,
    options: ConnectOptions,
    protocol: P,
) -> Connecting<P> {
    spawn_connecting_with(handle, None, Some(addr), options, None, protocol)
}

fn spawn_connecting<P: Protocol>(
    handle: &Handle,
    target: Target,
    options: ConnectOptions,
    tls: Option<ClientTls>,
    protocol: P,
) -> Connecting<P> {
    spawn_connecting_with(handle, Some(target), None, options, tls, protocol)
}

fn spawn_connecting_with<P: Protocol>(
    handle: &Handle,
    target: Option<Target>,
    unix: Option<UnixAddr>,
    options: ConnectOptions,
    tls: Option<ClientTls>,
    protocol: P,
) -> Connecting<P> {
    let (reply, pending) = reply_slot();
    let state = ConnectState {
        reply: Some(reply),
        target,
        addrs: VecDeque::new(),
        current: None,
        unix,
        unix_retry: Duration::ZERO,
        bind: options.bind,
        timeout: options.timeout,
        resolver: options.resolver,
        timer: None,
        last_error: None,
        held: Vec::new(),
        tls,
    };
    let spawn = options.conn.spawn_options(weft_actors::DEFAULT_CAPACITY);
    let mut conn = Connection::new(
        protocol,
        Core::new(Transport::Closed, Arc::new(options.conn), None),
    );
    conn.phase = Phase::Connecting(Box::new(state));
    let addr = handle
        .spawn_with(conn, spawn)
        .expect("the default capacity and a weight limit of at least 1 are valid");
    Connecting {
        pending,
        addr,
        sim: handle.simulation(),
    }
}

fn resolve(resolver: Option<Resolver>, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    match resolver {
        Some(r) => r(host, port),
        None => (host, port).to_socket_addrs().map(Iterator::collect),
    }
}

impl<P: Protocol> Connection<P> {
    /// Leaves the connecting phase (opened, or failed and stopping).
    fn take_connect_state(&mut self) -> Option<Box<ConnectState<P>>> {
        match std::mem::replace(&mut self.phase, Phase::Open) {
            Phase::Connecting(state) => Some(state),
            other => {
                self.phase = other;
                None
            }
        }
    }

    /// A message while connecting: readiness completes or fails the
    /// connect; the protocol's messages are held for when it opens; a
    /// close or abort gives up.
    pub(crate) fn handle_connecting(
        &mut self,
        msg: Event<P::Msg>,
        ctx: &mut Ctx<'_, Self>,
    ) -> weft_actors::ActorResult {
        match msg {
            Event::Io(r) => self.connect_ready(r, ctx)?,
            Event::User(m) => {
                if let Phase::Connecting(state) = &mut self.phase {
                    state.held.push(m);
                }
            }
            Event::Close | Event::Abort => self.connect_fail(ConnectError::Aborted, ctx),
            Event::Resolved(result) => self.connect_resolved(result, ctx),
            Event::ConnectTimeout => self.connect_fail(ConnectError::TimedOut, ctx),
            Event::ConnectRetry => self.connect_unix_now(ctx),
            // Armed only once the connection is open.
            Event::ReadMore
            | Event::IdleCheck(_)
            | Event::DrainTimeout
            | Event::Settle
            | Event::HandshakeTimeout => {}
        }
        Ok(())
    }

    pub(crate) fn connect_start(&mut self, ctx: &mut Ctx<'_, Self>) -> weft_actors::ActorResult {
        let Phase::Connecting(state) = &mut self.phase else {
            return Ok(());
        };
        state.timer = Some(ctx.send_later(state.timeout, ConnMsg(Event::ConnectTimeout)));
        if state.unix.is_some() {
            self.connect_unix_now(ctx);
            return Ok(());
        }
        match state.target.take() {
            Some(Target::Addrs(addrs)) => {
                state.addrs = addrs.into();
                self.connect_next(ctx);
            }
            Some(Target::Host { host, port }) => {
                // Kept for the error message if resolution fails.
                state.target = Some(Target::Host {
                    host: host.clone(),
                    port,
                });
                let resolver = state.resolver.clone();
                if resolver.is_none() {
                    if let Some(net) = crate::sim::net_of(ctx.runtime()) {
                        // Simulated: the simulator resolves host names.
                        let result = net.resolve(&host, port);
                        self.connect_resolved(result, ctx);
                        return Ok(());
                    }
                }
                let spawned = ctx.spawn_blocking(
                    move || resolve(resolver, &host, port),
                    |r| {
                        ConnMsg(Event::Resolved(r.unwrap_or_else(|p| {
                            Err(io::Error::other(format!("resolver panicked: {}", p.0)))
                        })))
                    },
                );
                if let Err(e) = spawned {
                    self.connect_fail(ConnectError::Runtime(e.to_string()), ctx);
                }
            }
            Some(Target::Invalid { input, problem }) => {
                self.connect_fail(
                    ConnectError::BadAddress {
                        input,
                        problem: problem.to_string(),
                    },
                    ctx,
                );
            }
            None => {}
        }
        Ok(())
    }

    pub(crate) fn connect_resolved(
        &mut self,
        result: io::Result<Vec<SocketAddr>>,
        ctx: &mut Ctx<'_, Self>,
    ) {
        let Phase::Connecting(state) = &mut self.phase else {
            return;
        };
        match result {
            Ok(addrs) if !addrs.is_empty() => {
                state.addrs = addrs.into();
                self.connect_next(ctx);
            }
            other => {
                let reason = match other {
                    Err(e) => e.to_string(),
                    Ok(_) => "no addresses".to_string(),
                };
                let name = match &state.target {
                    Some(Target::Host { host, port }) => format!("{host}:{port}"),
                    _ => String::new(),
                };
                self.connect_fail(ConnectError::Unresolvable { name, reason }, ctx);
            }
        }
    }

    /// Starts connecting to the next address, or fails with the last error.
    fn connect_next(&mut self, ctx: &mut Ctx<'_, Self>) {
        loop {
            let Phase::Connecting(state) = &mut self.phase else {
                return;
            };
            let Some(addr) = state.addrs.pop_front() else {
                let error = state.last_error.take().unwrap_or(ConnectError::Io {
                    addr: None,
                    kind: io::ErrorKind::AddrNotAvailable,
                    message: "no address to connect to".into(),
                });
                return self.connect_fail(error, ctx);
            };
            state.current = Some(addr);
            if let Some(net) = crate::sim::net_of(ctx.runtime()) {
                let end = net.connect(addr);
                end.attach(ctx.ready_sink(|r| ConnMsg(Event::Io(r))));
                self.core.io = Transport::Sim(end);
                return;
            }
            match start_connect(addr, state.bind) {
                Ok(mut stream) => {
                    match ctx.register_io(
                        &mut stream,
                        Interest::READABLE | Interest::WRITABLE,
                        |r| ConnMsg(Event::Io(r)),
                    ) {
                        Ok(token) => {
                            self.core.token = Some(token);
                            self.core.io = Transport::Tcp(stream);
                            return;
                        }
                        Err(e) => {
                            state.last_error = Some(ConnectError::io(Some(Address::Inet(addr)), &e))
                        }
                    }
                }
                Err(e) => state.last_error = Some(e),
            }
        }
    }

    /// Readiness while connecting: connected, failed, or not yet.
    pub(crate) fn connect_ready(
        &mut self,
        r: Readiness,
        ctx: &mut Ctx<'_, Self>,
    ) -> weft_actors::ActorResult {
        let Phase::Connecting(state) = &mut self.phase else {
            return Ok(());
        };
        let addr = match &state.unix {
            Some(unix) => Some(Address::Unix(unix.clone())),
            None => state.current.map(Address::Inet),
        };
        let failure = match self.core.io.take_error() {
            Ok(Some(e)) | Err(e) => Some(e),
            Ok(None) => match self.core.io.peer_addr() {
                Ok(_) => None,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                    if r.is_error() || r.is_write_closed() || r.is_read_closed() {
                        Some(io::Error::from(io::ErrorKind::ConnectionRefused))
                    } else {
                        return Ok(()); // not yet
                    }
                }
                Err(e) => Some(e),
            },
        };
        if let Some(e) = failure {
            let error = ConnectError::io(addr, &e);
            self.release_transport(ctx);
            if self.core_unix_target() {
                self.connect_fail(error, ctx);
            } else if let Phase::Connecting(state) = &mut self.phase {
                state.last_error = Some(error);
                self.connect_next(ctx);
            }
            return Ok(());
        }
        let mut state = self.take_connect_state().expect("checked above");
        #[cfg(feature = "tls")]
        if let Some((config, name)) = state.tls.take() {
            return self.start_client_handshake(*state, config, name, addr, r, ctx);
        }
        #[cfg(not(feature = "tls"))]
        if let Some(never) = state.tls.take() {
            match never {}
        }
        if let Some(timer) = state.timer.take() {
            timer.cancel();
        }
        self.open(ctx)?;
        // Handled here, in order, before anything queued behind them.
        for msg in std::mem::take(&mut state.held) {
            self.deliver(msg, ctx)?;
        }
        if let Some(reply) = state.reply.take() {
            reply.send(Ok(ConnRef::new(ctx.address())));
        }
        // Bytes (and a FIN) may have come with the event that completed
        // the connect; with edge-triggered readiness that edge is gone, so
        // read now (a spurious read costs one WouldBlock).
        self.core.readable = true;
        if r.is_read_closed() || r.is_error() {
            self.core.hup_seen = true;
        }
        if self.core.can_read() {
            self.read_some(ctx)?;
        }
        Ok(())
    }

    /// `connect_tls`, connected: the handshake runs before the protocol
    /// is called (the connect timeout still bounds it).
    #[cfg(feature = "tls")]
    fn start_client_handshake(
        &mut self,
        mut state: ConnectState<P>,
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
        addr: Option<Address>,
        r: Readiness,
        ctx: &mut Ctx<'_, Self>,
    ) -> weft_actors::ActorResult {
        let layer = match TlsLayer::client(config, name) {
            Ok(layer) => layer,
            Err(e) => {
                self.phase = Phase::Connecting(Box::new(state));
                self.connect_fail(
                    ConnectError::Tls {
                        addr,
                        error: crate::tls::TlsError(e),
                    },
                    ctx,
                );
                return Ok(());
            }
        };
        self.core.tls = Some(Box::new(layer));
        self.phase = Phase::Handshaking(Box::new(Handshake {
            reply: state.reply.take(),
            held: std::mem::take(&mut state.held),
            timer: state.timer.take(),
            peer: addr,
        }));
        self.attach(ctx)?;
        self.core.readable = true;
        if r.is_read_closed() || r.is_error() {
            self.core.hup_seen = true;
        }
        // The ClientHello goes out; a reply that came with the connect
        // event is read.
        self.settle(ctx)?;
        if self.core.can_read() {
            self.read_some(ctx)?;
        }
        Ok(())
    }

    fn release_transport(&mut self, ctx: &mut Ctx<'_, Self>) {
        if let Some(token) = self.core.token.take() {
            if let Some(source) = self.core.io.source() {
                let _ = ctx.deregister_io(source, token);
            }
        }
        self.core.io = Transport::Closed;
    }

    fn core_unix_target(&self) -> bool {
        matches!(&self.phase, Phase::Connecting(state) if state.unix.is_some())
    }

    /// `connect_unix`: connects now (a UNIX connect completes or fails at
    /// once), or retries later when the listener's backlog is full.
    fn connect_unix_now(&mut self, ctx: &mut Ctx<'_, Self>) {
        let Phase::Connecting(state) = &mut self.phase else {
            return;
        };
        let Some(addr) = state.unix.clone() else {
            return;
        };
        if let Some(net) = crate::sim::net_of(ctx.runtime()) {
            let end = net.connect_unix(&addr);
            end.attach(ctx.ready_sink(|r| ConnMsg(Event::Io(r))));
            self.core.io = Transport::Sim(end);
            return;
        }
        match crate::unix::start_connect(&addr) {
            Ok(stream) => {
                let mut io = Transport::Unix(Box::new(UnixIo::new(stream)));
                let source = io.source().expect("a socket");
                match ctx.register_io(source, Interest::READABLE | Interest::WRITABLE, |r| {
                    ConnMsg(Event::Io(r))
                }) {
                    Ok(token) => {
                        self.core.token = Some(token);
                        self.core.io = io;
                    }
                    Err(e) => {
                        self.connect_fail(ConnectError::io(Some(Address::Unix(addr)), &e), ctx)
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // The backlog is full: try again shortly (the connect
                // timeout still bounds the whole attempt).
                state.unix_retry = (state.unix_retry * 2).clamp(UNIX_RETRY_MIN, UNIX_RETRY_MAX);
                ctx.send_later(state.unix_retry, ConnMsg(Event::ConnectRetry));
            }
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => self.connect_fail(
                ConnectError::BadAddress {
                    input: addr.to_string(),
                    problem: e.to_string(),
                },
                ctx,
            ),
            Err(e) => self.connect_fail(ConnectError::io(Some(Address::Unix(addr)), &e), ctx),
        }
    }

    /// Gives up: the error goes to whoever waits, the actor stops.
    pub(crate) fn connect_fail(&mut self, error: ConnectError, ctx: &mut Ctx<'_, Self>) {
        let Some(mut state) = self.take_connect_state() else {
            return;
        };
        if let Some(timer) = state.timer.take() {
            timer.cancel();
        }
        tracing::debug!(%error, "connect failed");
        self.release_transport(ctx);
        if let Some(reply) = state.reply.take() {
            reply.send(Err(error));
        }
        ctx.stop();
    }
}

/// A non-blocking socket connecting to `addr` (from `bind` if given).
fn start_connect(addr: SocketAddr, bind: Option<SocketAddr>) -> Result<TcpStream, ConnectError> {
    let err = |e: io::Error| ConnectError::io(Some(Address::Inet(addr)), &e);
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).map_err(err)?;
    socket.set_nonblocking(true).map_err(err)?;
    if let Some(bind) = bind {
        socket.bind(&bind.into()).map_err(|e| ConnectError::Io {
            addr: Some(Address::Inet(addr)),
            kind: e.kind(),
            message: format!("cannot bind to {bind}: {e}"),
        })?;
    }
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(nix::libc::EINPROGRESS) => {}
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        Err(e) => return Err(err(e)),
    }
    Ok(TcpStream::from_std(socket.into()))
}

impl<P: Protocol> std::fmt::Debug for Connecting<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connecting").finish_non_exhaustive()
    }
}
