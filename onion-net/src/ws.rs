//! WebSocket links as byte streams.
//!
//! The seed's in-page OPs carry Tor cells in binary WebSocket messages. [`WsStream`] turns a
//! tokio-tungstenite [`WebSocketStream`] (server or client side) into an [`AsyncRead`] +
//! [`AsyncWrite`] byte stream, so that the link handshake drivers and the channel code work
//! the same over TLS and over WebSocket:
//!
//! - **reading**: the bytes of each binary message are appended to the read side, in order.
//!   Ping and pong are answered and dropped by tungstenite; a text message is an error
//!   ([`std::io::ErrorKind::InvalidData`]); a close message (or the end of the connection)
//!   is the end of the stream. At most one message is buffered, and a message is at most
//!   [`WS_MAX_MESSAGE_SIZE`] bytes.
//! - **writing**: bytes are buffered, and each flush sends what is buffered as one binary
//!   message. The buffer holds at most [`WS_WRITE_CAP`] bytes: a write that does not fit is
//!   preceded by sending what is buffered, so a write of at most [`WS_WRITE_CAP`] bytes (a
//!   whole cell, say) is never split across messages. Writers that write whole cells
//!   therefore send "one or more whole cells per binary message", as the seed's OPs expect.
//!
//! [`ws_accept`] and [`ws_connect`] make the WebSocket with the limits of [`ws_config`];
//! [`ws_connect`] also opens the TCP connection (with `TCP_NODELAY`) and, for `wss://`, the
//! TLS session.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use futures_util::{Sink, Stream};
use onion_cell::codec::MAX_CELL_LEN;
use rustls::pki_types::ServerName;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Bytes, Message};

use crate::tls::{TlsError, client_config};

/// Largest WebSocket message and frame accepted: a RELAY_WS cell carries up to 65535 bytes
/// (the seed's extension), so this leaves room for a few cells per message.
pub const WS_MAX_MESSAGE_SIZE: usize = 256 * 1024;
const _: () = assert!(
    WS_MAX_MESSAGE_SIZE >= MAX_CELL_LEN,
    "a RELAY_WS cell must fit"
);

/// Most bytes a [`WsStream`] buffers before sending them as a message: one cell of the largest
/// size ([`MAX_CELL_LEN`], 65542 bytes), so that no cell written whole is ever split.
pub const WS_WRITE_CAP: usize = MAX_CELL_LEN;
const _: () = assert!(WS_WRITE_CAP <= WS_MAX_MESSAGE_SIZE);

/// Most bytes tungstenite keeps queued for the socket before a send waits: a few messages.
pub const WS_MAX_WRITE_BUFFER: usize = 4 * WS_MAX_MESSAGE_SIZE;

/// Default time allowed to open a `ws://` or `wss://` connection (TCP, TLS, WebSocket).
pub const WS_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The WebSocket limits of every link: messages and frames of at most
/// [`WS_MAX_MESSAGE_SIZE`], at most [`WS_MAX_WRITE_BUFFER`] bytes queued for the socket.
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(WS_MAX_MESSAGE_SIZE))
        .max_frame_size(Some(WS_MAX_MESSAGE_SIZE))
        .max_write_buffer_size(WS_MAX_WRITE_BUFFER)
}

/// A WebSocket as a byte stream: see the [module docs](self).
#[derive(Debug)]
pub struct WsStream<S> {
    ws: WebSocketStream<S>,
    /// The message being read, and how much of it was read.
    read: Bytes,
    read_pos: usize,
    /// The peer closed (or the connection ended): reads return end of stream.
    read_eof: bool,
    /// Bytes written, not yet given to tungstenite.
    write: Vec<u8>,
}

impl<S> WsStream<S> {
    /// Wrap an established WebSocket.
    pub fn new(ws: WebSocketStream<S>) -> Self {
        WsStream {
            ws,
            read: Bytes::new(),
            read_pos: 0,
            read_eof: false,
            write: Vec::new(),
        }
    }

    /// The WebSocket.
    pub fn get_ref(&self) -> &WebSocketStream<S> {
        &self.ws
    }

    /// The underlying connection (TCP, TLS...).
    pub fn transport(&self) -> &S
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        self.ws.get_ref()
    }

    /// Bytes written and not yet sent in a message (flush sends them).
    pub fn buffered_for_write(&self) -> usize {
        self.write.len()
    }
}

/// A tungstenite error as an I/O error.
fn io_err(e: tungstenite::Error) -> io::Error {
    use tungstenite::error::ProtocolError;
    match e {
        tungstenite::Error::Io(e) => e,
        tungstenite::Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            io::Error::new(io::ErrorKind::ConnectionReset, e)
        }
        other => io::Error::other(other),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsStream<S> {
    /// Give the buffered bytes to tungstenite as one binary message (not flushed).
    fn poll_send_buffered(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.write.is_empty() {
            return Poll::Ready(Ok(()));
        }
        ready!(Pin::new(&mut self.ws).poll_ready(cx)).map_err(io_err)?;
        let msg = Message::Binary(Bytes::from(std::mem::take(&mut self.write)));
        Pin::new(&mut self.ws).start_send(msg).map_err(io_err)?;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            let rest = this.read.get(this.read_pos..).unwrap_or_default();
            if !rest.is_empty() {
                let n = rest.len().min(buf.remaining());
                buf.put_slice(rest.get(..n).unwrap_or_default());
                this.read_pos += n;
                return Poll::Ready(Ok(()));
            }
            if this.read_eof || buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut this.ws).poll_next(cx)) {
                Some(Ok(Message::Binary(bytes))) => {
                    this.read = bytes;
                    this.read_pos = 0;
                }
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "text WebSocket message on a binary link",
                    )));
                }
                Some(Ok(Message::Close(_))) | None => this.read_eof = true,
                // Ping is answered by tungstenite; pong and raw frames mean nothing here.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Err(
                    tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed,
                )) => this.read_eof = true,
                Some(Err(e)) => return Poll::Ready(Err(io_err(e))),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if this.write.len().saturating_add(buf.len()) > WS_WRITE_CAP {
            ready!(this.poll_send_buffered(cx))?;
        }
        let n = buf.len().min(WS_WRITE_CAP.saturating_sub(this.write.len()));
        this.write
            .extend_from_slice(buf.get(..n).unwrap_or_default());
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send_buffered(cx))?;
        Pin::new(&mut this.ws).poll_flush(cx).map_err(io_err)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send_buffered(cx))?;
        match ready!(Pin::new(&mut this.ws).poll_close(cx)) {
            Ok(())
            | Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                Poll::Ready(Ok(()))
            }
            Err(e) => Poll::Ready(Err(io_err(e))),
        }
    }
}

/// Why a WebSocket connection could not be opened or accepted.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum WsError {
    /// The URL is not `ws://host[:port]/...` or `wss://host[:port]/...`.
    #[error("bad WebSocket URL {url:?}: {reason}")]
    BadUrl {
        /// The URL.
        url: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The TCP connection failed (or no address of the host answered).
    #[error("cannot connect to {host}: {source}")]
    Connect {
        /// The host and port.
        host: String,
        /// The last error.
        source: io::Error,
    },
    /// The TLS handshake of a `wss://` URL failed.
    #[error("TLS: {0}")]
    Tls(io::Error),
    /// The TLS client could not be set up.
    #[error("{0}")]
    TlsSetup(#[from] TlsError),
    /// The WebSocket handshake failed.
    #[error("WebSocket handshake: {0}")]
    Handshake(#[from] tungstenite::Error),
    /// The whole connection took longer than allowed.
    #[error("WebSocket connection timed out after {0:?}")]
    Timeout(Duration),
}

/// Accept a WebSocket on `stream` (server side, after TCP or TLS), with [`ws_config`].
pub async fn ws_accept<S>(stream: S) -> Result<WsStream<S>, WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let ws = tokio_tungstenite::accept_async_with_config(stream, Some(ws_config())).await?;
    Ok(WsStream::new(ws))
}

/// Run the client side of the WebSocket handshake for `url` on an open connection `stream`
/// (for callers that make the TCP or TLS connection themselves).
pub async fn ws_client<S>(url: &str, stream: S) -> Result<WsStream<S>, WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (ws, _response) =
        tokio_tungstenite::client_async_with_config(url, stream, Some(ws_config())).await?;
    Ok(WsStream::new(ws))
}

/// The connection under a client WebSocket: plain TCP (`ws://`) or TLS (`wss://`).
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum ClientTransport {
    /// `ws://`.
    Plain(TcpStream),
    /// `wss://`.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for ClientTransport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientTransport::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ClientTransport::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientTransport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientTransport::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ClientTransport::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientTransport::Plain(s) => Pin::new(s).poll_flush(cx),
            ClientTransport::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientTransport::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ClientTransport::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A parsed `ws://` or `wss://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
struct WsUrl {
    tls: bool,
    host: String,
    port: u16,
}

fn parse_url(url: &str) -> Result<WsUrl, WsError> {
    let bad = |reason| WsError::BadUrl {
        url: url.to_owned(),
        reason,
    };
    let uri: tungstenite::http::Uri = url.parse().map_err(|_| bad("not a URL"))?;
    let tls = match uri.scheme_str() {
        Some("ws") => false,
        Some("wss") => true,
        _ => return Err(bad("the scheme must be ws or wss")),
    };
    let host = uri.host().ok_or(bad("no host"))?;
    // An IPv6 literal keeps its brackets in the URI; the socket API wants it bare.
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    Ok(WsUrl {
        tls,
        host: host.to_owned(),
        port,
    })
}

/// Open a WebSocket link to `url` (`ws://` or `wss://`) within [`WS_CONNECT_TIMEOUT`]:
/// TCP (with `TCP_NODELAY`, trying each address of the host in turn), TLS for `wss://`, then
/// the WebSocket handshake with [`ws_config`].
///
/// For `wss://`, `tls` is the rustls client configuration; `None` uses
/// [`client_config`], which accepts any certificate: the Tor link handshake authenticates the
/// relay, not the TLS PKI (over WebSocket the CERTS cell is checked but not bound to the
/// connection, and hop 1 is authenticated by its ntor key; see `onion_core::channel`).
pub async fn ws_connect(
    url: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<WsStream<ClientTransport>, WsError> {
    tokio::time::timeout(WS_CONNECT_TIMEOUT, ws_connect_inner(url, tls))
        .await
        .map_err(|_| WsError::Timeout(WS_CONNECT_TIMEOUT))?
}

async fn ws_connect_inner(
    url: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<WsStream<ClientTransport>, WsError> {
    let u = parse_url(url)?;
    let host_port = format!("{}:{}", u.host, u.port);
    let connect_err = |source| WsError::Connect {
        host: host_port.clone(),
        source,
    };
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the host has no address");
    let mut tcp = None;
    for addr in tokio::net::lookup_host((u.host.as_str(), u.port))
        .await
        .map_err(connect_err)?
    {
        match TcpStream::connect(addr).await {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => last = e,
        }
    }
    let tcp = tcp.ok_or_else(|| connect_err(last))?;
    crate::set_nodelay(&tcp).map_err(connect_err)?;
    let transport = if u.tls {
        let config = match tls {
            Some(c) => c,
            None => client_config()?,
        };
        let name = ServerName::try_from(u.host.clone()).map_err(|_| WsError::BadUrl {
            url: url.to_owned(),
            reason: "the host is not a valid TLS server name",
        })?;
        let stream = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(WsError::Tls)?;
        ClientTransport::Tls(Box::new(stream))
    } else {
        ClientTransport::Plain(tcp)
    };
    ws_client(url, transport).await
}

#[cfg(test)]
mod test {
    use super::*;
    use futures_util::{SinkExt, StreamExt};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    const WAIT: Duration = Duration::from_secs(10);

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("ws://127.0.0.1:9080/").unwrap(),
            WsUrl {
                tls: false,
                host: "127.0.0.1".into(),
                port: 9080
            }
        );
        assert_eq!(
            parse_url("wss://relay.example.net/tor").unwrap(),
            WsUrl {
                tls: true,
                host: "relay.example.net".into(),
                port: 443
            }
        );
        assert_eq!(parse_url("ws://[::1]:81").unwrap().host, "::1");
        assert_eq!(parse_url("ws://h").unwrap().port, 80);
        for bad in ["http://h/", "h:80", "", "ws:///x"] {
            assert!(
                matches!(parse_url(bad), Err(WsError::BadUrl { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn limits() {
        let c = ws_config();
        assert_eq!(c.max_message_size, Some(WS_MAX_MESSAGE_SIZE));
        assert_eq!(c.max_frame_size, Some(WS_MAX_MESSAGE_SIZE));
        assert_eq!(c.max_write_buffer_size, WS_MAX_WRITE_BUFFER);
    }

    /// A `ws://` listener on loopback whose connections are handed to `serve`.
    async fn server<F, Fut>(serve: F) -> std::net::SocketAddr
    where
        F: FnOnce(WsStream<TcpStream>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            serve(ws_accept(tcp).await.unwrap()).await;
        });
        addr
    }

    #[tokio::test]
    async fn byte_stream_round_trip_over_loopback() {
        // An echo server on the adapter: what it reads, it writes back and flushes.
        let addr = server(|mut ws| async move {
            let mut buf = vec![0u8; 100_000];
            loop {
                let n = ws.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                ws.write_all(&buf[..n]).await.unwrap();
                ws.flush().await.unwrap();
            }
            ws.shutdown().await.unwrap();
        })
        .await;
        let mut client = ws_connect(&format!("ws://{addr}/"), None).await.unwrap();
        assert!(matches!(client.transport(), ClientTransport::Plain(_)));
        let mut rng = crate::testing::seeded_rng(3);
        for len in [
            1usize,
            514,
            509 * 3,
            WS_WRITE_CAP,
            WS_WRITE_CAP + 1,
            300_000,
        ] {
            let mut data = vec![0u8; len];
            rand_core::Rng::fill_bytes(&mut rng, &mut data);
            client.write_all(&data).await.unwrap();
            client.flush().await.unwrap();
            assert_eq!(client.buffered_for_write(), 0);
            let mut back = vec![0u8; len];
            tokio::time::timeout(WAIT, client.read_exact(&mut back))
                .await
                .unwrap()
                .unwrap();
            assert!(back == data, "{len} bytes");
        }
        // Closing: the server sees the end of the stream, and closes too.
        client.shutdown().await.unwrap();
        let mut rest = Vec::new();
        let n = tokio::time::timeout(WAIT, client.read_to_end(&mut rest))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 0);
    }

    #[tokio::test]
    async fn messages_carry_whole_writes_and_respect_the_cap() {
        // The server side is a raw tungstenite client's peer: look at the messages.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let peer = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            let mut sizes = Vec::new();
            while let Some(Ok(m)) = ws.next().await {
                match m {
                    Message::Binary(b) => sizes.push(b.len()),
                    Message::Close(_) => break,
                    _ => {}
                }
            }
            sizes
        });
        let mut client = ws_connect(&format!("ws://{addr}/"), None).await.unwrap();
        // Three 514-byte cells, one flush: one message.
        for _ in 0..3 {
            client.write_all(&[1u8; 514]).await.unwrap();
        }
        client.flush().await.unwrap();
        // 200 cells without a flush: messages of whole cells, none over the cap.
        for _ in 0..200 {
            client.write_all(&[2u8; 514]).await.unwrap();
        }
        client.flush().await.unwrap();
        // A largest RELAY_WS cell after a small one: not split.
        client.write_all(&[3u8; 10]).await.unwrap();
        client.write_all(&vec![4u8; MAX_CELL_LEN]).await.unwrap();
        client.flush().await.unwrap();
        // Flushing with nothing buffered sends nothing.
        client.flush().await.unwrap();
        client.shutdown().await.unwrap();
        let sizes = tokio::time::timeout(WAIT, peer).await.unwrap().unwrap();
        let per_cap = WS_WRITE_CAP / 514;
        let mut expect = vec![3 * 514];
        let mut left = 200;
        while left > 0 {
            let k = left.min(per_cap);
            expect.push(k * 514);
            left -= k;
        }
        expect.extend([10, MAX_CELL_LEN]);
        assert_eq!(sizes, expect);
    }

    #[tokio::test]
    async fn text_is_an_error_ping_is_ignored_close_is_eof() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            ws.send(Message::Ping(Bytes::from_static(b"hi")))
                .await
                .unwrap();
            ws.send(Message::binary(b"abc".to_vec())).await.unwrap();
            ws.send(Message::binary(Vec::new())).await.unwrap();
            ws.send(Message::binary(b"de".to_vec())).await.unwrap();
            // The adapter answered the ping.
            let pong = ws.next().await.unwrap().unwrap();
            assert_eq!(pong, Message::Pong(Bytes::from_static(b"hi")));
            go_rx.await.unwrap();
            ws.send(Message::text("no")).await.unwrap();
            ws.close(None).await.unwrap();
        });
        let mut client = ws_connect(&format!("ws://{addr}/"), None).await.unwrap();
        let mut buf = [0u8; 5];
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"abcde");
        go_tx.send(()).unwrap();
        let err = client.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);

        // A close message ends the stream.
        let addr = server(|mut ws| async move {
            ws.write_all(b"last").await.unwrap();
            ws.shutdown().await.unwrap();
        })
        .await;
        let mut client = ws_connect(&format!("ws://{addr}/"), None).await.unwrap();
        let mut all = Vec::new();
        tokio::time::timeout(WAIT, client.read_to_end(&mut all))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(all, b"last");
    }

    #[tokio::test]
    async fn oversized_message_is_refused() {
        let addr = server(|mut ws| async move {
            let mut buf = Vec::new();
            let r = ws.read_to_end(&mut buf).await;
            assert!(r.is_err(), "{r:?}");
        })
        .await;
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (mut raw, _) = tokio_tungstenite::client_async(format!("ws://{addr}/"), tcp)
            .await
            .unwrap();
        let big = vec![0u8; WS_MAX_MESSAGE_SIZE + 1];
        let _ = raw.send(Message::binary(big)).await;
        // The server gives up on the link.
        let end = tokio::time::timeout(WAIT, raw.next()).await.unwrap();
        assert!(!matches!(end, Some(Ok(Message::Binary(_)))), "{end:?}");
    }

    #[tokio::test]
    async fn connect_errors() {
        // Nothing listens there.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        assert!(matches!(
            ws_connect(&format!("ws://{addr}/"), None).await,
            Err(WsError::Connect { .. })
        ));
        assert!(matches!(
            ws_connect("ftp://x/", None).await,
            Err(WsError::BadUrl { .. })
        ));
    }

    #[tokio::test]
    async fn wss_with_any_certificate() {
        use crate::testing::TempDir;
        let tmp = TempDir::new("wss");
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (c, k) = (tmp.path().join("c.pem"), tmp.path().join("k.pem"));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        let acceptor =
            tokio_rustls::TlsAcceptor::from(crate::tls::wss_server_config(&c, &k).unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let tls = acceptor.accept(tcp).await.unwrap();
            let mut ws = ws_accept(tls).await.unwrap();
            let mut buf = [0u8; 4];
            ws.read_exact(&mut buf).await.unwrap();
            ws.write_all(&buf).await.unwrap();
            ws.flush().await.unwrap();
        });
        let mut client = ws_connect(&format!("wss://localhost:{port}/"), None)
            .await
            .unwrap();
        assert!(matches!(client.transport(), ClientTransport::Tls(_)));
        client.write_all(b"ping").await.unwrap();
        client.flush().await.unwrap();
        let mut buf = [0u8; 4];
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
    }
}
