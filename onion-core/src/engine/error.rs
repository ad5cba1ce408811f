//! The engine's errors: [`EngineError`] (API calls, bootstrap) and [`StreamError`] (why a
//! user stream failed).

use thiserror::Error;

use super::StreamHandle;
use crate::http::HttpError;
use crate::netdesc::ListError;
use crate::path::PathError;

/// Why an engine call failed, or why the bootstrap failed ([`super::Event::BootstrapFailed`]).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The configuration is unusable (e.g. `hops` outside 1..=5).
    #[error("invalid engine configuration: {0}")]
    InvalidConfig(&'static str),
    /// No entry OR of the network description can be reached with the transports the driver
    /// offers ([`super::Transports`]).
    #[error("no entry OR reachable with the configured transports")]
    NoUsableEntry,
    /// The engine has been closed ([`super::Engine::close`]).
    #[error("the engine is closed")]
    Closed,
    /// The directory is not loaded yet (or failed); only for calls that need it now.
    #[error("the directory is not ready")]
    NotReady,
    /// No such stream (never opened, or already ended).
    #[error("no such stream {0:?}")]
    NoSuchStream(StreamHandle),
    /// Too many streams are open or waiting.
    #[error("too many streams (at most {0})")]
    TooManyStreams(usize),
    /// The host name or port cannot be sent in a BEGIN / RESOLVE.
    #[error("invalid target: {0}")]
    InvalidTarget(String),
    /// The signed relay list was refused (signature, network name, validity time, format).
    #[error("relay list refused: {0}")]
    RelayList(ListError),
    /// A consensus, certificate or microdescriptor was refused.
    #[error("directory document refused: {0}")]
    Directory(String),
    /// A directory response could not be read.
    #[error("directory HTTP error: {0}")]
    Http(HttpError),
    /// The directory server answered with an HTTP error status.
    #[error("directory server answered HTTP {status} for {path}")]
    HttpStatus {
        /// The status code.
        status: u16,
        /// The path requested.
        path: String,
    },
    /// No path could be chosen from the directory.
    #[error("no path: {0}")]
    Path(PathError),
    /// Every entry OR failed (connection, link handshake, or circuit to it): the last error.
    #[error("every entry OR failed; last error: {0}")]
    EntriesFailed(String),
    /// The directory fetch did not complete in time.
    #[error("directory fetch timed out")]
    DirectoryTimeout,
}

/// Why a user stream failed ([`super::Event::StreamEnded`] with `Some(error)`).
///
/// [`StreamError::socks5_reply`] maps each to a SOCKS5 reply code (RFC 1928 §6).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum StreamError {
    /// The exit's policy refuses this address or port (END reason EXITPOLICY).
    #[error("refused by the exit's policy")]
    ExitPolicy,
    /// The exit could not resolve the host name (END reason RESOLVEFAILED).
    #[error("the exit could not resolve the host name")]
    ResolveFailed,
    /// The destination refused the connection (END reason CONNECTREFUSED).
    #[error("connection refused by the destination")]
    ConnectionRefused,
    /// The exit's connection attempt, or ours, timed out (END reason TIMEOUT, or no
    /// CONNECTED in time).
    #[error("connection timed out")]
    Timeout,
    /// The exit has no route to the destination (END reason NOROUTE).
    #[error("no route to the destination")]
    NoRoute,
    /// The destination reset the connection (END reason CONNRESET).
    #[error("connection reset by the destination")]
    ConnectionReset,
    /// The exit ended the stream with another reason (name and code as sent).
    #[error("the exit ended the stream: {name} ({code})")]
    Exit {
        /// The END reason code.
        code: u8,
        /// Its name (tor-spec §6.3).
        name: &'static str,
    },
    /// The circuit carrying the stream died (a relay failed, DESTROY, link closed).
    #[error("the circuit failed: {0}")]
    CircuitFailed(String),
    /// No circuit could be built for the stream.
    #[error("no circuit for this stream: {0}")]
    NoCircuit(String),
    /// A protocol error on the stream.
    #[error("stream protocol error: {0}")]
    Protocol(String),
    /// The engine was closed.
    #[error("the engine was closed")]
    EngineClosed,
}

impl StreamError {
    /// The SOCKS5 reply code that describes this error best (RFC 1928 §6): 2 refused by rules,
    /// 3 network unreachable, 4 host unreachable, 5 connection refused, 6 TTL expired
    /// (timeout), 1 general failure otherwise.
    pub fn socks5_reply(&self) -> u8 {
        match self {
            StreamError::ExitPolicy => 0x02,
            // No circuit could be built (bootstrap or every build failed): the network is
            // unreachable, whether the stream was opened before or after the failure.
            StreamError::NoRoute | StreamError::NoCircuit(_) => 0x03,
            StreamError::ResolveFailed => 0x04,
            StreamError::ConnectionRefused => 0x05,
            StreamError::Timeout => 0x06,
            _ => 0x01,
        }
    }

    /// The error for an END reason received from the exit, `None` for a clean end (DONE).
    pub fn from_end_reason(reason: onion_cell::relaycell::EndReason) -> Option<Self> {
        use onion_cell::relaycell::EndReason as R;
        Some(match reason {
            R::DONE => return None,
            R::EXITPOLICY => StreamError::ExitPolicy,
            R::RESOLVEFAILED => StreamError::ResolveFailed,
            R::CONNECTREFUSED => StreamError::ConnectionRefused,
            R::TIMEOUT => StreamError::Timeout,
            R::NOROUTE => StreamError::NoRoute,
            R::CONNRESET => StreamError::ConnectionReset,
            other => StreamError::Exit {
                code: other.0,
                name: end_reason_name(other),
            },
        })
    }
}

/// The tor-spec §6.3 name of an END reason.
fn end_reason_name(r: onion_cell::relaycell::EndReason) -> &'static str {
    match r.0 {
        1 => "MISC",
        2 => "RESOLVEFAILED",
        3 => "CONNECTREFUSED",
        4 => "EXITPOLICY",
        5 => "DESTROY",
        6 => "DONE",
        7 => "TIMEOUT",
        8 => "NOROUTE",
        9 => "HIBERNATING",
        10 => "INTERNAL",
        11 => "RESOURCELIMIT",
        12 => "CONNRESET",
        13 => "TORPROTOCOL",
        14 => "NOTDIRECTORY",
        _ => "unknown",
    }
}

#[cfg(test)]
mod test {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn socks5_replies() {
        // A stream waiting while the bootstrap fails and a stream opened after it both say
        // "network unreachable".
        assert_eq!(
            StreamError::NoCircuit("entries failed".into()).socks5_reply(),
            0x03
        );
        assert_eq!(StreamError::NoRoute.socks5_reply(), 0x03);
        assert_eq!(StreamError::ExitPolicy.socks5_reply(), 0x02);
        assert_eq!(StreamError::ResolveFailed.socks5_reply(), 0x04);
        assert_eq!(StreamError::ConnectionRefused.socks5_reply(), 0x05);
        assert_eq!(StreamError::Timeout.socks5_reply(), 0x06);
        assert_eq!(StreamError::EngineClosed.socks5_reply(), 0x01);
    }
}
