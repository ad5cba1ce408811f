//! The tokio driver of the sans-IO client engine ([`onion_core::engine::Engine`]): what the
//! `onion-op` binary runs. No protocol logic lives here.
//!
//! One task owns the engine ([`OpClient::start`]). It opens the connections the engine asks
//! for (Tor link TLS to an ORPort with the [`TlsBinding`](onion_core::channel::TlsBinding) of
//! the certificate seen, or a WebSocket with `onion_net::ws::ws_connect`), writes and closes
//! them, feeds received bytes and closures back, keeps one timer at `poll_timeout`, and hands
//! events to streams, to [`OpClient::subscribe`] receivers and to `tracing` (bootstrap
//! progress, circuits).
//!
//! [`OpClient`] handles are cheap clones that talk to the task over a bounded channel:
//!
//! ```text
//! let op = OpClient::start(network, EngineConfig::default())?;   // inside a tokio runtime
//! op.wait_ready().await?;                                         // directory verified
//! let mut s = op.connect("example.org", 80, Some("isolation key")).await?;
//! s.write_all(b"GET / HTTP/1.0\r\n\r\n").await?;                  // AsyncRead + AsyncWrite
//! let answers = op.resolve("example.org", None).await?;
//! ```
//!
//! Bounded end to end: each connection's reads wait for room in the task's inbox; a stream's
//! delivered bytes wait in its [`OpStream`] until read, and only reading reports
//! `stream_consumed` to the engine (which paces stream SENDMEs); writes wait in at most
//! [`STREAM_WRITE_BUFFER`] bytes per stream until the engine's windows take them.

use std::io;
use std::time::Duration;

use onion_core::engine::{
    CircuitInfo, Engine, EngineConfig, EngineError, Event, ResolvedAnswer, StreamError,
};
use onion_core::netdesc::NetworkDescription;
use onion_core::socks::SocksReplyCode;
use thiserror::Error;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

mod conn;
pub mod socks;
mod stream;
mod task;

pub use conn::{CONN_READ_CHUNK, MAX_CONN_QUEUE};
pub use stream::{OpStream, STREAM_WRITE_BUFFER};

use task::{Command, Task, now_ms};

/// Capacity of the handles' command channel.
pub const COMMAND_QUEUE: usize = 64;

/// Capacity of the event broadcast: a subscriber that lags further misses events.
pub const EVENT_QUEUE: usize = 256;

/// Why an [`OpClient`] call failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The engine refused the call (not ready, too many streams, invalid target, ...).
    #[error("{0}")]
    Engine(EngineError),
    /// The stream failed (END reason, circuit death, timeout).
    #[error("{0}")]
    Stream(StreamError),
    /// The stream ended cleanly before it was connected or answered.
    #[error("the stream ended before it was connected")]
    EndedBeforeConnected,
    /// The bootstrap failed.
    #[error("bootstrap failed: {0}")]
    Bootstrap(EngineError),
    /// The engine task stopped.
    #[error("the onion proxy has stopped")]
    Stopped,
}

impl ClientError {
    /// The SOCKS5 reply that tells a SOCKS client about this failure (the engine maps
    /// stream errors: exit policy 0x02, resolve failed 0x04, refused 0x05, ...).
    pub fn socks_reply(&self) -> SocksReplyCode {
        match self {
            ClientError::Stream(e) => SocksReplyCode(e.socks5_reply()),
            ClientError::Engine(EngineError::InvalidTarget(_)) => {
                SocksReplyCode::ADDRESS_TYPE_NOT_SUPPORTED
            }
            ClientError::Engine(EngineError::NotReady) | ClientError::Bootstrap(_) => {
                SocksReplyCode::NETWORK_UNREACHABLE
            }
            _ => SocksReplyCode::GENERAL_FAILURE,
        }
    }

    /// The closest [`io::ErrorKind`].
    pub fn io_kind(&self) -> io::ErrorKind {
        match self {
            ClientError::Stream(StreamError::ConnectionRefused) => io::ErrorKind::ConnectionRefused,
            ClientError::Stream(StreamError::ConnectionReset) => io::ErrorKind::ConnectionReset,
            ClientError::Stream(StreamError::Timeout) => io::ErrorKind::TimedOut,
            ClientError::Stream(StreamError::ResolveFailed | StreamError::NoRoute) => {
                io::ErrorKind::HostUnreachable
            }
            ClientError::Stream(StreamError::ExitPolicy) => io::ErrorKind::PermissionDenied,
            _ => io::ErrorKind::ConnectionAborted,
        }
    }

    /// This error as an [`io::Error`] (its inner error is `self`).
    pub fn to_io(&self) -> io::Error {
        io::Error::new(self.io_kind(), self.clone())
    }
}

/// Where the engine stands.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Status {
    /// Started, no progress reported yet.
    Starting,
    /// Bootstrapping.
    Bootstrapping {
        /// 0 to 100.
        percent: u8,
        /// What is being done.
        phase: String,
    },
    /// The directory is verified: streams can be opened.
    Ready,
    /// The bootstrap failed.
    Failed(EngineError),
    /// The engine task stopped.
    Stopped,
}

/// A handle on the engine task. Clones share the task; it stops when the last clone is
/// dropped or on [`OpClient::shutdown`].
#[derive(Debug, Clone)]
pub struct OpClient {
    commands: mpsc::Sender<Command>,
    status: watch::Receiver<Status>,
    events: broadcast::Sender<Event>,
}

impl OpClient {
    /// Create the engine for `network` and start its task on the current tokio runtime
    /// (panics outside one, as `tokio::spawn` does). The bootstrap starts at once.
    pub fn start(network: NetworkDescription, config: EngineConfig) -> Result<Self, ClientError> {
        let connect_timeout = Duration::from_millis(config.connect_timeout_ms.max(1));
        let engine =
            Engine::new(network, config, crate::os_rng(), now_ms()).map_err(ClientError::Engine)?;
        let (commands, rx) = mpsc::channel(COMMAND_QUEUE);
        let (status_tx, status) = watch::channel(Status::Starting);
        let (events, _) = broadcast::channel(EVENT_QUEUE);
        tokio::spawn(Task::run(
            engine,
            rx,
            events.clone(),
            status_tx,
            connect_timeout,
        ));
        Ok(OpClient {
            commands,
            status,
            events,
        })
    }

    /// The engine's state now.
    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// Wait until the directory is verified (or the bootstrap failed, or the task stopped).
    pub async fn wait_ready(&self) -> Result<(), ClientError> {
        let mut rx = self.status.clone();
        let s = rx
            .wait_for(|s| matches!(s, Status::Ready | Status::Failed(_) | Status::Stopped))
            .await
            .map_err(|_| ClientError::Stopped)?;
        match &*s {
            Status::Ready => Ok(()),
            Status::Failed(e) => Err(ClientError::Bootstrap(e.clone())),
            _ => Err(ClientError::Stopped),
        }
    }

    /// Events from now on (bootstrap, circuits, stream openings and ends; not stream data).
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Send a command.
    async fn send(&self, cmd: Command) -> Result<(), ClientError> {
        self.commands
            .send(cmd)
            .await
            .map_err(|_| ClientError::Stopped)
    }

    /// Open a stream to `host:port` (a name or an IP literal; the exit resolves names)
    /// whose circuit is shared only with streams of the same `isolation` key. Returns once
    /// the exit connected (RELAY_CONNECTED); streams opened before the bootstrap completes
    /// wait for it.
    pub async fn connect(
        &self,
        host: &str,
        port: u16,
        isolation: Option<&str>,
    ) -> Result<OpStream, ClientError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Connect {
            host: host.to_owned(),
            port,
            isolation: isolation.map(str::to_owned),
            reply,
        })
        .await?;
        rx.await.map_err(|_| ClientError::Stopped)?
    }

    /// Resolve `host` at an exit (RELAY_RESOLVE; an `in-addr.arpa` name for a reverse
    /// lookup).
    pub async fn resolve(
        &self,
        host: &str,
        isolation: Option<&str>,
    ) -> Result<Vec<ResolvedAnswer>, ClientError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Resolve {
            host: host.to_owned(),
            isolation: isolation.map(str::to_owned),
            reply,
        })
        .await?;
        rx.await.map_err(|_| ClientError::Stopped)?
    }

    /// The engine's circuits.
    pub async fn circuits(&self) -> Result<Vec<CircuitInfo>, ClientError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Circuits { reply }).await?;
        rx.await.map_err(|_| ClientError::Stopped)
    }

    /// The seed's iAnonym mode ([`Engine::associate`]): a one-hop circuit (CID) to the
    /// entry OR bound to `fake_domain`; requests the OR's WS_OP_SOCKS listener relays for it
    /// are served by the engine through its exit circuits (`fake_domain` itself goes to
    /// `origin`, `host.<fake_domain>` to `host`). Returns CID's circuit id; what follows comes
    /// as events ([`Event::Associated`], [`Event::SeedRequestDone`],
    /// [`Event::AssociateRefused`], [`Event::AssociationClosed`]).
    pub async fn associate(
        &self,
        fake_domain: &str,
        origin: Option<(&str, u16)>,
    ) -> Result<u64, ClientError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Associate {
            fake_domain: fake_domain.to_owned(),
            origin: origin.map(|(h, p)| (h.to_owned(), p)),
            reply,
        })
        .await?;
        rx.await.map_err(|_| ClientError::Stopped)?
    }

    /// New streams get fresh circuits; open streams run to completion.
    pub async fn new_identity(&self) -> Result<(), ClientError> {
        self.send(Command::NewIdentity).await
    }

    /// Stop the engine task: streams end with [`ClientError::Stopped`], connections close.
    pub async fn shutdown(&self) {
        let _ = self.send(Command::Shutdown).await;
        let mut rx = self.status.clone();
        let _ = rx.wait_for(|s| matches!(s, Status::Stopped)).await;
    }
}
