//! The sans-IO onion routing core shared by the browser OP, the native OP and the OR.
//!
//! No sockets, no clocks, no OS randomness: callers pass bytes, times and a
//! [`rand_core::CryptoRng`] in, and get bytes and events out.
//!
//! - [`crypto`]: key material, KDFs, per-hop relay cell crypto.
//! - [`handshake`]: circuit handshakes, client and server side: TAP, CREATE_FAST, the seed's
//!   CREATE_FAST_WS, ntor and ntor-v3.
//! - [`channel`]: the link (channel) handshake state machines, initiator and responder, and the
//!   established channel's cell framing and circuit-ID allocation.
//! - [`certs`]: Tor's Ed25519 certificates, RSA identity certificates and cross-certificates,
//!   and the link handshake checks built on them.
//! - [`flow`]: circuit and stream windows and authenticated SENDME (v1).
//! - [`dir`]: directory documents: server descriptors, authority certificates, consensus, microdescs.
//! - [`path`]: path selection: weighted relay choice, path constraints, guards, build timeout.
//! - [`netdesc`]: network descriptions (the OP's one configuration document) and signed relay lists.
//! - [`engine`]: the client engine (bootstrap, circuit pool, streams) both OPs drive.
//! - [`http`]: a small sans-IO HTTP/1.1 client (requests, incremental response parsing).
//! - [`policy`]: exit policies, policy summaries (`p`/`p6`), and the exit's internal-destination
//!   guard.
//! - [`socks`]: a sans-IO SOCKS5 server handshake (RFC 1928/1929, Tor's RESOLVE extensions).

pub mod certs;
pub mod channel;
pub mod client;
pub mod crypto;
pub mod dir;
pub mod engine;
pub mod flow;
pub mod handshake;
pub mod http;
pub mod netdesc;
pub mod path;
pub mod policy;
pub mod relay;
pub mod socks;

#[cfg(test)]
mod testing;

// The test modules also run in headless Chromium (scripts/test.sh): there each test module
// imports `wasm_bindgen_test as test`, so its `#[test]` functions become wasm-bindgen tests.
#[cfg(all(test, target_arch = "wasm32"))]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);
