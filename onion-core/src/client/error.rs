//! Why a client circuit operation failed, and whose fault it was.

use onion_cell::bytes::{DecodeError, EncodeError};
use onion_cell::chancell::{ChanCmd, DestroyReason};
use onion_cell::relaycell::{RelayCmd, StreamId};
use thiserror::Error;

use super::target::HandshakeKind;
use crate::crypto::relay::{CryptError, HopNum};
use crate::flow::FlowError;
use crate::handshake::HandshakeError;

/// Who is to blame for a [`CircuitError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// A relay on the circuit broke the protocol, or a cell was corrupted or forged on the
    /// way. The circuit is dead: send the DESTROY that [`ClientCircuit::close`] builds.
    ///
    /// [`ClientCircuit::close`]: super::ClientCircuit::close
    Peer,
    /// The caller asked for something the circuit cannot do in its current state (or gave
    /// unusable input). Nothing changed: the circuit is as it was before the call.
    Caller,
    /// An invariant of this module broke (a bug). The circuit is dead.
    Internal,
}

/// Why a client circuit operation failed.
///
/// [`CircuitError::fault`] says whose fault it is, [`CircuitError::is_fatal`] whether the
/// circuit survived. On a fatal error the circuit refuses every further operation with
/// [`CircuitError::Closed`]; call [`ClientCircuit::close`] to get the DESTROY cell to send
/// (an OP always sends reason NONE, tor-spec §5.4) and the events that fail its streams.
///
/// [`ClientCircuit::close`]: super::ClientCircuit::close
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CircuitError {
    // ----- the peer's fault --------------------------------------------------------------
    /// The relay's half of a handshake did not verify or was malformed (peer's fault, unless
    /// the inner error is [`HandshakeError::Internal`]).
    #[error("handshake with hop {hop} failed: {source}")]
    Handshake {
        /// The hop being created or extended to.
        hop: HopNum,
        /// What went wrong.
        #[source]
        source: HandshakeError,
    },
    /// An inbound relay cell was not recognized by any hop (corrupt, forged, or out of
    /// sequence), or its body has an impossible length (peer's fault).
    #[error("inbound relay cell rejected: {0}")]
    Crypt(#[source] CryptError),
    /// A relay message (or a handshake reply) from a hop did not parse (peer's fault).
    #[error("malformed {what} from hop {hop}: {source}")]
    Malformed {
        /// The hop that sent it.
        hop: HopNum,
        /// What was being decoded.
        what: &'static str,
        /// Why it did not decode.
        #[source]
        source: DecodeError,
    },
    /// A hop broke circuit- or stream-level flow control (peer's fault): a DATA cell beyond a
    /// deliver window, an unexpected SENDME, a wrong SENDME v1 digest, ...
    #[error("flow control violation by hop {hop}: {source}")]
    Flow {
        /// The hop that broke it.
        hop: HopNum,
        /// The violation.
        #[source]
        source: FlowError,
    },
    /// The first hop answered CREATE* with a cell of the wrong kind (peer's fault).
    #[error("expected {expected} in reply to the create cell, got {got}")]
    UnexpectedReply {
        /// The reply the create cell calls for.
        expected: ChanCmd,
        /// What arrived.
        got: ChanCmd,
    },
    /// The first hop refused to create the circuit: it answered with DESTROY (peer's
    /// decision; not a protocol violation, but the circuit does not exist).
    #[error("circuit creation refused by hop #1: DESTROY ({0})")]
    Refused(DestroyReason),
    /// A hop sent a relay message it may not send to a client, or at a time it may not
    /// (peer's fault): a forward-only command, a message from the wrong hop, DATA on a
    /// stream that is not open, EXTENDED2 with no extension pending, ...
    #[error("protocol violation by hop {hop} ({cmd}): {what}")]
    Protocol {
        /// The hop that sent the message.
        hop: HopNum,
        /// Its relay command.
        cmd: RelayCmd,
        /// What was wrong with it.
        what: &'static str,
    },
    /// A channel cell that has no business on an established client circuit arrived:
    /// an inbound RELAY_EARLY (tor-spec §5.6: the circuit MUST be closed), a second CREATED,
    /// a RELAY_WS on a circuit not marked as a seed circuit, ... (peer's fault).
    #[error("unexpected {0} cell on a client circuit")]
    UnexpectedCell(ChanCmd),

    // ----- the caller's fault ------------------------------------------------------------
    /// The circuit is closed or failed: nothing more can be done with it (caller's fault).
    #[error("the circuit is closed")]
    Closed,
    /// The target lacks what the handshake or the extend cell needs (caller's fault).
    #[error("cannot use {kind} with this relay: {what}")]
    MissingTargetInfo {
        /// The handshake asked for.
        kind: HandshakeKind,
        /// What is missing.
        what: &'static str,
    },
    /// CREATE_FAST and CREATE_FAST_WS only create a first hop; they cannot extend (caller's
    /// fault).
    #[error("{0} can only create the first hop")]
    FirstHopOnly(HandshakeKind),
    /// Building our handshake message failed, e.g. a TAP key that is not RSA-1024 (caller's
    /// fault: the key came from the caller).
    #[error("cannot start {kind} handshake: {source}")]
    HandshakeSetup {
        /// The handshake asked for.
        kind: HandshakeKind,
        /// Why.
        #[source]
        source: HandshakeError,
    },
    /// An extension is already in progress: wait for its EXTENDED2 (caller's fault).
    #[error("an extension is already in progress")]
    ExtendPending,
    /// No RELAY_EARLY cell is left for an EXTEND2 (tor-spec §5.6 allows 8 per circuit;
    /// caller's fault).
    #[error("RELAY_EARLY budget exhausted: cannot extend further")]
    RelayEarlyExhausted,
    /// The circuit already has the most hops this implementation builds (caller's fault).
    #[error("circuit already has the maximum of {0} hops")]
    TooManyHops(usize),
    /// The circuit already has as many streams as its configuration allows (caller's
    /// fault).
    #[error("too many streams on this circuit (at most {0})")]
    TooManyStreams(usize),
    /// No open stream has this id (caller's fault).
    #[error("no open stream {0:?} on this circuit")]
    NoSuchStream(StreamId),
    /// The operation does not apply to this stream (e.g. DATA on a RESOLVE stream; caller's
    /// fault).
    #[error("stream {stream:?}: {what}")]
    StreamMisuse {
        /// The stream.
        stream: StreamId,
        /// What was wrong.
        what: &'static str,
    },
    /// The outgoing queue is full: drain it with [`ClientCircuit::poll_outgoing`] first
    /// (caller's fault; nothing was consumed, retry the same call).
    ///
    /// [`ClientCircuit::poll_outgoing`]: super::ClientCircuit::poll_outgoing
    #[error("outgoing cell queue full: drain it first")]
    QueueFull,
    /// A message could not be encoded, e.g. an invalid hostname (caller's fault).
    #[error("cannot encode relay message: {0}")]
    Encode(#[source] EncodeError),

    // ----- ours --------------------------------------------------------------------------
    /// An invariant of this module broke (a bug; the circuit is dead).
    #[error("internal error: {0}")]
    Internal(&'static str),
}

impl CircuitError {
    /// Whose fault this is.
    pub fn fault(&self) -> Fault {
        match self {
            CircuitError::Handshake {
                source: HandshakeError::Internal(_),
                ..
            }
            | CircuitError::Internal(_) => Fault::Internal,
            CircuitError::Handshake { .. }
            | CircuitError::Crypt(_)
            | CircuitError::Malformed { .. }
            | CircuitError::Flow { .. }
            | CircuitError::UnexpectedReply { .. }
            | CircuitError::Refused(_)
            | CircuitError::Protocol { .. }
            | CircuitError::UnexpectedCell(_) => Fault::Peer,
            CircuitError::Closed
            | CircuitError::MissingTargetInfo { .. }
            | CircuitError::FirstHopOnly(_)
            | CircuitError::HandshakeSetup { .. }
            | CircuitError::ExtendPending
            | CircuitError::RelayEarlyExhausted
            | CircuitError::TooManyHops(_)
            | CircuitError::TooManyStreams(_)
            | CircuitError::NoSuchStream(_)
            | CircuitError::StreamMisuse { .. }
            | CircuitError::QueueFull
            | CircuitError::Encode(_) => Fault::Caller,
        }
    }

    /// Whether the circuit is dead after this error. Errors that are the caller's fault
    /// change nothing and are not fatal; the peer's and ours are.
    pub fn is_fatal(&self) -> bool {
        self.fault() != Fault::Caller
    }
}

#[cfg(test)]
mod test {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn faults_and_messages() {
        let hop = HopNum::FIRST;
        let peer = CircuitError::Flow {
            hop,
            source: FlowError::SendmeDigestMismatch,
        };
        assert_eq!(peer.fault(), Fault::Peer);
        assert!(peer.is_fatal());
        assert_eq!(
            peer.to_string(),
            "flow control violation by hop #1: SENDME v1 digest does not match the expected \
             cell digest"
        );
        let caller = CircuitError::NoSuchStream(StreamId(7));
        assert_eq!(caller.fault(), Fault::Caller);
        assert!(!caller.is_fatal());
        let internal = CircuitError::Handshake {
            hop,
            source: HandshakeError::Internal("x"),
        };
        assert_eq!(internal.fault(), Fault::Internal);
        assert!(internal.is_fatal());
        let refused = CircuitError::Refused(DestroyReason::RESOURCELIMIT);
        assert_eq!(refused.fault(), Fault::Peer);
        assert!(refused.to_string().contains("RESOURCELIMIT"), "{refused}");
        let proto = CircuitError::Protocol {
            hop,
            cmd: RelayCmd::BEGIN,
            what: "forward-only command sent to the client",
        };
        assert_eq!(
            proto.to_string(),
            "protocol violation by hop #1 (BEGIN): forward-only command sent to the client"
        );
    }
}
