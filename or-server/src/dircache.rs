//! The directory cache (dir-spec §4): the microdesc consensus of the configured Tor
//! network, its authority certificates and the microdescriptors it lists, fetched over
//! plain HTTP/1.0 from the authorities' DirPorts (`[directory]`), kept in memory and served
//! over BEGIN_DIR by [`crate::dir`].
//!
//! A consensus is kept only once it verifies ([`Consensus::verify`]: valid now, signed by
//! more than half of the configured `v3idents`, each signature checked with a fetched
//! certificate of that authority), and only if it is newer than the one we have. It is
//! served until 24 hours past its `valid-until` (C tor clients still take such a
//! "reasonably live" consensus). Microdescriptors are fetched in batches of
//! [`MICRODESC_BATCH`], checked against the digests asked for, and kept while the current or
//! the previous consensus lists them (at most [`MAX_MICRODESC_BYTES`]). Certificates are
//! those of configured authorities, valid now.
//!
//! A new consensus is fetched at a random time in the first half-interval after ours stops
//! being fresh (dir-spec §4.1), at most `refresh_secs` after the last fetch, and
//! `retry_secs` after a failure. Every fetch is bounded in time ([`FETCH_TIMEOUT`]) and size.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use onion_core::certs::RsaIdentity;
use onion_core::dir::encode::{b64_unpadded, items_text, split_items};
use onion_core::dir::meta::{Item, Limits, tokenize};
use onion_core::dir::{AuthorityCert, Consensus, DirError, Flavor, Microdesc};
use rand_core::Rng;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::DirectoryConfig;
use crate::dir::{Document, InflateError, inflate_bounded};
use crate::router::now_unix;
use crate::server::{ServerContext, os_rng};

/// Microdescriptors asked for in one request (dir-spec §4.3: at most 92, for proxies).
pub const MICRODESC_BATCH: usize = 92;
/// Most bytes of microdescriptors kept.
pub const MAX_MICRODESC_BYTES: usize = 64 * 1024 * 1024;
/// Largest consensus accepted.
pub const MAX_CONSENSUS_BYTES: usize = Limits::CONSENSUS.max_len;
/// Largest `/tor/keys/all` answer accepted.
pub const MAX_CERTS_BYTES: usize = Limits::AUTHORITY_CERTS.max_len;
/// Largest microdescriptor batch accepted.
pub const MAX_MICRODESCS_BYTES: usize = 4 * 1024 * 1024;
/// Longest HTTP response header accepted.
pub const MAX_RESPONSE_HEADER: usize = 16 * 1024;
/// Time allowed for one whole fetch (connection, request, answer).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(60);
/// Time allowed for the TCP connection of a fetch.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Clock skew tolerated when checking the consensus and certificates.
pub const CLOCK_SKEW: u64 = 60;
/// How long past its `valid-until` a consensus is still served.
pub const SERVE_PAST_VALID_UNTIL: u64 = 24 * 3600;
/// Certificates are fetched again when one expires within this time.
const CERT_RENEW_MARGIN: u64 = 24 * 3600;

/// Why a fetch failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum FetchError {
    /// Connecting, writing or reading failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The whole fetch took longer than [`FETCH_TIMEOUT`].
    #[error("timed out")]
    Timeout,
    /// The answer is larger than allowed.
    #[error("answer larger than {0} bytes")]
    TooLarge(usize),
    /// The answer is not an HTTP/1.x response we understand.
    #[error("bad HTTP response: {0}")]
    BadResponse(&'static str),
    /// The status is not 200.
    #[error("HTTP status {0}")]
    Status(u16),
    /// A `Content-Encoding` we did not ask for.
    #[error("unsupported Content-Encoding {0:?}")]
    Encoding(String),
    /// The deflated body does not inflate.
    #[error("{0}")]
    Inflate(#[from] InflateError),
}

/// Why a refresh of the cache failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CacheError {
    /// No authority answered a request.
    #[error("GET {path} from {addr}: {err}")]
    Fetch {
        /// The authority's DirPort.
        addr: SocketAddr,
        /// The URL path.
        path: String,
        /// What went wrong.
        err: FetchError,
    },
    /// A document is not UTF-8.
    #[error("{0} is not UTF-8")]
    NotUtf8(&'static str),
    /// A document does not parse.
    #[error("{what}: {err}")]
    Parse {
        /// Which document.
        what: &'static str,
        /// Why.
        err: DirError,
    },
    /// The consensus is not the microdesc flavor.
    #[error("the consensus is not the microdesc flavor")]
    WrongFlavor,
    /// The consensus does not verify (time, signatures).
    #[error("consensus refused: {0}")]
    Refused(DirError),
}

/// The consensus we serve.
#[derive(Debug)]
pub struct CachedConsensus {
    doc: Document,
    valid_after: u64,
    fresh_until: u64,
    valid_until: u64,
    signers: Vec<RsaIdentity>,
    microdescs: Vec<[u8; 32]>,
}

impl CachedConsensus {
    /// Its text, and its zlib form.
    pub fn document(&self) -> &Document {
        &self.doc
    }
    /// `valid-after`.
    pub fn valid_after(&self) -> u64 {
        self.valid_after
    }
    /// `fresh-until`.
    pub fn fresh_until(&self) -> u64 {
        self.fresh_until
    }
    /// `valid-until`.
    pub fn valid_until(&self) -> u64 {
        self.valid_until
    }
    /// The configured authorities whose signature verified.
    pub fn signers(&self) -> &[RsaIdentity] {
        &self.signers
    }
    /// The microdescriptor digests it lists.
    pub fn microdesc_digests(&self) -> &[[u8; 32]] {
        &self.microdescs
    }
}

/// An authority certificate and its text.
#[derive(Debug, Clone)]
struct CachedCert {
    cert: AuthorityCert,
    text: Arc<str>,
}

/// What the cache holds at one time (replaced whole by each refresh).
#[derive(Debug, Default)]
pub struct CacheState {
    consensus: Option<Arc<CachedConsensus>>,
    certs: Vec<CachedCert>,
    certs_doc: Option<Document>,
    microdescs: HashMap<[u8; 32], Arc<str>>,
    microdesc_bytes: usize,
}

impl CacheState {
    /// The consensus, if we have one that may still be served at `now`.
    pub fn consensus(&self, now: u64) -> Option<&CachedConsensus> {
        self.consensus
            .as_deref()
            .filter(|c| now <= c.valid_until.saturating_add(SERVE_PAST_VALID_UNTIL))
    }

    /// A microdescriptor's text, by SHA-256 digest.
    pub fn microdesc(&self, digest: &[u8; 32]) -> Option<&Arc<str>> {
        self.microdescs.get(digest)
    }

    /// How many microdescriptors are cached.
    pub fn microdesc_count(&self) -> usize {
        self.microdescs.len()
    }

    /// Their total size in bytes.
    pub fn microdesc_bytes(&self) -> usize {
        self.microdesc_bytes
    }

    /// All certificates, concatenated (`/tor/keys/all`).
    pub fn certs_document(&self) -> Option<&Document> {
        self.certs_doc.as_ref()
    }

    /// The certificates.
    pub fn certs(&self) -> impl Iterator<Item = &AuthorityCert> {
        self.certs.iter().map(|c| &c.cert)
    }

    /// The texts of the certificates whose (identity fingerprint, signing key digest)
    /// satisfy `f`.
    pub fn certs_matching<'a>(
        &'a self,
        f: impl Fn(&[u8; 20], &[u8; 20]) -> bool + 'a,
    ) -> impl Iterator<Item = Arc<str>> + 'a {
        self.certs
            .iter()
            .filter(move |c| {
                f(
                    c.cert.fingerprint().as_bytes(),
                    c.cert.signing_key_digest().as_bytes(),
                )
            })
            .map(|c| Arc::clone(&c.text))
    }
}

/// The cache: readers take a snapshot, each refresh publishes a new one.
#[derive(Debug, Default)]
pub struct DirCache {
    state: RwLock<Arc<CacheState>>,
}

impl DirCache {
    /// What the cache holds now.
    pub fn snapshot(&self) -> Arc<CacheState> {
        Arc::clone(&self.state.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn publish(&self, state: CacheState) {
        *self.state.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(state);
    }
}

/// Refresh the cache until shutdown (returns at once without `[directory]`).
pub async fn run(ctx: Arc<ServerContext>) {
    let Some(config) = ctx.config.directory.clone() else {
        return;
    };
    let mut fetcher = Fetcher::new(config);
    loop {
        let wait = match fetcher.refresh(&ctx.dir_cache).await {
            Ok(at) => Duration::from_secs(at.saturating_sub(now_unix()).max(1)),
            Err(e) => {
                tracing::warn!("directory cache: {e}");
                Duration::from_secs(fetcher.config.retry_secs)
            }
        };
        tokio::select! {
            () = ctx.shutdown.wait() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// Fetches for the cache.
#[derive(Debug)]
pub struct Fetcher {
    config: DirectoryConfig,
    ids: Vec<RsaIdentity>,
    /// The authority to ask first next time (rotates).
    next_authority: usize,
}

impl Fetcher {
    /// A fetcher for the network of `config`.
    pub fn new(config: DirectoryConfig) -> Self {
        let ids = config.v3ident_ids();
        let n = config.authorities.len().max(1);
        let next_authority = usize::try_from(os_rng().next_u32()).unwrap_or(0) % n;
        Fetcher {
            config,
            ids,
            next_authority,
        }
    }

    /// Fetch `path` from the authorities in turn, until one answers.
    async fn fetch_any(&mut self, path: &str, max: usize) -> Result<Vec<u8>, CacheError> {
        let n = self.config.authorities.len();
        let mut last = None;
        for i in 0..n {
            let Some(&addr) = self.config.authorities.get((self.next_authority + i) % n) else {
                continue;
            };
            match http_get(addr, path, max).await {
                Ok(body) => {
                    self.next_authority = (self.next_authority + i + 1) % n;
                    return Ok(body);
                }
                Err(err) => {
                    tracing::debug!("directory cache: GET {path} from {addr}: {err}");
                    last = Some(CacheError::Fetch {
                        addr,
                        path: path.to_owned(),
                        err,
                    });
                }
            }
        }
        self.next_authority = (self.next_authority + 1) % n.max(1);
        Err(last.unwrap_or(CacheError::Fetch {
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            path: path.to_owned(),
            err: FetchError::BadResponse("no authority configured"),
        }))
    }

    /// Fetch `/tor/keys/all` and keep the certificates of configured authorities that are
    /// valid at `now`.
    async fn fetch_certs(&mut self, now: u64) -> Result<Vec<CachedCert>, CacheError> {
        let body = self.fetch_any("/tor/keys/all", MAX_CERTS_BYTES).await?;
        let text = String::from_utf8(body).map_err(|_| CacheError::NotUtf8("/tor/keys/all"))?;
        let parse = |err| CacheError::Parse {
            what: "/tor/keys/all",
            err,
        };
        let items = tokenize(&text, &Limits::AUTHORITY_CERTS).map_err(parse)?;
        let runs = split_items(&items, "dir-key-certificate-version", |_, it| {
            it.keyword() == "dir-key-certificate-version"
        })
        .map_err(parse)?;
        let mut out: Vec<CachedCert> = Vec::new();
        for run in runs {
            let body = items_text(&text, run);
            let cert = match AuthorityCert::parse(body) {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!("directory cache: certificate refused: {e}");
                    continue;
                }
            };
            if !self.ids.contains(cert.fingerprint())
                || cert.check_valid_at(now, CLOCK_SKEW).is_err()
                || out.iter().any(|c| {
                    c.cert.fingerprint() == cert.fingerprint()
                        && c.cert.signing_key_digest() == cert.signing_key_digest()
                })
            {
                continue;
            }
            out.push(CachedCert {
                cert,
                text: body.into(),
            });
        }
        Ok(out)
    }

    /// One refresh: certificates if needed, the consensus, the microdescriptors it lists
    /// that we lack. Publishes what it got and returns when to refresh next.
    pub async fn refresh(&mut self, cache: &DirCache) -> Result<u64, CacheError> {
        let now = now_unix();
        let state = cache.snapshot();
        let mut certs: Vec<CachedCert> = state
            .certs
            .iter()
            .filter(|c| c.cert.check_valid_at(now, 0).is_ok())
            .cloned()
            .collect();
        let renew = certs.len() < self.ids.len()
            || certs
                .iter()
                .any(|c| c.cert.expires() < now.saturating_add(CERT_RENEW_MARGIN));
        let mut fetched_certs = false;
        if renew {
            match self.fetch_certs(now).await {
                Ok(c) if !c.is_empty() => {
                    certs = c;
                    fetched_certs = true;
                }
                Ok(_) => tracing::warn!("directory cache: no usable authority certificate"),
                Err(e) if certs.is_empty() => return Err(e),
                Err(e) => tracing::warn!("directory cache: keeping old certificates: {e}"),
            }
        }

        let path = "/tor/status-vote/current/consensus-microdesc";
        let body = self.fetch_any(path, MAX_CONSENSUS_BYTES).await?;
        let text = String::from_utf8(body).map_err(|_| CacheError::NotUtf8("the consensus"))?;
        let consensus = Consensus::parse(&text).map_err(|err| CacheError::Parse {
            what: "the consensus",
            err,
        })?;
        if consensus.flavor() != Flavor::Microdesc {
            return Err(CacheError::WrongFlavor);
        }
        let retry = now.saturating_add(self.config.retry_secs);
        if let Some(cur) = &state.consensus
            && consensus.valid_after() <= cur.valid_after
        {
            // Nothing new yet: look again soon if ours is no longer fresh.
            tracing::debug!("directory cache: no newer consensus");
            let next = self.next_fetch(cur.valid_after, cur.fresh_until, now);
            return Ok(if cur.fresh_until <= now {
                retry.min(next)
            } else {
                next
            });
        }
        let parsed: Vec<AuthorityCert> = certs.iter().map(|c| c.cert.clone()).collect();
        let check = match consensus.verify(&self.ids, &parsed, now, CLOCK_SKEW) {
            Ok(check) => check,
            Err(DirError::TooFewSignatures { .. })
                if !fetched_certs && !consensus.missing_certs(&self.ids, &parsed).is_empty() =>
            {
                // Signed with keys we have no certificate for: fetch them and check again.
                certs = self.fetch_certs(now).await?;
                let parsed: Vec<AuthorityCert> = certs.iter().map(|c| c.cert.clone()).collect();
                consensus
                    .verify(&self.ids, &parsed, now, CLOCK_SKEW)
                    .map_err(CacheError::Refused)?
            }
            Err(e) => return Err(CacheError::Refused(e)),
        };

        let wanted: Vec<[u8; 32]> = consensus
            .routers()
            .iter()
            .filter_map(|r| r.microdesc_digest().copied())
            .collect();
        let mut microdescs: HashMap<[u8; 32], Arc<str>> = HashMap::new();
        let mut bytes = 0usize;
        let previous = state
            .consensus
            .as_ref()
            .map(|c| c.microdescs.as_slice())
            .unwrap_or_default();
        for d in wanted.iter().chain(previous) {
            if let Some(md) = state.microdescs.get(d)
                && bytes.saturating_add(md.len()) <= MAX_MICRODESC_BYTES
                && !microdescs.contains_key(d)
            {
                bytes += md.len();
                microdescs.insert(*d, Arc::clone(md));
            }
        }
        let missing: Vec<[u8; 32]> = {
            let mut seen = HashSet::new();
            wanted
                .iter()
                .filter(|d| !microdescs.contains_key(*d) && seen.insert(**d))
                .copied()
                .collect()
        };
        let mut failed = 0usize;
        for batch in missing.chunks(MICRODESC_BATCH) {
            if bytes >= MAX_MICRODESC_BYTES {
                tracing::warn!("directory cache: microdescriptor cache full");
                break;
            }
            match self.fetch_microdescs(batch).await {
                Ok(got) => {
                    failed += batch.len().saturating_sub(got.len());
                    for (d, md) in got {
                        if bytes.saturating_add(md.len()) <= MAX_MICRODESC_BYTES {
                            bytes += md.len();
                            microdescs.insert(d, md);
                        }
                    }
                }
                Err(e) => {
                    failed += batch.len();
                    tracing::debug!("directory cache: microdescriptors: {e}");
                }
            }
        }
        if failed > 0 {
            tracing::info!("directory cache: {failed} microdescriptors could not be fetched");
        }

        let cached = CachedConsensus {
            valid_after: consensus.valid_after(),
            fresh_until: consensus.fresh_until(),
            valid_until: consensus.valid_until(),
            signers: check.signers,
            microdescs: wanted,
            doc: Document::new(text.into_bytes()),
        };
        tracing::info!(
            valid_after = %onion_core::dir::encode::format_time(cached.valid_after),
            relays = consensus.routers().len(),
            signers = cached.signers.len(),
            microdescs = microdescs.len(),
            "directory cache: new consensus"
        );
        let next = self.next_fetch(cached.valid_after, cached.fresh_until, now);
        let certs_doc = (!certs.is_empty()).then(|| {
            let mut all = String::new();
            for c in &certs {
                all.push_str(&c.text);
            }
            Document::new(all.into_bytes())
        });
        cache.publish(CacheState {
            consensus: Some(Arc::new(cached)),
            certs,
            certs_doc,
            microdescs,
            microdesc_bytes: bytes,
        });
        Ok(next)
    }

    /// Fetch one batch of microdescriptors; keep those asked for.
    async fn fetch_microdescs(
        &mut self,
        batch: &[[u8; 32]],
    ) -> Result<Vec<Microdescriptor>, CacheError> {
        let names: Vec<String> = batch.iter().map(|d| b64_unpadded(d)).collect();
        let path = format!("/tor/micro/d/{}", names.join("-"));
        let body = self.fetch_any(&path, MAX_MICRODESCS_BYTES).await?;
        let text = String::from_utf8(body).map_err(|_| CacheError::NotUtf8("microdescriptors"))?;
        split_microdescs(&text, batch).map_err(|err| CacheError::Parse {
            what: "microdescriptors",
            err,
        })
    }

    /// When to fetch after a consensus valid from `valid_after`, fresh until
    /// `fresh_until`: a random time in the first half-interval after `fresh_until`, no later
    /// than `refresh_secs` from `now`.
    fn next_fetch(&self, valid_after: u64, fresh_until: u64, now: u64) -> u64 {
        let interval = fresh_until.saturating_sub(valid_after).max(1);
        let jitter = os_rng().next_u64() % (interval / 2 + 1);
        let at = fresh_until.saturating_add(jitter);
        let latest = now.saturating_add(self.config.refresh_secs);
        if at <= now {
            now.saturating_add(self.config.retry_secs).min(latest)
        } else {
            at.min(latest)
        }
    }
}

/// A microdescriptor's SHA-256 digest and exact text.
pub type Microdescriptor = ([u8; 32], Arc<str>);

/// Whether `item` starts a new microdescriptor after the items `current` (as
/// `onion_core::dir::microdesc` splits them: at `onion-key`, or at `ntor-onion-key` when
/// the current one already has one or is empty).
fn starts_microdesc(current: &[Item<'_>], item: &Item<'_>) -> bool {
    match item.keyword() {
        "onion-key" => true,
        "ntor-onion-key" => {
            current.is_empty() || current.iter().any(|i| i.keyword() == "ntor-onion-key")
        }
        _ => false,
    }
}

/// Split concatenated microdescriptors; keep each that parses and whose digest is in
/// `wanted`, with its exact text.
pub fn split_microdescs(text: &str, wanted: &[[u8; 32]]) -> Result<Vec<Microdescriptor>, DirError> {
    let items = tokenize(text, &Limits::MICRODESCS)?;
    let runs = split_items(&items, "onion-key", starts_microdesc)?;
    let mut out: Vec<Microdescriptor> = Vec::new();
    for run in runs {
        let body = items_text(text, run);
        match Microdesc::parse(body) {
            Ok(md) if wanted.contains(md.digest()) => {
                if !out.iter().any(|(d, _)| d == md.digest()) {
                    out.push((*md.digest(), body.into()));
                }
            }
            Ok(_) => tracing::debug!("directory cache: unrequested microdescriptor dropped"),
            Err(e) => tracing::debug!("directory cache: microdescriptor refused: {e}"),
        }
    }
    Ok(out)
}

/// `GET path` over HTTP/1.0 from `addr`; the body of a 200 answer, inflated if it is
/// deflated, of at most `max` bytes.
pub async fn http_get(addr: SocketAddr, path: &str, max: usize) -> Result<Vec<u8>, FetchError> {
    let fetch = async {
        let mut tcp = onion_net::tcp_connect(addr, CONNECT_TIMEOUT).await?;
        let request = format!(
            "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept-Encoding: deflate, identity\r\n\r\n"
        );
        tcp.write_all(request.as_bytes()).await?;
        let limit = max.saturating_add(MAX_RESPONSE_HEADER);
        let mut raw = Vec::new();
        (&mut tcp)
            .take(u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1))
            .read_to_end(&mut raw)
            .await?;
        if raw.len() > limit {
            return Err(FetchError::TooLarge(max));
        }
        parse_response(&raw, max)
    };
    tokio::time::timeout(FETCH_TIMEOUT, fetch)
        .await
        .map_err(|_| FetchError::Timeout)?
}

/// The body of a complete HTTP/1.x response (`raw`: everything up to the end of the
/// connection), checked and inflated (at most `max` bytes).
pub fn parse_response(raw: &[u8], max: usize) -> Result<Vec<u8>, FetchError> {
    let end = raw
        .windows(4)
        .take(MAX_RESPONSE_HEADER)
        .position(|w| w == b"\r\n\r\n")
        .ok_or(FetchError::BadResponse("no end of header"))?;
    let (header, body) = raw.split_at_checked(end).unwrap_or_default();
    let body = body.get(4..).unwrap_or_default();
    let header =
        std::str::from_utf8(header).map_err(|_| FetchError::BadResponse("header not UTF-8"))?;
    let mut lines = header.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let mut words = status.splitn(3, ' ');
    let (Some(version), Some(code)) = (words.next(), words.next()) else {
        return Err(FetchError::BadResponse("malformed status line"));
    };
    if !version.starts_with("HTTP/1.") || code.len() != 3 {
        return Err(FetchError::BadResponse("malformed status line"));
    }
    let code: u16 = code
        .parse()
        .map_err(|_| FetchError::BadResponse("malformed status code"))?;
    if code != 200 {
        return Err(FetchError::Status(code));
    }
    let mut encoding = None;
    let mut length = None;
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or(FetchError::BadResponse("malformed header line"))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-encoding") {
            encoding = Some(value.to_ascii_lowercase());
        } else if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| FetchError::BadResponse("malformed Content-Length"))?,
            );
        }
    }
    if length.is_some_and(|l| l != body.len()) {
        return Err(FetchError::BadResponse(
            "body length differs from Content-Length",
        ));
    }
    match encoding.as_deref() {
        None | Some("identity") => {
            if body.len() > max {
                return Err(FetchError::TooLarge(max));
            }
            Ok(body.to_vec())
        }
        Some("deflate") => Ok(inflate_bounded(body, max)?),
        Some(other) => Err(FetchError::Encoding(other.to_owned())),
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::dir::deflate;

    #[test]
    fn responses() {
        let ok = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhello";
        assert_eq!(parse_response(ok, 5).unwrap(), b"hello");
        assert!(matches!(
            parse_response(ok, 4),
            Err(FetchError::TooLarge(4))
        ));
        let mut z = b"HTTP/1.0 200 OK\r\nContent-Encoding: deflate\r\n\r\n".to_vec();
        z.extend(deflate(b"hello"));
        assert_eq!(parse_response(&z, 5).unwrap(), b"hello");
        assert!(matches!(
            parse_response(&z, 4),
            Err(FetchError::Inflate(InflateError::TooLarge(4)))
        ));
        let with_len =
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Encoding: identity\r\n\r\nhello";
        assert_eq!(parse_response(with_len, 100).unwrap(), b"hello");
        for (raw, want) in [
            (&b"HTTP/1.0 404 Not found\r\n\r\n"[..], "HTTP status 404"),
            (
                b"HTTP/1.0 200 OK\r\nContent-Length: 6\r\n\r\nhello",
                "bad HTTP response: body length differs from Content-Length",
            ),
            (
                b"HTTP/1.0 200 OK\r\nContent-Encoding: x-zstd\r\n\r\nhello",
                "unsupported Content-Encoding \"x-zstd\"",
            ),
            (
                b"HTTP/1.0 200 OK\r\nhello",
                "bad HTTP response: no end of header",
            ),
            (
                b"SPDY 200 OK\r\n\r\n",
                "bad HTTP response: malformed status line",
            ),
            (
                b"HTTP/1.0 2000 OK\r\n\r\n",
                "bad HTTP response: malformed status line",
            ),
            (
                b"HTTP/1.0 20x OK\r\n\r\n",
                "bad HTTP response: malformed status code",
            ),
            (
                b"HTTP/1.0 200 OK\r\nbroken\r\n\r\n",
                "bad HTTP response: malformed header line",
            ),
            (
                b"HTTP/1.0 200 OK\r\nContent-Encoding: deflate\r\n\r\nnot zlib",
                "invalid zlib data",
            ),
        ] {
            let err = parse_response(raw, 100).unwrap_err().to_string();
            assert!(err.starts_with(want), "{err} / {want}");
        }
        // A header that never ends is not searched past its limit.
        let mut long = b"HTTP/1.0 200 OK\r\nX: ".to_vec();
        long.resize(MAX_RESPONSE_HEADER + 10, b'a');
        long.extend_from_slice(b"\r\n\r\n");
        assert!(matches!(
            parse_response(&long, 100),
            Err(FetchError::BadResponse("no end of header"))
        ));
    }

    proptest::proptest! {
        #[test]
        fn response_parsing_never_panics(raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2000)) {
            let _ = parse_response(&raw, 1000);
            let mut with_head = b"HTTP/1.0 200 OK\r\nContent-Encoding: deflate\r\n\r\n".to_vec();
            with_head.extend_from_slice(&raw);
            if let Ok(body) = parse_response(&with_head, 1000) {
                proptest::prop_assert!(body.len() <= 1000);
            }
        }
    }

    /// Microdescriptors from the private C tor network (onion-core's test data).
    const MICRODESCS: &str = include_str!("../../onion-core/src/dir/testdata/microdescs.txt");

    #[test]
    fn microdesc_split_keeps_exact_texts() {
        let all = Microdesc::parse_many(MICRODESCS).unwrap();
        let digests: Vec<[u8; 32]> = all.iter().map(|m| *m.as_ref().unwrap().digest()).collect();
        assert!(digests.len() >= 2);
        let got = split_microdescs(MICRODESCS, &digests).unwrap();
        assert_eq!(got.len(), digests.len());
        let mut joined = String::new();
        for (d, text) in &got {
            // The text we keep is what the digest covers.
            assert_eq!(Microdesc::parse_expected(text, d).unwrap().digest(), d);
            joined.push_str(text);
        }
        assert_eq!(joined.trim_end(), MICRODESCS.trim_end());
        // Only what was asked for is kept.
        let one = split_microdescs(MICRODESCS, &digests[1..2]).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].0, digests[1]);
        assert!(split_microdescs("garbage\n", &digests).is_err());
    }

    #[test]
    fn schedule() {
        let config = DirectoryConfig {
            authorities: vec!["127.0.0.1:1".parse().unwrap()],
            v3idents: vec!["27B6B5996C426270A5C95488AA5BCEB6BCC86956".into()],
            refresh_secs: 3600,
            retry_secs: 5,
        };
        let f = Fetcher::new(config);
        let (va, fu) = (1_000_000, 1_003_600);
        for _ in 0..100 {
            // Fresh: in the first half-interval after fresh-until.
            let at = f.next_fetch(va, fu, va + 10);
            assert!((fu..=fu + 1800).contains(&at), "{at}");
            // Stale already: retry soon.
            assert_eq!(f.next_fetch(va, fu, fu + 2000), fu + 2005);
        }
        // Never later than refresh_secs.
        assert_eq!(f.next_fetch(va, va + 86_400, va), va + 3600);
    }

    #[test]
    fn state_serving_window() {
        let c = CachedConsensus {
            doc: Document::new(b"x".to_vec()),
            valid_after: 100,
            fresh_until: 200,
            valid_until: 300,
            signers: vec![],
            microdescs: vec![],
        };
        let state = CacheState {
            consensus: Some(Arc::new(c)),
            ..CacheState::default()
        };
        assert!(state.consensus(50).is_some());
        assert!(state.consensus(300 + SERVE_PAST_VALID_UNTIL).is_some());
        assert!(state.consensus(301 + SERVE_PAST_VALID_UNTIL).is_none());
        assert!(CacheState::default().consensus(0).is_none());
    }
}
