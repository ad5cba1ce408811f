//! Errors of the OP driver: [`OpError`] for operations, [`LinkError`] for why a link died,
//! [`CircuitClosed`] for why a circuit is gone, [`StreamError`] for why a stream failed.

use std::io;

use onion_cell::bytes::DecodeError;
use onion_cell::chancell::DestroyReason;
use onion_cell::relaycell::EndReason;
use onion_core::channel::ChannelError;
use onion_core::client::{CircuitError, CloseReason, StreamEndReason};
use thiserror::Error;

/// Why a link to a first hop is gone. Every circuit on the link ends with
/// [`CircuitClosed::Link`] carrying it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum LinkError {
    /// Reading from or writing to the connection failed.
    #[error("link I/O error ({kind}): {message}")]
    Io {
        /// The kind of the I/O error.
        kind: io::ErrorKind,
        /// Its message.
        message: String,
    },
    /// The relay closed the connection.
    #[error("the relay closed the link")]
    Eof,
    /// The relay broke the link protocol (a cell that does not decode, a handshake cell on
    /// the open link, ...).
    #[error("link protocol error: {0}")]
    Protocol(ChannelError),
    /// The link was closed on our side ([`Link::close`](crate::Link::close), or every handle
    /// was dropped).
    #[error("the link was closed locally")]
    Closed,
}

impl LinkError {
    /// The [`LinkError::Io`] for `e`.
    pub fn io(e: &io::Error) -> Self {
        LinkError::Io {
            kind: e.kind(),
            message: e.to_string(),
        }
    }
}

/// Why a circuit is gone.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CircuitClosed {
    /// We closed it ([`Circuit::close`](crate::Circuit::close), or every handle and stream
    /// was dropped).
    #[error("the circuit was closed locally")]
    Local,
    /// Hop 1 destroyed it.
    #[error("hop 1 destroyed the circuit ({0})")]
    Destroyed(DestroyReason),
    /// A relay on it broke the protocol (or a cell was corrupted): we destroyed it.
    #[error("the circuit failed: {0}")]
    Failed(CircuitError),
    /// A hop cut the circuit (RELAY_TRUNCATED) while it was in use: we destroyed it, as C
    /// tor does (tor-spec §5.4).
    #[error("the circuit was truncated to {hops} hop(s) ({reason}) and closed")]
    Truncated {
        /// Hops that were left.
        hops: usize,
        /// The reason the hop gave.
        reason: DestroyReason,
    },
    /// An extension or a stream request did not complete in time: we destroyed it.
    #[error("the circuit timed out ({0})")]
    TimedOut(&'static str),
    /// The link to hop 1 died.
    #[error("the link to hop 1 closed: {0}")]
    Link(LinkError),
}

impl From<CloseReason> for CircuitClosed {
    fn from(r: CloseReason) -> Self {
        match r {
            CloseReason::Destroyed(d) => CircuitClosed::Destroyed(d),
            CloseReason::Failed(e) => CircuitClosed::Failed(e),
            _ => CircuitClosed::Local,
        }
    }
}

/// Why a stream failed (carried inside the [`io::Error`]s of
/// [`DataStream`](crate::DataStream), and in [`OpError::Stream`]).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum StreamError {
    /// The exit (or the stream's hop) ended the stream with this reason (anything but DONE
    /// once connected, which is an end of file). Before CONNECTED, this is the refusal.
    #[error("stream ended by the relay: {0}")]
    End(EndReason),
    /// The exit refused the destination by its exit policy.
    #[error("stream refused by the exit policy")]
    ExitPolicy,
    /// The circuit was cut at or before the stream's hop.
    #[error("stream cut: the circuit was truncated ({0})")]
    Truncated(DestroyReason),
    /// The circuit is gone.
    #[error("{0}")]
    Circuit(CircuitClosed),
}

impl StreamError {
    /// The error for a core stream end.
    pub(crate) fn from_end(reason: &StreamEndReason) -> Self {
        match reason {
            StreamEndReason::Remote {
                reason: EndReason::EXITPOLICY,
                ..
            } => StreamError::ExitPolicy,
            StreamEndReason::Remote { reason, .. } => StreamError::End(*reason),
            StreamEndReason::Truncated(r) => StreamError::Truncated(*r),
            StreamEndReason::CircuitClosed(c) => StreamError::Circuit(c.clone().into()),
            _ => StreamError::Circuit(CircuitClosed::Local),
        }
    }

    /// The closest [`io::ErrorKind`].
    pub fn io_kind(&self) -> io::ErrorKind {
        match self {
            StreamError::End(r) => match *r {
                EndReason::CONNECTREFUSED => io::ErrorKind::ConnectionRefused,
                EndReason::CONNRESET => io::ErrorKind::ConnectionReset,
                EndReason::TIMEOUT => io::ErrorKind::TimedOut,
                EndReason::RESOLVEFAILED | EndReason::NOROUTE => io::ErrorKind::HostUnreachable,
                _ => io::ErrorKind::ConnectionAborted,
            },
            StreamError::ExitPolicy => io::ErrorKind::PermissionDenied,
            StreamError::Truncated(_) | StreamError::Circuit(_) => io::ErrorKind::ConnectionAborted,
        }
    }

    /// This error as an [`io::Error`] (its source is `self`).
    pub fn to_io(&self) -> io::Error {
        io::Error::new(self.io_kind(), self.clone())
    }
}

/// Why an OP operation failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum OpError {
    /// The TCP connection, the TLS or the WebSocket handshake to hop 1 failed.
    #[error("cannot connect to {what}: {source}")]
    Connect {
        /// What we connected to.
        what: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The link handshake failed (including: the relay did not prove the identity we
    /// expected).
    #[error("link handshake failed: {0}")]
    Handshake(#[source] ChannelError),
    /// The link is gone.
    #[error("{0}")]
    Link(#[source] LinkError),
    /// The circuit refused the operation, or failed doing it (see
    /// [`CircuitError::fault`]).
    #[error("{0}")]
    Circuit(#[source] CircuitError),
    /// The circuit is gone.
    #[error("{0}")]
    CircuitClosed(#[source] CircuitClosed),
    /// An extension failed: the hop could not reach the next relay (RELAY_TRUNCATED). The
    /// circuit was closed.
    #[error("extension failed: the circuit was truncated ({0})")]
    ExtendFailed(DestroyReason),
    /// A stream could not be opened or failed.
    #[error("{0}")]
    Stream(#[source] StreamError),
    /// The destination is not a valid address or hostname.
    #[error("invalid destination address: {0}")]
    BadAddress(#[source] DecodeError),
    /// An operation did not finish in time.
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// A transport failure outside the link protocol (TLS configuration, WebSocket setup).
    #[error("transport: {0}")]
    Transport(String),
}

impl From<CircuitClosed> for OpError {
    fn from(c: CircuitClosed) -> Self {
        OpError::CircuitClosed(c)
    }
}

impl From<LinkError> for OpError {
    fn from(e: LinkError) -> Self {
        OpError::Link(e)
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn stream_errors_map_to_io_kinds() {
        let refused = StreamError::from_end(&StreamEndReason::Remote {
            reason: EndReason::CONNECTREFUSED,
            exit_policy: None,
        });
        assert_eq!(refused, StreamError::End(EndReason::CONNECTREFUSED));
        assert_eq!(refused.io_kind(), io::ErrorKind::ConnectionRefused);
        let e = refused.to_io();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
        assert!(e.to_string().contains("CONNECTREFUSED"), "{e}");
        let policy = StreamError::from_end(&StreamEndReason::Remote {
            reason: EndReason::EXITPOLICY,
            exit_policy: None,
        });
        assert_eq!(policy, StreamError::ExitPolicy);
        assert_eq!(policy.io_kind(), io::ErrorKind::PermissionDenied);
        let closed = StreamError::from_end(&StreamEndReason::CircuitClosed(
            CloseReason::Destroyed(DestroyReason::FINISHED),
        ));
        assert_eq!(
            closed,
            StreamError::Circuit(CircuitClosed::Destroyed(DestroyReason::FINISHED))
        );
        assert!(closed.to_string().contains("FINISHED"), "{closed}");
    }

    #[test]
    fn link_error_messages() {
        let e = LinkError::io(&io::Error::new(io::ErrorKind::BrokenPipe, "gone"));
        assert_eq!(
            e,
            LinkError::Io {
                kind: io::ErrorKind::BrokenPipe,
                message: "gone".into()
            }
        );
        let c = CircuitClosed::Link(LinkError::Eof);
        assert_eq!(
            c.to_string(),
            "the link to hop 1 closed: the relay closed the link"
        );
    }
}
