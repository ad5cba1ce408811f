//! Tokio transports for Tor links, shared by the Onion Router (`or-server`) and the native
//! Onion Proxy (`onion-op`).
//!
//! - [`tls`]: Tor link TLS with rustls (the relay's throwaway link certificate, a client
//!   that accepts any certificate but checks the handshake signature, the AUTH0003 exporter),
//!   and the `wss://` server configuration.
//! - [`ws`]: a WebSocket (server or client side) as an [`AsyncRead`](tokio::io::AsyncRead) +
//!   [`AsyncWrite`](tokio::io::AsyncWrite) byte stream, with [`ws::ws_accept`] and
//!   [`ws::ws_connect`].
//! - [`link`]: async drivers of the sans-IO link handshake of `onion_core::channel` over any
//!   byte stream (TLS or WebSocket), with a timeout, and a simple cell stream for the open
//!   channel.
//!
//! Every TCP socket made here has `TCP_NODELAY` set ([`tcp_connect`], [`set_nodelay`]): cells
//! are batched by the writers, and Nagle's algorithm with delayed ACKs adds tens of
//! milliseconds to request/response exchanges.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;

pub mod link;
pub mod tls;
pub mod ws;

#[cfg(test)]
mod testing;

/// Set `TCP_NODELAY` on `tcp` (see the crate docs).
pub fn set_nodelay(tcp: &TcpStream) -> std::io::Result<()> {
    tcp.set_nodelay(true)
}

/// Connect to `addr` within `timeout`, with `TCP_NODELAY` set.
pub async fn tcp_connect(addr: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
    let tcp = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::TimedOut, "TCP connect timed out")
        })??;
    set_nodelay(&tcp)?;
    Ok(tcp)
}
