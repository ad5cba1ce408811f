//! Helpers shared by the native OP suites (`native_op*.rs`): network descriptions written
//! from tornet's `network.json` or our ORs, an in-process OP with its SOCKS5 front end (the
//! `onion-op` binary's code), and `curl` as the SOCKS application.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use onion_core::dir::encode::b64_unpadded;
use onion_core::engine::EngineConfig;
use onion_core::netdesc::NetworkDescription;
use onion_op::driver::{ClientError, OpClient};
use onion_tests::or::OrNode;
use onion_tests::tornet::TorNet;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// 10^6 bytes.
pub const MB: usize = 1_000_000;

/// The Tor-mode network description of the running tornet `net` with the relays `entries`
/// (nicknames) as entry ORs over TLS, from `tornet.py netdesc`.
pub fn tor_description(net: &TorNet, entries: &[&str]) -> Value {
    let mut cmd = std::process::Command::new("python3");
    cmd.arg(onion_tests::tornet::script())
        .args(["netdesc", "--dir"])
        .arg(&net.dir);
    for e in entries {
        cmd.args(["--entry", e]);
    }
    let out = cmd.output().expect("run tornet.py netdesc");
    assert!(
        out.status.success(),
        "tornet.py netdesc failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("netdesc prints JSON")
}

/// The nickname of the first relay of `net` with `role` (`middle`, `exit`).
pub fn relay_nickname(net: &TorNet, role: &str) -> String {
    net.relay(role)
        .expect("a relay with that role")
        .nickname
        .clone()
}

/// The `[directory]` table that makes our OR cache this network's consensus.
pub fn directory_toml(net: &Value) -> String {
    let auths = net["authorities"].as_array().cloned().unwrap_or_default();
    let dirports: Vec<String> = auths
        .iter()
        .map(|a| format!("\"127.0.0.1:{}\"", a["dirport"]))
        .collect();
    let idents: Vec<String> = auths
        .iter()
        .map(|a| format!("\"{}\"", a["v3ident"].as_str().unwrap_or_default()))
        .collect();
    format!(
        "[directory]\nauthorities = [{}]\nv3idents = [{}]\nretry_secs = 1\n",
        dirports.join(", "),
        idents.join(", ")
    )
}

/// The network description entry for our OR: `ws` URL, ORPort, identities, ntor key.
pub fn or_entry_json(or: &OrNode) -> Value {
    let t = &or.target;
    let mut v = json!({
        "nickname": or.spec.nickname,
        "rsa_id": or.fingerprint,
        "ed25519_id": t.ed_id.map(|k| b64_unpadded(&k)),
        "ntor_key": t.ntor_onion_key.map(|k| b64_unpadded(k.as_bytes())),
    });
    if let Ok(url) = or.ws_url() {
        v["ws"] = Value::String(url);
    }
    if let Ok(a) = or.or_port() {
        v["tls"] = Value::String(a.to_string());
    }
    v
}

/// An OP engine task and its SOCKS5 listener, in this process.
pub struct RunningOp {
    /// The engine handle.
    pub client: OpClient,
    /// The SOCKS5 address.
    pub socks: SocketAddr,
    task: JoinHandle<()>,
}

impl RunningOp {
    /// Start the engine for the description `json` and a SOCKS5 listener on 127.0.0.1.
    pub async fn start(json: &str, config: EngineConfig) -> Result<RunningOp, String> {
        let network = NetworkDescription::parse(json).map_err(|e| e.to_string())?;
        let client = OpClient::start(network, config).map_err(|e| e.to_string())?;
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        let socks = listener.local_addr().map_err(|e| e.to_string())?;
        let task = tokio::spawn(onion_op::driver::socks::serve_socks(
            listener,
            client.clone(),
        ));
        Ok(RunningOp {
            client,
            socks,
            task,
        })
    }

    /// Start, retrying a failed bootstrap (e.g. our OR has no consensus yet) until `within`.
    pub async fn start_until_ready(
        json: &str,
        config: EngineConfig,
        within: Duration,
    ) -> Result<RunningOp, String> {
        let start = Instant::now();
        loop {
            let op = RunningOp::start(json, config.clone()).await?;
            let left = within.saturating_sub(start.elapsed());
            match op.ready(left).await {
                Ok(()) => return Ok(op),
                Err(e) => {
                    op.stop().await;
                    if start.elapsed() >= within {
                        return Err(format!("not ready within {within:?}: {e}"));
                    }
                    eprintln!("bootstrap failed ({e}); retrying");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        }
    }

    /// Wait for the bootstrap.
    pub async fn ready(&self, within: Duration) -> Result<(), ClientError> {
        match tokio::time::timeout(within, self.client.wait_ready()).await {
            Ok(r) => r,
            Err(_) => {
                panic!(
                    "no bootstrap result within {within:?}; status {:?}",
                    self.client.status()
                )
            }
        }
    }

    /// Stop the listener and the engine.
    pub async fn stop(self) {
        self.task.abort();
        self.client.shutdown().await;
    }
}

/// `curl --socks5-hostname` GET of `url` through `socks` (with SOCKS credentials `auth`):
/// the body, or curl's exit status and message.
pub async fn curl_get(
    socks: SocketAddr,
    url: &str,
    auth: Option<(&str, &str)>,
) -> Result<Vec<u8>, String> {
    let mut args: Vec<String> = vec![
        "-sS".into(),
        "--max-time".into(),
        "240".into(),
        "--socks5-hostname".into(),
        socks.to_string(),
    ];
    if let Some((u, p)) = auth {
        args.push("--proxy-user".into());
        args.push(format!("{u}:{p}"));
    }
    args.push(url.to_owned());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args(&args)
            .stdin(std::process::Stdio::null())
            .output()
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("cannot run curl: {e}"))?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(format!(
            "curl failed ({}), {} bytes received: {}",
            out.status,
            out.stdout.len(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Starts `curl --socks5-hostname` downloading `url` through `socks` into `file` in the
/// background (the failover tests watch the file grow, then cut the circuit).
pub fn spawn_curl_download(
    socks: SocketAddr,
    url: String,
    file: std::path::PathBuf,
) -> JoinHandle<std::process::Output> {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args(["-sS", "--max-time", "240", "--socks5-hostname"])
            .arg(socks.to_string())
            .arg("-o")
            .arg(&file)
            .arg(url)
            .output()
            .unwrap()
    })
}

/// The `onion-op` binary of this build (`target/<profile>/onion-op`), brought up to date
/// with `cargo build -p onion-op --bin onion-op` (a test run of this crate alone does not
/// build other packages' binaries), once per test process.
pub fn onion_op_binary() -> std::path::PathBuf {
    static BUILT: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().expect("test executable path");
            // target/<profile>/deps/<test> -> target/<profile>/onion-op
            let profile_dir = exe
                .parent()
                .and_then(std::path::Path::parent)
                .expect("target/<profile>");
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let mut cmd = std::process::Command::new(cargo);
            cmd.args(["build", "-q", "-p", "onion-op", "--bin", "onion-op"]);
            if profile_dir.file_name().is_some_and(|n| n == "release") {
                cmd.arg("--release");
            }
            let st = cmd.status().expect("run cargo build");
            assert!(st.success(), "cargo build -p onion-op failed");
            profile_dir.join(format!("onion-op{}", std::env::consts::EXE_SUFFIX))
        })
        .clone()
}

/// A running `onion-op` process (killed on drop) and its SOCKS address.
pub struct OpProcess {
    child: std::process::Child,
    /// The SOCKS5 address it printed.
    pub socks: SocketAddr,
    /// Its log (stderr).
    pub log: std::path::PathBuf,
}

impl OpProcess {
    /// Start `onion-op --network FILE --socks 127.0.0.1:0 ARGS...`, the description `json`
    /// written to a temporary file; returns once it listens.
    pub fn start(json: &str, args: &[&str]) -> OpProcess {
        use std::io::BufRead;
        let tag = format!("{}-{}", std::process::id(), rand_tag());
        let net = std::env::temp_dir().join(format!("onion-op-net-{tag}.json"));
        std::fs::write(&net, json).expect("write the description");
        let log = std::env::temp_dir().join(format!("onion-op-log-{tag}.txt"));
        let log_file = std::fs::File::create(&log).expect("create the log");
        let mut child = std::process::Command::new(onion_op_binary())
            .arg("--network")
            .arg(&net)
            .args(["--socks", "127.0.0.1:0"])
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(log_file)
            .spawn()
            .expect("start onion-op");
        let mut line = String::new();
        let read = child
            .stdout
            .take()
            .map(|o| std::io::BufReader::new(o).read_line(&mut line));
        let socks = line
            .trim()
            .strip_prefix("socks ")
            .and_then(|a| a.parse().ok());
        let Some(socks) = socks else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "onion-op did not start ({read:?}, {line:?}): {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        };
        let _ = std::fs::remove_file(&net);
        OpProcess { child, socks, log }
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for OpProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A few random hex digits for file names.
fn rand_tag() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    format!("{:08x}", h.finish() as u32)
}
