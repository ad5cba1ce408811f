//! 1024-bit Diffie-Hellman in Z_p over the RFC 2409 §6.2 "Second Oakley Group", generator 2
//! (tor-spec §0.3), as used by the TAP handshake and the seed's RELAY_INFO helper.
//!
//! - Private exponents are [`DH_SEC_LEN`] = 40 bytes (320 bits), as tor-spec §0.3 recommends
//!   and as C tor does (`DH_PRIVATE_KEY_BITS`, with the top bit set as OpenSSL's
//!   `BN_priv_rand(.., BN_RAND_TOP_ONE, ..)` does). Such keys MUST NOT be used twice, so
//!   [`DhKeypair::shared_secret`] consumes the key pair.
//! - Public values and shared secrets are [`DH_LEN`] = 128 big-endian bytes, left-padded with
//!   zeros.
//! - A peer's public value must lie in `[2, p-2]` (tor-spec §5.1.3, C tor's
//!   `tor_check_dh_key`); anything else is refused with [`DhError::OutOfRange`] before any
//!   exponentiation.
//!
//! # Side channels and zeroization
//!
//! `num-bigint`'s `modpow` is not constant-time: its running time depends on the private
//! exponent. Each exponent is used exactly once (see above), which limits this to single-trace
//! attacks, but the code should move to a constant-time big-integer library if TAP ever
//! matters again. `num-bigint` also has no `Zeroize` support: the private exponent is kept in
//! [`Zeroizing`] bytes, and the transient big integers built from it (and the shared secret)
//! are cleared in place before being dropped, which is best effort (`modpow`'s internal
//! temporaries are not reachable).

use num_bigint::BigUint;
use rand_core::CryptoRng;
use thiserror::Error;
use zeroize::Zeroizing;

/// Bytes in a group element: public values and shared secrets (`DH_LEN`).
pub const DH_LEN: usize = 128;
/// Bytes in a private exponent (`DH_SEC_LEN`, 320 bits).
pub const DH_SEC_LEN: usize = 40;
/// The group generator.
pub const DH_GENERATOR: u32 = 2;

/// The modulus `p`: the 1024-bit safe prime of RFC 2409 §6.2, big-endian.
pub const DH_PRIME: [u8; DH_LEN] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xc9, 0x0f, 0xda, 0xa2, 0x21, 0x68, 0xc2, 0x34,
    0xc4, 0xc6, 0x62, 0x8b, 0x80, 0xdc, 0x1c, 0xd1, 0x29, 0x02, 0x4e, 0x08, 0x8a, 0x67, 0xcc, 0x74,
    0x02, 0x0b, 0xbe, 0xa6, 0x3b, 0x13, 0x9b, 0x22, 0x51, 0x4a, 0x08, 0x79, 0x8e, 0x34, 0x04, 0xdd,
    0xef, 0x95, 0x19, 0xb3, 0xcd, 0x3a, 0x43, 0x1b, 0x30, 0x2b, 0x0a, 0x6d, 0xf2, 0x5f, 0x14, 0x37,
    0x4f, 0xe1, 0x35, 0x6d, 0x6d, 0x51, 0xc2, 0x45, 0xe4, 0x85, 0xb5, 0x76, 0x62, 0x5e, 0x7e, 0xc6,
    0xf4, 0x4c, 0x42, 0xe9, 0xa6, 0x37, 0xed, 0x6b, 0x0b, 0xff, 0x5c, 0xb6, 0xf4, 0x06, 0xb7, 0xed,
    0xee, 0x38, 0x6b, 0xfb, 0x5a, 0x89, 0x9f, 0xa5, 0xae, 0x9f, 0x24, 0x11, 0x7c, 0x4b, 0x1f, 0xe6,
    0x49, 0x28, 0x66, 0x51, 0xec, 0xe6, 0x53, 0x81, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
];

/// Why a peer's Diffie-Hellman public value was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DhError {
    /// The public value is not [`DH_LEN`] bytes long.
    #[error("DH public value must be {DH_LEN} bytes, got {0}")]
    BadLength(usize),
    /// The public value is degenerate: not in `[2, p-2]`.
    #[error("DH public value outside [2, p-2]")]
    OutOfRange,
}

fn prime() -> BigUint {
    BigUint::from_bytes_be(&DH_PRIME)
}

/// Clear a secret big integer in place before it is dropped (best effort, see module docs).
///
/// Clearing from the least significant bit up keeps the top limb non-zero until the last
/// step, so `num-bigint` never shrinks (reallocates) the buffer while secret limbs remain.
fn wipe(n: &mut BigUint) {
    for bit in 0..n.bits() {
        n.set_bit(bit, false);
    }
}

/// Encode `n` (known to be below `p`) as [`DH_LEN`] big-endian bytes, left-padded.
fn to_fixed(n: &BigUint) -> Zeroizing<[u8; DH_LEN]> {
    let bytes = Zeroizing::new(n.to_bytes_be());
    let mut out = Zeroizing::new([0u8; DH_LEN]);
    for (dst, src) in out.iter_mut().rev().zip(bytes.iter().rev()) {
        *dst = *src;
    }
    out
}

/// Parse a peer's public value and check that it lies in `[2, p-2]`.
fn parse_public(peer: &[u8]) -> Result<BigUint, DhError> {
    if peer.len() != DH_LEN {
        return Err(DhError::BadLength(peer.len()));
    }
    let y = BigUint::from_bytes_be(peer);
    let two = BigUint::from(2u32);
    let max = prime() - &two;
    if y < two || y > max {
        return Err(DhError::OutOfRange);
    }
    Ok(y)
}

/// Check a peer's public value: exactly [`DH_LEN`] bytes, and in `[2, p-2]`.
pub fn check_public(peer: &[u8]) -> Result<(), DhError> {
    parse_public(peer).map(drop)
}

/// An ephemeral Diffie-Hellman key pair `(x, g^x)`, for one handshake only.
pub struct DhKeypair {
    /// The private exponent `x`, big-endian, top bit set.
    secret: Zeroizing<[u8; DH_SEC_LEN]>,
    /// `g^x mod p`, [`DH_LEN`] big-endian bytes.
    public: [u8; DH_LEN],
}

impl std::fmt::Debug for DhKeypair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DhKeypair { .. }")
    }
}

impl DhKeypair {
    /// Generate a fresh 320-bit private exponent from `rng` and its public value.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut secret = Zeroizing::new([0u8; DH_SEC_LEN]);
        rng.fill_bytes(secret.as_mut_slice());
        Self::from_secret(secret)
    }

    /// Build the key pair for the private exponent `secret` (big-endian); its top bit is forced
    /// to one so that `x` has exactly 320 bits.
    pub(crate) fn from_secret(mut secret: Zeroizing<[u8; DH_SEC_LEN]>) -> Self {
        if let Some(top) = secret.first_mut() {
            *top |= 0x80;
        }
        let mut x = BigUint::from_bytes_be(secret.as_slice());
        let gx = BigUint::from(DH_GENERATOR).modpow(&x, &prime());
        wipe(&mut x);
        DhKeypair {
            secret,
            public: *to_fixed(&gx),
        }
    }

    /// Our public value `g^x`, [`DH_LEN`] big-endian bytes.
    pub fn public(&self) -> &[u8; DH_LEN] {
        &self.public
    }

    /// Compute `peer^x mod p` after checking `peer` (see [`check_public`]).
    ///
    /// Consumes the key pair: a DH private key must never be used twice (tor-spec §0.3).
    pub fn shared_secret(self, peer: &[u8]) -> Result<SharedSecret, DhError> {
        let y = parse_public(peer)?;
        let mut x = BigUint::from_bytes_be(self.secret.as_slice());
        let mut s = y.modpow(&x, &prime());
        wipe(&mut x);
        let out = SharedSecret(to_fixed(&s));
        wipe(&mut s);
        Ok(out)
    }
}

/// A Diffie-Hellman shared secret `g^xy`, zeroized on drop.
#[derive(Clone)]
pub struct SharedSecret(Zeroizing<[u8; DH_LEN]>);

impl std::fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedSecret { .. }")
    }
}

impl SharedSecret {
    /// Wrap a shared secret received as [`DH_LEN`] left-padded big-endian bytes (the seed's
    /// RELAY_INFO "DH secret" answer).
    pub fn from_bytes(bytes: &[u8; DH_LEN]) -> Self {
        SharedSecret(Zeroizing::new(*bytes))
    }

    /// The secret as [`DH_LEN`] left-padded big-endian bytes.
    pub fn as_bytes(&self) -> &[u8; DH_LEN] {
        &self.0
    }

    /// The secret as a minimal big-endian integer, leading zero bytes stripped.
    ///
    /// This is the KDF-TOR input `K0 = g^xy` of TAP (tor-spec §5.2.1, "represented as a
    /// big-endian unsigned integer"): C tor feeds KDF-TOR with the output of OpenSSL's
    /// `DH_compute_key`, which strips leading zeros, so about 1 handshake in 256 would
    /// disagree with C tor if the padded form were used.
    pub fn minimal_be(&self) -> &[u8] {
        let skip = self.0.iter().take_while(|&&b| b == 0).count();
        self.0.get(skip..).unwrap_or_default()
    }
}

#[cfg(test)]
pub(crate) mod test {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::testing::{seeded_rng, test_rng};

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    fn arr<const N: usize>(s: &str) -> [u8; N] {
        h(s).try_into().unwrap()
    }

    /// Cross-implementation vector: computed with Python's built-in big integers
    /// (`pow(2, x, p)`, `pow(g^x, y, p)`), independently of this code. The exponents were
    /// chosen so that g^xy has a leading zero byte.
    const X: &str =
        "ff8dfc86fd2837ad5c7cdbd62ca1825d3ad905a836b57dc00296ea99ff8c2020d73d06aaa5715734";
    const Y: &str =
        "fe1b72350eba7943a097f8c868f90dc76b9e08d47475e50190ef819bb661254e56549853fe177e5a";
    pub(crate) const GX: &str = "da0346e694943398616303085bd7557796f483a09633a66c905836c4fc87c573af4ae74de830d98a1467050edede3c45b3cd786fc0bbdd414866f12f93b268816a0c5ef744eebdc27a668062b1bbc8e390f819b18010915c04c4e537ada0b19d9700ac91667aa4f521e61f0962386738fabbef21d9f0d2116d729ddb1edf17db";
    pub(crate) const GY: &str = "163e77f5f7f7d54029d1745eccd94ac57f6973c43f71c7c03599bc9ba728c75ede4c007440d7ae5f3576721d619e4031ea8e42506e5c08739b1a3dfe1ef2b0f23b71ebe674571e441ed4fc63546d93f0dad90d9636bb601ef8e5d6a767e96fe676e231c656dc39d7f9c2c4bf4a471b86876db5213671b7265a8a6d4d289e4cf8";
    const GXY: &str = "00e05f9cbf8ea9d82e4abeafd0579905a3c97d4b8610c063e8309aaeb996b951a93da5509dbcef52c2cb44f194cae792cca72033b66e266139766abe96e636582c902646fee4c932527a17615e6695452da19fa8e546f6f498270ea6dd9c21e80012b2afbc7d03383265033c5be2395d0e8ffa37d45d649c4d70c96f92d56cb7";

    /// The key pairs of the vector above (used by the TAP vectors too).
    pub(crate) fn kat_keypairs() -> (DhKeypair, DhKeypair) {
        (
            DhKeypair::from_secret(Zeroizing::new(arr(X))),
            DhKeypair::from_secret(Zeroizing::new(arr(Y))),
        )
    }

    #[test]
    fn prime_matches_spec() {
        // tor-spec §0.3, verbatim.
        let spec = concat!(
            "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E08",
            "8A67CC74020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B",
            "302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9",
            "A637ED6B0BFF5CB6F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE6",
            "49286651ECE65381FFFFFFFFFFFFFFFF"
        );
        assert_eq!(h(spec), DH_PRIME);
        // 2 generates the prime-order subgroup of the safe prime p = 2q + 1: 2^q = 1 (mod p).
        let p = prime();
        let q = (&p - 1u32) >> 1usize;
        assert_eq!(BigUint::from(2u32).modpow(&q, &p), BigUint::from(1u32));
        assert_eq!(p.bits(), 1024);
    }

    #[test]
    fn known_answer() {
        let (a, b) = kat_keypairs();
        assert_eq!(a.public().as_slice(), h(GX));
        assert_eq!(b.public().as_slice(), h(GY));
        let (pa, pb) = (*a.public(), *b.public());
        let s1 = a.shared_secret(&pb).unwrap();
        let s2 = b.shared_secret(&pa).unwrap();
        assert_eq!(s1.as_bytes().as_slice(), h(GXY));
        assert_eq!(s2.as_bytes(), s1.as_bytes());
        // The leading zero byte is stripped for KDF input.
        assert_eq!(s1.minimal_be().len(), 127);
        assert_eq!(s1.minimal_be(), &h(GXY)[1..]);
    }

    #[test]
    fn small_exponents_known_answers() {
        // Values that can be checked by hand: encoding and reduction.
        let p = prime();
        // 2^10 = 1024: left-padded to 128 bytes.
        let v = BigUint::from(2u32).modpow(&BigUint::from(10u32), &p);
        let mut want = [0u8; DH_LEN];
        want[126] = 0x04;
        assert_eq!(*to_fixed(&v), want);
        // 2^1024 mod p = 2^1024 - p, computed by subtraction rather than by modpow.
        let v = BigUint::from(2u32).modpow(&BigUint::from(1024u32), &p);
        let want = (BigUint::from(1u32) << 1024usize) - &p;
        assert_eq!(v, want);
        // 2^1024 - p < 2^960: eight leading zero bytes of padding.
        let fixed = to_fixed(&v);
        assert_eq!(fixed[..8], [0u8; 8]);
        assert_eq!(&fixed[8..], want.to_bytes_be().as_slice());
    }

    #[test]
    fn exponent_is_320_bits() {
        let kp = DhKeypair::generate(&mut seeded_rng(7));
        assert_eq!(kp.secret.len(), DH_SEC_LEN);
        assert!(kp.secret[0] & 0x80 != 0);
        // Even an all-zero RNG output yields a 320-bit exponent.
        let kp = DhKeypair::from_secret(Zeroizing::new([0u8; DH_SEC_LEN]));
        let mut x = BigUint::from(1u32) << 319usize;
        assert_eq!(
            kp.public().as_slice(),
            to_fixed(&BigUint::from(2u32).modpow(&x, &prime())).as_slice()
        );
        wipe(&mut x);
        assert_eq!(x, BigUint::default());
    }

    #[test]
    fn agreement_random() {
        let mut rng = test_rng();
        let a = DhKeypair::generate(&mut rng);
        let b = DhKeypair::generate(&mut rng);
        assert_ne!(a.public(), b.public());
        assert!(check_public(a.public()).is_ok());
        let (pa, pb) = (*a.public(), *b.public());
        let s1 = a.shared_secret(&pb).unwrap();
        let s2 = b.shared_secret(&pa).unwrap();
        assert_eq!(s1.as_bytes(), s2.as_bytes());
        assert_eq!(
            SharedSecret::from_bytes(s1.as_bytes()).as_bytes(),
            s1.as_bytes()
        );
    }

    #[test]
    fn deterministic_with_seeded_rng() {
        let a = DhKeypair::generate(&mut seeded_rng(1));
        let b = DhKeypair::generate(&mut seeded_rng(1));
        assert_eq!(a.public(), b.public());
    }

    #[test]
    fn rejects_degenerate_public_values() {
        let p = prime();
        let enc = |v: &BigUint| -> Vec<u8> {
            let b = v.to_bytes_be();
            let mut out = vec![0u8; DH_LEN.saturating_sub(b.len())];
            out.extend_from_slice(&b);
            out
        };
        for bad in [
            BigUint::from(0u32),
            BigUint::from(1u32),
            &p - 1u32,
            p.clone(),
            &p + 1u32,
            (BigUint::from(1u32) << 1024usize) - 1u32,
        ] {
            assert_eq!(check_public(&enc(&bad)), Err(DhError::OutOfRange));
            let kp = DhKeypair::generate(&mut seeded_rng(3));
            assert_eq!(
                kp.shared_secret(&enc(&bad)).map(|_| ()),
                Err(DhError::OutOfRange)
            );
        }
        for good in [BigUint::from(2u32), &p - 2u32] {
            assert_eq!(check_public(&enc(&good)), Ok(()));
        }
        assert_eq!(check_public(&[2u8; 127]), Err(DhError::BadLength(127)));
        assert_eq!(check_public(&[2u8; 129]), Err(DhError::BadLength(129)));
        assert_eq!(check_public(&[]), Err(DhError::BadLength(0)));
    }

    #[test]
    fn minimal_be_strips_only_leading_zeros() {
        let mut b = [0u8; DH_LEN];
        b[2] = 1;
        b[127] = 0;
        let s = SharedSecret::from_bytes(&b);
        assert_eq!(s.minimal_be().len(), 126);
        assert_eq!(s.minimal_be()[0], 1);
        assert_eq!(
            SharedSecret::from_bytes(&[0; DH_LEN]).minimal_be(),
            &[] as &[u8]
        );
        assert_eq!(format!("{s:?}"), "SharedSecret { .. }");
    }
}
