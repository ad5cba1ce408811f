//! The ntor handshake (tor-spec §5.1.4; CREATE2 handshake type 2), client and server side.
//!
//! ```text
//! client -> relay:  ID (20) | B (32) | X (32)                    (84 bytes)
//! relay  -> client: Y (32) | AUTH (32)                           (64 bytes)
//!
//! secret_input = EXP(X,y) | EXP(X,b) | ID | B | X | Y | PROTOID
//! verify       = HMAC-SHA256(key = t_verify, secret_input)
//! auth_input   = verify | ID | B | Y | X | PROTOID | "Server"
//! AUTH         = HMAC-SHA256(key = t_mac, auth_input)
//! keys         = KDF-RFC5869(secret_input, salt = t_key, info = m_expand)
//!              = Df | Db | Kf | Kb | KH
//! ```
//!
//! Both sides refuse an all-zero X25519 output (a low-order peer value): see
//! [`HandshakeError::BadPublicValue`]. The relay may hold several onion keys (the current
//! one and the rotated-out ones it must still accept); it picks the one the client names by
//! `B`.
//!
//! Only the first [`HopKeys::LEN`] bytes of key material are derived: `KH`, the onion
//! service nonce that follows them, is not used for circuit extension.

use hmac::{Hmac, KeyInit, Mac};
use onion_cell::bytes::Reader;
use rand_core::CryptoRng;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use x25519_dalek::{PublicKey, SharedSecret, StaticSecret};
use zeroize::Zeroizing;

use super::{HandshakeError, HandshakeResult};
use crate::crypto::kdf::kdf_rfc5869;
use crate::crypto::keys::{HASH_LEN, HopKeys};

/// The ntor protocol identifier, `PROTOID`.
pub const PROTOID: &[u8] = b"ntor-curve25519-sha256-1";
/// `t_mac = PROTOID | ":mac"`.
const T_MAC: &[u8] = b"ntor-curve25519-sha256-1:mac";
/// `t_key = PROTOID | ":key_extract"`.
const T_KEY: &[u8] = b"ntor-curve25519-sha256-1:key_extract";
/// `t_verify = PROTOID | ":verify"`.
const T_VERIFY: &[u8] = b"ntor-curve25519-sha256-1:verify";
/// `m_expand = PROTOID | ":key_expand"`.
const M_EXPAND: &[u8] = b"ntor-curve25519-sha256-1:key_expand";

/// Length of a relay's RSA identity digest (`ID_LENGTH`).
pub const ID_LEN: usize = HASH_LEN;
/// Length of a Curve25519 public key (`G_LENGTH`).
pub const PUB_KEY_LEN: usize = 32;
/// Length of `AUTH` (`H_LENGTH`).
pub const AUTH_LEN: usize = 32;
/// Length of the client's handshake (`NTOR_ONIONSKIN_LEN`): `ID | B | X`.
pub const CLIENT_HANDSHAKE_LEN: usize = ID_LEN + 2 * PUB_KEY_LEN;
/// Length of the relay's reply (`NTOR_REPLY_LEN`): `Y | AUTH`.
pub const SERVER_HANDSHAKE_LEN: usize = PUB_KEY_LEN + AUTH_LEN;

/// What a client knows about a relay to run ntor with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NtorPublicKey {
    /// The relay's RSA identity digest (SHA-1 of its DER-encoded identity key).
    pub id: [u8; ID_LEN],
    /// The relay's ntor onion key `B`.
    pub pk: PublicKey,
}

/// One of a relay's ntor onion keys, with its public half.
#[derive(Clone)]
pub struct NtorSecretKey {
    /// The public half, as clients know it.
    pub pk: NtorPublicKey,
    /// The secret onion key `b`.
    pub sk: StaticSecret,
}

impl NtorSecretKey {
    /// Build the key pair of secret onion key `sk` for the relay whose identity digest is `id`.
    pub fn new(id: [u8; ID_LEN], sk: StaticSecret) -> Self {
        let pk = PublicKey::from(&sk);
        NtorSecretKey {
            pk: NtorPublicKey { id, pk },
            sk,
        }
    }

    /// Generate a fresh onion key for the relay whose identity digest is `id`.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R, id: [u8; ID_LEN]) -> Self {
        Self::new(id, StaticSecret::random_from_rng(rng))
    }
}

impl std::fmt::Debug for NtorSecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NtorSecretKey")
            .field("pk", &self.pk)
            .finish_non_exhaustive()
    }
}

/// What the client keeps between [`client1`] and [`client2`]. Its secret is wiped on drop.
pub struct NtorClientState {
    relay: NtorPublicKey,
    x: StaticSecret,
    x_pub: PublicKey,
}

impl std::fmt::Debug for NtorClientState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NtorClientState")
            .field("relay", &self.relay)
            .field("x_pub", &self.x_pub)
            .finish_non_exhaustive()
    }
}

/// Client, step 1: generate the ephemeral key pair `x, X` and the onion skin `ID | B | X`
/// for `relay`.
pub fn client1<R: CryptoRng + ?Sized>(
    rng: &mut R,
    relay: &NtorPublicKey,
) -> (NtorClientState, [u8; CLIENT_HANDSHAKE_LEN]) {
    client1_with_secret(StaticSecret::random_from_rng(rng), relay)
}

/// [`client1`] with a given ephemeral secret `x` (for known-answer tests).
fn client1_with_secret(
    x: StaticSecret,
    relay: &NtorPublicKey,
) -> (NtorClientState, [u8; CLIENT_HANDSHAKE_LEN]) {
    let x_pub = PublicKey::from(&x);
    let mut msg = [0u8; CLIENT_HANDSHAKE_LEN];
    for (dst, src) in msg.iter_mut().zip(
        relay
            .id
            .iter()
            .chain(relay.pk.as_bytes())
            .chain(x_pub.as_bytes()),
    ) {
        *dst = *src;
    }
    let state = NtorClientState {
        relay: relay.clone(),
        x,
        x_pub,
    };
    (state, msg)
}

/// Relay: answer the onion skin `msg` (`ID | B | X`) with one of `keys` (the current and
/// the still-accepted previous onion keys of this relay), chosen by the `B` in the message.
///
/// Returns the hop's keys and the reply `Y | AUTH`.
///
/// # Errors
///
/// [`HandshakeError::Malformed`] if `msg` is not 84 bytes; [`HandshakeError::Decrypt`] if
/// `B` is none of `keys` or `ID` is not the identity that key belongs to;
/// [`HandshakeError::BadPublicValue`] if `X` yields an all-zero shared secret.
pub fn server<R: CryptoRng + ?Sized>(
    rng: &mut R,
    keys: &[NtorSecretKey],
    msg: &[u8],
) -> HandshakeResult<(HopKeys, [u8; SERVER_HANDSHAKE_LEN])> {
    server_with_secret(StaticSecret::random_from_rng(rng), keys, msg)
}

/// [`server`] with a given ephemeral secret `y` (for known-answer tests).
fn server_with_secret(
    y: StaticSecret,
    keys: &[NtorSecretKey],
    msg: &[u8],
) -> HandshakeResult<(HopKeys, [u8; SERVER_HANDSHAKE_LEN])> {
    if msg.len() != CLIENT_HANDSHAKE_LEN {
        return Err(HandshakeError::Malformed("ntor onion skin is not 84 bytes"));
    }
    let mut r = Reader::new(msg);
    let truncated = |_| HandshakeError::Malformed("ntor onion skin is not 84 bytes");
    let id: [u8; ID_LEN] = r.take_array().map_err(truncated)?;
    let b_pub: [u8; PUB_KEY_LEN] = r.take_array().map_err(truncated)?;
    let x_pub = PublicKey::from(r.take_array::<PUB_KEY_LEN>().map_err(truncated)?);

    let key = keys
        .iter()
        .find(|k| k.pk.pk.as_bytes() == &b_pub)
        .ok_or(HandshakeError::Decrypt("unknown ntor onion key"))?;
    if key.pk.id != id {
        return Err(HandshakeError::Decrypt(
            "ntor onion skin is for another relay identity",
        ));
    }

    let y_pub = PublicKey::from(&y);
    let xy = y.diffie_hellman(&x_pub);
    let xb = key.sk.diffie_hellman(&x_pub);
    if !xy.was_contributory() || !xb.was_contributory() {
        return Err(HandshakeError::BadPublicValue(
            "ntor client key X gives an all-zero shared secret",
        ));
    }
    let (hop_keys, auth) = derive(&xy, &xb, &key.pk, &x_pub, &y_pub)?;

    let mut reply = [0u8; SERVER_HANDSHAKE_LEN];
    for (dst, src) in reply.iter_mut().zip(y_pub.as_bytes().iter().chain(&auth)) {
        *dst = *src;
    }
    Ok((hop_keys, reply))
}

/// Client, step 2: check the relay's reply `Y | AUTH` and derive the hop's keys.
///
/// # Errors
///
/// [`HandshakeError::Malformed`] if `reply` is not 64 bytes;
/// [`HandshakeError::BadPublicValue`] if `Y` (or the relay's `B`) yields an all-zero shared
/// secret; [`HandshakeError::AuthFailed`] if `AUTH` is wrong.
pub fn client2(state: NtorClientState, reply: &[u8]) -> HandshakeResult<HopKeys> {
    if reply.len() != SERVER_HANDSHAKE_LEN {
        return Err(HandshakeError::Malformed("ntor reply is not 64 bytes"));
    }
    let mut r = Reader::new(reply);
    let truncated = |_| HandshakeError::Malformed("ntor reply is not 64 bytes");
    let y_pub = PublicKey::from(r.take_array::<PUB_KEY_LEN>().map_err(truncated)?);
    let auth: [u8; AUTH_LEN] = r.take_array().map_err(truncated)?;

    let yx = state.x.diffie_hellman(&y_pub);
    let bx = state.x.diffie_hellman(&state.relay.pk);
    if !yx.was_contributory() {
        return Err(HandshakeError::BadPublicValue(
            "ntor relay key Y gives an all-zero shared secret",
        ));
    }
    if !bx.was_contributory() {
        return Err(HandshakeError::BadPublicValue(
            "ntor onion key B gives an all-zero shared secret",
        ));
    }
    let (hop_keys, expected) = derive(&yx, &bx, &state.relay, &state.x_pub, &y_pub)?;
    if bool::from(expected.ct_eq(&auth)) {
        Ok(hop_keys)
    } else {
        Err(HandshakeError::AuthFailed)
    }
}

/// HMAC-SHA256 with key `key` over the concatenation of `parts`.
fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> HandshakeResult<[u8; 32]> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .map_err(|_| HandshakeError::Internal("HMAC key rejected"))?;
    for p in parts {
        mac.update(p);
    }
    Ok(mac.finalize().into_bytes().into())
}

/// The common tail of both sides: from the two shared secrets (`EXP(X,y), EXP(X,b)` on the
/// relay, `EXP(Y,x), EXP(B,x)` on the client) compute the hop keys and the expected `AUTH`.
fn derive(
    dh1: &SharedSecret,
    dh2: &SharedSecret,
    relay: &NtorPublicKey,
    x_pub: &PublicKey,
    y_pub: &PublicKey,
) -> HandshakeResult<(HopKeys, [u8; AUTH_LEN])> {
    let parts: [&[u8]; 7] = [
        dh1.as_bytes(),
        dh2.as_bytes(),
        &relay.id,
        relay.pk.as_bytes(),
        x_pub.as_bytes(),
        y_pub.as_bytes(),
        PROTOID,
    ];
    let secret_input = Zeroizing::new(parts.concat());

    let okm = Zeroizing::new(
        kdf_rfc5869(&secret_input, T_KEY, M_EXPAND, HopKeys::LEN)
            .map_err(|_| HandshakeError::Internal("ntor KDF output too long"))?,
    );
    let okm: &[u8; HopKeys::LEN] = okm
        .as_slice()
        .try_into()
        .map_err(|_| HandshakeError::Internal("ntor KDF output has the wrong length"))?;
    let hop_keys = HopKeys::from_bytes(okm);

    let verify = Zeroizing::new(hmac_sha256(T_VERIFY, &[&secret_input])?);
    let auth = hmac_sha256(
        T_MAC,
        &[
            verify.as_slice(),
            &relay.id,
            relay.pk.as_bytes(),
            y_pub.as_bytes(),
            x_pub.as_bytes(),
            PROTOID,
            b"Server",
        ],
    )?;
    Ok((hop_keys, auth))
}

#[cfg(test)]
mod test {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::testing::{seeded_rng, test_rng};

    fn h<const N: usize>(s: &str) -> [u8; N] {
        let v = hex::decode(s).unwrap();
        v.try_into().unwrap()
    }

    fn relay(seed: u64) -> NtorSecretKey {
        NtorSecretKey::generate(&mut seeded_rng(seed), [seed as u8; ID_LEN])
    }

    /// Known-answer vector generated with C tor, as published in Arti's tor-proto
    /// (`crypto/handshake/ntor.rs`, test `testvec`).
    #[test]
    fn testvec() {
        let b_sk: [u8; 32] = h("4820544f4c4420594f5520444f474954204b454550532048415050454e494e47");
        let b_pk: [u8; 32] = h("ccbc8541904d18af08753eae967874749e6149f873de937f57f8fd903a21c471");
        let x_sk: [u8; 32] = h("706f6461792069207075742e2e2e2e2e2e2e2e4a454c4c59206f6e2074686973");
        let x_pk: [u8; 32] = h("e65dfdbef8b2635837fe2cebc086a8096eae3213e6830dc407516083d412b078");
        let y_sk: [u8; 32] = h("70686520737175697272656c2e2e2e2e2e2e2e2e686173206869732067616d65");
        let y_pk: [u8; 32] = h("390480a14362761d6aec1fea840f6e9e928fb2adb7b25c670be1045e35133a37");
        let id: [u8; 20] = h("69546f6c64596f7541626f75745374616972732e");
        let client_handshake: [u8; 84] = h(concat!(
            "69546f6c64596f7541626f75745374616972732e",
            "ccbc8541904d18af08753eae967874749e6149f873de937f57f8fd903a21c471",
            "e65dfdbef8b2635837fe2cebc086a8096eae3213e6830dc407516083d412b078"
        ));
        let server_handshake: [u8; 64] = h(concat!(
            "390480a14362761d6aec1fea840f6e9e928fb2adb7b25c670be1045e35133a37",
            "1cbdf68b89923e1f85e8e18ee6e805ea333fe4849c790ffd2670bd80fec95cc8"
        ));
        let keys: [u8; 72] = h(concat!(
            "0c62dee7f48893370d0ef896758d35729867beef1a5121df80e00f79ed349af3",
            "9b51cae125719182f19d932a667dae1afbf2e336e6910e7822223e763afad0a1",
            "3342157969dc6b79"
        ));

        let relay_sk = NtorSecretKey::new(id, StaticSecret::from(b_sk));
        assert_eq!(relay_sk.pk.pk.as_bytes(), &b_pk);
        let x = StaticSecret::from(x_sk);
        assert_eq!(PublicKey::from(&x).as_bytes(), &x_pk);
        let y = StaticSecret::from(y_sk);
        assert_eq!(PublicKey::from(&y).as_bytes(), &y_pk);

        let (state, create) = client1_with_secret(x, &relay_sk.pk);
        assert_eq!(create, client_handshake);

        let (s_keys, created) = server_with_secret(y, &[relay_sk], &create).unwrap();
        assert_eq!(created, server_handshake);
        assert_eq!(s_keys, HopKeys::from_bytes(&keys));

        let c_keys = client2(state, &created).unwrap();
        assert_eq!(c_keys, HopKeys::from_bytes(&keys));
    }

    #[test]
    fn round_trip() {
        let mut rng = test_rng();
        let k = relay(1);
        for _ in 0..4 {
            let (st, m1) = client1(&mut rng, &k.pk);
            let (sk, m2) = server(&mut rng, std::slice::from_ref(&k), &m1).unwrap();
            assert_eq!(client2(st, &m2).unwrap(), sk);
        }
    }

    #[test]
    fn picks_key_by_b() {
        let mut rng = seeded_rng(7);
        let cur = relay(2);
        let old = NtorSecretKey::generate(&mut rng, cur.pk.id);
        let keys = [cur.clone(), old.clone()];
        for k in [&cur, &old] {
            let (st, m1) = client1(&mut rng, &k.pk);
            let (sk, m2) = server(&mut rng, &keys, &m1).unwrap();
            assert_eq!(client2(st, &m2).unwrap(), sk);
        }
    }

    #[test]
    fn different_handshakes_different_keys() {
        let mut rng = seeded_rng(3);
        let k = relay(3);
        let (_, m1) = client1(&mut rng, &k.pk);
        let (a, _) = server(&mut rng, std::slice::from_ref(&k), &m1).unwrap();
        let (b, _) = server(&mut rng, std::slice::from_ref(&k), &m1).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn tampered_reply_fails_auth() {
        let mut rng = seeded_rng(4);
        let k = relay(4);
        for i in [0, 31, 32, 63] {
            let (st, m1) = client1(&mut rng, &k.pk);
            let (_, mut m2) = server(&mut rng, std::slice::from_ref(&k), &m1).unwrap();
            m2[i] ^= 0x40;
            assert_eq!(client2(st, &m2), Err(HandshakeError::AuthFailed));
        }
    }

    #[test]
    fn wrong_relay_key_fails_auth() {
        // The client believes in another key B' for this relay: the relay cannot answer,
        // and a reply made with the real key does not authenticate.
        let mut rng = seeded_rng(5);
        let k = relay(5);
        let other = relay(6);
        let fake = NtorPublicKey {
            id: k.pk.id,
            pk: other.pk.pk,
        };
        let (st, m1) = client1(&mut rng, &fake);
        assert_eq!(
            server(&mut rng, std::slice::from_ref(&k), &m1).map(|_| ()),
            Err(HandshakeError::Decrypt("unknown ntor onion key"))
        );
        let (_, m1_real) = client1(&mut rng, &k.pk);
        let (_, m2) = server(&mut rng, std::slice::from_ref(&k), &m1_real).unwrap();
        assert_eq!(client2(st, &m2), Err(HandshakeError::AuthFailed));
    }

    #[test]
    fn wrong_identity_rejected() {
        let mut rng = seeded_rng(8);
        let k = relay(8);
        let fake = NtorPublicKey {
            id: [0xee; ID_LEN],
            pk: k.pk.pk,
        };
        let (_, m1) = client1(&mut rng, &fake);
        assert!(matches!(
            server(&mut rng, &[k], &m1),
            Err(HandshakeError::Decrypt(_))
        ));
    }

    #[test]
    fn no_keys_rejected() {
        let mut rng = seeded_rng(9);
        let (_, m1) = client1(&mut rng, &relay(9).pk);
        assert_eq!(
            server(&mut rng, &[], &m1).map(|_| ()),
            Err(HandshakeError::Decrypt("unknown ntor onion key"))
        );
    }

    /// Low-order points: 0 and 1 (and other small-order u-coordinates) make the X25519
    /// output all-zero.
    fn low_order_points() -> [[u8; 32]; 2] {
        let mut one = [0u8; 32];
        one[0] = 1;
        [[0u8; 32], one]
    }

    #[test]
    fn zero_client_point_rejected() {
        let mut rng = seeded_rng(10);
        let k = relay(10);
        for p in low_order_points() {
            let mut m1 = [0u8; CLIENT_HANDSHAKE_LEN];
            m1[..20].copy_from_slice(&k.pk.id);
            m1[20..52].copy_from_slice(k.pk.pk.as_bytes());
            m1[52..].copy_from_slice(&p);
            assert!(matches!(
                server(&mut rng, std::slice::from_ref(&k), &m1),
                Err(HandshakeError::BadPublicValue(_))
            ));
        }
    }

    #[test]
    fn zero_server_point_rejected() {
        let mut rng = seeded_rng(11);
        let k = relay(11);
        for p in low_order_points() {
            let (st, m1) = client1(&mut rng, &k.pk);
            let (_, mut m2) = server(&mut rng, std::slice::from_ref(&k), &m1).unwrap();
            m2[..32].copy_from_slice(&p);
            assert!(matches!(
                client2(st, &m2),
                Err(HandshakeError::BadPublicValue(_))
            ));
        }
    }

    #[test]
    fn zero_onion_key_rejected_by_client() {
        let mut rng = seeded_rng(12);
        let k = relay(12);
        let bad = NtorPublicKey {
            id: k.pk.id,
            pk: PublicKey::from([0u8; 32]),
        };
        let (st, _) = client1(&mut rng, &bad);
        let (_, m1) = client1(&mut rng, &k.pk);
        let (_, m2) = server(&mut rng, &[k], &m1).unwrap();
        assert!(matches!(
            client2(st, &m2),
            Err(HandshakeError::BadPublicValue(_))
        ));
    }

    #[test]
    fn wrong_lengths_malformed() {
        let mut rng = seeded_rng(13);
        let k = relay(13);
        let (st, m1) = client1(&mut rng, &k.pk);
        for len in [0, 20, 83] {
            assert!(matches!(
                server(&mut rng, std::slice::from_ref(&k), &m1[..len]),
                Err(HandshakeError::Malformed(_))
            ));
        }
        let mut long = m1.to_vec();
        long.push(0);
        assert!(matches!(
            server(&mut rng, std::slice::from_ref(&k), &long),
            Err(HandshakeError::Malformed(_))
        ));

        let (_, m2) = server(&mut rng, std::slice::from_ref(&k), &m1).unwrap();
        let mut long = m2.to_vec();
        long.push(0);
        for bad in [&m2[..63], &m2[..0], &long[..]] {
            let (st2, _) = client1(&mut rng, &k.pk);
            assert!(matches!(
                client2(st2, bad),
                Err(HandshakeError::Malformed(_))
            ));
        }
        assert_eq!(client2(st, &m2).map(|_| ()), Ok(()));
    }

    #[test]
    fn debug_hides_secrets() {
        let k = relay(14);
        let s = format!("{k:?}");
        assert!(!s.contains(&format!("{:?}", k.sk.as_bytes())));
        let (st, _) = client1(&mut seeded_rng(1), &k.pk);
        assert!(format!("{st:?}").starts_with("NtorClientState"));
    }
}
