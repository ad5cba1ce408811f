//! The RSA->Ed25519 cross-certificate (cert-spec §2.3, CERTS type 7).
//!
//! ```text
//! ED25519_KEY [32] | EXPIRATION_DATE [4, hours] | SIGLEN [1] | SIGNATURE [SIGLEN]
//! ```
//!
//! `SIGNATURE` is an RSA PKCS#1 v1.5 signature, made with the relay's RSA identity key, of
//! `SHA256("Tor TLS RSA/Ed25519 cross-certificate" | ED25519_KEY | EXPIRATION_DATE)` (the
//! 36 bytes before `SIGLEN`). The digest is signed bare, without the ASN.1 `DigestInfo` that
//! PKCS#1 v1.5 normally wraps it in: this is C tor's `crypto_pk_private_sign` /
//! `crypto_pk_public_checksig`, and `rsa`'s `Pkcs1v15Sign::new_unprefixed()`.

use ::rsa::{Pkcs1v15Sign, PrivateKey, PublicKey};
use onion_cell::bytes::{EncodeError, Reader, Writer};
use rand_core::CryptoRng;
use sha2::{Digest, Sha256};

use super::{CertError, Ed25519Identity, SECS_PER_HOUR, cert_type, malformed};

/// The personalization prefix of the signed digest.
pub const CROSSCERT_PREFIX: &[u8] = b"Tor TLS RSA/Ed25519 cross-certificate";

/// Length of the signed fields (`ED25519_KEY | EXPIRATION_DATE`).
const SIGNED_LEN: usize = 32 + 4;

/// A parsed (or freshly made) RSA->Ed25519 cross-certificate.
///
/// Parsing checks the format only: call [`RsaCrosscert::check_signature`] and
/// [`RsaCrosscert::check_valid_at`] before trusting it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RsaCrosscert {
    encoded: Vec<u8>,
    ed25519_key: Ed25519Identity,
    expiration_hours: u32,
    signature: Vec<u8>,
}

impl RsaCrosscert {
    /// Parse a cross-certificate that must fill `bytes` exactly.
    pub fn decode(bytes: &[u8]) -> Result<Self, CertError> {
        let m = malformed("RSA->Ed25519 cross-certificate");
        let mut r = Reader::new(bytes);
        let ed25519_key = Ed25519Identity::from_bytes(r.take_array().map_err(&m)?);
        let expiration_hours = r.take_u32().map_err(&m)?;
        let siglen = r.take_u8().map_err(&m)?;
        let signature = r.take(siglen.into()).map_err(&m)?.to_vec();
        r.should_be_exhausted().map_err(&m)?;
        Ok(RsaCrosscert {
            encoded: bytes.to_vec(),
            ed25519_key,
            expiration_hours,
            signature,
        })
    }

    /// Certify `ed25519_key` as the Ed25519 identity of the relay whose RSA identity key is
    /// `rsa_identity`, until `expiration_hours` (hours since the epoch). `rng` blinds the RSA
    /// operation.
    pub fn create<R: CryptoRng + ?Sized>(
        rsa_identity: &PrivateKey,
        ed25519_key: &Ed25519Identity,
        expiration_hours: u32,
        rng: &mut R,
    ) -> Result<Self, CertError> {
        let mut w = Vec::with_capacity(SIGNED_LEN + 1 + 256);
        w.write_all(ed25519_key.as_bytes());
        w.write_u32(expiration_hours);
        let digest = signed_digest(&w);
        let signature = rsa_identity
            .sign_with_rng(rng, Pkcs1v15Sign::new_unprefixed(), &digest)
            .map_err(|_| CertError::Signing("RSA cross-certificate signature"))?;
        let siglen = u8::try_from(signature.len()).map_err(|_| EncodeError::TooLong {
            what: "cross-certificate signature (RSA key too large)",
            len: signature.len(),
            max: u8::MAX.into(),
        })?;
        w.write_u8(siglen);
        w.write_all(&signature);
        Self::decode(&w)
    }

    /// The encoded cross-certificate.
    pub fn encoded(&self) -> &[u8] {
        &self.encoded
    }

    /// The certified Ed25519 identity.
    pub fn ed25519_key(&self) -> &Ed25519Identity {
        &self.ed25519_key
    }

    /// `EXPIRATION_DATE`: hours since the epoch.
    pub fn expiration_hours(&self) -> u32 {
        self.expiration_hours
    }

    /// The expiration time in seconds since the epoch.
    pub fn expiry_unix(&self) -> u64 {
        u64::from(self.expiration_hours) * SECS_PER_HOUR
    }

    /// The RSA signature.
    pub fn signature(&self) -> &[u8] {
        &self.signature
    }

    /// Check that `rsa_identity` signed this cross-certificate.
    pub fn check_signature(&self, rsa_identity: &PublicKey) -> Result<(), CertError> {
        let signed = self.encoded.get(..SIGNED_LEN).unwrap_or(&[]);
        rsa_identity
            .verify(
                Pkcs1v15Sign::new_unprefixed(),
                &signed_digest(signed),
                &self.signature,
            )
            .map_err(|_| CertError::BadSignature(cert_type::RSA_ID_V_IDENTITY))
    }

    /// Fail with [`CertError::Expired`] if the cross-certificate expired before `now_unix`.
    pub fn check_valid_at(&self, now_unix: u64) -> Result<(), CertError> {
        if now_unix > self.expiry_unix() {
            return Err(CertError::Expired {
                cert_type: cert_type::RSA_ID_V_IDENTITY,
                expired_at: self.expiry_unix(),
                now: now_unix,
            });
        }
        Ok(())
    }

    /// Check the signature and the expiry, and that the certified key is `ed25519_key`.
    pub fn check(
        &self,
        rsa_identity: &PublicKey,
        ed25519_key: &Ed25519Identity,
        now_unix: u64,
    ) -> Result<(), CertError> {
        if &self.ed25519_key != ed25519_key {
            return Err(CertError::KeyMismatch(
                "cross-certificate certifies another Ed25519 identity",
            ));
        }
        self.check_valid_at(now_unix)?;
        self.check_signature(rsa_identity)
    }
}

/// `SHA256(prefix | signed fields)`.
fn signed_digest(signed: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(CROSSCERT_PREFIX);
    h.update(signed);
    h.finalize().into()
}

#[cfg(test)]
pub(crate) mod test {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::testing::seeded_rng;
    use ::rsa::pkcs1::DecodeRsaPublicKey;
    use hex::FromHex;
    use onion_cell::bytes::DecodeError;

    /// A type 7 cross-certificate from a chutney network, and the RSA identity key that
    /// signed it (Arti's tor-cert test vectors).
    const CHUTNEY_T7: &str = "DCB604DB2034B00FD16986D4ADB9D16B21CB4E4457A33DEC0F538903683E96E90006DA3A805CF6006F9179066534DE6B45AD47A5C469063EE462762723396DC9F25452A0A52DA3F5087DD239F2A311F6B0D4DFEFF4ABD089DC3D0237A0ABAB19EB2045B91CDCAF04BE0A72D548A27BF2E77BD876ECFE5E1BE622350DA6BF31F6E306ED896488DD5B39409B23FC3EB7B2C9F7328EB18DA36D54D80575899EA6507CCBFCDF1F";
    pub(crate) const CHUTNEY_RSA_ID: &str = "30818902818100d38b1e6ceb946e0db0751f4cbace3dcb9688b6c25304227b4710c35afb73627e50500f5913e158b621802612d1c75827003703338375237552eb3cd3c12f6ab3604e60c1a2d26bb1fbad206ff023969a90909d6a65a5458a5312c26ebd3a3dad30302d4515cdcd264146ac18e6fc60a04bd3ec327f04294d96ba5aa25b464c3f0203010001";
    /// The same key with one modulus byte changed.
    const WRONG_RSA_ID: &str = "30818902818100d38b1e6ceb946e0db0751f4cbace3dcb9688b6c25304227b4710c35afb73627e50500f5913e158b621802612d1c75827003703338375237552eb3cd3c12f6ab3604e60c1a2d26bb1fbad206ff023969a90909d6a65a5458a5312c26ebd6a3dad30302d4515cdcd264146ac18e6fc60a04bd3ec327f04294d96ba5aa25b464c3f0203010001";
    const CHUTNEY_ED_ID: &str = "DCB604DB2034B00FD16986D4ADB9D16B21CB4E4457A33DEC0F538903683E96E9";
    const NOTIONAL_TIME: u64 = 1_601_000_000;

    fn pk(h: &str) -> PublicKey {
        PublicKey::from_pkcs1_der(&Vec::from_hex(h).unwrap()).unwrap()
    }

    #[test]
    fn chutney_crosscert() {
        let bytes = Vec::from_hex(CHUTNEY_T7).unwrap();
        let cc = RsaCrosscert::decode(&bytes).unwrap();
        let ed = Ed25519Identity::from_bytes(<[u8; 32]>::from_hex(CHUTNEY_ED_ID).unwrap());
        assert_eq!(cc.ed25519_key(), &ed);
        assert_eq!(cc.expiration_hours(), 0x0006DA3A);
        assert_eq!(cc.signature().len(), 128);
        assert_eq!(cc.check(&pk(CHUTNEY_RSA_ID), &ed, NOTIONAL_TIME), Ok(()));
        assert_eq!(
            cc.check_signature(&pk(WRONG_RSA_ID)),
            Err(CertError::BadSignature(7))
        );
        assert!(matches!(
            cc.check(&pk(CHUTNEY_RSA_ID), &ed, cc.expiry_unix() + 1),
            Err(CertError::Expired { cert_type: 7, .. })
        ));
        assert!(matches!(
            cc.check(
                &pk(CHUTNEY_RSA_ID),
                &Ed25519Identity::from_bytes([1; 32]),
                NOTIONAL_TIME
            ),
            Err(CertError::KeyMismatch(_))
        ));
        // A tampered expiration breaks the signature.
        let mut t = bytes.clone();
        t[35] ^= 1;
        let cc = RsaCrosscert::decode(&t).unwrap();
        assert_eq!(
            cc.check_signature(&pk(CHUTNEY_RSA_ID)),
            Err(CertError::BadSignature(7))
        );
    }

    #[test]
    fn strict_parsing() {
        let bytes = Vec::from_hex(CHUTNEY_T7).unwrap();
        for n in 0..bytes.len() {
            assert!(matches!(
                RsaCrosscert::decode(&bytes[..n]),
                Err(CertError::Malformed { .. })
            ));
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(matches!(
            RsaCrosscert::decode(&long),
            Err(CertError::Malformed {
                err: DecodeError::ExtraBytes(1),
                ..
            })
        ));
    }

    #[test]
    fn create_round_trip() {
        let mut rng = seeded_rng(7);
        let key = PrivateKey::new(&mut rng, 1024).unwrap();
        let other = PrivateKey::new(&mut rng, 1024).unwrap();
        let ed = Ed25519Identity::from_bytes([9; 32]);
        let cc = RsaCrosscert::create(&key, &ed, 500_000, &mut rng).unwrap();
        let parsed = RsaCrosscert::decode(cc.encoded()).unwrap();
        assert_eq!(parsed, cc);
        assert_eq!(parsed.encoded().len(), 32 + 4 + 1 + 128);
        assert_eq!(
            parsed.check(key.as_public_key(), &ed, 500_000 * 3600),
            Ok(())
        );
        assert_eq!(
            parsed.check(other.as_public_key(), &ed, 0),
            Err(CertError::BadSignature(7))
        );
        // The signature is over the bare digest: a DigestInfo-prefixed verification fails.
        let digest = signed_digest(&parsed.encoded()[..36]);
        assert!(
            key.as_public_key()
                .verify(Pkcs1v15Sign::new::<Sha256>(), &digest, parsed.signature())
                .is_err()
        );
    }
}
