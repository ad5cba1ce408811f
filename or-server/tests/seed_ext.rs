//! The seed's WebSocket extension on our OR, end to end on 127.0.0.1: RELAY_ASSOCIATE,
//! WS_OP_SOCKS with `curl --socks5-hostname` served by an associated test OP through its own
//! 3-hop circuit, RELAY_INFO refused or checked against the core's TAP, duplicate ASSOCIATE.

// Integration tests are built with cfg(test): the module makes clippy treat the helpers as test
// code too (unwrap, indexing and panics allowed, clippy.toml).
#[cfg(test)]
mod test {
    use std::collections::HashMap;
    use std::collections::hash_map::Entry;
    use std::net::SocketAddr;
    use std::sync::{Arc, PoisonError};
    use std::time::Duration;

    use onion_cell::chancell::DestroyReason;
    use onion_cell::relaycell::{InfoKind, InfoRequest, InfoResponse, OpWsAddr, StreamId};
    use onion_core::client::{HandshakeKind, HopTarget};
    use onion_core::crypto::dh::SharedSecret;
    use onion_core::handshake::tap;
    use onion_op::associate::{SeedCircuit, SeedEvent};
    use onion_op::{CircuitClosed, Link, LinkConfig};
    use onion_tests::http::HttpServer;
    use onion_tests::or::{OrNode, OrSpec, TempDir};
    use or_server::config::Config;
    use or_server::server::{BoundAddrs, Server, ServerContext};
    use or_server::shutdown::ShutdownTrigger;
    use rsa::traits::PublicKeyParts;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    const WAIT: Duration = Duration::from_secs(30);

    fn rng() -> rand_core::UnwrapErr<getrandom::SysRng> {
        rand_core::UnwrapErr(getrandom::SysRng)
    }

    /// Our OR with a `ws` listener and the seed's modes: WS_OP_SOCKS on 127.0.0.1, RELAY_INFO
    /// as asked.
    struct SeedOr {
        ctx: Arc<ServerContext>,
        addrs: BoundAddrs,
        target: HopTarget,
        trigger: ShutdownTrigger,
        _dir: TempDir,
    }

    impl SeedOr {
        async fn start(relay_info: bool) -> SeedOr {
            let dir = TempDir::new("seed-or").unwrap();
            let text = format!(
                "nickname = \"SeedOr\"\ndata_dir = {:?}\naddress = \"127.0.0.1\"\nlog_level = \"warn\"\n\
                 extend_allow_private = true\n[listeners]\nws = \"127.0.0.1:0\"\n\
                 or_port = \"127.0.0.1:0\"\n[seed]\nrelay_info = {relay_info}\n\
                 ws_op_socks = \"127.0.0.1:0\"\n",
                dir.path().join("data").display().to_string()
            );
            let config = Config::from_toml_str(&text).unwrap();
            let (trigger, shutdown) = or_server::shutdown::channel();
            let server = Server::start(config, shutdown).await.unwrap();
            let addrs = server.local_addrs();
            let ctx = Arc::clone(server.context());
            let target = {
                let keys = ctx.keys.read().unwrap_or_else(PoisonError::into_inner);
                HopTarget {
                    ipv4: match addrs.or_port {
                        Some(SocketAddr::V4(a)) => Some(a),
                        _ => None,
                    },
                    ipv6: None,
                    rsa_id: Some(*keys.rsa_fingerprint().as_bytes()),
                    ed_id: Some(*keys.ed_identity_public().as_bytes()),
                    ntor_onion_key: Some(*keys.onion_keys().ntor_public()),
                    tap_onion_key: Some(keys.onion_keys().tap().to_public_key()),
                    supports_ntor_v3: true,
                }
            };
            tokio::spawn(async move {
                let _ = server.run().await;
            });
            SeedOr {
                ctx,
                addrs,
                target,
                trigger,
                _dir: dir,
            }
        }

        async fn link(&self) -> Link {
            let url = format!("ws://{}/", self.addrs.ws.unwrap());
            Link::connect_ws(&url, &self.target, LinkConfig::default())
                .await
                .unwrap()
        }

        fn socks(&self) -> SocketAddr {
            self.addrs.ws_op_socks.unwrap()
        }

        /// Wait until `domain` is (or is not) associated.
        async fn wait_associated(&self, domain: &str, yes: bool) {
            let deadline = tokio::time::Instant::now() + WAIT;
            while self.ctx.seed.lookup(domain).is_some() != yes {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{domain} associated: {} (wanted {yes})",
                    !yes
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    impl Drop for SeedOr {
        fn drop(&mut self) {
            self.trigger.trigger();
        }
    }

    /// A raw SOCKS5 CONNECT (no authentication) to `host:port`; the reply code.
    async fn socks_connect(proxy: SocketAddr, host: &str, port: u16) -> u8 {
        let mut s = TcpStream::connect(proxy).await.unwrap();
        s.write_all(&[5, 1, 0]).await.unwrap();
        let mut m = [0u8; 2];
        s.read_exact(&mut m).await.unwrap();
        assert_eq!(m, [5, 0]);
        let mut req = vec![5, 1, 0, 3, u8::try_from(host.len()).unwrap()];
        req.extend_from_slice(host.as_bytes());
        req.extend_from_slice(&port.to_be_bytes());
        s.write_all(&req).await.unwrap();
        let mut rep = [0u8; 10];
        s.read_exact(&mut rep).await.unwrap();
        assert_eq!(rep[0], 5);
        rep[1]
    }

    /// The test page OP: serves every RELAY_WS request of `cid` by opening a stream to `site`
    /// through `circ` (its own 3-hop circuit), writing the browser's bytes to it and answering
    /// what comes back; ends the request when the site closes.
    fn serve_page_op(
        cid: SeedCircuit,
        mut events: tokio::sync::mpsc::Receiver<SeedEvent>,
        circ: onion_op::Circuit,
        site: SocketAddr,
    ) -> tokio::task::JoinHandle<usize> {
        tokio::spawn(async move {
            let mut writers: HashMap<String, tokio::io::WriteHalf<onion_op::DataStream>> =
                HashMap::new();
            let mut served = 0;
            while let Some(ev) = events.recv().await {
                let SeedEvent::Request { stream, addr, data } = ev else {
                    continue;
                };
                if data.is_empty() {
                    // The browser is done sending.
                    if let Some(mut w) = writers.remove(&addr.request_id) {
                        let _ = w.shutdown().await;
                    }
                    continue;
                }
                let w = match writers.entry(addr.request_id.clone()) {
                    Entry::Occupied(o) => o.into_mut(),
                    Entry::Vacant(v) => {
                        served += 1;
                        // The fake domain stands for `site`.
                        let ds = circ
                            .begin(&site.ip().to_string(), site.port())
                            .await
                            .unwrap();
                        let (mut rd, wr) = tokio::io::split(ds);
                        let cid = cid.clone();
                        let back = OpWsAddr {
                            remote_address: addr.remote_address.clone(),
                            remote_port: addr.remote_port,
                        };
                        tokio::spawn(async move {
                            let mut buf = vec![0u8; 32 * 1024];
                            loop {
                                let n = rd.read(&mut buf).await.unwrap_or(0);
                                if cid.respond(stream, &back, &buf[..n]).await.is_err() || n == 0 {
                                    break;
                                }
                            }
                        });
                        v.insert(wr)
                    }
                };
                let _ = w.write_all(&data).await;
            }
            served
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn curl_through_ws_op_socks_reaches_the_associated_page_op() {
        let seed = SeedOr::start(false).await;
        let middle = OrNode::start(OrSpec::new("SeedMid")).await.unwrap();
        let exit = OrNode::start(OrSpec::new("SeedExit").exit()).await.unwrap();
        let site = HttpServer::start().await.unwrap();

        // No association yet: "host unreachable".
        assert_eq!(
            socks_connect(seed.socks(), "www.page1.fake.test", 80).await,
            4
        );
        assert_eq!(socks_connect(seed.socks(), "127.0.0.1", 80).await, 4);

        // The page OP: one link to its OR, CID associated to the fake domain, and its own 3-hop
        // circuit (same link) through which it fetches what the browser asks for.
        let link = seed.link().await;
        let (cid, events) =
            SeedCircuit::associate(&link, &seed.target, HandshakeKind::Ntor, "Page1.Fake.Test")
                .await
                .unwrap();
        let circ = link
            .create_circuit(&seed.target, HandshakeKind::Ntor)
            .await
            .unwrap();
        circ.extend(&middle.target, HandshakeKind::NtorV3)
            .await
            .unwrap();
        circ.extend(&exit.target, HandshakeKind::NtorV3)
            .await
            .unwrap();
        seed.wait_associated("page1.fake.test", true).await;
        let op = serve_page_op(cid.clone(), events, circ.clone(), site.addr());

        // The browser: curl with the OR's SOCKS port, twice (two requests on CID).
        let proxy = seed.socks();
        let dir = TempDir::new("seed-curl").unwrap();
        for (i, len) in [(1, 3000usize), (2, 1_500_000)] {
            let out = dir.path().join(format!("body{i}"));
            let url = format!("http://www.page1.fake.test/bytes/{len}");
            let out2 = out.clone();
            let status = tokio::task::spawn_blocking(move || {
                std::process::Command::new("curl")
                    .args(["-sS", "--max-time", "60", "--socks5-hostname"])
                    .arg(proxy.to_string())
                    .arg("-o")
                    .arg(&out2)
                    .arg(&url)
                    .status()
            })
            .await
            .unwrap()
            .expect("curl runs");
            assert!(status.success(), "curl failed: {status}");
            let got = std::fs::read(&out).unwrap();
            assert_eq!(got.len(), len);
            assert!(onion_tests::body::check(&got, len), "body {i} differs");
        }

        // Still no association for other names.
        assert_eq!(socks_connect(proxy, "other.fake.test", 80).await, 4);
        assert_eq!(socks_connect(proxy, "fake.test", 80).await, 4);

        // The binding ends with CID.
        cid.close().await;
        seed.wait_associated("page1.fake.test", false).await;
        assert_eq!(socks_connect(proxy, "www.page1.fake.test", 80).await, 4);
        circ.close().await;
        assert_eq!(op.await.unwrap(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn duplicate_and_invalid_associate_are_answered_with_associate() {
        let seed = SeedOr::start(false).await;
        let link1 = seed.link().await;
        let link2 = seed.link().await;
        let (cid1, mut ev1) =
            SeedCircuit::associate(&link1, &seed.target, HandshakeKind::Ntor, "dup.fake.test")
                .await
                .unwrap();
        seed.wait_associated("dup.fake.test", true).await;
        // The same domain from another page (another link), in another spelling: refused.
        let (_cid2, mut ev2) =
            SeedCircuit::associate(&link2, &seed.target, HandshakeKind::Ntor, "DUP.fake.test.")
                .await
                .unwrap();
        let got = tokio::time::timeout(WAIT, ev2.recv()).await.unwrap();
        assert_eq!(
            got,
            Some(SeedEvent::AssociateRefused("DUP.fake.test.".into()))
        );
        // An invalid domain: refused.
        let (_cid3, mut ev3) =
            SeedCircuit::associate(&link2, &seed.target, HandshakeKind::Ntor, "not a domain")
                .await
                .unwrap();
        let got = tokio::time::timeout(WAIT, ev3.recv()).await.unwrap();
        assert_eq!(
            got,
            Some(SeedEvent::AssociateRefused("not a domain".into()))
        );
        // The first holder heard nothing and still holds it.
        assert!(ev1.try_recv().is_err());
        assert_eq!(seed.ctx.seed.len(), 1);
        // Once the holder's circuit is gone, the domain is free again.
        cid1.close().await;
        seed.wait_associated("dup.fake.test", false).await;
        let (_cid4, mut ev4) =
            SeedCircuit::associate(&link2, &seed.target, HandshakeKind::Ntor, "dup.fake.test")
                .await
                .unwrap();
        seed.wait_associated("dup.fake.test", true).await;
        assert!(ev4.try_recv().is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn relay_info_is_refused_when_disabled() {
        let seed = SeedOr::start(false).await;
        let link = seed.link().await;
        let (cid, _ev) =
            SeedCircuit::associate(&link, &seed.target, HandshakeKind::Ntor, "info.fake.test")
                .await
                .unwrap();
        let modulus = seed
            .target
            .tap_onion_key
            .as_ref()
            .unwrap()
            .n()
            .to_be_bytes()
            .to_vec();
        cid.info(
            StreamId(1),
            &InfoRequest::OnionSkin {
                id: [7; 16],
                modulus,
            },
        )
        .await
        .unwrap();
        let why = tokio::time::timeout(WAIT, cid.closed()).await.unwrap();
        assert_eq!(why, CircuitClosed::Destroyed(DestroyReason::PROTOCOL));
        // The association went with the circuit.
        seed.wait_associated("info.fake.test", false).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn relay_info_answers_match_the_tap_handshake() {
        let seed = SeedOr::start(true).await;
        let link = seed.link().await;
        let (cid, mut ev) =
            SeedCircuit::associate(&link, &seed.target, HandshakeKind::Ntor, "tap.fake.test")
                .await
                .unwrap();
        // Ask for an onion skin for this very OR's TAP key, so that the test can play the relay.
        let onion_key = seed.target.tap_onion_key.clone().unwrap();
        let id = [0x5a; 16];
        cid.info(
            StreamId(3),
            &InfoRequest::OnionSkin {
                id,
                modulus: onion_key.n().to_be_bytes().to_vec(),
            },
        )
        .await
        .unwrap();
        let Some(SeedEvent::Info { stream, msg }) =
            tokio::time::timeout(WAIT, ev.recv()).await.unwrap()
        else {
            panic!("no RELAY_INFO answer");
        };
        assert_eq!(stream, StreamId(3));
        let InfoResponse::OnionSkin {
            id: got_id,
            x,
            onion,
        } = msg.decode_response(InfoKind::OnionSkin).unwrap()
        else {
            panic!("wrong kind");
        };
        assert_eq!(got_id, id);
        assert_eq!(x.len(), 128);
        assert_eq!(onion.len(), tap::TAP_C_HANDSHAKE_LEN);
        // The relay side of TAP (the core's) accepts the skin...
        let (relay_keys, reply) = {
            let keys = seed.ctx.keys.read().unwrap_or_else(PoisonError::into_inner);
            tap::server(&mut rng(), &[keys.onion_keys().tap()], &onion).unwrap()
        };
        // ... and with Y from its reply, the OR's g^xy gives the relay's keys.
        cid.info(
            StreamId(3),
            &InfoRequest::DhSecret {
                id,
                y: reply[..128].to_vec(),
            },
        )
        .await
        .unwrap();
        let Some(SeedEvent::Info { msg, .. }) =
            tokio::time::timeout(WAIT, ev.recv()).await.unwrap()
        else {
            panic!("no RELAY_INFO answer");
        };
        let InfoResponse::DhSecret { id: got_id, secret } =
            msg.decode_response(InfoKind::DhSecret).unwrap()
        else {
            panic!("wrong kind");
        };
        assert_eq!(got_id, id);
        let secret = SharedSecret::from_bytes(&secret.try_into().unwrap());
        let client_keys = tap::client2_from_secret(&secret, &reply).unwrap();
        assert!(
            client_keys == relay_keys,
            "RELAY_INFO's g^xy does not give the hop's keys"
        );
        // A type 2 for an ID with no state (it was used once): refused, the circuit goes.
        cid.info(
            StreamId(3),
            &InfoRequest::DhSecret {
                id,
                y: reply[..128].to_vec(),
            },
        )
        .await
        .unwrap();
        let why = tokio::time::timeout(WAIT, cid.closed()).await.unwrap();
        assert_eq!(why, CircuitClosed::Destroyed(DestroyReason::PROTOCOL));
    }

    /// The seed's commands on a circuit that is extended (not CID) are never passed on: the OR
    /// closes the circuit. Driven with the core's client over a raw WebSocket link.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn seed_commands_on_an_extended_circuit_close_it() {
        use onion_cell::chancell::{ChanCell, ChanMsg};
        use onion_cell::relaycell::{Associate, WsStream};
        use onion_core::certs::ExpectedIdentity;
        use onion_core::channel::{Initiator, InitiatorConfig, TlsBinding};
        use onion_core::client::{CircuitConfig, ClientCircuit, ClientEvent, CloseReason};
        use onion_net::link::{CellStream, initiator_handshake};

        let seed = SeedOr::start(false).await;
        let middle = OrNode::start(OrSpec::new("SeedMid2")).await.unwrap();
        let expected = {
            let ks = seed.ctx.keys.read().unwrap_or_else(PoisonError::into_inner);
            ExpectedIdentity {
                rsa: Some(ks.rsa_fingerprint()),
                ed25519: Some(ks.ed_identity_public()),
            }
        };
        let url = format!("ws://{}/", seed.addrs.ws.unwrap());
        let ws = onion_net::ws::ws_connect(&url, None).await.unwrap();
        let now = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
        };
        let init = Initiator::new(
            InitiatorConfig::new(TlsBinding::None, expected, None),
            None,
            now(),
            &mut rng(),
        )
        .unwrap();
        let (io, ch, _) = initiator_handshake(ws, init, now, WAIT).await.unwrap();
        let mut cs = CellStream::new(io, ch);
        let mut r = rng();
        let config = CircuitConfig {
            hop1_is_ours: true,
            ..CircuitConfig::default()
        };

        let bad_ws = WsStream::from_op(
            &OpWsAddr {
                remote_address: "x".into(),
                remote_port: 80,
            },
            b"hello".to_vec(),
        )
        .unwrap();
        let assoc = Associate::new("ext.fake.test".into()).unwrap();
        for (i, ws_cell) in [(0u32, false), (1, true)] {
            // A two-hop circuit: our seed OR, then the middle.
            let id = cs.channel().allocate_circ_id(&mut r, |_| false).unwrap();
            let (pending, create) =
                ClientCircuit::start(&mut r, &seed.target, HandshakeKind::Ntor, config.clone())
                    .unwrap();
            cs.send(&ChanCell::new(id, create)).await.unwrap();
            let reply = tokio::time::timeout(WAIT, cs.recv())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            let mut c = pending.handle_created(reply.msg).unwrap();
            c.extend(&mut r, &middle.target, HandshakeKind::Ntor)
                .unwrap();
            let flush = |c: &mut ClientCircuit, cs: &mut CellStream<_>| {
                while let Some(cell) = c.poll_outgoing() {
                    cs.queue(&ChanCell::new(id, cell.into_chan_msg())).unwrap();
                }
            };
            flush(&mut c, &mut cs);
            cs.flush().await.unwrap();
            let cell = tokio::time::timeout(WAIT, cs.recv())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            let ev = c.handle_cell(&mut r, cell.msg).unwrap();
            assert!(
                matches!(ev.first(), Some(ClientEvent::HopAdded { .. })),
                "{ev:?}"
            );
            // Hop 1's seed command, on the extended circuit.
            if ws_cell {
                let cell = c.seed_ws_cell(StreamId(9), bad_ws.clone().into()).unwrap();
                assert!(matches!(cell, ChanMsg::RelayWs(_)));
                cs.send(&ChanCell::new(id, cell)).await.unwrap();
            } else {
                c.send_seed(&mut r, StreamId::ZERO, assoc.clone().into())
                    .unwrap();
                flush(&mut c, &mut cs);
                cs.flush().await.unwrap();
            }
            let cell = tokio::time::timeout(WAIT, cs.recv())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            assert_eq!(cell.circ_id, id, "case {i}");
            let ev = c.handle_cell(&mut r, cell.msg).unwrap();
            assert!(
                ev.contains(&ClientEvent::CircuitClosed {
                    reason: CloseReason::Destroyed(DestroyReason::PROTOCOL)
                }),
                "case {i}: {ev:?}"
            );
        }
        assert!(seed.ctx.seed.lookup("ext.fake.test").is_none());

        // CID, once associated, may not be extended: EXTEND2 closes it.
        let id = cs.channel().allocate_circ_id(&mut r, |_| false).unwrap();
        let (pending, create) =
            ClientCircuit::start(&mut r, &seed.target, HandshakeKind::Ntor, config.clone())
                .unwrap();
        cs.send(&ChanCell::new(id, create)).await.unwrap();
        let reply = tokio::time::timeout(WAIT, cs.recv())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let mut c = pending.handle_created(reply.msg).unwrap();
        c.send_seed(&mut r, StreamId::ZERO, assoc.into()).unwrap();
        c.extend(&mut r, &middle.target, HandshakeKind::Ntor)
            .unwrap();
        while let Some(cell) = c.poll_outgoing() {
            cs.queue(&ChanCell::new(id, cell.into_chan_msg())).unwrap();
        }
        cs.flush().await.unwrap();
        let cell = tokio::time::timeout(WAIT, cs.recv())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(cell.circ_id, id);
        let ev = c.handle_cell(&mut r, cell.msg).unwrap();
        assert!(
            ev.contains(&ClientEvent::CircuitClosed {
                reason: CloseReason::Destroyed(DestroyReason::PROTOCOL)
            }),
            "{ev:?}"
        );
        assert!(seed.ctx.seed.lookup("ext.fake.test").is_none());
    }

    /// curl against WS_OP_SOCKS until the OR knows `host` (SOCKS reply 0), then the bytes.
    fn curl(proxy: SocketAddr, url: &str, out: &std::path::Path) -> std::process::ExitStatus {
        std::process::Command::new("curl")
            .args(["-sS", "--max-time", "60", "--socks5-hostname"])
            .arg(proxy.to_string())
            .arg("-o")
            .arg(out)
            .arg(url)
            .status()
            .expect("curl runs")
    }

    /// The same through the ENGINE: the dev network (authority, 3 ORs, the entry with
    /// WS_OP_SOCKS), an OP driven by `onion_op::driver` (what `onion-op --associate` runs)
    /// associated to a fake domain; curl's requests are served through the engine's own
    /// 3-hop circuits, the fake domain standing for the origin given to `associate`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn curl_through_ws_op_socks_reaches_the_engine_driven_op() {
        use onion_core::engine::{EngineConfig, Event};
        use onion_op::driver::OpClient;
        use or_server::dev::{DevNetwork, DevOptions, find_root};

        let dir = TempDir::new("seed-dev").unwrap();
        let mut opts = DevOptions::new(find_root(std::path::Path::new(env!("CARGO_MANIFEST_DIR"))));
        opts.http = SocketAddr::from(([127, 0, 0, 1], 0));
        opts.check_interval_secs = 1;
        opts.data_dir = Some(dir.path().join("data"));
        opts.ws_op_socks = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        let dev = DevNetwork::start(opts).await.unwrap();
        let proxy = dev.ws_op_socks.expect("WS_OP_SOCKS bound");
        let site = HttpServer::start().await.unwrap();
        assert_eq!(socks_connect(proxy, "page3.fake.test", 80).await, 4);

        let op = OpClient::start(dev.description.clone(), EngineConfig::default()).unwrap();
        let mut events = op.subscribe();
        op.wait_ready().await.unwrap();
        let origin = site.addr();
        let cid = op
            .associate("Page3.Fake.Test", Some(("127.0.0.1", origin.port())))
            .await
            .unwrap();
        // Associated: the OR relays the domain's requests (SOCKS reply 0 once it knows it).
        let deadline = tokio::time::Instant::now() + WAIT;
        while socks_connect(proxy, "page3.fake.test", 80).await != 0 {
            assert!(tokio::time::Instant::now() < deadline, "never associated");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let circuits = op.circuits().await.unwrap();
        let c = circuits.iter().find(|c| c.id == cid).unwrap();
        assert_eq!(c.path.len(), 1, "CID is one hop");

        let out_dir = TempDir::new("seed-dev-curl").unwrap();
        for (i, len) in [(1, 5000usize), (2, 2_000_000)] {
            let out = out_dir.path().join(format!("body{i}"));
            let url = format!("http://page3.fake.test/bytes/{len}");
            let out2 = out.clone();
            let status = tokio::task::spawn_blocking(move || curl(proxy, &url, &out2))
                .await
                .unwrap();
            assert!(status.success(), "curl failed: {status}");
            let got = std::fs::read(&out).unwrap();
            assert_eq!(got.len(), len);
            assert!(onion_tests::body::check(&got, len), "body {i} differs");
        }
        // Served through the engine's exit circuits of 3 hops, isolated from the page.
        let circuits = op.circuits().await.unwrap();
        let served: Vec<_> = circuits
            .iter()
            .filter(|c| c.isolation.as_deref() == Some("associate:page3.fake.test"))
            .collect();
        assert!(!served.is_empty(), "{circuits:?}");
        assert!(served.iter().all(|c| c.path.len() == 3));
        // The engine reported the requests (the SOCKS probes and the two curls).
        let mut done = Vec::new();
        let deadline = tokio::time::Instant::now() + WAIT;
        while done.iter().filter(|(_, out, _)| *out > 0).count() < 2 {
            let ev = tokio::time::timeout_at(deadline, events.recv())
                .await
                .expect("request events")
                .unwrap();
            if let Event::SeedRequestDone {
                target,
                bytes_out,
                error,
                ..
            } = ev
            {
                done.push((target, bytes_out, error));
            }
        }
        for (target, bytes_out, _) in done.iter().filter(|d| d.1 > 0) {
            assert_eq!(target, &format!("127.0.0.1:{}", origin.port()));
            assert!(*bytes_out > 5000);
        }

        op.shutdown().await;
        // The association ends with CID.
        let deadline = tokio::time::Instant::now() + WAIT;
        while socks_connect(proxy, "page3.fake.test", 80).await != 4 {
            assert!(tokio::time::Instant::now() < deadline, "still associated");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        dev.stop().await;
    }
}
