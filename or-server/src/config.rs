//! The OR's configuration file (TOML).
//!
//! Every table and field is documented on the struct that holds it; `or.example.toml` beside
//! this crate's `Cargo.toml` shows them all. Unknown fields are rejected (a typo must not
//! silently fall back to a default), and [`Config::validate`] checks the values once parsed.
//! Relative paths are taken relative to the working directory, as C tor does.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

/// Default for [`Config::onion_key_lifetime_days`].
pub const DEFAULT_ONION_KEY_LIFETIME_DAYS: u32 = 7;
/// Default for [`Config::onion_key_grace_days`].
pub const DEFAULT_ONION_KEY_GRACE_DAYS: u32 = 7;
/// Longest onion key lifetime accepted (C tor's `OnionKeyRotationDays` maximum).
pub const MAX_ONION_KEY_LIFETIME_DAYS: u32 = 90;
/// Longest Tor nickname (tor-spec / dir-spec: 1 to 19 alphanumeric characters).
pub const MAX_NICKNAME_LEN: usize = 19;
/// Largest number of streams a circuit can carry: stream IDs are 16 bits and 0 is reserved.
pub const MAX_STREAM_IDS: u32 = 65_535;
/// Largest number of circuits a link can carry with 4-byte circuit IDs: the high bit is
/// chosen by the side that creates the circuit, and 0 is reserved.
pub const MAX_CIRCUIT_IDS: u32 = 0x7fff_ffff;

/// Why a configuration file could not be used.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not valid TOML, or does not match the expected fields and types.
    #[error("invalid configuration: {0}")]
    Parse(#[from] toml::de::Error),
    /// `nickname` is not 1 to 19 ASCII letters and digits.
    #[error("nickname {0:?} must be 1 to 19 ASCII letters and digits")]
    BadNickname(String),
    /// `data_dir` is empty.
    #[error("data_dir must not be empty")]
    EmptyDataDir,
    /// `address` is neither an IP address nor a host name.
    #[error("address {0:?} is neither an IP address nor a DNS host name")]
    BadAddress(String),
    /// No listener is configured.
    #[error(
        "no listener configured: set at least one of listeners.ws, listeners.wss, listeners.or_port"
    )]
    NoListener,
    /// Two listeners (or a listener and the metrics endpoint) have the same address.
    #[error("{first} and {second} both use {addr}")]
    DuplicateAddress {
        /// The address.
        addr: SocketAddr,
        /// The first field that uses it.
        first: &'static str,
        /// The second field that uses it.
        second: &'static str,
    },
    /// A path that must be set is empty.
    #[error("{0} must not be empty")]
    EmptyPath(&'static str),
    /// An entry of `exit.policy` is not `accept|reject|accept6|reject6 PATTERN`.
    #[error("exit.policy entry {entry:?}: {reason}")]
    BadExitPolicy {
        /// The offending entry.
        entry: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A `limits` value is out of range.
    #[error("limits.{field} = {value}: {reason}")]
    BadLimit {
        /// The field.
        field: &'static str,
        /// Its value.
        value: u64,
        /// The accepted range.
        reason: &'static str,
    },
    /// `onion_key_lifetime_days` or `onion_key_grace_days` is out of range.
    #[error("{field} = {value}: {reason}")]
    BadKeyDays {
        /// The field.
        field: &'static str,
        /// Its value.
        value: u32,
        /// The accepted range.
        reason: &'static str,
    },
    /// A `[directory]` value is missing or out of range.
    #[error("directory.{field}: {reason}")]
    BadDirectory {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A `[descriptor]` value is out of range.
    #[error("descriptor.{field}: {reason}")]
    BadDescriptor {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// An `[authority]` or `[publish]` value is out of range.
    #[error("authority: {field}: {reason}")]
    BadAuthority {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// `bridge = true` without what a bridge needs.
    #[error("bridge = true needs {0}")]
    BridgeNeeds(&'static str),
    /// `log_level` is not a level or a tracing filter directive.
    #[error("log_level {level:?}: {reason}")]
    BadLogLevel {
        /// The value given.
        level: String,
        /// The parser's complaint.
        reason: String,
    },
}

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The relay's nickname: 1 to 19 ASCII letters and digits. Required.
    pub nickname: String,
    /// Directory for keys and state; created with mode 0700 if missing (keys go in its `keys`
    /// subdirectory). Required.
    pub data_dir: PathBuf,
    /// The IP address or host name to advertise to clients and other relays. Optional: when
    /// absent, the address is taken from the listeners.
    #[serde(default)]
    pub address: Option<String>,
    /// The sockets to listen on. At least one listener is required.
    pub listeners: Listeners,
    /// Exit (stream) settings. Default: not an exit.
    #[serde(default)]
    pub exit: ExitConfig,
    /// Resource limits. Every field has a default.
    #[serde(default)]
    pub limits: Limits,
    /// Days a TAP/ntor onion key is used before it is replaced (default 7, at most 90).
    #[serde(default = "default_onion_key_lifetime_days")]
    pub onion_key_lifetime_days: u32,
    /// Days a replaced onion key is still accepted for handshakes from clients with an old
    /// descriptor (default 7, 1 to `onion_key_lifetime_days`).
    #[serde(default = "default_onion_key_grace_days")]
    pub onion_key_grace_days: u32,
    /// Address of the Prometheus `GET /metrics` endpoint. Default: no endpoint. Keep it on
    /// a loopback or private address: the counters are not secret, but they are not public.
    #[serde(default)]
    pub metrics: Option<SocketAddr>,
    /// The seed's (node-Tor) compatibility modes, which weaken anonymity; all off by default.
    #[serde(default)]
    pub seed: SeedConfig,
    /// Extend circuits to relays at loopback, private or other internal addresses (C tor's
    /// `ExtendAllowPrivateAddresses`). Default false: such EXTEND2 cells close the circuit.
    /// Only for test networks on one machine or a private network.
    #[serde(default)]
    pub extend_allow_private: bool,
    /// Log filter: a level (`error`, `warn`, `info`, `debug`, `trace`) or a `tracing`
    /// filter directive such as `info,or_server=debug`. Default `info`. The `RUST_LOG`
    /// environment variable, when set, takes precedence.
    #[serde(default = "default_log_level")]
    pub log_level: String,
    /// Write client IP addresses in logs. Default false: they are replaced by `[scrubbed]`
    /// (C tor's `SafeLogging`).
    #[serde(default)]
    pub log_client_addresses: bool,
    /// Run as a bridge: our server descriptor carries `bridge-distribution-request none`
    /// and is served to bridge clients (`/tor/server/authority` over BEGIN_DIR), who also
    /// fetch their directory from us. Needs `listeners.or_port`, an IPv4 address to
    /// advertise and `[directory]`. Default false.
    #[serde(default)]
    pub bridge: bool,
    /// What our server descriptor says besides keys and addresses. Every field has a
    /// default.
    #[serde(default)]
    pub descriptor: DescriptorConfig,
    /// The Tor network whose directory we cache and serve over BEGIN_DIR. Default: none
    /// (directory requests other than our own descriptor get 404).
    #[serde(default)]
    pub directory: Option<DirectoryConfig>,
    /// Be the authority of an own network (`[authority]`): accept the server descriptors
    /// of its ORs, health-check them and serve the signed relay list. Default: none.
    #[serde(default)]
    pub authority: Option<AuthorityConfig>,
    /// Publish our server descriptor to an own network's authority (`[publish]`).
    /// Default: none.
    #[serde(default)]
    pub publish: Option<PublishConfig>,
}

/// The own network's authority (`[authority]`); see [`crate::authority`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorityConfig {
    /// The network's name (1-64 characters `A-Z a-z 0-9 . _ -`), as in the network
    /// description. Required.
    pub network: String,
    /// The authority's plain HTTP listener: `GET /onion/relay-list` (the signed list) and
    /// `POST /onion/publish` (ORs' descriptors). Required.
    pub http: SocketAddr,
    /// Seconds between two health checks of every OR, and between two lists (1 to 86400,
    /// default 60).
    #[serde(default = "default_check_interval_secs")]
    pub check_interval_secs: u64,
    /// Seconds a signed list is valid after it is made (at least `check_interval_secs`,
    /// at most 7 days; default 10800).
    #[serde(default = "default_list_lifetime_secs")]
    pub list_lifetime_secs: u64,
    /// Where the exit check opens a stream (`"host:port"`, an HTTP server: a `GET /` must
    /// get an HTTP answer). Default: the authority's own HTTP listener.
    #[serde(default)]
    pub check_target: Option<String>,
    /// RSA fingerprints (40 hex digits) of the only ORs whose descriptors are accepted.
    /// Default: empty, any OR that passes the checks is listed.
    #[serde(default)]
    pub allow: Vec<String>,
}

/// Where our descriptor is published (`[publish]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishConfig {
    /// The authority's HTTP listener, `"ip:port"`. Required.
    pub authority: SocketAddr,
    /// Seconds between two publications (1 to 86400, default 600).
    #[serde(default = "default_publish_interval_secs")]
    pub interval_secs: u64,
    /// The `ws://` or `wss://` URL clients use for our WebSocket listener (the authority
    /// checks it before listing it). Default: `ws://ADDRESS:PORT/` from `address` and
    /// `listeners.ws`, if both are known.
    #[serde(default)]
    pub ws_url: Option<String>,
}

fn default_check_interval_secs() -> u64 {
    60
}
fn default_list_lifetime_secs() -> u64 {
    3 * 3600
}
fn default_publish_interval_secs() -> u64 {
    600
}

impl AuthorityConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, reason: &str| ConfigError::BadAuthority {
            field,
            reason: reason.to_owned(),
        };
        let n = &self.network;
        if n.is_empty()
            || n.len() > 64
            || !n
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return Err(bad("network", "must be 1-64 characters A-Z a-z 0-9 . _ -"));
        }
        if !(1..=86_400).contains(&self.check_interval_secs) {
            return Err(bad("check_interval_secs", "must be 1 to 86400"));
        }
        if self.list_lifetime_secs < self.check_interval_secs
            || self.list_lifetime_secs > 7 * 86_400
        {
            return Err(bad(
                "list_lifetime_secs",
                "must be check_interval_secs to 604800",
            ));
        }
        if let Some(t) = &self.check_target {
            let ok = t
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p != 0));
            if !ok {
                return Err(bad("check_target", "must be \"host:port\""));
            }
        }
        for f in &self.allow {
            if f.len() != 40 || onion_core::certs::RsaIdentity::from_hex(f).is_none() {
                return Err(ConfigError::BadAuthority {
                    field: "allow",
                    reason: format!("{f:?}: not 40 hex digits"),
                });
            }
        }
        Ok(())
    }
}

impl PublishConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, reason: &str| ConfigError::BadAuthority {
            field,
            reason: reason.to_owned(),
        };
        if !(1..=86_400).contains(&self.interval_secs) {
            return Err(bad("publish.interval_secs", "must be 1 to 86400"));
        }
        if let Some(u) = &self.ws_url {
            match onion_core::netdesc::WebUrl::parse(u) {
                Ok(url) if url.scheme().is_websocket() => {}
                _ => return Err(bad("publish.ws_url", "must be a ws:// or wss:// URL")),
            }
        }
        Ok(())
    }
}

/// What our server descriptor claims (`[descriptor]`), dir-spec §2.1.1.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DescriptorConfig {
    /// The `contact` line (C tor's `ContactInfo`). Default: none.
    #[serde(default)]
    pub contact: Option<String>,
    /// The bandwidth we claim to sustain, bytes per second (the descriptor's "average";
    /// not enforced). Default 1 GiB/s, C tor's `BandwidthRate`.
    #[serde(default = "default_bandwidth")]
    pub bandwidth_average: u64,
    /// The burst we claim, bytes per second (at least `bandwidth_average`; not enforced).
    /// Default 1 GiB/s, C tor's `BandwidthBurst`.
    #[serde(default = "default_bandwidth")]
    pub bandwidth_burst: u64,
}

impl Default for DescriptorConfig {
    fn default() -> Self {
        DescriptorConfig {
            contact: None,
            bandwidth_average: default_bandwidth(),
            bandwidth_burst: default_bandwidth(),
        }
    }
}

/// The directory cache (`[directory]`): where to fetch the consensus, its certificates and
/// the microdescriptors, and which authorities must sign.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryConfig {
    /// The directory authorities' DirPorts (plain HTTP). Required, at least one.
    pub authorities: Vec<SocketAddr>,
    /// The v3 identity fingerprints (40 hex digits, C tor's `v3ident`) of the authorities
    /// whose signatures count: a consensus is served only if more than half of them signed
    /// it. Required, at least one.
    pub v3idents: Vec<String>,
    /// Longest time between two consensus fetches, in seconds (10 to 86400, default 3600).
    /// A new consensus is normally fetched in the first half-interval after the current one
    /// stops being fresh (dir-spec §4.1), whichever comes first.
    #[serde(default = "default_refresh_secs")]
    pub refresh_secs: u64,
    /// Wait after a failed fetch, in seconds (1 to 3600, default 60).
    #[serde(default = "default_retry_secs")]
    pub retry_secs: u64,
}

impl DirectoryConfig {
    /// The v3 identities (checked by [`Config::validate`]; unparsable entries are skipped).
    pub fn v3ident_ids(&self) -> Vec<onion_core::certs::RsaIdentity> {
        self.v3idents
            .iter()
            .filter_map(|s| onion_core::certs::RsaIdentity::from_hex(s))
            .collect()
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, reason: &str| ConfigError::BadDirectory {
            field,
            reason: reason.to_owned(),
        };
        if self.authorities.is_empty() {
            return Err(bad("authorities", "at least one DirPort address is needed"));
        }
        for (i, a) in self.authorities.iter().enumerate() {
            if a.port() == 0 || self.authorities.iter().skip(i + 1).any(|b| b == a) {
                return Err(ConfigError::BadDirectory {
                    field: "authorities",
                    reason: format!("{a}: port 0 or listed twice"),
                });
            }
        }
        if self.v3idents.is_empty() {
            return Err(bad("v3idents", "at least one v3 identity is needed"));
        }
        let ids = self.v3ident_ids();
        for (i, s) in self.v3idents.iter().enumerate() {
            let ok = s.len() == 40 && onion_core::certs::RsaIdentity::from_hex(s).is_some();
            let id = ids.get(i);
            if !ok || ids.iter().skip(i + 1).any(|b| Some(b) == id) {
                return Err(ConfigError::BadDirectory {
                    field: "v3idents",
                    reason: format!("{s:?}: not 40 hex digits, or listed twice"),
                });
            }
        }
        if !(10..=86_400).contains(&self.refresh_secs) {
            return Err(bad("refresh_secs", "must be 10 to 86400"));
        }
        if !(1..=3600).contains(&self.retry_secs) {
            return Err(bad("retry_secs", "must be 1 to 3600"));
        }
        Ok(())
    }
}

impl DescriptorConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, reason| ConfigError::BadDescriptor { field, reason };
        if let Some(c) = &self.contact
            && (c.is_empty() || c.len() > MAX_CONTACT_LEN || c.chars().any(char::is_control))
        {
            return Err(bad(
                "contact",
                "must be 1 to 1000 bytes without control characters",
            ));
        }
        if self.bandwidth_average == 0 {
            return Err(bad("bandwidth_average", "must be at least 1"));
        }
        if self.bandwidth_burst < self.bandwidth_average {
            return Err(bad("bandwidth_burst", "must be at least bandwidth_average"));
        }
        Ok(())
    }
}

/// Longest `descriptor.contact`.
pub const MAX_CONTACT_LEN: usize = 1000;

/// The sockets to listen on (`[listeners]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listeners {
    /// Plain WebSocket listener for in-page OPs (`ws://`). Default: none.
    #[serde(default)]
    pub ws: Option<SocketAddr>,
    /// WebSocket over TLS listener (`wss://`), with a certificate browsers accept. Default:
    /// none.
    #[serde(default)]
    pub wss: Option<WssListener>,
    /// Tor link protocol listener (TLS, the ORPort), for C tor relays and clients. Default:
    /// none.
    #[serde(default)]
    pub or_port: Option<SocketAddr>,
}

/// A `wss://` listener (`[listeners.wss]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WssListener {
    /// The socket address to listen on.
    pub addr: SocketAddr,
    /// PEM file with the certificate chain, leaf first.
    pub cert_pem: PathBuf,
    /// PEM file with the certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key_pem: PathBuf,
}

/// Exit settings (`[exit]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExitConfig {
    /// Open streams to the Internet (RELAY_BEGIN). Default false.
    #[serde(default)]
    pub enabled: bool,
    /// Tor `ExitPolicy` syntax: comma-separated `accept|reject|accept6|reject6 ADDR[:PORTS]`
    /// entries, first match wins. Default `reject *:*`. Only the entry keywords are checked
    /// here; the full parse is the core's.
    #[serde(default = "default_exit_policy")]
    pub policy: String,
    /// Allow streams to loopback, private, link-local and other internal destinations.
    /// Default false: such destinations are refused whatever the policy says.
    #[serde(default)]
    pub allow_internal: bool,
    /// Open streams on circuits for which this relay is the first hop (a client's one-hop
    /// circuit, or CREATE_FAST). Default false: such BEGINs get END (TORPROTOCOL), as in
    /// C tor, which refuses to be a single-hop proxy.
    #[serde(default)]
    pub allow_single_hop: bool,
}

impl Default for ExitConfig {
    fn default() -> Self {
        ExitConfig {
            enabled: false,
            policy: default_exit_policy(),
            allow_internal: false,
            allow_single_hop: false,
        }
    }
}

/// Resource limits (`[limits]`). The defaults size queues from the Tor flow-control
/// windows: a stream may have 500 cells of 498 data bytes in flight, a circuit 1000.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Most simultaneous links (Tor TLS, ws and wss together). Default 4096.
    #[serde(default = "default_max_links")]
    pub max_links: u32,
    /// Most circuits on one link. Default 1024, at most 2^31 - 1.
    #[serde(default = "default_max_circuits_per_link")]
    pub max_circuits_per_link: u32,
    /// Most streams on one circuit. Default 512, at most 65535.
    #[serde(default = "default_max_streams_per_circuit")]
    pub max_streams_per_circuit: u32,
    /// Most bytes queued for one stream before reading from it stops. Default 256 KiB
    /// (one stream window of 500 cells x 498 bytes, rounded up).
    #[serde(default = "default_max_queued_bytes_per_stream")]
    pub max_queued_bytes_per_stream: u64,
    /// Most bytes queued for one link before reading from the links and streams that feed
    /// it stops. Default 8 MiB. At least `max_queued_bytes_per_stream`.
    #[serde(default = "default_max_queued_bytes_per_link")]
    pub max_queued_bytes_per_link: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_links: default_max_links(),
            max_circuits_per_link: default_max_circuits_per_link(),
            max_streams_per_circuit: default_max_streams_per_circuit(),
            max_queued_bytes_per_stream: default_max_queued_bytes_per_stream(),
            max_queued_bytes_per_link: default_max_queued_bytes_per_link(),
        }
    }
}

/// The seed's compatibility modes (`[seed]`); see the README's "What each party can learn".
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedConfig {
    /// Answer RELAY_INFO requests: compute RSA/DH values for in-page clients. The first OR
    /// then learns the keys of the hops it computed. Default false.
    #[serde(default)]
    pub relay_info: bool,
    /// Accept CREATE_FAST_WS (hop 1 authenticated only by the transport and the TAP onion
    /// key) on WebSocket links. Default false.
    #[serde(default)]
    pub create_fast_ws: bool,
    /// The seed's WS_OP_SOCKS: a SOCKS5 listener whose CONNECTs to a fake domain (or a
    /// subdomain of it) are relayed as RELAY_WS streams to the in-page OP that associated that
    /// domain (see [`crate::seed`]). Keep it on loopback: whoever reaches it browses through
    /// that page. Default: none.
    #[serde(default)]
    pub ws_op_socks: Option<SocketAddr>,
}

fn default_onion_key_lifetime_days() -> u32 {
    DEFAULT_ONION_KEY_LIFETIME_DAYS
}
fn default_onion_key_grace_days() -> u32 {
    DEFAULT_ONION_KEY_GRACE_DAYS
}
fn default_bandwidth() -> u64 {
    1 << 30
}
fn default_refresh_secs() -> u64 {
    3600
}
fn default_retry_secs() -> u64 {
    60
}
fn default_log_level() -> String {
    "info".to_owned()
}
fn default_exit_policy() -> String {
    "reject *:*".to_owned()
}
fn default_max_links() -> u32 {
    4096
}
fn default_max_circuits_per_link() -> u32 {
    1024
}
fn default_max_streams_per_circuit() -> u32 {
    512
}
fn default_max_queued_bytes_per_stream() -> u64 {
    256 * 1024
}
fn default_max_queued_bytes_per_link() -> u64 {
    8 * 1024 * 1024
}

impl Config {
    /// Read, parse and validate a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml_str(&text)
    }

    /// Parse and validate a configuration given as TOML text.
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    /// Check the values: the first problem found is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_nickname(&self.nickname)?;
        if self.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::EmptyDataDir);
        }
        if let Some(address) = &self.address {
            check_address(address)?;
        }
        self.check_listeners()?;
        check_exit_policy(&self.exit.policy)?;
        self.limits.validate()?;
        self.check_key_days()?;
        check_log_level(&self.log_level)?;
        self.descriptor.validate()?;
        if let Some(d) = &self.directory {
            d.validate()?;
        }
        if let Some(a) = &self.authority {
            a.validate()?;
            if self.listeners.or_port.is_none() {
                return Err(ConfigError::BadAuthority {
                    field: "listeners.or_port",
                    reason: "an authority needs an ORPort (its exit checks start there)".into(),
                });
            }
        }
        if let Some(p) = &self.publish {
            p.validate()?;
        }
        if self.bridge {
            if self.listeners.or_port.is_none() {
                return Err(ConfigError::BridgeNeeds("listeners.or_port"));
            }
            if self.advertised_ipv4().is_none() {
                return Err(ConfigError::BridgeNeeds(
                    "an IPv4 address to advertise (address, or or_port on a specific IPv4 address)",
                ));
            }
            if self.directory.is_none() {
                return Err(ConfigError::BridgeNeeds(
                    "[directory] (bridge clients fetch their directory from their bridge)",
                ));
            }
        }
        Ok(())
    }

    /// The IPv4 address our server descriptor advertises: `address` if it is an IPv4
    /// address, else the ORPort listener's address if it is a specific IPv4 address.
    pub fn advertised_ipv4(&self) -> Option<std::net::Ipv4Addr> {
        if let Some(a) = &self.address {
            return match a.parse::<IpAddr>() {
                Ok(IpAddr::V4(v4)) => Some(v4),
                _ => None,
            };
        }
        match self.listeners.or_port.map(|a| a.ip()) {
            Some(IpAddr::V4(v4)) if !v4.is_unspecified() => Some(v4),
            _ => None,
        }
    }

    /// The onion key rotation period and grace period, in seconds.
    pub fn onion_key_rotation(&self) -> (u64, u64) {
        (
            u64::from(self.onion_key_lifetime_days) * 86_400,
            u64::from(self.onion_key_grace_days) * 86_400,
        )
    }

    fn check_listeners(&self) -> Result<(), ConfigError> {
        let l = &self.listeners;
        if l.ws.is_none() && l.wss.is_none() && l.or_port.is_none() {
            return Err(ConfigError::NoListener);
        }
        if let Some(wss) = &l.wss {
            if wss.cert_pem.as_os_str().is_empty() {
                return Err(ConfigError::EmptyPath("listeners.wss.cert_pem"));
            }
            if wss.key_pem.as_os_str().is_empty() {
                return Err(ConfigError::EmptyPath("listeners.wss.key_pem"));
            }
        }
        let named = [
            ("listeners.ws", l.ws),
            ("listeners.wss.addr", l.wss.as_ref().map(|w| w.addr)),
            ("listeners.or_port", l.or_port),
            ("metrics", self.metrics),
        ];
        let mut seen: Vec<(SocketAddr, &'static str)> = Vec::new();
        for (name, addr) in named {
            // Port 0 asks the OS for a free port: such addresses never collide.
            let Some(addr) = addr.filter(|a| a.port() != 0) else {
                continue;
            };
            if let Some((_, first)) = seen.iter().find(|(a, _)| *a == addr) {
                return Err(ConfigError::DuplicateAddress {
                    addr,
                    first,
                    second: name,
                });
            }
            seen.push((addr, name));
        }
        Ok(())
    }

    fn check_key_days(&self) -> Result<(), ConfigError> {
        let lifetime = self.onion_key_lifetime_days;
        if lifetime == 0 || lifetime > MAX_ONION_KEY_LIFETIME_DAYS {
            return Err(ConfigError::BadKeyDays {
                field: "onion_key_lifetime_days",
                value: lifetime,
                reason: "must be 1 to 90",
            });
        }
        let grace = self.onion_key_grace_days;
        if grace == 0 || grace > lifetime {
            return Err(ConfigError::BadKeyDays {
                field: "onion_key_grace_days",
                value: grace,
                reason: "must be 1 to onion_key_lifetime_days",
            });
        }
        Ok(())
    }
}

impl Limits {
    /// Check the ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, value, reason| ConfigError::BadLimit {
            field,
            value,
            reason,
        };
        if self.max_links == 0 {
            return Err(bad("max_links", 0, "must be at least 1"));
        }
        if self.max_circuits_per_link == 0 || self.max_circuits_per_link > MAX_CIRCUIT_IDS {
            return Err(bad(
                "max_circuits_per_link",
                self.max_circuits_per_link.into(),
                "must be 1 to 2147483647",
            ));
        }
        if self.max_streams_per_circuit == 0 || self.max_streams_per_circuit > MAX_STREAM_IDS {
            return Err(bad(
                "max_streams_per_circuit",
                self.max_streams_per_circuit.into(),
                "must be 1 to 65535",
            ));
        }
        // One full relay cell of data must fit, or a stream can never make progress.
        if self.max_queued_bytes_per_stream < 498 {
            return Err(bad(
                "max_queued_bytes_per_stream",
                self.max_queued_bytes_per_stream,
                "must be at least 498 (one relay cell of data)",
            ));
        }
        if self.max_queued_bytes_per_link < self.max_queued_bytes_per_stream {
            return Err(bad(
                "max_queued_bytes_per_link",
                self.max_queued_bytes_per_link,
                "must be at least max_queued_bytes_per_stream",
            ));
        }
        Ok(())
    }
}

fn check_nickname(nickname: &str) -> Result<(), ConfigError> {
    let ok = (1..=MAX_NICKNAME_LEN).contains(&nickname.len())
        && nickname.bytes().all(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(ConfigError::BadNickname(nickname.to_owned()))
    }
}

/// An IP address, or a DNS name of letter/digit/hyphen labels (RFC 1123), at most 253
/// characters, whose last label is not all digits.
fn check_address(address: &str) -> Result<(), ConfigError> {
    if address.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let bad = || ConfigError::BadAddress(address.to_owned());
    let name = address.strip_suffix('.').unwrap_or(address);
    if name.is_empty() || name.len() > 253 {
        return Err(bad());
    }
    let mut last = "";
    for label in name.split('.') {
        let ok = (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(bad());
        }
        last = label;
    }
    if last.bytes().all(|b| b.is_ascii_digit()) {
        // "1.2.3" or "999.1.1.1": a mistyped IP address, not a host name.
        return Err(bad());
    }
    Ok(())
}

/// Checks that each comma-separated entry is a keyword and one pattern. The patterns are
/// parsed by the core's policy module when the exit is built.
fn check_exit_policy(policy: &str) -> Result<(), ConfigError> {
    let mut entries = 0usize;
    for raw in policy.split(',') {
        let entry = raw.trim();
        let bad = |reason| ConfigError::BadExitPolicy {
            entry: entry.to_owned(),
            reason,
        };
        if entry.is_empty() {
            return Err(bad("empty entry"));
        }
        let mut words = entry.split_whitespace();
        let keyword = words.next().unwrap_or_default();
        if !matches!(keyword, "accept" | "reject" | "accept6" | "reject6") {
            return Err(bad("must start with accept, reject, accept6 or reject6"));
        }
        if words.next().is_none() {
            return Err(bad("missing address pattern"));
        }
        if words.next().is_some() {
            return Err(bad("one address pattern per entry"));
        }
        entries += 1;
    }
    if entries == 0 {
        return Err(ConfigError::BadExitPolicy {
            entry: String::new(),
            reason: "empty policy",
        });
    }
    Ok(())
}

fn check_log_level(level: &str) -> Result<(), ConfigError> {
    let bad = |reason: String| ConfigError::BadLogLevel {
        level: level.to_owned(),
        reason,
    };
    // EnvFilter reads a bare word that is not a level as a target name ("verbose" would
    // enable everything for a target called verbose): insist on levels or target=level.
    for directive in level.split(',').map(str::trim) {
        let is_level = LOG_LEVELS.iter().any(|l| l.eq_ignore_ascii_case(directive));
        if !is_level && !directive.contains('=') {
            return Err(bad(format!(
                "{directive:?} is not a level (error, warn, info, debug, trace, off) nor target=level"
            )));
        }
    }
    tracing_subscriber::EnvFilter::try_new(level)
        .map(drop)
        .map_err(|e| bad(e.to_string()))
}

/// The level names accepted in `log_level`.
const LOG_LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

#[cfg(test)]
mod test {
    use super::*;

    const MINIMAL: &str = r#"
nickname = "Tiny"
data_dir = "/tmp/x"
[listeners]
ws = "127.0.0.1:9080"
"#;

    /// `MINIMAL` with `extra` appended at top level (before `[listeners]`).
    fn with_top(extra: &str) -> String {
        format!(
            "nickname = \"Tiny\"\ndata_dir = \"/tmp/x\"\n{extra}\n[listeners]\nws = \"127.0.0.1:9080\"\n"
        )
    }

    #[test]
    fn example_file_parses() {
        let text = include_str!("../or.example.toml");
        let c = Config::from_toml_str(text).unwrap();
        assert_eq!(c.nickname, "ExampleOR");
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/or-server"));
        assert_eq!(c.address.as_deref(), Some("127.0.0.1"));
        assert_eq!(c.listeners.ws, Some("127.0.0.1:9080".parse().unwrap()));
        assert_eq!(c.listeners.or_port, Some("127.0.0.1:9001".parse().unwrap()));
        let wss = c.listeners.wss.as_ref().unwrap();
        assert_eq!(wss.addr, "127.0.0.1:9443".parse().unwrap());
        assert_eq!(wss.cert_pem, PathBuf::from("/etc/or-server/wss-cert.pem"));
        assert_eq!(c.metrics, Some("127.0.0.1:9035".parse().unwrap()));
        assert_eq!(c.exit.policy, "accept *:80, accept *:443, reject *:*");
        assert!(!c.exit.enabled && !c.exit.allow_internal && !c.exit.allow_single_hop);
        assert!(!c.extend_allow_private);
        // The example spells out the defaults.
        assert_eq!(c.limits, Limits::default());
        assert_eq!(c.seed, SeedConfig::default());
        assert_eq!(c.descriptor, DescriptorConfig::default());
        assert!(!c.bridge);
        assert_eq!(c.directory, None);
        assert_eq!(c.onion_key_lifetime_days, DEFAULT_ONION_KEY_LIFETIME_DAYS);
        assert_eq!(c.onion_key_grace_days, DEFAULT_ONION_KEY_GRACE_DAYS);
        assert!(!c.log_client_addresses);
    }

    #[test]
    fn defaults() {
        let c = Config::from_toml_str(MINIMAL).unwrap();
        assert_eq!(c.address, None);
        assert_eq!(c.listeners.wss, None);
        assert_eq!(c.listeners.or_port, None);
        assert_eq!(c.metrics, None);
        assert_eq!(c.exit, ExitConfig::default());
        assert!(!c.exit.enabled);
        assert!(
            !c.exit.allow_internal,
            "internal destinations refused by default"
        );
        assert_eq!(c.exit.policy, "reject *:*");
        assert!(!c.exit.allow_single_hop, "no single-hop exits by default");
        assert!(
            !c.extend_allow_private,
            "no extending to private addresses by default"
        );
        assert_eq!(c.limits.max_links, 4096);
        assert_eq!(c.limits.max_circuits_per_link, 1024);
        assert_eq!(c.limits.max_streams_per_circuit, 512);
        assert_eq!(c.limits.max_queued_bytes_per_stream, 262_144);
        assert_eq!(c.limits.max_queued_bytes_per_link, 8_388_608);
        assert_eq!(c.onion_key_lifetime_days, 7);
        assert_eq!(c.onion_key_grace_days, 7);
        assert_eq!(c.onion_key_rotation(), (7 * 86_400, 7 * 86_400));
        assert!(!c.seed.relay_info);
        assert!(!c.seed.create_fast_ws);
        assert_eq!(c.log_level, "info");
        assert!(
            !c.log_client_addresses,
            "client addresses scrubbed by default"
        );
    }

    #[test]
    fn unknown_fields_rejected() {
        for text in [
            with_top("nick = \"x\""),
            format!("{MINIMAL}wsport = \"127.0.0.1:1\"\n"),
            format!("{MINIMAL}[exit]\nenable = true\n"),
            format!("{MINIMAL}[limits]\nmax_link = 3\n"),
            format!("{MINIMAL}[seed]\nrelayinfo = true\n"),
        ] {
            let err = Config::from_toml_str(&text).unwrap_err();
            assert!(matches!(err, ConfigError::Parse(_)), "{text}: {err}");
            assert!(err.to_string().contains("unknown field"), "{err}");
        }
    }

    #[test]
    fn wrong_types_and_missing_fields_rejected() {
        for text in [
            // Not a socket address.
            "nickname = \"a\"\ndata_dir = \"d\"\n[listeners]\nws = \"localhost\"\n".to_owned(),
            // Negative number.
            format!("{MINIMAL}[limits]\nmax_links = -1\n"),
            // Missing nickname.
            "data_dir = \"d\"\n[listeners]\nws = \"127.0.0.1:1\"\n".to_owned(),
            // Missing listeners table.
            "nickname = \"a\"\ndata_dir = \"d\"\n".to_owned(),
            // Not TOML.
            "nickname = ".to_owned(),
        ] {
            let err = Config::from_toml_str(&text).unwrap_err();
            assert!(matches!(err, ConfigError::Parse(_)), "{text}: {err}");
        }
    }

    #[test]
    fn nicknames() {
        for good in ["a", "Z9", "abcdefghijklmnopqrs"] {
            let text = MINIMAL.replace("Tiny", good);
            assert_eq!(Config::from_toml_str(&text).unwrap().nickname, good);
        }
        for bad in [
            "",
            "abcdefghijklmnopqrst",
            "with space",
            "dash-ed",
            "é",
            "a_b",
        ] {
            let text = MINIMAL.replace("Tiny", bad);
            let err = Config::from_toml_str(&text).unwrap_err();
            assert!(
                matches!(&err, ConfigError::BadNickname(n) if n == bad),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn data_dir_must_not_be_empty() {
        let text = MINIMAL.replace("/tmp/x", "");
        assert!(matches!(
            Config::from_toml_str(&text),
            Err(ConfigError::EmptyDataDir)
        ));
    }

    #[test]
    fn addresses() {
        for good in [
            "10.0.0.1",
            "::1",
            "relay.example.net",
            "relay.example.net.",
            "a-b.c",
        ] {
            let c = Config::from_toml_str(&with_top(&format!("address = \"{good}\""))).unwrap();
            assert_eq!(c.address.as_deref(), Some(good));
        }
        for bad in [
            "",
            "1.2.3",
            "999.1.1.1",
            "-a.net",
            "a-.net",
            "a..b",
            "under_score.net",
            "a b",
        ] {
            let err =
                Config::from_toml_str(&with_top(&format!("address = \"{bad}\""))).unwrap_err();
            assert!(
                matches!(&err, ConfigError::BadAddress(a) if a == bad),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn listeners_required() {
        let text = "nickname = \"a\"\ndata_dir = \"d\"\n[listeners]\n";
        assert!(matches!(
            Config::from_toml_str(text),
            Err(ConfigError::NoListener)
        ));
    }

    #[test]
    fn duplicate_addresses_rejected() {
        let text = "nickname = \"a\"\ndata_dir = \"d\"\n[listeners]\nws = \"127.0.0.1:9000\"\nor_port = \"127.0.0.1:9000\"\n";
        match Config::from_toml_str(text).unwrap_err() {
            ConfigError::DuplicateAddress {
                addr,
                first,
                second,
            } => {
                assert_eq!(addr, "127.0.0.1:9000".parse().unwrap());
                assert_eq!((first, second), ("listeners.ws", "listeners.or_port"));
            }
            e => panic!("{e}"),
        }
        let text = "nickname = \"a\"\ndata_dir = \"d\"\nmetrics = \"127.0.0.1:9000\"\n[listeners]\nws = \"127.0.0.1:9000\"\n";
        assert!(matches!(
            Config::from_toml_str(text),
            Err(ConfigError::DuplicateAddress {
                second: "metrics",
                ..
            })
        ));
        // Port 0 (any free port) never collides.
        let text = "nickname = \"a\"\ndata_dir = \"d\"\nmetrics = \"127.0.0.1:0\"\n[listeners]\nws = \"127.0.0.1:0\"\nor_port = \"127.0.0.1:0\"\n";
        Config::from_toml_str(text).unwrap();
    }

    #[test]
    fn wss_paths_required() {
        let text = format!(
            "{MINIMAL}[listeners.wss]\naddr = \"127.0.0.1:9443\"\ncert_pem = \"\"\nkey_pem = \"k\"\n"
        );
        assert!(matches!(
            Config::from_toml_str(&text),
            Err(ConfigError::EmptyPath("listeners.wss.cert_pem"))
        ));
        let text = format!(
            "{MINIMAL}[listeners.wss]\naddr = \"127.0.0.1:9443\"\ncert_pem = \"c\"\nkey_pem = \"\"\n"
        );
        assert!(matches!(
            Config::from_toml_str(&text),
            Err(ConfigError::EmptyPath("listeners.wss.key_pem"))
        ));
        // A missing path is a parse error.
        let text =
            format!("{MINIMAL}[listeners.wss]\naddr = \"127.0.0.1:9443\"\ncert_pem = \"c\"\n");
        assert!(matches!(
            Config::from_toml_str(&text),
            Err(ConfigError::Parse(_))
        ));
    }

    #[test]
    fn exit_policies() {
        for good in [
            "reject *:*",
            "accept *:80,accept *:443,reject *:*",
            " accept  10.0.0.0/8:* , reject6 [::]/0:* ",
        ] {
            let text = format!("{MINIMAL}[exit]\nenabled = true\npolicy = \"{good}\"\n");
            let c = Config::from_toml_str(&text).unwrap();
            assert_eq!(c.exit.policy, good);
            assert!(c.exit.enabled);
        }
        for (bad, entry, reason) in [
            ("", "", "empty entry"),
            ("accept *:80,", "", "empty entry"),
            (
                "allow *:80",
                "allow *:80",
                "must start with accept, reject, accept6 or reject6",
            ),
            ("accept", "accept", "missing address pattern"),
            (
                "accept *:80 *:443",
                "accept *:80 *:443",
                "one address pattern per entry",
            ),
        ] {
            let text = format!("{MINIMAL}[exit]\npolicy = \"{bad}\"\n");
            match Config::from_toml_str(&text).unwrap_err() {
                ConfigError::BadExitPolicy {
                    entry: e,
                    reason: r,
                } => {
                    assert_eq!((e.as_str(), r), (entry, reason), "{bad:?}");
                }
                e => panic!("{bad:?}: {e}"),
            }
        }
    }

    #[test]
    fn limits_ranges() {
        for (line, field) in [
            ("max_links = 0", "max_links"),
            ("max_circuits_per_link = 0", "max_circuits_per_link"),
            (
                "max_circuits_per_link = 2147483648",
                "max_circuits_per_link",
            ),
            ("max_streams_per_circuit = 0", "max_streams_per_circuit"),
            ("max_streams_per_circuit = 65536", "max_streams_per_circuit"),
            (
                "max_queued_bytes_per_stream = 497",
                "max_queued_bytes_per_stream",
            ),
            (
                "max_queued_bytes_per_stream = 1000\nmax_queued_bytes_per_link = 999",
                "max_queued_bytes_per_link",
            ),
        ] {
            let text = format!("{MINIMAL}[limits]\n{line}\n");
            match Config::from_toml_str(&text).unwrap_err() {
                ConfigError::BadLimit { field: f, .. } => assert_eq!(f, field, "{line}"),
                e => panic!("{line}: {e}"),
            }
        }
        let text = format!(
            "{MINIMAL}[limits]\nmax_links = 1\nmax_circuits_per_link = 2147483647\nmax_streams_per_circuit = 65535\nmax_queued_bytes_per_stream = 498\nmax_queued_bytes_per_link = 498\n"
        );
        let l = Config::from_toml_str(&text).unwrap().limits;
        assert_eq!(l.max_circuits_per_link, MAX_CIRCUIT_IDS);
        assert_eq!(l.max_streams_per_circuit, MAX_STREAM_IDS);
    }

    #[test]
    fn key_days() {
        let c = Config::from_toml_str(&with_top(
            "onion_key_lifetime_days = 28\nonion_key_grace_days = 28",
        ))
        .unwrap();
        assert_eq!(c.onion_key_rotation(), (28 * 86_400, 28 * 86_400));
        for (top, field, value) in [
            ("onion_key_lifetime_days = 0", "onion_key_lifetime_days", 0),
            (
                "onion_key_lifetime_days = 91",
                "onion_key_lifetime_days",
                91,
            ),
            ("onion_key_grace_days = 0", "onion_key_grace_days", 0),
            ("onion_key_grace_days = 8", "onion_key_grace_days", 8),
        ] {
            match Config::from_toml_str(&with_top(top)).unwrap_err() {
                ConfigError::BadKeyDays {
                    field: f, value: v, ..
                } => {
                    assert_eq!((f, v), (field, value));
                }
                e => panic!("{top}: {e}"),
            }
        }
    }

    #[test]
    fn log_levels() {
        for good in [
            "info",
            "DEBUG",
            "off",
            "warn,or_server=trace",
            "or_server::keys=debug",
        ] {
            let c = Config::from_toml_str(&with_top(&format!("log_level = \"{good}\""))).unwrap();
            assert_eq!(c.log_level, good);
        }
        for bad in ["verbose", "", "info,loud", "or_server=[[["] {
            let err =
                Config::from_toml_str(&with_top(&format!("log_level = \"{bad}\""))).unwrap_err();
            assert!(
                matches!(&err, ConfigError::BadLogLevel { level, .. } if level == bad),
                "{bad:?}: {err}"
            );
        }
    }

    const V3: &str = "27B6B5996C426270A5C95488AA5BCEB6BCC86956";
    const V3B: &str = "ED03BB616EB2F60BEC80151114BB25CEF515B226";

    fn with_directory(top: &str, listeners: &str, directory: &str) -> String {
        format!(
            "nickname = \"Tiny\"\ndata_dir = \"/tmp/x\"\n{top}\n[listeners]\n{listeners}\n[directory]\n{directory}\n"
        )
    }

    #[test]
    fn directory_section() {
        let dir = format!(
            "authorities = [\"127.0.0.1:7000\", \"127.0.0.1:7001\"]\nv3idents = [\"{V3}\", \"{}\"]\nretry_secs = 2",
            V3B.to_lowercase()
        );
        let c = Config::from_toml_str(&with_directory("", "ws = \"127.0.0.1:1\"", &dir)).unwrap();
        let d = c.directory.as_ref().unwrap();
        assert_eq!(d.authorities.len(), 2);
        assert_eq!((d.refresh_secs, d.retry_secs), (3600, 2));
        let ids: Vec<String> = d.v3ident_ids().iter().map(ToString::to_string).collect();
        assert_eq!(ids, [V3, V3B]);
        assert_eq!(Config::from_toml_str(MINIMAL).unwrap().directory, None);

        for (body, field) in [
            (
                format!("authorities = []\nv3idents = [\"{V3}\"]"),
                "authorities",
            ),
            (
                format!("authorities = [\"127.0.0.1:7\", \"127.0.0.1:7\"]\nv3idents = [\"{V3}\"]"),
                "authorities",
            ),
            (
                format!("authorities = [\"127.0.0.1:0\"]\nv3idents = [\"{V3}\"]"),
                "authorities",
            ),
            (
                "authorities = [\"127.0.0.1:7\"]\nv3idents = []".to_owned(),
                "v3idents",
            ),
            (
                "authorities = [\"127.0.0.1:7\"]\nv3idents = [\"abc\"]".to_owned(),
                "v3idents",
            ),
            (
                format!(
                    "authorities = [\"127.0.0.1:7\"]\nv3idents = [\"{V3}\", \"{}\"]",
                    V3.to_lowercase()
                ),
                "v3idents",
            ),
            (
                format!("authorities = [\"127.0.0.1:7\"]\nv3idents = [\"{V3}\"]\nrefresh_secs = 9"),
                "refresh_secs",
            ),
            (
                format!("authorities = [\"127.0.0.1:7\"]\nv3idents = [\"{V3}\"]\nretry_secs = 0"),
                "retry_secs",
            ),
        ] {
            let text = with_directory("", "ws = \"127.0.0.1:1\"", &body);
            match Config::from_toml_str(&text).unwrap_err() {
                ConfigError::BadDirectory { field: f, .. } => assert_eq!(f, field, "{body}"),
                e => panic!("{body}: {e}"),
            }
        }
        // Both lists are required, unknown fields are refused.
        for body in [
            "authorities = [\"127.0.0.1:7\"]".to_owned(),
            format!("v3idents = [\"{V3}\"]"),
            format!("authorities = [\"127.0.0.1:7\"]\nv3idents = [\"{V3}\"]\nrefresh = 10"),
        ] {
            let text = with_directory("", "ws = \"127.0.0.1:1\"", &body);
            assert!(matches!(
                Config::from_toml_str(&text),
                Err(ConfigError::Parse(_))
            ));
        }
    }

    #[test]
    fn descriptor_section() {
        let c = Config::from_toml_str(MINIMAL).unwrap();
        assert_eq!(c.descriptor, DescriptorConfig::default());
        assert_eq!(c.descriptor.bandwidth_average, 1 << 30);
        assert!(!c.bridge);
        let text = format!(
            "{MINIMAL}[descriptor]\ncontact = \"a@b\"\nbandwidth_average = 100\nbandwidth_burst = 200\n"
        );
        let d = Config::from_toml_str(&text).unwrap().descriptor;
        assert_eq!(
            (d.contact.as_deref(), d.bandwidth_average, d.bandwidth_burst),
            (Some("a@b"), 100, 200)
        );
        for (body, field) in [
            ("contact = \"\"", "contact"),
            ("contact = \"a\\nb\"", "contact"),
            ("bandwidth_average = 0", "bandwidth_average"),
            (
                "bandwidth_average = 10\nbandwidth_burst = 9",
                "bandwidth_burst",
            ),
        ] {
            let text = format!("{MINIMAL}[descriptor]\n{body}\n");
            match Config::from_toml_str(&text).unwrap_err() {
                ConfigError::BadDescriptor { field: f, .. } => assert_eq!(f, field, "{body}"),
                e => panic!("{body}: {e}"),
            }
        }
    }

    #[test]
    fn bridge_requirements() {
        let dir = format!("authorities = [\"127.0.0.1:7000\"]\nv3idents = [\"{V3}\"]");
        let ok = with_directory("bridge = true", "or_port = \"127.0.0.1:9001\"", &dir);
        let c = Config::from_toml_str(&ok).unwrap();
        assert!(c.bridge);
        assert_eq!(c.advertised_ipv4(), Some([127, 0, 0, 1].into()));
        for (text, needs) in [
            (
                with_directory("bridge = true", "ws = \"127.0.0.1:9001\"", &dir),
                "listeners.or_port",
            ),
            (
                with_directory("bridge = true", "or_port = \"0.0.0.0:9001\"", &dir),
                "an IPv4",
            ),
            (
                with_directory(
                    "bridge = true\naddress = \"relay.example.net\"",
                    "or_port = \"127.0.0.1:9001\"",
                    &dir,
                ),
                "an IPv4",
            ),
            (
                "nickname = \"a\"\ndata_dir = \"d\"\nbridge = true\n[listeners]\nor_port = \"127.0.0.1:9001\"\n"
                    .to_owned(),
                "[directory]",
            ),
        ] {
            match Config::from_toml_str(&text).unwrap_err() {
                ConfigError::BridgeNeeds(what) => assert!(what.starts_with(needs), "{what}"),
                e => panic!("{text}: {e}"),
            }
        }
        // An IPv4 `address` wins over the listener's.
        let text = with_directory(
            "bridge = true\naddress = \"192.0.2.7\"",
            "or_port = \"0.0.0.0:9001\"",
            &dir,
        );
        assert_eq!(
            Config::from_toml_str(&text).unwrap().advertised_ipv4(),
            Some([192, 0, 2, 7].into())
        );
    }

    #[test]
    fn load_reads_file_and_reports_missing_file() {
        let path =
            std::env::temp_dir().join(format!("or-server-config-test-{}.toml", std::process::id()));
        std::fs::write(&path, MINIMAL).unwrap();
        let c = Config::load(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(c.nickname, "Tiny");
        match Config::load(&path).unwrap_err() {
            ConfigError::Io { path: p, source } => {
                assert_eq!(p, path);
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
            }
            e => panic!("{e}"),
        }
    }
}

#[cfg(test)]
mod authority_config_test {
    use super::*;

    fn parse(extra: &str) -> Result<Config, ConfigError> {
        Config::from_toml_str(&format!(
            "nickname = \"a\"\ndata_dir = \"d\"\n[listeners]\nor_port = \"127.0.0.1:1\"\n{extra}\n"
        ))
    }

    #[test]
    fn authority_and_publish_sections() {
        let c = parse("[authority]\nnetwork = \"onion-dev\"\nhttp = \"127.0.0.1:9030\"").unwrap();
        let a = c.authority.unwrap();
        assert_eq!(
            (a.check_interval_secs, a.list_lifetime_secs),
            (60, 3 * 3600)
        );
        assert!(a.check_target.is_none() && a.allow.is_empty());
        let c =
            parse("[publish]\nauthority = \"127.0.0.1:9030\"\nws_url = \"wss://x.example/onion\"")
                .unwrap();
        assert_eq!(c.publish.unwrap().interval_secs, 600);
        let bad = [
            "[authority]\nnetwork = \"bad name\"\nhttp = \"127.0.0.1:9030\"",
            "[authority]\nnetwork = \"n\"\nhttp = \"127.0.0.1:9030\"\ncheck_interval_secs = 0",
            "[authority]\nnetwork = \"n\"\nhttp = \"127.0.0.1:9030\"\ncheck_interval_secs = 100\nlist_lifetime_secs = 50",
            "[authority]\nnetwork = \"n\"\nhttp = \"127.0.0.1:9030\"\ncheck_target = \"nohost\"",
            "[authority]\nnetwork = \"n\"\nhttp = \"127.0.0.1:9030\"\nallow = [\"XYZ\"]",
            "[publish]\nauthority = \"127.0.0.1:9030\"\nws_url = \"http://x/\"",
            "[publish]\nauthority = \"127.0.0.1:9030\"\ninterval_secs = 0",
        ];
        for b in bad {
            assert!(
                matches!(parse(b), Err(ConfigError::BadAuthority { .. })),
                "{b}"
            );
        }
        // An authority needs an ORPort.
        let no_or = Config::from_toml_str(
            "nickname = \"a\"\ndata_dir = \"d\"\n[listeners]\nws = \"127.0.0.1:1\"\n\
             [authority]\nnetwork = \"n\"\nhttp = \"127.0.0.1:9030\"\n",
        );
        assert!(matches!(no_or, Err(ConfigError::BadAuthority { .. })));
    }
}
