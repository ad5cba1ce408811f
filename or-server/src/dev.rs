//! `or-server dev`: a whole own network in one process, on 127.0.0.1.
//!
//! [`DevNetwork::start`] starts, each on a free port unless said otherwise:
//! - the **demo site** ([`web::demo_site`]), a few pages and a 5 MiB file to browse offline,
//!   and `POST /echo` (the body back with its SHA-256) to test request bodies;
//! - the **authority**: an OR (ORPort and a WebSocket listener for pages that fetch the list
//!   over BEGIN_DIR directly; not itself listed) with `[authority]`, checking every
//!   [`DevOptions::check_interval_secs`] (2 s by default) and with the demo site as its exit
//!   check target;
//! - **N ORs** (`--relays`, at least 3) publishing to it: `dev1` is the **entry**, with a
//!   WebSocket listener (what the page connects to); the last one is the **exit**, allowed to
//!   reach loopback (so the demo site) on every port; the others are middles. All extend to
//!   127.0.0.1 (`extend_allow_private`);
//! - the **HTTP server** of the page ([`web::StaticSite`]: `www/`, `pkg/` and
//!   `/network.json`), on `--http` (default `127.0.0.1:8080`).
//!
//! Once every OR is in the authority's signed list (the entry with its WebSocket URL, the
//! exit with `Exit`), the network description is written ([`DevNetwork::network_json`]:
//! the entry and the authority's pinned key, list URL and OR) to `--network-out` and served at
//! `/network.json`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use onion_core::dir::{RelayFlags, ServerDescriptor};
use onion_core::netdesc::{
    Directory, EntryOr, NetworkDescription, OwnAuthority, RELAY_LIST_PATH, RelayList,
    SignedRelayList, WebUrl,
};
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::authority::Authority;
use crate::config::Config;
use crate::server::{Server, ServerError};
use crate::shutdown::{self, Shutdown, ShutdownTrigger};
use crate::web;

/// The dev network's name.
pub const NETWORK_NAME: &str = "onion-dev";
/// The default `--http` address.
pub const DEFAULT_HTTP: &str = "127.0.0.1:8080";
/// Longest wait for every OR to be listed.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(120);

/// Why the dev network could not start.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DevError {
    /// Fewer than 3 relays asked for.
    #[error("--relays must be at least 3 (an entry, a middle, an exit)")]
    TooFewRelays,
    /// An OR's configuration is invalid (a bug).
    #[error("configuration of {0}: {1}")]
    Config(String, crate::config::ConfigError),
    /// An OR could not start.
    #[error("{0}: {1}")]
    Server(String, ServerError),
    /// A listener could not be bound.
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    /// A file or directory could not be written.
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    /// An OR has no descriptor, or the description cannot be made (a bug).
    #[error("{0}")]
    Internal(String),
    /// The ORs were not all listed in time.
    #[error("the ORs were not all in the authority's list after {0:?}: {1}")]
    NotListed(Duration, String),
}

/// What to start.
#[derive(Debug, Clone)]
pub struct DevOptions {
    /// Number of ORs besides the authority's (at least 3).
    pub relays: usize,
    /// The page's HTTP server.
    pub http: SocketAddr,
    /// Where to write the network description, if anywhere.
    pub network_out: Option<PathBuf>,
    /// Keys and state of every OR (a subdirectory each). `None`: a fresh temporary
    /// directory, removed at the end.
    pub data_dir: Option<PathBuf>,
    /// The repository directory holding `www/` and `pkg/`.
    pub root: PathBuf,
    /// The authority's check interval, seconds.
    pub check_interval_secs: u64,
    /// The seed's WS_OP_SOCKS listener on the entry OR (`[seed] ws_op_socks`), if wanted.
    pub ws_op_socks: Option<SocketAddr>,
}

impl DevOptions {
    /// 3 relays, `--http` 127.0.0.1:8080, no output file, a temporary data directory,
    /// `root`, checks every 2 seconds.
    pub fn new(root: PathBuf) -> Self {
        DevOptions {
            relays: 3,
            http: SocketAddr::from(([127, 0, 0, 1], 8080)),
            network_out: None,
            data_dir: None,
            root,
            check_interval_secs: 2,
            ws_op_socks: None,
        }
    }
}

/// One running OR.
struct RunningOr {
    nickname: String,
    trigger: ShutdownTrigger,
    task: JoinHandle<Result<(), ServerError>>,
}

/// The running dev network.
pub struct DevNetwork {
    /// The page's HTTP server.
    pub http: SocketAddr,
    /// The demo site.
    pub demo: SocketAddr,
    /// The authority's HTTP listener.
    pub authority_http: SocketAddr,
    /// The network description.
    pub description: NetworkDescription,
    /// Its JSON text (as written and served).
    pub network_json: String,
    /// The authority.
    pub authority: Arc<Authority>,
    /// The entry OR's WS_OP_SOCKS listener ([`DevOptions::ws_op_socks`]), bound.
    pub ws_op_socks: Option<SocketAddr>,
    ors: Vec<RunningOr>,
    web_trigger: ShutdownTrigger,
    web_tasks: Vec<JoinHandle<()>>,
    temp_dir: Option<PathBuf>,
}

impl std::fmt::Debug for DevNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevNetwork")
            .field("http", &self.http)
            .field("demo", &self.demo)
            .field("authority_http", &self.authority_http)
            .finish_non_exhaustive()
    }
}

/// The TOML of an OR of the dev network.
fn or_toml(nickname: &str, data_dir: &Path, extra: &str) -> String {
    format!(
        "nickname = \"{nickname}\"\ndata_dir = {dir:?}\naddress = \"127.0.0.1\"\n\
         extend_allow_private = true\nlog_level = \"info\"\n{extra}",
        dir = data_dir.to_string_lossy(),
    )
}

/// Start one OR; returns it and its server's context.
async fn start_or(
    nickname: &str,
    toml: &str,
    ors: &mut Vec<RunningOr>,
) -> Result<(Arc<crate::server::ServerContext>, crate::server::BoundAddrs), DevError> {
    let config = Config::from_toml_str(toml).map_err(|e| DevError::Config(nickname.into(), e))?;
    let (trigger, shutdown) = shutdown::channel();
    let server = Server::start(config, shutdown)
        .await
        .map_err(|e| DevError::Server(nickname.into(), e))?;
    let ctx = Arc::clone(server.context());
    let addrs = server.local_addrs();
    let task = tokio::spawn(server.run());
    ors.push(RunningOr {
        nickname: nickname.to_owned(),
        trigger,
        task,
    });
    Ok((ctx, addrs))
}

/// An OR of the description, from its descriptor.
fn entry_or(ctx: &crate::server::ServerContext, ws: Option<WebUrl>) -> Result<EntryOr, DevError> {
    let d = ctx
        .descriptor
        .get()
        .ok_or_else(|| DevError::Internal(format!("{} has no descriptor", ctx.config.nickname)))?;
    let d = ServerDescriptor::parse(d.text())
        .map_err(|e| DevError::Internal(format!("our own descriptor: {e}")))?;
    Ok(EntryOr {
        nickname: d.nickname().to_owned(),
        ws,
        tls: Some(d.or_addr()),
        rsa_id: *d.rsa_identity(),
        ed25519_id: Some(*d.ed_identity()),
        ntor_key: *d.ntor_onion_key(),
        tap_key: d.tap_onion_key().cloned(),
    })
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Whether `list` has `want` relays, the entry with a WebSocket URL and an exit.
fn complete(list: &RelayList, want: usize) -> bool {
    list.relays.len() >= want
        && list.relays.iter().any(|r| r.ws.is_some())
        && list
            .relays
            .iter()
            .any(|r| r.flags.contains(RelayFlags::EXIT))
}

impl DevNetwork {
    /// Start everything and wait until every OR is listed (at most [`STARTUP_TIMEOUT`]).
    pub async fn start(opts: DevOptions) -> Result<DevNetwork, DevError> {
        if opts.relays < 3 {
            return Err(DevError::TooFewRelays);
        }
        let (data_dir, temp_dir) = match &opts.data_dir {
            Some(d) => (d.clone(), None),
            None => {
                let d = fresh_temp_dir()?;
                (d.clone(), Some(d))
            }
        };
        crate::keys::ensure_private_dir(&data_dir)
            .map_err(|e| DevError::Internal(format!("{}: {e}", data_dir.display())))?;
        let (web_trigger, web_shutdown) = shutdown::channel();
        let mut web_tasks = Vec::new();
        let mut ors = Vec::new();
        let mut ws_op_socks = None;
        let result = Self::start_inner(
            &opts,
            &data_dir,
            &web_shutdown,
            &mut web_tasks,
            &mut ors,
            &mut ws_op_socks,
        )
        .await;
        match result {
            Ok((http, demo, authority_http, description, network_json, authority)) => {
                Ok(DevNetwork {
                    http,
                    demo,
                    authority_http,
                    description,
                    network_json,
                    authority,
                    ws_op_socks,
                    ors,
                    web_trigger,
                    web_tasks,
                    temp_dir,
                })
            }
            Err(e) => {
                web_trigger.trigger();
                for or in &ors {
                    or.trigger.trigger();
                }
                for or in ors {
                    let _ = or.task.await;
                }
                if let Some(d) = temp_dir {
                    let _ = std::fs::remove_dir_all(d);
                }
                Err(e)
            }
        }
    }

    #[allow(clippy::type_complexity)]
    async fn start_inner(
        opts: &DevOptions,
        data_dir: &Path,
        web_shutdown: &Shutdown,
        web_tasks: &mut Vec<JoinHandle<()>>,
        ors: &mut Vec<RunningOr>,
        ws_op_socks: &mut Option<SocketAddr>,
    ) -> Result<
        (
            SocketAddr,
            SocketAddr,
            SocketAddr,
            NetworkDescription,
            String,
            Arc<Authority>,
        ),
        DevError,
    > {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let demo_l = TcpListener::bind(any)
            .await
            .map_err(|e| DevError::Bind(any, e))?;
        let demo = demo_l.local_addr().map_err(|e| DevError::Bind(any, e))?;
        web_tasks.push(tokio::spawn(web::serve_numbered(
            demo_l,
            web::demo_site(),
            web_shutdown.clone(),
            "demo site",
        )));
        let http_l = TcpListener::bind(opts.http)
            .await
            .map_err(|e| DevError::Bind(opts.http, e))?;
        let http = http_l
            .local_addr()
            .map_err(|e| DevError::Bind(opts.http, e))?;
        let site = web::StaticSite::new(&opts.root);
        web_tasks.push(tokio::spawn(web::serve(
            http_l,
            site.clone().handler(),
            web_shutdown.clone(),
            "page",
        )));

        // The authority.
        let auth_toml = or_toml(
            "devauth",
            &data_dir.join("devauth"),
            &format!(
                "[listeners]\nor_port = \"127.0.0.1:0\"\nws = \"127.0.0.1:0\"\n[authority]\nnetwork = \"{NETWORK_NAME}\"\n\
                 http = \"127.0.0.1:0\"\ncheck_interval_secs = {}\nlist_lifetime_secs = 3600\n\
                 check_target = \"{demo}\"\n",
                opts.check_interval_secs
            ),
        );
        let (auth_ctx, auth_addrs) = start_or("devauth", &auth_toml, ors).await?;
        let authority_http = auth_addrs
            .authority_http
            .ok_or_else(|| DevError::Internal("the authority has no HTTP listener".into()))?;
        let auth_ws = auth_addrs
            .ws
            .map(|a| WebUrl::parse(&format!("ws://{a}/")))
            .transpose()
            .map_err(|e| DevError::Internal(e.to_string()))?;
        let authority = auth_ctx
            .authority
            .clone()
            .ok_or_else(|| DevError::Internal("the authority OR is not an authority".into()))?;

        // The ORs.
        let mut entry = None;
        for i in 1..=opts.relays {
            let nick = format!("dev{i}");
            let mut extra = String::from("[listeners]\nor_port = \"127.0.0.1:0\"\n");
            if i == 1 {
                extra.push_str("ws = \"127.0.0.1:0\"\n");
            }
            if i == opts.relays {
                extra.push_str(
                    "[exit]\nenabled = true\npolicy = \"accept *:*\"\nallow_internal = true\n",
                );
            }
            extra.push_str(&format!(
                "[publish]\nauthority = \"{authority_http}\"\ninterval_secs = 10\n"
            ));
            if i == 1
                && let Some(a) = opts.ws_op_socks
            {
                extra.push_str(&format!("[seed]\nws_op_socks = \"{a}\"\n"));
            }
            let (ctx, addrs) =
                start_or(&nick, &or_toml(&nick, &data_dir.join(&nick), &extra), ors).await?;
            if i == 1 {
                let ws = addrs
                    .ws
                    .ok_or_else(|| DevError::Internal("the entry has no ws listener".into()))?;
                let url = WebUrl::parse(&format!("ws://{ws}/"))
                    .map_err(|e| DevError::Internal(e.to_string()))?;
                entry = Some(entry_or(&ctx, Some(url))?);
                *ws_op_socks = addrs.ws_op_socks;
            }
        }
        let entry = entry.ok_or_else(|| DevError::Internal("no entry".into()))?;

        // Wait for the list.
        let start = Instant::now();
        let key = authority.verifying_key();
        loop {
            let state = authority.document().and_then(|d| {
                let text = String::from_utf8(d.plain().to_vec()).ok()?;
                SignedRelayList::verify(&text, &key, now_unix(), 60).ok()
            });
            if state.as_ref().is_some_and(|l| complete(l, opts.relays)) {
                break;
            }
            if start.elapsed() > STARTUP_TIMEOUT {
                let why = authority
                    .verdicts()
                    .into_iter()
                    .map(|(_, nick, v)| format!("{nick}: {v:?}"))
                    .collect::<Vec<_>>()
                    .join("; ");
                return Err(DevError::NotListed(STARTUP_TIMEOUT, why));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }

        let list_url = WebUrl::parse(&format!("http://{authority_http}{RELAY_LIST_PATH}"))
            .map_err(|e| DevError::Internal(e.to_string()))?;
        let description = NetworkDescription {
            name: NETWORK_NAME.to_owned(),
            entries: vec![entry],
            directory: Directory::Own(Box::new(OwnAuthority {
                key,
                list_url: Some(list_url),
                or: Some(entry_or(&auth_ctx, auth_ws)?),
            })),
        };
        let network_json = description
            .to_json()
            .map_err(|e| DevError::Internal(e.to_string()))?;
        if let Some(out) = &opts.network_out {
            std::fs::write(out, &network_json).map_err(|e| DevError::Io(out.clone(), e))?;
        }
        site.set_network_json(network_json.clone());
        Ok((
            http,
            demo,
            authority_http,
            description,
            network_json,
            authority,
        ))
    }

    /// The URL to open.
    pub fn url(&self) -> String {
        format!("http://{}/", self.http)
    }

    /// The nicknames of the ORs (the authority's first).
    pub fn nicknames(&self) -> Vec<String> {
        self.ors.iter().map(|o| o.nickname.clone()).collect()
    }

    /// Stop the OR `nickname` (its listeners close); returns whether it was running.
    pub async fn stop_or(&mut self, nickname: &str) -> bool {
        let Some(i) = self.ors.iter().position(|o| o.nickname == nickname) else {
            return false;
        };
        let or = self.ors.remove(i);
        or.trigger.trigger();
        let _ = or.task.await;
        true
    }

    /// Stop everything and remove the temporary data directory.
    pub async fn stop(self) {
        self.web_trigger.trigger();
        for or in &self.ors {
            or.trigger.trigger();
        }
        for or in self.ors {
            match or.task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!("{}: {e}", or.nickname),
                Err(e) => tracing::warn!("{}: {e}", or.nickname),
            }
        }
        for t in self.web_tasks {
            let _ = t.await;
        }
        if let Some(d) = self.temp_dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// A new data directory of its own under the system's temporary directory (created 0700
/// with a random name), so that networks started at the same time, even in one process and
/// one second, never share one. The caller removes it.
fn fresh_temp_dir() -> Result<PathBuf, DevError> {
    let mut builder = tempfile::Builder::new();
    builder.prefix("or-server-dev-");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o700));
    }
    builder
        .tempdir()
        .map(tempfile::TempDir::keep)
        .map_err(|e| DevError::Internal(format!("temporary directory: {e}")))
}

/// The repository directory: `dir` if it has `www/`, else the one this binary was built
/// from if it has, else `dir`.
pub fn find_root(dir: &Path) -> PathBuf {
    if dir.join("www").is_dir() {
        return dir.to_owned();
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if built.join("www").is_dir() {
        return built;
    }
    dir.to_owned()
}

#[cfg(test)]
mod test {
    use super::*;

    /// Two default data directories made in the same second by one process are different
    /// (the old `or-server-dev-{pid}-{seconds}` name collided).
    #[test]
    fn default_data_dirs_never_collide() {
        let a = fresh_temp_dir().unwrap();
        let b = fresh_temp_dir().unwrap();
        assert_ne!(a, b);
        assert!(a.is_dir() && b.is_dir());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&a).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "private: {mode:o}");
        }
        std::fs::remove_dir_all(a).unwrap();
        std::fs::remove_dir_all(b).unwrap();
    }
}
