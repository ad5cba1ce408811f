//! The OR side of one circuit, sans-IO (tor-spec §5, §6, §7.3-§7.4, and the seed's WebSocket
//! extension).
//!
//! An [`OrCircuit`] is what a relay keeps for a circuit whose previous hop is one of its links:
//! one [`RelayLayer`](crate::crypto::relay::RelayLayer), the RELAY_EARLY budget, the circuit
//! windows with authenticated SENDMEs, a bounded table of the streams ending here, the state
//! of the next hop, and a bounded queue of encrypted cells toward the client. It does no I/O
//! and keeps no clock; randomness (handshakes, relay cell padding) comes from the caller.
//!
//! # The driver
//!
//! The task that owns the previous hop's link owns its circuits:
//!
//! ```text
//! CREATE*/CREATE2 from the link  -> OrCircuit::accept_create -> send the CREATED* reply
//!                                   (on error: DESTROY with CreateError::destroy_reason)
//! RELAY / RELAY_EARLY body       -> handle_forward(rng, body, early)
//! RELAY_WS body (seed)           -> handle_forward_ws(rng, body)
//!     PassOn { early }           -> send body to the next hop (RELAY_EARLY if early)
//!     Event(e)                   -> act: open a stream, connect the next hop, ...
//!     Consumed                   -> nothing
//!     Err(e)                     -> DESTROY both ways with e.destroy_reason(), drop it
//! RELAY from the next hop        -> handle_backward_from_next(body)
//! CREATED2/CREATED from next hop -> extended(rng, &msg)     (or extend_failed(rng, reason))
//! exit stream events             -> stream_connected / stream_data / stream_flushed /
//!                                   stream_end / resolved
//! after each of these            -> while let Some(msg) = poll_backward() { send it }
//! ```
//!
//! Every queue is bounded. The queue toward the client holds at most
//! [`CircuitConfig::max_queued_cells`] cells; bulk cells (DATA, cells from the next hop, the
//! seed's RELAY_WS) leave [`CONTROL_RESERVE`] of them free for what a forward cell triggers.
//! [`OrCircuit::stream_data`] takes only what the windows and the queue allow and says how
//! much; [`OrCircuit::can_accept_forward`] says whether a forward cell may be handled (if not,
//! drain the queue or stop reading the link).
//!
//! # Flow control
//!
//! DATA from the client counts against the circuit deliver window and the stream's: the
//! circuit answers every hundredth cell at once with a SENDME v1 carrying that cell's digest;
//! a stream SENDME goes out when the stream's deliver window is down by 50 and at most
//! [`FLUSH_LIMIT`] of its delivered bytes await flushing (reported by
//! [`OrCircuit::stream_flushed`]), so a slow exit connection slows the client. DATA toward the
//! client is bounded by the circuit and stream package windows; the digest of every hundredth
//! cell is kept and the client's circuit SENDMEs must echo them (version below
//! [`CircuitConfig::sendme_accept_min_version`] refused).
//!
//! # Streams
//!
//! Problems with one stream cost only that stream: a BEGIN beyond
//! [`CircuitConfig::max_streams`] gets END (RESOURCELIMIT), a BEGIN that does not parse gets
//! END (TORPROTOCOL), DATA or SENDME for a stream that does not exist gets END (TORPROTOCOL).
//! Streams we ended are remembered (bounded), so what the client sent before seeing our END is
//! absorbed silently. Window violations, circuit-level or stream-level, close the circuit, as
//! in C tor.
//!
//! # The seed's commands
//!
//! On a circuit whose previous hop is a client link (`from_client`), relay commands 40-42 are
//! the seed's RELAY_ASSOCIATE, RELAY_WS and RELAY_INFO ([`Dialect::Seed`]) and become events;
//! they are never passed on. Elsewhere they are Tor's colliding commands and are dropped. A
//! seed command that does not parse is taken for Tor's and dropped too. RELAY_WS cells (the
//! seed's variable-length relay cells) are accepted only on client circuits, and only for
//! this hop.
//!
//! [`Dialect::Seed`]: onion_cell::relaycell::Dialect::Seed

mod circuit;
mod create;
mod error;
mod event;
mod keys;
mod stream;

pub use circuit::{
    CONTROL_RESERVE, CircuitConfig, FLUSH_LIMIT, MAX_RELAY_EARLY, NextHop, OrCircuit,
};
pub use create::{CreateError, HandshakeKind};
pub use error::{CircuitError, SendError};
pub use event::{CircuitEvent, ExtendRequest, ForwardAction};
pub use keys::{CreatePolicy, ED_ID_LEN, OnionKeys, RSA_ID_LEN};

#[cfg(test)]
mod test;
