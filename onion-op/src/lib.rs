//! The native Onion Proxy's tokio driver around the sans-IO client of `onion-core`.
//!
//! - [`Link`]: a link to a first hop (Tor link TLS, or a WebSocket to one of our ORs), run by
//!   a reactor task that owns the core's [`Channel`](onion_core::channel::Channel) and
//!   multiplexes circuits.
//! - [`Circuit`]: a handle on a circuit task that owns one
//!   [`ClientCircuit`](onion_core::client::ClientCircuit): create, extend, begin, close.
//! - [`DataStream`]: one stream as a tokio `AsyncRead + AsyncWrite`.
//! - [`driver`]: the tokio driver of the sans-IO client engine
//!   ([`onion_core::engine::Engine`]: bootstrap, paths, circuit pool, streams):
//!   [`driver::OpClient`] and its streams, what the `onion-op` SOCKS5 binary runs.
//!
//! Every queue is bounded, tasks sleep until a cell, a command or a stream wakes them, and
//! the death of a link ends every circuit and stream on it with an error that says why
//! ([`LinkError`], [`CircuitClosed`], [`StreamError`]).
//!
//! ```text
//! let link = Link::connect_tls(addr, &guard, LinkConfig::default()).await?;  // or connect_ws
//! let circ = link.create_circuit(&guard, HandshakeKind::Ntor).await?;
//! circ.extend(&middle, HandshakeKind::NtorV3).await?;
//! circ.extend(&exit, HandshakeKind::NtorV3).await?;
//! let mut stream = circ.begin("example.org", 80).await?;   // AsyncRead + AsyncWrite
//! ```

pub mod associate;
mod circuit;
mod connect;
pub mod driver;
mod error;
mod link;
mod pipe;
mod stream;

#[cfg(test)]
mod test;

pub use circuit::{CIRCUIT_COMMAND_QUEUE, Circuit, ExtendKind};
pub use error::{CircuitClosed, LinkError, OpError, StreamError};
pub use link::{
    CIRCUIT_INBOUND_QUEUE, CreateKind, LINK_COMMAND_QUEUE, Link, LinkConfig, WRITE_BUFFER_LIMIT,
};
pub use onion_core::client::{HandshakeKind, HopTarget};
pub use stream::{DataStream, WRITE_BUFFER};

/// The operating system's RNG: circuit IDs, handshakes, relay cell padding.
pub(crate) type OsRng = rand_core::UnwrapErr<getrandom::SysRng>;

/// The operating system's RNG (it panics if the OS RNG fails, which a working system never
/// does; tokio turns a panic into the task's end, and the link or circuit closes).
pub(crate) fn os_rng() -> OsRng {
    rand_core::UnwrapErr(getrandom::SysRng)
}
