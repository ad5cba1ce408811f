//! CREATE_FAST / CREATED_FAST (tor-spec §5.1.5): a first-hop handshake without public-key
//! crypto, relying on the channel (TLS) for secrecy and authentication.
//!
//! ```text
//! client -> relay   CREATE_FAST    X                 [HASH_LEN = 20 bytes, random]
//! relay  -> client  CREATED_FAST   Y | KH            [20 + 20 bytes, Y random]
//! K0 = X | Y;  KDF-TOR(K0) = KH | Df | Db | Kf | Kb  (tor-spec §5.2.1)
//! ```
//!
//! This module also holds the KDF-TOR key split shared with [`tap`](super::tap) and
//! [`fast_ws`](super::fast_ws): `kdf_tor_keys` and the constant-time `check_kh` (crate-private).

use onion_cell::bytes::Reader;
use rand_core::CryptoRng;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::{HandshakeError, HandshakeResult};
use crate::crypto::kdf::kdf_tor;
use crate::crypto::keys::{HASH_LEN, HopKeys};

/// Length of the client's CREATE_FAST handshake data (X).
pub const FAST_C_HANDSHAKE_LEN: usize = HASH_LEN;
/// Length of the relay's CREATED_FAST handshake data (Y | KH).
pub const FAST_S_HANDSHAKE_LEN: usize = 2 * HASH_LEN;

/// KDF-TOR (tor-spec §5.2.1) of `k0`, split into the derivative key data `KH` and the hop
/// keys `Df | Db | Kf | Kb`.
pub(crate) fn kdf_tor_keys(k0: &[u8]) -> HandshakeResult<([u8; HASH_LEN], HopKeys)> {
    let material = Zeroizing::new(
        kdf_tor(k0, HASH_LEN + HopKeys::LEN)
            .map_err(|_| HandshakeError::Internal("KDF-TOR output length"))?,
    );
    let mut r = Reader::new(&material);
    let kh = r
        .take_array::<HASH_LEN>()
        .map_err(|_| HandshakeError::Internal("KDF-TOR output too short"))?;
    let keys = Zeroizing::new(
        r.take_array::<{ HopKeys::LEN }>()
            .map_err(|_| HandshakeError::Internal("KDF-TOR output too short"))?,
    );
    Ok((kh, HopKeys::from_bytes(&keys)))
}

/// Compare the expected and received `KH` in constant time.
pub(crate) fn check_kh(
    expected: &[u8; HASH_LEN],
    received: &[u8; HASH_LEN],
) -> HandshakeResult<()> {
    if bool::from(expected.ct_eq(received)) {
        Ok(())
    } else {
        Err(HandshakeError::AuthFailed)
    }
}

/// `X | Y`, the KDF-TOR input of CREATE_FAST and CREATE_FAST_WS.
fn k0(x: &[u8; HASH_LEN], y: &[u8; HASH_LEN]) -> Zeroizing<[u8; 2 * HASH_LEN]> {
    let mut k0 = Zeroizing::new([0u8; 2 * HASH_LEN]);
    for (dst, src) in k0.iter_mut().zip(x.iter().chain(y.iter())) {
        *dst = *src;
    }
    k0
}

/// Relay side of the key derivation: keys and `KH` from `X` and `Y`.
fn server_keys(
    x: &[u8; HASH_LEN],
    y: &[u8; HASH_LEN],
) -> HandshakeResult<([u8; HASH_LEN], HopKeys)> {
    kdf_tor_keys(k0(x, y).as_slice())
}

/// Client side of the key derivation: keys from `X` and `Y`, after checking the relay's `KH`.
pub(crate) fn client_keys(
    x: &[u8; HASH_LEN],
    y: &[u8; HASH_LEN],
    kh: &[u8; HASH_LEN],
) -> HandshakeResult<HopKeys> {
    let (expected, keys) = server_keys(x, y)?;
    check_kh(&expected, kh)?;
    Ok(keys)
}

/// Parse `Y | KH` (exactly [`FAST_S_HANDSHAKE_LEN`] bytes).
pub(crate) fn parse_reply(reply: &[u8]) -> HandshakeResult<([u8; HASH_LEN], [u8; HASH_LEN])> {
    split_pair(reply, "CREATED_FAST(_WS) reply must be Y | KH (40 bytes)")
}

/// Split `bytes` into exactly `A | B` bytes (a reply `Y | KH` or `g^y | KH`); any other length
/// is [`HandshakeError::Malformed`]`(what)`.
pub(crate) fn split_pair<const A: usize, const B: usize>(
    bytes: &[u8],
    what: &'static str,
) -> HandshakeResult<([u8; A], [u8; B])> {
    let mut r = Reader::new(bytes);
    let a = r
        .take_array::<A>()
        .map_err(|_| HandshakeError::Malformed(what))?;
    let b = r
        .take_array::<B>()
        .map_err(|_| HandshakeError::Malformed(what))?;
    r.should_be_exhausted()
        .map_err(|_| HandshakeError::Malformed(what))?;
    Ok((a, b))
}

/// Generate a fresh random 20-byte value (X or Y).
pub(crate) fn random_value<R: CryptoRng + ?Sized>(rng: &mut R) -> Zeroizing<[u8; HASH_LEN]> {
    let mut v = Zeroizing::new([0u8; HASH_LEN]);
    rng.fill_bytes(v.as_mut_slice());
    v
}

/// The client's secret between [`client1`] and [`client2`]: its key material `X`.
pub struct FastClientState {
    x: Zeroizing<[u8; HASH_LEN]>,
}

impl std::fmt::Debug for FastClientState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FastClientState { .. }")
    }
}

/// Client, step 1: choose `X`; send it in a CREATE_FAST cell.
pub fn client1<R: CryptoRng + ?Sized>(
    rng: &mut R,
) -> (FastClientState, [u8; FAST_C_HANDSHAKE_LEN]) {
    let x = random_value(rng);
    let msg = *x;
    (FastClientState { x }, msg)
}

/// Relay: answer the client's `X` (exactly [`FAST_C_HANDSHAKE_LEN`] bytes) with `Y | KH` for
/// a CREATED_FAST cell, and return the hop's keys.
pub fn server<R: CryptoRng + ?Sized>(
    rng: &mut R,
    msg: &[u8],
) -> HandshakeResult<(HopKeys, [u8; FAST_S_HANDSHAKE_LEN])> {
    let x: &[u8; HASH_LEN] = msg
        .try_into()
        .map_err(|_| HandshakeError::Malformed("CREATE_FAST X must be 20 bytes"))?;
    let y = random_value(rng);
    server_reply(x, &y)
}

/// The relay's keys and reply `Y | KH` for known `X` and `Y`.
pub(crate) fn server_reply(
    x: &[u8; HASH_LEN],
    y: &[u8; HASH_LEN],
) -> HandshakeResult<(HopKeys, [u8; FAST_S_HANDSHAKE_LEN])> {
    let (kh, keys) = server_keys(x, y)?;
    let mut reply = [0u8; FAST_S_HANDSHAKE_LEN];
    for (dst, src) in reply.iter_mut().zip(y.iter().chain(kh.iter())) {
        *dst = *src;
    }
    Ok((keys, reply))
}

/// Client, step 2: check the relay's `Y | KH` (exactly [`FAST_S_HANDSHAKE_LEN`] bytes) and
/// derive the hop's keys.
pub fn client2(state: FastClientState, reply: &[u8]) -> HandshakeResult<HopKeys> {
    let (y, kh) = parse_reply(reply)?;
    client_keys(&state.x, &y, &kh)
}

#[cfg(test)]
mod test {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::testing::{seeded_rng, test_rng};

    fn arr<const N: usize>(s: &str) -> [u8; N] {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    fn keys_bytes(k: &HopKeys) -> Vec<u8> {
        [&k.df[..], &k.db[..], &k.kf[..], &k.kb[..]].concat()
    }

    /// Vectors "generated from Tor" in Arti's `tor-proto` (crypto/handshake/fast.rs): X,
    /// Y | KH, and 100 bytes of key material following KH (`Df | Db | Kf | Kb` first).
    const VECTORS: [(&str, &str, &str); 2] = [
        (
            "080E247DF7C252FCD2DC10F459703480C223E3A6",
            "BA95C0D092335428BF80093BBED0B7A26C49E1E8696FBF9C8D6BE26504219C000D26AFE370FCEF04",
            "AFA89B4FC8CF882335A582C52478B5FCB1E08DAF707E2C2D23B8C27D30BD461F3DF98A3AF82221CB658AD0AA8680B99067E4F7DBC546970EA9A56B26433C71DA867BDD09C14A1308BC327D6A448D71D2382B3AB6AF0BB4E19649A8DFF607DB9C57A04AC3",
        ),
        (
            "5F786C724C2F5978474A04FA63772057AD896A03",
            "6210B037001405742FE78B6F5B34E6DB3C9F2F7E24239498613E0ED872E110A00774A3FCB37A7507",
            "D41B65D83FB4B34A322B658BE4D706EDCD8B62813757E719118C394E1F22E1C8EA8959BAB30E856A914C3054946F547397094DE031F5BCA384C65C8880BF7AAB9CE7BEE33971F9DE8C22A23366F46BF8B5E5112321E216B0E02C62EEA3ABB72A0E062592",
        ),
    ];

    #[test]
    fn c_tor_vectors() {
        for (x, reply, keys) in VECTORS {
            let x: [u8; 20] = arr(x);
            let reply: [u8; 40] = arr(reply);
            let keys = hex::decode(keys).unwrap();
            let y: [u8; 20] = reply[..20].try_into().unwrap();
            // Relay side reproduces C tor's reply.
            let (skeys, sreply) = server_reply(&x, &y).unwrap();
            assert_eq!(sreply, reply);
            assert_eq!(keys_bytes(&skeys), keys[..HopKeys::LEN]);
            // Client side accepts it and derives the same keys.
            let ckeys = client2(
                FastClientState {
                    x: Zeroizing::new(x),
                },
                &reply,
            )
            .unwrap();
            assert_eq!(ckeys, skeys);
        }
    }

    #[test]
    fn round_trip() {
        let mut rng = test_rng();
        let (state, x) = client1(&mut rng);
        let (skeys, reply) = server(&mut rng, &x).unwrap();
        let ckeys = client2(state, &reply).unwrap();
        assert_eq!(ckeys, skeys);
        assert_ne!(ckeys.kf, ckeys.kb);
        assert_ne!(reply[..20], x);
    }

    #[test]
    fn seeded_is_deterministic() {
        let (_, x1) = client1(&mut seeded_rng(5));
        let (_, x2) = client1(&mut seeded_rng(5));
        assert_eq!(x1, x2);
    }

    #[test]
    fn tampered_reply_fails() {
        let mut rng = seeded_rng(9);
        for i in 0..FAST_S_HANDSHAKE_LEN {
            let (state, x) = client1(&mut rng);
            let (_, mut reply) = server(&mut rng, &x).unwrap();
            reply[i] ^= 0x10;
            assert_eq!(client2(state, &reply), Err(HandshakeError::AuthFailed));
        }
    }

    #[test]
    fn truncated_or_long_messages_are_malformed() {
        let mut rng = seeded_rng(10);
        for len in [0, 19, 21, 40] {
            assert!(matches!(
                server(&mut rng, &vec![7u8; len]),
                Err(HandshakeError::Malformed(_))
            ));
        }
        let (state, x) = client1(&mut rng);
        let (_, reply) = server(&mut rng, &x).unwrap();
        assert!(matches!(
            client2(state, &reply[..39]),
            Err(HandshakeError::Malformed(_))
        ));
        let (state, _) = client1(&mut rng);
        let mut long = reply.to_vec();
        long.push(0);
        assert!(matches!(
            client2(state, &long),
            Err(HandshakeError::Malformed(_))
        ));
        let (state, _) = client1(&mut rng);
        assert!(matches!(
            client2(state, &[]),
            Err(HandshakeError::Malformed(_))
        ));
    }

    proptest::proptest! {
        #[test]
        fn prop_round_trip(x in proptest::prelude::any::<[u8; 20]>(), y in proptest::prelude::any::<[u8; 20]>()) {
            let (skeys, reply) = server_reply(&x, &y).unwrap();
            // Encode -> decode -> encode: the reply parses back to Y and KH.
            let (py, kh) = parse_reply(&reply).unwrap();
            proptest::prop_assert_eq!(py, y);
            proptest::prop_assert_eq!([py, kh].concat(), reply.to_vec());
            let ckeys = client2(FastClientState { x: Zeroizing::new(x) }, &reply).unwrap();
            proptest::prop_assert_eq!(ckeys, skeys);
        }

        #[test]
        fn prop_hostile_input_is_an_error(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            let mut rng = seeded_rng(0);
            if bytes.len() != FAST_C_HANDSHAKE_LEN {
                proptest::prop_assert!(server(&mut rng, &bytes).is_err());
            }
            let (state, _) = client1(&mut rng);
            proptest::prop_assert!(client2(state, &bytes).is_err());
        }
    }

    #[test]
    fn kdf_split_matches_kdf_tor() {
        let (kh, keys) = kdf_tor_keys(b"Tor").unwrap();
        let full = kdf_tor(b"Tor", 92).unwrap();
        assert_eq!(kh, full[..20]);
        assert_eq!(keys_bytes(&keys), full[20..92]);
        assert_eq!(check_kh(&kh, &kh), Ok(()));
        let mut bad = kh;
        bad[19] ^= 1;
        assert_eq!(check_kh(&kh, &bad), Err(HandshakeError::AuthFailed));
        assert_eq!(
            format!("{:?}", client1(&mut seeded_rng(1)).0),
            "FastClientState { .. }"
        );
    }
}
