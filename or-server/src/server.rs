//! The running relay: listeners, accept loops, key rotation, shutdown.
//!
//! [`Server::start`] loads (or creates) the keys, makes the link certificate and binds every
//! configured socket; [`Server::run`] accepts connections until the [`Shutdown`] signal,
//! then stops accepting and gives open connections [`SHUTDOWN_GRACE`] to finish.
//!
//! Each accepted connection gets its transport handshake (TLS, WebSocket, or both) here,
//! under [`TRANSPORT_HANDSHAKE_TIMEOUT`] and the `limits.max_links` budget, and is then
//! handed to the link layer through [`handle_tls_connection`] or [`handle_ws_connection`]:
//! the two integration points, which run the responder's link handshake and then the link
//! task ([`crate::link`]).
//!
//! Over WebSocket (`ws://` and `wss://` alike) the link handshake is *unbound*
//! ([`TlsBinding::None`]): a browser cannot see the `wss` certificate to check a CERTS type 5
//! certificate for it, so the responder certifies no TLS certificate, offers no
//! authentication (WebSocket peers are always clients), and the client authenticates hop 1
//! by its ntor onion key in CREATE2 instead (see `onion_core::channel`).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use onion_core::channel::{Responder, ResponderConfig, TlsBinding};
use onion_core::policy::{ExitGuard, ExitPolicy, PolicyError};
use onion_net::link::{
    DEFAULT_HANDSHAKE_TIMEOUT, binding_for_cert, no_exporter, responder_handshake, tls_exporter,
};
use onion_net::ws::WsStream;
pub use onion_net::ws::{WS_MAX_MESSAGE_SIZE, ws_config};
use rand_core::UnwrapErr;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_tungstenite::WebSocketStream;

use crate::config::Config;
use crate::descriptor::{DescriptorError, DescriptorSlot};
use crate::dir::DIR_RESPONSE_BUDGET;
use crate::dircache::DirCache;
use crate::keys::{KeyError, KeyStore, RotationPolicy, ensure_private_dir};
use crate::link::{LinkSetup, run_link};
use crate::logging::PeerAddr;
use crate::metrics::{LinkKind, Metrics};
use crate::router::{LINK_INBOX, Router, now_unix};
use crate::shutdown::Shutdown;
use crate::tls::{LinkCertificate, LinkTls, TlsError, wss_server_config};

/// Time allowed for a connection's TLS and/or WebSocket handshake.
pub const TRANSPORT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Time open connections get to finish after shutdown is signalled; then they are aborted.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Time allowed for the link handshake (VERSIONS ... NETINFO) after the transport's.
pub const LINK_HANDSHAKE_TIMEOUT: std::time::Duration = DEFAULT_HANDSHAKE_TIMEOUT;
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
    /// `exit.policy` does not parse.
    #[error("exit.policy: {0}")]
    ExitPolicy(#[from] PolicyError),
    /// Our server descriptor could not be made.
    #[error("server descriptor: {0}")]
    Descriptor(#[from] DescriptorError),
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
    /// Links to other relays, routing IDs, the relay keys as the link layer uses them.
    pub router: Router,
    /// The exit policy and internal-address guard, from `[exit]`.
    pub exit_guard: Arc<ExitGuard>,
    /// Our addresses, for NETINFO cells: `address` if it is an IP address, else the
    /// listeners' addresses that are not unspecified.
    pub my_addrs: Vec<IpAddr>,
    /// The bound ORPort (Tor link TLS) listener's address, if there is one.
    pub or_addr: Option<SocketAddr>,
    /// When the relay started (for the descriptor's `uptime`).
    pub started: SystemTime,
    /// Our current server descriptor ([`crate::descriptor`]).
    pub descriptor: DescriptorSlot,
    /// The directory cache ([`crate::dircache`]); empty without `[directory]`.
    pub dir_cache: DirCache,
    /// Bytes of directory answers assembled per request, in flight (see [`crate::dir`]).
    pub dir_budget: Arc<Semaphore>,
    /// The seed's fake domain associations ([`crate::seed`]).
    pub seed: crate::seed::SeedState,
    /// The own network's authority (`[authority]`), serving its relay list over BEGIN_DIR.
    pub authority: Option<Arc<crate::authority::Authority>>,
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
    /// The seed's WS_OP_SOCKS listener (`[seed] ws_op_socks`).
    pub ws_op_socks: Option<SocketAddr>,
    /// The authority's HTTP listener (`[authority] http`).
    pub authority_http: Option<SocketAddr>,
}

/// A relay whose sockets are bound, ready to [`Server::run`].
pub struct Server {
    ctx: Arc<ServerContext>,
    or_port: Option<TcpListener>,
    ws: Option<TcpListener>,
    wss: Option<(TcpListener, tokio_rustls::TlsAcceptor)>,
    metrics: Option<TcpListener>,
    ws_op_socks: Option<TcpListener>,
    authority_http: Option<TcpListener>,
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
        let ws_op_socks = bind_opt("ws_op_socks", config.seed.ws_op_socks).await?;
        let authority_http =
            bind_opt("authority.http", config.authority.as_ref().map(|a| a.http)).await?;
        let authority = match &config.authority {
            Some(a) => {
                let key = crate::keys::load_or_create_authority_key(keys.dir(), &mut os_rng())?;
                Some(Arc::new(crate::authority::Authority::new(a.clone(), key)))
            }
            None => None,
        };
        let max_links = usize::try_from(config.limits.max_links).unwrap_or(usize::MAX);
        let exit_guard = Arc::new(ExitGuard {
            policy: ExitPolicy::parse_config(&config.exit.policy)?,
            allow_internal: config.exit.allow_internal,
        });
        let my_addrs = my_addrs(&config);
        let or_addr = or_port.as_ref().and_then(|l| l.local_addr().ok());
        let ctx = Arc::new(ServerContext {
            config,
            keys: Arc::new(RwLock::new(keys)),
            link_tls,
            metrics: Arc::new(Metrics::new()),
            shutdown,
            router: Router::default(),
            exit_guard,
            my_addrs,
            or_addr,
            started: SystemTime::now(),
            descriptor: DescriptorSlot::default(),
            dir_cache: DirCache::default(),
            dir_budget: Arc::new(Semaphore::new(DIR_RESPONSE_BUDGET)),
            seed: crate::seed::SeedState::default(),
            authority,
            link_slots: Arc::new(Semaphore::new(max_links.min(Semaphore::MAX_PERMITS))),
        });
        // Make the certificates now rather than at the first link.
        ctx.router
            .relay_keys(&ctx)
            .map_err(|e| ServerError::Keys(KeyError::Generate(relay_keys_error(&e))))?;
        // And our descriptor, if we can advertise an ORPort.
        if or_addr.is_some() {
            match ctx.config.advertised_ipv4() {
                Some(_) => {
                    crate::descriptor::refresh(&ctx, now_unix(), 0)?;
                }
                None => tracing::warn!(
                    "no IPv4 address to advertise (address, or or_port on a specific IPv4 \
                     address): no server descriptor"
                ),
            }
        }
        Ok(Server {
            ctx,
            or_port,
            ws,
            wss,
            metrics,
            ws_op_socks,
            authority_http,
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
            ws_op_socks: self.ws_op_socks.as_ref().and_then(addr),
            authority_http: self.authority_http.as_ref().and_then(addr),
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
            ws_op_socks,
            authority_http,
        } = self;
        let ws_addr = ws.as_ref().and_then(|l| l.local_addr().ok());
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
        if let Some(l) = ws_op_socks {
            log_listening("ws_op_socks (the seed's SOCKS5 to in-page OPs)", &l);
            tasks.spawn(crate::ws_op_socks::serve(l, Arc::clone(&ctx)));
        }
        tasks.spawn(rotation_loop(Arc::clone(&ctx)));
        tasks.spawn(crate::descriptor::run(Arc::clone(&ctx)));
        tasks.spawn(crate::dircache::run(Arc::clone(&ctx)));
        if let (Some(auth), Some(l)) = (ctx.authority.clone(), authority_http) {
            tasks.spawn(crate::authority::run(Arc::clone(&ctx), auth, l));
        }
        tasks.spawn(crate::authority::publish_loop(Arc::clone(&ctx), ws_addr));
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

/// The next connection on `listener`, `None` at shutdown; meanwhile, finished connection tasks
/// are reaped from `conns`. A failed accept is logged (`what` names the listener) and retried
/// after a pause.
pub(crate) async fn accept_next(
    listener: &TcpListener,
    shutdown: &Shutdown,
    conns: &mut JoinSet<()>,
    what: &str,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        let accepted = tokio::select! {
            () = shutdown.wait() => return None,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            a = listener.accept() => a,
        };
        match accepted {
            Ok(a) => return Some(a),
            Err(e) => {
                tracing::warn!("{what}: accept failed: {e}");
                // Out of descriptors and the like: do not spin.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn accept_loop(listener: TcpListener, transport: Transport, ctx: Arc<ServerContext>) {
    let transport = Arc::new(transport);
    let kind = transport.kind();
    let mut conns = JoinSet::new();
    while let Some((tcp, addr)) =
        accept_next(&listener, &ctx.shutdown, &mut conns, kind.as_str()).await
    {
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

/// Our addresses for NETINFO (see [`ServerContext::my_addrs`]).
fn my_addrs(config: &Config) -> Vec<IpAddr> {
    if let Some(ip) = config
        .address
        .as_deref()
        .and_then(|a| a.parse::<IpAddr>().ok())
    {
        return vec![ip];
    }
    let mut out: Vec<IpAddr> = Vec::new();
    let l = &config.listeners;
    for addr in [l.or_port, l.ws, l.wss.as_ref().map(|w| w.addr)]
        .into_iter()
        .flatten()
    {
        let ip = addr.ip();
        if !ip.is_unspecified() && !out.contains(&ip) {
            out.push(ip);
        }
    }
    out
}

fn relay_keys_error(e: &crate::router::RelayKeysError) -> &'static str {
    match e {
        crate::router::RelayKeysError::Certs(_) => "the relay certificates",
        _ => "the circuit handshake keys",
    }
}

enum Established {
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    Ws(Box<WebSocketStream<TcpStream>>),
    Wss(Box<WebSocketStream<tokio_rustls::server::TlsStream<TcpStream>>>),
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
/// Runs the responder's link handshake (CERTS type 5 certifies our link certificate;
/// relays may authenticate with AUTHENTICATE, bound by the TLS exporter), then the link task
/// until the link closes or `ctx.shutdown` fires. Counted in `or_links_open{kind="tls_in"}`.
/// `peer` is the client's address, scrubbed in logs unless `log_client_addresses` is set.
pub async fn handle_tls_connection(
    stream: tokio_rustls::server::TlsStream<TcpStream>,
    peer: PeerAddr,
    ctx: Arc<ServerContext>,
) {
    let _link = ctx.metrics.link_opened(LinkKind::TlsIn);
    let peer_ip = Some(peer.addr().ip());
    let binding = binding_for_cert(Some(ctx.link_tls.certificate().cert_der()));
    run_responder(
        stream,
        binding,
        peer_ip,
        peer,
        LinkKind::TlsIn,
        ctx,
        tls_exporter,
    )
    .await;
}

/// **Integration point for the link layer**: an in-page OP's WebSocket (`kind` is
/// [`LinkKind::Ws`] or [`LinkKind::Wss`]), after the WebSocket handshake. Cells travel in
/// binary messages (the seed's framing), read as a byte stream ([`WsStream`]).
///
/// Runs the responder's link handshake unbound ([`TlsBinding::None`], see the module
/// docs), then the link task. Same contract as [`handle_tls_connection`].
pub async fn handle_ws_connection<S>(
    ws: WebSocketStream<S>,
    peer: PeerAddr,
    kind: LinkKind,
    ctx: Arc<ServerContext>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let _link = ctx.metrics.link_opened(kind);
    let peer_ip = Some(peer.addr().ip());
    run_responder(
        WsStream::new(ws),
        TlsBinding::None,
        peer_ip,
        peer,
        kind,
        ctx,
        no_exporter,
    )
    .await;
}

/// The responder's link handshake on an accepted link, then its link task.
async fn run_responder<IO, E>(
    io: IO,
    binding: TlsBinding,
    peer_ip: Option<IpAddr>,
    peer: PeerAddr,
    kind: LinkKind,
    ctx: Arc<ServerContext>,
    exporter: E,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    E: Fn(&IO, &onion_core::channel::ExporterRequest) -> Result<[u8; 32], TlsError>,
{
    let keys = match ctx.router.relay_keys(&ctx) {
        Ok(k) => k,
        Err(e) => {
            tracing::error!("cannot answer a link handshake: {e}");
            return;
        }
    };
    let config = ResponderConfig::new(binding, peer_ip, ctx.my_addrs.clone());
    let responder = match Responder::new(config, &keys.material, now_unix(), &mut os_rng()) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("cannot answer a link handshake: {e}");
            return;
        }
    };
    let handshake = responder_handshake(io, responder, exporter, now_unix, LINK_HANDSHAKE_TIMEOUT);
    let done = tokio::select! {
        () = ctx.shutdown.wait() => return,
        r = handshake => r,
    };
    let (io, channel, info) = match done {
        Ok(d) => d,
        Err(e) => {
            tracing::debug!(%peer, kind = kind.as_str(), "link handshake failed: {e}");
            return;
        }
    };
    let (tx, rx) = mpsc::channel(LINK_INBOX);
    let setup = LinkSetup {
        kind,
        peer,
        info,
        id: ctx.router.new_link_id(),
        tx,
        rx,
    };
    run_link(io, channel, setup, ctx).await;
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
    use onion_core::certs::ExpectedIdentity;
    use onion_core::channel::{ChannelInfo, Initiator, InitiatorConfig, PeerAuth};
    use onion_net::link::initiator_handshake;
    use std::os::unix::fs::PermissionsExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A client's link handshake with the relay of `ctx`.
    async fn link_handshake<IO: AsyncRead + AsyncWrite + Unpin>(
        io: IO,
        binding: TlsBinding,
        ctx: &ServerContext,
    ) -> (IO, ChannelInfo) {
        let expected = {
            let k = ctx.keys.read().unwrap();
            ExpectedIdentity {
                rsa: Some(k.rsa_fingerprint()),
                ed25519: Some(k.ed_identity_public()),
            }
        };
        let config = InitiatorConfig::new(binding, expected, None);
        let init = Initiator::new(config, None, now_unix(), &mut test_rng()).unwrap();
        let (io, _, info) = initiator_handshake(io, init, now_unix, WAIT).await.unwrap();
        (io, info)
    }

    /// What a client learns of the relay: authenticated over TLS, claimed over WebSocket.
    fn relay_ids(ctx: &ServerContext, tls: bool) -> PeerAuth {
        let k = ctx.keys.read().unwrap();
        let (rsa_id, ed_id) = (k.rsa_fingerprint(), k.ed_identity_public());
        if tls {
            PeerAuth::Authenticated { rsa_id, ed_id }
        } else {
            PeerAuth::CertifiedNotBound { rsa_id, ed_id }
        }
    }

    async fn wait_links(ctx: &ServerContext, kind: LinkKind, n: i64) {
        let r = tokio::time::timeout(WAIT, async {
            while ctx.metrics.links_open(kind) != n {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        assert!(
            r.is_ok(),
            "{} links open: {}",
            kind.as_str(),
            ctx.metrics.links_open(kind)
        );
    }

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

        // Tor link: the TLS handshake completes with the link certificate, then the link
        // handshake proves the relay's identities, bound to that certificate.
        let tls = tls_connect(or_port).await.unwrap();
        assert_eq!(
            tls.peer_certificate_der(),
            Some(ctx.link_tls.certificate().cert_der())
        );
        let binding = onion_net::link::tls_binding(&tls).unwrap();
        let (tls, info) = link_handshake(tls, binding, &ctx).await;
        assert_eq!(info.peer, relay_ids(&ctx, true));
        wait_links(&ctx, LinkKind::TlsIn, 1).await;
        drop(tls);
        wait_links(&ctx, LinkKind::TlsIn, 0).await;

        // WebSocket: the WebSocket handshake, then an unbound link handshake.
        let tcp = TcpStream::connect(ws).await.unwrap();
        let (client, response) = tokio_tungstenite::client_async(format!("ws://{ws}/"), tcp)
            .await
            .unwrap();
        assert_eq!(response.status(), 101);
        let (mut client, info) =
            link_handshake(WsStream::new(client), TlsBinding::None, &ctx).await;
        assert_eq!(info.peer, relay_ids(&ctx, false));
        wait_links(&ctx, LinkKind::Ws, 1).await;
        client.shutdown().await.unwrap();
        wait_links(&ctx, LinkKind::Ws, 0).await;

        // Garbage instead of VERSIONS: the link is closed.
        let mut tls = tls_connect(or_port).await.unwrap();
        tls.write_all(&[0, 0, 3, 0, 0]).await.unwrap();
        tls.flush().await.unwrap();
        let mut rest = Vec::new();
        let read = tokio::time::timeout(WAIT, tls.read_to_end(&mut rest)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");

        // Both links were counted, and are closed.
        let text = get_metrics(metrics).await;
        assert_eq!(
            sample(&text, "or_links_opened_total{kind=\"tls_in\"}"),
            Some(2.0),
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
        let (client, _) =
            tokio_tungstenite::client_async(format!("wss://localhost:{}/", wss.port()), tls)
                .await
                .unwrap();
        // Over wss, too, the link handshake is unbound.
        let (client, info) = link_handshake(WsStream::new(client), TlsBinding::None, &ctx).await;
        assert_eq!(info.peer, relay_ids(&ctx, false));
        wait_links(&ctx, LinkKind::Wss, 1).await;
        drop(client);
        wait_links(&ctx, LinkKind::Wss, 0).await;
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

    #[test]
    fn netinfo_addresses() {
        let cfg = |top: &str, listeners: &str| {
            Config::from_toml_str(&format!(
                "nickname = \"a\"\ndata_dir = \"d\"\n{top}\n[listeners]\n{listeners}\n"
            ))
            .unwrap()
        };
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            my_addrs(&cfg("address = \"192.0.2.1\"", "ws = \"127.0.0.1:1\"")),
            [ip("192.0.2.1")]
        );
        // A host name says nothing: the listeners' addresses, without the unspecified one.
        assert_eq!(
            my_addrs(&cfg(
                "address = \"relay.example.net\"",
                "ws = \"0.0.0.0:1\"\nor_port = \"198.51.100.2:2\""
            )),
            [ip("198.51.100.2")]
        );
    }
}
