//! The native Onion Router: the process around the sans-IO core.
//!
//! - [`config`]: the TOML configuration.
//! - [`keys`]: the relay's keys on disk, and onion key rotation.
//! - [`tls`]: Tor link TLS (and the `wss://` TLS) with rustls.
//! - [`metrics`]: Prometheus metrics and the `GET /metrics` endpoint.
//! - [`server`]: listeners, accept loops and the link layer's integration points.
//! - [`shutdown`], [`logging`]: graceful shutdown, logging with scrubbed client addresses.

pub mod config;
pub mod keys;
pub mod logging;
pub mod metrics;
pub mod server;
pub mod shutdown;
pub mod tls;

#[cfg(test)]
mod testing;
