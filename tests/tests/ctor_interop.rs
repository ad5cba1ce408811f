//! Interoperability with C tor 0.4.9: a private network (tornet: 3 authorities, 3 relays of
//! which 2 exits, all on 127.0.0.1) shared by every test of this binary, and our OR.
//!
//! The client enters over WebSocket to our OR, which extends over Tor link TLS to a C tor
//! middle, which extends to a C tor exit; the exit fetches from a local HTTP server.
//!
//! Run with `--nocapture` to see the timings and what C tor logged about our OR.

use std::time::{Duration, Instant};

use onion_op::{HandshakeKind, Link, LinkConfig};
use onion_tests::http::{HttpServer, get_bytes};
use onion_tests::or::{OrNode, OrSpec};
use onion_tests::tornet::TorNet;
use onion_tests::{body, init_logging, secs};

const MB: usize = 1_000_000;

/// Print what the C tor relays logged about `or` (its fingerprint or its ORPort), and every
/// warning, since `marks`.
fn print_ctor_logs(net: &TorNet, marks: &[u64], or: &OrNode) {
    let port = or
        .or_port()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "-".into());
    let lines = net.grep_logs_since(marks, &[&or.fingerprint, &port, "[warn]"]);
    eprintln!(
        "C tor log lines mentioning our OR ({} / {port}) or warning: {}",
        or.fingerprint,
        lines.len()
    );
    for l in lines {
        eprintln!("  {l}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_entry_then_ctor_middle_and_exit() {
    init_logging();
    let t = Instant::now();
    let net = TorNet::shared().unwrap();
    eprintln!(
        "C tor network up in {:.1} s ({} nodes), dir {}",
        secs(t),
        net.relays.len(),
        net.dir.display()
    );
    let or = OrNode::start(OrSpec::new("OurEntry")).await.unwrap();
    let http = HttpServer::start().await.unwrap();
    let middle = net.relay("middle").unwrap();
    let exit = net.relay("exit").unwrap();
    eprintln!(
        "our OR {} ws {:?} ORPort {:?}; middle {} :{}; exit {} :{}",
        or.fingerprint,
        or.addrs.ws,
        or.addrs.or_port,
        middle.nickname,
        middle.orport,
        exit.nickname,
        exit.orport
    );

    let marks = net.log_marks();
    let mut result = Ok(());
    for (kind, len) in [(HandshakeKind::Ntor, 10 * MB), (HandshakeKind::NtorV3, MB)] {
        let t = Instant::now();
        let run = async {
            let link =
                Link::connect_ws(&or.ws_url().unwrap(), &or.target, LinkConfig::default()).await?;
            let circ = link.create_circuit(&or.target, HandshakeKind::Ntor).await?;
            circ.extend(&middle.target, kind).await?;
            circ.extend(&exit.target, kind).await?;
            let built = secs(t);
            let t = Instant::now();
            let mut s = circ.begin("127.0.0.1", http.addr().port()).await?;
            let got = get_bytes(&mut s, "127.0.0.1", len)
                .await
                .map_err(|e| onion_op::OpError::Transport(e.to_string()))?;
            let fetched = secs(t);
            drop(s);
            circ.close().await;
            link.close().await;
            Ok::<_, onion_op::OpError>((built, fetched, body::check(&got, len)))
        };
        match tokio::time::timeout(Duration::from_secs(180), run).await {
            Ok(Ok((built, fetched, true))) => eprintln!(
                "ok   {kind} via C tor: circuit {built:.3} s, GET {len} bytes in {fetched:.2} s \
                 ({:.1} MB/s)",
                len as f64 / 1e6 / fetched
            ),
            Ok(Ok((_, _, false))) => result = Err(format!("{kind}: wrong bytes")),
            Ok(Err(e)) => result = Err(format!("{kind}: {e}")),
            Err(_) => result = Err(format!("{kind}: timed out")),
        }
        if result.is_err() {
            break;
        }
    }
    print_ctor_logs(net, &marks, &or);
    result.unwrap();
}

/// The OP alone against C tor: a TLS link to a C tor relay (its identity checked in CERTS),
/// then C tor hops only. Checks the driver independently of our OR.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn op_over_tls_through_ctor_only() {
    init_logging();
    let net = TorNet::shared().unwrap();
    let http = HttpServer::start().await.unwrap();
    let guard = net.relay("middle").unwrap();
    let exits: Vec<_> = net.relays.iter().filter(|r| r.role == "exit").collect();
    assert!(exits.len() >= 2, "the network has 2 exits");
    let addr = std::net::SocketAddr::V4(guard.target.ipv4.unwrap());
    for (hop1, kind, len) in [
        (HandshakeKind::Ntor, HandshakeKind::Ntor, 10 * MB),
        (HandshakeKind::CreateFast, HandshakeKind::NtorV3, MB),
        (HandshakeKind::NtorV3, HandshakeKind::NtorV3, MB),
    ] {
        let t = Instant::now();
        let link = Link::connect_tls(addr, &guard.target, LinkConfig::default())
            .await
            .unwrap();
        assert!(matches!(
            link.info().peer,
            onion_core::channel::PeerAuth::Authenticated { .. }
        ));
        let circ = link.create_circuit(&guard.target, hop1).await.unwrap();
        circ.extend(&exits[1].target, kind).await.unwrap();
        circ.extend(&exits[0].target, kind).await.unwrap();
        let built = secs(t);
        let t = Instant::now();
        let mut s = circ.begin("127.0.0.1", http.addr().port()).await.unwrap();
        let got = tokio::time::timeout(
            Duration::from_secs(120),
            get_bytes(&mut s, "127.0.0.1", len),
        )
        .await
        .unwrap()
        .unwrap();
        assert!(body::check(&got, len), "{hop1} / {kind}: wrong bytes");
        let fetched = secs(t);
        eprintln!(
            "ok   C tor only, {hop1} then {kind}: circuit {built:.3} s, GET {len} bytes in \
             {fetched:.2} s ({:.1} MB/s)",
            len as f64 / 1e6 / fetched
        );
        // A refused destination: the exit's END reason reaches the caller.
        let err = circ.begin("127.0.0.1", 1).await.unwrap_err();
        eprintln!("     port 1 at the C tor exit: {err}");
        assert!(matches!(err, onion_op::OpError::Stream(_)), "{err:?}");
        drop(s);
        circ.close().await;
        link.close().await;
    }
}
