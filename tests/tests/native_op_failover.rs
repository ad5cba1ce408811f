//! Failover of the native OP on a private C tor 0.4.9 network of its own (this binary kills
//! one of its relays): the middle relay of a `curl --socks5-hostname` download through the
//! OP is killed mid-transfer; curl must report the cut transfer (the OP resets the SOCKS
//! connection), and the next request must succeed on a circuit without that relay.

#[cfg(test)]
mod native_op_common;

// Integration tests are built with cfg(test): the module makes clippy treat the helpers as test
// code.
#[cfg(test)]
mod test {
    use std::time::{Duration, Instant};

    use super::native_op_common::{
        MB, RunningOp, curl_get, relay_nickname, spawn_curl_download, tor_description,
    };
    use onion_core::engine::{EngineConfig, Transports};
    use onion_tests::http::HttpServer;
    use onion_tests::tornet::TorNet;
    use onion_tests::{init_logging, secs};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ctor_middle_killed_mid_download() {
        init_logging();
        let t = Instant::now();
        let net = TorNet::shared().unwrap();
        eprintln!("C tor network up in {:.1} s", secs(t));
        let http = HttpServer::start().await.unwrap();
        let json = tor_description(net, &[&relay_nickname(net, "middle")]).to_string();
        let config = EngineConfig {
            transports: Transports {
                ws: false,
                tls: true,
            },
            ..EngineConfig::default()
        };
        let op = RunningOp::start(&json, config).await.unwrap();
        op.ready(Duration::from_secs(120)).await.unwrap();

        let dir =
            std::env::temp_dir().join(format!("native-op-ctor-failover-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("big");
        let url = format!("http://127.0.0.1:{}/bytes/{}", http.addr().port(), 200 * MB);
        let curl = spawn_curl_download(op.socks, url, file.clone());
        let deadline = Instant::now() + Duration::from_secs(60);
        let (middle, fp) = loop {
            assert!(Instant::now() < deadline, "the download did not start");
            let size = std::fs::metadata(&file).map_or(0, |m| m.len());
            if size > MB as u64 {
                let circs = op.client.circuits().await.unwrap();
                if let Some(c) = circs.iter().find(|c| c.streams > 0 && c.path.len() == 3) {
                    break (c.path[1].nickname.clone(), c.path[1].rsa_id.to_string());
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        // Its tor process, from network.json.
        let pid = ["authorities", "relays"]
            .iter()
            .flat_map(|k| net.json[k].as_array().cloned().unwrap_or_default())
            .find(|r| r["fingerprint"].as_str() == Some(fp.as_str()))
            .and_then(|r| r["pid"].as_u64())
            .unwrap_or_else(|| panic!("no pid for {middle} {fp}"));
        eprintln!("killing the middle {middle} (pid {pid}) mid-download");
        let st = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap();
        assert!(st.success());
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

        let url = format!("http://127.0.0.1:{}/bytes/{}", http.addr().port(), MB);
        let t = Instant::now();
        let body = curl_get(op.socks, &url, None).await.unwrap();
        assert!(onion_tests::body::check(&body, MB));
        eprintln!("the next request succeeded in {:.2} s", secs(t));
        let circs = op.client.circuits().await.unwrap();
        let used = circs
            .iter()
            .find(|c| c.built && c.dirty && c.path.len() == 3)
            .expect("the circuit of the next request");
        assert!(
            used.path.iter().all(|h| h.rsa_id.to_string() != fp),
            "the new circuit avoids {middle}: {used:?}"
        );
        op.stop().await;
    }
}
