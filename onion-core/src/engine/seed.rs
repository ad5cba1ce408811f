//! The seed's iAnonym mode in the engine ([`Engine::associate`]): a dedicated one-hop circuit
//! (the seed's CID) to the entry OR, bound to a fake domain with RELAY_ASSOCIATE; the OR's
//! WS_OP_SOCKS listener relays a browser's SOCKS connections for that domain as RELAY_WS
//! requests on CID, and the engine serves them itself through its normal exit circuits.
//!
//! - **Association.** Once CID is built, RELAY_ASSOCIATE `[fake_domain]` is sent on it and
//!   [`Event::Associated`] reported. The seed defines no answer to a success; an OR that sends
//!   RELAY_ASSOCIATE back refuses the domain (taken or invalid): [`Event::AssociateRefused`],
//!   CID is closed and the page must pick another fake domain.
//! - **Requests.** A RELAY_WS message from the OR carries `Addr` =
//!   `remoteAddress:remotePort:connPort:requestId` and the browser's bytes. `remoteAddress` is
//!   the fake domain itself (then the request goes to the `origin` given to
//!   [`Engine::associate`]) or `host.<fake domain>` (then it goes to `host:remotePort`). The
//!   engine opens a stream to that target through an exit circuit of the configured length
//!   (isolation key `associate:<fake domain>`, so never shared with the page's own streams),
//!   writes the browser's bytes to it and sends what comes back as RELAY_WS messages on the
//!   same stream id of CID (`Addr` = `remoteAddress:remotePort`). The site closing the stream
//!   (or the stream failing) ends the request with an empty RELAY_WS message; an empty message
//!   from the OR (the browser closed) closes the stream. Each request ends with
//!   [`Event::SeedRequestDone`].
//! - **Bounds.** At most [`MAX_SEED_REQUESTS`] requests at once (more are ended at once), at
//!   most [`MAX_SEED_PENDING`] browser bytes buffered per request while its stream connects
//!   or is blocked (more ends the request): the OR sends with credit, so a well-behaved OR
//!   never hits it. Answers leave as the exit delivers them; the exit's stream window (paced
//!   by [`Engine::stream_consumed`] once an answer is queued for the link) bounds them.
//! - **End.** CID closing (DESTROY, link lost, [`Engine::close`]) ends every request (their
//!   streams are closed) and reports [`Event::AssociationClosed`].
//!
//! The streams of the requests are ordinary engine streams, invisible to the user: their
//! events are taken out of the event queue by [`Engine::seed_pump`], run after every call.

use std::collections::BTreeMap;

use onion_cell::relaycell::{Associate, OpWsAddr, OrWsAddr, RelayMsg, StreamId, WsStream};
use rand_core::CryptoRng;

use super::Engine;
use crate::engine::circ::{Circ, CircState};
use crate::engine::{CircuitPurpose, EngineError, Event, NowMs, StreamHandle};
use crate::netdesc::Directory;

/// Most requests served at once on CID.
pub const MAX_SEED_REQUESTS: usize = 256;
/// Most browser bytes buffered per request before its stream takes them.
pub const MAX_SEED_PENDING: usize = 256 * 1024;
/// Most answer bytes in one RELAY_WS message.
pub const SEED_ANSWER_CHUNK: usize = 32 * 1024;

/// One request from the OR's SOCKS side.
#[derive(Debug)]
pub(super) struct SeedReq {
    request_id: String,
    /// The `Addr` of the answers.
    back: OpWsAddr,
    /// Where it goes, as text (events).
    target: String,
    /// The stream serving it.
    handle: StreamHandle,
    /// Browser bytes the stream has not taken yet.
    pending: Vec<u8>,
    connected: bool,
    bytes_in: u64,
    bytes_out: u64,
}

/// A message from the OR waiting for [`Engine::seed_pump`].
#[derive(Debug)]
enum Incoming {
    Ws { stream: StreamId, msg: WsStream },
    Refused(String),
}

/// The association (one per engine).
#[derive(Debug)]
pub(super) struct Seed {
    pub(super) fake_domain: String,
    /// Lowercased, without a trailing dot.
    normalized: String,
    origin: Option<(String, u16)>,
    /// The engine id of CID.
    pub(super) circ: u64,
    /// RELAY_ASSOCIATE sent.
    sent: bool,
    requests: BTreeMap<StreamId, SeedReq>,
    incoming: Vec<Incoming>,
    /// CID is gone: why (the requests are cleaned up by the pump).
    closed: Option<String>,
    /// The pump runs (re-entry guard).
    pumping: bool,
}

impl Seed {
    /// CID's engine id once RELAY_ASSOCIATE went out on it and while it lives.
    pub(super) fn cid_ready(&self) -> Option<u64> {
        (self.sent && self.closed.is_none()).then_some(self.circ)
    }

    fn owns(&self, h: StreamHandle) -> Option<StreamId> {
        self.requests
            .iter()
            .find(|(_, r)| r.handle == h)
            .map(|(sid, _)| *sid)
    }
}

fn normalize(d: &str) -> String {
    d.trim_end_matches('.').to_ascii_lowercase()
}

/// The stream handle an event is about, if it is one of a stream's.
fn event_stream(e: &Event) -> Option<StreamHandle> {
    match e {
        Event::StreamConnected { stream }
        | Event::StreamData { stream, .. }
        | Event::StreamWritable { stream }
        | Event::StreamEnded { stream, .. }
        | Event::Resolved { stream, .. } => Some(*stream),
        _ => None,
    }
}

impl<R: CryptoRng> Engine<R> {
    /// The seed's iAnonym mode: build a one-hop circuit (CID) to an entry OR (one of ours:
    /// the network must be an own network) and associate `fake_domain` with it; then serve
    /// the requests the OR relays from its WS_OP_SOCKS listener (see the
    /// module documentation of `engine/seed.rs`). Requests for the fake domain itself go to `origin`
    /// (`host`, `port`); requests for `host.<fake domain>` go to `host`. Returns CID's
    /// circuit id. [`Event::Associated`], then [`Event::SeedRequestDone`] per request;
    /// [`Event::AssociateRefused`] or [`Event::AssociationClosed`] when it ends. One
    /// association per engine at a time.
    pub fn associate(
        &mut self,
        now: NowMs,
        fake_domain: &str,
        origin: Option<(&str, u16)>,
    ) -> Result<u64, EngineError> {
        if self.closed {
            return Err(EngineError::Closed);
        }
        if !matches!(self.network.directory, Directory::Own(_)) {
            return Err(EngineError::InvalidConfig(
                "associate needs an own network (hop 1 must be one of our ORs)",
            ));
        }
        if self.seed.as_ref().is_some_and(|s| s.closed.is_none()) {
            return Err(EngineError::InvalidConfig("already associated"));
        }
        let normalized = normalize(fake_domain);
        if normalized.is_empty() || Associate::new(fake_domain.to_owned()).is_err() {
            return Err(EngineError::InvalidTarget(format!(
                "bad fake domain {fake_domain:?}"
            )));
        }
        if let Some((host, port)) = origin
            && (host.is_empty() || port == 0)
        {
            return Err(EngineError::InvalidTarget("bad origin".into()));
        }
        let entry = self.choose_entry(now).ok_or_else(|| {
            EngineError::EntriesFailed(
                self.last_entry_error
                    .clone()
                    .unwrap_or_else(|| "no usable entry OR".into()),
            )
        })?;
        let path = vec![self.entry_hop(&entry)];
        let circ = self.launch(now, CircuitPurpose::Seed, path, None)?;
        self.seed = Some(Seed {
            fake_domain: fake_domain.to_owned(),
            normalized,
            origin: origin.map(|(h, p)| (h.to_owned(), p)),
            circ,
            sent: false,
            requests: BTreeMap::new(),
            incoming: Vec::new(),
            closed: None,
            pumping: false,
        });
        self.maintain(now);
        Ok(circ)
    }

    /// End the association: CID is destroyed, its requests end.
    pub fn dissociate(&mut self, now: NowMs) {
        if let Some(id) = self.seed.as_ref().map(|s| s.circ) {
            self.teardown(id, now, "dissociated", true);
        }
        self.maintain(now);
    }

    /// The associated fake domain, while CID lives.
    pub fn associated_domain(&self) -> Option<&str> {
        self.seed
            .as_ref()
            .filter(|s| s.closed.is_none())
            .map(|s| s.fake_domain.as_str())
    }

    /// Hook: circuit `id` (purpose seed) is built: send RELAY_ASSOCIATE.
    pub(super) fn seed_built(&mut self, id: u64, now: NowMs) {
        let Some(seed) = self.seed.as_mut().filter(|s| s.circ == id && !s.sent) else {
            self.teardown(id, now, "not the association's circuit", true);
            return;
        };
        seed.sent = true;
        let domain = seed.fake_domain.clone();
        let result = match (
            Associate::new(domain.clone()),
            self.circs.get_mut(&id).and_then(Circ::live),
        ) {
            (Ok(a), Some(c)) => c
                .send_seed(&mut self.rng, StreamId::ZERO, a.into())
                .map_err(|e| e.to_string()),
            (Err(e), _) => Err(e.to_string()),
            (_, None) => Err("circuit gone".into()),
        };
        self.flush(id);
        match result {
            Ok(()) => {
                self.events.push_back(Event::Associated {
                    fake_domain: domain,
                    circuit: id,
                });
                self.relay_info_resume(now);
            }
            Err(e) => self.teardown(id, now, &format!("cannot associate: {e}"), true),
        }
    }

    /// Hook: one of the seed's messages arrived on circuit `id`.
    pub(super) fn seed_message(&mut self, id: u64, stream: StreamId, msg: RelayMsg) {
        let Some(seed) = self.seed.as_mut().filter(|s| s.circ == id) else {
            return;
        };
        match msg {
            RelayMsg::WsStream(msg) => seed.incoming.push(Incoming::Ws { stream, msg }),
            RelayMsg::Associate(a) => seed
                .incoming
                .push(Incoming::Refused(a.fake_domain().to_owned())),
            // RELAY_INFO answers: not asked for by the engine.
            _ => {}
        }
    }

    /// Hook: circuit `id` is gone.
    pub(super) fn seed_circuit_gone(&mut self, id: u64, why: &str) {
        if let Some(seed) = self.seed.as_mut()
            && seed.circ == id
            && seed.closed.is_none()
        {
            seed.closed = Some(why.to_owned());
        }
    }

    /// Hook, after every call: serve the requests (OR messages, their streams' events).
    pub(super) fn seed_pump(&mut self, now: NowMs) {
        match self.seed.as_mut() {
            Some(s) if !s.pumping => s.pumping = true,
            _ => return,
        }
        for _ in 0..1000 {
            if !self.seed_round(now) {
                break;
            }
        }
        if let Some(s) = self.seed.as_mut() {
            s.pumping = false;
        }
    }

    /// One round of the pump; whether anything happened.
    fn seed_round(&mut self, now: NowMs) -> bool {
        let Some(seed) = self.seed.as_mut() else {
            return false;
        };
        let incoming = std::mem::take(&mut seed.incoming);
        let mut moved = !incoming.is_empty();
        for m in incoming {
            match m {
                Incoming::Ws { stream, msg } => self.seed_ws(now, stream, &msg),
                Incoming::Refused(domain) => {
                    self.events.push_back(Event::AssociateRefused {
                        fake_domain: domain,
                    });
                    if let Some(id) = self.seed.as_ref().map(|s| s.circ) {
                        self.teardown(id, now, "the OR refused the fake domain", true);
                    }
                }
            }
        }
        // The events of our streams.
        let Some(seed) = self.seed.as_ref() else {
            return moved;
        };
        let mut mine = Vec::new();
        let mut rest = std::collections::VecDeque::with_capacity(self.events.len());
        for e in self.events.drain(..) {
            match event_stream(&e).and_then(|h| seed.owns(h)) {
                Some(sid) => mine.push((sid, e)),
                None => rest.push_back(e),
            }
        }
        self.events = rest;
        moved |= !mine.is_empty();
        for (sid, e) in mine {
            self.seed_stream_event(now, sid, e);
        }
        // CID died: end everything.
        if let Some(why) = self.seed.as_ref().and_then(|s| s.closed.clone()) {
            let Some(seed) = self.seed.take() else {
                return moved;
            };
            for (_, r) in seed.requests {
                self.end_user_stream(r.handle, now, None, false);
                self.events.push_back(Event::SeedRequestDone {
                    request_id: r.request_id,
                    target: r.target,
                    bytes_in: r.bytes_in,
                    bytes_out: r.bytes_out,
                    error: Some(format!("association closed: {why}")),
                });
            }
            self.events.push_back(Event::AssociationClosed {
                fake_domain: seed.fake_domain,
                reason: why,
            });
            return true;
        }
        moved
    }

    /// Where a request for `addr` goes.
    fn seed_target(&self, addr: &OrWsAddr) -> Option<(String, u16)> {
        let seed = self.seed.as_ref()?;
        let host = normalize(&addr.remote_address);
        if host == seed.normalized {
            return seed.origin.clone();
        }
        let sub = host
            .strip_suffix(seed.normalized.as_str())?
            .strip_suffix('.')?;
        (!sub.is_empty()).then(|| (sub.to_owned(), addr.remote_port))
    }

    /// A RELAY_WS message from the OR.
    fn seed_ws(&mut self, now: NowMs, sid: StreamId, msg: &WsStream) {
        let Ok(addr) = msg.or_addr() else {
            return; // a bad Addr: nothing to answer on
        };
        let data = msg.request();
        let same = self
            .seed
            .as_ref()
            .and_then(|s| s.requests.get(&sid))
            .map(|r| r.request_id == addr.request_id);
        if same == Some(false) {
            // The stream id was reused for a new request: the old one is over.
            self.seed_finish(now, sid, None, false);
        }
        if same != Some(true) {
            if data.is_empty() {
                return;
            }
            self.seed_open(now, sid, &addr, data);
            return;
        }
        if data.is_empty() {
            // The browser closed: the request ends both ways.
            self.seed_finish(now, sid, None, false);
            return;
        }
        let over = match self.seed.as_mut().and_then(|s| s.requests.get_mut(&sid)) {
            Some(r) => {
                r.bytes_in = r.bytes_in.saturating_add(data.len() as u64);
                if r.pending.len().saturating_add(data.len()) > MAX_SEED_PENDING {
                    true
                } else {
                    r.pending.extend_from_slice(data);
                    false
                }
            }
            None => return,
        };
        if over {
            self.seed_finish(now, sid, Some("too many bytes buffered".into()), true);
        } else {
            self.seed_write(now, sid);
        }
    }

    /// A new request.
    fn seed_open(&mut self, now: NowMs, sid: StreamId, addr: &OrWsAddr, data: &[u8]) {
        let back = OpWsAddr {
            remote_address: addr.remote_address.clone(),
            remote_port: addr.remote_port,
        };
        let full = self
            .seed
            .as_ref()
            .is_none_or(|s| s.requests.len() >= MAX_SEED_REQUESTS);
        let target = self.seed_target(addr);
        let iso = self
            .seed
            .as_ref()
            .map(|s| format!("associate:{}", s.normalized));
        let opened = match (&target, full) {
            (_, true) => Err("too many requests".to_owned()),
            (None, _) => Err(format!("no target for {}", addr.remote_address)),
            (Some((host, port)), false) if data.len() <= MAX_SEED_PENDING => self
                .connect(now, host, *port, iso.as_deref())
                .map_err(|e| e.to_string()),
            (Some(_), false) => Err("too many bytes buffered".to_owned()),
        };
        let target_text = target
            .map(|(h, p)| format!("{h}:{p}"))
            .unwrap_or_else(|| addr.remote_address.clone());
        match opened {
            Ok(handle) => {
                if let Some(s) = self.seed.as_mut() {
                    s.requests.insert(
                        sid,
                        SeedReq {
                            request_id: addr.request_id.clone(),
                            back,
                            target: target_text,
                            handle,
                            pending: data.to_vec(),
                            connected: false,
                            bytes_in: data.len() as u64,
                            bytes_out: 0,
                        },
                    );
                }
            }
            Err(e) => {
                self.seed_answer(now, sid, &back, &[]);
                self.events.push_back(Event::SeedRequestDone {
                    request_id: addr.request_id.clone(),
                    target: target_text,
                    bytes_in: data.len() as u64,
                    bytes_out: 0,
                    error: Some(e),
                });
            }
        }
    }

    /// Offer a request's pending bytes to its stream.
    fn seed_write(&mut self, now: NowMs, sid: StreamId) {
        let Some((h, pending)) = self
            .seed
            .as_mut()
            .and_then(|s| s.requests.get_mut(&sid))
            .filter(|r| r.connected && !r.pending.is_empty())
            .map(|r| (r.handle, std::mem::take(&mut r.pending)))
        else {
            return;
        };
        let n = self.stream_write(now, h, &pending).unwrap_or(0);
        if let Some(r) = self.seed.as_mut().and_then(|s| s.requests.get_mut(&sid)) {
            let mut rest = pending.get(n..).unwrap_or_default().to_vec();
            rest.extend_from_slice(&r.pending);
            r.pending = rest;
        }
    }

    /// An event of a request's stream.
    fn seed_stream_event(&mut self, now: NowMs, sid: StreamId, e: Event) {
        match e {
            Event::StreamConnected { .. } => {
                if let Some(r) = self.seed.as_mut().and_then(|s| s.requests.get_mut(&sid)) {
                    r.connected = true;
                }
                self.seed_write(now, sid);
            }
            Event::StreamWritable { .. } => self.seed_write(now, sid),
            Event::StreamData { stream, data } => {
                let Some(back) = self
                    .seed
                    .as_mut()
                    .and_then(|s| s.requests.get_mut(&sid))
                    .map(|r| {
                        r.bytes_out = r.bytes_out.saturating_add(data.len() as u64);
                        r.back.clone()
                    })
                else {
                    return;
                };
                if self.seed_answer(now, sid, &back, &data) {
                    self.stream_consumed(now, stream, data.len());
                } else {
                    self.seed_finish(now, sid, Some("cannot answer on CID".into()), true);
                }
            }
            Event::StreamEnded { error, .. } => {
                // The stream is gone already: end the request toward the OR.
                let err = error.map(|e| e.to_string());
                self.seed_finish(now, sid, err, true);
            }
            _ => {}
        }
    }

    /// End request `sid`: close its stream (if still open), tell the OR when `tell`.
    fn seed_finish(&mut self, now: NowMs, sid: StreamId, error: Option<String>, tell: bool) {
        let Some(r) = self.seed.as_mut().and_then(|s| s.requests.remove(&sid)) else {
            return;
        };
        self.end_user_stream(r.handle, now, None, false);
        if tell {
            self.seed_answer(now, sid, &r.back, &[]);
        }
        self.events.push_back(Event::SeedRequestDone {
            request_id: r.request_id,
            target: r.target,
            bytes_in: r.bytes_in,
            bytes_out: r.bytes_out,
            error,
        });
    }

    /// Send `bytes` (empty: the end) on CID's stream `sid` as RELAY_WS messages; whether it
    /// went out.
    fn seed_answer(&mut self, now: NowMs, sid: StreamId, back: &OpWsAddr, bytes: &[u8]) -> bool {
        let Some(id) = self.seed.as_ref().map(|s| s.circ) else {
            return false;
        };
        let chunks: Vec<&[u8]> = if bytes.is_empty() {
            vec![&[]]
        } else {
            bytes.chunks(SEED_ANSWER_CHUNK).collect()
        };
        for chunk in chunks {
            // Queued cells first: RELAY_WS cells leave in encryption order.
            self.flush(id);
            let Some(c) = self.circs.get_mut(&id) else {
                return false;
            };
            let (Some(wire), conn) = (c.wire, c.conn) else {
                return false;
            };
            let CircState::Live(client) = &mut c.state else {
                return false;
            };
            let msg = match WsStream::from_op(back, chunk.to_vec()) {
                Ok(m) => m,
                Err(_) => return false,
            };
            match client.seed_ws_cell(sid, msg.into()) {
                Ok(cell) => self.send_cell(conn, wire, cell),
                Err(e) => {
                    if e.is_fatal() {
                        self.circuit_error(id, now, &e.to_string());
                    }
                    return false;
                }
            }
        }
        true
    }
}
