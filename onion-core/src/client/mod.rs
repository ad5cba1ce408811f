//! The client (OP) side of one circuit, sans-IO: create, extend, streams, flow control.
//!
//! A [`ClientCircuit`] is everything the OP keeps for one circuit: one [`ClientCrypt`] layer
//! per hop, per-hop circuit windows with authenticated SENDME (v1), the RELAY_EARLY budget,
//! a bounded stream table with stream windows, and a bounded queue of encrypted cells to send.
//! It does no I/O: the driver (browser OP, SOCKS OP, tests) moves cells and events.
//!
//! # Driving a circuit
//!
//! ```text
//! let (pending, create) = ClientCircuit::start(rng, &guard, kind, config)?;   // send `create`
//! let mut circ = pending.handle_created(reply)?;      // CREATED*/DESTROY from hop 1
//! circ.extend(rng, &middle, middle.best_handshake()?)?;
//! loop {
//!     while let Some(cell) = circ.poll_outgoing() { send(cell.into_chan_msg()) }
//!     match receive() {
//!         ChanMsg from hop 1 => for ev in circ.handle_cell(rng, msg)? { ... }
//!     }
//! }
//! ```
//!
//! - Every method that originates a cell (extend, begin, send_data, end_stream, and
//!   `handle_relay`, which may answer with SENDMEs) encrypts it at once and appends it to the
//!   outgoing queue: cells must leave in the order they were encrypted. Drain the queue with
//!   [`ClientCircuit::poll_outgoing`] after every call.
//! - [`ClientCircuit::send_data`] returns how many bytes it took: fewer than offered when the
//!   stream or circuit package window is closed or the queue holds
//!   [`DATA_QUEUE_LIMIT`] cells. Wait for [`ClientCircuit::is_writable`] (after the next
//!   inbound cells, or after draining) before offering the rest.
//! - Inbound cells come back as [`ClientEvent`]s. By default stream SENDMEs are sent as soon
//!   as a stream's DATA is handed out in [`ClientEvent::StreamData`], and the driver owns the
//!   buffering from there. With [`CircuitConfig::manual_stream_sendme`] they wait for the
//!   driver to report consumption ([`ClientCircuit::stream_consumed`]), so that a slow reader
//!   slows the exit down (at most a stream window, 500 cells, in flight per stream).
//! - An error that is the peer's fault ([`Fault::Peer`]) kills the circuit: call
//!   [`ClientCircuit::close`] to get the DESTROY to send and the events that fail its streams.
//!
//! # RELAY_EARLY
//!
//! As C tor does, EXTEND/EXTEND2 always go in RELAY_EARLY cells (tor-spec §5.6), and so does
//! every other cell not addressed to hop 1 while the budget of 8 lasts, to hide the circuit's
//! length. An extension with the budget spent fails with
//! [`CircuitError::RelayEarlyExhausted`].
//!
//! [`ClientCrypt`]: crate::crypto::relay::ClientCrypt

use std::net::IpAddr;

use onion_cell::chancell::{ChanMsg, DestroyReason, PAYLOAD_LEN, Relay};
use onion_cell::relaycell::{AddrTtl, EndReason, RelayMsg, ResolvedAnswer, StreamId};

use crate::crypto::relay::HopNum;

mod circuit;
mod error;
mod stream;
mod target;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod seed_test;
#[cfg(test)]
mod test;
#[cfg(test)]
mod test_or;

pub use circuit::{ClientCircuit, PendingCircuit};
pub use error::{CircuitError, Fault};
pub use target::{HandshakeKind, HopTarget};

/// Most DATA cells [`ClientCircuit::send_data`] lets wait in the outgoing queue.
pub const DATA_QUEUE_LIMIT: usize = 32;
/// Most cells of any kind the outgoing queue holds. Beyond it, calls that would add cells fail
/// with [`CircuitError::QueueFull`] (nothing consumed) until the driver drains the queue.
pub const QUEUE_LIMIT: usize = 256;
/// Default for [`CircuitConfig::max_streams`].
pub const DEFAULT_MAX_STREAMS: usize = 256;
/// With [`CircuitConfig::manual_stream_sendme`], a stream's SENDME waits until at most this
/// many delivered bytes are unconsumed: ten cells' worth (tor-spec §7.4).
pub const STREAM_UNCONSUMED_LIMIT: usize = 10 * onion_cell::relaycell::MAX_DATA_LEN;
/// Most RELAY_EARLY cells a circuit may carry (tor-spec §5.6).
pub const MAX_RELAY_EARLY: u8 = 8;

/// Per-circuit settings, mostly from the consensus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircuitConfig {
    /// The consensus `sendme_accept_min_version` (param-spec default 0: unauthenticated
    /// circuit SENDMEs accepted; 1: only authenticated ones). We always emit v1.
    pub sendme_accept_min_version: u8,
    /// Most streams open at once on this circuit (at least 1).
    pub max_streams: usize,
    /// Hop 1 is one of our own ORs: relay commands 40-42 from hop 1 decode as the seed's
    /// messages ([`Dialect::Seed`](onion_cell::relaycell::Dialect::Seed)), surfaced as
    /// [`ClientEvent::SeedMessage`], and RELAY_WS cells are accepted.
    pub hop1_is_ours: bool,
    /// Let the driver pace stream SENDMEs: a stream's SENDME waits until at most
    /// [`STREAM_UNCONSUMED_LIMIT`] of the bytes it delivered are still unconsumed, as reported
    /// with [`ClientCircuit::stream_consumed`] (tor-spec §7.4: "less than ten cell payloads
    /// remaining to be flushed"). A slow reader then slows the exit down. When false (the
    /// default), SENDMEs go out as soon as data is delivered in events.
    pub manual_stream_sendme: bool,
}

impl Default for CircuitConfig {
    fn default() -> Self {
        CircuitConfig {
            sendme_accept_min_version: 0,
            max_streams: DEFAULT_MAX_STREAMS,
            hop1_is_ours: false,
            manual_stream_sendme: false,
        }
    }
}

/// An encrypted relay cell ready to go to hop 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutCell {
    /// Send as RELAY_EARLY (true) or RELAY (false).
    pub early: bool,
    /// The encrypted body.
    pub body: Box<[u8; PAYLOAD_LEN]>,
}

impl OutCell {
    /// The channel message: RELAY_EARLY or RELAY.
    pub fn into_chan_msg(self) -> ChanMsg {
        let relay = Relay::new(self.body);
        if self.early {
            ChanMsg::RelayEarly(relay)
        } else {
            ChanMsg::Relay(relay)
        }
    }
}

/// Why a circuit is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The caller closed it ([`ClientCircuit::close`]).
    Local,
    /// Hop 1 sent DESTROY with this reason.
    Destroyed(DestroyReason),
    /// It failed: a relay broke the protocol, or a cell was corrupted.
    Failed(CircuitError),
}

/// Why a stream ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamEndReason {
    /// The stream's hop sent RELAY_END.
    Remote {
        /// The reason it gave.
        reason: EndReason,
        /// For [`EndReason::EXITPOLICY`], the refused address, if given.
        exit_policy: Option<AddrTtl>,
    },
    /// The circuit was cut at or before the stream's hop (RELAY_TRUNCATED).
    Truncated(DestroyReason),
    /// The whole circuit closed.
    CircuitClosed(CloseReason),
}

/// Something that happened on the circuit, for the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// An extension finished: the circuit now has `hop` hops.
    HopAdded {
        /// The new last hop.
        hop: HopNum,
    },
    /// A hop cut the circuit after itself (RELAY_TRUNCATED). The circuit now has `hops`
    /// hops; streams beyond ended with [`StreamEndReason::Truncated`]. C tor never reuses
    /// such a circuit (tor-spec §5.4): close it unless you know better.
    Truncated {
        /// Hops left.
        hops: usize,
        /// The reason the hop gave.
        reason: DestroyReason,
        /// Whether this aborted a pending extension (the extension failed).
        extend_failed: bool,
    },
    /// A stream is open (RELAY_CONNECTED).
    StreamConnected {
        /// The stream.
        stream: StreamId,
        /// The address the exit connected to, if it said (not for BEGIN_DIR).
        addr: Option<IpAddr>,
        /// How long that address may be cached, in seconds.
        ttl: Option<u32>,
    },
    /// Bytes arrived on a stream.
    StreamData {
        /// The stream.
        stream: StreamId,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// A stream ended; its id is free.
    StreamEnded {
        /// The stream.
        stream: StreamId,
        /// Why.
        reason: StreamEndReason,
    },
    /// The answer to a RESOLVE; the stream is done.
    Resolved {
        /// The stream of the RESOLVE.
        stream: StreamId,
        /// The answers, as the exit gave them.
        answers: Vec<ResolvedAnswer>,
    },
    /// One of the seed's messages (RELAY_ASSOCIATE, RELAY_WS, RELAY_INFO) from hop 1, on a
    /// circuit configured with [`CircuitConfig::hop1_is_ours`].
    SeedMessage {
        /// The stream id of the cell (the seed's commands do not define one).
        stream: StreamId,
        /// The message.
        msg: RelayMsg,
    },
    /// The circuit is gone; every stream has had its [`ClientEvent::StreamEnded`].
    CircuitClosed {
        /// Why.
        reason: CloseReason,
    },
}

/// What [`ClientCircuit::close`] leaves to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closing {
    /// The DESTROY to send to hop 1 (reason NONE, as an OP must, tor-spec §5.4); `None` if
    /// hop 1 destroyed the circuit itself or it was already closed.
    pub destroy: Option<ChanMsg>,
    /// A [`ClientEvent::StreamEnded`] per stream, then [`ClientEvent::CircuitClosed`]; empty
    /// if the circuit was already closed.
    pub events: Vec<ClientEvent>,
}
