//! The own network's authority (`[authority]`) and the ORs' publication of their descriptors
//! to it (`[publish]`).
//!
//! # Publication
//!
//! An OR with `[publish]` POSTs, at start and then every `publish.interval_secs`, to the
//! authority's HTTP listener ([`PUBLISH_PATH`], `application/json`, at most
//! [`MAX_PUBLICATION`] bytes) a [`Publication`]:
//!
//! ```json
//! { "descriptor": "router ExampleOR 192.0.2.1 9001 0 0\n...", "ws": "ws://192.0.2.1:9080/" }
//! ```
//!
//! `descriptor` is its signed server descriptor (dir-spec §2.1.1, as served over BEGIN_DIR at
//! `/tor/server/authority`); `ws`, optional, its WebSocket listener. The authority verifies
//! every signature and cross-certificate of the descriptor
//! ([`ServerDescriptor::parse`]), its certificates' validity, its age (at most
//! [`MAX_DESCRIPTOR_AGE`], not in the future), and `allow` if configured; a descriptor older
//! than the one it holds for the same RSA identity is ignored. Answers: 200, or 400 with the
//! reason. The `ws` URL is not signed: it is listed only once a check over it proves the
//! descriptor's keys (below).
//!
//! # Health checks
//!
//! Every `check_interval_secs` every OR is checked, [`MAX_CONCURRENT_CHECKS`] at a time, each
//! within
//! [`check_timeout`], with the native OP's library (`onion-op`):
//! - **running**: a Tor link TLS connection to its ORPort, the link handshake proving the
//!   descriptor's RSA and Ed25519 identities, and a CREATE2 ntor circuit answered with the
//!   descriptor's ntor onion key;
//! - **ws**: the same over its WebSocket URL (the link is unbound there, so it is the ntor
//!   answer that proves the URL leads to this OR);
//! - **exit** (if its exit policy accepts anything): a circuit from the authority's own OR
//!   extended (ntor) to it, a RELAY_BEGIN to `check_target` and an HTTP answer to `GET /`.
//!
//! # The relay list
//!
//! After each round a [`RelayList`] is made and signed ([`SignedRelayList::sign`]) with the
//! authority's Ed25519 key (`keys/authority_signing_secret_key.pem`, mode 0600, made on
//! first start), valid for `list_lifetime_secs`. It holds the ORs whose last check found
//! them running: flags `Running`, `Fast`, `Stable`, `Guard`, and `Exit` if the exit check
//! passed; the exit policy summary of the descriptor if it did (`reject 1-65535` otherwise,
//! so that clients do not pick it for a port either); `ws` only if the WebSocket check
//! passed; the bandwidth its descriptor observed (kilobytes per second, at least 1). An OR
//! that fails a check is left out of the next list, within one check period.
//!
//! The list is served over plain HTTP (`GET` [`RELAY_LIST_PATH`] on the authority's HTTP
//! listener, with `Access-Control-Allow-Origin: *` so that pages can read it) and over BEGIN_DIR to the authority's OR at the same path ([`crate::dir`]).
//!
//! # What the authority learns
//!
//! Only what relays publish anyway (descriptors) and whether they answer its checks; its
//! checks are its own circuits, and it sees no client traffic. Its key is what clients trust:
//! whoever holds it decides which relays clients use.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use ed25519_dalek::{SigningKey, VerifyingKey};
use hyper::body::Bytes;
use hyper::{Method, StatusCode};
use onion_core::certs::RsaIdentity;
use onion_core::client::HopTarget;
use onion_core::dir::{RelayFlags, ServerDescriptor};
use onion_core::netdesc::{
    ListError, ListedRelay, RELAY_LIST_PATH, RelayList, SignedRelayList, WebUrl,
};
use onion_core::policy::{IpFamily, PortPolicy};
use onion_op::{HandshakeKind, Link, LinkConfig};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::config::{AuthorityConfig, PublishConfig};
use crate::dir::Document;
use crate::router::now_unix;
use crate::server::ServerContext;
use crate::web::{self, Handler};

/// Where ORs POST their [`Publication`] on the authority's HTTP listener.
pub const PUBLISH_PATH: &str = "/onion/publish";
/// Largest publication accepted, in bytes.
pub const MAX_PUBLICATION: usize = 64 * 1024;
/// Oldest descriptor accepted (and kept: an OR that stops publishing is forgotten after
/// this), seconds.
pub const MAX_DESCRIPTOR_AGE: u64 = 36 * 3600;
/// Most ORs tracked.
pub const MAX_TRACKED: usize = onion_core::netdesc::MAX_RELAYS;
/// Most ORs checked at the same time.
pub const MAX_CONCURRENT_CHECKS: usize = 64;
/// Clock skew tolerated on a descriptor's `published`, seconds.
const PUBLISHED_SKEW: u64 = 3600;
/// Most bytes of an HTTP answer read by an exit check.
const CHECK_ANSWER: usize = 1024;
/// Wait after a failed publication before trying again (at most the interval).
const PUBLISH_RETRY: Duration = Duration::from_secs(2);
/// Most bytes of the authority's answer to a publication.
const PUBLISH_ANSWER: usize = 4096;

/// The time one OR's checks may take: the check interval, but 5 to 30 seconds.
pub fn check_timeout(interval_secs: u64) -> Duration {
    Duration::from_secs(interval_secs.clamp(5, 30))
}

/// What an OR POSTs to [`PUBLISH_PATH`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Publication {
    /// The OR's signed server descriptor.
    pub descriptor: String,
    /// Its WebSocket listener's `ws://` or `wss://` URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ws: Option<String>,
}

/// Why a publication was refused.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The body is not a [`Publication`].
    #[error("not a publication: {0}")]
    Json(String),
    /// The descriptor does not parse or a signature does not verify.
    #[error("descriptor: {0}")]
    Descriptor(onion_core::dir::DirError),
    /// The descriptor is too old, or published in the future.
    #[error("descriptor published at {published}, not within the accepted window (now {now})")]
    Stale {
        /// Its `published`.
        published: u64,
        /// Our time.
        now: u64,
    },
    /// The OR is not in `allow`.
    #[error("relay {0} is not allowed on this network")]
    NotAllowed(RsaIdentity),
    /// `ws` is not a WebSocket URL.
    #[error("ws: not a ws:// or wss:// URL")]
    BadWs,
    /// [`MAX_TRACKED`] ORs are known already.
    #[error("too many relays")]
    Full,
}

/// The last check of an OR.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// When it was made.
    pub at: u64,
    /// TLS link handshake and ntor circuit succeeded.
    pub running: bool,
    /// The same over the WebSocket URL.
    pub ws_ok: bool,
    /// The exit check succeeded.
    pub exit_ok: bool,
    /// The first failure, if any.
    pub error: Option<String>,
}

/// An OR the authority knows.
#[derive(Debug, Clone)]
struct Tracked {
    desc: Arc<ServerDescriptor>,
    ws: Option<WebUrl>,
    verdict: Option<Verdict>,
}

/// The authority's state: the ORs' descriptors and checks, the current signed list.
#[derive(Debug)]
pub struct Authority {
    config: AuthorityConfig,
    key: SigningKey,
    allow: Vec<RsaIdentity>,
    relays: Mutex<BTreeMap<RsaIdentity, Tracked>>,
    list: RwLock<Option<Document>>,
}

impl Authority {
    /// An authority with no OR yet, signing with `key`.
    pub fn new(config: AuthorityConfig, key: SigningKey) -> Self {
        let allow = config
            .allow
            .iter()
            .filter_map(|s| RsaIdentity::from_hex(s))
            .collect();
        Authority {
            config,
            key,
            allow,
            relays: Mutex::default(),
            list: RwLock::default(),
        }
    }

    /// The key clients pin.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// The configuration.
    pub fn config(&self) -> &AuthorityConfig {
        &self.config
    }

    /// The current signed list (the envelope's JSON text), if one was made.
    pub fn document(&self) -> Option<Document> {
        self.list
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The RSA identities known, with their last verdicts.
    pub fn verdicts(&self) -> Vec<(RsaIdentity, String, Option<Verdict>)> {
        self.relays
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(id, t)| (*id, t.desc.nickname().to_owned(), t.verdict.clone()))
            .collect()
    }

    /// Accept a publication (the POST body) at `now`.
    pub fn accept(&self, body: &[u8], now: u64) -> Result<RsaIdentity, PublishError> {
        let p: Publication =
            serde_json::from_slice(body).map_err(|e| PublishError::Json(e.to_string()))?;
        let desc = ServerDescriptor::parse(&p.descriptor).map_err(PublishError::Descriptor)?;
        desc.check_valid_at(now).map_err(PublishError::Descriptor)?;
        let published = desc.published();
        if published > now.saturating_add(PUBLISHED_SKEW)
            || published.saturating_add(MAX_DESCRIPTOR_AGE) < now
        {
            return Err(PublishError::Stale { published, now });
        }
        let id = *desc.rsa_identity();
        if !self.allow.is_empty() && !self.allow.contains(&id) {
            return Err(PublishError::NotAllowed(id));
        }
        let ws = match &p.ws {
            Some(u) => match WebUrl::parse(u) {
                Ok(url) if url.scheme().is_websocket() => Some(url),
                _ => return Err(PublishError::BadWs),
            },
            None => None,
        };
        let mut relays = self.relays.lock().unwrap_or_else(PoisonError::into_inner);
        match relays.get_mut(&id) {
            Some(t) if t.desc.published() > published => {}
            Some(t) => {
                // Same document: keep the verdict; new keys or addresses: check again first.
                if t.desc.digest() != desc.digest() || t.ws != ws {
                    t.verdict = None;
                }
                t.desc = Arc::new(desc);
                t.ws = ws;
            }
            None => {
                if relays.len() >= MAX_TRACKED {
                    return Err(PublishError::Full);
                }
                relays.insert(
                    id,
                    Tracked {
                        desc: Arc::new(desc),
                        ws,
                        verdict: None,
                    },
                );
            }
        }
        Ok(id)
    }

    /// Forget the ORs whose descriptor is older than [`MAX_DESCRIPTOR_AGE`].
    fn expire(&self, now: u64) {
        self.relays
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, t| t.desc.published().saturating_add(MAX_DESCRIPTOR_AGE) >= now);
    }

    /// Record a verdict (if the descriptor checked is still the one held).
    fn record(&self, id: &RsaIdentity, checked: &ServerDescriptor, verdict: Verdict) {
        let mut relays = self.relays.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(t) = relays.get_mut(id)
            && t.desc.digest() == checked.digest()
        {
            t.verdict = Some(verdict);
        }
    }

    /// The list of the ORs found running, published at `now`.
    pub fn relay_list(&self, now: u64) -> RelayList {
        let relays = self.relays.lock().unwrap_or_else(PoisonError::into_inner);
        let listed = relays
            .values()
            .filter_map(|t| {
                let v = t.verdict.as_ref().filter(|v| v.running)?;
                Some(listed_relay(
                    &t.desc,
                    t.ws.as_ref().filter(|_| v.ws_ok),
                    v.exit_ok,
                ))
            })
            .collect();
        RelayList {
            network: self.config.network.clone(),
            published: now,
            valid_until: now.saturating_add(self.config.list_lifetime_secs),
            relays: listed,
        }
    }

    /// Make and sign the list at `now`, and serve it from now on.
    pub fn publish_list(&self, now: u64) -> Result<usize, ListError> {
        let list = self.relay_list(now);
        let n = list.relays.len();
        let signed = SignedRelayList::sign(&list, &self.key)?;
        *self.list.write().unwrap_or_else(PoisonError::into_inner) =
            Some(Document::new(signed.into_bytes()));
        Ok(n)
    }
}

/// The list entry of a checked OR.
fn listed_relay(d: &ServerDescriptor, ws: Option<&WebUrl>, exit_ok: bool) -> ListedRelay {
    let mut flags = [RelayFlags::RUNNING, RelayFlags::FAST, RelayFlags::STABLE]
        .into_iter()
        .fold(RelayFlags::GUARD, RelayFlags::union);
    if exit_ok {
        flags = flags.union(RelayFlags::EXIT);
    }
    let exit_policy = if exit_ok {
        d.exit_policy().summarize(IpFamily::V4)
    } else {
        PortPolicy::reject_all()
    };
    let bw = d.bandwidth();
    let kbps = bw.observed.min(bw.average) / 1000;
    ListedRelay {
        nickname: d.nickname().to_owned(),
        rsa_id: *d.rsa_identity(),
        ed25519_id: *d.ed_identity(),
        ntor_key: *d.ntor_onion_key(),
        tap_key: d.tap_onion_key().cloned(),
        tls: Some(d.or_addr()),
        ws: ws.cloned(),
        bandwidth: u32::try_from(kbps).unwrap_or(u32::MAX).max(1),
        flags,
        exit_policy,
        family: d
            .family()
            .iter()
            .filter_map(|f| RsaIdentity::from_hex(f.strip_prefix('$').unwrap_or(f)))
            .filter(|f| f != d.rsa_identity())
            .take(onion_core::netdesc::MAX_FAMILY)
            .collect(),
    }
}

/// What a circuit needs to reach the OR of `d`.
pub fn hop_target(d: &ServerDescriptor) -> HopTarget {
    let ipv4 = match d.or_addr() {
        SocketAddr::V4(a) => Some(a),
        SocketAddr::V6(_) => None,
    };
    HopTarget {
        ipv4,
        ipv6: None,
        rsa_id: Some(*d.rsa_identity().as_bytes()),
        ed_id: Some(*d.ed_identity().as_bytes()),
        ntor_onion_key: Some(*d.ntor_onion_key()),
        tap_onion_key: d.tap_onion_key().cloned(),
        supports_ntor_v3: true,
    }
}

/// The authority's HTTP answers: the list, and publications.
pub fn http_handler(auth: Arc<Authority>) -> Handler {
    Arc::new(move |req| {
        let auth = Arc::clone(&auth);
        Box::pin(async move {
            let path = req.uri().path().to_owned();
            match (req.method().clone(), path.as_str()) {
                (Method::GET | Method::HEAD, RELAY_LIST_PATH) => match auth.document() {
                    Some(d) => {
                        let mut r = web::response(
                            StatusCode::OK,
                            "application/json",
                            Bytes::copy_from_slice(d.plain()),
                        );
                        // Public and signed: any page may read it.
                        r.headers_mut().insert(
                            hyper::header::ACCESS_CONTROL_ALLOW_ORIGIN,
                            hyper::header::HeaderValue::from_static("*"),
                        );
                        r
                    }
                    None => web::text(StatusCode::SERVICE_UNAVAILABLE, "no relay list yet\n"),
                },
                (Method::POST, PUBLISH_PATH) => {
                    let body = match web::read_body(req, MAX_PUBLICATION).await {
                        Ok(b) => b,
                        Err(r) => return r,
                    };
                    match auth.accept(&body, now_unix()) {
                        Ok(id) => {
                            tracing::debug!(relay = %id, "descriptor accepted");
                            web::text(StatusCode::OK, "accepted\n")
                        }
                        Err(e) => {
                            tracing::info!("publication refused: {e}");
                            web::text(StatusCode::BAD_REQUEST, format!("{e}\n"))
                        }
                    }
                }
                (_, RELAY_LIST_PATH | PUBLISH_PATH) => {
                    web::text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
                }
                _ => web::text(StatusCode::NOT_FOUND, "not found\n"),
            }
        })
    })
}

/// Where the exit check connects: `check_target`, or the authority's HTTP listener.
fn check_target(auth: &Authority, http: SocketAddr) -> (String, u16) {
    auth.config
        .check_target
        .as_ref()
        .and_then(|t| {
            let (h, p) = t.rsplit_once(':')?;
            Some((
                h.trim_matches(|c| c == '[' || c == ']').to_owned(),
                p.parse().ok()?,
            ))
        })
        .unwrap_or_else(|| (http.ip().to_string(), http.port()))
}

/// Our own OR as a first hop of the exit checks.
fn own_target(ctx: &ServerContext) -> Option<(SocketAddr, HopTarget)> {
    let addr = ctx.or_addr?;
    let keys = ctx.keys.read().unwrap_or_else(PoisonError::into_inner);
    // Connect to loopback if the ORPort listens on every address.
    let addr = if addr.ip().is_unspecified() {
        SocketAddr::new(IpAddr::from([127, 0, 0, 1]), addr.port())
    } else {
        addr
    };
    let ipv4 = match addr {
        SocketAddr::V4(a) => Some(a),
        SocketAddr::V6(_) => None::<SocketAddrV4>,
    };
    Some((
        addr,
        HopTarget {
            ipv4,
            ipv6: None,
            rsa_id: Some(*keys.rsa_fingerprint().as_bytes()),
            ed_id: Some(*keys.ed_identity_public().as_bytes()),
            ntor_onion_key: Some(*keys.onion_keys().ntor_public()),
            tap_onion_key: None,
            supports_ntor_v3: true,
        },
    ))
}

/// A link configuration whose every wait is `t`.
fn link_config(t: Duration) -> LinkConfig {
    let mut c = LinkConfig::default();
    c.connect_timeout = t;
    c.create_timeout = t;
    c.extend_timeout = t;
    c.begin_timeout = t;
    c
}

/// Link + ntor circuit over TLS (`ws == None`) or a WebSocket.
async fn check_link(
    target: &HopTarget,
    tls: SocketAddr,
    ws: Option<&WebUrl>,
    t: Duration,
) -> Result<(), String> {
    let link = match ws {
        None => Link::connect_tls(tls, target, link_config(t)).await,
        Some(url) => Link::connect_ws(url.as_str(), target, link_config(t)).await,
    }
    .map_err(|e| e.to_string())?;
    let result = link.create_circuit(target, HandshakeKind::Ntor).await;
    let out = match result {
        Ok(circ) => {
            circ.close().await;
            Ok(())
        }
        Err(e) => Err(format!("ntor CREATE2: {e}")),
    };
    link.close().await;
    out
}

/// A circuit from our own OR to `target`, a stream to `host:port`, an HTTP answer to `GET /`.
async fn check_exit(
    own: &(SocketAddr, HopTarget),
    target: &HopTarget,
    host: &str,
    port: u16,
    t: Duration,
) -> Result<(), String> {
    let link = Link::connect_tls(own.0, &own.1, link_config(t))
        .await
        .map_err(|e| format!("own OR: {e}"))?;
    let result = async {
        let circ = link
            .create_circuit(&own.1, HandshakeKind::Ntor)
            .await
            .map_err(|e| format!("own OR: {e}"))?;
        circ.extend(target, HandshakeKind::Ntor)
            .await
            .map_err(|e| format!("extend: {e}"))?;
        let mut s = circ
            .begin(host, port)
            .await
            .map_err(|e| format!("begin {host}:{port}: {e}"))?;
        let req = format!("GET / HTTP/1.0\r\nHost: {host}\r\n\r\n");
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        s.flush().await.map_err(|e| e.to_string())?;
        let mut got = Vec::with_capacity(16);
        let mut buf = [0u8; 256];
        while got.len() < 8 {
            let n = s.read(&mut buf).await.map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            got.extend_from_slice(buf.get(..n).unwrap_or_default());
            if got.len() > CHECK_ANSWER {
                break;
            }
        }
        circ.close().await;
        if got.starts_with(b"HTTP/1.") {
            Ok(())
        } else {
            Err(format!("{host}:{port}: no HTTP answer through the exit"))
        }
    }
    .await;
    link.close().await;
    result
}

/// Check one OR.
async fn check_relay(
    d: Arc<ServerDescriptor>,
    ws: Option<WebUrl>,
    own: Option<(SocketAddr, HopTarget)>,
    exit_target: (String, u16),
    t: Duration,
    now: u64,
) -> Verdict {
    let target = hop_target(&d);
    let mut v = Verdict {
        at: now,
        ..Verdict::default()
    };
    let run = async {
        if let Err(e) = check_link(&target, d.or_addr(), None, t).await {
            v.error = Some(format!("TLS: {e}"));
            return;
        }
        v.running = true;
        if let Some(url) = &ws {
            match check_link(&target, d.or_addr(), Some(url), t).await {
                Ok(()) => v.ws_ok = true,
                Err(e) => v.error = Some(format!("ws: {e}")),
            }
        }
        let might_exit = !d.exit_policy().rejects_all(IpFamily::V4);
        if might_exit && let Some(own) = &own {
            let is_self = own.1.rsa_id == target.rsa_id;
            if !is_self {
                match check_exit(own, &target, &exit_target.0, exit_target.1, t).await {
                    Ok(()) => v.exit_ok = true,
                    Err(e) => v.error = Some(format!("exit: {e}")),
                }
            }
        }
    };
    // Each step has its own timeout; this bounds the sum.
    if tokio::time::timeout(t.saturating_mul(4), run)
        .await
        .is_err()
    {
        v.running = false;
        v.error = Some("checks timed out".to_owned());
    }
    v
}

/// One round: check every OR at once, record, make the list.
pub async fn check_round(ctx: &ServerContext, auth: &Authority, http: SocketAddr) {
    let now = now_unix();
    auth.expire(now);
    let todo: Vec<(RsaIdentity, Arc<ServerDescriptor>, Option<WebUrl>)> = auth
        .relays
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .map(|(id, t)| (*id, Arc::clone(&t.desc), t.ws.clone()))
        .collect();
    let own = own_target(ctx);
    let target = check_target(auth, http);
    let t = check_timeout(auth.config.check_interval_secs);
    let mut set = tokio::task::JoinSet::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_CHECKS));
    for (id, d, ws) in todo {
        let own = own.clone();
        let target = target.clone();
        let slots = Arc::clone(&slots);
        set.spawn(async move {
            let _slot = slots.acquire_owned().await;
            let v = check_relay(Arc::clone(&d), ws, own, target, t, now).await;
            (id, d, v)
        });
    }
    while let Some(done) = set.join_next().await {
        if let Ok((id, d, v)) = done {
            if let Some(e) = &v.error {
                tracing::info!(relay = %id, nickname = d.nickname(), running = v.running, "check: {e}");
            }
            auth.record(&id, &d, v);
        }
    }
    match auth.publish_list(now_unix()) {
        Ok(n) => tracing::debug!(relays = n, "relay list signed"),
        Err(e) => tracing::error!("cannot sign the relay list: {e}"),
    }
}

/// Serve the authority's HTTP listener and check the ORs every interval, until shutdown.
pub async fn run(ctx: Arc<ServerContext>, auth: Arc<Authority>, http: TcpListener) {
    let http_addr = match http.local_addr() {
        Ok(a) => a,
        Err(e) => {
            tracing::error!("authority HTTP listener: {e}");
            return;
        }
    };
    tracing::info!(
        network = %auth.config.network,
        key = %onion_core::certs::Ed25519Identity::from_bytes(auth.verifying_key().to_bytes()),
        "authority: listening for HTTP on {http_addr}"
    );
    if let Err(e) = auth.publish_list(now_unix()) {
        tracing::error!("cannot sign the relay list: {e}");
    }
    let server = tokio::spawn(web::serve(
        http,
        http_handler(Arc::clone(&auth)),
        ctx.shutdown.clone(),
        "authority HTTP",
    ));
    let interval = Duration::from_secs(auth.config.check_interval_secs);
    loop {
        tokio::select! {
            () = ctx.shutdown.wait() => break,
            () = tokio::time::sleep(interval) => {}
        }
        tokio::select! {
            () = ctx.shutdown.wait() => break,
            () = check_round(&ctx, &auth, http_addr) => {}
        }
    }
    let _ = server.await;
}

/// The WebSocket URL we publish: `publish.ws_url`, or `ws://ADDRESS:PORT/` from the
/// advertised IPv4 address and the bound `ws` listener.
pub fn our_ws_url(
    ctx: &ServerContext,
    publish: &PublishConfig,
    ws: Option<SocketAddr>,
) -> Option<String> {
    if let Some(u) = &publish.ws_url {
        return Some(u.clone());
    }
    let ip = ctx.config.advertised_ipv4()?;
    Some(format!("ws://{ip}:{}/", ws?.port()))
}

/// POST our descriptor to the authority once.
pub async fn publish_once(
    ctx: &ServerContext,
    publish: &PublishConfig,
    ws: Option<SocketAddr>,
) -> Result<(), String> {
    let d = ctx
        .descriptor
        .get()
        .ok_or("no server descriptor (an ORPort and an IPv4 address are needed)")?;
    let body = Publication {
        descriptor: d.text().to_owned(),
        ws: our_ws_url(ctx, publish, ws),
    };
    let body = serde_json::to_vec(&body).map_err(|e| e.to_string())?;
    let t = Duration::from_secs(30);
    let tcp = onion_net::tcp_connect(publish.authority, t)
        .await
        .map_err(|e| format!("{}: {e}", publish.authority))?;
    let (status, answer) = web::http_request(
        tcp,
        Method::POST,
        &publish.authority.to_string(),
        PUBLISH_PATH,
        Some((body, "application/json")),
        PUBLISH_ANSWER,
        t,
    )
    .await
    .map_err(|e| e.to_string())?;
    if status == StatusCode::OK {
        Ok(())
    } else {
        Err(format!(
            "{status}: {}",
            String::from_utf8_lossy(&answer).trim_end()
        ))
    }
}

/// Publish our descriptor at start and every `publish.interval_secs` until shutdown
/// (returns at once without `[publish]`).
pub async fn publish_loop(ctx: Arc<ServerContext>, ws: Option<SocketAddr>) {
    let Some(publish) = ctx.config.publish.clone() else {
        return;
    };
    let interval = Duration::from_secs(publish.interval_secs);
    let mut ok_before = false;
    loop {
        match publish_once(&ctx, &publish, ws).await {
            Ok(()) => {
                if !ok_before {
                    tracing::info!(
                        "descriptor published to the authority at {}",
                        publish.authority
                    );
                }
                ok_before = true;
            }
            Err(e) => {
                tracing::warn!(
                    "cannot publish our descriptor to {}: {e}",
                    publish.authority
                );
                ok_before = false;
            }
        }
        let wait = if ok_before {
            interval
        } else {
            interval.min(PUBLISH_RETRY)
        };
        tokio::select! {
            () = ctx.shutdown.wait() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::config::Config;
    use crate::server::Server;
    use crate::testing::TempDir;

    fn auth_config(allow: &[String]) -> AuthorityConfig {
        AuthorityConfig {
            network: "test-net".into(),
            http: "127.0.0.1:0".parse().unwrap(),
            check_interval_secs: 2,
            list_lifetime_secs: 600,
            check_target: None,
            allow: allow.to_vec(),
        }
    }

    /// A real descriptor of a relay started with an ORPort.
    async fn descriptor(dir: &TempDir) -> (String, RsaIdentity) {
        let cfg = Config::from_toml_str(&format!(
            "nickname = \"pub1\"\ndata_dir = {:?}\naddress = \"127.0.0.1\"\n\
             [listeners]\nor_port = \"127.0.0.1:0\"\n",
            dir.path().join("data").to_string_lossy()
        ))
        .unwrap();
        let (_trigger, shutdown) = crate::shutdown::channel();
        let server = Server::start(cfg, shutdown).await.unwrap();
        let d = server.context().descriptor.get().unwrap();
        let id = server.context().keys.read().unwrap().rsa_fingerprint();
        (d.text().to_owned(), id)
    }

    fn publication(descriptor: &str, ws: Option<&str>) -> Vec<u8> {
        serde_json::to_vec(&Publication {
            descriptor: descriptor.to_owned(),
            ws: ws.map(str::to_owned),
        })
        .unwrap()
    }

    #[tokio::test]
    async fn publications_are_verified() {
        let dir = TempDir::new("authority");
        let (text, id) = descriptor(&dir).await;
        let key = SigningKey::from_bytes(&[3u8; 32]);
        let auth = Authority::new(auth_config(&[]), key.clone());
        let now = now_unix();

        let got = auth.accept(&publication(&text, Some("ws://127.0.0.1:1/")), now);
        assert_eq!(got.unwrap(), id);
        // Known but not checked yet: not listed.
        assert!(auth.relay_list(now).relays.is_empty());
        let d = ServerDescriptor::parse(&text).unwrap();
        let verdict = |ws_ok, exit_ok| Verdict {
            at: now,
            running: true,
            ws_ok,
            exit_ok,
            error: None,
        };
        auth.record(&id, &d, verdict(false, false));
        let list = auth.relay_list(now);
        let r = list.relays.first().unwrap();
        assert_eq!((r.nickname.as_str(), r.rsa_id), ("pub1", id));
        assert!(r.ws.is_none(), "ws not checked: not listed");
        assert!(!r.flags.contains(RelayFlags::EXIT));
        assert_eq!(list.valid_until, now + 600);
        auth.record(&id, &d, verdict(true, false));
        let list = auth.relay_list(now);
        assert_eq!(
            list.relays.first().unwrap().ws.as_ref().map(WebUrl::as_str),
            Some("ws://127.0.0.1:1/")
        );
        // The signed list verifies with the authority's key.
        auth.publish_list(now).unwrap();
        let doc = auth.document().unwrap();
        let signed = std::str::from_utf8(doc.plain()).unwrap();
        let verified = SignedRelayList::verify(signed, &key.verifying_key(), now, 0).unwrap();
        assert_eq!(verified, list);

        // A changed byte breaks the descriptor's signatures.
        let tampered = text.replacen("pub1", "pub2", 1);
        assert!(matches!(
            auth.accept(&publication(&tampered, None), now),
            Err(PublishError::Descriptor(_))
        ));
        assert!(matches!(
            auth.accept(&publication(&text, Some("http://127.0.0.1:1/")), now),
            Err(PublishError::BadWs)
        ));
        assert!(matches!(
            auth.accept(b"{\"descriptor\": 1}", now),
            Err(PublishError::Json(_))
        ));
        assert!(matches!(
            auth.accept(&publication(&text, None), now + MAX_DESCRIPTOR_AGE + 60),
            Err(PublishError::Stale { .. })
        ));
        // Not in `allow`.
        let other = Authority::new(auth_config(&["00".repeat(20)]), key);
        assert!(matches!(
            other.accept(&publication(&text, None), now),
            Err(PublishError::NotAllowed(_))
        ));
        // The same descriptor with another ws URL must be checked again.
        auth.accept(&publication(&text, Some("ws://127.0.0.1:2/")), now)
            .unwrap();
        assert!(auth.relay_list(now).relays.is_empty());
    }
}
