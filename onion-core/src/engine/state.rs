//! [`Engine`]: the state and the public API. See the [module documentation](super).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use onion_cell::chancell::{ChanCell, ChanMsg, CircId, Destroy, DestroyReason};
use onion_cell::relaycell::{Address, BeginFlags, EndReason, StreamId};
use rand_core::CryptoRng;

use super::bootstrap::{self, DirDoc};
use super::circ::{Circ, CircState, Fetch, Owner, PathHop, Request, StreamState, UserStream};
use super::link::{Link, LinkState};
use super::{
    Action, CircuitInfo, CircuitPurpose, ConnId, EngineConfig, EngineError, Event, HopInfo, NowMs,
    StreamError, StreamHandle, Transport,
};
use crate::certs::{ExpectedIdentity, RsaIdentity};
use crate::channel::{Initiator, InitiatorConfig, PeerAuth, TlsBinding};
use crate::client::{
    CircuitConfig, ClientCircuit, ClientEvent, CloseReason, HandshakeKind, HopTarget,
    StreamEndReason,
};
use crate::dir::{AuthorityCert, Consensus, Microdesc, RelayFlags};
use crate::http::{Limits, Request as HttpRequest, ResponseCollector};
use crate::netdesc::{Directory, EntryOr, NetworkDescription};
use crate::path::{
    BuildTimeEstimator, FirstHop, PathConfig, Position, RelayInfo, RelaySet, TimeoutConfig,
    select_path,
};

// The seed's iAnonym mode (a child module: it uses the engine's internals).
#[path = "seed.rs"]
pub(super) mod seed;

// The seed's RELAY_INFO (a child module: it uses the engine's internals).
#[path = "relay_info.rs"]
pub(super) mod relay_info;

/// How long a failed entry OR is avoided.
const ENTRY_BACKOFF_MS: u64 = 60_000;
/// How long a relay that timed out during an extension is avoided.
const RELAY_BACKOFF_MS: u64 = 600_000;
/// When a failed bootstrap is tried again.
const BOOT_RETRY_MS: u64 = 60_000;
/// Longest wait between pool build attempts after failures.
const POOL_BACKOFF_MAX_MS: u64 = 60_000;
/// Sends merged by [`Engine::poll_action`] (and data merged by [`Engine::poll_event`]) stop
/// growing at this size.
const MAX_MERGED_SEND: usize = 64 << 10;
/// A failed directory refresh is retried after this.
const REFRESH_RETRY_MS: u64 = 60_000;

/// Where the bootstrap is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Boot {
    /// Fetching (the directory circuit is `DirJob::circ`).
    Fetching,
    /// A directory is loaded.
    Ready,
    /// Failed; tried again at `retry_at`.
    Failed { retry_at: NowMs },
}

/// The directory fetch in progress.
#[derive(Debug, Default)]
struct DirJob {
    /// The one-hop circuit.
    circ: Option<u64>,
    /// Documents still to fetch, in order.
    docs: VecDeque<DirDoc>,
    /// Until when it may run.
    deadline: NowMs,
    /// Directory circuits that failed in this job.
    circuit_failures: u32,
    /// Tor mode: the consensus fetched, not yet accepted.
    consensus: Option<Consensus>,
    /// Tor mode: authority certificates.
    certs: Vec<AuthorityCert>,
    /// Tor mode: microdescriptors fetched.
    mds: Vec<Microdesc>,
    /// Tor mode: number of microdescriptor batches, for progress.
    md_batches: usize,
}

/// The loaded directory.
#[derive(Debug, Default)]
struct Dir {
    relays: Option<RelaySet>,
    /// Refuse relays of one /16 on a path.
    subnets: bool,
    /// When to fetch again.
    refresh_at: NowMs,
    /// The consensus `sendme_accept_min_version`.
    sendme_min: u8,
    /// Tor mode: microdescriptors kept for the next refresh.
    mds: Vec<Microdesc>,
}

/// The client engine. See the [module documentation](super).
pub struct Engine<R: CryptoRng> {
    rng: R,
    network: NetworkDescription,
    config: EngineConfig,
    actions: VecDeque<Action>,
    events: VecDeque<Event>,
    closed: bool,

    links: BTreeMap<ConnId, Link>,
    next_conn: u64,
    /// Entry ORs avoided until the given time.
    entry_backoff: BTreeMap<RsaIdentity, NowMs>,
    /// Relays avoided until the given time.
    relay_backoff: BTreeMap<RsaIdentity, NowMs>,
    last_entry_error: Option<String>,

    circs: BTreeMap<u64, Circ>,
    next_circ: u64,
    epoch: u64,
    estimator: BuildTimeEstimator,
    pool_failures: u32,
    pool_retry_at: NowMs,
    first_circuit_built: bool,

    streams: BTreeMap<StreamHandle, UserStream>,
    next_stream: u64,

    boot: Boot,
    job: Option<DirJob>,
    dir: Dir,
    /// The seed's association ([`Engine::associate`]).
    seed: Option<seed::Seed>,
    /// RELAY_INFO exchanges ([`EngineConfig::use_relay_info`]).
    relay_info: relay_info::Exchanges,
}

impl<R: CryptoRng> std::fmt::Debug for Engine<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("network", &self.network.name)
            .field("boot", &self.boot)
            .field("links", &self.links.len())
            .field("circuits", &self.circs.len())
            .field("streams", &self.streams.len())
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

/// Seconds from milliseconds.
fn secs(now: NowMs) -> u64 {
    now / 1000
}

/// What a hop looks like in events.
fn hop_info(relay: &RelayInfo, ws: Option<&str>, kind: Option<HandshakeKind>) -> HopInfo {
    let mut addresses: Vec<String> = Vec::new();
    if let Some(a) = relay.ipv4 {
        addresses.push(a.to_string());
    }
    if let Some(a) = relay.ipv6 {
        addresses.push(a.to_string());
    }
    if let Some(u) = ws {
        addresses.push(u.to_owned());
    }
    HopInfo {
        nickname: relay.nickname.clone(),
        rsa_id: relay.rsa_id,
        addresses,
        handshake: kind,
    }
}

/// Whether two relays may be on one path.
fn compatible(a: &RelayInfo, b: &RelayInfo, subnets: bool) -> bool {
    !(a.same_relay(b) || a.same_family(b) || (subnets && a.same_subnet(b)))
}

impl<R: CryptoRng> Engine<R> {
    /// An engine for `network`; the bootstrap starts at once (drain [`Engine::poll_action`]).
    pub fn new(
        network: NetworkDescription,
        config: EngineConfig,
        rng: R,
        now: NowMs,
    ) -> Result<Self, EngineError> {
        config.check()?;
        if let Some(pin) = config.pin_first
            && !network.entries.iter().any(|e| e.rsa_id == pin)
        {
            return Err(EngineError::InvalidConfig(
                "pin_first is not an entry of the network description",
            ));
        }
        let timeouts = TimeoutConfig {
            initial_ms: u32::try_from(config.hop_timeout_ms).unwrap_or(u32::MAX),
            ceiling_ms: u32::try_from(config.hop_timeout_ms)
                .unwrap_or(u32::MAX)
                .max(TimeoutConfig::default().ceiling_ms),
            floor_ms: TimeoutConfig::default()
                .floor_ms
                .min(u32::try_from(config.hop_timeout_ms).unwrap_or(u32::MAX)),
            ..TimeoutConfig::default()
        };
        let mut engine = Engine {
            rng,
            network,
            config,
            actions: VecDeque::new(),
            events: VecDeque::new(),
            closed: false,
            links: BTreeMap::new(),
            next_conn: 1,
            entry_backoff: BTreeMap::new(),
            relay_backoff: BTreeMap::new(),
            last_entry_error: None,
            circs: BTreeMap::new(),
            next_circ: 1,
            epoch: 0,
            estimator: BuildTimeEstimator::new(timeouts),
            pool_failures: 0,
            pool_retry_at: 0,
            first_circuit_built: false,
            streams: BTreeMap::new(),
            next_stream: 1,
            boot: Boot::Fetching,
            job: None,
            dir: Dir::default(),
            seed: None,
            relay_info: relay_info::Exchanges::new(),
        };
        if engine.usable_entries(now).is_empty() {
            return Err(EngineError::NoUsableEntry);
        }
        engine.progress(0, "starting");
        engine.start_bootstrap(now);
        Ok(engine)
    }

    // ===== driver API =====================================================================

    /// The transport `conn` is open. `tls` is [`TlsBinding::Tls`] with the SHA-256 of the
    /// certificate the ORPort presented, [`TlsBinding::None`] for a WebSocket.
    pub fn on_connected(&mut self, conn: ConnId, now: NowMs, tls: TlsBinding) {
        if self.closed {
            return;
        }
        let Some(link) = self.links.get_mut(&conn) else {
            return;
        };
        if !matches!(link.state, LinkState::Connecting) {
            return;
        }
        let expected = ExpectedIdentity {
            rsa: Some(link.entry.rsa_id),
            ed25519: link.entry.ed25519_id,
        };
        let peer_addr = match tls {
            TlsBinding::Tls { .. } => link.entry.tls.map(|a| a.ip()),
            TlsBinding::None => None,
        };
        let cfg = InitiatorConfig::new(tls, expected, peer_addr);
        match Initiator::new(cfg, None, secs(now), &mut self.rng) {
            Ok(mut init) => {
                while let Some(data) = init.poll_transmit() {
                    self.actions.push_back(Action::Send { conn, data });
                }
                link.state = LinkState::Handshaking(Box::new(init));
            }
            Err(e) => {
                self.link_failed(conn, now, &format!("link handshake: {e}"), true);
            }
        }
        self.maintain(now);
    }

    /// Bytes received on `conn`.
    pub fn on_data(&mut self, conn: ConnId, now: NowMs, data: &[u8]) {
        if self.closed {
            return;
        }
        let mut input = data;
        let mut cells: Vec<ChanCell> = Vec::new();
        let mut failure: Option<String> = None;
        let mut opened = None;
        {
            let Some(link) = self.links.get_mut(&conn) else {
                return;
            };
            if let LinkState::Handshaking(init) = &mut link.state {
                match init.handle_input(secs(now), input) {
                    Ok(n) => {
                        input = input.get(n..).unwrap_or_default();
                        while let Some(out) = init.poll_transmit() {
                            self.actions.push_back(Action::Send { conn, data: out });
                        }
                        if init.is_done() {
                            let LinkState::Handshaking(init) =
                                std::mem::replace(&mut link.state, LinkState::Connecting)
                            else {
                                return;
                            };
                            match init.finish() {
                                Ok((chan, info)) => {
                                    link.state = LinkState::Open(Box::new(chan));
                                    opened = Some(info);
                                }
                                Err(e) => failure = Some(format!("link handshake: {e}")),
                            }
                        } else if !input.is_empty() {
                            failure = Some("link handshake stalled".into());
                        }
                    }
                    Err(e) => failure = Some(format!("link handshake: {e}")),
                }
            }
            if failure.is_none()
                && let LinkState::Open(chan) = &mut link.state
            {
                loop {
                    let n = chan.handle_input(input);
                    input = input.get(n..).unwrap_or_default();
                    let mut got = false;
                    loop {
                        match chan.poll_cell() {
                            Ok(Some(cell)) => {
                                cells.push(cell);
                                got = true;
                            }
                            Ok(None) => break,
                            Err(e) => {
                                failure = Some(format!("link: {e}"));
                                break;
                            }
                        }
                    }
                    if failure.is_some() || input.is_empty() || (n == 0 && !got) {
                        break;
                    }
                }
            }
        }
        if let Some(info) = opened {
            let entry_ok = self.links.get(&conn).is_some_and(|l| match info.peer {
                PeerAuth::Authenticated { rsa_id, .. }
                | PeerAuth::CertifiedNotBound { rsa_id, .. } => rsa_id == l.entry.rsa_id,
                PeerAuth::Unauthenticated => false,
            });
            if entry_ok {
                self.link_opened(conn, now);
            } else {
                failure = Some("the entry OR did not prove its identity".into());
            }
        }
        for cell in cells {
            self.on_cell(conn, cell, now);
        }
        if let Some(why) = failure {
            self.link_failed(conn, now, &why, true);
        }
        self.maintain(now);
    }

    /// `conn` closed (or could not be opened).
    pub fn on_closed(&mut self, conn: ConnId, now: NowMs, reason: &str) {
        if self.closed {
            return;
        }
        let was_open = self.links.get(&conn).is_some_and(Link::is_open);
        // A link that never opened is the entry's failure (avoided a while); one that closes
        // later may just be the network: the next circuit reconnects.
        let why = if was_open {
            format!("link closed: {reason}")
        } else {
            format!("cannot connect: {reason}")
        };
        self.link_gone(conn, now, &why, !was_open, false);
        self.maintain(now);
    }

    /// The earliest time [`Engine::handle_timeout`] must be called.
    pub fn poll_timeout(&self) -> Option<NowMs> {
        if self.closed {
            return None;
        }
        let mut t: Option<NowMs> = None;
        let mut at = |x: NowMs| t = Some(t.map_or(x, |t| t.min(x)));
        for l in self.links.values() {
            if !l.is_open() {
                at(l.deadline);
            }
        }
        for c in self.circs.values() {
            if let Some(d) = c.hop_deadline {
                at(d);
            }
            if let Some(b) = c.built_at
                && c.purpose == CircuitPurpose::Exit
            {
                if c.isolation.is_none() {
                    at(b.saturating_add(self.config.circuit_keepalive_ms));
                }
                // A dirty circuit is closed once expired and unused (until then its streams
                // run; `after_user_stream_left` closes it when the last one ends).
                if let Some(d) = c.dirty_since
                    && c.user_streams() == 0
                {
                    at(d.saturating_add(self.config.circuit_lifetime_ms));
                }
            }
        }
        for s in self.streams.values() {
            at(s.deadline);
        }
        match self.boot {
            Boot::Failed { retry_at } => at(retry_at),
            Boot::Ready => {
                if self.job.is_none() {
                    at(self.dir.refresh_at);
                }
                if self.pool_deficit() > 0 {
                    at(self.pool_retry_at);
                }
            }
            Boot::Fetching => {}
        }
        if let Some(j) = &self.job {
            at(j.deadline);
        }
        t
    }

    /// Time passed: run the timers due at `now`.
    pub fn handle_timeout(&mut self, now: NowMs) {
        if self.closed {
            return;
        }
        // Links that did not open in time.
        let late: Vec<ConnId> = self
            .links
            .iter()
            .filter(|(_, l)| !l.is_open() && l.deadline <= now)
            .map(|(c, _)| *c)
            .collect();
        for conn in late {
            self.link_failed(conn, now, "connection or link handshake timed out", true);
        }
        // Hops that did not answer in time.
        let late: Vec<u64> = self
            .circs
            .values()
            .filter(|c| c.hop_deadline.is_some_and(|d| d <= now))
            .map(|c| c.id)
            .collect();
        for id in late {
            self.hop_timed_out(id, now);
        }
        // Streams that waited too long.
        let late: Vec<StreamHandle> = self
            .streams
            .iter()
            .filter(|(_, s)| s.deadline <= now)
            .map(|(h, _)| *h)
            .collect();
        for h in late {
            let err = match self
                .streams
                .get(&h)
                .map(|s| (s.state, s.last_error.clone()))
            {
                Some((StreamState::Waiting { .. }, Some(e))) => StreamError::NoCircuit(e),
                _ => StreamError::Timeout,
            };
            self.end_user_stream(h, now, Some(err), true);
        }
        // The directory fetch.
        if self.job.as_ref().is_some_and(|j| j.deadline <= now) {
            self.dir_job_failed(now, EngineError::DirectoryTimeout);
        }
        match self.boot {
            Boot::Failed { retry_at } if retry_at <= now => {
                self.boot = Boot::Fetching;
                self.progress(0, "retrying the bootstrap");
                self.start_bootstrap(now);
            }
            Boot::Ready if self.job.is_none() && self.dir.refresh_at <= now => {
                self.start_bootstrap(now);
            }
            _ => {}
        }
        // Renew idle pool circuits, retire expired dirty ones.
        let keepalive = self.config.circuit_keepalive_ms;
        let lifetime = self.config.circuit_lifetime_ms;
        let old: Vec<(u64, &'static str)> = self
            .circs
            .values()
            .filter(|c| c.purpose == CircuitPurpose::Exit)
            .filter_map(|c| {
                let built = c.built_at?;
                if c.isolation.is_none() && built.saturating_add(keepalive) <= now {
                    Some((c.id, "renewed (keepalive)"))
                } else if c.user_streams() == 0
                    && c.dirty_since
                        .is_some_and(|d| d.saturating_add(lifetime) <= now)
                {
                    Some((c.id, "retired (lifetime)"))
                } else {
                    None
                }
            })
            .collect();
        for (id, why) in old {
            self.teardown(id, now, why, true);
        }
        self.maintain(now);
    }

    /// The next thing for the driver to do. Consecutive sends on one connection come merged
    /// (whole cells, in order).
    pub fn poll_action(&mut self) -> Option<Action> {
        let mut a = self.actions.pop_front()?;
        if let Action::Send { conn, data } = &mut a {
            while let Some(Action::Send { conn: next, .. }) = self.actions.front() {
                if next != conn || data.len() >= MAX_MERGED_SEND {
                    break;
                }
                if let Some(Action::Send { data: more, .. }) = self.actions.pop_front() {
                    data.extend_from_slice(&more);
                }
            }
        }
        Some(a)
    }

    /// The next event for the user. Consecutive [`Event::StreamData`] of one stream come
    /// merged (up to 64 KiB).
    pub fn poll_event(&mut self) -> Option<Event> {
        let mut ev = self.events.pop_front()?;
        if let Event::StreamData { stream, data } = &mut ev {
            while let Some(Event::StreamData { stream: next, .. }) = self.events.front() {
                if next != stream || data.len() >= MAX_MERGED_SEND {
                    break;
                }
                if let Some(Event::StreamData { data: more, .. }) = self.events.pop_front() {
                    data.extend_from_slice(&more);
                }
            }
        }
        Some(ev)
    }

    // ===== user API =======================================================================

    /// Open a stream to `host:port` (a host name or an IP literal, IPv6 with or without
    /// brackets) through the exit of a circuit (RELAY_BEGIN). Streams with different
    /// `isolation` keys never share a circuit. [`Event::StreamConnected`] or
    /// [`Event::StreamEnded`] follows. Streams opened before the directory is ready wait for
    /// it.
    pub fn connect(
        &mut self,
        now: NowMs,
        host: &str,
        port: u16,
        isolation: Option<&str>,
    ) -> Result<StreamHandle, EngineError> {
        let addr = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => Address::from(ip),
            Err(_) => Address::parse(host)
                .map_err(|_| EngineError::InvalidTarget(format!("bad host {host:?}")))?,
        };
        if port == 0 {
            return Err(EngineError::InvalidTarget("port 0".into()));
        }
        self.new_stream(now, Request::Connect { addr, port }, isolation)
    }

    /// Resolve `host` at an exit (RELAY_RESOLVE); [`Event::Resolved`] or
    /// [`Event::StreamEnded`] follows.
    pub fn resolve(
        &mut self,
        now: NowMs,
        host: &str,
        isolation: Option<&str>,
    ) -> Result<StreamHandle, EngineError> {
        if host.is_empty() || host.len() > 255 || host.bytes().any(|b| b == 0) {
            return Err(EngineError::InvalidTarget(format!("bad host {host:?}")));
        }
        let query = host.to_owned();
        self.new_stream(now, Request::Resolve { query }, isolation)
    }

    /// Send bytes on a stream: returns how many were taken (maybe fewer than offered, maybe
    /// 0, e.g. before CONNECTED); offer the rest after [`Event::StreamWritable`].
    pub fn stream_write(
        &mut self,
        now: NowMs,
        stream: StreamHandle,
        data: &[u8],
    ) -> Result<usize, EngineError> {
        if self.closed {
            return Err(EngineError::Closed);
        }
        let Some(s) = self.streams.get_mut(&stream) else {
            return Err(EngineError::NoSuchStream(stream));
        };
        if data.is_empty() {
            return Ok(0);
        }
        let StreamState::Attached {
            circ,
            stream: sid,
            connected: true,
        } = s.state
        else {
            s.want_writable = true;
            return Ok(0);
        };
        let result = match self.circs.get_mut(&circ).and_then(Circ::live) {
            Some(c) => c.send_data(&mut self.rng, sid, data),
            None => return Err(EngineError::NoSuchStream(stream)),
        };
        self.flush(circ);
        let n = match result {
            Ok(n) => n,
            Err(e) if e.is_fatal() => {
                self.circuit_error(circ, now, &e.to_string());
                self.maintain(now);
                return Err(EngineError::NoSuchStream(stream));
            }
            Err(_) => 0,
        };
        if n < data.len()
            && let Some(s) = self.streams.get_mut(&stream)
        {
            s.want_writable = true;
        }
        self.check_writable(circ);
        Ok(n)
    }

    /// The user read `bytes` of the data delivered on `stream` ([`Event::StreamData`]): this
    /// paces the stream's SENDMEs.
    pub fn stream_consumed(&mut self, now: NowMs, stream: StreamHandle, bytes: usize) {
        let Some(StreamState::Attached {
            circ, stream: sid, ..
        }) = self.streams.get(&stream).map(|s| s.state)
        else {
            return;
        };
        let result = match self.circs.get_mut(&circ).and_then(Circ::live) {
            Some(c) => c.stream_consumed(&mut self.rng, sid, bytes),
            None => return,
        };
        self.flush(circ);
        if let Err(e) = result
            && e.is_fatal()
        {
            self.circuit_error(circ, now, &e.to_string());
        }
        self.maintain(now);
    }

    /// Close a stream from our side (RELAY_END). No event follows.
    pub fn stream_close(&mut self, now: NowMs, stream: StreamHandle) {
        self.end_user_stream(stream, now, None, false);
        self.maintain(now);
    }

    /// New streams get fresh circuits; streams already open run to completion.
    pub fn new_identity(&mut self, now: NowMs) {
        self.epoch = self.epoch.wrapping_add(1);
        let idle: Vec<u64> = self
            .circs
            .values()
            .filter(|c| c.purpose == CircuitPurpose::Exit && c.user_streams() == 0)
            .filter(|c| {
                !self
                    .streams
                    .values()
                    .any(|s| s.state == StreamState::Waiting { circ: Some(c.id) })
            })
            .map(|c| c.id)
            .collect();
        for id in idle {
            self.teardown(id, now, "new identity", true);
        }
        self.maintain(now);
    }

    /// The circuits, built or being built.
    pub fn circuits(&self) -> Vec<CircuitInfo> {
        self.circs.values().map(Circ::info).collect()
    }

    /// Whether the directory is loaded (circuits can be built).
    pub fn is_ready(&self) -> bool {
        !self.closed && self.dir.relays.is_some()
    }

    /// The relays of the loaded directory.
    pub fn relay_count(&self) -> usize {
        self.dir.relays.as_ref().map_or(0, RelaySet::len)
    }

    /// Close everything: streams end ([`StreamError::EngineClosed`]), circuits are
    /// destroyed, connections closed.
    pub fn close(&mut self, now: NowMs) {
        if self.closed {
            return;
        }
        let handles: Vec<StreamHandle> = self.streams.keys().copied().collect();
        for h in handles {
            self.end_user_stream(h, now, Some(StreamError::EngineClosed), true);
        }
        let ids: Vec<u64> = self.circs.keys().copied().collect();
        for id in ids {
            self.teardown(id, now, "engine closed", true);
        }
        // The association's requests and end (their streams' events are swallowed).
        self.seed_pump(now);
        let conns: Vec<ConnId> = self.links.keys().copied().collect();
        for conn in conns {
            self.links.remove(&conn);
            self.actions.push_back(Action::Close { conn });
        }
        self.job = None;
        self.closed = true;
    }

    // ===== events =========================================================================

    fn progress(&mut self, percent: u8, phase: &str) {
        self.events.push_back(Event::Bootstrap {
            percent,
            phase: phase.to_owned(),
        });
    }

    // ===== entries and links ==============================================================

    /// The transport to reach `e` with, if the driver offers one.
    fn transport_for(&self, e: &EntryOr) -> Option<Transport> {
        let t = self.config.transports;
        match (&e.ws, e.tls) {
            (Some(url), _) if t.ws => Some(Transport::WebSocket(url.clone())),
            (_, Some(addr)) if t.tls => Some(Transport::Tls(addr)),
            _ => None,
        }
    }

    /// The entries usable now (pinned one only with `pin_first`), not avoided.
    fn usable_entries(&self, now: NowMs) -> Vec<EntryOr> {
        self.network
            .entries
            .iter()
            .filter(|e| self.config.pin_first.is_none_or(|p| p == e.rsa_id))
            .filter(|e| self.transport_for(e).is_some())
            .filter(|e| self.entry_backoff.get(&e.rsa_id).is_none_or(|&t| t <= now))
            .cloned()
            .collect()
    }

    /// An entry for a new circuit: one with an open link if any, else a random one.
    fn choose_entry(&mut self, now: NowMs) -> Option<EntryOr> {
        let usable = self.usable_entries(now);
        if let Some(e) = usable.iter().find(|e| {
            self.links
                .values()
                .any(|l| l.is_open() && l.entry.rsa_id == e.rsa_id)
        }) {
            return Some(e.clone());
        }
        if usable.is_empty() {
            return None;
        }
        let i = (self.rng.next_u64() % usable.len() as u64) as usize;
        usable.get(i).cloned()
    }

    /// The link to `entry`: an existing one, or a new connection.
    fn link_for(&mut self, entry: &EntryOr, now: NowMs) -> Option<ConnId> {
        if let Some((conn, _)) = self
            .links
            .iter()
            .find(|(_, l)| l.entry.rsa_id == entry.rsa_id)
        {
            return Some(*conn);
        }
        let transport = self.transport_for(entry)?;
        let conn = ConnId(self.next_conn);
        self.next_conn = self.next_conn.wrapping_add(1);
        let for_bootstrap = self.boot == Boot::Fetching && self.dir.relays.is_none();
        self.links.insert(
            conn,
            Link {
                entry: entry.clone(),
                state: LinkState::Connecting,
                deadline: now.saturating_add(self.config.connect_timeout_ms),
                circs: BTreeMap::new(),
                for_bootstrap,
            },
        );
        if for_bootstrap {
            self.progress(5, &format!("connecting to {}", entry.nickname));
        }
        self.actions.push_back(Action::Connect { conn, transport });
        Some(conn)
    }

    /// The link handshake completed: start the circuits waiting for it.
    fn link_opened(&mut self, conn: ConnId, now: NowMs) {
        let (waiting, boot, nick) = match self.links.get(&conn) {
            Some(l) => (
                l.circs.values().copied().collect::<Vec<u64>>(),
                l.for_bootstrap,
                l.entry.nickname.clone(),
            ),
            None => return,
        };
        if boot {
            self.progress(10, &format!("link to {nick} open"));
        }
        let waiting: Vec<u64> = self
            .circs
            .values()
            .filter(|c| c.conn == conn && matches!(c.state, CircState::WaitingLink))
            .map(|c| c.id)
            .chain(waiting)
            .collect::<BTreeSet<u64>>()
            .into_iter()
            .collect();
        for id in waiting {
            self.start_create(id, now);
        }
    }

    /// The link failed: close it, and avoid its entry a while if `blame`.
    fn link_failed(&mut self, conn: ConnId, now: NowMs, why: &str, blame: bool) {
        self.link_gone(conn, now, why, blame, true);
    }

    /// The link is gone: every circuit on it dies.
    fn link_gone(&mut self, conn: ConnId, now: NowMs, why: &str, blame: bool, close: bool) {
        let Some(link) = self.links.remove(&conn) else {
            return;
        };
        if close {
            self.actions.push_back(Action::Close { conn });
        }
        if blame {
            self.entry_failed(
                link.entry.rsa_id,
                now,
                &format!("{}: {why}", link.entry.nickname),
            );
        }
        let ids: Vec<u64> = self
            .circs
            .values()
            .filter(|c| c.conn == conn)
            .map(|c| c.id)
            .collect();
        for id in ids {
            if let Some(c) = self.circs.get_mut(&id) {
                c.wire = None; // nothing can be sent any more
            }
            self.teardown(id, now, why, false);
        }
    }

    /// Avoid entry `id` for a while.
    fn entry_failed(&mut self, id: RsaIdentity, now: NowMs, why: &str) {
        self.entry_backoff
            .insert(id, now.saturating_add(ENTRY_BACKOFF_MS));
        self.last_entry_error = Some(why.to_owned());
    }

    /// Send one cell on a link (dropped if the link is not open).
    fn send_cell(&mut self, conn: ConnId, circ_id: CircId, msg: ChanMsg) {
        let Some(LinkState::Open(chan)) = self.links.get(&conn).map(|l| &l.state) else {
            return;
        };
        let mut out = Vec::new();
        if chan.encode(&ChanCell::new(circ_id, msg), &mut out).is_ok() {
            self.actions.push_back(Action::Send { conn, data: out });
        }
    }

    /// Move a circuit's queued cells to its link.
    fn flush(&mut self, id: u64) {
        let Some(c) = self.circs.get_mut(&id) else {
            return;
        };
        let (Some(wire), conn) = (c.wire, c.conn) else {
            return;
        };
        let Some(LinkState::Open(chan)) = self.links.get(&conn).map(|l| &l.state) else {
            return;
        };
        let CircState::Live(client) = &mut c.state else {
            return;
        };
        let mut out = Vec::new();
        while let Some(cell) = client.poll_outgoing() {
            let cell = ChanCell::new(wire, cell.into_chan_msg());
            if chan.encode(&cell, &mut out).is_err() {
                break;
            }
        }
        if !out.is_empty() {
            self.actions.push_back(Action::Send { conn, data: out });
        }
    }

    /// A cell from a link.
    fn on_cell(&mut self, conn: ConnId, cell: ChanCell, now: NowMs) {
        let Some(id) = self
            .links
            .get(&conn)
            .and_then(|l| l.circs.get(&cell.circ_id).copied())
        else {
            // A cell for no circuit of ours (e.g. after we destroyed it): dropped. A relay
            // trying to create circuits on our client link gets a DESTROY.
            if matches!(
                cell.msg,
                ChanMsg::Create(_)
                    | ChanMsg::Create2(_)
                    | ChanMsg::CreateFast(_)
                    | ChanMsg::CreateFastWs(_)
            ) {
                self.send_cell(
                    conn,
                    cell.circ_id,
                    Destroy::new(DestroyReason::PROTOCOL).into(),
                );
            }
            return;
        };
        let Some(c) = self.circs.get_mut(&id) else {
            return;
        };
        match std::mem::replace(&mut c.state, CircState::Gone) {
            CircState::Creating(pending) => {
                let kind = pending.kind();
                match pending.handle_created(cell.msg) {
                    Ok(client) => {
                        c.state = CircState::Live(Box::new(client));
                        let elapsed = now.saturating_sub(c.started);
                        self.estimator
                            .record(1, u32::try_from(elapsed).unwrap_or(u32::MAX));
                        self.extend_next(id, now);
                    }
                    Err(e) => {
                        let entry = c.path.first().map(|h| h.relay.rsa_id);
                        let destroyed = matches!(e, crate::client::CircuitError::Refused(_));
                        if destroyed {
                            // Hop 1 refused and forgot the circuit.
                            if let Some(l) = c
                                .wire
                                .and_then(|w| self.links.get_mut(&c.conn).map(|l| (l, w)))
                            {
                                l.0.circs.remove(&l.1);
                            }
                            c.wire = None;
                        }
                        let why = format!("hop 1 ({kind:?}) failed: {e}");
                        if let Some(entry) = entry {
                            self.entry_failed(entry, now, &why);
                        }
                        self.teardown(id, now, &why, true);
                    }
                }
            }
            CircState::Live(mut client) => {
                let result = client.handle_cell(&mut self.rng, cell.msg);
                c.state = CircState::Live(client);
                self.flush(id);
                match result {
                    Ok(events) => self.on_client_events(id, events, now),
                    Err(e) if e.is_fatal() => self.circuit_error(id, now, &e.to_string()),
                    Err(_) => {}
                }
                self.relay_info_reply(id, now);
                self.check_writable(id);
            }
            other => c.state = other,
        }
    }

    // ===== circuits =======================================================================

    /// Allocate an engine circuit id.
    fn circ_id(&mut self) -> u64 {
        let id = self.next_circ;
        self.next_circ = self.next_circ.wrapping_add(1);
        id
    }

    /// Start building a circuit along `path` (hop 1 an entry OR).
    fn launch(
        &mut self,
        now: NowMs,
        purpose: CircuitPurpose,
        path: Vec<PathHop>,
        exit_port: Option<u16>,
    ) -> Result<u64, EngineError> {
        let entry_id = path
            .first()
            .map(|h| h.relay.rsa_id)
            .ok_or(EngineError::InvalidConfig("empty path"))?;
        let entry = self
            .network
            .entries
            .iter()
            .chain(self.authority_or())
            .find(|e| e.rsa_id == entry_id)
            .cloned()
            .ok_or(EngineError::NoUsableEntry)?;
        let conn = self
            .link_for(&entry, now)
            .ok_or(EngineError::NoUsableEntry)?;
        let id = self.circ_id();
        self.circs.insert(
            id,
            Circ {
                id,
                conn,
                wire: None,
                purpose,
                path,
                state: CircState::WaitingLink,
                started: now,
                hop_started: now,
                hop_deadline: None,
                built_at: None,
                dirty_since: None,
                isolation: None,
                reserved: false,
                epoch: self.epoch,
                exit_port,
                streams: BTreeMap::new(),
                fetch: None,
            },
        );
        if self.links.get(&conn).is_some_and(Link::is_open) {
            self.start_create(id, now);
        }
        Ok(id)
    }

    /// The own network's authority OR, if the description names one.
    fn authority_or(&self) -> Option<&EntryOr> {
        match &self.network.directory {
            Directory::Own(a) => a.or.as_ref(),
            Directory::Tor(_) => None,
        }
    }

    /// The deadline for hop `hop` (1-based) started at `now`.
    fn hop_deadline(&self, hop: usize, now: NowMs) -> NowMs {
        let ms = if self.estimator.estimate_ms().is_some() {
            let total = u64::from(self.estimator.timeout_ms(hop));
            let before = if hop > 1 {
                u64::from(self.estimator.timeout_ms(hop.saturating_sub(1)))
            } else {
                0
            };
            total.saturating_sub(before).max(1_000)
        } else {
            self.config.hop_timeout_ms
        };
        now.saturating_add(ms)
    }

    /// The circuit settings.
    fn circuit_config(&self) -> CircuitConfig {
        CircuitConfig {
            sendme_accept_min_version: self.dir.sendme_min,
            hop1_is_ours: matches!(self.network.directory, Directory::Own(_)),
            manual_stream_sendme: true,
            ..CircuitConfig::default()
        }
    }

    /// Send the create cell of circuit `id` (its link is open).
    fn start_create(&mut self, id: u64, now: NowMs) {
        let config = self.circuit_config();
        let Some(c) = self.circs.get_mut(&id) else {
            return;
        };
        if !matches!(c.state, CircState::WaitingLink) {
            return;
        }
        let Some(link) = self.links.get_mut(&c.conn) else {
            return;
        };
        let LinkState::Open(chan) = &link.state else {
            return;
        };
        let Some(first) = c.path.first() else {
            return;
        };
        let wire = match chan.allocate_circ_id(&mut self.rng, |w| link.circs.contains_key(&w)) {
            Ok(w) => w,
            Err(e) => {
                let why = format!("no circuit ID: {e}");
                self.teardown(id, now, &why, false);
                return;
            }
        };
        match ClientCircuit::start(&mut self.rng, &first.target, first.kind, config) {
            Ok((pending, msg)) => {
                link.circs.insert(wire, id);
                c.wire = Some(wire);
                c.state = CircState::Creating(Box::new(pending));
                c.hop_started = now;
                let conn = c.conn;
                let deadline = self.hop_deadline(1, now);
                if let Some(c) = self.circs.get_mut(&id) {
                    c.hop_deadline = Some(deadline);
                }
                self.send_cell(conn, wire, msg);
            }
            Err(e) => {
                let why = format!("cannot start the circuit: {e}");
                self.teardown(id, now, &why, false);
            }
        }
    }

    /// Extend circuit `id` by its next hop, or finish it.
    fn extend_next(&mut self, id: u64, now: NowMs) {
        let Some(c) = self.circs.get_mut(&id) else {
            return;
        };
        let path_len = c.path.len();
        let CircState::Live(client) = &mut c.state else {
            return;
        };
        let n = client.n_hops();
        if n >= path_len {
            // (Each hop's time was recorded when it completed.)
            c.hop_deadline = None;
            c.built_at = Some(now);
            self.circuit_built(id, now);
            return;
        }
        if self.relay_info_wanted(id, n) {
            let deadline = self.hop_deadline(n.saturating_add(1), now);
            if let Some(c) = self.circs.get_mut(&id) {
                c.hop_started = now;
                c.hop_deadline = Some(deadline);
            }
            self.relay_info_start(id, n, now);
            return;
        }
        let Some(c) = self.circs.get_mut(&id) else {
            return;
        };
        let CircState::Live(client) = &mut c.state else {
            return;
        };
        let Some(hop) = c.path.get(n) else {
            return;
        };
        let result = client.extend(&mut self.rng, &hop.target, hop.kind);
        c.hop_started = now;
        let deadline = self.hop_deadline(n.saturating_add(1), now);
        if let Some(c) = self.circs.get_mut(&id) {
            c.hop_deadline = Some(deadline);
        }
        self.flush(id);
        if let Err(e) = result {
            self.circuit_error(id, now, &format!("cannot extend: {e}"));
        }
    }

    /// Circuit `id` is built.
    fn circuit_built(&mut self, id: u64, now: NowMs) {
        let Some(c) = self.circs.get(&id) else {
            return;
        };
        let info = c.info();
        let purpose = c.purpose;
        if let Some(e) = c.path.first() {
            self.entry_backoff.remove(&e.relay.rsa_id);
        }
        self.events.push_back(Event::CircuitBuilt { info });
        match purpose {
            CircuitPurpose::Directory => {
                if self.job.as_ref().and_then(|j| j.circ) == Some(id) {
                    if self.dir.relays.is_none() {
                        self.progress(15, "directory circuit built");
                    }
                    self.next_dir_request(id, now);
                }
            }
            CircuitPurpose::Exit => {
                self.pool_failures = 0;
                if !self.first_circuit_built {
                    self.first_circuit_built = true;
                    self.progress(100, "first circuit built");
                }
            }
            CircuitPurpose::Seed => self.seed_built(id, now),
        }
    }

    /// A hop did not answer in time.
    fn hop_timed_out(&mut self, id: u64, now: NowMs) {
        self.estimator.record_timeout();
        let Some(c) = self.circs.get(&id) else {
            return;
        };
        let hop = match &c.state {
            CircState::Live(client) => client.n_hops().saturating_add(1),
            _ => 1,
        };
        let why = format!("hop {hop} did not answer in time");
        let Some(slow) = c.path.get(hop.saturating_sub(1)).map(|h| h.relay.clone()) else {
            self.teardown(id, now, &why, true);
            return;
        };
        if hop == 1 {
            self.entry_failed(slow.rsa_id, now, &format!("{}: {why}", slow.nickname));
            self.teardown(id, now, &why, true);
            return;
        }
        // Replace the silent relay and build again at once, same purpose and claims.
        self.relay_backoff
            .insert(slow.rsa_id, now.saturating_add(RELAY_BACKOFF_MS));
        let (purpose, exit_port, isolation, reserved) =
            (c.purpose, c.exit_port, c.isolation.clone(), c.reserved);
        let mut path = c.path.clone();
        let replaced = self.replacement(&path, hop.saturating_sub(1), exit_port);
        self.teardown(id, now, &why, true);
        let Some(new_hop) = replaced else {
            return;
        };
        if let Some(slot) = path.get_mut(hop.saturating_sub(1)) {
            *slot = new_hop;
        }
        if let Ok(new) = self.launch(now, purpose, path, exit_port) {
            if let Some(c) = self.circs.get_mut(&new) {
                c.isolation = isolation;
                c.reserved = reserved;
            }
            for s in self.streams.values_mut() {
                if s.state == (StreamState::Waiting { circ: Some(id) }) {
                    s.state = StreamState::Waiting { circ: Some(new) };
                }
            }
        }
    }

    /// Another relay for position `index` of `path` (not the entry).
    fn replacement(
        &mut self,
        path: &[PathHop],
        index: usize,
        exit_port: Option<u16>,
    ) -> Option<PathHop> {
        let relays = self.dir.relays.as_ref()?;
        let last = index.saturating_add(1) == path.len();
        let subnets = self.dir.subnets;
        let now_avoid: BTreeSet<RsaIdentity> = self.relay_backoff.keys().copied().collect();
        let others: Vec<&RelayInfo> = path
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != index)
            .map(|(_, h)| &h.relay)
            .collect();
        let old = path.get(index).map(|h| h.relay.rsa_id);
        let position = if last {
            Position::Exit
        } else {
            Position::Middle
        };
        let chosen = relays
            .choose(&mut self.rng, position, |r| {
                r.is_running_valid()
                    && Some(r.rsa_id) != old
                    && !now_avoid.contains(&r.rsa_id)
                    && others.iter().all(|o| compatible(r, o, subnets))
                    && (!last
                        || (!r.has(RelayFlags::BAD_EXIT)
                            && match exit_port {
                                Some(p) => r.ipv4_policy.allows_port(p),
                                None => r.has(RelayFlags::EXIT) && !r.ipv4_policy.rejects_all(),
                            }))
            })?
            .clone();
        Some(self.path_hop(&chosen, false))
    }

    /// A hop of a path from a relay.
    fn path_hop(&self, relay: &RelayInfo, first: bool) -> PathHop {
        let target = relay.to_hop_target();
        let kind = self.handshake_for(&target, first);
        PathHop {
            info: hop_info(relay, None, kind),
            target,
            kind: kind.unwrap_or(HandshakeKind::Ntor),
            relay: relay.clone(),
        }
    }

    /// The handshake for a hop.
    fn handshake_for(&self, target: &HopTarget, first: bool) -> Option<HandshakeKind> {
        if first && self.config.create_fast_ws && target.tap_onion_key.is_some() {
            return Some(HandshakeKind::CreateFastWs);
        }
        if let Some(k) = self.config.handshake {
            let ntor = target.ntor_onion_key.is_some();
            let tap = target.tap_onion_key.is_some();
            let possible = match k {
                HandshakeKind::CreateFast => first,
                HandshakeKind::CreateFastWs => first && tap,
                HandshakeKind::Tap => tap,
                HandshakeKind::Ntor => ntor && target.rsa_id.is_some(),
                HandshakeKind::NtorV3 => ntor && target.ed_id.is_some(),
            };
            if possible {
                return Some(k);
            }
        }
        target.best_handshake()
    }

    /// Hop 1 for `entry`: its pinned keys, and what the directory says of it otherwise.
    fn entry_hop(&self, entry: &EntryOr) -> PathHop {
        let listed = self
            .dir
            .relays
            .as_ref()
            .and_then(|s| s.get(&entry.rsa_id))
            .cloned();
        let (ipv4, ipv6) = match entry.tls {
            Some(std::net::SocketAddr::V4(a)) => (Some(a), None),
            Some(std::net::SocketAddr::V6(a)) => (None, Some(a)),
            None => (None, None),
        };
        let mut relay = listed.unwrap_or_else(|| RelayInfo {
            ed_id: entry.ed25519_id,
            ipv4,
            ipv6,
            flags: crate::path::guard_flags(),
            ..RelayInfo::new(entry.nickname.clone(), entry.rsa_id)
        });
        // The description's keys are pinned: they win over the directory's.
        relay.ntor_onion_key = Some(entry.ntor_key);
        if entry.tap_key.is_some() {
            relay.tap_onion_key = entry.tap_key.clone();
        }
        let mut target = entry.hop_target();
        target.supports_ntor_v3 = relay.supports_ntor_v3() && target.ed_id.is_some();
        let kind = self.handshake_for(&target, true);
        PathHop {
            info: hop_info(&relay, entry.ws.as_ref().map(|u| u.as_str()), kind),
            target,
            kind: kind.unwrap_or(HandshakeKind::Ntor),
            relay,
        }
    }

    /// Choose an exit path for `exit_port` (`None`: any exit).
    fn choose_path(
        &mut self,
        now: NowMs,
        exit_port: Option<u16>,
    ) -> Result<Vec<PathHop>, EngineError> {
        let entry = self.choose_entry(now).ok_or_else(|| {
            EngineError::EntriesFailed(
                self.last_entry_error
                    .clone()
                    .unwrap_or_else(|| "no usable entry OR".into()),
            )
        })?;
        let first = self.entry_hop(&entry);
        if self.config.hops == 1 {
            return Ok(vec![first]);
        }
        let relays = self.dir.relays.as_ref().ok_or(EngineError::NotReady)?;
        self.relay_backoff.retain(|_, t| *t > now);
        let filtered;
        let set = if self.relay_backoff.is_empty() {
            relays
        } else {
            let keep: Vec<RelayInfo> = relays
                .relays()
                .iter()
                .filter(|r| !self.relay_backoff.contains_key(&r.rsa_id))
                .cloned()
                .collect();
            filtered = RelaySet::new(keep, relays.weights().clone());
            &filtered
        };
        let mut cfg = PathConfig {
            hops: usize::from(self.config.hops),
            exit_port,
            internal: false,
            first_hop: FirstHop::Guard(Box::new(first.relay.clone())),
            enforce_distinct_subnets: self.dir.subnets,
            require_fast: matches!(self.network.directory, Directory::Tor(_)),
        };
        let chosen = match select_path(&mut self.rng, set, &cfg) {
            Ok(p) => p,
            Err(_) if cfg.require_fast => {
                cfg.require_fast = false;
                select_path(&mut self.rng, set, &cfg).map_err(EngineError::Path)?
            }
            Err(e) => return Err(EngineError::Path(e)),
        };
        let mut path = vec![first];
        for r in chosen.iter().skip(1) {
            path.push(self.path_hop(r, false));
        }
        Ok(path)
    }

    /// A fatal error on circuit `id`: close it.
    fn circuit_error(&mut self, id: u64, now: NowMs, why: &str) {
        self.teardown(id, now, why, true);
    }

    /// Remove circuit `id`: send DESTROY if `destroy` and possible, fail its streams, report.
    fn teardown(&mut self, id: u64, now: NowMs, why: &str, destroy: bool) {
        let Some(mut c) = self.circs.remove(&id) else {
            return;
        };
        if let Some(wire) = c.wire {
            let was_live = !matches!(c.state, CircState::WaitingLink | CircState::Gone);
            if destroy && was_live {
                self.send_cell(c.conn, wire, Destroy::new(DestroyReason::NONE).into());
            }
            if let Some(l) = self.links.get_mut(&c.conn) {
                l.circs.remove(&wire);
            }
        }
        if let CircState::Live(client) = &mut c.state {
            let _ = client.close();
        }
        // Streams on it fail, except those still waiting for CONNECTED / RESOLVED within their
        // deadline: nothing of theirs reached the exit's destination (writes wait for
        // CONNECTED), so they go back to waiting and are attached to another circuit, as C tor
        // retries a stream whose circuit died.
        for owner in c.streams.values() {
            if let Owner::User(h) = owner {
                if let Some(s) = self.streams.get_mut(h)
                    && matches!(
                        s.state,
                        StreamState::Attached {
                            connected: false,
                            ..
                        }
                    )
                    && now < s.deadline
                {
                    s.state = StreamState::Waiting { circ: None };
                    s.last_error = Some(why.to_owned());
                    continue;
                }
                self.streams.remove(h);
                self.events.push_back(Event::StreamEnded {
                    stream: *h,
                    error: Some(StreamError::CircuitFailed(why.to_owned())),
                });
            }
        }
        for s in self.streams.values_mut() {
            if s.state == (StreamState::Waiting { circ: Some(id) }) {
                s.state = StreamState::Waiting { circ: None };
                s.last_error = Some(why.to_owned());
            }
        }
        if c.is_built() {
            self.events.push_back(Event::CircuitClosed {
                id,
                reason: why.to_owned(),
            });
        } else {
            self.events.push_back(Event::CircuitFailed {
                path: c.hop_infos(),
                error: why.to_owned(),
            });
            if c.purpose == CircuitPurpose::Exit && c.isolation.is_none() {
                self.pool_failures = self.pool_failures.saturating_add(1);
                let backoff = 500u64
                    .saturating_mul(1u64 << self.pool_failures.min(10))
                    .min(POOL_BACKOFF_MAX_MS);
                self.pool_retry_at = now.saturating_add(backoff);
            }
        }
        // The directory fetch used it.
        if self.job.as_ref().and_then(|j| j.circ) == Some(id) {
            if let Some(j) = self.job.as_mut() {
                j.circ = None;
                j.circuit_failures = j.circuit_failures.saturating_add(1);
            }
            self.continue_dir_job(now);
        }
        self.seed_circuit_gone(id, why);
    }

    /// Hop `hop` of circuit `id` was added: record its time, go on.
    fn hop_added(&mut self, id: u64, hop: crate::crypto::relay::HopNum, now: NowMs) {
        if let Some(c) = self.circs.get(&id) {
            let elapsed = now.saturating_sub(c.started);
            self.estimator.record(
                usize::from(hop.get()),
                u32::try_from(elapsed).unwrap_or(u32::MAX),
            );
        }
        self.extend_next(id, now);
    }

    /// Events from a live circuit.
    fn on_client_events(&mut self, id: u64, events: Vec<ClientEvent>, now: NowMs) {
        for ev in events {
            match ev {
                ClientEvent::HopAdded { hop } => self.hop_added(id, hop, now),
                ClientEvent::Truncated { hops, .. } => {
                    let why = format!("truncated after hop {hops}");
                    self.teardown(id, now, &why, true);
                    return;
                }
                ClientEvent::StreamConnected { stream, .. } => {
                    self.on_stream_connected(id, stream, now);
                }
                ClientEvent::StreamData { stream, bytes } => {
                    self.on_stream_data(id, stream, bytes, now);
                }
                ClientEvent::StreamEnded { stream, reason } => {
                    self.on_stream_ended(id, stream, reason, now);
                }
                ClientEvent::Resolved { stream, answers } => {
                    let owner = self
                        .circs
                        .get_mut(&id)
                        .and_then(|c| c.streams.remove(&stream));
                    if let Some(Owner::User(h)) = owner {
                        self.streams.remove(&h);
                        self.events
                            .push_back(Event::Resolved { stream: h, answers });
                        self.after_user_stream_left(id, now);
                    }
                }
                ClientEvent::SeedMessage {
                    msg: onion_cell::relaycell::RelayMsg::Info(info),
                    ..
                } => self.relay_info_answer(id, &info, now),
                ClientEvent::SeedMessage { stream, msg } => self.seed_message(id, stream, msg),
                ClientEvent::CircuitClosed { reason } => {
                    let why = match reason {
                        CloseReason::Destroyed(r) => format!("destroyed by hop 1 ({r:?})"),
                        CloseReason::Failed(e) => format!("failed: {e}"),
                        CloseReason::Local => "closed".to_owned(),
                    };
                    if let Some(c) = self.circs.get_mut(&id) {
                        // Hop 1 already forgot it: no DESTROY back.
                        if let Some(w) = c.wire.take()
                            && let Some(l) = self.links.get_mut(&c.conn)
                        {
                            l.circs.remove(&w);
                        }
                    }
                    self.teardown(id, now, &why, false);
                    return;
                }
            }
        }
    }

    // ===== streams ========================================================================

    fn new_stream(
        &mut self,
        now: NowMs,
        request: Request,
        isolation: Option<&str>,
    ) -> Result<StreamHandle, EngineError> {
        if self.closed {
            return Err(EngineError::Closed);
        }
        if matches!(self.boot, Boot::Failed { .. }) && self.dir.relays.is_none() {
            return Err(EngineError::NotReady);
        }
        if self.streams.len() >= self.config.max_streams {
            return Err(EngineError::TooManyStreams(self.config.max_streams));
        }
        let h = StreamHandle(self.next_stream);
        self.next_stream = self.next_stream.wrapping_add(1);
        self.streams.insert(
            h,
            UserStream {
                request,
                isolation: isolation.map(str::to_owned),
                state: StreamState::Waiting { circ: None },
                deadline: now.saturating_add(self.config.stream_timeout_ms),
                builds: 0,
                want_writable: false,
                last_error: None,
            },
        );
        self.maintain(now);
        Ok(h)
    }

    /// Whether built circuit `c` may take stream `s` now.
    fn circuit_fits(&self, c: &Circ, s: &UserStream, now: NowMs) -> bool {
        c.purpose == CircuitPurpose::Exit
            && c.epoch == self.epoch
            && !c.reserved
            && match &c.isolation {
                None => true,
                Some(k) => self.config.one_circuit && *k == s.isolation,
            }
            && c.dirty_since
                .is_none_or(|d| d.saturating_add(self.config.circuit_lifetime_ms) > now)
            && match s.port() {
                Some(p) => c.exit().is_some_and(|e| {
                    e.ipv4_policy.allows_port(p) || (self.config.hops == 1 && c.exit_port.is_none())
                }),
                None => true,
            }
    }

    /// Attach or plan every waiting stream.
    fn schedule_streams(&mut self, now: NowMs) {
        if self.dir.relays.is_none() || self.closed {
            return;
        }
        let waiting: Vec<StreamHandle> = self
            .streams
            .iter()
            .filter(|(_, s)| matches!(s.state, StreamState::Waiting { .. }))
            .map(|(h, _)| *h)
            .collect();
        for h in waiting {
            let Some(s) = self.streams.get(&h).cloned() else {
                continue;
            };
            // A built circuit that fits: prefer one already used by this isolation key.
            let mut best: Option<(bool, u64)> = None;
            for c in self.circs.values() {
                let ok = c.is_built()
                    && (s.state == StreamState::Waiting { circ: Some(c.id) }
                        || self.circuit_fits(c, &s, now))
                    && c.path.len() == usize::from(self.config.hops);
                if ok {
                    let used = c.isolation.is_some();
                    if best.is_none_or(|(u, _)| used && !u) {
                        best = Some((used, c.id));
                    }
                }
            }
            if let Some((_, id)) = best {
                self.attach(h, id, now);
                continue;
            }
            // Waiting for a circuit being built for it.
            if let StreamState::Waiting { circ: Some(id) } = s.state
                && self.circs.get(&id).is_some_and(|c| !c.is_built())
            {
                continue;
            }
            // A circuit being built that fits.
            let building = self
                .circs
                .values()
                .find(|c| !c.is_built() && self.circuit_fits_building(c, &s))
                .map(|c| c.id);
            if let Some(id) = building {
                self.claim(h, id);
                continue;
            }
            if s.builds >= self.config.build_attempts {
                let why = s
                    .last_error
                    .clone()
                    .unwrap_or_else(|| "circuit builds failed".into());
                self.end_user_stream(h, now, Some(StreamError::NoCircuit(why)), true);
                continue;
            }
            match self.choose_path(now, s.port()) {
                Ok(path) => {
                    if let Some(st) = self.streams.get_mut(&h) {
                        st.builds = st.builds.saturating_add(1);
                    }
                    match self.launch(now, CircuitPurpose::Exit, path, s.port()) {
                        Ok(id) => self.claim(h, id),
                        Err(e) => self.end_user_stream(
                            h,
                            now,
                            Some(StreamError::NoCircuit(e.to_string())),
                            true,
                        ),
                    }
                }
                Err(e) => {
                    self.end_user_stream(h, now, Some(StreamError::NoCircuit(e.to_string())), true)
                }
            }
        }
    }

    /// Whether a circuit being built may be claimed by stream `s`.
    fn circuit_fits_building(&self, c: &Circ, s: &UserStream) -> bool {
        c.purpose == CircuitPurpose::Exit
            && c.epoch == self.epoch
            && !c.reserved
            && match &c.isolation {
                None => true,
                Some(k) => self.config.one_circuit && *k == s.isolation,
            }
            && match s.port() {
                Some(p) => c.exit().is_some_and(|e| e.ipv4_policy.allows_port(p)),
                None => true,
            }
    }

    /// Stream `h` waits for circuit `id`, which is now its isolation key's.
    fn claim(&mut self, h: StreamHandle, id: u64) {
        let Some(s) = self.streams.get_mut(&h) else {
            return;
        };
        s.state = StreamState::Waiting { circ: Some(id) };
        let iso = s.isolation.clone();
        if let Some(c) = self.circs.get_mut(&id) {
            c.isolation = Some(iso);
            if !self.config.one_circuit {
                c.reserved = true;
            }
        }
    }

    /// Send stream `h`'s BEGIN / RESOLVE on built circuit `id`.
    fn attach(&mut self, h: StreamHandle, id: u64, now: NowMs) {
        let Some(s) = self.streams.get(&h) else {
            return;
        };
        let request = s.request.clone();
        let iso = s.isolation.clone();
        let Some(c) = self.circs.get_mut(&id) else {
            return;
        };
        let CircState::Live(client) = &mut c.state else {
            return;
        };
        let result = match &request {
            Request::Connect { addr, port } => {
                let flags = match addr {
                    Address::Ipv6(_) => BeginFlags::IPV6_OK,
                    _ => BeginFlags::NONE,
                };
                client.begin(&mut self.rng, addr.clone(), *port, flags)
            }
            Request::Resolve { query } => client.resolve(&mut self.rng, query),
        };
        match result {
            Ok(sid) => {
                c.streams.insert(sid, Owner::User(h));
                c.isolation = Some(iso);
                c.dirty_since.get_or_insert(now);
                if !self.config.one_circuit {
                    c.reserved = true;
                }
                if let Some(s) = self.streams.get_mut(&h) {
                    s.state = StreamState::Attached {
                        circ: id,
                        stream: sid,
                        connected: false,
                    };
                }
                self.flush(id);
            }
            Err(e) => {
                let fatal = e.is_fatal();
                if let Some(s) = self.streams.get_mut(&h) {
                    s.last_error = Some(e.to_string());
                    s.state = StreamState::Waiting { circ: None };
                }
                if fatal {
                    self.circuit_error(id, now, &e.to_string());
                } else if let Some(c) = self.circs.get_mut(&id) {
                    // Full (too many streams): no more streams on it.
                    c.reserved = true;
                }
            }
        }
    }

    /// The user stream on circuit `id` with id `sid`.
    fn owner(&self, id: u64, sid: StreamId) -> Option<Owner> {
        self.circs
            .get(&id)
            .and_then(|c| c.streams.get(&sid).copied())
    }

    fn on_stream_connected(&mut self, id: u64, sid: StreamId, now: NowMs) {
        match self.owner(id, sid) {
            Some(Owner::User(h)) => {
                let Some(s) = self.streams.get_mut(&h) else {
                    return;
                };
                s.state = StreamState::Attached {
                    circ: id,
                    stream: sid,
                    connected: true,
                };
                // No deadline once connected.
                s.deadline = NowMs::MAX;
                let writable = std::mem::take(&mut s.want_writable);
                self.events.push_back(Event::StreamConnected { stream: h });
                if writable {
                    self.events.push_back(Event::StreamWritable { stream: h });
                }
            }
            Some(Owner::Dir) => self.send_dir_request(id, now),
            None => {}
        }
    }

    fn on_stream_data(&mut self, id: u64, sid: StreamId, bytes: Vec<u8>, now: NowMs) {
        match self.owner(id, sid) {
            Some(Owner::User(h)) => {
                self.events.push_back(Event::StreamData {
                    stream: h,
                    data: bytes,
                });
            }
            Some(Owner::Dir) => {
                let n = bytes.len();
                // The engine reads directory data at once.
                let result = self
                    .circs
                    .get_mut(&id)
                    .and_then(Circ::live)
                    .map(|c| c.stream_consumed(&mut self.rng, sid, n));
                self.flush(id);
                if let Some(Err(e)) = result
                    && e.is_fatal()
                {
                    self.circuit_error(id, now, &e.to_string());
                    return;
                }
                let fed = self
                    .circs
                    .get_mut(&id)
                    .and_then(|c| c.fetch.as_mut())
                    .map(|f| f.http.feed(&bytes));
                match fed {
                    Some(Ok(Some(resp))) => self.dir_response(id, Ok(resp), now),
                    Some(Err(e)) => self.dir_response(id, Err(EngineError::Http(e)), now),
                    _ => {}
                }
            }
            None => {}
        }
    }

    fn on_stream_ended(&mut self, id: u64, sid: StreamId, reason: StreamEndReason, now: NowMs) {
        let owner = self.circs.get_mut(&id).and_then(|c| c.streams.remove(&sid));
        match owner {
            Some(Owner::User(h)) => {
                // The circuit died before the stream was connected: nothing reached the
                // destination (writes wait for CONNECTED), so the stream waits for another
                // circuit until its deadline, as C tor retries it.
                let circuit_died = matches!(
                    reason,
                    StreamEndReason::Truncated(_) | StreamEndReason::CircuitClosed(_)
                );
                if circuit_died
                    && let Some(s) = self.streams.get_mut(&h)
                    && matches!(
                        s.state,
                        StreamState::Attached {
                            connected: false,
                            ..
                        }
                    )
                    && now < s.deadline
                {
                    s.state = StreamState::Waiting { circ: None };
                    s.last_error = Some(format!("{reason:?}"));
                    self.after_user_stream_left(id, now);
                    return;
                }
                let error = match reason {
                    StreamEndReason::Remote { reason, .. } => StreamError::from_end_reason(reason),
                    StreamEndReason::Truncated(r) => {
                        Some(StreamError::CircuitFailed(format!("truncated ({r:?})")))
                    }
                    StreamEndReason::CircuitClosed(r) => {
                        Some(StreamError::CircuitFailed(format!("{r:?}")))
                    }
                };
                self.streams.remove(&h);
                self.events
                    .push_back(Event::StreamEnded { stream: h, error });
                self.after_user_stream_left(id, now);
            }
            Some(Owner::Dir) => {
                let finished = self
                    .circs
                    .get_mut(&id)
                    .and_then(|c| c.fetch.as_mut())
                    .map(|f| f.http.finish());
                match finished {
                    Some(Ok(resp)) => self.dir_response(id, Ok(resp), now),
                    Some(Err(e)) => self.dir_response(id, Err(EngineError::Http(e)), now),
                    None => {}
                }
            }
            None => {}
        }
    }

    /// A user stream left circuit `id`: a per-stream circuit closes.
    fn after_user_stream_left(&mut self, id: u64, now: NowMs) {
        let close = self.circs.get(&id).is_some_and(|c| {
            c.user_streams() == 0
                && (c.reserved
                    || c.epoch != self.epoch
                    || c.dirty_since
                        .is_some_and(|d| d.saturating_add(self.config.circuit_lifetime_ms) <= now))
        });
        if close {
            self.teardown(id, now, "no more streams", true);
        }
    }

    /// End user stream `h`: send END if attached (`error` None = clean close), report it
    /// when `report`.
    fn end_user_stream(
        &mut self,
        h: StreamHandle,
        now: NowMs,
        error: Option<StreamError>,
        report: bool,
    ) {
        let Some(s) = self.streams.remove(&h) else {
            return;
        };
        if let StreamState::Attached { circ, stream, .. } = s.state {
            let reason = if error.is_some() {
                EndReason::MISC
            } else {
                EndReason::DONE
            };
            if let Some(c) = self.circs.get_mut(&circ) {
                c.streams.remove(&stream);
                if let Some(client) = c.live() {
                    let _ = client.end_stream(&mut self.rng, stream, reason);
                }
            }
            self.flush(circ);
            self.after_user_stream_left(circ, now);
        }
        if report {
            self.events
                .push_back(Event::StreamEnded { stream: h, error });
        }
    }

    /// Tell streams of circuit `id` waiting to write that they can.
    fn check_writable(&mut self, id: u64) {
        let Some(c) = self.circs.get(&id) else {
            return;
        };
        let CircState::Live(client) = &c.state else {
            return;
        };
        let mut ready = Vec::new();
        for (sid, owner) in &c.streams {
            if let Owner::User(h) = owner
                && self.streams.get(h).is_some_and(|s| {
                    s.want_writable
                        && matches!(
                            s.state,
                            StreamState::Attached {
                                connected: true,
                                ..
                            }
                        )
                })
                && client.is_writable(*sid)
            {
                ready.push(*h);
            }
        }
        for h in ready {
            if let Some(s) = self.streams.get_mut(&h) {
                s.want_writable = false;
            }
            self.events.push_back(Event::StreamWritable { stream: h });
        }
    }

    // ===== pool ===========================================================================

    /// Clean exit circuits missing from the pool.
    fn pool_deficit(&self) -> usize {
        let have = self
            .circs
            .values()
            .filter(|c| {
                c.purpose == CircuitPurpose::Exit
                    && c.isolation.is_none()
                    && !c.reserved
                    && c.epoch == self.epoch
            })
            .count();
        self.config.pool_size.saturating_sub(have)
    }

    /// Keep the pool full.
    fn maintain_pool(&mut self, now: NowMs) {
        if self.dir.relays.is_none() || self.closed || now < self.pool_retry_at {
            return;
        }
        for _ in 0..self.pool_deficit() {
            let result = self
                .choose_path(now, None)
                .and_then(|p| self.launch(now, CircuitPurpose::Exit, p, None));
            if let Err(e) = result {
                self.pool_failures = self.pool_failures.saturating_add(1);
                let backoff = 500u64
                    .saturating_mul(1u64 << self.pool_failures.min(10))
                    .min(POOL_BACKOFF_MAX_MS);
                self.pool_retry_at = now.saturating_add(backoff);
                if !self.first_circuit_built {
                    self.events.push_back(Event::CircuitFailed {
                        path: Vec::new(),
                        error: e.to_string(),
                    });
                }
                break;
            }
        }
    }

    /// After every call: attach streams, fill the pool.
    fn maintain(&mut self, now: NowMs) {
        if self.closed {
            return;
        }
        self.schedule_streams(now);
        self.maintain_pool(now);
        self.seed_pump(now);
    }

    // ===== directory ======================================================================

    /// Start a directory fetch (bootstrap or refresh).
    fn start_bootstrap(&mut self, now: NowMs) {
        if self.job.is_some() || self.closed {
            return;
        }
        let docs: VecDeque<DirDoc> = match &self.network.directory {
            Directory::Own(_) => [DirDoc::RelayList].into(),
            Directory::Tor(_) => [DirDoc::Consensus, DirDoc::Certs].into(),
        };
        self.job = Some(DirJob {
            circ: None,
            docs,
            deadline: now.saturating_add(self.config.dir_timeout_ms),
            ..DirJob::default()
        });
        self.continue_dir_job(now);
    }

    /// Make sure the directory job has a circuit.
    fn continue_dir_job(&mut self, now: NowMs) {
        let Some(job) = &self.job else {
            return;
        };
        if job.circ.is_some() {
            return;
        }
        let max_failures = u32::try_from(self.network.entries.len())
            .unwrap_or(u32::MAX)
            .saturating_add(1)
            .saturating_mul(2);
        if job.circuit_failures >= max_failures {
            let last = self
                .last_entry_error
                .clone()
                .unwrap_or_else(|| "directory circuits failed".into());
            self.dir_job_failed(now, EngineError::EntriesFailed(last));
            return;
        }
        // The authority's OR when there is one, else an entry.
        let or = match self.authority_or() {
            Some(a)
                if self.transport_for(a).is_some()
                    && self.entry_backoff.get(&a.rsa_id).is_none_or(|&t| t <= now) =>
            {
                Some(a.clone())
            }
            _ => self.choose_entry(now),
        };
        let Some(or) = or else {
            let last = self
                .last_entry_error
                .clone()
                .unwrap_or_else(|| "no usable entry OR".into());
            self.dir_job_failed(now, EngineError::EntriesFailed(last));
            return;
        };
        let hop = self.entry_hop(&or);
        match self.launch(now, CircuitPurpose::Directory, vec![hop], None) {
            Ok(id) => {
                if let Some(j) = self.job.as_mut() {
                    j.circ = Some(id);
                }
            }
            Err(e) => self.dir_job_failed(now, e),
        }
    }

    /// Open a BEGIN_DIR stream for the next document on directory circuit `id`.
    fn next_dir_request(&mut self, id: u64, now: NowMs) {
        let Some(doc) = self.job.as_ref().and_then(|j| j.docs.front().cloned()) else {
            return;
        };
        let first = self.dir.relays.is_none();
        let percent = match &doc {
            DirDoc::RelayList | DirDoc::Consensus => 20,
            DirDoc::Certs => 40,
            DirDoc::Microdescs(_) => {
                let (total, left) = self
                    .job
                    .as_ref()
                    .map_or((1, 1), |j| (j.md_batches.max(1), j.docs.len()));
                let done = total.saturating_sub(left);
                u8::try_from(50 + done * 35 / total).unwrap_or(85)
            }
        };
        if first {
            self.progress(percent, doc.phase());
        }
        let Some(c) = self.circs.get_mut(&id) else {
            return;
        };
        let Some(client) = c.live() else {
            return;
        };
        match client.begin_dir(&mut self.rng) {
            Ok(sid) => {
                c.streams.insert(sid, Owner::Dir);
                c.fetch = Some(Fetch {
                    stream: sid,
                    doc,
                    http: ResponseCollector::new(Limits {
                        max_body: super::MAX_DIR_BODY as u64,
                        ..Limits::default()
                    }),
                });
                self.flush(id);
            }
            Err(e) => self.circuit_error(id, now, &format!("BEGIN_DIR: {e}")),
        }
    }

    /// The BEGIN_DIR stream is open: send the GET.
    fn send_dir_request(&mut self, id: u64, now: NowMs) {
        let host = self
            .circs
            .get(&id)
            .and_then(|c| c.path.first())
            .and_then(|h| h.relay.ipv4.map(|a| a.ip().to_string()))
            .unwrap_or_else(|| "127.0.0.1".into());
        let Some(c) = self.circs.get_mut(&id) else {
            return;
        };
        let Some(f) = &c.fetch else {
            return;
        };
        let sid = f.stream;
        let path = f.doc.path();
        let req = HttpRequest::get(&host, &path)
            .and_then(|r| r.header("Connection", "close"))
            .map(|r| r.to_bytes());
        let Ok(bytes) = req else {
            self.dir_job_failed(now, EngineError::Directory("bad request".into()));
            return;
        };
        let result = c.live().map(|cl| cl.send_data(&mut self.rng, sid, &bytes));
        self.flush(id);
        match result {
            Some(Ok(n)) if n == bytes.len() => {}
            Some(Err(e)) => self.circuit_error(id, now, &format!("directory request: {e}")),
            _ => self.circuit_error(id, now, "directory request did not fit"),
        }
    }

    /// A directory response (or the error getting it) on circuit `id`.
    fn dir_response(
        &mut self,
        id: u64,
        resp: Result<crate::http::Response, EngineError>,
        now: NowMs,
    ) {
        let Some(fetch) = self.circs.get_mut(&id).and_then(|c| c.fetch.take()) else {
            return;
        };
        // Done with the stream (it may still be open if the server keeps it).
        if let Some(c) = self.circs.get_mut(&id)
            && c.streams.remove(&fetch.stream).is_some()
            && let Some(client) = c.live()
        {
            let _ = client.end_stream(&mut self.rng, fetch.stream, EndReason::DONE);
        }
        self.flush(id);
        if self.job.as_ref().and_then(|j| j.circ) != Some(id) {
            return;
        }
        let path = fetch.doc.path();
        let text = resp.and_then(|r| bootstrap::body_text(r, &path));
        let outcome = text.and_then(|t| self.accept_doc(&fetch.doc, &t, now));
        match outcome {
            Ok(()) => {
                if let Some(j) = self.job.as_mut() {
                    j.docs.pop_front();
                }
                if self.job.as_ref().is_some_and(|j| j.docs.is_empty()) {
                    self.finish_dir_job(now);
                } else {
                    self.next_dir_request(id, now);
                }
            }
            // The server could not answer (not a directory cache, an error status, a broken
            // response): try another directory server for the same document.
            Err(e @ (EngineError::Http(_) | EngineError::HttpStatus { .. })) => {
                if let Some(or) = self
                    .circs
                    .get(&id)
                    .and_then(|c| c.path.first())
                    .map(|h| (h.relay.rsa_id, h.relay.nickname.clone()))
                {
                    self.entry_failed(or.0, now, &format!("{}: {e}", or.1));
                }
                self.teardown(id, now, &format!("directory request failed: {e}"), true);
            }
            // A document was refused.
            Err(e) => self.dir_job_failed(now, e),
        }
    }

    /// Check a fetched document and keep what it gives.
    fn accept_doc(&mut self, doc: &DirDoc, text: &str, now: NowMs) -> Result<(), EngineError> {
        let skew = self.config.dir_skew_secs;
        let now_s = secs(now);
        match doc {
            DirDoc::RelayList => {
                let list = self
                    .network
                    .verify_relay_list(text, now_s, skew)
                    .map_err(EngineError::RelayList)?;
                let set = bootstrap::relay_set_from_list(&list);
                let span = list.valid_until.saturating_sub(list.published);
                let refresh = list.valid_until.saturating_sub(span / 4);
                self.install(set, refresh.saturating_mul(1000), now);
                Ok(())
            }
            DirDoc::Consensus => {
                let c = bootstrap::parse_consensus(text, now_s, skew)?;
                if let Some(j) = self.job.as_mut() {
                    j.consensus = Some(c);
                }
                Ok(())
            }
            DirDoc::Certs => {
                let certs = bootstrap::parse_certs(text)?;
                let job = self.job.as_mut().ok_or(EngineError::NotReady)?;
                let consensus = job
                    .consensus
                    .as_ref()
                    .ok_or_else(|| EngineError::Directory("no consensus".into()))?;
                bootstrap::verify_consensus(consensus, &self.network, &certs, now_s, skew)?;
                job.certs = certs;
                // Microdescriptors: keep the ones already held that are still listed.
                let held = std::mem::take(&mut self.dir.mds);
                let wanted = bootstrap::wanted_microdescs(consensus, &held);
                let listed: BTreeSet<[u8; 32]> = consensus
                    .routers()
                    .iter()
                    .filter_map(|r| r.microdesc_digest().copied())
                    .collect();
                job.mds = held
                    .into_iter()
                    .filter(|m| listed.contains(m.digest()))
                    .collect();
                let batch = self.config.microdesc_batch.max(1);
                let batches: Vec<DirDoc> = wanted
                    .chunks(batch)
                    .map(|b| DirDoc::Microdescs(b.to_vec()))
                    .collect();
                job.md_batches = batches.len();
                job.docs.extend(batches);
                if self.dir.relays.is_none() {
                    self.progress(45, "consensus signatures verified");
                }
                Ok(())
            }
            DirDoc::Microdescs(asked) => {
                let mds = bootstrap::parse_microdescs(text, asked)?;
                if let Some(j) = self.job.as_mut() {
                    j.mds.extend(mds);
                }
                Ok(())
            }
        }
    }

    /// Close links to ORs that are not entries (the authority's OR) once they carry nothing.
    fn close_idle_links(&mut self) {
        let idle: Vec<ConnId> = self
            .links
            .iter()
            .filter(|(_, l)| {
                l.circs.is_empty()
                    && !self
                        .network
                        .entries
                        .iter()
                        .any(|e| e.rsa_id == l.entry.rsa_id)
            })
            .map(|(c, _)| *c)
            .collect();
        for conn in idle {
            if self.circs.values().any(|c| c.conn == conn) {
                continue;
            }
            self.links.remove(&conn);
            self.actions.push_back(Action::Close { conn });
        }
    }

    /// Every document is in: install the directory (Tor mode builds the relay set now).
    fn finish_dir_job(&mut self, now: NowMs) {
        let Some(job) = self.job.take() else {
            return;
        };
        if let Some(id) = job.circ {
            self.teardown(id, now, "directory fetched", true);
        }
        self.close_idle_links();
        if let Some(consensus) = job.consensus {
            match bootstrap::relay_set_from_consensus(&consensus, &job.mds) {
                Ok(set) => {
                    self.dir.sendme_min =
                        u8::try_from(consensus.param("sendme_accept_min_version", 0, 0, 255))
                            .unwrap_or(0);
                    self.dir.mds = job.mds;
                    // Refresh between fresh-until and valid-until, as clients do.
                    let fresh = consensus.fresh_until();
                    let valid = consensus.valid_until();
                    let span = valid.saturating_sub(fresh).max(1);
                    let offset = self.rng.next_u64() % span.saturating_mul(3).div_ceil(4).max(1);
                    self.install(set, fresh.saturating_add(offset).saturating_mul(1000), now);
                }
                Err(e) => self.dir_job_failed(now, e),
            }
        }
    }

    /// Use relay set `set`; fetch again at `refresh_at`.
    fn install(&mut self, set: RelaySet, refresh_at: NowMs, now: NowMs) {
        self.dir.subnets = self
            .config
            .distinct_subnets
            .unwrap_or_else(|| !bootstrap::all_loopback(&set));
        let n = set.len();
        let missing = set.missing_microdescs();
        let first = self.dir.relays.is_none();
        self.dir.relays = Some(set);
        self.dir.refresh_at = refresh_at.max(now.saturating_add(REFRESH_RETRY_MS));
        if first {
            let phase = if missing > 0 {
                format!(
                    "directory verified: {n} relays ({missing} left out: microdescriptor \
                     missing or with a wrong digest)"
                )
            } else {
                format!("directory verified: {n} relays")
            };
            self.progress(90, &phase);
            self.events.push_back(Event::Ready);
        }
        self.boot = Boot::Ready;
    }

    /// The directory fetch failed (a refused document, no entry left, a timeout): the
    /// bootstrap fails (and is tried again later); a refresh keeps the old directory.
    fn dir_job_failed(&mut self, now: NowMs, error: EngineError) {
        let Some(job) = self.job.take() else {
            return;
        };
        if let Some(id) = job.circ {
            self.teardown(id, now, &format!("directory fetch failed: {error}"), true);
        }
        self.close_idle_links();
        if self.dir.relays.is_some() {
            self.dir.refresh_at = now.saturating_add(REFRESH_RETRY_MS);
            return;
        }
        self.boot = Boot::Failed {
            retry_at: now.saturating_add(BOOT_RETRY_MS),
        };
        self.events.push_back(Event::BootstrapFailed {
            error: error.clone(),
        });
        let waiting: Vec<StreamHandle> = self.streams.keys().copied().collect();
        for h in waiting {
            self.end_user_stream(
                h,
                now,
                Some(StreamError::NoCircuit(error.to_string())),
                true,
            );
        }
    }
}
