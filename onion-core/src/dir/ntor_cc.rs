//! The ntor onion key cross-certificate (dir-spec §2.1.1 `ntor-onion-key-crosscert`,
//! Appendix C): an Ed25519 certificate of type 0a, certifying the relay's Ed25519 identity,
//! signed with the ntor (curve25519) onion key converted to an Ed25519 key.
//!
//! Conversion, as C tor (`ed25519_keypair_from_curve25519_keypair`) and Arti do it:
//! - secret side: the clamped curve25519 secret `a` is the Ed25519 secret scalar, and the
//!   Ed25519 nonce prefix is `SHA512(a | "Derive high part of ed25519 key from curve25519
//!   key\0")[0..32]`; the public key is `A = aB` and the *sign bit* is the top bit of its
//!   encoding;
//! - public side: the Montgomery `u` of the ntor key and the sign bit give the Edwards point
//!   back (`MontgomeryPoint::to_edwards`).
//!
//! Signing with a given scalar and prefix is Ed25519 signing with an *expanded* secret key,
//! which `ed25519-dalek` only exposes behind its `hazmat` feature (not enabled in this
//! workspace). `sign_expanded` therefore computes RFC 8032 §5.1.6 with `curve25519-dalek`'s
//! scalar and point arithmetic; a test checks that it is byte-for-byte `ed25519-dalek`'s
//! signature for ordinary keys, and every signature it makes is verified with
//! `ed25519-dalek` before it is returned.

use curve25519_dalek::edwards::EdwardsPoint;
use curve25519_dalek::montgomery::MontgomeryPoint;
use curve25519_dalek::scalar::{Scalar, clamp_integer};
use ed25519_dalek::hazmat::{ExpandedSecretKey, raw_sign};
use ed25519_dalek::{Signature, VerifyingKey};
use onion_cell::bytes::Writer;
use sha2::{Digest, Sha512};
use x25519_dalek::{PublicKey as X25519Public, StaticSecret};
use zeroize::Zeroizing;

use crate::certs::ed::SIGNATURE_LEN;
use crate::certs::{CertError, Ed25519Cert, Ed25519Identity, cert_type, key_type};

/// The string C tor hashes with the curve25519 secret to make the Ed25519 nonce prefix.
const PREFIX_STRING: &[u8] = b"Derive high part of ed25519 key from curve25519 key\0";

/// An Ed25519 key pair derived from an ntor (curve25519) secret key.
pub struct NtorEdKey {
    scalar: Scalar,
    prefix: Zeroizing<[u8; 32]>,
    public: Ed25519Identity,
    sign_bit: u8,
}

impl std::fmt::Debug for NtorEdKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NtorEdKey")
            .field("public", &self.public)
            .field("sign_bit", &self.sign_bit)
            .finish_non_exhaustive()
    }
}

impl Drop for NtorEdKey {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.scalar);
    }
}

impl NtorEdKey {
    /// Derive the Ed25519 key pair of the ntor secret key `secret`.
    pub fn from_ntor_secret(secret: &StaticSecret) -> Self {
        let clamped = Zeroizing::new(clamp_integer(secret.to_bytes()));
        let scalar = Scalar::from_bytes_mod_order(*clamped);
        let digest = Sha512::new()
            .chain_update(clamped.as_slice())
            .chain_update(PREFIX_STRING)
            .finalize();
        let mut prefix = Zeroizing::new([0u8; 32]);
        for (p, d) in prefix.iter_mut().zip(digest.iter()) {
            *p = *d;
        }
        let public = EdwardsPoint::mul_base(&scalar).compress().to_bytes();
        let sign_bit = public.last().map_or(0, |b| b >> 7);
        NtorEdKey {
            scalar,
            prefix,
            public: Ed25519Identity::from_bytes(public),
            sign_bit,
        }
    }

    /// The Ed25519 public key.
    pub fn public(&self) -> &Ed25519Identity {
        &self.public
    }

    /// The sign bit published with the cross-certificate (0 or 1).
    pub fn sign_bit(&self) -> u8 {
        self.sign_bit
    }

    /// Sign `msg`; `None` only if the derived public key does not decode (never for a key
    /// made by [`NtorEdKey::from_ntor_secret`]).
    pub fn sign(&self, msg: &[u8]) -> Option<[u8; SIGNATURE_LEN]> {
        sign_expanded(&self.scalar, &self.prefix, self.public.as_bytes(), msg)
    }
}

/// Ed25519 signing with an expanded secret key (RFC 8032 §5.1.6 steps 2-6), via
/// ed25519-dalek's hazmat `raw_sign`: the ntor-derived key has no seed, only a scalar and a
/// hash prefix. `public` must be `scalar * B`.
fn sign_expanded(
    scalar: &Scalar,
    prefix: &[u8; 32],
    public: &[u8; 32],
    msg: &[u8],
) -> Option<[u8; SIGNATURE_LEN]> {
    let esk = ExpandedSecretKey {
        scalar: *scalar,
        hash_prefix: *prefix,
    };
    let vk = VerifyingKey::from_bytes(public).ok()?;
    Some(raw_sign::<Sha512>(&esk, msg, &vk).to_bytes())
}

/// The Ed25519 key corresponding to the ntor public key `ntor` with `sign_bit`, or `None`
/// if there is none (the `u` coordinate is not on the curve, or is `-1`).
pub fn ntor_public_to_ed25519(ntor: &X25519Public, sign_bit: u8) -> Option<Ed25519Identity> {
    let point = MontgomeryPoint(*ntor.as_bytes()).to_edwards(sign_bit)?;
    Some(Ed25519Identity::from_bytes(point.compress().to_bytes()))
}

/// Make the `ntor-onion-key-crosscert` certificate: type 0a, certifying `identity`, expiring
/// at `expiration_hours`, signed by the Ed25519 form of `ntor_secret` (no
/// signed-with-ed25519-key extension, as C tor makes it). Returns the certificate and the
/// sign bit.
pub fn make_ntor_crosscert(
    ntor_secret: &StaticSecret,
    identity: &Ed25519Identity,
    expiration_hours: u32,
) -> Result<(Ed25519Cert, u8), CertError> {
    let key = NtorEdKey::from_ntor_secret(ntor_secret);
    let mut w = Vec::with_capacity(40 + SIGNATURE_LEN);
    w.write_u8(1);
    w.write_u8(cert_type::NTOR_CC_IDENTITY);
    w.write_u32(expiration_hours);
    w.write_u8(key_type::ED25519);
    w.write_all(identity.as_bytes());
    w.write_u8(0);
    let sig = key
        .sign(&w)
        .ok_or(CertError::BadKey("derived ntor Ed25519 key"))?;
    // Never publish a signature that does not verify.
    let vk = VerifyingKey::from_bytes(key.public().as_bytes())
        .map_err(|_| CertError::BadKey("derived ntor Ed25519 key"))?;
    vk.verify_strict(&w, &Signature::from_bytes(&sig))
        .map_err(|_| CertError::Signing("ntor cross-certificate"))?;
    w.write_all(&sig);
    Ok((Ed25519Cert::decode(&w)?, key.sign_bit()))
}

/// Check an `ntor-onion-key-crosscert`: type 0a, certifying `identity`, signed by the
/// Ed25519 form of `ntor` with `sign_bit`. Expiry is not checked here.
pub fn check_ntor_crosscert(
    cert: &Ed25519Cert,
    ntor: &X25519Public,
    sign_bit: u8,
    identity: &Ed25519Identity,
) -> Result<(), CertError> {
    if cert.cert_type() != cert_type::NTOR_CC_IDENTITY {
        return Err(CertError::WrongCertType {
            expected: cert_type::NTOR_CC_IDENTITY,
            got: cert.cert_type(),
        });
    }
    if cert.certified_ed25519().as_ref() != Some(identity) {
        return Err(CertError::KeyMismatch(
            "ntor cross-certificate certifies another identity",
        ));
    }
    let signer = ntor_public_to_ed25519(ntor, sign_bit)
        .ok_or(CertError::BadKey("ntor key has no Ed25519 form"))?;
    cert.check_signature(Some(&signer))?;
    Ok(())
}

#[cfg(test)]
mod test {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::testing::seeded_rng;
    use ed25519_dalek::{Signer, SigningKey};
    use rand_core::Rng;

    #[test]
    fn sign_expanded_is_ed25519() {
        // For an ordinary key, (scalar, prefix) = SHA512(seed) split in two; our signature
        // must be exactly ed25519-dalek's.
        let mut rng = seeded_rng(7);
        for len in [0usize, 1, 32, 100, 1000] {
            let mut seed = [0u8; 32];
            rng.fill_bytes(&mut seed);
            let sk = SigningKey::from_bytes(&seed);
            let h = Sha512::digest(seed);
            let scalar = Scalar::from_bytes_mod_order(clamp_integer(h[..32].try_into().unwrap()));
            let prefix: [u8; 32] = h[32..].try_into().unwrap();
            let mut msg = vec![0u8; len];
            rng.fill_bytes(&mut msg);
            let ours =
                sign_expanded(&scalar, &prefix, sk.verifying_key().as_bytes(), &msg).unwrap();
            assert_eq!(ours, sk.sign(&msg).to_bytes());
        }
    }

    #[test]
    fn conversion_round_trip() {
        let mut rng = seeded_rng(8);
        let mut bits = [0usize; 2];
        for _ in 0..32 {
            let sk = StaticSecret::random_from_rng(&mut rng);
            let pk = X25519Public::from(&sk);
            let ed = NtorEdKey::from_ntor_secret(&sk);
            bits[usize::from(ed.sign_bit())] += 1;
            assert_eq!(
                ntor_public_to_ed25519(&pk, ed.sign_bit()).as_ref(),
                Some(ed.public())
            );
            assert_ne!(
                ntor_public_to_ed25519(&pk, 1 - ed.sign_bit()).as_ref(),
                Some(ed.public())
            );
            let msg = b"tis the gift to be simple";
            let vk = VerifyingKey::from_bytes(ed.public().as_bytes()).unwrap();
            vk.verify_strict(msg, &Signature::from_bytes(&ed.sign(msg).unwrap()))
                .unwrap();
        }
        // Both sign bits occur.
        assert!(bits[0] > 0 && bits[1] > 0);
    }

    #[test]
    fn crosscert_make_and_check() {
        let mut rng = seeded_rng(9);
        let sk = StaticSecret::random_from_rng(&mut rng);
        let pk = X25519Public::from(&sk);
        let id = Ed25519Identity::from(SigningKey::from_bytes(&[3; 32]).verifying_key());
        let (cert, bit) = make_ntor_crosscert(&sk, &id, 500_000).unwrap();
        assert_eq!(cert.cert_type(), cert_type::NTOR_CC_IDENTITY);
        assert!(cert.signing_key().is_none());
        assert_eq!(cert.expiration_hours(), 500_000);
        check_ntor_crosscert(&cert, &pk, bit, &id).unwrap();
        assert!(matches!(
            check_ntor_crosscert(&cert, &pk, 1 - bit, &id),
            Err(CertError::BadSignature(_))
        ));
        let other = Ed25519Identity::from_bytes([9; 32]);
        assert!(matches!(
            check_ntor_crosscert(&cert, &pk, bit, &other),
            Err(CertError::KeyMismatch(_))
        ));
        let other_pk = X25519Public::from(&StaticSecret::random_from_rng(&mut rng));
        assert!(check_ntor_crosscert(&cert, &other_pk, bit, &id).is_err());
    }
}
