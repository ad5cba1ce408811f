//! The seed's (node-Tor / iAnonym) WebSocket extension on the OR, hop 1 only: RELAY_ASSOCIATE,
//! RELAY_WS streams for the WS_OP_SOCKS listener ([`crate::ws_op_socks`]), and RELAY_INFO.
//!
//! The wire formats are `onion_cell::relaycell::{Associate, WsStream, Info}`; the OR side of
//! the circuit (`onion_core::relay::OrCircuit`) turns commands 40-42 from a client link into
//! events. This module holds what the link task needs to act on them.
//!
//! # RELAY_ASSOCIATE
//!
//! "While receiving a RELAY_ASSOCIATE stream on circuit CID, the OR does associate fake_domain
//! to CID" (node-Tor README). Here:
//! - CID must be a circuit from a client link that is not extended (and, once associated, it
//!   may not be extended: EXTEND on it closes it). A seed command on an extended circuit closes
//!   the circuit (DESTROY, PROTOCOL): 40-42 and RELAY_WS are never passed beyond hop 1.
//! - The domain is normalized ([`normalize_domain`]: ASCII letters, digits, `-`, dot-separated
//!   labels of 1-63 bytes, at most 253 bytes, lowercased, one trailing dot dropped).
//! - A domain held by another live circuit, an invalid domain, or a full table
//!   ([`MAX_ASSOCIATIONS`]) is answered as the seed says: the OR sends RELAY_ASSOCIATE back
//!   (with the domain as received), and the OP must pick another fake domain. Success has no
//!   answer (the seed defines none).
//! - A second ASSOCIATE on the same circuit replaces its domain. The binding ends when the
//!   circuit ends (DESTROY either way, the link closing).
//!
//! # RELAY_WS streams (WS_OP_SOCKS)
//!
//! A SOCKS5 CONNECT whose host is an associated fake domain, or a name ending in
//! `.<fake domain>` (the longest match wins), becomes a *request* on that domain's circuit:
//! - the OR picks a stream id for it on CID (unused by the circuit's other streams) and sends
//!   what the browser writes as RELAY_WS messages (in RELAY_WS cells) on that stream id, with
//!   `Addr` = `remoteAddress:remotePort:connPort:requestId`: the host and port of the CONNECT as
//!   the browser gave them, the browser's TCP source port, and the request id, a decimal number
//!   unique for the relay's life (stream ids are reused, in turn, so an OP tells requests
//!   apart by `requestId`);
//! - the OP answers on the same stream id (its `Addr` is `remoteAddress:remotePort` and only
//!   checked for syntax); the bytes are written to the browser;
//! - an empty `Request` ends the request: from the OR when the browser closed its side (or the
//!   connection failed), from the OP when the response is complete (the OR then closes the
//!   SOCKS connection). As with the seed's node.js sockets (no half-open connections), the
//!   browser's EOF ends the request both ways: later answers for it are dropped.
//!
//! Buffering is bounded both ways: toward the OP, the SOCKS task reads only with credit
//! (`limits.max_queued_bytes_per_stream`), given back as the circuit's queue takes the bytes,
//! and the link's output limit stops the packaging; toward the browser, each request has a
//! queue of [`TO_SOCKS_MSGS`] messages, and while a message waits for room the link task
//! stops reading its socket (TCP backpressure on the OP, as for a slow next hop).
//!
//! # RELAY_INFO
//!
//! Only with `[seed] relay_info = true` (it hands circuit keys to this OR): `[01][ID][modulus]`
//! is answered `[ID][X_length][X][Onion]` (the TAP client's first step for a relay with that
//! onion key, [`onion_core::handshake::tap::client1`]), `[02][ID][Y]` with `[ID][g^xy]` (128
//! bytes) for the state kept under `ID` (at most [`MAX_INFO_PENDING`] per circuit, the oldest
//! dropped). Otherwise (disabled, a modulus that is not RSA-1024, an unknown ID, a bad `Y`)
//! the request is refused: the circuit is destroyed (DESTROY, PROTOCOL) and the refusal logged.
//! (A RELAY_END would not do: the seed's commands open no stream, and a client ignores END for
//! a stream it does not know.)

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use onion_cell::chancell::CircId;
use onion_cell::relaycell::seed::INFO_ID_LEN;
use onion_cell::relaycell::{InfoRequest, InfoResponse, OrWsAddr, StreamId};
use onion_core::handshake::tap::{self, TapClientState};
use rand_core::CryptoRng;
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::router::{LinkId, Owner};

/// Most fake domains associated at once (the whole relay).
pub const MAX_ASSOCIATIONS: usize = 1024;
/// Most RELAY_INFO type-1 states a circuit keeps for a later type-2 request.
pub const MAX_INFO_PENDING: usize = 16;
/// Most RELAY_WS requests open at once on one associated circuit.
pub const MAX_WS_REQUESTS: usize = 128;
/// Most bytes of browser data in one RELAY_WS message.
pub const WS_CHUNK: usize = 16 * 1024;
/// Capacity of a request's queue toward the browser, in RELAY_WS messages.
pub const TO_SOCKS_MSGS: usize = 16;
/// Longest fake domain.
pub const MAX_DOMAIN_LEN: usize = 253;

/// The fake domain in canonical form, or `None` if it is not a DNS name (letters, digits and
/// `-`, labels of 1-63 bytes not starting or ending with `-`, at most 253 bytes). Lowercased,
/// one trailing dot dropped.
pub fn normalize_domain(raw: &str) -> Option<String> {
    let d = raw.strip_suffix('.').unwrap_or(raw);
    if d.is_empty() || d.len() > MAX_DOMAIN_LEN {
        return None;
    }
    for label in d.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !ok {
            return None;
        }
    }
    Some(d.to_ascii_lowercase())
}

/// The outcome of [`SeedState::associate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bind {
    /// Bound to the circuit (or already was), in this canonical form.
    Bound(String),
    /// Another live circuit holds it.
    Taken,
    /// The table is full.
    Full,
    /// Not a valid domain.
    Invalid,
}

/// The relay's association table: fake domain -> the circuit (CID) it is bound to.
#[derive(Debug, Default)]
pub struct SeedState {
    table: Mutex<HashMap<String, Owner>>,
    next_request: AtomicU64,
}

fn same_circuit(a: &Owner, b: &Owner) -> bool {
    a.link == b.link && a.circ == b.circ && a.token == b.token
}

impl SeedState {
    /// Bind `raw` to `owner`'s circuit (see [`Bind`]). A binding whose link task is gone is
    /// taken over.
    pub fn associate(&self, raw: &str, owner: &Owner) -> Bind {
        let Some(domain) = normalize_domain(raw) else {
            return Bind::Invalid;
        };
        let mut t = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        match t.get(&domain) {
            Some(o) if same_circuit(o, owner) => return Bind::Bound(domain),
            Some(o) if !o.tx.is_closed() => return Bind::Taken,
            Some(_) => {}
            None if t.len() >= MAX_ASSOCIATIONS => {
                t.retain(|_, o| !o.tx.is_closed());
                if t.len() >= MAX_ASSOCIATIONS {
                    return Bind::Full;
                }
            }
            None => {}
        }
        t.insert(domain.clone(), owner.clone());
        Bind::Bound(domain)
    }

    /// Unbind `domain` if it is still bound to that circuit.
    pub fn release(&self, domain: &str, link: LinkId, circ: CircId, token: u64) {
        let mut t = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        if t.get(domain)
            .is_some_and(|o| o.link == link && o.circ == circ && o.token == token)
        {
            t.remove(domain);
        }
    }

    /// The association a SOCKS host name maps to: the fake domain itself or any name ending in
    /// `.<fake domain>`, the longest fake domain winning. Returns the domain and its circuit.
    pub fn lookup(&self, host: &str) -> Option<(String, Owner)> {
        let host = normalize_domain(host)?;
        let t = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        // Try the host, then each parent name: the first hit is the longest match.
        let mut name = host.as_str();
        loop {
            if let Some(o) = t.get(name).filter(|o| !o.tx.is_closed()) {
                return Some((name.to_owned(), o.clone()));
            }
            name = name.split_once('.')?.1;
        }
    }

    /// How many domains are bound.
    pub fn len(&self) -> usize {
        self.table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether no domain is bound.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A fresh identifier for a SOCKS connection (what the link task keys it by).
    pub fn next_request(&self) -> u64 {
        self.next_request.fetch_add(1, Ordering::Relaxed)
    }
}

/// What a request's SOCKS task receives.
#[derive(Debug, PartialEq, Eq)]
pub enum WsDown {
    /// Bytes from the OP, for the browser.
    Data(Vec<u8>),
    /// The OP ended the request.
    End,
}

/// What a SOCKS task asks of the link task that owns the associated circuit.
#[derive(Debug)]
pub enum SeedMsg {
    /// Open a request.
    Open {
        /// The SOCKS task's identifier ([`SeedState::next_request`]).
        request: u64,
        /// The CONNECT's host and port, the browser's port (the request id is filled in).
        addr: OrWsAddr,
        /// Where the OP's answers go.
        to_socks: mpsc::Sender<WsDown>,
        /// The SOCKS task's read credit, given back as the circuit takes the bytes.
        credit: Arc<Semaphore>,
        /// Whether the request is open.
        reply: oneshot::Sender<bool>,
    },
    /// Bytes from the browser.
    Data {
        /// The request.
        request: u64,
        /// The bytes.
        data: Vec<u8>,
    },
    /// The browser closed its side, or the SOCKS connection failed.
    End {
        /// The request.
        request: u64,
    },
}

/// One open RELAY_WS request on a circuit.
#[derive(Debug)]
pub(crate) struct WsReq {
    /// The SOCKS task's identifier.
    pub(crate) request: u64,
    /// The `Addr` of what we send.
    pub(crate) addr: OrWsAddr,
    /// Toward the browser.
    pub(crate) to_socks: mpsc::Sender<WsDown>,
    /// The SOCKS task's read credit.
    pub(crate) credit: Arc<Semaphore>,
    /// Browser bytes not yet taken by the circuit.
    pub(crate) pending: Vec<u8>,
    /// The browser is done: send the empty message once `pending` is sent.
    pub(crate) end_after: bool,
}

/// The seed's state of one circuit from a client link.
#[derive(Debug, Default)]
pub(crate) struct CircSeed {
    /// The fake domain bound to it.
    pub(crate) domain: Option<String>,
    /// RELAY_WS requests, by stream id.
    pub(crate) ws: HashMap<StreamId, WsReq>,
    /// Stream id by SOCKS task identifier.
    pub(crate) by_request: HashMap<u64, StreamId>,
    /// RELAY_INFO type-1 states awaiting their type 2, oldest first.
    info: VecDeque<([u8; INFO_ID_LEN], TapClientState)>,
    /// The last stream id given to a request (ids are taken in turn, downward).
    last_stream: u16,
}

impl CircSeed {
    /// A stream id for a new request: not used by a request, and not a stream of the circuit
    /// (`in_use`). `None` if there is none.
    pub(crate) fn free_stream(
        &mut self,
        mut in_use: impl FnMut(StreamId) -> bool,
    ) -> Option<StreamId> {
        if self.ws.len() >= MAX_WS_REQUESTS {
            return None;
        }
        // Counting down from the top keeps clear of the ids clients pick from 1 upward; taking
        // them in turn keeps a freed id unused for as long as possible.
        let start = self.last_stream;
        let found = (1..=u32::from(u16::MAX))
            .map(|k| {
                let below = u32::from(start).wrapping_sub(k) & 0xffff;
                StreamId(u16::try_from(if below == 0 { 0xffff } else { below }).unwrap_or(1))
            })
            .find(|s| !self.ws.contains_key(s) && !in_use(*s))?;
        self.last_stream = found.0;
        Some(found)
    }

    /// Forget request `stream`.
    pub(crate) fn remove(&mut self, stream: StreamId) -> Option<WsReq> {
        let r = self.ws.remove(&stream)?;
        self.by_request.remove(&r.request);
        Some(r)
    }

    /// Compute the answer to a RELAY_INFO request (see the module documentation).
    pub(crate) fn info_answer<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        req: InfoRequest,
    ) -> Result<InfoResponse, String> {
        match req {
            InfoRequest::OnionSkin { id, modulus } => {
                let key = tap::onion_key_from_modulus(&modulus).map_err(|e| e.to_string())?;
                let (state, onion) = tap::client1(rng, &key).map_err(|e| e.to_string())?;
                let x = state.dh_public().to_vec();
                self.info.retain(|(i, _)| *i != id);
                if self.info.len() >= MAX_INFO_PENDING {
                    self.info.pop_front();
                }
                self.info.push_back((id, state));
                Ok(InfoResponse::OnionSkin {
                    id,
                    x,
                    onion: onion.to_vec(),
                })
            }
            InfoRequest::DhSecret { id, y } => {
                let pos = self
                    .info
                    .iter()
                    .position(|(i, _)| *i == id)
                    .ok_or_else(|| "no type-1 request with this ID".to_owned())?;
                let (_, state) = self
                    .info
                    .remove(pos)
                    .ok_or_else(|| "no type-1 request with this ID".to_owned())?;
                let secret = tap::dh_shared_secret(state, &y).map_err(|e| e.to_string())?;
                Ok(InfoResponse::DhSecret {
                    id,
                    secret: secret.as_bytes().to_vec(),
                })
            }
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::router::LinkMsg;

    fn owner(link: u64, circ: u32, token: u64) -> (Owner, mpsc::Receiver<LinkMsg>) {
        let (tx, rx) = mpsc::channel(1);
        (
            Owner {
                tx,
                link: LinkId(link),
                circ: CircId::new(circ),
                token,
            },
            rx,
        )
    }

    #[test]
    fn domains() {
        assert_eq!(
            normalize_domain("AbC-1.iAnonym.com."),
            Some("abc-1.ianonym.com".into())
        );
        assert_eq!(normalize_domain("x"), Some("x".into()));
        for bad in [
            "",
            ".",
            "a..b",
            "-a.b",
            "a-.b",
            "a b",
            "a_b.c",
            "é.com",
            "a.b..",
            &"a".repeat(64),
            &format!("{}.b", ["a"; 127].join(".")),
        ] {
            assert_eq!(normalize_domain(bad), None, "{bad:?}");
        }
        assert!(normalize_domain(&["a"; 127].join(".")).is_some());
    }

    #[test]
    fn associate_release_lookup() {
        let s = SeedState::default();
        let (a, _ra) = owner(1, 0x8000_0001, 10);
        let (b, rb) = owner(2, 0x8000_0001, 11);
        assert_eq!(
            s.associate("Fake.Example", &a),
            Bind::Bound("fake.example".into())
        );
        assert_eq!(
            s.associate("fake.example", &a),
            Bind::Bound("fake.example".into())
        );
        assert_eq!(s.associate("fake.example.", &b), Bind::Taken);
        assert_eq!(s.associate("bad domain", &b), Bind::Invalid);
        // Exact name and subdomains map; other names do not.
        assert_eq!(
            s.lookup("FAKE.example").map(|(d, o)| (d, o.link)),
            Some(("fake.example".into(), LinkId(1)))
        );
        assert_eq!(
            s.lookup("www.site.fake.example").map(|(d, _)| d),
            Some("fake.example".into())
        );
        assert!(s.lookup("example").is_none());
        assert!(s.lookup("notfake.example").is_none());
        assert!(s.lookup("127.0.0.1").is_none());
        // The longest match wins.
        assert_eq!(
            s.associate("sub.fake.example", &b),
            Bind::Bound("sub.fake.example".into())
        );
        assert_eq!(
            s.lookup("x.sub.fake.example").map(|(_, o)| o.link),
            Some(LinkId(2))
        );
        assert_eq!(
            s.lookup("x.fake.example").map(|(_, o)| o.link),
            Some(LinkId(1))
        );
        // Release only by the holder.
        s.release("fake.example", LinkId(2), b.circ, 11);
        assert_eq!(s.len(), 2);
        s.release("fake.example", LinkId(1), a.circ, 10);
        assert!(s.lookup("fake.example").is_none());
        assert_eq!(
            s.associate("fake.example", &b),
            Bind::Bound("fake.example".into())
        );
        // A binding whose link task is gone is taken over, and never looked up.
        drop(rb);
        assert!(s.lookup("fake.example").is_none());
        assert_eq!(
            s.associate("fake.example", &a),
            Bind::Bound("fake.example".into())
        );
    }

    #[test]
    fn table_is_bounded() {
        let s = SeedState::default();
        let (a, _ra) = owner(1, 0x8000_0001, 1);
        for i in 0..MAX_ASSOCIATIONS {
            assert!(matches!(
                s.associate(&format!("d{i}.x"), &a),
                Bind::Bound(_)
            ));
        }
        assert_eq!(s.associate("one-more.x", &a), Bind::Full);
        assert_eq!(s.len(), MAX_ASSOCIATIONS);
    }

    #[test]
    fn free_streams() {
        let mut c = CircSeed::default();
        assert_eq!(c.free_stream(|_| false), Some(StreamId(u16::MAX)));
        assert_eq!(c.free_stream(|_| false), Some(StreamId(u16::MAX - 1)));
        assert_eq!(c.free_stream(|s| s.0 > 100), Some(StreamId(100)));
        c.last_stream = 2;
        assert_eq!(c.free_stream(|_| false), Some(StreamId(1)));
        assert_eq!(c.free_stream(|_| false), Some(StreamId(u16::MAX)));
        assert_eq!(c.free_stream(|_| true), None);
        c.last_stream = 0;
        let (tx, _rx) = mpsc::channel(1);
        c.ws.insert(
            StreamId(u16::MAX),
            WsReq {
                request: 7,
                addr: OrWsAddr {
                    remote_address: "a".into(),
                    remote_port: 1,
                    conn_port: 2,
                    request_id: "65535".into(),
                },
                to_socks: tx,
                credit: Arc::new(Semaphore::new(1)),
                pending: Vec::new(),
                end_after: false,
            },
        );
        c.by_request.insert(7, StreamId(u16::MAX));
        assert_eq!(c.free_stream(|_| false), Some(StreamId(u16::MAX - 1)));
        assert!(c.remove(StreamId(u16::MAX)).is_some());
        assert!(c.by_request.is_empty());
    }
}
