//! Directory authority key certificates (dir-spec §3.1).
//!
//! A certificate binds an authority's medium-term *signing key* (which signs consensuses) to
//! its long-term *identity key* (whose SHA-1 fingerprint is the `v3ident` clients are
//! configured with):
//! - `dir-key-crosscert`: RSA PKCS#1 v1.5 signature, by the signing key, of
//!   `SHA1(DER(identity key))` (no `DigestInfo`), in an `ID SIGNATURE` (or `SIGNATURE`)
//!   object;
//! - `dir-key-certification`: RSA signature, by the identity key, of the SHA-1 of the
//!   document from `dir-key-certificate-version` through the newline after
//!   `dir-key-certification`.

use std::net::SocketAddrV4;

use ::rsa::{Pkcs1v15Sign, PublicKey};
use sha1::{Digest, Sha1};

use super::encode::{
    bad_arg, check_counts, items_text, need_arg, no_object, object_data, opt, rsa_key_object,
    split_items, the, time_arg,
};
use super::meta::{Item, Limits, tokenize};
use super::{DirError, DirResult};
use crate::certs::RsaIdentity;

/// Smallest RSA key allowed for authority keys (dir-spec §3.1).
const MIN_BITS: u32 = 1024;
/// Largest RSA key accepted (C tor's authority identity keys are 3072 bits).
const MAX_BITS: u32 = 4096;

const AT_MOST_ONCE: &[&str] = &[
    "dir-key-certificate-version",
    "dir-address",
    "fingerprint",
    "dir-identity-key",
    "dir-key-published",
    "dir-key-expires",
    "dir-signing-key",
    "dir-key-crosscert",
    "dir-key-certification",
];

const REQUIRED: &[&str] = &[
    "dir-key-certificate-version",
    "fingerprint",
    "dir-identity-key",
    "dir-key-published",
    "dir-key-expires",
    "dir-signing-key",
    "dir-key-crosscert",
    "dir-key-certification",
];

/// A verified authority key certificate: its cross-certification and its identity
/// signature both checked. Validity in time is checked separately
/// ([`check_valid_at`](Self::check_valid_at)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorityCert {
    identity_key: PublicKey,
    fingerprint: RsaIdentity,
    signing_key: PublicKey,
    signing_key_digest: RsaIdentity,
    address: Option<SocketAddrV4>,
    published: u64,
    expires: u64,
}

impl AuthorityCert {
    /// Parse and verify one certificate.
    pub fn parse(text: &str) -> DirResult<Self> {
        let items = tokenize(text, &Limits::AUTHORITY_CERTS)?;
        Self::from_items(text, &items)
    }

    /// Parse and verify concatenated certificates (e.g. `/tor/keys/all`); each result is
    /// independent.
    pub fn parse_many(text: &str) -> DirResult<Vec<DirResult<Self>>> {
        let items = tokenize(text, &Limits::AUTHORITY_CERTS)?;
        let runs = split_items(&items, "dir-key-certificate-version", |_, it| {
            it.keyword() == "dir-key-certificate-version"
        })?;
        Ok(runs
            .into_iter()
            .map(|run| Self::parse(items_text(text, run)))
            .collect())
    }

    fn from_items(text: &str, items: &[Item<'_>]) -> DirResult<Self> {
        let first = items
            .first()
            .ok_or(DirError::MissingItem("dir-key-certificate-version"))?;
        if first.keyword() != "dir-key-certificate-version" {
            return Err(DirError::MisplacedItem {
                keyword: "dir-key-certificate-version",
                line: first.line(),
            });
        }
        check_counts(items, AT_MOST_ONCE, REQUIRED)?;
        if first.arg(0) != Some("3") {
            return Err(bad_arg(
                first,
                "dir-key-certificate-version",
                "unsupported version",
            ));
        }
        let last = items.last().unwrap_or(first);
        if last.keyword() != "dir-key-certification" {
            return Err(DirError::MisplacedItem {
                keyword: "dir-key-certification",
                line: the(items, "dir-key-certification").map_or(0, Item::line),
            });
        }

        let kw = "fingerprint";
        let it = the(items, kw)?;
        let fingerprint = RsaIdentity::from_hex(need_arg(it, kw, 0, "missing fingerprint")?)
            .filter(|_| it.arg(0).is_some_and(|a| !a.starts_with('$')))
            .ok_or_else(|| bad_arg(it, kw, "bad fingerprint"))?;
        let (identity_key, id_der) = rsa_key_object(
            the(items, "dir-identity-key")?,
            "dir-identity-key",
            MIN_BITS,
            MAX_BITS,
        )?;
        let id_digest: [u8; 20] = Sha1::digest(&id_der).into();
        if id_digest != *fingerprint.as_bytes() {
            return Err(DirError::Mismatch(
                "fingerprint is not that of dir-identity-key",
            ));
        }
        let (signing_key, sk_der) = rsa_key_object(
            the(items, "dir-signing-key")?,
            "dir-signing-key",
            MIN_BITS,
            MAX_BITS,
        )?;
        let signing_key_digest = RsaIdentity::from_bytes(Sha1::digest(&sk_der).into());
        let published = time_arg(the(items, "dir-key-published")?, "dir-key-published", 0)?;
        let expires = time_arg(the(items, "dir-key-expires")?, "dir-key-expires", 0)?;
        let address = opt(items, "dir-address")
            .map(|it| {
                need_arg(it, "dir-address", 0, "missing address")?
                    .parse::<SocketAddrV4>()
                    .map_err(|_| bad_arg(it, "dir-address", "bad IPv4 address and port"))
            })
            .transpose()?;
        for kw in [
            "dir-key-certificate-version",
            "fingerprint",
            "dir-key-published",
        ] {
            no_object(the(items, kw)?, kw)?;
        }

        // The signing key cross-certifies the identity.
        let kw = "dir-key-crosscert";
        let it = the(items, kw)?;
        let sig = object_data(it, kw, &["ID SIGNATURE", "SIGNATURE"])?;
        signing_key
            .verify(Pkcs1v15Sign::new_unprefixed(), &id_digest, sig)
            .map_err(|_| DirError::BadSignature(kw))?;

        // The identity key signs the whole certificate.
        let kw = "dir-key-certification";
        let sig = object_data(last, kw, &["SIGNATURE"])?;
        let signed = text
            .get(first.start()..last.line_end())
            .ok_or(DirError::BadSignature(kw))?;
        let digest: [u8; 20] = Sha1::digest(signed.as_bytes()).into();
        identity_key
            .verify(Pkcs1v15Sign::new_unprefixed(), &digest, sig)
            .map_err(|_| DirError::BadSignature(kw))?;

        Ok(AuthorityCert {
            identity_key,
            fingerprint,
            signing_key,
            signing_key_digest,
            address,
            published,
            expires,
        })
    }

    /// Fail if the certificate is published more than `skew` seconds after `now`
    /// ([`DirError::NotYetValid`]) or expired more than `skew` seconds before `now`
    /// ([`DirError::Expired`]).
    pub fn check_valid_at(&self, now: u64, skew: u64) -> DirResult<()> {
        if now.saturating_add(skew) < self.published {
            return Err(DirError::NotYetValid {
                valid_after: self.published.saturating_sub(skew),
                now,
            });
        }
        if now > self.expires.saturating_add(skew) {
            return Err(DirError::Expired {
                valid_until: self.expires.saturating_add(skew),
                now,
            });
        }
        Ok(())
    }

    /// The authority's identity fingerprint (its `v3ident`).
    pub fn fingerprint(&self) -> &RsaIdentity {
        &self.fingerprint
    }
    /// The long-term identity key.
    pub fn identity_key(&self) -> &PublicKey {
        &self.identity_key
    }
    /// The signing key.
    pub fn signing_key(&self) -> &PublicKey {
        &self.signing_key
    }
    /// SHA-1 of the signing key's DER encoding (the `signing-key-digest` of
    /// `directory-signature` lines).
    pub fn signing_key_digest(&self) -> &RsaIdentity {
        &self.signing_key_digest
    }
    /// The `dir-address`, if given.
    pub fn address(&self) -> Option<SocketAddrV4> {
        self.address
    }
    /// `dir-key-published`.
    pub fn published(&self) -> u64 {
        self.published
    }
    /// `dir-key-expires`.
    pub fn expires(&self) -> u64 {
        self.expires
    }
}

#[cfg(test)]
mod test {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::dir::encode::parse_time;

    pub(crate) const FIXTURE: &str = include_str!("testdata/authority-certs.txt");
    const NOW: u64 = 1_795_647_170;

    fn first_cert() -> &'static str {
        let second = FIXTURE[1..].find("\ndir-key-certificate-version").unwrap() + 2;
        &FIXTURE[..second]
    }

    #[test]
    fn c_tor_certs_verify() {
        let certs: Vec<AuthorityCert> = AuthorityCert::parse_many(FIXTURE)
            .unwrap()
            .into_iter()
            .map(Result::unwrap)
            .collect();
        let fps: Vec<String> = certs.iter().map(|c| c.fingerprint().to_string()).collect();
        assert_eq!(
            fps,
            [
                "C115713E4671EB2A2C6F5FAF54547906558D66BF",
                "8D985B0163B47E2F859194C976E7BF685CE1C5B8",
                "C874BB1F7B97D1906140E4444FC66A138CB2D84E",
            ]
        );
        for c in &certs {
            c.check_valid_at(NOW, 0).unwrap();
        }
        let c = &certs[2];
        assert_eq!(c.published(), parse_time("2026-11-25", "22:07:01").unwrap());
        assert_eq!(c.expires(), parse_time("2027-11-25", "22:07:01").unwrap());
        assert_eq!(c.address(), None);
        assert_eq!(crate::dir::encode::rsa_bits(c.identity_key()), 3072);
        assert_eq!(crate::dir::encode::rsa_bits(c.signing_key()), 2048);
        // The consensus names this signing key by its digest.
        let consensus = include_str!("testdata/consensus-microdesc.txt");
        assert!(consensus.contains(&format!(
            "directory-signature sha256 {} {}",
            c.fingerprint(),
            c.signing_key_digest()
        )));
        // Time checks.
        assert_eq!(
            c.check_valid_at(c.published() - 10, 5),
            Err(DirError::NotYetValid {
                valid_after: c.published() - 5,
                now: c.published() - 10
            })
        );
        c.check_valid_at(c.published() - 10, 10).unwrap();
        assert!(matches!(
            c.check_valid_at(c.expires() + 1, 0),
            Err(DirError::Expired { .. })
        ));
    }

    #[test]
    fn tampering_fails() {
        let one = first_cert();
        AuthorityCert::parse(one).unwrap();
        // Change the publication time: the certification breaks.
        let t = one.replace(
            "dir-key-published 2026-11-25 22:06:58",
            "dir-key-published 2026-11-25 22:06:59",
        );
        assert_ne!(t, one);
        assert_eq!(
            AuthorityCert::parse(&t).unwrap_err(),
            DirError::BadSignature("dir-key-certification")
        );
        // Swap in another authority's crosscert.
        let crosscert = |s: &str| {
            let a = s.find("dir-key-crosscert\n").unwrap();
            let b = s.find("dir-key-certification\n").unwrap();
            s[a..b].to_owned()
        };
        let second = &FIXTURE[one.len()..];
        let t = one.replace(&crosscert(one), &crosscert(second));
        assert_eq!(
            AuthorityCert::parse(&t).unwrap_err(),
            DirError::BadSignature("dir-key-crosscert")
        );
        // Another fingerprint.
        let t = one.replace(
            "fingerprint C115713E4671EB2A2C6F5FAF54547906558D66BF",
            "fingerprint 8D985B0163B47E2F859194C976E7BF685CE1C5B8",
        );
        assert_ne!(t, one);
        assert!(matches!(
            AuthorityCert::parse(&t).unwrap_err(),
            DirError::Mismatch(_)
        ));
        // Structure.
        assert!(matches!(
            AuthorityCert::parse(&one.replace(
                "dir-key-certificate-version 3",
                "dir-key-certificate-version 4"
            )),
            Err(DirError::BadArgument { line: 1, .. })
        ));
        assert_eq!(
            AuthorityCert::parse(&one.replace("dir-key-expires", "x-dir-key-expires")),
            Err(DirError::MissingItem("dir-key-expires"))
        );
        assert!(matches!(
            AuthorityCert::parse(&format!("{one}x-extra\n")),
            Err(DirError::MisplacedItem {
                keyword: "dir-key-certification",
                ..
            })
        ));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        #[test]
        fn garbage_never_panics(s in "(dir-key-[a-z]{1,12}|fingerprint)( [ -~]{0,10}){0,4}\n{1,2}") {
            let _ = AuthorityCert::parse(&s);
            let _ = AuthorityCert::parse_many(&s);
        }
    }
}
