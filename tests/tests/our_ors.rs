//! Three of our ORs on 127.0.0.1: the client enters over WebSocket (or TLS), the entry
//! extends over a real TLS link to the middle, the middle to the exit, and the exit fetches
//! from a local HTTP server. Every first-hop handshake, TAP / ntor / ntor-v3 for hops 2-3,
//! bytes verified.
//!
//! Run with `--nocapture` to see the timings.

use std::time::{Duration, Instant};

use onion_op::{
    CircuitClosed, CreateKind, ExtendKind, HandshakeKind, Link, LinkConfig, LinkError, OpError,
    StreamError,
};
use onion_tests::http::{HttpServer, get_bytes};
use onion_tests::or::{OrNode, OrSpec};
use onion_tests::{body, init_logging, secs};

const MB: usize = 1_000_000;

/// Entry (ws + ORPort), middle (ORPort), exit (ORPort, exit to anything).
struct Net {
    entry: OrNode,
    middle: OrNode,
    exit: OrNode,
    http: HttpServer,
}

async fn net() -> onion_tests::Result<Net> {
    init_logging();
    let t = Instant::now();
    let (entry, middle, exit) = tokio::join!(
        OrNode::start(OrSpec::new("Entry")),
        OrNode::start(OrSpec {
            ws: false,
            ..OrSpec::new("Middle")
        }),
        OrNode::start(OrSpec {
            ws: false,
            ..OrSpec::new("Exit").exit()
        }),
    );
    let net = Net {
        entry: entry?,
        middle: middle?,
        exit: exit?,
        http: HttpServer::start().await?,
    };
    eprintln!("3 ORs up in {:.2} s", secs(t));
    Ok(net)
}

/// One circuit: hop-1 handshake, hop-2 and hop-3 handshakes, bytes to fetch.
#[derive(Debug, Clone, Copy)]
struct Variant {
    hop1: CreateKind,
    hop2: ExtendKind,
    hop3: ExtendKind,
    len: usize,
}

/// Build the circuit of `v` over a fresh WebSocket link to the entry, GET `v.len` bytes,
/// check them; the build and fetch times.
async fn run_variant(net: &Net, v: Variant) -> Result<(f64, f64), String> {
    let err = |what: &str, e: OpError| format!("{what}: {e}");
    let t = Instant::now();
    let url = net.entry.ws_url().map_err(|e| e.to_string())?;
    let link = Link::connect_ws(&url, &net.entry.target, LinkConfig::default())
        .await
        .map_err(|e| err("connect", e))?;
    let circ = link
        .create_circuit(&net.entry.target, v.hop1)
        .await
        .map_err(|e| err("create", e))?;
    circ.extend(&net.middle.target, v.hop2)
        .await
        .map_err(|e| err("extend to the middle", e))?;
    circ.extend(&net.exit.target, v.hop3)
        .await
        .map_err(|e| err("extend to the exit", e))?;
    let built = secs(t);
    let t = Instant::now();
    let mut s = circ
        .begin("127.0.0.1", net.http.addr().port())
        .await
        .map_err(|e| err("begin", e))?;
    let got = get_bytes(&mut s, "127.0.0.1", v.len)
        .await
        .map_err(|e| format!("GET: {e}"))?;
    if !body::check(&got, v.len) {
        return Err(format!("wrong bytes ({} received)", got.len()));
    }
    let fetched = secs(t);
    drop(s);
    circ.close().await;
    link.close().await;
    Ok((built, fetched))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_handshake_through_three_of_our_ors() {
    let net = net().await.unwrap();
    let hop1s: [CreateKind; 6] = [
        HandshakeKind::Ntor.into(),
        HandshakeKind::NtorV3.into(),
        HandshakeKind::Tap.into(),
        CreateKind::LegacyTap,
        HandshakeKind::CreateFast.into(),
        HandshakeKind::CreateFastWs.into(),
    ];
    let later = [
        HandshakeKind::Ntor,
        HandshakeKind::NtorV3,
        HandshakeKind::Tap,
    ];
    let mut variants = Vec::new();
    for hop1 in hop1s {
        for (i, k) in later.iter().enumerate() {
            // Hop 3 uses the next kind, so mixed pairs are covered too.
            let k3 = later[(i + 1) % later.len()];
            // The first combination of each hop-1 handshake carries 10 MB, the others 1 MB.
            variants.push(Variant {
                hop1,
                hop2: (*k).into(),
                hop3: k3.into(),
                len: if i == 0 { 10 * MB } else { MB },
            });
        }
    }
    // TAP in legacy CREATE and legacy RELAY_EXTEND cells all the way (the seed's ORs).
    variants.push(Variant {
        hop1: CreateKind::LegacyTap,
        hop2: ExtendKind::LegacyTap,
        hop3: ExtendKind::LegacyTap,
        len: MB,
    });
    // 10 MB with ntor-v3 on every hop.
    variants.push(Variant {
        hop1: HandshakeKind::NtorV3.into(),
        hop2: HandshakeKind::NtorV3.into(),
        hop3: HandshakeKind::NtorV3.into(),
        len: 10 * MB,
    });
    let mut failures = Vec::new();
    let total = Instant::now();
    for v in variants {
        let name = format!(
            "{:?} / {:?} / {:?}, {} bytes",
            v.hop1, v.hop2, v.hop3, v.len
        );
        match tokio::time::timeout(Duration::from_secs(120), run_variant(&net, v)).await {
            Ok(Ok((built, fetched))) => eprintln!(
                "ok   {name}: circuit {built:.3} s, GET {fetched:.2} s ({:.1} MB/s)",
                v.len as f64 / 1e6 / fetched
            ),
            Ok(Err(e)) => {
                eprintln!("FAIL {name}: {e}");
                failures.push(format!("{name}: {e}"));
            }
            Err(_) => {
                eprintln!("FAIL {name}: timed out");
                failures.push(format!("{name}: timed out"));
            }
        }
    }
    eprintln!("all variants: {:.1} s", secs(total));
    assert!(failures.is_empty(), "failed: {failures:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_entry_and_identity_checks() {
    let net = net().await.unwrap();
    let entry_port = std::net::SocketAddr::V4(net.entry.or_port().unwrap());
    // Over TLS the relay proves its identity and certifies the TLS certificate.
    let link = Link::connect_tls(entry_port, &net.entry.target, LinkConfig::default())
        .await
        .unwrap();
    assert!(matches!(
        link.info().peer,
        onion_core::channel::PeerAuth::Authenticated { .. }
    ));
    let circ = link
        .create_circuit(&net.entry.target, HandshakeKind::Ntor)
        .await
        .unwrap();
    circ.extend(&net.middle.target, HandshakeKind::NtorV3)
        .await
        .unwrap();
    circ.extend(&net.exit.target, HandshakeKind::Ntor)
        .await
        .unwrap();
    let mut s = circ
        .begin("127.0.0.1", net.http.addr().port())
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(60), get_bytes(&mut s, "127.0.0.1", MB))
        .await
        .expect("1 MB over TLS entry timed out")
        .unwrap();
    assert!(body::check(&got, MB));

    // The entry is not the middle: the link handshake refuses it.
    let err = Link::connect_tls(entry_port, &net.middle.target, LinkConfig::default())
        .await
        .unwrap_err();
    assert!(matches!(err, OpError::Handshake(_)), "{err:?}");

    // Over WebSocket, a wrong ntor key for hop 1 fails the CREATE2 handshake.
    let url = net.entry.ws_url().unwrap();
    let ws = Link::connect_ws(&url, &net.entry.target, LinkConfig::default())
        .await
        .unwrap();
    // Nothing binds the CERTS cell to a WebSocket: the identity is only claimed.
    assert!(matches!(
        ws.info().peer,
        onion_core::channel::PeerAuth::CertifiedNotBound { .. }
    ));
    let mut wrong = net.entry.target.clone();
    wrong.ntor_onion_key = net.middle.target.ntor_onion_key;
    let err = ws
        .create_circuit(&wrong, HandshakeKind::Ntor)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            OpError::Circuit(_) | OpError::CircuitClosed(CircuitClosed::Destroyed(_))
        ),
        "{err:?}"
    );

    // A refused destination (nothing listens there) carries the exit's END reason.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let err = circ.begin("127.0.0.1", port).await.unwrap_err();
    assert!(matches!(err, OpError::Stream(_)), "{err:?}");
    eprintln!("refused destination: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entry_going_away_fails_circuits_and_streams() {
    let net = net().await.unwrap();
    let Net {
        entry,
        middle,
        exit,
        http,
    } = net;
    let url = entry.ws_url().unwrap();
    let link = Link::connect_ws(&url, &entry.target, LinkConfig::default())
        .await
        .unwrap();
    let circ = link
        .create_circuit(&entry.target, HandshakeKind::NtorV3)
        .await
        .unwrap();
    circ.extend(&middle.target, HandshakeKind::NtorV3)
        .await
        .unwrap();
    circ.extend(&exit.target, HandshakeKind::NtorV3)
        .await
        .unwrap();
    let mut s = circ.begin("127.0.0.1", http.addr().port()).await.unwrap();
    // Stop the entry while the stream is open and idle.
    entry.stop().await;
    let mut buf = Vec::new();
    let e = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::io::AsyncReadExt::read_to_end(&mut s, &mut buf),
    )
    .await
    .expect("the stream must fail, not hang")
    .unwrap_err();
    let inner = e
        .get_ref()
        .and_then(|i| i.downcast_ref::<StreamError>())
        .cloned();
    eprintln!("stream error after the entry stopped: {e}");
    assert!(
        matches!(
            inner,
            Some(StreamError::Circuit(
                CircuitClosed::Link(_) | CircuitClosed::Destroyed(_)
            ))
        ),
        "{inner:?}"
    );
    let why = tokio::time::timeout(Duration::from_secs(30), circ.closed())
        .await
        .unwrap();
    assert!(
        matches!(why, CircuitClosed::Link(_) | CircuitClosed::Destroyed(_)),
        "{why:?}"
    );
    let link_err = tokio::time::timeout(Duration::from_secs(30), link.closed())
        .await
        .unwrap();
    assert!(
        matches!(link_err, LinkError::Eof | LinkError::Io { .. }),
        "{link_err:?}"
    );
}
