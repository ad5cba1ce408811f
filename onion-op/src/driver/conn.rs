//! Transport connections the engine asks for ([`Action::Connect`](onion_core::engine::Action)):
//! one task per connection opens Tor link TLS to an ORPort or a WebSocket, reports
//! `Connected` (with the [`TlsBinding`]), then moves bytes both ways until either side ends.
//!
//! Reads go to the engine task through its bounded inbox (a full inbox stops reading from the
//! socket). Writes come from the engine task in order; the engine's own windows bound them,
//! and [`MAX_CONN_QUEUE`] is a hard stop in case they do not.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use onion_core::channel::TlsBinding;
use onion_core::engine::{ConnId, Transport};
use onion_net::link::tls_binding;
use onion_net::ws::{WsError, ws_connect};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::os_rng;

/// Most bytes queued for one connection's socket before the driver gives up on it: the
/// engine's circuit windows keep far less in flight, so this only stops a runaway.
pub const MAX_CONN_QUEUE: usize = 16 << 20;

/// Bytes read from a socket at once.
pub const CONN_READ_CHUNK: usize = 32 * 1024;

/// A connection's byte stream (TLS or WebSocket).
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// What a connection task tells the engine task.
#[derive(Debug)]
pub(crate) enum ConnEvent {
    /// Open, with what binds the link handshake to it.
    Connected(ConnId, TlsBinding),
    /// Bytes received.
    Data(ConnId, Vec<u8>),
    /// Closed or failed (also: the connection could not be opened).
    Closed(ConnId, String),
}

/// What the engine task gives a connection task to write.
#[derive(Debug)]
pub(crate) enum ConnWrite {
    /// Bytes of the link, in order.
    Data(Vec<u8>),
    /// Write what came before, then close.
    Close,
}

/// The engine task's side of a connection.
#[derive(Debug)]
pub(crate) struct ConnHandle {
    writes: mpsc::UnboundedSender<ConnWrite>,
    queued: Arc<AtomicUsize>,
    task: tokio::task::AbortHandle,
}

impl ConnHandle {
    /// Queue bytes; `false` if the connection is gone or its queue overflowed (the caller
    /// then drops the handle and reports the connection closed).
    pub(crate) fn send(&self, data: Vec<u8>) -> bool {
        let len = data.len();
        let before = self.queued.fetch_add(len, Ordering::AcqRel);
        if before.saturating_add(len) > MAX_CONN_QUEUE {
            return false;
        }
        self.writes.send(ConnWrite::Data(data)).is_ok()
    }

    /// Close after what is queued.
    pub(crate) fn close(&self) {
        if self.writes.send(ConnWrite::Close).is_err() {
            self.task.abort();
        }
    }

    /// Stop at once.
    pub(crate) fn abort(&self) {
        self.task.abort();
    }
}

/// Start the task for connection `conn` to `transport`.
pub(crate) fn spawn(
    conn: ConnId,
    transport: Transport,
    events: mpsc::Sender<ConnEvent>,
    connect_timeout: Duration,
) -> ConnHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicUsize::new(0));
    let task = tokio::spawn(run(
        conn,
        transport,
        events,
        rx,
        Arc::clone(&queued),
        connect_timeout,
    ));
    ConnHandle {
        writes: tx,
        queued,
        task: task.abort_handle(),
    }
}

/// Open Tor link TLS to an ORPort: any certificate, whose SHA-256 the link handshake binds.
async fn open_tls(
    addr: SocketAddr,
    timeout: Duration,
) -> Result<(Box<dyn Io>, TlsBinding), String> {
    let tcp = onion_net::tcp_connect(addr, timeout)
        .await
        .map_err(|e| format!("TCP connection to {addr} failed: {e}"))?;
    let config = onion_net::tls::client_config().map_err(|e| e.to_string())?;
    let name = onion_net::tls::random_server_name(&mut os_rng()).map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake with {addr} failed: {e}"))?;
    let binding =
        tls_binding(&tls).ok_or_else(|| format!("{addr} presented no TLS certificate"))?;
    Ok((Box::new(tls), binding))
}

/// Open a WebSocket (`ws://` or `wss://`); nothing binds the link handshake to it.
async fn open_ws(url: &str) -> Result<(Box<dyn Io>, TlsBinding), String> {
    let ws = ws_connect(url, None).await.map_err(|e| match e {
        WsError::Connect { host, source } => format!("connection to {host} failed: {source}"),
        other => format!("WebSocket {url}: {other}"),
    })?;
    Ok((Box::new(ws), TlsBinding::None))
}

/// The connection task.
async fn run(
    conn: ConnId,
    transport: Transport,
    events: mpsc::Sender<ConnEvent>,
    mut writes: mpsc::UnboundedReceiver<ConnWrite>,
    queued: Arc<AtomicUsize>,
    connect_timeout: Duration,
) {
    let opened = tokio::time::timeout(connect_timeout, async {
        match &transport {
            Transport::Tls(addr) => open_tls(*addr, connect_timeout).await,
            Transport::WebSocket(url) => open_ws(url.as_str()).await,
        }
    })
    .await
    .unwrap_or_else(|_| Err(format!("connection timed out after {connect_timeout:?}")));
    let (io, binding) = match opened {
        Ok(v) => v,
        Err(reason) => {
            tracing::debug!(?conn, ?transport, %reason, "connection failed");
            let _ = events.send(ConnEvent::Closed(conn, reason)).await;
            return;
        }
    };
    if events
        .send(ConnEvent::Connected(conn, binding))
        .await
        .is_err()
    {
        return;
    }
    let (mut rd, mut wr) = tokio::io::split(io);
    let reader = async {
        let mut buf = vec![0u8; CONN_READ_CHUNK];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) => return "the relay closed the connection".to_owned(),
                Ok(n) => {
                    let data = buf.get(..n).unwrap_or_default().to_vec();
                    if events.send(ConnEvent::Data(conn, data)).await.is_err() {
                        return "the engine stopped".to_owned();
                    }
                }
                Err(e) => return format!("read error: {e}"),
            }
        }
    };
    let writer = async {
        while let Some(w) = writes.recv().await {
            let mut close = false;
            let mut next = Some(w);
            // Write everything queued now, then flush once (one WebSocket message).
            while let Some(w) = next.take() {
                match w {
                    ConnWrite::Data(d) => {
                        if let Err(e) = wr.write_all(&d).await {
                            return Some(format!("write error: {e}"));
                        }
                        queued.fetch_sub(d.len(), Ordering::AcqRel);
                    }
                    ConnWrite::Close => {
                        close = true;
                        break;
                    }
                }
                next = writes.try_recv().ok();
            }
            if let Err(e) = wr.flush().await {
                return Some(format!("write error: {e}"));
            }
            if close {
                let _ = wr.shutdown().await;
                return None;
            }
        }
        // The engine task is gone.
        None
    };
    tokio::select! {
        reason = reader => {
            let _ = events.send(ConnEvent::Closed(conn, reason)).await;
        }
        failed = writer => {
            if let Some(reason) = failed {
                let _ = events.send(ConnEvent::Closed(conn, reason)).await;
            }
        }
    }
}
