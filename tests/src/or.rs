//! Our OR (`or-server`), started in-process through its library on 127.0.0.1 with a temporary
//! data directory, and what a client needs to use it as a hop.

use std::net::{SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::PoisonError;
use std::sync::atomic::{AtomicU32, Ordering};

use onion_op::HopTarget;
use or_server::config::Config;
use or_server::server::{BoundAddrs, Server};
use or_server::shutdown::ShutdownTrigger;
use tokio::task::JoinHandle;

use crate::{Error, Result};

/// Which listeners and roles an OR gets.
#[derive(Debug, Clone)]
pub struct OrSpec {
    /// The nickname (1 to 19 letters and digits).
    pub nickname: String,
    /// A `ws://` listener.
    pub ws: bool,
    /// A Tor link (TLS) ORPort.
    pub or_port: bool,
    /// An exit accepting every destination, internal ones included (`allow_internal`).
    pub exit: bool,
    /// Accept the seed's CREATE_FAST_WS.
    pub create_fast_ws: bool,
    /// More TOML lines for the top level of the configuration (before the tables).
    pub extra_top: String,
}

impl OrSpec {
    /// An OR with both listeners, not an exit, CREATE_FAST_WS accepted. Every OR may extend
    /// to private addresses (all hops are on 127.0.0.1).
    pub fn new(nickname: &str) -> Self {
        OrSpec {
            nickname: nickname.to_owned(),
            ws: true,
            or_port: true,
            exit: false,
            create_fast_ws: true,
            extra_top: String::new(),
        }
    }

    /// The same, as an exit.
    pub fn exit(mut self) -> Self {
        self.exit = true;
        self
    }

    /// The configuration file's text for `data_dir`.
    pub fn toml(&self, data_dir: &Path) -> String {
        let mut t = format!(
            "nickname = {:?}\ndata_dir = {:?}\naddress = \"127.0.0.1\"\nlog_level = \"warn\"\n\
             extend_allow_private = true\n{}\n",
            self.nickname,
            data_dir.display().to_string(),
            self.extra_top
        );
        t.push_str("[listeners]\n");
        if self.ws {
            t.push_str("ws = \"127.0.0.1:0\"\n");
        }
        if self.or_port {
            t.push_str("or_port = \"127.0.0.1:0\"\n");
        }
        if self.exit {
            t.push_str("[exit]\nenabled = true\npolicy = \"accept *:*\"\nallow_internal = true\n");
        }
        t.push_str(&format!(
            "[seed]\ncreate_fast_ws = {}\n",
            self.create_fast_ws
        ));
        t
    }
}

/// A directory under the system temporary directory, removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// A fresh, empty directory named after `tag`.
    pub fn new(tag: &str) -> Result<Self> {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("onion-tests-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).map_err(Error::io(format!("create {}", path.display())))?;
        Ok(TempDir(path))
    }

    /// The path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running OR; shut down on drop.
#[derive(Debug)]
pub struct OrNode {
    /// Its configuration.
    pub spec: OrSpec,
    /// The bound addresses.
    pub addrs: BoundAddrs,
    /// What a client knows of it: ORPort address, identities, onion keys.
    pub target: HopTarget,
    /// Its RSA fingerprint, 40 uppercase hex digits.
    pub fingerprint: String,
    trigger: ShutdownTrigger,
    task: Option<JoinHandle<()>>,
    _dir: TempDir,
}

impl OrNode {
    /// Start an OR (key generation included) and serve in the background.
    pub async fn start(spec: OrSpec) -> Result<Self> {
        let dir = TempDir::new(&spec.nickname)?;
        let config =
            Config::from_toml_str(&spec.toml(&dir.path().join("data"))).map_err(Error::other)?;
        let (trigger, shutdown) = or_server::shutdown::channel();
        let server = Server::start(config, shutdown)
            .await
            .map_err(Error::other)?;
        let addrs = server.local_addrs();
        let (target, fingerprint) = {
            let keys = server
                .context()
                .keys
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            let ipv4 = match addrs.or_port {
                Some(SocketAddr::V4(a)) => Some(a),
                _ => None,
            };
            let target = HopTarget {
                ipv4,
                ipv6: None,
                rsa_id: Some(*keys.rsa_fingerprint().as_bytes()),
                ed_id: Some(*keys.ed_identity_public().as_bytes()),
                ntor_onion_key: Some(*keys.onion_keys().ntor_public()),
                tap_onion_key: Some(keys.onion_keys().tap().to_public_key()),
                supports_ntor_v3: true,
            };
            (target, keys.rsa_fingerprint().to_string())
        };
        let nick = spec.nickname.clone();
        let task = tokio::spawn(async move {
            if let Err(e) = server.run().await {
                eprintln!("OR {nick} stopped with an error: {e}");
            }
        });
        Ok(OrNode {
            spec,
            addrs,
            target,
            fingerprint,
            trigger,
            task: Some(task),
            _dir: dir,
        })
    }

    /// Its `ws://` URL.
    pub fn ws_url(&self) -> Result<String> {
        self.addrs
            .ws
            .map(|a| format!("ws://{a}/"))
            .ok_or_else(|| Error::other(format!("{} has no ws listener", self.spec.nickname)))
    }

    /// Its ORPort.
    pub fn or_port(&self) -> Result<SocketAddrV4> {
        self.target
            .ipv4
            .ok_or_else(|| Error::other(format!("{} has no ORPort", self.spec.nickname)))
    }

    /// Stop it and wait (at most the server's shutdown grace).
    pub async fn stop(mut self) {
        self.trigger.trigger();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for OrNode {
    fn drop(&mut self) {
        self.trigger.trigger();
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn config_text_parses() {
        let spec = OrSpec::new("Test1").exit();
        let c = Config::from_toml_str(&spec.toml(Path::new("/tmp/x"))).unwrap();
        assert!(c.exit.enabled && c.exit.allow_internal);
        assert!(c.listeners.ws.is_some() && c.listeners.or_port.is_some());
        assert!(c.seed.create_fast_ws);
        assert!(c.extend_allow_private, "every hop is on 127.0.0.1");
    }
}
