//! [`Link`]: an open link to a first hop, driven by a reactor task that owns the core's
//! [`Channel`] and the connection.
//!
//! The reactor multiplexes the link's circuits. Each circuit has a bounded inbound queue
//! ([`CIRCUIT_INBOUND_QUEUE`] cells); all circuits share one bounded command queue toward the
//! reactor ([`LINK_COMMAND_QUEUE`]), and the reactor buffers at most [`WRITE_BUFFER_LIMIT`]
//! encoded bytes before it stops taking commands. A full circuit queue stops the reactor
//! from decoding more cells (and so from reading the socket) until that circuit catches up;
//! writing goes on meanwhile, so a circuit task blocked on the command queue always
//! progresses.
//!
//! When the link dies (I/O error, end of file, protocol error, [`Link::close`]), the reactor
//! records the [`LinkError`] and drops every circuit's queue: each circuit task then fails
//! its streams and pending operations with [`CircuitClosed::Link`](crate::CircuitClosed).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use onion_cell::chancell::{ChanCell, ChanMsg, CircId, Destroy, DestroyReason};
use onion_core::channel::{Channel, ChannelError, ChannelInfo};
use onion_core::client::{CircuitConfig, ClientCircuit, HandshakeKind, HopTarget};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, oneshot, watch};

use crate::circuit::{self, Circuit};
use crate::error::{CircuitClosed, LinkError, OpError};
use crate::os_rng;

/// Cells a circuit's inbound queue holds. A relay sends at most a circuit window (1000
/// cells) of DATA; the circuit task takes cells as fast as it can decrypt them, so this only
/// absorbs bursts.
pub const CIRCUIT_INBOUND_QUEUE: usize = 128;
/// Commands (mostly cells to send) the reactor's queue holds, for all circuits together.
pub const LINK_COMMAND_QUEUE: usize = 256;
/// Encoded bytes the reactor holds for the socket before it stops taking commands.
pub const WRITE_BUFFER_LIMIT: usize = 64 * 1024;
/// Bytes read from the socket at once.
const READ_CHUNK: usize = 16 * 1024;
/// Time the reactor gives its last cells (DESTROYs) to leave when the link is closed.
const CLOSE_FLUSH: Duration = Duration::from_secs(5);

/// Timeouts of a link and its circuits.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LinkConfig {
    /// The TCP connection plus the TLS or WebSocket handshake plus the link handshake.
    pub connect_timeout: Duration,
    /// A CREATE* cell's answer.
    pub create_timeout: Duration,
    /// An EXTEND2's answer (the hop has to connect to the next relay first).
    pub extend_timeout: Duration,
    /// A RELAY_BEGIN's answer (the exit has to connect first).
    pub begin_timeout: Duration,
    /// The core circuit settings every circuit starts from (the driver forces
    /// `manual_stream_sendme`).
    pub circuit: CircuitConfig,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            connect_timeout: Duration::from_secs(30),
            create_timeout: Duration::from_secs(30),
            extend_timeout: Duration::from_secs(60),
            begin_timeout: Duration::from_secs(60),
            circuit: CircuitConfig::default(),
        }
    }
}

/// How to create a circuit's first hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CreateKind {
    /// A CREATE2 (or CREATE_FAST / CREATE_FAST_WS) with this handshake (TAP goes in a CREATE2
    /// of type 0).
    Handshake(HandshakeKind),
    /// TAP in a legacy CREATE cell (the seed's ORs).
    LegacyTap,
}

impl From<HandshakeKind> for CreateKind {
    fn from(k: HandshakeKind) -> Self {
        CreateKind::Handshake(k)
    }
}

/// A command for the reactor.
#[derive(Debug)]
pub(crate) enum LinkCmd {
    /// Register a circuit with a fresh ID and send its create cell.
    Open {
        /// The CREATE* cell (its ID is filled in).
        create: ChanMsg,
        /// Where the circuit's cells go.
        inbound: mpsc::Sender<ChanMsg>,
        /// The ID chosen.
        reply: oneshot::Sender<Result<CircId, ChannelError>>,
    },
    /// Send a cell on a circuit.
    Cell {
        /// The circuit.
        id: CircId,
        /// The cell.
        msg: ChanMsg,
    },
    /// Forget a circuit; send DESTROY (reason NONE) first if `destroy`.
    Forget {
        /// The circuit.
        id: CircId,
        /// Whether to send DESTROY.
        destroy: bool,
    },
    /// Close the link.
    Close,
}

/// What circuits share with their link: the command queue, the link's end, the settings.
#[derive(Debug, Clone)]
pub(crate) struct LinkHandle {
    /// The reactor's command queue.
    pub(crate) cmd: mpsc::Sender<LinkCmd>,
    /// Why the link died, once it did.
    pub(crate) state: watch::Receiver<Option<LinkError>>,
    /// Timeouts and circuit settings.
    pub(crate) config: Arc<LinkConfig>,
}

impl LinkHandle {
    /// The link's error, once it is dead ([`LinkError::Closed`] if it is dead for no
    /// recorded reason).
    pub(crate) fn error(&self) -> LinkError {
        self.state.borrow().clone().unwrap_or(LinkError::Closed)
    }
}

/// An open link to a first hop. Cheap to clone; the link stays open while a handle or a
/// circuit on it exists (or until [`Link::close`], or until it fails).
#[derive(Debug, Clone)]
pub struct Link {
    /// Shared with the circuits.
    handle: LinkHandle,
    /// What the link handshake established.
    info: Arc<ChannelInfo>,
}

impl Link {
    /// Run an open link over `io`: `channel` is the [`Channel`] from a completed link
    /// handshake (holding whatever was read after the handshake's last cell). Spawns the
    /// reactor on the current tokio runtime. [`Link::connect_tls`] and [`Link::connect_ws`]
    /// do the connection and the handshake, then call this.
    pub fn from_channel<T>(io: T, channel: Channel, info: ChannelInfo, config: LinkConfig) -> Link
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (cmd_tx, cmd_rx) = mpsc::channel(LINK_COMMAND_QUEUE);
        let (state_tx, state_rx) = watch::channel(None);
        let (rd, wr) = tokio::io::split(io);
        let mut reactor = Reactor {
            rd,
            wr,
            chan: channel,
            circuits: HashMap::new(),
            cmds: cmd_rx,
            rbuf: vec![0; READ_CHUNK],
            rpos: 0,
            rlen: 0,
            wbuf: Vec::new(),
            wpos: 0,
            need_flush: false,
            stalled: None,
        };
        tokio::spawn(async move {
            let reason = reactor.run().await;
            tracing::debug!("link closed: {reason}");
            // Publish the reason before the circuits' queues close, so that every circuit
            // task sees it.
            let _ = state_tx.send(Some(reason));
            drop(reactor);
        });
        Link {
            handle: LinkHandle {
                cmd: cmd_tx,
                state: state_rx,
                config: Arc::new(config),
            },
            info: Arc::new(info),
        }
    }

    /// What the link handshake established (link version, who the relay proved to be).
    pub fn info(&self) -> &ChannelInfo {
        &self.info
    }

    /// Why the link is gone, if it is.
    pub fn error(&self) -> Option<LinkError> {
        self.handle.state.borrow().clone()
    }

    /// Whether the link is still open.
    pub fn is_open(&self) -> bool {
        self.handle.state.borrow().is_none()
    }

    /// Close the link now: every circuit on it ends with [`LinkError::Closed`]. Returns once
    /// the reactor has stopped.
    pub async fn close(&self) {
        let _ = self.handle.cmd.send(LinkCmd::Close).await;
        self.closed().await;
    }

    /// Wait until the link is gone; its error.
    pub async fn closed(&self) -> LinkError {
        let mut state = self.handle.state.clone();
        match state.wait_for(Option::is_some).await {
            Ok(e) => e.clone().unwrap_or(LinkError::Closed),
            Err(_) => LinkError::Closed,
        }
    }

    /// Create a circuit whose first hop is this link's relay, described by `first_hop`
    /// (the keys `kind` needs: the ntor key for ntor and ntor-v3, with the RSA identity or the
    /// Ed25519 identity; the TAP onion key for TAP and CREATE_FAST_WS; nothing for
    /// CREATE_FAST). Waits for the CREATED* (at most [`LinkConfig::create_timeout`]).
    pub async fn create_circuit(
        &self,
        first_hop: &HopTarget,
        kind: impl Into<CreateKind>,
    ) -> Result<Circuit, OpError> {
        let config = self.handle.config.circuit.clone();
        self.create_circuit_with(first_hop, kind.into(), config)
            .await
    }

    /// [`Link::create_circuit`] with explicit core settings (`manual_stream_sendme` is
    /// forced on: [`DataStream`](crate::DataStream) paces the exit by its reader).
    pub async fn create_circuit_with(
        &self,
        first_hop: &HopTarget,
        kind: CreateKind,
        mut config: CircuitConfig,
    ) -> Result<Circuit, OpError> {
        config.manual_stream_sendme = true;
        let (id, circ, in_rx, handle) = self.create_core_circuit(first_hop, kind, config).await?;
        Ok(circuit::spawn(id, circ, in_rx, handle))
    }

    /// Create a circuit and hand over the core's [`ClientCircuit`] and its inbound cells,
    /// for a driver of its own (the seed's CID, [`crate::associate`]).
    pub(crate) async fn create_core_circuit(
        &self,
        first_hop: &HopTarget,
        kind: CreateKind,
        config: CircuitConfig,
    ) -> Result<(CircId, ClientCircuit, mpsc::Receiver<ChanMsg>, LinkHandle), OpError> {
        let mut rng = os_rng();
        let (pending, create) = match kind {
            CreateKind::Handshake(k) => ClientCircuit::start(&mut rng, first_hop, k, config),
            CreateKind::LegacyTap => ClientCircuit::start_legacy_tap(&mut rng, first_hop, config),
        }
        .map_err(OpError::Circuit)?;
        let (in_tx, mut in_rx) = mpsc::channel(CIRCUIT_INBOUND_QUEUE);
        let (id_tx, id_rx) = oneshot::channel();
        let link = &self.handle;
        link.cmd
            .send(LinkCmd::Open {
                create,
                inbound: in_tx,
                reply: id_tx,
            })
            .await
            .map_err(|_| OpError::Link(link.error()))?;
        let id = match id_rx.await {
            Ok(Ok(id)) => id,
            Ok(Err(e)) => return Err(OpError::Handshake(e)),
            Err(_) => return Err(OpError::Link(link.error())),
        };
        // From here on, a failure must forget the circuit (and destroy it at the relay).
        let mut guard = ForgetGuard {
            id,
            cmd: link.cmd.clone(),
            destroy: true,
        };
        let reply = match tokio::time::timeout(link.config.create_timeout, in_rx.recv()).await {
            Ok(Some(m)) => m,
            Ok(None) => return Err(OpError::Link(link.error())),
            Err(_) => return Err(OpError::Timeout("waiting for CREATED")),
        };
        if matches!(reply, ChanMsg::Destroy(_)) {
            guard.destroy = false;
        }
        let circ = match pending.handle_created(reply) {
            Ok(c) => c,
            Err(onion_core::client::CircuitError::Refused(r)) => {
                return Err(OpError::CircuitClosed(CircuitClosed::Destroyed(r)));
            }
            Err(e) => return Err(OpError::Circuit(e)),
        };
        guard.disarm();
        Ok((id, circ, in_rx, link.clone()))
    }
}

/// Forgets a circuit whose creation did not complete (sends DESTROY unless the relay refused
/// it). Best effort: if the queue is full, the reactor finds the circuit's queue closed later
/// and destroys it then.
struct ForgetGuard {
    id: CircId,
    cmd: mpsc::Sender<LinkCmd>,
    destroy: bool,
}

impl ForgetGuard {
    fn disarm(self) {
        std::mem::forget(self);
    }
}

impl Drop for ForgetGuard {
    fn drop(&mut self) {
        let _ = self.cmd.try_send(LinkCmd::Forget {
            id: self.id,
            destroy: self.destroy,
        });
    }
}

/// A cell that waits for room in its circuit's queue.
type Stalled = (CircId, mpsc::Sender<ChanMsg>, ChanMsg);

/// The task that owns the connection and the [`Channel`].
struct Reactor<T> {
    rd: ReadHalf<T>,
    wr: WriteHalf<T>,
    chan: Channel,
    /// Each circuit's inbound queue.
    circuits: HashMap<CircId, mpsc::Sender<ChanMsg>>,
    cmds: mpsc::Receiver<LinkCmd>,
    /// Read bytes; `rbuf[rpos..rlen]` are not in the channel yet.
    rbuf: Vec<u8>,
    rpos: usize,
    rlen: usize,
    /// Encoded cells; `wbuf[wpos..]` are not written yet.
    wbuf: Vec<u8>,
    wpos: usize,
    /// Written but not flushed.
    need_flush: bool,
    /// A decoded cell waiting for room in its circuit's queue.
    stalled: Option<Stalled>,
}

/// What one turn of the reactor's loop got.
enum Turn {
    Read(std::io::Result<usize>),
    Wrote(std::io::Result<usize>),
    Flushed(std::io::Result<()>),
    Cmd(Option<LinkCmd>),
    Room(Option<mpsc::OwnedPermit<ChanMsg>>),
}

impl<T: AsyncRead + AsyncWrite + Send + 'static> Reactor<T> {
    /// Run until the link dies; why. The circuits' queues close when the reactor is dropped.
    async fn run(&mut self) -> LinkError {
        let reason = match self.serve().await {
            Ok(()) => LinkError::Closed,
            Err(e) => e,
        };
        if reason == LinkError::Closed {
            // Let the last cells (DESTROYs) out.
            let _ = tokio::time::timeout(CLOSE_FLUSH, self.drain_writes()).await;
        }
        reason
    }

    /// Write and flush everything buffered.
    async fn drain_writes(&mut self) -> std::io::Result<()> {
        let pending = self.wbuf.get(self.wpos..).unwrap_or_default();
        self.wr.write_all(pending).await?;
        self.wbuf.clear();
        self.wpos = 0;
        self.wr.flush().await?;
        self.wr.shutdown().await
    }

    /// The loop; `Ok` when closed locally.
    async fn serve(&mut self) -> Result<(), LinkError> {
        self.process_input()?;
        loop {
            let can_read = self.stalled.is_none() && self.rpos >= self.rlen;
            let can_write = self.wpos < self.wbuf.len();
            let can_flush = !can_write && self.need_flush;
            let can_take = self.wbuf.len().saturating_sub(self.wpos) < WRITE_BUFFER_LIMIT;
            let stalled_tx = self.stalled.as_ref().map(|(_, tx, _)| tx.clone());
            let has_stalled = stalled_tx.is_some();
            let wr = &mut self.wr;
            let pending = self.wbuf.get(self.wpos..).unwrap_or_default();
            let turn = tokio::select! {
                r = self.rd.read(self.rbuf.as_mut_slice()), if can_read => Turn::Read(r),
                r = async move {
                    if can_write {
                        wr.write(pending).await.map(Some)
                    } else {
                        wr.flush().await.map(|()| None)
                    }
                }, if can_write || can_flush => match r {
                    Ok(Some(n)) => Turn::Wrote(Ok(n)),
                    Ok(None) => Turn::Flushed(Ok(())),
                    Err(e) => Turn::Wrote(Err(e)),
                },
                c = self.cmds.recv(), if can_take => Turn::Cmd(c),
                p = async move {
                    match stalled_tx {
                        Some(tx) => tx.reserve_owned().await.ok(),
                        None => std::future::pending().await,
                    }
                }, if has_stalled => Turn::Room(p),
            };
            match turn {
                Turn::Read(Ok(0)) => return Err(LinkError::Eof),
                Turn::Read(Ok(n)) => {
                    self.rpos = 0;
                    self.rlen = n;
                    self.process_input()?;
                }
                Turn::Read(Err(e)) | Turn::Flushed(Err(e)) | Turn::Wrote(Err(e)) => {
                    return Err(LinkError::io(&e));
                }
                Turn::Wrote(Ok(0)) => {
                    return Err(LinkError::io(&std::io::ErrorKind::WriteZero.into()));
                }
                Turn::Wrote(Ok(n)) => {
                    self.wpos = self.wpos.saturating_add(n);
                    if self.wpos >= self.wbuf.len() {
                        self.wbuf.clear();
                        self.wpos = 0;
                        self.need_flush = true;
                    }
                }
                Turn::Flushed(Ok(())) => self.need_flush = false,
                Turn::Cmd(None) | Turn::Cmd(Some(LinkCmd::Close)) => return Ok(()),
                Turn::Cmd(Some(cmd)) => self.command(cmd)?,
                Turn::Room(permit) => {
                    if let Some((id, _, msg)) = self.stalled.take() {
                        match permit {
                            Some(p) => {
                                p.send(msg);
                            }
                            // The circuit task is gone.
                            None => self.circuit_gone(id)?,
                        }
                    }
                    self.process_input()?;
                }
            }
        }
    }

    /// Encode `cell` for the socket.
    fn send(&mut self, cell: &ChanCell) -> Result<(), LinkError> {
        // Our own cells failing to encode is a bug of ours: the link cannot go on.
        self.chan
            .encode(cell, &mut self.wbuf)
            .map_err(LinkError::Protocol)
    }

    /// A command from a circuit or a handle.
    fn command(&mut self, cmd: LinkCmd) -> Result<(), LinkError> {
        match cmd {
            LinkCmd::Open {
                create,
                inbound,
                reply,
            } => {
                let circuits = &self.circuits;
                let id = self
                    .chan
                    .allocate_circ_id(&mut os_rng(), |id| circuits.contains_key(&id));
                match id {
                    Ok(id) => {
                        self.send(&ChanCell::new(id, create))?;
                        self.circuits.insert(id, inbound);
                        let _ = reply.send(Ok(id));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            LinkCmd::Cell { id, msg } => {
                if self.circuits.contains_key(&id) {
                    self.send(&ChanCell::new(id, msg))?;
                }
            }
            LinkCmd::Forget { id, destroy } => {
                if self.circuits.remove(&id).is_some() && destroy {
                    self.send(&ChanCell::new(id, Destroy::new(DestroyReason::NONE)))?;
                }
            }
            LinkCmd::Close => {}
        }
        Ok(())
    }

    /// A circuit's task went away without forgetting its circuit: destroy it.
    fn circuit_gone(&mut self, id: CircId) -> Result<(), LinkError> {
        if self.circuits.remove(&id).is_some() {
            self.send(&ChanCell::new(id, Destroy::new(DestroyReason::NONE)))?;
        }
        Ok(())
    }

    /// Decode and route what was read, until a circuit's queue is full or everything is
    /// routed.
    fn process_input(&mut self) -> Result<(), LinkError> {
        while self.stalled.is_none() {
            match self.chan.poll_cell().map_err(LinkError::Protocol)? {
                Some(cell) => self.route(cell)?,
                None => {
                    let rest = self.rbuf.get(self.rpos..self.rlen).unwrap_or_default();
                    if rest.is_empty() {
                        return Ok(());
                    }
                    let n = self.chan.handle_input(rest);
                    if n == 0 {
                        // A whole cell always fits: the channel is stuck on a bug.
                        return Err(LinkError::Protocol(ChannelError::Misuse(
                            "channel input buffer full without a whole cell",
                        )));
                    }
                    self.rpos = self.rpos.saturating_add(n);
                }
            }
        }
        Ok(())
    }

    /// Hand a cell to its circuit.
    fn route(&mut self, cell: ChanCell) -> Result<(), LinkError> {
        let ChanCell { circ_id, msg } = cell;
        let Some(tx) = self.circuits.get(&circ_id) else {
            // A cell for a circuit we forgot (or never had): tor-spec says to drop it.
            tracing::trace!(%circ_id, cmd = %msg.cmd(), "cell for an unknown circuit dropped");
            return Ok(());
        };
        let destroyed = matches!(msg, ChanMsg::Destroy(_));
        match tx.try_send(msg) {
            Ok(()) => {
                if destroyed {
                    // The relay forgot the circuit; the task will end on the DESTROY.
                    self.circuits.remove(&circ_id);
                }
            }
            Err(mpsc::error::TrySendError::Full(msg)) => {
                let tx = tx.clone();
                if destroyed {
                    self.circuits.remove(&circ_id);
                }
                self.stalled = Some((circ_id, tx, msg));
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                if destroyed {
                    self.circuits.remove(&circ_id);
                } else {
                    self.circuit_gone(circ_id)?;
                }
            }
        }
        Ok(())
    }
}
