//! The native Onion Router: the process around the sans-IO core.
//!
//! - [`config`]: the TOML configuration.
//! - [`keys`]: the relay's keys on disk, and onion key rotation.
//! - [`tls`]: Tor link TLS (and the `wss://` TLS) with rustls (re-exported from `onion-net`).
//! - [`metrics`]: Prometheus metrics and the `GET /metrics` endpoint.
//! - [`server`]: listeners, accept loops and the link layer's integration points.
//! - [`link`]: the link task (one per link: cells, circuits, backpressure).
//! - [`router`]: messages between link tasks, the link manager (links to other relays),
//!   the relay keys as the link layer uses them.
//! - [`exit`]: exit streams (BEGIN, RESOLVE) as tasks; [`dir`]: BEGIN_DIR (HTTP/1.0 directory
//!   requests), [`descriptor`]: our signed server descriptor, [`dircache`]: the cached
//!   consensus, certificates and microdescriptors of the configured network.
//! - [`seed`]: the seed's RELAY_ASSOCIATE / RELAY_WS / RELAY_INFO on hop 1, and
//!   [`ws_op_socks`], its SOCKS5 listener (WS_OP_SOCKS).
//! - [`shutdown`], [`logging`]: graceful shutdown, logging with scrubbed client addresses.
//! - [`authority`]: an own network's authority (descriptors, health checks, the signed relay
//!   list) and publication to it; [`web`]: small HTTP servers (the authority's, the dev
//!   network's page and demo site) and client; [`dev`]: `or-server dev`, a whole local network.

pub mod authority;
pub mod config;
pub mod descriptor;
pub mod dev;
pub mod dir;
pub mod dircache;
pub mod exit;
pub mod keys;
pub mod link;
pub mod logging;
pub mod metrics;
pub mod router;
pub mod seed;
pub mod server;
pub mod shutdown;
pub mod web;
pub mod ws_op_socks;
pub use onion_net::tls;

#[cfg(test)]
mod relay_test;
#[cfg(test)]
mod testing;
