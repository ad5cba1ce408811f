//! Errors of the OR side of a circuit.
//!
//! - [`CircuitError`]: the circuit must be torn down; the driver sends a DESTROY carrying
//!   [`CircuitError::destroy_reason`] toward the client (and, if there is one, toward the next
//!   hop). Only circuit-level violations produce one: a problem with a single stream (a
//!   message for an unknown stream, a malformed BEGIN) is answered with a RELAY_END and the
//!   circuit lives on. The exceptions are stream *window* violations, where C tor too kills
//!   the whole circuit ("somebody's breaking protocol").
//! - [`SendError`]: a request of the driver (send data, answer a stream, report an
//!   extension) could not be carried out; the circuit is unaffected.

use onion_cell::bytes::{DecodeError, EncodeError};
use onion_cell::chancell::{ChanCmd, DestroyReason};
use onion_cell::relaycell::{RelayCmd, StreamId};
use thiserror::Error;

use crate::crypto::relay::CryptError;
use crate::flow::FlowError;

/// Why a circuit must be closed. See [`CircuitError::destroy_reason`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CircuitError {
    /// More than 8 RELAY_EARLY cells arrived (tor-spec §5.6).
    #[error("more than {max} RELAY_EARLY cells on the circuit")]
    TooManyRelayEarly {
        /// The budget (8).
        max: u8,
    },
    /// The relay cell body has an impossible length.
    #[error("bad relay cell body: {0}")]
    Crypt(#[from] CryptError),
    /// A cell not recognized by this hop, and the circuit has no open next hop to pass it to
    /// (tor-spec §5.5.2.2: a corrupt or forged cell, or one for a hop that does not exist).
    #[error("relay cell not recognized and the circuit stops here")]
    Unrecognized,
    /// A RELAY_WS cell on a circuit whose previous hop is not a client link: the seed only
    /// exchanges them between an OP and its first OR.
    #[error("RELAY_WS cell on a circuit that is not a client circuit")]
    RelayWsNotClient,
    /// A RELAY_WS cell this hop does not recognize: it can never be passed on (the next hop
    /// speaks only fixed-size RELAY cells).
    #[error("RELAY_WS cell not recognized by its first hop")]
    RelayWsUnrecognized,
    /// A recognized relay cell that does not parse (bad length, stream id rule, or a
    /// circuit-level message that does not decode).
    #[error("malformed relay cell: {0}")]
    Malformed(#[from] DecodeError),
    /// EXTEND or EXTEND2 in a RELAY cell rather than RELAY_EARLY (tor-spec §5.6).
    #[error("{0} not in a RELAY_EARLY cell")]
    ExtendNotEarly(RelayCmd),
    /// EXTEND or EXTEND2 while the circuit is already extending or extended.
    #[error("{0} while the circuit already has a next hop")]
    AlreadyExtended(RelayCmd),
    /// An EXTEND or EXTEND2 this relay must refuse (tor-spec §5.3: no identity, an all-zero
    /// identity, no address, or this relay itself).
    #[error("refused extend request: {0}")]
    BadExtend(&'static str),
    /// Circuit-level flow control was violated: a DATA cell beyond the deliver window, or a
    /// SENDME that is unexpected, has a wrong digest or an unacceptable version.
    #[error("circuit flow control: {0}")]
    Flow(FlowError),
    /// Stream-level flow control was violated (DATA beyond the stream's deliver window,
    /// SENDME overflowing its package window); C tor kills the circuit for it.
    #[error("stream {stream:?} flow control: {error}")]
    StreamFlow {
        /// The stream.
        stream: StreamId,
        /// What went wrong.
        error: FlowError,
    },
    /// A backward-only command (CONNECTED, RESOLVED) arrived forward on a live stream.
    #[error("{cmd} received from the client on live stream {stream:?}")]
    UnexpectedCommand {
        /// The command.
        cmd: RelayCmd,
        /// The stream.
        stream: StreamId,
    },
    /// The queue toward the client is full: the driver did not drain it, or the client does
    /// not read while making us answer.
    #[error("queue toward the client is full")]
    QueueFull,
    /// An internal error (a cell of ours that does not encode).
    #[error("internal error: {0}")]
    Internal(&'static str),
    /// The circuit already failed with `reason`; it accepts nothing more.
    #[error("circuit already closed ({0})")]
    Closed(DestroyReason),
}

impl CircuitError {
    /// The DESTROY reason the driver must send: PROTOCOL for the client's violations,
    /// RESOURCELIMIT for a full queue, INTERNAL for our own faults.
    pub fn destroy_reason(&self) -> DestroyReason {
        match self {
            CircuitError::TooManyRelayEarly { .. }
            | CircuitError::Crypt(_)
            | CircuitError::Unrecognized
            | CircuitError::RelayWsNotClient
            | CircuitError::RelayWsUnrecognized
            | CircuitError::Malformed(_)
            | CircuitError::ExtendNotEarly(_)
            | CircuitError::AlreadyExtended(_)
            | CircuitError::BadExtend(_)
            | CircuitError::UnexpectedCommand { .. } => DestroyReason::PROTOCOL,
            CircuitError::Flow(e) | CircuitError::StreamFlow { error: e, .. } => {
                if e.is_protocol_violation() {
                    DestroyReason::PROTOCOL
                } else {
                    DestroyReason::INTERNAL
                }
            }
            CircuitError::QueueFull => DestroyReason::RESOURCELIMIT,
            CircuitError::Internal(_) => DestroyReason::INTERNAL,
            CircuitError::Closed(reason) => *reason,
        }
    }
}

/// Why a request of the driver could not be carried out. The circuit is unaffected (except
/// [`SendError::Closed`]: it already failed).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SendError {
    /// The queue toward the client has no room: drain it with `poll_backward` and retry.
    #[error("queue toward the client is full")]
    QueueFull,
    /// No such stream (any more): e.g. the client ended it meanwhile. The driver drops its
    /// side of the stream.
    #[error("no stream {0:?} on this circuit")]
    UnknownStream(StreamId),
    /// The stream is not in a state that allows this request (e.g. DATA before CONNECTED,
    /// CONNECTED twice, RESOLVED for a BEGIN).
    #[error("stream {stream:?}: {why}")]
    StreamState {
        /// The stream.
        stream: StreamId,
        /// What is wrong.
        why: &'static str,
    },
    /// `extended` or `extend_failed` without an extension in flight.
    #[error("no extension in flight")]
    NoExtendPending,
    /// `truncated` without a TRUNCATE to answer.
    #[error("no TRUNCATE to answer")]
    NoTruncatePending,
    /// A cell from the next hop while the circuit has no open next hop (a stale or
    /// misbehaving next hop): drop it.
    #[error("the circuit has no open next hop")]
    NoNextHop,
    /// The next hop answered with a created cell that does not match the create cell sent
    /// (e.g. CREATED2 to a CREATE): the extension failed.
    #[error("next hop answered {0} to a create cell of another kind")]
    CreatedMismatch(ChanCmd),
    /// A seed message on a circuit that is not a client circuit.
    #[error("seed messages only go to client circuits")]
    NotClientCircuit,
    /// `send_seed` with a message that is not one of the seed's.
    #[error("{0} is not a seed message")]
    NotSeedMessage(RelayCmd),
    /// The message does not encode (e.g. CONNECTED to 0.0.0.0).
    #[error("cannot encode: {0}")]
    Encode(#[from] EncodeError),
    /// The circuit already failed.
    #[error("circuit already closed ({0})")]
    Closed(DestroyReason),
}

#[cfg(test)]
mod test {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn reasons() {
        assert_eq!(
            CircuitError::TooManyRelayEarly { max: 8 }.destroy_reason(),
            DestroyReason::PROTOCOL
        );
        assert_eq!(
            CircuitError::Flow(FlowError::SendmeDigestMismatch).destroy_reason(),
            DestroyReason::PROTOCOL
        );
        assert_eq!(
            CircuitError::Flow(FlowError::WindowExhausted).destroy_reason(),
            DestroyReason::INTERNAL
        );
        assert_eq!(
            CircuitError::StreamFlow {
                stream: StreamId(1),
                error: FlowError::DeliverWindowExceeded
            }
            .destroy_reason(),
            DestroyReason::PROTOCOL
        );
        assert_eq!(
            CircuitError::QueueFull.destroy_reason(),
            DestroyReason::RESOURCELIMIT
        );
        assert_eq!(
            CircuitError::Closed(DestroyReason::RESOURCELIMIT).destroy_reason(),
            DestroyReason::RESOURCELIMIT
        );
        assert_eq!(
            CircuitError::Internal("x").destroy_reason(),
            DestroyReason::INTERNAL
        );
    }
}
