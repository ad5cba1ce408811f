//! Helpers for the end-to-end tests in `tests/`:
//!
//! - [`or`]: our OR (`or-server`) started in-process with ws and/or ORPort listeners on
//!   127.0.0.1, a temporary data directory, and the [`HopTarget`](onion_op::HopTarget) a client
//!   needs to use it as a hop (read from its key store);
//! - [`http`]: a local HTTP/1.1 server that serves a deterministic body of any length
//!   ([`body`]), and a minimal GET over any byte stream;
//! - [`tornet`]: the private C tor network of `tornet/tornet.py`, started once per test binary
//!   and stopped when the test process exits.
//!
//! Everything listens on 127.0.0.1 only.

pub mod body;
pub mod http;
pub mod or;
pub mod tornet;

use std::time::Instant;

/// Why a helper failed (tests unwrap it).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O error, with what was being done.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// An [`Error::Io`] for `what`.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }

    /// An [`Error::Other`].
    pub fn other(msg: impl std::fmt::Display) -> Error {
        Error::Other(msg.to_string())
    }
}

/// The helpers' result type.
pub type Result<T> = std::result::Result<T, Error>;

/// Log to stderr with `RUST_LOG` (e.g. `RUST_LOG=or_server=debug,onion_op=debug`), once per
/// process; nothing if `RUST_LOG` is unset.
pub fn init_logging() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

/// Seconds since `start`, for timing reports.
pub fn secs(start: Instant) -> f64 {
    start.elapsed().as_secs_f64()
}
