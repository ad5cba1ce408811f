//! The two key derivation functions of tor-spec §5.2.
//!
//! - KDF-TOR (§5.2.1), used by TAP, CREATE_FAST and CREATE_FAST_WS:
//!   `K = H(K0 | [00]) | H(K0 | [01]) | H(K0 | [02]) | ...` with SHA-1.
//! - KDF-RFC5869 (§5.2.2), used by ntor: HKDF-SHA256 with the handshake's salt (`t_key`)
//!   and info (`m_expand`).

use hkdf::Hkdf;
use sha1::{Digest, Sha1};
use sha2::Sha256;
use thiserror::Error;

/// A KDF was asked for more output than it can produce.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("KDF output too long: {0} bytes")]
pub struct KdfTooLong(pub usize);

/// KDF-TOR: expand `k0` into `n` bytes (at most 256 SHA-1 blocks).
pub fn kdf_tor(k0: &[u8], n: usize) -> Result<Vec<u8>, KdfTooLong> {
    if n > 256 * 20 {
        return Err(KdfTooLong(n));
    }
    let mut out = Vec::with_capacity(n + 20);
    let mut i: u8 = 0;
    while out.len() < n {
        let mut h = Sha1::new();
        h.update(k0);
        h.update([i]);
        out.extend_from_slice(&h.finalize());
        i = i.wrapping_add(1);
    }
    out.truncate(n);
    Ok(out)
}

/// KDF-RFC5869: HKDF-SHA256 extract with `salt` over `secret`, then expand with `info` to `n`
/// bytes (at most 255 * 32).
pub fn kdf_rfc5869(
    secret: &[u8],
    salt: &[u8],
    info: &[u8],
    n: usize,
) -> Result<Vec<u8>, KdfTooLong> {
    let hk = Hkdf::<Sha256>::new(Some(salt), secret);
    let mut out = vec![0u8; n];
    hk.expand(info, &mut out).map_err(|_| KdfTooLong(n))?;
    Ok(out)
}

#[cfg(test)]
mod test {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.replace([' ', '\n'], "")).unwrap_or_default()
    }

    /// RFC 5869 Appendix A.1 (basic test case with SHA-256).
    #[test]
    fn rfc5869_case_1() {
        let ikm = h("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b");
        let salt = h("000102030405060708090a0b0c");
        let info = h("f0f1f2f3f4f5f6f7f8f9");
        let okm = kdf_rfc5869(&ikm, &salt, &info, 42);
        assert_eq!(
            okm,
            Ok(h(
                "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
            ))
        );
    }

    /// RFC 5869 Appendix A.2 (longer inputs and outputs).
    #[test]
    fn rfc5869_case_2() {
        let ikm: Vec<u8> = (0x00..=0x4f).collect();
        let salt: Vec<u8> = (0x60..=0xaf).collect();
        let info: Vec<u8> = (0xb0..=0xff).collect();
        let okm = kdf_rfc5869(&ikm, &salt, &info, 82);
        assert_eq!(
            okm,
            Ok(h(
                "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71cc30c58179ec3e87c14c01d5c1f3434f1d87"
            ))
        );
    }

    #[test]
    fn rfc5869_too_long() {
        assert_eq!(
            kdf_rfc5869(b"k", b"s", b"i", 255 * 32 + 1),
            Err(KdfTooLong(255 * 32 + 1))
        );
    }

    /// KDF-TOR known answers from C tor's test suite (src/test/test_crypto.c,
    /// `crypto_expand_key_material_TAP`).
    #[test]
    fn kdf_tor_vectors() {
        assert_eq!(
            kdf_tor(b"", 100),
            Ok(h(
                "5ba93c9db0cff93f52b521d7420e43f6eda2784fbf8b4530d8d246dd74ac53a13471bba17941dff7c4ea21bb365bbeeaf5f2c654883e56d11e43c44e9842926af7ca0a8cca12604f945414f07b01e13da42c6cf1de3abfdea9b95f34687cbbe92b9a7383"
            ))
        );
        assert_eq!(
            kdf_tor(b"Tor", 100),
            Ok(h(
                "776c6214fc647aaa5f683c737ee66ec44f03d0372e1cce69227950f236ddf1e329a7ce7c227903303f525a8c6662426e8034870642a6dabbd41b5d97ec9bf2312ea729992f48f8ea2d0ba83f45dfda1a80bdc8b80de01b23e3e0ffae099b3e4ccf28dc28"
            ))
        );
        assert_eq!(
            kdf_tor(
                b"AN ALARMING ITEM TO FIND ON A MONTHLY AUTO-DEBIT NOTICE",
                100
            ),
            Ok(h(
                "a340b5d126086c3ab29c2af4179196dbf95e1c72431419d3314844bf8f6afb6098db952b95581fb6c33625709d6f4400b8e7ace18a70579fad83c0982ef73f89395bcc39493ad53a685854daf2ba9b78733b805d9a6824c907ee1dba5ac27a1e466d4d10"
            ))
        );
    }

    #[test]
    fn kdf_tor_prefix_property() {
        let a = kdf_tor(b"seed", 92).unwrap_or_default();
        let b = kdf_tor(b"seed", 40).unwrap_or_default();
        assert_eq!(a.get(..40), Some(&b[..]));
        assert_eq!(kdf_tor(b"x", 256 * 20 + 1), Err(KdfTooLong(5121)));
    }
}
