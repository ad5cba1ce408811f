//! Our server descriptor (dir-spec §2.1.1), built from the key store and the
//! configuration with [`ServerDescriptorBuilder`], and served over BEGIN_DIR by
//! [`crate::dir`] (`/tor/server/authority`, `/tor/server/fp/<our fingerprint>`,
//! `/tor/server/d/<its digest>`): what a C tor client fetches from its bridge.
//!
//! What goes in: the nickname; the advertised IPv4 address ([`Config::advertised_ipv4`]) and
//! the bound ORPort; the keys (RSA identity, Ed25519 identity and signing certificate, the
//! current TAP and ntor onion keys, with their cross-certificates); the exit policy of
//! `[exit]` (`reject *:*` when exits are off, `reject private:*` first unless
//! `allow_internal`); `[descriptor]`'s bandwidth claims and contact, with the observed
//! bandwidth measured here ([`BandwidthMeter`]); the uptime; `bridge-distribution-request
//! none` for a bridge; `tunnelled-dir-server` when we cache the directory. There is no
//! descriptor without an ORPort and an IPv4 address to advertise.
//!
//! It is rebuilt (published = now) when the onion keys rotate, when the signing
//! certificates are renewed, and at least every [`MAX_AGE`] seconds.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use onion_core::certs::RelaySigningMaterial;
use onion_core::dir::{Bandwidth, DirError, ServerDescriptor, ServerDescriptorBuilder};
use onion_core::policy::{ExitPolicy, PolicyError};
use thiserror::Error;

use crate::config::Config;
use crate::dir::Document;
use crate::keys::unix_secs;
use crate::router::{RelayKeysError, now_unix};
use crate::server::{ServerContext, os_rng};

/// Longest time a descriptor is served before a new one is made (C tor republishes every
/// 18 hours).
pub const MAX_AGE: u64 = 18 * 3600;
/// How often the rebuild conditions are checked and the bandwidth sampled.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(10);
/// Wait after a failed build before trying again.
const RETRY_AFTER_FAILURE: u64 = 600;
/// The observed bandwidth is the largest 10-second average over one or two of these
/// windows (C tor: over the last day).
const BANDWIDTH_WINDOW: u64 = 12 * 3600;

/// Why our descriptor could not be made.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DescriptorError {
    /// No ORPort listener: a descriptor advertises one.
    #[error("no ORPort listener (listeners.or_port)")]
    NoOrPort,
    /// No IPv4 address to advertise.
    #[error(
        "no IPv4 address to advertise: set `address` to one, or bind or_port to a specific one"
    )]
    NoAddress,
    /// The relay keys could not be made.
    #[error("{0}")]
    Keys(#[from] RelayKeysError),
    /// `exit.policy` does not parse.
    #[error("exit.policy: {0}")]
    Policy(#[from] PolicyError),
    /// The descriptor could not be encoded or signed.
    #[error("cannot make the descriptor: {0}")]
    Dir(#[from] DirError),
}

/// A signed descriptor of ours, ready to serve.
#[derive(Debug)]
pub struct OwnDescriptor {
    doc: Document,
    digest: [u8; 20],
    published: u64,
    onion_created: SystemTime,
    material: Arc<RelaySigningMaterial>,
}

impl OwnDescriptor {
    /// The text, and its zlib form.
    pub fn document(&self) -> &Document {
        &self.doc
    }

    /// The text.
    pub fn text(&self) -> &str {
        std::str::from_utf8(self.doc.plain()).unwrap_or_default()
    }

    /// Its digest (SHA-1 of the text through `router-signature\n`).
    pub fn digest(&self) -> &[u8; 20] {
        &self.digest
    }

    /// Its `published` time.
    pub fn published(&self) -> u64 {
        self.published
    }
}

/// Where the current descriptor is kept.
#[derive(Debug, Default)]
pub struct DescriptorSlot(RwLock<Option<Arc<OwnDescriptor>>>);

impl DescriptorSlot {
    /// The current descriptor, if there is one.
    pub fn get(&self) -> Option<Arc<OwnDescriptor>> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set(&self, d: OwnDescriptor) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(d));
    }
}

/// The exit policy we publish: `reject *:*` unless exits are enabled; else `exit.policy`,
/// after `reject private:*` unless `exit.allow_internal` (internal destinations are refused
/// whatever the policy says).
pub fn exit_policy(config: &Config) -> Result<ExitPolicy, PolicyError> {
    if !config.exit.enabled {
        return Ok(ExitPolicy::reject_all());
    }
    let policy = ExitPolicy::parse_config(&config.exit.policy)?;
    Ok(if config.exit.allow_internal {
        policy
    } else {
        policy.with_private_rejected()
    })
}

/// Build and sign a descriptor published at `now` that claims `observed` bytes per second.
pub fn build(
    ctx: &ServerContext,
    now: u64,
    observed: u64,
) -> Result<OwnDescriptor, DescriptorError> {
    let or_addr = ctx.or_addr.ok_or(DescriptorError::NoOrPort)?;
    let address = ctx
        .config
        .advertised_ipv4()
        .ok_or(DescriptorError::NoAddress)?;
    let keys = ctx.router.relay_keys(ctx)?;
    let (tap, ntor, onion_created) = {
        let store = ctx.keys.read().unwrap_or_else(PoisonError::into_inner);
        let onion = store.onion_keys();
        (
            onion.tap().clone(),
            onion.ntor_secret().clone(),
            store.onion_keys_created(),
        )
    };
    let d = &ctx.config.descriptor;
    let mut b = ServerDescriptorBuilder::new(&ctx.config.nickname, address, or_addr.port(), now);
    b.uptime = Some(now.saturating_sub(unix_secs(ctx.started)));
    b.bandwidth = Bandwidth {
        average: d.bandwidth_average,
        burst: d.bandwidth_burst,
        observed: observed.min(d.bandwidth_average),
    };
    b.exit_policy = exit_policy(&ctx.config)?;
    b.contact.clone_from(&d.contact);
    b.bridge_distribution_request = ctx.config.bridge.then(|| "none".to_owned());
    b.tunnelled_dir_server = ctx.config.directory.is_some();
    let text = b.sign(&keys.material, &tap, &ntor, &mut os_rng())?;
    let digest = *ServerDescriptor::parse(&text)?.digest();
    Ok(OwnDescriptor {
        doc: Document::new(text.into_bytes()),
        digest,
        published: now,
        onion_created,
        material: keys.material,
    })
}

/// Whether the descriptor `d` must be replaced at `now`.
fn stale(ctx: &ServerContext, d: &OwnDescriptor, now: u64) -> bool {
    if now >= d.published.saturating_add(MAX_AGE) {
        return true;
    }
    let onion_created = ctx
        .keys
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .onion_keys_created();
    if onion_created != d.onion_created {
        return true;
    }
    match ctx.router.relay_keys(ctx) {
        Ok(k) => !Arc::ptr_eq(&k.material, &d.material),
        Err(_) => false,
    }
}

/// Make a descriptor now if there is none or it is stale; returns whether one was made.
pub fn refresh(ctx: &ServerContext, now: u64, observed: u64) -> Result<bool, DescriptorError> {
    if ctx.descriptor.get().is_some_and(|d| !stale(ctx, &d, now)) {
        return Ok(false);
    }
    let d = build(ctx, now, observed)?;
    tracing::info!(
        published = %onion_core::dir::encode::format_time(d.published),
        digest = %hex::encode_upper(d.digest),
        bridge = ctx.config.bridge,
        "server descriptor made"
    );
    ctx.descriptor.set(d);
    Ok(true)
}

/// Keep the descriptor fresh until shutdown (returns at once if we cannot have one).
pub async fn run(ctx: Arc<ServerContext>) {
    if ctx.or_addr.is_none() || ctx.config.advertised_ipv4().is_none() {
        return;
    }
    let mut meter = BandwidthMeter::new(ctx.metrics.bytes_sent.get(), now_unix());
    let mut retry_at = 0u64;
    loop {
        tokio::select! {
            () = ctx.shutdown.wait() => return,
            () = tokio::time::sleep(CHECK_INTERVAL) => {}
        }
        let now = now_unix();
        meter.sample(ctx.metrics.bytes_sent.get(), now);
        if now < retry_at {
            continue;
        }
        if let Err(e) = refresh(&ctx, now, meter.observed()) {
            tracing::warn!("cannot make our server descriptor: {e}");
            retry_at = now.saturating_add(RETRY_AFTER_FAILURE);
        }
    }
}

/// The observed bandwidth: the largest average rate between two samples (taken every
/// [`CHECK_INTERVAL`]) over the current and the previous 12-hour window.
#[derive(Debug, Clone)]
pub struct BandwidthMeter {
    last_bytes: u64,
    last_at: u64,
    window_start: u64,
    current_max: u64,
    previous_max: u64,
}

impl BandwidthMeter {
    /// A meter starting from the byte counter `bytes` at `now`.
    pub fn new(bytes: u64, now: u64) -> Self {
        BandwidthMeter {
            last_bytes: bytes,
            last_at: now,
            window_start: now,
            current_max: 0,
            previous_max: 0,
        }
    }

    /// The byte counter reads `bytes` at `now`.
    pub fn sample(&mut self, bytes: u64, now: u64) {
        let Some(dt) = now.checked_sub(self.last_at).filter(|&dt| dt > 0) else {
            return;
        };
        let rate = bytes.saturating_sub(self.last_bytes) / dt;
        self.current_max = self.current_max.max(rate);
        self.last_bytes = bytes;
        self.last_at = now;
        if now >= self.window_start.saturating_add(BANDWIDTH_WINDOW) {
            self.previous_max = self.current_max;
            self.current_max = 0;
            self.window_start = now;
        }
    }

    /// Bytes per second, as published.
    pub fn observed(&self) -> u64 {
        self.current_max.max(self.previous_max)
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use onion_core::policy::IpFamily;
    use std::net::IpAddr;

    fn config(extra: &str) -> Config {
        Config::from_toml_str(&format!(
            "nickname = \"a\"\ndata_dir = \"d\"\n[listeners]\nws = \"127.0.0.1:1\"\n{extra}\n"
        ))
        .unwrap()
    }

    #[test]
    fn published_exit_policy() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let p = exit_policy(&config("")).unwrap();
        assert!(p.rejects_all(IpFamily::V4) && p.rejects_all(IpFamily::V6));
        // Exits off: the policy is not even looked at.
        let p = exit_policy(&config("[exit]\npolicy = \"accept *:80\"")).unwrap();
        assert!(p.rejects_all(IpFamily::V4));
        let p = exit_policy(&config(
            "[exit]\nenabled = true\npolicy = \"accept *:80, reject *:*\"",
        ))
        .unwrap();
        assert!(p.allows(ip("198.51.100.1"), 80));
        assert!(!p.allows(ip("198.51.100.1"), 81));
        assert!(!p.allows(ip("127.0.0.1"), 80), "private rejected first");
        assert!(!p.allows(ip("10.1.2.3"), 80));
        let p = exit_policy(&config(
            "[exit]\nenabled = true\npolicy = \"accept *:80, reject *:*\"\nallow_internal = true",
        ))
        .unwrap();
        assert!(p.allows(ip("127.0.0.1"), 80));
    }

    #[test]
    fn bandwidth_meter() {
        let mut m = BandwidthMeter::new(1000, 100);
        assert_eq!(m.observed(), 0);
        m.sample(1000 + 50_000, 110);
        assert_eq!(m.observed(), 5000);
        m.sample(1000 + 60_000, 120);
        assert_eq!(m.observed(), 5000, "the largest rate is kept");
        m.sample(1000 + 60_000, 120);
        m.sample(1000 + 60_000, 119);
        assert_eq!(m.observed(), 5000, "no time passed: ignored");
        // A new window: the previous maximum still counts for one more window.
        m.sample(1000 + 70_000, 100 + BANDWIDTH_WINDOW);
        assert_eq!(m.observed(), 5000);
        m.sample(1000 + 70_000, 100 + 2 * BANDWIDTH_WINDOW);
        assert_eq!(m.observed(), 0);
        // A counter that went backwards reads as nothing sent.
        m.sample(0, 110 + 2 * BANDWIDTH_WINDOW);
        assert_eq!(m.observed(), 0);
    }
}
