//! The seed's CREATE_FAST_WS (cell 120) / CREATED_FAST_WS (cell 121): CREATE_FAST over a
//! WebSocket link that has no usable TLS (node-Tor README, "node-Tor OR and OP").
//!
//! ```text
//! client -> relay  CREATE_FAST_WS   RSA-OAEP-SHA1(onion key, X)           [128 bytes]
//! relay  -> client CREATED_FAST_WS  AES-128-CTR(X[0..16], 0 IV)(Y) | KH   [20 + 20 bytes]
//! K0 = X | Y;  KDF-TOR(K0) = KH | Df | Db | Kf | Kb   (exactly as CREATE_FAST)
//! ```
//!
//! The seed says only that "X (OP to OR) is encrypted with the public onion key of the OR and
//! Y (OR to OP) is encrypted with aes-128-ctr and the 16 first bytes of X". We read it as
//! above: the onion key is the relay's TAP key (RSA-1024, OAEP with SHA-1 and MGF1-SHA-1 as
//! everywhere in tor-spec §0.3), the AES IV is zero as for every tor-spec stream cipher, and
//! `KH` travels in clear as in CREATED_FAST: it is a hash of the key material, useless without
//! `X`. An observer of the link thus sees neither `X` nor `Y`. The relay is authenticated only
//! by its knowledge of the onion key (a wrong relay cannot produce a valid `KH`).

use rand_core::CryptoRng;
use rsa::{PrivateKey, PublicKey};
use zeroize::Zeroizing;

use super::fast::{FAST_S_HANDSHAKE_LEN, client_keys, parse_reply, random_value, server_reply};
use super::tap::{
    PK_ENC_LEN, aes_ctr_zero_iv, check_onion_key, check_onion_keys, oaep_decrypt_any, oaep_encrypt,
};
use super::{HandshakeError, HandshakeResult};
use crate::crypto::keys::{HASH_LEN, HopKeys, KEY_LEN};

/// Length of the client's CREATE_FAST_WS handshake data (the RSA-1024 ciphertext of X).
pub const FAST_WS_C_HANDSHAKE_LEN: usize = PK_ENC_LEN;
/// Length of the relay's CREATED_FAST_WS handshake data (encrypted Y | KH).
pub const FAST_WS_S_HANDSHAKE_LEN: usize = FAST_S_HANDSHAKE_LEN;

/// The AES key protecting `Y`: the first 16 bytes of `X`.
fn y_key(x: &[u8; HASH_LEN]) -> Zeroizing<[u8; KEY_LEN]> {
    let mut k = Zeroizing::new([0u8; KEY_LEN]);
    for (dst, src) in k.iter_mut().zip(x.iter()) {
        *dst = *src;
    }
    k
}

/// The client's secret between [`client1`] and [`client2`]: its key material `X`.
pub struct FastWsClientState {
    x: Zeroizing<[u8; HASH_LEN]>,
}

impl std::fmt::Debug for FastWsClientState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FastWsClientState { .. }")
    }
}

/// Client, step 1: choose `X` and encrypt it to the relay's TAP onion key (RSA-1024, else
/// [`HandshakeError::BadKey`]) for a CREATE_FAST_WS cell.
pub fn client1<R: CryptoRng + ?Sized>(
    rng: &mut R,
    onion_key: &PublicKey,
) -> HandshakeResult<(FastWsClientState, [u8; FAST_WS_C_HANDSHAKE_LEN])> {
    check_onion_key(onion_key)?;
    let x = random_value(rng);
    let msg = oaep_encrypt(rng, onion_key, x.as_slice())?;
    Ok((FastWsClientState { x }, msg))
}

/// Relay: decrypt `X` with the first of `keys` that works (current onion key, then the
/// previous one), answer `AES(Y) | KH` for a CREATED_FAST_WS cell, and return the hop's keys.
///
/// Errors: [`HandshakeError::BadKey`] (no key, or not RSA-1024/65537),
/// [`HandshakeError::Malformed`] (length, or a plaintext that is not 20 bytes),
/// [`HandshakeError::Decrypt`] (no key decrypts it).
pub fn server<R: CryptoRng + ?Sized>(
    rng: &mut R,
    keys: &[&PrivateKey],
    msg: &[u8],
) -> HandshakeResult<(HopKeys, [u8; FAST_WS_S_HANDSHAKE_LEN])> {
    check_onion_keys(keys)?;
    if msg.len() != FAST_WS_C_HANDSHAKE_LEN {
        return Err(HandshakeError::Malformed(
            "CREATE_FAST_WS data must be 128 bytes",
        ));
    }
    let plain = oaep_decrypt_any(rng, keys, msg)?;
    let x: &[u8; HASH_LEN] = plain
        .as_slice()
        .try_into()
        .map_err(|_| HandshakeError::Malformed("CREATE_FAST_WS: X must be 20 bytes"))?;
    let y = random_value(rng);
    server_reply_ws(x, &y)
}

/// The relay's keys and reply for known `X` and `Y`: CREATED_FAST's `Y | KH` with `Y`
/// encrypted.
fn server_reply_ws(
    x: &[u8; HASH_LEN],
    y: &[u8; HASH_LEN],
) -> HandshakeResult<(HopKeys, [u8; FAST_WS_S_HANDSHAKE_LEN])> {
    let (keys, mut reply) = server_reply(x, y)?;
    let y_part = reply
        .get_mut(..HASH_LEN)
        .ok_or(HandshakeError::Internal("CREATED_FAST_WS layout"))?;
    aes_ctr_zero_iv(&y_key(x), y_part);
    Ok((keys, reply))
}

/// Client, step 2: decrypt `Y`, check `KH` and derive the hop's keys from the relay's reply
/// (exactly [`FAST_WS_S_HANDSHAKE_LEN`] bytes).
pub fn client2(state: FastWsClientState, reply: &[u8]) -> HandshakeResult<HopKeys> {
    let (enc_y, kh) = parse_reply(reply)?;
    let mut y = Zeroizing::new(enc_y);
    aes_ctr_zero_iv(&y_key(&state.x), y.as_mut_slice());
    client_keys(&state.x, &y, &kh)
}

#[cfg(test)]
mod test {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::handshake::fast;
    use crate::handshake::tap::test::test_keys;
    use crate::testing::{seeded_rng, test_rng};

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    fn keys_bytes(k: &HopKeys) -> Vec<u8> {
        [&k.df[..], &k.db[..], &k.kf[..], &k.kb[..]].concat()
    }

    /// Cross-implementation vector, computed with Python (`cryptography` on OpenSSL for
    /// RSA-OAEP-SHA1 to tap's KEY_A and AES-128-CTR, `hashlib` for KDF-TOR):
    /// X = SHA-256("X")[..20], Y = SHA-256("Y")[..20].
    const X: &str = "4b68ab3847feda7d6c62c1fbcbeebfa35eab7351";
    const Y: &str = "18f5384d58bcb1bba0bcd9e6a6781d1a6ac2cc28";
    const MSG: &str = "c6df3c451bcb4ed0420d7d60a1de06de524dedb11c0e18e8401eb08e3650b00155559be7742a9589c3d72560f30e04b07d22e6afc5b6c4bf5082f2e4bf5b9212442cfc750a729808d8c3236d54074f4000fc340eedb47a2d455c996ac4cac6fc15dc1540282f3c0fb64f07d36f530195ffe2efc225e25a859239c3064e95bb18";
    const REPLY: &str =
        "6f2b0f1838de33086bf81c47892a7d24fd5ca105962fb0f90ef7fdc6f9c79df3f4cd2f519939ac6d";
    const KEYS: &str = "bf435b14ed38af8fae19311c38611970827dafa5ea715ae4647711eadd0cf72e125ffd9f44a90d7265f66bd1c811d3663ad6b041fdc0290d8589c97d27ec0e2cbf5c2d4e49208ac1";

    #[test]
    fn known_answer() {
        let (a, b, _) = test_keys();
        let mut rng = seeded_rng(1);
        let x: [u8; 20] = h(X).try_into().unwrap();
        let y: [u8; 20] = h(Y).try_into().unwrap();
        // The relay recovers X from OpenSSL's ciphertext, with the current or previous key.
        for keys in [vec![&a], vec![&b, &a]] {
            let plain = oaep_decrypt_any(&mut rng, &keys, &h(MSG)).unwrap();
            assert_eq!(plain.as_slice(), x);
        }
        let (skeys, reply) = server_reply_ws(&x, &y).unwrap();
        assert_eq!(reply.to_vec(), h(REPLY));
        assert_eq!(keys_bytes(&skeys), h(KEYS));
        let ckeys = client2(
            FastWsClientState {
                x: Zeroizing::new(x),
            },
            &h(REPLY),
        )
        .unwrap();
        assert_eq!(ckeys, skeys);
    }

    #[test]
    fn round_trip() {
        let (a, b, _) = test_keys();
        let mut rng = test_rng();
        for key in [&a, &b] {
            let (state, msg) = client1(&mut rng, key.as_public_key()).unwrap();
            let (skeys, reply) = server(&mut rng, &[&a, &b], &msg).unwrap();
            assert_eq!(client2(state, &reply).unwrap(), skeys);
        }
    }

    #[test]
    fn keys_are_create_fast_keys() {
        // Same X and Y give the same keys and KH as CREATE_FAST; only Y's encoding differs.
        let x: [u8; 20] = h(X).try_into().unwrap();
        let y: [u8; 20] = h(Y).try_into().unwrap();
        let (ws_keys, ws_reply) = server_reply_ws(&x, &y).unwrap();
        let (fast_keys, fast_reply) = fast::server_reply(&x, &y).unwrap();
        assert_eq!(ws_keys, fast_keys);
        assert_eq!(ws_reply[20..], fast_reply[20..]);
    }

    /// What a passive observer of the WebSocket sees reveals neither X nor Y.
    #[test]
    fn observer_cannot_read_x_or_y() {
        let (a, _, _) = test_keys();
        let mut rng = seeded_rng(2);
        let (state, msg) = client1(&mut rng, a.as_public_key()).unwrap();
        let x = *state.x;
        assert!(!msg.windows(HASH_LEN).any(|w| w == x));
        let (_, reply) = server(&mut rng, &[&a], &msg).unwrap();
        // Recover Y the way the client does, then compare with the plain CREATED_FAST layout.
        let mut y = [0u8; HASH_LEN];
        y.copy_from_slice(&reply[..HASH_LEN]);
        aes_ctr_zero_iv(&y_key(&x), &mut y);
        let (_, plain_layout) = fast::server_reply(&x, &y).unwrap();
        assert_ne!(reply[..HASH_LEN], plain_layout[..HASH_LEN]);
        assert_ne!(reply, plain_layout);
        // Decrypting with a key other than X's prefix does not give Y.
        let mut guess = [0u8; HASH_LEN];
        guess.copy_from_slice(&reply[..HASH_LEN]);
        aes_ctr_zero_iv(&[0u8; KEY_LEN], &mut guess);
        assert_ne!(guess, y);
        assert_eq!(client2(state, &reply).map(|_| ()), Ok(()));
    }

    #[test]
    fn wrong_onion_key_is_decrypt_error() {
        let (a, b, _) = test_keys();
        let mut rng = seeded_rng(3);
        let (_, msg) = client1(&mut rng, b.as_public_key()).unwrap();
        assert!(matches!(
            server(&mut rng, &[&a], &msg),
            Err(HandshakeError::Decrypt(_))
        ));
    }

    #[test]
    fn tampered_reply_fails_auth() {
        let (a, _, _) = test_keys();
        let mut rng = seeded_rng(4);
        for i in 0..FAST_WS_S_HANDSHAKE_LEN {
            let (state, msg) = client1(&mut rng, a.as_public_key()).unwrap();
            let (_, mut reply) = server(&mut rng, &[&a], &msg).unwrap();
            reply[i] ^= 0x04;
            assert_eq!(client2(state, &reply), Err(HandshakeError::AuthFailed));
        }
    }

    #[test]
    fn malformed_and_bad_keys() {
        let (a, _, big) = test_keys();
        let mut rng = seeded_rng(5);
        let (_, msg) = client1(&mut rng, a.as_public_key()).unwrap();
        for bad in [&msg[..0], &msg[..127], &[&msg[..], &[0u8][..]].concat()[..]] {
            assert!(matches!(
                server(&mut rng, &[&a], bad),
                Err(HandshakeError::Malformed(_))
            ));
        }
        // A plaintext that is not 20 bytes.
        for len in [0, 19, 21, 86] {
            let ct = oaep_encrypt(&mut rng, a.as_public_key(), &vec![3u8; len]).unwrap();
            assert!(matches!(
                server(&mut rng, &[&a], &ct),
                Err(HandshakeError::Malformed(_))
            ));
        }
        let (state, msg) = client1(&mut rng, a.as_public_key()).unwrap();
        let (_, reply) = server(&mut rng, &[&a], &msg).unwrap();
        assert!(matches!(
            client2(state, &reply[..39]),
            Err(HandshakeError::Malformed(_))
        ));
        assert!(matches!(
            client1(&mut rng, big.as_public_key()),
            Err(HandshakeError::BadKey(_))
        ));
        assert!(matches!(
            server(&mut rng, &[&big], &msg),
            Err(HandshakeError::BadKey(_))
        ));
        assert!(matches!(
            server(&mut rng, &[], &msg),
            Err(HandshakeError::BadKey(_))
        ));
        assert_eq!(
            format!("{:?}", client1(&mut rng, a.as_public_key()).unwrap().0),
            "FastWsClientState { .. }"
        );
    }
}
