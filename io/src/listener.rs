//! Listening: `listen_tcp` (Twisted's `listenTCP`) and the [`Listener`]
//! actor.
//!
//! A listener is an actor that owns the listening socket and, as its
//! child, a `DynamicSupervisor` of connection actors: every accepted
//! connection is a temporary supervised child running a fresh protocol.
//!
//! Owns: binding (backlog, `SO_REUSEADDR`, `SO_REUSEPORT`), the accept
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

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use socket2::{Domain, Socket, Type};
use weft_actors::{
    Actor, ActorResult, Addr, Ctx, Down, ExitReason, Recipient, Spawn, SpawnOptions, Stopping,
};
use weft_runtime::mio::net::{TcpListener, TcpStream};
use weft_runtime::mio::Interest;
use weft_runtime::{Handle, IoToken, Readiness};
use weft_supervisor::{DynamicMsg, DynamicSpec, DynamicSupervisor};

use crate::conn::{ConnOptions, Connection, Core};
use crate::protocol::Protocol;
use crate::transport::Transport;

/// What stopping a listener does to its open connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopMode {
    /// Each connection flushes what it has buffered and closes (within
    /// its drain timeout, then it is aborted).
    Close,
    /// Connections run on until they end by themselves; the listener
    /// exits when the last one has.
    Drain,
}

/// Options of `listen_tcp`.
#[derive(Clone, Debug)]
pub struct ListenOptions {
    backlog: i32,
    reuse_addr: bool,
    reuse_port: bool,
    max_connections: Option<usize>,
    conn: ConnOptions,
    stop_mode: StopMode,
    accept_batch: usize,
    max_backoff: Duration,
    capacity: usize,
    listeners: usize,
}

impl Default for ListenOptions {
    fn default() -> Self {
        ListenOptions {
            backlog: 1024,
            reuse_addr: true,
            reuse_port: false,
            max_connections: None,
            conn: ConnOptions::default(),
            stop_mode: StopMode::Close,
            accept_batch: 64,
            max_backoff: Duration::from_secs(1),
            capacity: weft_actors::DEFAULT_CAPACITY,
            listeners: 1,
        }
    }
}

impl ListenOptions {
    /// Defaults: backlog 1024, `SO_REUSEADDR` on, `SO_REUSEPORT` off, no
    /// connection limit, default connection options, stop closes the
    /// connections, 64 accepts per turn, back-off up to 1 s.
    pub fn new() -> Self {
        Self::default()
    }

    /// The kernel's queue of connections not yet accepted.
    pub fn backlog(mut self, backlog: u32) -> Self {
        self.backlog = backlog.min(i32::MAX as u32) as i32;
        self
    }

    /// `SO_REUSEADDR`: rebind at once after a restart (default on).
    pub fn reuse_addr(mut self, on: bool) -> Self {
        self.reuse_addr = on;
        self
    }

    /// `SO_REUSEPORT`: several listening sockets (in this process or
    /// others) share the port and the kernel spreads connections.
    pub fn reuse_port(mut self, on: bool) -> Self {
        self.reuse_port = on;
        self
    }

    /// At most `n` connections at once; at the limit the listener stops
    /// accepting until one ends (the rest wait in the backlog).
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = Some(n.max(1));
        self
    }

    /// Options of every accepted connection (nodelay, idle timeout,
    /// watermarks, ...).
    pub fn conn(mut self, conn: ConnOptions) -> Self {
        self.conn = conn;
        self
    }

    /// What stopping the listener does to its connections.
    pub fn stop_mode(mut self, mode: StopMode) -> Self {
        self.stop_mode = mode;
        self
    }

    /// Accepts per turn before the listener yields to other actors.
    pub fn accept_batch(mut self, n: usize) -> Self {
        self.accept_batch = n.max(1);
        self
    }

    /// The longest pause after `EMFILE`/`ENFILE` before trying again
    /// (the pause starts at 5 ms and doubles).
    pub fn max_backoff(mut self, d: Duration) -> Self {
        self.max_backoff = d;
        self
    }

    /// `n` listening sockets on one port (`SO_REUSEPORT`, set for you),
    /// each with its own listener actor and connection supervisor: the
    /// kernel spreads new connections over them, so accepting and
    /// starting connections run on several workers at once. Worth it
    /// when connection setup, not traffic, is the load (many short
    /// connections on many cores); one (the default) otherwise. Counters
    /// are summed; `max_connections` applies to each.
    pub fn listeners(mut self, n: usize) -> Self {
        self.listeners = n.max(1);
        self
    }

    /// Mailbox capacity of each connection actor.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }
}

/// Why a listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// Binding or listening failed (address in use, not local, no
    /// permission, ...).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Registering with the reactor failed.
    #[error("cannot register the listening socket: {0}")]
    Register(#[source] io::Error),
    /// The listener actor exited while starting.
    #[error("the listener stopped while starting: {0}")]
    Stopped(String),
}

/// A snapshot of a listener's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListenerStats {
    /// Connections accepted so far.
    pub accepted: u64,
    /// Connections open now.
    pub active: usize,
    /// Connections that have ended.
    pub closed: u64,
    /// Connections whose protocol panicked or returned an error.
    pub failed: u64,
    /// Failed `accept` calls (e.g. `EMFILE`), each followed by a back-off.
    pub accept_errors: u64,
    /// The largest write buffer any connection held, in bytes.
    pub peak_write_buffer: usize,
    /// Whether the listener is paused at its connection limit.
    pub at_limit: bool,
}

/// State shared by a listener and its connections.
pub(crate) struct Shared {
    accepted: AtomicU64,
    active: AtomicUsize,
    closed: AtomicU64,
    failed: AtomicU64,
    accept_errors: AtomicU64,
    peak_write_buffer: AtomicUsize,
    /// The listener waits for a connection to end (limit, or draining).
    paused: AtomicBool,
    listener: OnceLock<Recipient<ListenerMsg>>,
    local: OnceLock<SocketAddr>,
    done: Mutex<bool>,
    done_cond: Condvar,
}

impl Shared {
    fn new() -> Arc<Self> {
        Arc::new(Shared {
            accepted: AtomicU64::new(0),
            active: AtomicUsize::new(0),
            closed: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            accept_errors: AtomicU64::new(0),
            peak_write_buffer: AtomicUsize::new(0),
            paused: AtomicBool::new(false),
            listener: OnceLock::new(),
            local: OnceLock::new(),
            done: Mutex::new(false),
            done_cond: Condvar::new(),
        })
    }

    pub(crate) fn note_buffered(&self, bytes: usize) {
        if bytes > self.peak_write_buffer.load(Ordering::Relaxed) {
            self.peak_write_buffer.fetch_max(bytes, Ordering::Relaxed);
        }
    }

    /// A connection actor exited (`failed`: its protocol panicked or
    /// returned an error).
    pub(crate) fn connection_ended(&self, failed: bool) {
        self.closed.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        self.active.fetch_sub(1, Ordering::SeqCst);
        if self.paused.load(Ordering::SeqCst) && self.paused.swap(false, Ordering::SeqCst) {
            if let Some(listener) = self.listener.get() {
                let _ = listener.send(ListenerMsg::Wake);
            }
        }
    }

    fn stats(&self) -> ListenerStats {
        ListenerStats {
            accepted: self.accepted.load(Ordering::Relaxed),
            active: self.active.load(Ordering::SeqCst),
            closed: self.closed.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            accept_errors: self.accept_errors.load(Ordering::Relaxed),
            peak_write_buffer: self.peak_write_buffer.load(Ordering::Relaxed),
            at_limit: self.paused.load(Ordering::Relaxed),
        }
    }
}

/// A view of a listener for any thread: its address, its counters, and
/// waiting for it to end.
#[derive(Clone)]
pub struct ListenerInfo {
    shared: Vec<Arc<Shared>>,
}

impl std::fmt::Debug for ListenerInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerInfo")
            .field("local_addr", &self.local_addr())
            .field("stats", &self.stats())
            .finish()
    }
}

impl ListenerInfo {
    /// The bound address (with the port the OS chose), once listening.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.shared.iter().find_map(|s| s.local.get().copied())
    }

    /// The counters now (summed over the listening sockets).
    pub fn stats(&self) -> ListenerStats {
        let mut all = ListenerStats::default();
        for s in self.shared.iter().map(|s| s.stats()) {
            all.accepted += s.accepted;
            all.active += s.active;
            all.closed += s.closed;
            all.failed += s.failed;
            all.accept_errors += s.accept_errors;
            all.peak_write_buffer = all.peak_write_buffer.max(s.peak_write_buffer);
            all.at_limit |= s.at_limit;
        }
        all
    }

    /// Blocks this (non-worker) thread until the listener has exited (its
    /// connections closed or drained), or `timeout`; whether it has.
    pub fn wait_stopped(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        self.shared.iter().all(|shared| {
            let mut done = shared.done.lock();
            while !*done {
                if shared.done_cond.wait_until(&mut done, deadline).timed_out() {
                    break;
                }
            }
            *done
        })
    }
}

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
pub(crate) struct Accepted(Arc<Mutex<Option<TcpStream>>>);

type Pool<P> = DynamicSupervisor<Connection<P>, Accepted>;
type Factory<P> = Arc<dyn Fn() -> P + Send + Sync>;

/// The listening actor. Use [`listen_tcp`], or put `Listener::new(..)` in
/// a supervision tree (it binds in `started`, so a bind failure is a
/// start failure the supervisor reports).
pub struct Listener<P: Protocol> {
    addr: SocketAddr,
    prebound: Option<std::net::TcpListener>,
    sock: Option<TcpListener>,
    token: Option<IoToken>,
    factory: Factory<P>,
    opts: ListenOptions,
    shared: Arc<Shared>,
    pool: Option<Addr<Pool<P>>>,
    backoff: Duration,
    backing_off: bool,
    stopping: Option<StopMode>,
}

impl<P: Protocol> Listener<P> {
    /// A listener for `addr` running `factory()` on every connection; it
    /// binds when it starts.
    pub fn new(
        addr: SocketAddr,
        options: ListenOptions,
        factory: impl Fn() -> P + Send + Sync + 'static,
    ) -> Self {
        Self::with_factory(addr, options, Arc::new(factory))
    }

    fn with_factory(addr: SocketAddr, options: ListenOptions, factory: Factory<P>) -> Self {
        Listener {
            addr,
            prebound: None,
            sock: None,
            token: None,
            factory,
            opts: options,
            shared: Shared::new(),
            pool: None,
            backoff: Duration::ZERO,
            backing_off: false,
            stopping: None,
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
                Ok((stream, _peer)) => {
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
        if let (Some(token), Some(sock)) = (self.token.take(), self.sock.as_mut()) {
            let _ = ctx.deregister_io(sock, token);
        }
        self.sock = None;
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
        let std_sock = match self.prebound.take() {
            Some(s) => s,
            None => bind(self.addr, &self.opts).map_err(|source| ListenError::Bind {
                addr: self.addr,
                source,
            })?,
        };
        let local = std_sock.local_addr()?;
        let mut sock = TcpListener::from_std(std_sock);
        let token = ctx
            .register_io(&mut sock, Interest::READABLE, ListenerMsg::Io)
            .map_err(ListenError::Register)?;
        self.sock = Some(sock);
        self.token = Some(token);
        let _ = self.shared.local.set(local);
        let _ = self.shared.listener.set(ctx.address().recipient());

        let factory = self.factory.clone();
        let conn_opts = Arc::new(self.opts.conn.clone());
        let shared = self.shared.clone();
        let spec = DynamicSpec::new(move |accepted: Accepted| {
            let io = accepted
                .0
                .lock()
                .take()
                .map_or(Transport::Closed, Transport::Tcp);
            Connection::new(
                factory(),
                Core::new(io, conn_opts.clone(), Some(shared.clone())),
            )
        })
        .shutdown_timeout(self.opts.conn.drain_timeout + Duration::from_secs(1))
        .spawn_options(SpawnOptions::new().capacity(self.opts.capacity));
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
        if let (Some(token), Some(sock)) = (self.token.take(), self.sock.as_mut()) {
            let _ = ctx.deregister_io(sock, token);
        }
        self.sock = None;
        *self.shared.done.lock() = true;
        self.shared.done_cond.notify_all();
    }
}

/// A running listener: its address, counters, and how to stop it.
pub struct Listening<P: Protocol> {
    addrs: Vec<Addr<Listener<P>>>,
    info: ListenerInfo,
    local: SocketAddr,
}

impl<P: Protocol> Listening<P> {
    /// The bound address (with the port the OS chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
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
    let bind_err = |addr| move |source| ListenError::Bind { addr, source };
    let first = bind(addr, &options).map_err(bind_err(addr))?;
    let local = first.local_addr().map_err(bind_err(addr))?;
    // The others bind the port the first one got (port 0 picks once).
    let mut socks = vec![first];
    for _ in 1..options.listeners {
        socks.push(bind(local, &options).map_err(bind_err(local))?);
    }
    let factory: Factory<P> = Arc::new(factory);
    let mut addrs = Vec::with_capacity(socks.len());
    let mut shared = Vec::with_capacity(socks.len());
    for sock in socks {
        let mut listener = Listener::with_factory(local, options.clone(), factory.clone());
        listener.prebound = Some(sock);
        shared.push(listener.shared.clone());
        addrs.push(handle.spawn(listener));
    }
    Ok(Listening {
        addrs,
        info: ListenerInfo { shared },
        local,
    })
}
