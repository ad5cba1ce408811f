//! [`ClientCircuit`]: the OP's state for one circuit, and [`PendingCircuit`], a circuit
//! waiting for its CREATED*.

use std::collections::VecDeque;

use onion_cell::bytes::EncodeError;
use onion_cell::chancell::{
    ChanCmd, ChanMsg, Create, Create2, CreateFast, CreateFastWs, Destroy, DestroyReason, RelayWs,
};
use onion_cell::relaycell::{
    Address, Begin, BeginDir, BeginFlags, Connected, Data, Dialect, End, EndReason, Extend,
    Extend2, MAX_DATA_LEN, RelayCell, RelayCmd, RelayMsg, Resolve, Resolved, Sendme, StreamId,
};
use rand_core::CryptoRng;

use super::error::CircuitError;
use super::stream::{Lookup, StreamKind, StreamTable};
use super::target::{ClientHandshake, HandshakeKind, HopTarget, client1, tap_remote_client1};
use super::{
    CircuitConfig, ClientEvent, CloseReason, Closing, DATA_QUEUE_LIMIT, MAX_RELAY_EARLY, OutCell,
    QUEUE_LIMIT, STREAM_UNCONSUMED_LIMIT, StreamEndReason,
};
use crate::crypto::dh::SharedSecret;
use crate::crypto::keys::HopKeys;
use crate::crypto::relay::{CellDigest, ClientCrypt, HopNum, MAX_HOPS};
use crate::flow::{CircuitReceiver, CircuitSender, WindowParams};

/// Circuit-level flow control with one hop.
#[derive(Debug)]
struct HopFlow {
    /// DATA cells we may still send to the hop, and the digests its SENDMEs must echo.
    sender: CircuitSender,
    /// DATA cells we accept from the hop, and when to answer with a SENDME.
    receiver: CircuitReceiver,
}

impl HopFlow {
    /// Fresh windows.
    fn new(config: &CircuitConfig) -> Self {
        HopFlow {
            sender: CircuitSender::new(WindowParams::CIRCUIT, config.sendme_accept_min_version),
            receiver: CircuitReceiver::new(WindowParams::CIRCUIT),
        }
    }
}

/// An extension waiting for its EXTENDED / EXTENDED2.
#[derive(Debug)]
struct PendingExtend {
    /// Our half of the handshake.
    handshake: ClientHandshake,
    /// EXTENDED2, or EXTENDED for a legacy EXTEND.
    reply: RelayCmd,
    /// The hop it will become.
    hop: HopNum,
}

/// Where the circuit stands.
#[derive(Debug)]
enum State {
    /// Usable.
    Open,
    /// A fatal error happened; waiting for [`ClientCircuit::close`].
    Failed(CircuitError),
    /// Closed; its events were delivered.
    Closed,
}

/// Whether an originated cell goes in a RELAY_EARLY cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Early {
    /// EXTEND / EXTEND2: always (the caller checked the budget).
    Required,
    /// Anything else: when not addressed to hop 1 and the budget lasts (as C tor does).
    Auto,
}

/// A circuit whose CREATE* is on its way to hop 1.
#[derive(Debug)]
pub struct PendingCircuit {
    /// Our half of the handshake.
    handshake: ClientHandshake,
    /// Which handshake.
    kind: HandshakeKind,
    /// The cell that must answer.
    expect: ChanCmd,
    /// The circuit's configuration.
    config: CircuitConfig,
    /// Where stream ids start.
    first_stream_id: u16,
}

impl PendingCircuit {
    /// The handshake being run.
    pub fn kind(&self) -> HandshakeKind {
        self.kind
    }

    /// Hop 1's answer to the create cell. CREATED* of the right kind completes the handshake
    /// and gives the one-hop circuit; DESTROY gives [`CircuitError::Refused`]; anything else
    /// is [`CircuitError::UnexpectedReply`]. A failed handshake is
    /// [`CircuitError::Handshake`].
    pub fn handle_created(self, msg: ChanMsg) -> Result<ClientCircuit, CircuitError> {
        let reply: Vec<u8> = match (self.expect, msg) {
            (_, ChanMsg::Destroy(d)) => return Err(CircuitError::Refused(d.reason())),
            (ChanCmd::CREATED, ChanMsg::Created(c)) => c.handshake().to_vec(),
            (ChanCmd::CREATED2, ChanMsg::Created2(c)) => c.into_hdata(),
            (ChanCmd::CREATED_FAST, ChanMsg::CreatedFast(c)) => [&c.y()[..], &c.kh()[..]].concat(),
            (ChanCmd::CREATED_FAST_WS, ChanMsg::CreatedFastWs(c)) => {
                [&c.enc_y()[..], &c.kh()[..]].concat()
            }
            (expected, other) => {
                return Err(CircuitError::UnexpectedReply {
                    expected,
                    got: other.cmd(),
                });
            }
        };
        let keys = self.handshake.finish(HopNum::FIRST, &reply)?;
        let mut circ = ClientCircuit::new(self.config, self.first_stream_id);
        circ.add_hop(&keys)?;
        Ok(circ)
    }
}

/// The client (OP) side of one circuit. See the [module documentation](super).
#[derive(Debug)]
pub struct ClientCircuit {
    /// Settings.
    config: CircuitConfig,
    /// One crypto layer per hop.
    crypt: ClientCrypt,
    /// One pair of circuit windows per hop, hop 1 first.
    hops: Vec<HopFlow>,
    /// The extension in progress.
    pending: Option<PendingExtend>,
    /// RELAY_EARLY cells left (tor-spec §5.6).
    early_left: u8,
    /// Open and half-closed streams.
    streams: StreamTable,
    /// Encrypted cells for hop 1, in order.
    out: VecDeque<OutCell>,
    /// Open, failed or closed.
    state: State,
}

impl ClientCircuit {
    /// Start a circuit with `first_hop`: run step 1 of `kind` and return the circuit waiting
    /// for its reply, with the create cell to send (CREATE2, or CREATE_FAST /
    /// CREATE_FAST_WS). [`HandshakeKind::Tap`] goes in a CREATE2 of type 0; see
    /// [`ClientCircuit::start_legacy_tap`] for CREATE.
    pub fn start<R: CryptoRng + ?Sized>(
        rng: &mut R,
        first_hop: &HopTarget,
        kind: HandshakeKind,
        config: CircuitConfig,
    ) -> Result<(PendingCircuit, ChanMsg), CircuitError> {
        Self::start_inner(rng, first_hop, kind, config, false)
    }

    /// Start a circuit with TAP in a legacy CREATE cell (for the seed's ORs).
    pub fn start_legacy_tap<R: CryptoRng + ?Sized>(
        rng: &mut R,
        first_hop: &HopTarget,
        config: CircuitConfig,
    ) -> Result<(PendingCircuit, ChanMsg), CircuitError> {
        Self::start_inner(rng, first_hop, HandshakeKind::Tap, config, true)
    }

    /// [`ClientCircuit::start`], with CREATE instead of CREATE2 for TAP when `legacy`.
    fn start_inner<R: CryptoRng + ?Sized>(
        rng: &mut R,
        first_hop: &HopTarget,
        kind: HandshakeKind,
        config: CircuitConfig,
        legacy: bool,
    ) -> Result<(PendingCircuit, ChanMsg), CircuitError> {
        let (handshake, skin) = client1(rng, first_hop, kind)?;
        let len = || CircuitError::Internal("handshake message of the wrong length");
        let (msg, expect): (ChanMsg, ChanCmd) = match kind {
            HandshakeKind::CreateFast => (
                CreateFast::new(skin.data.as_slice().try_into().map_err(|_| len())?).into(),
                ChanCmd::CREATED_FAST,
            ),
            HandshakeKind::CreateFastWs => (
                CreateFastWs::new(skin.data.as_slice().try_into().map_err(|_| len())?).into(),
                ChanCmd::CREATED_FAST_WS,
            ),
            HandshakeKind::Tap if legacy => (
                Create::new(skin.data.as_slice().try_into().map_err(|_| len())?).into(),
                ChanCmd::CREATED,
            ),
            _ => (
                Create2::new(skin.htype, skin.data)
                    .map_err(CircuitError::Encode)?
                    .into(),
                ChanCmd::CREATED2,
            ),
        };
        let [a, b, _, _] = rng.next_u32().to_be_bytes();
        let pending = PendingCircuit {
            handshake,
            kind,
            expect,
            config,
            first_stream_id: u16::from_be_bytes([a, b]),
        };
        Ok((pending, msg))
    }

    /// A circuit with no hop yet.
    fn new(mut config: CircuitConfig, first_stream_id: u16) -> Self {
        config.max_streams = config.max_streams.max(1);
        let streams = StreamTable::new(config.max_streams, first_stream_id);
        ClientCircuit {
            config,
            crypt: ClientCrypt::new(),
            hops: Vec::new(),
            pending: None,
            early_left: MAX_RELAY_EARLY,
            streams,
            out: VecDeque::new(),
            state: State::Open,
        }
    }

    // ----- state -------------------------------------------------------------------------

    /// How many hops the circuit has (extensions in progress not counted).
    pub fn n_hops(&self) -> usize {
        self.crypt.n_hops()
    }

    /// Whether the circuit is usable (not failed, not closed).
    pub fn is_open(&self) -> bool {
        matches!(self.state, State::Open)
    }

    /// Whether an extension awaits its EXTENDED2.
    pub fn is_extending(&self) -> bool {
        self.pending.is_some()
    }

    /// RELAY_EARLY cells left of the 8 a circuit may send.
    pub fn relay_early_left(&self) -> u8 {
        self.early_left
    }

    /// How many streams are open.
    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    /// How many cells wait in the outgoing queue.
    pub fn queued_cells(&self) -> usize {
        self.out.len()
    }

    /// The configuration.
    pub fn config(&self) -> &CircuitConfig {
        &self.config
    }

    // ----- outgoing ----------------------------------------------------------------------

    /// The next encrypted cell to send to hop 1, oldest first.
    pub fn poll_outgoing(&mut self) -> Option<OutCell> {
        self.out.pop_front()
    }

    /// Extend the circuit to `target` with handshake `kind`: queue an EXTEND2 (in a
    /// RELAY_EARLY cell) to the last hop. Returns the hop the target will become; the
    /// extension completes with [`ClientEvent::HopAdded`] (or fails with
    /// [`ClientEvent::Truncated`], or with an error if the reply does not verify).
    pub fn extend<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        target: &HopTarget,
        kind: HandshakeKind,
    ) -> Result<HopNum, CircuitError> {
        self.extend_inner(rng, target, kind, false, None)
    }

    /// Extend with TAP (EXTEND2 of type 0) using an onion skin computed elsewhere (the seed's
    /// RELAY_INFO, [`crate::engine::EngineConfig::use_relay_info`]). When the relay's reply
    /// has come, [`ClientCircuit::tap_remote_reply`] gives it and
    /// [`ClientCircuit::finish_tap_remote`] completes the hop with the shared secret computed
    /// elsewhere too (no [`ClientEvent::HopAdded`] then: the hop is returned).
    pub fn extend_tap_remote<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        target: &HopTarget,
        onion_skin: &[u8],
    ) -> Result<HopNum, CircuitError> {
        self.extend_inner(rng, target, HandshakeKind::Tap, false, Some(onion_skin))
    }

    /// The reply (`g^y | KH`) to an [`ClientCircuit::extend_tap_remote`], once it came and
    /// until [`ClientCircuit::finish_tap_remote`].
    pub fn tap_remote_reply(&self) -> Option<&[u8]> {
        match self.pending.as_ref().map(|p| &p.handshake) {
            Some(ClientHandshake::TapRemote(Some(reply))) => Some(reply),
            _ => None,
        }
    }

    /// Complete an [`ClientCircuit::extend_tap_remote`] whose reply came with the TAP
    /// shared secret `g^xy` computed elsewhere: checks the reply's `KH`, adds the hop and
    /// returns it. Errors: no such reply waiting ([`CircuitError::Internal`]), or the reply
    /// does not verify ([`CircuitError::Handshake`], fatal).
    pub fn finish_tap_remote(&mut self, secret: &SharedSecret) -> Result<HopNum, CircuitError> {
        self.check_open()?;
        let Some(p) = self.pending.take() else {
            return Err(CircuitError::Internal("no TAP reply waiting"));
        };
        let ClientHandshake::TapRemote(Some(reply)) = &p.handshake else {
            self.pending = Some(p);
            return Err(CircuitError::Internal("no TAP reply waiting"));
        };
        let keys = ClientHandshake::finish_tap_remote(p.hop, secret, reply)?;
        self.add_hop(&keys)
    }

    /// Extend with TAP in a legacy RELAY_EXTEND (IPv4 address, RSA identity; for the seed's
    /// ORs, which know no EXTEND2). Completes like [`ClientCircuit::extend`].
    pub fn extend_legacy_tap<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        target: &HopTarget,
    ) -> Result<HopNum, CircuitError> {
        self.extend_inner(rng, target, HandshakeKind::Tap, true, None)
    }

    /// EXTEND2, or EXTEND when `legacy`.
    fn extend_inner<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        target: &HopTarget,
        kind: HandshakeKind,
        legacy: bool,
        remote_skin: Option<&[u8]>,
    ) -> Result<HopNum, CircuitError> {
        self.check_open()?;
        if kind.first_hop_only() {
            return Err(CircuitError::FirstHopOnly(kind));
        }
        if self.pending.is_some() {
            return Err(CircuitError::ExtendPending);
        }
        if self.crypt.n_hops() >= MAX_HOPS {
            return Err(CircuitError::TooManyHops(MAX_HOPS));
        }
        if self.early_left == 0 {
            return Err(CircuitError::RelayEarlyExhausted);
        }
        self.check_room(1)?;
        let last = self.last_hop()?;
        let new_hop = last
            .get()
            .checked_add(1)
            .and_then(HopNum::new)
            .ok_or(CircuitError::TooManyHops(MAX_HOPS))?;
        let (msg, reply, handshake): (RelayMsg, RelayCmd, ClientHandshake) = if legacy {
            let missing = |what| CircuitError::MissingTargetInfo { kind, what };
            let addr = target
                .ipv4
                .ok_or_else(|| missing("legacy EXTEND needs an IPv4 ORPort"))?;
            let rsa_id = target
                .rsa_id
                .ok_or_else(|| missing("legacy EXTEND needs an RSA identity"))?;
            let (handshake, skin) = client1(rng, target, kind)?;
            let skin = skin
                .data
                .as_slice()
                .try_into()
                .map_err(|_| CircuitError::Internal("TAP onion skin of the wrong length"))?;
            let msg = Extend::new(*addr.ip(), addr.port(), skin, rsa_id);
            (msg.into(), RelayCmd::EXTENDED, handshake)
        } else {
            let specs = target.extend2_link_specs(kind)?;
            let (handshake, skin) = match remote_skin {
                Some(skin) => tap_remote_client1(skin)?,
                None => client1(rng, target, kind)?,
            };
            let msg = Extend2::new(specs, skin.htype, skin.data).map_err(CircuitError::Encode)?;
            (msg.into(), RelayCmd::EXTENDED2, handshake)
        };
        self.originate_checked(rng, last, StreamId::ZERO, msg, Early::Required)?;
        self.pending = Some(PendingExtend {
            handshake,
            reply,
            hop: new_hop,
        });
        Ok(new_hop)
    }

    /// Open a stream to `addr:port` at the last hop (RELAY_BEGIN). The stream is usable for
    /// optimistic data at once (tor-spec §6.2); [`ClientEvent::StreamConnected`] or
    /// [`ClientEvent::StreamEnded`] follows.
    pub fn begin<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        addr: Address,
        port: u16,
        flags: BeginFlags,
    ) -> Result<StreamId, CircuitError> {
        let msg = Begin::new(addr, port, flags).map_err(CircuitError::Encode)?;
        self.open_stream(rng, msg.into(), StreamKind::Connect)
    }

    /// Open a directory stream to the last hop (RELAY_BEGIN_DIR, tor-spec §6.2.1).
    pub fn begin_dir<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
    ) -> Result<StreamId, CircuitError> {
        self.open_stream(rng, BeginDir.into(), StreamKind::Dir)
    }

    /// Ask the last hop to resolve `query` (a hostname, or an `in-addr.arpa` name; RELAY_RESOLVE,
    /// tor-spec §6.4). The answer comes as [`ClientEvent::Resolved`] (or
    /// [`ClientEvent::StreamEnded`]).
    pub fn resolve<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        query: &str,
    ) -> Result<StreamId, CircuitError> {
        let msg = Resolve::new(query.to_owned()).map_err(CircuitError::Encode)?;
        self.open_stream(rng, msg.into(), StreamKind::Resolve)
    }

    /// Allocate a stream id and send `msg` (BEGIN, BEGIN_DIR, RESOLVE) on it to the last hop.
    fn open_stream<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        msg: RelayMsg,
        kind: StreamKind,
    ) -> Result<StreamId, CircuitError> {
        self.check_open()?;
        self.check_room(1)?;
        let hop = self.last_hop()?;
        let id = self
            .streams
            .allocate_id()
            .ok_or(CircuitError::TooManyStreams(self.streams.max()))?;
        self.originate_checked(rng, hop, id, msg, Early::Auto)?;
        self.streams.insert(id, hop, kind);
        Ok(id)
    }

    /// Whether [`ClientCircuit::send_data`] would take at least one cell's worth of bytes
    /// on `stream` now: the stream and circuit package windows are open and the queue has
    /// room for DATA.
    pub fn is_writable(&self, stream: StreamId) -> bool {
        self.is_open() && self.can_send_data(stream)
    }

    /// See [`ClientCircuit::is_writable`].
    fn can_send_data(&self, stream: StreamId) -> bool {
        let Some(s) = self.streams.get(stream) else {
            return false;
        };
        let circuit_open = usize::from(s.hop.get())
            .checked_sub(1)
            .and_then(|i| self.hops.get(i))
            .is_some_and(|f| f.sender.can_send());
        s.kind != StreamKind::Resolve
            && s.windows.package.can_send()
            && circuit_open
            && self.out.len() < DATA_QUEUE_LIMIT
    }

    /// Report that the driver's reader consumed `bytes` of what `stream` delivered (only
    /// meaningful with [`CircuitConfig::manual_stream_sendme`]): the stream SENDMEs this
    /// allows are queued. [`CircuitError::QueueFull`] consumes nothing: drain and retry.
    pub fn stream_consumed<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        stream: StreamId,
        bytes: usize,
    ) -> Result<(), CircuitError> {
        self.check_open()?;
        self.check_room(WindowParams::STREAM.max_outstanding())?;
        let s = self
            .streams
            .get_mut(stream)
            .ok_or(CircuitError::NoSuchStream(stream))?;
        s.unconsumed = s.unconsumed.saturating_sub(bytes);
        match self.stream_sendmes(rng, stream) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Queue the stream SENDMEs `stream` is due: its deliver window is down by an increment
    /// and (with manual pacing) little enough of its data awaits consumption. The caller
    /// checked the queue has room for them.
    fn stream_sendmes<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        stream: StreamId,
    ) -> Result<(), CircuitError> {
        loop {
            let Some(s) = self.streams.get_mut(stream) else {
                return Ok(());
            };
            if !s.windows.deliver.sendme_due() || s.unconsumed > STREAM_UNCONSUMED_LIMIT {
                return Ok(());
            }
            s.windows
                .deliver
                .on_sendme_sent()
                .map_err(|_| CircuitError::Internal("stream SENDME not due"))?;
            let hop = s.hop;
            self.originate(rng, hop, stream, Sendme::V0.into(), Early::Auto)?;
        }
    }

    /// Send `data` on `stream` in RELAY_DATA cells of at most 498 bytes, as far as the stream
    /// window (500 cells), the circuit window toward the stream's hop (1000 cells) and the
    /// queue ([`DATA_QUEUE_LIMIT`]) allow. Returns how many bytes were taken (a multiple of
    /// 498 unless everything was): offer the rest once [`ClientCircuit::is_writable`].
    ///
    /// Data may be sent before CONNECTED (optimistic data, tor-spec §6.2).
    pub fn send_data<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        stream: StreamId,
        data: &[u8],
    ) -> Result<usize, CircuitError> {
        self.check_open()?;
        let s = self
            .streams
            .get(stream)
            .ok_or(CircuitError::NoSuchStream(stream))?;
        if s.kind == StreamKind::Resolve {
            return Err(CircuitError::StreamMisuse {
                stream,
                what: "no data on a RESOLVE stream",
            });
        }
        let hop = s.hop;
        let mut taken = 0usize;
        for chunk in data.chunks(MAX_DATA_LEN) {
            if !self.can_send_data(stream) {
                break;
            }
            let msg = Data::new(chunk.to_vec()).map_err(CircuitError::Encode)?;
            let digest = self.originate_checked(rng, hop, stream, msg.into(), Early::Auto)?;
            if let Err(e) = self.account_data_sent(hop, stream, &digest) {
                return Err(self.fail(e));
            }
            taken = taken.saturating_add(chunk.len());
        }
        Ok(taken)
    }

    /// Charge one DATA cell sent on `stream` to its windows (checked open beforehand).
    fn account_data_sent(
        &mut self,
        hop: HopNum,
        stream: StreamId,
        digest: &CellDigest,
    ) -> Result<(), CircuitError> {
        const BROKEN: CircuitError = CircuitError::Internal("DATA sent with a window closed");
        self.hop_flow(hop)?
            .sender
            .on_data_sent(digest)
            .map_err(|_| BROKEN)?;
        self.streams
            .get_mut(stream)
            .ok_or(BROKEN)?
            .windows
            .package
            .on_data_sent()
            .map_err(|_| BROKEN)
    }

    /// Close `stream` from our side: send RELAY_END with `reason` (tor-spec §6.3 says an OP
    /// SHOULD only send [`EndReason::MISC`]; C tor sends [`EndReason::DONE`] on a normal
    /// close). The id stays reserved while the far end's last cells may arrive. For a RESOLVE
    /// stream nothing is sent; its answer will be ignored.
    pub fn end_stream<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        stream: StreamId,
        reason: EndReason,
    ) -> Result<(), CircuitError> {
        self.check_open()?;
        let s = self
            .streams
            .get(stream)
            .ok_or(CircuitError::NoSuchStream(stream))?;
        if s.kind != StreamKind::Resolve {
            self.check_room(1)?;
            let hop = s.hop;
            self.originate_checked(rng, hop, stream, End::new(reason).into(), Early::Auto)?;
        }
        self.streams.half_close(stream);
        Ok(())
    }

    /// Close the circuit: the DESTROY to send (reason NONE) and the events that end its
    /// streams. Call this after a fatal error too. Idempotent.
    pub fn close(&mut self) -> Closing {
        let reason = match std::mem::replace(&mut self.state, State::Closed) {
            State::Closed => {
                return Closing {
                    destroy: None,
                    events: Vec::new(),
                };
            }
            State::Open => CloseReason::Local,
            State::Failed(e) => CloseReason::Failed(e),
        };
        Closing {
            destroy: Some(Destroy::new(DestroyReason::NONE).into()),
            events: self.shut_down(reason),
        }
    }

    // ----- incoming ----------------------------------------------------------------------

    /// A channel cell for this circuit from hop 1: RELAY (and RELAY_WS when hop 1 is ours) go
    /// to [`ClientCircuit::handle_relay`], DESTROY to [`ClientCircuit::handle_destroy`]; any
    /// other cell, inbound RELAY_EARLY included (tor-spec §5.6), is a fatal
    /// [`CircuitError::UnexpectedCell`].
    pub fn handle_cell<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        msg: ChanMsg,
    ) -> Result<Vec<ClientEvent>, CircuitError> {
        match msg {
            ChanMsg::Relay(r) => {
                let mut body = r.into_body();
                self.handle_relay(rng, body.as_mut_slice())
            }
            ChanMsg::RelayWs(w) if self.config.hop1_is_ours => {
                let mut body = w.into_body();
                self.handle_relay(rng, &mut body)
            }
            ChanMsg::Destroy(d) => Ok(self.handle_destroy(d.reason())),
            other => {
                self.check_open()?;
                Err(self.fail(CircuitError::UnexpectedCell(other.cmd())))
            }
        }
    }

    /// Hop 1 destroyed the circuit: every stream ends, then [`ClientEvent::CircuitClosed`].
    /// Nothing is to be sent back. Empty if the circuit was already closed.
    pub fn handle_destroy(&mut self, reason: DestroyReason) -> Vec<ClientEvent> {
        let reason = match std::mem::replace(&mut self.state, State::Closed) {
            State::Closed => return Vec::new(),
            State::Open => CloseReason::Destroyed(reason),
            State::Failed(e) => CloseReason::Failed(e),
        };
        self.shut_down(reason)
    }

    /// Fail every stream and forget everything; the state is already `Closed`.
    fn shut_down(&mut self, reason: CloseReason) -> Vec<ClientEvent> {
        self.pending = None;
        self.out.clear();
        let mut events: Vec<ClientEvent> = self
            .streams
            .drain()
            .into_iter()
            .map(|stream| ClientEvent::StreamEnded {
                stream,
                reason: StreamEndReason::CircuitClosed(reason.clone()),
            })
            .collect();
        events.push(ClientEvent::CircuitClosed { reason });
        events
    }

    /// The body of a RELAY cell (or RELAY_WS cell, any length) from hop 1: decrypt it, find
    /// the hop that sent it, and act on it. Answers (SENDMEs) go to the outgoing queue, hence
    /// the RNG (for their padding).
    ///
    /// A fatal error (see [`CircuitError::is_fatal`]) leaves the circuit failed: call
    /// [`ClientCircuit::close`]. [`CircuitError::QueueFull`] consumes nothing: drain the
    /// queue and pass the same cell again.
    pub fn handle_relay<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        body: &mut [u8],
    ) -> Result<Vec<ClientEvent>, CircuitError> {
        self.check_open()?;
        // One inbound cell calls for at most two answers: a circuit and a stream SENDME.
        self.check_room(2)?;
        let mut events = Vec::new();
        match self.process(rng, body, &mut events) {
            Ok(()) => Ok(events),
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Decrypt, decode and dispatch one inbound relay cell.
    fn process<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        body: &mut [u8],
        events: &mut Vec<ClientEvent>,
    ) -> Result<(), CircuitError> {
        let (hop, digest) = self.crypt.decrypt(body).map_err(CircuitError::Crypt)?;
        let dialect = if hop == HopNum::FIRST && self.config.hop1_is_ours {
            Dialect::Seed
        } else {
            Dialect::Tor
        };
        let cell = RelayCell::decode(body, dialect).map_err(|source| CircuitError::Malformed {
            hop,
            what: "relay cell",
            source,
        })?;
        let cmd = cell.cmd();
        let (sid, msg) = cell.into_parts();
        match msg {
            RelayMsg::Data(d) => self.on_data(rng, hop, &digest, sid, d, events),
            RelayMsg::Sendme(s) => self.on_sendme(hop, sid, &s),
            RelayMsg::Connected(c) => self.on_connected(hop, sid, &c, events),
            RelayMsg::End(e) => self.on_end(hop, sid, &e, events),
            RelayMsg::Resolved(r) => self.on_resolved(hop, sid, r, events),
            RelayMsg::Extended2(e) => self.on_extended(hop, cmd, e.hdata(), events),
            RelayMsg::Extended(e) => self.on_extended(hop, cmd, e.handshake(), events),
            RelayMsg::Truncated(t) => {
                self.on_truncated(hop, t.reason(), events);
                Ok(())
            }
            msg @ (RelayMsg::Associate(_) | RelayMsg::WsStream(_) | RelayMsg::Info(_)) => {
                events.push(ClientEvent::SeedMessage { stream: sid, msg });
                Ok(())
            }
            RelayMsg::Begin(_)
            | RelayMsg::BeginDir(_)
            | RelayMsg::Extend(_)
            | RelayMsg::Extend2(_)
            | RelayMsg::Truncate(_)
            | RelayMsg::Resolve(_) => Err(CircuitError::Protocol {
                hop,
                cmd,
                what: "forward-only command sent to the client",
            }),
            // DROP is a long-range dummy; a command we do not understand "must be dropped and
            // ignored" (tor-spec §6.1), having counted toward the digest.
            _ => Ok(()),
        }
    }

    /// RELAY_DATA: circuit window (SENDME v1 every 100 cells), then the stream.
    fn on_data<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        hop: HopNum,
        digest: &CellDigest,
        sid: StreamId,
        data: Data,
        events: &mut Vec<ClientEvent>,
    ) -> Result<(), CircuitError> {
        let flow = self.hop_flow(hop)?;
        let tag = flow
            .receiver
            .on_data_received(digest)
            .map_err(|source| CircuitError::Flow { hop, source })?;
        if let Some(tag) = tag {
            let sendme = Sendme::V1 {
                digest: *tag.as_bytes(),
            };
            self.originate(rng, hop, StreamId::ZERO, sendme.into(), Early::Auto)?;
        }
        let last = self.crypt.last_hop();
        let proto = |what| CircuitError::Protocol {
            hop,
            cmd: RelayCmd::DATA,
            what,
        };
        let flow_err = |source| CircuitError::Flow { hop, source };
        let manual = self.config.manual_stream_sendme;
        let delivered = match self.streams.lookup(sid) {
            Lookup::Open(s) => {
                check_stream_hop(s.hop, hop, RelayCmd::DATA)?;
                if s.kind == StreamKind::Resolve {
                    return Err(proto("DATA on a RESOLVE stream"));
                }
                if !s.connected {
                    return Err(proto("DATA before CONNECTED"));
                }
                s.windows.deliver.on_data_received().map_err(flow_err)?;
                let bytes = data.into_bytes();
                if manual {
                    s.unconsumed = s.unconsumed.saturating_add(bytes.len());
                }
                events.push(ClientEvent::StreamData { stream: sid, bytes });
                true
            }
            Lookup::HalfClosed(h) => {
                check_stream_hop(h.hop, hop, RelayCmd::DATA)?;
                h.deliver.on_data_received().map_err(flow_err)?;
                false
            }
            Lookup::Unknown if Some(hop) != last => {
                return Err(proto(
                    "stream message for an unknown stream from a middle hop",
                ));
            }
            // "RELAY_DATA cells sent to unrecognized streams are dropped" (tor-spec §6.2).
            Lookup::Unknown => false,
        };
        if delivered {
            // At most one is due here: the deliver window dropped by one, and the unconsumed
            // backlog only grew.
            self.stream_sendmes(rng, sid)?;
        }
        Ok(())
    }

    /// RELAY_SENDME: circuit level (stream 0, v1 digest checked) or stream level.
    fn on_sendme(&mut self, hop: HopNum, sid: StreamId, s: &Sendme) -> Result<(), CircuitError> {
        let flow_err = |source| CircuitError::Flow { hop, source };
        if sid.is_zero() {
            let (version, data): (u8, &[u8]) = match s {
                Sendme::V0 => (0, &[]),
                Sendme::V1 { digest } => (1, digest),
                Sendme::Unrecognized { version, data } => (*version, data),
            };
            return self
                .hop_flow(hop)?
                .sender
                .on_sendme(version, data)
                .map_err(flow_err);
        }
        let last = self.crypt.last_hop();
        match self.streams.lookup(sid) {
            Lookup::Open(s) => {
                check_stream_hop(s.hop, hop, RelayCmd::SENDME)?;
                s.windows.package.on_sendme().map_err(flow_err)
            }
            Lookup::HalfClosed(h) => check_stream_hop(h.hop, hop, RelayCmd::SENDME),
            Lookup::Unknown => unknown_stream(hop, last, RelayCmd::SENDME),
        }
    }

    /// RELAY_CONNECTED: the stream is open.
    fn on_connected(
        &mut self,
        hop: HopNum,
        sid: StreamId,
        c: &Connected,
        events: &mut Vec<ClientEvent>,
    ) -> Result<(), CircuitError> {
        let cmd = RelayCmd::CONNECTED;
        let proto = |what| CircuitError::Protocol { hop, cmd, what };
        let last = self.crypt.last_hop();
        match self.streams.lookup(sid) {
            Lookup::Open(s) => {
                check_stream_hop(s.hop, hop, cmd)?;
                if s.kind == StreamKind::Resolve {
                    return Err(proto("CONNECTED on a RESOLVE stream"));
                }
                if s.connected {
                    return Err(proto("second CONNECTED on a stream"));
                }
                s.connected = true;
                // The payload of a BEGIN_DIR's CONNECTED MUST be ignored (tor-spec §6.2.1).
                let at = if s.kind == StreamKind::Dir {
                    None
                } else {
                    c.addr()
                };
                events.push(ClientEvent::StreamConnected {
                    stream: sid,
                    addr: at.map(|a| a.addr),
                    ttl: at.map(|a| a.ttl),
                });
                Ok(())
            }
            Lookup::HalfClosed(h) => {
                check_stream_hop(h.hop, hop, cmd)?;
                if !h.connected_allowed {
                    return Err(proto("unexpected CONNECTED on a closed stream"));
                }
                h.connected_allowed = false;
                Ok(())
            }
            Lookup::Unknown => unknown_stream(hop, last, cmd),
        }
    }

    /// RELAY_END: the far end closed the stream.
    fn on_end(
        &mut self,
        hop: HopNum,
        sid: StreamId,
        e: &End,
        events: &mut Vec<ClientEvent>,
    ) -> Result<(), CircuitError> {
        let last = self.crypt.last_hop();
        match self.streams.lookup(sid) {
            Lookup::Open(s) => {
                check_stream_hop(s.hop, hop, RelayCmd::END)?;
                self.streams.remove(sid);
                events.push(ClientEvent::StreamEnded {
                    stream: sid,
                    reason: StreamEndReason::Remote {
                        reason: e.reason(),
                        exit_policy: e.exit_policy_addr(),
                    },
                });
                Ok(())
            }
            Lookup::HalfClosed(h) => {
                check_stream_hop(h.hop, hop, RelayCmd::END)?;
                self.streams.remove_half_closed(sid);
                Ok(())
            }
            Lookup::Unknown => unknown_stream(hop, last, RelayCmd::END),
        }
    }

    /// RELAY_RESOLVED: the answer to a RESOLVE.
    fn on_resolved(
        &mut self,
        hop: HopNum,
        sid: StreamId,
        r: Resolved,
        events: &mut Vec<ClientEvent>,
    ) -> Result<(), CircuitError> {
        let cmd = RelayCmd::RESOLVED;
        let not_resolve = CircuitError::Protocol {
            hop,
            cmd,
            what: "RESOLVED on a stream that is not a RESOLVE",
        };
        let last = self.crypt.last_hop();
        match self.streams.lookup(sid) {
            Lookup::Open(s) => {
                check_stream_hop(s.hop, hop, cmd)?;
                if s.kind != StreamKind::Resolve {
                    return Err(not_resolve);
                }
                self.streams.remove(sid);
                events.push(ClientEvent::Resolved {
                    stream: sid,
                    answers: r.answers().to_vec(),
                });
                Ok(())
            }
            Lookup::HalfClosed(h) => {
                check_stream_hop(h.hop, hop, cmd)?;
                if h.kind != StreamKind::Resolve {
                    return Err(not_resolve);
                }
                self.streams.remove_half_closed(sid);
                Ok(())
            }
            Lookup::Unknown => unknown_stream(hop, last, cmd),
        }
    }

    /// RELAY_EXTENDED2 / RELAY_EXTENDED: finish the pending extension.
    fn on_extended(
        &mut self,
        hop: HopNum,
        cmd: RelayCmd,
        reply: &[u8],
        events: &mut Vec<ClientEvent>,
    ) -> Result<(), CircuitError> {
        let from_last = self.crypt.last_hop() == Some(hop);
        match self.pending.take() {
            Some(p) if from_last && p.reply == cmd && p.handshake.is_tap_remote() => {
                // Kept for `finish_tap_remote`; a second reply is refused.
                if matches!(p.handshake, ClientHandshake::TapRemote(Some(_))) {
                    self.pending = Some(p);
                    return Err(CircuitError::Protocol {
                        hop,
                        cmd,
                        what: "no matching extension pending at this hop",
                    });
                }
                self.pending = Some(PendingExtend {
                    handshake: ClientHandshake::TapRemote(Some(reply.to_vec())),
                    ..p
                });
                Ok(())
            }
            Some(p) if from_last && p.reply == cmd => {
                let keys = p.handshake.finish(p.hop, reply)?;
                let added = self.add_hop(&keys)?;
                events.push(ClientEvent::HopAdded { hop: added });
                Ok(())
            }
            other => {
                self.pending = other;
                Err(CircuitError::Protocol {
                    hop,
                    cmd,
                    what: "no matching extension pending at this hop",
                })
            }
        }
    }

    /// RELAY_TRUNCATED from `hop`: everything beyond it is gone.
    fn on_truncated(&mut self, hop: HopNum, reason: DestroyReason, events: &mut Vec<ClientEvent>) {
        let keep = usize::from(hop.get());
        let extend_failed = self.pending.take().is_some();
        self.crypt.truncate_to(keep);
        self.hops.truncate(keep);
        for stream in self.streams.drop_beyond(keep) {
            events.push(ClientEvent::StreamEnded {
                stream,
                reason: StreamEndReason::Truncated(reason),
            });
        }
        events.push(ClientEvent::Truncated {
            hops: keep,
            reason,
            extend_failed,
        });
    }

    // ----- helpers -----------------------------------------------------------------------

    /// Append a hop with `keys`.
    fn add_hop(&mut self, keys: &HopKeys) -> Result<HopNum, CircuitError> {
        let hop = self
            .crypt
            .add_hop(keys)
            .map_err(|_| CircuitError::Internal("hop added beyond the maximum"))?;
        self.hops.push(HopFlow::new(&self.config));
        Ok(hop)
    }

    /// The last hop (a circuit always has one once created).
    fn last_hop(&self) -> Result<HopNum, CircuitError> {
        self.crypt
            .last_hop()
            .ok_or(CircuitError::Internal("circuit without hops"))
    }

    /// The circuit windows of `hop`.
    fn hop_flow(&mut self, hop: HopNum) -> Result<&mut HopFlow, CircuitError> {
        usize::from(hop.get())
            .checked_sub(1)
            .and_then(|i| self.hops.get_mut(i))
            .ok_or(CircuitError::Internal("no flow state for a hop"))
    }

    /// Fail with [`CircuitError::Closed`] unless open.
    fn check_open(&self) -> Result<(), CircuitError> {
        match self.state {
            State::Open => Ok(()),
            State::Failed(_) | State::Closed => Err(CircuitError::Closed),
        }
    }

    /// Fail with [`CircuitError::QueueFull`] unless `n` more cells fit in the queue.
    fn check_room(&self, n: usize) -> Result<(), CircuitError> {
        if self.out.len().saturating_add(n) <= QUEUE_LIMIT {
            Ok(())
        } else {
            Err(CircuitError::QueueFull)
        }
    }

    /// Record a fatal error (the circuit is then failed) and hand it back.
    fn fail(&mut self, e: CircuitError) -> CircuitError {
        if e.is_fatal() && matches!(self.state, State::Open) {
            self.state = State::Failed(e.clone());
        }
        e
    }

    /// [`ClientCircuit::originate`], recording a fatal error.
    fn originate_checked<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        hop: HopNum,
        sid: StreamId,
        msg: RelayMsg,
        early: Early,
    ) -> Result<CellDigest, CircuitError> {
        match self.originate(rng, hop, sid, msg, early) {
            Ok(d) => Ok(d),
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Queue one of the seed's messages (RELAY_ASSOCIATE, RELAY_WS, RELAY_INFO) for hop 1 in
    /// a RELAY cell, on stream id `sid`. Only when hop 1 is ours
    /// ([`CircuitConfig::hop1_is_ours`]); a message longer than a RELAY cell takes
    /// [`ClientCircuit::seed_ws_cell`].
    pub fn send_seed<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        sid: StreamId,
        msg: RelayMsg,
    ) -> Result<(), CircuitError> {
        self.check_seed(&msg)?;
        self.check_room(1)?;
        self.originate_checked(rng, HopNum::FIRST, sid, msg, Early::Auto)
            .map(|_| ())
    }

    /// One of the seed's messages for hop 1 in a RELAY_WS cell (variable length, up to
    /// 65535 bytes of relay data), encrypted: send it at once, before anything else the
    /// circuit queues. The outgoing queue must be empty (drain it with
    /// [`ClientCircuit::poll_outgoing`] first), else [`CircuitError::QueueFull`], because the
    /// cells must leave in the order they were encrypted.
    pub fn seed_ws_cell(&mut self, sid: StreamId, msg: RelayMsg) -> Result<ChanMsg, CircuitError> {
        self.check_seed(&msg)?;
        if !self.out.is_empty() {
            return Err(CircuitError::QueueFull);
        }
        let mut body = RelayCell::new(sid, msg)
            .and_then(|c| c.encode_ws())
            .map_err(CircuitError::Encode)?;
        if body.len() < RelayWs::MIN_LEN || body.len() > RelayWs::MAX_LEN {
            return Err(CircuitError::Encode(EncodeError::BadValue(
                "RELAY_WS body length",
            )));
        }
        if let Err(e) = self.crypt.encrypt(&mut body, HopNum::FIRST) {
            return Err(self.fail(CircuitError::Crypt(e)));
        }
        let cell = RelayWs::new(body)
            .map_err(|_| self.fail(CircuitError::Internal("encrypted RELAY_WS body rejected")))?;
        Ok(ChanMsg::RelayWs(cell))
    }

    /// The circuit is open, hop 1 is ours, and `msg` is one of the seed's.
    fn check_seed(&self, msg: &RelayMsg) -> Result<(), CircuitError> {
        self.check_open()?;
        if !self.config.hop1_is_ours {
            return Err(CircuitError::Encode(EncodeError::BadValue(
                "seed messages only go to our own ORs (hop1_is_ours)",
            )));
        }
        if !matches!(
            msg,
            RelayMsg::Associate(_) | RelayMsg::WsStream(_) | RelayMsg::Info(_)
        ) {
            return Err(CircuitError::Encode(EncodeError::BadValue(
                "not one of the seed's messages",
            )));
        }
        Ok(())
    }

    /// Encode `msg` on `sid` (4 zero bytes then random padding), encrypt it for `hop` and
    /// queue it. Encoding errors (the caller's) come before any state changes.
    fn originate<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        hop: HopNum,
        sid: StreamId,
        msg: RelayMsg,
        early: Early,
    ) -> Result<CellDigest, CircuitError> {
        let cell = RelayCell::new(sid, msg).map_err(CircuitError::Encode)?;
        let mut body = Box::new(
            cell.encode(|pad| rng.fill_bytes(pad))
                .map_err(CircuitError::Encode)?,
        );
        let digest = self
            .crypt
            .encrypt(body.as_mut_slice(), hop)
            .map_err(|_| CircuitError::Internal("cannot encrypt for this hop"))?;
        let early = match early {
            Early::Required => true,
            Early::Auto => hop != HopNum::FIRST && self.early_left > 0,
        };
        if early {
            self.early_left = self.early_left.saturating_sub(1);
        }
        self.out.push_back(OutCell { early, body });
        Ok(digest)
    }
}

/// A message about a stream must come from the hop the stream ends at.
fn check_stream_hop(stream_hop: HopNum, hop: HopNum, cmd: RelayCmd) -> Result<(), CircuitError> {
    if stream_hop == hop {
        Ok(())
    } else {
        Err(CircuitError::Protocol {
            hop,
            cmd,
            what: "stream message from a hop the stream does not end at",
        })
    }
}

/// A stream message for a stream we do not know: ignored from the last hop (it may concern a
/// stream we forgot), a protocol violation from a middle hop (which has no streams of ours).
fn unknown_stream(hop: HopNum, last: Option<HopNum>, cmd: RelayCmd) -> Result<(), CircuitError> {
    if Some(hop) == last {
        Ok(())
    } else {
        Err(CircuitError::Protocol {
            hop,
            cmd,
            what: "stream message for an unknown stream from a middle hop",
        })
    }
}
