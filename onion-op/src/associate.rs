//! The seed's dedicated circuit (CID) from the OP side: a one-hop circuit to one of our ORs on
//! which the OP sends RELAY_ASSOCIATE for a fake domain, then receives the browser requests
//! that the OR's WS_OP_SOCKS listener relays as RELAY_WS streams, and answers them (see
//! `or_server::seed` for the mapping). RELAY_INFO can be asked too.
//!
//! ```text
//! let (cid, mut events) = SeedCircuit::associate(&link, &hop1, kind, "abc.fake").await?;
//! while let Some(ev) = events.recv().await {
//!     match ev {
//!         SeedEvent::Request { stream, addr, data } => { /* serve; answer with */
//!             cid.respond(stream, &OpWsAddr { .. }, bytes).await?; }   // empty: end
//!         SeedEvent::AssociateRefused(_) => { /* pick another fake domain */ }
//!         SeedEvent::Info { .. } => {}
//!     }
//! }
//! ```
//!
//! One task owns the circuit's [`ClientCircuit`](onion_core::client::ClientCircuit) (with
//! [`CircuitConfig::hop1_is_ours`](onion_core::client::CircuitConfig)): events go to a bounded
//! queue ([`SEED_EVENT_QUEUE`]; while it is full the task stops taking cells, which backs up to
//! the link), answers are cut into RELAY_WS cells of at most [`WS_ANSWER_CHUNK`] bytes.

use onion_cell::chancell::{ChanMsg, CircId};
use onion_cell::relaycell::{
    Associate, Info, InfoRequest, OpWsAddr, OrWsAddr, RelayMsg, StreamId, WsStream,
};
use onion_core::client::{CircuitConfig, ClientEvent, HopTarget};
use tokio::sync::{mpsc, oneshot};

use crate::circuit::{CircCore, ClosedWatch, Step, circuit_handle, refuse};
use crate::error::{CircuitClosed, OpError};
use crate::link::{CreateKind, Link};

/// Capacity of the event queue of a [`SeedCircuit`].
pub const SEED_EVENT_QUEUE: usize = 64;
/// Most answer bytes in one RELAY_WS message.
pub const WS_ANSWER_CHUNK: usize = 32 * 1024;

/// What arrives on the seed circuit.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SeedEvent {
    /// A chunk of a browser request (RELAY_WS from the OR); empty `data`: the browser ended it.
    Request {
        /// The request's stream id: answer on it.
        stream: StreamId,
        /// `remoteAddress:remotePort:connPort:requestId`.
        addr: OrWsAddr,
        /// The bytes.
        data: Vec<u8>,
    },
    /// The OR sent RELAY_ASSOCIATE back: the fake domain is refused (taken or invalid); pick
    /// another one on a new circuit.
    AssociateRefused(String),
    /// A RELAY_INFO answer (decode it with the kind asked for).
    Info {
        /// Its stream id.
        stream: StreamId,
        /// The raw answer.
        msg: Info,
    },
}

enum Cmd {
    /// Send a RELAY_WS (or RELAY_INFO) message.
    Send {
        stream: StreamId,
        msg: RelayMsg,
        reply: oneshot::Sender<Result<(), OpError>>,
    },
    Close,
}

/// A handle on a seed circuit (CID). Cheap to clone; the circuit is destroyed when
/// [`SeedCircuit::close`] is called or every handle is dropped.
#[derive(Debug, Clone)]
pub struct SeedCircuit {
    cmd: mpsc::Sender<Cmd>,
    closed: ClosedWatch,
    id: CircId,
}

impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Cmd::Send { .. } => "Send",
            Cmd::Close => "Close",
        })
    }
}

impl SeedCircuit {
    /// Create a one-hop circuit to `link`'s relay (`first_hop`, with `kind`), send
    /// RELAY_ASSOCIATE for `fake_domain` on it, and return its handle and events.
    ///
    /// The seed defines no answer to a successful ASSOCIATE; a refusal arrives as
    /// [`SeedEvent::AssociateRefused`]. Cells on a circuit are handled in order, so any answer
    /// the OR gives to a later cell (e.g. a RELAY_INFO) shows the association is in place.
    pub async fn associate(
        link: &Link,
        first_hop: &HopTarget,
        kind: impl Into<CreateKind>,
        fake_domain: &str,
    ) -> Result<(SeedCircuit, mpsc::Receiver<SeedEvent>), OpError> {
        let config = CircuitConfig {
            hop1_is_ours: true,
            ..CircuitConfig::default()
        };
        let (id, circ, inbound, handle) = link
            .create_core_circuit(first_hop, kind.into(), config)
            .await?;
        let assoc = Associate::new(fake_domain.to_owned())
            .map_err(|e| OpError::Circuit(onion_core::client::CircuitError::Encode(e)))?;
        let (cmd_tx, cmd_rx) = mpsc::channel(16);
        let (ev_tx, ev_rx) = mpsc::channel(SEED_EVENT_QUEUE);
        let mut task = SeedTask {
            core: CircCore::new(id, circ, inbound, handle),
            cmds: cmd_rx,
            events: ev_tx,
        };
        // ASSOCIATE goes in a RELAY cell; queue it before the task starts.
        let core = &mut task.core;
        core.circ
            .send_seed(&mut core.rng, StreamId::ZERO, assoc.into())
            .map_err(OpError::Circuit)?;
        Ok((
            SeedCircuit {
                cmd: cmd_tx,
                closed: ClosedWatch::spawn(task.run()),
                id,
            },
            ev_rx,
        ))
    }

    circuit_handle!();

    async fn send(&self, stream: StreamId, msg: RelayMsg) -> Result<(), OpError> {
        let (reply, rx) = oneshot::channel();
        self.cmd
            .send(Cmd::Send { stream, msg, reply })
            .await
            .map_err(|_| self.closed.gone())?;
        rx.await.map_err(|_| self.closed.gone())?
    }

    /// Answer request `stream` with `bytes` (cut into RELAY_WS messages); empty `bytes` end
    /// the request.
    pub async fn respond(
        &self,
        stream: StreamId,
        addr: &OpWsAddr,
        bytes: &[u8],
    ) -> Result<(), OpError> {
        let encode = |chunk: &[u8]| {
            WsStream::from_op(addr, chunk.to_vec())
                .map_err(|e| OpError::Circuit(onion_core::client::CircuitError::Encode(e)))
        };
        if bytes.is_empty() {
            return self.send(stream, encode(&[])?.into()).await;
        }
        for chunk in bytes.chunks(WS_ANSWER_CHUNK) {
            self.send(stream, encode(chunk)?.into()).await?;
        }
        Ok(())
    }

    /// Send a RELAY_INFO request on `stream`; its answer arrives as [`SeedEvent::Info`].
    pub async fn info(&self, stream: StreamId, req: &InfoRequest) -> Result<(), OpError> {
        let msg = Info::from_request(req)
            .map_err(|e| OpError::Circuit(onion_core::client::CircuitError::Encode(e)))?;
        self.send(stream, msg.into()).await
    }

    /// Destroy the circuit and wait until its task is gone.
    pub async fn close(&self) {
        let _ = self.cmd.send(Cmd::Close).await;
        self.closed().await;
    }
}

struct SeedTask {
    core: CircCore,
    cmds: mpsc::Receiver<Cmd>,
    events: mpsc::Sender<SeedEvent>,
}

impl SeedTask {
    async fn run(mut self) -> CircuitClosed {
        let reason = self.serve().await.err().unwrap_or(CircuitClosed::Local);
        self.core.close(&reason).await;
        self.cmds.close();
        reason
    }

    async fn serve(&mut self) -> Step {
        loop {
            self.core.flush().await?;
            tokio::select! {
                m = self.core.next_cell() => self.on_cell(m?).await?,
                c = self.cmds.recv() => match c {
                    Some(Cmd::Send { stream, msg, reply }) => {
                        self.core.flush().await?;
                        match self.core.circ.seed_ws_cell(stream, msg) {
                            Ok(cell) => {
                                self.core.send(cell).await?;
                                let _ = reply.send(Ok(()));
                            }
                            Err(e) => refuse(reply, e)?,
                        }
                    }
                    Some(Cmd::Close) | None => return Ok(()),
                },
            }
        }
    }

    async fn on_cell(&mut self, msg: ChanMsg) -> Step {
        for ev in self.core.take_cell(msg)? {
            let out = match ev {
                ClientEvent::SeedMessage { stream, msg } => match msg {
                    RelayMsg::WsStream(w) => match w.or_addr() {
                        Ok(addr) => SeedEvent::Request {
                            stream,
                            addr,
                            data: w.request().to_vec(),
                        },
                        Err(e) => {
                            tracing::debug!(circ = %self.core.id, "RELAY_WS with a bad Addr: {e}");
                            continue;
                        }
                    },
                    RelayMsg::Associate(a) => {
                        SeedEvent::AssociateRefused(a.fake_domain().to_owned())
                    }
                    RelayMsg::Info(msg) => SeedEvent::Info { stream, msg },
                    _ => continue,
                },
                ClientEvent::CircuitClosed { reason } => return Err(reason.into()),
                other => {
                    tracing::debug!(circ = %self.core.id, "event ignored: {other:?}");
                    continue;
                }
            };
            // Nobody listening: the answers are dropped, the circuit stays.
            let _ = self.events.send(out).await;
        }
        Ok(())
    }
}
