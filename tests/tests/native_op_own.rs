//! The native OP (`onion_op::driver` and the SOCKS5 front end of the `onion-op` binary) on our
//! own network: an in-process dev network of or-server (`or_server::dev`: the authority,
//! which signs the relay list the OP fetches over BEGIN_DIR and checks with the pinned key,
//! an entry with a WebSocket listener, middles, an exit allowed to reach 127.0.0.1).
//! - `curl --socks5-hostname` fetches 10 MB through three of our ORs, bytes checked, and once
//!   more with the ORs TAP-only for the client (seed compatibility: TAP on every hop);
//! - SOCKS details: IPv4 and IPv6 CONNECT, RESOLVE, reply codes (refused -> 0x05),
//!   isolation by SOCKS username/password (different credentials, different circuits);
//! - failover: the middle relay of a download is stopped mid-transfer: that transfer fails
//!   (curl sees the connection reset, not a short clean end), the next request succeeds.

#[cfg(test)]
mod native_op_common;

// Integration tests are built with cfg(test): the module makes clippy treat the helpers as test
// code.
#[cfg(test)]
mod test {

    use std::net::{Ipv6Addr, SocketAddr};
    use std::time::{Duration, Instant};

    use super::native_op_common::{MB, RunningOp, curl_get, spawn_curl_download};
    use onion_core::engine::EngineConfig;
    use onion_core::handshake::HandshakeKind;
    use onion_tests::http::HttpServer;
    use onion_tests::or::TempDir;
    use onion_tests::{init_logging, secs};
    use or_server::dev::{DevNetwork, DevOptions, find_root};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    const READY: Duration = Duration::from_secs(60);

    /// A dev network with `relays` ORs besides the authority's, in its own data directory
    /// (removed when the guard drops, after `stop`).
    async fn dev_network(relays: usize) -> (DevNetwork, TempDir) {
        let dir = TempDir::new("dev").unwrap();
        let mut opts = DevOptions::new(find_root(std::path::Path::new(env!("CARGO_MANIFEST_DIR"))));
        opts.relays = relays;
        opts.http = SocketAddr::from(([127, 0, 0, 1], 0));
        opts.check_interval_secs = 1;
        opts.data_dir = Some(dir.path().join("data"));
        let t = Instant::now();
        let dev = DevNetwork::start(opts).await.unwrap();
        eprintln!(
            "dev network ({relays} ORs + authority) listed in {:.1} s",
            secs(t)
        );
        (dev, dir)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn own_network_three_ors_curl_10mb() {
        init_logging();
        let (dev, _dir) = dev_network(3).await;
        let http = HttpServer::start().await.unwrap();
        let op = RunningOp::start(&dev.network_json, EngineConfig::default())
            .await
            .unwrap();
        let t = Instant::now();
        op.ready(READY).await.unwrap();
        eprintln!(
            "bootstrapped from the signed relay list in {:.2} s",
            secs(t)
        );
        let url = format!("http://127.0.0.1:{}/bytes/{}", http.addr().port(), 10 * MB);
        let t = Instant::now();
        let body = curl_get(op.socks, &url, None).await.unwrap();
        let took = secs(t);
        assert!(
            onion_tests::body::check(&body, 10 * MB),
            "wrong bytes ({} received)",
            body.len()
        );
        eprintln!(
            "curl: 10 MB through 3 of our ORs in {took:.2} s ({:.1} MB/s)",
            10.0 / took
        );
        let circs = op.client.circuits().await.unwrap();
        let ours = dev.nicknames();
        let c = circs
            .iter()
            .find(|c| c.path.len() == 3)
            .expect("a 3-hop circuit");
        for hop in &c.path {
            assert!(ours.contains(&hop.nickname), "{} is ours", hop.nickname);
        }
        op.stop().await;
        dev.stop().await;
    }

    /// Seed compatibility: the ORs are TAP-only for the client (the engine's
    /// `EngineConfig::handshake`, `onion-op --handshake tap`): every hop of the circuit runs
    /// TAP (CREATE2 type 0 to the entry, EXTEND2 with TAP to the middle and the exit) and
    /// 10 MB arrive intact through `curl`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn own_network_tap_only_curl_10mb() {
        init_logging();
        let (dev, _dir) = dev_network(3).await;
        let http = HttpServer::start().await.unwrap();
        let config = EngineConfig {
            handshake: Some(HandshakeKind::Tap),
            ..EngineConfig::default()
        };
        let op = RunningOp::start(&dev.network_json, config).await.unwrap();
        op.ready(READY).await.unwrap();
        let url = format!("http://127.0.0.1:{}/bytes/{}", http.addr().port(), 10 * MB);
        let t = Instant::now();
        let body = curl_get(op.socks, &url, None).await.unwrap();
        let took = secs(t);
        assert!(
            onion_tests::body::check(&body, 10 * MB),
            "wrong bytes ({} received)",
            body.len()
        );
        eprintln!(
            "curl: 10 MB through 3 TAP-only ORs in {took:.2} s ({:.1} MB/s)",
            10.0 / took
        );
        let circs = op.client.circuits().await.unwrap();
        let ours = dev.nicknames();
        let built: Vec<_> = circs.iter().filter(|c| c.path.len() == 3).collect();
        assert!(!built.is_empty(), "a 3-hop circuit: {circs:?}");
        for c in built {
            for hop in &c.path {
                assert!(ours.contains(&hop.nickname), "{} is ours", hop.nickname);
                assert_eq!(
                    hop.handshake,
                    Some(HandshakeKind::Tap),
                    "{}: {:?}",
                    hop.nickname,
                    hop.handshake
                );
            }
        }
        op.stop().await;
        // The binary's `--handshake tap` drives the same setting.
        let bin = super::native_op_common::OpProcess::start(
            &dev.network_json,
            &["--handshake", "tap", "--circuits", "1"],
        );
        let url = format!("http://127.0.0.1:{}/bytes/{}", http.addr().port(), MB);
        let body = curl_get(bin.socks, &url, None).await;
        let log = bin.log_text();
        let body = body.unwrap_or_else(|e| panic!("{e}\nonion-op log:\n{log}"));
        assert!(onion_tests::body::check(&body, MB));
        drop(bin);
        dev.stop().await;
    }

    /// A raw SOCKS5 exchange: greeting (no auth), `request`; the reply's bytes.
    async fn socks_raw(socks: SocketAddr, request: &[u8]) -> Vec<u8> {
        let mut s = TcpStream::connect(socks).await.unwrap();
        s.write_all(&[5, 1, 0]).await.unwrap();
        let mut m = [0u8; 2];
        s.read_exact(&mut m).await.unwrap();
        assert_eq!(m, [5, 0]);
        s.write_all(request).await.unwrap();
        let mut head = [0u8; 4];
        s.read_exact(&mut head).await.unwrap();
        let addr_len = match head[3] {
            1 => 4,
            4 => 16,
            3 => usize::from(s.read_u8().await.unwrap()),
            t => panic!("bad ATYP {t}"),
        };
        let mut rest = vec![0u8; addr_len + 2];
        s.read_exact(&mut rest).await.unwrap();
        let mut reply = head.to_vec();
        reply.extend(rest);
        reply
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn socks_ipv4_ipv6_resolve_errors_and_isolation() {
        init_logging();
        let (dev, _dir) = dev_network(3).await;
        let op = RunningOp::start(&dev.network_json, EngineConfig::default())
            .await
            .unwrap();
        op.ready(READY).await.unwrap();

        // IPv6 CONNECT (ATYP 4) to a server on [::1]: the bytes come back.
        let v6 = TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).await.unwrap();
        let v6_port = v6.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            for _ in 0..2 {
                let (mut c, _) = v6.accept().await.unwrap();
                c.write_all(b"hello over IPv6\n").await.unwrap();
            }
        });
        let mut req = vec![5, 1, 0, 4];
        req.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        req.extend_from_slice(&v6_port.to_be_bytes());
        let mut s = TcpStream::connect(op.socks).await.unwrap();
        s.write_all(&[5, 1, 0]).await.unwrap();
        s.write_all(&req).await.unwrap();
        let mut reply = [0u8; 2 + 10];
        s.read_exact(&mut reply).await.unwrap();
        assert_eq!(&reply[..4], &[5, 0, 5, 0], "method then success: {reply:?}");
        let mut got = String::new();
        s.read_to_string(&mut got).await.unwrap();
        assert_eq!(got, "hello over IPv6\n");
        // The same with the address written as a host name ("::1" in a domain field).
        let url = format!("http://[::1]:{v6_port}/");
        let e = curl_get(op.socks, &url, None).await;
        // Not HTTP: curl complains about the answer, not about SOCKS.
        let e = e.unwrap_err();
        assert!(!e.contains("SOCKS"), "{e}");
        server.await.unwrap();

        // IPv4 CONNECT (curl --socks5, not -hostname, sends ATYP 1).
        let http = HttpServer::start().await.unwrap();
        let out = tokio::task::spawn_blocking({
            let socks = op.socks;
            let url = format!("http://127.0.0.1:{}/bytes/{}", http.addr().port(), MB);
            move || {
                std::process::Command::new("curl")
                    .args(["-sS", "--max-time", "120", "--socks5"])
                    .arg(socks.to_string())
                    .arg(url)
                    .output()
                    .unwrap()
            }
        })
        .await
        .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(onion_tests::body::check(&out.stdout, MB));

        // RESOLVE (0xF0) of "localhost" at the exit.
        let mut req = vec![5, 0xF0, 0, 3, 9];
        req.extend_from_slice(b"localhost");
        req.extend_from_slice(&[0, 0]);
        let reply = socks_raw(op.socks, &req).await;
        eprintln!("RESOLVE localhost: {reply:?}");
        assert_eq!(reply[1], 0, "RESOLVE succeeded: {reply:?}");
        let loopback = (reply[3] == 1 && reply[4..8] == [127, 0, 0, 1])
            || (reply[3] == 4 && reply[4..20] == Ipv6Addr::LOCALHOST.octets());
        assert!(
            loopback,
            "localhost resolves to a loopback address: {reply:?}"
        );

        // A closed port: the exit's END CONNECTREFUSED is SOCKS reply 5.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut req = vec![5, 1, 0, 1, 127, 0, 0, 1];
        req.extend_from_slice(&closed.to_be_bytes());
        let reply = socks_raw(op.socks, &req).await;
        assert_eq!(reply[1], 5, "connection refused: {reply:?}");
        let e = curl_get(op.socks, &format!("http://127.0.0.1:{closed}/"), None)
            .await
            .unwrap_err();
        eprintln!("curl to a closed port: {e}");
        // An unknown command: 7.
        let reply = socks_raw(op.socks, &[5, 2, 0, 1, 127, 0, 0, 1, 0, 80]).await;
        assert_eq!(reply[1], 7, "BIND is not supported: {reply:?}");

        // Isolation: two sets of credentials never share a circuit.
        let url = format!("http://127.0.0.1:{}/bytes/1000", http.addr().port());
        for (u, p) in [("alice", "a"), ("bob", "b"), ("alice", "a")] {
            let body = curl_get(op.socks, &url, Some((u, p))).await.unwrap();
            assert!(onion_tests::body::check(&body, 1000));
        }
        let circs = op.client.circuits().await.unwrap();
        let keys: Vec<String> = circs.iter().filter_map(|c| c.isolation.clone()).collect();
        eprintln!("circuit isolation keys: {keys:?}");
        let alice: Vec<u64> = circs
            .iter()
            .filter(|c| {
                c.isolation
                    .as_deref()
                    .is_some_and(|k| k.contains(&hex("alice")))
            })
            .map(|c| c.id)
            .collect();
        let bob: Vec<u64> = circs
            .iter()
            .filter(|c| {
                c.isolation
                    .as_deref()
                    .is_some_and(|k| k.contains(&hex("bob")))
            })
            .map(|c| c.id)
            .collect();
        assert!(!alice.is_empty() && !bob.is_empty(), "{circs:?}");
        assert!(alice.iter().all(|a| !bob.contains(a)), "{circs:?}");
        assert_eq!(
            alice.len(),
            1,
            "alice's two requests shared one circuit: {circs:?}"
        );
        op.stop().await;
        dev.stop().await;
    }

    fn hex(s: &str) -> String {
        s.bytes().map(|b| format!("{b:02x}")).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failover_middle_stopped_mid_download() {
        init_logging();
        // An entry, two middles, an exit: a path survives the loss of one middle.
        let (mut dev, _dir) = dev_network(4).await;
        let http = HttpServer::start().await.unwrap();
        let op = RunningOp::start(&dev.network_json, EngineConfig::default())
            .await
            .unwrap();
        op.ready(READY).await.unwrap();

        let dir = std::env::temp_dir().join(format!("native-op-failover-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("big");
        let url = format!("http://127.0.0.1:{}/bytes/{}", http.addr().port(), 200 * MB);
        let curl = spawn_curl_download(op.socks, url, file.clone());
        // Wait for the transfer to be under way, then stop the middle of its circuit.
        let deadline = Instant::now() + Duration::from_secs(60);
        let middle = loop {
            assert!(Instant::now() < deadline, "the download did not start");
            let size = std::fs::metadata(&file).map_or(0, |m| m.len());
            if size > MB as u64 {
                let circs = op.client.circuits().await.unwrap();
                if let Some(c) = circs.iter().find(|c| c.streams > 0 && c.path.len() == 3) {
                    break c.path[1].nickname.clone();
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        eprintln!("stopping the middle {middle} mid-download");
        assert!(dev.stop_or(&middle).await, "{middle} was running");
        let out = curl.await.unwrap();
        let got = std::fs::metadata(&file).map_or(0, |m| m.len());
        eprintln!(
            "the cut transfer: curl {} after {got} bytes: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        assert!(!out.status.success(), "curl must report the cut transfer");
        assert!(got < 200 * MB as u64);
        let _ = std::fs::remove_dir_all(&dir);

        // The next request goes through a circuit without the stopped relay.
        let url = format!("http://127.0.0.1:{}/bytes/{}", http.addr().port(), MB);
        let t = Instant::now();
        let body = curl_get(op.socks, &url, None).await.unwrap();
        assert!(onion_tests::body::check(&body, MB));
        eprintln!("the next request succeeded in {:.2} s", secs(t));
        let circs = op.client.circuits().await.unwrap();
        assert!(
            circs
                .iter()
                .filter(|c| c.built)
                .all(|c| c.path.iter().all(|h| h.nickname != middle)),
            "no built circuit uses the stopped relay: {circs:?}"
        );
        op.stop().await;
        dev.stop().await;
    }

    /// The `onion-op` binary itself (a separate process): bootstrap progress in its log, then
    /// `curl --socks5-hostname` through it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn binary_onion_op_serves_curl() {
        init_logging();
        let (dev, _dir) = dev_network(3).await;
        let http = HttpServer::start().await.unwrap();
        let entry = dev.description.entries[0].rsa_id.to_string();
        let op = super::native_op_common::OpProcess::start(
            &dev.network_json,
            &["--hops", "3", "--circuits", "1", "--one-or", &entry],
        );
        let url = format!("http://127.0.0.1:{}/bytes/{}", http.addr().port(), 5 * MB);
        // Streams opened during the bootstrap wait for it.
        let t = Instant::now();
        let body = curl_get(op.socks, &url, None).await;
        let log = op.log_text();
        let body = body.unwrap_or_else(|e| panic!("{e}\nonion-op log:\n{log}"));
        assert!(onion_tests::body::check(&body, 5 * MB));
        eprintln!("onion-op binary: 5 MB in {:.2} s", secs(t));
        assert!(log.contains("bootstrap"), "progress is logged:\n{log}");
        assert!(log.contains("ready for streams"), "{log}");
        drop(op);
        dev.stop().await;
    }

    /// The driver's API directly: a 5 MB upload echoed back, both directions at once
    /// (writes wait for the engine's windows: `stream_write` taking less, `StreamWritable`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn driver_stream_echoes_5mb_both_ways() {
        init_logging();
        let (dev, _dir) = dev_network(3).await;
        let op = RunningOp::start(&dev.network_json, EngineConfig::default())
            .await
            .unwrap();
        op.ready(READY).await.unwrap();
        // Echo server: 8-byte length N, then echo N bytes.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut c, _) = l.accept().await.unwrap();
            let n = c.read_u64().await.unwrap();
            let mut left = n;
            let mut buf = vec![0u8; 64 * 1024];
            while left > 0 {
                let want = usize::try_from(left.min(buf.len() as u64)).unwrap();
                let got = c.read(&mut buf[..want]).await.unwrap();
                assert!(got > 0, "early EOF");
                c.write_all(&buf[..got]).await.unwrap();
                left -= got as u64;
            }
            c.shutdown().await.unwrap();
        });
        let len = 5 * MB;
        let data = onion_tests::body::body(len);
        let t = Instant::now();
        let stream = op.client.connect("127.0.0.1", port, None).await.unwrap();
        let (mut rd, mut wr) = tokio::io::split(stream);
        let writer = async {
            wr.write_all(&(len as u64).to_be_bytes()).await.unwrap();
            wr.write_all(&data).await.unwrap();
            wr.flush().await.unwrap();
            wr
        };
        let reader = async {
            let mut back = Vec::with_capacity(len);
            rd.read_to_end(&mut back).await.unwrap();
            back
        };
        let (wr, back) = tokio::join!(writer, reader);
        assert_eq!(back.len(), len);
        assert!(back == data, "the echo differs");
        eprintln!("5 MB up and back through 3 ORs in {:.2} s", secs(t));
        drop(rd.unsplit(wr));
        server.await.unwrap();
        // Resolve through the API.
        let answers = op.client.resolve("localhost", None).await.unwrap();
        assert!(!answers.is_empty());
        op.stop().await;
        dev.stop().await;
    }
}
