//! End-to-end tests of the relay on 127.0.0.1: a client made of onion-core's
//! `ClientCircuit` and onion-net's link initiator, against running relays (over TLS and
//! WebSocket), with local TCP servers as destinations.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::{Duration, Instant};

use onion_cell::chancell::{ChanCell, ChanMsg, CircId, Create2, DestroyReason};
use onion_cell::codec::ChannelCodec;
use onion_cell::relaycell::{AddrTtl, Address, BeginFlags, EndReason, StreamId};
use onion_core::certs::ExpectedIdentity;
use onion_core::channel::{Initiator, InitiatorConfig};
use onion_core::client::{
    CircuitConfig, ClientCircuit, ClientEvent, CloseReason, HandshakeKind, HopTarget,
    StreamEndReason,
};
use onion_core::crypto::relay::HopNum;
use onion_net::link::{CellStream, initiator_handshake, tls_binding};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::config::Config;
use crate::metrics::HandshakeKind as MetricKind;
use crate::router::now_unix;
use crate::server::{BoundAddrs, Server, ServerContext};
use crate::shutdown::ShutdownTrigger;
use crate::testing::{TempDir, test_rng};
use crate::tls::{client_config, random_server_name};

const WAIT: Duration = Duration::from_secs(20);

/// An exit that allows loopback destinations and one-hop circuits (for tests).
const OPEN_EXIT: &str =
    "enabled = true\npolicy = \"accept *:*\"\nallow_internal = true\nallow_single_hop = true";

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A running relay.
struct Relay {
    ctx: Arc<ServerContext>,
    addrs: BoundAddrs,
    trigger: ShutdownTrigger,
    task: tokio::task::JoinHandle<Result<(), crate::server::ServerError>>,
    _tmp: TempDir,
}

impl Relay {
    /// A relay with a `ws` and an ORPort listener on loopback; `top` goes at the top level
    /// of its configuration, `exit` in `[exit]`.
    async fn start(top: &str, exit: &str) -> Relay {
        let tmp = TempDir::new("relay");
        let text = format!(
            "nickname = \"T\"\ndata_dir = {:?}\n{top}\n[listeners]\nws = \"127.0.0.1:0\"\nor_port = \"127.0.0.1:0\"\n[exit]\n{exit}\n",
            tmp.path().join("data").to_str().unwrap()
        );
        let cfg = Config::from_toml_str(&text).unwrap();
        let (trigger, shutdown) = crate::shutdown::channel();
        let server = Server::start(cfg, shutdown).await.unwrap();
        let addrs = server.local_addrs();
        let ctx = Arc::clone(server.context());
        let task = tokio::spawn(server.run());
        Relay {
            ctx,
            addrs,
            trigger,
            task,
            _tmp: tmp,
        }
    }

    /// What a client knows of this relay.
    fn target(&self) -> HopTarget {
        let ks = self.ctx.keys.read().unwrap();
        let SocketAddr::V4(or_port) = self.addrs.or_port.unwrap() else {
            panic!()
        };
        HopTarget {
            ipv4: Some(or_port),
            ipv6: None,
            rsa_id: Some(*ks.rsa_fingerprint().as_bytes()),
            ed_id: Some(*ks.ed_identity_public().as_bytes()),
            ntor_onion_key: Some(*ks.onion_keys().ntor_public()),
            tap_onion_key: Some(ks.onion_keys().tap().as_public_key().clone()),
            supports_ntor_v3: true,
        }
    }

    fn expected(&self) -> ExpectedIdentity {
        let ks = self.ctx.keys.read().unwrap();
        ExpectedIdentity {
            rsa: Some(ks.rsa_fingerprint()),
            ed25519: Some(ks.ed_identity_public()),
        }
    }

    /// Wait until the circuit gauge reads `n`.
    async fn wait_circuits(&self, n: i64) {
        let r = tokio::time::timeout(WAIT, async {
            while self.ctx.metrics.circuits_open.get() != n {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        assert!(
            r.is_ok(),
            "circuits open: {} (want {n})",
            self.ctx.metrics.circuits_open.get()
        );
    }

    async fn stop(self) {
        self.trigger.trigger();
        tokio::time::timeout(WAIT, self.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

/// A test client: one link, its circuits, their events.
struct Client {
    cs: CellStream<Box<dyn Io>>,
    rng: rand_core::UnwrapErr<getrandom::SysRng>,
    circs: HashMap<CircId, ClientCircuit>,
    events: HashMap<CircId, VecDeque<ClientEvent>>,
}

impl Client {
    /// A Tor link to the relay's ORPort.
    async fn tls(relay: &Relay) -> Client {
        let addr = relay.addrs.or_port.unwrap();
        let tcp = onion_net::tcp_connect(addr, WAIT).await.unwrap();
        let stream = tokio_rustls::TlsConnector::from(client_config().unwrap())
            .connect(random_server_name(&mut test_rng()).unwrap(), tcp)
            .await
            .unwrap();
        let binding = tls_binding(&stream).unwrap();
        let config = InitiatorConfig::new(binding, relay.expected(), Some(addr.ip()));
        Self::handshake(Box::new(stream), config).await
    }

    /// A WebSocket link to the relay's `ws` listener.
    async fn ws(relay: &Relay) -> Client {
        let url = format!("ws://{}/", relay.addrs.ws.unwrap());
        let ws = onion_net::ws::ws_connect(&url, None).await.unwrap();
        let config = InitiatorConfig::new(
            onion_core::channel::TlsBinding::None,
            relay.expected(),
            None,
        );
        Self::handshake(Box::new(ws), config).await
    }

    async fn handshake(io: Box<dyn Io>, config: InitiatorConfig) -> Client {
        let init = Initiator::new(config, None, now_unix(), &mut test_rng()).unwrap();
        let (io, ch, _info) = initiator_handshake(io, init, now_unix, WAIT).await.unwrap();
        Client {
            cs: CellStream::new(io, ch),
            rng: test_rng(),
            circs: HashMap::new(),
            events: HashMap::new(),
        }
    }

    fn new_id(&mut self) -> CircId {
        let circs = &self.circs;
        self.cs
            .channel()
            .allocate_circ_id(&mut self.rng, |id| circs.contains_key(&id))
            .unwrap()
    }

    /// Send what circuit `id` has queued.
    async fn flush(&mut self, id: CircId) {
        if let Some(c) = self.circs.get_mut(&id) {
            while let Some(cell) = c.poll_outgoing() {
                self.cs
                    .queue(&ChanCell::new(id, cell.into_chan_msg()))
                    .unwrap();
            }
        }
        self.cs.flush().await.unwrap();
    }

    /// The next cell from the relay (panics on timeout or end of link).
    async fn recv(&mut self) -> ChanCell {
        tokio::time::timeout(WAIT, self.cs.recv())
            .await
            .expect("timed out waiting for a cell")
            .unwrap()
            .expect("the relay closed the link")
    }

    /// Give a cell to its circuit.
    async fn dispatch(&mut self, cell: ChanCell) {
        let id = cell.circ_id;
        let Some(c) = self.circs.get_mut(&id) else {
            panic!("cell {} for unknown circuit {id}", cell.msg.cmd());
        };
        let events = c.handle_cell(&mut self.rng, cell.msg).unwrap_or_else(|e| {
            let closing = c.close();
            let mut ev = closing.events;
            ev.insert(
                0,
                ClientEvent::CircuitClosed {
                    reason: CloseReason::Failed(e),
                },
            );
            ev
        });
        self.events.entry(id).or_default().extend(events);
        self.flush(id).await;
    }

    /// Create a one-hop circuit with `kind`.
    async fn create(&mut self, target: &HopTarget, kind: HandshakeKind) -> CircId {
        let id = self.new_id();
        let (pending, msg) =
            ClientCircuit::start(&mut self.rng, target, kind, CircuitConfig::default()).unwrap();
        self.cs.send(&ChanCell::new(id, msg)).await.unwrap();
        let reply = self.recv().await;
        assert_eq!(reply.circ_id, id);
        let circ = pending.handle_created(reply.msg).unwrap();
        self.circs.insert(id, circ);
        id
    }

    /// The next event of circuit `id`.
    async fn event(&mut self, id: CircId) -> ClientEvent {
        loop {
            if let Some(ev) = self.events.get_mut(&id).and_then(VecDeque::pop_front) {
                return ev;
            }
            let cell = self.recv().await;
            self.dispatch(cell).await;
        }
    }

    /// Extend circuit `id` to `target` (ntor), and wait for the answer.
    async fn extend(&mut self, id: CircId, target: &HopTarget) -> ClientEvent {
        let c = self.circs.get_mut(&id).unwrap();
        c.extend(&mut self.rng, target, HandshakeKind::Ntor)
            .unwrap();
        self.flush(id).await;
        self.event(id).await
    }

    /// Open a stream and wait for CONNECTED (`Ok`) or END (`Err`).
    async fn begin(
        &mut self,
        id: CircId,
        addr: Address,
        port: u16,
    ) -> Result<(StreamId, Option<IpAddr>), StreamEndReason> {
        let c = self.circs.get_mut(&id).unwrap();
        let s = c
            .begin(&mut self.rng, addr, port, BeginFlags::IPV6_OK)
            .unwrap();
        self.flush(id).await;
        match self.event(id).await {
            ClientEvent::StreamConnected { stream, addr, .. } if stream == s => Ok((s, addr)),
            ClientEvent::StreamEnded { stream, reason } if stream == s => Err(reason),
            other => panic!("unexpected {other:?}"),
        }
    }

    /// Send `data` on a stream while collecting what comes back, until `expect` bytes came
    /// back (or the stream ended). Returns what came back, and how the stream ended if it
    /// did.
    async fn exchange(
        &mut self,
        id: CircId,
        stream: StreamId,
        data: &[u8],
        expect: usize,
    ) -> (Vec<u8>, Option<StreamEndReason>) {
        let mut sent = 0;
        let mut got = Vec::new();
        loop {
            let mut progress = false;
            if sent < data.len() {
                let c = self.circs.get_mut(&id).unwrap();
                if c.is_writable(stream) {
                    let n = c.send_data(&mut self.rng, stream, &data[sent..]).unwrap();
                    sent += n;
                    progress = n > 0;
                    self.flush(id).await;
                }
            }
            while let Some(ev) = self.events.get_mut(&id).and_then(VecDeque::pop_front) {
                match ev {
                    ClientEvent::StreamData { stream: s, bytes } if s == stream => {
                        got.extend(bytes);
                    }
                    ClientEvent::StreamEnded { stream: s, reason } if s == stream => {
                        return (got, Some(reason));
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            if sent == data.len() && got.len() >= expect {
                return (got, None);
            }
            let cell = if progress {
                match tokio::time::timeout(Duration::ZERO, self.cs.recv()).await {
                    Ok(r) => r.unwrap().expect("link closed"),
                    Err(_) => continue,
                }
            } else {
                self.recv().await
            };
            self.dispatch(cell).await;
        }
    }

    /// DESTROY a circuit.
    async fn destroy(&mut self, id: CircId) {
        let c = self.circs.get_mut(&id).unwrap();
        let closing = c.close();
        self.cs
            .send(&ChanCell::new(id, closing.destroy.unwrap()))
            .await
            .unwrap();
    }
}

/// A TCP echo server on loopback.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

/// The byte at offset `i` of a source server's stream.
fn pattern(i: usize) -> u8 {
    (i % 251) as u8
}

/// A server on loopback that sends `len` pattern bytes to each connection, then closes.
async fn source_server(len: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let all: Vec<u8> = (0..len).map(pattern).collect();
                if s.write_all(&all).await.is_ok() {
                    let _ = s.shutdown().await;
                }
            });
        }
    });
    addr
}

fn loopback(addr: SocketAddr) -> Address {
    match addr.ip() {
        IpAddr::V4(a) => Address::Ipv4(a),
        IpAddr::V6(a) => Address::Ipv6(a),
    }
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rand_core::Rng::fill_bytes(&mut test_rng(), &mut v);
    v
}

#[tokio::test]
async fn one_hop_exit_over_tls_and_ws() {
    let relay = Relay::start("", OPEN_EXIT).await;
    let echo = echo_server().await;
    let target = relay.target();
    for (transport, kind) in [
        ("tls", HandshakeKind::Ntor),
        ("ws", HandshakeKind::Ntor),
        ("tls", HandshakeKind::NtorV3),
        ("ws", HandshakeKind::CreateFast),
    ] {
        let mut client = match transport {
            "tls" => Client::tls(&relay).await,
            _ => Client::ws(&relay).await,
        };
        let id = client.create(&target, kind).await;
        let (stream, addr) = client.begin(id, loopback(echo), echo.port()).await.unwrap();
        assert_eq!(addr, Some(echo.ip()), "CONNECTED carries the address");
        // More than a stream window (500 cells): SENDMEs must flow both ways.
        let data = random_bytes(400_000);
        let (back, end) = client.exchange(id, stream, &data, data.len()).await;
        assert!(end.is_none(), "{transport}: {end:?}");
        assert!(back == data, "{transport} {kind:?}: echo differs");
        assert_eq!(relay.ctx.metrics.streams_open.get(), 1);
        // Ending the stream closes the exit connection; the circuit stays.
        let c = client.circs.get_mut(&id).unwrap();
        c.end_stream(&mut client.rng, stream, EndReason::DONE)
            .unwrap();
        client.flush(id).await;
        client.destroy(id).await;
        relay.wait_circuits(0).await;
        assert_eq!(relay.ctx.metrics.streams_open.get(), 0);
    }
    let m = relay.ctx.metrics.encode().unwrap();
    assert!(m.contains("or_links_opened_total{kind=\"ws\"} 2"), "{m}");
    assert!(
        m.contains("or_links_opened_total{kind=\"tls_in\"} 2"),
        "{m}"
    );
    relay.stop().await;
}

/// The END a refused BEGIN gets.
fn remote_end(
    r: Result<(StreamId, Option<IpAddr>), StreamEndReason>,
) -> (EndReason, Option<AddrTtl>) {
    match r {
        Err(StreamEndReason::Remote {
            reason,
            exit_policy,
        }) => (reason, exit_policy),
        other => panic!("expected END, got {other:?}"),
    }
}

#[tokio::test]
async fn exit_policy_refusals() {
    // An exit whose policy accepts everything, but with the default internal-address guard.
    let relay = Relay::start(
        "",
        "enabled = true\npolicy = \"accept *:*\"\nallow_single_hop = true",
    )
    .await;
    let echo = echo_server().await;
    let mut client = Client::tls(&relay).await;
    let id = client.create(&relay.target(), HandshakeKind::Ntor).await;
    let port = echo.port();
    for (addr, refused) in [
        (Address::Ipv4("127.0.0.1".parse().unwrap()), "127.0.0.1"),
        (Address::Ipv4("10.0.0.1".parse().unwrap()), "10.0.0.1"),
        (Address::Ipv6("::1".parse().unwrap()), "::1"),
        (Address::Ipv4("169.254.1.1".parse().unwrap()), "169.254.1.1"),
    ] {
        let (reason, at) = remote_end(client.begin(id, addr.clone(), port).await);
        assert_eq!(reason, EndReason::EXITPOLICY, "{addr}");
        assert_eq!(at.map(|a| a.addr), Some(refused.parse().unwrap()), "{addr}");
    }
    // A name that resolves to loopback: refused, naming a loopback address.
    let (reason, at) = remote_end(
        client
            .begin(id, Address::Hostname("localhost".into()), port)
            .await,
    );
    assert_eq!(reason, EndReason::EXITPOLICY);
    assert!(at.unwrap().addr.is_loopback());
    // The circuit is still usable: a RESOLVE of localhost gets no internal address.
    let c = client.circs.get_mut(&id).unwrap();
    let s = c.resolve(&mut client.rng, "localhost").unwrap();
    client.flush(id).await;
    match client.event(id).await {
        ClientEvent::Resolved { stream, answers } => {
            assert_eq!(stream, s);
            assert_eq!(answers.len(), 1);
            assert!(answers[0].value.is_error(), "{answers:?}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(relay.ctx.metrics.streams_open.get(), 0);
    relay.stop().await;

    // The exit policy itself (internal destinations allowed): port 80 only.
    let relay = Relay::start(
        "",
        "enabled = true\npolicy = \"accept *:80, reject *:*\"\nallow_internal = true\nallow_single_hop = true",
    )
    .await;
    let mut client = Client::ws(&relay).await;
    let id = client.create(&relay.target(), HandshakeKind::Ntor).await;
    let (reason, at) = remote_end(client.begin(id, loopback(echo), port).await);
    assert_eq!(
        (reason, at.map(|a| a.addr)),
        (EndReason::EXITPOLICY, Some(echo.ip()))
    );
    // A name on a refused port is refused before it is resolved.
    let (reason, at) = remote_end(
        client
            .begin(id, Address::Hostname("localhost".into()), port)
            .await,
    );
    assert_eq!((reason, at), (EndReason::EXITPOLICY, None));
    relay.stop().await;

    // Connection refused.
    let relay = Relay::start("", OPEN_EXIT).await;
    let mut client = Client::tls(&relay).await;
    let id = client.create(&relay.target(), HandshakeKind::Ntor).await;
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let (reason, _) = remote_end(client.begin(id, loopback(closed), closed.port()).await);
    assert_eq!(reason, EndReason::CONNECTREFUSED);
    relay.stop().await;

    // Not an exit (the default): EXITPOLICY for every BEGIN, even on a multi-hop circuit.
    let relay = Relay::start("", "").await;
    let mut client = Client::tls(&relay).await;
    let id = client.create(&relay.target(), HandshakeKind::Ntor).await;
    let (reason, at) = remote_end(client.begin(id, loopback(echo), echo.port()).await);
    assert_eq!((reason, at), (EndReason::EXITPOLICY, None));
    relay.stop().await;

    // An exit, but not for one-hop circuits (the default): TORPROTOCOL, as C tor.
    let relay = Relay::start(
        "",
        "enabled = true\npolicy = \"accept *:*\"\nallow_internal = true",
    )
    .await;
    let mut client = Client::ws(&relay).await;
    let id = client.create(&relay.target(), HandshakeKind::Ntor).await;
    let (reason, _) = remote_end(client.begin(id, loopback(echo), echo.port()).await);
    assert_eq!(reason, EndReason::TORPROTOCOL);
    relay.stop().await;
}

/// One directory request on a new BEGIN_DIR stream of circuit `id`: the response header
/// and body (inflated if it says deflate), after checking that the stream ended with DONE.
async fn dir_get(client: &mut Client, id: CircId, request: &str) -> (String, Vec<u8>) {
    let c = client.circs.get_mut(&id).unwrap();
    let s = c.begin_dir(&mut client.rng).unwrap();
    client.flush(id).await;
    match client.event(id).await {
        ClientEvent::StreamConnected { stream, addr, .. } => {
            assert_eq!((stream, addr), (s, None));
        }
        other => panic!("{other:?}"),
    }
    let (all, end) = client.exchange(id, s, request.as_bytes(), usize::MAX).await;
    assert!(
        matches!(
            end,
            Some(StreamEndReason::Remote {
                reason: EndReason::DONE,
                ..
            })
        ),
        "{end:?}"
    );
    let split = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8(all[..split].to_vec()).unwrap();
    let body = all[split..].to_vec();
    let body = if head.contains("\r\nContent-Encoding: deflate\r\n") {
        crate::dir::inflate_bounded(&body, 1 << 20).unwrap()
    } else {
        body
    };
    (head, body)
}

/// A relay that is a bridge (its directory authority is nowhere: the cache stays empty).
const BRIDGE_TOP: &str = "bridge = true\n[descriptor]\ncontact = \"test@example.net\"\n\
    [directory]\nauthorities = [\"127.0.0.1:9\"]\n\
    v3idents = [\"27B6B5996C426270A5C95488AA5BCEB6BCC86956\"]\nretry_secs = 3600";

#[tokio::test]
async fn begin_dir_serves_our_descriptor() {
    let relay = Relay::start(BRIDGE_TOP, "").await;
    let (fp, ed, ntor) = {
        let k = relay.ctx.keys.read().unwrap();
        (
            k.rsa_fingerprint(),
            k.ed_identity_public(),
            *k.onion_keys().ntor_public(),
        )
    };
    let mut client = Client::tls(&relay).await;
    // As a C tor bridge client does: a one-hop CREATE_FAST circuit.
    let id = client
        .create(&relay.target(), HandshakeKind::CreateFast)
        .await;

    let (head, text) = dir_get(
        &mut client,
        id,
        "GET /tor/server/authority HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{head}");
    assert!(
        head.contains("\r\nContent-Encoding: identity\r\n"),
        "{head}"
    );
    let text = String::from_utf8(text).unwrap();
    let d = onion_core::dir::ServerDescriptor::parse(&text).unwrap();
    let now = now_unix();
    d.check_valid_at(now).unwrap();
    assert!(d.published() <= now && d.published() + 60 > now);
    assert_eq!(d.nickname(), "T");
    assert_eq!(d.or_addr(), relay.addrs.or_port.unwrap());
    assert_eq!(*d.rsa_identity(), fp);
    assert_eq!(*d.ed_identity(), ed);
    assert_eq!(d.ntor_onion_key(), &ntor);
    assert_eq!(d.bridge_distribution_request(), Some("none"));
    assert!(d.is_tunnelled_dir_server());
    assert_eq!(d.contact(), Some("test@example.net"));
    assert!(
        d.exit_policy()
            .rejects_all(onion_core::policy::IpFamily::V4)
    );
    assert_eq!(d.bandwidth().average, 1 << 30);
    assert_eq!(
        d.digest(),
        relay.ctx.descriptor.get().unwrap().digest(),
        "the descriptor served is the one kept"
    );

    // What C tor asks for: `.z` with its Accept-Encoding: deflated, the same text.
    let (head, z) = dir_get(
        &mut client,
        id,
        "GET /tor/server/authority.z HTTP/1.0\r\nAccept-Encoding: deflate, identity, x-tor-lzma, x-zstd\r\n\r\n",
    )
    .await;
    assert!(head.contains("\r\nContent-Encoding: deflate\r\n"), "{head}");
    assert_eq!(z, text.as_bytes());
    // By fingerprint (`.z` alone asks for deflate), and by digest.
    let (head, z) = dir_get(
        &mut client,
        id,
        &format!(
            "GET /tor/server/fp/{}.z HTTP/1.0\r\n\r\n",
            fp.to_string().to_lowercase()
        ),
    )
    .await;
    assert!(head.contains("\r\nContent-Encoding: deflate\r\n"), "{head}");
    assert_eq!(z, text.as_bytes());
    let (_, by_digest) = dir_get(
        &mut client,
        id,
        &format!(
            "GET /tor/server/d/{} HTTP/1.0\r\n\r\n",
            hex::encode_upper(d.digest())
        ),
    )
    .await;
    assert_eq!(by_digest, text.as_bytes());
    // HEAD: the header alone.
    let (head, body) = dir_get(
        &mut client,
        id,
        "HEAD /tor/server/authority HTTP/1.0\r\n\r\n",
    )
    .await;
    assert!(
        head.contains(&format!("Content-Length: {}\r\n", text.len())),
        "{head}"
    );
    assert!(body.is_empty());

    // What we do not have, and what we do not understand.
    for (request, status) in [
        (
            "GET /tor/server/fp/27B6B5996C426270A5C95488AA5BCEB6BCC86956 HTTP/1.0\r\n\r\n",
            "404",
        ),
        (
            "GET /tor/server/d/0000000000000000000000000000000000000000.z HTTP/1.0\r\n\r\n",
            "404",
        ),
        (
            "GET /tor/status-vote/current/consensus-microdesc.z HTTP/1.0\r\n\r\n",
            "404",
        ),
        ("GET /tor/keys/all HTTP/1.0\r\n\r\n", "404"),
        ("GET /tor/server/fp/XYZ HTTP/1.0\r\n\r\n", "400"),
        ("PUT /tor/server/authority HTTP/1.0\r\n\r\n", "400"),
    ] {
        let (head, body) = dir_get(&mut client, id, request).await;
        assert!(
            head.starts_with(&format!("HTTP/1.0 {status} ")),
            "{request}: {head}"
        );
        assert!(body.is_empty());
    }

    // The onion keys rotate: a new descriptor with the new ntor key is served.
    let later = std::time::SystemTime::now() + Duration::from_secs(8 * 86_400);
    relay
        .ctx
        .keys
        .write()
        .unwrap()
        .rotate_if_due(later, &mut test_rng())
        .unwrap();
    let new_ntor = *relay.ctx.keys.read().unwrap().onion_keys().ntor_public();
    assert_ne!(new_ntor, ntor);
    assert!(crate::descriptor::refresh(&relay.ctx, now_unix(), 0).unwrap());
    assert!(
        !crate::descriptor::refresh(&relay.ctx, now_unix(), 0).unwrap(),
        "up to date"
    );
    let (_, text2) = dir_get(
        &mut client,
        id,
        "GET /tor/server/authority HTTP/1.0\r\n\r\n",
    )
    .await;
    let d2 =
        onion_core::dir::ServerDescriptor::parse(std::str::from_utf8(&text2).unwrap()).unwrap();
    assert_eq!(d2.ntor_onion_key(), &new_ntor);
    assert_ne!(d2.digest(), d.digest());
    // ... and at least every 18 hours.
    assert!(
        crate::descriptor::refresh(&relay.ctx, now_unix() + crate::descriptor::MAX_AGE, 0).unwrap()
    );
    relay.stop().await;
}

#[tokio::test]
async fn no_descriptor_without_an_or_port() {
    // A WebSocket-only relay has nothing to advertise: 404.
    let tmp = TempDir::new("ws-only");
    let cfg = Config::from_toml_str(&format!(
        "nickname = \"W\"\ndata_dir = {:?}\n[listeners]\nws = \"127.0.0.1:0\"\n",
        tmp.path().join("data").to_str().unwrap()
    ))
    .unwrap();
    let (_trigger, shutdown) = crate::shutdown::channel();
    let server = Server::start(cfg, shutdown).await.unwrap();
    let ctx = Arc::clone(server.context());
    assert!(ctx.descriptor.get().is_none());
    assert!(matches!(
        crate::descriptor::build(&ctx, now_unix(), 0),
        Err(crate::descriptor::DescriptorError::NoOrPort)
    ));
}

/// What a client sees of a circuit the relay destroyed.
async fn destroyed(client: &mut Client, id: CircId) -> DestroyReason {
    loop {
        match client.event(id).await {
            ClientEvent::CircuitClosed {
                reason: CloseReason::Destroyed(r),
            } => return r,
            ClientEvent::StreamEnded { .. } => {}
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn faulty_circuits_close_alone() {
    let relay = Relay::start("", OPEN_EXIT).await;
    let echo = echo_server().await;
    let target = relay.target();
    // A well-behaved client with a stream open.
    let mut good = Client::ws(&relay).await;
    let gid = good.create(&target, HandshakeKind::Ntor).await;
    let (gs, _) = good.begin(gid, loopback(echo), echo.port()).await.unwrap();
    let check_good = async |good: &mut Client| {
        let data = random_bytes(5000);
        let (back, end) = good.exchange(gid, gs, &data, data.len()).await;
        assert!(end.is_none() && back == data);
    };
    check_good(&mut good).await;

    let mut bad = Client::tls(&relay).await;
    // A cell for a circuit that does not exist is dropped.
    let unknown = bad.new_id();
    bad.cs
        .send(&ChanCell::new(
            unknown,
            onion_cell::chancell::Relay::new(Box::new([7; 509])),
        ))
        .await
        .unwrap();
    // RELAY_EARLY beyond the budget of 8: DESTROY (PROTOCOL) for that circuit only. Eight
    // RESOLVEs in RELAY_EARLY cells are answered, the ninth kills the circuit.
    let id = bad.create(&target, HandshakeKind::Ntor).await;
    let send_early = async |bad: &mut Client| {
        let c = bad.circs.get_mut(&id).unwrap();
        c.resolve(&mut bad.rng, "localhost").unwrap();
        let mut cell = c.poll_outgoing().unwrap();
        cell.early = true;
        bad.cs
            .send(&ChanCell::new(id, cell.into_chan_msg()))
            .await
            .unwrap();
    };
    for _ in 0..8 {
        send_early(&mut bad).await;
        assert!(matches!(bad.event(id).await, ClientEvent::Resolved { .. }));
    }
    send_early(&mut bad).await;
    let mut resolved = 8;
    let reason = loop {
        match bad.event(id).await {
            ClientEvent::Resolved { .. } => resolved += 1,
            ClientEvent::StreamEnded { .. } => {}
            ClientEvent::CircuitClosed {
                reason: CloseReason::Destroyed(r),
            } => break r,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!((resolved, reason), (8, DestroyReason::PROTOCOL));
    check_good(&mut good).await;

    // A corrupted relay cell (not recognized, no next hop): DESTROY (PROTOCOL).
    let id = bad.create(&target, HandshakeKind::Ntor).await;
    let c = bad.circs.get_mut(&id).unwrap();
    c.resolve(&mut bad.rng, "localhost").unwrap();
    let mut cell = c.poll_outgoing().unwrap();
    cell.body[100] ^= 1;
    bad.cs
        .send(&ChanCell::new(id, cell.into_chan_msg()))
        .await
        .unwrap();
    assert_eq!(destroyed(&mut bad, id).await, DestroyReason::PROTOCOL);

    // A failed circuit handshake: DESTROY (PROTOCOL), counted by type.
    let before = relay.ctx.metrics.handshake_failures(MetricKind::Ntor);
    let id = bad.new_id();
    bad.cs
        .send(&ChanCell::new(id, Create2::new(2, vec![0; 84]).unwrap()))
        .await
        .unwrap();
    let reply = bad.recv().await;
    assert_eq!(reply.circ_id, id);
    assert!(
        matches!(&reply.msg, ChanMsg::Destroy(d) if d.reason() == DestroyReason::PROTOCOL),
        "{reply:?}"
    );
    assert_eq!(
        relay.ctx.metrics.handshake_failures(MetricKind::Ntor),
        before + 1
    );

    // A CREATE2 with a circuit ID from the relay's half: DESTROY (PROTOCOL).
    let codec = ChannelCodec::new(bad.cs.channel().link_version()).unwrap();
    let mut raw = Vec::new();
    let wrong = CircId::new(0x0000_1234);
    let (_, create) = ClientCircuit::start(
        &mut bad.rng,
        &target,
        HandshakeKind::Ntor,
        CircuitConfig::default(),
    )
    .unwrap();
    codec
        .encode(&ChanCell::new(wrong, create), &mut raw)
        .unwrap();
    bad.cs.get_mut().write_all(&raw).await.unwrap();
    bad.cs.get_mut().flush().await.unwrap();
    let reply = bad.recv().await;
    assert_eq!(reply.circ_id, wrong);
    assert!(
        matches!(&reply.msg, ChanMsg::Destroy(d) if d.reason() == DestroyReason::PROTOCOL),
        "{reply:?}"
    );
    // The bad client's link still works.
    let id = bad.create(&target, HandshakeKind::NtorV3).await;
    bad.destroy(id).await;
    check_good(&mut good).await;

    // A cell that breaks the framing (a CREATE2 whose handshake overflows its cell) closes
    // the offending link, and only it.
    let mut raw = Vec::new();
    let id = bad.new_id();
    raw.extend_from_slice(&id.get().to_be_bytes());
    raw.push(10); // CREATE2
    raw.extend_from_slice(&[0, 2, 0x01, 0xff]); // htype 2, hlen 511 > 505
    raw.resize(514, 0);
    bad.cs.get_mut().write_all(&raw).await.unwrap();
    bad.cs.get_mut().flush().await.unwrap();
    let end = tokio::time::timeout(WAIT, bad.cs.recv()).await.unwrap();
    assert!(matches!(end, Ok(None) | Err(_)), "{end:?}");
    check_good(&mut good).await;
    relay.wait_circuits(1).await;
    relay.stop().await;
}

#[tokio::test]
async fn two_hops_ws_entry_then_tls() {
    let entry = Relay::start("extend_allow_private = true", "").await;
    let exit = Relay::start(
        "",
        "enabled = true\npolicy = \"accept *:*\"\nallow_internal = true",
    )
    .await;
    let echo = echo_server().await;
    let mut client = Client::ws(&entry).await;
    let id = client.create(&entry.target(), HandshakeKind::Ntor).await;
    let ev = client.extend(id, &exit.target()).await;
    assert_eq!(
        ev,
        ClientEvent::HopAdded {
            hop: HopNum::new(2).unwrap()
        }
    );
    assert_eq!(
        entry
            .ctx
            .metrics
            .links_open(crate::metrics::LinkKind::TlsOut),
        1
    );
    assert_eq!(
        exit.ctx.metrics.links_open(crate::metrics::LinkKind::TlsIn),
        1
    );
    let (stream, _) = client.begin(id, loopback(echo), echo.port()).await.unwrap();
    let data = random_bytes(300_000);
    let (back, end) = client.exchange(id, stream, &data, data.len()).await;
    assert!(end.is_none() && back == data);

    // A second circuit reuses the link between the relays.
    let id2 = client.create(&entry.target(), HandshakeKind::Ntor).await;
    assert!(matches!(
        client.extend(id2, &exit.target()).await,
        ClientEvent::HopAdded { .. }
    ));
    assert_eq!(
        entry
            .ctx
            .metrics
            .links_open(crate::metrics::LinkKind::TlsOut),
        1
    );
    assert_eq!(entry.ctx.router.relay_link_count(), 1);
    exit.wait_circuits(2).await;

    // DESTROY from the client reaches the exit.
    client.destroy(id2).await;
    exit.wait_circuits(1).await;
    entry.wait_circuits(1).await;

    // Extending to the entry itself is refused.
    let id3 = client.create(&entry.target(), HandshakeKind::Ntor).await;
    let c = client.circs.get_mut(&id3).unwrap();
    c.extend(&mut client.rng, &entry.target(), HandshakeKind::Ntor)
        .unwrap();
    client.flush(id3).await;
    assert_eq!(destroyed(&mut client, id3).await, DestroyReason::PROTOCOL);

    // Extending to a relay that is not there: TRUNCATED (CONNECTFAILED), circuit usable.
    let id4 = client.create(&entry.target(), HandshakeKind::Ntor).await;
    let mut nobody = exit.target();
    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let SocketAddr::V4(closed) = closed else {
        panic!()
    };
    nobody.ipv4 = Some(SocketAddrV4::new(*closed.ip(), closed.port()));
    nobody.rsa_id = Some([9; 20]);
    nobody.ed_id = None;
    match client.extend(id4, &nobody).await {
        ClientEvent::Truncated {
            hops: 1,
            reason,
            extend_failed: true,
        } => assert_eq!(reason, DestroyReason::CONNECTFAILED),
        other => panic!("{other:?}"),
    }
    // Extending to the exit with a wrong Ed25519 identity: the link is reused only if the
    // identities match, and the relay cannot prove someone else's.
    let mut liar = exit.target();
    liar.ed_id = Some([3; 32]);
    match client.extend(id4, &liar).await {
        ClientEvent::Truncated {
            extend_failed: true,
            reason,
            ..
        } => assert_eq!(reason, DestroyReason::OR_IDENTITY),
        other => panic!("{other:?}"),
    }

    // The exit relay goes away: its circuits are destroyed toward the client.
    exit.stop().await;
    assert_eq!(
        destroyed(&mut client, id).await,
        DestroyReason::CHANNEL_CLOSED
    );
    entry.stop().await;

    // An entry that may not extend to private addresses closes the circuit.
    let entry = Relay::start("", "").await;
    let other = Relay::start("", "").await;
    let mut client = Client::tls(&entry).await;
    let id = client.create(&entry.target(), HandshakeKind::Ntor).await;
    let c = client.circs.get_mut(&id).unwrap();
    c.extend(&mut client.rng, &other.target(), HandshakeKind::Ntor)
        .unwrap();
    client.flush(id).await;
    assert_eq!(destroyed(&mut client, id).await, DestroyReason::PROTOCOL);
    entry.stop().await;
    other.stop().await;
}

/// Download `len` bytes through a circuit; returns MB/s.
async fn download(client: &mut Client, id: CircId, source: SocketAddr, len: usize) -> f64 {
    let start = Instant::now();
    let (stream, _) = client
        .begin(id, loopback(source), source.port())
        .await
        .unwrap();
    let (got, end) = client.exchange(id, stream, &[], usize::MAX).await;
    let secs = start.elapsed().as_secs_f64();
    assert!(
        matches!(
            end,
            Some(StreamEndReason::Remote {
                reason: EndReason::DONE,
                ..
            })
        ),
        "{end:?}"
    );
    assert_eq!(got.len(), len);
    assert!(got.iter().enumerate().all(|(i, b)| *b == pattern(i)));
    len as f64 / secs / 1e6
}

#[tokio::test]
async fn throughput_of_10_mb() {
    const LEN: usize = 10 * 1000 * 1000;
    let source = source_server(LEN).await;
    let exit = Relay::start("", OPEN_EXIT).await;
    let mut client = Client::tls(&exit).await;
    let id = client.create(&exit.target(), HandshakeKind::Ntor).await;
    let one = download(&mut client, id, source, LEN).await;

    let entry = Relay::start("extend_allow_private = true", "").await;
    let mut client = Client::ws(&entry).await;
    let id = client.create(&entry.target(), HandshakeKind::Ntor).await;
    assert!(matches!(
        client.extend(id, &exit.target()).await,
        ClientEvent::HopAdded { .. }
    ));
    let two = download(&mut client, id, source, LEN).await;
    eprintln!("10 MB download: 1 hop (TLS) {one:.1} MB/s, 2 hops (WS -> TLS) {two:.1} MB/s");
    entry.stop().await;
    exit.stop().await;
}
