//! The running relay: listeners, accept loops, key rotation, shutdown.
//!
//! [`Server::start`] loads (or creates) the keys, makes the link certificate and binds every
//! configured socket; [`Server::run`] accepts connections until the [`Shutdown`] signal,
//! then stops accepting and gives open connections [`SHUTDOWN_GRACE`] to finish.
//!
//! Each accepted connection gets its transport handshake (TLS, WebSocket, or both) here,
//! under [`TRANSPORT_HANDSHAKE_TIMEOUT`] and the `limits.max_links` budget, and is then
//! handed to the link layer through [`handle_tls_connection`] or [`handle_ws_connection`]:
//! the two integration points.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use rand_core::UnwrapErr;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::config::Config;
use crate::keys::{KeyError, KeyStore, RotationPolicy, ensure_private_dir};
use crate::logging::PeerAddr;
use crate::metrics::{LinkKind, Metrics};
use crate::shutdown::Shutdown;
use crate::tls::{LinkCertificate, LinkTls, TlsError, wss_server_config};

/// Time allowed for a connection's TLS and/or WebSocket handshake.
pub const TRANSPORT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Time open connections get to finish after shutdown is signalled; then they are aborted.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Largest WebSocket message and frame accepted: a RELAY_WS cell carries up to 65535 bytes
/// (the seed's extension), so this leaves room for a few cells per message.
pub const WS_MAX_MESSAGE_SIZE: usize = 256 * 1024;
const _: () = assert!(
    WS_MAX_MESSAGE_SIZE >= 65_535 + 16,
    "a RELAY_WS cell must fit"
);
/// Longest wait between two key rotation checks.
const ROTATION_CHECK_MAX_WAIT: Duration = Duration::from_secs(3600);
/// Wait after a failed key rotation before trying again.
const ROTATION_RETRY: Duration = Duration::from_secs(60);

/// Why the relay could not start or stopped with an error.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The keys could not be loaded or created.
    #[error("keys: {0}")]
    Keys(#[from] KeyError),
    /// TLS could not be set up.
    #[error("{0}")]
    Tls(#[from] TlsError),
    /// A socket could not be bound.
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The operating system's random number generator does not work.
    #[error("the OS random number generator failed: {0}")]
    Rng(getrandom::Error),
    /// A background task panicked or was cancelled.
    #[error("internal task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// The operating system's RNG. Call [`check_os_rng`] once at startup: this panics if the
/// OS RNG fails afterwards, which a working system does not do.
pub fn os_rng() -> UnwrapErr<getrandom::SysRng> {
    UnwrapErr(getrandom::SysRng)
}

/// Check that the OS RNG works.
pub fn check_os_rng() -> Result<(), ServerError> {
    let mut probe = [0u8; 16];
    getrandom::fill(&mut probe).map_err(ServerError::Rng)
}

/// The key directory inside a data directory.
pub fn keys_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("keys")
}

/// Create the data directory (mode 0700) if needed, then load or create the keys in its
/// `keys` subdirectory. Blocking (RSA key generation); call it from a blocking context.
pub fn open_keys(
    data_dir: &Path,
    policy: RotationPolicy,
    now: SystemTime,
) -> Result<KeyStore, ServerError> {
    check_os_rng()?;
    ensure_private_dir(data_dir)?;
    Ok(KeyStore::load_or_create_with_policy(
        &keys_dir(data_dir),
        policy,
        now,
        &mut os_rng(),
    )?)
}

/// What every connection handler and background task shares.
#[derive(Debug)]
pub struct ServerContext {
    /// The configuration.
    pub config: Config,
    /// The keys; rotated in place by the rotation task (write-locked only then).
    pub keys: Arc<RwLock<KeyStore>>,
    /// The Tor link TLS setup (link certificate, acceptor, connector).
    pub link_tls: LinkTls,
    /// The metrics.
    pub metrics: Arc<Metrics>,
    /// The shutdown signal: long-running handlers select on [`Shutdown::wait`].
    pub shutdown: Shutdown,
    link_slots: Arc<Semaphore>,
}

impl ServerContext {
    /// A client's address as it may be logged.
    pub fn peer(&self, addr: SocketAddr) -> PeerAddr {
        PeerAddr::new(addr, self.config.log_client_addresses)
    }

    /// Reserve one of the `limits.max_links` link slots (for an outgoing link, say);
    /// `None` if all are taken. The slot is freed when the permit is dropped.
    pub fn try_reserve_link(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.link_slots).try_acquire_owned().ok()
    }
}

/// The addresses actually bound (useful with port 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BoundAddrs {
    /// The Tor link (TLS) listener.
    pub or_port: Option<SocketAddr>,
    /// The `ws://` listener.
    pub ws: Option<SocketAddr>,
    /// The `wss://` listener.
    pub wss: Option<SocketAddr>,
    /// The metrics endpoint.
    pub metrics: Option<SocketAddr>,
}

/// A relay whose sockets are bound, ready to [`Server::run`].
pub struct Server {
    ctx: Arc<ServerContext>,
    or_port: Option<TcpListener>,
    ws: Option<TcpListener>,
    wss: Option<(TcpListener, tokio_rustls::TlsAcceptor)>,
    metrics: Option<TcpListener>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addrs", &self.local_addrs())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Load or create the keys (see [`open_keys`]), then [`Server::bind`].
    pub async fn start(config: Config, shutdown: Shutdown) -> Result<Self, ServerError> {
        let data_dir = config.data_dir.clone();
        let policy =
            RotationPolicy::from_days(config.onion_key_lifetime_days, config.onion_key_grace_days);
        let keys =
            tokio::task::spawn_blocking(move || open_keys(&data_dir, policy, SystemTime::now()))
                .await??;
        Self::bind(config, keys, shutdown).await
    }

    /// Make a fresh link certificate, load the `wss` certificate, and bind every configured
    /// listener and the metrics endpoint.
    pub async fn bind(
        config: Config,
        keys: KeyStore,
        shutdown: Shutdown,
    ) -> Result<Self, ServerError> {
        check_os_rng()?;
        let link_tls = LinkTls::new(LinkCertificate::generate(SystemTime::now(), &mut os_rng())?)?;
        let wss_acceptor = match &config.listeners.wss {
            Some(w) => Some(tokio_rustls::TlsAcceptor::from(wss_server_config(
                &w.cert_pem,
                &w.key_pem,
            )?)),
            None => None,
        };
        let or_port = bind_opt("or_port", config.listeners.or_port).await?;
        let ws = bind_opt("ws", config.listeners.ws).await?;
        let wss = match (wss_acceptor, &config.listeners.wss) {
            (Some(acceptor), Some(w)) => Some((bind_one("wss", w.addr).await?, acceptor)),
            _ => None,
        };
        let metrics = bind_opt("metrics", config.metrics).await?;
        let max_links = usize::try_from(config.limits.max_links).unwrap_or(usize::MAX);
        let ctx = Arc::new(ServerContext {
            config,
            keys: Arc::new(RwLock::new(keys)),
            link_tls,
            metrics: Arc::new(Metrics::new()),
            shutdown,
            link_slots: Arc::new(Semaphore::new(max_links.min(Semaphore::MAX_PERMITS))),
        });
        Ok(Server {
            ctx,
            or_port,
            ws,
            wss,
            metrics,
        })
    }

    /// The shared context.
    pub fn context(&self) -> &Arc<ServerContext> {
        &self.ctx
    }

    /// The bound addresses.
    pub fn local_addrs(&self) -> BoundAddrs {
        let addr = |l: &TcpListener| l.local_addr().ok();
        BoundAddrs {
            or_port: self.or_port.as_ref().and_then(addr),
            ws: self.ws.as_ref().and_then(addr),
            wss: self.wss.as_ref().and_then(|(l, _)| addr(l)),
            metrics: self.metrics.as_ref().and_then(addr),
        }
    }

    /// Serve until shutdown is signalled; then stop accepting and wait up to
    /// [`SHUTDOWN_GRACE`] for open connections.
    pub async fn run(self) -> Result<(), ServerError> {
        let Server {
            ctx,
            or_port,
            ws,
            wss,
            metrics,
        } = self;
        {
            let keys = ctx.keys.read().unwrap_or_else(PoisonError::into_inner);
            tracing::info!(
                nickname = %ctx.config.nickname,
                fingerprint = %keys.rsa_fingerprint(),
                ed25519 = %keys.ed_identity_public(),
                "relay started"
            );
        }
        let mut tasks = JoinSet::new();
        if let Some(l) = metrics {
            log_listening("metrics", &l);
            tasks.spawn(crate::metrics::serve(
                l,
                Arc::clone(&ctx.metrics),
                ctx.shutdown.clone(),
            ));
        }
        if let Some(l) = or_port {
            log_listening("or_port (Tor TLS)", &l);
            tasks.spawn(accept_loop(l, Transport::Tls, Arc::clone(&ctx)));
        }
        if let Some(l) = ws {
            log_listening("ws", &l);
            tasks.spawn(accept_loop(l, Transport::Ws, Arc::clone(&ctx)));
        }
        if let Some((l, acceptor)) = wss {
            log_listening("wss", &l);
            tasks.spawn(accept_loop(l, Transport::Wss(acceptor), Arc::clone(&ctx)));
        }
        tasks.spawn(rotation_loop(Arc::clone(&ctx)));
        while let Some(done) = tasks.join_next().await {
            done?;
        }
        tracing::info!("relay stopped");
        Ok(())
    }
}

async fn bind_one(what: &'static str, addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { what, addr, source })
}

async fn bind_opt(
    what: &'static str,
    addr: Option<SocketAddr>,
) -> Result<Option<TcpListener>, ServerError> {
    match addr {
        Some(addr) => Ok(Some(bind_one(what, addr).await?)),
        None => Ok(None),
    }
}

fn log_listening(what: &str, l: &TcpListener) {
    match l.local_addr() {
        Ok(addr) => tracing::info!("listening for {what} on {addr}"),
        Err(e) => tracing::warn!("listening for {what} (address unknown: {e})"),
    }
}

/// The transport of a listener.
enum Transport {
    Tls,
    Ws,
    Wss(tokio_rustls::TlsAcceptor),
}

impl Transport {
    fn kind(&self) -> LinkKind {
        match self {
            Transport::Tls => LinkKind::TlsIn,
            Transport::Ws => LinkKind::Ws,
            Transport::Wss(_) => LinkKind::Wss,
        }
    }
}

async fn accept_loop(listener: TcpListener, transport: Transport, ctx: Arc<ServerContext>) {
    let transport = Arc::new(transport);
    let kind = transport.kind();
    let mut conns = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            () = ctx.shutdown.wait() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            a = listener.accept() => a,
        };
        let (tcp, addr) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(kind = kind.as_str(), "accept failed: {e}");
                // Out of descriptors and the like: do not spin.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let peer = ctx.peer(addr);
        let Some(slot) = ctx.try_reserve_link() else {
            ctx.metrics.links_refused.inc();
            tracing::debug!(kind = kind.as_str(), %peer, "link limit reached: closing");
            continue;
        };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(%peer, "cannot set TCP_NODELAY: {e}");
        }
        let ctx = Arc::clone(&ctx);
        let transport = Arc::clone(&transport);
        conns.spawn(async move {
            let _slot = slot;
            let handshake = tokio::time::timeout(
                TRANSPORT_HANDSHAKE_TIMEOUT,
                transport_handshake(&transport, tcp, &ctx),
            );
            let established = tokio::select! {
                () = ctx.shutdown.wait() => return,
                r = handshake => r,
            };
            match established {
                Ok(Ok(Established::Tls(stream))) => handle_tls_connection(*stream, peer, ctx).await,
                Ok(Ok(Established::Ws(ws))) => {
                    handle_ws_connection(*ws, peer, LinkKind::Ws, ctx).await;
                }
                Ok(Ok(Established::Wss(ws))) => {
                    handle_ws_connection(*ws, peer, LinkKind::Wss, ctx).await;
                }
                Ok(Err(e)) => {
                    tracing::debug!(kind = kind.as_str(), %peer, "transport handshake failed: {e}");
                }
                Err(_) => {
                    tracing::debug!(kind = kind.as_str(), %peer, "transport handshake timed out");
                }
            }
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    conns.shutdown().await;
}

enum Established {
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    Ws(Box<WebSocketStream<TcpStream>>),
    Wss(Box<WebSocketStream<tokio_rustls::server::TlsStream<TcpStream>>>),
}

/// The WebSocket limits of the `ws` and `wss` listeners.
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(WS_MAX_MESSAGE_SIZE))
        .max_frame_size(Some(WS_MAX_MESSAGE_SIZE))
}

async fn transport_handshake(
    transport: &Transport,
    tcp: TcpStream,
    ctx: &ServerContext,
) -> std::io::Result<Established> {
    let ws_err = std::io::Error::other;
    Ok(match transport {
        Transport::Tls => Established::Tls(Box::new(ctx.link_tls.accept(tcp).await?)),
        Transport::Ws => Established::Ws(Box::new(
            tokio_tungstenite::accept_async_with_config(tcp, Some(ws_config()))
                .await
                .map_err(ws_err)?,
        )),
        Transport::Wss(acceptor) => {
            let tls = acceptor.accept(tcp).await?;
            Established::Wss(Box::new(
                tokio_tungstenite::accept_async_with_config(tls, Some(ws_config()))
                    .await
                    .map_err(ws_err)?,
            ))
        }
    })
}

/// **Integration point for the link layer**: a Tor link accepted on the ORPort, after the
/// TLS handshake (the peer's VERSIONS cell is next).
///
/// The handler owns the connection until it returns; it must count itself with
/// `ctx.metrics.link_opened(LinkKind::TlsIn)`, end when `ctx.shutdown` fires, and may use
/// [`crate::tls::TlsLinkInfo`] on `stream` for the AUTH0003 exporter, and
/// `ctx.link_tls.certificate()` for the CERTS type 5 certificate. `peer` is the client's
/// address, scrubbed in logs unless `log_client_addresses` is set.
///
/// For now it logs and closes the connection.
pub async fn handle_tls_connection(
    mut stream: tokio_rustls::server::TlsStream<TcpStream>,
    peer: PeerAddr,
    ctx: Arc<ServerContext>,
) {
    let _link = ctx.metrics.link_opened(LinkKind::TlsIn);
    tracing::debug!(%peer, "Tor link accepted; link layer not implemented yet: closing");
    let _ = stream.shutdown().await;
}

/// **Integration point for the link layer**: an in-page OP's WebSocket (`kind` is
/// [`LinkKind::Ws`] or [`LinkKind::Wss`]), after the WebSocket handshake. Cells travel in
/// binary messages (the seed's framing).
///
/// Same contract as [`handle_tls_connection`]. For now it logs and closes the WebSocket.
pub async fn handle_ws_connection<S>(
    mut ws: WebSocketStream<S>,
    peer: PeerAddr,
    kind: LinkKind,
    ctx: Arc<ServerContext>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let _link = ctx.metrics.link_opened(kind);
    tracing::debug!(%peer, kind = kind.as_str(), "WebSocket link accepted; link layer not implemented yet: closing");
    let _ = ws.close(None).await;
}

/// Rotate the onion keys when due, until shutdown.
async fn rotation_loop(ctx: Arc<ServerContext>) {
    loop {
        let next = ctx
            .keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .next_rotation_check();
        let wait = next
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO)
            .min(ROTATION_CHECK_MAX_WAIT);
        tokio::select! {
            () = ctx.shutdown.wait() => return,
            () = tokio::time::sleep(wait) => {}
        }
        let keys = Arc::clone(&ctx.keys);
        let result = tokio::task::spawn_blocking(move || {
            keys.write()
                .unwrap_or_else(PoisonError::into_inner)
                .rotate_if_due(SystemTime::now(), &mut os_rng())
        })
        .await;
        match result {
            Ok(Ok(r)) => {
                if r.rotated {
                    tracing::info!("onion keys rotated");
                }
                if r.dropped_previous {
                    tracing::info!("previous onion keys deleted after their grace period");
                }
            }
            Ok(Err(e)) => {
                tracing::warn!("onion key rotation failed: {e}");
                tokio::select! {
                    () = ctx.shutdown.wait() => return,
                    () = tokio::time::sleep(ROTATION_RETRY) => {}
                }
            }
            Err(e) => {
                tracing::error!("onion key rotation task failed: {e}");
                return;
            }
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::keys::KeyError;
    use crate::testing::{TempDir, test_rng};
    use crate::tls::{TlsLinkInfo, client_config, random_server_name};
    use futures_util::StreamExt;
    use std::os::unix::fs::PermissionsExt;
    use tokio::io::AsyncReadExt;
    use tokio_tungstenite::tungstenite::Message;

    const WAIT: Duration = Duration::from_secs(10);

    fn config(data_dir: &Path, extra_top: &str, listeners: &str) -> Config {
        Config::from_toml_str(&format!(
            "nickname = \"Test\"\ndata_dir = {:?}\n{extra_top}\n[listeners]\n{listeners}\n",
            data_dir.to_str().unwrap()
        ))
        .unwrap()
    }

    async fn get_metrics(addr: SocketAddr) -> String {
        use tokio::io::AsyncWriteExt;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        tokio::time::timeout(WAIT, s.read_to_string(&mut out))
            .await
            .unwrap()
            .unwrap();
        out
    }

    fn sample(text: &str, name: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .map(|v| v.parse().unwrap())
    }

    /// A TLS client as a Tor initiator would connect.
    async fn tls_connect(
        addr: SocketAddr,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(addr).await?;
        tokio_rustls::TlsConnector::from(client_config().unwrap())
            .connect(random_server_name(&mut test_rng()).unwrap(), tcp)
            .await
    }

    #[tokio::test]
    async fn accepts_tls_and_ws_links_serves_metrics_and_shuts_down() {
        let tmp = TempDir::new("server-run");
        let data_dir = tmp.path().join("data");
        let cfg = config(
            &data_dir,
            "metrics = \"127.0.0.1:0\"",
            "ws = \"127.0.0.1:0\"\nor_port = \"127.0.0.1:0\"",
        );
        let (trigger, shutdown) = crate::shutdown::channel();
        let server = Server::start(cfg, shutdown).await.unwrap();
        let addrs = server.local_addrs();
        let (or_port, ws, metrics) = (
            addrs.or_port.unwrap(),
            addrs.ws.unwrap(),
            addrs.metrics.unwrap(),
        );
        assert_eq!(addrs.wss, None);
        assert!(or_port.ip().is_loopback() && or_port.port() != 0);
        let ctx = Arc::clone(server.context());
        // The keys were created in a private data directory.
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data_dir), 0o700);
        assert_eq!(mode(&keys_dir(&data_dir)), 0o700);
        assert_eq!(mode(&keys_dir(&data_dir).join("secret_id_key")), 0o600);
        let running = tokio::spawn(server.run());

        // Tor link: the TLS handshake completes with the link certificate, then the
        // placeholder closes the link.
        let mut tls = tls_connect(or_port).await.unwrap();
        assert_eq!(
            tls.peer_certificate_der(),
            Some(ctx.link_tls.certificate().cert_der())
        );
        let mut rest = Vec::new();
        let read = tokio::time::timeout(WAIT, tls.read_to_end(&mut rest)).await;
        assert!(matches!(read, Ok(Ok(0))), "{read:?}");

        // WebSocket: the handshake completes, then the placeholder closes.
        let tcp = TcpStream::connect(ws).await.unwrap();
        let (mut client, response) = tokio_tungstenite::client_async(format!("ws://{ws}/"), tcp)
            .await
            .unwrap();
        assert_eq!(response.status(), 101);
        let msg = tokio::time::timeout(WAIT, client.next()).await.unwrap();
        assert!(matches!(msg, Some(Ok(Message::Close(_))) | None), "{msg:?}");

        // Both links were counted, and are closed.
        let text = get_metrics(metrics).await;
        assert_eq!(
            sample(&text, "or_links_opened_total{kind=\"tls_in\"}"),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            sample(&text, "or_links_opened_total{kind=\"ws\"}"),
            Some(1.0)
        );
        assert_eq!(ctx.metrics.links_open(LinkKind::TlsIn), 0);
        assert_eq!(ctx.metrics.links_open(LinkKind::Ws), 0);

        // Shutdown stops every task and closes the listeners.
        trigger.trigger();
        tokio::time::timeout(WAIT, running)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        for addr in [or_port, ws, metrics] {
            assert!(TcpStream::connect(addr).await.is_err(), "{addr} still open");
        }
    }

    #[tokio::test]
    async fn wss_listener_speaks_tls_then_websocket() {
        let tmp = TempDir::new("server-wss");
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let cert_path = tmp.path().join("cert.pem");
        let key_path = tmp.path().join("key.pem");
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        let cfg = config(
            &tmp.path().join("data"),
            "",
            &format!(
                "[listeners.wss]\naddr = \"127.0.0.1:0\"\ncert_pem = {:?}\nkey_pem = {:?}",
                cert_path.to_str().unwrap(),
                key_path.to_str().unwrap()
            ),
        );
        let (trigger, shutdown) = crate::shutdown::channel();
        let server = Server::start(cfg, shutdown).await.unwrap();
        let wss = server.local_addrs().wss.unwrap();
        let ctx = Arc::clone(server.context());
        let running = tokio::spawn(server.run());

        let tls = tls_connect(wss).await.unwrap();
        assert_eq!(tls.peer_certificate_der(), Some(cert.der().as_ref()));
        let (mut client, _) =
            tokio_tungstenite::client_async(format!("wss://localhost:{}/", wss.port()), tls)
                .await
                .unwrap();
        let msg = tokio::time::timeout(WAIT, client.next()).await.unwrap();
        assert!(matches!(msg, Some(Ok(Message::Close(_))) | None), "{msg:?}");
        assert_eq!(ctx.metrics.links_open(LinkKind::Wss), 0);
        assert!(
            ctx.metrics
                .encode()
                .unwrap()
                .contains("or_links_opened_total{kind=\"wss\"} 1\n")
        );

        trigger.trigger();
        tokio::time::timeout(WAIT, running)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn link_limit_closes_extra_connections() {
        let tmp = TempDir::new("server-limit");
        let cfg = config(
            &tmp.path().join("data"),
            "[limits]\nmax_links = 1",
            "or_port = \"127.0.0.1:0\"",
        );
        assert_eq!(cfg.limits.max_links, 1);
        let (trigger, shutdown) = crate::shutdown::channel();
        let server = Server::start(cfg, shutdown).await.unwrap();
        let or_port = server.local_addrs().or_port.unwrap();
        let ctx = Arc::clone(server.context());
        let running = tokio::spawn(server.run());

        // The first connection holds the only slot while its TLS handshake is pending.
        let _first = TcpStream::connect(or_port).await.unwrap();
        // Wait until the server has taken the slot.
        tokio::time::timeout(WAIT, async {
            while ctx.try_reserve_link().is_some() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap();
        // The second is closed at once, without a TLS handshake.
        let mut second = TcpStream::connect(or_port).await.unwrap();
        let mut buf = Vec::new();
        let read = tokio::time::timeout(WAIT, second.read_to_end(&mut buf)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
        assert_eq!(ctx.metrics.links_refused.get(), 1);

        // Shutdown does not wait for the pending handshake's timeout.
        trigger.trigger();
        tokio::time::timeout(WAIT, running)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn refuses_to_start_with_an_open_key_directory() {
        let tmp = TempDir::new("server-perms");
        let data_dir = tmp.path().join("data");
        let keys = keys_dir(&data_dir);
        std::fs::create_dir_all(&keys).unwrap();
        std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o755)).unwrap();
        let cfg = config(&data_dir, "", "ws = \"127.0.0.1:0\"");
        let (_trigger, shutdown) = crate::shutdown::channel();
        let err = Server::start(cfg, shutdown).await.unwrap_err();
        assert!(
            matches!(&err, ServerError::Keys(KeyError::InsecurePermissions { path, mode: 0o755, .. }) if *path == keys),
            "{err}"
        );
    }

    #[tokio::test]
    async fn reports_which_listener_cannot_bind() {
        let tmp = TempDir::new("server-bind");
        let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = taken.local_addr().unwrap();
        let cfg = config(&tmp.path().join("data"), "", &format!("ws = \"{addr}\""));
        let (_trigger, shutdown) = crate::shutdown::channel();
        match Server::start(cfg, shutdown).await.unwrap_err() {
            ServerError::Bind {
                what,
                addr: a,
                source,
            } => {
                assert_eq!((what, a), ("ws", addr));
                assert_eq!(source.kind(), std::io::ErrorKind::AddrInUse);
            }
            e => panic!("{e}"),
        }
    }

    #[test]
    fn ws_limits() {
        let c = ws_config();
        assert_eq!(c.max_message_size, Some(WS_MAX_MESSAGE_SIZE));
        assert_eq!(c.max_frame_size, Some(WS_MAX_MESSAGE_SIZE));
    }
}
