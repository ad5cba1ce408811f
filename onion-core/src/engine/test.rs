//! Engine tests: an in-memory network of real ORs built from the core's OR side
//! ([`Responder`] link handshakes, [`OrCircuit`]s per hop, as `or-server` drives them, and
//! as `client/test_or.rs` does for one circuit), with a directory answering BEGIN_DIR with a
//! signed relay list. The clock is a plain `u64` the tests advance.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};

use ed25519_dalek::SigningKey;
use onion_cell::chancell::{ChanCell, ChanMsg, CircId, Destroy, DestroyReason};
use onion_cell::relaycell::Resolved;
use onion_cell::relaycell::{EndReason, ResolvedAnswer, ResolvedValue, StreamId};
use rand::rngs::StdRng;
use x25519_dalek::StaticSecret;

use super::*;
use crate::certs::RelaySigningMaterial;
use crate::channel::testutil::{NOW, TLS_CERT, material};
use crate::channel::{Channel, Responder, ResponderConfig, TlsBinding};
use crate::dir::RelayFlags;
use crate::handshake::tap;
use crate::netdesc::{
    Directory, EntryOr, ListedRelay, NetworkDescription, OwnAuthority, RelayList, SignedRelayList,
};
use crate::policy::PortPolicy;
use crate::relay::{CircuitEvent, ForwardAction, OnionKeys, OrCircuit};
use crate::testing::seeded_rng;

/// The seed's iAnonym mode ([`Engine::associate`]).
mod seed;

/// The seed's RELAY_INFO ([`EngineConfig::use_relay_info`]).
mod relay_info;

/// The tests' start time, milliseconds (the relays' certificates are made at `NOW`).
const T0: u64 = NOW * 1000 + 5_000;

/// A port the fake exits refuse with END CONNECTREFUSED.
const REFUSED_PORT: u16 = 7;

/// One relay of the network.
struct Relay {
    nick: String,
    material: &'static RelaySigningMaterial,
    keys: OnionKeys,
    addr: SocketAddr,
    exit: bool,
    bandwidth: u32,
    /// Never answers a CREATE2 (extensions to it hang).
    silent: bool,
}

/// A stream at an exit or a directory.
#[derive(Default)]
struct SimStream {
    dir: bool,
    /// Request bytes (directory).
    request: Vec<u8>,
    /// Bytes to send back.
    out: Vec<u8>,
    /// Send END DONE once `out` is sent.
    end_after: bool,
}

/// The OR circuits of one client circuit, hop 1 first.
#[derive(Default)]
struct Chain {
    hops: Vec<(usize, OrCircuit)>,
    streams: BTreeMap<StreamId, SimStream>,
}

/// A link as seen by the relay.
struct SimLink {
    relay: usize,
    responder: Option<Responder>,
    chan: Option<Channel>,
    chains: BTreeMap<CircId, Chain>,
}

/// The network.
struct Net {
    relays: Vec<Relay>,
    auth: SigningKey,
    /// What the directory serves at the relay list path.
    list: String,
    rng: StdRng,
    links: BTreeMap<ConnId, SimLink>,
    /// Bytes for the engine, in order.
    to_engine: Vec<(ConnId, Vec<u8>)>,
    now: u64,
    /// Directory requests served.
    dir_requests: Vec<String>,
    /// Connections the engine opened.
    connects: usize,
    /// Tor mode documents: consensus, authority certificates, microdescriptors.
    tor: Option<(String, String, String)>,
    /// Relays whose ORPort refuses connections.
    down: Vec<usize>,
    /// Deliver bytes to the engine in pieces of this size (0: as sent).
    split: usize,
    /// The seed's messages hop 1 received (RELAY_ASSOCIATE, RELAY_WS, RELAY_INFO).
    seed_in: Vec<(ConnId, CircId, CircuitEvent)>,
}

/// A relay's keys and certificates made at `now` (seconds), cached (RSA key generation is
/// slow).
fn material_at(seed: u64, now: u64) -> &'static RelaySigningMaterial {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    if now == NOW {
        return material(seed);
    }
    static CACHE: OnceLock<Mutex<HashMap<(u64, u64), &'static RelaySigningMaterial>>> =
        OnceLock::new();
    let mut cache = CACHE.get_or_init(Default::default).lock().unwrap();
    cache.entry((seed, now)).or_insert_with(|| {
        let mut rng = seeded_rng(1000 + seed);
        let rsa = rsa::PrivateKey::new(&mut rng, 1024).unwrap();
        let mut key = || {
            let mut b = [0u8; 32];
            rand_core::Rng::fill_bytes(&mut rng, &mut b);
            SigningKey::from_bytes(&b)
        };
        let (ed_id, ed_signing) = (key(), key());
        let m =
            RelaySigningMaterial::new(rsa, &ed_id, ed_signing, now, &mut seeded_rng(seed)).unwrap();
        Box::leak(Box::new(m))
    })
}

/// A relay description for `i`, certificates made at `now` (seconds).
fn relay(i: usize, nick: &str, exit: bool, now: u64) -> Relay {
    let m = material_at(300 + i as u64, now);
    let mut rng = seeded_rng(400 + i as u64);
    let (a, b, _) = tap::test::test_keys();
    let ntor = StaticSecret::random_from_rng(&mut rng);
    let tap = if i.is_multiple_of(2) { a } else { b };
    let keys = OnionKeys::new(
        *m.rsa_id().as_bytes(),
        *m.ed_identity().as_bytes(),
        ntor,
        tap,
    )
    .unwrap();
    Relay {
        nick: nick.into(),
        material: m,
        keys,
        addr: SocketAddr::V4(SocketAddrV4::new(
            Ipv4Addr::LOCALHOST,
            9000 + u16::try_from(i).unwrap(),
        )),
        exit,
        bandwidth: 100,
        silent: false,
    }
}

impl Net {
    /// Relay 0 is the entry (a guard), the last `exits` relays are exits.
    fn new(n: usize, exits: usize) -> Self {
        Self::new_at(n, exits, NOW)
    }

    /// [`Net::new`] with the clock (and the relays' certificates) at `now` seconds.
    fn new_at(n: usize, exits: usize, now: u64) -> Self {
        let relays = (0..n)
            .map(|i| {
                let exit = i >= n - exits;
                let nick = if i == 0 {
                    "entry".to_owned()
                } else if exit {
                    format!("exit{i}")
                } else {
                    format!("middle{i}")
                };
                relay(i, &nick, exit, now)
            })
            .collect();
        let mut net = Net {
            relays,
            auth: SigningKey::from_bytes(&[7; 32]),
            list: String::new(),
            rng: seeded_rng(99),
            links: BTreeMap::new(),
            to_engine: Vec::new(),
            now: now * 1000 + (T0 - NOW * 1000),
            dir_requests: Vec::new(),
            connects: 0,
            tor: None,
            down: Vec::new(),
            split: 0,
            seed_in: Vec::new(),
        };
        net.list = net.signed_list(&net.auth.clone(), "testnet", NOW, NOW + 3 * 3600);
        net
    }

    fn entry_or(&self, i: usize) -> EntryOr {
        let r = &self.relays[i];
        EntryOr {
            nickname: r.nick.clone(),
            ws: None,
            tls: Some(r.addr),
            rsa_id: *r.material.rsa_id(),
            ed25519_id: Some(*r.material.ed_identity()),
            ntor_key: r.keys.ntor_public().unwrap().pk,
            tap_key: Some(r.keys.tap_public()),
        }
    }

    /// The network description: relay 0 is the entry.
    fn description(&self) -> NetworkDescription {
        NetworkDescription {
            name: "testnet".into(),
            entries: vec![self.entry_or(0)],
            directory: Directory::Own(Box::new(OwnAuthority {
                key: self.auth.verifying_key(),
                list_url: None,
                or: None,
            })),
        }
    }

    /// The relay list, signed with `key`.
    fn signed_list(&self, key: &SigningKey, name: &str, published: u64, until: u64) -> String {
        let relays = self
            .relays
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let mut flags = RelayFlags::RUNNING
                    .union(RelayFlags::FAST)
                    .union(RelayFlags::STABLE);
                if i == 0 {
                    flags = flags.union(RelayFlags::GUARD);
                }
                if r.exit {
                    flags = flags.union(RelayFlags::EXIT);
                }
                ListedRelay {
                    nickname: r.nick.clone(),
                    rsa_id: *r.material.rsa_id(),
                    ed25519_id: *r.material.ed_identity(),
                    ntor_key: r.keys.ntor_public().unwrap().pk,
                    tap_key: Some(r.keys.tap_public()),
                    tls: Some(r.addr),
                    ws: None,
                    bandwidth: r.bandwidth,
                    flags,
                    exit_policy: if r.exit {
                        PortPolicy::accept_all()
                    } else {
                        PortPolicy::reject_all()
                    },
                    family: Vec::new(),
                }
            })
            .collect();
        let list = RelayList {
            network: name.into(),
            published,
            valid_until: until,
            relays,
        };
        SignedRelayList::sign(&list, key).unwrap()
    }

    fn relay_by_addr(&self, addr: SocketAddr) -> Option<usize> {
        self.relays.iter().position(|r| r.addr == addr)
    }

    fn relay_by_rsa(&self, id: &[u8; 20]) -> Option<usize> {
        self.relays
            .iter()
            .position(|r| r.material.rsa_id().as_bytes() == id)
    }

    fn nick_of(&self, id: &crate::certs::RsaIdentity) -> String {
        self.relays
            .iter()
            .find(|r| r.material.rsa_id() == id)
            .map(|r| r.nick.clone())
            .unwrap_or_default()
    }

    /// Carry out the engine's actions and answer, until nothing moves; the events.
    fn pump<R: rand_core::CryptoRng>(&mut self, e: &mut Engine<R>) -> Vec<Event> {
        let mut events = Vec::new();
        for _ in 0..100_000 {
            let mut moved = false;
            while let Some(a) = e.poll_action() {
                moved = true;
                match a {
                    Action::Connect { conn, transport } => {
                        self.connects += 1;
                        // A WebSocket URL `ws://127.0.0.1:PORT/` reaches the relay of that port,
                        // with no TLS certificate visible.
                        let (addr, binding) = match &transport {
                            Transport::Tls(a) => (
                                *a,
                                TlsBinding::Tls {
                                    responder_cert_sha256: TLS_CERT,
                                },
                            ),
                            Transport::WebSocket(u) => (
                                u.socket_addr().expect("ws URL with an IP"),
                                TlsBinding::None,
                            ),
                        };
                        match self.relay_by_addr(addr).filter(|i| !self.down.contains(i)) {
                            Some(i) => {
                                let r = &self.relays[i];
                                let cfg = ResponderConfig::new(
                                    binding,
                                    Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                                    vec![r.addr.ip()],
                                );
                                let resp =
                                    Responder::new(cfg, r.material, self.now / 1000, &mut self.rng)
                                        .unwrap();
                                self.links.insert(
                                    conn,
                                    SimLink {
                                        relay: i,
                                        responder: Some(resp),
                                        chan: None,
                                        chains: BTreeMap::new(),
                                    },
                                );
                                e.on_connected(conn, self.now, binding);
                            }
                            None => e.on_closed(conn, self.now, "connection refused"),
                        }
                    }
                    Action::Send { conn, data } => self.receive(conn, &data),
                    Action::Close { conn } => {
                        self.links.remove(&conn);
                    }
                }
            }
            for (conn, data) in std::mem::take(&mut self.to_engine) {
                moved = true;
                let piece = if self.split == 0 {
                    data.len()
                } else {
                    self.split
                };
                for part in data.chunks(piece.max(1)) {
                    if self.links.contains_key(&conn) {
                        e.on_data(conn, self.now, part);
                    }
                }
            }
            while let Some(ev) = e.poll_event() {
                events.push(ev);
                moved = true;
            }
            if !moved {
                return events;
            }
        }
        panic!("the network never settles");
    }

    /// Advance the clock by `ms`, firing the engine's timers on the way.
    fn advance<R: rand_core::CryptoRng>(&mut self, e: &mut Engine<R>, ms: u64) -> Vec<Event> {
        let end = self.now + ms;
        let mut events = self.pump(e);
        while let Some(t) = e.poll_timeout() {
            if t > end {
                break;
            }
            self.now = self.now.max(t);
            e.handle_timeout(self.now);
            events.extend(self.pump(e));
        }
        self.now = end;
        e.handle_timeout(self.now);
        events.extend(self.pump(e));
        events
    }

    /// Bytes from the engine on `conn`.
    fn receive(&mut self, conn: ConnId, data: &[u8]) {
        let Some(link) = self.links.get_mut(&conn) else {
            return;
        };
        let mut input = data;
        if let Some(resp) = &mut link.responder {
            let n = resp
                .handle_input(self.now / 1000, input)
                .expect("responder handshake");
            input = &input[n..];
            while let Some(out) = resp.poll_transmit() {
                self.to_engine.push((conn, out));
            }
            if resp.is_done() {
                let (chan, _) = link.responder.take().unwrap().finish().unwrap();
                link.chan = Some(chan);
            }
        }
        let mut cells = Vec::new();
        if let Some(chan) = &mut link.chan {
            while !input.is_empty() {
                let n = chan.handle_input(input);
                input = &input[n..];
                while let Some(cell) = chan.poll_cell().expect("relay channel") {
                    cells.push(cell);
                }
            }
        }
        for cell in cells {
            self.on_cell(conn, cell);
        }
    }

    /// Send a cell to the engine.
    fn send(&mut self, conn: ConnId, circ: CircId, msg: ChanMsg) {
        let Some(chan) = self.links.get(&conn).and_then(|l| l.chan.as_ref()) else {
            return;
        };
        let mut out = Vec::new();
        chan.encode(&ChanCell::new(circ, msg), &mut out).unwrap();
        self.to_engine.push((conn, out));
    }

    /// A cell from the engine, at the relay of `conn`.
    fn on_cell(&mut self, conn: ConnId, cell: ChanCell) {
        let relay = self.links[&conn].relay;
        match cell.msg {
            ChanMsg::Create2(_) | ChanMsg::CreateFast(_) | ChanMsg::CreateFastWs(_) => {
                if self.relays[relay].silent {
                    return;
                }
                match OrCircuit::accept_create(
                    &mut self.rng,
                    &self.relays[relay].keys,
                    &cell.msg,
                    true,
                ) {
                    Ok((circ, reply)) => {
                        let chain = Chain {
                            hops: vec![(relay, circ)],
                            streams: BTreeMap::new(),
                        };
                        self.links
                            .get_mut(&conn)
                            .unwrap()
                            .chains
                            .insert(cell.circ_id, chain);
                        self.send(conn, cell.circ_id, reply);
                    }
                    Err(e) => {
                        self.send(conn, cell.circ_id, Destroy::new(e.destroy_reason()).into())
                    }
                }
            }
            ChanMsg::RelayWs(w) => {
                let chains = &mut self.links.get_mut(&conn).unwrap().chains;
                let chain = chains
                    .get_mut(&cell.circ_id)
                    .expect("RELAY_WS on no circuit");
                let mut body = w.into_body();
                let action = chain.hops[0]
                    .1
                    .handle_forward_ws(&mut self.rng, &mut body)
                    .unwrap();
                let ForwardAction::Event(ev) = action else {
                    panic!("RELAY_WS not for hop 1: {action:?}")
                };
                self.seed_in.push((conn, cell.circ_id, ev));
            }
            ChanMsg::Relay(r) => self.forward(conn, cell.circ_id, r.into_body(), false),
            ChanMsg::RelayEarly(r) => self.forward(conn, cell.circ_id, r.into_body(), true),
            ChanMsg::Destroy(_) => {
                self.links
                    .get_mut(&conn)
                    .unwrap()
                    .chains
                    .remove(&cell.circ_id);
            }
            other => panic!("unexpected cell {:?}", other.cmd()),
        }
    }

    /// A relay cell through the chain of circuit `circ`.
    fn forward(&mut self, conn: ConnId, circ: CircId, mut body: Box<[u8; 509]>, early: bool) {
        let Some(mut chain) = self.links.get_mut(&conn).unwrap().chains.remove(&circ) else {
            return;
        };
        let mut early = early;
        for i in 0..chain.hops.len() {
            let action = chain.hops[i]
                .1
                .handle_forward(&mut self.rng, &mut body, early)
                .unwrap_or_else(|e| panic!("hop {} failed: {e}", i + 1));
            match action {
                ForwardAction::PassOn { early: e } => early = e,
                ForwardAction::Consumed => break,
                ForwardAction::Event(
                    ev @ (CircuitEvent::SeedAssociate { .. }
                    | CircuitEvent::SeedWs { .. }
                    | CircuitEvent::SeedInfo { .. }),
                ) => {
                    self.seed_in.push((conn, circ, ev));
                    break;
                }
                ForwardAction::Event(ev) => {
                    self.on_event(&mut chain, i, ev);
                    break;
                }
            }
        }
        self.flush(conn, circ, &mut chain);
        self.links
            .get_mut(&conn)
            .unwrap()
            .chains
            .insert(circ, chain);
    }

    /// What the driver of hop `i` does.
    fn on_event(&mut self, chain: &mut Chain, i: usize, ev: CircuitEvent) {
        let rng = &mut self.rng;
        let hop = &mut chain.hops[i].1;
        match ev {
            CircuitEvent::ExtendRequest(req) => {
                let j = self
                    .relays
                    .iter()
                    .position(|r| r.material.rsa_id().as_bytes() == req.rsa_id())
                    .expect("unknown relay");
                if self.relays[j].silent {
                    return;
                }
                let (next, created) =
                    OrCircuit::accept_create(rng, &self.relays[j].keys, req.create(), false)
                        .expect("next relay refused");
                hop.extended(rng, &created).unwrap();
                chain.hops.push((j, next));
            }
            CircuitEvent::BeginRequest { stream, port, .. } => {
                if port == REFUSED_PORT {
                    hop.stream_end(rng, stream, EndReason::CONNECTREFUSED)
                        .unwrap();
                } else {
                    let at = (IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), 60);
                    hop.stream_connected(rng, stream, Some(at)).unwrap();
                    chain.streams.insert(stream, SimStream::default());
                }
            }
            CircuitEvent::BeginDirRequest { stream } => {
                hop.stream_connected(rng, stream, None).unwrap();
                chain.streams.insert(
                    stream,
                    SimStream {
                        dir: true,
                        ..SimStream::default()
                    },
                );
            }
            CircuitEvent::ResolveRequest { stream, query } => {
                let ip = if query == "example.org" {
                    Ipv4Addr::new(192, 0, 2, 1)
                } else {
                    Ipv4Addr::new(192, 0, 2, 2)
                };
                let answer = Resolved::new(vec![ResolvedAnswer {
                    value: ResolvedValue::Ipv4(ip),
                    ttl: 60,
                }])
                .unwrap();
                hop.resolved(rng, stream, answer).unwrap();
            }
            CircuitEvent::StreamData { stream, data } => {
                hop.stream_flushed(rng, stream, data.len()).unwrap();
                let s = chain.streams.entry(stream).or_default();
                if s.dir {
                    s.request.extend_from_slice(&data);
                    if s.request.windows(4).any(|w| w == b"\r\n\r\n") {
                        let text = String::from_utf8_lossy(&s.request).to_string();
                        let path = text.split(' ').nth(1).unwrap_or("").to_owned();
                        self.dir_requests.push(path.clone());
                        s.out = self.dir_answer(&path);
                        s.end_after = true;
                    }
                } else {
                    s.out.extend_from_slice(&data);
                }
            }
            CircuitEvent::StreamEnd { stream, .. } => {
                chain.streams.remove(&stream);
            }
            CircuitEvent::PackageWindowOpened { .. } => {}
            other => panic!("unexpected event {other:?}"),
        }
    }

    /// The directory's HTTP answer for `path`.
    fn dir_answer(&self, path: &str) -> Vec<u8> {
        let deflated = |text: &str| {
            let z = miniz_oxide::deflate::compress_to_vec_zlib(text.as_bytes(), 6);
            let mut r = format!(
                "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Encoding: deflate\r\nContent-Length: {}\r\n\r\n",
                z.len()
            )
            .into_bytes();
            r.extend_from_slice(&z);
            r
        };
        match (&self.tor, path) {
            (None, crate::netdesc::RELAY_LIST_PATH) => {
                // Chunked, to exercise the parser on the real path.
                let mut resp = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
                for part in self.list.as_bytes().chunks(700) {
                    resp.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
                    resp.extend_from_slice(part);
                    resp.extend_from_slice(b"\r\n");
                }
                resp.extend_from_slice(b"0\r\n\r\n");
                resp
            }
            (Some((c, _, _)), "/tor/status-vote/current/consensus-microdesc.z") => deflated(c),
            (Some((_, k, _)), "/tor/keys/all.z") => deflated(k),
            (Some((_, _, m)), p) if p.starts_with("/tor/micro/d/") => deflated(m),
            _ => b"HTTP/1.0 404 Not found\r\nContent-Length: 0\r\n\r\n".to_vec(),
        }
    }

    /// Send what the exit's windows allow, move backward cells to the engine.
    fn flush(&mut self, conn: ConnId, circ: CircId, chain: &mut Chain) {
        loop {
            let mut moved = false;
            if let Some((_, exit)) = chain.hops.last_mut() {
                let mut done = Vec::new();
                for (sid, s) in chain.streams.iter_mut() {
                    if !s.out.is_empty() {
                        let n = exit.stream_data(&mut self.rng, *sid, &s.out).unwrap_or(0);
                        s.out.drain(..n);
                    }
                    if s.out.is_empty() && s.end_after {
                        exit.stream_end(&mut self.rng, *sid, EndReason::DONE)
                            .unwrap();
                        done.push(*sid);
                    }
                }
                for sid in done {
                    chain.streams.remove(&sid);
                }
            }
            for i in (1..chain.hops.len()).rev() {
                while chain.hops[i - 1].1.backward_room() > 0 {
                    match chain.hops[i].1.poll_backward() {
                        Some(ChanMsg::Relay(r)) => {
                            chain.hops[i - 1]
                                .1
                                .handle_backward_from_next(r.into_body())
                                .unwrap();
                            moved = true;
                        }
                        Some(other) => panic!("unexpected backward {:?}", other.cmd()),
                        None => break,
                    }
                }
            }
            while let Some(m) = chain.hops[0].1.poll_backward() {
                self.send(conn, circ, m);
                moved = true;
            }
            if !moved {
                return;
            }
        }
    }

    /// Hop 1 destroys every circuit through relay `relay` (as when that relay dies).
    fn kill_circuits_through(&mut self, relay: usize) {
        let mut victims = Vec::new();
        for (conn, l) in &self.links {
            for (circ, chain) in &l.chains {
                if chain.hops.iter().any(|(r, _)| *r == relay) {
                    victims.push((*conn, *circ));
                }
            }
        }
        for (conn, circ) in victims {
            self.links.get_mut(&conn).unwrap().chains.remove(&circ);
            self.send(
                conn,
                circ,
                Destroy::new(DestroyReason::CHANNEL_CLOSED).into(),
            );
        }
    }

    /// The relay indices of each live chain.
    fn chains(&self) -> Vec<Vec<usize>> {
        self.links
            .values()
            .flat_map(|l| l.chains.values())
            .map(|c| c.hops.iter().map(|(r, _)| *r).collect())
            .collect()
    }
}

fn config() -> EngineConfig {
    EngineConfig {
        transports: Transports {
            ws: false,
            tls: true,
        },
        ..EngineConfig::default()
    }
}

/// An engine bootstrapped on `net`, with its events.
fn boot(net: &mut Net, cfg: EngineConfig, seed: u64) -> (Engine<StdRng>, Vec<Event>) {
    let mut e = Engine::new(net.description(), cfg, seeded_rng(seed), net.now).unwrap();
    let events = net.pump(&mut e);
    (e, events)
}

fn built(events: &[Event]) -> Vec<CircuitInfo> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::CircuitBuilt { info } => Some(info.clone()),
            _ => None,
        })
        .collect()
}

/// Connect a stream and wait for CONNECTED.
fn open_stream(
    net: &mut Net,
    e: &mut Engine<StdRng>,
    port: u16,
    iso: Option<&str>,
) -> StreamHandle {
    let s = e.connect(net.now, "example.org", port, iso).unwrap();
    let events = net.pump(e);
    assert!(
        events.contains(&Event::StreamConnected { stream: s }),
        "no CONNECTED: {events:?}"
    );
    s
}

/// Write `data` on `s` and read it back (echo), consuming as it comes.
fn echo(net: &mut Net, e: &mut Engine<StdRng>, s: StreamHandle, data: &[u8]) -> Vec<u8> {
    let mut sent = 0;
    let mut got = Vec::new();
    let mut idle = 0;
    while got.len() < data.len() {
        let n = if sent < data.len() {
            e.stream_write(net.now, s, &data[sent..]).unwrap()
        } else {
            0
        };
        sent += n;
        let events = net.pump(e);
        let mut progress = n > 0;
        for ev in events {
            match ev {
                Event::StreamData { stream, data } if stream == s => {
                    e.stream_consumed(net.now, s, data.len());
                    got.extend_from_slice(&data);
                    progress = true;
                }
                Event::StreamWritable { stream } if stream == s => progress = true,
                Event::StreamEnded { stream, error } if stream == s => {
                    panic!("stream ended: {error:?}")
                }
                _ => {}
            }
        }
        if !progress {
            idle += 1;
            assert!(idle < 3, "stalled at {sent} sent, {} echoed", got.len());
        }
    }
    got
}

#[test]
fn bootstrap_own_network_then_three_hop_stream_echo() {
    let mut net = Net::new(5, 2);
    let (mut e, events) = boot(&mut net, config(), 1);
    assert!(e.is_ready());
    assert_eq!(e.relay_count(), 5);
    assert_eq!(
        net.dir_requests,
        vec![crate::netdesc::RELAY_LIST_PATH.to_owned()]
    );
    // Progress is monotonic and ends with the first circuit.
    let percents: Vec<u8> = events
        .iter()
        .filter_map(|e| match e {
            Event::Bootstrap { percent, .. } => Some(*percent),
            _ => None,
        })
        .collect();
    assert!(percents.windows(2).all(|w| w[0] <= w[1]), "{percents:?}");
    assert_eq!(percents.last(), Some(&100));
    assert!(events.contains(&Event::Ready));
    // The pool: two 3-hop exit circuits through the entry, to an exit.
    let exits: Vec<CircuitInfo> = built(&events)
        .into_iter()
        .filter(|c| c.purpose == CircuitPurpose::Exit)
        .collect();
    assert_eq!(exits.len(), 2);
    for c in &exits {
        assert_eq!(c.path.len(), 3);
        assert_eq!(c.path[0].nickname, "entry");
        assert!(c.path[2].nickname.starts_with("exit"));
        assert_eq!(c.path[0].addresses, vec![net.relays[0].addr.to_string()]);
        assert_eq!(
            c.path[1].handshake,
            Some(crate::handshake::HandshakeKind::NtorV3)
        );
    }
    assert_eq!(net.connects, 1, "one link, reused");

    let s = open_stream(&mut net, &mut e, 80, None);
    let data: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
    let got = echo(&mut net, &mut e, s, &data);
    assert!(got == data, "echo differs");
    // The stream's circuit is dirty now; a refused port gives a clear error.
    let r = e
        .connect(net.now, "example.org", REFUSED_PORT, None)
        .unwrap();
    let events = net.pump(&mut e);
    assert!(events.contains(&Event::StreamEnded {
        stream: r,
        error: Some(StreamError::ConnectionRefused)
    }));
    // RESOLVE.
    let q = e.resolve(net.now, "example.org", None).unwrap();
    let events = net.pump(&mut e);
    assert!(events.iter().any(|ev| matches!(ev,
        Event::Resolved { stream, answers } if *stream == q
            && answers[0].value == ResolvedValue::Ipv4(Ipv4Addr::new(192, 0, 2, 1)))));
    // A clean close sends END and no event.
    e.stream_close(net.now, s);
    let events = net.pump(&mut e);
    assert!(
        !events
            .iter()
            .any(|ev| matches!(ev, Event::StreamEnded { .. }))
    );
    assert!(matches!(
        e.stream_write(net.now, s, b"x"),
        Err(EngineError::NoSuchStream(_))
    ));
}

/// The bootstrap with `list` served fails with a relay-list error.
fn refused(list: String) -> EngineError {
    let mut net = Net::new(4, 1);
    net.list = list;
    let (e, events) = boot(&mut net, config(), 2);
    assert!(!e.is_ready());
    assert!(!events.contains(&Event::Ready));
    let errors: Vec<EngineError> = events
        .into_iter()
        .filter_map(|ev| match ev {
            Event::BootstrapFailed { error } => Some(error),
            _ => None,
        })
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    errors.into_iter().next().unwrap()
}

#[test]
fn bad_relay_lists_are_refused() {
    let net = Net::new(4, 1);
    // Signed by another key.
    let other = SigningKey::from_bytes(&[8; 32]);
    let wrong_key = net.signed_list(&other, "testnet", NOW, NOW + 3600);
    assert_eq!(
        refused(wrong_key),
        EngineError::RelayList(crate::netdesc::ListError::BadSignature)
    );
    // Expired (the engine's clock is after valid_until + skew).
    let expired = net.signed_list(&net.auth, "testnet", NOW - 7200, NOW - 3600);
    assert!(matches!(
        refused(expired),
        EngineError::RelayList(crate::netdesc::ListError::Expired { .. })
    ));
    // Tampered: one byte of the body changed after signing.
    let good = net.signed_list(&net.auth, "testnet", NOW, NOW + 3600);
    let tampered = good.replacen("exit3", "exit9", 1);
    assert_ne!(tampered, good);
    assert_eq!(
        refused(tampered),
        EngineError::RelayList(crate::netdesc::ListError::BadSignature)
    );
    // Another network's list.
    let other_net = net.signed_list(&net.auth, "othernet", NOW, NOW + 3600);
    assert!(matches!(
        refused(other_net),
        EngineError::RelayList(crate::netdesc::ListError::WrongNetwork { .. })
    ));
}

#[test]
fn pool_is_kept_and_renewed_after_keepalive() {
    let mut net = Net::new(5, 2);
    let cfg = EngineConfig {
        pool_size: 3,
        circuit_keepalive_ms: 60_000,
        ..config()
    };
    let (mut e, _) = boot(&mut net, cfg, 3);
    let ids = |e: &Engine<StdRng>| -> Vec<u64> {
        e.circuits()
            .iter()
            .filter(|c| c.purpose == CircuitPurpose::Exit && c.built)
            .map(|c| c.id)
            .collect()
    };
    let first = ids(&e);
    assert_eq!(first.len(), 3);
    assert_eq!(net.chains().len(), 3, "the relays hold 3 circuits");
    // Before the keepalive nothing changes.
    net.advance(&mut e, 30_000);
    assert_eq!(ids(&e), first);
    // After it, every idle circuit is replaced (and destroyed at the relays).
    let events = net.advance(&mut e, 31_000);
    let second = ids(&e);
    assert_eq!(second.len(), 3);
    assert!(
        second.iter().all(|id| !first.contains(id)),
        "{first:?} {second:?}"
    );
    assert_eq!(net.chains().len(), 3);
    let closed = events
        .iter()
        .filter(
            |ev| matches!(ev, Event::CircuitClosed { reason, .. } if reason.contains("keepalive")),
        )
        .count();
    assert_eq!(closed, 3);
    // A dirty circuit is not renewed by the keepalive while its stream lives.
    let s = open_stream(&mut net, &mut e, 443, None);
    let dirty: Vec<u64> = e
        .circuits()
        .iter()
        .filter(|c| c.dirty)
        .map(|c| c.id)
        .collect();
    assert_eq!(dirty.len(), 1);
    net.advance(&mut e, 61_000);
    assert!(e.circuits().iter().any(|c| c.id == dirty[0]));
    assert_eq!(
        e.circuits().iter().filter(|c| !c.dirty && c.built).count(),
        3
    );
    let _ = s;
}

#[test]
fn hop_timeout_replaces_a_silent_middle() {
    // entry, middle1 (silent, heavy), middle2, exit3.
    let mut net = Net::new(4, 1);
    net.relays[1].silent = true;
    net.relays[1].bandwidth = 1_000_000;
    net.relays[2].bandwidth = 1;
    net.list = net.signed_list(&net.auth.clone(), "testnet", NOW, NOW + 3 * 3600);
    let cfg = EngineConfig {
        pool_size: 1,
        hop_timeout_ms: 5_000,
        ..config()
    };
    let (mut e, events) = boot(&mut net, cfg, 4);
    assert!(e.is_ready());
    assert!(
        built(&events)
            .iter()
            .all(|c| c.purpose == CircuitPurpose::Directory)
    );
    // The build hangs at hop 2 (middle1 never answers the EXTEND2's CREATE2).
    let pending = e.circuits();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].path[1].nickname, "middle1");
    assert!(!pending[0].built);
    let events = net.advance(&mut e, 4_000);
    assert!(built(&events).is_empty());
    let events = net.advance(&mut e, 2_000);
    assert!(events.iter().any(|ev| matches!(ev,
        Event::CircuitFailed { path, error } if path[1].nickname == "middle1"
            && error.contains("hop 2"))));
    let ok = built(&events);
    assert_eq!(ok.len(), 1, "{events:?}");
    assert_eq!(ok[0].path[1].nickname, "middle2");
    assert_eq!(ok[0].path[2].nickname, "exit3");
}

#[test]
fn destroyed_circuit_fails_its_stream_and_next_connect_uses_a_new_one() {
    let mut net = Net::new(5, 2);
    let cfg = EngineConfig {
        pool_size: 1,
        ..config()
    };
    let (mut e, _) = boot(&mut net, cfg, 5);
    let s = open_stream(&mut net, &mut e, 80, None);
    let got = echo(&mut net, &mut e, s, b"hello");
    assert_eq!(got, b"hello");
    let circ = e.circuits().into_iter().find(|c| c.streams == 1).unwrap();
    let middle = net.relay_by_rsa(circ.path[1].rsa_id.as_bytes()).unwrap();
    // The middle dies: hop 1 destroys the circuit.
    net.kill_circuits_through(middle);
    let events = net.pump(&mut e);
    assert!(
        events.iter().any(|ev| matches!(ev,
        Event::StreamEnded { stream, error: Some(StreamError::CircuitFailed(_)) } if *stream == s))
    );
    assert!(events.iter().any(|ev| matches!(ev,
        Event::CircuitClosed { id, .. } if *id == circ.id)));
    assert!(e.circuits().iter().all(|c| c.id != circ.id));
    // The next stream works, on another circuit.
    let s2 = open_stream(&mut net, &mut e, 80, None);
    assert_eq!(echo(&mut net, &mut e, s2, b"again"), b"again");
    let now_used = e.circuits().into_iter().find(|c| c.streams == 1).unwrap();
    assert_ne!(now_used.id, circ.id);
    let _ = net.nick_of(&circ.path[1].rsa_id);
}

#[test]
fn stream_whose_circuit_dies_before_connected_is_retried_on_another() {
    let mut net = Net::new(5, 2);
    let cfg = EngineConfig {
        pool_size: 1,
        ..config()
    };
    let (mut e, _) = boot(&mut net, cfg, 11);
    let pool = e.circuits().into_iter().find(|c| c.built).unwrap();
    let middle = net.relay_by_rsa(pool.path[1].rsa_id.as_bytes()).unwrap();
    // The BEGIN is on its way when the middle dies and hop 1 destroys the circuit.
    let s = e.connect(net.now, "example.org", 80, None).unwrap();
    net.kill_circuits_through(middle);
    let events = net.pump(&mut e);
    assert!(
        events.iter().any(|ev| matches!(ev,
        Event::CircuitClosed { id, .. } if *id == pool.id)),
        "{events:?}"
    );
    assert!(
        !events
            .iter()
            .any(|ev| matches!(ev, Event::StreamEnded { stream, .. } if *stream == s)),
        "the stream is retried, not failed: {events:?}"
    );
    assert!(
        events.contains(&Event::StreamConnected { stream: s }),
        "{events:?}"
    );
    assert_eq!(echo(&mut net, &mut e, s, b"retried"), b"retried");
    let used = e.circuits().into_iter().find(|c| c.streams == 1).unwrap();
    assert_ne!(used.id, pool.id);
}

#[test]
fn isolation_keys_get_different_circuits() {
    let mut net = Net::new(5, 2);
    let (mut e, _) = boot(&mut net, config(), 6);
    let a1 = open_stream(&mut net, &mut e, 80, Some("alice"));
    let b1 = open_stream(&mut net, &mut e, 80, Some("bob"));
    let a2 = open_stream(&mut net, &mut e, 443, Some("alice"));
    let n1 = open_stream(&mut net, &mut e, 443, None);
    let circ_of = |e: &Engine<StdRng>, key: Option<&str>| -> Vec<(u64, usize)> {
        e.circuits()
            .iter()
            .filter(|c| c.dirty && c.isolation.as_deref() == key)
            .map(|c| (c.id, c.streams))
            .collect()
    };
    let alice = circ_of(&e, Some("alice"));
    let bob = circ_of(&e, Some("bob"));
    let none = circ_of(&e, None);
    assert_eq!(alice.len(), 1, "alice's two streams share one circuit");
    assert_eq!(alice[0].1, 2);
    assert_eq!(bob.len(), 1);
    assert_eq!(none.len(), 1);
    assert_ne!(alice[0].0, bob[0].0);
    assert_ne!(alice[0].0, none[0].0);
    for s in [a1, b1, a2, n1] {
        assert_eq!(echo(&mut net, &mut e, s, b"ping"), b"ping");
    }
    // One circuit per stream without one_circuit.
    let mut net = Net::new(5, 2);
    let cfg = EngineConfig {
        one_circuit: false,
        ..config()
    };
    let (mut e, _) = boot(&mut net, cfg, 7);
    let _x = open_stream(&mut net, &mut e, 80, Some("k"));
    let _y = open_stream(&mut net, &mut e, 80, Some("k"));
    let used: Vec<CircuitInfo> = e.circuits().into_iter().filter(|c| c.streams > 0).collect();
    assert_eq!(used.len(), 2);
    assert!(used.iter().all(|c| c.streams == 1));
}

#[test]
fn entry_with_another_ntor_key_is_refused() {
    let mut net = Net::new(4, 1);
    let mut desc = net.description();
    // The description pins a key the entry does not have.
    desc.entries[0].ntor_key =
        x25519_dalek::PublicKey::from(&StaticSecret::random_from_rng(&mut seeded_rng(77)));
    let mut e = Engine::new(desc, config(), seeded_rng(8), net.now).unwrap();
    let events = net.pump(&mut e);
    assert!(!e.is_ready());
    assert!(events.iter().any(|ev| matches!(ev,
        Event::CircuitFailed { error, .. } if error.contains("hop 1"))));
    let failed: Vec<&EngineError> = events
        .iter()
        .filter_map(|ev| match ev {
            Event::BootstrapFailed { error } => Some(error),
            _ => None,
        })
        .collect();
    assert_eq!(failed.len(), 1, "{events:?}");
    assert!(matches!(failed[0], EngineError::EntriesFailed(m) if m.contains("hop 1")));
    assert!(net.dir_requests.is_empty(), "nothing fetched through it");
    // Streams are refused until the retry.
    assert_eq!(
        e.connect(net.now, "example.org", 80, None),
        Err(EngineError::NotReady)
    );
}

#[test]
fn one_hop_and_five_hop_circuits() {
    for hops in [1u8, 5] {
        let mut net = Net::new(6, 1);
        let cfg = EngineConfig {
            hops,
            pool_size: 1,
            ..config()
        };
        let (mut e, events) = boot(&mut net, cfg, 10 + u64::from(hops));
        let exits: Vec<CircuitInfo> = built(&events)
            .into_iter()
            .filter(|c| c.purpose == CircuitPurpose::Exit)
            .collect();
        assert_eq!(exits.len(), 1);
        assert_eq!(exits[0].path.len(), usize::from(hops));
        let s = open_stream(&mut net, &mut e, 80, None);
        assert_eq!(echo(&mut net, &mut e, s, b"hops"), b"hops");
    }
}

#[test]
fn stream_before_ready_waits_and_engine_close_ends_streams() {
    let mut net = Net::new(4, 1);
    let mut e = Engine::new(net.description(), config(), seeded_rng(12), net.now).unwrap();
    // Before anything was exchanged.
    let s = e.connect(net.now, "example.org", 80, None).unwrap();
    let events = net.pump(&mut e);
    assert!(events.contains(&Event::StreamConnected { stream: s }));
    e.close(net.now);
    let events: Vec<Event> = std::iter::from_fn(|| e.poll_event()).collect();
    assert!(events.contains(&Event::StreamEnded {
        stream: s,
        error: Some(StreamError::EngineClosed)
    }));
    assert_eq!(
        e.connect(net.now, "example.org", 80, None),
        Err(EngineError::Closed)
    );
    assert_eq!(e.poll_timeout(), None);
}

#[test]
fn config_is_checked() {
    let net = Net::new(3, 1);
    for bad in [
        EngineConfig {
            hops: 0,
            ..config()
        },
        EngineConfig {
            hops: 6,
            ..config()
        },
        EngineConfig {
            transports: Transports {
                ws: false,
                tls: false,
            },
            ..config()
        },
        EngineConfig {
            pin_first: crate::certs::RsaIdentity::from_slice(&[1u8; 20]),
            ..config()
        },
    ] {
        assert!(matches!(
            Engine::new(net.description(), bad, seeded_rng(1), net.now),
            Err(EngineError::InvalidConfig(_))
        ));
    }
    // WebSocket only, but the entry has no ws URL.
    let ws_only = EngineConfig {
        transports: Transports {
            ws: true,
            tls: false,
        },
        ..config()
    };
    assert_eq!(
        Engine::new(net.description(), ws_only, seeded_rng(1), net.now).unwrap_err(),
        EngineError::NoUsableEntry
    );
}

/// The C tor fixtures of `dir`: a microdesc consensus of a private network, its authority
/// certificates, and its microdescriptors.
const TOR_CONSENSUS: &str = include_str!("../dir/testdata/consensus-microdesc.txt");
const TOR_CERTS: &str = include_str!("../dir/testdata/authority-certs.txt");
const TOR_MDS: &str = include_str!("../dir/testdata/microdescs.txt");
/// A time inside the fixture consensus's validity.
const TOR_NOW: u64 = 1_795_647_170;

/// A Tor-mode network: our in-memory entry serves the fixture documents over BEGIN_DIR.
fn tor_net(mds: &str) -> Net {
    let mut net = Net::new_at(2, 1, TOR_NOW);
    net.tor = Some((TOR_CONSENSUS.into(), TOR_CERTS.into(), mds.into()));
    net.now = TOR_NOW * 1000;
    net
}

fn tor_description(net: &Net, v3idents: &[&str]) -> NetworkDescription {
    let tor_authorities = v3idents
        .iter()
        .enumerate()
        .map(|(i, v3)| crate::netdesc::TorAuthority {
            nickname: format!("auth{i}"),
            v3ident: crate::certs::RsaIdentity::from_hex(v3).unwrap(),
            address: SocketAddr::from(([127, 0, 0, 1], 7000 + i as u16)),
            fingerprint: crate::certs::RsaIdentity::from_slice(&[i as u8; 20]).unwrap(),
        })
        .collect();
    NetworkDescription {
        name: "tornet".into(),
        entries: vec![net.entry_or(0)],
        directory: Directory::Tor(tor_authorities),
    }
}

const AUTHS: [&str; 3] = [
    "C874BB1F7B97D1906140E4444FC66A138CB2D84E",
    "C115713E4671EB2A2C6F5FAF54547906558D66BF",
    "8D985B0163B47E2F859194C976E7BF685CE1C5B8",
];

fn tor_boot(net: &mut Net, auths: &[&str]) -> (Engine<StdRng>, Vec<Event>) {
    let cfg = EngineConfig {
        pool_size: 0,
        ..config()
    };
    let mut e = Engine::new(tor_description(net, auths), cfg, seeded_rng(20), net.now).unwrap();
    let events = net.pump(&mut e);
    (e, events)
}

fn boot_error(events: &[Event]) -> Option<EngineError> {
    events.iter().find_map(|ev| match ev {
        Event::BootstrapFailed { error } => Some(error.clone()),
        _ => None,
    })
}

#[test]
fn tor_mode_bootstrap_from_a_c_tor_consensus() {
    let mut net = tor_net(TOR_MDS);
    let (e, events) = tor_boot(&mut net, &AUTHS);
    assert_eq!(boot_error(&events), None, "{events:?}");
    assert!(e.is_ready());
    assert_eq!(e.relay_count(), 6);
    assert_eq!(net.dir_requests.len(), 3, "{:?}", net.dir_requests);
    assert_eq!(
        net.dir_requests[0],
        "/tor/status-vote/current/consensus-microdesc.z"
    );
    assert_eq!(net.dir_requests[1], "/tor/keys/all.z");
    assert!(net.dir_requests[2].starts_with("/tor/micro/d/"));
    assert_eq!(
        net.dir_requests[2].matches('-').count(),
        5,
        "six digests in one batch"
    );
}

#[test]
fn tor_mode_refuses_bad_documents() {
    // Only one of the three configured authorities is one that signed: 1 of 3 is not more
    // than half.
    let mut net = tor_net(TOR_MDS);
    let others = [
        AUTHS[0],
        "0000000000000000000000000000000000000001",
        "0000000000000000000000000000000000000002",
    ];
    let (e, events) = tor_boot(&mut net, &others);
    assert!(!e.is_ready());
    let err = boot_error(&events).expect("bootstrap must fail");
    assert!(err.to_string().contains("signature"), "{err}");

    // Expired: the clock is a day after valid-until.
    let mut net = tor_net(TOR_MDS);
    net.now = (TOR_NOW + 86_400) * 1000;
    let (e, events) = tor_boot(&mut net, &AUTHS);
    assert!(!e.is_ready());
    let err = boot_error(&events).expect("bootstrap must fail");
    assert!(err.to_string().contains("xpired"), "{err}");

    // A microdescriptor altered in transit matches no digest: its relay is left out.
    let line = TOR_MDS
        .lines()
        .find(|l| l.starts_with("ntor-onion-key "))
        .unwrap();
    let key = line.trim_start_matches("ntor-onion-key ");
    let first = key.chars().next().unwrap();
    let other = if first == 'A' { 'B' } else { 'A' };
    let altered_line = format!("ntor-onion-key {other}{}", &key[1..]);
    let altered = TOR_MDS.replacen(line, &altered_line, 1);
    assert_ne!(altered, TOR_MDS);
    let mut net = tor_net(&altered);
    let (e, events) = tor_boot(&mut net, &AUTHS);
    assert_eq!(boot_error(&events), None);
    assert_eq!(e.relay_count(), 5);
    assert!(events.iter().any(|ev| matches!(ev,
        Event::Bootstrap { phase, .. } if phase.contains("1 left out") && phase.contains("wrong digest"))));
}

#[test]
fn failed_entry_switches_to_another() {
    let mut net = Net::new(5, 2);
    let mut desc = net.description();
    // Two entries; the first one's ORPort refuses connections.
    desc.entries = vec![net.entry_or(1), net.entry_or(0)];
    net.down = vec![1];
    let cfg = EngineConfig {
        pool_size: 1,
        ..config()
    };
    // Whichever entry is tried first, the engine ends up on the live one.
    let mut tried_down = 0;
    for seed in 0..6 {
        let mut net2 = Net::new(5, 2);
        net2.down = vec![1];
        let mut e = Engine::new(desc.clone(), cfg.clone(), seeded_rng(seed), net2.now).unwrap();
        let events = net2.pump(&mut e);
        assert!(e.is_ready(), "seed {seed}: {events:?}");
        let exits: Vec<CircuitInfo> = built(&events)
            .into_iter()
            .filter(|c| c.purpose == CircuitPurpose::Exit)
            .collect();
        assert_eq!(exits.len(), 1);
        assert_eq!(exits[0].path[0].nickname, "entry");
        let s = open_stream(&mut net2, &mut e, 80, None);
        assert_eq!(echo(&mut net2, &mut e, s, b"x"), b"x");
        if net2.connects == 2 {
            tried_down += 1;
        }
    }
    assert!(tried_down > 0, "the dead entry was never tried first");
    let _ = &mut net;
}

#[test]
fn slow_reader_holds_the_exit_to_one_stream_window() {
    let mut net = Net::new(4, 1);
    let (mut e, _) = boot(&mut net, config(), 30);
    let s = open_stream(&mut net, &mut e, 80, None);
    let data: Vec<u8> = (0..600_000u32).map(|i| (i % 253) as u8).collect();
    let mut sent = 0;
    let mut got: Vec<u8> = Vec::new();
    // Write everything, never consume.
    for _ in 0..10_000 {
        if sent == data.len() {
            break;
        }
        sent += e.stream_write(net.now, s, &data[sent..]).unwrap();
        for ev in net.pump(&mut e) {
            if let Event::StreamData { stream, data } = ev {
                assert_eq!(stream, s);
                got.extend_from_slice(&data);
            }
        }
        if got.len() >= 500 * 498 {
            break;
        }
    }
    for ev in net.pump(&mut e) {
        if let Event::StreamData { data, .. } = ev {
            got.extend_from_slice(&data);
        }
    }
    // At most one stream window (500 cells of 498 bytes) without SENDMEs.
    assert!(got.len() <= 500 * 498, "{} delivered unread", got.len());
    assert!(got.len() >= 450 * 498, "only {}", got.len());
    // The reader catches up: everything arrives, in order.
    let mut consumed = 0;
    let mut idle = 0;
    while got.len() < data.len() {
        if consumed < got.len() {
            e.stream_consumed(net.now, s, got.len() - consumed);
            consumed = got.len();
        }
        if sent < data.len() {
            sent += e.stream_write(net.now, s, &data[sent..]).unwrap();
        }
        let before = got.len();
        for ev in net.pump(&mut e) {
            if let Event::StreamData { data, .. } = ev {
                got.extend_from_slice(&data);
            }
        }
        if got.len() == before {
            idle += 1;
            assert!(idle < 5, "stalled at {}", got.len());
        }
    }
    assert!(got == data);
}

#[test]
fn directory_is_refreshed_before_it_expires() {
    let mut net = Net::new(4, 1);
    let cfg = EngineConfig {
        pool_size: 1,
        ..config()
    };
    let (mut e, _) = boot(&mut net, cfg, 31);
    assert_eq!(net.dir_requests.len(), 1);
    // The list is valid 3 hours: fetched again after 3/4 of that, before expiry.
    net.list = net.signed_list(&net.auth.clone(), "testnet", NOW + 7000, NOW + 7 * 3600);
    net.advance(&mut e, 2 * 3600 * 1000);
    assert_eq!(net.dir_requests.len(), 1);
    net.advance(&mut e, 3600 * 1000);
    assert_eq!(net.dir_requests.len(), 2);
    assert!(e.is_ready());
    let s = open_stream(&mut net, &mut e, 80, None);
    assert_eq!(echo(&mut net, &mut e, s, b"still"), b"still");
}

#[test]
fn create_fast_ws_on_hop_one_when_configured() {
    let mut net = Net::new(4, 1);
    let cfg = EngineConfig {
        create_fast_ws: true,
        pool_size: 1,
        ..config()
    };
    let (mut e, events) = boot(&mut net, cfg, 32);
    let exits: Vec<CircuitInfo> = built(&events)
        .into_iter()
        .filter(|c| c.purpose == CircuitPurpose::Exit)
        .collect();
    assert_eq!(exits.len(), 1);
    assert_eq!(
        exits[0].path[0].handshake,
        Some(crate::handshake::HandshakeKind::CreateFastWs)
    );
    assert_ne!(
        exits[0].path[1].handshake,
        Some(crate::handshake::HandshakeKind::CreateFastWs)
    );
    let s = open_stream(&mut net, &mut e, 80, None);
    assert_eq!(echo(&mut net, &mut e, s, b"fast"), b"fast");
}

#[test]
fn dirty_circuit_retired_after_its_lifetime() {
    let mut net = Net::new(5, 2);
    let cfg = EngineConfig {
        pool_size: 1,
        circuit_lifetime_ms: 100_000,
        circuit_keepalive_ms: 1_000_000,
        ..config()
    };
    let (mut e, _) = boot(&mut net, cfg, 33);
    let s1 = open_stream(&mut net, &mut e, 80, None);
    let first = e.circuits().into_iter().find(|c| c.dirty).unwrap().id;
    // Within the lifetime a new stream shares it.
    let s2 = open_stream(&mut net, &mut e, 80, None);
    assert_eq!(
        e.circuits().iter().find(|c| c.id == first).unwrap().streams,
        2
    );
    e.stream_close(net.now, s2);
    net.pump(&mut e);
    // After it, new streams go elsewhere; the old one lives while s1 does.
    net.advance(&mut e, 100_001);
    let s3 = open_stream(&mut net, &mut e, 80, None);
    let c = e.circuits();
    assert_eq!(c.iter().find(|c| c.id == first).unwrap().streams, 1);
    assert!(c.iter().any(|c| c.id != first && c.streams == 1));
    assert_eq!(echo(&mut net, &mut e, s1, b"old"), b"old");
    e.stream_close(net.now, s1);
    let events = net.pump(&mut e);
    assert!(e.circuits().iter().all(|c| c.id != first));
    assert!(
        events
            .iter()
            .any(|ev| matches!(ev, Event::CircuitClosed { id, .. } if *id == first))
    );
    assert_eq!(echo(&mut net, &mut e, s3, b"new"), b"new");
}

#[test]
fn new_identity_gives_new_streams_fresh_circuits() {
    let mut net = Net::new(5, 2);
    let cfg = EngineConfig {
        pool_size: 2,
        ..config()
    };
    let (mut e, _) = boot(&mut net, cfg, 34);
    let s1 = open_stream(&mut net, &mut e, 80, None);
    let before: Vec<u64> = e.circuits().iter().map(|c| c.id).collect();
    let used = e
        .circuits()
        .into_iter()
        .find(|c| c.streams == 1)
        .unwrap()
        .id;
    e.new_identity(net.now);
    let events = net.pump(&mut e);
    // Idle circuits are gone, the used one stays for its stream, the pool is rebuilt.
    let after = e.circuits();
    assert!(after.iter().any(|c| c.id == used));
    let fresh: Vec<&CircuitInfo> = after.iter().filter(|c| !before.contains(&c.id)).collect();
    assert_eq!(fresh.len(), 2, "{events:?}");
    let s2 = open_stream(&mut net, &mut e, 80, None);
    let of_s2 = e
        .circuits()
        .into_iter()
        .find(|c| c.streams == 1 && c.id != used)
        .unwrap();
    assert!(!before.contains(&of_s2.id));
    assert_eq!(echo(&mut net, &mut e, s1, b"a"), b"a");
    assert_eq!(echo(&mut net, &mut e, s2, b"b"), b"b");
}

#[test]
fn link_loss_fails_streams_and_reconnects() {
    let mut net = Net::new(5, 2);
    let cfg = EngineConfig {
        pool_size: 1,
        ..config()
    };
    let (mut e, _) = boot(&mut net, cfg, 35);
    let s = open_stream(&mut net, &mut e, 80, None);
    let conn = *net.links.keys().next().unwrap();
    net.links.remove(&conn);
    e.on_closed(conn, net.now, "reset by peer");
    let events = net.pump(&mut e);
    assert!(events.iter().any(|ev| matches!(ev,
        Event::StreamEnded { stream, error: Some(StreamError::CircuitFailed(m)) }
            if *stream == s && m.contains("reset by peer"))));
    // A new link, a new pool circuit, and streams work again.
    assert_eq!(net.connects, 2);
    let s2 = open_stream(&mut net, &mut e, 80, None);
    assert_eq!(echo(&mut net, &mut e, s2, b"back"), b"back");
}

#[test]
fn bytes_split_anywhere_are_reassembled() {
    for split in [1usize, 7, 513] {
        let mut net = Net::new(4, 1);
        net.split = split;
        let cfg = EngineConfig {
            pool_size: 1,
            ..config()
        };
        let (mut e, _) = boot(&mut net, cfg, 40 + split as u64);
        assert!(e.is_ready(), "split {split}");
        let s = open_stream(&mut net, &mut e, 80, None);
        let data: Vec<u8> = (0..5_000u32).map(|i| (i % 249) as u8).collect();
        assert!(echo(&mut net, &mut e, s, &data) == data, "split {split}");
    }
}

#[test]
fn websocket_entry_is_authenticated_by_its_ntor_key() {
    let mut net = Net::new(4, 1);
    let mut desc = net.description();
    let url = format!("ws://{}/", net.relays[0].addr);
    desc.entries[0].ws = Some(crate::netdesc::WebUrl::parse(&url).unwrap());
    let cfg = EngineConfig {
        transports: Transports {
            ws: true,
            tls: false,
        },
        pool_size: 1,
        ..EngineConfig::default()
    };
    let mut e = Engine::new(desc.clone(), cfg.clone(), seeded_rng(50), net.now).unwrap();
    let events = net.pump(&mut e);
    assert!(e.is_ready(), "{events:?}");
    let exit = built(&events)
        .into_iter()
        .find(|c| c.purpose == CircuitPurpose::Exit)
        .unwrap();
    assert!(exit.path[0].addresses.contains(&url));
    let s = open_stream(&mut net, &mut e, 80, None);
    assert_eq!(echo(&mut net, &mut e, s, b"ws"), b"ws");

    // Over WebSocket the link proves nothing by itself: a wrong pinned ntor key is caught by
    // the circuit handshake.
    let mut net = Net::new(4, 1);
    desc.entries[0].ntor_key =
        x25519_dalek::PublicKey::from(&StaticSecret::random_from_rng(&mut seeded_rng(78)));
    let mut e = Engine::new(desc, cfg, seeded_rng(51), net.now).unwrap();
    let events = net.pump(&mut e);
    assert!(!e.is_ready());
    assert!(
        events
            .iter()
            .any(|ev| matches!(ev, Event::BootstrapFailed { .. }))
    );
}

#[test]
fn relay_list_fetched_from_the_authority_or() {
    let mut net = Net::new(5, 2);
    let mut desc = net.description();
    let Directory::Own(auth) = &mut desc.directory else {
        unreachable!()
    };
    auth.or = Some(net.entry_or(2));
    let cfg = EngineConfig {
        pool_size: 1,
        ..config()
    };
    let mut e = Engine::new(desc, cfg, seeded_rng(52), net.now).unwrap();
    let events = net.pump(&mut e);
    assert!(e.is_ready());
    let dir = built(&events)
        .into_iter()
        .find(|c| c.purpose == CircuitPurpose::Directory)
        .unwrap();
    assert_eq!(dir.path.len(), 1);
    assert_eq!(dir.path[0].nickname, net.relays[2].nick);
    // Exit circuits still enter through the entry.
    let exit = built(&events)
        .into_iter()
        .find(|c| c.purpose == CircuitPurpose::Exit)
        .unwrap();
    assert_eq!(exit.path[0].nickname, "entry");
    assert_eq!(net.connects, 2);
    // The link to the authority's OR is closed once the list is in.
    assert_eq!(net.links.len(), 1);
    assert_eq!(net.links.values().next().unwrap().relay, 0);
}

#[test]
fn directory_errors_switch_entry_then_fail() {
    // Two entries; the directory answers 404 everywhere: both are tried, then the bootstrap
    // fails with the HTTP error.
    let mut net = Net::new(4, 1);
    net.tor = Some((String::new(), String::new(), String::new()));
    let mut desc = net.description();
    desc.entries = vec![net.entry_or(0), net.entry_or(1)];
    let mut e = Engine::new(desc, config(), seeded_rng(60), net.now).unwrap();
    let events = net.pump(&mut e);
    assert_eq!(net.dir_requests.len(), 2, "{:?}", net.dir_requests);
    assert_eq!(net.connects, 2);
    let err = boot_error(&events).expect("bootstrap must fail");
    assert!(err.to_string().contains("404"), "{err}");
}

#[test]
fn forced_handshakes_tap_and_create_fast() {
    use crate::handshake::HandshakeKind as K;
    for (kind, hop1, later) in [
        (K::Tap, K::Tap, K::Tap),
        (K::Ntor, K::Ntor, K::Ntor),
        (K::CreateFast, K::CreateFast, K::NtorV3),
    ] {
        let mut net = Net::new(4, 1);
        let cfg = EngineConfig {
            handshake: Some(kind),
            pool_size: 1,
            ..config()
        };
        let (mut e, events) = boot(&mut net, cfg, 70);
        let exit = built(&events)
            .into_iter()
            .find(|c| c.purpose == CircuitPurpose::Exit)
            .unwrap();
        assert_eq!(exit.path[0].handshake, Some(hop1));
        assert_eq!(exit.path[1].handshake, Some(later));
        assert_eq!(exit.path[2].handshake, Some(later));
        let s = open_stream(&mut net, &mut e, 80, None);
        assert_eq!(echo(&mut net, &mut e, s, b"seed"), b"seed");
    }
}
