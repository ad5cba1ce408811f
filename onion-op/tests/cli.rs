//! The `onion-op` binary itself: command-line errors, and a SOCKS5 listener that answers
//! with a clear reply code when the network cannot be reached (an entry OR on a closed port).
//! End-to-end transfers through the binary's code are in `tests/tests/native_op*.rs`.

// Integration tests are built with cfg(test): the module makes clippy treat the helpers as test
// code.
#[cfg(test)]
mod test {

    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::process::{Child, Command, Stdio};
    use std::time::Duration;

    const BIN: &str = env!("CARGO_BIN_EXE_onion-op");

    /// A Tor-mode description whose only entry is `entry` (TLS).
    fn description(entry: SocketAddr) -> String {
        format!(
            r#"{{"version": 1, "name": "nowhere",
  "entries": [{{"nickname": "gone", "tls": "{entry}",
    "rsa_id": "637323350F23FF2AD4C7EA7C4AEE41DD14B2A4D8",
    "ntor_key": "kyv4hDyvjIaDO8gVZMdnvsGUIyu2uCOpbY5ceRJl0kM"}}],
  "tor_authorities": [{{"nickname": "a", "v3ident": "F533C81CEF0BC0267857C99B2F471ADF249FA232",
    "address": "127.0.0.1:1", "fingerprint": "1A25C6358DB91342AA51720A5038B72742732498"}}]}}"#
        )
    }

    fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("onion-op-cli-{}-{name}", std::process::id()));
        std::fs::write(&p, text).unwrap();
        p
    }

    fn run(args: &[&str]) -> (bool, String) {
        let out = Command::new(BIN).args(args).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    #[test]
    fn bad_command_lines_are_explained() {
        let (ok, err) = run(&["--network", "/nonexistent/net.json"]);
        assert!(!ok);
        assert!(err.contains("cannot read /nonexistent/net.json"), "{err}");

        let garbage = temp_file("garbage.json", "{\"version\": 2}");
        let (ok, err) = run(&["--network", garbage.to_str().unwrap()]);
        assert!(!ok);
        assert!(err.contains("garbage.json"), "{err}");

        let good = temp_file("good.json", &description("127.0.0.1:9".parse().unwrap()));
        let g = good.to_str().unwrap();
        let (ok, err) = run(&["--network", g, "--hops", "9"]);
        assert!(!ok);
        assert!(err.contains("hops"), "{err}");
        let (ok, err) = run(&["--network", g, "--one-or", "xyz"]);
        assert!(!ok);
        assert!(err.contains("--one-or xyz"), "{err}");
        let (ok, err) = run(&["--network", g, "--tls-only", "--ws-only"]);
        assert!(!ok);
        assert!(err.contains("cannot be used with"), "{err}");
        // The only entry has no WebSocket: with --ws-only no entry is usable.
        let (ok, err) = run(&["--network", g, "--ws-only", "--socks", "127.0.0.1:0"]);
        assert!(!ok, "{err}");
        let _ = std::fs::remove_file(garbage);
        let _ = std::fs::remove_file(good);
    }

    /// Kills the child on drop.
    struct Killed(Child);

    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn unreachable_network_gives_socks_reply_3() {
        // An entry on a port nobody listens on.
        let closed = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let net = temp_file("closed.json", &description(closed));
        let mut child = Killed(
            Command::new(BIN)
                .args(["--network", net.to_str().unwrap(), "--socks", "127.0.0.1:0"])
                .args(["--log", "info"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let mut line = String::new();
        BufReader::new(child.0.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let socks: SocketAddr = line
            .trim()
            .strip_prefix("socks ")
            .unwrap_or_else(|| panic!("first line {line:?}"))
            .parse()
            .unwrap();
        let mut s = TcpStream::connect(socks).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        // Greeting + CONNECT example.org:80 in one write.
        let mut req = vec![5, 1, 0, 5, 1, 0, 3, 11];
        req.extend_from_slice(b"example.org");
        req.extend_from_slice(&[0, 80]);
        s.write_all(&req).unwrap();
        let mut reply = [0u8; 12];
        s.read_exact(&mut reply).unwrap();
        assert_eq!(&reply[..2], &[5, 0], "no authentication chosen");
        assert_eq!(reply[2], 5);
        assert_eq!(reply[3], 3, "network unreachable: {reply:?}");
        // An HTTP request on the SOCKS port is answered in HTTP.
        let mut s = TcpStream::connect(socks).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.0 501"), "{answer:?}");
        drop(child);
        let _ = std::fs::remove_file(net);
    }
}
