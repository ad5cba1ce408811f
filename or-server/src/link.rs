//! The link task: one per link (Tor TLS in or out, `ws`, `wss`), after the link handshake.
//!
//! The task owns the link's [`Channel`] and the circuits for which the link is the
//! *previous* hop ([`OrCircuit`]s, their streams), and records the circuits it opened on
//! behalf of other links (for which it is the *next* hop). One `select!` loop:
//!
//! - **socket read** → cells: CREATE* answered here ([`OrCircuit::accept_create_with`] with
//!   the current and previous onion keys), RELAY/RELAY_EARLY/RELAY_WS handled by the circuit
//!   (passed on to the next hop, or events: streams, EXTEND2, TRUNCATE), DESTROY tears the
//!   circuit down both ways; cells on circuits opened for other links go to their owner.
//! - **inbox** ([`LinkMsg`]): create requests and cells for circuits opened here for other
//!   links, answers from the next hops of our circuits, exit stream news.
//! - **socket write**: cells are encoded into one output buffer, written and flushed.
//!
//! Backpressure, every queue bounded:
//! - messages to other links go through a local queue; while it is not empty the socket is
//!   not read (the cells stay in the kernel, the peer's TCP window closes), but the inbox is
//!   still served, so links never wait on each other in a cycle;
//! - while the output buffer holds `limits.max_queued_bytes_per_link` bytes or more, the
//!   inbox is not served (the next hops and exit streams wait) and exit data is not
//!   packaged; the socket is still read (what it triggers is small: CREATED, SENDME, END),
//!   up to twice the limit;
//! - exit data toward the client is bounded by the circuit and stream package windows
//!   ([`OrCircuit::stream_data`] says how much it took) and, per stream, by
//!   `limits.max_queued_bytes_per_stream` of credit the exit task must hold before reading
//!   its socket;
//! - data toward an exit connection is bounded by the stream's deliver window (SENDMEs wait
//!   until the exit task reports the bytes written);
//! - the seed's RELAY_WS answers toward a WS_OP_SOCKS connection ([`crate::seed`]) go through
//!   its bounded queue; while one waits for room the socket is not read (as for `remote`).
//!
//! Circuit ID rules: a CREATE* whose ID is not in the peer's half gets DESTROY (PROTOCOL);
//! one reusing a live ID is dropped (as C tor); beyond `limits.max_circuits_per_link`,
//! DESTROY (RESOURCELIMIT). A cell for an unknown circuit is dropped. A cell that breaks the
//! framing (the channel's decoding) closes the link.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use onion_cell::chancell::{ChanCell, ChanMsg, CircId, Destroy, DestroyReason, Relay};
use onion_cell::relaycell::{Address, BeginFlags, End, EndReason, StreamId};
use onion_core::certs::{Ed25519Identity, RsaIdentity};
use onion_core::channel::{Channel, ChannelError, ChannelInfo, PeerAuth};
use onion_core::policy::{PolicyVerdict, is_internal};
use onion_core::relay::{
    CircuitConfig, CircuitEvent, ExtendRequest, ForwardAction, OrCircuit, SendError,
};
use rand_core::UnwrapErr;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::{AbortHandle, JoinSet};

use crate::dir::DirStream;
use crate::exit::{self, EXIT_TTL, ExitStream};
use crate::logging::PeerAddr;
use crate::metrics::{HandshakeKind, LinkKind};
use crate::router::{ExtendTarget, LinkId, LinkMsg, LinkTx, NextRef, Owner, StreamEvent};
use crate::seed::{Bind, CircSeed, SeedMsg, WS_CHUNK, WsDown, WsReq};
use crate::server::{ServerContext, os_rng};

/// Most bytes read from the socket at once.
pub const READ_CHUNK: usize = 32 * 1024;
/// Capacity of a stream's queue toward its exit connection, in DATA cells: more than a
/// stream window (500 cells) plus the ten cells a client may send before SENDMEs wait.
pub const TO_EXIT_CELLS: usize = 600;

/// What a link task starts with.
pub(crate) struct LinkSetup {
    /// The transport.
    pub(crate) kind: LinkKind,
    /// The peer's address, for logs.
    pub(crate) peer: PeerAddr,
    /// What the link handshake established.
    pub(crate) info: ChannelInfo,
    /// This link.
    pub(crate) id: LinkId,
    /// This link's inbox sender (for owner references).
    pub(crate) tx: LinkTx,
    /// This link's inbox.
    pub(crate) rx: mpsc::Receiver<LinkMsg>,
}

/// Encoded cells waiting to be written: `buf[start..]`.
#[derive(Debug, Default)]
struct OutBuf {
    buf: Vec<u8>,
    start: usize,
}

impl OutBuf {
    fn len(&self) -> usize {
        self.buf.len().saturating_sub(self.start)
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn as_slice(&self) -> &[u8] {
        self.buf.get(self.start..).unwrap_or_default()
    }

    /// `n` bytes were written.
    fn consume(&mut self, n: usize) {
        self.start = self.start.saturating_add(n).min(self.buf.len());
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start >= 64 * 1024 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }
}

/// Where a circuit's next hop stands (the driver's view; the core has its own).
#[derive(Debug)]
enum Next {
    /// The circuit ends here.
    None,
    /// An extension is in flight.
    Pending,
    /// Extended through this link and ID.
    Open(NextRef),
}

/// What a stream of ours is.
#[derive(Debug)]
enum StreamKind {
    /// A TCP connection (or one being made).
    Exit(ExitStream),
    /// A directory request answered here.
    Dir(DirStream),
    /// A RESOLVE being looked up.
    Resolve(AbortHandle),
}

/// A stream ending at this relay.
#[derive(Debug)]
struct Stream {
    kind: StreamKind,
    /// Bytes for the client that the windows did not take yet.
    pending: Vec<u8>,
    /// END to send once `pending` is sent.
    end_after: Option<End>,
}

impl Stream {
    fn new(kind: StreamKind) -> Self {
        Stream {
            kind,
            pending: Vec::new(),
            end_after: None,
        }
    }

    /// Take the next part of a directory answer into `pending` (an answer is copied
    /// [`crate::dir::REPLY_CHUNK`] bytes at a time, not whole).
    fn refill(&mut self) {
        if let StreamKind::Dir(d) = &mut self.kind {
            d.fill(&mut self.pending);
        }
    }

    /// Stop the stream's task, if any.
    fn abort(&self) {
        match &self.kind {
            StreamKind::Exit(e) => e.abort.abort(),
            StreamKind::Resolve(a) => a.abort(),
            StreamKind::Dir(_) => {}
        }
    }
}

/// A circuit this link is the previous hop of.
#[derive(Debug)]
struct Circ {
    or: OrCircuit,
    token: u64,
    next: Next,
    streams: HashMap<StreamId, Stream>,
    /// The seed's state: fake domain, RELAY_WS requests, RELAY_INFO ([`crate::seed`]).
    seed: CircSeed,
}

/// Why the link ended.
#[derive(Debug)]
enum Closed {
    Eof,
    Shutdown,
    Io(std::io::Error),
    Protocol(ChannelError),
}

/// The link task's state (the I/O halves and the inbox live in [`run_link`]).
struct Link {
    ctx: Arc<ServerContext>,
    id: LinkId,
    me: LinkTx,
    kind: LinkKind,
    peer: PeerAddr,
    channel: Channel,
    from_client: bool,
    peer_ids: Option<(RsaIdentity, Ed25519Identity)>,
    circuits: HashMap<CircId, Circ>,
    /// Circuits this link opened for other links, by their ID here.
    next: HashMap<CircId, Owner>,
    /// Encoded cells to write.
    out: OutBuf,
    /// Messages for other links, in order.
    remote: VecDeque<(LinkTx, LinkMsg)>,
    /// The OP's RELAY_WS answers for WS_OP_SOCKS connections, in order (like `remote`:
    /// while not empty, the socket is not read).
    seed_out: VecDeque<(mpsc::Sender<WsDown>, WsDown)>,
    /// Received bytes not yet in the channel: `rbuf[rstart..rend]`.
    rbuf: Box<[u8]>,
    rstart: usize,
    rend: usize,
    /// Exit, resolve and extend tasks.
    tasks: JoinSet<()>,
    rng: UnwrapErr<getrandom::SysRng>,
    max_out: usize,
}

/// The handshake type a create cell asks for, for the metrics.
fn handshake_kind(msg: &ChanMsg) -> Option<HandshakeKind> {
    match msg {
        ChanMsg::Create(_) => Some(HandshakeKind::Tap),
        ChanMsg::CreateFast(_) => Some(HandshakeKind::Fast),
        ChanMsg::CreateFastWs(_) => Some(HandshakeKind::FastWs),
        ChanMsg::Create2(c) => match c.htype() {
            0 => Some(HandshakeKind::Tap),
            2 => Some(HandshakeKind::Ntor),
            3 => Some(HandshakeKind::NtorV3),
            _ => None,
        },
        _ => None,
    }
}

/// The extension target of an EXTEND2 request.
fn extend_target(req: &ExtendRequest) -> ExtendTarget {
    let mut addrs = Vec::new();
    if let Some(a) = req.ipv4() {
        addrs.push(SocketAddr::V4(a));
    }
    if let Some(a) = req.ipv6() {
        addrs.push(SocketAddr::V6(a));
    }
    ExtendTarget {
        rsa: RsaIdentity::from_bytes(*req.rsa_id()),
        ed: req.ed25519_id().map(Ed25519Identity::from_bytes),
        addrs,
    }
}

/// Run a link until it closes or shutdown is signalled, then tear its circuits down.
pub(crate) async fn run_link<IO>(
    io: IO,
    channel: Channel,
    setup: LinkSetup,
    ctx: Arc<ServerContext>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let LinkSetup {
        kind,
        peer,
        info,
        id,
        tx,
        mut rx,
    } = setup;
    let peer_ids = match info.peer {
        PeerAuth::Authenticated { rsa_id, ed_id } => Some((rsa_id, ed_id)),
        _ => None,
    };
    if let (Some((rsa, ed)), LinkKind::TlsIn) = (peer_ids, kind) {
        // An authenticated relay: circuits toward it may reuse this link.
        ctx.router.register(rsa, ed, id, tx.clone());
    }
    tracing::debug!(%peer, kind = kind.as_str(), link_version = info.link_version, peer_auth = ?info.peer, "link open");
    let max_out =
        usize::try_from(ctx.config.limits.max_queued_bytes_per_link).unwrap_or(usize::MAX);
    let mut link = Link {
        ctx: Arc::clone(&ctx),
        id,
        me: tx,
        kind,
        peer,
        channel,
        from_client: peer_ids.is_none(),
        peer_ids,
        circuits: HashMap::new(),
        next: HashMap::new(),
        out: OutBuf::default(),
        remote: VecDeque::new(),
        seed_out: VecDeque::new(),
        rbuf: vec![0u8; READ_CHUNK].into_boxed_slice(),
        rstart: 0,
        rend: 0,
        tasks: JoinSet::new(),
        rng: os_rng(),
        max_out,
    };
    let (mut rd, mut wr) = tokio::io::split(io);
    let mut result = Ok(());
    let mut need_flush = false;
    let shutdown = ctx.shutdown.clone();
    loop {
        // Hand messages to other links, and handle the cells received (including what the
        // handshake left in the channel) as far as those links take our messages.
        if let Err(e) = link.advance() {
            result = Err(e);
            break;
        }
        let head = link.remote.front().map(|(tx, _)| tx.clone());
        let seed_head = link.seed_out.front().map(|(tx, _)| tx.clone());
        // A peer that does not read what its cells make us answer is not read either, past
        // twice the output limit.
        let read_ok = link.remote.is_empty()
            && link.seed_out.is_empty()
            && link.rstart == link.rend
            && link.out.len() < link.max_out.saturating_mul(2);
        let inbox_ok = link.out.len() < link.max_out;
        let out_was_full = !inbox_ok;
        tokio::select! {
            biased;
            () = shutdown.wait() => result = Err(Closed::Shutdown),
            w = write_or_flush(&mut wr, &link.out), if !link.out.is_empty() || need_flush => match w {
                Ok(Some(0)) => result = Err(Closed::Eof),
                Ok(Some(n)) => {
                    link.out.consume(n);
                    link.ctx.metrics.bytes_sent.inc_by(n as u64);
                    need_flush = true;
                    if out_was_full && link.out.len() < link.max_out {
                        link.pump_all();
                    }
                }
                Ok(None) => need_flush = false,
                Err(e) => result = Err(Closed::Io(e)),
            },
            permit = async {
                match &head {
                    Some(tx) => tx.reserve().await,
                    None => std::future::pending().await,
                }
            }, if head.is_some() => {
                if let Some((_, msg)) = link.remote.pop_front()
                    && let Ok(permit) = permit
                {
                    permit.send(msg);
                }
            },
            permit = async {
                match &seed_head {
                    Some(tx) => tx.reserve().await,
                    None => std::future::pending().await,
                }
            }, if seed_head.is_some() => {
                // A SOCKS task that is gone just loses its message.
                if let Some((_, msg)) = link.seed_out.pop_front()
                    && let Ok(permit) = permit
                {
                    permit.send(msg);
                }
            },
            msg = rx.recv(), if inbox_ok => match msg {
                Some(msg) => link.handle_msg(msg),
                // Cannot happen: `link.me` keeps a sender.
                None => result = Err(Closed::Shutdown),
            },
            r = rd.read(&mut link.rbuf), if read_ok => match r {
                Ok(0) => result = Err(Closed::Eof),
                Ok(n) => {
                    link.ctx.metrics.bytes_received.inc_by(n as u64);
                    (link.rstart, link.rend) = (0, n);
                }
                Err(e) => result = Err(Closed::Io(e)),
            },
            Some(_) = link.tasks.join_next(), if !link.tasks.is_empty() => {},
        }
        if result.is_err() {
            break;
        }
    }
    match result {
        Err(Closed::Eof | Closed::Shutdown) | Ok(()) => {
            tracing::debug!(peer = %link.peer, kind = link.kind.as_str(), "link closed");
        }
        Err(Closed::Io(e)) => {
            tracing::debug!(peer = %link.peer, kind = link.kind.as_str(), "link closed: {e}");
        }
        Err(Closed::Protocol(e)) => {
            tracing::info!(peer = %link.peer, kind = link.kind.as_str(), "link closed: {e}");
        }
    }
    link.teardown();
    // Say goodbye on a best-effort basis: what is buffered, then close.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
        wr.write_all(link.out.as_slice()).await?;
        wr.shutdown().await
    })
    .await;
}

/// Write some of `out` (`Some(bytes written)`), or flush if it is empty (`None`).
async fn write_or_flush<W: AsyncWrite + Unpin>(
    wr: &mut W,
    out: &OutBuf,
) -> std::io::Result<Option<usize>> {
    if out.is_empty() {
        wr.flush().await?;
        Ok(None)
    } else {
        wr.write(out.as_slice()).await.map(Some)
    }
}

impl Link {
    // ---------------------------------------------------------------------------------
    // Output
    // ---------------------------------------------------------------------------------

    /// Encode a cell for the peer.
    fn send_cell(&mut self, circ: CircId, msg: ChanMsg) {
        let cell = ChanCell::new(circ, msg);
        match self.channel.encode(&cell, &mut self.out.buf) {
            Ok(()) => {
                self.ctx.metrics.cells_sent.inc();
            }
            Err(e) => {
                tracing::warn!(peer = %self.peer, "cannot encode a {} cell: {e}", cell.msg.cmd())
            }
        }
    }

    /// Send DESTROY on `circ`.
    fn send_destroy(&mut self, circ: CircId, reason: DestroyReason) {
        self.send_cell(circ, Destroy::new(reason).into());
    }

    /// Queue a message for another link.
    fn send_to_link(&mut self, tx: LinkTx, msg: LinkMsg) {
        self.remote.push_back((tx, msg));
    }

    /// Hand queued messages to other links while they have room, in order.
    fn flush_remote(&mut self) {
        while let Some((tx, msg)) = self.remote.pop_front() {
            match tx.try_send(msg) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(msg)) => {
                    self.remote.push_front((tx, msg));
                    return;
                }
                // That link is gone; its own teardown tells us what we need to know.
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
    }

    /// Send what circuit `id` queued toward the client.
    fn drain(&mut self, id: CircId) {
        let mut cells = Vec::new();
        if let Some(c) = self.circuits.get_mut(&id) {
            while let Some(msg) = c.or.poll_backward() {
                cells.push(msg);
            }
        }
        for msg in cells {
            self.send_cell(id, msg);
        }
    }

    // ---------------------------------------------------------------------------------
    // Input
    // ---------------------------------------------------------------------------------

    /// Hand queued messages to other links, and handle received cells while those links take
    /// what the cells produce. Returns with input left only if a link's inbox is full.
    fn advance(&mut self) -> Result<(), Closed> {
        loop {
            self.flush_remote();
            self.flush_seed_out();
            if !self.remote.is_empty() || !self.seed_out.is_empty() {
                return Ok(());
            }
            self.process_input()?;
            if self.remote.is_empty() && self.seed_out.is_empty() {
                return Ok(());
            }
        }
    }

    /// Decode and handle the cells received, until the bytes run out or messages for other
    /// links wait (see [`Link::advance`]).
    fn process_input(&mut self) -> Result<(), Closed> {
        loop {
            if !self.remote.is_empty() || !self.seed_out.is_empty() {
                return Ok(());
            }
            match self.channel.poll_cell().map_err(Closed::Protocol)? {
                Some(cell) => {
                    self.ctx.metrics.cells_received.inc();
                    self.handle_cell(cell);
                }
                None if self.rstart < self.rend => {
                    let pending = self.rbuf.get(self.rstart..self.rend).unwrap_or_default();
                    let n = self.channel.handle_input(pending);
                    if n == 0 {
                        return Err(Closed::Protocol(ChannelError::Misuse(
                            "channel input stalled",
                        )));
                    }
                    self.rstart += n;
                }
                None => return Ok(()),
            }
        }
    }

    /// One cell from the peer.
    fn handle_cell(&mut self, cell: ChanCell) {
        let id = cell.circ_id;
        match cell.msg {
            msg @ (ChanMsg::Create(_)
            | ChanMsg::Create2(_)
            | ChanMsg::CreateFast(_)
            | ChanMsg::CreateFastWs(_)) => self.on_create(id, &msg),
            ChanMsg::Relay(r) => self.on_relay(id, r, false),
            ChanMsg::RelayEarly(r) => self.on_relay(id, r, true),
            ChanMsg::RelayWs(w) if self.circuits.contains_key(&id) => {
                let mut body = w.into_body();
                let r = self
                    .circuits
                    .get_mut(&id)
                    .map(|c| c.or.handle_forward_ws(&mut self.rng, &mut body));
                if let Some(r) = r {
                    self.after_forward(id, r, None);
                }
            }
            msg @ (ChanMsg::Created(_)
            | ChanMsg::Created2(_)
            | ChanMsg::CreatedFast(_)
            | ChanMsg::CreatedFastWs(_)) => self.pass_to_owner(id, msg),
            ChanMsg::Destroy(d) => {
                if self.circuits.contains_key(&id) {
                    self.close_circuit(id, d.reason(), false);
                } else {
                    self.pass_to_owner(id, d.into());
                }
            }
            // PADDING_NEGOTIATE and unknown cells: nothing to do.
            _ => {}
        }
    }

    /// A cell on a circuit this link opened for another link: pass it to the owner.
    fn pass_to_owner(&mut self, id: CircId, msg: ChanMsg) {
        let Some(owner) = self.next.get(&id).cloned() else {
            return;
        };
        if matches!(msg, ChanMsg::Destroy(_)) {
            self.next.remove(&id);
        }
        let next = NextRef {
            tx: self.me.clone(),
            link: self.id,
            circ: id,
        };
        self.send_to_link(
            owner.tx,
            LinkMsg::FromNext {
                circ: owner.circ,
                token: owner.token,
                next,
                msg,
            },
        );
    }

    /// CREATE, CREATE2, CREATE_FAST, CREATE_FAST_WS.
    fn on_create(&mut self, id: CircId, msg: &ChanMsg) {
        if !self.channel.circ_ids().peer_may_create(id) {
            tracing::debug!(peer = %self.peer, "CREATE with a circuit ID outside the peer's range");
            self.send_destroy(id, DestroyReason::PROTOCOL);
            return;
        }
        if self.circuits.contains_key(&id) || self.next.contains_key(&id) {
            // C tor: "Received CREATE cell for known circ. Dropping."
            return;
        }
        let limit =
            usize::try_from(self.ctx.config.limits.max_circuits_per_link).unwrap_or(usize::MAX);
        if self.circuits.len() >= limit {
            self.send_destroy(id, DestroyReason::RESOURCELIMIT);
            return;
        }
        let keys = match self.ctx.router.relay_keys(&self.ctx) {
            Ok(k) => k,
            Err(e) => {
                tracing::error!("cannot answer CREATE: {e}");
                self.send_destroy(id, DestroyReason::INTERNAL);
                return;
            }
        };
        let config = CircuitConfig {
            max_streams: usize::try_from(self.ctx.config.limits.max_streams_per_circuit)
                .unwrap_or(usize::MAX),
            ..CircuitConfig::default()
        };
        match OrCircuit::accept_create_with(
            &mut self.rng,
            &keys.onion,
            &config,
            msg,
            self.from_client,
        ) {
            Ok((or, reply)) => {
                let token = self.ctx.router.new_token();
                self.circuits.insert(
                    id,
                    Circ {
                        or,
                        token,
                        next: Next::None,
                        streams: HashMap::new(),
                        seed: CircSeed::default(),
                    },
                );
                self.ctx.metrics.circuits_open.inc();
                self.send_cell(id, reply);
            }
            Err(e) => {
                if let Some(kind) = handshake_kind(msg) {
                    self.ctx.metrics.handshake_failed(kind);
                }
                tracing::debug!(peer = %self.peer, "circuit handshake failed: {e}");
                self.send_destroy(id, e.destroy_reason());
            }
        }
    }

    /// RELAY or RELAY_EARLY from the peer.
    fn on_relay(&mut self, id: CircId, relay: Relay, early: bool) {
        if let Some(c) = self.circuits.get_mut(&id) {
            let mut body = relay.into_body();
            let r = c.or.handle_forward(&mut self.rng, &mut body, early);
            self.after_forward(id, r, Some((body, early)));
        } else if self.next.contains_key(&id) {
            let msg = if early {
                ChanMsg::RelayEarly(relay)
            } else {
                ChanMsg::Relay(relay)
            };
            self.pass_to_owner(id, msg);
        }
        // Unknown circuit: dropped (C tor: "unknown circuit ... Dropping").
    }

    /// What the circuit said about a forward cell.
    fn after_forward(
        &mut self,
        id: CircId,
        result: Result<ForwardAction, onion_core::relay::CircuitError>,
        body: Option<(Box<[u8; onion_cell::chancell::PAYLOAD_LEN]>, bool)>,
    ) {
        match result {
            Ok(ForwardAction::PassOn { early }) => {
                let next = self.circuits.get(&id).and_then(|c| match &c.next {
                    Next::Open(r) => Some(r.clone()),
                    _ => None,
                });
                match (next, body) {
                    (Some(r), Some((body, _))) => {
                        let relay = Relay::new(body);
                        let msg = if early {
                            ChanMsg::RelayEarly(relay)
                        } else {
                            ChanMsg::Relay(relay)
                        };
                        self.send_to_link(r.tx, LinkMsg::ToNext { circ: r.circ, msg });
                    }
                    // The core passes cells on only once extended, and we mirror it.
                    _ => self.close_circuit(id, DestroyReason::INTERNAL, true),
                }
            }
            Ok(ForwardAction::Consumed) => {}
            Ok(ForwardAction::Event(e)) => self.on_event(id, e),
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(peer = %self.peer, "circuit closed: {e}");
                self.close_circuit(id, e.destroy_reason(), true);
                return;
            }
        }
        self.drain(id);
    }

    // ---------------------------------------------------------------------------------
    // Circuit events
    // ---------------------------------------------------------------------------------

    fn on_event(&mut self, id: CircId, event: CircuitEvent) {
        match event {
            CircuitEvent::BeginRequest {
                stream,
                target,
                port,
                flags,
            } => self.on_begin(id, stream, target, port, flags),
            CircuitEvent::BeginDirRequest { stream } => self.on_begin_dir(id, stream),
            CircuitEvent::ResolveRequest { stream, query } => self.on_resolve(id, stream, query),
            CircuitEvent::StreamData { stream, data } => self.on_stream_data(id, stream, data),
            CircuitEvent::StreamEnd { stream, .. } => {
                // The client ended it: close our side (an exit task finishes writing what
                // it has, then closes its connection).
                self.remove_stream(id, stream, false);
            }
            CircuitEvent::PackageWindowOpened { stream } => match stream {
                Some(s) => self.pump(id, s),
                None => self.pump_circuit(id),
            },
            CircuitEvent::ExtendRequest(req) => self.on_extend(id, req),
            CircuitEvent::Truncate => {
                let next = self
                    .circuits
                    .get_mut(&id)
                    .map(|c| std::mem::replace(&mut c.next, Next::None));
                if let Some(Next::Open(r)) = next {
                    self.send_to_link(
                        r.tx,
                        LinkMsg::ToNext {
                            circ: r.circ,
                            msg: Destroy::new(DestroyReason::REQUESTED).into(),
                        },
                    );
                }
                if let Some(c) = self.circuits.get_mut(&id) {
                    let _ = c.or.truncated(&mut self.rng);
                }
            }
            e @ (CircuitEvent::SeedAssociate { .. }
            | CircuitEvent::SeedWs { .. }
            | CircuitEvent::SeedInfo { .. }) => self.on_seed(id, e),
            other => tracing::debug!(peer = %self.peer, "ignoring {other:?}"),
        }
    }

    /// Refuse a stream with END.
    fn refuse(&mut self, id: CircId, stream: StreamId, end: End) {
        if let Some(c) = self.circuits.get_mut(&id)
            && let Err(e) = c.or.stream_end_with(&mut self.rng, stream, end)
        {
            tracing::debug!("cannot refuse stream: {e}");
        }
    }

    fn insert_stream(&mut self, id: CircId, stream: StreamId, kind: StreamKind) {
        if let Some(c) = self.circuits.get_mut(&id) {
            c.streams.insert(stream, Stream::new(kind));
            self.ctx.metrics.streams_open.inc();
        } else {
            Stream::new(kind).abort();
        }
    }

    /// RELAY_BEGIN.
    fn on_begin(
        &mut self,
        id: CircId,
        stream: StreamId,
        target: Address,
        port: u16,
        flags: BeginFlags,
    ) {
        let exit = &self.ctx.config.exit;
        let first_hop = self.circuits.get(&id).is_some_and(|c| c.or.is_first_hop());
        if !exit.enabled {
            return self.refuse(id, stream, End::new(EndReason::EXITPOLICY));
        }
        if first_hop && !exit.allow_single_hop {
            // C tor: "Attempt by ... to open a stream on first hop of circuit."
            return self.refuse(id, stream, End::new(EndReason::TORPROTOCOL));
        }
        let guard = &self.ctx.exit_guard;
        let literal: Option<IpAddr> = match &target {
            Address::Ipv4(a) => Some((*a).into()),
            Address::Ipv6(a) => Some((*a).into()),
            Address::Hostname(_) => None,
        };
        match literal {
            Some(addr) => {
                if let Err(refusal) = guard.check(addr, port) {
                    tracing::debug!("exit refused: {refusal}");
                    return self.refuse(id, stream, End::exit_policy(addr, EXIT_TTL));
                }
            }
            None => {
                if guard.check_port(port) == PolicyVerdict::Rejected {
                    return self.refuse(id, stream, End::new(EndReason::EXITPOLICY));
                }
            }
        }
        let Some(token) = self.circuits.get(&id).map(|c| c.token) else {
            return;
        };
        let credit = Arc::new(Semaphore::new(
            usize::try_from(self.ctx.config.limits.max_queued_bytes_per_stream)
                .unwrap_or(usize::MAX)
                .min(Semaphore::MAX_PERMITS),
        ));
        let (to_exit, from_client) = mpsc::channel(TO_EXIT_CELLS);
        let task = exit::BeginTask {
            owner: Owner {
                tx: self.me.clone(),
                link: self.id,
                circ: id,
                token,
            },
            stream,
            target,
            port,
            flags,
            guard: Arc::clone(&self.ctx.exit_guard),
            credit: Arc::clone(&credit),
            from_client,
        };
        let abort = self.tasks.spawn(task.run());
        self.insert_stream(
            id,
            stream,
            StreamKind::Exit(ExitStream {
                to_exit: Some(to_exit),
                credit,
                abort,
            }),
        );
    }

    /// RELAY_BEGIN_DIR: answered here.
    fn on_begin_dir(&mut self, id: CircId, stream: StreamId) {
        let connected = self
            .circuits
            .get_mut(&id)
            .map(|c| c.or.stream_connected(&mut self.rng, stream, None));
        match connected {
            Some(Ok(())) => self.insert_stream(id, stream, StreamKind::Dir(DirStream::new())),
            Some(Err(e)) => tracing::debug!("BEGIN_DIR: {e}"),
            None => {}
        }
    }

    /// RELAY_RESOLVE.
    fn on_resolve(&mut self, id: CircId, stream: StreamId, query: String) {
        if !self.ctx.config.exit.enabled {
            return self.refuse(id, stream, End::new(EndReason::EXITPOLICY));
        }
        let Some(token) = self.circuits.get(&id).map(|c| c.token) else {
            return;
        };
        let owner = Owner {
            tx: self.me.clone(),
            link: self.id,
            circ: id,
            token,
        };
        let allow_internal = self.ctx.exit_guard.allow_internal;
        let abort = self
            .tasks
            .spawn(exit::resolve(owner, stream, query, allow_internal));
        self.insert_stream(id, stream, StreamKind::Resolve(abort));
    }

    /// RELAY_DATA from the client.
    fn on_stream_data(&mut self, id: CircId, stream: StreamId, data: Vec<u8>) {
        let Some(c) = self.circuits.get_mut(&id) else {
            return;
        };
        let len = data.len();
        let mut flushed_now = false;
        let mut overflow = false;
        let mut dir_reply = None;
        match c.streams.get_mut(&stream).map(|s| &mut s.kind) {
            Some(StreamKind::Exit(e)) => match e.to_exit.as_ref().map(|tx| tx.try_send(data)) {
                Some(Ok(())) => {}
                Some(Err(mpsc::error::TrySendError::Full(_))) => overflow = true,
                // The exit connection is gone and its END is on the way.
                Some(Err(mpsc::error::TrySendError::Closed(_))) | None => flushed_now = true,
            },
            Some(StreamKind::Dir(d)) => {
                dir_reply = d.feed(&data);
                flushed_now = true;
            }
            Some(StreamKind::Resolve(_)) | None => flushed_now = true,
        }
        if flushed_now && let Err(e) = c.or.stream_flushed(&mut self.rng, stream, len) {
            tracing::debug!("stream flushed: {e}");
        }
        if overflow {
            self.remove_stream(id, stream, true);
            self.refuse(id, stream, End::new(EndReason::RESOURCELIMIT));
            return;
        }
        if let Some(request) = dir_reply {
            let reply = crate::dir::respond(&request, &self.ctx);
            if let Some(s) = self
                .circuits
                .get_mut(&id)
                .and_then(|c| c.streams.get_mut(&stream))
            {
                if let StreamKind::Dir(d) = &mut s.kind {
                    d.set_reply(reply);
                }
                s.end_after = Some(End::new(EndReason::DONE));
            }
            self.pump(id, stream);
        }
    }

    /// RELAY_EXTEND2 / RELAY_EXTEND.
    fn on_extend(&mut self, id: CircId, req: ExtendRequest) {
        let mut target = extend_target(&req);
        if self.peer_ids.is_some_and(|(rsa, _)| rsa == target.rsa) {
            // C tor: "Client asked me to extend back to the previous hop."
            tracing::debug!(peer = %self.peer, "refusing to extend back to the previous hop");
            return self.close_circuit(id, DestroyReason::PROTOCOL, true);
        }
        if !self.ctx.config.extend_allow_private {
            target.addrs.retain(|a| is_internal(&a.ip()).is_none());
        }
        if target.addrs.is_empty() {
            tracing::debug!(peer = %self.peer, "refusing to extend to a private address");
            return self.close_circuit(id, DestroyReason::PROTOCOL, true);
        }
        if self
            .circuits
            .get(&id)
            .is_some_and(|c| c.seed.domain.is_some())
        {
            // The seed's CID "only exists between the OP and the OR (ie is not extended)".
            tracing::info!(peer = %self.peer, "refusing to extend a circuit with a fake domain");
            return self.close_circuit(id, DestroyReason::PROTOCOL, true);
        }
        let Some(c) = self.circuits.get_mut(&id) else {
            return;
        };
        c.next = Next::Pending;
        let owner = Owner {
            tx: self.me.clone(),
            link: self.id,
            circ: id,
            token: c.token,
        };
        let ctx = Arc::clone(&self.ctx);
        let create = req.into_create();
        self.tasks.spawn(async move {
            let failed = |reason| LinkMsg::ExtendFailed {
                circ: owner.circ,
                token: owner.token,
                reason,
            };
            match ctx.router.link_to(&ctx, &target).await {
                Ok((_, next_tx)) => {
                    let me = owner.tx.clone();
                    let (circ, token) = (owner.circ, owner.token);
                    if next_tx
                        .send(LinkMsg::Create { owner, create })
                        .await
                        .is_err()
                    {
                        let _ = me
                            .send(LinkMsg::ExtendFailed {
                                circ,
                                token,
                                reason: DestroyReason::CONNECTFAILED,
                            })
                            .await;
                    }
                }
                Err(reason) => {
                    let _ = owner.tx.send(failed(reason)).await;
                }
            }
        });
    }

    // ---------------------------------------------------------------------------------
    // Streams toward the client
    // ---------------------------------------------------------------------------------

    /// Send what `stream` holds for the client, as far as the windows allow; then its END
    /// if it is over.
    fn pump(&mut self, id: CircId, stream: StreamId) {
        if self.out.len() >= self.max_out {
            // Resumed by `pump_all` when the output drains.
            return;
        }
        let Some(c) = self.circuits.get_mut(&id) else {
            return;
        };
        let Some(s) = c.streams.get_mut(&stream) else {
            return;
        };
        let mut gone = false;
        s.refill();
        while !s.pending.is_empty() {
            let taken = match c.or.stream_data(&mut self.rng, stream, &s.pending) {
                Ok(n) => n,
                Err(SendError::UnknownStream(_) | SendError::Closed(_)) => {
                    gone = true;
                    break;
                }
                Err(e) => {
                    tracing::debug!("stream data: {e}");
                    0
                }
            };
            s.pending.drain(..taken);
            if let StreamKind::Exit(e) = &s.kind {
                e.credit.add_permits(taken);
            }
            s.refill();
            // Move the cells out so the queue has room again.
            while let Some(msg) = c.or.poll_backward() {
                if self
                    .channel
                    .encode(&ChanCell::new(id, msg), &mut self.out.buf)
                    .is_ok()
                {
                    self.ctx.metrics.cells_sent.inc();
                }
            }
            if taken == 0 {
                break;
            }
        }
        let finished = !gone && s.pending.is_empty() && s.end_after.is_some();
        if finished {
            if let Some(end) = s.end_after.take()
                && let Err(e) = c.or.stream_end_with(&mut self.rng, stream, end)
            {
                tracing::debug!("stream end: {e}");
            }
            self.remove_stream(id, stream, false);
        } else if gone {
            self.remove_stream(id, stream, true);
        }
        self.drain(id);
    }

    /// Pump every stream of circuit `id` that holds data.
    fn pump_circuit(&mut self, id: CircId) {
        let streams: Vec<StreamId> = self
            .circuits
            .get(&id)
            .map(|c| {
                c.streams
                    .iter()
                    .filter(|(_, s)| !s.pending.is_empty())
                    .map(|(k, _)| *k)
                    .collect()
            })
            .unwrap_or_default();
        for s in streams {
            self.pump(id, s);
        }
        self.pump_seed_circuit(id);
    }

    /// Pump every stream that holds data (the output buffer drained below its limit).
    fn pump_all(&mut self) {
        let ids: Vec<CircId> = self.circuits.keys().copied().collect();
        for id in ids {
            self.pump_circuit(id);
        }
    }

    /// Forget a stream (its task is stopped if `abort`, else left to finish).
    fn remove_stream(&mut self, id: CircId, stream: StreamId, abort: bool) {
        let removed = self
            .circuits
            .get_mut(&id)
            .and_then(|c| c.streams.remove(&stream));
        if let Some(s) = removed {
            if abort {
                s.abort();
            }
            self.ctx.metrics.streams_open.dec();
        }
    }

    // ---------------------------------------------------------------------------------
    // Inbox
    // ---------------------------------------------------------------------------------

    fn handle_msg(&mut self, msg: LinkMsg) {
        match msg {
            LinkMsg::Create { owner, create } => self.open_for(owner, create),
            LinkMsg::ToNext { circ, msg } => {
                if self.next.contains_key(&circ) {
                    if matches!(msg, ChanMsg::Destroy(_)) {
                        self.next.remove(&circ);
                    }
                    self.send_cell(circ, msg);
                }
            }
            LinkMsg::FromNext {
                circ,
                token,
                next,
                msg,
            } => self.on_from_next(circ, token, next, msg),
            LinkMsg::ExtendFailed {
                circ,
                token,
                reason,
            } => {
                if let Some(c) = self.circuits.get_mut(&circ)
                    && c.token == token
                    && matches!(c.next, Next::Pending)
                {
                    c.next = Next::None;
                    let _ = c.or.extend_failed(&mut self.rng, reason);
                    self.drain(circ);
                }
            }
            LinkMsg::Stream {
                circ,
                token,
                stream,
                event,
            } => {
                if self.circuits.get(&circ).is_some_and(|c| c.token == token) {
                    self.on_stream_event(circ, stream, event);
                    self.drain(circ);
                }
            }
            LinkMsg::Seed { circ, token, msg } => self.on_seed_msg(circ, token, msg),
        }
    }

    /// Open a circuit on this link for another link's circuit.
    fn open_for(&mut self, owner: Owner, create: ChanMsg) {
        let (circuits, next) = (&self.circuits, &self.next);
        let id = self.channel.allocate_circ_id(&mut self.rng, |id| {
            circuits.contains_key(&id) || next.contains_key(&id)
        });
        match id {
            Ok(id) => {
                self.next.insert(id, owner);
                self.send_cell(id, create);
            }
            Err(e) => {
                tracing::debug!(peer = %self.peer, "cannot open a circuit: {e}");
                let (tx, circ, token) = (owner.tx, owner.circ, owner.token);
                self.send_to_link(
                    tx,
                    LinkMsg::ExtendFailed {
                        circ,
                        token,
                        reason: DestroyReason::RESOURCELIMIT,
                    },
                );
            }
        }
    }

    /// A cell from the next hop of one of our circuits.
    fn on_from_next(&mut self, id: CircId, token: u64, from: NextRef, msg: ChanMsg) {
        let is_destroy = matches!(msg, ChanMsg::Destroy(_));
        let Some(c) = self.circuits.get_mut(&id).filter(|c| c.token == token) else {
            // The circuit is gone: its next hop must go too.
            if !is_destroy {
                self.destroy_next(&from, DestroyReason::NONE);
            }
            return;
        };
        match (&c.next, msg) {
            (
                Next::Pending,
                created @ (ChanMsg::Created(_)
                | ChanMsg::Created2(_)
                | ChanMsg::CreatedFast(_)
                | ChanMsg::CreatedFastWs(_)),
            ) => match c.or.extended(&mut self.rng, &created) {
                Ok(()) => c.next = Next::Open(from),
                Err(e) => {
                    tracing::debug!("extension failed: {e}");
                    c.next = Next::None;
                    let _ = c.or.extend_failed(&mut self.rng, DestroyReason::PROTOCOL);
                    self.destroy_next(&from, DestroyReason::PROTOCOL);
                }
            },
            (Next::Pending, ChanMsg::Destroy(d)) => {
                c.next = Next::None;
                let _ = c.or.extend_failed(&mut self.rng, d.reason());
            }
            (Next::Open(r), ChanMsg::Relay(relay)) if r.same(&from) => {
                if let Err(e) = c.or.handle_backward_from_next(relay.into_body()) {
                    tracing::debug!("backward cell dropped: {e}");
                }
            }
            (Next::Open(r), ChanMsg::Destroy(d)) if r.same(&from) => {
                // tor-spec §5.4: an open next hop that dies takes the circuit with it.
                c.next = Next::None;
                self.close_circuit(id, d.reason(), true);
                return;
            }
            (Next::Open(r), ChanMsg::RelayEarly(_)) if r.same(&from) => {
                // tor-spec §5.6: RELAY_EARLY toward the client closes the circuit.
                self.close_circuit(id, DestroyReason::PROTOCOL, true);
                return;
            }
            (Next::Pending, msg) => {
                // Our extension's next hop sent something other than CREATED or DESTROY.
                c.next = Next::None;
                let _ = c.or.extend_failed(&mut self.rng, DestroyReason::PROTOCOL);
                if !matches!(msg, ChanMsg::Destroy(_)) {
                    self.destroy_next(&from, DestroyReason::PROTOCOL);
                }
            }
            (_, msg) => {
                // Stale, or not what this next hop may send now.
                if !matches!(msg, ChanMsg::Destroy(_)) {
                    self.destroy_next(&from, DestroyReason::PROTOCOL);
                }
            }
        }
        self.drain(id);
    }

    fn destroy_next(&mut self, next: &NextRef, reason: DestroyReason) {
        self.send_to_link(
            next.tx.clone(),
            LinkMsg::ToNext {
                circ: next.circ,
                msg: Destroy::new(reason).into(),
            },
        );
    }

    fn on_stream_event(&mut self, id: CircId, stream: StreamId, event: StreamEvent) {
        let Some(c) = self.circuits.get_mut(&id) else {
            return;
        };
        if !c.streams.contains_key(&stream) {
            return;
        }
        match event {
            StreamEvent::Connected { addr, ttl } => {
                if let Err(e) =
                    c.or.stream_connected(&mut self.rng, stream, Some((addr, ttl)))
                {
                    tracing::debug!("stream connected: {e}");
                    self.remove_stream(id, stream, true);
                }
            }
            StreamEvent::Data(bytes) => {
                if let Some(s) = c.streams.get_mut(&stream) {
                    if s.pending.is_empty() {
                        s.pending = bytes;
                    } else {
                        s.pending.extend_from_slice(&bytes);
                    }
                }
                self.pump(id, stream);
            }
            StreamEvent::Flushed(n) => {
                if let Err(e) = c.or.stream_flushed(&mut self.rng, stream, n) {
                    tracing::debug!("stream flushed: {e}");
                }
            }
            StreamEvent::End(end) => {
                if let Some(s) = c.streams.get_mut(&stream) {
                    s.end_after = Some(end);
                }
                self.pump(id, stream);
                // Nothing pending: `pump` returned before ending it.
                let still = self
                    .circuits
                    .get_mut(&id)
                    .and_then(|c| c.streams.get_mut(&stream))
                    .filter(|s| s.pending.is_empty())
                    .and_then(|s| s.end_after.take());
                if let Some(end) = still {
                    if let Some(c) = self.circuits.get_mut(&id) {
                        let _ = c.or.stream_end_with(&mut self.rng, stream, end);
                    }
                    self.remove_stream(id, stream, false);
                }
            }
            StreamEvent::Resolved(r) => {
                if let Err(e) = c.or.resolved(&mut self.rng, stream, r) {
                    tracing::debug!("resolved: {e}");
                }
                self.remove_stream(id, stream, false);
            }
        }
    }

    // ---------------------------------------------------------------------------------
    // Teardown
    // ---------------------------------------------------------------------------------

    /// Tear circuit `id` down: DESTROY toward the client (if `tell_client`) and toward its
    /// next hop, streams stopped.
    fn close_circuit(&mut self, id: CircId, reason: DestroyReason, tell_client: bool) {
        let Some(c) = self.circuits.remove(&id) else {
            return;
        };
        self.ctx.metrics.circuits_open.dec();
        if let Some(d) = &c.seed.domain {
            self.ctx.seed.release(d, self.id, id, c.token);
            tracing::debug!(peer = %self.peer, "fake domain released");
        }
        for s in c.streams.values() {
            s.abort();
            self.ctx.metrics.streams_open.dec();
        }
        if let Next::Open(r) = &c.next {
            self.destroy_next(r, reason);
        }
        if tell_client {
            self.send_destroy(id, reason);
        }
    }

    /// The link is closing: every circuit goes, both ways.
    fn teardown(&mut self) {
        let ids: Vec<CircId> = self.circuits.keys().copied().collect();
        for id in ids {
            self.close_circuit(id, DestroyReason::CHANNEL_CLOSED, false);
        }
        let next: Vec<(CircId, Owner)> = self.next.drain().collect();
        for (id, owner) in next {
            let from = NextRef {
                tx: self.me.clone(),
                link: self.id,
                circ: id,
            };
            self.send_to_link(
                owner.tx,
                LinkMsg::FromNext {
                    circ: owner.circ,
                    token: owner.token,
                    next: from,
                    msg: Destroy::new(DestroyReason::CHANNEL_CLOSED).into(),
                },
            );
        }
        if let Some((rsa, _)) = self.peer_ids {
            self.ctx.router.unregister(&rsa, self.id);
        }
        self.tasks.abort_all();
        // Deliver what is left to other links without holding this task.
        let remote: Vec<(LinkTx, LinkMsg)> = self.remote.drain(..).collect();
        if !remote.is_empty() {
            tokio::spawn(async move {
                for (tx, msg) in remote {
                    let _ = tx.send(msg).await;
                }
            });
        }
    }
}

// -------------------------------------------------------------------------------------------
// The seed's extension on hop 1 (see crate::seed)
// -------------------------------------------------------------------------------------------

impl Link {
    /// Hand queued RELAY_WS answers to their SOCKS tasks while they have room, in order.
    fn flush_seed_out(&mut self) {
        while let Some((tx, msg)) = self.seed_out.pop_front() {
            match tx.try_send(msg) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(msg)) => {
                    self.seed_out.push_front((tx, msg));
                    return;
                }
                // The SOCKS connection is gone (it ends its request itself).
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
    }

    /// RELAY_ASSOCIATE, RELAY_WS or RELAY_INFO from the client, for this hop.
    fn on_seed(&mut self, id: CircId, event: CircuitEvent) {
        let Some(c) = self.circuits.get_mut(&id) else {
            return;
        };
        if !matches!(c.next, Next::None) || !c.or.is_from_client() {
            // Only CID, which is never extended, carries them; never passed on.
            tracing::info!(peer = %self.peer, "seed command on an extended circuit: closing it");
            return self.close_circuit(id, DestroyReason::PROTOCOL, true);
        }
        match event {
            CircuitEvent::SeedAssociate { stream, msg } => {
                let owner = Owner {
                    tx: self.me.clone(),
                    link: self.id,
                    circ: id,
                    token: c.token,
                };
                match self.ctx.seed.associate(msg.fake_domain(), &owner) {
                    Bind::Bound(domain) => {
                        tracing::debug!(peer = %self.peer, "fake domain associated");
                        if let Some(old) = c.seed.domain.replace(domain.clone())
                            && old != domain
                        {
                            self.ctx.seed.release(&old, self.id, id, c.token);
                        }
                    }
                    refusal => {
                        // The seed: the OR sends RELAY_ASSOCIATE back; the OP must pick
                        // another fake domain.
                        tracing::info!(peer = %self.peer, "RELAY_ASSOCIATE refused: {refusal:?}");
                        if let Err(e) = c.or.send_seed(&mut self.rng, stream, msg.into()) {
                            tracing::debug!("cannot answer RELAY_ASSOCIATE: {e}");
                        }
                    }
                }
            }
            CircuitEvent::SeedWs { stream, msg } => {
                if let Err(e) = msg.op_addr() {
                    tracing::debug!(peer = %self.peer, "RELAY_WS from the OP dropped: {e}");
                    return;
                }
                let Some(req) = c.seed.ws.get(&stream) else {
                    tracing::debug!(peer = %self.peer, "RELAY_WS for no request dropped");
                    return;
                };
                let tx = req.to_socks.clone();
                if msg.is_end() {
                    c.seed.remove(stream);
                    self.seed_out.push_back((tx, WsDown::End));
                } else {
                    self.seed_out
                        .push_back((tx, WsDown::Data(msg.request().to_vec())));
                }
                self.flush_seed_out();
            }
            CircuitEvent::SeedInfo { stream, msg } => {
                let answer = if self.ctx.config.seed.relay_info {
                    msg.decode_request()
                        .map_err(|e| e.to_string())
                        .and_then(|req| c.seed.info_answer(&mut self.rng, req))
                } else {
                    Err("disabled ([seed] relay_info = false)".to_owned())
                };
                let sent = answer.and_then(|resp| {
                    onion_cell::relaycell::Info::from_response(&resp)
                        .map_err(|e| e.to_string())
                        .and_then(|info| {
                            c.or.send_seed(&mut self.rng, stream, info.into())
                                .map_err(|e| e.to_string())
                        })
                });
                if let Err(why) = sent {
                    // No stream to END (a client ignores END for a stream it does not know):
                    // the circuit goes.
                    tracing::info!(peer = %self.peer, "RELAY_INFO refused, circuit closed: {why}");
                    self.close_circuit(id, DestroyReason::PROTOCOL, true);
                }
            }
            _ => {}
        }
    }

    /// A message from a WS_OP_SOCKS connection for circuit `id`.
    fn on_seed_msg(&mut self, id: CircId, token: u64, msg: SeedMsg) {
        let c = self
            .circuits
            .get_mut(&id)
            .filter(|c| c.token == token && c.seed.domain.is_some());
        match msg {
            SeedMsg::Open {
                request,
                mut addr,
                to_socks,
                credit,
                reply,
            } => {
                let Some(c) = c else {
                    let _ = reply.send(false);
                    return;
                };
                let or = &c.or;
                let Some(stream) = c
                    .seed
                    .free_stream(|s| or.stream_package_window(s).is_some())
                else {
                    tracing::debug!(peer = %self.peer, "too many RELAY_WS requests");
                    let _ = reply.send(false);
                    return;
                };
                addr.request_id = request.to_string();
                c.seed.by_request.insert(request, stream);
                c.seed.ws.insert(
                    stream,
                    WsReq {
                        request,
                        addr,
                        to_socks,
                        credit,
                        pending: Vec::new(),
                        end_after: false,
                    },
                );
                let _ = reply.send(true);
            }
            SeedMsg::Data { request, data } => {
                let Some(c) = c else { return };
                let Some(stream) = c.seed.by_request.get(&request).copied() else {
                    return;
                };
                if let Some(r) = c.seed.ws.get_mut(&stream) {
                    r.pending.extend_from_slice(&data);
                }
                self.pump_seed(id, stream);
            }
            SeedMsg::End { request } => {
                let Some(c) = c else { return };
                let Some(stream) = c.seed.by_request.get(&request).copied() else {
                    return;
                };
                if let Some(r) = c.seed.ws.get_mut(&stream) {
                    r.end_after = true;
                }
                self.pump_seed(id, stream);
            }
        }
    }

    /// Send what a RELAY_WS request holds for the OP as far as the circuit's queue and the
    /// link's output limit allow; then its end, if the browser is done.
    fn pump_seed(&mut self, id: CircId, stream: StreamId) {
        loop {
            if self.out.len() >= self.max_out {
                // Resumed by `pump_all` when the output drains.
                return;
            }
            let Some(c) = self.circuits.get_mut(&id) else {
                return;
            };
            let Some(r) = c.seed.ws.get_mut(&stream) else {
                return;
            };
            let n = r.pending.len().min(WS_CHUNK);
            if n == 0 && !r.end_after {
                return;
            }
            let chunk = r.pending.get(..n).unwrap_or_default().to_vec();
            let sent = onion_cell::relaycell::WsStream::from_or(&r.addr, chunk)
                .map_err(SendError::from)
                .and_then(|m| c.or.send_seed(&mut self.rng, stream, m.into()));
            match sent {
                Ok(()) => {
                    r.pending.drain(..n);
                    r.credit.add_permits(n);
                    if n == 0 {
                        // That was the empty message: the request is over.
                        c.seed.remove(stream);
                    }
                }
                Err(SendError::QueueFull) => {}
                Err(e) => {
                    tracing::debug!("RELAY_WS toward the OP: {e}");
                    c.seed.remove(stream);
                }
            }
            // Move the cells out so the queue has room again.
            let mut moved = false;
            while let Some(msg) = c.or.poll_backward() {
                moved = true;
                if self
                    .channel
                    .encode(&ChanCell::new(id, msg), &mut self.out.buf)
                    .is_ok()
                {
                    self.ctx.metrics.cells_sent.inc();
                }
            }
            if !moved || n == 0 {
                return;
            }
        }
    }

    /// Pump every RELAY_WS request of circuit `id` that has something to send.
    fn pump_seed_circuit(&mut self, id: CircId) {
        let streams: Vec<StreamId> = self
            .circuits
            .get(&id)
            .map(|c| {
                c.seed
                    .ws
                    .iter()
                    .filter(|(_, r)| !r.pending.is_empty() || r.end_after)
                    .map(|(k, _)| *k)
                    .collect()
            })
            .unwrap_or_default();
        for s in streams {
            self.pump_seed(id, s);
        }
    }
}
