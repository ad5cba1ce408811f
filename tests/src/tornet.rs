//! The private C tor network of `tornet/tornet.py` (see its README): started once per test
//! binary ([`TorNet::shared`]), stopped when the test process exits.
//!
//! Statics are never dropped, so teardown is a watchdog: a detached shell that waits for the
//! test process to exit, then runs `tornet.py down` and removes the directory. It works
//! whether the tests pass, fail or panic.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Instant;

use onion_core::certs::{Ed25519Identity, RsaIdentity};
use onion_op::HopTarget;
use serde_json::Value;

use crate::{Error, Result};

/// A torrc line for the shared network's relays: an info-level log of the link and circuit
/// domains in `info.log` beside `notice.log` (tor runs in its node's directory), so that a
/// test can show what C tor saw of our OR's links.
pub const RELAY_INFO_LOG: &str = "Log [or,channel,circ,handshake,protocol]info file info.log";

/// The harness script.
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tornet")
        .join("tornet.py")
}

/// A relay (or authority) of the network, from `network.json`.
#[derive(Debug, Clone)]
pub struct TorRelay {
    /// Its nickname (`auth0`, `middle0`, `exit0`, ...).
    pub nickname: String,
    /// `exit`, `middle` or `authority`.
    pub role: String,
    /// Its ORPort on 127.0.0.1.
    pub orport: u16,
    /// RSA fingerprint, 40 hex digits.
    pub fingerprint: String,
    /// Its tor log (`notice.log`).
    pub log: PathBuf,
    /// What a client needs to extend to it with ntor or ntor-v3.
    pub target: HopTarget,
}

/// A running network.
#[derive(Debug)]
pub struct TorNet {
    /// Its directory.
    pub dir: PathBuf,
    /// `network.json`.
    pub json: Value,
    /// The authorities, then the relays.
    pub relays: Vec<TorRelay>,
    /// Seconds `up` took.
    pub up_seconds: f64,
}

/// A string field.
fn field<'a>(v: &'a Value, key: &str) -> Result<&'a str> {
    v.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| Error::other(format!("network.json: no string {key:?}")))
}

/// One relay entry of `network.json`.
fn parse_relay(v: &Value) -> Result<TorRelay> {
    let orport = v
        .get("orport")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .ok_or_else(|| Error::other("network.json: bad orport"))?;
    let fingerprint = field(v, "fingerprint")?.to_owned();
    let rsa = RsaIdentity::from_hex(&fingerprint)
        .ok_or_else(|| Error::other(format!("bad fingerprint {fingerprint}")))?;
    let ed_b64 = field(v, "ed25519_identity")?;
    let ed = Ed25519Identity::from_base64(ed_b64)
        .ok_or_else(|| Error::other(format!("bad ed25519 identity {ed_b64}")))?;
    let ntor_hex = field(v, "ntor_onion_key_hex")?;
    let ntor: [u8; 32] = hex::decode(ntor_hex)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| Error::other(format!("bad ntor key {ntor_hex}")))?;
    Ok(TorRelay {
        nickname: field(v, "nickname")?.to_owned(),
        role: field(v, "role")?.to_owned(),
        orport,
        fingerprint,
        log: PathBuf::from(field(v, "log")?),
        target: HopTarget {
            ipv4: Some(SocketAddrV4::new(Ipv4Addr::LOCALHOST, orport)),
            ipv6: None,
            rsa_id: Some(*rsa.as_bytes()),
            ed_id: Some(*ed.as_bytes()),
            ntor_onion_key: Some(x25519_dalek::PublicKey::from(ntor)),
            tap_onion_key: None,
            // tor 0.4.9 relays say Relay=2-6 (ntor-v3 is Relay=4).
            supports_ntor_v3: true,
        },
    })
}

impl TorNet {
    /// Start a network in `dir` (which must not exist or be empty) with `args` after
    /// `up --dir DIR`, and arm the watchdog that stops it when this process exits.
    pub fn up(dir: &Path, args: &[&str]) -> Result<TorNet> {
        let start = Instant::now();
        std::fs::create_dir_all(dir).map_err(Error::io(format!("create {}", dir.display())))?;
        arm_watchdog(dir)?;
        let out = Command::new("python3")
            .arg(script())
            .arg("up")
            .arg("--dir")
            .arg(dir)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(Error::io("run tornet.py up (is python3 installed?)"))?;
        if !out.status.success() {
            return Err(Error::other(format!(
                "tornet.py up failed ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let mut net = Self::load(dir)?;
        net.up_seconds = crate::secs(start);
        Ok(net)
    }

    /// Read `DIR/network.json`.
    pub fn load(dir: &Path) -> Result<TorNet> {
        let path = dir.join("network.json");
        let text = std::fs::read_to_string(&path)
            .map_err(Error::io(format!("read {}", path.display())))?;
        let json: Value = serde_json::from_str(&text).map_err(Error::other)?;
        let mut relays = Vec::new();
        for key in ["authorities", "relays"] {
            for r in json
                .get(key)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                relays.push(parse_relay(r)?);
            }
        }
        Ok(TorNet {
            dir: dir.to_owned(),
            json,
            relays,
            up_seconds: 0.0,
        })
    }

    /// The network shared by every test of this binary: 3 authorities, 3 relays (2 exits),
    /// started on first use. Fails (for every caller) if it cannot start: `tor` is a
    /// prerequisite of the test command (`scripts/setup.sh`).
    pub fn shared() -> Result<&'static TorNet> {
        static NET: OnceLock<std::result::Result<TorNet, String>> = OnceLock::new();
        NET.get_or_init(|| {
            let dir =
                std::env::temp_dir().join(format!("onion-tests-tornet-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            TorNet::up(&dir, &["--relay-torrc-extra", RELAY_INFO_LOG]).map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(Error::other)
    }

    /// The first relay with `role` (`exit`, `middle`).
    pub fn relay(&self, role: &str) -> Result<&TorRelay> {
        self.relays
            .iter()
            .find(|r| r.role == role)
            .ok_or_else(|| Error::other(format!("no {role} relay in the network")))
    }

    /// Add a C tor client using one bridge (`tornet.py bridge-client`); its `network.json`
    /// entry (nickname, socks_port, control_port, log, ...).
    pub fn bridge_client(
        &self,
        name: &str,
        addr: SocketAddrV4,
        fingerprint: &str,
    ) -> Result<Value> {
        let spec = format!("{name}:{}:{}:{fingerprint}", addr.ip(), addr.port());
        let out = Command::new("python3")
            .arg(script())
            .arg("bridge-client")
            .arg("--dir")
            .arg(&self.dir)
            .arg(&spec)
            .stdin(Stdio::null())
            .output()
            .map_err(Error::io("run tornet.py bridge-client"))?;
        if !out.status.success() {
            return Err(Error::other(format!(
                "tornet.py bridge-client failed ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        serde_json::from_slice(&out.stdout).map_err(Error::other)
    }

    /// Stop the network now (the watchdog would at exit).
    pub fn down(&self) -> Result<()> {
        let st = Command::new("python3")
            .arg(script())
            .arg("down")
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .status()
            .map_err(Error::io("run tornet.py down"))?;
        if st.success() {
            Ok(())
        } else {
            Err(Error::other(format!("tornet.py down failed ({st})")))
        }
    }

    /// Every log of every node: `(nickname, path)`, `notice.log` then `info.log` (when the
    /// node has one, see [`RELAY_INFO_LOG`]).
    pub fn logs(&self) -> Vec<(String, PathBuf)> {
        let mut v = Vec::new();
        for r in &self.relays {
            v.push((r.nickname.clone(), r.log.clone()));
            let info = r.log.with_file_name("info.log");
            if info.exists() {
                v.push((format!("{} (info)", r.nickname), info));
            }
        }
        v
    }

    /// The current length of every log of [`TorNet::logs`], to grep only what comes after
    /// ([`TorNet::grep_logs_since`]).
    pub fn log_marks(&self) -> Vec<u64> {
        self.logs()
            .iter()
            .map(|(_, p)| std::fs::metadata(p).map_or(0, |m| m.len()))
            .collect()
    }

    /// The lines of every log that contain one of `needles`, prefixed with the node's
    /// nickname.
    pub fn grep_logs(&self, needles: &[&str]) -> Vec<String> {
        self.grep_logs_since(&[], needles)
    }

    /// [`TorNet::grep_logs`], only past `marks` (from [`TorNet::log_marks`]).
    pub fn grep_logs_since(&self, marks: &[u64], needles: &[&str]) -> Vec<String> {
        let mut out = Vec::new();
        for (i, (nick, path)) in self.logs().iter().enumerate() {
            let Ok(text) = std::fs::read(path) else {
                continue;
            };
            let from = marks
                .get(i)
                .and_then(|m| usize::try_from(*m).ok())
                .unwrap_or(0);
            let text = String::from_utf8_lossy(text.get(from..).unwrap_or_default());
            for line in text.lines() {
                if needles.iter().any(|n| line.contains(n)) {
                    out.push(format!("{nick}: {line}"));
                }
            }
        }
        out
    }
}

/// A detached shell that waits for this process to exit, then stops the network in `dir`
/// and removes `dir`.
fn arm_watchdog(dir: &Path) -> Result<()> {
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
         python3 \"$0\" down --dir \"$1\" >/dev/null 2>&1; rm -rf \"$1\"",
        pid = std::process::id()
    );
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(self::script())
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(Error::io("start the tornet watchdog"))?;
    Ok(())
}
