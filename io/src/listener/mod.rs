//! Listening: `listen_tcp` (Twisted's `listenTCP`), `listen_tls`, and
//! the [`Listener`] actor behind them and `listen_unix`.
//!
//! A listener is an actor that owns the listening socket and, as its
//! child, a `DynamicSupervisor` of connection actors: every accepted
//! connection is a temporary supervised child running a fresh protocol.
//!
//! Owns: binding TCP (backlog, `SO_REUSEADDR`, `SO_REUSEPORT`; UNIX
//! binding is in `unix/`), the accept
//! loop (a batch per turn), the connection limit (at the limit the
//! listener stops accepting; the kernel's backlog holds the rest until a
//! connection ends), surviving `EMFILE`/`ENFILE` (back off on a timer,
//! keep listening, recover when descriptors free up), stopping (close or
//! drain the connections), and the statistics.
//!
//! Invariant: `active` counts connections from accept to the exit of
//! their actor; the listener pauses only with `paused` set, and a
//! connection that ends while it is set wakes the listener (both sides
//! swap the flag, so exactly one of them resumes accepting).
//!
//! Must not touch: a connection's socket after handing it over.
//!
//! Files: `options.rs` (ListenOptions, StopMode, ListenError), `stats.rs`
//! (the shared counters and ListenerInfo), and here the actor, binding
//! and `listen_tcp`.

use std::io;
use std::net::SocketAddr;
use std::os::unix::net::UnixListener as StdUnixListener;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use socket2::{Domain, Socket, Type};
use weft_actors::{Actor, ActorResult, Addr, Ctx, Down, ExitReason, Spawn, Stopping};
use weft_runtime::mio::event::Source;
use weft_runtime::mio::net::{TcpListener, UnixListener};
use weft_runtime::mio::Interest;
use weft_runtime::{Handle, IoToken, Readiness};
use weft_supervisor::{DynamicMsg, DynamicSpec, DynamicSupervisor};

#[cfg(feature = "tls")]
use rustls::ServerConfig;

use crate::addr::{Address, UnixAddr};
use crate::conn::{Connection, Core};
#[cfg(feature = "tls")]
use crate::conn::{Handshake, Phase};
use crate::protocol::Protocol;
#[cfg(feature = "tls")]
use crate::tls::layer::TlsLayer;
use crate::transport::Transport;
use crate::unix::{SocketFile, UnixIo};

mod options;

pub(crate) use crate::stats::Shared;
pub use crate::stats::{ListenerInfo, ListenerStats};
pub use options::{ListenError, ListenOptions, StopMode};

/// The messages of a [`Listener`].
pub enum ListenerMsg {
    /// Stop accepting; close or drain the connections, then exit.
    Stop(StopMode),
    #[doc(hidden)]
    Io(Readiness),
    #[doc(hidden)]
    Wake,
    #[doc(hidden)]
    PoolDown(Down),
}

/// The accepted socket handed to the connection pool (taken once: the
/// pool's children are temporary, so never rebuilt from it).
#[derive(Clone)]
pub(crate) struct Accepted(Arc<Mutex<Option<Transport>>>);

/// A socket bound before the listener actor starts (by `listen_*`, so a
/// bad address is an error at the call).
pub(crate) enum Bound {
    Tcp(std::net::TcpListener),
    /// With the socket file to remove when it closes (none for an abstract
    /// name or an adopted socket).
    Unix(StdUnixListener, Option<SocketFile>),
    /// A port of the simulated network.
    Sim(Arc<crate::sim::SimPort>),
}

/// The listening socket, registered with the reactor.
enum ListenSock {
    Tcp(TcpListener),
    Unix(UnixListener),
    Sim(Arc<crate::sim::SimPort>),
}

impl ListenSock {
    /// The socket to register (none for a simulated port).
    fn source(&mut self) -> Option<&mut dyn Source> {
        match self {
            ListenSock::Tcp(s) => Some(s),
            ListenSock::Unix(s) => Some(s),
            ListenSock::Sim(_) => None,
        }
    }

    fn accept(&self) -> io::Result<Transport> {
        match self {
            ListenSock::Tcp(s) => s.accept().map(|(stream, _)| Transport::Tcp(stream)),
            ListenSock::Unix(s) => s
                .accept()
                .map(|(stream, _)| Transport::Unix(Box::new(UnixIo::new(stream)))),
            ListenSock::Sim(p) => p.accept().map(Transport::Sim),
        }
    }
}

type Pool<P> = DynamicSupervisor<Connection<P>, Accepted>;
pub(crate) type Factory<P> = Arc<dyn Fn() -> P + Send + Sync>;

/// A TLS listener's server configuration, swapped by
/// [`Listening::set_tls_config`]: each accepted connection takes the one
/// in force when it is accepted.
#[cfg(feature = "tls")]
pub(crate) type TlsConfigCell = Arc<parking_lot::RwLock<Arc<ServerConfig>>>;
/// Without the `tls` feature no listener has a TLS configuration (an
/// empty enum: no value, and no `Copy`, so the code that clones a real
/// cell is the same).
#[cfg(not(feature = "tls"))]
pub(crate) enum TlsConfigCell {}

#[cfg(not(feature = "tls"))]
impl Clone for TlsConfigCell {
    fn clone(&self) -> Self {
        match *self {}
    }
}

/// A TLS listener's server configuration, shared by the listener (or
/// every restart of it in a supervision tree) and whoever renews its
/// certificate: [`set`](Self::set) swaps it for new handshakes; open
/// connections keep the one they started with.
///
/// ```no_run
/// use weft_io::{tls, Listener, ListenOptions, TlsConfigSlot, Conn, Protocol};
/// use weft_actors::ActorResult;
///
/// struct Echo;
/// impl Protocol for Echo {
///     type Msg = ();
///     fn data(&mut self, conn: &mut Conn<'_, '_, Self>, data: &[u8]) -> ActorResult {
///         conn.write(data)?;
///         Ok(())
///     }
/// }
///
/// let load = || {
///     tls::TlsServerBuilder::new()
///         .cert(tls::load_certs("cert.pem").unwrap(), tls::load_key("key.pem").unwrap())
///         .build()
///         .unwrap()
/// };
/// let slot = TlsConfigSlot::new(load());
/// let for_restarts = slot.clone();
/// // A supervision tree's child factory: every restart serves the slot's
/// // current configuration.
/// let make = move || {
///     Listener::new_tls("127.0.0.1:8443".parse().unwrap(), ListenOptions::new(),
///                       for_restarts.clone(), || Echo)
/// };
/// # let _ = make;
/// // Later, when the certificate is renewed:
/// slot.set(load());
/// ```
#[derive(Clone)]
#[cfg(feature = "tls")]
pub struct TlsConfigSlot(TlsConfigCell);

#[cfg(feature = "tls")]
impl TlsConfigSlot {
    /// A slot holding `config`.
    pub fn new(config: Arc<ServerConfig>) -> Self {
        TlsConfigSlot(Arc::new(parking_lot::RwLock::new(config)))
    }

    /// Replaces the configuration: handshakes that start from now on use
    /// `config`.
    pub fn set(&self, config: Arc<ServerConfig>) {
        *self.0.write() = config;
    }

    /// The configuration new handshakes use.
    pub fn get(&self) -> Arc<ServerConfig> {
        self.0.read().clone()
    }
}

#[cfg(feature = "tls")]
impl From<Arc<ServerConfig>> for TlsConfigSlot {
    fn from(config: Arc<ServerConfig>) -> Self {
        TlsConfigSlot::new(config)
    }
}

#[cfg(feature = "tls")]
impl std::fmt::Debug for TlsConfigSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfigSlot").finish_non_exhaustive()
    }
}

/// The listening actor. Use [`listen_tcp`] or [`listen_tls`], or put
/// [`Listener::new`] or [`Listener::new_tls`] in a supervision tree (it
/// binds in `started`, so a bind failure is a start failure the
/// supervisor reports).
///
/// ```
/// use std::io::{Read, Write};
/// use std::time::Duration;
/// use weft_actors::{ActorResult, Spawn};
/// use weft_io::{Conn, ListenOptions, Listener, Protocol};
/// use weft_supervisor::{ChildSpec, Strategy, Supervisor, SupervisorSpec};
///
/// struct Echo;
/// impl Protocol for Echo {
///     type Msg = ();
///     fn data(&mut self, conn: &mut Conn<'_, '_, Self>, data: &[u8]) -> ActorResult {
///         conn.write(data)?;
///         Ok(())
///     }
/// }
///
/// // A listener as a child of a supervision tree (restarted if it fails).
/// // Its port is fixed here so that a restart binds the same one.
/// let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
/// let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
/// let spec = SupervisorSpec::new(Strategy::OneForOne)
///     .child(ChildSpec::worker("echo", move || Listener::new(addr, ListenOptions::new(), || Echo)));
/// let rt = weft_runtime::Runtime::builder().build().unwrap();
/// rt.handle().spawn(Supervisor::new(spec));
/// let deadline = std::time::Instant::now() + Duration::from_secs(5);
/// let mut s = loop {
///     match std::net::TcpStream::connect(addr) {
///         Ok(s) => break s,
///         Err(_) if std::time::Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
///         Err(e) => panic!("{e}"),
///     }
/// };
/// s.write_all(b"hi").unwrap();
/// let mut back = [0u8; 2];
/// s.read_exact(&mut back).unwrap();
/// assert_eq!(&back, b"hi");
/// ```
pub struct Listener<P: Protocol> {
    addr: Address,
    prebound: Option<Bound>,
    sock: Option<ListenSock>,
    /// A UNIX listener's socket file, removed when the socket closes.
    socket_file: Option<SocketFile>,
    token: Option<IoToken>,
    factory: Factory<P>,
    opts: ListenOptions,
    shared: Arc<Shared>,
    pool: Option<Addr<Pool<P>>>,
    backoff: Duration,
    backing_off: bool,
    stopping: Option<StopMode>,
    tls: Option<TlsConfigCell>,
}

impl<P: Protocol> Listener<P> {
    /// A listener for `addr` running `factory()` on every connection; it
    /// binds when it starts.
    pub fn new(
        addr: SocketAddr,
        options: ListenOptions,
        factory: impl Fn() -> P + Send + Sync + 'static,
    ) -> Self {
        Self::with_factory(Address::Inet(addr), options, Arc::new(factory))
    }

    /// A listener on a UNIX socket (as [`listen_unix`](crate::listen_unix)):
    /// it binds when it starts (replacing a stale socket file), and
    /// removes the file when it stops.
    pub fn new_unix(
        addr: impl Into<UnixAddr>,
        options: ListenOptions,
        factory: impl Fn() -> P + Send + Sync + 'static,
    ) -> Self {
        Self::with_factory(Address::Unix(addr.into()), options, Arc::new(factory))
    }

    /// A TLS listener for `addr` (as [`listen_tls`]): every accepted
    /// connection completes a handshake with the slot's configuration of
    /// the moment before `factory()`'s protocol runs. It binds when it
    /// starts.
    #[cfg(feature = "tls")]
    pub fn new_tls(
        addr: SocketAddr,
        options: ListenOptions,
        config: impl Into<TlsConfigSlot>,
        factory: impl Fn() -> P + Send + Sync + 'static,
    ) -> Self {
        let mut listener = Self::with_factory(Address::Inet(addr), options, Arc::new(factory));
        listener.tls = Some(config.into().0);
        listener
    }

    pub(crate) fn with_factory(addr: Address, options: ListenOptions, factory: Factory<P>) -> Self {
        Listener {
            addr,
            prebound: None,
            sock: None,
            socket_file: None,
            token: None,
            factory,
            opts: options,
            shared: Shared::new(),
            pool: None,
            backoff: Duration::ZERO,
            backing_off: false,
            stopping: None,
            tls: None,
        }
    }

    /// A view of this listener (address, counters) that stays valid
    /// after it is spawned.
    pub fn info(&self) -> ListenerInfo {
        ListenerInfo {
            shared: vec![self.shared.clone()],
        }
    }

    fn accept_loop(&mut self, ctx: &mut Ctx<'_, Self>) {
        if self.stopping.is_some() || self.backing_off {
            return;
        }
        let (Some(sock), Some(pool)) = (&self.sock, &self.pool) else {
            return;
        };
        let pool = pool.clone();
        for _ in 0..self.opts.accept_batch {
            if let Some(max) = self.opts.max_connections {
                if self.shared.active.load(Ordering::SeqCst) >= max {
                    self.shared.paused.store(true, Ordering::SeqCst);
                    // A connection may have ended between the check and
                    // the flag: whoever swaps the flag back resumes.
                    if self.shared.active.load(Ordering::SeqCst) >= max
                        || !self.shared.paused.swap(false, Ordering::SeqCst)
                    {
                        return;
                    }
                }
            }
            match sock.accept() {
                Ok(stream) => {
                    self.backoff = Duration::ZERO;
                    self.shared.accepted.fetch_add(1, Ordering::Relaxed);
                    self.shared.active.fetch_add(1, Ordering::SeqCst);
                    let accepted = Accepted(Arc::new(Mutex::new(Some(stream))));
                    // A full pool mailbox mutes the listener: accepting
                    // waits until the pool catches up.
                    if ctx
                        .send(&pool, DynamicMsg::StartChildQuiet(accepted))
                        .is_err()
                    {
                        self.shared.connection_ended(false);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if transient(&e) => {}
                Err(e) => {
                    self.shared.accept_errors.fetch_add(1, Ordering::Relaxed);
                    self.backoff = if self.backoff.is_zero() {
                        Duration::from_millis(5)
                    } else {
                        (self.backoff * 2).min(self.opts.max_backoff)
                    };
                    tracing::warn!(error = %e, backoff = ?self.backoff, "accept failed; backing off");
                    self.backing_off = true;
                    ctx.send_later(self.backoff, ListenerMsg::Wake);
                    return;
                }
            }
        }
        // A full batch: yield, and go on next turn.
        ctx.send_self(ListenerMsg::Wake);
    }

    fn begin_stop(&mut self, mode: StopMode, ctx: &mut Ctx<'_, Self>) {
        if self.stopping.is_some() {
            return;
        }
        self.stopping = Some(mode);
        self.close_socket(ctx);
        tracing::debug!(?mode, "listener stopping");
        match mode {
            StopMode::Close => self.stop_pool(),
            StopMode::Drain => self.check_drained(),
        }
        if self.pool.is_none() {
            ctx.stop_with(ExitReason::Shutdown);
        }
    }

    fn check_drained(&mut self) {
        if self.shared.active.load(Ordering::SeqCst) == 0 {
            self.stop_pool();
        } else {
            self.shared.paused.store(true, Ordering::SeqCst);
            if self.shared.active.load(Ordering::SeqCst) == 0 {
                self.stop_pool();
            }
        }
    }

    /// Deregisters and closes the listening socket (new connects are
    /// refused from now on) and removes its socket file.
    fn close_socket(&mut self, ctx: &mut Ctx<'_, Self>) {
        if let (Some(token), Some(source)) = (
            self.token.take(),
            self.sock.as_mut().and_then(ListenSock::source),
        ) {
            let _ = ctx.deregister_io(source, token);
        }
        if let Some(ListenSock::Sim(port)) = &self.sock {
            port.close();
        }
        self.sock = None;
        self.prebound = None;
        if let Some(file) = self.socket_file.take() {
            file.remove();
        }
    }

    fn stop_pool(&mut self) {
        if let Some(pool) = &self.pool {
            let _ = pool.send(DynamicMsg::Shutdown);
        }
    }
}

/// Accept errors that concern one connection only: try the next.
fn transient(e: &io::Error) -> bool {
    use nix::libc;
    matches!(
        e.raw_os_error(),
        Some(libc::ECONNABORTED | libc::EINTR | libc::EPROTO | libc::EPERM | libc::ECONNRESET)
    ) || e.kind() == io::ErrorKind::Interrupted
}

fn bind(addr: SocketAddr, opts: &ListenOptions) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(opts.reuse_addr)?;
    if opts.reuse_port || opts.listeners > 1 {
        socket.set_reuse_port(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(opts.backlog)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

impl<P: Protocol> Actor for Listener<P> {
    type Msg = ListenerMsg;

    fn started(&mut self, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        crate::stats::register(ctx.runtime(), &self.shared);
        let bound = match self.prebound.take() {
            Some(s) => s,
            None => {
                let bind_err = |source| ListenError::Bind {
                    addr: self.addr.clone(),
                    source,
                };
                match &self.addr {
                    Address::Inet(addr) => Bound::Tcp(bind(*addr, &self.opts).map_err(bind_err)?),
                    Address::Unix(addr) => {
                        let (sock, file) =
                            crate::unix::bind_listener(addr, &self.opts).map_err(bind_err)?;
                        Bound::Unix(sock, file)
                    }
                }
            }
        };
        let (local, mut sock) = match bound {
            Bound::Tcp(s) => (
                Address::Inet(s.local_addr()?),
                ListenSock::Tcp(TcpListener::from_std(s)),
            ),
            Bound::Unix(s, file) => {
                self.socket_file = file;
                let local = Address::Unix(UnixAddr::from_std(&s.local_addr()?));
                (local, ListenSock::Unix(UnixListener::from_std(s)))
            }
            Bound::Sim(port) => (port.local_addr(), ListenSock::Sim(port)),
        };
        match &mut sock {
            ListenSock::Sim(port) => port.attach(ctx.ready_sink(ListenerMsg::Io)),
            other => {
                let source = other.source().expect("a socket");
                let token = ctx
                    .register_io(source, Interest::READABLE, ListenerMsg::Io)
                    .map_err(ListenError::Register)?;
                self.token = Some(token);
            }
        }
        self.sock = Some(sock);
        let _ = self.shared.local.set(local.clone());
        let _ = self
            .shared
            .listener
            .set(ctx.address().recipient_map(|()| ListenerMsg::Wake));

        let factory = self.factory.clone();
        let conn_opts = Arc::new(self.opts.conn.clone());
        let shared = self.shared.clone();
        let tls = self.tls.clone();
        let spec = DynamicSpec::new(move |accepted: Accepted| {
            let io = accepted.0.lock().take().unwrap_or(Transport::Closed);
            let core = Core::new(io, conn_opts.clone(), Some(shared.clone()));
            let Some(tls) = &tls else {
                return Connection::new(factory(), core);
            };
            #[cfg(not(feature = "tls"))]
            match *tls {}
            #[cfg(feature = "tls")]
            match TlsLayer::server(tls.read().clone()) {
                Ok(layer) => {
                    let mut conn = Connection::new(factory(), core.with_tls(layer));
                    conn.phase = Phase::Handshaking(Box::new(Handshake::accepted()));
                    conn
                }
                Err(e) => {
                    // Fails to start (no transport): counted as a failed
                    // connection, the listener goes on.
                    tracing::warn!(error = %e, "cannot start a TLS session");
                    Connection::new(
                        factory(),
                        Core::new(Transport::Closed, conn_opts.clone(), Some(shared.clone())),
                    )
                }
            }
        })
        .shutdown_timeout(self.opts.conn.drain_timeout + Duration::from_secs(1))
        .spawn_options(self.opts.conn.spawn_options(self.opts.capacity));
        let pool = ctx.spawn(Pool::<P>::new(spec));
        ctx.monitor(&pool, ListenerMsg::PoolDown);
        self.pool = Some(pool);
        tracing::debug!(%local, "listening");
        ctx.send_self(ListenerMsg::Wake);
        Ok(())
    }

    fn handle(&mut self, msg: ListenerMsg, ctx: &mut Ctx<'_, Self>) -> ActorResult {
        match msg {
            ListenerMsg::Io(_) => self.accept_loop(ctx),
            ListenerMsg::Wake => {
                if self.stopping == Some(StopMode::Drain) {
                    self.check_drained();
                } else {
                    self.backing_off = false;
                    self.accept_loop(ctx);
                }
            }
            ListenerMsg::Stop(mode) => self.begin_stop(mode, ctx),
            ListenerMsg::PoolDown(down) => {
                self.pool = None;
                if self.stopping.is_some() {
                    ctx.stop_with(ExitReason::Shutdown);
                } else {
                    return Err(format!("the connection pool exited: {}", down.reason).into());
                }
            }
        }
        Ok(())
    }

    fn stopping(&mut self, _reason: &ExitReason, ctx: &mut Ctx<'_, Self>) -> Stopping {
        if self.pool.is_none() {
            return Stopping::Stop;
        }
        let mode = self.opts.stop_mode;
        self.begin_stop(mode, ctx);
        Stopping::Continue
    }

    fn stopped(&mut self, _reason: &ExitReason, ctx: &mut Ctx<'_, Self>) {
        self.close_socket(ctx);
        *self.shared.done.lock() = true;
        self.shared.done_cond.notify_all();
    }
}

/// A running listener: its address, counters, and how to stop it. `A`
/// is the type of the address it listens on: [`SocketAddr`] for
/// `listen_tcp` and `listen_tls`, [`UnixAddr`] for `listen_unix`.
pub struct Listening<P: Protocol, A = SocketAddr> {
    addrs: Vec<Addr<Listener<P>>>,
    info: ListenerInfo,
    local: A,
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    tls: Option<TlsConfigCell>,
}

impl<P: Protocol, A: Clone> Listening<P, A> {
    /// The bound address (with the port the OS chose for port 0).
    pub fn local_addr(&self) -> A {
        self.local.clone()
    }

    /// The counters now.
    pub fn stats(&self) -> ListenerStats {
        self.info.stats()
    }

    /// A view of the listener for other threads.
    pub fn info(&self) -> ListenerInfo {
        self.info.clone()
    }

    /// The listener actors' addresses (one per listening socket).
    pub fn addrs(&self) -> &[Addr<Listener<P>>] {
        &self.addrs
    }

    /// Stops accepting, then closes or drains the connections as `mode`
    /// says; the listener exits when they have ended. False if it had
    /// already exited.
    pub fn stop(&self, mode: StopMode) -> bool {
        let mut any = false;
        for addr in &self.addrs {
            any |= addr.send(ListenerMsg::Stop(mode)).is_ok();
        }
        any
    }

    /// Blocks this (non-worker) thread until the listener exited, or
    /// `timeout`; whether it has.
    pub fn wait_stopped(&self, timeout: Duration) -> bool {
        self.info.wait_stopped(timeout)
    }

    /// A TLS listener: replaces its server configuration (a renewed
    /// certificate) without a restart. Handshakes that start from now on
    /// use `config`; open connections keep theirs. False for a plaintext
    /// listener.
    #[cfg(feature = "tls")]
    pub fn set_tls_config(&self, config: Arc<ServerConfig>) -> bool {
        match &self.tls {
            Some(cell) => {
                *cell.write() = config;
                true
            }
            None => false,
        }
    }
}

/// Listens on `addr` and runs `factory()` on every accepted connection,
/// each in its own supervised connection actor (Twisted's `listenTCP`).
/// Binds before returning, so a bad or busy address is an error here.
///
/// ```no_run
/// use weft_io::{listen_tcp, Conn, ListenOptions, Protocol};
/// use weft_actors::ActorResult;
///
/// struct Echo;
/// impl Protocol for Echo {
///     type Msg = ();
///     fn data(&mut self, conn: &mut Conn<'_, '_, Self>, data: &[u8]) -> ActorResult {
///         conn.write(data)?;
///         Ok(())
///     }
/// }
///
/// let rt = weft_runtime::Runtime::builder().build().unwrap();
/// let listening = listen_tcp(rt.handle(), "127.0.0.1:7000".parse().unwrap(),
///                            ListenOptions::new(), || Echo).unwrap();
/// println!("listening on {}", listening.local_addr());
/// rt.run().unwrap();
/// ```
pub fn listen_tcp<P: Protocol>(
    handle: &Handle,
    addr: SocketAddr,
    options: ListenOptions,
    factory: impl Fn() -> P + Send + Sync + 'static,
) -> Result<Listening<P>, ListenError> {
    listen(handle, addr, options, None, Arc::new(factory))
}

/// Listens on `addr` for TLS connections (Twisted's `listenSSL`): as
/// [`listen_tcp`] (supervised handlers, limits, idle timeout, `EMFILE`
/// back-off, drain on stop), with a TLS handshake on every accepted
/// connection before its protocol runs. The protocol is told
/// [`tls_ready`](Protocol::tls_ready), then `connected`; a connection
/// whose handshake fails or does not complete within
/// [`ConnOptions::handshake_timeout`](crate::ConnOptions::handshake_timeout)
/// just ends (the protocol never runs). Swap the configuration at run
/// time with [`Listening::set_tls_config`].
///
/// ```no_run
/// use weft_io::{listen_tls, tls, Conn, ListenOptions, Protocol};
/// use weft_actors::ActorResult;
///
/// struct Echo;
/// impl Protocol for Echo {
///     type Msg = ();
///     fn data(&mut self, conn: &mut Conn<'_, '_, Self>, data: &[u8]) -> ActorResult {
///         conn.write(data)?;
///         Ok(())
///     }
/// }
///
/// let rt = weft_runtime::Runtime::builder().build().unwrap();
/// let config = tls::TlsServerBuilder::new()
///     .cert(tls::load_certs("cert.pem").unwrap(), tls::load_key("key.pem").unwrap())
///     .build()
///     .unwrap();
/// let listening = listen_tls(rt.handle(), "127.0.0.1:8443".parse().unwrap(),
///                            ListenOptions::new(), config, || Echo).unwrap();
/// rt.run().unwrap();
/// ```
#[cfg(feature = "tls")]
pub fn listen_tls<P: Protocol>(
    handle: &Handle,
    addr: SocketAddr,
    options: ListenOptions,
    config: Arc<ServerConfig>,
    factory: impl Fn() -> P + Send + Sync + 'static,
) -> Result<Listening<P>, ListenError> {
    let cell = Arc::new(parking_lot::RwLock::new(config));
    listen(handle, addr, options, Some(cell), Arc::new(factory))
}

fn listen<P: Protocol>(
    handle: &Handle,
    addr: SocketAddr,
    options: ListenOptions,
    tls: Option<TlsConfigCell>,
    factory: Factory<P>,
) -> Result<Listening<P>, ListenError> {
    let bind_err = |addr: SocketAddr| {
        move |source| ListenError::Bind {
            addr: Address::Inet(addr),
            source,
        }
    };
    if let Some(net) = crate::sim::net_of(handle) {
        // Simulated: a port of the simulated network, one listener.
        let port = net.bind(addr).map_err(bind_err(addr))?;
        let local = match port.local_addr() {
            Address::Inet(local) => local,
            Address::Unix(_) => addr,
        };
        return Ok(spawn_bound(
            handle,
            Address::Inet(local),
            local,
            vec![Bound::Sim(port)],
            options,
            tls,
            factory,
        ));
    }
    let first = bind(addr, &options).map_err(bind_err(addr))?;
    let local = first.local_addr().map_err(bind_err(addr))?;
    // The others bind the port the first one got (port 0 picks once).
    let mut socks = vec![Bound::Tcp(first)];
    for _ in 1..options.listeners {
        socks.push(Bound::Tcp(bind(local, &options).map_err(bind_err(local))?));
    }
    Ok(spawn_bound(
        handle,
        Address::Inet(local),
        local,
        socks,
        options,
        tls,
        factory,
    ))
}

/// Spawns one listener actor per bound socket.
pub(crate) fn spawn_bound<P: Protocol, A>(
    handle: &Handle,
    addr: Address,
    local: A,
    socks: Vec<Bound>,
    options: ListenOptions,
    tls: Option<TlsConfigCell>,
    factory: Factory<P>,
) -> Listening<P, A> {
    let mut addrs = Vec::with_capacity(socks.len());
    let mut shared = Vec::with_capacity(socks.len());
    for sock in socks {
        let mut listener = Listener::with_factory(addr.clone(), options.clone(), factory.clone());
        listener.prebound = Some(sock);
        listener.tls = tls.clone();
        // Bound already: listed (and its address known) from now on, not
        // only once its actor has started.
        let _ = listener.shared.local.set(addr.clone());
        crate::stats::register(handle, &listener.shared);
        shared.push(listener.shared.clone());
        addrs.push(handle.spawn(listener));
    }
    Listening {
        addrs,
        info: ListenerInfo { shared },
        local,
        tls,
    }
}

impl std::fmt::Debug for ListenerMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ListenerMsg")
    }
}

impl<P: Protocol> std::fmt::Debug for Listener<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener").finish_non_exhaustive()
    }
}

impl<P: Protocol, A: std::fmt::Debug> std::fmt::Debug for Listening<P, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listening")
            .field("local_addr", &self.local)
            .finish_non_exhaustive()
    }
}
