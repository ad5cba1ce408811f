//! Ed25519 certificates (cert-spec §2.1) and the signed-with-ed25519-key extension (§2.2.1).
//!
//! ```text
//! VERSION [1] = 01 | CERT_TYPE [1] | EXPIRATION_DATE [4, hours] | CERT_KEY_TYPE [1]
//! | CERTIFIED_KEY [32] | N_EXTENSIONS [1] | EXTENSIONS | SIGNATURE [64]
//! extension: ExtLength [2] | ExtType [1] | ExtFlags [1] | ExtData [ExtLength]
//! ```
//!
//! The signature is an Ed25519 signature, without any prefix, of everything before it.
//! Parsing is as strict as C tor's: version 1, exact lengths, no trailing bytes, at most one
//! signed-with-ed25519-key extension (and exactly 32 bytes of it), and any unknown extension
//! with the AFFECTS_VALIDATION flag makes the certificate invalid.

use ed25519_dalek::{Signature, SigningKey};
use onion_cell::bytes::{DecodeError, EncodeError, Reader, Writer};
use signature::Signer;

use super::{CertError, Ed25519Identity, SECS_PER_HOUR, malformed};

/// Extension type of the signed-with-ed25519-key extension.
pub const EXT_SIGNED_WITH_ED25519_KEY: u8 = 0x04;
/// The AFFECTS_VALIDATION extension flag.
pub const EXT_FLAG_AFFECTS_VALIDATION: u8 = 0x01;
/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

const WHAT: &str = "Ed25519 certificate";

/// One extension of an Ed25519 certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertExtension {
    /// Signed-with-ed25519-key (type 4): the key that signed the certificate.
    SignedWithEd25519Key {
        /// The signing key.
        key: Ed25519Identity,
        /// The extension's flags as sent (C tor sends 0).
        flags: u8,
    },
    /// An extension type we do not interpret. It never has the AFFECTS_VALIDATION flag in a
    /// parsed certificate (such a certificate is rejected).
    Unrecognized {
        /// `ExtType`.
        ext_type: u8,
        /// `ExtFlags`.
        flags: u8,
        /// `ExtData`.
        data: Vec<u8>,
    },
}

impl CertExtension {
    fn write_onto(&self, w: &mut Vec<u8>) -> Result<(), CertError> {
        let (ext_type, flags, data): (u8, u8, &[u8]) = match self {
            CertExtension::SignedWithEd25519Key { key, flags } => {
                (EXT_SIGNED_WITH_ED25519_KEY, *flags, key.as_bytes())
            }
            CertExtension::Unrecognized {
                ext_type,
                flags,
                data,
            } => (*ext_type, *flags, data),
        };
        let len = u16::try_from(data.len()).map_err(|_| EncodeError::TooLong {
            what: "Ed25519 certificate extension",
            len: data.len(),
            max: u16::MAX.into(),
        })?;
        w.write_u16(len);
        w.write_u8(ext_type);
        w.write_u8(flags);
        w.write_all(data);
        Ok(())
    }
}

/// A parsed (or freshly signed) Ed25519 certificate.
///
/// Parsing checks the format only: call [`Ed25519Cert::check_signature`] and
/// [`Ed25519Cert::check_valid_at`] (or [`Ed25519Cert::check`]) before trusting it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ed25519Cert {
    /// The whole certificate as received or produced; the signature covers all but its last
    /// 64 bytes.
    encoded: Vec<u8>,
    cert_type: u8,
    expiration_hours: u32,
    key_type: u8,
    certified_key: [u8; 32],
    extensions: Vec<CertExtension>,
    signing_key: Option<Ed25519Identity>,
    signature: [u8; SIGNATURE_LEN],
}

impl Ed25519Cert {
    /// Parse a certificate that must fill `bytes` exactly.
    pub fn decode(bytes: &[u8]) -> Result<Self, CertError> {
        let m = malformed(WHAT);
        let mut r = Reader::new(bytes);
        let version = r.take_u8().map_err(&m)?;
        if version != 1 {
            return Err(CertError::UnsupportedVersion(version));
        }
        let cert_type = r.take_u8().map_err(&m)?;
        let expiration_hours = r.take_u32().map_err(&m)?;
        let key_type = r.take_u8().map_err(&m)?;
        let certified_key: [u8; 32] = r.take_array().map_err(&m)?;
        let n_ext = r.take_u8().map_err(&m)?;
        let mut extensions = Vec::with_capacity(n_ext.into());
        let mut signing_key = None;
        for _ in 0..n_ext {
            let len = r.take_u16().map_err(&m)?;
            let ext_type = r.take_u8().map_err(&m)?;
            let flags = r.take_u8().map_err(&m)?;
            let data = r.take(len.into()).map_err(&m)?;
            let ext = if ext_type == EXT_SIGNED_WITH_ED25519_KEY {
                let key = Ed25519Identity::from_slice(data).ok_or(CertError::Malformed {
                    what: "signed-with-ed25519-key extension",
                    err: DecodeError::BadLength {
                        what: "signed-with-ed25519-key extension",
                        len: data.len(),
                    },
                })?;
                if signing_key.replace(key).is_some() {
                    return Err(CertError::Malformed {
                        what: WHAT,
                        err: DecodeError::BadValue("duplicate signed-with-ed25519-key extension"),
                    });
                }
                CertExtension::SignedWithEd25519Key { key, flags }
            } else if flags & EXT_FLAG_AFFECTS_VALIDATION != 0 {
                return Err(CertError::UnrecognizedCriticalExtension(ext_type));
            } else {
                CertExtension::Unrecognized {
                    ext_type,
                    flags,
                    data: data.to_vec(),
                }
            };
            extensions.push(ext);
        }
        let signature: [u8; SIGNATURE_LEN] = r.take_array().map_err(&m)?;
        r.should_be_exhausted().map_err(&m)?;
        Ok(Ed25519Cert {
            encoded: bytes.to_vec(),
            cert_type,
            expiration_hours,
            key_type,
            certified_key,
            extensions,
            signing_key,
            signature,
        })
    }

    /// Parse a certificate that must be of type `cert_type`.
    pub fn decode_typed(bytes: &[u8], cert_type: u8) -> Result<Self, CertError> {
        let cert = Self::decode(bytes)?;
        if cert.cert_type != cert_type {
            return Err(CertError::WrongCertType {
                expected: cert_type,
                got: cert.cert_type,
            });
        }
        Ok(cert)
    }

    /// The encoded certificate.
    pub fn encoded(&self) -> &[u8] {
        &self.encoded
    }

    /// `CERT_TYPE` (see [`cert_type`](super::cert_type)).
    pub fn cert_type(&self) -> u8 {
        self.cert_type
    }

    /// `EXPIRATION_DATE`: hours since the epoch after which the certificate is invalid.
    pub fn expiration_hours(&self) -> u32 {
        self.expiration_hours
    }

    /// The expiration time in seconds since the epoch.
    pub fn expiry_unix(&self) -> u64 {
        u64::from(self.expiration_hours) * SECS_PER_HOUR
    }

    /// `CERT_KEY_TYPE` (see [`key_type`](super::key_type)).
    pub fn key_type(&self) -> u8 {
        self.key_type
    }

    /// `CERTIFIED_KEY`: an Ed25519 key or a digest, depending on the key type.
    pub fn certified_key(&self) -> &[u8; 32] {
        &self.certified_key
    }

    /// The certified key as an Ed25519 key, if the key type says it is one.
    pub fn certified_ed25519(&self) -> Option<Ed25519Identity> {
        (self.key_type == super::key_type::ED25519)
            .then_some(Ed25519Identity::from_bytes(self.certified_key))
    }

    /// The key named by the signed-with-ed25519-key extension, if present.
    pub fn signing_key(&self) -> Option<&Ed25519Identity> {
        self.signing_key.as_ref()
    }

    /// All extensions, in order.
    pub fn extensions(&self) -> &[CertExtension] {
        &self.extensions
    }

    /// The signature.
    pub fn signature(&self) -> &[u8; SIGNATURE_LEN] {
        &self.signature
    }

    /// The signed part: all but the last 64 bytes.
    fn signed_part(&self) -> &[u8] {
        let n = self.encoded.len().saturating_sub(SIGNATURE_LEN);
        self.encoded.get(..n).unwrap_or(&[])
    }

    /// Check the signature.
    ///
    /// The signing key is `key` if given, else the one in the signed-with-ed25519-key
    /// extension; when both are present they must match. Returns the key that signed.
    pub fn check_signature(
        &self,
        key: Option<&Ed25519Identity>,
    ) -> Result<Ed25519Identity, CertError> {
        let signer = match (key, self.signing_key.as_ref()) {
            (Some(k), Some(ext)) if k != ext => {
                return Err(CertError::KeyMismatch(
                    "signed-with-ed25519-key extension names another key",
                ));
            }
            (Some(k), _) | (None, Some(k)) => *k,
            (None, None) => return Err(CertError::MissingSigningKey(self.cert_type)),
        };
        let vk = signer.to_verifying_key()?;
        let sig = Signature::from_bytes(&self.signature);
        vk.verify_strict(self.signed_part(), &sig)
            .map_err(|_| CertError::BadSignature(self.cert_type))?;
        Ok(signer)
    }

    /// True if the certificate has expired at `now_unix` (strictly after its expiration).
    pub fn is_expired_at(&self, now_unix: u64) -> bool {
        now_unix > self.expiry_unix()
    }

    /// Fail with [`CertError::Expired`] if the certificate has expired at `now_unix`.
    pub fn check_valid_at(&self, now_unix: u64) -> Result<(), CertError> {
        if self.is_expired_at(now_unix) {
            return Err(CertError::Expired {
                cert_type: self.cert_type,
                expired_at: self.expiry_unix(),
                now: now_unix,
            });
        }
        Ok(())
    }

    /// [`check_signature`](Self::check_signature) then
    /// [`check_valid_at`](Self::check_valid_at).
    pub fn check(
        &self,
        key: Option<&Ed25519Identity>,
        now_unix: u64,
    ) -> Result<Ed25519Identity, CertError> {
        let signer = self.check_signature(key)?;
        self.check_valid_at(now_unix)?;
        Ok(signer)
    }
}

/// Builds and signs an [`Ed25519Cert`].
#[derive(Debug, Clone)]
pub struct Ed25519CertBuilder {
    cert_type: u8,
    expiration_hours: u32,
    key_type: u8,
    certified_key: [u8; 32],
    include_signing_key: bool,
    extra: Vec<CertExtension>,
}

impl Ed25519CertBuilder {
    /// A certificate of `cert_type` certifying `certified_key` (of `key_type`), expiring
    /// after `expiration_hours` (see [`expiration_hours`](super::expiration_hours)). By
    /// default the signing key is included as a signed-with-ed25519-key extension.
    pub fn new(
        cert_type: u8,
        key_type: u8,
        certified_key: [u8; 32],
        expiration_hours: u32,
    ) -> Self {
        Ed25519CertBuilder {
            cert_type,
            expiration_hours,
            key_type,
            certified_key,
            include_signing_key: true,
            extra: Vec::new(),
        }
    }

    /// Whether to include the signed-with-ed25519-key extension (C tor includes it in type 4
    /// certificates, where the initiator needs it, and omits it in types 5 and 6).
    pub fn include_signing_key(mut self, include: bool) -> Self {
        self.include_signing_key = include;
        self
    }

    /// Add an extension after the signed-with-ed25519-key one.
    pub fn extension(mut self, ext: CertExtension) -> Self {
        self.extra.push(ext);
        self
    }

    /// Encode and sign with `signer`.
    pub fn sign(self, signer: &SigningKey) -> Result<Ed25519Cert, CertError> {
        let signing_key = Ed25519Identity::from(signer.verifying_key());
        let mut extensions = Vec::with_capacity(self.extra.len() + 1);
        if self.include_signing_key {
            extensions.push(CertExtension::SignedWithEd25519Key {
                key: signing_key,
                flags: 0,
            });
        }
        extensions.extend(self.extra);
        let n_ext = u8::try_from(extensions.len()).map_err(|_| EncodeError::TooLong {
            what: "Ed25519 certificate extension list",
            len: extensions.len(),
            max: u8::MAX.into(),
        })?;

        let mut w = Vec::with_capacity(40 + 36 * extensions.len() + SIGNATURE_LEN);
        w.write_u8(1);
        w.write_u8(self.cert_type);
        w.write_u32(self.expiration_hours);
        w.write_u8(self.key_type);
        w.write_all(&self.certified_key);
        w.write_u8(n_ext);
        for ext in &extensions {
            ext.write_onto(&mut w)?;
        }
        let signature = signer.sign(&w).to_bytes();
        w.write_all(&signature);

        // Re-parse what we produced, so that every certificate value went through the same
        // checks (e.g. an AFFECTS_VALIDATION extension we would refuse ourselves).
        Ed25519Cert::decode(&w)
    }
}

#[cfg(test)]
mod test {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::certs::{cert_type, key_type};
    use crate::testing::seeded_rng;
    use hex::FromHex;
    use proptest::prelude::*;
    use rand_core::Rng;

    /// 2020-09-25T02:13:20Z, when the chutney certificates below were all valid (as in Arti's
    /// tor-cert test vectors).
    const NOTIONAL_TIME: u64 = 1_601_000_000;

    /// IDENTITY_V_SIGNING certificate from a CERTS cell of a chutney network (Arti's
    /// tor-cert test vectors).
    const CHUTNEY_T4: &str = "01040006CC2A01F82294B866A31F01FC5D0DA8572850A9B929545C3266558D7D2316E3B74172B00100200400DCB604DB2034B00FD16986D4ADB9D16B21CB4E4457A33DEC0F538903683E96E9FF1A5203FA27F86EF7528D89A0845D2520166E340754FFEA2AAE0F612B7CE5DA094A0236CDAC45034B0B6842C18E7F6B51B93A3CF7E60663B8AD061C30A62602";
    /// SIGNING_V_TLS_CERT certificate from the same CERTS cell.
    const CHUTNEY_T5: &str = "01050006C98A03B4FD606B64E4CBD466B8D76CB131069BAE6F3AA1878857C9F624E31D77A799B8007173E5F8068431D0D3F5EE16B4C9FFD59DF373E152A87281BAE744AA5FCF72171BF4B27C4E8FC1C6A9FC5CA11058BC49647063D7903CFD9F512F89099B27BC0C";
    const CHUTNEY_ED_ID: &str = "DCB604DB2034B00FD16986D4ADB9D16B21CB4E4457A33DEC0F538903683E96E9";
    const CHUTNEY_ED_SIGNING: &str =
        "F82294B866A31F01FC5D0DA8572850A9B929545C3266558D7D2316E3B74172B0";
    const CHUTNEY_TLS_DIGEST: &str =
        "B4FD606B64E4CBD466B8D76CB131069BAE6F3AA1878857C9F624E31D77A799B8";

    fn id(h: &str) -> Ed25519Identity {
        Ed25519Identity::from_bytes(<[u8; 32]>::from_hex(h).unwrap())
    }

    fn key(seed: u64) -> SigningKey {
        let mut b = [0u8; 32];
        seeded_rng(seed).fill_bytes(&mut b);
        SigningKey::from_bytes(&b)
    }

    #[test]
    fn chutney_identity_v_signing() {
        let bytes = Vec::from_hex(CHUTNEY_T4).unwrap();
        let c = Ed25519Cert::decode_typed(&bytes, cert_type::IDENTITY_V_SIGNING).unwrap();
        assert_eq!(c.key_type(), key_type::ED25519);
        assert_eq!(c.certified_ed25519(), Some(id(CHUTNEY_ED_SIGNING)));
        assert_eq!(c.signing_key(), Some(&id(CHUTNEY_ED_ID)));
        assert_eq!(c.expiration_hours(), 0x6CC2A);
        assert_eq!(c.expiry_unix(), 0x6CC2A * 3600);
        assert_eq!(c.extensions().len(), 1);
        assert_eq!(c.check(None, NOTIONAL_TIME), Ok(id(CHUTNEY_ED_ID)));
        assert_eq!(
            c.check(Some(&id(CHUTNEY_ED_ID)), NOTIONAL_TIME),
            Ok(id(CHUTNEY_ED_ID))
        );
        assert_eq!(
            c.check_signature(Some(&id(CHUTNEY_ED_SIGNING))),
            Err(CertError::KeyMismatch(
                "signed-with-ed25519-key extension names another key"
            ))
        );
        assert_eq!(c.encoded(), &bytes[..]);
        assert!(matches!(
            c.check_valid_at(0x6CC2A * 3600 + 1),
            Err(CertError::Expired { cert_type: 4, .. })
        ));
        assert_eq!(c.check_valid_at(0x6CC2A * 3600), Ok(()));
    }

    #[test]
    fn chutney_signing_v_tls_cert() {
        let bytes = Vec::from_hex(CHUTNEY_T5).unwrap();
        let c = Ed25519Cert::decode_typed(&bytes, cert_type::SIGNING_V_TLS_CERT).unwrap();
        assert_eq!(c.key_type(), key_type::SHA256_OF_X509);
        assert_eq!(
            c.certified_key(),
            &<[u8; 32]>::from_hex(CHUTNEY_TLS_DIGEST).unwrap()
        );
        assert_eq!(c.certified_ed25519(), None);
        assert_eq!(c.signing_key(), None);
        assert_eq!(
            c.check_signature(None),
            Err(CertError::MissingSigningKey(5))
        );
        assert_eq!(
            c.check(Some(&id(CHUTNEY_ED_SIGNING)), NOTIONAL_TIME),
            Ok(id(CHUTNEY_ED_SIGNING))
        );
        assert_eq!(
            c.check_signature(Some(&id(CHUTNEY_ED_ID))),
            Err(CertError::BadSignature(5))
        );
        assert_eq!(
            Ed25519Cert::decode_typed(&bytes, cert_type::IDENTITY_V_SIGNING),
            Err(CertError::WrongCertType {
                expected: 4,
                got: 5
            })
        );
    }

    #[test]
    fn tampered_chutney_cert_fails() {
        let mut bytes = Vec::from_hex(CHUTNEY_T4).unwrap();
        // Flip a bit of the certified key: parses, but the signature no longer verifies.
        bytes[10] ^= 0x01;
        let c = Ed25519Cert::decode(&bytes).unwrap();
        assert_eq!(c.check_signature(None), Err(CertError::BadSignature(4)));
        // Flip a bit of the signature.
        let mut bytes = Vec::from_hex(CHUTNEY_T4).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x10;
        let c = Ed25519Cert::decode(&bytes).unwrap();
        assert_eq!(c.check_signature(None), Err(CertError::BadSignature(4)));
    }

    #[test]
    fn round_trip_every_type() {
        let signer = key(1);
        let signer_id = Ed25519Identity::from(signer.verifying_key());
        let now = 1_700_000_000;
        for (ct, kt, incl) in [
            (cert_type::IDENTITY_V_SIGNING, key_type::ED25519, true),
            (
                cert_type::SIGNING_V_TLS_CERT,
                key_type::SHA256_OF_X509,
                false,
            ),
            (cert_type::SIGNING_V_LINK_AUTH, key_type::ED25519, false),
            (cert_type::NTOR_CC_IDENTITY, key_type::ED25519, true),
        ] {
            let certified = *key(ct.into()).verifying_key().as_bytes();
            let exp = crate::certs::expiration_hours(now, 86400);
            let c = Ed25519CertBuilder::new(ct, kt, certified, exp)
                .include_signing_key(incl)
                .sign(&signer)
                .unwrap();
            let parsed = Ed25519Cert::decode_typed(c.encoded(), ct).unwrap();
            assert_eq!(parsed, c);
            assert_eq!(parsed.certified_key(), &certified);
            assert_eq!(parsed.key_type(), kt);
            assert_eq!(parsed.expiration_hours(), exp);
            assert_eq!(parsed.signing_key().is_some(), incl);
            assert_eq!(parsed.check(Some(&signer_id), now), Ok(signer_id));
            assert_eq!(
                parsed.check(Some(&signer_id), now + 86400 + 3600),
                Err(CertError::Expired {
                    cert_type: ct,
                    expired_at: parsed.expiry_unix(),
                    now: now + 86400 + 3600
                })
            );
            // The wrong key.
            let other = Ed25519Identity::from(key(99).verifying_key());
            let r = parsed.check_signature(Some(&other));
            if incl {
                assert!(matches!(r, Err(CertError::KeyMismatch(_))));
            } else {
                assert_eq!(r, Err(CertError::BadSignature(ct)));
            }
        }
    }

    #[test]
    fn expiration_rounds_up() {
        assert_eq!(crate::certs::expiration_hours(3600, 0), 1);
        assert_eq!(crate::certs::expiration_hours(3601, 0), 2);
        assert_eq!(crate::certs::expiration_hours(u64::MAX, 10), u32::MAX);
    }

    #[test]
    fn extensions_are_checked() {
        let signer = key(2);
        // An unknown extension without AFFECTS_VALIDATION is kept and round-trips.
        let c = Ed25519CertBuilder::new(4, 1, [5; 32], 1000)
            .extension(CertExtension::Unrecognized {
                ext_type: 0x42,
                flags: 0,
                data: vec![1, 2, 3],
            })
            .sign(&signer)
            .unwrap();
        assert_eq!(c.extensions().len(), 2);
        assert!(c.check_signature(None).is_ok());
        // With AFFECTS_VALIDATION it is refused.
        let r = Ed25519CertBuilder::new(4, 1, [5; 32], 1000)
            .extension(CertExtension::Unrecognized {
                ext_type: 0x42,
                flags: EXT_FLAG_AFFECTS_VALIDATION,
                data: vec![],
            })
            .sign(&signer);
        assert_eq!(r, Err(CertError::UnrecognizedCriticalExtension(0x42)));
        // Two signed-with-key extensions are refused.
        let r = Ed25519CertBuilder::new(4, 1, [5; 32], 1000)
            .extension(CertExtension::SignedWithEd25519Key {
                key: Ed25519Identity::from(signer.verifying_key()),
                flags: 0,
            })
            .sign(&signer);
        assert!(matches!(
            r,
            Err(CertError::Malformed {
                err: DecodeError::BadValue(_),
                ..
            })
        ));
        // A signed-with-key extension of the wrong length is refused.
        let r = Ed25519CertBuilder::new(4, 1, [5; 32], 1000)
            .include_signing_key(false)
            .extension(CertExtension::Unrecognized {
                ext_type: EXT_SIGNED_WITH_ED25519_KEY,
                flags: 0,
                data: vec![0; 31],
            })
            .sign(&signer);
        assert!(matches!(
            r,
            Err(CertError::Malformed {
                err: DecodeError::BadLength { len: 31, .. },
                ..
            })
        ));
    }

    #[test]
    fn strict_parsing() {
        let good = Vec::from_hex(CHUTNEY_T4).unwrap();
        // Wrong version.
        let mut b = good.clone();
        b[0] = 2;
        assert_eq!(
            Ed25519Cert::decode(&b),
            Err(CertError::UnsupportedVersion(2))
        );
        // Trailing byte.
        let mut b = good.clone();
        b.push(0);
        assert!(matches!(
            Ed25519Cert::decode(&b),
            Err(CertError::Malformed {
                err: DecodeError::ExtraBytes(1),
                ..
            })
        ));
        // Every truncation fails without panicking.
        for n in 0..good.len() {
            assert!(matches!(
                Ed25519Cert::decode(&good[..n]),
                Err(CertError::Malformed { .. })
            ));
        }
        // An extension length running past the end.
        let mut b = good.clone();
        b[40] = 0x10; // ExtLength high byte
        assert!(matches!(
            Ed25519Cert::decode(&b),
            Err(CertError::Malformed {
                err: DecodeError::Truncated { .. },
                ..
            })
        ));
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Ed25519Cert::decode(&bytes);
        }

        #[test]
        fn encode_decode_encode(
            ct in any::<u8>(), kt in any::<u8>(), certified in any::<[u8; 32]>(),
            exp in any::<u32>(), incl in any::<bool>(),
            exts in proptest::collection::vec((5u8..=255, 0u8..=254, proptest::collection::vec(any::<u8>(), 0..40)), 0..4),
        ) {
            let signer = key(3);
            let mut b = Ed25519CertBuilder::new(ct, kt, certified, exp).include_signing_key(incl);
            for (t, f, d) in exts {
                // Keep the AFFECTS_VALIDATION flag clear.
                b = b.extension(CertExtension::Unrecognized { ext_type: t, flags: f & !1, data: d });
            }
            let c = b.sign(&signer).unwrap();
            let parsed = Ed25519Cert::decode(c.encoded()).unwrap();
            prop_assert_eq!(&parsed, &c);
            prop_assert!(parsed.check_signature(Some(&Ed25519Identity::from(signer.verifying_key()))).is_ok());
        }
    }
}
