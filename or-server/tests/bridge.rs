//! Our OR against a private C tor 0.4.9 network (`tests/tornet`, 3 authorities and 3
//! relays on 127.0.0.1, started once and stopped by a drop guard):
//!
//! 1. as a directory cache: it fetches and verifies the network's microdesc consensus, the
//!    authority certificates and the microdescriptors, and serves them over BEGIN_DIR to a
//!    client made of onion-core pieces (one-hop CREATE_FAST circuit, as C tor's);
//! 2. as a bridge: a C tor client with `UseBridges 1` and `Bridge 127.0.0.1:PORT FP` takes our
//!    descriptor and its whole directory from us, bootstraps, and fetches a file from a local
//!    HTTP server through a 3-hop circuit whose first hop is our OR.

// Integration tests are built with cfg(test): the module makes clippy treat the helpers as test
// code too (unwrap, indexing and panics allowed, clippy.toml).
#[cfg(test)]
mod test {
    use std::collections::HashSet;
    use std::net::{SocketAddr, SocketAddrV4};
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use onion_cell::chancell::ChanCell;
    use onion_cell::relaycell::StreamId;
    use onion_core::certs::{ExpectedIdentity, RsaIdentity};
    use onion_core::channel::{Initiator, InitiatorConfig};
    use onion_core::client::{
        CircuitConfig, ClientCircuit, ClientEvent, HandshakeKind, HopTarget, StreamEndReason,
    };
    use onion_core::dir::{AuthorityCert, Consensus, Microdesc};
    use onion_net::link::{CellStream, initiator_handshake, tls_binding};
    use or_server::config::Config;
    use or_server::router::now_unix;
    use or_server::server::{Server, ServerContext};
    use or_server::tls::{client_config, random_server_name};
    use rand_core::UnwrapErr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const WAIT: Duration = Duration::from_secs(30);

    fn rng() -> UnwrapErr<getrandom::SysRng> {
        UnwrapErr(getrandom::SysRng)
    }

    fn tornet() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/tornet/tornet.py")
    }

    /// The running network; `tornet.py down` on drop (the directory is kept if the test failed).
    struct Network {
        dir: PathBuf,
        json: serde_json::Value,
    }

    impl Network {
        fn up() -> Network {
            let dir = std::env::temp_dir().join(format!("or-server-tornet-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            // The guard exists before `up` runs, so that a failed `up` is cleaned up too.
            let mut net = Network {
                dir,
                json: serde_json::Value::Null,
            };
            let out = Command::new("python3")
                .arg(tornet())
                .args(["up", "--dir"])
                .arg(&net.dir)
                .output()
                .expect("python3 runs");
            assert!(
                out.status.success(),
                "tornet up failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let text = std::fs::read_to_string(net.dir.join("network.json")).unwrap();
            net.json = serde_json::from_str(&text).unwrap();
            net
        }

        fn authorities(&self) -> &Vec<serde_json::Value> {
            self.json["authorities"].as_array().unwrap()
        }

        /// `[directory]` for this network.
        fn directory_toml(&self) -> String {
            let dirports: Vec<String> = self
                .authorities()
                .iter()
                .map(|a| format!("\"127.0.0.1:{}\"", a["dirport"]))
                .collect();
            format!(
                "[directory]\nauthorities = [{}]\nv3idents = [{}]\nretry_secs = 1\n",
                dirports.join(", "),
                self.v3idents()
                    .iter()
                    .map(|i| format!("\"{i}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }

        fn v3idents(&self) -> Vec<RsaIdentity> {
            self.authorities()
                .iter()
                .map(|a| RsaIdentity::from_hex(a["v3ident"].as_str().unwrap()).unwrap())
                .collect()
        }

        /// A bridge client of our OR, with an info-level log; returns its entry of
        /// network.json.
        fn bridge_client(&self, name: &str, or_port: u16, fingerprint: &str) -> serde_json::Value {
            let log = self.dir.join(format!("{name}-info.log"));
            let out = Command::new("python3")
                .arg(tornet())
                .args(["bridge-client", "--dir"])
                .arg(&self.dir)
                .arg("--client-torrc-extra")
                .arg(format!("Log info file {}", log.display()))
                .arg(format!("{name}:127.0.0.1:{or_port}:{fingerprint}"))
                .output()
                .expect("python3 runs");
            assert!(
                out.status.success(),
                "tornet bridge-client failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            serde_json::from_slice(&out.stdout).unwrap()
        }
    }

    impl Drop for Network {
        fn drop(&mut self) {
            let out = Command::new("python3")
                .arg(tornet())
                .args(["down", "--dir"])
                .arg(&self.dir)
                .output();
            if !matches!(&out, Ok(o) if o.status.success()) {
                eprintln!("tornet down failed: {out:?}");
            }
            if std::thread::panicking() {
                eprintln!("tornet logs kept in {}", self.dir.display());
            } else {
                let _ = std::fs::remove_dir_all(&self.dir);
            }
        }
    }

    /// A one-hop CREATE_FAST circuit to our OR, for BEGIN_DIR requests.
    struct DirClient {
        cs: CellStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
        circ: ClientCircuit,
        id: onion_cell::chancell::CircId,
        rng: UnwrapErr<getrandom::SysRng>,
    }

    impl DirClient {
        async fn connect(ctx: &ServerContext) -> DirClient {
            let addr = ctx.or_addr.unwrap();
            let expected = {
                let k = ctx.keys.read().unwrap();
                ExpectedIdentity {
                    rsa: Some(k.rsa_fingerprint()),
                    ed25519: Some(k.ed_identity_public()),
                }
            };
            let mut rng = rng();
            let tcp = onion_net::tcp_connect(addr, WAIT).await.unwrap();
            let tls = tokio_rustls::TlsConnector::from(client_config().unwrap())
                .connect(random_server_name(&mut rng).unwrap(), tcp)
                .await
                .unwrap();
            let binding = tls_binding(&tls).unwrap();
            let config = InitiatorConfig::new(binding, expected, Some(addr.ip()));
            let init = Initiator::new(config, None, now_unix(), &mut rng).unwrap();
            let (io, channel, _) = initiator_handshake(tls, init, now_unix, WAIT)
                .await
                .unwrap();
            let mut cs = CellStream::new(io, channel);
            let id = cs.channel().allocate_circ_id(&mut rng, |_| false).unwrap();
            let target = HopTarget {
                ipv4: match addr {
                    SocketAddr::V4(a) => Some(a),
                    SocketAddr::V6(_) => None,
                },
                ..HopTarget::default()
            };
            let (pending, msg) = ClientCircuit::start(
                &mut rng,
                &target,
                HandshakeKind::CreateFast,
                CircuitConfig::default(),
            )
            .unwrap();
            cs.send(&ChanCell::new(id, msg)).await.unwrap();
            let reply = tokio::time::timeout(WAIT, cs.recv())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            let circ = pending.handle_created(reply.msg).unwrap();
            DirClient { cs, circ, id, rng }
        }

        async fn flush(&mut self) {
            while let Some(cell) = self.circ.poll_outgoing() {
                self.cs
                    .queue(&ChanCell::new(self.id, cell.into_chan_msg()))
                    .unwrap();
            }
            self.cs.flush().await.unwrap();
        }

        async fn events(&mut self) -> Vec<ClientEvent> {
            let cell = tokio::time::timeout(WAIT, self.cs.recv())
                .await
                .expect("timed out waiting for a cell")
                .unwrap()
                .expect("link closed");
            let events = self.circ.handle_cell(&mut self.rng, cell.msg).unwrap();
            self.flush().await;
            events
        }

        /// GET `path` with C tor's Accept-Encoding on a new BEGIN_DIR stream: the status line
        /// and the (inflated) body.
        async fn get(&mut self, path: &str) -> (String, Vec<u8>) {
            let stream: StreamId = self.circ.begin_dir(&mut self.rng).unwrap();
            let request = format!(
                "GET {path} HTTP/1.0\r\nAccept-Encoding: deflate, identity, x-tor-lzma, x-zstd\r\n\r\n"
            );
            self.circ
                .send_data(&mut self.rng, stream, request.as_bytes())
                .unwrap();
            self.flush().await;
            let mut got = Vec::new();
            loop {
                for ev in self.events().await {
                    match ev {
                        ClientEvent::StreamConnected { .. } => {}
                        ClientEvent::StreamData { stream: s, bytes } if s == stream => {
                            got.extend(bytes);
                        }
                        ClientEvent::StreamEnded { stream: s, reason } if s == stream => {
                            assert!(
                                matches!(reason, StreamEndReason::Remote { .. }),
                                "{reason:?}"
                            );
                            let end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                            let head = String::from_utf8(got[..end].to_vec()).unwrap();
                            let body = got[end..].to_vec();
                            let body = if head.contains("\r\nContent-Encoding: deflate\r\n") {
                                or_server::dir::inflate_bounded(&body, 16 << 20).unwrap()
                            } else {
                                body
                            };
                            let status = head.lines().next().unwrap().to_owned();
                            return (status, body);
                        }
                        other => panic!("unexpected {other:?}"),
                    }
                }
            }
        }
    }

    /// Poll `cond` every 100 ms until it holds, at most `limit`.
    async fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
        let start = Instant::now();
        while !cond() {
            assert!(start.elapsed() < limit, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The directory served over BEGIN_DIR is the network's, and verifies.
    async fn directory_cache(net: &Network, ctx: &Arc<ServerContext>) {
        let relays = net.authorities().len() + net.json["relays"].as_array().unwrap().len();
        wait_for("the cached consensus", WAIT, || {
            let s = ctx.dir_cache.snapshot();
            s.consensus(now_unix()).is_some() && s.microdesc_count() == relays
        })
        .await;
        let mut c = DirClient::connect(ctx).await;

        // The certificates, all of them and by identity.
        let (status, keys) = c.get("/tor/keys/all.z").await;
        assert_eq!(status, "HTTP/1.0 200 OK");
        let certs: Vec<AuthorityCert> =
            AuthorityCert::parse_many(std::str::from_utf8(&keys).unwrap())
                .unwrap()
                .into_iter()
                .map(Result::unwrap)
                .collect();
        let ids = net.v3idents();
        assert_eq!(certs.len(), ids.len());
        let (status, one) = c.get(&format!("/tor/keys/fp/{}", ids[1])).await;
        assert_eq!(status, "HTTP/1.0 200 OK");
        assert_eq!(
            AuthorityCert::parse(std::str::from_utf8(&one).unwrap())
                .unwrap()
                .fingerprint(),
            &ids[1]
        );

        // The consensus, as C tor asks for it (authority fingerprint prefixes): it verifies
        // with the network's authorities and the certificates we served.
        let mut prefixes: Vec<String> = ids.iter().map(|i| i.to_string()[..6].to_owned()).collect();
        prefixes.sort();
        let (status, text) = c
            .get(&format!(
                "/tor/status-vote/current/consensus-microdesc/{}.z",
                prefixes.join("+")
            ))
            .await;
        assert_eq!(status, "HTTP/1.0 200 OK");
        let consensus = Consensus::parse(std::str::from_utf8(&text).unwrap()).unwrap();
        let check = consensus.verify(&ids, &certs, now_unix(), 60).unwrap();
        assert_eq!(check.valid, ids.len());
        assert_eq!(consensus.routers().len(), relays);
        // Prefixes of authorities that did not sign it: 404.
        let (status, _) = c
            .get("/tor/status-vote/current/consensus-microdesc/000000+111111+222222.z")
            .await;
        assert!(status.starts_with("HTTP/1.0 404 "), "{status}");

        // Every microdescriptor it lists, in one request, each with the digest asked for.
        let digests: Vec<[u8; 32]> = consensus
            .routers()
            .iter()
            .map(|r| *r.microdesc_digest().unwrap())
            .collect();
        let names: Vec<String> = digests
            .iter()
            .map(|d| onion_core::dir::encode::b64_unpadded(d))
            .collect();
        let (status, mds) = c.get(&format!("/tor/micro/d/{}.z", names.join("-"))).await;
        assert_eq!(status, "HTTP/1.0 200 OK");
        let got: HashSet<[u8; 32]> = Microdesc::parse_many(std::str::from_utf8(&mds).unwrap())
            .unwrap()
            .into_iter()
            .map(|m| *m.unwrap().digest())
            .collect();
        assert_eq!(got, digests.iter().copied().collect::<HashSet<_>>());
    }

    /// A local HTTP server answering every request with `body`.
    async fn http_server(body: Arc<Vec<u8>>) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let body = Arc::clone(&body);
                tokio::spawn(async move {
                    let mut req = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => req.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = format!(
                        "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\r\n",
                        body.len()
                    );
                    let _ = s.write_all(head.as_bytes()).await;
                    let _ = s.write_all(&body).await;
                    let _ = s.shutdown().await;
                });
            }
        });
        addr
    }

    fn tail(path: &Path) -> String {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// A C tor client bootstraps with our OR as its bridge and fetches a file through it.
    async fn bridge(net: &Network, ctx: &Arc<ServerContext>) {
        let or_port = ctx.or_addr.unwrap().port();
        let fp = ctx.keys.read().unwrap().rsa_fingerprint().to_string();
        let client = net.bridge_client("bridge0", or_port, &fp);
        let notice = PathBuf::from(client["log"].as_str().unwrap());
        let info = net.dir.join("bridge0-info.log");
        let socks = client["socks_port"].as_u64().unwrap();
        wait_for(
            "the bridge client's Bootstrapped 100%",
            Duration::from_secs(60),
            || {
                std::fs::read_to_string(&notice)
                    .unwrap_or_default()
                    .contains("Bootstrapped 100%")
            },
        )
        .await;
        let log = std::fs::read_to_string(&info).unwrap();
        // It took our descriptor as its bridge's, and its directory from us.
        assert!(
            log.contains(&format!(
                "new bridge descriptor 'OurBridge' (fresh): ${fp}~OurBridge"
            )),
            "{}",
            tail(&info)
        );
        let from_us = format!("from server 127.0.0.1:{or_port}");
        for what in [
            "Received consensus directory",
            "Received authority certificates",
            "Received answer to microdescriptor request (status 200",
        ] {
            assert!(
                log.lines()
                    .any(|l| l.contains(what) && l.contains(&from_us)),
                "{what}: {}",
                tail(&info)
            );
        }

        // 10 MB: many stream and circuit windows, so SENDMEs cross our OR both ways.
        let body: Arc<Vec<u8>> =
            Arc::new((0..10_000_000u32).map(|i| (i * 7 % 251) as u8).collect());
        let server = http_server(Arc::clone(&body)).await;
        let url = format!("http://127.0.0.1:{}/file", server.port());
        let out = tokio::task::spawn_blocking(move || {
            Command::new("curl")
                .args(["-sS", "--max-time", "120", "--socks5-hostname"])
                .arg(format!("127.0.0.1:{socks}"))
                .arg(url)
                .output()
                .expect("curl runs")
        })
        .await
        .unwrap();
        assert!(
            out.status.success(),
            "curl: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            tail(&info)
        );
        assert!(
            out.stdout == *body,
            "the file differs ({} bytes)",
            out.stdout.len()
        );
        // Through our OR: circuits were made and extended from it.
        assert!(
            ctx.router.relay_link_count() >= 1,
            "no link from our OR to a relay"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn directory_cache_and_bridge_with_c_tor() {
        let net = tokio::task::spawn_blocking(Network::up).await.unwrap();
        let data = net.dir.join("our-or");
        let text = format!(
            "nickname = \"OurBridge\"\ndata_dir = {:?}\naddress = \"127.0.0.1\"\nbridge = true\n\
             extend_allow_private = true\nlog_level = \"warn\"\n[listeners]\nor_port = \"127.0.0.1:0\"\n{}",
            data.to_str().unwrap(),
            net.directory_toml()
        );
        let config = Config::from_toml_str(&text).unwrap();
        let (trigger, shutdown) = or_server::shutdown::channel();
        let server = Server::start(config, shutdown).await.unwrap();
        let ctx = Arc::clone(server.context());
        let running = tokio::spawn(server.run());
        let SocketAddr::V4(or) = ctx.or_addr.unwrap() else {
            panic!("IPv4 ORPort")
        };
        assert_eq!(*or.ip(), *SocketAddrV4::new([127, 0, 0, 1].into(), 0).ip());

        directory_cache(&net, &ctx).await;
        bridge(&net, &ctx).await;

        trigger.trigger();
        tokio::time::timeout(WAIT, running)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        drop(net);
    }
}
