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
//! One task owns the circuit's [`ClientCircuit`] (with
//! [`CircuitConfig::hop1_is_ours`](onion_core::client::CircuitConfig)): events go to a bounded
//! queue ([`SEED_EVENT_QUEUE`]; while it is full the task stops taking cells, which backs up to
//! the link), answers are cut into RELAY_WS cells of at most [`WS_ANSWER_CHUNK`] bytes.

use onion_cell::chancell::{ChanMsg, CircId};
use onion_cell::relaycell::{
    Associate, Info, InfoRequest, OpWsAddr, OrWsAddr, RelayMsg, StreamId, WsStream,
};
use onion_core::client::{CircuitConfig, ClientCircuit, ClientEvent, HopTarget};
use tokio::sync::{mpsc, oneshot, watch};

use crate::error::{CircuitClosed, OpError};
use crate::link::{CreateKind, Link, LinkCmd, LinkHandle};
use crate::{OsRng, os_rng};

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
    closed: watch::Receiver<Option<CircuitClosed>>,
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
        let (closed_tx, closed_rx) = watch::channel(None);
        let mut task = SeedTask {
            id,
            circ,
            inbound,
            link: handle,
            cmds: cmd_rx,
            events: ev_tx,
            rng: os_rng(),
        };
        // ASSOCIATE goes in a RELAY cell; queue it before the task starts.
        task.circ
            .send_seed(&mut task.rng, StreamId::ZERO, assoc.into())
            .map_err(OpError::Circuit)?;
        tokio::spawn(async move {
            let reason = task.run().await;
            let _ = closed_tx.send(Some(reason));
        });
        Ok((
            SeedCircuit {
                cmd: cmd_tx,
                closed: closed_rx,
                id,
            },
            ev_rx,
        ))
    }

    /// The circuit's ID on its link.
    pub fn id(&self) -> CircId {
        self.id
    }

    /// Why the circuit closed, if it did.
    pub fn closed_reason(&self) -> Option<CircuitClosed> {
        self.closed.borrow().clone()
    }

    /// Wait until the circuit is gone; why.
    pub async fn closed(&self) -> CircuitClosed {
        let mut rx = self.closed.clone();
        match rx.wait_for(Option::is_some).await {
            Ok(r) => r.clone().unwrap_or(CircuitClosed::Local),
            Err(_) => CircuitClosed::Local,
        }
    }

    fn gone(&self) -> OpError {
        OpError::CircuitClosed(self.closed_reason().unwrap_or(CircuitClosed::Local))
    }

    async fn send(&self, stream: StreamId, msg: RelayMsg) -> Result<(), OpError> {
        let (reply, rx) = oneshot::channel();
        self.cmd
            .send(Cmd::Send { stream, msg, reply })
            .await
            .map_err(|_| self.gone())?;
        rx.await.map_err(|_| self.gone())?
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
    id: CircId,
    circ: ClientCircuit,
    inbound: mpsc::Receiver<ChanMsg>,
    link: LinkHandle,
    cmds: mpsc::Receiver<Cmd>,
    events: mpsc::Sender<SeedEvent>,
    rng: OsRng,
}

impl SeedTask {
    async fn run(&mut self) -> CircuitClosed {
        let reason = match self.serve().await {
            Ok(()) => CircuitClosed::Local,
            Err(r) => r,
        };
        let closing = self.circ.close();
        if !matches!(reason, CircuitClosed::Link(_)) {
            if let Some(destroy) = closing.destroy {
                let _ = self
                    .link
                    .cmd
                    .send(LinkCmd::Cell {
                        id: self.id,
                        msg: destroy,
                    })
                    .await;
            }
            let _ = self
                .link
                .cmd
                .send(LinkCmd::Forget {
                    id: self.id,
                    destroy: false,
                })
                .await;
        }
        self.inbound.close();
        self.cmds.close();
        reason
    }

    /// Hand the core's queued cells to the link.
    async fn flush(&mut self) -> Result<(), CircuitClosed> {
        while let Some(cell) = self.circ.poll_outgoing() {
            self.cell(cell.into_chan_msg()).await?;
        }
        Ok(())
    }

    async fn cell(&mut self, msg: ChanMsg) -> Result<(), CircuitClosed> {
        self.link
            .cmd
            .send(LinkCmd::Cell { id: self.id, msg })
            .await
            .map_err(|_| CircuitClosed::Link(self.link.error()))
    }

    async fn serve(&mut self) -> Result<(), CircuitClosed> {
        loop {
            self.flush().await?;
            tokio::select! {
                m = self.inbound.recv() => match m {
                    Some(msg) => self.on_cell(msg).await?,
                    None => return Err(CircuitClosed::Link(self.link.error())),
                },
                c = self.cmds.recv() => match c {
                    Some(Cmd::Send { stream, msg, reply }) => {
                        self.flush().await?;
                        match self.circ.seed_ws_cell(stream, msg) {
                            Ok(cell) => {
                                self.cell(cell).await?;
                                let _ = reply.send(Ok(()));
                            }
                            Err(e) => {
                                let fatal = e.is_fatal();
                                let _ = reply.send(Err(OpError::Circuit(e.clone())));
                                if fatal {
                                    return Err(CircuitClosed::Failed(e));
                                }
                            }
                        }
                    }
                    Some(Cmd::Close) | None => return Ok(()),
                },
            }
        }
    }

    async fn on_cell(&mut self, msg: ChanMsg) -> Result<(), CircuitClosed> {
        let events = match self.circ.handle_cell(&mut self.rng, msg) {
            Ok(ev) => ev,
            Err(e) if e.is_fatal() => return Err(CircuitClosed::Failed(e)),
            Err(e) => {
                tracing::debug!(circ = %self.id, "cell ignored: {e}");
                return Ok(());
            }
        };
        for ev in events {
            let out = match ev {
                ClientEvent::SeedMessage { stream, msg } => match msg {
                    RelayMsg::WsStream(w) => match w.or_addr() {
                        Ok(addr) => SeedEvent::Request {
                            stream,
                            addr,
                            data: w.request().to_vec(),
                        },
                        Err(e) => {
                            tracing::debug!(circ = %self.id, "RELAY_WS with a bad Addr: {e}");
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
                    tracing::debug!(circ = %self.id, "event ignored: {other:?}");
                    continue;
                }
            };
            // Nobody listening: the answers are dropped, the circuit stays.
            let _ = self.events.send(out).await;
        }
        Ok(())
    }
}
