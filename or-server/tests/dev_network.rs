//! `or-server dev` end to end: the built binary starts the network; a client that knows only
//! `/network.json` fetches the signed relay list over BEGIN_DIR from the authority's OR,
//! verifies it, chooses a 3-hop path with `onion_core::path`, enters over the WebSocket
//! entry and fetches the demo site's page and its 5 MiB file through the circuit.

// Integration tests are built with cfg(test): the module makes clippy treat the helpers as test
// code too (unwrap, indexing and panics allowed, clippy.toml).
#[cfg(test)]
mod test {

    use std::io::{BufRead, BufReader};
    use std::net::SocketAddr;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use hyper::{Method, StatusCode};
    use onion_core::dir::RelayFlags;
    use onion_core::netdesc::{Directory, ListedRelay, NetworkDescription, RELAY_LIST_PATH};
    use onion_core::path::{
        BandwidthWeights, FirstHop, PathConfig, RelayInfo, RelaySet, select_path,
    };
    use onion_op::{HandshakeKind, Link, LinkConfig};
    use or_server::web::{DEMO_FILE_LEN, DEMO_FILE_PATH, demo_file_bytes, http_request};

    const T: Duration = Duration::from_secs(60);

    /// The dev process, killed when dropped.
    struct Dev(Child);

    impl Drop for Dev {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    /// A relay of the list as path selection sees it (every listed relay is valid).
    fn relay_info(r: &ListedRelay) -> RelayInfo {
        let ipv4 = match r.tls {
            Some(SocketAddr::V4(a)) => Some(a),
            _ => None,
        };
        RelayInfo {
            ed_id: Some(r.ed25519_id),
            ipv4,
            flags: r.flags.union(RelayFlags::VALID),
            bandwidth: r.bandwidth,
            ntor_onion_key: Some(r.ntor_key),
            tap_onion_key: r.tap_key.clone(),
            ipv4_policy: r.exit_policy.clone(),
            ..RelayInfo::new(r.nickname.clone(), r.rsa_id)
        }
    }

    async fn get(addr: SocketAddr, path: &str) -> (StatusCode, Vec<u8>) {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (s, b) = http_request(tcp, Method::GET, &addr.to_string(), path, None, 1 << 20, T)
            .await
            .unwrap();
        (s, b.to_vec())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dev_network_serves_a_three_hop_client() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("network.json");
        let child = Command::new(env!("CARGO_BIN_EXE_or-server"))
            .args([
                "dev",
                "--relays",
                "3",
                "--http",
                "127.0.0.1:0",
                "--network-out",
            ])
            .arg(&out)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut dev = Dev(child);
        let stdout = dev.0.stdout.take().unwrap();
        // Read the printed addresses (blocking reads, on a blocking thread).
        let lines = tokio::task::spawn_blocking(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let line = line.unwrap();
                let done = line.starts_with("open ");
                lines.push(line);
                if done {
                    break;
                }
            }
            lines
        });
        let lines = tokio::time::timeout(Duration::from_secs(300), lines)
            .await
            .expect("or-server dev did not come up")
            .unwrap();
        let url = lines
            .iter()
            .find_map(|l| l.strip_prefix("open "))
            .unwrap_or_else(|| panic!("no URL printed: {lines:?}"));
        let http: SocketAddr = url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .unwrap();
        let demo: SocketAddr = lines
            .iter()
            .find_map(|l| l.trim().strip_prefix("demo site:"))
            .map(|s| {
                s.split_whitespace()
                    .next()
                    .unwrap()
                    .trim_start_matches("http://")
                    .trim_end_matches('/')
                    .parse()
                    .unwrap()
            })
            .unwrap();

        // The description, as served and as written.
        let (status, body) = get(http, "/network.json").await;
        assert_eq!(status, StatusCode::OK);
        let json = String::from_utf8(body).unwrap();
        assert_eq!(json, std::fs::read_to_string(&out).unwrap());
        let desc = NetworkDescription::parse(&json).unwrap();
        let Directory::Own(auth) = &desc.directory else {
            panic!("not an own network")
        };
        let auth_or = auth.or.clone().expect("the authority's OR");
        let entry = desc.entries.first().unwrap().clone();
        assert!(entry.ws.is_some(), "the entry has a WebSocket URL");

        // The signed list, over BEGIN_DIR on a one-hop circuit to the authority's OR.
        let target = auth_or.hop_target();
        let link = Link::connect_tls(auth_or.tls.unwrap(), &target, LinkConfig::default())
            .await
            .unwrap();
        let circ = link
            .create_circuit(&target, HandshakeKind::Ntor)
            .await
            .unwrap();
        let stream = circ.begin_dir().await.unwrap();
        let (status, body) = http_request(
            stream,
            Method::GET,
            "authority",
            RELAY_LIST_PATH,
            None,
            4 << 20,
            T,
        )
        .await
        .unwrap();
        assert_eq!(status, StatusCode::OK);
        let list = desc
            .verify_relay_list(std::str::from_utf8(&body).unwrap(), now(), 60)
            .unwrap();
        circ.close().await;
        link.close().await;
        assert_eq!(list.relays.len(), 3, "{list:?}");

        // The same over the authority's WebSocket listener (what a page can use).
        let ws = auth_or
            .ws
            .as_ref()
            .expect("the authority's ws URL")
            .to_string();
        let link = Link::connect_ws(&ws, &target, LinkConfig::default())
            .await
            .unwrap();
        let circ = link
            .create_circuit(&target, HandshakeKind::Ntor)
            .await
            .unwrap();
        let stream = circ.begin_dir().await.unwrap();
        let (status, body) = http_request(
            stream,
            Method::GET,
            "authority",
            RELAY_LIST_PATH,
            None,
            4 << 20,
            T,
        )
        .await
        .unwrap();
        assert_eq!(status, StatusCode::OK);
        let again = desc
            .verify_relay_list(std::str::from_utf8(&body).unwrap(), now(), 60)
            .unwrap();
        assert_eq!(again.relays.len(), 3);
        circ.close().await;
        link.close().await;

        // A path: the WebSocket entry first, an exit that accepts the demo site's port.
        let set = RelaySet::new(
            list.relays.iter().map(relay_info).collect(),
            BandwidthWeights::plain(),
        );
        let config = PathConfig {
            first_hop: FirstHop::GuardId(entry.rsa_id),
            enforce_distinct_subnets: false,
            ..PathConfig::to_port(demo.port())
        };
        let path = select_path(&mut or_server::server::os_rng(), &set, &config).unwrap();
        assert_eq!(path.len(), 3);
        assert_eq!(path[0].rsa_id, entry.rsa_id);
        assert!(path[2].has(RelayFlags::EXIT));

        let ws = entry.ws.as_ref().unwrap().to_string();
        let link = Link::connect_ws(&ws, &path[0].to_hop_target(), LinkConfig::default())
            .await
            .unwrap();
        let circ = link
            .create_circuit(&path[0].to_hop_target(), HandshakeKind::Ntor)
            .await
            .unwrap();
        for hop in &path[1..] {
            circ.extend(&hop.to_hop_target(), HandshakeKind::Ntor)
                .await
                .unwrap();
        }
        let host = demo.ip().to_string();
        let s = circ.begin(&host, demo.port()).await.unwrap();
        let (status, page) = http_request(s, Method::GET, &demo.to_string(), "/", None, 1 << 20, T)
            .await
            .unwrap();
        assert_eq!(status, StatusCode::OK);
        assert!(
            std::str::from_utf8(&page)
                .unwrap()
                .contains("onion-wasm demo site")
        );
        let s = circ.begin(&host, demo.port()).await.unwrap();
        let (status, file) = http_request(
            s,
            Method::GET,
            &demo.to_string(),
            DEMO_FILE_PATH,
            None,
            DEMO_FILE_LEN + 1,
            Duration::from_secs(300),
        )
        .await
        .unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(file.len(), DEMO_FILE_LEN);
        assert!(
            file == demo_file_bytes(DEMO_FILE_LEN),
            "the file's bytes differ"
        );
        circ.close().await;
        link.close().await;
        drop(dev);
    }
}
