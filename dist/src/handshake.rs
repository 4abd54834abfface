//! The distribution handshake (version 6, OTP 23 and later) as a sans-IO
//! state machine: bytes in, bytes out, never a blocking call, so it runs
//! inside the connection actor: [`Accepting`] for a node that connects
//! to us, [`Connecting`] for one we dial. A peer whose digest does not
//! match our cookie is an [`AuthError`] naming it; two nodes dialing each
//! other at once are settled by [`status_for`].
//!
//! Owns: the handshake's wire format (2-byte lengths), the flags weft
//! offers, the MD5 digests. Must not touch: sockets, or what follows the
//! handshake (`conn.rs`).

use md5::{Digest, Md5};

/// A normal node that publishes its name.
pub const DFLAG_PUBLISHED: u64 = 0x1;
/// References with more than one id word.
pub const DFLAG_EXTENDED_REFERENCES: u64 = 0x4;
/// Process monitors across nodes.
pub const DFLAG_DIST_MONITOR: u64 = 0x8;
/// FUN_EXT.
pub const DFLAG_FUN_TAGS: u64 = 0x10;
/// Monitors of registered names across nodes.
pub const DFLAG_DIST_MONITOR_NAME: u64 = 0x20;
/// NEW_FUN_EXT.
pub const DFLAG_NEW_FUN_TAGS: u64 = 0x80;
/// Pids and ports with a 32-bit creation.
pub const DFLAG_EXTENDED_PIDS_PORTS: u64 = 0x100;
/// EXPORT_EXT.
pub const DFLAG_EXPORT_PTR_TAG: u64 = 0x200;
/// Bit strings.
pub const DFLAG_BIT_BINARIES: u64 = 0x400;
/// NEW_FLOAT_EXT.
pub const DFLAG_NEW_FLOATS: u64 = 0x800;
/// UTF-8 atoms.
pub const DFLAG_UTF8_ATOMS: u64 = 0x10000;
/// Maps.
pub const DFLAG_MAP_TAG: u64 = 0x20000;
/// 32-bit creations.
pub const DFLAG_BIG_CREATION: u64 = 0x40000;
/// The version 6 handshake.
pub const DFLAG_HANDSHAKE_23: u64 = 0x100_0000;
/// The unlink protocol with ids.
pub const DFLAG_UNLINK_ID: u64 = 0x200_0000;
/// Pids and references in their version 4 forms.
pub const DFLAG_V4_NC: u64 = 1 << 34;

/// What weft offers: what OTP 25 and 26 require, and monitors (of pids
/// and of registered names).
pub const FLAGS: u64 = DFLAG_PUBLISHED
    | DFLAG_EXTENDED_REFERENCES
    | DFLAG_DIST_MONITOR
    | DFLAG_DIST_MONITOR_NAME
    | DFLAG_FUN_TAGS
    | DFLAG_NEW_FUN_TAGS
    | DFLAG_EXTENDED_PIDS_PORTS
    | DFLAG_EXPORT_PTR_TAG
    | DFLAG_BIT_BINARIES
    | DFLAG_NEW_FLOATS
    | DFLAG_UTF8_ATOMS
    | DFLAG_MAP_TAG
    | DFLAG_BIG_CREATION
    | DFLAG_HANDSHAKE_23
    | DFLAG_UNLINK_ID
    | DFLAG_V4_NC;

/// Why a handshake failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The peer's digest does not match our cookie (a different cookie).
    #[error("node {peer} failed authentication: its cookie is not ours")]
    WrongCookie {
        /// The peer's node name.
        peer: String,
    },
    /// The peer lacks a capability weft needs.
    #[error("node {peer} lacks the distribution flags weft needs ({missing:#x})")]
    MissingFlags {
        /// The peer's node name.
        peer: String,
        /// The flags it did not offer.
        missing: u64,
    },
    /// Both nodes were connecting to each other at once and this
    /// attempt gave way to the other (status `nok`): the other connection
    /// carries the traffic.
    #[error("node {peer} is connecting to us at the same time; its connection wins")]
    Simultaneous {
        /// The other node's name (the dialed name on the connecting side).
        peer: String,
    },
    /// Bytes that are not the handshake.
    #[error("not a distribution handshake: {0}")]
    Protocol(String),
}

/// How the accepting side answers a node's name (the handshake's status
/// message), given what it knows of that node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Go on (`ok`).
    Ok,
    /// Go on; our own attempt to connect to that node gives way
    /// (`ok_simultaneous`: both were connecting and its name is greater).
    OkSimultaneous,
    /// Refuse: our own attempt to connect to it wins (`nok`).
    Nok,
    /// We still hold a connection to a node of that name (`alive`); the
    /// connecting node says whether to replace it (it does when it has
    /// none of its own: it restarted).
    Alive,
}

/// The status a node answers a connecting `peer` with, by the rule of
/// Erlang's distribution: an existing connection is `alive`; both
/// connecting at once, the greater name's attempt wins.
pub fn status_for(me: &str, peer: &str, connected: bool, dialing: bool) -> Status {
    match (connected, dialing) {
        (true, _) => Status::Alive,
        (false, true) if peer > me => Status::OkSimultaneous,
        (false, true) => Status::Nok,
        (false, false) => Status::Ok,
    }
}

/// The flags a peer must offer (the ones whose absence changes encoding).
const REQUIRED: u64 = DFLAG_EXTENDED_REFERENCES
    | DFLAG_EXTENDED_PIDS_PORTS
    | DFLAG_UTF8_ATOMS
    | DFLAG_NEW_FLOATS
    | DFLAG_MAP_TAG
    | DFLAG_BIG_CREATION
    | DFLAG_HANDSHAKE_23;

/// MD5 of the cookie followed by the challenge in decimal.
pub fn digest(cookie: &str, challenge: u32) -> [u8; 16] {
    let mut h = Md5::new();
    h.update(cookie.as_bytes());
    h.update(challenge.to_string().as_bytes());
    h.finalize().into()
}

/// The accepting side's state.
#[derive(Debug)]
pub struct Accepting {
    me: String,
    cookie: String,
    creation: u32,
    challenge: u32,
    step: Step,
}

#[derive(Debug)]
enum Step {
    Name,
    /// `alive` was sent: waiting for `true` or `false`.
    Alive {
        peer: String,
        flags: u64,
    },
    Reply {
        peer: String,
        flags: u64,
    },
    Done,
}

/// What the handshake did with the bytes it was fed.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// Needs more bytes.
    More,
    /// Connected with `peer`, which offered `flags`.
    Done {
        /// The peer's node name.
        peer: String,
        /// The flags it offered.
        flags: u64,
    },
}

impl Accepting {
    /// Our node name, cookie and creation; `challenge` is ours (random).
    pub fn new(me: &str, cookie: &str, creation: u32, challenge: u32) -> Self {
        Accepting {
            me: me.to_string(),
            cookie: cookie.to_string(),
            creation,
            challenge,
            step: Step::Name,
        }
    }

    /// Feeds the bytes in `input` (consumed from the front as messages
    /// complete); what to send goes to `out`. Every connecting node is
    /// answered `ok` (see [`feed_with`](Self::feed_with)).
    pub fn feed(&mut self, input: &mut Vec<u8>, out: &mut Vec<u8>) -> Result<Progress, AuthError> {
        self.feed_with(input, out, |_| Status::Ok)
    }

    /// As [`feed`](Self::feed); `status` decides the answer to the
    /// connecting node's name (see [`status_for`]).
    pub fn feed_with(
        &mut self,
        input: &mut Vec<u8>,
        out: &mut Vec<u8>,
        mut status: impl FnMut(&str) -> Status,
    ) -> Result<Progress, AuthError> {
        loop {
            let Some(msg) = take_message(input) else {
                return Ok(Progress::More);
            };
            match std::mem::replace(&mut self.step, Step::Done) {
                Step::Name => {
                    let (peer, flags) = parse_name(&msg)?;
                    let missing = REQUIRED & !flags;
                    if missing != 0 {
                        frame(out, b"snot_allowed");
                        return Err(AuthError::MissingFlags { peer, missing });
                    }
                    match status(&peer) {
                        Status::Ok => frame(out, b"sok"),
                        Status::OkSimultaneous => frame(out, b"sok_simultaneous"),
                        Status::Nok => {
                            frame(out, b"snok");
                            return Err(AuthError::Simultaneous { peer });
                        }
                        Status::Alive => {
                            frame(out, b"salive");
                            self.step = Step::Alive { peer, flags };
                            continue;
                        }
                    }
                    self.challenge(out);
                    self.step = Step::Reply { peer, flags };
                }
                Step::Alive { peer, flags } => match msg.as_slice() {
                    b"strue" => {
                        self.challenge(out);
                        self.step = Step::Reply { peer, flags };
                    }
                    b"sfalse" => return Err(AuthError::Simultaneous { peer }),
                    other => {
                        return Err(AuthError::Protocol(format!(
                            "expected true or false from {peer}, got {} bytes",
                            other.len()
                        )))
                    }
                },
                Step::Reply { peer, flags } => {
                    if msg.len() != 21 || msg[0] != b'r' {
                        return Err(AuthError::Protocol(format!(
                            "expected a challenge reply from {peer}, got {} bytes",
                            msg.len()
                        )));
                    }
                    let theirs = u32::from_be_bytes([msg[1], msg[2], msg[3], msg[4]]);
                    if msg[5..21] != digest(&self.cookie, self.challenge) {
                        return Err(AuthError::WrongCookie { peer });
                    }
                    let mut ack = vec![b'a'];
                    ack.extend_from_slice(&digest(&self.cookie, theirs));
                    frame(out, &ack);
                    return Ok(Progress::Done { peer, flags });
                }
                Step::Done => {
                    return Err(AuthError::Protocol("handshake already done".into()));
                }
            }
        }
    }

    /// `send_challenge`: `'N' flags:8 challenge:4 creation:4 len:2 name`.
    fn challenge(&self, out: &mut Vec<u8>) {
        let mut challenge = vec![b'N'];
        challenge.extend_from_slice(&FLAGS.to_be_bytes());
        challenge.extend_from_slice(&self.challenge.to_be_bytes());
        challenge.extend_from_slice(&self.creation.to_be_bytes());
        challenge.extend_from_slice(&(self.me.len() as u16).to_be_bytes());
        challenge.extend_from_slice(self.me.as_bytes());
        frame(out, &challenge);
    }
}

/// The connecting side's state: [`Connecting::start`] gives the first
/// message to send; `feed` the peer's bytes until `Done`.
#[derive(Debug)]
pub struct Connecting {
    cookie: String,
    challenge: u32,
    step: Dial,
}

#[derive(Debug)]
enum Dial {
    Status,
    Challenge,
    Ack { peer: String, flags: u64 },
    Done,
}

impl Connecting {
    /// Starts a handshake as node `me` (with `creation`); `challenge` is
    /// ours (random). The returned bytes (send_name) go out first.
    pub fn start(me: &str, cookie: &str, creation: u32, challenge: u32) -> (Self, Vec<u8>) {
        let mut name = vec![b'N'];
        name.extend_from_slice(&FLAGS.to_be_bytes());
        name.extend_from_slice(&creation.to_be_bytes());
        name.extend_from_slice(&(me.len() as u16).to_be_bytes());
        name.extend_from_slice(me.as_bytes());
        let mut out = Vec::new();
        frame(&mut out, &name);
        let dial = Connecting {
            cookie: cookie.to_string(),
            challenge,
            step: Dial::Status,
        };
        (dial, out)
    }

    /// Feeds the peer's bytes (consumed as messages complete); what to
    /// send goes to `out`. Told `alive` (the peer still holds a
    /// connection to a node of our name), it answers `true`: replace it
    /// (see [`feed_with`](Self::feed_with)).
    pub fn feed(&mut self, input: &mut Vec<u8>, out: &mut Vec<u8>) -> Result<Progress, AuthError> {
        self.feed_with(input, out, || true)
    }

    /// As [`feed`](Self::feed); `replace` answers `alive`: true when we
    /// hold no connection to the peer (its one is from an earlier life of
    /// ours), false when we do (this attempt is then dropped).
    pub fn feed_with(
        &mut self,
        input: &mut Vec<u8>,
        out: &mut Vec<u8>,
        mut replace: impl FnMut() -> bool,
    ) -> Result<Progress, AuthError> {
        loop {
            let Some(msg) = take_message(input) else {
                return Ok(Progress::More);
            };
            match std::mem::replace(&mut self.step, Dial::Done) {
                Dial::Status => match msg.as_slice() {
                    b"sok" | b"sok_simultaneous" => self.step = Dial::Challenge,
                    // It holds a connection to a node of our name: an
                    // earlier life of ours unless we hold one too.
                    b"salive" if replace() => {
                        frame(out, b"strue");
                        self.step = Dial::Challenge;
                    }
                    b"salive" => {
                        frame(out, b"sfalse");
                        return Err(AuthError::Simultaneous {
                            peer: String::new(),
                        });
                    }
                    b"snok" => {
                        return Err(AuthError::Simultaneous {
                            peer: String::new(),
                        })
                    }
                    other => {
                        return Err(AuthError::Protocol(format!(
                            "the peer refused the connection: {}",
                            String::from_utf8_lossy(other.get(1..).unwrap_or_default())
                        )))
                    }
                },
                Dial::Challenge => {
                    let bad = || {
                        AuthError::Protocol(format!("a malformed challenge of {} bytes", msg.len()))
                    };
                    if msg.first() != Some(&b'N') || msg.len() < 19 {
                        return Err(bad());
                    }
                    let flags = u64::from_be_bytes(msg[1..9].try_into().map_err(|_| bad())?);
                    let theirs = u32::from_be_bytes(msg[9..13].try_into().map_err(|_| bad())?);
                    let len = u16::from_be_bytes([msg[17], msg[18]]) as usize;
                    let peer = String::from_utf8_lossy(msg.get(19..19 + len).ok_or_else(bad)?)
                        .into_owned();
                    let missing = REQUIRED & !flags;
                    if missing != 0 {
                        return Err(AuthError::MissingFlags { peer, missing });
                    }
                    let mut reply = vec![b'r'];
                    reply.extend_from_slice(&self.challenge.to_be_bytes());
                    reply.extend_from_slice(&digest(&self.cookie, theirs));
                    frame(out, &reply);
                    self.step = Dial::Ack { peer, flags };
                }
                Dial::Ack { peer, flags } => {
                    if msg.len() != 17 || msg[0] != b'a' {
                        return Err(AuthError::WrongCookie { peer });
                    }
                    if msg[1..17] != digest(&self.cookie, self.challenge) {
                        return Err(AuthError::WrongCookie { peer });
                    }
                    return Ok(Progress::Done { peer, flags });
                }
                Dial::Done => return Err(AuthError::Protocol("handshake already done".into())),
            }
        }
    }
}

/// `send_name`: `'N' flags:8 creation:4 len:2 name` (version 6) or
/// `'n' version:2 flags:4 name` (an older peer, refused later by flags).
fn parse_name(msg: &[u8]) -> Result<(String, u64), AuthError> {
    let bad = || AuthError::Protocol(format!("a malformed send_name of {} bytes", msg.len()));
    match msg.first() {
        Some(b'N') if msg.len() >= 15 => {
            let flags = u64::from_be_bytes(msg[1..9].try_into().map_err(|_| bad())?);
            let len = u16::from_be_bytes([msg[13], msg[14]]) as usize;
            let name = msg.get(15..15 + len).ok_or_else(bad)?;
            Ok((String::from_utf8_lossy(name).into_owned(), flags))
        }
        Some(b'n') if msg.len() >= 7 => {
            let flags = u64::from(u32::from_be_bytes(msg[3..7].try_into().map_err(|_| bad())?));
            Ok((String::from_utf8_lossy(&msg[7..]).into_owned(), flags))
        }
        _ => Err(bad()),
    }
}

/// One 2-byte-length message from the front of `input`, if complete.
fn take_message(input: &mut Vec<u8>) -> Option<Vec<u8>> {
    if input.len() < 2 {
        return None;
    }
    let len = u16::from_be_bytes([input[0], input[1]]) as usize;
    if input.len() < 2 + len {
        return None;
    }
    let msg = input[2..2 + len].to_vec();
    input.drain(..2 + len);
    Some(msg)
}

fn frame(out: &mut Vec<u8>, msg: &[u8]) {
    out.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    out.extend_from_slice(msg);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connecting peer's side, written from the protocol description.
    fn send_name(name: &str, flags: u64) -> Vec<u8> {
        let mut m = vec![b'N'];
        m.extend_from_slice(&flags.to_be_bytes());
        m.extend_from_slice(&7u32.to_be_bytes());
        m.extend_from_slice(&(name.len() as u16).to_be_bytes());
        m.extend_from_slice(name.as_bytes());
        let mut out = Vec::new();
        frame(&mut out, &m);
        out
    }

    #[test]
    fn a_peer_with_our_cookie_completes_and_one_without_is_named() {
        for (cookie, ok) in [("secret", true), ("wrong", false)] {
            let mut acc = Accepting::new("weft@127.0.0.1", "secret", 3, 12345);
            let mut input = send_name("erl@127.0.0.1", FLAGS);
            let mut out = Vec::new();
            assert_eq!(acc.feed(&mut input, &mut out), Ok(Progress::More));
            let status = take_message(&mut out).unwrap();
            assert_eq!(status, b"sok");
            let challenge = take_message(&mut out).unwrap();
            assert_eq!(challenge[0], b'N');
            let ours = u32::from_be_bytes(challenge[9..13].try_into().unwrap());
            assert_eq!(ours, 12345);
            let mut reply = vec![b'r'];
            reply.extend_from_slice(&999u32.to_be_bytes());
            reply.extend_from_slice(&digest(cookie, ours));
            let mut input = Vec::new();
            frame(&mut input, &reply);
            let result = acc.feed(&mut input, &mut out);
            if ok {
                assert_eq!(
                    result,
                    Ok(Progress::Done {
                        peer: "erl@127.0.0.1".into(),
                        flags: FLAGS
                    })
                );
                let ack = take_message(&mut out).unwrap();
                assert_eq!(&ack[1..], &digest("secret", 999));
            } else {
                assert_eq!(
                    result,
                    Err(AuthError::WrongCookie {
                        peer: "erl@127.0.0.1".into()
                    })
                );
            }
        }
    }

    /// Runs both sides against each other; each side's outcome.
    fn dial(
        dial_cookie: &str,
        accept_cookie: &str,
    ) -> (Result<Progress, AuthError>, Result<Progress, AuthError>) {
        let mut acc = Accepting::new("b@h", accept_cookie, 2, 4242);
        let (mut con, mut to_acc) = Connecting::start("a@h", dial_cookie, 1, 99);
        let mut to_con = Vec::new();
        let mut a = Ok(Progress::More);
        let mut c = Ok(Progress::More);
        for _ in 0..4 {
            if a == Ok(Progress::More) {
                a = acc.feed(&mut to_acc, &mut to_con);
            }
            if c == Ok(Progress::More) {
                c = con.feed(&mut to_con, &mut to_acc);
            }
        }
        (c, a)
    }

    #[test]
    fn the_two_sides_agree_with_one_cookie_and_name_each_other() {
        let (c, a) = dial("k", "k");
        assert_eq!(
            c,
            Ok(Progress::Done {
                peer: "b@h".into(),
                flags: FLAGS
            })
        );
        assert_eq!(
            a,
            Ok(Progress::Done {
                peer: "a@h".into(),
                flags: FLAGS
            })
        );
        let (_, a) = dial("k", "other");
        assert_eq!(a, Err(AuthError::WrongCookie { peer: "a@h".into() }));
    }

    /// Runs both sides, the accepting one answering `status`.
    fn dial_with(
        status: Status,
        replace: bool,
    ) -> (Result<Progress, AuthError>, Result<Progress, AuthError>) {
        let mut acc = Accepting::new("b@h", "k", 2, 4242);
        let (mut con, mut to_acc) = Connecting::start("a@h", "k", 1, 99);
        let mut to_con = Vec::new();
        let mut a = Ok(Progress::More);
        let mut c = Ok(Progress::More);
        for _ in 0..5 {
            if a == Ok(Progress::More) {
                a = acc.feed_with(&mut to_acc, &mut to_con, |_| status);
            }
            if c == Ok(Progress::More) {
                c = con.feed_with(&mut to_con, &mut to_acc, || replace);
            }
        }
        (c, a)
    }

    #[test]
    fn statuses_follow_the_simultaneous_connect_rule() {
        // Already connected: alive, whoever is greater.
        assert_eq!(status_for("b@h", "a@h", true, true), Status::Alive);
        // Both dialing: the greater name's attempt goes on.
        assert_eq!(
            status_for("a@h", "b@h", false, true),
            Status::OkSimultaneous
        );
        assert_eq!(status_for("b@h", "a@h", false, true), Status::Nok);
        assert_eq!(status_for("b@h", "a@h", false, false), Status::Ok);
        // ok_simultaneous and alive (answered true) complete on both
        // sides; nok refuses both.
        for status in [Status::OkSimultaneous, Status::Alive] {
            let (c, a) = dial_with(status, true);
            assert!(matches!(c, Ok(Progress::Done { .. })), "{status:?}: {c:?}");
            assert!(matches!(a, Ok(Progress::Done { .. })), "{status:?}: {a:?}");
        }
        let (c, a) = dial_with(Status::Nok, true);
        assert!(matches!(c, Err(AuthError::Simultaneous { .. })), "{c:?}");
        assert_eq!(a, Err(AuthError::Simultaneous { peer: "a@h".into() }));
        // Alive, but the dialer holds a live connection of its own: both
        // drop this attempt.
        let (c, a) = dial_with(Status::Alive, false);
        assert!(matches!(c, Err(AuthError::Simultaneous { .. })), "{c:?}");
        assert_eq!(a, Err(AuthError::Simultaneous { peer: "a@h".into() }));
    }

    #[test]
    fn a_peer_without_the_required_flags_is_refused() {
        let mut acc = Accepting::new("weft@h", "c", 1, 1);
        let mut input = send_name("old@h", DFLAG_PUBLISHED);
        let mut out = Vec::new();
        assert!(matches!(
            acc.feed(&mut input, &mut out),
            Err(AuthError::MissingFlags { .. })
        ));
        assert_eq!(take_message(&mut out).unwrap(), b"snot_allowed");
    }

    #[test]
    fn garbage_is_a_protocol_error_not_a_panic() {
        let mut acc = Accepting::new("weft@h", "c", 1, 1);
        let mut input = vec![0, 3, b'x', b'y', b'z'];
        let mut out = Vec::new();
        assert!(matches!(
            acc.feed(&mut input, &mut out),
            Err(AuthError::Protocol(_))
        ));
    }
}
