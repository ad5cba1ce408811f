//! Server descriptors (dir-spec §2.1.1): [`ServerDescriptorBuilder`] makes and signs ours,
//! [`ServerDescriptor::parse`] parses one and verifies every signature in it.
//!
//! A descriptor proves its keys to each other:
//! - `identity-ed25519`: certificate type 4 by the Ed25519 identity (`master-key-ed25519`)
//!   of the Ed25519 signing key;
//! - `onion-key-crosscert`: RSA PKCS#1 v1.5 signature, by the TAP onion key, of the 52 bytes
//!   `SHA1(DER(identity RSA key)) | Ed25519 identity` (signed raw, not hashed again; C tor's
//!   `make_tap_onion_key_crosscert`);
//! - `ntor-onion-key-crosscert`: certificate type 0a of the Ed25519 identity by the ntor key
//!   in Ed25519 form (see [`ntor_cc`](super::ntor_cc));
//! - `router-sig-ed25519`: Ed25519 signature by the signing key of
//!   `SHA256("Tor router descriptor signature v1" | document through "router-sig-ed25519 ")`;
//! - `router-signature`: RSA PKCS#1 v1.5 signature, without `DigestInfo`, by the RSA
//!   identity key (`signing-key`) of `SHA1(document through "router-signature\n")`. That
//!   SHA-1 is also the descriptor's digest (the `r` line of an ns consensus).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use ::rsa::{Pkcs1v15Sign, PrivateKey, PublicKey};
use ed25519_dalek::{Signature, Signer};
use rand_core::CryptoRng;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use x25519_dalek::{PublicKey as X25519Public, StaticSecret};

use super::encode::{
    b64_decode_array, b64_unpadded, bad_arg, check_counts, format_time, hex20, items_text,
    need_arg, no_object, num_arg, object_data, opt, rsa_key_object, split_items, the, time_arg,
    write_object, write_rsa_public,
};
use super::meta::{Item, Limits, tokenize};
use super::ntor_cc::{check_ntor_crosscert, make_ntor_crosscert};
use super::proto::Protocols;
use super::{DirError, DirResult};
use crate::certs::link::RelaySigningMaterial;
use crate::certs::{
    CertError, Ed25519Cert, Ed25519Identity, RsaIdentity, cert_type, expiration_hours,
};
use crate::policy::{ExitPolicy, IpFamily, PortPolicy};

/// Prefix of the digest signed by `router-sig-ed25519`.
pub const ED_SIG_PREFIX: &[u8] = b"Tor router descriptor signature v1";

/// Object tag of Ed25519 certificates.
pub const ED25519_CERT_TAG: &str = "ED25519 CERT";

/// The protocols our relay implements (tor-spec §9), in canonical form: link protocols 3-5
/// with Ed25519 link authentication, TAP/CREATE_FAST, ntor, EXTEND2 and ntor-v3 circuit
/// handshakes, authenticated SENDMEs, and the descriptor/microdescriptor/consensus formats
/// with Ed25519 keys. Missing from the network's `required-relay-protocols` (C tor 0.4.9):
/// `DirCache=2`, `FlowCtrl=2` (congestion control), `HSDir=2`, `HSIntro=4-5`, `HSRend=2`.
pub const DEFAULT_PROTO: &str =
    "Cons=1-2 Desc=1-2 FlowCtrl=1 Link=3-5 LinkAuth=3 Microdesc=1-2 Relay=1-4";

/// Our default `platform` line: our own name and version. C tor authorities only parse a
/// platform that starts with `Tor ` (and then require a version >= 0.4.5.6).
pub const DEFAULT_PLATFORM: &str = concat!("onion-wasm ", env!("CARGO_PKG_VERSION"), " on Rust");

/// Default lifetime of the ntor cross-certificate: C tor's default onion key lifetime
/// (`OnionKeyRotationDays`, 28 days).
pub const NTOR_CROSSCERT_LIFETIME_SECS: u64 = 28 * 86_400;

/// Bandwidth claims, in bytes per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Bandwidth {
    /// What the relay is willing to sustain over long periods.
    pub average: u64,
    /// What it is willing to sustain in short bursts.
    pub burst: u64,
    /// What it has observed itself to handle.
    pub observed: u64,
}

/// Whether `s` is a valid relay nickname: 1 to 19 ASCII letters and digits.
pub fn is_valid_nickname(s: &str) -> bool {
    (1..=19).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Builds and signs our server descriptor. Fill the public fields (or start from
/// [`ServerDescriptorBuilder::new`]), then call [`sign`](Self::sign).
#[derive(Debug, Clone)]
pub struct ServerDescriptorBuilder {
    /// Nickname (1-19 letters and digits).
    pub nickname: String,
    /// IPv4 address of the ORPort.
    pub address: Ipv4Addr,
    /// The ORPort.
    pub or_port: u16,
    /// The DirPort, 0 for none.
    pub dir_port: u16,
    /// The `platform` line ([`DEFAULT_PLATFORM`]).
    pub platform: String,
    /// The `proto` line ([`DEFAULT_PROTO`]).
    pub proto: Protocols,
    /// Publication time, seconds since the epoch.
    pub published: u64,
    /// Seconds since the process started, if it should be published.
    pub uptime: Option<u64>,
    /// Bandwidth claims.
    pub bandwidth: Bandwidth,
    /// `family` entries (nicknames or `$HEX` fingerprints); none if empty.
    pub family: Vec<String>,
    /// The exit policy: its IPv4 rules become `accept`/`reject` lines, its IPv6 summary the
    /// `ipv6-policy` line (omitted if IPv6 exits are all rejected).
    pub exit_policy: ExitPolicy,
    /// `contact` line, if any.
    pub contact: Option<String>,
    /// For bridges: the `bridge-distribution-request` method (e.g. `none`); must be `None`
    /// for public relays.
    pub bridge_distribution_request: Option<String>,
    /// Emit `hidden-service-dir` (only if we store onion service descriptors).
    pub hidden_service_dir: bool,
    /// Emit `tunnelled-dir-server` (if we answer BEGIN_DIR directory requests).
    pub tunnelled_dir_server: bool,
    /// Lifetime of the ntor cross-certificate from `published`.
    pub ntor_crosscert_lifetime_secs: u64,
}

impl ServerDescriptorBuilder {
    /// A relay descriptor with the defaults: no DirPort, [`DEFAULT_PLATFORM`],
    /// [`DEFAULT_PROTO`], no uptime, zero bandwidth, no family, `reject *:*`, no contact, no
    /// bridge line, no `hidden-service-dir`, no `tunnelled-dir-server`.
    pub fn new(nickname: &str, address: Ipv4Addr, or_port: u16, published: u64) -> Self {
        ServerDescriptorBuilder {
            nickname: nickname.to_owned(),
            address,
            or_port,
            dir_port: 0,
            platform: DEFAULT_PLATFORM.to_owned(),
            proto: DEFAULT_PROTO.parse().unwrap_or_default(),
            published,
            uptime: None,
            bandwidth: Bandwidth::default(),
            family: Vec::new(),
            exit_policy: ExitPolicy::reject_all(),
            contact: None,
            bridge_distribution_request: None,
            hidden_service_dir: false,
            tunnelled_dir_server: false,
            ntor_crosscert_lifetime_secs: NTOR_CROSSCERT_LIFETIME_SECS,
        }
    }

    /// Produce the signed descriptor text for the relay with `keys` (RSA identity, Ed25519
    /// signing key and its type 4 certificate), TAP onion key `tap_onion_key` (RSA-1024) and
    /// ntor onion key `ntor_onion_key`. The result is parsed back and verified before it is
    /// returned. `rng` blinds the RSA signatures.
    pub fn sign<R: CryptoRng + ?Sized>(
        &self,
        keys: &RelaySigningMaterial,
        tap_onion_key: &PrivateKey,
        ntor_onion_key: &StaticSecret,
        rng: &mut R,
    ) -> DirResult<String> {
        if !is_valid_nickname(&self.nickname) {
            return Err(DirError::Encode("nickname must be 1-19 letters and digits"));
        }
        for (what, s) in [
            ("platform", Some(self.platform.as_str())),
            ("contact", self.contact.as_deref()),
            (
                "bridge-distribution-request",
                self.bridge_distribution_request.as_deref(),
            ),
        ] {
            if s.is_some_and(|s| !is_line_text(s)) {
                return Err(DirError::Encode(what));
            }
        }
        if self
            .bridge_distribution_request
            .as_deref()
            .is_some_and(|m| {
                m.is_empty()
                    || !m
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
        {
            return Err(DirError::Encode("bridge-distribution-request method"));
        }
        if self
            .family
            .iter()
            .any(|f| f.is_empty() || !f.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(DirError::Encode("family entry"));
        }
        let rsa_pub = keys.rsa_identity_key().as_public_key();
        let ed_id = *keys.ed_identity();
        let id_cert = keys.identity_v_signing();
        let (ntor_cc, sign_bit) = make_ntor_crosscert(
            ntor_onion_key,
            &ed_id,
            expiration_hours(self.published, self.ntor_crosscert_lifetime_secs),
        )
        .map_err(|err| DirError::Cert {
            keyword: "ntor-onion-key-crosscert",
            err,
        })?;
        let mut tap_cc_data = Vec::with_capacity(52);
        tap_cc_data.extend_from_slice(keys.rsa_id().as_bytes());
        tap_cc_data.extend_from_slice(ed_id.as_bytes());
        let tap_cc = tap_onion_key
            .sign_with_rng(rng, Pkcs1v15Sign::new_unprefixed(), &tap_cc_data)
            .map_err(|_| DirError::Signing("onion-key-crosscert"))?;

        let mut d = String::with_capacity(4096);
        d.push_str(&format!(
            "router {} {} {} 0 {}\n",
            self.nickname, self.address, self.or_port, self.dir_port
        ));
        d.push_str("identity-ed25519\n");
        write_object(&mut d, ED25519_CERT_TAG, id_cert.encoded());
        d.push_str(&format!(
            "master-key-ed25519 {}\n",
            b64_unpadded(ed_id.as_bytes())
        ));
        d.push_str(&format!("platform {}\n", self.platform));
        d.push_str(&format!("proto {}\n", self.proto));
        d.push_str(&format!("published {}\n", format_time(self.published)));
        d.push_str(&format!(
            "fingerprint {}\n",
            spaced_fingerprint(keys.rsa_id())
        ));
        if let Some(up) = self.uptime {
            d.push_str(&format!("uptime {up}\n"));
        }
        let bw = self.bandwidth;
        d.push_str(&format!(
            "bandwidth {} {} {}\n",
            bw.average, bw.burst, bw.observed
        ));
        d.push_str("onion-key\n");
        write_rsa_public(&mut d, tap_onion_key.as_public_key())?;
        d.push_str("signing-key\n");
        write_rsa_public(&mut d, rsa_pub)?;
        d.push_str("onion-key-crosscert\n");
        write_object(&mut d, "CROSSCERT", &tap_cc);
        d.push_str(&format!("ntor-onion-key-crosscert {sign_bit}\n"));
        write_object(&mut d, ED25519_CERT_TAG, ntor_cc.encoded());
        if !self.family.is_empty() {
            d.push_str(&format!("family {}\n", self.family.join(" ")));
        }
        if self.hidden_service_dir {
            d.push_str("hidden-service-dir\n");
        }
        if let Some(c) = &self.contact {
            d.push_str(&format!("contact {c}\n"));
        }
        if let Some(m) = &self.bridge_distribution_request {
            d.push_str(&format!("bridge-distribution-request {m}\n"));
        }
        let ntor_pub = X25519Public::from(ntor_onion_key);
        d.push_str(&format!(
            "ntor-onion-key {}\n",
            b64_unpadded(ntor_pub.as_bytes())
        ));
        d.push_str(&self.exit_policy.to_descriptor_text());
        d.push('\n');
        let v6 = self.exit_policy.summarize(IpFamily::V6);
        if !v6.rejects_all() {
            d.push_str(&format!("ipv6-policy {v6}\n"));
        }
        if self.tunnelled_dir_server {
            d.push_str("tunnelled-dir-server\n");
        }
        d.push_str("router-sig-ed25519 ");
        let digest = ed_signed_digest(&d);
        let ed_sig = keys.ed_signing_key().sign(&digest);
        d.push_str(&b64_unpadded(&ed_sig.to_bytes()));
        d.push_str("\nrouter-signature\n");
        let sha1: [u8; 20] = Sha1::digest(d.as_bytes()).into();
        let rsa_sig = keys
            .rsa_identity_key()
            .sign_with_rng(rng, Pkcs1v15Sign::new_unprefixed(), &sha1)
            .map_err(|_| DirError::Signing("router-signature"))?;
        write_object(&mut d, "SIGNATURE", &rsa_sig);
        if d.len() > Limits::SERVER_DESCRIPTOR.max_len {
            return Err(DirError::TooLarge {
                what: "server descriptor",
                len: d.len(),
                max: Limits::SERVER_DESCRIPTOR.max_len,
            });
        }
        ServerDescriptor::parse(&d)?;
        Ok(d)
    }
}

/// Whether `s` can be the rest of a keyword line: no control characters.
fn is_line_text(s: &str) -> bool {
    !s.chars().any(char::is_control)
}

/// `SHA256(ED_SIG_PREFIX | signed)`.
fn ed_signed_digest(signed: &str) -> [u8; 32] {
    Sha256::new()
        .chain_update(ED_SIG_PREFIX)
        .chain_update(signed.as_bytes())
        .finalize()
        .into()
}

/// The `fingerprint` line's form: 10 groups of 4 uppercase hex digits.
fn spaced_fingerprint(id: &RsaIdentity) -> String {
    let hex = id.to_string();
    let groups: Vec<&str> = (0..10).filter_map(|i| hex.get(i * 4..i * 4 + 4)).collect();
    groups.join(" ")
}

/// A parsed server descriptor whose signatures and cross-certificates all verified.
///
/// Certificate expiry is not checked by [`parse`](Self::parse): call
/// [`check_valid_at`](Self::check_valid_at).
#[derive(Debug, Clone)]
pub struct ServerDescriptor {
    nickname: String,
    address: Ipv4Addr,
    or_port: u16,
    dir_port: u16,
    or_addresses: Vec<SocketAddr>,
    ed_identity: Ed25519Identity,
    identity_cert: Ed25519Cert,
    ed_signing_key: Ed25519Identity,
    rsa_identity_key: PublicKey,
    rsa_identity: RsaIdentity,
    tap_onion_key: Option<PublicKey>,
    ntor_onion_key: X25519Public,
    ntor_crosscert: Ed25519Cert,
    platform: Option<String>,
    proto: Protocols,
    published: u64,
    uptime: Option<u64>,
    bandwidth: Bandwidth,
    family: Vec<String>,
    exit_policy: ExitPolicy,
    ipv6_policy: Option<PortPolicy>,
    contact: Option<String>,
    bridge_distribution_request: Option<String>,
    hidden_service_dir: bool,
    tunnelled_dir_server: bool,
    hibernating: bool,
    extra_info_digest: Option<[u8; 20]>,
    digest: [u8; 20],
}

/// Keywords that may appear at most once.
const AT_MOST_ONCE: &[&str] = &[
    "router",
    "identity-ed25519",
    "master-key-ed25519",
    "bandwidth",
    "platform",
    "published",
    "fingerprint",
    "hibernating",
    "uptime",
    "onion-key",
    "onion-key-crosscert",
    "ntor-onion-key",
    "ntor-onion-key-crosscert",
    "signing-key",
    "ipv6-policy",
    "router-sig-ed25519",
    "router-signature",
    "contact",
    "bridge-distribution-request",
    "family",
    "caches-extra-info",
    "extra-info-digest",
    "hidden-service-dir",
    "tunnelled-dir-server",
    "proto",
    "overload-general",
];

/// Required keywords.
const REQUIRED: &[&str] = &[
    "router",
    "identity-ed25519",
    "master-key-ed25519",
    "bandwidth",
    "published",
    "ntor-onion-key",
    "ntor-onion-key-crosscert",
    "signing-key",
    "router-sig-ed25519",
    "router-signature",
    "proto",
];

impl ServerDescriptor {
    /// Parse one server descriptor and verify its signatures and cross-certificates (see
    /// the [module documentation](self)). One or more blank lines may follow it.
    pub fn parse(text: &str) -> DirResult<Self> {
        let items = tokenize(text, &Limits::SERVER_DESCRIPTOR)?;
        Self::from_items(text, &items)
    }

    /// Split concatenated descriptors (e.g. `/tor/server/all`) and parse each.
    pub fn parse_many(text: &str) -> DirResult<Vec<DirResult<Self>>> {
        let items = tokenize(text, &Limits::SERVER_DESCRIPTORS)?;
        let runs = split_items(&items, "router", |_, it| it.keyword() == "router")?;
        Ok(runs
            .into_iter()
            .map(|run| Self::parse(items_text(text, run)))
            .collect())
    }

    fn from_items(text: &str, items: &[Item<'_>]) -> DirResult<Self> {
        // Position rules.
        let first = items.first().ok_or(DirError::MissingItem("router"))?;
        if first.keyword() != "router" {
            return Err(DirError::MisplacedItem {
                keyword: "router",
                line: first.line(),
            });
        }
        check_counts(items, AT_MOST_ONCE, REQUIRED)?;
        let n = items.len();
        let position_ok = |kw: &'static str, idx: usize| -> DirResult<()> {
            match items.get(idx) {
                Some(i) if i.keyword() == kw => Ok(()),
                _ => Err(DirError::MisplacedItem {
                    keyword: kw,
                    line: the(items, kw).map_or(0, Item::line),
                }),
            }
        };
        position_ok("identity-ed25519", 1)?;
        position_ok("router-signature", n.saturating_sub(1))?;
        position_ok("router-sig-ed25519", n.saturating_sub(2))?;

        // router nickname address ORPort SOCKSPort DirPort
        let kw = "router";
        let nickname = need_arg(first, kw, 0, "missing nickname")?;
        if !is_valid_nickname(nickname) {
            return Err(bad_arg(first, kw, "bad nickname"));
        }
        let address: Ipv4Addr = need_arg(first, kw, 1, "missing address")?
            .parse()
            .map_err(|_| bad_arg(first, kw, "bad IPv4 address"))?;
        let or_port: u16 = num_arg(first, kw, 2, "bad ORPort")?;
        let _socks: u16 = num_arg(first, kw, 3, "bad SOCKSPort")?;
        let dir_port: u16 = num_arg(first, kw, 4, "bad DirPort")?;
        no_object(first, kw)?;

        // Ed25519 identity and signing key.
        let kw = "identity-ed25519";
        let it = the(items, kw)?;
        let cert_err = |keyword| move |err| DirError::Cert { keyword, err };
        let identity_cert = Ed25519Cert::decode_typed(
            object_data(it, kw, &[ED25519_CERT_TAG])?,
            cert_type::IDENTITY_V_SIGNING,
        )
        .map_err(cert_err(kw))?;
        if identity_cert.signing_key().is_none() {
            return Err(DirError::Cert {
                keyword: kw,
                err: CertError::MissingSigningKey(cert_type::IDENTITY_V_SIGNING),
            });
        }
        let ed_identity = identity_cert.check_signature(None).map_err(cert_err(kw))?;
        let ed_signing_key = identity_cert.certified_ed25519().ok_or(DirError::Cert {
            keyword: kw,
            err: CertError::WrongKeyType {
                cert_type: cert_type::IDENTITY_V_SIGNING,
                key_type: identity_cert.key_type(),
            },
        })?;
        let kw = "master-key-ed25519";
        let it = the(items, kw)?;
        let master = Ed25519Identity::from_base64(need_arg(it, kw, 0, "missing key")?)
            .ok_or_else(|| bad_arg(it, kw, "bad Ed25519 key"))?;
        if master != ed_identity {
            return Err(DirError::Mismatch(
                "master-key-ed25519 is not the key that signed identity-ed25519",
            ));
        }

        // RSA identity.
        let kw = "signing-key";
        let it = the(items, kw)?;
        let (rsa_identity_key, rsa_der) = rsa_key_object(it, kw, 1024, 1024)?;
        let rsa_identity = RsaIdentity::from_bytes(Sha1::digest(&rsa_der).into());
        if let Some(it) = opt(items, "fingerprint") {
            // C tor concatenates the arguments: any spacing of the 40 hex digits.
            let hex: String = it.args().collect();
            if hex20(&hex).map(RsaIdentity::from_bytes) != Some(rsa_identity) {
                return Err(DirError::Mismatch("fingerprint is not that of signing-key"));
            }
        }

        // TAP onion key and its cross-certificate (optional together).
        let tap_onion_key = match (opt(items, "onion-key"), opt(items, "onion-key-crosscert")) {
            (None, None) => None,
            (Some(_), None) => return Err(DirError::MissingItem("onion-key-crosscert")),
            (None, Some(_)) => return Err(DirError::MissingItem("onion-key")),
            (Some(k), Some(cc)) => {
                let (key, _) = rsa_key_object(k, "onion-key", 1024, 1024)?;
                let sig = object_data(cc, "onion-key-crosscert", &["CROSSCERT"])?;
                let mut signed = Vec::with_capacity(52);
                signed.extend_from_slice(rsa_identity.as_bytes());
                signed.extend_from_slice(ed_identity.as_bytes());
                key.verify(Pkcs1v15Sign::new_unprefixed(), &signed, sig)
                    .map_err(|_| DirError::BadSignature("onion-key-crosscert"))?;
                Some(key)
            }
        };

        // ntor onion key and its cross-certificate.
        let kw = "ntor-onion-key";
        let it = the(items, kw)?;
        let ntor_onion_key = X25519Public::from(
            b64_decode_array::<32>(need_arg(it, kw, 0, "missing key")?)
                .ok_or_else(|| bad_arg(it, kw, "bad curve25519 key"))?,
        );
        let kw = "ntor-onion-key-crosscert";
        let it = the(items, kw)?;
        let sign_bit = match it.arg(0) {
            Some("0") => 0,
            Some("1") => 1,
            _ => return Err(bad_arg(it, kw, "sign bit must be 0 or 1")),
        };
        let ntor_crosscert =
            Ed25519Cert::decode(object_data(it, kw, &[ED25519_CERT_TAG])?).map_err(cert_err(kw))?;
        check_ntor_crosscert(&ntor_crosscert, &ntor_onion_key, sign_bit, &ed_identity)
            .map_err(cert_err(kw))?;

        // Other fields.
        let kw = "bandwidth";
        let it = the(items, kw)?;
        let bandwidth = Bandwidth {
            average: num_arg(it, kw, 0, "bad average")?,
            burst: num_arg(it, kw, 1, "bad burst")?,
            observed: num_arg(it, kw, 2, "bad observed")?,
        };
        let published = time_arg(the(items, "published")?, "published", 0)?;
        let kw = "proto";
        let it = the(items, kw)?;
        let proto: Protocols = it
            .args_str()
            .parse()
            .map_err(|_| bad_arg(it, kw, "bad protocol list"))?;
        let uptime = opt(items, "uptime")
            .map(|it| num_arg(it, "uptime", 0, "bad uptime"))
            .transpose()?;
        let hibernating = match opt(items, "hibernating") {
            Some(it) => match it.arg(0) {
                Some("0") => false,
                Some("1") => true,
                _ => return Err(bad_arg(it, "hibernating", "must be 0 or 1")),
            },
            None => false,
        };
        let extra_info_digest = opt(items, "extra-info-digest")
            .map(|it| {
                need_arg(it, "extra-info-digest", 0, "missing digest").and_then(|h| {
                    hex20(h).ok_or_else(|| bad_arg(it, "extra-info-digest", "bad digest"))
                })
            })
            .transpose()?;
        let ipv6_policy = opt(items, "ipv6-policy")
            .map(|it| {
                it.args_str()
                    .parse::<PortPolicy>()
                    .map_err(|_| bad_arg(it, "ipv6-policy", "bad port policy"))
            })
            .transpose()?;

        let mut policy_lines = Vec::new();
        let mut or_addresses = Vec::new();
        for it in items {
            match it.keyword() {
                kw @ ("accept" | "reject" | "accept6" | "reject6") => {
                    let line = format!("{kw} {}", it.args_str());
                    let one = ExitPolicy::from_descriptor_lines([line.as_str()])
                        .map_err(|_| bad_arg(it, "accept/reject", "bad exit policy rule"))?;
                    policy_lines.extend(one.rules().iter().copied());
                }
                "or-address" => {
                    let a: SocketAddr = need_arg(it, "or-address", 0, "missing address")?
                        .parse()
                        .map_err(|_| bad_arg(it, "or-address", "bad address"))?;
                    or_addresses.push(a);
                }
                _ => {}
            }
        }
        if policy_lines.is_empty() {
            return Err(DirError::MissingItem("accept/reject"));
        }
        let str_of = |kw| opt(items, kw).map(|it| it.args_str().to_owned());

        // The two document signatures.
        let kw = "router-sig-ed25519";
        let it = the(items, kw)?;
        let sig = b64_decode_array::<64>(need_arg(it, kw, 0, "missing signature")?)
            .ok_or_else(|| bad_arg(it, kw, "bad signature encoding"))?;
        no_object(it, kw)?;
        let ed_signed = text
            .get(first.start()..it.keyword_end_plus_one())
            .ok_or(DirError::BadSignature(kw))?;
        let vk = ed_signing_key.to_verifying_key().map_err(cert_err(kw))?;
        vk.verify_strict(&ed_signed_digest(ed_signed), &Signature::from_bytes(&sig))
            .map_err(|_| DirError::BadSignature(kw))?;

        let kw = "router-signature";
        let it = the(items, kw)?;
        if it.n_args() != 0 {
            return Err(bad_arg(it, kw, "no arguments allowed"));
        }
        let sig = object_data(it, kw, &["SIGNATURE"])?;
        let signed = text
            .get(first.start()..it.line_end())
            .ok_or(DirError::BadSignature(kw))?;
        let digest: [u8; 20] = Sha1::digest(signed.as_bytes()).into();
        rsa_identity_key
            .verify(Pkcs1v15Sign::new_unprefixed(), &digest, sig)
            .map_err(|_| DirError::BadSignature(kw))?;

        Ok(ServerDescriptor {
            nickname: nickname.to_owned(),
            address,
            or_port,
            dir_port,
            or_addresses,
            ed_identity,
            identity_cert,
            ed_signing_key,
            rsa_identity_key,
            rsa_identity,
            tap_onion_key,
            ntor_onion_key,
            ntor_crosscert,
            platform: str_of("platform"),
            proto,
            published,
            uptime,
            bandwidth,
            family: opt(items, "family")
                .map(|it| it.args().map(str::to_owned).collect())
                .unwrap_or_default(),
            exit_policy: ExitPolicy::new(policy_lines),
            ipv6_policy,
            contact: str_of("contact"),
            bridge_distribution_request: str_of("bridge-distribution-request"),
            hidden_service_dir: opt(items, "hidden-service-dir").is_some(),
            tunnelled_dir_server: opt(items, "tunnelled-dir-server").is_some(),
            hibernating,
            extra_info_digest,
            digest,
        })
    }

    /// When the first certificate in the descriptor expires (seconds since the epoch).
    pub fn expires_unix(&self) -> u64 {
        self.identity_cert
            .expiry_unix()
            .min(self.ntor_crosscert.expiry_unix())
    }

    /// Fail with [`DirError::Expired`] if a certificate has expired at `now`.
    pub fn check_valid_at(&self, now: u64) -> DirResult<()> {
        if now > self.expires_unix() {
            return Err(DirError::Expired {
                valid_until: self.expires_unix(),
                now,
            });
        }
        Ok(())
    }

    /// The nickname.
    pub fn nickname(&self) -> &str {
        &self.nickname
    }
    /// The IPv4 address of the `router` line.
    pub fn address(&self) -> Ipv4Addr {
        self.address
    }
    /// The ORPort.
    pub fn or_port(&self) -> u16 {
        self.or_port
    }
    /// The DirPort (0 for none).
    pub fn dir_port(&self) -> u16 {
        self.dir_port
    }
    /// The `or-address` lines.
    pub fn or_addresses(&self) -> &[SocketAddr] {
        &self.or_addresses
    }
    /// The ORPort address of the `router` line.
    pub fn or_addr(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.address), self.or_port)
    }
    /// The Ed25519 identity (`master-key-ed25519`).
    pub fn ed_identity(&self) -> &Ed25519Identity {
        &self.ed_identity
    }
    /// The type 4 certificate of the signing key.
    pub fn identity_cert(&self) -> &Ed25519Cert {
        &self.identity_cert
    }
    /// The Ed25519 signing key that signed the descriptor.
    pub fn ed_signing_key(&self) -> &Ed25519Identity {
        &self.ed_signing_key
    }
    /// The RSA identity key (`signing-key`).
    pub fn rsa_identity_key(&self) -> &PublicKey {
        &self.rsa_identity_key
    }
    /// The RSA identity fingerprint.
    pub fn rsa_identity(&self) -> &RsaIdentity {
        &self.rsa_identity
    }
    /// The TAP onion key, if published.
    pub fn tap_onion_key(&self) -> Option<&PublicKey> {
        self.tap_onion_key.as_ref()
    }
    /// The ntor onion key.
    pub fn ntor_onion_key(&self) -> &X25519Public {
        &self.ntor_onion_key
    }
    /// The ntor cross-certificate.
    pub fn ntor_crosscert(&self) -> &Ed25519Cert {
        &self.ntor_crosscert
    }
    /// The `platform` string.
    pub fn platform(&self) -> Option<&str> {
        self.platform.as_deref()
    }
    /// The `proto` line.
    pub fn proto(&self) -> &Protocols {
        &self.proto
    }
    /// Publication time.
    pub fn published(&self) -> u64 {
        self.published
    }
    /// The `uptime`.
    pub fn uptime(&self) -> Option<u64> {
        self.uptime
    }
    /// Bandwidth claims.
    pub fn bandwidth(&self) -> Bandwidth {
        self.bandwidth
    }
    /// `family` entries.
    pub fn family(&self) -> &[String] {
        &self.family
    }
    /// The exit policy from the `accept`/`reject` lines.
    pub fn exit_policy(&self) -> &ExitPolicy {
        &self.exit_policy
    }
    /// The `ipv6-policy` summary (`None`: reject all).
    pub fn ipv6_policy(&self) -> Option<&PortPolicy> {
        self.ipv6_policy.as_ref()
    }
    /// The `contact` string.
    pub fn contact(&self) -> Option<&str> {
        self.contact.as_deref()
    }
    /// The `bridge-distribution-request` method (bridges only).
    pub fn bridge_distribution_request(&self) -> Option<&str> {
        self.bridge_distribution_request.as_deref()
    }
    /// Whether `hidden-service-dir` is present.
    pub fn is_hidden_service_dir(&self) -> bool {
        self.hidden_service_dir
    }
    /// Whether `tunnelled-dir-server` is present.
    pub fn is_tunnelled_dir_server(&self) -> bool {
        self.tunnelled_dir_server
    }
    /// Whether `hibernating 1` is present.
    pub fn is_hibernating(&self) -> bool {
        self.hibernating
    }
    /// The `extra-info-digest` (SHA-1).
    pub fn extra_info_digest(&self) -> Option<&[u8; 20]> {
        self.extra_info_digest.as_ref()
    }
    /// The descriptor's digest: SHA-1 of the text through `router-signature\n`.
    pub fn digest(&self) -> &[u8; 20] {
        &self.digest
    }
}

#[cfg(test)]
mod test {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::testing::seeded_rng;
    use ed25519_dalek::SigningKey;
    use rand::RngExt;

    const FIXTURE: &str = include_str!("testdata/server-descriptors.txt");
    /// Our descriptor (bridge variant), accepted by a C tor 0.4.9.11 authority: "Added
    /// descriptor from 'onionwasm' (source: 127.0.0.1): Descriptor accepted."
    const OURS_ACCEPTED: &str = include_str!("testdata/ours-accepted-by-ctor.txt");
    const NS_CONSENSUS: &str = include_str!("testdata/consensus-ns.txt");
    /// Inside the validity of every document in the fixtures (2026-11-25 22:52:50 UTC).
    pub(crate) const NOW: u64 = 1_795_647_170;

    fn by_nick<'a>(descs: &'a [ServerDescriptor], nick: &str) -> &'a ServerDescriptor {
        descs.iter().find(|d| d.nickname() == nick).unwrap()
    }

    #[test]
    fn c_tor_descriptors_verify() {
        let all = ServerDescriptor::parse_many(FIXTURE).unwrap();
        assert_eq!(all.len(), 6);
        let descs: Vec<ServerDescriptor> = all.into_iter().map(Result::unwrap).collect();
        for d in &descs {
            d.check_valid_at(NOW).unwrap();
            assert!(d.tap_onion_key().is_some());
            assert_eq!(d.platform(), Some("Tor 0.4.9.11 on Linux"));
            assert!(d.proto().supports("Relay", 4));
            // The descriptor digest is the one the ns consensus lists for this relay.
            let r = format!(
                "r {} {} {} ",
                d.nickname(),
                b64_unpadded(d.rsa_identity().as_bytes()),
                b64_unpadded(d.digest())
            );
            assert!(NS_CONSENSUS.contains(&r), "{r}");
        }
        let exit0 = by_nick(&descs, "exit0");
        assert_eq!(exit0.address(), Ipv4Addr::LOCALHOST);
        assert_eq!(exit0.or_port(), 27748);
        assert_eq!(exit0.dir_port(), 0);
        assert_eq!(
            exit0.rsa_identity().to_string(),
            "15DDD8DACF78F518C5094F1DCBB38207A575102E"
        );
        assert_eq!(
            b64_unpadded(exit0.ed_identity().as_bytes()),
            "bKaa9tp0hwtG6fXGzPzhlGsTzWIP+BA2hCfZHJ78dyE"
        );
        assert_eq!(
            b64_unpadded(exit0.ntor_onion_key().as_bytes()),
            "/fuH7Q6xRa2nZzYFFBl95Erl91Yn0PRNPD/RyGzrki0"
        );
        assert_eq!(
            exit0.published(),
            crate::dir::encode::parse_time("2026-11-25", "22:52:34").unwrap()
        );
        assert_eq!(exit0.uptime(), Some(8));
        assert_eq!(exit0.bandwidth().observed, 916);
        assert_eq!(
            exit0.extra_info_digest().map(hex::encode_upper).as_deref(),
            Some("0E6CE3869F290FD745964C80A06B87B18C7AC7D0")
        );
        assert!(exit0.exit_policy().allows("127.0.0.1".parse().unwrap(), 80));
        assert!(exit0.is_hidden_service_dir());
        assert!(exit0.is_tunnelled_dir_server());
        assert_eq!(exit0.contact(), Some("tornet"));
        let auth0 = by_nick(&descs, "auth0");
        assert_eq!(auth0.dir_port(), 11903);
        assert!(!auth0.exit_policy().allows("127.0.0.1".parse().unwrap(), 80));
        // Expired later.
        assert!(matches!(
            exit0.check_valid_at(exit0.expires_unix() + 1),
            Err(DirError::Expired { .. })
        ));
    }

    #[test]
    fn ours_accepted_by_c_tor_still_verifies() {
        let d = ServerDescriptor::parse(OURS_ACCEPTED).unwrap();
        d.check_valid_at(NOW).unwrap();
        assert_eq!(d.nickname(), "onionwasm");
        assert_eq!(d.bridge_distribution_request(), Some("none"));
        assert_eq!(d.platform(), Some(DEFAULT_PLATFORM));
    }

    fn c_tor_first() -> &'static str {
        let second = FIXTURE[1..].find("\nrouter ").unwrap() + 2;
        &FIXTURE[..second]
    }

    #[test]
    fn c_tor_descriptor_tampering_fails() {
        let one = c_tor_first();
        let d = ServerDescriptor::parse(one).unwrap();
        let bw = format!("bandwidth 1073741824 1073741824 {}", d.bandwidth().observed);
        assert!(one.contains(&bw));
        // Change a byte in the body (the bandwidth line): the signatures break.
        let t = one.replace(&bw, "bandwidth 1073741824 1073741824 1");
        assert_eq!(
            ServerDescriptor::parse(&t).unwrap_err(),
            DirError::BadSignature("router-sig-ed25519")
        );
    }

    struct Keys {
        material: RelaySigningMaterial,
        tap: PrivateKey,
        ntor: StaticSecret,
    }

    fn keys(seed: u64) -> Keys {
        let mut rng = seeded_rng(seed);
        let rsa = PrivateKey::new(&mut rng, 1024).unwrap();
        let ed_id = SigningKey::from_bytes(&rng.random());
        let ed_sign = SigningKey::from_bytes(&rng.random());
        let material = RelaySigningMaterial::new(rsa, &ed_id, ed_sign, NOW, &mut rng).unwrap();
        Keys {
            material,
            tap: PrivateKey::new(&mut rng, 1024).unwrap(),
            ntor: StaticSecret::random_from_rng(&mut rng),
        }
    }

    fn builder() -> ServerDescriptorBuilder {
        let mut b =
            ServerDescriptorBuilder::new("onionwasm1", Ipv4Addr::new(127, 0, 0, 1), 9001, NOW);
        b.uptime = Some(42);
        b.bandwidth = Bandwidth {
            average: 1 << 20,
            burst: 2 << 20,
            observed: 12345,
        };
        b.contact = Some("someone <someone@example.invalid>".to_owned());
        b.bridge_distribution_request = Some("none".to_owned());
        b.tunnelled_dir_server = true;
        b.exit_policy =
            ExitPolicy::parse_config("accept *:80,accept *:443,accept6 *:443,reject *:*").unwrap();
        b
    }

    #[test]
    fn ours_round_trips() {
        let k = keys(1);
        let b = builder();
        let text = b
            .sign(&k.material, &k.tap, &k.ntor, &mut seeded_rng(2))
            .unwrap();
        let d = ServerDescriptor::parse(&text).unwrap();
        d.check_valid_at(NOW).unwrap();
        assert_eq!(d.nickname(), "onionwasm1");
        assert_eq!(d.or_addr(), "127.0.0.1:9001".parse().unwrap());
        assert_eq!(d.dir_port(), 0);
        assert_eq!(d.rsa_identity(), k.material.rsa_id());
        assert_eq!(d.ed_identity(), k.material.ed_identity());
        assert_eq!(d.ntor_onion_key(), &X25519Public::from(&k.ntor));
        assert_eq!(d.tap_onion_key(), Some(k.tap.as_public_key()));
        assert_eq!(d.platform(), Some(DEFAULT_PLATFORM));
        assert_eq!(d.proto().to_string(), DEFAULT_PROTO);
        assert_eq!(d.published(), NOW);
        assert_eq!(d.uptime(), Some(42));
        assert_eq!(d.bandwidth(), b.bandwidth);
        assert_eq!(d.contact(), b.contact.as_deref());
        assert_eq!(d.bridge_distribution_request(), Some("none"));
        assert!(d.is_tunnelled_dir_server());
        assert!(!d.is_hidden_service_dir());
        assert_eq!(d.ipv6_policy().unwrap().to_string(), "accept 80,443");
        assert!(d.exit_policy().allows("1.2.3.4".parse().unwrap(), 443));
        assert!(!d.exit_policy().allows("1.2.3.4".parse().unwrap(), 22));
        assert_eq!(
            d.expires_unix(),
            d.identity_cert()
                .expiry_unix()
                .min(d.ntor_crosscert().expiry_unix())
        );
        assert_eq!(
            d.digest(),
            &<[u8; 20]>::from(Sha1::digest(
                &text.as_bytes()[..text.find("router-signature\n").unwrap() + 17]
            ))
        );
        // Deterministic given the same RNG (RSA blinding does not change PKCS#1 v1.5
        // signatures).
        assert_eq!(
            text,
            b.sign(&k.material, &k.tap, &k.ntor, &mut seeded_rng(3))
                .unwrap()
        );
        // Item order as C tor writes it.
        let kws: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with("-----") && l.contains(|c: char| c.is_ascii_lowercase()))
            .filter_map(|l| l.split(' ').next())
            .filter(|k| {
                k.contains(|c: char| c.is_ascii_lowercase()) && !k.contains('+') && !k.contains('/')
            })
            .collect();
        assert_eq!(kws.first(), Some(&"router"));
        assert_eq!(kws.get(1), Some(&"identity-ed25519"));
        assert_eq!(
            &kws[kws.len() - 2..],
            ["router-sig-ed25519", "router-signature"]
        );
    }

    #[test]
    fn tampering_any_signed_byte_fails() {
        let k = keys(4);
        let text = builder()
            .sign(&k.material, &k.tap, &k.ntor, &mut seeded_rng(5))
            .unwrap();
        let signed_end = text.find("router-signature\n").unwrap() + "router-signature\n".len();
        // Every position: replace one character by another plausible one. The result must
        // never be accepted (whatever the error: syntax, a key, a signature).
        let bytes = text.as_bytes();
        let mut checked = 0;
        for i in 0..signed_end {
            let c = bytes[i];
            let repl = match c {
                b'\n' => continue,
                b'A' => b'B',
                b'0'..=b'8' => c + 1,
                b'9' => b'0',
                b'a'..=b'y' => c + 1,
                b'z' => b'a',
                b'B'..=b'Z' => c - 1,
                b' ' => b'\t',
                _ => b'x',
            };
            let mut t = bytes.to_vec();
            t[i] = repl;
            let t = String::from_utf8(t).unwrap();
            assert!(
                ServerDescriptor::parse(&t).is_err(),
                "accepted with byte {i} changed"
            );
            checked += 1;
        }
        assert!(checked > 1500, "{checked}");
    }

    #[test]
    fn signature_specific_errors() {
        let k = keys(6);
        let text = builder()
            .sign(&k.material, &k.tap, &k.ntor, &mut seeded_rng(7))
            .unwrap();
        // Change the contact: the Ed25519 signature is checked first.
        let t = text.replace("someone <", "someone2 <");
        assert_eq!(
            ServerDescriptor::parse(&t).unwrap_err(),
            DirError::BadSignature("router-sig-ed25519")
        );
        // Replace the RSA signature by another descriptor's: only it fails.
        let other = builder()
            .sign(&keys(8).material, &k.tap, &k.ntor, &mut seeded_rng(9))
            .unwrap();
        let sig_at = |s: &str| s.find("router-signature\n").unwrap() + 17;
        let t = format!("{}{}", &text[..sig_at(&text)], &other[sig_at(&other)..]);
        assert_eq!(
            ServerDescriptor::parse(&t).unwrap_err(),
            DirError::BadSignature("router-signature")
        );
        // Another TAP key's crosscert.
        let other_tap = builder()
            .sign(&k.material, &keys(10).tap, &k.ntor, &mut seeded_rng(9))
            .unwrap();
        let cc = |s: &str| {
            let a = s.find("onion-key-crosscert\n").unwrap();
            let b = s.find("ntor-onion-key-crosscert").unwrap();
            s[a..b].to_owned()
        };
        let t = text.replace(&cc(&text), &cc(&other_tap));
        assert_eq!(
            ServerDescriptor::parse(&t).unwrap_err(),
            DirError::BadSignature("onion-key-crosscert")
        );
        // The wrong sign bit.
        let bit = if text.contains("ntor-onion-key-crosscert 0") {
            ("0", "1")
        } else {
            ("1", "0")
        };
        let t = text.replace(
            &format!("ntor-onion-key-crosscert {}", bit.0),
            &format!("ntor-onion-key-crosscert {}", bit.1),
        );
        assert!(matches!(
            ServerDescriptor::parse(&t).unwrap_err(),
            DirError::Cert {
                keyword: "ntor-onion-key-crosscert",
                err: CertError::BadSignature(_)
            }
        ));
    }

    #[test]
    fn structure_errors() {
        let k = keys(11);
        let text = builder()
            .sign(&k.material, &k.tap, &k.ntor, &mut seeded_rng(12))
            .unwrap();
        let p = |t: &str| ServerDescriptor::parse(t).unwrap_err();
        assert_eq!(
            p(&text.replace("proto ", "x-proto ")),
            DirError::MissingItem("proto")
        );
        assert!(matches!(
            p(&text.replace("uptime 42\n", "uptime 42\nuptime 43\n")),
            DirError::DuplicateItem {
                keyword: "uptime",
                ..
            }
        ));
        assert!(matches!(
            p(&format!("x-first\n{text}")),
            DirError::MisplacedItem {
                keyword: "router",
                line: 1
            }
        ));
        assert!(matches!(
            p(&format!("{text}x-after 1\n")),
            DirError::MisplacedItem {
                keyword: "router-signature",
                ..
            }
        ));
        assert!(matches!(
            p(&text.replace("router onionwasm1 ", "router onion_wasm ")),
            DirError::BadArgument {
                keyword: "router",
                line: 1,
                ..
            }
        ));
        // Trailing blank lines are fine.
        ServerDescriptor::parse(&format!("{text}\n\n")).unwrap();
    }

    #[test]
    fn builder_rejects_bad_input() {
        let k = keys(13);
        let mut b = builder();
        b.nickname = "has space".to_owned();
        assert!(matches!(
            b.sign(&k.material, &k.tap, &k.ntor, &mut seeded_rng(1)),
            Err(DirError::Encode(_))
        ));
        let mut b = builder();
        b.contact = Some("a\nrouter-signature".to_owned());
        assert!(matches!(
            b.sign(&k.material, &k.tap, &k.ntor, &mut seeded_rng(1)),
            Err(DirError::Encode(_))
        ));
    }

    /// Writes a freshly signed descriptor (published now) to `$ONION_DIR_POST_OUT`, for
    /// posting to a C tor authority by hand: `curl --data-binary @FILE
    /// http://127.0.0.1:DIRPORT/tor/`. `$ONION_DIR_POST_BRIDGE=1` adds
    /// `bridge-distribution-request none`.
    #[test]
    #[ignore = "manual interop check against a running C tor authority"]
    fn write_descriptor_for_post() {
        let Ok(path) = std::env::var("ONION_DIR_POST_OUT") else {
            return;
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let mut rng = crate::testing::test_rng();
        let rsa = PrivateKey::new(&mut rng, 1024).unwrap();
        let ed_id = SigningKey::from_bytes(&rng.random());
        let ed_sign = SigningKey::from_bytes(&rng.random());
        let material = RelaySigningMaterial::new(rsa, &ed_id, ed_sign, now, &mut rng).unwrap();
        let tap = PrivateKey::new(&mut rng, 1024).unwrap();
        let ntor = StaticSecret::random_from_rng(&mut rng);
        let mut b = ServerDescriptorBuilder::new("onionwasm", Ipv4Addr::LOCALHOST, 9, now);
        b.bandwidth = Bandwidth {
            average: 1 << 30,
            burst: 1 << 30,
            observed: 1 << 20,
        };
        b.uptime = Some(0);
        b.contact = Some("onion-wasm test".to_owned());
        b.tunnelled_dir_server = true;
        if std::env::var("ONION_DIR_POST_BRIDGE").as_deref() == Ok("1") {
            b.bridge_distribution_request = Some("none".to_owned());
        }
        let text = b.sign(&material, &tap, &ntor, &mut rng).unwrap();
        std::fs::write(path, text).unwrap();
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        #[test]
        fn garbage_never_panics(s in "(router|identity-ed25519|onion-key|accept|[a-z-]{1,8})( [ -~]{0,10}){0,4}\n{1,2}") {
            let _ = ServerDescriptor::parse(&s);
            let _ = ServerDescriptor::parse_many(&s);
        }
    }
}
