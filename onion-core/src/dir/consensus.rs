//! Consensus documents (dir-spec §3.4.1), in the `microdesc` flavor clients use (§3.9.2)
//! and the unflavored `ns` one, and their signature check.
//!
//! [`Consensus::parse`] checks the structure: preamble, authority section, router status
//! entries sorted by identity, footer, then only `directory-signature` items (nothing
//! unsigned may follow them). Every signature covers the document from
//! `network-status-version` through the space after the *first* `directory-signature`,
//! hashed with SHA-1 (`ns` flavor, or no algorithm given) or SHA-256 (`sha256`), and signed
//! (PKCS#1 v1.5, no `DigestInfo`) with the authority's signing key, which an
//! [`AuthorityCert`] binds to its identity.
//!
//! [`Consensus::verify`] accepts the consensus only if it is valid at `now` (with a clock
//! skew tolerance) and carries valid signatures from more than half of the caller's
//! configured authorities.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};

use ::rsa::Pkcs1v15Sign;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::authcert::AuthorityCert;
use super::encode::{
    b64_decode_array, bad_arg, check_counts, hex20, need_arg, no_object, num_arg, object_data, opt,
    the, time_arg,
};
use super::meta::{Item, Limits, tokenize};
use super::proto::Protocols;
use super::{DirError, DirResult};
use crate::certs::RsaIdentity;
use crate::policy::PortPolicy;

/// The consensus flavor, from the `network-status-version` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flavor {
    /// The unflavored consensus: `r` lines carry server descriptor digests.
    Ns,
    /// The microdescriptor consensus: `m` lines carry microdescriptor digests.
    Microdesc,
}

/// The digest a router status entry points to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouterDigest {
    /// SHA-1 of the server descriptor (`ns` flavor).
    Descriptor([u8; 20]),
    /// SHA-256 of the microdescriptor (`microdesc` flavor).
    Microdesc([u8; 32]),
}

/// Router status flags (the `s` line). Unknown flags are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RelayFlags(u16);

impl RelayFlags {
    /// `Authority`.
    pub const AUTHORITY: RelayFlags = RelayFlags(1);
    /// `BadExit`.
    pub const BAD_EXIT: RelayFlags = RelayFlags(1 << 1);
    /// `Exit`.
    pub const EXIT: RelayFlags = RelayFlags(1 << 2);
    /// `Fast`.
    pub const FAST: RelayFlags = RelayFlags(1 << 3);
    /// `Guard`.
    pub const GUARD: RelayFlags = RelayFlags(1 << 4);
    /// `HSDir`.
    pub const HSDIR: RelayFlags = RelayFlags(1 << 5);
    /// `MiddleOnly`.
    pub const MIDDLE_ONLY: RelayFlags = RelayFlags(1 << 6);
    /// `NoEdConsensus`.
    pub const NO_ED_CONSENSUS: RelayFlags = RelayFlags(1 << 7);
    /// `Running`.
    pub const RUNNING: RelayFlags = RelayFlags(1 << 8);
    /// `Stable`.
    pub const STABLE: RelayFlags = RelayFlags(1 << 9);
    /// `StaleDesc`.
    pub const STALE_DESC: RelayFlags = RelayFlags(1 << 10);
    /// `V2Dir`.
    pub const V2DIR: RelayFlags = RelayFlags(1 << 11);
    /// `Valid`.
    pub const VALID: RelayFlags = RelayFlags(1 << 12);

    const NAMES: &[(&'static str, RelayFlags)] = &[
        ("Authority", Self::AUTHORITY),
        ("BadExit", Self::BAD_EXIT),
        ("Exit", Self::EXIT),
        ("Fast", Self::FAST),
        ("Guard", Self::GUARD),
        ("HSDir", Self::HSDIR),
        ("MiddleOnly", Self::MIDDLE_ONLY),
        ("NoEdConsensus", Self::NO_ED_CONSENSUS),
        ("Running", Self::RUNNING),
        ("Stable", Self::STABLE),
        ("StaleDesc", Self::STALE_DESC),
        ("V2Dir", Self::V2DIR),
        ("Valid", Self::VALID),
    ];

    /// The flag called `name`, if we know it.
    pub fn from_name(name: &str) -> Option<RelayFlags> {
        Self::NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|&(_, f)| f)
    }

    /// Whether every flag of `other` is set.
    pub fn contains(self, other: RelayFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// The union.
    pub fn union(self, other: RelayFlags) -> RelayFlags {
        RelayFlags(self.0 | other.0)
    }
}

/// One router status entry.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterStatus {
    /// Nickname.
    pub nickname: String,
    /// RSA identity fingerprint.
    pub rsa_identity: RsaIdentity,
    /// The descriptor (ns) or microdescriptor (microdesc) digest.
    pub digest: RouterDigest,
    /// The `r` line's publication time (a fixed value in microdesc consensuses).
    pub published: u64,
    /// IPv4 address.
    pub address: Ipv4Addr,
    /// ORPort.
    pub or_port: u16,
    /// DirPort (0 for none).
    pub dir_port: u16,
    /// The first IPv6 ORPort (`a` line), if any.
    pub ipv6: Option<SocketAddr>,
    /// Flags.
    pub flags: RelayFlags,
    /// The `v` line.
    pub version: Option<String>,
    /// The `pr` line.
    pub protocols: Option<Protocols>,
    /// `w Bandwidth=`, in the consensus's arbitrary unit (kilobytes per second).
    pub bandwidth: Option<u32>,
    /// `w ... Unmeasured=1`.
    pub unmeasured: bool,
    /// The `p` line (ns flavor only).
    pub port_policy: Option<PortPolicy>,
}

impl RouterStatus {
    /// The microdescriptor digest (microdesc flavor).
    pub fn microdesc_digest(&self) -> Option<&[u8; 32]> {
        match &self.digest {
            RouterDigest::Microdesc(d) => Some(d),
            RouterDigest::Descriptor(_) => None,
        }
    }
}

/// An authority that contributed to the consensus (`dir-source`, `contact`,
/// `vote-digest`).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirSource {
    /// Nickname (`-legacy` appended for legacy keys).
    pub nickname: String,
    /// v3 identity fingerprint.
    pub identity: RsaIdentity,
    /// Host name.
    pub address: String,
    /// IPv4 address.
    pub ip: Ipv4Addr,
    /// DirPort.
    pub dir_port: u16,
    /// ORPort.
    pub or_port: u16,
    /// `contact`.
    pub contact: Option<String>,
    /// `vote-digest`.
    pub vote_digest: Option<[u8; 20]>,
}

/// The digest algorithm of a `directory-signature`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SignatureAlgorithm {
    /// SHA-1 (also when no algorithm is given).
    Sha1,
    /// SHA-256.
    Sha256,
    /// Another algorithm; such signatures are ignored.
    Unknown(String),
}

/// One `directory-signature`.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectorySignature {
    /// Digest algorithm.
    pub algorithm: SignatureAlgorithm,
    /// The signing authority's v3 identity fingerprint.
    pub identity: RsaIdentity,
    /// SHA-1 of the authority's signing key.
    pub signing_key_digest: RsaIdentity,
    /// The RSA signature.
    pub signature: Vec<u8>,
}

/// The outcome of a successful signature check.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureCheck {
    /// How many configured authorities signed validly.
    pub valid: usize,
    /// How many were needed.
    pub needed: usize,
    /// The configured authorities whose signature verified.
    pub signers: Vec<RsaIdentity>,
}

/// A parsed consensus. Its signatures are checked by [`verify`](Self::verify).
#[derive(Debug, Clone)]
pub struct Consensus {
    flavor: Flavor,
    consensus_method: u32,
    valid_after: u64,
    fresh_until: u64,
    valid_until: u64,
    voting_delay: (u32, u32),
    known_flags: Vec<String>,
    recommended_client_protocols: Protocols,
    recommended_relay_protocols: Protocols,
    required_client_protocols: Protocols,
    required_relay_protocols: Protocols,
    params: BTreeMap<String, i32>,
    authorities: Vec<DirSource>,
    routers: Vec<RouterStatus>,
    bandwidth_weights: BTreeMap<String, i32>,
    signatures: Vec<DirectorySignature>,
    sha1: [u8; 20],
    sha256: [u8; 32],
}

/// Document sections, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Section {
    Preamble,
    Authorities,
    Routers,
    Footer,
    Signatures,
}

const PREAMBLE_ONCE: &[&str] = &[
    "network-status-version",
    "vote-status",
    "consensus-method",
    "valid-after",
    "fresh-until",
    "valid-until",
    "voting-delay",
    "client-versions",
    "server-versions",
    "known-flags",
    "recommended-client-protocols",
    "recommended-relay-protocols",
    "required-client-protocols",
    "required-relay-protocols",
    "params",
    "shared-rand-previous-value",
    "shared-rand-current-value",
];

const PREAMBLE_REQUIRED: &[&str] = &[
    "network-status-version",
    "vote-status",
    "valid-after",
    "fresh-until",
    "valid-until",
    "voting-delay",
    "known-flags",
];

const ROUTER_ONCE: &[&str] = &["r", "m", "s", "v", "pr", "w", "p"];

/// The section an item of this keyword belongs to, for keywords that have a fixed one.
fn home_section(kw: &str) -> Option<Section> {
    if PREAMBLE_ONCE.contains(&kw) || kw == "package" {
        return Some(Section::Preamble);
    }
    match kw {
        "dir-source" | "contact" | "vote-digest" => Some(Section::Authorities),
        "r" | "a" | "m" | "s" | "v" | "pr" | "w" | "p" => Some(Section::Routers),
        "directory-footer" | "bandwidth-weights" => Some(Section::Footer),
        "directory-signature" => Some(Section::Signatures),
        _ => None,
    }
}

/// Parse `key=int32` pairs (`params`, `bandwidth-weights`).
fn int_pairs(item: &Item<'_>, kw: &'static str) -> DirResult<BTreeMap<String, i32>> {
    let mut out = BTreeMap::new();
    for a in item.args() {
        let (k, v) = a
            .split_once('=')
            .ok_or_else(|| bad_arg(item, kw, "entry without '='"))?;
        let digits = v.strip_prefix('-').unwrap_or(v);
        if k.is_empty() || digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad_arg(item, kw, "bad entry"));
        }
        let v: i32 = v
            .parse()
            .map_err(|_| bad_arg(item, kw, "value out of range"))?;
        out.insert(k.to_owned(), v);
    }
    Ok(out)
}

fn protocols_of(items: &[Item<'_>], kw: &'static str) -> DirResult<Protocols> {
    match opt(items, kw) {
        Some(it) => it
            .args_str()
            .parse()
            .map_err(|_| bad_arg(it, kw, "bad protocol list")),
        None => Ok(Protocols::new()),
    }
}

impl Consensus {
    /// Parse a consensus of either flavor. Signatures are not checked: see
    /// [`verify`](Self::verify).
    pub fn parse(text: &str) -> DirResult<Self> {
        let items = tokenize(text, &Limits::CONSENSUS)?;
        let first = items
            .first()
            .ok_or(DirError::MissingItem("network-status-version"))?;
        if first.keyword() != "network-status-version" {
            return Err(DirError::MisplacedItem {
                keyword: "network-status-version",
                line: first.line(),
            });
        }

        // Cut the document into its sections.
        let mut section = Section::Preamble;
        let mut bounds = [items.len(); 4]; // first index of Authorities, Routers, Footer, Signatures
        for (i, item) in items.iter().enumerate() {
            let next = match item.keyword() {
                "dir-source" => Section::Authorities,
                "r" => Section::Routers,
                "directory-footer" => Section::Footer,
                "directory-signature" => Section::Signatures,
                _ => section,
            };
            if next > section {
                for s in (section as usize)..(next as usize) {
                    if let Some(b) = bounds.get_mut(s) {
                        *b = i;
                    }
                }
                section = next;
            }
            let misplaced = match home_section(item.keyword()) {
                Some(home) => home != section,
                // Unknown items are ignored, except after the signatures (unsigned).
                None => section == Section::Signatures,
            };
            if misplaced {
                return Err(DirError::MisplacedItem {
                    keyword: home_section(item.keyword())
                        .map_or("directory-signature", |_| static_kw(item.keyword())),
                    line: item.line(),
                });
            }
        }
        let [a, r, f, s] = bounds;
        let part = |lo: usize, hi: usize| items.get(lo..hi).unwrap_or(&[]);
        let preamble = part(0, a);
        let auth_items = part(a, r);
        let router_items = part(r, f);
        let footer = part(f, s);
        let sig_items = part(s, items.len());

        // Preamble.
        check_counts(preamble, PREAMBLE_ONCE, PREAMBLE_REQUIRED)?;
        let flavor = match (first.arg(0), first.arg(1)) {
            (Some("3"), None | Some("ns")) => Flavor::Ns,
            (Some("3"), Some("microdesc")) => Flavor::Microdesc,
            _ => {
                return Err(bad_arg(
                    first,
                    "network-status-version",
                    "unsupported version or flavor",
                ));
            }
        };
        let it = the(preamble, "vote-status")?;
        if it.arg(0) != Some("consensus") {
            return Err(bad_arg(it, "vote-status", "not a consensus"));
        }
        let consensus_method = opt(preamble, "consensus-method")
            .map(|it| num_arg(it, "consensus-method", 0, "bad method"))
            .transpose()?
            .unwrap_or(1);
        let valid_after = time_arg(the(preamble, "valid-after")?, "valid-after", 0)?;
        let fresh_until = time_arg(the(preamble, "fresh-until")?, "fresh-until", 0)?;
        let it = the(preamble, "valid-until")?;
        let valid_until = time_arg(it, "valid-until", 0)?;
        if !(valid_after <= fresh_until && fresh_until <= valid_until) {
            return Err(bad_arg(
                it,
                "valid-until",
                "valid-after <= fresh-until <= valid-until does not hold",
            ));
        }
        let it = the(preamble, "voting-delay")?;
        let voting_delay = (
            num_arg(it, "voting-delay", 0, "bad VoteSeconds")?,
            num_arg(it, "voting-delay", 1, "bad DistSeconds")?,
        );
        let known_flags = the(preamble, "known-flags")?
            .args()
            .map(str::to_owned)
            .collect();
        let params = opt(preamble, "params")
            .map(|it| int_pairs(it, "params"))
            .transpose()?
            .unwrap_or_default();
        for item in preamble {
            no_object(item, "preamble item")?;
        }

        // Authorities.
        let mut authorities: Vec<DirSource> = Vec::new();
        for it in auth_items {
            match it.keyword() {
                "dir-source" => {
                    let kw = "dir-source";
                    authorities.push(DirSource {
                        nickname: need_arg(it, kw, 0, "missing nickname")?.to_owned(),
                        identity: need_arg(it, kw, 1, "missing identity")
                            .and_then(|h| hex20(h).ok_or_else(|| bad_arg(it, kw, "bad identity")))
                            .map(RsaIdentity::from_bytes)?,
                        address: need_arg(it, kw, 2, "missing address")?.to_owned(),
                        ip: need_arg(it, kw, 3, "missing IP")?
                            .parse()
                            .map_err(|_| bad_arg(it, kw, "bad IP"))?,
                        dir_port: num_arg(it, kw, 4, "bad dirport")?,
                        or_port: num_arg(it, kw, 5, "bad orport")?,
                        contact: None,
                        vote_digest: None,
                    });
                }
                kw @ ("contact" | "vote-digest") => {
                    let Some(src) = authorities.last_mut() else {
                        return Err(DirError::MisplacedItem {
                            keyword: static_kw(kw),
                            line: it.line(),
                        });
                    };
                    if kw == "contact" {
                        if src.contact.replace(it.args_str().to_owned()).is_some() {
                            return Err(DirError::DuplicateItem {
                                keyword: "contact",
                                line: it.line(),
                            });
                        }
                    } else {
                        let d = need_arg(it, "vote-digest", 0, "missing digest").and_then(|h| {
                            hex20(h).ok_or_else(|| bad_arg(it, "vote-digest", "bad digest"))
                        })?;
                        if src.vote_digest.replace(d).is_some() {
                            return Err(DirError::DuplicateItem {
                                keyword: "vote-digest",
                                line: it.line(),
                            });
                        }
                    }
                }
                _ => {}
            }
        }

        // Router status entries, each starting at an `r` line.
        let mut routers: Vec<RouterStatus> = Vec::new();
        let mut begin = 0usize;
        for i in 1..=router_items.len() {
            let at_end = i == router_items.len();
            if at_end || router_items.get(i).is_some_and(|it| it.keyword() == "r") {
                let entry = router_items.get(begin..i).unwrap_or(&[]);
                let rs = parse_router(entry, flavor)?;
                if let Some(prev) = routers.last()
                    && prev.rsa_identity >= rs.rsa_identity
                {
                    return Err(bad_arg(
                        entry.first().unwrap_or(first),
                        "r",
                        "entries not sorted by identity",
                    ));
                }
                routers.push(rs);
                begin = i;
            }
        }

        // Footer.
        check_counts(footer, &["directory-footer", "bandwidth-weights"], &[])?;
        let bandwidth_weights = opt(footer, "bandwidth-weights")
            .map(|it| int_pairs(it, "bandwidth-weights"))
            .transpose()?
            .unwrap_or_default();

        // Signatures.
        let first_sig = sig_items
            .first()
            .ok_or(DirError::MissingItem("directory-signature"))?;
        let mut signatures = Vec::with_capacity(sig_items.len());
        for it in sig_items {
            let kw = "directory-signature";
            let (algorithm, id_at) = match it.n_args() {
                2 => (SignatureAlgorithm::Sha1, 0),
                n if n >= 3 => {
                    let alg = match need_arg(it, kw, 0, "missing algorithm")? {
                        "sha1" => SignatureAlgorithm::Sha1,
                        "sha256" => SignatureAlgorithm::Sha256,
                        other => SignatureAlgorithm::Unknown(other.to_owned()),
                    };
                    (alg, 1)
                }
                _ => return Err(bad_arg(it, kw, "wrong number of arguments")),
            };
            let hex_at = |i: usize, what| {
                need_arg(it, kw, i, what)
                    .and_then(|h| hex20(h).ok_or_else(|| bad_arg(it, kw, what)))
                    .map(RsaIdentity::from_bytes)
            };
            signatures.push(DirectorySignature {
                algorithm,
                identity: hex_at(id_at, "bad identity")?,
                signing_key_digest: hex_at(id_at + 1, "bad signing key digest")?,
                signature: object_data(it, kw, &["SIGNATURE"])?.to_vec(),
            });
        }
        let signed = text
            .get(first.start()..first_sig.keyword_end_plus_one())
            .ok_or(DirError::MissingItem("directory-signature"))?;

        Ok(Consensus {
            flavor,
            consensus_method,
            valid_after,
            fresh_until,
            valid_until,
            voting_delay,
            known_flags,
            recommended_client_protocols: protocols_of(preamble, "recommended-client-protocols")?,
            recommended_relay_protocols: protocols_of(preamble, "recommended-relay-protocols")?,
            required_client_protocols: protocols_of(preamble, "required-client-protocols")?,
            required_relay_protocols: protocols_of(preamble, "required-relay-protocols")?,
            params,
            authorities,
            routers,
            bandwidth_weights,
            signatures,
            sha1: Sha1::digest(signed.as_bytes()).into(),
            sha256: Sha256::digest(signed.as_bytes()).into(),
        })
    }

    /// Fail with [`DirError::NotYetValid`] if `now + skew < valid-after`, or with
    /// [`DirError::Expired`] if `now > valid-until + skew`. (C tor clients keep using a
    /// consensus for up to 24 hours after `valid-until` when nothing newer can be had: pass
    /// a larger `skew` for that.)
    pub fn check_time(&self, now: u64, skew: u64) -> DirResult<()> {
        if now.saturating_add(skew) < self.valid_after {
            return Err(DirError::NotYetValid {
                valid_after: self.valid_after.saturating_sub(skew),
                now,
            });
        }
        if now > self.valid_until.saturating_add(skew) {
            return Err(DirError::Expired {
                valid_until: self.valid_until.saturating_add(skew),
                now,
            });
        }
        Ok(())
    }

    /// Count the configured `authorities` (v3 identity fingerprints) that validly signed:
    /// a signature counts if its authority is configured, a certificate in `certs` has that
    /// fingerprint and the signature's signing key digest and is valid at `now` (± `skew`),
    /// and the RSA signature of the document digest verifies. Each authority counts once;
    /// signatures with unknown algorithms are ignored. Fails with
    /// [`DirError::TooFewSignatures`] unless more than half of the configured authorities
    /// signed.
    pub fn verify_signatures(
        &self,
        authorities: &[RsaIdentity],
        certs: &[AuthorityCert],
        now: u64,
        skew: u64,
    ) -> DirResult<SignatureCheck> {
        let mut configured: Vec<RsaIdentity> = authorities.to_vec();
        configured.sort_unstable();
        configured.dedup();
        let needed = configured.len() / 2 + 1;
        let mut signers: Vec<RsaIdentity> = Vec::new();
        for sig in &self.signatures {
            if !configured.contains(&sig.identity) || signers.contains(&sig.identity) {
                continue;
            }
            let digest: &[u8] = match sig.algorithm {
                SignatureAlgorithm::Sha1 => &self.sha1,
                SignatureAlgorithm::Sha256 => &self.sha256,
                SignatureAlgorithm::Unknown(_) => continue,
            };
            let ok = certs.iter().any(|c| {
                c.fingerprint() == &sig.identity
                    && c.signing_key_digest() == &sig.signing_key_digest
                    && c.check_valid_at(now, skew).is_ok()
                    && c.signing_key()
                        .verify(Pkcs1v15Sign::new_unprefixed(), digest, &sig.signature)
                        .is_ok()
            });
            if ok {
                signers.push(sig.identity);
            }
        }
        if signers.len() < needed {
            return Err(DirError::TooFewSignatures {
                valid: signers.len(),
                needed,
            });
        }
        Ok(SignatureCheck {
            valid: signers.len(),
            needed,
            signers,
        })
    }

    /// [`check_time`](Self::check_time) then [`verify_signatures`](Self::verify_signatures):
    /// the whole acceptance check for a consensus.
    pub fn verify(
        &self,
        authorities: &[RsaIdentity],
        certs: &[AuthorityCert],
        now: u64,
        skew: u64,
    ) -> DirResult<SignatureCheck> {
        self.check_time(now, skew)?;
        self.verify_signatures(authorities, certs, now, skew)
    }

    /// The `(identity, signing key digest)` pairs of signatures by configured
    /// `authorities` for which `certs` has no certificate: the certificates to fetch
    /// (`/tor/keys/fp-sk/ID-SKD`).
    pub fn missing_certs(
        &self,
        authorities: &[RsaIdentity],
        certs: &[AuthorityCert],
    ) -> Vec<(RsaIdentity, RsaIdentity)> {
        let mut out: Vec<(RsaIdentity, RsaIdentity)> = Vec::new();
        for sig in &self.signatures {
            let pair = (sig.identity, sig.signing_key_digest);
            if authorities.contains(&sig.identity)
                && !certs.iter().any(|c| {
                    c.fingerprint() == &sig.identity
                        && c.signing_key_digest() == &sig.signing_key_digest
                })
                && !out.contains(&pair)
            {
                out.push(pair);
            }
        }
        out
    }

    /// The flavor.
    pub fn flavor(&self) -> Flavor {
        self.flavor
    }
    /// `consensus-method` (1 if absent).
    pub fn consensus_method(&self) -> u32 {
        self.consensus_method
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
    /// `voting-delay`: (VoteSeconds, DistSeconds).
    pub fn voting_delay(&self) -> (u32, u32) {
        self.voting_delay
    }
    /// `known-flags`.
    pub fn known_flags(&self) -> &[String] {
        &self.known_flags
    }
    /// `recommended-client-protocols`.
    pub fn recommended_client_protocols(&self) -> &Protocols {
        &self.recommended_client_protocols
    }
    /// `recommended-relay-protocols`.
    pub fn recommended_relay_protocols(&self) -> &Protocols {
        &self.recommended_relay_protocols
    }
    /// `required-client-protocols`.
    pub fn required_client_protocols(&self) -> &Protocols {
        &self.required_client_protocols
    }
    /// `required-relay-protocols`.
    pub fn required_relay_protocols(&self) -> &Protocols {
        &self.required_relay_protocols
    }
    /// `params`.
    pub fn params(&self) -> &BTreeMap<String, i32> {
        &self.params
    }
    /// The parameter `name` clamped to `min..=max`, or `default` if absent (param-spec).
    pub fn param(&self, name: &str, default: i32, min: i32, max: i32) -> i32 {
        self.params
            .get(name)
            .map_or(default, |&v| v.clamp(min, max.max(min)))
    }
    /// The authority section.
    pub fn authorities(&self) -> &[DirSource] {
        &self.authorities
    }
    /// The router status entries, sorted by identity.
    pub fn routers(&self) -> &[RouterStatus] {
        &self.routers
    }
    /// `bandwidth-weights`.
    pub fn bandwidth_weights(&self) -> &BTreeMap<String, i32> {
        &self.bandwidth_weights
    }
    /// The `directory-signature` items.
    pub fn signatures(&self) -> &[DirectorySignature] {
        &self.signatures
    }
    /// SHA-1 of the signed part.
    pub fn digest_sha1(&self) -> &[u8; 20] {
        &self.sha1
    }
    /// SHA-256 of the signed part.
    pub fn digest_sha256(&self) -> &[u8; 32] {
        &self.sha256
    }
}

/// The `&'static str` for a keyword with a fixed section (for error values).
fn static_kw(kw: &str) -> &'static str {
    const ALL: &[&str] = &[
        "network-status-version",
        "vote-status",
        "consensus-method",
        "valid-after",
        "fresh-until",
        "valid-until",
        "voting-delay",
        "client-versions",
        "server-versions",
        "known-flags",
        "recommended-client-protocols",
        "recommended-relay-protocols",
        "required-client-protocols",
        "required-relay-protocols",
        "params",
        "shared-rand-previous-value",
        "shared-rand-current-value",
        "package",
        "dir-source",
        "contact",
        "vote-digest",
        "r",
        "a",
        "m",
        "s",
        "v",
        "pr",
        "w",
        "p",
        "directory-footer",
        "bandwidth-weights",
        "directory-signature",
    ];
    ALL.iter()
        .copied()
        .find(|k| *k == kw)
        .unwrap_or("unknown item")
}

/// Parse one router status entry (items from an `r` line to before the next).
fn parse_router(entry: &[Item<'_>], flavor: Flavor) -> DirResult<RouterStatus> {
    let r = entry.first().ok_or(DirError::MissingItem("r"))?;
    check_counts(entry, ROUTER_ONCE, &["r", "s"])?;
    let kw = "r";
    let nickname = need_arg(r, kw, 0, "missing nickname")?;
    let rsa_identity = RsaIdentity::from_bytes(
        b64_decode_array::<20>(need_arg(r, kw, 1, "missing identity")?)
            .ok_or_else(|| bad_arg(r, kw, "bad identity"))?,
    );
    let (digest, rest) = match flavor {
        Flavor::Ns => (
            RouterDigest::Descriptor(
                b64_decode_array::<20>(need_arg(r, kw, 2, "missing digest")?)
                    .ok_or_else(|| bad_arg(r, kw, "bad digest"))?,
            ),
            3,
        ),
        Flavor::Microdesc => {
            let kw = "m";
            let m = the(entry, kw)?;
            (
                RouterDigest::Microdesc(
                    b64_decode_array::<32>(need_arg(m, kw, 0, "missing digest")?)
                        .ok_or_else(|| bad_arg(m, kw, "bad digest"))?,
                ),
                2,
            )
        }
    };
    let published = time_arg(r, kw, rest)?;
    let address: Ipv4Addr = need_arg(r, kw, rest + 2, "missing IP")?
        .parse()
        .map_err(|_| bad_arg(r, kw, "bad IP"))?;
    let or_port = num_arg(r, kw, rest + 3, "bad ORPort")?;
    let dir_port = num_arg(r, kw, rest + 4, "bad DirPort")?;

    let mut flags = RelayFlags::default();
    for f in the(entry, "s")?.args() {
        if let Some(flag) = RelayFlags::from_name(f) {
            flags = flags.union(flag);
        }
    }
    let mut ipv6 = None;
    for a in entry.iter().filter(|i| i.keyword() == "a") {
        let addr: SocketAddr = need_arg(a, "a", 0, "missing address")?
            .parse()
            .map_err(|_| bad_arg(a, "a", "bad address"))?;
        if ipv6.is_none() && addr.is_ipv6() {
            ipv6 = Some(addr);
        }
    }
    let (mut bandwidth, mut unmeasured) = (None, false);
    if let Some(w) = opt(entry, "w") {
        for a in w.args() {
            if let Some(v) = a.strip_prefix("Bandwidth=") {
                if !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad_arg(w, "w", "bad Bandwidth"));
                }
                bandwidth = Some(v.parse().map_err(|_| bad_arg(w, "w", "bad Bandwidth"))?);
            } else if a == "Unmeasured=1" {
                unmeasured = true;
            }
        }
    }
    let protocols = opt(entry, "pr")
        .map(|it| {
            it.args_str()
                .parse()
                .map_err(|_| bad_arg(it, "pr", "bad protocol list"))
        })
        .transpose()?;
    let port_policy = match flavor {
        Flavor::Ns => opt(entry, "p")
            .map(|it| {
                it.args_str()
                    .parse()
                    .map_err(|_| bad_arg(it, "p", "bad port policy"))
            })
            .transpose()?,
        Flavor::Microdesc => None,
    };
    for it in entry {
        no_object(it, "router status item")?;
    }
    Ok(RouterStatus {
        nickname: nickname.to_owned(),
        rsa_identity,
        digest,
        published,
        address,
        or_port,
        dir_port,
        ipv6,
        flags,
        version: opt(entry, "v").map(|it| it.args_str().to_owned()),
        protocols,
        bandwidth,
        unmeasured,
        port_policy,
    })
}

#[cfg(test)]
mod test {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::dir::encode::{b64_unpadded, parse_time};

    const MD: &str = include_str!("testdata/consensus-microdesc.txt");
    const NS: &str = include_str!("testdata/consensus-ns.txt");
    const CERTS: &str = include_str!("testdata/authority-certs.txt");
    /// 2026-11-25 22:52:50 UTC, between valid-after and valid-until of both fixtures.
    const NOW: u64 = 1_795_647_170;

    fn certs() -> Vec<AuthorityCert> {
        AuthorityCert::parse_many(CERTS)
            .unwrap()
            .into_iter()
            .map(Result::unwrap)
            .collect()
    }

    fn authorities() -> Vec<RsaIdentity> {
        [
            "C874BB1F7B97D1906140E4444FC66A138CB2D84E",
            "C115713E4671EB2A2C6F5FAF54547906558D66BF",
            "8D985B0163B47E2F859194C976E7BF685CE1C5B8",
        ]
        .iter()
        .map(|h| RsaIdentity::from_hex(h).unwrap())
        .collect()
    }

    #[test]
    fn c_tor_microdesc_consensus() {
        let c = Consensus::parse(MD).unwrap();
        assert_eq!(c.flavor(), Flavor::Microdesc);
        assert_eq!(c.consensus_method(), 35);
        assert_eq!(
            c.valid_after(),
            parse_time("2026-11-25", "22:52:43").unwrap()
        );
        assert_eq!(c.fresh_until(), c.valid_after() + 10);
        assert_eq!(c.valid_until(), c.valid_after() + 20);
        assert_eq!(c.voting_delay(), (2, 2));
        assert_eq!(c.known_flags().len(), 12);
        assert!(c.required_relay_protocols().supports("Link", 5));
        assert!(!c.required_client_protocols().supports("Link", 5));
        assert!(c.params().is_empty());
        assert_eq!(c.param("circwindow", 1000, 100, 1000), 1000);
        assert_eq!(c.authorities().len(), 3);
        assert_eq!(c.authorities()[0].nickname, "auth2");
        assert_eq!(c.authorities()[0].contact.as_deref(), Some("tornet"));
        assert!(c.authorities()[0].vote_digest.is_some());
        assert_eq!(c.routers().len(), 6);
        let exit0 = &c.routers()[0];
        assert_eq!(exit0.nickname, "exit0");
        assert_eq!(
            b64_unpadded(exit0.rsa_identity.as_bytes()),
            "Fd3Y2s949RjFCU8dy7OCB6V1EC4"
        );
        assert_eq!(
            b64_unpadded(exit0.microdesc_digest().unwrap()),
            "utV7jrI2eBQIUNTkKy7jVcksT2/qc7Qzc0SpRt+mvvs"
        );
        assert_eq!(exit0.or_port, 27748);
        assert!(
            exit0.flags.contains(
                RelayFlags::EXIT
                    .union(RelayFlags::RUNNING)
                    .union(RelayFlags::VALID)
            )
        );
        assert!(!exit0.flags.contains(RelayFlags::AUTHORITY));
        assert_eq!(exit0.version.as_deref(), Some("Tor 0.4.9.11"));
        assert!(exit0.protocols.as_ref().unwrap().supports("Relay", 6));
        assert_eq!((exit0.bandwidth, exit0.unmeasured), (Some(0), true));
        assert_eq!(c.bandwidth_weights().get("Wgg"), Some(&5295));
        assert_eq!(c.signatures().len(), 3);
        assert!(
            c.signatures()
                .iter()
                .all(|s| s.algorithm == SignatureAlgorithm::Sha256)
        );

        let check = c.verify(&authorities(), &certs(), NOW, 0).unwrap();
        assert_eq!((check.valid, check.needed), (3, 2));
        assert!(c.missing_certs(&authorities(), &certs()).is_empty());
    }

    #[test]
    fn c_tor_ns_consensus_sha1() {
        let c = Consensus::parse(NS).unwrap();
        assert_eq!(c.flavor(), Flavor::Ns);
        assert!(
            c.signatures()
                .iter()
                .all(|s| s.algorithm == SignatureAlgorithm::Sha1)
        );
        let exit0 = &c.routers()[0];
        assert!(matches!(exit0.digest, RouterDigest::Descriptor(_)));
        assert_eq!(
            exit0.port_policy.as_ref().unwrap().to_string(),
            "accept 1-65535"
        );
        assert_eq!(
            exit0.published,
            parse_time("2026-11-25", "22:52:34").unwrap()
        );
        let check = c.verify(&authorities(), &certs(), NOW, 0).unwrap();
        assert_eq!(check.valid, 3);
    }

    #[test]
    fn too_few_signatures() {
        let certs = certs();
        let c = Consensus::parse(MD).unwrap();
        // Only one certificate available: 1 valid of 2 needed.
        let one: Vec<AuthorityCert> = certs.iter().take(1).cloned().collect();
        assert_eq!(
            c.verify(&authorities(), &one, NOW, 0),
            Err(DirError::TooFewSignatures {
                valid: 1,
                needed: 2
            })
        );
        assert_eq!(c.missing_certs(&authorities(), &one).len(), 2);
        // Drop two of the three signatures from the document.
        let first_sig = MD.find("directory-signature").unwrap();
        let second_sig = first_sig + 1 + MD[first_sig + 1..].find("directory-signature").unwrap();
        let t = &MD[..second_sig];
        assert_eq!(
            Consensus::parse(t)
                .unwrap()
                .verify(&authorities(), &certs, NOW, 0),
            Err(DirError::TooFewSignatures {
                valid: 1,
                needed: 2
            })
        );
        // A signature copied twice counts once.
        let sig = &MD[first_sig..second_sig];
        let t = format!("{}{sig}{sig}", &MD[..first_sig]);
        assert_eq!(
            Consensus::parse(&t)
                .unwrap()
                .verify(&authorities(), &certs, NOW, 0),
            Err(DirError::TooFewSignatures {
                valid: 1,
                needed: 2
            })
        );
    }

    #[test]
    fn wrong_authority_set() {
        let c = Consensus::parse(MD).unwrap();
        let others: Vec<RsaIdentity> = (1u8..=3)
            .map(|i| RsaIdentity::from_bytes([i; 20]))
            .collect();
        assert_eq!(
            c.verify(&others, &certs(), NOW, 0),
            Err(DirError::TooFewSignatures {
                valid: 0,
                needed: 2
            })
        );
        // Our three plus two strangers: 3 of 5 is still a majority; plus three: 3 of 8 is not.
        let mut five = authorities();
        five.extend(others.iter().take(2));
        assert_eq!(c.verify(&five, &certs(), NOW, 0).unwrap().needed, 3);
        let mut eight = five.clone();
        eight.extend((4u8..=6).map(|i| RsaIdentity::from_bytes([i; 20])));
        assert_eq!(
            c.verify(&eight, &certs(), NOW, 0),
            Err(DirError::TooFewSignatures {
                valid: 3,
                needed: 5
            })
        );
        assert_eq!(
            c.verify(&[], &certs(), NOW, 0),
            Err(DirError::TooFewSignatures {
                valid: 0,
                needed: 1
            })
        );
    }

    #[test]
    fn times() {
        let c = Consensus::parse(MD).unwrap();
        let (va, vu) = (c.valid_after(), c.valid_until());
        assert_eq!(
            c.verify(&authorities(), &certs(), vu + 1, 0),
            Err(DirError::Expired {
                valid_until: vu,
                now: vu + 1
            })
        );
        assert_eq!(
            c.verify(&authorities(), &certs(), va - 61, 60),
            Err(DirError::NotYetValid {
                valid_after: va - 60,
                now: va - 61
            })
        );
        c.verify(&authorities(), &certs(), va - 60, 60).unwrap();
        c.verify(&authorities(), &certs(), vu + 3600, 3600).unwrap();
        // A certificate that expired (long after the consensus) does not count.
        let far = certs().iter().map(AuthorityCert::expires).max().unwrap() + 1;
        assert_eq!(
            c.verify_signatures(&authorities(), &certs(), far, 0),
            Err(DirError::TooFewSignatures {
                valid: 0,
                needed: 2
            })
        );
    }

    #[test]
    fn tampering_breaks_every_signature() {
        // Change a relay's ORPort: all three signatures fail.
        let t = MD.replacen("127.0.0.1 27748 0", "127.0.0.1 27749 0", 1);
        assert_ne!(t, MD);
        let c = Consensus::parse(&t).unwrap();
        assert_eq!(
            c.verify(&authorities(), &certs(), NOW, 0),
            Err(DirError::TooFewSignatures {
                valid: 0,
                needed: 2
            })
        );
        // Change a signature byte.
        let at = MD.find("-----BEGIN SIGNATURE-----\n").unwrap() + 27;
        let mut b = MD.as_bytes().to_vec();
        b[at] = if b[at] == b'A' { b'B' } else { b'A' };
        let c = Consensus::parse(std::str::from_utf8(&b).unwrap()).unwrap();
        assert_eq!(c.verify(&authorities(), &certs(), NOW, 0).unwrap().valid, 2);
    }

    #[test]
    fn structure_errors() {
        let p = |t: &str| Consensus::parse(t).unwrap_err();
        // Unsigned content after the signatures.
        assert!(matches!(
            p(&format!("{MD}x-unsigned 1\n")),
            DirError::MisplacedItem { .. }
        ));
        assert!(matches!(
            p(&format!(
                "{MD}r x AAAAAAAAAAAAAAAAAAAAAAAAAAA 2038-01-01 00:00:00 1.2.3.4 1 0\n"
            )),
            DirError::MisplacedItem { keyword: "r", .. }
        ));
        // A preamble item among the routers.
        let t = MD.replacen(
            "s Exit Fast",
            "valid-after 2026-11-25 22:52:43\ns Exit Fast",
            1,
        );
        assert!(matches!(
            p(&t),
            DirError::MisplacedItem {
                keyword: "valid-after",
                ..
            }
        ));
        // Entries out of order.
        let a = MD.find("\nr exit0").unwrap() + 1;
        let b = MD.find("\nr auth1").unwrap() + 1;
        let c = MD.find("\nr auth0").unwrap() + 1;
        let t = format!("{}{}{}{}", &MD[..a], &MD[b..c], &MD[a..b], &MD[c..]);
        assert!(matches!(p(&t), DirError::BadArgument { keyword: "r", .. }));
        // Missing m line.
        let t = MD.replacen("m utV7jrI2eBQIUNTkKy7jVcksT2/qc7Qzc0SpRt+mvvs\n", "", 1);
        assert_eq!(p(&t), DirError::MissingItem("m"));
        assert_eq!(
            p(&MD.replacen("vote-status consensus", "vote-status vote", 1)),
            DirError::BadArgument {
                keyword: "vote-status",
                line: 2,
                what: "not a consensus"
            }
        );
        assert!(matches!(
            p(&MD.replacen(
                "fresh-until 2026-11-25 22:52:53",
                "fresh-until 2026-11-25 23:52:53",
                1
            )),
            DirError::BadArgument {
                keyword: "valid-until",
                ..
            }
        ));
        let sigs = MD.find("directory-signature").unwrap();
        assert_eq!(p(&MD[..sigs]), DirError::MissingItem("directory-signature"));
        assert!(matches!(
            p(&MD.replacen(
                "network-status-version 3 microdesc",
                "network-status-version 4 microdesc",
                1
            )),
            DirError::BadArgument { line: 1, .. }
        ));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        #[test]
        fn garbage_never_panics(s in "(network-status-version 3 microdesc\n)?((r|m|s|w|dir-source|directory-signature|valid-after|params)( [ -~]{0,12}){0,8}\n){0,12}") {
            let _ = Consensus::parse(&s);
        }

        #[test]
        fn truncations_never_panic(cut in 0usize..5143) {
            let cut = cut.min(MD.len());
            if let Some(t) = MD.get(..cut) {
                let _ = Consensus::parse(t).map(|c| c.verify(&authorities(), &[], NOW, 0));
            }
        }
    }
}
