//! Async drivers of the link (channel) handshake, and a simple cell stream for the open
//! channel.
//!
//! The state machines are onion-core's [`Initiator`] and [`Responder`]; the drivers here move
//! their bytes over any [`AsyncRead`] + [`AsyncWrite`] (a TLS stream, or a
//! [`WsStream`](crate::ws::WsStream)), within a timeout:
//!
//! - [`initiator_handshake`]: an OP connecting to its first hop, or an OR extending to another
//!   relay. For relay mode, compute the AUTH0003 exporter value with [`auth0003_exporter`]
//!   before making the [`Initiator`] (it is part of its [`RelayAuth`](onion_core::channel::RelayAuth)).
//! - [`responder_handshake`]: an OR accepting a connection. An authenticating initiator's
//!   AUTHENTICATE cell makes the responder ask for a TLS exporter value: the driver gets it
//!   from its `exporter` argument, [`tls_exporter`] for a TLS stream, [`no_exporter`] where
//!   there is no TLS (a WebSocket responder offers no authentication, so it is never asked).
//!
//! Both read in pieces of at most [`HANDSHAKE_READ_CHUNK`] bytes (the core bounds the whole
//! handshake), and return the stream, the open [`Channel`] and the [`ChannelInfo`]. Bytes
//! received after the last handshake cell are already fed into the channel: call
//! [`Channel::poll_cell`] before reading more.
//!
//! Which [`TlsBinding`] to use: over TLS, [`tls_binding`] of the stream (the SHA-256 of the
//! responder's certificate, which the initiator sees and the responder presents); over a
//! WebSocket (`ws://`, and `wss://` too, whose certificate a browser cannot pass on),
//! [`TlsBinding::None`].

use std::io;
use std::time::Duration;

use onion_cell::chancell::ChanCell;
use onion_core::certs::link::{AUTH0003_EXPORTER_LABEL, AUTH0003_EXPORTER_LEN};
use onion_core::channel::{
    Channel, ChannelError, ChannelInfo, ExporterRequest, Initiator, Responder, TlsBinding,
};
use sha2::{Digest, Sha256};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::tls::{TlsError, TlsLinkInfo};

/// Default time allowed for a whole link handshake (C tor allows a minute; browsers and
/// relays on a working network need well under a second).
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Most bytes read from the peer at once during a handshake. At most
/// [`Channel::INPUT_CAPACITY`], so that what follows the handshake always fits in the new
/// channel.
pub const HANDSHAKE_READ_CHUNK: usize = 16 * 1024;
const _: () = assert!(HANDSHAKE_READ_CHUNK <= Channel::INPUT_CAPACITY);

/// Most bytes [`CellStream`] reads from the connection at once.
pub const CELL_READ_CHUNK: usize = 64 * 1024;

/// Why a link handshake (or an open link of a [`CellStream`]) failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum LinkError {
    /// Reading or writing failed.
    #[error("link I/O: {0}")]
    Io(#[from] io::Error),
    /// The peer broke the link protocol, or we misused the state machine
    /// ([`ChannelError`] says whose fault).
    #[error("link protocol: {0}")]
    Channel(#[from] ChannelError),
    /// The peer closed the connection before the handshake was complete.
    #[error("connection closed during the link handshake")]
    Eof,
    /// The handshake took longer than allowed.
    #[error("link handshake timed out after {0:?}")]
    Timeout(Duration),
    /// The TLS exporter value for AUTHENTICATE could not be computed.
    #[error("TLS exporter: {0}")]
    Exporter(TlsError),
}

/// What binds the handshake to a TLS link: the SHA-256 of the responder's certificate.
///
/// On the initiator's side, `peer_cert_der` is the certificate the server presented
/// ([`TlsLinkInfo::peer_certificate_der`]); on the responder's, its own link certificate.
/// `None` (no certificate) gives [`TlsBinding::None`], which an initiator must not accept
/// on a TLS link: check for it.
pub fn binding_for_cert(cert_der: Option<&[u8]>) -> TlsBinding {
    match cert_der {
        Some(der) => TlsBinding::Tls {
            responder_cert_sha256: Sha256::digest(der).into(),
        },
        None => TlsBinding::None,
    }
}

/// The [`TlsBinding`] of an initiator's TLS stream: the hash of the certificate the server
/// presented, or `None` if it presented none (never from a Tor relay: refuse the link).
pub fn tls_binding<T: TlsLinkInfo>(stream: &T) -> Option<TlsBinding> {
    stream
        .peer_certificate_der()
        .map(|der| binding_for_cert(Some(der)))
}

/// The AUTH0003 `TLSSECRETS` of a TLS link, for the identity whose `CID` (SHA-256 of the RSA
/// identity key) is `cid`: what an authenticating initiator puts in its
/// [`RelayAuth`](onion_core::channel::RelayAuth) (with its own
/// `RelaySigningMaterial::rsa_id_sha256`).
pub fn auth0003_exporter<T: TlsLinkInfo>(stream: &T, cid: &[u8; 32]) -> Result<[u8; 32], TlsError> {
    let mut out = [0u8; AUTH0003_EXPORTER_LEN];
    stream.export_keying_material(&mut out, AUTH0003_EXPORTER_LABEL, Some(cid))?;
    Ok(out)
}

/// A responder's exporter provider for TLS streams: the value [`ExporterRequest`] asks for.
pub fn tls_exporter<T: TlsLinkInfo>(
    stream: &T,
    req: &ExporterRequest,
) -> Result<[u8; 32], TlsError> {
    let mut out = [0u8; 32];
    if req.len != out.len() {
        return Err(TlsError::NoExporter("exporter length other than 32"));
    }
    stream.export_keying_material(&mut out, req.label, Some(&req.context))?;
    Ok(out)
}

/// A responder's exporter provider where there is no TLS session (WebSocket): always fails.
/// A responder with [`TlsBinding::None`] offers no authentication, so it never asks.
pub fn no_exporter<IO>(_io: &IO, _req: &ExporterRequest) -> Result<[u8; 32], TlsError> {
    Err(TlsError::NoExporter("no TLS session on this link"))
}

/// Write everything `poll` yields, then flush.
async fn send_all<IO: AsyncWrite + Unpin>(
    io: &mut IO,
    mut poll: impl FnMut() -> Option<Vec<u8>>,
) -> io::Result<()> {
    let mut wrote = false;
    while let Some(bytes) = poll() {
        io.write_all(&bytes).await?;
        wrote = true;
    }
    if wrote {
        io.flush().await?;
    }
    Ok(())
}

/// The open channel, with the bytes read after the handshake fed into it.
fn open(
    (mut channel, info): (Channel, ChannelInfo),
    leftover: &[u8],
) -> Result<(Channel, ChannelInfo), LinkError> {
    let taken = channel.handle_input(leftover);
    if taken != leftover.len() {
        // Cannot happen: HANDSHAKE_READ_CHUNK fits in an empty channel.
        return Err(ChannelError::Misuse("handshake leftover larger than the channel").into());
    }
    Ok((channel, info))
}

/// Run the initiator's side of the link handshake over `io` within `timeout`. `now_unix`
/// gives the time (seconds since the Unix epoch) whenever input is handled.
///
/// On success, returns the stream, the open channel (holding whatever the responder sent
/// after its handshake cells) and what the handshake established.
pub async fn initiator_handshake<IO, N>(
    mut io: IO,
    mut initiator: Initiator,
    now_unix: N,
    timeout: Duration,
) -> Result<(IO, Channel, ChannelInfo), LinkError>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    N: Fn() -> u64,
{
    let run = async {
        let mut buf = vec![0u8; HANDSHAKE_READ_CHUNK];
        let mut leftover = Vec::new();
        loop {
            send_all(&mut io, || initiator.poll_transmit()).await?;
            if initiator.is_done() {
                break;
            }
            let n = io.read(&mut buf).await?;
            if n == 0 {
                return Err(LinkError::Eof);
            }
            let got = buf.get(..n).unwrap_or_default();
            let used = initiator.handle_input(now_unix(), got)?;
            if used < n {
                // Only a complete handshake leaves bytes: they belong to the channel.
                leftover = got.get(used..).unwrap_or_default().to_vec();
                send_all(&mut io, || initiator.poll_transmit()).await?;
                break;
            }
        }
        open(initiator.finish()?, &leftover)
    };
    let (channel, info) = tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| LinkError::Timeout(timeout))??;
    Ok((io, channel, info))
}

/// Run the responder's side of the link handshake over `io` within `timeout`. `exporter`
/// computes the TLS exporter value an authenticating initiator's AUTHENTICATE cell needs
/// ([`tls_exporter`] over TLS, [`no_exporter`] over WebSocket).
///
/// On success, returns the stream, the open channel (holding whatever the initiator sent after
/// its handshake cells, e.g. a first CREATE2) and what the handshake established.
pub async fn responder_handshake<IO, N, E>(
    mut io: IO,
    mut responder: Responder,
    exporter: E,
    now_unix: N,
    timeout: Duration,
) -> Result<(IO, Channel, ChannelInfo), LinkError>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    N: Fn() -> u64,
    E: Fn(&IO, &ExporterRequest) -> Result<[u8; 32], TlsError>,
{
    let run = async {
        let mut buf = vec![0u8; HANDSHAKE_READ_CHUNK];
        // Received bytes not yet consumed: buf[start..end].
        let (mut start, mut end) = (0usize, 0usize);
        loop {
            send_all(&mut io, || responder.poll_transmit()).await?;
            if responder.is_done() {
                break;
            }
            if let Some(req) = responder.exporter_request() {
                let value = exporter(&io, &req).map_err(LinkError::Exporter)?;
                responder.provide_tls_exporter(value)?;
                continue;
            }
            if start == end {
                let n = io.read(&mut buf).await?;
                if n == 0 {
                    return Err(LinkError::Eof);
                }
                (start, end) = (0, n);
            }
            let pending = buf.get(start..end).unwrap_or_default();
            let used = responder.handle_input(now_unix(), pending)?;
            start += used;
            if used == 0 && !responder.is_done() && responder.exporter_request().is_none() {
                return Err(ChannelError::Misuse("responder made no progress").into());
            }
        }
        let leftover = buf.get(start..end).unwrap_or_default().to_vec();
        open(responder.finish()?, &leftover)
    };
    let (channel, info) = tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| LinkError::Timeout(timeout))??;
    Ok((io, channel, info))
}

/// An open channel over a byte stream, for simple drivers and tests: send cells, receive
/// cells. Not for relays (which read and write concurrently and apply backpressure), but
/// [`CellStream::recv`] is cancel-safe, so it can sit in a `select!`.
#[derive(Debug)]
pub struct CellStream<IO> {
    io: IO,
    channel: Channel,
    buf: Box<[u8]>,
    /// Received bytes not yet given to the channel: `buf[start..end]`.
    start: usize,
    end: usize,
    out: Vec<u8>,
}

impl<IO: AsyncRead + AsyncWrite + Unpin> CellStream<IO> {
    /// Wrap the result of a handshake.
    pub fn new(io: IO, channel: Channel) -> Self {
        CellStream {
            io,
            channel,
            buf: vec![0u8; CELL_READ_CHUNK].into_boxed_slice(),
            start: 0,
            end: 0,
            out: Vec::new(),
        }
    }

    /// The channel (link version, circuit ID rules).
    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// The connection.
    pub fn get_ref(&self) -> &IO {
        &self.io
    }

    /// The connection, to write bytes the channel would refuse to encode (tests of a
    /// peer's error handling). Flush [`CellStream::queue`]d cells first.
    pub fn get_mut(&mut self) -> &mut IO {
        &mut self.io
    }

    /// Encode `cell` into the output buffer (see [`Channel::encode`] for what is refused).
    pub fn queue(&mut self, cell: &ChanCell) -> Result<(), LinkError> {
        Ok(self.channel.encode(cell, &mut self.out)?)
    }

    /// Write and flush the output buffer.
    pub async fn flush(&mut self) -> Result<(), LinkError> {
        if !self.out.is_empty() {
            self.io.write_all(&self.out).await?;
            self.out.clear();
        }
        self.io.flush().await?;
        Ok(())
    }

    /// Send one cell (queue and flush).
    pub async fn send(&mut self, cell: &ChanCell) -> Result<(), LinkError> {
        self.queue(cell)?;
        self.flush().await
    }

    /// The next cell from the peer, or `None` at the end of the stream. Padding and other
    /// ignored cells are skipped (see [`Channel`]). Cancel-safe.
    pub async fn recv(&mut self) -> Result<Option<ChanCell>, LinkError> {
        loop {
            if let Some(cell) = self.channel.poll_cell()? {
                return Ok(Some(cell));
            }
            if self.start < self.end {
                let pending = self.buf.get(self.start..self.end).unwrap_or_default();
                let n = self.channel.handle_input(pending);
                self.start += n;
                if n == 0 {
                    // A whole cell always fits an emptied channel; no progress means the
                    // channel holds a cell it will not give.
                    return Err(ChannelError::Misuse("channel input stalled").into());
                }
                continue;
            }
            let n = self.io.read(&mut self.buf).await?;
            if n == 0 {
                return Ok(None);
            }
            (self.start, self.end) = (0, n);
        }
    }

    /// Flush, then shut the connection down.
    pub async fn close(&mut self) -> Result<(), LinkError> {
        self.flush().await?;
        self.io.shutdown().await?;
        Ok(())
    }

    /// The connection and the channel (bytes received but not yet decoded are lost unless
    /// [`CellStream::recv`] returned `None` or was never called).
    pub fn into_parts(self) -> (IO, Channel) {
        (self.io, self.channel)
    }
}

#[cfg(test)]
mod test {
    use std::sync::OnceLock;
    use std::time::SystemTime;

    use ed25519_dalek::SigningKey;
    use onion_cell::chancell::{CircId, Create2, Destroy, DestroyReason};
    use onion_cell::codec::ChannelCodec;
    use onion_core::certs::{ExpectedIdentity, RelaySigningMaterial};
    use onion_core::channel::{
        CircIdRange, InitiatorConfig, PeerAuth, RelayAuth, ResponderConfig, Role,
    };
    use rsa::PrivateKey;
    use tokio::net::TcpListener;

    use super::*;
    use crate::testing::{seeded_rng, test_rng};
    use crate::tls::{LinkCertificate, LinkTls};
    use crate::ws::{ws_accept, ws_connect};

    const WAIT: Duration = Duration::from_secs(10);

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    /// Relay keys, made once per index (RSA key generation is slow).
    fn material(i: usize) -> &'static RelaySigningMaterial {
        static M: OnceLock<Vec<RelaySigningMaterial>> = OnceLock::new();
        &M.get_or_init(|| {
            (0..2)
                .map(|i| {
                    let mut rng = seeded_rng(100 + i);
                    let rsa = PrivateKey::new(&mut rng, 1024).unwrap();
                    let id = SigningKey::from_bytes(&[i as u8 + 1; 32]);
                    let sign = SigningKey::from_bytes(&[i as u8 + 50; 32]);
                    RelaySigningMaterial::new(rsa, &id, sign, now(), &mut rng).unwrap()
                })
                .collect()
        })[i]
    }

    fn expect(m: &RelaySigningMaterial) -> ExpectedIdentity {
        ExpectedIdentity {
            rsa: Some(*m.rsa_id()),
            ed25519: Some(*m.ed_identity()),
        }
    }

    fn ids(m: &RelaySigningMaterial) -> PeerAuth {
        PeerAuth::Authenticated {
            rsa_id: *m.rsa_id(),
            ed_id: *m.ed_identity(),
        }
    }

    /// A Tor link (TLS) on loopback: the relay of `material(0)` answers with
    /// [`responder_handshake`] and returns what it established.
    async fn tls_relay() -> (
        std::net::SocketAddr,
        tokio::task::JoinHandle<
            Result<
                (
                    CellStream<impl AsyncRead + AsyncWrite + Unpin + std::fmt::Debug>,
                    ChannelInfo,
                ),
                LinkError,
            >,
        >,
    ) {
        let tls =
            LinkTls::new(LinkCertificate::generate(SystemTime::now(), &mut test_rng()).unwrap())
                .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (tcp, peer) = listener.accept().await.unwrap();
            crate::set_nodelay(&tcp).unwrap();
            let stream = tls.accept(tcp).await.unwrap();
            let binding = binding_for_cert(Some(tls.certificate().cert_der()));
            let config = ResponderConfig::new(binding, Some(peer.ip()), vec![addr.ip()]);
            let r = Responder::new(config, material(0), now(), &mut test_rng()).unwrap();
            let (io, ch, info) = responder_handshake(stream, r, tls_exporter, now, WAIT).await?;
            Ok((CellStream::new(io, ch), info))
        });
        (addr, task)
    }

    #[tokio::test]
    async fn client_and_relay_handshakes_over_tls() {
        for relay_mode in [false, true] {
            let (addr, server) = tls_relay().await;
            let tcp = crate::tcp_connect(addr, WAIT).await.unwrap();
            assert!(tcp.nodelay().unwrap());
            let stream = LinkTls::new(
                LinkCertificate::generate(SystemTime::now(), &mut test_rng()).unwrap(),
            )
            .unwrap()
            .connect(tcp, &mut test_rng())
            .await
            .unwrap();
            let binding = tls_binding(&stream).unwrap();
            let config = InitiatorConfig::new(binding, expect(material(0)), Some(addr.ip()));
            let relay = relay_mode.then(|| RelayAuth {
                material: material(1),
                tls_exporter: auth0003_exporter(&stream, material(1).rsa_id_sha256()).unwrap(),
                my_addrs: vec!["127.0.0.1".parse().unwrap()],
            });
            let i = Initiator::new(config, relay, now(), &mut test_rng()).unwrap();
            let (io, ch, info) = initiator_handshake(stream, i, now, WAIT).await.unwrap();
            assert_eq!(info.role, Role::Initiator);
            assert_eq!(info.link_version, 5);
            assert_eq!(info.peer, ids(material(0)));
            assert_eq!(info.we_authenticated, relay_mode);
            assert_eq!(info.peer_netinfo.peer_addresses, [addr.ip()]);
            let mut client = CellStream::new(io, ch);

            let (mut relay, rinfo) = tokio::time::timeout(WAIT, server)
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            assert_eq!(rinfo.role, Role::Responder);
            let want = if relay_mode {
                ids(material(1))
            } else {
                PeerAuth::Unauthenticated
            };
            assert_eq!(rinfo.peer, want);
            assert_eq!(client.channel().circ_ids().range(), CircIdRange::High);
            assert_eq!(relay.channel().circ_ids().range(), CircIdRange::Low);

            // Cells both ways.
            let id = client
                .channel()
                .allocate_circ_id(&mut test_rng(), |_| false)
                .unwrap();
            let create = ChanCell::new(id, Create2::new(2, vec![7; 84]).unwrap());
            client.send(&create).await.unwrap();
            let got = tokio::time::timeout(WAIT, relay.recv()).await.unwrap();
            assert_eq!(got.unwrap(), Some(create));
            let destroy = ChanCell::new(id, Destroy::new(DestroyReason::FINISHED));
            relay.send(&destroy).await.unwrap();
            assert_eq!(client.recv().await.unwrap(), Some(destroy));
            client.close().await.unwrap();
            assert_eq!(relay.recv().await.unwrap(), None);
        }
    }

    #[tokio::test]
    async fn wrong_identity_fails_the_link() {
        let (addr, server) = tls_relay().await;
        let tcp = crate::tcp_connect(addr, WAIT).await.unwrap();
        let stream = crate::tls::LinkTls::new(
            LinkCertificate::generate(SystemTime::now(), &mut test_rng()).unwrap(),
        )
        .unwrap()
        .connect(tcp, &mut test_rng())
        .await
        .unwrap();
        let config = InitiatorConfig::new(tls_binding(&stream).unwrap(), expect(material(1)), None);
        let i = Initiator::new(config, None, now(), &mut test_rng()).unwrap();
        let err = initiator_handshake(stream, i, now, WAIT).await.unwrap_err();
        assert!(
            matches!(
                err,
                LinkError::Channel(ChannelError::PeerCerts(
                    onion_core::certs::CertError::WrongIdentity("RSA")
                ))
            ),
            "{err}"
        );
        // The relay sees the link go away.
        let r = tokio::time::timeout(WAIT, server).await.unwrap().unwrap();
        assert!(matches!(r, Err(LinkError::Eof | LinkError::Io(_))), "{r:?}");
    }

    #[tokio::test]
    async fn handshake_over_websocket_is_unbound() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (tcp, peer) = listener.accept().await.unwrap();
            let ws = ws_accept(tcp).await.unwrap();
            let config = ResponderConfig::new(TlsBinding::None, Some(peer.ip()), vec![]);
            let r = Responder::new(config, material(0), now(), &mut test_rng()).unwrap();
            let (io, ch, info) = responder_handshake(ws, r, no_exporter, now, WAIT)
                .await
                .unwrap();
            let mut s = CellStream::new(io, ch);
            let cell = s.recv().await.unwrap().unwrap();
            let reply = ChanCell::new(cell.circ_id, Destroy::new(DestroyReason::FINISHED));
            s.send(&reply).await.unwrap();
            assert_eq!(s.recv().await.unwrap(), None);
            (info, cell)
        });
        let ws = ws_connect(&format!("ws://{addr}/"), None).await.unwrap();
        let config = InitiatorConfig::new(TlsBinding::None, expect(material(0)), None);
        let i = Initiator::new(config, None, now(), &mut test_rng()).unwrap();
        let (io, ch, info) = initiator_handshake(ws, i, now, WAIT).await.unwrap();
        assert_eq!(
            info.peer,
            PeerAuth::CertifiedNotBound {
                rsa_id: *material(0).rsa_id(),
                ed_id: *material(0).ed_identity(),
            }
        );
        let mut s = CellStream::new(io, ch);
        let id = s
            .channel()
            .allocate_circ_id(&mut test_rng(), |_| false)
            .unwrap();
        let cell = ChanCell::new(id, Create2::new(3, vec![1; 200]).unwrap());
        s.send(&cell).await.unwrap();
        let reply = ChanCell::new(id, Destroy::new(DestroyReason::FINISHED));
        assert_eq!(s.recv().await.unwrap(), Some(reply));
        s.close().await.unwrap();
        let (rinfo, got) = server.await.unwrap();
        assert_eq!(got, cell);
        assert_eq!(rinfo.peer, PeerAuth::Unauthenticated);
    }

    #[tokio::test]
    async fn bytes_after_the_handshake_go_to_the_channel() {
        // A responder that sends a DESTROY in the same write as its handshake flight.
        let (a, mut b) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(async move {
            let config = ResponderConfig::new(TlsBinding::None, None, vec![]);
            let mut r = Responder::new(config, material(0), now(), &mut test_rng()).unwrap();
            let mut buf = vec![0u8; 4096];
            let n = b.read(&mut buf).await.unwrap();
            assert_eq!(r.handle_input(now(), &buf[..n]).unwrap(), n);
            let mut flight = r.poll_transmit().unwrap();
            let extra = ChanCell::new(CircId::new(0x8000_0001), Destroy::new(DestroyReason::NONE));
            ChannelCodec::new(5)
                .unwrap()
                .encode(&extra, &mut flight)
                .unwrap();
            b.write_all(&flight).await.unwrap();
            // Then wait for the initiator's NETINFO.
            let n = b.read(&mut buf).await.unwrap();
            assert_eq!(r.handle_input(now(), &buf[..n]).unwrap(), n);
            assert!(r.is_done());
            (b, extra)
        });
        let config = InitiatorConfig::new(TlsBinding::None, expect(material(0)), None);
        let i = Initiator::new(config, None, now(), &mut test_rng()).unwrap();
        let (io, mut ch, _) = initiator_handshake(a, i, now, WAIT).await.unwrap();
        let (_b, extra) = server.await.unwrap();
        assert_eq!(ch.poll_cell().unwrap(), Some(extra));
        drop(io);
    }

    #[tokio::test]
    async fn timeouts_and_eof() {
        // A peer that never answers.
        let (a, _b) = tokio::io::duplex(1024);
        let config = InitiatorConfig::new(TlsBinding::None, ExpectedIdentity::default(), None);
        let i = Initiator::new(config, None, now(), &mut test_rng()).unwrap();
        let short = Duration::from_millis(50);
        let err = initiator_handshake(a, i, now, short).await.unwrap_err();
        assert!(matches!(err, LinkError::Timeout(d) if d == short), "{err}");
        // A peer that hangs up.
        let (a, b) = tokio::io::duplex(1024);
        drop(b);
        let config = ResponderConfig::new(TlsBinding::None, None, vec![]);
        let r = Responder::new(config, material(0), now(), &mut test_rng()).unwrap();
        let err = responder_handshake(a, r, no_exporter, now, WAIT)
            .await
            .unwrap_err();
        assert!(matches!(err, LinkError::Eof | LinkError::Io(_)), "{err}");
        // Garbage instead of VERSIONS.
        let (a, mut b) = tokio::io::duplex(1024);
        b.write_all(&[0, 0, 3, 0, 0, 0, 0]).await.unwrap();
        let config = ResponderConfig::new(TlsBinding::None, None, vec![]);
        let r = Responder::new(config, material(0), now(), &mut test_rng()).unwrap();
        let err = responder_handshake(a, r, no_exporter, now, WAIT)
            .await
            .unwrap_err();
        assert!(
            matches!(err, LinkError::Channel(ChannelError::UnexpectedCell { .. })),
            "{err}"
        );
        assert!(matches!(
            no_exporter(
                &(),
                &ExporterRequest {
                    label: AUTH0003_EXPORTER_LABEL,
                    context: [0; 32],
                    len: 32
                }
            ),
            Err(TlsError::NoExporter(_))
        ));
    }
}
