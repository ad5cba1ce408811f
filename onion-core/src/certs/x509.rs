//! X.509 RSA certificates: CERTS types 1 (link), 2 (RSA1024 identity, self-signed) and 3
//! (RSA1024 AUTHENTICATE key) of tor-spec §4.2, and the self-signed identity certificate an
//! OR presents.
//!
//! Parsing uses `x509-cert`; signatures are checked over the certificate's own
//! `tbsCertificate` bytes with `rsa` (PKCS#1 v1.5, SHA-256 or SHA-1, as OpenSSL's
//! `X509_verify` accepts for C tor's certificates).
//!
//! Certificates are made the way C tor (`tor_x509_make_cert`) makes them: X.509 v3 with no
//! extensions, a random 64-bit serial number, `CN=www.<random>.com` for an identity
//! certificate (subject = issuer), `CN=www.<random>.net` for a link certificate issued by the
//! identity, `sha256WithRSAEncryption`, a validity starting on a day boundary a random time
//! in the past (but at least two days before the end of the lifetime) and ending one
//! lifetime later.

use std::time::Duration;

use ::rsa::pkcs1::DecodeRsaPublicKey;
use ::rsa::{Pkcs1v15Sign, PrivateKey, PublicKey};
use der::asn1::{Any, BitString, GeneralizedTime, ObjectIdentifier, UtcTime};
use der::{Decode, Encode, Reader as _, Sequence, SliceReader};
use rand_core::CryptoRng;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::Certificate;
use x509_cert::certificate::Version;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};

use super::ids::{rsa_identity_sha256, rsa_public_key_der};
use super::{CertError, RsaIdentity};

/// `rsaEncryption`.
const OID_RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
/// `sha1WithRSAEncryption`.
const OID_SHA1_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.5");
/// `sha256WithRSAEncryption`.
const OID_SHA256_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");

/// How long after its notAfter C tor still accepts an X.509 certificate in a CERTS cell
/// (`TOR_X509_PAST_SLOP`, 2 days).
pub const PAST_SLOP_SECS: u64 = 2 * 24 * 3600;
/// How long before its notBefore C tor already accepts an X.509 certificate in a CERTS cell
/// (`TOR_X509_FUTURE_SLOP`, 30 days).
pub const FUTURE_SLOP_SECS: u64 = 30 * 24 * 3600;
/// Lifetime of the RSA identity certificate C tor makes (`IDENTITY_CERT_LIFETIME`, 365 days).
pub const IDENTITY_CERT_LIFETIME_SECS: u64 = 365 * 24 * 3600;

/// First second that `UTCTime` cannot represent (2050-01-01T00:00:00Z).
const UTC_TIME_END: u64 = 2_524_608_000;
const DAY: u64 = 24 * 3600;

/// The two signature algorithms C tor's certificates use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignatureAlgorithm {
    /// `sha256WithRSAEncryption` (what C tor produces today).
    Sha256WithRsa,
    /// `sha1WithRSAEncryption` (very old C tor).
    Sha1WithRsa,
}

/// A parsed X.509 certificate with an RSA subject key.
///
/// Parsing checks the format and extracts the key; call [`X509RsaCert::check_signature`]
/// (or [`X509RsaCert::check_self_signed`]) and a validity check before trusting it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct X509RsaCert {
    der: Vec<u8>,
    tbs: Vec<u8>,
    cert_type: u8,
    sig_alg: SignatureAlgorithm,
    signature: Vec<u8>,
    key: PublicKey,
    not_before: u64,
    not_after: u64,
    subject_cn: Option<String>,
    issuer_cn: Option<String>,
}

fn unsupported(what: &'static str) -> CertError {
    CertError::UnsupportedAlgorithm(what)
}

/// The signature algorithm, if it is one we accept with NULL or absent parameters.
fn signature_algorithm(alg: &AlgorithmIdentifierOwned) -> Result<SignatureAlgorithm, CertError> {
    let params_ok = match &alg.parameters {
        None => true,
        Some(p) => p == &Any::null(),
    };
    if !params_ok {
        return Err(unsupported("signature algorithm parameters"));
    }
    match alg.oid {
        OID_SHA256_WITH_RSA => Ok(SignatureAlgorithm::Sha256WithRsa),
        OID_SHA1_WITH_RSA => Ok(SignatureAlgorithm::Sha1WithRsa),
        _ => Err(unsupported(
            "signature algorithm is not sha256/sha1WithRSAEncryption",
        )),
    }
}

fn common_name(name: &Name) -> Option<String> {
    name.common_name()
        .ok()
        .flatten()
        .map(|cn| cn.value().into_owned())
}

impl X509RsaCert {
    /// Parse a DER certificate received as CERTS type `cert_type` (the type is only used in
    /// error reports). The subject key must be RSA; the signature algorithm
    /// sha256WithRSAEncryption or sha1WithRSAEncryption.
    pub fn decode(der: &[u8], cert_type: u8) -> Result<Self, CertError> {
        let cert = Certificate::from_der(der)?;
        // The exact tbsCertificate bytes the signature covers.
        let tbs = {
            let mut r = SliceReader::new(der)?;
            r.sequence(|r| {
                let tbs = r.tlv_bytes()?;
                // Skip signatureAlgorithm and signatureValue so the sequence is consumed.
                r.tlv_bytes()?;
                r.tlv_bytes()?;
                Ok::<_, der::Error>(tbs)
            })?
            .to_vec()
        };
        let tbs_cert = cert.tbs_certificate();
        if cert.signature_algorithm() != tbs_cert.signature() {
            return Err(unsupported(
                "signatureAlgorithm differs from tbsCertificate.signature",
            ));
        }
        let sig_alg = signature_algorithm(cert.signature_algorithm())?;
        let signature = cert
            .signature()
            .as_bytes()
            .ok_or(CertError::X509(der::Tag::BitString.value_error().into()))?
            .to_vec();
        let spki = tbs_cert.subject_public_key_info();
        if spki.algorithm.oid != OID_RSA_ENCRYPTION {
            return Err(unsupported("subject key is not rsaEncryption"));
        }
        let key_der = spki
            .subject_public_key
            .as_bytes()
            .ok_or(CertError::BadKey("RSA key bit string has unused bits"))?;
        let key = PublicKey::from_pkcs1_der(key_der)
            .map_err(|_| CertError::BadKey("unusable RSA key in X.509 certificate"))?;
        let validity = tbs_cert.validity();
        Ok(X509RsaCert {
            der: der.to_vec(),
            tbs,
            cert_type,
            sig_alg,
            signature,
            key,
            not_before: validity.not_before.to_unix_duration().as_secs(),
            not_after: validity.not_after.to_unix_duration().as_secs(),
            subject_cn: common_name(tbs_cert.subject()),
            issuer_cn: common_name(tbs_cert.issuer()),
        })
    }

    /// The DER encoding.
    pub fn as_der(&self) -> &[u8] {
        &self.der
    }

    /// SHA-256 of the DER encoding (what a SIGNING_V_TLS_CERT certificate certifies, and the
    /// `SCERT` of an AUTHENTICATE cell, when this is the TLS certificate).
    pub fn sha256(&self) -> [u8; 32] {
        Sha256::digest(&self.der).into()
    }

    /// The subject's RSA public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.key
    }

    /// The size of the subject key's modulus in bits.
    pub fn key_bits(&self) -> usize {
        ::rsa::traits::PublicKeyParts::n(&self.key).bit_width() as usize
    }

    /// The subject key's fingerprint (the relay's RSA identity, for a type 2 certificate).
    pub fn rsa_identity(&self) -> Result<RsaIdentity, CertError> {
        RsaIdentity::from_public_key(&self.key)
    }

    /// SHA-256 of the subject key's DER encoding (an AUTHENTICATE `CID`/`SID`).
    pub fn rsa_identity_sha256(&self) -> Result<[u8; 32], CertError> {
        rsa_identity_sha256(&self.key)
    }

    /// The subject key in DER (PKCS#1).
    pub fn public_key_der(&self) -> Result<Vec<u8>, CertError> {
        rsa_public_key_der(&self.key)
    }

    /// The signature algorithm.
    pub fn signature_algorithm(&self) -> SignatureAlgorithm {
        self.sig_alg
    }

    /// notBefore, in seconds since the epoch.
    pub fn not_before(&self) -> u64 {
        self.not_before
    }

    /// notAfter, in seconds since the epoch.
    pub fn not_after(&self) -> u64 {
        self.not_after
    }

    /// The subject's commonName, if any.
    pub fn subject_cn(&self) -> Option<&str> {
        self.subject_cn.as_deref()
    }

    /// The issuer's commonName, if any.
    pub fn issuer_cn(&self) -> Option<&str> {
        self.issuer_cn.as_deref()
    }

    /// Check that `issuer` signed this certificate.
    pub fn check_signature(&self, issuer: &PublicKey) -> Result<(), CertError> {
        let r = match self.sig_alg {
            SignatureAlgorithm::Sha256WithRsa => issuer.verify(
                Pkcs1v15Sign::new::<Sha256>(),
                &Sha256::digest(&self.tbs),
                &self.signature,
            ),
            SignatureAlgorithm::Sha1WithRsa => issuer.verify(
                Pkcs1v15Sign::new::<Sha1>(),
                &Sha1::digest(&self.tbs),
                &self.signature,
            ),
        };
        r.map_err(|_| CertError::BadSignature(self.cert_type))
    }

    /// Check that the certificate is signed by its own subject key.
    pub fn check_self_signed(&self) -> Result<(), CertError> {
        self.check_signature(&self.key)
    }

    /// Fail unless the subject key is a 1024-bit RSA key, as an RSA identity (or RSA
    /// AUTHENTICATE) key must be.
    pub fn check_rsa1024(&self) -> Result<(), CertError> {
        if self.key_bits() != 1024 {
            return Err(CertError::BadKey("RSA identity key is not 1024 bits"));
        }
        Ok(())
    }

    /// Check `notBefore <= now <= notAfter`.
    pub fn check_valid_at(&self, now_unix: u64) -> Result<(), CertError> {
        self.check_valid_at_with_slop(now_unix, 0, 0)
    }

    /// Check the validity window widened by `past_slop` after notAfter and `future_slop`
    /// before notBefore. C tor uses [`PAST_SLOP_SECS`] and [`FUTURE_SLOP_SECS`] for the
    /// certificates of a CERTS cell.
    pub fn check_valid_at_with_slop(
        &self,
        now_unix: u64,
        past_slop: u64,
        future_slop: u64,
    ) -> Result<(), CertError> {
        if now_unix.saturating_add(future_slop) < self.not_before {
            return Err(CertError::NotYetValid {
                cert_type: self.cert_type,
                valid_from: self.not_before,
                now: now_unix,
            });
        }
        if now_unix.saturating_sub(past_slop) > self.not_after {
            return Err(CertError::Expired {
                cert_type: self.cert_type,
                expired_at: self.not_after,
                now: now_unix,
            });
        }
        Ok(())
    }

    /// Make the self-signed identity certificate (CERTS type 2) for `identity`, valid for
    /// [`IDENTITY_CERT_LIFETIME_SECS`] around `now_unix`, as C tor does.
    pub fn create_identity_cert<R: CryptoRng + ?Sized>(
        identity: &PrivateKey,
        now_unix: u64,
        rng: &mut R,
    ) -> Result<Self, CertError> {
        let cn = random_hostname(rng, ".com");
        let (start, end) = random_validity(now_unix, IDENTITY_CERT_LIFETIME_SECS, rng);
        make_cert(
            identity,
            identity.as_public_key(),
            &cn,
            &cn,
            start,
            end,
            super::cert_type::RSA_ID_X509,
            rng,
        )
    }

    /// Make a certificate for `subject_key` signed by `identity`, whose identity
    /// certificate is `identity_cert`, valid for `lifetime_secs` around `now_unix`: a TLS
    /// link certificate (CERTS type 1, `cert_type` = 1) or an RSA AUTHENTICATE key
    /// certificate (type 3), as C tor makes them.
    pub fn create_signed_by_identity<R: CryptoRng + ?Sized>(
        identity: &PrivateKey,
        identity_cert: &X509RsaCert,
        subject_key: &PublicKey,
        cert_type: u8,
        lifetime_secs: u64,
        now_unix: u64,
        rng: &mut R,
    ) -> Result<Self, CertError> {
        let issuer_cn = identity_cert
            .subject_cn()
            .ok_or(CertError::BadKey("identity certificate has no commonName"))?
            .to_owned();
        let subject_cn = random_hostname(rng, ".net");
        let (start, end) = random_validity(now_unix, lifetime_secs, rng);
        make_cert(
            identity,
            subject_key,
            &issuer_cn,
            &subject_cn,
            start,
            end,
            cert_type,
            rng,
        )
    }
}

/// `www.` + 8 to 20 random base32 characters + `suffix`, as C tor's
/// `crypto_random_hostname(8, 20, "www.", suffix)`.
fn random_hostname<R: CryptoRng + ?Sized>(rng: &mut R, suffix: &str) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let len = 8 + (rng.next_u32() % 13) as usize;
    let mut s = String::with_capacity(4 + len + suffix.len());
    s.push_str("www.");
    let mut buf = [0u8; 20];
    let chars = buf.get_mut(..len).unwrap_or(&mut []);
    rng.fill_bytes(chars);
    for b in chars.iter() {
        let i = usize::from(b & 31);
        if let Some(&c) = ALPHABET.get(i) {
            s.push(char::from(c));
        }
    }
    s.push_str(suffix);
    s
}

/// C tor's `tor_tls_pick_certificate_lifetime`: a start uniformly chosen between
/// `now - lifetime + 2 days` (or `now - 1` for short lifetimes) and `now`, rounded down to a
/// day boundary; the end one lifetime later.
fn random_validity<R: CryptoRng + ?Sized>(now: u64, lifetime: u64, rng: &mut R) -> (u64, u64) {
    let earliest = if lifetime <= 2 * DAY {
        now.saturating_sub(1)
    } else {
        (now + 2 * DAY).saturating_sub(lifetime)
    };
    let span = now - earliest.min(now);
    let start = earliest + if span == 0 { 0 } else { rng.next_u64() % span };
    let start = start - start % DAY;
    (start, start.saturating_add(lifetime))
}

fn x509_time(t: u64) -> Result<Time, CertError> {
    let d = Duration::from_secs(t);
    Ok(if t < UTC_TIME_END {
        Time::UtcTime(UtcTime::from_unix_duration(d)?)
    } else {
        Time::GeneralTime(GeneralizedTime::from_unix_duration(d)?)
    })
}

/// `tbsCertificate` as C tor writes it: v3, no unique identifiers, no extensions.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct TbsCertificateOut {
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT")]
    version: Version,
    serial_number: SerialNumber,
    signature: AlgorithmIdentifierOwned,
    issuer: Name,
    validity: Validity,
    subject: Name,
    subject_public_key_info: SubjectPublicKeyInfoOwned,
}

#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct CertificateOut {
    tbs_certificate: TbsCertificateOut,
    signature_algorithm: AlgorithmIdentifierOwned,
    signature: BitString,
}

#[allow(clippy::too_many_arguments)]
fn make_cert<R: CryptoRng + ?Sized>(
    signer: &PrivateKey,
    subject_key: &PublicKey,
    issuer_cn: &str,
    subject_cn: &str,
    not_before: u64,
    not_after: u64,
    cert_type: u8,
    rng: &mut R,
) -> Result<X509RsaCert, CertError> {
    let sig_alg = AlgorithmIdentifierOwned {
        oid: OID_SHA256_WITH_RSA,
        parameters: Some(Any::null()),
    };
    let mut serial = [0u8; 8];
    rng.fill_bytes(&mut serial);
    let name = |cn: &str| -> Result<Name, CertError> {
        format!("CN={cn}")
            .parse::<Name>()
            .map_err(|_| CertError::Signing("cannot encode certificate name"))
    };
    let spki_der = spki::EncodePublicKey::to_public_key_der(subject_key)
        .map_err(|_| CertError::BadKey("RSA key cannot be DER-encoded"))?;
    let tbs = TbsCertificateOut {
        version: Version::V3,
        serial_number: SerialNumber::new(&serial)?,
        signature: sig_alg.clone(),
        issuer: name(issuer_cn)?,
        validity: Validity::new(x509_time(not_before)?, x509_time(not_after)?),
        subject: name(subject_cn)?,
        subject_public_key_info: SubjectPublicKeyInfoOwned::from_der(spki_der.as_bytes())?,
    };
    let tbs_der = tbs.to_der()?;
    let signature = signer
        .sign_with_rng(
            rng,
            Pkcs1v15Sign::new::<Sha256>(),
            &Sha256::digest(&tbs_der),
        )
        .map_err(|_| CertError::Signing("X.509 certificate signature"))?;
    let cert = CertificateOut {
        tbs_certificate: tbs,
        signature_algorithm: sig_alg,
        signature: BitString::from_bytes(&signature)?,
    };
    X509RsaCert::decode(&cert.to_der()?, cert_type)
}

#[cfg(test)]
pub(crate) mod test {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::certs::cert_type;
    use crate::testing::seeded_rng;
    use hex::FromHex;
    use rand_core::Rng;

    /// The RSA identity certificate (CERTS type 2) of a chutney relay, from Arti's tor-proto
    /// channel handshake tests; made by C tor. Valid 2020-08-10 to 2021-08-10.
    pub(crate) const CHUTNEY_T2: &str = "308201B930820122A0030201020208607C28BE6C390943300D06092A864886F70D01010B0500301F311D301B06035504030C147777772E74636A76356B766A646472322E636F6D301E170D3230303831303030303030305A170D3231303831303030303030305A301F311D301B06035504030C147777772E74636A76356B766A646472322E636F6D30819F300D06092A864886F70D010101050003818D0030818902818100D38B1E6CEB946E0DB0751F4CBACE3DCB9688B6C25304227B4710C35AFB73627E50500F5913E158B621802612D1C75827003703338375237552EB3CD3C12F6AB3604E60C1A2D26BB1FBAD206FF023969A90909D6A65A5458A5312C26EBD3A3DAD30302D4515CDCD264146AC18E6FC60A04BD3EC327F04294D96BA5AA25B464C3F0203010001300D06092A864886F70D01010B0500038181003BCE561EA7F95CC00B78AAB5D69573FF301C282A751D4A651921D042F1BECDBA24D918A6D8A5E138DC07BBA0B335478AE37ABD2C93A93932442AE9084329E846170FE0FC4A50AAFC804F311CC3CA4F41D845A7BA5901CBBC3E021E9794AAC70CE1F37B0A951592DB1B64F2B4AFB81AE52DBD9B6FEDE96A5FB8125EB6251EE50A";
    /// 2020-09-26T18:01:20Z.
    const CERT_TIME: u64 = 1_601_143_280;

    #[test]
    fn chutney_identity_cert() {
        let der = Vec::from_hex(CHUTNEY_T2).unwrap();
        let c = X509RsaCert::decode(&der, cert_type::RSA_ID_X509).unwrap();
        assert_eq!(c.as_der(), &der[..]);
        assert_eq!(c.key_bits(), 1024);
        assert_eq!(c.check_rsa1024(), Ok(()));
        assert_eq!(c.signature_algorithm(), SignatureAlgorithm::Sha256WithRsa);
        assert_eq!(c.check_self_signed(), Ok(()));
        assert_eq!(
            c.rsa_identity().unwrap().to_string(),
            "2F1FB49BB332A9EEC617E41E911C33FB3890AEF3"
        );
        assert_eq!(c.subject_cn(), Some("www.tcjv5kvjddr2.com"));
        assert_eq!(c.issuer_cn(), Some("www.tcjv5kvjddr2.com"));
        // 2020-08-10T00:00:00Z .. 2021-08-10T00:00:00Z
        assert_eq!(c.not_before(), 1_597_017_600);
        assert_eq!(c.not_after(), 1_628_553_600);
        assert_eq!(c.check_valid_at(CERT_TIME), Ok(()));
        assert!(matches!(
            c.check_valid_at(1_628_553_601),
            Err(CertError::Expired { cert_type: 2, .. })
        ));
        assert_eq!(
            c.check_valid_at_with_slop(1_628_553_601, PAST_SLOP_SECS, FUTURE_SLOP_SECS),
            Ok(())
        );
        assert!(matches!(
            c.check_valid_at(1_597_017_599),
            Err(CertError::NotYetValid { cert_type: 2, .. })
        ));
        assert_eq!(
            c.check_valid_at_with_slop(1_597_017_599, PAST_SLOP_SECS, FUTURE_SLOP_SECS),
            Ok(())
        );
    }

    #[test]
    fn tampered_chutney_identity_cert() {
        let mut der = Vec::from_hex(CHUTNEY_T2).unwrap();
        // A byte of the subject CN (inside tbsCertificate): still parses, signature fails.
        der[0x78] ^= 0x01;
        let c = X509RsaCert::decode(&der, cert_type::RSA_ID_X509).unwrap();
        assert_eq!(c.check_self_signed(), Err(CertError::BadSignature(2)));
        // Truncations never panic.
        let der = Vec::from_hex(CHUTNEY_T2).unwrap();
        for n in 0..der.len() {
            assert!(X509RsaCert::decode(&der[..n], 2).is_err());
        }
    }

    #[test]
    fn create_identity_cert_like_c_tor() {
        let mut rng = seeded_rng(11);
        let key = PrivateKey::new(&mut rng, 1024).unwrap();
        let now = 1_700_000_000;
        let c = X509RsaCert::create_identity_cert(&key, now, &mut rng).unwrap();
        let parsed = X509RsaCert::decode(c.as_der(), 2).unwrap();
        assert_eq!(parsed, c);
        assert_eq!(c.check_self_signed(), Ok(()));
        assert_eq!(c.check_rsa1024(), Ok(()));
        assert_eq!(c.check_valid_at(now), Ok(()));
        assert_eq!(c.public_key(), key.as_public_key());
        assert_eq!(c.not_after() - c.not_before(), IDENTITY_CERT_LIFETIME_SECS);
        assert!(c.not_before().is_multiple_of(DAY));
        assert!(c.not_after() >= now + DAY);
        let cn = c.subject_cn().unwrap();
        assert!(cn.starts_with("www.") && cn.ends_with(".com"), "{cn}");
        assert!((8 + 8..=20 + 8).contains(&cn.len()), "{cn}");
        assert_eq!(c.issuer_cn(), Some(cn));
        // Same layout as C tor's: v3 explicit version, 8-byte serial (9 with a sign byte).
        let cert = Certificate::from_der(c.as_der()).unwrap();
        assert_eq!(cert.tbs_certificate().version(), Version::V3);
        assert!(cert.tbs_certificate().extensions().is_none());
        assert!((1..=9).contains(&cert.tbs_certificate().serial_number().as_bytes().len()));
        let der = c.as_der();
        assert_eq!(&der[8..13], &[0xA0, 0x03, 0x02, 0x01, 0x02]);
        // Signed by another key: the self-signature check fails.
        let other = PrivateKey::new(&mut rng, 1024).unwrap();
        let forged = X509RsaCert::create_signed_by_identity(
            &other,
            &c,
            key.as_public_key(),
            cert_type::RSA_ID_X509,
            DAY,
            now,
            &mut rng,
        )
        .unwrap();
        assert_eq!(forged.check_self_signed(), Err(CertError::BadSignature(2)));
    }

    #[test]
    fn link_cert_signed_by_identity() {
        let mut rng = seeded_rng(12);
        let id = PrivateKey::new(&mut rng, 1024).unwrap();
        let link = PrivateKey::new(&mut rng, 2048).unwrap();
        let now = 1_700_000_000;
        let idc = X509RsaCert::create_identity_cert(&id, now, &mut rng).unwrap();
        let lc = X509RsaCert::create_signed_by_identity(
            &id,
            &idc,
            link.as_public_key(),
            cert_type::LINK_X509,
            DAY,
            now,
            &mut rng,
        )
        .unwrap();
        assert_eq!(lc.check_signature(id.as_public_key()), Ok(()));
        assert_eq!(lc.check_self_signed(), Err(CertError::BadSignature(1)));
        assert_eq!(lc.key_bits(), 2048);
        assert!(lc.check_rsa1024().is_err());
        assert_eq!(lc.issuer_cn(), idc.subject_cn());
        assert!(lc.subject_cn().unwrap().ends_with(".net"));
        assert_eq!(lc.check_valid_at(now), Ok(()));
        // Short lifetime: starts no later than now, on a day boundary.
        assert!(lc.not_before() <= now && lc.not_before().is_multiple_of(DAY));
    }

    #[test]
    fn validity_window() {
        let mut rng = seeded_rng(13);
        for _ in 0..200 {
            let now = 1_700_000_000 + u64::from(rng.next_u32());
            let (s, e) = random_validity(now, IDENTITY_CERT_LIFETIME_SECS, &mut rng);
            assert!(s <= now && s.is_multiple_of(DAY));
            assert_eq!(e - s, IDENTITY_CERT_LIFETIME_SECS);
            assert!(e >= now + DAY);
        }
        assert_eq!(
            x509_time(UTC_TIME_END).map(|t| matches!(t, Time::GeneralTime(_))),
            Ok(true)
        );
    }
}
