//! [`OrCircuit`]: the OR side of one circuit, sans-IO.

use std::collections::VecDeque;
use std::net::IpAddr;

use onion_cell::bytes::{DecodeError, EncodeError, Reader};
use onion_cell::chancell::{ChanMsg, Create, Create2, DestroyReason, Relay, RelayWs};
use onion_cell::relaycell::{
    Connected, Data, Dialect, End, EndReason, Extend, Extend2, Extended, Extended2, LinkSpec,
    MAX_DATA_LEN, RelayCell, RelayCmd, RelayMsg, Resolved, Sendme, StreamId, Truncated,
};
use rand_core::CryptoRng;

use super::create::{CreateError, HandshakeKind, server_handshake};
use super::error::{CircuitError, SendError};
use super::event::{CircuitEvent, ExtendRequest, ForwardAction};
use super::keys::{ED_ID_LEN, OnionKeys, RSA_ID_LEN};
use super::stream::{Lookup, StreamKind, StreamState, StreamTable};
use crate::crypto::keys::HopKeys;
use crate::crypto::relay::{CellDigest, RELAY_BODY_LEN, RelayLayer};
use crate::flow::{CircuitReceiver, CircuitSender, WindowParams};

/// Most RELAY_EARLY cells a circuit accepts (tor-spec §5.6).
pub const MAX_RELAY_EARLY: u8 = 8;
/// Queue slots that bulk cells (DATA, cells passed back from the next hop, the seed's
/// RELAY_WS / RELAY_INFO) leave free, so that the cells one forward cell can trigger (a
/// circuit SENDME, a stream SENDME, an END) always fit.
pub const CONTROL_RESERVE: usize = 4;
/// A stream SENDME is sent only while at most this many delivered bytes of the stream await
/// flushing (tor-spec §7.4: "less than ten cell payloads remaining to be flushed").
pub const FLUSH_LIMIT: usize = 10 * MAX_DATA_LEN;

/// Per-circuit limits and flow-control parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircuitConfig {
    /// Most streams (BEGIN, BEGIN_DIR, RESOLVE) open at once; more are refused with END
    /// (RESOURCELIMIT). Default 256.
    pub max_streams: usize,
    /// Capacity of the queue toward the client, in cells (at least
    /// [`CONTROL_RESERVE`] + 1 is used). Default 64.
    pub max_queued_cells: usize,
    /// Circuit window parameters (consensus `circwindow`). Default 1000 / 100.
    pub circ_window: WindowParams,
    /// Consensus `sendme_accept_min_version` for circuit SENDMEs from the client (default 0,
    /// param-spec; 1 refuses unauthenticated SENDMEs).
    pub sendme_accept_min_version: u8,
}

impl Default for CircuitConfig {
    fn default() -> Self {
        CircuitConfig {
            max_streams: 256,
            max_queued_cells: 64,
            circ_window: WindowParams::CIRCUIT,
            sendme_accept_min_version: 0,
        }
    }
}

/// Where the circuit's next hop stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NextHop {
    /// None: the circuit ends here.
    None,
    /// An EXTEND / EXTEND2 is being carried out.
    Extending {
        /// Whether it was a legacy EXTEND (answered with EXTENDED).
        legacy: bool,
    },
    /// Extended: unrecognized cells are passed on.
    Open,
}

/// Which queue budget a cell uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// May use the whole queue.
    Control,
    /// Leaves [`CONTROL_RESERVE`] slots free.
    Bulk,
}

/// A request that failed while handling a forward cell is the circuit's failure.
fn fatal(e: SendError) -> CircuitError {
    match e {
        SendError::QueueFull => CircuitError::QueueFull,
        SendError::Closed(reason) => CircuitError::Closed(reason),
        _ => CircuitError::Internal("cannot build a cell toward the client"),
    }
}

/// The OR side of one circuit: its relay crypto layer, RELAY_EARLY budget, circuit windows,
/// stream table and next-hop state, and a bounded queue of cells toward the client.
///
/// Created by [`OrCircuit::accept_create`]; owned by the task of the link it came from (the
/// *previous* hop). See the [module documentation](super) for the driver's loop.
#[derive(Debug)]
pub struct OrCircuit {
    /// This hop's tor1 crypto.
    layer: RelayLayer,
    /// The handshake that created the circuit.
    kind: HandshakeKind,
    /// Whether the previous hop is an unauthenticated client link.
    from_client: bool,
    /// How recognized cells are decoded (the seed's 40-42 only on client circuits).
    dialect: Dialect,
    /// Limits.
    config: CircuitConfig,
    /// Our RSA identity (to refuse extending to ourselves).
    own_rsa_id: [u8; RSA_ID_LEN],
    /// Our Ed25519 identity.
    own_ed_id: [u8; ED_ID_LEN],
    /// RELAY_EARLY cells still accepted.
    early_left: u8,
    /// The next hop.
    next_hop: NextHop,
    /// A TRUNCATE awaits `truncated`.
    truncate_pending: bool,
    /// Package window toward the client, and the digests its SENDME v1 must echo.
    sender: CircuitSender,
    /// Deliver window for DATA from the client.
    receiver: CircuitReceiver,
    /// Streams ending here.
    streams: StreamTable,
    /// Cells toward the client, encrypted, in sending order.
    out: VecDeque<ChanMsg>,
    /// Recognized cells dropped: unknown or misdirected commands.
    ignored: u64,
    /// Set once the circuit failed: the reason its DESTROY carried.
    failed: Option<DestroyReason>,
}

impl OrCircuit {
    /// Answer a circuit-creation cell (CREATE, CREATE_FAST, CREATE2 or the seed's
    /// CREATE_FAST_WS) with the default [`CircuitConfig`]. Returns the circuit and the reply
    /// (CREATED, CREATED_FAST, CREATED2 or CREATED_FAST_WS) to send on the same circuit id.
    ///
    /// `from_client`: the link the cell came on is an unauthenticated client link. Only then
    /// are the seed's relay commands 40-42 decoded ([`Dialect::Seed`]), RELAY_WS cells
    /// accepted, and CREATE_FAST_WS allowed; and only then (or after CREATE_FAST) is this hop
    /// 1.
    ///
    /// On error the driver answers with a DESTROY carrying [`CreateError::destroy_reason`].
    pub fn accept_create<R: CryptoRng + ?Sized>(
        rng: &mut R,
        keys: &OnionKeys,
        msg: &ChanMsg,
        from_client: bool,
    ) -> Result<(OrCircuit, ChanMsg), CreateError> {
        Self::accept_create_with(rng, keys, &CircuitConfig::default(), msg, from_client)
    }

    /// [`accept_create`](Self::accept_create) with explicit limits.
    pub fn accept_create_with<R: CryptoRng + ?Sized>(
        rng: &mut R,
        keys: &OnionKeys,
        config: &CircuitConfig,
        msg: &ChanMsg,
        from_client: bool,
    ) -> Result<(OrCircuit, ChanMsg), CreateError> {
        let (kind, hop_keys, reply) = server_handshake(rng, keys, msg, from_client)?;
        let circ = OrCircuit::new(&hop_keys, kind, from_client, keys, config);
        Ok((circ, reply))
    }

    /// A circuit whose handshake produced `hop_keys`.
    fn new(
        hop_keys: &HopKeys,
        kind: HandshakeKind,
        from_client: bool,
        keys: &OnionKeys,
        config: &CircuitConfig,
    ) -> Self {
        OrCircuit {
            layer: RelayLayer::new(hop_keys),
            kind,
            from_client,
            dialect: if from_client {
                Dialect::Seed
            } else {
                Dialect::Tor
            },
            config: config.clone(),
            own_rsa_id: *keys.rsa_id(),
            own_ed_id: *keys.ed_id(),
            early_left: MAX_RELAY_EARLY,
            next_hop: NextHop::None,
            truncate_pending: false,
            sender: CircuitSender::new(config.circ_window, config.sendme_accept_min_version),
            receiver: CircuitReceiver::new(config.circ_window),
            streams: StreamTable::new(config.max_streams),
            out: VecDeque::new(),
            ignored: 0,
            failed: None,
        }
    }

    // -----------------------------------------------------------------------------------------
    // State
    // -----------------------------------------------------------------------------------------

    /// The handshake that created the circuit.
    pub fn handshake_kind(&self) -> HandshakeKind {
        self.kind
    }

    /// Whether the previous hop is an unauthenticated client link.
    pub fn is_from_client(&self) -> bool {
        self.from_client
    }

    /// Whether this relay is the circuit's first hop: the previous hop is a client link, or
    /// the circuit was created with CREATE_FAST(_WS) (tor-spec §5.4). ORs SHOULD refuse
    /// RELAY_BEGIN on such circuits (no single-hop exits); the driver decides.
    pub fn is_first_hop(&self) -> bool {
        self.from_client || self.kind.first_hop_only()
    }

    /// How recognized relay cells are decoded.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// RELAY_EARLY cells still accepted.
    pub fn relay_early_remaining(&self) -> u8 {
        self.early_left
    }

    /// The next hop's state.
    pub fn next_hop(&self) -> NextHop {
        self.next_hop
    }

    /// Streams open (or pending) on the circuit.
    pub fn stream_count(&self) -> usize {
        self.streams.active_len()
    }

    /// Recognized cells dropped so far: unknown commands (tor-spec §6.1: "dropped and
    /// ignored"), backward-only commands, and messages for finished streams.
    pub fn ignored_cells(&self) -> u64 {
        self.ignored
    }

    /// DATA cells this hop may still send toward the client (circuit package window).
    pub fn package_window(&self) -> u16 {
        self.sender.window()
    }

    /// DATA cells this hop will still accept from the client (circuit deliver window).
    pub fn deliver_window(&self) -> u16 {
        self.receiver.window()
    }

    /// DATA cells this hop may still send on `stream`, if it is open (or pending).
    pub fn stream_package_window(&self, stream: StreamId) -> Option<u16> {
        self.streams.get(stream).map(|s| s.windows.package.window())
    }

    /// Cells queued toward the client.
    pub fn queued_cells(&self) -> usize {
        self.out.len()
    }

    /// Whether a forward cell may be handled now: the queue has room for what it can
    /// trigger. When not, drain [`poll_backward`](Self::poll_backward) first (or stop reading
    /// from the client link until the queue drains).
    pub fn can_accept_forward(&self) -> bool {
        self.room(Class::Control) >= CONTROL_RESERVE
    }

    /// How many bulk cells (from the next hop, DATA) the queue toward the client takes now.
    pub fn backward_room(&self) -> usize {
        self.room(Class::Bulk)
    }

    /// If the circuit failed, the reason its DESTROY carried.
    pub fn closed_reason(&self) -> Option<DestroyReason> {
        self.failed
    }

    /// The next cell toward the client, already encrypted: a RELAY or, for the seed's
    /// RELAY_WS / RELAY_INFO replies, a RELAY_WS message. Send it on the previous hop's link
    /// with this circuit's id, in order.
    pub fn poll_backward(&mut self) -> Option<ChanMsg> {
        self.out.pop_front()
    }

    // -----------------------------------------------------------------------------------------
    // Forward direction
    // -----------------------------------------------------------------------------------------

    /// Handle the body of a RELAY (`early` false) or RELAY_EARLY (`early` true) cell from the
    /// previous hop: enforce the RELAY_EARLY budget, remove this hop's layer, then pass the
    /// cell on or handle it here. `rng` pads the cells this may queue toward the client.
    ///
    /// On [`ForwardAction::PassOn`] `body` holds the cell for the next hop. On error the
    /// circuit is dead: send DESTROY with [`CircuitError::destroy_reason`] both ways; the
    /// queue toward the client is emptied and every later call fails.
    pub fn handle_forward<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        body: &mut [u8; RELAY_BODY_LEN],
        early: bool,
    ) -> Result<ForwardAction, CircuitError> {
        self.check_alive()?;
        let result = self.forward(rng, &mut body[..], early, false);
        self.note(result)
    }

    /// Handle the body of one of the seed's RELAY_WS cells (variable length, same crypto as
    /// RELAY) from the previous hop. Only client circuits take them, and they must be for
    /// this hop: a RELAY_WS cell is never passed on.
    pub fn handle_forward_ws<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        body: &mut [u8],
    ) -> Result<ForwardAction, CircuitError> {
        self.check_alive()?;
        let result = if self.from_client {
            self.forward(rng, body, false, true)
        } else {
            Err(CircuitError::RelayWsNotClient)
        };
        self.note(result)
    }

    /// Fail if the circuit already failed.
    fn check_alive(&self) -> Result<(), CircuitError> {
        match self.failed {
            Some(reason) => Err(CircuitError::Closed(reason)),
            None => Ok(()),
        }
    }

    /// Record a failure: the circuit accepts nothing more, and the cells still queued are
    /// dropped (nothing may follow the DESTROY).
    fn note<T>(&mut self, result: Result<T, CircuitError>) -> Result<T, CircuitError> {
        if let Err(e) = &result {
            self.failed = Some(e.destroy_reason());
            self.out.clear();
        }
        result
    }

    /// Count a recognized cell that is dropped.
    fn ignore(&mut self) -> ForwardAction {
        self.ignored = self.ignored.saturating_add(1);
        ForwardAction::Consumed
    }

    /// Budget, decrypt, dispatch.
    fn forward<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        body: &mut [u8],
        early: bool,
        ws: bool,
    ) -> Result<ForwardAction, CircuitError> {
        if early {
            self.early_left =
                self.early_left
                    .checked_sub(1)
                    .ok_or(CircuitError::TooManyRelayEarly {
                        max: MAX_RELAY_EARLY,
                    })?;
        }
        match self.layer.decrypt_forward(body)? {
            Some(digest) => self.recognized(rng, body, &digest, early),
            None if ws => Err(CircuitError::RelayWsUnrecognized),
            None if self.next_hop == NextHop::Open => Ok(ForwardAction::PassOn { early }),
            None => Err(CircuitError::Unrecognized),
        }
    }

    /// A cell for this hop.
    fn recognized<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        body: &[u8],
        digest: &CellDigest,
        early: bool,
    ) -> Result<ForwardAction, CircuitError> {
        let cell = match RelayCell::decode(body, self.dialect) {
            Ok(cell) => cell,
            Err(e) => return self.undecodable(rng, body, e),
        };
        let (stream, msg) = cell.into_parts();
        match msg {
            RelayMsg::Data(d) => self.on_data(rng, stream, d.into_bytes(), digest),
            RelayMsg::Sendme(s) => self.on_sendme(rng, stream, &s),
            RelayMsg::Begin(b) => {
                let event = CircuitEvent::BeginRequest {
                    stream,
                    target: b.address().clone(),
                    port: b.port(),
                    flags: b.flags(),
                };
                self.on_open(rng, stream, StreamKind::Exit, event)
            }
            RelayMsg::BeginDir(_) => {
                let event = CircuitEvent::BeginDirRequest { stream };
                self.on_open(rng, stream, StreamKind::Dir, event)
            }
            RelayMsg::Resolve(r) => {
                let event = CircuitEvent::ResolveRequest {
                    stream,
                    query: r.query().to_owned(),
                };
                self.on_open(rng, stream, StreamKind::Resolve, event)
            }
            RelayMsg::End(e) => Ok(self.on_end(stream, e.reason())),
            RelayMsg::Extend2(e) => self.on_extend2(&e, early),
            RelayMsg::Extend(e) => self.on_extend(&e, early),
            RelayMsg::Truncate(_) => {
                self.next_hop = NextHop::None;
                self.truncate_pending = true;
                Ok(ForwardAction::Event(CircuitEvent::Truncate))
            }
            RelayMsg::Drop(_) => Ok(ForwardAction::Consumed),
            // Decoded only under Dialect::Seed, i.e. on client circuits.
            RelayMsg::Associate(msg) => Ok(ForwardAction::Event(CircuitEvent::SeedAssociate {
                stream,
                msg,
            })),
            RelayMsg::WsStream(msg) => {
                Ok(ForwardAction::Event(CircuitEvent::SeedWs { stream, msg }))
            }
            RelayMsg::Info(msg) => Ok(ForwardAction::Event(CircuitEvent::SeedInfo { stream, msg })),
            // Backward-only stream commands: on a live stream the client is confused (C tor
            // closes the circuit); otherwise drop them, as C tor does.
            RelayMsg::Connected(_) | RelayMsg::Resolved(_) => {
                if matches!(self.streams.lookup(stream), Lookup::Active(_)) {
                    let cmd = if matches!(msg, RelayMsg::Connected(_)) {
                        RelayCmd::CONNECTED
                    } else {
                        RelayCmd::RESOLVED
                    };
                    Err(CircuitError::UnexpectedCommand { cmd, stream })
                } else {
                    Ok(self.ignore())
                }
            }
            // EXTENDED, EXTENDED2, TRUNCATED (backward-only; C tor: "unsupported at
            // non-origin. Dropping.") and commands without a typed message (tor-spec §6.1:
            // "dropped and ignored").
            _ => Ok(self.ignore()),
        }
    }

    /// A recognized cell that does not decode. A malformed BEGIN / BEGIN_DIR / RESOLVE only
    /// costs its stream (END with TORPROTOCOL, as C tor answers an unparsable BEGIN); a seed
    /// command that does not parse is taken for Tor's colliding command and dropped; anything
    /// else kills the circuit.
    fn undecodable<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        body: &[u8],
        err: DecodeError,
    ) -> Result<ForwardAction, CircuitError> {
        let mut r = Reader::new(body);
        let header = (|| {
            let cmd = RelayCmd(r.take_u8()?);
            r.take_u16()?;
            let stream = StreamId(r.take_u16()?);
            r.take_u32()?;
            let len = usize::from(r.take_u16()?);
            Ok::<_, DecodeError>((cmd, stream, len))
        })();
        let Ok((cmd, stream, len)) = header else {
            return Err(err.into());
        };
        if len > r.remaining() {
            return Err(err.into());
        }
        if self.dialect == Dialect::Seed && cmd.is_seed_extension() {
            return Ok(self.ignore());
        }
        let opens_stream = matches!(
            cmd,
            RelayCmd::BEGIN | RelayCmd::BEGIN_DIR | RelayCmd::RESOLVE
        );
        if !opens_stream || stream.is_zero() {
            return Err(err.into());
        }
        if matches!(self.streams.lookup(stream), Lookup::Active(_)) {
            return Ok(self.ignore());
        }
        self.refuse_stream(rng, stream, EndReason::TORPROTOCOL)?;
        Ok(ForwardAction::Consumed)
    }

    /// Answer a stream the client tried to open with END, and absorb what the client sends on
    /// it before it sees the END.
    fn refuse_stream<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        stream: StreamId,
        reason: EndReason,
    ) -> Result<(), CircuitError> {
        self.originate(rng, stream, End::new(reason).into(), Class::Control)
            .map_err(fatal)?;
        self.streams.remember_refused(stream);
        Ok(())
    }

    /// RELAY_DATA.
    fn on_data<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        stream: StreamId,
        data: Vec<u8>,
        digest: &CellDigest,
    ) -> Result<ForwardAction, CircuitError> {
        // Every DATA cell counts toward the circuit window, whatever its stream.
        if let Some(tag) = self
            .receiver
            .on_data_received(digest)
            .map_err(CircuitError::Flow)?
        {
            let sendme = Sendme::V1 {
                digest: *tag.as_bytes(),
            };
            self.originate(rng, StreamId::ZERO, sendme.into(), Class::Control)
                .map_err(fatal)?;
        }
        let stream_flow = |error| CircuitError::StreamFlow { stream, error };
        match self.streams.lookup(stream) {
            Lookup::Active(s) if s.kind == StreamKind::Resolve => Ok(self.ignore()),
            Lookup::Active(s) => {
                s.windows.deliver.on_data_received().map_err(stream_flow)?;
                s.unflushed = s.unflushed.saturating_add(data.len());
                self.stream_sendmes(rng, stream).map_err(fatal)?;
                Ok(ForwardAction::Event(CircuitEvent::StreamData {
                    stream,
                    data,
                }))
            }
            Lookup::HalfClosed(window) => {
                window.on_data_received().map_err(stream_flow)?;
                Ok(self.ignore())
            }
            Lookup::Unknown => {
                self.refuse_stream(rng, stream, EndReason::TORPROTOCOL)?;
                Ok(ForwardAction::Consumed)
            }
        }
    }

    /// RELAY_SENDME, circuit- or stream-level.
    fn on_sendme<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        stream: StreamId,
        sendme: &Sendme,
    ) -> Result<ForwardAction, CircuitError> {
        if stream.is_zero() {
            let (version, data): (u8, &[u8]) = match sendme {
                Sendme::V0 => (0, &[]),
                Sendme::V1 { digest } => (1, digest),
                Sendme::Unrecognized { version, data } => (*version, data),
            };
            self.sender
                .on_sendme(version, data)
                .map_err(CircuitError::Flow)?;
            return Ok(ForwardAction::Event(CircuitEvent::PackageWindowOpened {
                stream: None,
            }));
        }
        match self.streams.lookup(stream) {
            Lookup::Active(s) if s.kind == StreamKind::Resolve => Ok(self.ignore()),
            Lookup::Active(s) => {
                s.windows
                    .package
                    .on_sendme()
                    .map_err(|error| CircuitError::StreamFlow { stream, error })?;
                Ok(ForwardAction::Event(CircuitEvent::PackageWindowOpened {
                    stream: Some(stream),
                }))
            }
            Lookup::HalfClosed(_) => Ok(self.ignore()),
            Lookup::Unknown => {
                self.refuse_stream(rng, stream, EndReason::TORPROTOCOL)?;
                Ok(ForwardAction::Consumed)
            }
        }
    }

    /// BEGIN, BEGIN_DIR, RESOLVE.
    fn on_open<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        stream: StreamId,
        kind: StreamKind,
        event: CircuitEvent,
    ) -> Result<ForwardAction, CircuitError> {
        if matches!(self.streams.lookup(stream), Lookup::Active(_)) {
            // C tor: "begin cell for known stream. Dropping."
            return Ok(self.ignore());
        }
        if !self.streams.has_room() {
            self.refuse_stream(rng, stream, EndReason::RESOURCELIMIT)?;
            return Ok(ForwardAction::Consumed);
        }
        self.streams.open(stream, kind);
        Ok(ForwardAction::Event(event))
    }

    /// RELAY_END from the client.
    fn on_end(&mut self, stream: StreamId, reason: EndReason) -> ForwardAction {
        match self.streams.lookup(stream) {
            Lookup::Active(_) => {
                self.streams.remove(stream);
                ForwardAction::Event(CircuitEvent::StreamEnd { stream, reason })
            }
            Lookup::HalfClosed(_) => {
                // The client's END crossed ours.
                self.streams.forget_half_closed(stream);
                ForwardAction::Consumed
            }
            Lookup::Unknown => self.ignore(),
        }
    }

    /// Common checks of EXTEND and EXTEND2.
    fn check_can_extend(&self, cmd: RelayCmd, early: bool) -> Result<(), CircuitError> {
        if !early {
            return Err(CircuitError::ExtendNotEarly(cmd));
        }
        if self.next_hop != NextHop::None {
            return Err(CircuitError::AlreadyExtended(cmd));
        }
        Ok(())
    }

    /// tor-spec §5.3 checks of the target.
    fn check_target(
        &self,
        rsa_id: &[u8; RSA_ID_LEN],
        specs: &[LinkSpec],
    ) -> Result<(), CircuitError> {
        if rsa_id.iter().all(|&b| b == 0) {
            return Err(CircuitError::BadExtend("all-zero RSA identity"));
        }
        if *rsa_id == self.own_rsa_id {
            return Err(CircuitError::BadExtend("extend to this relay"));
        }
        let self_ed = specs.iter().any(|ls| {
            matches!(ls, LinkSpec::Ed25519Id(id) if *id == self.own_ed_id && id.iter().any(|&b| b != 0))
        });
        if self_ed {
            return Err(CircuitError::BadExtend("extend to this relay"));
        }
        let has_addr = specs.iter().any(|ls| match ls {
            LinkSpec::Ipv4 { addr, port } => *port != 0 && !addr.is_unspecified(),
            LinkSpec::Ipv6 { addr, port } => *port != 0 && !addr.is_unspecified(),
            _ => false,
        });
        if !has_addr {
            return Err(CircuitError::BadExtend("no address to extend to"));
        }
        Ok(())
    }

    /// RELAY_EXTEND2.
    fn on_extend2(&mut self, e: &Extend2, early: bool) -> Result<ForwardAction, CircuitError> {
        self.check_can_extend(RelayCmd::EXTEND2, early)?;
        let rsa_id = e
            .link_specs()
            .iter()
            .find_map(|ls| match ls {
                LinkSpec::RsaId(id) => Some(*id),
                _ => None,
            })
            .ok_or(CircuitError::BadExtend("no RSA identity"))?;
        self.check_target(&rsa_id, e.link_specs())?;
        let create = Create2::new(e.htype(), e.hdata().to_vec())
            .map_err(|_| CircuitError::BadExtend("handshake too long for a CREATE2 cell"))?;
        self.next_hop = NextHop::Extending { legacy: false };
        Ok(ForwardAction::Event(CircuitEvent::ExtendRequest(
            ExtendRequest {
                link_specs: e.link_specs().to_vec(),
                create: ChanMsg::Create2(create),
                rsa_id,
                legacy: false,
            },
        )))
    }

    /// RELAY_EXTEND (legacy, TAP).
    fn on_extend(&mut self, e: &Extend, early: bool) -> Result<ForwardAction, CircuitError> {
        self.check_can_extend(RelayCmd::EXTEND, early)?;
        let link_specs = vec![
            LinkSpec::Ipv4 {
                addr: e.addr(),
                port: e.port(),
            },
            LinkSpec::RsaId(*e.rsa_id()),
        ];
        self.check_target(e.rsa_id(), &link_specs)?;
        self.next_hop = NextHop::Extending { legacy: true };
        Ok(ForwardAction::Event(CircuitEvent::ExtendRequest(
            ExtendRequest {
                link_specs,
                create: ChanMsg::Create(Create::new(*e.onion_skin())),
                rsa_id: *e.rsa_id(),
                legacy: true,
            },
        )))
    }

    // -----------------------------------------------------------------------------------------
    // Backward direction
    // -----------------------------------------------------------------------------------------

    /// Fail if the circuit already failed.
    fn check_send(&self) -> Result<(), SendError> {
        match self.failed {
            Some(reason) => Err(SendError::Closed(reason)),
            None => Ok(()),
        }
    }

    /// Free queue slots for `class`.
    fn room(&self, class: Class) -> usize {
        let capacity = self.config.max_queued_cells.max(CONTROL_RESERVE + 1);
        let limit = match class {
            Class::Control => capacity,
            Class::Bulk => capacity.saturating_sub(CONTROL_RESERVE),
        };
        limit.saturating_sub(self.out.len())
    }

    /// Build a relay cell from this hop, pad it, originate it (digest, encryption) and queue
    /// it. Returns its digest. Nothing changes on error.
    fn originate<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        stream: StreamId,
        msg: RelayMsg,
        class: Class,
    ) -> Result<CellDigest, SendError> {
        if self.room(class) == 0 {
            return Err(SendError::QueueFull);
        }
        let cell = RelayCell::new(stream, msg)?;
        let mut body = Box::new(cell.encode(|padding| rng.fill_bytes(padding))?);
        let digest = self
            .layer
            .originate_backward(&mut body[..])
            .map_err(|_| EncodeError::BadValue("relay cell body"))?;
        self.out.push_back(ChanMsg::Relay(Relay::new(body)));
        Ok(digest)
    }

    /// Like [`originate`](Self::originate), in one of the seed's RELAY_WS cells.
    fn originate_ws(&mut self, stream: StreamId, msg: RelayMsg) -> Result<(), SendError> {
        if self.room(Class::Bulk) == 0 {
            return Err(SendError::QueueFull);
        }
        let mut body = RelayCell::new(stream, msg)?.encode_ws()?;
        // Check the length before the keystream moves.
        if body.len() < RelayWs::MIN_LEN || body.len() > RelayWs::MAX_LEN {
            return Err(EncodeError::BadValue("RELAY_WS body length").into());
        }
        self.layer
            .originate_backward(&mut body)
            .map_err(|_| EncodeError::BadValue("RELAY_WS body"))?;
        self.out.push_back(ChanMsg::RelayWs(RelayWs::new(body)?));
        Ok(())
    }

    /// Send the stream SENDMEs that are due on `stream`: the stream is open, its deliver
    /// window is down by an increment, and little of what it delivered awaits flushing.
    /// Best effort: when the queue is full they wait for the next occasion.
    fn stream_sendmes<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        stream: StreamId,
    ) -> Result<(), SendError> {
        loop {
            let due = self.streams.get_mut(stream).is_some_and(|s| {
                s.state == StreamState::Open
                    && s.kind != StreamKind::Resolve
                    && s.unflushed <= FLUSH_LIMIT
                    && s.windows.deliver.sendme_due()
            });
            if !due || self.room(Class::Control) == 0 {
                return Ok(());
            }
            self.originate(rng, stream, Sendme::V0.into(), Class::Control)?;
            if let Some(s) = self.streams.get_mut(stream) {
                s.windows
                    .deliver
                    .on_sendme_sent()
                    .map_err(|_| EncodeError::BadValue("stream SENDME not due"))?;
            }
        }
    }

    /// Look up an active stream for a driver request.
    fn active(&mut self, stream: StreamId) -> Result<&mut super::stream::Stream, SendError> {
        self.check_send()?;
        self.streams
            .get_mut(stream)
            .ok_or(SendError::UnknownStream(stream))
    }

    /// Answer a BEGIN or BEGIN_DIR: the stream is open. For BEGIN, `addr` is the address
    /// connected to and its TTL; BEGIN_DIR always gets an empty CONNECTED (tor-spec §6.2.1).
    /// Stream SENDMEs start flowing from now on.
    pub fn stream_connected<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        stream: StreamId,
        addr: Option<(IpAddr, u32)>,
    ) -> Result<(), SendError> {
        let s = self.active(stream)?;
        let kind = s.kind;
        match (kind, s.state) {
            (StreamKind::Resolve, _) => {
                return Err(SendError::StreamState {
                    stream,
                    why: "a RESOLVE is answered with RESOLVED",
                });
            }
            (_, StreamState::Open) => {
                return Err(SendError::StreamState {
                    stream,
                    why: "already connected",
                });
            }
            (_, StreamState::Pending) => {}
        }
        let connected = match (kind, addr) {
            (StreamKind::Exit, Some((ip, ttl))) => Connected::new_with_addr(ip, ttl)?,
            _ => Connected::new_empty(),
        };
        self.originate(rng, stream, connected.into(), Class::Control)?;
        if let Some(s) = self.streams.get_mut(stream) {
            s.state = StreamState::Open;
        }
        self.stream_sendmes(rng, stream)
    }

    /// Send stream bytes toward the client, in DATA cells of up to 498 bytes. Returns how
    /// many bytes were taken: fewer than `data.len()` when the stream or circuit package
    /// window closes or the queue is full. Hold the rest until a
    /// [`CircuitEvent::PackageWindowOpened`] or until the queue drains.
    pub fn stream_data<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        stream: StreamId,
        data: &[u8],
    ) -> Result<usize, SendError> {
        let s = self.active(stream)?;
        if s.kind == StreamKind::Resolve || s.state != StreamState::Open {
            return Err(SendError::StreamState {
                stream,
                why: "not connected",
            });
        }
        let mut taken = 0usize;
        for chunk in data.chunks(MAX_DATA_LEN) {
            let stream_open = self
                .streams
                .get_mut(stream)
                .is_some_and(|s| s.windows.package.can_send());
            if !stream_open || !self.sender.can_send() || self.room(Class::Bulk) == 0 {
                break;
            }
            let digest =
                self.originate(rng, stream, Data::new(chunk.to_vec())?.into(), Class::Bulk)?;
            let window_err = |_| SendError::StreamState {
                stream,
                why: "package window exhausted",
            };
            self.sender.on_data_sent(&digest).map_err(window_err)?;
            if let Some(s) = self.streams.get_mut(stream) {
                s.windows.package.on_data_sent().map_err(window_err)?;
            }
            taken = taken.saturating_add(chunk.len());
        }
        Ok(taken)
    }

    /// Report that `bytes` of the stream's delivered data were written out. Stream SENDMEs
    /// wait for this (tor-spec §7.4); a driver without an output buffer calls it right after
    /// each [`CircuitEvent::StreamData`].
    pub fn stream_flushed<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        stream: StreamId,
        bytes: usize,
    ) -> Result<(), SendError> {
        let s = self.active(stream)?;
        s.unflushed = s.unflushed.saturating_sub(bytes);
        self.stream_sendmes(rng, stream)
    }

    /// End a stream from this side (connection refused or closed, exit policy, not a
    /// directory, ...): send END with `reason`.
    pub fn stream_end<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        stream: StreamId,
        reason: EndReason,
    ) -> Result<(), SendError> {
        self.stream_end_with(rng, stream, End::new(reason))
    }

    /// [`stream_end`](Self::stream_end) with a full END message (e.g.
    /// [`End::exit_policy`] naming the refused address).
    pub fn stream_end_with<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        stream: StreamId,
        end: End,
    ) -> Result<(), SendError> {
        self.active(stream)?;
        self.originate(rng, stream, end.into(), Class::Control)?;
        self.streams.close(stream);
        Ok(())
    }

    /// Answer a RESOLVE.
    pub fn resolved<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        stream: StreamId,
        answer: Resolved,
    ) -> Result<(), SendError> {
        if self.active(stream)?.kind != StreamKind::Resolve {
            return Err(SendError::StreamState {
                stream,
                why: "RESOLVED answers only a RESOLVE",
            });
        }
        self.originate(rng, stream, answer.into(), Class::Control)?;
        self.streams.remove(stream);
        Ok(())
    }

    /// The next hop answered the create cell of an [`ExtendRequest`] with `created`
    /// (CREATED2 for EXTEND2, CREATED for EXTEND): send EXTENDED2 / EXTENDED to the client.
    /// Cells for the next hop are passed on from now on.
    pub fn extended<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        created: &ChanMsg,
    ) -> Result<(), SendError> {
        self.check_send()?;
        let NextHop::Extending { legacy } = self.next_hop else {
            return Err(SendError::NoExtendPending);
        };
        let msg: RelayMsg = match (legacy, created) {
            (false, ChanMsg::Created2(c)) => Extended2::new(c.hdata().to_vec())?.into(),
            (true, ChanMsg::Created(c)) => Extended::new(*c.handshake()).into(),
            (_, other) => return Err(SendError::CreatedMismatch(other.cmd())),
        };
        self.originate(rng, StreamId::ZERO, msg, Class::Control)?;
        self.next_hop = NextHop::Open;
        Ok(())
    }

    /// The extension in flight failed (no connection, wrong identity, DESTROY from the next
    /// hop...): send TRUNCATED with `reason` (tor-spec §5.4). The circuit ends here again.
    /// (For an open next hop that dies, tor-spec §5.4 recommends a DESTROY toward the client
    /// instead.)
    pub fn extend_failed<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        reason: DestroyReason,
    ) -> Result<(), SendError> {
        self.check_send()?;
        if !matches!(self.next_hop, NextHop::Extending { .. }) {
            return Err(SendError::NoExtendPending);
        }
        self.originate(
            rng,
            StreamId::ZERO,
            Truncated::new(reason).into(),
            Class::Control,
        )?;
        self.next_hop = NextHop::None;
        Ok(())
    }

    /// Answer a [`CircuitEvent::Truncate`] once the next hop is destroyed: send TRUNCATED
    /// (REQUESTED, as C tor).
    pub fn truncated<R: CryptoRng + ?Sized>(&mut self, rng: &mut R) -> Result<(), SendError> {
        self.check_send()?;
        if !self.truncate_pending {
            return Err(SendError::NoTruncatePending);
        }
        let msg = Truncated::new(DestroyReason::REQUESTED).into();
        self.originate(rng, StreamId::ZERO, msg, Class::Control)?;
        self.truncate_pending = false;
        Ok(())
    }

    /// A RELAY cell from the next hop: add this hop's layer and queue it toward the client.
    /// Check [`backward_room`](Self::backward_room) first (the cell is dropped on
    /// [`SendError::QueueFull`]). An inbound RELAY_EARLY must not get here: tor-spec §5.6
    /// says close the circuit.
    pub fn handle_backward_from_next(
        &mut self,
        mut body: Box<[u8; RELAY_BODY_LEN]>,
    ) -> Result<(), SendError> {
        self.check_send()?;
        if self.next_hop != NextHop::Open {
            return Err(SendError::NoNextHop);
        }
        if self.room(Class::Bulk) == 0 {
            return Err(SendError::QueueFull);
        }
        self.layer
            .encrypt_backward(&mut body[..])
            .map_err(|_| EncodeError::BadValue("relay cell body"))?;
        self.out.push_back(ChanMsg::Relay(Relay::new(body)));
        Ok(())
    }

    /// Send one of the seed's messages to the client (client circuits only): ASSOCIATE in a
    /// RELAY cell, RELAY_WS and RELAY_INFO in a RELAY_WS cell (node-Tor README).
    pub fn send_seed<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        stream: StreamId,
        msg: RelayMsg,
    ) -> Result<(), SendError> {
        self.check_send()?;
        if !self.from_client {
            return Err(SendError::NotClientCircuit);
        }
        match msg {
            RelayMsg::Associate(_) => self.originate(rng, stream, msg, Class::Control).map(|_| ()),
            RelayMsg::WsStream(_) | RelayMsg::Info(_) => self.originate_ws(stream, msg),
            other => Err(SendError::NotSeedMessage(other.cmd())),
        }
    }
}
