//! The certificate side of the link handshake (tor-spec §4.2-§4.4).
//!
//! - Responder (an OR accepting a connection): [`RelaySigningMaterial::responder_certs`]
//!   makes the CERTS cell entries (types 2, 4, 5, 7, and 1 if the TLS certificate is a
//!   legacy link certificate).
//! - Initiator: [`verify_responder_certs`] checks the responder's CERTS cell exactly as
//!   tor-spec §4.2 says for an Ed25519 + RSA identity, and fails the link on anything it
//!   cannot verify. [`verify_responder_certs_rsa_only`] is the legacy RSA-only check, for
//!   callers that knowingly talk to relays without Ed25519 keys.
//! - An initiator that authenticates (an OR connecting to another OR) sends
//!   [`RelaySigningMaterial::initiator_certs`] (types 2, 4, 6, 7) and an [`Auth0003`]
//!   AUTHENTICATE body; the responder checks them with [`verify_initiator_certs`] and
//!   [`Auth0003::verify`].
//!
//! Certificates arrive as `(cert_type, body)` pairs; the CERTS/AUTHENTICATE cell framing is
//! the cell codec's. Times are seconds since the Unix epoch.
//!
//! # The TLS exporter value of AUTH0003
//!
//! `TLSSECRETS` is computed by the caller from its TLS library (RFC 5705 for TLS 1.2,
//! RFC 8446 §7.5 for TLS 1.3), on both sides, with:
//! - label [`AUTH0003_EXPORTER_LABEL`] = `"EXPORTER FOR TOR TLS CLIENT BINDING AUTH0003"`,
//! - context = `CID`, the 32-byte SHA-256 of the initiator's RSA identity key (DER), i.e.
//!   [`Auth0003Fields::exporter_context`]. This is what C tor does (it passes `auth->cid`)
//!   and what the current torspec says; the older tor-spec.txt wording ("the initiator's
//!   Ed25519 identity key") does not match the deployed network.
//! - length 32.

use ::rsa::{PrivateKey, PublicKey};
use ed25519_dalek::{Signature, SigningKey};
use onion_cell::bytes::{Reader, Writer};
use rand_core::CryptoRng;
use signature::Signer;
use subtle::ConstantTimeEq;

use super::ed::SIGNATURE_LEN;
use super::ids::rsa_identity_sha256;
use super::x509::{FUTURE_SLOP_SECS, PAST_SLOP_SECS};
use super::{
    CertError, Ed25519Cert, Ed25519CertBuilder, Ed25519Identity, RsaCrosscert, RsaIdentity,
    X509RsaCert, cert_type, expiration_hours, key_type, malformed,
};

const DAY: u64 = 24 * 3600;
/// Lifetime of the IDENTITY_V_SIGNING certificate we make (C tor's default
/// `SigningKeyLifetime`, 30 days).
pub const SIGNING_KEY_CERT_LIFETIME_SECS: u64 = 30 * DAY;
/// Lifetime of the SIGNING_V_TLS_CERT and SIGNING_V_LINK_AUTH certificates we make (C tor's
/// default `TestingLinkCertLifetime` / `TestingAuthKeyLifetime`, 2 days).
pub const LINK_CERT_LIFETIME_SECS: u64 = 2 * DAY;
/// Lifetime of the RSA->Ed25519 cross-certificate we make (180 days, as seen from C tor).
pub const CROSSCERT_LIFETIME_SECS: u64 = 180 * DAY;

/// The identities a CERTS cell is expected to prove (from the consensus, the EXTEND2 cell,
/// or configuration). `None` fields are not checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExpectedIdentity {
    /// The expected RSA identity.
    pub rsa: Option<RsaIdentity>,
    /// The expected Ed25519 identity.
    pub ed25519: Option<Ed25519Identity>,
}

/// A responder whose CERTS cell verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifiedRelay {
    /// The relay's RSA identity.
    pub rsa_id: RsaIdentity,
    /// SHA-256 of the relay's RSA identity key (the `SID` of an AUTHENTICATE body).
    pub rsa_id_sha256: [u8; 32],
    /// The relay's Ed25519 identity (`None` only from the RSA-only legacy check).
    pub ed_id: Option<Ed25519Identity>,
    /// The earliest expiry of the certificates checked (seconds since the epoch).
    pub expires_unix: u64,
}

/// An initiator whose CERTS cell verified. It is authenticated only once its AUTHENTICATE
/// body verifies too ([`Auth0003::verify`] with [`VerifiedInitiator::link_auth_key`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifiedInitiator {
    /// The initiator's RSA identity.
    pub rsa_id: RsaIdentity,
    /// SHA-256 of its RSA identity key (the `CID` of its AUTHENTICATE body).
    pub rsa_id_sha256: [u8; 32],
    /// Its Ed25519 identity.
    pub ed_id: Ed25519Identity,
    /// The key certified by its SIGNING_V_LINK_AUTH certificate, which must sign its
    /// AUTHENTICATE body.
    pub link_auth_key: Ed25519Identity,
    /// The earliest expiry of the certificates checked (seconds since the epoch).
    pub expires_unix: u64,
}

/// The certificates of one CERTS cell, parsed, at most one of each type.
#[derive(Default)]
struct ParsedCerts {
    link: Option<X509RsaCert>,
    rsa_id: Option<X509RsaCert>,
    rsa_auth: Option<X509RsaCert>,
    id_signing: Option<Ed25519Cert>,
    signing_tls: Option<Ed25519Cert>,
    signing_auth: Option<Ed25519Cert>,
    crosscert: Option<RsaCrosscert>,
}

impl ParsedCerts {
    /// Reject duplicates of the known types, then parse every known type present (a
    /// malformed certificate fails the cell even if the check would not use it, as in C tor).
    /// Unknown types are ignored.
    fn parse(certs: &[(u8, &[u8])]) -> Result<Self, CertError> {
        let mut seen = [false; 8];
        for &(t, _) in certs {
            if let Some(s) = seen.get_mut(usize::from(t))
                && t != 0
                && std::mem::replace(s, true)
            {
                return Err(CertError::DuplicateCert(t));
            }
        }
        let mut p = ParsedCerts::default();
        for &(t, body) in certs {
            match t {
                cert_type::LINK_X509 => p.link = Some(X509RsaCert::decode(body, t)?),
                cert_type::RSA_ID_X509 => p.rsa_id = Some(X509RsaCert::decode(body, t)?),
                cert_type::RSA_AUTH_X509 => p.rsa_auth = Some(X509RsaCert::decode(body, t)?),
                cert_type::IDENTITY_V_SIGNING => {
                    p.id_signing = Some(Ed25519Cert::decode_typed(body, t)?);
                }
                cert_type::SIGNING_V_TLS_CERT => {
                    p.signing_tls = Some(Ed25519Cert::decode_typed(body, t)?);
                }
                cert_type::SIGNING_V_LINK_AUTH => {
                    p.signing_auth = Some(Ed25519Cert::decode_typed(body, t)?);
                }
                cert_type::RSA_ID_V_IDENTITY => p.crosscert = Some(RsaCrosscert::decode(body)?),
                _ => {}
            }
        }
        Ok(p)
    }
}

fn required<T>(c: Option<T>, t: u8) -> Result<T, CertError> {
    c.ok_or(CertError::MissingCert(t))
}

/// The RSA identity certificate checks: a 1024-bit key, correctly self-signed, within its
/// validity (with C tor's slop).
fn check_rsa_id_cert(id: &X509RsaCert, now: u64) -> Result<(RsaIdentity, [u8; 32]), CertError> {
    id.check_rsa1024()?;
    id.check_self_signed()?;
    id.check_valid_at_with_slop(now, PAST_SLOP_SECS, FUTURE_SLOP_SECS)?;
    Ok((id.rsa_identity()?, id.rsa_identity_sha256()?))
}

/// What the Ed25519 chain proves.
struct EdChain {
    ed_id: Ed25519Identity,
    expires: u64,
}

/// IDENTITY_V_SIGNING (self-describing: must carry its signing key), then `leaf` signed by
/// the certified signing key, then the cross-certificate binding the Ed25519 identity to
/// `rsa_key`.
fn check_ed_chain(
    id_signing: &Ed25519Cert,
    leaf: &Ed25519Cert,
    crosscert: &RsaCrosscert,
    rsa_key: &PublicKey,
    now: u64,
) -> Result<EdChain, CertError> {
    if id_signing.signing_key().is_none() {
        return Err(CertError::MissingSigningKey(cert_type::IDENTITY_V_SIGNING));
    }
    let ed_id = id_signing.check(None, now)?;
    let signing_key = id_signing
        .certified_ed25519()
        .ok_or(CertError::WrongKeyType {
            cert_type: cert_type::IDENTITY_V_SIGNING,
            key_type: id_signing.key_type(),
        })?;
    leaf.check(Some(&signing_key), now)?;
    crosscert.check(rsa_key, &ed_id, now)?;
    let expires = id_signing
        .expiry_unix()
        .min(leaf.expiry_unix())
        .min(crosscert.expiry_unix());
    Ok(EdChain { ed_id, expires })
}

/// What the certificates of an Ed25519-authenticated CERTS cell prove, before the checks
/// particular to its leaf.
struct EdCerts {
    rsa_id: RsaIdentity,
    rsa_id_sha256: [u8; 32],
    /// The leaf certificate, already checked as signed by the certified signing key.
    leaf: Ed25519Cert,
    ed_id: Ed25519Identity,
    /// When the first of the RSA identity certificate and the Ed25519 chain expires.
    expires_unix: u64,
}

/// The checks shared by [`verify_responder_certs`] and [`verify_initiator_certs`]: exactly one
/// each of types 2, 4, `leaf_type` and 7 (missing ones reported in that order), the RSA
/// identity certificate ([`check_rsa_id_cert`]) and the Ed25519 chain ending on the leaf
/// ([`check_ed_chain`]). `leaf_type` is [`cert_type::SIGNING_V_TLS_CERT`] or
/// [`cert_type::SIGNING_V_LINK_AUTH`]; any other is reported missing.
fn check_ed_certs(
    certs: &[(u8, &[u8])],
    leaf_type: u8,
    now_unix: u64,
) -> Result<EdCerts, CertError> {
    let p = ParsedCerts::parse(certs)?;
    let rsa_id_cert = required(p.rsa_id, cert_type::RSA_ID_X509)?;
    let id_signing = required(p.id_signing, cert_type::IDENTITY_V_SIGNING)?;
    let leaf = match leaf_type {
        cert_type::SIGNING_V_TLS_CERT => p.signing_tls,
        cert_type::SIGNING_V_LINK_AUTH => p.signing_auth,
        _ => None,
    };
    let leaf = required(leaf, leaf_type)?;
    let crosscert = required(p.crosscert, cert_type::RSA_ID_V_IDENTITY)?;

    let (rsa_id, rsa_id_sha256) = check_rsa_id_cert(&rsa_id_cert, now_unix)?;
    let chain = check_ed_chain(
        &id_signing,
        &leaf,
        &crosscert,
        rsa_id_cert.public_key(),
        now_unix,
    )?;
    Ok(EdCerts {
        rsa_id,
        rsa_id_sha256,
        leaf,
        ed_id: chain.ed_id,
        expires_unix: chain.expires.min(rsa_id_cert.not_after()),
    })
}

fn check_expected(
    expected: Option<&ExpectedIdentity>,
    rsa_id: &RsaIdentity,
    ed_id: Option<&Ed25519Identity>,
) -> Result<(), CertError> {
    let Some(e) = expected else { return Ok(()) };
    if let Some(want) = &e.rsa
        && want != rsa_id
    {
        return Err(CertError::WrongIdentity("RSA"));
    }
    if let Some(want) = &e.ed25519 {
        match ed_id {
            Some(got) if got == want => {}
            Some(_) => return Err(CertError::WrongIdentity("Ed25519")),
            None => return Err(CertError::MissingCert(cert_type::IDENTITY_V_SIGNING)),
        }
    }
    Ok(())
}

/// Initiator side: authenticate the responder from its CERTS cell as having an Ed25519 and
/// an RSA identity (tor-spec §4.2).
///
/// `tls_cert_sha256` is the SHA-256 of the DER certificate the responder presented in the
/// TLS handshake. Requires exactly one each of types 2, 4, 5 and 7 (any duplicate of a
/// known type fails); checks that the RSA identity certificate holds a 1024-bit key, is
/// self-signed and within its validity (with C tor's 2-day / 30-day slop); that the
/// IDENTITY_V_SIGNING certificate is signed by the Ed25519 identity it includes; that the
/// SIGNING_V_TLS_CERT certificate is signed by the certified signing key and certifies
/// `tls_cert_sha256`; that the cross-certificate certifies that Ed25519 identity and is
/// signed by the RSA identity key; that no Ed25519 certificate or cross-certificate has
/// expired; and, last, that the identities are the `expected` ones.
pub fn verify_responder_certs(
    certs: &[(u8, &[u8])],
    tls_cert_sha256: &[u8; 32],
    now_unix: u64,
    expected: Option<&ExpectedIdentity>,
) -> Result<VerifiedRelay, CertError> {
    verify_responder_certs_inner(certs, Some(tls_cert_sha256), now_unix, expected)
}

/// Initiator side, for a link without a TLS certificate the initiator can see (a WebSocket
/// opened by a browser): every check of [`verify_responder_certs`] except that the
/// SIGNING_V_TLS_CERT certificate certifies the TLS certificate. That certificate must still
/// be present exactly once, well-formed, unexpired, of an allowed key type and signed by the
/// certified signing key.
///
/// The result proves only that these certificates belong together, not that the peer on this
/// connection holds the keys: anyone can replay a relay's CERTS cell. The caller must
/// authenticate the peer another way (our OPs: by the relay's pinned ntor key during CREATE2).
pub fn verify_responder_certs_unbound(
    certs: &[(u8, &[u8])],
    now_unix: u64,
    expected: Option<&ExpectedIdentity>,
) -> Result<VerifiedRelay, CertError> {
    verify_responder_certs_inner(certs, None, now_unix, expected)
}

/// [`verify_responder_certs`], with the TLS binding check skipped when `tls_cert_sha256` is
/// `None`.
fn verify_responder_certs_inner(
    certs: &[(u8, &[u8])],
    tls_cert_sha256: Option<&[u8; 32]>,
    now_unix: u64,
    expected: Option<&ExpectedIdentity>,
) -> Result<VerifiedRelay, CertError> {
    let EdCerts {
        rsa_id,
        rsa_id_sha256,
        leaf: signing_tls,
        ed_id,
        expires_unix,
    } = check_ed_certs(certs, cert_type::SIGNING_V_TLS_CERT, now_unix)?;
    // Before 0.4.5.1-alpha C tor wrote key type 1 here; accept it as the spec asks.
    if !matches!(
        signing_tls.key_type(),
        key_type::SHA256_OF_X509 | key_type::ED25519
    ) {
        return Err(CertError::WrongKeyType {
            cert_type: cert_type::SIGNING_V_TLS_CERT,
            key_type: signing_tls.key_type(),
        });
    }
    if let Some(tls) = tls_cert_sha256
        && !bool::from(signing_tls.certified_key().ct_eq(tls))
    {
        return Err(CertError::TlsCertMismatch);
    }
    check_expected(expected, &rsa_id, Some(&ed_id))?;
    Ok(VerifiedRelay {
        rsa_id,
        rsa_id_sha256,
        ed_id: Some(ed_id),
        expires_unix,
    })
}

/// Initiator side, legacy: authenticate the responder as having an RSA identity only
/// (tor-spec §4.2), from its type 1 (link) and type 2 (identity) certificates.
///
/// Use only for relays known to lack Ed25519 keys (none on today's network). The link
/// certificate must be the TLS certificate itself (C tor sends the same one), so its SHA-256
/// must equal `tls_cert_sha256`; it must be signed by the identity key, which must be a
/// 1024-bit key in a correctly self-signed certificate, both within their validity. An
/// `expected` Ed25519 identity cannot be proven this way and fails with
/// [`CertError::MissingCert`]`(4)`.
pub fn verify_responder_certs_rsa_only(
    certs: &[(u8, &[u8])],
    tls_cert_sha256: &[u8; 32],
    now_unix: u64,
    expected: Option<&ExpectedIdentity>,
) -> Result<VerifiedRelay, CertError> {
    let p = ParsedCerts::parse(certs)?;
    let link = required(p.link, cert_type::LINK_X509)?;
    let rsa_id_cert = required(p.rsa_id, cert_type::RSA_ID_X509)?;
    let (rsa_id, rsa_id_sha256) = check_rsa_id_cert(&rsa_id_cert, now_unix)?;
    link.check_signature(rsa_id_cert.public_key())?;
    link.check_valid_at_with_slop(now_unix, PAST_SLOP_SECS, FUTURE_SLOP_SECS)?;
    if !bool::from(link.sha256().ct_eq(tls_cert_sha256)) {
        return Err(CertError::TlsCertMismatch);
    }
    check_expected(expected, &rsa_id, None)?;
    Ok(VerifiedRelay {
        rsa_id,
        rsa_id_sha256,
        ed_id: None,
        expires_unix: link.not_after().min(rsa_id_cert.not_after()),
    })
}

/// Responder side: check an authenticating initiator's CERTS cell (tor-spec §4.2): exactly
/// one each of types 2, 4, 6 and 7, with the same checks as [`verify_responder_certs`]
/// except that the leaf is the SIGNING_V_LINK_AUTH certificate, which must certify an
/// Ed25519 key. The initiator is authenticated only after its AUTHENTICATE body verifies
/// with the returned [`VerifiedInitiator::link_auth_key`].
pub fn verify_initiator_certs(
    certs: &[(u8, &[u8])],
    now_unix: u64,
    expected: Option<&ExpectedIdentity>,
) -> Result<VerifiedInitiator, CertError> {
    let EdCerts {
        rsa_id,
        rsa_id_sha256,
        leaf: signing_auth,
        ed_id,
        expires_unix,
    } = check_ed_certs(certs, cert_type::SIGNING_V_LINK_AUTH, now_unix)?;
    let link_auth_key = signing_auth
        .certified_ed25519()
        .ok_or(CertError::WrongKeyType {
            cert_type: cert_type::SIGNING_V_LINK_AUTH,
            key_type: signing_auth.key_type(),
        })?;
    check_expected(expected, &rsa_id, Some(&ed_id))?;
    Ok(VerifiedInitiator {
        rsa_id,
        rsa_id_sha256,
        ed_id,
        link_auth_key,
        expires_unix,
    })
}

/// The certificates of one CERTS cell, in the order C tor sends them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayCertBundle {
    certs: Vec<(u8, Vec<u8>)>,
    expires_unix: u64,
}

impl RelayCertBundle {
    /// The `(cert_type, body)` entries, for the CERTS cell encoder.
    pub fn certs(&self) -> Vec<(u8, &[u8])> {
        self.certs.iter().map(|(t, b)| (*t, b.as_slice())).collect()
    }

    /// Consume the bundle into its entries.
    pub fn into_certs(self) -> Vec<(u8, Vec<u8>)> {
        self.certs
    }

    /// When the first of these certificates expires (seconds since the epoch): make a new
    /// bundle before then.
    pub fn expires_unix(&self) -> u64 {
        self.expires_unix
    }
}

/// An OR's long-lived identity keys and the certificates made from them, from which the
/// CERTS cells of each link are built.
pub struct RelaySigningMaterial {
    rsa_identity: PrivateKey,
    rsa_id: RsaIdentity,
    rsa_id_sha256: [u8; 32],
    ed_identity: Ed25519Identity,
    ed_signing: SigningKey,
    rsa_id_cert: X509RsaCert,
    id_signing: Ed25519Cert,
    crosscert: RsaCrosscert,
}

impl std::fmt::Debug for RelaySigningMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelaySigningMaterial")
            .field("rsa_id", &self.rsa_id)
            .field("ed_identity", &self.ed_identity)
            .finish_non_exhaustive()
    }
}

impl RelaySigningMaterial {
    /// Make the long-lived certificates: the self-signed RSA identity certificate (type 2,
    /// one year), the IDENTITY_V_SIGNING certificate of `ed_signing` by `ed_identity` (type
    /// 4, [`SIGNING_KEY_CERT_LIFETIME_SECS`]) and the cross-certificate of `ed_identity` by
    /// `rsa_identity` (type 7, [`CROSSCERT_LIFETIME_SECS`]). `rsa_identity` must be a
    /// 1024-bit key. The Ed25519 identity secret key is not kept.
    pub fn new<R: CryptoRng + ?Sized>(
        rsa_identity: PrivateKey,
        ed_identity: &SigningKey,
        ed_signing: SigningKey,
        now_unix: u64,
        rng: &mut R,
    ) -> Result<Self, CertError> {
        let rsa_id_cert = X509RsaCert::create_identity_cert(&rsa_identity, now_unix, rng)?;
        rsa_id_cert.check_rsa1024()?;
        let ed_id = Ed25519Identity::from(ed_identity.verifying_key());
        let id_signing = Ed25519CertBuilder::new(
            cert_type::IDENTITY_V_SIGNING,
            key_type::ED25519,
            ed_signing.verifying_key().to_bytes(),
            expiration_hours(now_unix, SIGNING_KEY_CERT_LIFETIME_SECS),
        )
        .include_signing_key(true)
        .sign(ed_identity)?;
        let crosscert = RsaCrosscert::create(
            &rsa_identity,
            &ed_id,
            expiration_hours(now_unix, CROSSCERT_LIFETIME_SECS),
            rng,
        )?;
        Self::from_parts(rsa_identity, ed_signing, rsa_id_cert, id_signing, crosscert)
    }

    /// Assemble from certificates made elsewhere (e.g. an IDENTITY_V_SIGNING certificate
    /// made with an offline Ed25519 identity key). Checks that they fit together: the
    /// identity certificate is self-signed by `rsa_identity`, the type 4 certificate carries
    /// the Ed25519 identity that signed it and certifies `ed_signing`, and the
    /// cross-certificate certifies that identity and is signed by `rsa_identity`.
    pub fn from_parts(
        rsa_identity: PrivateKey,
        ed_signing: SigningKey,
        rsa_id_cert: X509RsaCert,
        id_signing: Ed25519Cert,
        crosscert: RsaCrosscert,
    ) -> Result<Self, CertError> {
        if rsa_id_cert.public_key() != rsa_identity.as_public_key() {
            return Err(CertError::KeyMismatch(
                "RSA identity certificate is for another key",
            ));
        }
        rsa_id_cert.check_self_signed()?;
        if id_signing.cert_type() != cert_type::IDENTITY_V_SIGNING {
            return Err(CertError::WrongCertType {
                expected: cert_type::IDENTITY_V_SIGNING,
                got: id_signing.cert_type(),
            });
        }
        if id_signing.signing_key().is_none() {
            return Err(CertError::MissingSigningKey(cert_type::IDENTITY_V_SIGNING));
        }
        let ed_identity = id_signing.check_signature(None)?;
        if id_signing.certified_ed25519() != Some(Ed25519Identity::from(ed_signing.verifying_key()))
        {
            return Err(CertError::KeyMismatch(
                "IDENTITY_V_SIGNING certifies another signing key",
            ));
        }
        if crosscert.ed25519_key() != &ed_identity {
            return Err(CertError::KeyMismatch(
                "cross-certificate certifies another Ed25519 identity",
            ));
        }
        crosscert.check_signature(rsa_identity.as_public_key())?;
        let rsa_id = RsaIdentity::from_public_key(rsa_identity.as_public_key())?;
        let rsa_id_sha256 = rsa_identity_sha256(rsa_identity.as_public_key())?;
        Ok(RelaySigningMaterial {
            rsa_identity,
            rsa_id,
            rsa_id_sha256,
            ed_identity,
            ed_signing,
            rsa_id_cert,
            id_signing,
            crosscert,
        })
    }

    /// The RSA identity.
    pub fn rsa_id(&self) -> &RsaIdentity {
        &self.rsa_id
    }

    /// SHA-256 of the RSA identity key (our `CID` or `SID` in AUTHENTICATE).
    pub fn rsa_id_sha256(&self) -> &[u8; 32] {
        &self.rsa_id_sha256
    }

    /// The Ed25519 identity.
    pub fn ed_identity(&self) -> &Ed25519Identity {
        &self.ed_identity
    }

    /// The RSA identity private key.
    pub fn rsa_identity_key(&self) -> &PrivateKey {
        &self.rsa_identity
    }

    /// The Ed25519 signing key (`KS_relaysign_ed`).
    pub fn ed_signing_key(&self) -> &SigningKey {
        &self.ed_signing
    }

    /// The self-signed RSA identity certificate (type 2).
    pub fn rsa_id_cert(&self) -> &X509RsaCert {
        &self.rsa_id_cert
    }

    /// The IDENTITY_V_SIGNING certificate (type 4).
    pub fn identity_v_signing(&self) -> &Ed25519Cert {
        &self.id_signing
    }

    /// The RSA->Ed25519 cross-certificate (type 7).
    pub fn crosscert(&self) -> &RsaCrosscert {
        &self.crosscert
    }

    /// Replace the self-signed RSA identity certificate by a fresh one for `now_unix`.
    ///
    /// C tor makes a new identity certificate with each TLS context (at least daily), and
    /// like C tor's ours may end as early as about a day after it was made (its validity is
    /// randomized): renew it before [`RelaySigningMaterial::expires_unix`].
    pub fn renew_rsa_id_cert<R: CryptoRng + ?Sized>(
        &mut self,
        now_unix: u64,
        rng: &mut R,
    ) -> Result<(), CertError> {
        self.rsa_id_cert = X509RsaCert::create_identity_cert(&self.rsa_identity, now_unix, rng)?;
        Ok(())
    }

    /// When the first long-lived certificate expires: renew it (or make new material)
    /// before then.
    pub fn expires_unix(&self) -> u64 {
        self.rsa_id_cert
            .not_after()
            .min(self.id_signing.expiry_unix())
            .min(self.crosscert.expiry_unix())
    }

    fn leaf(&self, ct: u8, kt: u8, key: [u8; 32], now: u64) -> Result<Ed25519Cert, CertError> {
        Ed25519CertBuilder::new(ct, kt, key, expiration_hours(now, LINK_CERT_LIFETIME_SECS))
            .include_signing_key(false)
            .sign(&self.ed_signing)
    }

    fn bundle(
        &self,
        x509_first: Option<&X509RsaCert>,
        x509_type: u8,
        leaf: Ed25519Cert,
    ) -> RelayCertBundle {
        let mut certs = Vec::with_capacity(5);
        let mut expires = self.expires_unix().min(leaf.expiry_unix());
        if let Some(c) = x509_first {
            certs.push((x509_type, c.as_der().to_vec()));
            expires = expires.min(c.not_after());
        }
        certs.push((cert_type::RSA_ID_X509, self.rsa_id_cert.as_der().to_vec()));
        certs.push((
            cert_type::IDENTITY_V_SIGNING,
            self.id_signing.encoded().to_vec(),
        ));
        certs.push((leaf.cert_type(), leaf.encoded().to_vec()));
        certs.push((
            cert_type::RSA_ID_V_IDENTITY,
            self.crosscert.encoded().to_vec(),
        ));
        RelayCertBundle {
            certs,
            expires_unix: expires,
        }
    }

    /// The CERTS cell of a responder whose TLS certificate has SHA-256 `tls_cert_sha256`:
    /// types 2, 4, 5 (a fresh SIGNING_V_TLS_CERT, [`LINK_CERT_LIFETIME_SECS`]) and 7, and
    /// first type 1 if `legacy_link_cert` is given (it must then be the TLS certificate,
    /// signed by the RSA identity, for RSA-only initiators; see
    /// [`RelaySigningMaterial::make_legacy_link_cert`]).
    pub fn responder_certs(
        &self,
        tls_cert_sha256: &[u8; 32],
        now_unix: u64,
        legacy_link_cert: Option<&X509RsaCert>,
    ) -> Result<RelayCertBundle, CertError> {
        if let Some(c) = legacy_link_cert
            && !bool::from(c.sha256().ct_eq(tls_cert_sha256))
        {
            return Err(CertError::TlsCertMismatch);
        }
        let leaf = self.leaf(
            cert_type::SIGNING_V_TLS_CERT,
            key_type::SHA256_OF_X509,
            *tls_cert_sha256,
            now_unix,
        )?;
        Ok(self.bundle(legacy_link_cert, cert_type::LINK_X509, leaf))
    }

    /// The CERTS cell of an initiator that will authenticate with `link_auth_key`
    /// (`KS_link_ed`): types 2, 4, 6 (a fresh SIGNING_V_LINK_AUTH,
    /// [`LINK_CERT_LIFETIME_SECS`]) and 7, and first type 3 if `rsa_auth_cert` is given
    /// (C tor sends one; its Ed25519 check does not need it).
    pub fn initiator_certs(
        &self,
        link_auth_key: &Ed25519Identity,
        now_unix: u64,
        rsa_auth_cert: Option<&X509RsaCert>,
    ) -> Result<RelayCertBundle, CertError> {
        let leaf = self.leaf(
            cert_type::SIGNING_V_LINK_AUTH,
            key_type::ED25519,
            *link_auth_key.as_bytes(),
            now_unix,
        )?;
        Ok(self.bundle(rsa_auth_cert, cert_type::RSA_AUTH_X509, leaf))
    }

    /// Make a legacy link certificate (type 1, or type 3 for an RSA AUTHENTICATE key) for
    /// `subject_key`, signed by the RSA identity, as C tor makes its TLS certificates. Only
    /// needed to serve RSA-only initiators: the TLS layer must then present this very
    /// certificate.
    pub fn make_legacy_link_cert<R: CryptoRng + ?Sized>(
        &self,
        subject_key: &PublicKey,
        cert_type: u8,
        lifetime_secs: u64,
        now_unix: u64,
        rng: &mut R,
    ) -> Result<X509RsaCert, CertError> {
        X509RsaCert::create_signed_by_identity(
            &self.rsa_identity,
            &self.rsa_id_cert,
            subject_key,
            cert_type,
            lifetime_secs,
            now_unix,
            rng,
        )
    }
}

/// AuthType of Ed25519-SHA256-RFC5705 authentication (tor-spec §4.4.2).
pub const AUTH_TYPE_ED25519_SHA256_RFC5705: u16 = 3;
/// The `TYPE` field of an AUTH0003 body.
pub const AUTH0003_TYPE: &[u8; 8] = b"AUTH0003";
/// The TLS exporter label for `TLSSECRETS` (see the [module docs](self)).
pub const AUTH0003_EXPORTER_LABEL: &[u8] = b"EXPORTER FOR TOR TLS CLIENT BINDING AUTH0003";
/// The TLS exporter output length for `TLSSECRETS`.
pub const AUTH0003_EXPORTER_LEN: usize = 32;
/// Length of the fields both sides compute (`TYPE` through `TLSSECRETS`).
pub const AUTH0003_FIXED_LEN: usize = 8 + 8 * 32;
/// Length of `RAND`.
pub const AUTH0003_RAND_LEN: usize = 24;
/// Length of an AUTH0003 body as we send it.
pub const AUTH0003_LEN: usize = AUTH0003_FIXED_LEN + AUTH0003_RAND_LEN + SIGNATURE_LEN;

/// The fields of an AUTH0003 body that both sides compute independently (`TYPE` is
/// implied). All are 32 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth0003Fields {
    /// `CID`: SHA-256 of the initiator's RSA identity key (DER).
    pub cid: [u8; 32],
    /// `SID`: SHA-256 of the responder's RSA identity key (DER).
    pub sid: [u8; 32],
    /// `CID_ED`: the initiator's Ed25519 identity.
    pub cid_ed: [u8; 32],
    /// `SID_ED`: the responder's Ed25519 identity, or all zero.
    pub sid_ed: [u8; 32],
    /// `SLOG`: SHA-256 of all bytes the responder sent on the link up to and including the
    /// AUTH_CHALLENGE cell (VERSIONS, CERTS, AUTH_CHALLENGE and any padding cells).
    pub slog: [u8; 32],
    /// `CLOG`: SHA-256 of all bytes the initiator sent so far (VERSIONS, CERTS and any
    /// padding cells).
    pub clog: [u8; 32],
    /// `SCERT`: SHA-256 of the responder's TLS certificate.
    pub scert: [u8; 32],
    /// `TLSSECRETS`: the TLS exporter value (see the [module docs](self)).
    pub tlssecrets: [u8; 32],
}

impl Auth0003Fields {
    /// The fields as the initiator `me` computes them after verifying `peer`'s CERTS cell.
    pub fn for_initiator(
        me: &RelaySigningMaterial,
        peer: &VerifiedRelay,
        slog: [u8; 32],
        clog: [u8; 32],
        scert: [u8; 32],
        tlssecrets: [u8; 32],
    ) -> Self {
        Auth0003Fields {
            cid: me.rsa_id_sha256,
            sid: peer.rsa_id_sha256,
            cid_ed: *me.ed_identity.as_bytes(),
            sid_ed: peer.ed_id.map(|k| *k.as_bytes()).unwrap_or([0; 32]),
            slog,
            clog,
            scert,
            tlssecrets,
        }
    }

    /// The fields as the responder `me` expects them from `peer`, whose CERTS cell
    /// verified.
    pub fn for_responder(
        me: &RelaySigningMaterial,
        peer: &VerifiedInitiator,
        slog: [u8; 32],
        clog: [u8; 32],
        scert: [u8; 32],
        tlssecrets: [u8; 32],
    ) -> Self {
        Auth0003Fields {
            cid: peer.rsa_id_sha256,
            sid: me.rsa_id_sha256,
            cid_ed: *peer.ed_id.as_bytes(),
            sid_ed: *me.ed_identity.as_bytes(),
            slog,
            clog,
            scert,
            tlssecrets,
        }
    }

    /// The TLS exporter context: `CID`.
    pub fn exporter_context(&self) -> &[u8; 32] {
        &self.cid
    }

    fn named(&self) -> [(&'static str, &[u8; 32]); 8] {
        [
            ("CID", &self.cid),
            ("SID", &self.sid),
            ("CID_ED", &self.cid_ed),
            ("SID_ED", &self.sid_ed),
            ("SLOG", &self.slog),
            ("CLOG", &self.clog),
            ("SCERT", &self.scert),
            ("TLSSECRETS", &self.tlssecrets),
        ]
    }
}

/// An AUTHENTICATE body of type 3, Ed25519-SHA256-RFC5705 (tor-spec §4.4.2): the
/// `Authentication` field, without the cell's `AuthType` and `AuthLen`.
///
/// ```text
/// "AUTH0003" | CID | SID | CID_ED | SID_ED | SLOG | CLOG | SCERT | TLSSECRETS | RAND [24]
/// | (extra bytes, ignored but signed) | SIG [64]
/// ```
///
/// `SIG` is an Ed25519 signature, by the initiator's SIGNING_V_LINK_AUTH key, of everything
/// before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth0003 {
    /// The independently computed fields.
    pub fields: Auth0003Fields,
    /// `RAND`, chosen by the initiator.
    pub rand: [u8; AUTH0003_RAND_LEN],
    /// Bytes between `RAND` and `SIG` (none from us; ignored, but covered by `SIG`).
    pub extra: Vec<u8>,
    /// `SIG`.
    pub sig: [u8; SIGNATURE_LEN],
}

impl Auth0003 {
    /// Initiator: fill `RAND` from `rng` and sign with the link authentication key
    /// (`KS_link_ed`, the key certified by our SIGNING_V_LINK_AUTH certificate).
    pub fn sign<R: CryptoRng + ?Sized>(
        fields: Auth0003Fields,
        link_auth_key: &SigningKey,
        rng: &mut R,
    ) -> Self {
        let mut rand = [0u8; AUTH0003_RAND_LEN];
        rng.fill_bytes(&mut rand);
        let mut a = Auth0003 {
            fields,
            rand,
            extra: Vec::new(),
            sig: [0; SIGNATURE_LEN],
        };
        a.sig = link_auth_key.sign(&a.signed_part()).to_bytes();
        a
    }

    fn signed_part(&self) -> Vec<u8> {
        let mut w = Vec::with_capacity(AUTH0003_LEN + self.extra.len());
        w.write_all(AUTH0003_TYPE);
        for (_, f) in self.fields.named() {
            w.write_all(f);
        }
        w.write_all(&self.rand);
        w.write_all(&self.extra);
        w
    }

    /// The `Authentication` bytes to put in the AUTHENTICATE cell (with AuthType
    /// [`AUTH_TYPE_ED25519_SHA256_RFC5705`]).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = self.signed_part();
        w.write_all(&self.sig);
        w
    }

    /// Parse an `Authentication` field: `TYPE` must be `AUTH0003` and the body at least
    /// [`AUTH0003_LEN`] bytes; the signature is its last 64 bytes.
    pub fn decode(body: &[u8]) -> Result<Self, CertError> {
        if body.len() < AUTH0003_LEN {
            return Err(CertError::BadAuthenticate("body too short"));
        }
        let (signed, sig) = body
            .split_at_checked(body.len() - SIGNATURE_LEN)
            .ok_or(CertError::BadAuthenticate("body too short"))?;
        let m = malformed("AUTHENTICATE body");
        let mut r = Reader::new(signed);
        let ty: [u8; 8] = r.take_array().map_err(&m)?;
        if &ty != AUTH0003_TYPE {
            return Err(CertError::AuthFieldMismatch("TYPE"));
        }
        let mut f = || r.take_array::<32>().map_err(&m);
        let fields = Auth0003Fields {
            cid: f()?,
            sid: f()?,
            cid_ed: f()?,
            sid_ed: f()?,
            slog: f()?,
            clog: f()?,
            scert: f()?,
            tlssecrets: f()?,
        };
        let rand = r.take_array().map_err(&m)?;
        let extra = r.take_rest().to_vec();
        let sig = sig
            .try_into()
            .map_err(|_| CertError::BadAuthenticate("signature length"))?;
        Ok(Auth0003 {
            fields,
            rand,
            extra,
            sig,
        })
    }

    /// Responder: check an `Authentication` field received with AuthType
    /// [`AUTH_TYPE_ED25519_SHA256_RFC5705`]: every field from `TYPE` to `TLSSECRETS` must
    /// equal `expected` (fails with [`CertError::AuthFieldMismatch`] naming the first that
    /// differs), and `SIG` must be `link_auth_key`'s signature of everything before it
    /// (`link_auth_key` is [`VerifiedInitiator::link_auth_key`]). Extra bytes after `RAND`
    /// are ignored (but signed).
    pub fn verify(
        body: &[u8],
        expected: &Auth0003Fields,
        link_auth_key: &Ed25519Identity,
    ) -> Result<Self, CertError> {
        let a = Self::decode(body)?;
        for ((name, got), (_, want)) in a.fields.named().into_iter().zip(expected.named()) {
            if !bool::from(got.ct_eq(want)) {
                return Err(CertError::AuthFieldMismatch(name));
            }
        }
        let vk = link_auth_key.to_verifying_key()?;
        let signed = body
            .get(..body.len().saturating_sub(SIGNATURE_LEN))
            .ok_or(CertError::BadAuthenticate("body too short"))?;
        vk.verify_strict(signed, &Signature::from_bytes(&a.sig))
            .map_err(|_| CertError::BadAuthSignature)?;
        Ok(a)
    }
}

#[cfg(test)]
mod test {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::testing::seeded_rng;
    use hex::FromHex;
    use proptest::prelude::*;
    use rand_core::Rng;
    use sha2::{Digest, Sha256};

    const NOW: u64 = 1_700_000_000;

    fn ed_key<R: Rng>(rng: &mut R) -> SigningKey {
        let mut b = [0u8; 32];
        rng.fill_bytes(&mut b);
        SigningKey::from_bytes(&b)
    }

    fn material(seed: u64) -> RelaySigningMaterial {
        let mut rng = seeded_rng(seed);
        let rsa = PrivateKey::new(&mut rng, 1024).unwrap();
        let ed_id = ed_key(&mut rng);
        let ed_signing = ed_key(&mut rng);
        RelaySigningMaterial::new(rsa, &ed_id, ed_signing, NOW, &mut rng).unwrap()
    }

    fn tls(n: u8) -> [u8; 32] {
        Sha256::digest([n; 100]).into()
    }

    fn expected(m: &RelaySigningMaterial) -> ExpectedIdentity {
        ExpectedIdentity {
            rsa: Some(*m.rsa_id()),
            ed25519: Some(*m.ed_identity()),
        }
    }

    /// Replace (or add) the certificate of type `t`.
    fn with(certs: &[(u8, &[u8])], t: u8, body: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut v: Vec<(u8, Vec<u8>)> = certs
            .iter()
            .filter(|(ct, _)| *ct != t)
            .map(|(ct, b)| (*ct, b.to_vec()))
            .collect();
        v.push((t, body.to_vec()));
        v
    }

    fn without(certs: &[(u8, &[u8])], t: u8) -> Vec<(u8, Vec<u8>)> {
        certs
            .iter()
            .filter(|(ct, _)| *ct != t)
            .map(|(ct, b)| (*ct, b.to_vec()))
            .collect()
    }

    fn refs(v: &[(u8, Vec<u8>)]) -> Vec<(u8, &[u8])> {
        v.iter().map(|(t, b)| (*t, b.as_slice())).collect()
    }

    fn munge_last(b: &[u8]) -> Vec<u8> {
        let mut v = b.to_vec();
        if let Some(x) = v.last_mut() {
            *x ^= 0x10;
        }
        v
    }

    // ---- A real CERTS cell (types 2, 4, 5, 7) from a C tor relay in a chutney network, as
    // ---- used by Arti's tor-proto channel handshake tests.
    mod chutney {
        pub(super) const T2: &str = crate::certs::x509::test::CHUTNEY_T2;
        pub(super) const T4: &str = "01040006CC2A01F82294B866A31F01FC5D0DA8572850A9B929545C3266558D7D2316E3B74172B00100200400DCB604DB2034B00FD16986D4ADB9D16B21CB4E4457A33DEC0F538903683E96E9FF1A5203FA27F86EF7528D89A0845D2520166E340754FFEA2AAE0F612B7CE5DA094A0236CDAC45034B0B6842C18E7F6B51B93A3CF7E60663B8AD061C30A62602";
        pub(super) const T5: &str = "01050006C98A03B4FD606B64E4CBD466B8D76CB131069BAE6F3AA1878857C9F624E31D77A799B8007173E5F8068431D0D3F5EE16B4C9FFD59DF373E152A87281BAE744AA5FCF72171BF4B27C4E8FC1C6A9FC5CA11058BC49647063D7903CFD9F512F89099B27BC0C";
        pub(super) const T7: &str = "DCB604DB2034B00FD16986D4ADB9D16B21CB4E4457A33DEC0F538903683E96E90006DA3A805CF6006F9179066534DE6B45AD47A5C469063EE462762723396DC9F25452A0A52DA3F5087DD239F2A311F6B0D4DFEFF4ABD089DC3D0237A0ABAB19EB2045B91CDCAF04BE0A72D548A27BF2E77BD876ECFE5E1BE622350DA6BF31F6E306ED896488DD5B39409B23FC3EB7B2C9F7328EB18DA36D54D80575899EA6507CCBFCDF1F";
        pub(super) const TLS_DIGEST: &str =
            "b4fd606b64e4cbd466b8d76cb131069bae6f3aa1878857c9f624e31d77a799b8";
        pub(super) const ED_ID: &str =
            "dcb604db2034b00fd16986d4adb9d16b21cb4e4457a33dec0f538903683e96e9";
        pub(super) const RSA_ID: &str = "2f1fb49bb332a9eec617e41e911c33fb3890aef3";
        /// 2020-09-26T18:01:20Z, when they were all valid.
        pub(super) const TIME: u64 = 1_601_143_280;
    }

    fn chutney_cell() -> Vec<(u8, Vec<u8>)> {
        vec![
            (2, Vec::from_hex(chutney::T2).unwrap()),
            (5, Vec::from_hex(chutney::T5).unwrap()),
            (7, Vec::from_hex(chutney::T7).unwrap()),
            (4, Vec::from_hex(chutney::T4).unwrap()),
        ]
    }

    fn chutney_expected() -> ExpectedIdentity {
        ExpectedIdentity {
            rsa: RsaIdentity::from_hex(chutney::RSA_ID),
            ed25519: Some(Ed25519Identity::from_bytes(
                <[u8; 32]>::from_hex(chutney::ED_ID).unwrap(),
            )),
        }
    }

    #[test]
    fn chutney_certs_cell_verifies() {
        let cell = chutney_cell();
        let tls = <[u8; 32]>::from_hex(chutney::TLS_DIGEST).unwrap();
        let exp = chutney_expected();
        let v = verify_responder_certs(&refs(&cell), &tls, chutney::TIME, Some(&exp)).unwrap();
        assert_eq!(Some(v.rsa_id), exp.rsa);
        assert_eq!(v.ed_id, exp.ed25519);
        assert_eq!(
            v.rsa_id_sha256,
            <[u8; 32]>::from(Sha256::digest(
                Vec::from_hex(crate::certs::crosscert::test::CHUTNEY_RSA_ID).unwrap()
            ))
        );
        // The SIGNING_V_TLS_CERT certificate expires first, 48 hours after the cell time.
        assert_eq!(v.expires_unix, 0x6C98A * 3600);
        assert!(verify_responder_certs(&refs(&cell), &tls, chutney::TIME, None).is_ok());
    }

    #[test]
    fn chutney_certs_cell_failures() {
        let cell = chutney_cell();
        let r = refs(&cell);
        let tls = <[u8; 32]>::from_hex(chutney::TLS_DIGEST).unwrap();
        let t = chutney::TIME;
        let exp = chutney_expected();
        for missing in [2, 4, 5, 7] {
            assert_eq!(
                verify_responder_certs(&refs(&without(&r, missing)), &tls, t, Some(&exp)),
                Err(CertError::MissingCert(missing))
            );
        }
        assert_eq!(
            verify_responder_certs(&[], &tls, t, None),
            Err(CertError::MissingCert(2))
        );
        assert_eq!(
            verify_responder_certs(&r, &[0; 32], t, Some(&exp)),
            Err(CertError::TlsCertMismatch)
        );
        let bad5 = with(&r, 5, &munge_last(&Vec::from_hex(chutney::T5).unwrap()));
        assert_eq!(
            verify_responder_certs(&refs(&bad5), &tls, t, Some(&exp)),
            Err(CertError::BadSignature(5))
        );
        let bad7 = with(&r, 7, &munge_last(&Vec::from_hex(chutney::T7).unwrap()));
        assert_eq!(
            verify_responder_certs(&refs(&bad7), &tls, t, Some(&exp)),
            Err(CertError::BadSignature(7))
        );
        let bad2 = with(&r, 2, &munge_last(&Vec::from_hex(chutney::T2).unwrap()));
        assert_eq!(
            verify_responder_certs(&refs(&bad2), &tls, t, Some(&exp)),
            Err(CertError::BadSignature(2))
        );
        let wrong_ed = ExpectedIdentity {
            ed25519: Some(Ed25519Identity::from_bytes([0x10; 32])),
            ..exp
        };
        assert_eq!(
            verify_responder_certs(&r, &tls, t, Some(&wrong_ed)),
            Err(CertError::WrongIdentity("Ed25519"))
        );
        let wrong_rsa = ExpectedIdentity {
            rsa: Some(RsaIdentity::from_bytes([0x99; 20])),
            ..exp
        };
        assert_eq!(
            verify_responder_certs(&r, &tls, t, Some(&wrong_rsa)),
            Err(CertError::WrongIdentity("RSA"))
        );
        // Three days later the 2-day SIGNING_V_TLS_CERT certificate has expired.
        assert!(matches!(
            verify_responder_certs(&r, &tls, t + 3 * DAY, Some(&exp)),
            Err(CertError::Expired { cert_type: 5, .. })
        ));
        // The legacy check needs a type 1 certificate, which this cell does not have.
        assert_eq!(
            verify_responder_certs_rsa_only(&r, &tls, t, None),
            Err(CertError::MissingCert(1))
        );
    }

    #[test]
    fn responder_bundle_verifies() {
        let m = material(1);
        let b = m.responder_certs(&tls(1), NOW, None).unwrap();
        let types: Vec<u8> = b.certs().iter().map(|(t, _)| *t).collect();
        assert_eq!(types, [2, 4, 5, 7]);
        assert_eq!(
            b.expires_unix(),
            u64::from(expiration_hours(NOW, LINK_CERT_LIFETIME_SECS)) * 3600
        );
        let v = verify_responder_certs(&b.certs(), &tls(1), NOW, Some(&expected(&m))).unwrap();
        assert_eq!(v.rsa_id, *m.rsa_id());
        assert_eq!(v.rsa_id_sha256, *m.rsa_id_sha256());
        assert_eq!(v.ed_id, Some(*m.ed_identity()));
        assert_eq!(v.expires_unix, b.expires_unix());
        // The order of the entries does not matter, unknown types are ignored.
        let mut shuffled: Vec<(u8, &[u8])> = b.certs().into_iter().rev().collect();
        shuffled.push((0x42, b"whatever"));
        shuffled.push((0x42, b"again"));
        assert!(verify_responder_certs(&shuffled, &tls(1), NOW, Some(&expected(&m))).is_ok());
        // Material rebuilt from its parts is equivalent.
        let again = RelaySigningMaterial::from_parts(
            m.rsa_identity_key().clone(),
            m.ed_signing_key().clone(),
            m.rsa_id_cert().clone(),
            m.identity_v_signing().clone(),
            m.crosscert().clone(),
        )
        .unwrap();
        assert_eq!(again.ed_identity(), m.ed_identity());
        assert_eq!(again.rsa_id(), m.rsa_id());
    }

    #[test]
    fn expired_certs_fail() {
        let m = material(2);
        let b = m.responder_certs(&tls(1), NOW, None).unwrap();
        assert_eq!(
            verify_responder_certs(&b.certs(), &tls(1), NOW + 3 * DAY, None),
            Err(CertError::Expired {
                cert_type: 5,
                expired_at: expiration_hours(NOW, LINK_CERT_LIFETIME_SECS) as u64 * 3600,
                now: NOW + 3 * DAY
            })
        );
        // A fresh type 5 (and identity certificate) does not help once the 30-day
        // IDENTITY_V_SIGNING has expired.
        let later = NOW + 31 * DAY;
        let mut m = m;
        m.renew_rsa_id_cert(later, &mut seeded_rng(22)).unwrap();
        let b = m.responder_certs(&tls(1), later, None).unwrap();
        assert!(matches!(
            verify_responder_certs(&b.certs(), &tls(1), later, None),
            Err(CertError::Expired { cert_type: 4, .. })
        ));
        // The X.509 identity certificate, a year (plus C tor's 2-day slop) later.
        let much_later = m.rsa_id_cert().not_after() + PAST_SLOP_SECS + 1;
        let fresh = RelaySigningMaterial::from_parts(
            m.rsa_identity_key().clone(),
            m.ed_signing_key().clone(),
            m.rsa_id_cert().clone(),
            m.identity_v_signing().clone(),
            m.crosscert().clone(),
        )
        .unwrap();
        let b = fresh.responder_certs(&tls(1), much_later, None).unwrap();
        assert!(matches!(
            verify_responder_certs(&b.certs(), &tls(1), much_later, None),
            Err(CertError::Expired { cert_type: 2, .. })
        ));
    }

    #[test]
    fn tampered_signatures_fail() {
        let m = material(3);
        let b = m.responder_certs(&tls(1), NOW, None).unwrap();
        let c = b.certs();
        for t in [2, 4, 5, 7] {
            let body = c.iter().find(|(ct, _)| *ct == t).unwrap().1;
            let bad = with(&c, t, &munge_last(body));
            assert_eq!(
                verify_responder_certs(&refs(&bad), &tls(1), NOW, None),
                Err(CertError::BadSignature(t)),
                "type {t}"
            );
        }
    }

    #[test]
    fn type5_for_another_tls_cert_fails() {
        let m = material(4);
        let b = m.responder_certs(&tls(1), NOW, None).unwrap();
        assert_eq!(
            verify_responder_certs(&b.certs(), &tls(2), NOW, Some(&expected(&m))),
            Err(CertError::TlsCertMismatch)
        );
    }

    #[test]
    fn missing_and_duplicate_certs_fail() {
        let m = material(5);
        let b = m.responder_certs(&tls(1), NOW, None).unwrap();
        let c = b.certs();
        for t in [2, 4, 5, 7] {
            assert_eq!(
                verify_responder_certs(&refs(&without(&c, t)), &tls(1), NOW, None),
                Err(CertError::MissingCert(t))
            );
            let mut dup = c.clone();
            let body = c.iter().find(|(ct, _)| *ct == t).unwrap().1;
            dup.push((t, body));
            assert_eq!(
                verify_responder_certs(&dup, &tls(1), NOW, None),
                Err(CertError::DuplicateCert(t))
            );
        }
        // A duplicate is refused even when one copy is garbage.
        let mut dup = c.clone();
        dup.push((4, b"garbage"));
        assert_eq!(
            verify_responder_certs(&dup, &tls(1), NOW, None),
            Err(CertError::DuplicateCert(4))
        );
        // A malformed certificate of a type the check does not need still fails the cell.
        let mut extra = c.clone();
        extra.push((1, b"not DER"));
        assert!(matches!(
            verify_responder_certs(&extra, &tls(1), NOW, None),
            Err(CertError::X509(_))
        ));
        // A type 5 body sent as type 4.
        let body5 = c.iter().find(|(ct, _)| *ct == 5).unwrap().1;
        assert_eq!(
            verify_responder_certs(&refs(&with(&c, 4, body5)), &tls(1), NOW, None),
            Err(CertError::WrongCertType {
                expected: 4,
                got: 5
            })
        );
    }

    #[test]
    fn crosscert_problems_fail() {
        let m = material(6);
        let b = m.responder_certs(&tls(1), NOW, None).unwrap();
        let c = b.certs();
        let mut rng = seeded_rng(60);
        let other_rsa = PrivateKey::new(&mut rng, 1024).unwrap();
        let exp = expiration_hours(NOW, DAY);
        // Signed by another RSA key.
        let cc = RsaCrosscert::create(&other_rsa, m.ed_identity(), exp, &mut rng).unwrap();
        assert_eq!(
            verify_responder_certs(&refs(&with(&c, 7, cc.encoded())), &tls(1), NOW, None),
            Err(CertError::BadSignature(7))
        );
        // Signed by the right RSA key but for another Ed25519 identity.
        let cc = RsaCrosscert::create(
            m.rsa_identity_key(),
            &Ed25519Identity::from_bytes([3; 32]),
            exp,
            &mut rng,
        )
        .unwrap();
        assert!(matches!(
            verify_responder_certs(&refs(&with(&c, 7, cc.encoded())), &tls(1), NOW, None),
            Err(CertError::KeyMismatch(_))
        ));
        // Expired.
        let cc = RsaCrosscert::create(
            m.rsa_identity_key(),
            m.ed_identity(),
            expiration_hours(NOW - 2 * 3600, 0),
            &mut rng,
        )
        .unwrap();
        assert!(matches!(
            verify_responder_certs(&refs(&with(&c, 7, cc.encoded())), &tls(1), NOW, None),
            Err(CertError::Expired { cert_type: 7, .. })
        ));
    }

    #[test]
    fn wrong_expected_identity_fails() {
        let m = material(7);
        let other = material(8);
        let b = m.responder_certs(&tls(1), NOW, None).unwrap();
        let want_rsa = ExpectedIdentity {
            rsa: Some(*other.rsa_id()),
            ed25519: None,
        };
        assert_eq!(
            verify_responder_certs(&b.certs(), &tls(1), NOW, Some(&want_rsa)),
            Err(CertError::WrongIdentity("RSA"))
        );
        let want_ed = ExpectedIdentity {
            rsa: Some(*m.rsa_id()),
            ed25519: Some(*other.ed_identity()),
        };
        assert_eq!(
            verify_responder_certs(&b.certs(), &tls(1), NOW, Some(&want_ed)),
            Err(CertError::WrongIdentity("Ed25519"))
        );
        // Mixing another relay's (valid) certificates into the cell fails too.
        let ob = other.responder_certs(&tls(1), NOW, None).unwrap();
        let o4 = ob.certs().iter().find(|(t, _)| *t == 4).unwrap().1.to_vec();
        assert_eq!(
            verify_responder_certs(&refs(&with(&b.certs(), 4, &o4)), &tls(1), NOW, None),
            Err(CertError::BadSignature(5))
        );
        let o2 = ob.certs().iter().find(|(t, _)| *t == 2).unwrap().1.to_vec();
        assert_eq!(
            verify_responder_certs(&refs(&with(&b.certs(), 2, &o2)), &tls(1), NOW, None),
            Err(CertError::BadSignature(7))
        );
    }

    #[test]
    fn malformed_chains_fail() {
        let m = material(9);
        let b = m.responder_certs(&tls(1), NOW, None).unwrap();
        let c = b.certs();
        let mut rng = seeded_rng(90);
        let ed_id_key = ed_key(&mut rng);
        // Type 4 without the signed-with-ed25519-key extension.
        let t4 = Ed25519CertBuilder::new(
            4,
            1,
            m.ed_signing_key().verifying_key().to_bytes(),
            u32::MAX,
        )
        .include_signing_key(false)
        .sign(&ed_id_key)
        .unwrap();
        assert_eq!(
            verify_responder_certs(&refs(&with(&c, 4, t4.encoded())), &tls(1), NOW, None),
            Err(CertError::MissingSigningKey(4))
        );
        // Type 4 certifying a digest instead of an Ed25519 key.
        let t4 = Ed25519CertBuilder::new(
            4,
            3,
            m.ed_signing_key().verifying_key().to_bytes(),
            u32::MAX,
        )
        .sign(&ed_id_key)
        .unwrap();
        assert_eq!(
            verify_responder_certs(&refs(&with(&c, 4, t4.encoded())), &tls(1), NOW, None),
            Err(CertError::WrongKeyType {
                cert_type: 4,
                key_type: 3
            })
        );
        // Type 5 with key type 2; key type 1 (pre-0.4.5.1 C tor) is accepted.
        for (kt, ok) in [(2, false), (1, true)] {
            let t5 = Ed25519CertBuilder::new(5, kt, tls(1), u32::MAX)
                .include_signing_key(false)
                .sign(m.ed_signing_key())
                .unwrap();
            let r = verify_responder_certs(&refs(&with(&c, 5, t5.encoded())), &tls(1), NOW, None);
            if ok {
                assert!(r.is_ok());
            } else {
                assert_eq!(
                    r,
                    Err(CertError::WrongKeyType {
                        cert_type: 5,
                        key_type: 2
                    })
                );
            }
        }
        // Type 5 signed by a key other than the certified signing key.
        let t5 = Ed25519CertBuilder::new(5, 3, tls(1), u32::MAX)
            .include_signing_key(false)
            .sign(&ed_id_key)
            .unwrap();
        assert_eq!(
            verify_responder_certs(&refs(&with(&c, 5, t5.encoded())), &tls(1), NOW, None),
            Err(CertError::BadSignature(5))
        );
        // An RSA identity certificate with a 2048-bit key.
        let big = PrivateKey::new(&mut rng, 2048).unwrap();
        let idc = X509RsaCert::create_identity_cert(&big, NOW, &mut rng).unwrap();
        assert_eq!(
            verify_responder_certs(&refs(&with(&c, 2, idc.as_der())), &tls(1), NOW, None),
            Err(CertError::BadKey("RSA identity key is not 1024 bits"))
        );
        // Material whose RSA identity is not 1024 bits cannot be made.
        assert_eq!(
            RelaySigningMaterial::new(big, &ed_id_key, ed_key(&mut rng), NOW, &mut rng).err(),
            Some(CertError::BadKey("RSA identity key is not 1024 bits"))
        );
    }

    #[test]
    fn legacy_rsa_only_path() {
        let m = material(10);
        let mut rng = seeded_rng(100);
        let link_key = PrivateKey::new(&mut rng, 1024).unwrap();
        let link = m
            .make_legacy_link_cert(link_key.as_public_key(), 1, 2 * DAY, NOW, &mut rng)
            .unwrap();
        let tls_digest = link.sha256();
        let b = m.responder_certs(&tls_digest, NOW, Some(&link)).unwrap();
        let types: Vec<u8> = b.certs().iter().map(|(t, _)| *t).collect();
        assert_eq!(types, [1, 2, 4, 5, 7]);
        // Both checks accept this cell.
        let v = verify_responder_certs_rsa_only(&b.certs(), &tls_digest, NOW, None).unwrap();
        assert_eq!(v.rsa_id, *m.rsa_id());
        assert_eq!(v.ed_id, None);
        let v = verify_responder_certs(&b.certs(), &tls_digest, NOW, Some(&expected(&m))).unwrap();
        assert_eq!(v.ed_id, Some(*m.ed_identity()));
        // The RSA-only check cannot prove an Ed25519 identity.
        assert_eq!(
            verify_responder_certs_rsa_only(&b.certs(), &tls_digest, NOW, Some(&expected(&m))),
            Err(CertError::MissingCert(4))
        );
        let rsa_only = ExpectedIdentity {
            rsa: Some(*m.rsa_id()),
            ed25519: None,
        };
        assert!(
            verify_responder_certs_rsa_only(&b.certs(), &tls_digest, NOW, Some(&rsa_only)).is_ok()
        );
        // The TLS certificate must be the link certificate.
        assert_eq!(
            verify_responder_certs_rsa_only(&b.certs(), &tls(1), NOW, None),
            Err(CertError::TlsCertMismatch)
        );
        assert_eq!(
            m.responder_certs(&tls(1), NOW, Some(&link)),
            Err(CertError::TlsCertMismatch)
        );
        // A link certificate signed by another identity.
        let other = material(11);
        let forged = other
            .make_legacy_link_cert(link_key.as_public_key(), 1, 2 * DAY, NOW, &mut rng)
            .unwrap();
        let bad = with(&b.certs(), 1, forged.as_der());
        assert_eq!(
            verify_responder_certs_rsa_only(&refs(&bad), &forged.sha256(), NOW, None),
            Err(CertError::BadSignature(1))
        );
        // Expired link certificate (beyond the 2-day slop).
        assert!(matches!(
            verify_responder_certs_rsa_only(
                &b.certs(),
                &tls_digest,
                link.not_after() + PAST_SLOP_SECS + 1,
                None
            ),
            Err(CertError::Expired { cert_type: 1, .. })
        ));
    }

    #[test]
    fn initiator_certs_and_authenticate() {
        let client = material(20);
        let server = material(21);
        let mut rng = seeded_rng(200);
        let auth_key = ed_key(&mut rng);
        let auth_id = Ed25519Identity::from(auth_key.verifying_key());

        // The responder's CERTS, checked by the initiator.
        let server_tls = tls(7);
        let sb = server.responder_certs(&server_tls, NOW, None).unwrap();
        let vr = verify_responder_certs(&sb.certs(), &server_tls, NOW, Some(&expected(&server)))
            .unwrap();

        // The initiator's CERTS, checked by the responder.
        let cb = client.initiator_certs(&auth_id, NOW, None).unwrap();
        let types: Vec<u8> = cb.certs().iter().map(|(t, _)| *t).collect();
        assert_eq!(types, [2, 4, 6, 7]);
        let vi = verify_initiator_certs(&cb.certs(), NOW, Some(&expected(&client))).unwrap();
        assert_eq!(vi.rsa_id, *client.rsa_id());
        assert_eq!(vi.ed_id, *client.ed_identity());
        assert_eq!(vi.link_auth_key, auth_id);
        // An initiator bundle is not a responder bundle and vice versa.
        assert_eq!(
            verify_responder_certs(&cb.certs(), &server_tls, NOW, None),
            Err(CertError::MissingCert(5))
        );
        assert_eq!(
            verify_initiator_certs(&sb.certs(), NOW, None),
            Err(CertError::MissingCert(6))
        );

        // Both sides compute the same fields.
        let (slog, clog, tlssecrets) = ([1; 32], [2; 32], [3; 32]);
        let fi = Auth0003Fields::for_initiator(&client, &vr, slog, clog, server_tls, tlssecrets);
        let fr = Auth0003Fields::for_responder(&server, &vi, slog, clog, server_tls, tlssecrets);
        assert_eq!(fi, fr);
        assert_eq!(fi.exporter_context(), client.rsa_id_sha256());

        let a = Auth0003::sign(fi.clone(), &auth_key, &mut rng);
        let body = a.encode();
        assert_eq!(body.len(), AUTH0003_LEN);
        assert_eq!(&body[..8], b"AUTH0003");
        assert_eq!(&body[8..40], client.rsa_id_sha256());
        assert_eq!(&body[40..72], server.rsa_id_sha256());
        assert_eq!(&body[72..104], client.ed_identity().as_bytes());
        assert_eq!(&body[104..136], server.ed_identity().as_bytes());
        assert_eq!(&body[232..264], &tlssecrets);
        assert_eq!(&body[264..288], &a.rand);
        assert_eq!(Auth0003::decode(&body).unwrap(), a);
        assert_eq!(Auth0003::verify(&body, &fr, &vi.link_auth_key).unwrap(), a);

        // Every field must match, in order.
        for (i, name) in [
            "CID",
            "SID",
            "CID_ED",
            "SID_ED",
            "SLOG",
            "CLOG",
            "SCERT",
            "TLSSECRETS",
        ]
        .into_iter()
        .enumerate()
        {
            let mut b = body.clone();
            b[8 + 32 * i] ^= 1;
            assert_eq!(
                Auth0003::verify(&b, &fr, &auth_id),
                Err(CertError::AuthFieldMismatch(name))
            );
        }
        let mut b = body.clone();
        b[..8].copy_from_slice(b"AUTH0001");
        assert_eq!(
            Auth0003::verify(&b, &fr, &auth_id),
            Err(CertError::AuthFieldMismatch("TYPE"))
        );
        // RAND and SIG are covered by the signature.
        let mut b = body.clone();
        b[270] ^= 1;
        assert_eq!(
            Auth0003::verify(&b, &fr, &auth_id),
            Err(CertError::BadAuthSignature)
        );
        let mut b = body.clone();
        b[300] ^= 1;
        assert_eq!(
            Auth0003::verify(&b, &fr, &auth_id),
            Err(CertError::BadAuthSignature)
        );
        // Signed by another key.
        let other_key = Ed25519Identity::from(ed_key(&mut rng).verifying_key());
        assert_eq!(
            Auth0003::verify(&body, &fr, &other_key),
            Err(CertError::BadAuthSignature)
        );
        // Too short.
        assert_eq!(
            Auth0003::verify(&body[..AUTH0003_LEN - 1], &fr, &auth_id),
            Err(CertError::BadAuthenticate("body too short"))
        );
        // Extra signed bytes after RAND are accepted (and kept).
        let mut with_extra = a.clone();
        with_extra.extra = vec![0xAA; 5];
        with_extra.sig = auth_key.sign(&with_extra.signed_part()).to_bytes();
        let body = with_extra.encode();
        assert_eq!(body.len(), AUTH0003_LEN + 5);
        assert_eq!(Auth0003::verify(&body, &fr, &auth_id).unwrap(), with_extra);
    }

    #[test]
    fn from_parts_checks_consistency() {
        let m = material(30);
        let o = material(31);
        let parts = |m: &RelaySigningMaterial| {
            (
                m.rsa_identity_key().clone(),
                m.ed_signing_key().clone(),
                m.rsa_id_cert().clone(),
                m.identity_v_signing().clone(),
                m.crosscert().clone(),
            )
        };
        let (rsa, sk, idc, t4, cc) = parts(&m);
        let (o_rsa, o_sk, o_idc, o_t4, o_cc) = parts(&o);
        assert!(matches!(
            RelaySigningMaterial::from_parts(
                rsa.clone(),
                sk.clone(),
                o_idc.clone(),
                t4.clone(),
                cc.clone()
            ),
            Err(CertError::KeyMismatch(_))
        ));
        assert!(matches!(
            RelaySigningMaterial::from_parts(
                rsa.clone(),
                o_sk.clone(),
                idc.clone(),
                t4.clone(),
                cc.clone()
            ),
            Err(CertError::KeyMismatch(_))
        ));
        assert!(matches!(
            RelaySigningMaterial::from_parts(
                rsa.clone(),
                sk.clone(),
                idc.clone(),
                t4.clone(),
                o_cc
            ),
            Err(CertError::KeyMismatch(_))
        ));
        assert!(matches!(
            RelaySigningMaterial::from_parts(o_rsa, o_sk, o_idc, o_t4, cc),
            Err(CertError::KeyMismatch(_))
        ));
        assert!(RelaySigningMaterial::from_parts(rsa, sk, idc, t4, m.crosscert().clone()).is_ok());
    }

    #[test]
    fn unbound_check_skips_only_the_tls_binding() {
        // The chutney cell verifies whatever TLS certificate the link had.
        let cell = chutney_cell();
        let exp = chutney_expected();
        let t = chutney::TIME;
        let v = verify_responder_certs_unbound(&refs(&cell), t, Some(&exp)).unwrap();
        assert_eq!(Some(v.rsa_id), exp.rsa);
        assert_eq!(v.ed_id, exp.ed25519);
        assert_eq!(
            verify_responder_certs(&refs(&cell), &[0; 32], t, Some(&exp)),
            Err(CertError::TlsCertMismatch)
        );
        // Everything else is still checked: the type 5 certificate must be there and signed.
        let r = refs(&cell);
        assert_eq!(
            verify_responder_certs_unbound(&refs(&without(&r, 5)), t, Some(&exp)),
            Err(CertError::MissingCert(5))
        );
        let t5 = munge_last(&Vec::from_hex(chutney::T5).unwrap());
        assert_eq!(
            verify_responder_certs_unbound(&refs(&with(&r, 5, &t5)), t, Some(&exp)),
            Err(CertError::BadSignature(5))
        );
        let other = ExpectedIdentity {
            rsa: Some(RsaIdentity::from_bytes([0x99; 20])),
            ed25519: None,
        };
        assert_eq!(
            verify_responder_certs_unbound(&r, t, Some(&other)),
            Err(CertError::WrongIdentity("RSA"))
        );
    }

    /// A relay's material and one valid responder bundle of it.
    type SharedBundle = (RelaySigningMaterial, Vec<(u8, Vec<u8>)>);

    /// One valid responder bundle, shared by the property tests (RSA key generation is slow).
    fn shared_bundle() -> &'static SharedBundle {
        static B: std::sync::OnceLock<SharedBundle> = std::sync::OnceLock::new();
        B.get_or_init(|| {
            let m = material(40);
            let b = m.responder_certs(&tls(1), NOW, None).unwrap().into_certs();
            (m, b)
        })
    }

    proptest! {
        /// Changing any byte of any certificate of a valid CERTS cell makes it fail.
        #[test]
        fn any_corruption_fails(which in 0usize..4, pos in any::<prop::sample::Index>(), x in 1u8..=255) {
            let (m, bundle) = shared_bundle();
            let mut certs = bundle.clone();
            prop_assert!(verify_responder_certs(&refs(&certs), &tls(1), NOW, Some(&expected(m))).is_ok());
            let body = &mut certs[which].1;
            let i = pos.index(body.len());
            body[i] ^= x;
            prop_assert!(verify_responder_certs(&refs(&certs), &tls(1), NOW, Some(&expected(m))).is_err());
        }

        #[test]
        fn verify_never_panics(
            certs in proptest::collection::vec((0u8..10, proptest::collection::vec(any::<u8>(), 0..200)), 0..8),
            now in any::<u64>(),
        ) {
            let r: Vec<(u8, &[u8])> = certs.iter().map(|(t, b)| (*t, b.as_slice())).collect();
            let _ = verify_responder_certs(&r, &[0; 32], now, None);
            let _ = verify_responder_certs_rsa_only(&r, &[0; 32], now, None);
            let _ = verify_initiator_certs(&r, now, None);
        }

        #[test]
        fn auth0003_decode_encode(body in proptest::collection::vec(any::<u8>(), 0..420)) {
            let mut body = body;
            if body.len() >= 8 {
                body[..8].copy_from_slice(AUTH0003_TYPE);
            }
            match Auth0003::decode(&body) {
                Ok(a) => prop_assert_eq!(a.encode(), body),
                Err(e) => prop_assert!(body.len() < AUTH0003_LEN, "{:?}", e),
            }
        }
    }
}
