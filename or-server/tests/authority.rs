//! The own network's authority, in process (`or_server::dev::DevNetwork`): the signed list
//! verifies with the pinned key and is refused when tampered with, expired or signed by
//! another key; bad publications are refused; a stopped OR drops out of the list within
//! one check period (plus the check's timeout and a margin).

// Integration tests are built with cfg(test): the module makes clippy treat the helpers as test
// code too (unwrap, indexing and panics allowed, clippy.toml).
#[cfg(test)]
mod test {

    use std::net::SocketAddr;
    use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

    use ed25519_dalek::SigningKey;
    use hyper::{Method, StatusCode};
    use onion_core::dir::RelayFlags;
    use onion_core::netdesc::{ListError, RELAY_LIST_PATH, RelayList, SignedRelayList};
    use or_server::authority::{PUBLISH_PATH, check_timeout};
    use or_server::dev::{DevNetwork, DevOptions};
    use or_server::web::http_request;

    const T: Duration = Duration::from_secs(30);
    const INTERVAL: u64 = 2;

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    async fn request(
        addr: SocketAddr,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> (StatusCode, String) {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let body = body.map(|b| (b, "application/json"));
        let (s, b) = http_request(tcp, method, "authority", path, body, 4 << 20, T)
            .await
            .unwrap();
        (s, String::from_utf8(b.to_vec()).unwrap())
    }

    async fn fetch_list(net: &DevNetwork) -> String {
        let (status, text) = request(net.authority_http, Method::GET, RELAY_LIST_PATH, None).await;
        assert_eq!(status, StatusCode::OK);
        text
    }

    fn nicknames(list: &RelayList) -> Vec<String> {
        let mut v: Vec<String> = list.relays.iter().map(|r| r.nickname.clone()).collect();
        v.sort();
        v
    }

    /// The envelope's body text.
    fn body_of(envelope: &str) -> String {
        let v: serde_json::Value = serde_json::from_str(envelope).unwrap();
        v["body"].as_str().unwrap().to_owned()
    }

    /// An envelope with `body` and the signature of `envelope`.
    fn with_body(envelope: &str, body: &str) -> String {
        let mut v: serde_json::Value = serde_json::from_str(envelope).unwrap();
        v["body"] = serde_json::Value::String(body.to_owned());
        serde_json::to_string(&v).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn authority_lists_checks_and_drops() {
        let data = tempfile::tempdir().unwrap();
        let mut opts = DevOptions::new(data.path().to_owned());
        opts.http = "127.0.0.1:0".parse().unwrap();
        opts.data_dir = Some(data.path().join("data"));
        opts.check_interval_secs = INTERVAL;
        let mut net = DevNetwork::start(opts).await.unwrap();
        let desc = net.description.clone();

        // The list verifies with the pinned key, and says what the checks found.
        let envelope = fetch_list(&net).await;
        let list = desc.verify_relay_list(&envelope, now(), 60).unwrap();
        assert_eq!(nicknames(&list), ["dev1", "dev2", "dev3"]);
        let by = |n: &str| list.relays.iter().find(|r| r.nickname == n).unwrap();
        assert!(
            by("dev1").ws.is_some(),
            "entry's WebSocket checked and listed"
        );
        assert!(by("dev2").ws.is_none());
        assert!(by("dev3").flags.contains(RelayFlags::EXIT));
        assert!(by("dev3").exit_policy.allows_port(80));
        assert!(!by("dev1").flags.contains(RelayFlags::EXIT));
        assert!(by("dev1").exit_policy.rejects_all());
        for r in &list.relays {
            assert!(
                r.flags
                    .contains(RelayFlags::RUNNING.union(RelayFlags::GUARD))
            );
        }
        assert!(list.valid_until > list.published);

        // Tampered: one byte of the body changed; and a signature changed.
        let body = body_of(&envelope);
        let tampered = with_body(&envelope, &body.replacen("dev2", "dev9", 1));
        assert_eq!(
            desc.verify_relay_list(&tampered, now(), 60),
            Err(ListError::BadSignature)
        );
        let mut v: serde_json::Value = serde_json::from_str(&envelope).unwrap();
        let sig = v["signature"].as_str().unwrap().to_owned();
        let flipped = if sig.starts_with('A') { "B" } else { "A" };
        v["signature"] = serde_json::Value::String(format!("{flipped}{}", &sig[1..]));
        assert_eq!(
            desc.verify_relay_list(&serde_json::to_string(&v).unwrap(), now(), 60),
            Err(ListError::BadSignature)
        );
        // Expired: checked an hour after its end.
        assert!(matches!(
            desc.verify_relay_list(&envelope, list.valid_until + 3600, 60),
            Err(ListError::Expired { .. })
        ));
        // Signed by another key: the same list.
        let other = SigningKey::from_bytes(&[7u8; 32]);
        let forged = SignedRelayList::sign(&list, &other).unwrap();
        assert!(SignedRelayList::verify(&forged, &other.verifying_key(), now(), 60).is_ok());
        assert_eq!(
            desc.verify_relay_list(&forged, now(), 60),
            Err(ListError::BadSignature)
        );

        // Bad publications are refused.
        let (status, _) = request(
            net.authority_http,
            Method::POST,
            PUBLISH_PATH,
            Some(b"not json".to_vec()),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let bad = serde_json::json!({ "descriptor": "router x 127.0.0.1 1 0 0\n" });
        let (status, _) = request(
            net.authority_http,
            Method::POST,
            PUBLISH_PATH,
            Some(serde_json::to_vec(&bad).unwrap()),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, _) = request(net.authority_http, Method::GET, PUBLISH_PATH, None).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);

        // Stop the middle: it leaves the list within a check period, plus the time a check
        // may take, plus a margin; the others stay.
        assert!(net.stop_or("dev2").await);
        let stopped = Instant::now();
        let deadline =
            Duration::from_secs(INTERVAL) + check_timeout(INTERVAL) + Duration::from_secs(5);
        let after = loop {
            let list = desc
                .verify_relay_list(&fetch_list(&net).await, now(), 60)
                .unwrap();
            if !nicknames(&list).contains(&"dev2".to_owned()) {
                break list;
            }
            assert!(
                stopped.elapsed() < deadline,
                "dev2 still listed {:?} after it stopped",
                stopped.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        eprintln!(
            "dev2 left the list {:?} after it stopped",
            stopped.elapsed()
        );
        assert_eq!(nicknames(&after), ["dev1", "dev3"]);
        net.stop().await;
    }
}
