//! Logging setup and address scrubbing.

use std::fmt;
use std::io::IsTerminal;
use std::net::SocketAddr;

use tracing_subscriber::EnvFilter;

/// Install the global `tracing` subscriber: `RUST_LOG` if set, else `level` (a level or a
/// filter directive, as checked by [`crate::config::Config::validate`]). Fails if the filter
/// does not parse or a subscriber is already installed.
pub fn init(level: &str) -> Result<(), String> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(env) if !env.trim().is_empty() => {
            EnvFilter::try_new(&env).map_err(|e| format!("RUST_LOG={env:?}: {e}"))?
        }
        _ => EnvFilter::try_new(level).map_err(|e| format!("log level {level:?}: {e}"))?,
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init()
        .map_err(|e| e.to_string())
}

/// A client's address as it may appear in logs: itself if the configuration allows
/// (`log_client_addresses = true`), else `[scrubbed]`. `Debug` scrubs too.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr {
    addr: SocketAddr,
    reveal: bool,
}

impl PeerAddr {
    /// `addr`, shown in logs only if `reveal`.
    pub fn new(addr: SocketAddr, reveal: bool) -> Self {
        PeerAddr { addr, reveal }
    }

    /// The real address, for the code that needs it (never for logs).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.reveal {
            write!(f, "{}", self.addr)
        } else {
            f.write_str("[scrubbed]")
        }
    }
}

impl fmt::Debug for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn addresses_are_scrubbed_unless_allowed() {
        let addr: SocketAddr = "192.0.2.7:4242".parse().unwrap();
        assert_eq!(PeerAddr::new(addr, false).to_string(), "[scrubbed]");
        assert_eq!(format!("{}", PeerAddr::new(addr, true)), "192.0.2.7:4242");
        assert_eq!(format!("{:?}", PeerAddr::new(addr, false)), "[scrubbed]");
        assert_eq!(PeerAddr::new(addr, false).addr(), addr);
    }
}
