//! Tor's link certificates and the link handshake checks built on them.
//!
//! | module | what | spec |
//! |---|---|---|
//! | [`ids`] | [`RsaIdentity`] (SHA-1 fingerprint) and [`Ed25519Identity`] | tor-spec §1.1 |
//! | [`ed`] | Ed25519 certificates (CERTS types 4, 5, 6 and the directory types 8-11) | cert-spec §2.1, §2.2.1 |
//! | [`crosscert`] | the RSA->Ed25519 cross-certificate (CERTS type 7) | cert-spec §2.3 |
//! | [`x509`] | X.509 RSA certificates (CERTS types 1, 2, 3) | tor-spec §2, §4.2 |
//! | [`link`] | CERTS bundles, the initiator's and responder's CERTS checks, AUTHENTICATE (AUTH0003) | tor-spec §4.2-§4.4 |
//!
//! Everything takes raw certificate bodies: the CERTS cell framing (`N`, `CertType`, `CLEN`)
//! is the cell codec's job. A CERTS cell is seen here as a list of `(cert_type, body)`.
//! Times are seconds since the Unix epoch, passed in by the caller (no clock here), and
//! randomness comes from a caller-supplied [`rand_core::CryptoRng`].

use onion_cell::bytes::{DecodeError, EncodeError};
use thiserror::Error;

pub mod crosscert;
pub mod ed;
pub mod ids;
pub mod link;
pub mod x509;

pub use crosscert::RsaCrosscert;
pub use ed::{CertExtension, Ed25519Cert, Ed25519CertBuilder};
pub use ids::{Ed25519Identity, RsaIdentity};
pub use link::{
    Auth0003, Auth0003Fields, ExpectedIdentity, RelayCertBundle, RelaySigningMaterial,
    VerifiedInitiator, VerifiedRelay, verify_initiator_certs, verify_responder_certs,
    verify_responder_certs_rsa_only,
};
pub use x509::X509RsaCert;

/// `CertType` values of the CERTS cell (tor-spec §4.2) and `CERT_TYPE` values of Ed25519
/// certificates (cert-spec Appendix A.1). The two enumerations share one number space.
pub mod cert_type {
    /// X.509 link key certificate certified by the RSA1024 identity (CERTS only).
    pub const LINK_X509: u8 = 1;
    /// X.509 RSA1024 identity certificate, self-signed (CERTS only).
    pub const RSA_ID_X509: u8 = 2;
    /// X.509 RSA1024 AUTHENTICATE cell link certificate, signed with the RSA1024 identity
    /// (CERTS only).
    pub const RSA_AUTH_X509: u8 = 3;
    /// Ed25519 signing key, signed with the Ed25519 identity key.
    pub const IDENTITY_V_SIGNING: u8 = 4;
    /// SHA-256 of the TLS link certificate, signed with the Ed25519 signing key.
    pub const SIGNING_V_TLS_CERT: u8 = 5;
    /// Ed25519 AUTHENTICATE cell key (`KP_link_ed`), signed with the Ed25519 signing key.
    pub const SIGNING_V_LINK_AUTH: u8 = 6;
    /// RSA->Ed25519 cross-certificate (its own format, cert-spec §2.3).
    pub const RSA_ID_V_IDENTITY: u8 = 7;
    /// Onion service: short-term descriptor signing key, signed with the blinded key.
    pub const HS_BLINDED_ID_V_SIGNING: u8 = 8;
    /// Onion service: introduction point authentication key, cross-certifying the
    /// descriptor signing key.
    pub const HS_IP_V_SIGNING: u8 = 9;
    /// ntor onion key cross-certifying the Ed25519 identity key.
    pub const NTOR_CC_IDENTITY: u8 = 0x0a;
    /// Onion service: ntor-extra encryption key, cross-certifying the descriptor signing key.
    pub const HS_IP_CC_SIGNING: u8 = 0x0b;
}

/// `CERT_KEY_TYPE` values of Ed25519 certificates (cert-spec Appendix A.4).
pub mod key_type {
    /// An Ed25519 public key. Tor before 0.4.5.1-alpha used this value for every kind of
    /// certified key, so readers accept it wherever another key type is expected.
    pub const ED25519: u8 = 1;
    /// SHA-256 of an RSA key (not used).
    pub const SHA256_OF_RSA: u8 = 2;
    /// SHA-256 of an X.509 certificate (certificate type 5).
    pub const SHA256_OF_X509: u8 = 3;
}

/// Why a certificate, a set of certificates or an AUTHENTICATE body was rejected, or could
/// not be made.
///
/// Parsing and checking errors are the peer's fault; [`CertError::Encode`],
/// [`CertError::Signing`] and some [`CertError::BadKey`] come from the caller's input.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CertError {
    /// The bytes do not parse as the claimed structure (truncated, trailing bytes, bad
    /// length field, ...).
    #[error("malformed {what}: {err}")]
    Malformed {
        /// What was being parsed.
        what: &'static str,
        /// The underlying decoding error.
        err: DecodeError,
    },
    /// An X.509 certificate is not valid DER or not a certificate we can use.
    #[error("malformed X.509 certificate: {0}")]
    X509(der::Error),
    /// An Ed25519 certificate has a `VERSION` other than 1.
    #[error("unsupported Ed25519 certificate version {0}")]
    UnsupportedVersion(u8),
    /// An Ed25519 certificate carries an extension we do not understand with the
    /// AFFECTS_VALIDATION flag set.
    #[error("unrecognized Ed25519 certificate extension {0:#04x} affects validation")]
    UnrecognizedCriticalExtension(u8),
    /// A certificate's own type does not match the type it was sent or used as.
    #[error("certificate of type {got} where type {expected} was required")]
    WrongCertType {
        /// The required type.
        expected: u8,
        /// The type found in the certificate.
        got: u8,
    },
    /// An Ed25519 certificate certifies a kind of key its type does not allow.
    #[error("certificate type {cert_type} certifies an unexpected key type {key_type}")]
    WrongKeyType {
        /// The certificate type.
        cert_type: u8,
        /// The `CERT_KEY_TYPE` found.
        key_type: u8,
    },
    /// A certificate expired before `now`.
    #[error("certificate type {cert_type} expired at {expired_at} (now {now})")]
    Expired {
        /// The certificate type.
        cert_type: u8,
        /// When it expired (seconds since the Unix epoch).
        expired_at: u64,
        /// The time it was checked against.
        now: u64,
    },
    /// An X.509 certificate is not valid yet at `now`.
    #[error("certificate type {cert_type} not valid before {valid_from} (now {now})")]
    NotYetValid {
        /// The certificate type.
        cert_type: u8,
        /// Its notBefore (seconds since the Unix epoch).
        valid_from: u64,
        /// The time it was checked against.
        now: u64,
    },
    /// A signature does not verify.
    #[error("bad signature on certificate type {0}")]
    BadSignature(u8),
    /// A certificate the check requires is not in the CERTS cell.
    #[error("missing certificate type {0}")]
    MissingCert(u8),
    /// The CERTS cell holds more than one certificate of this type.
    #[error("duplicate certificate type {0}")]
    DuplicateCert(u8),
    /// An Ed25519 certificate does not say which key signed it and no key was given.
    #[error("certificate type {0} does not include its signing key")]
    MissingSigningKey(u8),
    /// Two certificates that must name the same key name different keys.
    #[error("key mismatch: {0}")]
    KeyMismatch(&'static str),
    /// The SIGNING_V_TLS_CERT (or legacy link) certificate does not certify the certificate
    /// the TLS connection was authenticated with.
    #[error("certificate does not match the TLS link certificate")]
    TlsCertMismatch,
    /// The peer proved an identity other than the one we expected.
    #[error("peer's {0} identity is not the expected one")]
    WrongIdentity(&'static str),
    /// A key is unusable: not a valid Ed25519 point, an RSA identity key that is not 1024
    /// bits, an RSA key the `rsa` crate refuses.
    #[error("unusable key: {0}")]
    BadKey(&'static str),
    /// An X.509 certificate uses a key or signature algorithm we do not support.
    #[error("unsupported algorithm in X.509 certificate: {0}")]
    UnsupportedAlgorithm(&'static str),
    /// An AUTHENTICATE body does not have the expected type or length.
    #[error("malformed AUTHENTICATE: {0}")]
    BadAuthenticate(&'static str),
    /// The signature of an AUTHENTICATE body does not verify with the initiator's
    /// SIGNING_V_LINK_AUTH key.
    #[error("AUTHENTICATE signature does not verify")]
    BadAuthSignature,
    /// A field of an AUTHENTICATE body differs from the value the responder computed.
    #[error("AUTHENTICATE field {0} does not have the expected value")]
    AuthFieldMismatch(&'static str),
    /// A structure could not be encoded (caller's input too large).
    #[error("cannot encode certificate: {0}")]
    Encode(EncodeError),
    /// Making a signature failed (caller's key unusable for it).
    #[error("signing failed: {0}")]
    Signing(&'static str),
}

impl From<EncodeError> for CertError {
    fn from(e: EncodeError) -> Self {
        CertError::Encode(e)
    }
}

impl From<der::Error> for CertError {
    fn from(e: der::Error) -> Self {
        CertError::X509(e)
    }
}

/// Convert a `Reader` error while parsing `what` into a [`CertError::Malformed`].
pub(crate) fn malformed(what: &'static str) -> impl Fn(DecodeError) -> CertError {
    move |err| CertError::Malformed { what, err }
}

/// Seconds in an hour: Ed25519 certificate and cross-certificate expirations count hours.
pub const SECS_PER_HOUR: u64 = 3600;

/// The expiration field (hours since the epoch, rounded up as C tor does) for a certificate
/// valid for `lifetime_secs` from `now_unix`, saturating at `u32::MAX`.
pub fn expiration_hours(now_unix: u64, lifetime_secs: u64) -> u32 {
    let end = now_unix.saturating_add(lifetime_secs);
    let hours = end.div_ceil(SECS_PER_HOUR);
    u32::try_from(hours).unwrap_or(u32::MAX)
}
