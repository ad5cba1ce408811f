//! Microdescriptors (dir-spec §3.3) and their digests.
//!
//! A microdescriptor is identified by the SHA-256 of its text, from its `onion-key` line to
//! the end of its last item; the microdesc consensus's `m` line carries that digest in
//! unpadded base64. A client fetching `/tor/micro/d/D1-D2-...` must keep only the
//! microdescriptors whose digest it asked for: [`Microdesc::parse_expected`].
//!
//! A microdescriptor starts with `onion-key` (the TAP key; C tor 0.4.9 still sends it) or,
//! for forward compatibility with TAP-less relays, with `ntor-onion-key` when no `onion-key`
//! precedes it.

use std::net::SocketAddr;

use ::rsa::PublicKey;
use sha2::{Digest, Sha256};
use x25519_dalek::PublicKey as X25519Public;

use super::encode::{
    b64_decode_array, b64_unpadded, bad_arg, check_counts, items_text, need_arg, no_object, opt,
    rsa_key_object, split_items, the,
};
use super::meta::{Item, Limits, tokenize};
use super::proto::Protocols;
use super::{DirError, DirResult};
use crate::certs::{Ed25519Identity, RsaIdentity};
use crate::policy::PortPolicy;

const AT_MOST_ONCE: &[&str] = &["onion-key", "ntor-onion-key", "family", "p", "p6", "pr"];

/// A parsed microdescriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Microdesc {
    digest: [u8; 32],
    tap_onion_key: Option<PublicKey>,
    ntor_onion_key: X25519Public,
    family: Vec<String>,
    ipv4_policy: PortPolicy,
    ipv6_policy: PortPolicy,
    ed25519_id: Option<Ed25519Identity>,
    rsa_id: Option<RsaIdentity>,
    ipv6_addr: Option<SocketAddr>,
    protocols: Option<Protocols>,
}

/// Whether `item` starts a new microdescriptor after the items `current` of the one being
/// read.
fn starts_microdesc(current: &[Item<'_>], item: &Item<'_>) -> bool {
    match item.keyword() {
        "onion-key" => true,
        "ntor-onion-key" => {
            current.is_empty() || current.iter().any(|i| i.keyword() == "ntor-onion-key")
        }
        _ => false,
    }
}

impl Microdesc {
    /// Parse one microdescriptor and compute its digest.
    pub fn parse(text: &str) -> DirResult<Self> {
        let items = tokenize(text, &Limits::MICRODESCS)?;
        let runs = split_items(&items, "onion-key", starts_microdesc)?;
        match runs.as_slice() {
            [one] => Self::from_items(items_text(text, one), one),
            [] => Err(DirError::MissingItem("ntor-onion-key")),
            [_, second, ..] => Err(DirError::MisplacedItem {
                keyword: "onion-key",
                line: second.first().map_or(0, Item::line),
            }),
        }
    }

    /// Parse one microdescriptor that must have the digest `expected` (e.g. from the
    /// consensus's `m` line); [`DirError::BadDigest`] otherwise.
    pub fn parse_expected(text: &str, expected: &[u8; 32]) -> DirResult<Self> {
        let md = Self::parse(text)?;
        md.check_digest(expected)?;
        Ok(md)
    }

    /// Split concatenated microdescriptors (a `/tor/micro/d/` answer) and parse each; each
    /// result is independent (one bad microdescriptor does not spoil the others).
    pub fn parse_many(text: &str) -> DirResult<Vec<DirResult<Self>>> {
        let items = tokenize(text, &Limits::MICRODESCS)?;
        let runs = split_items(&items, "onion-key", starts_microdesc)?;
        Ok(runs
            .into_iter()
            .map(|run| Self::from_items(items_text(text, run), run))
            .collect())
    }

    /// `body` is the microdescriptor's own text, `items` its items.
    fn from_items(body: &str, items: &[Item<'_>]) -> DirResult<Self> {
        check_counts(items, AT_MOST_ONCE, &["ntor-onion-key"])?;
        let tap_onion_key = opt(items, "onion-key")
            .map(|it| {
                // Consensus method 30+ strips the trailing `=` of this object; the
                // tokenizer accepts both.
                rsa_key_object(it, "onion-key", 1024, 1024).map(|(k, _)| k)
            })
            .transpose()?;
        let kw = "ntor-onion-key";
        let it = the(items, kw)?;
        let ntor_onion_key = X25519Public::from(
            b64_decode_array::<32>(need_arg(it, kw, 0, "missing key")?)
                .ok_or_else(|| bad_arg(it, kw, "bad curve25519 key"))?,
        );
        let policy = |kw: &'static str| -> DirResult<PortPolicy> {
            opt(items, kw).map_or(Ok(PortPolicy::reject_all()), |it| {
                it.args_str()
                    .parse()
                    .map_err(|_| bad_arg(it, kw, "bad port policy"))
            })
        };
        let ipv4_policy = policy("p")?;
        let ipv6_policy = policy("p6")?;
        let (mut ed25519_id, mut rsa_id) = (None, None);
        let mut ipv6_addr = None;
        for it in items {
            match (it.keyword(), it.arg(0)) {
                ("id", Some("ed25519")) => {
                    let k = Ed25519Identity::from_base64(need_arg(it, "id", 1, "missing key")?)
                        .ok_or_else(|| bad_arg(it, "id", "bad Ed25519 identity"))?;
                    if ed25519_id.replace(k).is_some() {
                        return Err(DirError::DuplicateItem {
                            keyword: "id ed25519",
                            line: it.line(),
                        });
                    }
                }
                ("id", Some("rsa1024")) => {
                    let k = b64_decode_array::<20>(need_arg(it, "id", 1, "missing digest")?)
                        .ok_or_else(|| bad_arg(it, "id", "bad RSA identity digest"))?;
                    if rsa_id.replace(RsaIdentity::from_bytes(k)).is_some() {
                        return Err(DirError::DuplicateItem {
                            keyword: "id rsa1024",
                            line: it.line(),
                        });
                    }
                }
                ("a", _) => {
                    let a: SocketAddr = need_arg(it, "a", 0, "missing address")?
                        .parse()
                        .map_err(|_| bad_arg(it, "a", "bad address"))?;
                    if ipv6_addr.is_none() && a.is_ipv6() {
                        ipv6_addr = Some(a);
                    }
                }
                ("onion-key", _) => {}
                _ => no_object(it, "microdescriptor item")?,
            }
        }
        let protocols = opt(items, "pr")
            .map(|it| {
                it.args_str()
                    .parse()
                    .map_err(|_| bad_arg(it, "pr", "bad protocol list"))
            })
            .transpose()?;
        Ok(Microdesc {
            digest: Sha256::digest(body.as_bytes()).into(),
            tap_onion_key,
            ntor_onion_key,
            family: opt(items, "family")
                .map(|it| it.args().map(str::to_owned).collect())
                .unwrap_or_default(),
            ipv4_policy,
            ipv6_policy,
            ed25519_id,
            rsa_id,
            ipv6_addr,
            protocols,
        })
    }

    /// Fail with [`DirError::BadDigest`] unless the digest is `expected`.
    pub fn check_digest(&self, expected: &[u8; 32]) -> DirResult<()> {
        if &self.digest != expected {
            return Err(DirError::BadDigest("microdescriptor"));
        }
        Ok(())
    }

    /// SHA-256 of the microdescriptor's text.
    pub fn digest(&self) -> &[u8; 32] {
        &self.digest
    }
    /// The digest as in the consensus's `m` line and `/tor/micro/d/` URLs: unpadded base64.
    pub fn digest_base64(&self) -> String {
        b64_unpadded(&self.digest)
    }
    /// The TAP onion key, if present.
    pub fn tap_onion_key(&self) -> Option<&PublicKey> {
        self.tap_onion_key.as_ref()
    }
    /// The ntor onion key.
    pub fn ntor_onion_key(&self) -> &X25519Public {
        &self.ntor_onion_key
    }
    /// `family` entries.
    pub fn family(&self) -> &[String] {
        &self.family
    }
    /// The IPv4 exit port summary (`p`; reject all if absent).
    pub fn ipv4_policy(&self) -> &PortPolicy {
        &self.ipv4_policy
    }
    /// The IPv6 exit port summary (`p6`; reject all if absent).
    pub fn ipv6_policy(&self) -> &PortPolicy {
        &self.ipv6_policy
    }
    /// The Ed25519 identity (`id ed25519`); ignore it if the consensus entry has
    /// `NoEdConsensus`.
    pub fn ed25519_id(&self) -> Option<&Ed25519Identity> {
        self.ed25519_id.as_ref()
    }
    /// The RSA identity digest (`id rsa1024`), if present.
    pub fn rsa_id(&self) -> Option<&RsaIdentity> {
        self.rsa_id.as_ref()
    }
    /// The first IPv6 ORPort (`a`), if any.
    pub fn ipv6_addr(&self) -> Option<SocketAddr> {
        self.ipv6_addr
    }
    /// The `pr` line, if present.
    pub fn protocols(&self) -> Option<&Protocols> {
        self.protocols.as_ref()
    }
}

#[cfg(test)]
mod test {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::dir::Consensus;
    use crate::dir::encode::b64_decode_array;

    const MDS: &str = include_str!("testdata/microdescs.txt");
    const CONSENSUS: &str = include_str!("testdata/consensus-microdesc.txt");

    #[test]
    fn c_tor_microdescs_match_the_consensus() {
        let c = Consensus::parse(CONSENSUS).unwrap();
        let mds: Vec<Microdesc> = Microdesc::parse_many(MDS)
            .unwrap()
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(mds.len(), 6);
        for r in c.routers() {
            let want = r.microdesc_digest().unwrap();
            let md = mds.iter().find(|m| m.digest() == want).unwrap();
            assert!(md.tap_onion_key().is_some());
            assert!(md.ed25519_id().is_some());
            // Exits accept everything, the others reject everything (no p line).
            assert_eq!(
                md.ipv4_policy().allows_port(80),
                r.flags.contains(crate::dir::RelayFlags::EXIT),
                "{}",
                r.nickname
            );
            assert!(!md.ipv6_policy().allows_port(80));
        }
        // exit0's: known ntor key and Ed25519 identity.
        let exit0 = mds
            .iter()
            .find(|m| m.digest_base64() == "utV7jrI2eBQIUNTkKy7jVcksT2/qc7Qzc0SpRt+mvvs")
            .unwrap();
        assert_eq!(
            b64_unpadded(exit0.ntor_onion_key().as_bytes()),
            "/fuH7Q6xRa2nZzYFFBl95Erl91Yn0PRNPD/RyGzrki0"
        );
        assert_eq!(
            b64_unpadded(exit0.ed25519_id().unwrap().as_bytes()),
            "bKaa9tp0hwtG6fXGzPzhlGsTzWIP+BA2hCfZHJ78dyE"
        );
    }

    fn first_md() -> &'static str {
        let second = MDS[1..].find("\nonion-key").unwrap() + 2;
        &MDS[..second]
    }

    #[test]
    fn digests() {
        let one = first_md();
        let md = Microdesc::parse(one).unwrap();
        let d: [u8; 32] = Sha256::digest(one.as_bytes()).into();
        assert_eq!(md.digest(), &d);
        Microdesc::parse_expected(one, &d).unwrap();
        // One changed byte: another digest, refused.
        let t = one.replacen("ntor-onion-key ", "ntor-onion-key  ", 1);
        assert_eq!(
            Microdesc::parse_expected(&t, &d),
            Err(DirError::BadDigest("microdescriptor"))
        );
        // The digest of another microdescriptor.
        let other = b64_decode_array::<32>("LpAYEY5LctUcbqkp27IJgsWGentln0Y9tsYxfwXdW14").unwrap();
        assert_eq!(
            Microdesc::parse_expected(one, &other),
            Err(DirError::BadDigest("microdescriptor"))
        );
        // Two microdescriptors where one was expected.
        assert!(matches!(
            Microdesc::parse(MDS),
            Err(DirError::MisplacedItem { .. })
        ));
    }

    #[test]
    fn tapless_and_extra_lines() {
        let md = "ntor-onion-key AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\
                  p accept 80,443\np6 accept 443\nfamily $AAAA b\n\
                  id rsa1024 AAAAAAAAAAAAAAAAAAAAAAAAAAA\n\
                  id ed25519 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n\
                  id x-future whatever\na [::1]:9001\npr Link=4-5\nx-new-item 1\n";
        let two = format!("{md}{md}");
        let parsed = Microdesc::parse_many(&two).unwrap();
        assert_eq!(parsed.len(), 2);
        let m = parsed[0].as_ref().unwrap();
        assert!(m.tap_onion_key().is_none());
        assert!(m.ipv4_policy().allows_port(443) && !m.ipv4_policy().allows_port(22));
        assert!(m.ipv6_policy().allows_port(443));
        assert_eq!(m.family(), ["$AAAA", "b"]);
        assert_eq!(m.rsa_id(), Some(&RsaIdentity::from_bytes([0; 20])));
        assert_eq!(m.ipv6_addr(), Some("[::1]:9001".parse().unwrap()));
        assert!(m.protocols().unwrap().supports("Link", 5));
        assert_eq!(m.digest(), &<[u8; 32]>::from(Sha256::digest(md.as_bytes())));
        assert_eq!(parsed[0], parsed[1]);
    }

    #[test]
    fn rejections() {
        let p = |t: &str| Microdesc::parse(t).unwrap_err();
        assert_eq!(
            p("p accept 80\n"),
            DirError::MisplacedItem {
                keyword: "onion-key",
                line: 1
            }
        );
        assert!(matches!(
            p(
                "onion-key\n-----BEGIN RSA PUBLIC KEY-----\nAAAA\n-----END RSA PUBLIC KEY-----\n\
               ntor-onion-key AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n"
            ),
            DirError::BadKey {
                keyword: "onion-key",
                line: 1,
                ..
            }
        ));
        assert_eq!(
            p("onion-key\n-----BEGIN RSA PUBLIC KEY-----\nAAAA\n-----END RSA PUBLIC KEY-----\n"),
            DirError::MissingItem("ntor-onion-key")
        );
        assert!(matches!(
            p("ntor-onion-key AAAA\n"),
            DirError::BadArgument {
                keyword: "ntor-onion-key",
                ..
            }
        ));
        assert!(matches!(
            p(
                "ntor-onion-key AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\np accept 80\np accept 81\n"
            ),
            DirError::DuplicateItem {
                keyword: "p",
                line: 3
            }
        ));
        assert!(matches!(
            p("ntor-onion-key AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\np allow 80\n"),
            DirError::BadArgument { keyword: "p", .. }
        ));
        // A bad microdescriptor among good ones spoils only itself.
        let mixed = format!("{}ntor-onion-key !!\n", first_md());
        let all = Microdesc::parse_many(&mixed).unwrap();
        assert!(all[0].is_ok() && all[1].is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        #[test]
        fn garbage_never_panics(s in "((onion-key|ntor-onion-key|p|p6|id|a|family)( [ -~]{0,12}){0,3}\n){0,8}") {
            let _ = Microdesc::parse(&s);
            let _ = Microdesc::parse_many(&s);
        }
    }
}
