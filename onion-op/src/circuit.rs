//! [`Circuit`]: a handle on a circuit task that owns one [`ClientCircuit`].
//!
//! The task takes cells from the link (its bounded inbound queue), commands from the handles
//! (a bounded queue: extend, begin, close) and wake-ups from its streams (bytes written,
//! bytes read, a stream dropped). After each, it moves stream bytes into DATA cells as the
//! windows allow, reports consumption (stream SENDMEs), and hands every queued cell to the
//! link, waiting for room in the link's queue: nothing is buffered without bound, and nothing
//! polls in a loop.
//!
//! The task ends, destroying the circuit (DESTROY, reason NONE, unless hop 1 destroyed it or
//! the link is gone), when: a handle asks ([`Circuit::close`]); every handle and every stream
//! is dropped; a relay breaks the protocol; hop 1 sends DESTROY; a hop truncates the circuit;
//! an extension times out; the link dies. Then every stream and pending operation fails with
//! the same [`CircuitClosed`] reason, which [`Circuit::closed`] also returns.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use onion_cell::chancell::{ChanMsg, CircId};
use onion_cell::relaycell::{Address, BeginFlags, EndReason, StreamId};
use onion_core::client::{
    CircuitError, ClientCircuit, ClientEvent, HandshakeKind, HopTarget, StreamEndReason,
};
use tokio::sync::{Notify, mpsc, oneshot, watch};

use crate::error::{CircuitClosed, OpError, StreamError};
use crate::link::{LinkCmd, LinkHandle};
use crate::stream::{DataStream, Ended, StreamShared};
use crate::{OsRng, os_rng};

/// Commands a circuit's queue holds.
pub const CIRCUIT_COMMAND_QUEUE: usize = 16;

/// How to extend a circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExtendKind {
    /// An EXTEND2 with this handshake (not CREATE_FAST / CREATE_FAST_WS).
    Handshake(HandshakeKind),
    /// TAP in a legacy RELAY_EXTEND (the seed's ORs).
    LegacyTap,
}

impl From<HandshakeKind> for ExtendKind {
    fn from(k: HandshakeKind) -> Self {
        ExtendKind::Handshake(k)
    }
}

/// A request from a handle.
enum CircCmd {
    Extend {
        target: Box<HopTarget>,
        kind: ExtendKind,
        reply: oneshot::Sender<Result<(), OpError>>,
    },
    Begin {
        to: BeginTo,
        reply: BeginReply,
    },
    /// Close the circuit for this reason.
    Close(CircuitClosed),
    /// A caller gave up waiting: forget what nobody waits for any more.
    Wake,
}

/// Where a stream goes.
enum BeginTo {
    /// RELAY_BEGIN to `addr:port` from the last hop.
    Exit { addr: Address, port: u16 },
    /// RELAY_BEGIN_DIR to the last hop's directory server.
    Dir,
}

/// A handle on a circuit. Cheap to clone. The circuit closes when [`Circuit::close`] is
/// called, or when every handle and every [`DataStream`] on it is dropped.
#[derive(Debug, Clone)]
pub struct Circuit {
    /// The task's command queue.
    cmd: mpsc::Sender<CircCmdBox>,
    /// Why the circuit closed, once it did.
    closed: ClosedWatch,
    /// The link (for its timeouts).
    link: LinkHandle,
    /// The circuit ID on the link.
    id: CircId,
}

/// [`CircCmd`], boxed to keep the queue's slots small and opaque.
pub(crate) struct CircCmdBox(CircCmd);

impl std::fmt::Debug for CircCmdBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            CircCmd::Extend { .. } => "Extend",
            CircCmd::Begin {
                to: BeginTo::Exit { .. },
                ..
            } => "Begin",
            CircCmd::Begin {
                to: BeginTo::Dir, ..
            } => "BeginDir",
            CircCmd::Close(_) => "Close",
            CircCmd::Wake => "Wake",
        })
    }
}

impl Circuit {
    circuit_handle!();

    /// Send a command, failing if the task is gone.
    async fn command(&self, cmd: CircCmd) -> Result<(), OpError> {
        self.cmd
            .send(CircCmdBox(cmd))
            .await
            .map_err(|_| self.closed.gone())
    }

    /// Extend the circuit to `target` with `kind` (EXTEND2; see [`ExtendKind`]); waits for
    /// the EXTENDED2 (at most [`LinkConfig::extend_timeout`](crate::LinkConfig), after which
    /// the circuit is closed). A refusal (RELAY_TRUNCATED) closes the circuit too.
    pub async fn extend(
        &self,
        target: &HopTarget,
        kind: impl Into<ExtendKind>,
    ) -> Result<(), OpError> {
        let (reply, rx) = oneshot::channel();
        self.command(CircCmd::Extend {
            target: Box::new(target.clone()),
            kind: kind.into(),
            reply,
        })
        .await?;
        match tokio::time::timeout(self.link.config.extend_timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(self.closed.gone()),
            Err(_) => {
                let why = CircuitClosed::TimedOut("waiting for EXTENDED2");
                let _ = self.cmd.try_send(CircCmdBox(CircCmd::Close(why)));
                Err(OpError::Timeout("waiting for EXTENDED2"))
            }
        }
    }

    /// Open a stream to `host:port` from the last hop (RELAY_BEGIN) and wait for
    /// RELAY_CONNECTED (at most [`LinkConfig::begin_timeout`](crate::LinkConfig)). `host` is
    /// a hostname, an IPv4 address or a bracketed IPv6 address. A refusal is
    /// [`OpError::Stream`] with the END reason.
    pub async fn begin(&self, host: &str, port: u16) -> Result<DataStream, OpError> {
        let addr = Address::parse(host).map_err(OpError::BadAddress)?;
        self.open(BeginTo::Exit { addr, port }).await
    }

    /// Open a directory stream to the last hop (RELAY_BEGIN_DIR) and wait for
    /// RELAY_CONNECTED (at most [`LinkConfig::begin_timeout`](crate::LinkConfig)): an HTTP/1.0
    /// request to the relay's directory server goes over it.
    pub async fn begin_dir(&self) -> Result<DataStream, OpError> {
        self.open(BeginTo::Dir).await
    }

    /// Open a stream to `to` and wait for RELAY_CONNECTED.
    async fn open(&self, to: BeginTo) -> Result<DataStream, OpError> {
        let (reply, rx) = oneshot::channel();
        self.command(CircCmd::Begin { to, reply }).await?;
        match tokio::time::timeout(self.link.config.begin_timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(self.closed.gone()),
            Err(_) => {
                // The task ends the stream (best effort: if the queue is full, it does so at
                // its next wake-up).
                let _ = self.cmd.try_send(CircCmdBox(CircCmd::Wake));
                Err(OpError::Timeout("waiting for RELAY_CONNECTED"))
            }
        }
    }

    /// Close the circuit (DESTROY) and wait until its task is gone. Its streams fail with
    /// [`CircuitClosed::Local`].
    pub async fn close(&self) {
        let _ = self.command(CircCmd::Close(CircuitClosed::Local)).await;
        self.closed().await;
    }
}

/// Spawn the task of a freshly created circuit; its handle.
pub(crate) fn spawn(
    id: CircId,
    circ: ClientCircuit,
    inbound: mpsc::Receiver<ChanMsg>,
    link: LinkHandle,
) -> Circuit {
    let (cmd_tx, cmd_rx) = mpsc::channel(CIRCUIT_COMMAND_QUEUE);
    let task = CircTask {
        core: CircCore::new(id, circ, inbound, link.clone()),
        cmds: cmd_rx,
        cmds_open: true,
        notify: Arc::new(Notify::new()),
        streams: BTreeMap::new(),
        begins: BTreeMap::new(),
        extend: None,
    };
    Circuit {
        cmd: cmd_tx,
        closed: ClosedWatch::spawn(task.run()),
        link,
        id,
    }
}

/// The accessors of a circuit handle (in its `impl` block): `id()` and `closed_reason()` /
/// `closed()` by its fields `id: CircId` and `closed:` [`ClosedWatch`].
macro_rules! circuit_handle {
    () => {
        /// The circuit's ID on its link.
        pub fn id(&self) -> CircId {
            self.id
        }

        /// Why the circuit closed, if it did.
        pub fn closed_reason(&self) -> Option<CircuitClosed> {
            self.closed.reason()
        }

        /// Wait until the circuit is gone; why.
        pub async fn closed(&self) -> CircuitClosed {
            self.closed.wait().await
        }
    };
}
pub(crate) use circuit_handle;

/// Why a circuit's task ended, as the circuit's handles watch it.
#[derive(Debug, Clone)]
pub(crate) struct ClosedWatch(watch::Receiver<Option<CircuitClosed>>);

impl ClosedWatch {
    /// Run a circuit's task (which returns why the circuit ended) and watch for its end.
    pub(crate) fn spawn(task: impl Future<Output = CircuitClosed> + Send + 'static) -> Self {
        let (tx, rx) = watch::channel(None);
        tokio::spawn(async move {
            let _ = tx.send(Some(task.await));
        });
        ClosedWatch(rx)
    }

    /// Why the circuit closed, if it did.
    pub(crate) fn reason(&self) -> Option<CircuitClosed> {
        self.0.borrow().clone()
    }

    /// Wait until the circuit is gone; why.
    pub(crate) async fn wait(&self) -> CircuitClosed {
        let mut rx = self.0.clone();
        match rx.wait_for(Option::is_some).await {
            Ok(r) => r.clone().unwrap_or(CircuitClosed::Local),
            Err(_) => CircuitClosed::Local,
        }
    }

    /// The error for a request to a task that is gone.
    pub(crate) fn gone(&self) -> OpError {
        OpError::CircuitClosed(self.reason().unwrap_or(CircuitClosed::Local))
    }
}

/// What every circuit task owns: the core's circuit and its place on the link.
pub(crate) struct CircCore {
    /// The circuit ID on the link.
    pub(crate) id: CircId,
    /// The sans-IO circuit.
    pub(crate) circ: ClientCircuit,
    /// Cells from hop 1 (filled by the link's reactor).
    inbound: mpsc::Receiver<ChanMsg>,
    /// The link.
    link: LinkHandle,
    /// Handshakes, stream IDs, relay cell padding.
    pub(crate) rng: OsRng,
}

impl CircCore {
    /// The core of a freshly created circuit `id` on `link`.
    pub(crate) fn new(
        id: CircId,
        circ: ClientCircuit,
        inbound: mpsc::Receiver<ChanMsg>,
        link: LinkHandle,
    ) -> Self {
        CircCore {
            id,
            circ,
            inbound,
            link,
            rng: os_rng(),
        }
    }

    /// The next cell from hop 1; the link's end once its reactor is gone.
    pub(crate) async fn next_cell(&mut self) -> Step<ChanMsg> {
        self.inbound
            .recv()
            .await
            .ok_or_else(|| CircuitClosed::Link(self.link.error()))
    }

    /// Hand a cell from hop 1 to the core: its events. A fatal error ends the circuit;
    /// another only drops the cell.
    pub(crate) fn take_cell(&mut self, msg: ChanMsg) -> Step<Vec<ClientEvent>> {
        match self.circ.handle_cell(&mut self.rng, msg) {
            Ok(events) => Ok(events),
            Err(e) => {
                let e = check(e)?;
                tracing::debug!(circ = %self.id, "cell ignored: {e}");
                Ok(Vec::new())
            }
        }
    }

    /// Hand one cell to the link, waiting for room in its queue.
    pub(crate) async fn send(&self, msg: ChanMsg) -> Step {
        self.link
            .cmd
            .send(LinkCmd::Cell { id: self.id, msg })
            .await
            .map_err(|_| CircuitClosed::Link(self.link.error()))
    }

    /// Hand every cell the core queued to the link.
    pub(crate) async fn flush(&mut self) -> Step {
        while let Some(cell) = self.circ.poll_outgoing() {
            let msg = cell.into_chan_msg();
            tracing::trace!(circ = %self.id, cmd = %msg.cmd(), "cell out");
            self.send(msg).await?;
        }
        Ok(())
    }

    /// The circuit ended for `reason`: DESTROY (if still needed) and forget it at the link,
    /// unless the link is what died; take no more cells.
    pub(crate) async fn close(&mut self, reason: &CircuitClosed) {
        let closing = self.circ.close();
        if !matches!(reason, CircuitClosed::Link(_)) {
            if let Some(destroy) = closing.destroy {
                let _ = self.send(destroy).await;
            }
            let forget = LinkCmd::Forget {
                id: self.id,
                destroy: false,
            };
            let _ = self.link.cmd.send(forget).await;
        }
        self.inbound.close();
    }
}

/// Whether a circuit task must stop, and why; or what it got.
pub(crate) type Step<T = ()> = Result<T, CircuitClosed>;

/// A core error: fatal ones end the circuit.
fn check(e: CircuitError) -> Step<CircuitError> {
    if e.is_fatal() {
        Err(CircuitClosed::Failed(e))
    } else {
        Ok(e)
    }
}

/// Answer `reply` with the core's refusal `e` of a command; a fatal one ends the circuit.
pub(crate) fn refuse<T>(reply: oneshot::Sender<Result<T, OpError>>, e: CircuitError) -> Step {
    let fatal = e.is_fatal();
    let _ = reply.send(Err(OpError::Circuit(e.clone())));
    if fatal {
        Err(CircuitClosed::Failed(e))
    } else {
        Ok(())
    }
}

/// A stream waiting for its CONNECTED.
type BeginReply = oneshot::Sender<Result<DataStream, OpError>>;

/// The task that owns a [`ClientCircuit`].
struct CircTask {
    core: CircCore,
    cmds: mpsc::Receiver<CircCmdBox>,
    /// Whether some handle may still send commands.
    cmds_open: bool,
    /// Woken by the streams.
    notify: Arc<Notify>,
    /// Connected streams that are still open at the relay.
    streams: BTreeMap<StreamId, Arc<StreamShared>>,
    /// Streams waiting for CONNECTED.
    begins: BTreeMap<StreamId, BeginReply>,
    /// The extension in progress.
    extend: Option<oneshot::Sender<Result<(), OpError>>>,
}

impl CircTask {
    /// Serve until the circuit ends; then tear down. Returns why it ended.
    async fn run(mut self) -> CircuitClosed {
        let reason = self.serve().await.err().unwrap_or(CircuitClosed::Local);
        self.tear_down(&reason).await;
        reason
    }

    async fn serve(&mut self) -> Step {
        loop {
            self.pump().await?;
            if !self.cmds_open && self.streams.is_empty() && self.begins.is_empty() {
                // Nobody can use the circuit any more.
                return Ok(());
            }
            tokio::select! {
                m = self.core.next_cell() => self.on_cell(m?)?,
                c = self.cmds.recv(), if self.cmds_open => match c {
                    Some(CircCmdBox(cmd)) => self.on_command(cmd)?,
                    None => self.cmds_open = false,
                },
                () = self.notify.notified() => {}
            }
        }
    }

    /// Close the circuit: DESTROY (if still needed and possible), fail what is pending, and
    /// forget the circuit at the link.
    async fn tear_down(&mut self, reason: &CircuitClosed) {
        self.core.close(reason).await;
        let err = || StreamError::Circuit(reason.clone());
        for (_, s) in std::mem::take(&mut self.streams) {
            s.finish(Ended::Error(err()));
        }
        for (_, reply) in std::mem::take(&mut self.begins) {
            let _ = reply.send(Err(OpError::CircuitClosed(reason.clone())));
        }
        if let Some(reply) = self.extend.take() {
            let _ = reply.send(Err(OpError::CircuitClosed(reason.clone())));
        }
        self.cmds.close();
    }

    /// End the streams whose opener gave up waiting for CONNECTED.
    fn abandon_begins(&mut self) -> Step {
        let gone: Vec<StreamId> = self
            .begins
            .iter()
            .filter(|(_, reply)| reply.is_closed())
            .map(|(sid, _)| *sid)
            .collect();
        for sid in gone {
            self.begins.remove(&sid);
            // An OP ends a stream with MISC (tor-spec §6.3). The core's queue was just
            // drained, so it has room.
            let core = &mut self.core;
            if let Err(e) = core.circ.end_stream(&mut core.rng, sid, EndReason::MISC) {
                check(e)?;
            }
        }
        Ok(())
    }

    /// Move stream bytes and consumption into cells until nothing moves.
    async fn pump(&mut self) -> Step {
        self.core.flush().await?;
        self.abandon_begins()?;
        self.core.flush().await?;
        loop {
            let ids: Vec<StreamId> = self.streams.keys().copied().collect();
            let mut progress = false;
            for sid in ids {
                progress |= self.service(sid)?;
                self.core.flush().await?;
            }
            if !progress {
                return Ok(());
            }
        }
    }

    /// One stream's consumption, written bytes and drop; whether anything moved.
    fn service(&mut self, sid: StreamId) -> Step<bool> {
        let Some(shared) = self.streams.get(&sid).cloned() else {
            return Ok(false);
        };
        let mut s = shared.lock();
        let mut progress = false;
        let core = &mut self.core;
        if s.consumed > 0 {
            tracing::trace!(circ = %core.id, ?sid, consumed = s.consumed, "stream consumption");
            match core.circ.stream_consumed(&mut core.rng, sid, s.consumed) {
                Ok(()) => {
                    s.consumed = 0;
                    progress = true;
                }
                // Retried after the flush.
                Err(CircuitError::QueueFull) => progress = true,
                Err(e) => {
                    check(e)?;
                }
            }
        }
        let mut drained = false;
        while !s.write_buf.is_empty() && core.circ.is_writable(sid) {
            let bytes = s.write_buf.make_contiguous();
            match core.circ.send_data(&mut core.rng, sid, bytes) {
                Ok(0) => break,
                Ok(n) => {
                    s.write_buf.drain(..n);
                    drained = true;
                }
                Err(e) => {
                    check(e)?;
                    break;
                }
            }
        }
        if drained {
            progress = true;
            if let Some(w) = s.write_waker.take() {
                w.wake();
            }
        }
        if s.dropped && s.write_buf.is_empty() && s.ended.is_none() {
            match core.circ.end_stream(&mut core.rng, sid, EndReason::DONE) {
                Ok(()) => {
                    drop(s);
                    self.streams.remove(&sid);
                    progress = true;
                }
                Err(CircuitError::QueueFull) => progress = true,
                Err(e) => {
                    check(e)?;
                    drop(s);
                    self.streams.remove(&sid);
                }
            }
        }
        Ok(progress)
    }

    /// A cell from hop 1.
    fn on_cell(&mut self, msg: ChanMsg) -> Step {
        // The outgoing queue was drained by the last pump: the core has room for answers.
        for ev in self.core.take_cell(msg)? {
            self.on_event(ev)?;
        }
        Ok(())
    }

    /// One event of the core.
    fn on_event(&mut self, ev: ClientEvent) -> Step {
        match ev {
            ClientEvent::HopAdded { .. } => {
                if let Some(reply) = self.extend.take() {
                    let _ = reply.send(Ok(()));
                }
            }
            ClientEvent::Truncated {
                hops,
                reason,
                extend_failed,
            } => {
                if extend_failed && let Some(reply) = self.extend.take() {
                    let _ = reply.send(Err(OpError::ExtendFailed(reason)));
                }
                return Err(CircuitClosed::Truncated { hops, reason });
            }
            ClientEvent::StreamConnected { stream, addr, .. } => {
                if let Some(reply) = self.begins.remove(&stream) {
                    let shared = StreamShared::new(Arc::clone(&self.notify));
                    self.streams.insert(stream, Arc::clone(&shared));
                    // If the caller gave up, the stream is dropped here and ended by the
                    // next pump.
                    let _ = reply.send(Ok(DataStream::new(shared, stream, addr)));
                }
            }
            ClientEvent::StreamData { stream, bytes } => {
                if let Some(s) = self.streams.get(&stream) {
                    s.deliver(&bytes);
                }
            }
            ClientEvent::StreamEnded { stream, reason } => {
                if let Some(reply) = self.begins.remove(&stream) {
                    let _ = reply.send(Err(OpError::Stream(StreamError::from_end(&reason))));
                } else if let Some(s) = self.streams.remove(&stream) {
                    let ended = match reason {
                        StreamEndReason::Remote {
                            reason: EndReason::DONE,
                            ..
                        } => Ended::Eof,
                        other => Ended::Error(StreamError::from_end(&other)),
                    };
                    s.finish(ended);
                }
            }
            ClientEvent::CircuitClosed { reason } => return Err(reason.into()),
            other => tracing::debug!(circ = %self.core.id, "event ignored: {other:?}"),
        }
        Ok(())
    }

    /// A command from a handle.
    fn on_command(&mut self, cmd: CircCmd) -> Step {
        let core = &mut self.core;
        match cmd {
            CircCmd::Extend {
                target,
                kind,
                reply,
            } => {
                if self.extend.is_some() {
                    let _ = reply.send(Err(OpError::Circuit(CircuitError::ExtendPending)));
                    return Ok(());
                }
                let r = match kind {
                    ExtendKind::Handshake(k) => core.circ.extend(&mut core.rng, &target, k),
                    ExtendKind::LegacyTap => core.circ.extend_legacy_tap(&mut core.rng, &target),
                };
                match r {
                    Ok(_) => self.extend = Some(reply),
                    Err(e) => return refuse(reply, e),
                }
            }
            CircCmd::Begin { to, reply } => {
                if reply.is_closed() {
                    return Ok(());
                }
                let r = match to {
                    BeginTo::Exit { addr, port } => {
                        core.circ.begin(&mut core.rng, addr, port, BeginFlags::NONE)
                    }
                    BeginTo::Dir => core.circ.begin_dir(&mut core.rng),
                };
                match r {
                    Ok(sid) => {
                        self.begins.insert(sid, reply);
                    }
                    Err(e) => return refuse(reply, e),
                }
            }
            CircCmd::Close(reason) => return Err(reason),
            CircCmd::Wake => {}
        }
        Ok(())
    }
}
