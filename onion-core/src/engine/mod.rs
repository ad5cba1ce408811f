//! The client engine (the OP's brain), sans-IO: bootstrap, path selection, a circuit pool and
//! user streams, driven by the native OP (`onion-op`, tokio) and the browser OP (`op-wasm`)
//! alike. Drivers contain no protocol logic: they open the transports the engine asks for,
//! move bytes, keep one timer, and hand events to the user.
//!
//! # Driving the engine
//!
//! ```text
//! let mut engine = Engine::new(network, EngineConfig::default(), rng, now_ms())?;
//! loop {
//!     // after EVERY call into the engine:
//!     while let Some(a) = engine.poll_action() {
//!         match a {
//!             Action::Connect { conn, transport } => open(conn, transport),   // WebSocket or TLS
//!             Action::Send { conn, data } => write(conn, data),               // in order
//!             Action::Close { conn } => close(conn),
//!         }
//!     }
//!     while let Some(e) = engine.poll_event() { deliver(e) }
//!     sleep_until(engine.poll_timeout());                                   // one timer
//!     // then one of:
//!     engine.on_connected(conn, now_ms(), tls_binding);   // TlsBinding::None for WebSocket
//!     engine.on_data(conn, now_ms(), &bytes);
//!     engine.on_closed(conn, now_ms(), "reason");          // also: a Connect that failed
//!     engine.handle_timeout(now_ms());
//!     engine.connect(now_ms(), "example.com", 443, Some("isolation key"))?;
//!     engine.stream_write(now_ms(), stream, &bytes)?;      // may take fewer: wait StreamWritable
//!     engine.stream_consumed(now_ms(), stream, n);         // the user read n delivered bytes
//! }
//! ```
//!
//! Time is [`NowMs`], wall-clock milliseconds since the Unix epoch passed in by the driver on
//! every call (the engine never reads a clock); the RNG is owned by the engine.
//!
//! # What it does
//!
//! 1. **Links.** Hop 1 of every circuit is an entry OR of the [`NetworkDescription`](crate::netdesc::NetworkDescription)
//!    (or `pin_first`): the engine asks for a WebSocket (`ws` URL, when
//!    [`Transports::ws`]) or TLS (`tls` address, when [`Transports::tls`]) connection to it,
//!    runs the client link handshake ([`Initiator`](crate::channel::Initiator)) with the
//!    [`TlsBinding`](crate::channel::TlsBinding) the driver reports, and multiplexes circuits
//!    on the open [`Channel`](crate::channel::Channel). Over TLS the link must prove the entry's
//!    RSA identity; over WebSocket the identity is only claimed, and the CREATE2 handshake with
//!    the entry's **pinned ntor key** authenticates it. An entry that fails (connection, link,
//!    circuit) is avoided for a while and another one is used.
//! 2. **Bootstrap.** A one-hop circuit to the entry (or to the own network's authority OR,
//!    if the description names one), a BEGIN_DIR stream and an HTTP/1.0 GET
//!    ([`crate::http`]):
//!    - own network: [`RELAY_LIST_PATH`](crate::netdesc::RELAY_LIST_PATH), verified with the
//!      pinned authority key, the network name and the time
//!      ([`NetworkDescription::verify_relay_list`](crate::netdesc::NetworkDescription::verify_relay_list));
//!    - Tor network: `/tor/status-vote/current/consensus-microdesc.z`, `/tor/keys/all.z`, then
//!      `/tor/micro/d/<digests>.z` in batches; the consensus must carry valid signatures of
//!      more than half of the configured authorities and be live; microdescriptors are
//!      matched by digest. Deflated bodies (`.z`) are inflated with a size bound.
//!
//!    Progress is reported with [`Event::Bootstrap`], then [`Event::Ready`] (or
//!    [`Event::BootstrapFailed`]). The directory is fetched again before it expires.
//! 3. **Circuits.** [`select_path`](crate::path::select_path) with hop 1 = the entry, the
//!    best handshake per hop (ntor-v3 > ntor > TAP, CREATE_FAST_WS on hop 1 only with
//!    [`EngineConfig::create_fast_ws`]), distinct /16 subnets unless every relay is on a
//!    loopback address (a local test network). Each hop has a deadline from the
//!    [`BuildTimeEstimator`](crate::path::BuildTimeEstimator) (initially
//!    [`EngineConfig::hop_timeout_ms`]); a hop that misses it is replaced by another relay and
//!    the build retried at once.
//!    With [`EngineConfig::use_relay_info`], TAP hops after the first get their onion skin
//!    and `g^xy` from the entry OR of the association over RELAY_INFO (module `relay_info`;
//!    it hands those hops' keys to that OR).
//! 4. **Pool.** With [`EngineConfig::one_circuit`], `pool_size` clean exit circuits are kept
//!    ready and renewed every `circuit_keepalive_ms`; a circuit that carried a stream is
//!    *dirty* and gets no new streams after `circuit_lifetime_ms`. Without it, every stream
//!    gets a fresh circuit.
//! 5. **Streams.** [`Engine::connect`] (RELAY_BEGIN) and [`Engine::resolve`] (RELAY_RESOLVE)
//!    attach to a circuit whose exit accepts the port and whose isolation key is the
//!    stream's (streams with different keys never share a circuit). Data flows with
//!    [`Engine::stream_write`] and [`Event::StreamData`]; the driver reports what the user read
//!    with [`Engine::stream_consumed`], which paces stream SENDMEs, so a slow reader slows the
//!    exit down. END reasons become a [`StreamError`]; when a circuit dies its streams end with
//!    [`StreamError::CircuitFailed`] and new streams go to a new circuit.
//!
//! # API summary
//!
//! | call | what |
//! |---|---|
//! | [`Engine::new`] | check the config, start the bootstrap (a [`Action::Connect`] is queued) |
//! | [`Engine::on_connected`] / [`Engine::on_data`] / [`Engine::on_closed`] | transport callbacks |
//! | [`Engine::poll_timeout`] / [`Engine::handle_timeout`] | the one timer |
//! | [`Engine::poll_action`] | [`Action`]s; consecutive sends on one connection come merged |
//! | [`Engine::poll_event`] | [`Event`]s for the user |
//! | [`Engine::connect`] / [`Engine::resolve`] | open a user stream ([`StreamHandle`]); before [`Event::Ready`] it waits; after a failed bootstrap: [`EngineError::NotReady`] until the retry |
//! | [`Engine::stream_write`] | may take fewer bytes (0 before CONNECTED); then wait for [`Event::StreamWritable`] |
//! | [`Engine::stream_consumed`] | the user read delivered bytes: paces stream SENDMEs |
//! | [`Engine::stream_close`] | RELAY_END (DONE); no event follows |
//! | [`Engine::new_identity`] | idle circuits closed; new streams only on circuits built after |
//! | [`Engine::circuits`], [`Engine::is_ready`], [`Engine::relay_count`] | state for user interfaces |
//! | [`Engine::close`] | every stream ends ([`StreamError::EngineClosed`]), DESTROYs, [`Action::Close`]s |
//! | [`Engine::associate`] / [`Engine::dissociate`] / [`Engine::associated_domain`] | the seed's iAnonym mode: a one-hop circuit (CID) bound to a fake domain; RELAY_WS requests from the OR's WS_OP_SOCKS side are served through exit circuits (module `seed`) |
//!
//! [`StreamError::socks5_reply`] maps a stream error to a SOCKS5 reply code.
//!
//! # Failures and retries
//!
//! - An entry whose connection or link handshake fails (or times out after
//!   [`EngineConfig::connect_timeout_ms`]), or whose hop-1 handshake fails (a different ntor key
//!   than the pinned one, DESTROY), is avoided for a minute; the next circuit uses another entry.
//!   A link that closes after it opened just fails its circuits (the next one reconnects).
//! - A relay that misses its hop deadline is avoided for ten minutes and replaced at once.
//! - Failed pool builds back off exponentially (0.5 s to 60 s); a stream gets at most
//!   [`EngineConfig::build_attempts`] circuits, then ends with [`StreamError::NoCircuit`].
//! - A refused directory document (bad signature, expired, wrong network, too few consensus
//!   signatures) fails the bootstrap with [`Event::BootstrapFailed`] (streams waiting for it end);
//!   it is retried after a minute. A failed refresh keeps the directory in use and retries.
//!
//! # Bounds
//!
//! Streams per engine ([`EngineConfig::max_streams`]), directory bodies ([`MAX_DIR_BODY`], after
//! inflation), HTTP heads ([`crate::http::Limits`]), a link's input buffer (one cell), each
//! circuit's output queue ([`crate::client::QUEUE_LIMIT`]) and windows. The engine's action
//! and event queues grow only with the driver's own calls and received bytes: drain them after
//! every call.

use std::net::SocketAddr;

use crate::certs::RsaIdentity;
use crate::handshake::HandshakeKind;
use crate::netdesc::WebUrl;

mod bootstrap;
mod circ;
mod error;
mod link;
mod state;
#[cfg(test)]
mod test;

pub use error::{EngineError, StreamError};
pub use onion_cell::relaycell::{ResolvedAnswer, ResolvedValue};
pub use state::Engine;
pub use state::seed::{MAX_SEED_PENDING, MAX_SEED_REQUESTS, SEED_ANSWER_CHUNK};

/// Wall-clock milliseconds since the Unix epoch, passed in by the driver on every call
/// (`SystemTime` natively, `Date.now()` in the browser). The engine never reads a clock.
pub type NowMs = u64;

/// The largest directory document accepted (after inflation): 16 MiB.
pub const MAX_DIR_BODY: usize = 16 << 20;

/// A transport connection the engine asked for ([`Action::Connect`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// A user stream ([`Engine::connect`], [`Engine::resolve`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamHandle(pub u64);

/// Which transports the driver can open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transports {
    /// WebSocket (`ws://`, `wss://`): the browser's only transport.
    pub ws: bool,
    /// Tor link TLS to an ORPort (native drivers).
    pub tls: bool,
}

impl Default for Transports {
    /// WebSocket and TLS.
    fn default() -> Self {
        Transports {
            ws: true,
            tls: true,
        }
    }
}

/// A connection to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// A WebSocket to this URL; the link's bytes go in binary messages.
    WebSocket(WebUrl),
    /// A Tor link TLS connection to this ORPort (any certificate: the link handshake checks
    /// the identity; report the certificate's SHA-256 in
    /// [`TlsBinding::Tls`](crate::channel::TlsBinding::Tls)).
    Tls(SocketAddr),
}

/// What the engine asks the driver to do ([`Engine::poll_action`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open a connection, then call [`Engine::on_connected`] (or [`Engine::on_closed`] if it
    /// fails).
    Connect {
        /// The connection's id in later calls.
        conn: ConnId,
        /// Where and how.
        transport: Transport,
    },
    /// Write these bytes of the Tor link, in order.
    Send {
        /// The connection.
        conn: ConnId,
        /// The bytes.
        data: Vec<u8>,
    },
    /// Close the connection (no [`Engine::on_closed`] needed).
    Close {
        /// The connection.
        conn: ConnId,
    },
}

/// What a circuit is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitPurpose {
    /// A one-hop directory circuit (BEGIN_DIR).
    Directory,
    /// An exit circuit of the pool, or one built for a stream.
    Exit,
    /// The seed's dedicated one-hop circuit (CID) of [`Engine::associate`].
    Seed,
}

/// One hop of a circuit, for user interfaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HopInfo {
    /// The relay's nickname.
    pub nickname: String,
    /// Its RSA identity (display: 40 uppercase hex digits).
    pub rsa_id: RsaIdentity,
    /// Its addresses: the TLS ORPort and/or the WebSocket URL, as text.
    pub addresses: Vec<String>,
    /// The handshake used (or to be used) with it.
    pub handshake: Option<HandshakeKind>,
}

/// A circuit, for user interfaces ([`Event::CircuitBuilt`], [`Engine::circuits`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircuitInfo {
    /// The engine's id of the circuit (not the wire circuit ID).
    pub id: u64,
    /// What it is for.
    pub purpose: CircuitPurpose,
    /// Its hops, first (the entry) to last.
    pub path: Vec<HopInfo>,
    /// Whether every hop is built.
    pub built: bool,
    /// Whether it has carried a user stream.
    pub dirty: bool,
    /// The isolation key of its streams, if any.
    pub isolation: Option<String>,
    /// User streams attached now.
    pub streams: usize,
}

/// What happened, for the user ([`Engine::poll_event`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Bootstrap progress.
    Bootstrap {
        /// 0 to 100.
        percent: u8,
        /// What is being done, for people.
        phase: String,
    },
    /// The directory is verified: circuits can be built (streams opened before were queued).
    Ready,
    /// The bootstrap failed for good (every entry tried, or a document refused). Streams
    /// waiting for it ended with an error.
    BootstrapFailed {
        /// Why.
        error: EngineError,
    },
    /// A circuit is built.
    CircuitBuilt {
        /// The circuit.
        info: CircuitInfo,
    },
    /// A circuit build failed (it may be retried with another path).
    CircuitFailed {
        /// The hops it had or was to have.
        path: Vec<HopInfo>,
        /// Why.
        error: String,
    },
    /// A built circuit closed.
    CircuitClosed {
        /// Its id ([`CircuitInfo::id`]).
        id: u64,
        /// Why.
        reason: String,
    },
    /// A stream is open (RELAY_CONNECTED).
    StreamConnected {
        /// The stream.
        stream: StreamHandle,
    },
    /// Bytes arrived on a stream: call [`Engine::stream_consumed`] as the user reads them.
    StreamData {
        /// The stream.
        stream: StreamHandle,
        /// The bytes.
        data: Vec<u8>,
    },
    /// A stream that took fewer bytes than offered in [`Engine::stream_write`] can take
    /// more.
    StreamWritable {
        /// The stream.
        stream: StreamHandle,
    },
    /// A stream ended: `None` for a clean end (END DONE from the exit, or closed by us).
    StreamEnded {
        /// The stream.
        stream: StreamHandle,
        /// Why, if it failed.
        error: Option<StreamError>,
    },
    /// The answer to [`Engine::resolve`]; the stream is done.
    Resolved {
        /// The stream.
        stream: StreamHandle,
        /// The exit's answers.
        answers: Vec<ResolvedAnswer>,
    },
    /// [`Engine::associate`]: CID is built and RELAY_ASSOCIATE sent (the seed defines no
    /// answer to a success; a refusal follows as [`Event::AssociateRefused`]).
    Associated {
        /// The fake domain.
        fake_domain: String,
        /// CID's circuit id ([`CircuitInfo::id`]).
        circuit: u64,
    },
    /// The OR answered RELAY_ASSOCIATE with RELAY_ASSOCIATE: the fake domain is taken or
    /// invalid. CID is closed; associate another domain.
    AssociateRefused {
        /// The domain refused, as the OR sent it.
        fake_domain: String,
    },
    /// A request relayed by the OR's SOCKS side (RELAY_WS on CID) ended.
    SeedRequestDone {
        /// The OR's request id.
        request_id: String,
        /// Where it went (`host:port`).
        target: String,
        /// Bytes from the browser.
        bytes_in: u64,
        /// Bytes answered.
        bytes_out: u64,
        /// Why it failed, if it did (`None`: the site or the browser ended it).
        error: Option<String>,
    },
    /// The association ended (CID closed): its requests ended.
    AssociationClosed {
        /// The fake domain.
        fake_domain: String,
        /// Why.
        reason: String,
    },
}

/// The engine's settings (the seed's OP options and a few more). All have defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// Hops per exit circuit, 1..=5 (the seed's `nb_hop`); default 3.
    pub hops: u8,
    /// Clean exit circuits kept ready (`NB`); default 2.
    pub pool_size: usize,
    /// Idle pool circuits are renewed this often (`CIRC_KA`), milliseconds; default 10 min.
    pub circuit_keepalive_ms: u64,
    /// A dirty circuit gets no new streams after this, milliseconds; default 10 min.
    pub circuit_lifetime_ms: u64,
    /// `true` (default): streams share the pool's circuits (`one_c`); `false`: a fresh
    /// circuit per stream.
    pub one_circuit: bool,
    /// Always use this entry OR as hop 1 (`one_OR`); it must be an entry of the description.
    pub pin_first: Option<RsaIdentity>,
    /// Which transports the driver can open.
    pub transports: Transports,
    /// Use the seed's CREATE_FAST_WS on hop 1 (needs the entry's TAP key; off by default:
    /// it authenticates hop 1 by its TAP key only).
    pub create_fast_ws: bool,
    /// Per-hop build timeout before enough builds are measured, milliseconds (path-spec
    /// §2.4 `cbtinitialtimeout`); default 60 s.
    pub hop_timeout_ms: u64,
    /// Transport connection plus link handshake timeout, milliseconds; default 15 s.
    pub connect_timeout_ms: u64,
    /// How long a stream waits for CONNECTED (or RESOLVED), milliseconds; default 60 s.
    pub stream_timeout_ms: u64,
    /// How long a directory fetch may take, milliseconds; default 120 s.
    pub dir_timeout_ms: u64,
    /// Clock skew tolerated on directory validity times, seconds; default 300.
    pub dir_skew_secs: u64,
    /// Most user streams open or waiting at once; default 1024.
    pub max_streams: usize,
    /// Most microdescriptors asked for per request; default 92 (as C tor).
    pub microdesc_batch: usize,
    /// Refuse two relays of a path in the same /16: `None` (default) = yes, unless every
    /// relay of the directory is on a loopback address (a local test network).
    pub distinct_subnets: Option<bool>,
    /// Attempts to build one circuit (each with a new path) before giving up; default 5.
    pub build_attempts: u32,
    /// Use this handshake wherever the relay's keys allow it instead of the best one (for
    /// the seed's TAP-only ORs, or tests): `Tap`, `Ntor`, `NtorV3` on every hop; `CreateFast`
    /// and `CreateFastWs` on hop 1 only. `None` (default): the best per hop.
    pub handshake: Option<HandshakeKind>,
    /// The seed's RELAY_INFO (own network only, needs [`Engine::associate`]): for every hop
    /// after the first that uses TAP, the entry OR of the association computes the onion
    /// skin and `g^xy` (sent over CID) instead of the engine; a circuit needing it waits for
    /// CID. **This hands those hops' keys to the entry OR** (it can read and forge their
    /// traffic). Default `false`.
    pub use_relay_info: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            hops: 3,
            pool_size: 2,
            circuit_keepalive_ms: 600_000,
            circuit_lifetime_ms: 600_000,
            one_circuit: true,
            pin_first: None,
            transports: Transports::default(),
            create_fast_ws: false,
            hop_timeout_ms: 60_000,
            connect_timeout_ms: 15_000,
            stream_timeout_ms: 60_000,
            dir_timeout_ms: 120_000,
            dir_skew_secs: 300,
            max_streams: 1024,
            microdesc_batch: 92,
            distinct_subnets: None,
            build_attempts: 5,
            handshake: None,
            use_relay_info: false,
        }
    }
}

impl EngineConfig {
    /// Check the settings.
    pub fn check(&self) -> Result<(), EngineError> {
        if !(1..=5).contains(&self.hops) {
            return Err(EngineError::InvalidConfig("hops must be 1 to 5"));
        }
        if !self.transports.ws && !self.transports.tls {
            return Err(EngineError::InvalidConfig("no transport enabled"));
        }
        if self.max_streams == 0 {
            return Err(EngineError::InvalidConfig("max_streams must be at least 1"));
        }
        if self.microdesc_batch == 0 {
            return Err(EngineError::InvalidConfig(
                "microdesc_batch must be at least 1",
            ));
        }
        Ok(())
    }
}
