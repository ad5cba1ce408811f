//! Opening a [`Link`] to a first hop: Tor link TLS to an ORPort, or a WebSocket to one of
//! our ORs; then the link handshake (client mode) with the identity we expect.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use onion_core::certs::link::ExpectedIdentity;
use onion_core::certs::{Ed25519Identity, RsaIdentity};
use onion_core::channel::{Initiator, InitiatorConfig, TlsBinding};
use onion_core::client::HopTarget;
use onion_net::link::{LinkError as NetLinkError, initiator_handshake, tls_binding};
use onion_net::ws::{WsError, ws_connect};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::error::OpError;
use crate::link::{Link, LinkConfig};
use crate::os_rng;

/// Seconds since the Unix epoch, for the link handshake.
fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The identities a first hop must prove in its CERTS cell: whatever `relay` gives.
fn expected(relay: &HopTarget) -> ExpectedIdentity {
    ExpectedIdentity {
        rsa: relay.rsa_id.map(RsaIdentity::from_bytes),
        ed25519: relay.ed_id.map(Ed25519Identity::from_bytes),
    }
}

/// What is left of `total` after `start`.
fn remaining(start: Instant, total: Duration) -> Duration {
    total.saturating_sub(start.elapsed())
}

/// A handshake driver error as an [`OpError`].
fn handshake_error(what: &str, e: NetLinkError) -> OpError {
    match e {
        NetLinkError::Channel(c) => OpError::Handshake(c),
        NetLinkError::Io(source) => OpError::Connect {
            what: what.to_owned(),
            source,
        },
        NetLinkError::Eof => OpError::Connect {
            what: what.to_owned(),
            source: std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the relay closed the connection during the link handshake",
            ),
        },
        NetLinkError::Timeout(_) => OpError::Timeout("link handshake"),
        other => OpError::Transport(other.to_string()),
    }
}

impl Link {
    /// Connect to a relay's ORPort at `addr` over Tor link TLS, and run the link handshake
    /// as a client: the relay must prove the identities `relay` gives (RSA and/or Ed25519;
    /// with neither, any relay is accepted) and certify this TLS connection's certificate.
    /// Everything within [`LinkConfig::connect_timeout`].
    pub async fn connect_tls(
        addr: SocketAddr,
        relay: &HopTarget,
        config: LinkConfig,
    ) -> Result<Link, OpError> {
        let start = Instant::now();
        let what = addr.to_string();
        let total = config.connect_timeout;
        let connect_err = |source| OpError::Connect {
            what: what.clone(),
            source,
        };
        let tcp = onion_net::tcp_connect(addr, total)
            .await
            .map_err(connect_err)?;
        let tls_config =
            onion_net::tls::client_config().map_err(|e| OpError::Transport(e.to_string()))?;
        let name = onion_net::tls::random_server_name(&mut os_rng())
            .map_err(|e| OpError::Transport(e.to_string()))?;
        let tls = tokio::time::timeout(
            remaining(start, total),
            tokio_rustls::TlsConnector::from(tls_config).connect(name, tcp),
        )
        .await
        .map_err(|_| OpError::Timeout("TLS handshake"))?
        .map_err(connect_err)?;
        let binding = tls_binding(&tls).ok_or_else(|| {
            OpError::Transport(format!("{what}: the relay presented no TLS certificate"))
        })?;
        Self::handshake(tls, binding, Some(addr), relay, config, start, &what).await
    }

    /// Connect to one of our ORs over a WebSocket (`ws://` or `wss://` `url`) and run the
    /// link handshake as a client. Nothing binds the relay's CERTS cell to a WebSocket
    /// ([`TlsBinding::None`]): the link's peer is only
    /// [`CertifiedNotBound`](onion_core::channel::PeerAuth::CertifiedNotBound), and hop 1 is
    /// authenticated by its ntor key when the circuit is created with ntor or ntor-v3 (with
    /// CREATE_FAST, only by the transport). Within [`LinkConfig::connect_timeout`].
    pub async fn connect_ws(
        url: &str,
        relay: &HopTarget,
        config: LinkConfig,
    ) -> Result<Link, OpError> {
        let start = Instant::now();
        let ws = tokio::time::timeout(config.connect_timeout, ws_connect(url, None))
            .await
            .map_err(|_| OpError::Timeout("WebSocket connection"))?
            .map_err(|e| match e {
                WsError::Connect { host, source } => OpError::Connect { what: host, source },
                other => OpError::Transport(other.to_string()),
            })?;
        Self::handshake(ws, TlsBinding::None, None, relay, config, start, url).await
    }

    /// The client-mode link handshake over `io`, then the reactor.
    async fn handshake<T>(
        io: T,
        binding: TlsBinding,
        peer: Option<SocketAddr>,
        relay: &HopTarget,
        config: LinkConfig,
        start: Instant,
        what: &str,
    ) -> Result<Link, OpError>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let init_config = InitiatorConfig::new(binding, expected(relay), peer.map(|a| a.ip()));
        let initiator = Initiator::new(init_config, None, now_unix(), &mut os_rng())
            .map_err(OpError::Handshake)?;
        let left = remaining(start, config.connect_timeout);
        let (io, channel, info) = initiator_handshake(io, initiator, now_unix, left)
            .await
            .map_err(|e| handshake_error(what, e))?;
        tracing::debug!(%what, link_version = info.link_version, peer = ?info.peer, "link open");
        Ok(Link::from_channel(io, channel, info, config))
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn expected_identity_from_target() {
        let t = HopTarget {
            rsa_id: Some([1; 20]),
            ed_id: None,
            ..HopTarget::default()
        };
        let e = expected(&t);
        assert_eq!(e.rsa, Some(RsaIdentity::from_bytes([1; 20])));
        assert_eq!(e.ed25519, None);
    }

    #[test]
    fn handshake_errors_are_specific() {
        assert!(matches!(
            handshake_error("x", NetLinkError::Timeout(Duration::from_secs(1))),
            OpError::Timeout(_)
        ));
        assert!(matches!(
            handshake_error("x", NetLinkError::Eof),
            OpError::Connect { .. }
        ));
        assert!(matches!(
            handshake_error(
                "x",
                NetLinkError::Channel(onion_core::channel::ChannelError::NoCircIdRange)
            ),
            OpError::Handshake(_)
        ));
    }

    #[tokio::test]
    async fn refused_connections_are_connect_errors() {
        // A port nobody listens on.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let err = Link::connect_tls(addr, &HopTarget::default(), LinkConfig::default())
            .await
            .unwrap_err();
        assert!(matches!(err, OpError::Connect { .. }), "{err:?}");
        let err = Link::connect_ws(
            &format!("ws://{addr}/"),
            &HopTarget::default(),
            LinkConfig::default(),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, OpError::Connect { .. }), "{err:?}");
    }
}
