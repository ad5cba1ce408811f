//! Routing between links: the messages link tasks send each other, the link manager that
//! opens (or reuses) links to other relays, and the relay keys the link layer uses.
//!
//! A circuit through this relay has a *previous hop* link, whose task owns the circuit (its
//! `OrCircuit`, crypto and streams), and, once extended, a *next hop* link, on which the
//! circuit has another circuit ID chosen by the next link's task. Link tasks talk through
//! their bounded inboxes ([`LinkTx`]):
//!
//! ```text
//!  owner link task (previous hop)                 next link task
//!    EXTEND2 -> extend task: Router::link_to ----> LinkMsg::Create{owner, CREATE2}
//!                                                  allocates an ID, sends CREATE2
//!    LinkMsg::FromNext{CREATED2, next} <--------- CREATED2 read on that ID
//!    RELAY (PassOn) -----------------------------> LinkMsg::ToNext{id, RELAY}
//!    LinkMsg::FromNext{RELAY} <------------------- RELAY read on that ID
//!    DESTROY both ways, with reasons; a link that closes destroys its circuits both ways
//! ```
//!
//! Cells from the next hop are forwarded unchanged; the owner applies the backward layer.
//! A [`Owner::token`] tells a circuit from a later one that reuses its ID, so that a stale
//! answer is never taken for the new circuit's.
//!
//! Every inbox is bounded ([`LINK_INBOX`]). A link task never waits for another's inbox: it
//! queues what it must send, stops reading its socket while the queue is not empty, and goes
//! on serving its own inbox (so two links sending to each other cannot deadlock).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use onion_cell::chancell::{ChanMsg, CircId, DestroyReason};
use onion_cell::relaycell::{End, Resolved, StreamId};
use onion_core::certs::{
    CertError, Ed25519Identity, ExpectedIdentity, RelaySigningMaterial, RsaIdentity,
};
use onion_core::channel::{ChannelError, Initiator, InitiatorConfig, RelayAuth};
use onion_core::relay::OnionKeys;
use onion_net::link::{LinkError, auth0003_exporter, initiator_handshake, tls_binding};
use tokio::sync::mpsc;

use crate::metrics::LinkKind;
use crate::server::{ServerContext, os_rng};

/// Capacity of a link task's inbox, in messages.
pub const LINK_INBOX: usize = 256;
/// Time allowed for the TCP connection to another relay.
pub const RELAY_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed for the link handshake with another relay (after TLS).
pub const RELAY_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// The relay signing material is remade when it expires within this margin.
const MATERIAL_RENEW_MARGIN: u64 = 12 * 3600;

/// Sends to a link task's inbox.
pub type LinkTx = mpsc::Sender<LinkMsg>;

/// A link task's identifier, unique for the process's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LinkId(pub u64);

/// The previous-hop side of a circuit: the owning link task, the circuit's ID there, and
/// the token of that circuit.
#[derive(Debug, Clone)]
pub struct Owner {
    /// The owning link task's inbox.
    pub tx: LinkTx,
    /// The owning link.
    pub link: LinkId,
    /// The circuit's ID on the owning link.
    pub circ: CircId,
    /// Tells this circuit from a later one with the same ID.
    pub token: u64,
}

/// The next-hop side of a circuit: the next link task and the circuit's ID there.
#[derive(Debug, Clone)]
pub struct NextRef {
    /// The next link task's inbox.
    pub tx: LinkTx,
    /// The next link.
    pub link: LinkId,
    /// The circuit's ID on the next link.
    pub circ: CircId,
}

impl NextRef {
    /// Whether `other` names the same link and circuit.
    pub fn same(&self, other: &NextRef) -> bool {
        self.link == other.link && self.circ == other.circ
    }
}

/// What an exit stream task reports to the circuit's owner.
#[derive(Debug)]
pub enum StreamEvent {
    /// The TCP connection is made (answer with CONNECTED).
    Connected {
        /// The address connected to.
        addr: IpAddr,
        /// How long the client may cache it.
        ttl: u32,
    },
    /// Bytes from the exit connection, for the client.
    Data(Vec<u8>),
    /// Bytes from the client were written to the exit connection.
    Flushed(usize),
    /// The stream is over: send this END (after the data already reported).
    End(End),
    /// The answer to a RESOLVE.
    Resolved(Resolved),
}

/// A message to a link task.
#[derive(Debug)]
pub enum LinkMsg {
    /// Open a circuit on this link for `owner`: choose an ID and send `create` (CREATE2 or
    /// CREATE).
    Create {
        /// Who asked.
        owner: Owner,
        /// The create cell.
        create: ChanMsg,
    },
    /// A cell (RELAY, RELAY_EARLY, DESTROY) to send on a circuit this link opened for
    /// another link.
    ToNext {
        /// The circuit's ID on this link.
        circ: CircId,
        /// The cell.
        msg: ChanMsg,
    },
    /// A cell (CREATED*, RELAY, RELAY_EARLY, DESTROY) that arrived on the next link of a
    /// circuit this link owns.
    FromNext {
        /// The circuit's ID on this link.
        circ: CircId,
        /// Its token.
        token: u64,
        /// Where it came from.
        next: NextRef,
        /// The cell.
        msg: ChanMsg,
    },
    /// The extension of a circuit this link owns failed before a create cell was sent.
    ExtendFailed {
        /// The circuit's ID on this link.
        circ: CircId,
        /// Its token.
        token: u64,
        /// Why.
        reason: DestroyReason,
    },
    /// News from an exit or resolve stream of a circuit this link owns.
    Stream {
        /// The circuit's ID on this link.
        circ: CircId,
        /// Its token.
        token: u64,
        /// The stream.
        stream: StreamId,
        /// What happened.
        event: StreamEvent,
    },
    /// From a WS_OP_SOCKS connection to the seed circuit (CID) this link owns
    /// ([`crate::seed`]).
    Seed {
        /// The circuit's ID on this link.
        circ: CircId,
        /// Its token.
        token: u64,
        /// What the SOCKS task asks.
        msg: crate::seed::SeedMsg,
    },
}

/// The relay's keys as the link layer uses them.
#[derive(Clone)]
pub struct RelayKeys {
    /// Identities and onion keys (current and previous) for circuit handshakes.
    pub onion: Arc<OnionKeys>,
    /// Identity keys and certificates for CERTS cells and AUTHENTICATE.
    pub material: Arc<RelaySigningMaterial>,
}

impl std::fmt::Debug for RelayKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayKeys")
            .field("material", &self.material)
            .finish_non_exhaustive()
    }
}

/// Why the relay keys could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayKeysError {
    /// The certificates could not be made.
    #[error("cannot make the relay certificates: {0}")]
    Certs(#[from] CertError),
    /// An onion key is unusable.
    #[error("unusable onion key: {0}")]
    OnionKey(#[from] onion_core::handshake::HandshakeError),
}

/// A link to another relay, open for reuse.
#[derive(Debug, Clone)]
struct RelayLink {
    link: LinkId,
    tx: LinkTx,
    ed: Ed25519Identity,
}

/// The cached [`RelayKeys`] and what they were made from.
struct KeyCache {
    onion_made_from: (SystemTime, Option<SystemTime>),
    onion: Arc<OnionKeys>,
    material: Arc<RelaySigningMaterial>,
}

/// Where and who to extend to, from an EXTEND2 cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtendTarget {
    /// The relay's RSA identity.
    pub rsa: RsaIdentity,
    /// Its Ed25519 identity, if given.
    pub ed: Option<Ed25519Identity>,
    /// Its addresses, in the order to try.
    pub addrs: Vec<SocketAddr>,
}

/// The link manager: links to other relays by RSA identity, IDs, and the relay keys.
#[derive(Default)]
pub struct Router {
    links: Mutex<HashMap<RsaIdentity, RelayLink>>,
    connecting: Mutex<HashMap<RsaIdentity, Arc<tokio::sync::Mutex<()>>>>,
    keys: Mutex<Option<KeyCache>>,
    next_link: AtomicU64,
    next_token: AtomicU64,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("relay_links", &self.relay_link_count())
            .finish_non_exhaustive()
    }
}

/// Seconds since the Unix epoch, now.
pub fn now_unix() -> u64 {
    crate::keys::unix_secs(SystemTime::now())
}

impl Router {
    /// A new link ID.
    pub fn new_link_id(&self) -> LinkId {
        LinkId(self.next_link.fetch_add(1, Ordering::Relaxed))
    }

    /// A new circuit token.
    pub fn new_token(&self) -> u64 {
        self.next_token.fetch_add(1, Ordering::Relaxed)
    }

    /// How many links to relays are registered for reuse.
    pub fn relay_link_count(&self) -> usize {
        self.links
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Register an open link to the relay `rsa` / `ed` for reuse (replacing an older one).
    pub fn register(&self, rsa: RsaIdentity, ed: Ed25519Identity, link: LinkId, tx: LinkTx) {
        self.links
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(rsa, RelayLink { link, tx, ed });
    }

    /// Forget the link `link` (it closed).
    pub fn unregister(&self, rsa: &RsaIdentity, link: LinkId) {
        let mut links = self.links.lock().unwrap_or_else(PoisonError::into_inner);
        if links.get(rsa).is_some_and(|l| l.link == link) {
            links.remove(rsa);
        }
    }

    /// An open link to `rsa` whose Ed25519 identity matches `ed` (if given).
    fn open_link(
        &self,
        rsa: &RsaIdentity,
        ed: Option<&Ed25519Identity>,
    ) -> Option<Result<(LinkId, LinkTx), DestroyReason>> {
        let links = self.links.lock().unwrap_or_else(PoisonError::into_inner);
        let l = links.get(rsa).filter(|l| !l.tx.is_closed())?;
        if ed.is_some_and(|ed| *ed != l.ed) {
            // The relay proved another Ed25519 identity on this link: the request is wrong.
            return Some(Err(DestroyReason::OR_IDENTITY));
        }
        Some(Ok((l.link, l.tx.clone())))
    }

    /// The relay keys, made from the key store (and remade after an onion key rotation,
    /// or when the certificates near their expiry).
    pub fn relay_keys(&self, ctx: &ServerContext) -> Result<RelayKeys, RelayKeysError> {
        let store = ctx.keys.read().unwrap_or_else(PoisonError::into_inner);
        let made_from = (
            store.onion_keys_created(),
            store.previous_onion_keys_retired(),
        );
        let now = now_unix();
        let mut cache = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = cache.as_ref()
            && c.onion_made_from == made_from
            && c.material.expires_unix() > now.saturating_add(MATERIAL_RENEW_MARGIN)
        {
            return Ok(RelayKeys {
                onion: Arc::clone(&c.onion),
                material: Arc::clone(&c.material),
            });
        }
        let current = store.onion_keys();
        let mut onion = OnionKeys::new(
            *store.rsa_fingerprint().as_bytes(),
            *store.ed_identity_public().as_bytes(),
            current.ntor_secret().clone(),
            current.tap().clone(),
        )?;
        if let Some(prev) = store.previous_onion_keys() {
            onion = onion
                .with_previous_ntor(prev.ntor_secret().clone())
                .with_previous_tap(prev.tap().clone())?;
        }
        onion.policy.accept_create_fast_ws = ctx.config.seed.create_fast_ws;
        let material = match cache.as_ref() {
            Some(c) if c.material.expires_unix() > now.saturating_add(MATERIAL_RENEW_MARGIN) => {
                Arc::clone(&c.material)
            }
            _ => Arc::new(RelaySigningMaterial::new(
                store.rsa_identity().clone(),
                store.ed_identity(),
                store.ed_signing().clone(),
                now,
                &mut os_rng(),
            )?),
        };
        let onion = Arc::new(onion);
        *cache = Some(KeyCache {
            onion_made_from: made_from,
            onion: Arc::clone(&onion),
            material: Arc::clone(&material),
        });
        Ok(RelayKeys { onion, material })
    }

    /// A link to the relay `target`: an open one if there is one (with the right
    /// identities), else a new TLS link on which we authenticate as a relay and check that
    /// the peer proves `target`'s identities. The new link's task is spawned and registered.
    ///
    /// Fails with the DESTROY/TRUNCATED reason to report: CONNECTFAILED (no connection, or
    /// a failed handshake), OR_IDENTITY (the relay is someone else), RESOURCELIMIT (no link
    /// slot), INTERNAL (our keys).
    pub async fn link_to(
        &self,
        ctx: &Arc<ServerContext>,
        target: &ExtendTarget,
    ) -> Result<(LinkId, LinkTx), DestroyReason> {
        if let Some(r) = self.open_link(&target.rsa, target.ed.as_ref()) {
            return r;
        }
        // One connection attempt per relay at a time; the others wait and reuse it.
        let gate = {
            let mut c = self
                .connecting
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            Arc::clone(c.entry(target.rsa).or_default())
        };
        let _turn = gate.lock().await;
        let result = match self.open_link(&target.rsa, target.ed.as_ref()) {
            Some(r) => r,
            None => self.connect(ctx, target).await,
        };
        self.connecting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&target.rsa);
        result
    }

    /// Open a new link to `target` (see [`Router::link_to`]).
    async fn connect(
        &self,
        ctx: &Arc<ServerContext>,
        target: &ExtendTarget,
    ) -> Result<(LinkId, LinkTx), DestroyReason> {
        let slot = ctx.try_reserve_link().ok_or(DestroyReason::RESOURCELIMIT)?;
        let keys = self.relay_keys(ctx).map_err(|e| {
            tracing::error!("cannot extend: {e}");
            DestroyReason::INTERNAL
        })?;
        let mut last = None;
        for addr in &target.addrs {
            match self.connect_one(ctx, &keys, target, *addr).await {
                Ok(done) => {
                    let (io, channel, info) = done;
                    let id = self.new_link_id();
                    let (tx, rx) = mpsc::channel(LINK_INBOX);
                    if let Some(ed) = target.ed.or(match info.peer {
                        onion_core::channel::PeerAuth::Authenticated { ed_id, .. } => Some(ed_id),
                        _ => None,
                    }) {
                        self.register(target.rsa, ed, id, tx.clone());
                    }
                    let setup = crate::link::LinkSetup {
                        kind: LinkKind::TlsOut,
                        peer: ctx.peer(*addr),
                        info,
                        id,
                        tx: tx.clone(),
                        rx,
                    };
                    let ctx = Arc::clone(ctx);
                    tokio::spawn(async move {
                        let _slot = slot;
                        let _link = ctx.metrics.link_opened(LinkKind::TlsOut);
                        crate::link::run_link(io, channel, setup, ctx).await;
                    });
                    return Ok((id, tx));
                }
                Err(e) => {
                    tracing::debug!(relay = %target.rsa, "cannot open a link: {e}");
                    last = Some(e);
                }
            }
        }
        Err(match last {
            Some(LinkError::Channel(ChannelError::PeerCerts(CertError::WrongIdentity(_)))) => {
                DestroyReason::OR_IDENTITY
            }
            _ => DestroyReason::CONNECTFAILED,
        })
    }

    /// TCP, TLS and the link handshake with one address of `target`.
    async fn connect_one(
        &self,
        ctx: &Arc<ServerContext>,
        keys: &RelayKeys,
        target: &ExtendTarget,
        addr: SocketAddr,
    ) -> Result<
        (
            tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
            onion_core::channel::Channel,
            onion_core::channel::ChannelInfo,
        ),
        LinkError,
    > {
        let tcp = onion_net::tcp_connect(addr, RELAY_CONNECT_TIMEOUT).await?;
        let stream = tokio::time::timeout(
            RELAY_CONNECT_TIMEOUT,
            ctx.link_tls.connect(tcp, &mut os_rng()),
        )
        .await
        .map_err(|_| LinkError::Timeout(RELAY_CONNECT_TIMEOUT))??;
        let binding = tls_binding(&stream).ok_or(LinkError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the relay presented no TLS certificate",
        )))?;
        let tls_exporter = auth0003_exporter(&stream, keys.material.rsa_id_sha256())
            .map_err(LinkError::Exporter)?;
        let expected = ExpectedIdentity {
            rsa: Some(target.rsa),
            ed25519: target.ed,
        };
        let config = InitiatorConfig::new(binding, expected, Some(addr.ip()));
        let auth = RelayAuth {
            material: &keys.material,
            tls_exporter,
            my_addrs: ctx.my_addrs.clone(),
        };
        let initiator = Initiator::new(config, Some(auth), now_unix(), &mut os_rng())?;
        initiator_handshake(stream, initiator, now_unix, RELAY_HANDSHAKE_TIMEOUT).await
    }
}
