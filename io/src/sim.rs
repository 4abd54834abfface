//! A simulated network for a simulated runtime
//! ([`Builder::simulation`](weft_runtime::Builder::simulation)): named
//! hosts with addresses, TCP streams between them over links with seeded
//! latency and bandwidth, partitions and healing, resets, and hosts that
//! crash (their actors die, their peers see resets) and restart (their
//! boot function runs again).
//!
//! Programs run unchanged: once a [`SimNet`] is installed, `listen_tcp`,
//! `listen_tls`, `connect_tcp`, `connect_tls`, `listen_udp`,
//! `listen_unix` and `connect_unix` (a UNIX path is per host) on that
//! runtime bind and connect on the simulated network, through the same
//! listener and
//! connection actors (supervised handlers, limits, idle timeouts, drain,
//! TLS) as over the OS's sockets. Host names resolve through the
//! simulator. Which host a call acts for is the host of the actor making
//! it: actors spawned while a host's code runs ([`Host::enter`], its boot
//! function, or a turn of one of its actors) belong to that host.
//!
//! Faults chosen by the seed ([`SimNet::set_faults`]): short writes and
//! reads, a read that would block with data waiting (then a spurious
//! wake-up), `EMFILE` on accept.
//!
//! Owns: the hosts, the listening ports, the streams in flight, the
//! placement of actors on hosts. Must not touch: the connection actors'
//! state (it is a byte stream and an accept queue to them).

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use weft_actors::{ActorId, ExitReason};
use weft_runtime::{Handle, Phase, Readiness, ReadySink, Simulation};

use crate::addr::{Address, UnixAddr};

/// How many bytes may be in flight toward, or unread at, one end of a
/// stream (the receive window).
const WINDOW: usize = 64 << 10;

thread_local! {
    /// The host the running code acts for.
    static CURRENT: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Why a simulated host operation failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SimNetError {
    /// The runtime is not a simulation.
    #[error("the runtime is not a simulation (Builder::simulation)")]
    NotSimulated,
    /// A network is installed on this runtime already.
    #[error("a simulated network is installed on this runtime already")]
    AlreadyInstalled,
}

/// The simulated network of one simulated runtime. Cheap to clone.
#[derive(Clone)]
pub struct SimNet {
    net: Arc<Net>,
}

impl std::fmt::Debug for SimNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimNet")
            .field("hosts", &self.net.state.lock().hosts.len())
            .finish()
    }
}

/// One simulated host. Cheap to clone.
#[derive(Clone)]
pub struct Host {
    net: Arc<Net>,
    id: usize,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("name", &self.name())
            .field("ip", &self.ip())
            .finish()
    }
}

type Boot = Arc<dyn Fn(&Host) + Send + Sync>;

struct HostState {
    name: String,
    ip: IpAddr,
    up: bool,
    boot: Option<Boot>,
    actors: Vec<ActorId>,
    /// Incremented on each crash: streams of an earlier life are dead.
    life: u64,
}

pub(crate) struct Net {
    handle: Handle,
    sim: Simulation,
    state: Mutex<NetState>,
    /// Faults injected so far.
    faults: std::sync::atomic::AtomicU64,
}

struct NetState {
    hosts: Vec<HostState>,
    /// Listening ports (a port whose listener is gone refuses).
    ports: HashMap<SocketAddr, Weak<SimPort>>,
    /// Bound datagram sockets.
    udp: HashMap<SocketAddr, Weak<SimUdp>>,
    /// Listening UNIX sockets, by host and address.
    unix_ports: HashMap<(usize, UnixAddr), Weak<SimPort>>,
    /// The chance that a datagram is lost.
    loss: f64,
    /// Host pairs (lower index first) that cannot reach each other.
    partitions: Vec<(usize, usize)>,
    streams: Vec<Weak<Stream>>,
    placed: HashMap<ActorId, usize>,
    /// Spawned on a host that is down: killed after the current turn.
    doomed: Vec<ActorId>,
    /// Killed by a crash; their placements go once they have exited.
    crashed: Vec<ActorId>,
    /// When a host's list of actors is next pruned of the exited.
    prune_at: usize,
    latency: (Duration, Duration),
    /// Bytes per second on every link (`None`: no limit).
    bandwidth: Option<u64>,
    faults: f64,
    next_port: u16,
}

/// The network installed on `handle`'s runtime, if it is a simulation
/// with one.
pub(crate) fn net_of(handle: &Handle) -> Option<Arc<Net>> {
    handle.simulation()?;
    weft_actors::extension(handle, Slot::default)
        .0
        .lock()
        .clone()
}

#[derive(Default)]
struct Slot(Mutex<Option<Arc<Net>>>);

impl SimNet {
    /// Installs a simulated network on a simulated runtime: from now on
    /// its listeners and connections use it. Link latency defaults to
    /// 1–5 ms, no bandwidth limit, no faults.
    ///
    /// ```
    /// use weft_io::sim::SimNet;
    ///
    /// let rt = weft_runtime::Runtime::builder().simulation(1).build().unwrap();
    /// let net = SimNet::install(rt.handle()).unwrap();
    /// let server = net.host("server");
    /// assert_eq!(net.lookup("server"), Some(server.ip()));
    /// ```
    pub fn install(handle: &Handle) -> Result<SimNet, SimNetError> {
        let sim = handle.simulation().ok_or(SimNetError::NotSimulated)?;
        let slot = weft_actors::extension(handle, Slot::default);
        let mut current = slot.0.lock();
        if current.is_some() {
            return Err(SimNetError::AlreadyInstalled);
        }
        let net = Arc::new(Net {
            handle: handle.clone(),
            sim: sim.clone(),
            faults: std::sync::atomic::AtomicU64::new(0),
            state: Mutex::new(NetState {
                hosts: Vec::new(),
                ports: HashMap::new(),
                udp: HashMap::new(),
                unix_ports: HashMap::new(),
                loss: 0.0,
                partitions: Vec::new(),
                streams: Vec::new(),
                placed: HashMap::new(),
                doomed: Vec::new(),
                crashed: Vec::new(),
                prune_at: 0,
                latency: (Duration::from_millis(1), Duration::from_millis(5)),
                bandwidth: None,
                faults: 0.0,
                next_port: 40_000,
            }),
        });
        *current = Some(net.clone());
        drop(current);
        // Actors spawned while a host's code runs belong to it; its
        // actors' turns run as that host.
        let weak = Arc::downgrade(&net);
        weft_actors::on_spawn(handle, move |id| {
            if let (Some(host), Some(net)) = (CURRENT.with(Cell::get), weak.upgrade()) {
                net.place(id, host);
            }
        });
        let weak = Arc::downgrade(&net);
        let _ = sim.on_turn(move |task| {
            let Some(net) = weak.upgrade() else {
                return;
            };
            let host = match task {
                Some(id) => net.state.lock().placed.get(&ActorId(id)).copied(),
                None => {
                    net.kill_doomed();
                    None
                }
            };
            CURRENT.with(|c| c.set(host));
        });
        // Break the cycle runtime -> network -> handle at shutdown.
        let weak = Arc::downgrade(&net);
        handle.on_shutdown(Phase::After, move || {
            if let Some(net) = weak.upgrade() {
                let mut st = net.state.lock();
                st.ports.clear();
                st.udp.clear();
                st.unix_ports.clear();
                st.streams.clear();
                for h in &mut st.hosts {
                    h.boot = None;
                }
            }
            if let Some(net) = weak.upgrade() {
                let slot = weft_actors::extension(&net.handle, Slot::default);
                slot.0.lock().take();
            }
        });
        Ok(SimNet { net })
    }

    /// The host named `name`, made (up, at the next free address
    /// 10.0.0.N) if there is none.
    pub fn host(&self, name: &str) -> Host {
        let mut st = self.net.state.lock();
        if let Some(id) = st.hosts.iter().position(|h| h.name == name) {
            return Host {
                net: self.net.clone(),
                id,
            };
        }
        let id = st.hosts.len();
        let n = id + 1;
        let ip = IpAddr::V4(Ipv4Addr::new(10, 0, (n >> 8) as u8, (n & 0xff) as u8));
        st.hosts.push(HostState {
            name: name.to_string(),
            ip,
            up: true,
            boot: None,
            actors: Vec::new(),
            life: 0,
        });
        Host {
            net: self.net.clone(),
            id,
        }
    }

    /// A host's address by name (the simulator's name resolution).
    pub fn lookup(&self, name: &str) -> Option<IpAddr> {
        self.net.lookup(name)
    }

    /// Every link's latency is drawn from `low..=high` per segment
    /// (a stream's bytes still arrive in order).
    pub fn set_latency(&self, low: Duration, high: Duration) {
        self.net.state.lock().latency = (low, high.max(low));
    }

    /// Every link carries at most `bytes_per_second` (`None`: no limit).
    pub fn set_bandwidth(&self, bytes_per_second: Option<u64>) {
        self.net.state.lock().bandwidth = bytes_per_second.filter(|b| *b > 0);
    }

    /// Each datagram is lost with probability `p` (UDP only: streams
    /// never lose data). Datagrams also reorder, as each draws its own
    /// transit time.
    pub fn set_loss(&self, p: f64) {
        self.net.state.lock().loss = p.clamp(0.0, 1.0);
    }

    /// Injects faults with probability `p` at each chance: short writes
    /// and reads, a read that would block though data waits (followed by
    /// a spurious wake-up), `EMFILE` on accept. 0 (the default) turns
    /// them off.
    pub fn set_faults(&self, p: f64) {
        self.net.state.lock().faults = p.clamp(0.0, 1.0);
    }

    /// How many faults were injected so far (see
    /// [`set_faults`](Self::set_faults)).
    pub fn faults_injected(&self) -> u64 {
        self.net.faults.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Cuts `a` off from `b` (both ways): nothing sent between them
    /// arrives until [`heal`](Self::heal); new connections time out.
    pub fn partition(&self, a: &Host, b: &Host) {
        let pair = (a.id.min(b.id), a.id.max(b.id));
        let mut st = self.net.state.lock();
        if !st.partitions.contains(&pair) {
            st.partitions.push(pair);
        }
        drop(st);
        self.net
            .sim
            .record(1, (pair.0 as u64) << 32 | pair.1 as u64);
    }

    /// Ends the partition between `a` and `b`: what was held is
    /// delivered, in order.
    pub fn heal(&self, a: &Host, b: &Host) {
        let pair = (a.id.min(b.id), a.id.max(b.id));
        self.net.state.lock().partitions.retain(|p| *p != pair);
        self.net
            .sim
            .record(2, (pair.0 as u64) << 32 | pair.1 as u64);
        self.net.redeliver();
    }

    /// Resets every stream between `a` and `b` (both ends see
    /// `ECONNRESET`, as after a middlebox's RST); new connections go on
    /// working.
    pub fn reset(&self, a: &Host, b: &Host) {
        let streams: Vec<Arc<Stream>> = {
            let mut st = self.net.state.lock();
            st.streams.retain(|s| s.strong_count() > 0);
            st.streams.iter().filter_map(Weak::upgrade).collect()
        };
        self.net.sim.record(4, (a.id as u64) << 32 | b.id as u64);
        let pair = |x: Option<usize>, y: Option<usize>| {
            (x == Some(a.id) && y == Some(b.id)) || (x == Some(b.id) && y == Some(a.id))
        };
        for s in streams {
            if pair(s.hosts[0], s.hosts[1]) {
                for side in 0..2 {
                    s.transmit(side, Seg::Rst);
                }
            }
        }
    }

    /// Ends every partition.
    pub fn heal_all(&self) {
        self.net.state.lock().partitions.clear();
        self.net.sim.record(3, 0);
        self.net.redeliver();
    }

    /// The simulation this network belongs to.
    pub fn simulation(&self) -> &Simulation {
        &self.net.sim
    }
}

impl Host {
    /// Its name.
    pub fn name(&self) -> String {
        self.net.state.lock().hosts[self.id].name.clone()
    }

    /// Its address.
    pub fn ip(&self) -> IpAddr {
        self.net.state.lock().hosts[self.id].ip
    }

    /// `port` on this host.
    pub fn addr(&self, port: u16) -> SocketAddr {
        SocketAddr::new(self.ip(), port)
    }

    /// Whether it is up (not crashed).
    pub fn is_up(&self) -> bool {
        self.net.state.lock().hosts[self.id].up
    }

    /// Runs `f` as this host: the actors it spawns belong to the host,
    /// and the listeners and connections it makes are the host's.
    pub fn enter<R>(&self, f: impl FnOnce() -> R) -> R {
        let before = CURRENT.with(|c| c.replace(Some(self.id)));
        let r = f();
        CURRENT.with(|c| c.set(before));
        r
    }

    /// Sets what the host runs when it boots, and runs it now (as
    /// [`enter`](Self::enter)); [`restart`](Self::restart) runs it again.
    pub fn boot(&self, f: impl Fn(&Host) + Send + Sync + 'static) {
        let f: Boot = Arc::new(f);
        self.net.state.lock().hosts[self.id].boot = Some(f.clone());
        self.enter(|| f(self));
    }

    /// Crashes the host: every actor on it is killed (no `stopping`, as a
    /// machine losing power), its listening ports close, and every
    /// stream it had is reset (its peers see `ECONNRESET`). Nothing
    /// reaches it until [`restart`](Self::restart).
    pub fn crash(&self) {
        let (actors, streams) = {
            let mut st = self.net.state.lock();
            let h = &mut st.hosts[self.id];
            if !h.up {
                return;
            }
            h.up = false;
            h.life += 1;
            // Placements stay: a turn one of them still runs (before its
            // kill is handled) acts for the dead host, and what it spawns
            // is doomed too.
            let actors = std::mem::take(&mut h.actors);
            st.crashed.extend(actors.iter().copied());
            let ip = st.hosts[self.id].ip;
            st.udp.retain(|addr, _| addr.ip() != ip);
            let me = self.id;
            let closing: Vec<Arc<SimPort>> = st
                .ports
                .iter()
                .filter(|(addr, _)| addr.ip() == ip)
                .map(|(_, p)| p)
                .chain(
                    st.unix_ports
                        .iter()
                        .filter(|((h, _), _)| *h == me)
                        .map(|(_, p)| p),
                )
                .filter_map(Weak::upgrade)
                .collect();
            st.ports.retain(|addr, _| addr.ip() != ip);
            st.unix_ports.retain(|(h, _), _| *h != me);
            for port in closing {
                port.state.lock().closed = true;
            }
            st.streams.retain(|s| s.strong_count() > 0);
            let streams: Vec<Arc<Stream>> = st.streams.iter().filter_map(Weak::upgrade).collect();
            (actors, streams)
        };
        self.net.sim.record(4, self.id as u64);
        for id in actors {
            if let Some(actor) = weft_actors::actor_by_id(&self.net.handle, id) {
                actor.kill(ExitReason::Killed);
            }
        }
        for s in streams {
            for side in 0..2 {
                if s.hosts[side] == Some(self.id) {
                    s.crash_side(side);
                }
            }
        }
    }

    /// Brings a crashed host back and runs its boot function (if
    /// [`boot`](Self::boot) set one); a host that is up is crashed first.
    pub fn restart(&self) {
        self.crash();
        let boot = {
            let mut st = self.net.state.lock();
            st.hosts[self.id].up = true;
            st.hosts[self.id].boot.clone()
        };
        self.net.sim.record(5, self.id as u64);
        if let Some(boot) = boot {
            self.enter(|| boot(self));
        }
    }

    /// How many actors live on it now (spawned on it and not exited).
    pub fn actors(&self) -> usize {
        let ids = self.net.state.lock().hosts[self.id].actors.clone();
        ids.into_iter()
            .filter(|id| weft_actors::actor_by_id(&self.net.handle, *id).is_some())
            .count()
    }
}

impl Net {
    /// Places a new actor on `host` (or dooms it, if the host is down).
    fn place(&self, id: ActorId, host: usize) {
        let mut st = self.state.lock();
        st.placed.insert(id, host);
        if !st.hosts[host].up {
            st.doomed.push(id);
            return;
        }
        st.hosts[host].actors.push(id);
        // Forget the exited now and then (each live actor is kept).
        if st.hosts[host].actors.len() >= st.prune_at.max(1024) {
            let ids = std::mem::take(&mut st.hosts[host].actors);
            let crashed = std::mem::take(&mut st.crashed);
            drop(st);
            let live = self.forget_exited(ids);
            let still_dying = self.forget_exited(crashed);
            let mut st = self.state.lock();
            st.prune_at = live.len() * 2;
            st.hosts[host].actors.extend(live);
            st.crashed.extend(still_dying);
        }
    }

    /// Drops the placements of the actors of `ids` that have exited;
    /// the live ones.
    fn forget_exited(&self, ids: Vec<ActorId>) -> Vec<ActorId> {
        let (live, dead): (Vec<ActorId>, Vec<ActorId>) = ids
            .into_iter()
            .partition(|id| weft_actors::actor_by_id(&self.handle, *id).is_some());
        let mut st = self.state.lock();
        for id in &dead {
            st.placed.remove(id);
        }
        live
    }

    /// Kills what was spawned on a crashed host (after the turn that
    /// spawned it).
    fn kill_doomed(&self) {
        let doomed = std::mem::take(&mut self.state.lock().doomed);
        for id in doomed {
            self.state.lock().placed.remove(&id);
            if let Some(actor) = weft_actors::actor_by_id(&self.handle, id) {
                actor.kill(ExitReason::Killed);
            }
        }
    }

    fn lookup(&self, name: &str) -> Option<IpAddr> {
        let st = self.state.lock();
        st.hosts.iter().find(|h| h.name == name).map(|h| h.ip)
    }

    /// Resolves `host` for `connect_tcp` (a host name or an address).
    pub(crate) fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        match self.lookup(host) {
            Some(ip) => Ok(vec![SocketAddr::new(ip, port)]),
            None => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no simulated host named {host}"),
            )),
        }
    }

    fn host_of_ip(st: &NetState, ip: IpAddr) -> Option<usize> {
        st.hosts.iter().position(|h| h.ip == ip)
    }

    fn cut(st: &NetState, a: Option<usize>, b: Option<usize>) -> bool {
        match (a, b) {
            (Some(a), Some(b)) => st.partitions.contains(&(a.min(b), a.max(b))),
            _ => false,
        }
    }

    /// Whether to inject a fault now (counted when it is).
    fn chance(&self, st: &NetState) -> bool {
        let hit = st.faults > 0.0 && self.sim.chance(st.faults);
        if hit {
            self.faults
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        hit
    }

    /// When a segment of `len` bytes sent now arrives.
    fn transit(&self, st: &NetState, len: usize) -> Duration {
        let (low, high) = st.latency;
        let mut d = self.sim.between(low, high);
        if let Some(bw) = st.bandwidth {
            d += Duration::from_nanos((len as u64).saturating_mul(1_000_000_000) / bw);
        }
        d
    }

    /// The host and local address a bind to `addr` gets: `addr`'s IP's
    /// host, or the current host's for an unspecified one; port 0 picks
    /// a free one (`taken` says which are not).
    fn local_for(
        st: &mut NetState,
        addr: SocketAddr,
        taken: impl Fn(&NetState, &SocketAddr) -> bool,
    ) -> io::Result<(usize, SocketAddr)> {
        let host = if addr.ip().is_unspecified() {
            CURRENT.with(Cell::get)
        } else {
            Self::host_of_ip(st, addr.ip())
        };
        let Some(host) = host else {
            return Err(io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                format!(
                    "{} is no simulated host's address (or no host's code is running)",
                    addr.ip()
                ),
            ));
        };
        if !st.hosts[host].up {
            return Err(io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                "the host is down",
            ));
        }
        let ip = st.hosts[host].ip;
        let local = if addr.port() == 0 {
            loop {
                st.next_port = st.next_port.checked_add(1).unwrap_or(40_000);
                let candidate = SocketAddr::new(ip, st.next_port);
                if !taken(st, &candidate) {
                    break candidate;
                }
            }
        } else {
            SocketAddr::new(ip, addr.port())
        };
        if taken(st, &local) {
            return Err(io::ErrorKind::AddrInUse.into());
        }
        Ok((host, local))
    }

    /// Binds a listening port for the current host (`addr`'s IP, or the
    /// current host's for an unspecified one; port 0 picks one).
    pub(crate) fn bind(self: &Arc<Self>, addr: SocketAddr) -> io::Result<Arc<SimPort>> {
        let mut st = self.state.lock();
        let (_, local) = Self::local_for(&mut st, addr, |st, a| {
            st.ports.get(a).and_then(Weak::upgrade).is_some()
        })?;
        let sim_port = Arc::new(SimPort {
            net: Arc::downgrade(self),
            local: Address::Inet(local),
            state: Mutex::new(PortState::default()),
        });
        st.ports.insert(local, Arc::downgrade(&sim_port));
        Ok(sim_port)
    }

    /// Binds a listening UNIX socket at `addr` on the current host.
    pub(crate) fn bind_unix(self: &Arc<Self>, addr: &UnixAddr) -> io::Result<Arc<SimPort>> {
        let Some(host) = CURRENT.with(Cell::get) else {
            return Err(io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                "a simulated UNIX socket belongs to a host: bind it in a host's code",
            ));
        };
        if *addr == UnixAddr::Unnamed {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a listening socket needs a name",
            ));
        }
        let mut st = self.state.lock();
        let key = (host, addr.clone());
        if st.unix_ports.get(&key).and_then(Weak::upgrade).is_some() {
            return Err(io::ErrorKind::AddrInUse.into());
        }
        let port = Arc::new(SimPort {
            net: Arc::downgrade(self),
            local: Address::Unix(addr.clone()),
            state: Mutex::new(PortState::default()),
        });
        st.unix_ports.insert(key, Arc::downgrade(&port));
        Ok(port)
    }

    /// Binds a datagram socket for the current host (as [`bind`]).
    ///
    /// [`bind`]: Self::bind
    pub(crate) fn bind_udp(self: &Arc<Self>, addr: SocketAddr) -> io::Result<Arc<SimUdp>> {
        let mut st = self.state.lock();
        let (host, local) = Self::local_for(&mut st, addr, |st, a| {
            st.udp.get(a).and_then(Weak::upgrade).is_some()
        })?;
        let sock = Arc::new(SimUdp {
            net: Arc::downgrade(self),
            local,
            host,
            state: Mutex::new(UdpState::default()),
        });
        st.udp.insert(local, Arc::downgrade(&sock));
        Ok(sock)
    }

    /// Starts a connection from the current host to `to`: the end comes
    /// back at once, not yet connected; it turns writable when the
    /// handshake completes, or reports `ECONNREFUSED`; across a
    /// partition nothing comes (the connect times out).
    pub(crate) fn connect(self: &Arc<Self>, to: SocketAddr) -> SimEnd {
        let mut st = self.state.lock();
        let from = CURRENT.with(Cell::get);
        let from_ip = from.map_or(IpAddr::V4(Ipv4Addr::new(10, 255, 255, 254)), |h| {
            st.hosts[h].ip
        });
        st.next_port = st.next_port.checked_add(1).unwrap_or(40_000);
        let local = SocketAddr::new(from_ip, st.next_port);
        let to_host = Self::host_of_ip(&st, to.ip());
        drop(st);
        self.open_stream([from, to_host], [Address::Inet(local), Address::Inet(to)])
    }

    /// Starts a connection from the current host to the UNIX socket
    /// `to` on the same host (as [`connect`](Self::connect)).
    pub(crate) fn connect_unix(self: &Arc<Self>, to: &UnixAddr) -> SimEnd {
        let host = CURRENT.with(Cell::get);
        self.open_stream(
            [host, host],
            [Address::Unix(UnixAddr::Unnamed), Address::Unix(to.clone())],
        )
    }

    /// A new stream from `addrs[0]` to `addrs[1]`, its first segment on
    /// the way.
    fn open_stream(self: &Arc<Self>, hosts: [Option<usize>; 2], addrs: [Address; 2]) -> SimEnd {
        let (stream, syn_at) = {
            let mut st = self.state.lock();
            let stream = Arc::new(Stream {
                net: Arc::downgrade(self),
                hosts,
                addrs,
                st: Mutex::new(StreamState::default()),
            });
            st.streams.retain(|s| s.strong_count() > 0);
            st.streams.push(Arc::downgrade(&stream));
            let syn_at = self.transit(&st, 0);
            (stream, syn_at)
        };
        let weak = Arc::downgrade(&stream);
        let net = Arc::downgrade(self);
        self.handle.call_later(syn_at, move || {
            if let (Some(stream), Some(net)) = (weak.upgrade(), net.upgrade()) {
                net.syn_arrives(&stream);
            }
        });
        SimEnd { stream, side: 0 }
    }

    /// A connect's first segment reached `stream`'s far end: accepted,
    /// refused, or lost.
    fn syn_arrives(self: &Arc<Self>, stream: &Arc<Stream>) {
        let (port, reachable, up) = {
            let st = self.state.lock();
            let reachable = !Self::cut(&st, stream.hosts[0], stream.hosts[1]);
            let up = stream.hosts[1].is_some_and(|h| st.hosts[h].up);
            let port = match (&stream.addrs[1], stream.hosts[1]) {
                (Address::Inet(to), _) => st.ports.get(to),
                (Address::Unix(path), Some(host)) => st.unix_ports.get(&(host, path.clone())),
                (Address::Unix(_), None) => None,
            };
            (port.and_then(Weak::upgrade), reachable, up)
        };
        if !reachable || !up {
            self.sim.record(6, 0);
            return; // lost: the client's connect times out
        }
        match port {
            Some(port)
                if port.push(SimEnd {
                    stream: stream.clone(),
                    side: 1,
                }) =>
            {
                self.sim.record(7, 0);
                stream.transmit(0, Seg::SynAck);
            }
            _ => {
                self.sim.record(8, 0);
                stream.transmit(0, Seg::Refused);
            }
        }
    }

    /// Delivers what partitions held, now that one healed.
    fn redeliver(&self) {
        let streams: Vec<Arc<Stream>> = {
            let mut st = self.state.lock();
            st.streams.retain(|s| s.strong_count() > 0);
            st.streams.iter().filter_map(Weak::upgrade).collect()
        };
        for s in streams {
            s.deliver(0);
            s.deliver(1);
        }
    }
}

/// A listening port: the accept queue of a simulated listener.
pub(crate) struct SimPort {
    net: Weak<Net>,
    local: Address,
    state: Mutex<PortState>,
}

#[derive(Default)]
struct PortState {
    queue: VecDeque<SimEnd>,
    sink: Option<Arc<dyn ReadySink>>,
    closed: bool,
}

impl SimPort {
    pub(crate) fn local_addr(&self) -> Address {
        self.local.clone()
    }

    /// Reports readiness to `sink` from now on (and what is pending).
    pub(crate) fn attach(&self, sink: Arc<dyn ReadySink>) {
        let pending = {
            let mut st = self.state.lock();
            st.sink = Some(sink.clone());
            !st.queue.is_empty()
        };
        if pending {
            sink.ready(Readiness::READ);
        }
    }

    /// Queues an arriving connection; false if the port is closed.
    fn push(&self, end: SimEnd) -> bool {
        let sink = {
            let mut st = self.state.lock();
            if st.closed {
                return false;
            }
            st.queue.push_back(end);
            st.sink.clone()
        };
        if let Some(sink) = sink {
            sink.ready(Readiness::READ);
        }
        true
    }

    pub(crate) fn accept(&self) -> io::Result<SimEnd> {
        if let Some(net) = self.net.upgrade() {
            let st = net.state.lock();
            if net.chance(&st) {
                drop(st);
                net.sim.record(9, 0);
                // The listener backs off and tries again.
                return Err(io::Error::from_raw_os_error(nix::libc::EMFILE));
            }
        }
        let mut st = self.state.lock();
        st.queue
            .pop_front()
            .ok_or_else(|| io::ErrorKind::WouldBlock.into())
    }

    /// Closes the port: new connections are refused; queued ones reset.
    pub(crate) fn close(&self) {
        let queued = {
            let mut st = self.state.lock();
            st.closed = true;
            st.sink = None;
            std::mem::take(&mut st.queue)
        };
        if let Some(net) = self.net.upgrade() {
            let mut st = net.state.lock();
            st.ports.retain(|_, p| !std::ptr::eq(p.as_ptr(), self));
            st.unix_ports.retain(|_, p| !std::ptr::eq(p.as_ptr(), self));
        }
        for end in queued {
            end.close(true);
        }
    }
}

enum Seg {
    Data(Vec<u8>),
    Fin,
    Rst,
    SynAck,
    Refused,
}

#[derive(Default)]
struct Side {
    inbound: VecDeque<u8>,
    /// Bytes sent toward this side, not yet arrived.
    in_flight: usize,
    /// The peer's end of input arrived.
    fin: bool,
    reset: bool,
    refused: bool,
    error_reported: bool,
    established: bool,
    shut: bool,
    closed: bool,
    write_blocked: bool,
    sink: Option<Arc<dyn ReadySink>>,
}

#[derive(Default)]
struct StreamState {
    side: [Side; 2],
    /// Segments on their way toward each side, with when they arrive.
    queue: [VecDeque<(Duration, Seg)>; 2],
}

struct Stream {
    net: Weak<Net>,
    hosts: [Option<usize>; 2],
    addrs: [Address; 2],
    st: Mutex<StreamState>,
}

impl Stream {
    /// Sends `seg` toward `to`, arriving after the link's transit time
    /// and never before what was sent earlier.
    fn transmit(self: &Arc<Self>, to: usize, seg: Seg) {
        let Some(net) = self.net.upgrade() else {
            return;
        };
        let len = match &seg {
            Seg::Data(d) => d.len(),
            _ => 0,
        };
        let now = net.handle.now();
        let transit = net.transit(&net.state.lock(), len);
        let at = {
            let mut st = self.st.lock();
            let last = st.queue[to].back().map_or(Duration::ZERO, |(at, _)| *at);
            let at = (now + transit).max(last);
            if let Seg::Data(_) = seg {
                st.side[to].in_flight += len;
            }
            st.queue[to].push_back((at, seg));
            at
        };
        let weak = Arc::downgrade(self);
        net.handle.call_later(at.saturating_sub(now), move || {
            if let Some(s) = weak.upgrade() {
                s.deliver(to);
            }
        });
    }

    /// Applies what has arrived at side `to` (unless a partition holds
    /// it).
    fn deliver(&self, to: usize) {
        let Some(net) = self.net.upgrade() else {
            return;
        };
        if Net::cut(&net.state.lock(), self.hosts[0], self.hosts[1]) {
            return;
        }
        let now = net.handle.now();
        let mut ready = Readiness::EMPTY;
        let mut bytes = 0u64;
        let sink = {
            let mut st = self.st.lock();
            while st.queue[to].front().is_some_and(|(at, _)| *at <= now) {
                let (_, seg) = st.queue[to].pop_front().expect("checked");
                let side = &mut st.side[to];
                match seg {
                    Seg::Data(d) => {
                        side.in_flight -= d.len();
                        bytes += d.len() as u64;
                        if !side.closed {
                            side.inbound.extend(d);
                        }
                        ready = ready.union(Readiness::READ);
                    }
                    Seg::Fin => {
                        side.fin = true;
                        ready = ready.union(Readiness::READ).union(Readiness::READ_HUP);
                    }
                    Seg::Rst => {
                        side.reset = true;
                        ready = ready.union(Readiness::READ).union(Readiness::WRITE);
                    }
                    Seg::SynAck => {
                        side.established = true;
                        ready = ready.union(Readiness::WRITE);
                    }
                    Seg::Refused => {
                        side.refused = true;
                        ready = ready.union(Readiness::WRITE).union(Readiness::FAILED);
                    }
                }
            }
            st.side[to].sink.clone()
        };
        if bytes > 0 {
            net.sim.record(10 + to as u64, bytes);
        }
        if ready != Readiness::EMPTY {
            if let Some(sink) = sink {
                sink.ready(ready);
            }
        }
    }

    /// Side `side`'s host crashed: that end is dead, and the other end
    /// gets a reset.
    fn crash_side(self: &Arc<Self>, side: usize) {
        {
            let mut st = self.st.lock();
            let s = &mut st.side[side];
            s.closed = true;
            s.sink = None;
            s.inbound.clear();
            st.queue[side].clear();
            if st.side[1 - side].reset || st.side[1 - side].closed {
                return;
            }
        }
        self.transmit(1 - side, Seg::Rst);
    }
}

/// A connection's end of a simulated stream.
pub(crate) struct SimEnd {
    stream: Arc<Stream>,
    side: usize,
}

impl SimEnd {
    fn net(&self) -> Option<Arc<Net>> {
        self.stream.net.upgrade()
    }

    /// Reports readiness to `sink` from now on (and what is pending).
    pub(crate) fn attach(&self, sink: Arc<dyn ReadySink>) {
        let ready = {
            let mut st = self.stream.st.lock();
            let s = &mut st.side[self.side];
            s.sink = Some(sink.clone());
            // The accepting side is connected at once.
            if self.side == 1 {
                s.established = true;
            }
            let mut ready = Readiness::EMPTY;
            if s.established {
                ready = ready.union(Readiness::WRITE);
            }
            if !s.inbound.is_empty() || s.fin || s.reset {
                ready = ready.union(Readiness::READ);
            }
            ready
        };
        if ready != Readiness::EMPTY {
            sink.ready(ready);
        }
    }

    pub(crate) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let net = self.net();
        let (short, stall) = match &net {
            Some(net) => {
                let st = net.state.lock();
                (net.chance(&st), net.chance(&st))
            }
            None => (false, false),
        };
        let (n, wake_writer) = {
            let mut st = self.stream.st.lock();
            let s = &mut st.side[self.side];
            if s.reset {
                return Err(io::ErrorKind::ConnectionReset.into());
            }
            if s.inbound.is_empty() {
                if s.fin {
                    return Ok(0);
                }
                return Err(io::ErrorKind::WouldBlock.into());
            }
            if stall {
                // Would block with data waiting; a spurious wake-up
                // follows, so nothing is lost.
                drop(st);
                if let Some(net) = &net {
                    net.sim.record(12, 0);
                    self.wake_later(net, Readiness::READ);
                }
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let mut n = buf.len().min(s.inbound.len());
            if short && n > 1 {
                n = 1 + (n - 1) / 2;
            }
            for (dst, src) in buf.iter_mut().zip(s.inbound.drain(..n)) {
                *dst = src;
            }
            // The writer may have room again.
            let other = &mut st.side[1 - self.side];
            let wake = other.write_blocked.then(|| other.sink.clone()).flatten();
            if wake.is_some() {
                other.write_blocked = false;
            }
            (n, wake)
        };
        if let Some(sink) = wake_writer {
            sink.ready(Readiness::WRITE);
        }
        Ok(n)
    }

    fn wake_later(&self, net: &Net, ready: Readiness) {
        let weak = Arc::downgrade(&self.stream);
        let side = self.side;
        net.handle.call_later(Duration::from_millis(1), move || {
            let sink = weak
                .upgrade()
                .and_then(|s| s.st.lock().side[side].sink.clone());
            if let Some(sink) = sink {
                sink.ready(ready);
            }
        });
    }

    pub(crate) fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let short = self.net().is_some_and(|net| {
            let st = net.state.lock();
            net.chance(&st)
        });
        let data = {
            let mut st = self.stream.st.lock();
            let peer_unread = {
                let p = &st.side[1 - self.side];
                p.inbound.len() + p.in_flight
            };
            let s = &mut st.side[self.side];
            if s.reset {
                return Err(io::ErrorKind::ConnectionReset.into());
            }
            if s.refused {
                return Err(io::ErrorKind::ConnectionRefused.into());
            }
            if s.shut || s.closed {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            if !s.established {
                return Err(io::ErrorKind::NotConnected.into());
            }
            let mut room = WINDOW.saturating_sub(peer_unread);
            if room == 0 {
                s.write_blocked = true;
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let total: usize = bufs.iter().map(|b| b.len()).sum();
            if short && total > 1 {
                room = room.min(1 + (total - 1) / 2);
            }
            let mut data = Vec::with_capacity(total.min(room));
            for b in bufs {
                let n = b.len().min(room - data.len());
                data.extend_from_slice(&b[..n]);
                if data.len() == room {
                    break;
                }
            }
            data
        };
        let n = data.len();
        if n > 0 {
            self.stream.transmit(1 - self.side, Seg::Data(data));
        }
        Ok(n)
    }

    pub(crate) fn shutdown_write(&mut self) {
        let send = {
            let mut st = self.stream.st.lock();
            let s = &mut st.side[self.side];
            let send = !s.shut && s.established && !s.reset;
            s.shut = true;
            send
        };
        if send {
            self.stream.transmit(1 - self.side, Seg::Fin);
        }
    }

    pub(crate) fn take_error(&self) -> Option<io::Error> {
        let mut st = self.stream.st.lock();
        let s = &mut st.side[self.side];
        if s.error_reported {
            return None;
        }
        if s.refused {
            s.error_reported = true;
            return Some(io::ErrorKind::ConnectionRefused.into());
        }
        if s.reset {
            s.error_reported = true;
            return Some(io::ErrorKind::ConnectionReset.into());
        }
        None
    }

    /// Closes this end: in order (FIN after what was written), or at
    /// once (the peer gets a reset).
    pub(crate) fn close(self, abort: bool) {
        self.close_inner(abort);
    }

    fn close_inner(&self, abort: bool) {
        let (fin, rst) = {
            let mut st = self.stream.st.lock();
            let s = &mut st.side[self.side];
            let live = s.established && !s.reset && !s.closed;
            let fin = live && !s.shut && !abort;
            s.shut = true;
            s.closed = true;
            s.sink = None;
            s.inbound.clear();
            (fin, live && abort)
        };
        if fin {
            self.stream.transmit(1 - self.side, Seg::Fin);
        }
        if rst {
            self.stream.transmit(1 - self.side, Seg::Rst);
        }
    }

    pub(crate) fn peer_addr(&self) -> io::Result<Address> {
        let st = self.stream.st.lock();
        if st.side[self.side].established {
            Ok(self.stream.addrs[1 - self.side].clone())
        } else {
            Err(io::ErrorKind::NotConnected.into())
        }
    }

    pub(crate) fn local_addr(&self) -> Address {
        self.stream.addrs[self.side].clone()
    }
}

impl Drop for SimEnd {
    /// Dropped unclosed (its actor gone): closed as the OS closes a
    /// socket of an exited process, in order.
    fn drop(&mut self) {
        self.close_inner(false);
    }
}

/// The most a simulated datagram socket keeps unread; more is dropped,
/// as a full receive buffer drops.
const UDP_QUEUE: usize = 256;
/// The largest UDP payload.
const UDP_MAX: usize = 65_507;

/// A datagram socket of the simulated network.
pub(crate) struct SimUdp {
    net: Weak<Net>,
    local: SocketAddr,
    host: usize,
    state: Mutex<UdpState>,
}

#[derive(Default)]
struct UdpState {
    queue: VecDeque<(Vec<u8>, SocketAddr)>,
    sink: Option<Arc<dyn ReadySink>>,
    closed: bool,
}

impl SimUdp {
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Reports readiness to `sink` (writable at once; readable when
    /// datagrams wait).
    pub(crate) fn attach(&self, sink: Arc<dyn ReadySink>) {
        let ready = {
            let mut st = self.state.lock();
            st.sink = Some(sink.clone());
            if st.queue.is_empty() {
                Readiness::WRITE
            } else {
                Readiness::WRITE.union(Readiness::READ)
            }
        };
        sink.ready(ready);
    }

    /// Sends one datagram: it arrives after its own transit time (so
    /// datagrams may reorder), or is lost (the loss rate, a partition, a
    /// full or missing receiver), silently as UDP loses.
    pub(crate) fn send_to(&self, data: &[u8], to: SocketAddr) -> io::Result<usize> {
        if data.len() > UDP_MAX {
            return Err(io::Error::from_raw_os_error(nix::libc::EMSGSIZE));
        }
        if self.state.lock().closed {
            return Err(io::ErrorKind::NotConnected.into());
        }
        let Some(net) = self.net.upgrade() else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        let (lost, transit) = {
            let st = net.state.lock();
            let lost = st.loss > 0.0 && net.sim.chance(st.loss);
            (lost, net.transit(&st, data.len()))
        };
        if lost {
            net.sim.record(13, data.len() as u64);
            return Ok(data.len());
        }
        let (from, from_host, payload) = (self.local, self.host, data.to_vec());
        let weak = Arc::downgrade(&net);
        net.handle.call_later(transit, move || {
            if let Some(net) = weak.upgrade() {
                net.datagram_arrives(from, from_host, to, payload);
            }
        });
        Ok(data.len())
    }

    /// The next datagram waiting, with its sender.
    pub(crate) fn recv(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let mut st = self.state.lock();
        let Some((data, from)) = st.queue.pop_front() else {
            return Err(io::ErrorKind::WouldBlock.into());
        };
        let n = data.len().min(buf.len());
        buf[..n].copy_from_slice(&data[..n]);
        // The whole length, as MSG_TRUNC reports it.
        Ok((data.len(), from))
    }

    /// Closes the socket: it receives nothing more.
    pub(crate) fn close(&self) {
        let mut st = self.state.lock();
        st.closed = true;
        st.sink = None;
        st.queue.clear();
        drop(st);
        if let Some(net) = self.net.upgrade() {
            net.state
                .lock()
                .udp
                .retain(|_, s| !std::ptr::eq(s.as_ptr(), self));
        }
    }
}

impl Net {
    fn datagram_arrives(&self, from: SocketAddr, from_host: usize, to: SocketAddr, data: Vec<u8>) {
        let target = {
            let st = self.state.lock();
            let to_host = Self::host_of_ip(&st, to.ip());
            if Self::cut(&st, Some(from_host), to_host) || !to_host.is_some_and(|h| st.hosts[h].up)
            {
                None
            } else {
                st.udp.get(&to).and_then(Weak::upgrade)
            }
        };
        let Some(sock) = target else {
            self.sim.record(14, data.len() as u64);
            return;
        };
        let len = data.len() as u64;
        let sink = {
            let mut st = sock.state.lock();
            if st.closed || st.queue.len() >= UDP_QUEUE {
                None
            } else {
                st.queue.push_back((data, from));
                st.sink.clone()
            }
        };
        self.sim.record(15, len);
        if let Some(sink) = sink {
            sink.ready(Readiness::READ);
        }
    }
}
