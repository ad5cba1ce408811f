//! Wire format of the Tor protocol as this project speaks it, plus the seed's (node-Tor /
//! iAnonym) WebSocket extension.
//!
//! This crate only turns bytes into typed messages and back: no I/O, no clocks, no crypto.
//! Everything it parses is assumed hostile; parsing never panics and reports a typed
//! [`bytes::DecodeError`].
//!
//! Layers, bottom-up:
//! - [`bytes`]: bounds-checked [`bytes::Reader`] and [`bytes::Writer`].
//! - [`chancell`]: channel cells (tor-spec §3) and their message bodies, including the link
//!   handshake messages of [`link`] and the seed's CREATE_FAST_WS / CREATED_FAST_WS / RELAY_WS.
//! - [`codec`]: framing a byte stream into cells for link protocol 3, 4 and 5.
//! - [`relaycell`]: the relay cell header and relay messages (tor-spec §6), including EXTEND2
//!   link specifiers and the seed's RELAY_ASSOCIATE / RELAY_WS / RELAY_INFO.

pub mod bytes;
pub mod chancell;
pub mod codec;
pub mod link;
pub mod relaycell;
