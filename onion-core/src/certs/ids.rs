//! Relay identities (tor-spec §1.1): the RSA identity fingerprint and the Ed25519 identity.

use std::fmt;

use ::rsa::PublicKey as RsaPublicKey;
use ::rsa::pkcs1::EncodeRsaPublicKey;
use base64ct::{Base64Unpadded, Encoding};
use ed25519_dalek::VerifyingKey;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::CertError;

/// The DER encoding (PKCS#1 `RSAPublicKey`) of an RSA public key, as Tor hashes it.
pub fn rsa_public_key_der(key: &RsaPublicKey) -> Result<Vec<u8>, CertError> {
    key.to_pkcs1_der()
        .map(|doc| doc.as_bytes().to_vec())
        .map_err(|_| CertError::BadKey("RSA key cannot be DER-encoded"))
}

/// SHA-256 of the DER encoding of an RSA identity key: the `CID` / `SID` of an
/// AUTHENTICATE cell (tor-spec §4.4) and the TLS exporter context of AUTH0003.
pub fn rsa_identity_sha256(key: &RsaPublicKey) -> Result<[u8; 32], CertError> {
    Ok(Sha256::digest(rsa_public_key_der(key)?).into())
}

/// A relay's RSA identity: the SHA-1 digest of the DER (PKCS#1) encoding of its RSA1024
/// identity key (`KP_relayid_rsa`). Displayed as 40 uppercase hex digits, like a Tor
/// fingerprint.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RsaIdentity([u8; RsaIdentity::LEN]);

impl RsaIdentity {
    /// Length of the fingerprint in bytes.
    pub const LEN: usize = 20;

    /// Wrap a fingerprint.
    pub const fn from_bytes(bytes: [u8; Self::LEN]) -> Self {
        RsaIdentity(bytes)
    }

    /// Wrap a fingerprint given as a slice; `None` if it is not 20 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(RsaIdentity)
    }

    /// Parse 40 hex digits (either case), optionally prefixed with `$` as in Tor's
    /// configuration syntax.
    pub fn from_hex(s: &str) -> Option<Self> {
        let s = s.strip_prefix('$').unwrap_or(s);
        let mut out = [0u8; Self::LEN];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(RsaIdentity(out))
    }

    /// The fingerprint bytes.
    pub fn as_bytes(&self) -> &[u8; Self::LEN] {
        &self.0
    }

    /// The fingerprint of an RSA public key.
    pub fn from_public_key(key: &RsaPublicKey) -> Result<Self, CertError> {
        Ok(RsaIdentity(Sha1::digest(rsa_public_key_der(key)?).into()))
    }
}

impl From<[u8; RsaIdentity::LEN]> for RsaIdentity {
    fn from(bytes: [u8; RsaIdentity::LEN]) -> Self {
        RsaIdentity(bytes)
    }
}

impl fmt::Display for RsaIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode_upper(self.0))
    }
}

impl fmt::Debug for RsaIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RsaIdentity({self})")
    }
}

/// A relay's Ed25519 identity (`KP_relayid_ed`), or any Ed25519 public key named in a
/// certificate, as its 32 raw bytes. It is not checked to be a valid curve point until it
/// is used to verify a signature. Displayed as unpadded base64, as in Tor documents.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ed25519Identity([u8; Ed25519Identity::LEN]);

impl Ed25519Identity {
    /// Length of an Ed25519 public key.
    pub const LEN: usize = 32;

    /// Wrap raw key bytes.
    pub const fn from_bytes(bytes: [u8; Self::LEN]) -> Self {
        Ed25519Identity(bytes)
    }

    /// Wrap key bytes given as a slice; `None` if it is not 32 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Ed25519Identity)
    }

    /// Parse base64 (standard alphabet), with or without `=` padding.
    pub fn from_base64(s: &str) -> Option<Self> {
        let s = s.trim_end_matches('=');
        let mut out = [0u8; Self::LEN];
        let decoded = Base64Unpadded::decode(s, &mut out).ok()?;
        (decoded.len() == Self::LEN).then_some(Ed25519Identity(out))
    }

    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8; Self::LEN] {
        &self.0
    }

    /// The key as a verifying key; fails if the bytes are not a valid curve point.
    pub fn to_verifying_key(&self) -> Result<VerifyingKey, CertError> {
        VerifyingKey::from_bytes(&self.0)
            .map_err(|_| CertError::BadKey("not a valid Ed25519 public key"))
    }
}

impl From<[u8; Ed25519Identity::LEN]> for Ed25519Identity {
    fn from(bytes: [u8; Ed25519Identity::LEN]) -> Self {
        Ed25519Identity(bytes)
    }
}

impl From<&VerifyingKey> for Ed25519Identity {
    fn from(key: &VerifyingKey) -> Self {
        Ed25519Identity(key.to_bytes())
    }
}

impl From<VerifyingKey> for Ed25519Identity {
    fn from(key: VerifyingKey) -> Self {
        Ed25519Identity(key.to_bytes())
    }
}

impl fmt::Display for Ed25519Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&Base64Unpadded::encode_string(&self.0))
    }
}

impl fmt::Debug for Ed25519Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ed25519Identity({self})")
    }
}

#[cfg(test)]
mod test {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use ::rsa::pkcs1::DecodeRsaPublicKey;
    use hex::FromHex;

    /// The RSA identity key of a chutney relay, with the fingerprint Arti's
    /// tor-proto channel handshake tests expect for it.
    const CHUTNEY_RSA_ID_DER: &str = "30818902818100d38b1e6ceb946e0db0751f4cbace3dcb9688b6c25304227b4710c35afb73627e50500f5913e158b621802612d1c75827003703338375237552eb3cd3c12f6ab3604e60c1a2d26bb1fbad206ff023969a90909d6a65a5458a5312c26ebd3a3dad30302d4515cdcd264146ac18e6fc60a04bd3ec327f04294d96ba5aa25b464c3f0203010001";

    #[test]
    fn rsa_fingerprint_known_answer() {
        let der = Vec::from_hex(CHUTNEY_RSA_ID_DER).unwrap();
        let key = RsaPublicKey::from_pkcs1_der(&der).unwrap();
        // Re-encoding is canonical.
        assert_eq!(rsa_public_key_der(&key).unwrap(), der);
        let id = RsaIdentity::from_public_key(&key).unwrap();
        assert_eq!(id.to_string(), "2F1FB49BB332A9EEC617E41E911C33FB3890AEF3");
        assert_eq!(
            RsaIdentity::from_hex("$2f1fb49bb332a9eec617e41e911c33fb3890aef3"),
            Some(id)
        );
        assert_eq!(
            rsa_identity_sha256(&key).unwrap(),
            <[u8; 32]>::from(Sha256::digest(&der))
        );
    }

    #[test]
    fn rsa_identity_parsing_rejects() {
        assert_eq!(RsaIdentity::from_hex("2F1F"), None);
        assert_eq!(RsaIdentity::from_hex(&"G".repeat(40)), None);
        assert_eq!(RsaIdentity::from_slice(&[0; 19]), None);
        assert_eq!(
            RsaIdentity::from_slice(&[7; 20]),
            Some(RsaIdentity::from_bytes([7; 20]))
        );
    }

    #[test]
    fn ed25519_identity_base64() {
        // The chutney relay's Ed25519 identity from the same CERTS cell.
        let bytes: [u8; 32] = <[u8; 32]>::from_hex(
            "dcb604db2034b00fd16986d4adb9d16b21cb4e4457a33dec0f538903683e96e9",
        )
        .unwrap();
        let id = Ed25519Identity::from_bytes(bytes);
        let s = id.to_string();
        assert_eq!(s, "3LYE2yA0sA/RaYbUrbnRayHLTkRXoz3sD1OJA2g+luk");
        assert!(!s.ends_with('='));
        assert_eq!(Ed25519Identity::from_base64(&s), Some(id));
        assert_eq!(Ed25519Identity::from_base64(&format!("{s}=")), Some(id));
        assert_eq!(Ed25519Identity::from_base64("AAAA"), None);
        assert!(id.to_verifying_key().is_ok());
    }
}
