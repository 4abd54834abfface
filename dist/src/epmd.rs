//! The EPMD client: registering a node (ALIVE2, kept for the node's
//! life: EPMD drops the name when the socket closes) and asking where a
//! node listens (PORT_PLEASE2). Blocking calls on a short-lived or
//! dedicated socket: they run at node start and on the blocking pool,
//! never on a worker.
//!
//! Owns: the EPMD wire format (2-byte big-endian lengths, one request per
//! connection). Must not touch: the distribution protocol itself.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// EPMD's default port (`ERL_EPMD_PORT` overrides it, as for `erl`).
pub const DEFAULT_PORT: u16 = 4369;

const ALIVE2_REQ: u8 = 120;
const ALIVE2_RESP: u8 = 121;
const ALIVE2_X_RESP: u8 = 118;
const PORT_PLEASE2_REQ: u8 = 122;
const PORT2_RESP: u8 = 119;
/// A normal (not hidden) Erlang node.
const NODE_TYPE_NORMAL: u8 = 77;
/// TCP/IPv4.
const PROTOCOL_TCP: u8 = 0;
/// Distribution protocol version 6 (OTP 23 and later).
const VERSION: u16 = 6;

/// The port EPMD listens on: `ERL_EPMD_PORT` if set and valid, else 4369.
pub fn port_from_env() -> u16 {
    std::env::var("ERL_EPMD_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(DEFAULT_PORT)
}

/// A node's registration: EPMD lists the name while this lives.
#[derive(Debug)]
pub struct Registration {
    /// Held open: closing it unregisters the name.
    _socket: TcpStream,
    /// The creation EPMD gave this incarnation of the node.
    pub creation: u32,
}

/// Registers `name` (the part before `@`) as listening on `port` with the
/// EPMD at `epmd`. A name already registered is an `AddrInUse` error.
pub fn register(epmd: SocketAddr, name: &str, port: u16) -> io::Result<Registration> {
    let mut s = TcpStream::connect_timeout(&epmd, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut req = Vec::with_capacity(16 + name.len());
    req.push(ALIVE2_REQ);
    req.extend_from_slice(&port.to_be_bytes());
    req.push(NODE_TYPE_NORMAL);
    req.push(PROTOCOL_TCP);
    req.extend_from_slice(&VERSION.to_be_bytes());
    req.extend_from_slice(&VERSION.to_be_bytes());
    req.extend_from_slice(&len16(name.len())?.to_be_bytes());
    req.extend_from_slice(name.as_bytes());
    req.extend_from_slice(&0u16.to_be_bytes()); // no extra
    send(&mut s, &req)?;
    let mut head = [0u8; 2];
    s.read_exact(&mut head)?;
    let creation = match head {
        [ALIVE2_X_RESP, 0] => {
            let mut c = [0u8; 4];
            s.read_exact(&mut c)?;
            u32::from_be_bytes(c)
        }
        [ALIVE2_RESP, 0] => {
            let mut c = [0u8; 2];
            s.read_exact(&mut c)?;
            u32::from(u16::from_be_bytes(c))
        }
        [ALIVE2_X_RESP | ALIVE2_RESP, _] => {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("EPMD refused the name {name:?} (is a node of that name running?)"),
            ))
        }
        other => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("EPMD answered ALIVE2 with {other:?}"),
            ))
        }
    };
    s.set_read_timeout(None)?;
    Ok(Registration {
        _socket: s,
        creation,
    })
}

/// Where node `name` listens, as EPMD at `epmd` says: `None` if it does
/// not know the name.
pub fn port_please(epmd: SocketAddr, name: &str) -> io::Result<Option<u16>> {
    let mut s = TcpStream::connect_timeout(&epmd, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut req = vec![PORT_PLEASE2_REQ];
    req.extend_from_slice(name.as_bytes());
    send(&mut s, &req)?;
    let mut head = [0u8; 2];
    s.read_exact(&mut head)?;
    match head {
        [PORT2_RESP, 0] => {
            let mut port = [0u8; 2];
            s.read_exact(&mut port)?;
            Ok(Some(u16::from_be_bytes(port)))
        }
        [PORT2_RESP, _] => Ok(None),
        other => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("EPMD answered PORT_PLEASE2 with {other:?}"),
        )),
    }
}

fn send(s: &mut TcpStream, req: &[u8]) -> io::Result<()> {
    let mut framed = Vec::with_capacity(req.len() + 2);
    framed.extend_from_slice(&len16(req.len())?.to_be_bytes());
    framed.extend_from_slice(req);
    s.write_all(&framed)
}

fn len16(n: usize) -> io::Result<u16> {
    u16::try_from(n).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "too long for EPMD"))
}
