//! The engine task: the one owner of the [`Engine`]. It performs the engine's actions
//! (connections, writes, closes), hands events to streams and subscribers, keeps one timer at
//! `poll_timeout`, and serves the [`OpClient`](super::OpClient) handles' commands.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use onion_core::engine::{
    Action, CircuitInfo, ConnId, Engine, Event, NowMs, ResolvedAnswer, StreamHandle,
};
use rand_core::CryptoRng;
use tokio::sync::{Notify, broadcast, mpsc, oneshot, watch};

use super::conn::{self, ConnEvent, ConnHandle};
use super::stream::{Ended, OpStream, StreamShared};
use super::{ClientError, Status};

/// Capacity of the connections' inbox (each message is at most one socket read).
pub(crate) const CONN_INBOX: usize = 64;

/// Wall-clock milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> NowMs {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A command from an [`OpClient`](super::OpClient).
#[derive(Debug)]
pub(crate) enum Command {
    /// Open a stream.
    Connect {
        host: String,
        port: u16,
        isolation: Option<String>,
        reply: oneshot::Sender<Result<OpStream, ClientError>>,
    },
    /// Resolve a name.
    Resolve {
        host: String,
        isolation: Option<String>,
        reply: oneshot::Sender<Result<Vec<ResolvedAnswer>, ClientError>>,
    },
    /// List the circuits.
    Circuits {
        reply: oneshot::Sender<Vec<CircuitInfo>>,
    },
    /// The seed's iAnonym mode ([`Engine::associate`]).
    Associate {
        fake_domain: String,
        origin: Option<(String, u16)>,
        reply: oneshot::Sender<Result<u64, ClientError>>,
    },
    /// Fresh circuits for new streams.
    NewIdentity,
    /// Stop.
    Shutdown,
}

/// What a stream is waiting for.
#[derive(Debug)]
enum Pending {
    /// CONNECTED, to answer `connect`.
    Connect(oneshot::Sender<Result<OpStream, ClientError>>),
    /// RESOLVED, to answer `resolve`.
    Resolve(oneshot::Sender<Result<Vec<ResolvedAnswer>, ClientError>>),
    /// Nothing: the stream is open and its [`OpStream`] is the user's.
    Open,
}

/// One user stream.
#[derive(Debug)]
struct Slot {
    shared: Arc<StreamShared>,
    pending: Pending,
}

/// The task's state.
pub(crate) struct Task<R: CryptoRng> {
    engine: Engine<R>,
    conns: HashMap<ConnId, ConnHandle>,
    conn_tx: mpsc::Sender<ConnEvent>,
    streams: HashMap<StreamHandle, Slot>,
    notify: Arc<Notify>,
    events: broadcast::Sender<Event>,
    status: watch::Sender<Status>,
    connect_timeout: Duration,
}

impl<R: CryptoRng> Task<R> {
    /// Run the engine until `Shutdown` or until every handle is dropped.
    pub(crate) async fn run(
        engine: Engine<R>,
        mut commands: mpsc::Receiver<Command>,
        events: broadcast::Sender<Event>,
        status: watch::Sender<Status>,
        connect_timeout: Duration,
    ) {
        let (conn_tx, mut conn_rx) = mpsc::channel(CONN_INBOX);
        let mut task = Task {
            engine,
            conns: HashMap::new(),
            conn_tx,
            streams: HashMap::new(),
            notify: Arc::new(Notify::new()),
            events,
            status,
            connect_timeout,
        };
        let notify = Arc::clone(&task.notify);
        loop {
            task.pump();
            let deadline = task.engine.poll_timeout().map(|t| {
                let now = now_ms();
                Instant::now() + Duration::from_millis(t.saturating_sub(now))
            });
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    Some(Command::Shutdown) | None => break,
                    Some(cmd) => task.command(cmd),
                },
                Some(ev) = conn_rx.recv() => task.conn_event(ev),
                () = notify.notified() => task.service_streams(),
                () = sleep => task.engine.handle_timeout(now_ms()),
            }
        }
        task.shutdown();
    }

    /// Stop: close the engine, end every stream and connection.
    fn shutdown(&mut self) {
        self.engine.close(now_ms());
        self.pump();
        for (_, slot) in self.streams.drain() {
            match slot.pending {
                Pending::Connect(tx) => {
                    let _ = tx.send(Err(ClientError::Stopped));
                }
                Pending::Resolve(tx) => {
                    let _ = tx.send(Err(ClientError::Stopped));
                }
                Pending::Open => slot.shared.finish(Ended::Error(ClientError::Stopped)),
            }
        }
        for (_, c) in self.conns.drain() {
            c.abort();
        }
        self.status.send_if_modified(|s| {
            if matches!(s, Status::Stopped) {
                false
            } else {
                *s = Status::Stopped;
                true
            }
        });
    }

    /// Drain the engine's actions and events until both are empty.
    fn pump(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(a) = self.engine.poll_action() {
                progressed = true;
                self.action(a);
            }
            while let Some(e) = self.engine.poll_event() {
                progressed = true;
                self.event(e);
            }
            if !progressed {
                return;
            }
        }
    }

    /// Perform one action.
    fn action(&mut self, action: Action) {
        match action {
            Action::Connect { conn, transport } => {
                tracing::debug!(?conn, ?transport, "opening connection");
                let handle =
                    conn::spawn(conn, transport, self.conn_tx.clone(), self.connect_timeout);
                if let Some(old) = self.conns.insert(conn, handle) {
                    old.abort();
                }
            }
            Action::Send { conn, data } => {
                let ok = self.conns.get(&conn).is_some_and(|c| c.send(data));
                if !ok && let Some(c) = self.conns.remove(&conn) {
                    c.abort();
                    self.engine.on_closed(
                        conn,
                        now_ms(),
                        "write queue overflow or connection gone",
                    );
                }
            }
            Action::Close { conn } => {
                if let Some(c) = self.conns.remove(&conn) {
                    c.close();
                }
            }
        }
    }

    /// Hand one event to its stream and the subscribers.
    fn event(&mut self, event: Event) {
        match &event {
            Event::Bootstrap { percent, phase } => {
                tracing::info!(percent = *percent, %phase, "bootstrap");
                self.status.send_replace(Status::Bootstrapping {
                    percent: *percent,
                    phase: phase.clone(),
                });
            }
            Event::Ready => {
                tracing::info!("bootstrapped: directory verified, ready for streams");
                self.status.send_replace(Status::Ready);
            }
            Event::BootstrapFailed { error } => {
                tracing::error!(%error, "bootstrap failed");
                self.status.send_replace(Status::Failed(error.clone()));
            }
            Event::CircuitBuilt { info } => {
                tracing::info!(id = info.id, path = %path_text(info), "circuit built");
            }
            Event::CircuitFailed { path, error } => {
                let p: Vec<&str> = path.iter().map(|h| h.nickname.as_str()).collect();
                tracing::warn!(path = %p.join(" -> "), %error, "circuit failed");
            }
            Event::CircuitClosed { id, reason } => {
                tracing::info!(id, %reason, "circuit closed");
            }
            Event::Associated {
                fake_domain,
                circuit,
            } => tracing::info!(%fake_domain, circuit, "associated (RELAY_ASSOCIATE sent)"),
            Event::AssociateRefused { fake_domain } => {
                tracing::warn!(%fake_domain, "the OR refused the fake domain");
            }
            Event::SeedRequestDone {
                request_id,
                target,
                bytes_in,
                bytes_out,
                error,
            } => tracing::info!(
                %request_id, %target, bytes_in, bytes_out, error = ?error, "seed request served"
            ),
            Event::AssociationClosed {
                fake_domain,
                reason,
            } => tracing::warn!(%fake_domain, %reason, "association closed"),
            Event::StreamConnected { stream } => self.connected(*stream),
            Event::StreamData { stream, data } => {
                if let Some(slot) = self.streams.get(stream) {
                    slot.shared.deliver(data);
                }
                // Data is the stream's, not the subscribers'.
                return;
            }
            Event::StreamWritable { stream } => self.service_stream(*stream),
            Event::StreamEnded { stream, error } => self.ended(*stream, error.clone()),
            Event::Resolved { stream, answers } => {
                if let Some(slot) = self.streams.remove(stream)
                    && let Pending::Resolve(tx) = slot.pending
                {
                    let _ = tx.send(Ok(answers.clone()));
                }
            }
            _ => {}
        }
        let _ = self.events.send(event);
    }

    /// CONNECTED: give the stream to whoever asked.
    fn connected(&mut self, stream: StreamHandle) {
        let Some(slot) = self.streams.get_mut(&stream) else {
            return;
        };
        if let Pending::Connect(tx) = std::mem::replace(&mut slot.pending, Pending::Open) {
            let s = OpStream::new(Arc::clone(&slot.shared), stream);
            if let Err(Ok(s)) = tx.send(Ok(s)) {
                // The caller gave up: its stream is dropped, which closes it.
                drop(s);
            }
        }
    }

    /// A stream ended.
    fn ended(&mut self, stream: StreamHandle, error: Option<onion_core::engine::StreamError>) {
        let Some(slot) = self.streams.remove(&stream) else {
            return;
        };
        let failure = |e: Option<onion_core::engine::StreamError>| match e {
            Some(e) => ClientError::Stream(e),
            None => ClientError::EndedBeforeConnected,
        };
        match slot.pending {
            Pending::Connect(tx) => {
                let _ = tx.send(Err(failure(error)));
            }
            Pending::Resolve(tx) => {
                let _ = tx.send(Err(failure(error)));
            }
            Pending::Open => slot.shared.finish(match error {
                None => Ended::Eof,
                Some(e) => Ended::Error(ClientError::Stream(e)),
            }),
        }
    }

    /// A command from a handle.
    fn command(&mut self, cmd: Command) {
        let now = now_ms();
        match cmd {
            Command::Connect {
                host,
                port,
                isolation,
                reply,
            } => match self.engine.connect(now, &host, port, isolation.as_deref()) {
                Ok(h) => {
                    self.streams.insert(
                        h,
                        Slot {
                            shared: StreamShared::new(Arc::clone(&self.notify)),
                            pending: Pending::Connect(reply),
                        },
                    );
                }
                Err(e) => {
                    let _ = reply.send(Err(ClientError::Engine(e)));
                }
            },
            Command::Resolve {
                host,
                isolation,
                reply,
            } => match self.engine.resolve(now, &host, isolation.as_deref()) {
                Ok(h) => {
                    self.streams.insert(
                        h,
                        Slot {
                            shared: StreamShared::new(Arc::clone(&self.notify)),
                            pending: Pending::Resolve(reply),
                        },
                    );
                }
                Err(e) => {
                    let _ = reply.send(Err(ClientError::Engine(e)));
                }
            },
            Command::Circuits { reply } => {
                let _ = reply.send(self.engine.circuits());
            }
            Command::Associate {
                fake_domain,
                origin,
                reply,
            } => {
                let origin = origin.as_ref().map(|(h, p)| (h.as_str(), *p));
                let r = self.engine.associate(now, &fake_domain, origin);
                let _ = reply.send(r.map_err(ClientError::Engine));
            }
            Command::NewIdentity => self.engine.new_identity(now),
            // Handled by the loop.
            Command::Shutdown => {}
        }
    }

    /// A connection task's news.
    fn conn_event(&mut self, ev: ConnEvent) {
        let now = now_ms();
        match ev {
            ConnEvent::Connected(conn, binding) => {
                if self.conns.contains_key(&conn) {
                    self.engine.on_connected(conn, now, binding);
                }
            }
            ConnEvent::Data(conn, data) => {
                if self.conns.contains_key(&conn) {
                    self.engine.on_data(conn, now, &data);
                }
            }
            ConnEvent::Closed(conn, reason) => {
                if self.conns.remove(&conn).is_some() {
                    tracing::debug!(?conn, %reason, "connection closed");
                    self.engine.on_closed(conn, now, &reason);
                }
            }
        }
    }

    /// Some stream was read from, written to or dropped: serve them all.
    fn service_streams(&mut self) {
        let handles: Vec<StreamHandle> = self.streams.keys().copied().collect();
        for h in handles {
            self.service_stream(h);
        }
    }

    /// Report consumption, hand written bytes to the engine, close dropped streams.
    fn service_stream(&mut self, h: StreamHandle) {
        let Some(slot) = self.streams.get(&h) else {
            return;
        };
        if !matches!(slot.pending, Pending::Open) {
            return;
        }
        let shared = Arc::clone(&slot.shared);
        let now = now_ms();
        let mut s = shared.lock();
        let consumed = std::mem::take(&mut s.consumed);
        if consumed > 0 {
            self.engine.stream_consumed(now, h, consumed);
        }
        let mut took = false;
        while !s.write_buf.is_empty() {
            let (front, _) = s.write_buf.as_slices();
            match self.engine.stream_write(now, h, front) {
                Ok(0) => break,
                Ok(n) => {
                    let n = n.min(front.len());
                    s.write_buf.drain(..n);
                    took = true;
                }
                Err(e) => {
                    drop(s);
                    shared.finish(Ended::Error(ClientError::Engine(e)));
                    self.engine.stream_close(now, h);
                    self.streams.remove(&h);
                    return;
                }
            }
        }
        if took && let Some(w) = s.write_waker.take() {
            w.wake();
        }
        if s.dropped && s.write_buf.is_empty() {
            drop(s);
            self.engine.stream_close(now, h);
            self.streams.remove(&h);
        }
    }
}

/// A circuit's path for logs: `nick (FP) -> ...`.
fn path_text(info: &CircuitInfo) -> String {
    info.path
        .iter()
        .map(|h| format!("{} ({})", h.nickname, h.rsa_id))
        .collect::<Vec<_>>()
        .join(" -> ")
}
