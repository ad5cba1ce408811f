//! The native OP (`onion_op::driver` around the client engine, with the SOCKS5 front end of
//! the `onion-op` binary) against a private C tor 0.4.9 network (tornet: 3 authorities,
//! 3 relays of which 2 exits, all on 127.0.0.1), with `curl --socks5-hostname` as the
//! application:
//! - first hop a C tor relay over Tor link TLS: bootstrap from the real consensus
//!   (signatures of the authorities checked), 10 MB over 3 C tor hops, bytes checked;
//! - first hop our OR over WebSocket (our OR caches the consensus for the OP), then C tor;
//! - a first hop whose ntor key is not the one in the description: a clear bootstrap error.
//!
//! Run with `--nocapture` for timings; `RUST_LOG=onion_op=debug,onion_core=debug` for more.

#[cfg(test)]
mod native_op_common;

// Integration tests are built with cfg(test): the module makes clippy treat the helpers as test
// code.
#[cfg(test)]
mod test {

    use std::time::{Duration, Instant};

    use super::native_op_common::{MB, RunningOp, curl_get, relay_nickname, tor_description};
    use onion_core::engine::{EngineConfig, Transports};
    use onion_op::driver::ClientError;
    use onion_tests::http::HttpServer;
    use onion_tests::or::{OrNode, OrSpec};
    use onion_tests::tornet::TorNet;
    use onion_tests::{init_logging, secs};

    /// How long a bootstrap may take.
    const READY: Duration = Duration::from_secs(120);

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tls_entry_ctor_relay_curl_10mb() {
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
        let t = Instant::now();
        op.ready(READY).await.unwrap();
        eprintln!(
            "bootstrapped through a C tor relay over TLS in {:.2} s",
            secs(t)
        );

        let url = format!("http://127.0.0.1:{}/bytes/{}", http.addr().port(), 10 * MB);
        let t = Instant::now();
        let body = curl_get(op.socks, &url, None).await.unwrap();
        let took = secs(t);
        assert_eq!(body.len(), 10 * MB, "curl got {} bytes", body.len());
        assert!(onion_tests::body::check(&body, 10 * MB), "wrong bytes");
        eprintln!(
            "curl --socks5-hostname: 10 MB over 3 C tor hops in {took:.2} s ({:.1} MB/s)",
            10.0 / took
        );
        // The circuit that carried it: 3 hops, the first the pinned entry.
        let circs = op.client.circuits().await.unwrap();
        let exit_circ = circs
            .iter()
            .find(|c| c.path.len() == 3)
            .expect("a 3-hop circuit");
        assert_eq!(
            exit_circ.path.first().map(|h| h.rsa_id.to_string()),
            Some(net.relay("middle").unwrap().fingerprint.clone())
        );
        op.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ws_entry_our_or_then_ctor_curl_10mb() {
        init_logging();
        let net = TorNet::shared().unwrap();
        let http = HttpServer::start().await.unwrap();
        // Our OR caches the network's consensus and serves it over BEGIN_DIR.
        let mut spec = OrSpec::new("OurWsEntry");
        spec.extra_top = super::native_op_common::directory_toml(&net.json);
        let or = OrNode::start(spec).await.unwrap();
        let mut desc = tor_description(net, &[]);
        desc["entries"] = serde_json::json!([super::native_op_common::or_entry_json(&or)]);
        let json = desc.to_string();
        let config = EngineConfig {
            transports: Transports {
                ws: true,
                tls: false,
            },
            ..EngineConfig::default()
        };
        let t = Instant::now();
        // Our OR needs a moment to fetch the consensus: retry the bootstrap until it has it.
        let op = RunningOp::start_until_ready(&json, config, READY)
            .await
            .unwrap();
        eprintln!(
            "bootstrapped through our OR over WebSocket in {:.2} s",
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
            "curl: 10 MB via our OR (WebSocket) + 2 C tor hops in {took:.2} s ({:.1} MB/s)",
            10.0 / took
        );
        let circs = op.client.circuits().await.unwrap();
        let c = circs
            .iter()
            .find(|c| c.path.len() == 3)
            .expect("a 3-hop circuit");
        assert_eq!(
            c.path.first().map(|h| h.rsa_id.to_string()),
            Some(or.fingerprint.clone())
        );
        let ctor: Vec<String> = net.relays.iter().map(|r| r.fingerprint.clone()).collect();
        for hop in c.path.iter().skip(1) {
            assert!(
                ctor.contains(&hop.rsa_id.to_string()),
                "hop {} is a C tor relay",
                hop.nickname
            );
        }
        op.stop().await;
        or.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn entry_with_another_ntor_key_is_refused_clearly() {
        init_logging();
        let net = TorNet::shared().unwrap();
        let mut desc = tor_description(net, &[&relay_nickname(net, "middle")]);
        // A valid curve25519 point that is not the relay's key.
        desc["entries"][0]["ntor_key"] =
            serde_json::Value::String("kyv4hDyvjIaDO8gVZMdnvsGUIyu2uCOpbY5ceRJl0kM".to_owned());
        let json = desc.to_string();
        let config = EngineConfig {
            transports: Transports {
                ws: false,
                tls: true,
            },
            ..EngineConfig::default()
        };
        let op = RunningOp::start(&json, config).await.unwrap();
        let err = op.ready(READY).await.unwrap_err();
        eprintln!("bootstrap with a wrong ntor key: {err}");
        assert!(matches!(err, ClientError::Bootstrap(_)), "{err:?}");
        let text = err.to_string().to_lowercase();
        assert!(
            text.contains("ntor") || text.contains("auth") || text.contains("handshake"),
            "the error names the handshake: {err}"
        );
        // A SOCKS client is told the network is unreachable.
        let url = "http://127.0.0.1:9/";
        let e = curl_get(op.socks, url, None).await.unwrap_err();
        assert!(
            e.contains("(97)") || e.contains("SOCKS") || e.contains("proxy"),
            "{e}"
        );
        op.stop().await;
    }
}
