//! The driver end to end against an in-memory relay network: a [`Link`] over a tokio duplex
//! pipe whose other end is a task playing every hop with the core's real OR side
//! ([`OrCircuit`]): create, extend, exit streams (echo, bulk, refusals, resets), DESTROY,
//! and the death of the link.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use onion_cell::chancell::{ChanCell, ChanMsg, CircId, Destroy, DestroyReason};
use onion_cell::relaycell::{EndReason, StreamId};
use onion_core::channel::{Channel, ChannelInfo, CircIdRange, PeerAuth, PeerNetinfo, Role};
use onion_core::relay::{CircuitEvent, ForwardAction, OnionKeys, OrCircuit};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_core::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;
use x25519_dalek::StaticSecret;

use super::*;

/// A relay of the fake network.
struct Relay {
    keys: OnionKeys,
    target: HopTarget,
}

/// The relays (RSA key generation is slow: made once).
fn relays() -> &'static [Relay] {
    static RELAYS: OnceLock<Vec<Relay>> = OnceLock::new();
    RELAYS.get_or_init(|| {
        let mut rng = StdRng::seed_from_u64(77);
        (0..5u8)
            .map(|i| {
                let mut rsa_id = [0u8; 20];
                rng.fill_bytes(&mut rsa_id);
                let mut ed_id = [0u8; 32];
                rng.fill_bytes(&mut ed_id);
                let ntor = StaticSecret::random_from_rng(&mut rng);
                let tap = rsa::PrivateKey::new(&mut rng, 1024).unwrap();
                let keys = OnionKeys::new(rsa_id, ed_id, ntor, tap).unwrap();
                let target = HopTarget {
                    ipv4: Some(SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, i + 1), 443)),
                    ipv6: None,
                    rsa_id: Some(rsa_id),
                    ed_id: Some(ed_id),
                    ntor_onion_key: Some(keys.ntor_public().unwrap().pk),
                    tap_onion_key: Some(keys.tap_public()),
                    supports_ntor_v3: true,
                };
                Relay { keys, target }
            })
            .collect()
    })
}

/// Relay 3 is not in the fake network: extending to it fails.
const UNREACHABLE: usize = 3;
/// Extending to relay 4 is never answered.
const SILENT: usize = 4;

/// The deterministic bytes of a bulk stream.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// What the fake network saw.
#[derive(Debug, Default)]
struct Record {
    /// DESTROYs received from the client.
    destroyed: Vec<CircId>,
    /// Streams the client ended, with its reason.
    ended: Vec<(StreamId, EndReason)>,
    /// Bytes each exit stream has sent.
    sent: BTreeMap<StreamId, usize>,
}

/// Test hooks.
enum Ctl {
    /// Drop the connection.
    Kill,
    /// Destroy a circuit from hop 1.
    Destroy(CircId, DestroyReason),
}

/// An exit stream: bytes still to send, and how to end once they are sent.
struct ExitStream {
    pending: Vec<u8>,
    echo: bool,
    end_after: Option<EndReason>,
}

/// One client circuit, as the relays see it.
struct FakeCirc {
    hops: Vec<OrCircuit>,
    streams: BTreeMap<StreamId, ExitStream>,
}

/// The relay side of the link.
struct FakeNet {
    chan: Channel,
    circs: HashMap<CircId, FakeCirc>,
    record: Arc<Mutex<Record>>,
    rng: StdRng,
    out: Vec<u8>,
}

impl FakeNet {
    /// A cell from the client.
    fn on_cell(&mut self, cell: ChanCell) {
        let ChanCell { circ_id, msg } = cell;
        match msg {
            ChanMsg::Destroy(_) => {
                self.circs.remove(&circ_id);
                self.record.lock().unwrap().destroyed.push(circ_id);
            }
            ChanMsg::Relay(r) => self.forward(circ_id, r.into_body(), false),
            ChanMsg::RelayEarly(r) => self.forward(circ_id, r.into_body(), true),
            create => {
                let (circ, reply) =
                    OrCircuit::accept_create(&mut self.rng, &relays()[0].keys, &create, true)
                        .unwrap();
                self.send(circ_id, reply);
                self.circs.insert(
                    circ_id,
                    FakeCirc {
                        hops: vec![circ],
                        streams: BTreeMap::new(),
                    },
                );
            }
        }
    }

    fn send(&mut self, id: CircId, msg: ChanMsg) {
        self.chan
            .encode(&ChanCell::new(id, msg), &mut self.out)
            .unwrap();
    }

    /// A relay cell through the hops.
    fn forward(&mut self, id: CircId, mut body: Box<[u8; 509]>, mut early: bool) {
        let Some(mut fc) = self.circs.remove(&id) else {
            return;
        };
        for i in 0..fc.hops.len() {
            match fc.hops[i].handle_forward(&mut self.rng, &mut body, early) {
                Ok(ForwardAction::PassOn { early: e }) => early = e,
                Ok(ForwardAction::Consumed) => break,
                Ok(ForwardAction::Event(ev)) => {
                    self.on_event(&mut fc, i, ev);
                    break;
                }
                Ok(_) => break,
                Err(e) => panic!("hop {} failed: {e}", i + 1),
            }
        }
        self.flush(id, &mut fc);
        self.circs.insert(id, fc);
    }

    fn on_event(&mut self, fc: &mut FakeCirc, i: usize, ev: CircuitEvent) {
        let rng = &mut self.rng;
        match ev {
            CircuitEvent::ExtendRequest(req) => {
                if req.rsa_id() == relays()[SILENT].keys.rsa_id() {
                    return;
                }
                let known = relays()
                    .iter()
                    .take(UNREACHABLE)
                    .find(|r| r.keys.rsa_id() == req.rsa_id());
                match known {
                    Some(r) => {
                        let (circ, created) =
                            OrCircuit::accept_create(rng, &r.keys, req.create(), false).unwrap();
                        fc.hops.push(circ);
                        fc.hops[i].extended(rng, &created).unwrap();
                    }
                    None => fc.hops[i]
                        .extend_failed(rng, DestroyReason::CONNECTFAILED)
                        .unwrap(),
                }
            }
            CircuitEvent::BeginRequest {
                stream,
                target,
                port,
                ..
            } => {
                let exit = &mut fc.hops[i];
                let at = Some((IpAddr::V4(Ipv4Addr::new(192, 0, 2, 80)), 60));
                let s = match target.to_string().as_str() {
                    "echo.test" => Some((Vec::new(), true, None)),
                    "bulk.test" => Some((
                        pattern(usize::from(port) * 1000),
                        false,
                        Some(EndReason::DONE),
                    )),
                    "reset.test" => Some((pattern(1000), false, Some(EndReason::CONNRESET))),
                    "refuse.test" => {
                        exit.stream_end(rng, stream, EndReason::CONNECTREFUSED)
                            .unwrap();
                        None
                    }
                    // "silent.test": never answered.
                    _ => None,
                };
                if let Some((pending, echo, end_after)) = s {
                    exit.stream_connected(rng, stream, at).unwrap();
                    fc.streams.insert(
                        stream,
                        ExitStream {
                            pending,
                            echo,
                            end_after,
                        },
                    );
                }
            }
            CircuitEvent::StreamData { stream, data } => {
                fc.hops[i].stream_flushed(rng, stream, data.len()).unwrap();
                if let Some(s) = fc.streams.get_mut(&stream).filter(|s| s.echo) {
                    s.pending.extend_from_slice(&data);
                }
            }
            CircuitEvent::StreamEnd { stream, reason } => {
                fc.streams.remove(&stream);
                self.record.lock().unwrap().ended.push((stream, reason));
            }
            _ => {}
        }
    }

    /// Exit data as the windows allow; backward cells toward the client.
    fn flush(&mut self, id: CircId, fc: &mut FakeCirc) {
        loop {
            let mut moved = false;
            if let Some(exit) = fc.hops.last_mut() {
                let mut done = Vec::new();
                for (sid, s) in &mut fc.streams {
                    if !s.pending.is_empty() {
                        let n = exit
                            .stream_data(&mut self.rng, *sid, &s.pending)
                            .unwrap_or(0);
                        s.pending.drain(..n);
                        *self.record.lock().unwrap().sent.entry(*sid).or_default() += n;
                    }
                    if s.pending.is_empty()
                        && let Some(reason) = s.end_after
                    {
                        exit.stream_end(&mut self.rng, *sid, reason).unwrap();
                        done.push(*sid);
                    }
                }
                for sid in done {
                    fc.streams.remove(&sid);
                }
            }
            for j in (1..fc.hops.len()).rev() {
                while fc.hops[j - 1].backward_room() > 0 {
                    match fc.hops[j].poll_backward() {
                        Some(ChanMsg::Relay(r)) => {
                            fc.hops[j - 1]
                                .handle_backward_from_next(r.into_body())
                                .unwrap();
                            moved = true;
                        }
                        Some(other) => panic!("unexpected backward {:?}", other.cmd()),
                        None => break,
                    }
                }
            }
            while let Some(m) = fc.hops[0].poll_backward() {
                self.send(id, m);
                moved = true;
            }
            if !moved {
                return;
            }
        }
    }
}

/// Run the relay side over `io` until killed or the client goes away.
async fn run_net(
    io: DuplexStream,
    mut ctl: mpsc::UnboundedReceiver<Ctl>,
    record: Arc<Mutex<Record>>,
) {
    let (mut rd, mut wr) = tokio::io::split(io);
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Vec<u8>>();
    tokio::spawn(async move {
        while let Some(b) = out_rx.recv().await {
            if wr.write_all(&b).await.is_err() {
                return;
            }
        }
    });
    let mut net = FakeNet {
        chan: Channel::new(5, CircIdRange::Low).unwrap(),
        circs: HashMap::new(),
        record,
        rng: StdRng::seed_from_u64(5),
        out: Vec::new(),
    };
    let mut buf = vec![0u8; 8192];
    loop {
        tokio::select! {
            n = rd.read(&mut buf) => {
                let n = match n { Ok(0) | Err(_) => return, Ok(n) => n };
                let mut rest = &buf[..n];
                while !rest.is_empty() {
                    let used = net.chan.handle_input(rest);
                    rest = &rest[used..];
                    while let Some(cell) = net.chan.poll_cell().unwrap() {
                        net.on_cell(cell);
                    }
                }
            }
            c = ctl.recv() => match c {
                Some(Ctl::Destroy(id, reason)) => {
                    net.circs.remove(&id);
                    net.send(id, Destroy::new(reason).into());
                }
                Some(Ctl::Kill) | None => return,
            },
        }
        if !net.out.is_empty() && out_tx.send(std::mem::take(&mut net.out)).is_err() {
            return;
        }
    }
}

/// A link to the fake network, its hooks and its record.
struct Harness {
    link: Link,
    ctl: mpsc::UnboundedSender<Ctl>,
    record: Arc<Mutex<Record>>,
}

fn harness_with(config: LinkConfig) -> Harness {
    let (client, relay) = tokio::io::duplex(1 << 20);
    let (ctl, ctl_rx) = mpsc::unbounded_channel();
    let record = Arc::new(Mutex::new(Record::default()));
    tokio::spawn(run_net(relay, ctl_rx, Arc::clone(&record)));
    let info = ChannelInfo {
        role: Role::Initiator,
        link_version: 5,
        peer: PeerAuth::Unauthenticated,
        we_authenticated: false,
        peer_netinfo: PeerNetinfo {
            timestamp: 0,
            our_address: None,
            peer_addresses: Vec::new(),
        },
        clock_skew_secs: None,
    };
    let chan = Channel::new(5, CircIdRange::High).unwrap();
    let link = Link::from_channel(client, chan, info, config);
    Harness { link, ctl, record }
}

fn harness() -> Harness {
    harness_with(LinkConfig::default())
}

fn target(i: usize) -> &'static HopTarget {
    &relays()[i].target
}

/// A 3-hop circuit with the default handshakes.
async fn three_hops(h: &Harness) -> Circuit {
    let circ = h
        .link
        .create_circuit(target(0), HandshakeKind::Ntor)
        .await
        .unwrap();
    circ.extend(target(1), HandshakeKind::NtorV3).await.unwrap();
    circ.extend(target(2), HandshakeKind::Ntor).await.unwrap();
    circ
}

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn every_handshake_and_a_bulk_download() {
    let h = harness();
    let paths: [(CreateKind, ExtendKind, ExtendKind); 6] = [
        (
            HandshakeKind::CreateFast.into(),
            HandshakeKind::Tap.into(),
            HandshakeKind::Ntor.into(),
        ),
        (
            HandshakeKind::CreateFastWs.into(),
            HandshakeKind::Ntor.into(),
            HandshakeKind::NtorV3.into(),
        ),
        (
            HandshakeKind::Tap.into(),
            HandshakeKind::NtorV3.into(),
            HandshakeKind::Tap.into(),
        ),
        (
            CreateKind::LegacyTap,
            ExtendKind::LegacyTap,
            HandshakeKind::Ntor.into(),
        ),
        (
            HandshakeKind::Ntor.into(),
            HandshakeKind::Ntor.into(),
            ExtendKind::LegacyTap,
        ),
        (
            HandshakeKind::NtorV3.into(),
            HandshakeKind::NtorV3.into(),
            HandshakeKind::NtorV3.into(),
        ),
    ];
    for (k1, k2, k3) in paths {
        let circ = h.link.create_circuit(target(0), k1).await.unwrap();
        circ.extend(target(1), k2).await.unwrap();
        circ.extend(target(2), k3).await.unwrap();
        // 300 cells' worth plus: stream and circuit SENDMEs, END DONE as end of file.
        let mut s = circ.begin("bulk.test", 300).await.unwrap();
        assert_eq!(
            s.peer_addr(),
            Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 80)))
        );
        let mut got = Vec::new();
        tokio::time::timeout(WAIT, s.read_to_end(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert!(got == pattern(300_000), "{k1:?} {k2:?} {k3:?}: wrong bytes");
        circ.close().await;
        assert_eq!(circ.closed_reason(), Some(CircuitClosed::Local));
    }
    // Every circuit was destroyed at hop 1.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(h.record.lock().unwrap().destroyed.len(), 6);
}

#[tokio::test]
async fn echo_both_ways_with_backpressure() {
    let h = harness();
    let circ = three_hops(&h).await;
    let s = circ.begin("echo.test", 7).await.unwrap();
    let (mut rd, mut wr) = tokio::io::split(s);
    let data = pattern(1_500_000);
    let up = data.clone();
    let writer = tokio::spawn(async move {
        wr.write_all(&up).await.unwrap();
        wr.flush().await.unwrap();
        wr
    });
    let mut got = vec![0u8; data.len()];
    tokio::time::timeout(WAIT, rd.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert!(got == data, "echo differs");
    let wr = writer.await.unwrap();
    // Dropping the stream sends END (DONE).
    drop(rd.unsplit(wr));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(h.record.lock().unwrap().ended.len(), 1);
    assert_eq!(h.record.lock().unwrap().ended[0].1, EndReason::DONE);
}

#[tokio::test]
async fn a_slow_reader_holds_the_exit_back() {
    let h = harness();
    let circ = three_hops(&h).await;
    let mut s = circ.begin("bulk.test", 2000).await.unwrap();
    let sid = s.stream_id();
    // Nobody reads: the exit stops at a stream window (500 cells).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = h.record.lock().unwrap().sent[&sid];
    assert_eq!(sent, 500 * 498, "the exit sent exactly one stream window");
    let mut got = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert!(got == pattern(2_000_000));
}

#[tokio::test]
async fn refused_and_reset_streams_carry_the_end_reason() {
    let h = harness();
    let circ = three_hops(&h).await;
    let err = circ.begin("refuse.test", 80).await.unwrap_err();
    assert!(
        matches!(
            err,
            OpError::Stream(StreamError::End(EndReason::CONNECTREFUSED))
        ),
        "{err:?}"
    );
    let mut s = circ.begin("reset.test", 80).await.unwrap();
    let mut got = Vec::new();
    let e = s.read_to_end(&mut got).await.unwrap_err();
    assert_eq!(got, pattern(1000));
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset);
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<StreamError>());
    assert_eq!(inner, Some(&StreamError::End(EndReason::CONNRESET)));
    // Bad input is the caller's error, and the circuit survives it.
    assert!(matches!(
        circ.begin("", 80).await.unwrap_err(),
        OpError::BadAddress(_)
    ));
    assert!(matches!(
        circ.extend(target(1), HandshakeKind::CreateFast)
            .await
            .unwrap_err(),
        OpError::Circuit(onion_core::client::CircuitError::FirstHopOnly(_))
    ));
    let mut s = circ.begin("bulk.test", 1).await.unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).await.unwrap();
    assert_eq!(got.len(), 1000);
}

#[tokio::test]
async fn extend_refusal_truncates_and_closes() {
    let h = harness();
    let circ = h
        .link
        .create_circuit(target(0), HandshakeKind::NtorV3)
        .await
        .unwrap();
    let err = circ
        .extend(target(UNREACHABLE), HandshakeKind::Ntor)
        .await
        .unwrap_err();
    assert!(
        matches!(err, OpError::ExtendFailed(DestroyReason::CONNECTFAILED)),
        "{err:?}"
    );
    assert_eq!(
        circ.closed().await,
        CircuitClosed::Truncated {
            hops: 1,
            reason: DestroyReason::CONNECTFAILED
        }
    );
    assert!(matches!(
        circ.begin("echo.test", 1).await.unwrap_err(),
        OpError::CircuitClosed(CircuitClosed::Truncated { .. })
    ));
}

#[tokio::test]
async fn destroy_from_hop_one_ends_streams() {
    let h = harness();
    let circ = three_hops(&h).await;
    let mut s = circ.begin("echo.test", 1).await.unwrap();
    h.ctl
        .send(Ctl::Destroy(circ.id(), DestroyReason::FINISHED))
        .ok()
        .unwrap();
    let e = s.read_u8().await.unwrap_err();
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<StreamError>());
    assert_eq!(
        inner,
        Some(&StreamError::Circuit(CircuitClosed::Destroyed(
            DestroyReason::FINISHED
        )))
    );
    assert_eq!(
        circ.closed().await,
        CircuitClosed::Destroyed(DestroyReason::FINISHED)
    );
    // We do not answer a DESTROY with a DESTROY; the link goes on.
    let c2 = three_hops(&h).await;
    assert!(h.record.lock().unwrap().destroyed.is_empty());
    drop(c2);
    drop(s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_death_fails_every_circuit_and_stream() {
    let h = harness_with(LinkConfig {
        begin_timeout: Duration::from_secs(30),
        ..LinkConfig::default()
    });
    let c1 = three_hops(&h).await;
    let c2 = three_hops(&h).await;
    let mut s1 = c1.begin("echo.test", 1).await.unwrap();
    let mut s2 = c2.begin("echo.test", 1).await.unwrap();
    let c2b = c2.clone();
    let pending = tokio::spawn(async move { c2b.begin("silent.test", 1).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    h.ctl.send(Ctl::Kill).ok().unwrap();
    let want = CircuitClosed::Link(LinkError::Eof);
    for s in [&mut s1, &mut s2] {
        let e = tokio::time::timeout(WAIT, s.read_u8())
            .await
            .unwrap()
            .unwrap_err();
        let inner = e.get_ref().and_then(|i| i.downcast_ref::<StreamError>());
        assert_eq!(inner, Some(&StreamError::Circuit(want.clone())));
        let e = s.write_all(b"x").await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionAborted);
    }
    let err = pending.await.unwrap().unwrap_err();
    assert!(
        matches!(&err, OpError::CircuitClosed(c) if *c == want),
        "{err:?}"
    );
    assert_eq!(c1.closed().await, want);
    assert_eq!(c2.closed().await, want);
    assert_eq!(h.link.closed().await, LinkError::Eof);
    assert!(!h.link.is_open());
    assert!(matches!(
        h.link
            .create_circuit(target(0), HandshakeKind::Ntor)
            .await
            .unwrap_err(),
        OpError::Link(LinkError::Eof)
    ));
}

#[tokio::test]
async fn dropping_every_handle_destroys_the_circuit() {
    let h = harness();
    let circ = three_hops(&h).await;
    let id = circ.id();
    let s = circ.begin("echo.test", 1).await.unwrap();
    drop(circ);
    // The stream keeps the circuit alive.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(h.record.lock().unwrap().destroyed.is_empty());
    drop(s);
    tokio::time::timeout(WAIT, async {
        while h.record.lock().unwrap().destroyed.is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    let r = h.record.lock().unwrap();
    assert_eq!(r.destroyed, vec![id]);
    assert_eq!(r.ended.len(), 1, "END before DESTROY");
}

#[tokio::test]
async fn begin_and_extend_time_out() {
    let h = harness_with(LinkConfig {
        begin_timeout: Duration::from_millis(100),
        extend_timeout: Duration::from_millis(200),
        ..LinkConfig::default()
    });
    let circ = three_hops(&h).await;
    let err = circ.begin("silent.test", 1).await.unwrap_err();
    assert!(matches!(err, OpError::Timeout(_)), "{err:?}");
    // The abandoned stream is ended (MISC, as an OP must).
    tokio::time::timeout(WAIT, async {
        while h.record.lock().unwrap().ended.is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(h.record.lock().unwrap().ended[0].1, EndReason::MISC);
    // The circuit is still usable.
    let mut s = circ.begin("bulk.test", 2).await.unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).await.unwrap();
    assert_eq!(got.len(), 2000);

    // An extension that is never answered closes the circuit.
    let c2 = h
        .link
        .create_circuit(target(0), HandshakeKind::Ntor)
        .await
        .unwrap();
    let err = c2
        .extend(target(SILENT), HandshakeKind::Ntor)
        .await
        .unwrap_err();
    assert!(matches!(err, OpError::Timeout(_)), "{err:?}");
    assert_eq!(
        c2.closed().await,
        CircuitClosed::TimedOut("waiting for EXTENDED2")
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(h.record.lock().unwrap().destroyed, vec![c2.id()]);

    // Closing the link ends it for everyone.
    h.link.close().await;
    assert_eq!(circ.closed().await, CircuitClosed::Link(LinkError::Closed));
    assert_eq!(h.link.error(), Some(LinkError::Closed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_circuits_share_one_link() {
    let h = harness();
    let mut tasks = Vec::new();
    for i in 0..8usize {
        let link = h.link.clone();
        tasks.push(tokio::spawn(async move {
            let circ = link
                .create_circuit(target(0), HandshakeKind::CreateFast)
                .await
                .unwrap();
            circ.extend(target(1), HandshakeKind::Ntor).await.unwrap();
            let mut s = circ.begin("bulk.test", 100 + i as u16).await.unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).await.unwrap();
            assert!(got == pattern((100 + i) * 1000));
            circ
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        let c = tokio::time::timeout(WAIT, t).await.unwrap().unwrap();
        ids.push(c.id());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 8, "distinct circuit IDs");
    assert!(
        ids.iter().all(|id| id.get() & 0x8000_0000 != 0),
        "high range"
    );
}
