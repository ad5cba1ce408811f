//! The browser Onion Proxy: wasm-bindgen glue around `onion_core::engine::Engine`, with no
//! protocol logic of its own.
//!
//! - `ws`: the browser `WebSocket` as the link transport (binary messages, `arraybuffer`,
//!   a bounded send buffer, closed on drop);
//! - `timer`: one `setTimeout` at the engine's next deadline, `Date.now()` as the clock;
//! - randomness: getrandom's `wasm_js` backend (`crypto.getRandomValues`);
//! - [`Client`]: the low-level JS class (streams as ids with `read`/`write` promises), and
//!   [`HttpResponseParser`] / [`build_request`]: the core's HTTP/1.1 client parser
//!   (`onion_core::http`) for the package's `fetch`;
//! - [`TlsClient`]: rustls inside wasm for `https:` (the exit relays only ciphertext).
//!
//! Only globals present in a Window and in a dedicated Worker are used (`WebSocket`,
//! `setTimeout`, `crypto`, `Date`). The package's `index.js` builds the public `TorClient`
//! (WHATWG streams, `fetch`) on top; `scripts/build-pkg.sh` builds the package.

mod client;
mod convert;
mod http;
mod timer;
mod tls;
mod ws;

pub use client::Client;
pub use http::{HttpResponseParser, build_request, encode_chunk_js, last_chunk};
pub use tls::TlsClient;
