//! The ntor-v3 handshake proper (proposal 332 with the §A.1 instantiation): see the parent
//! module for the construction.

use aes::Aes256;
use cipher::{KeyIvInit, StreamCipher};
use ctr::Ctr128BE;
use digest::{ExtendableOutput, FixedOutput, Update, XofReader};
use onion_cell::bytes::Reader;
use rand_core::CryptoRng;
use sha3::Sha3_256;
use shake::{Shake256, Shake256Reader};
use subtle::ConstantTimeEq;
use x25519_dalek::{PublicKey, SharedSecret, StaticSecret};
use zeroize::Zeroizing;

use super::{
    CLIENT_HANDSHAKE_OVERHEAD, ID_LEN, MAC_LEN, NtorV3PublicKey, NtorV3SecretKey, PROTOID,
    PUB_KEY_LEN, SERVER_HANDSHAKE_OVERHEAD,
};
use crate::crypto::keys::HopKeys;
use crate::handshake::{HandshakeError, HandshakeResult};

/// `t_msgkdf = PROTOID | ":kdf_phase1"`.
const T_MSGKDF: &[u8] = b"ntor3-curve25519-sha3_256-1:kdf_phase1";
/// `t_msgmac = PROTOID | ":msg_mac"`.
const T_MSGMAC: &[u8] = b"ntor3-curve25519-sha3_256-1:msg_mac";
/// `t_key_seed = PROTOID | ":key_seed"`.
const T_KEY_SEED: &[u8] = b"ntor3-curve25519-sha3_256-1:key_seed";
/// `t_verify = PROTOID | ":verify"`.
const T_VERIFY: &[u8] = b"ntor3-curve25519-sha3_256-1:verify";
/// `t_final = PROTOID | ":kdf_final"`.
const T_FINAL: &[u8] = b"ntor3-curve25519-sha3_256-1:kdf_final";
/// `t_auth = PROTOID | ":auth_final"`.
const T_AUTH: &[u8] = b"ntor3-curve25519-sha3_256-1:auth_final";

/// `ENC_KEY_LEN = MAC_KEY_LEN = DIGEST_LEN = 32`.
const KEY_LEN: usize = 32;

/// A 32-byte secret, wiped on drop.
type Secret32 = Zeroizing<[u8; KEY_LEN]>;

/// What the client keeps between [`client1`] and [`client2`]. Its secrets are wiped on
/// drop.
pub struct NtorV3ClientState {
    relay: NtorV3PublicKey,
    x: StaticSecret,
    x_pub: PublicKey,
    bx: SharedSecret,
    msg_mac: [u8; MAC_LEN],
}

impl std::fmt::Debug for NtorV3ClientState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NtorV3ClientState")
            .field("relay", &self.relay)
            .field("x_pub", &self.x_pub)
            .finish_non_exhaustive()
    }
}

/// Client, step 1: encrypt and MAC `client_msg` for `relay` and build the onion skin
/// `ID | B | X | ENC(CM) | MAC`, binding `verification` (for circuit extension:
/// [`CIRCUIT_EXTEND_VERIFICATION`](super::CIRCUIT_EXTEND_VERIFICATION)).
///
/// # Errors
///
/// [`HandshakeError::BadPublicValue`] if the relay's onion key `B` yields an all-zero shared
/// secret (a low-order point: a bogus descriptor).
pub fn client1<R: CryptoRng + ?Sized>(
    rng: &mut R,
    relay: &NtorV3PublicKey,
    client_msg: &[u8],
    verification: &[u8],
) -> HandshakeResult<(NtorV3ClientState, Vec<u8>)> {
    client1_with_secret(
        StaticSecret::random_from_rng(rng),
        relay,
        client_msg,
        verification,
    )
}

/// [`client1`] with a given ephemeral secret `x` (for known-answer tests).
fn client1_with_secret(
    x: StaticSecret,
    relay: &NtorV3PublicKey,
    client_msg: &[u8],
    verification: &[u8],
) -> HandshakeResult<(NtorV3ClientState, Vec<u8>)> {
    let x_pub = PublicKey::from(&x);
    let bx = x.diffie_hellman(&relay.pk);
    if !bx.was_contributory() {
        return Err(HandshakeError::BadPublicValue(
            "ntor-v3 onion key B gives an all-zero shared secret",
        ));
    }
    let (enc_k1, mac_k1) = phase1_keys(&bx, &relay.id, &relay.pk, &x_pub, verification);
    let mut encrypted = client_msg.to_vec();
    aes256_ctr(&enc_k1, &mut encrypted);
    let msg_mac = msg_mac(&mac_k1, &relay.id, &relay.pk, &x_pub, &encrypted);

    let mut out = Vec::with_capacity(CLIENT_HANDSHAKE_OVERHEAD + encrypted.len());
    out.extend_from_slice(&relay.id);
    out.extend_from_slice(relay.pk.as_bytes());
    out.extend_from_slice(x_pub.as_bytes());
    out.extend_from_slice(&encrypted);
    out.extend_from_slice(&msg_mac);
    let state = NtorV3ClientState {
        relay: relay.clone(),
        x,
        x_pub,
        bx,
        msg_mac,
    };
    Ok((state, out))
}

/// Relay: answer the onion skin `msg` with one of `keys` (the current and the
/// still-accepted previous onion keys of this relay), chosen by the `B` in the message.
///
/// Once the client's message `CM` is authenticated and decrypted, `reply_fn(CM)` gives the
/// relay's message `SM`, or `None` to refuse the handshake (e.g. `CM` is not a valid
/// extension list, see [`decode_extensions`](super::decode_extensions)).
///
/// Returns the hop's keys, the reply `Y | AUTH | ENC(SM)`, and `CM`.
///
/// # Errors
///
/// [`HandshakeError::Malformed`] if `msg` is shorter than 128 bytes or `reply_fn` refuses
/// `CM`; [`HandshakeError::Decrypt`] if `B` is none of `keys` or `ID` is not the identity
/// that key belongs to; [`HandshakeError::BadPublicValue`] if `X` yields an all-zero shared
/// secret; [`HandshakeError::AuthFailed`] if the message MAC is wrong (which includes a
/// different verification string).
pub fn server<R, F>(
    rng: &mut R,
    keys: &[NtorV3SecretKey],
    msg: &[u8],
    verification: &[u8],
    reply_fn: F,
) -> HandshakeResult<(HopKeys, Vec<u8>, Vec<u8>)>
where
    R: CryptoRng + ?Sized,
    F: FnOnce(&[u8]) -> Option<Vec<u8>>,
{
    server_with_secret(
        StaticSecret::random_from_rng(rng),
        keys,
        msg,
        verification,
        reply_fn,
    )
}

/// [`server`] with a given ephemeral secret `y` (for known-answer tests).
fn server_with_secret<F>(
    y: StaticSecret,
    keys: &[NtorV3SecretKey],
    msg: &[u8],
    verification: &[u8],
    reply_fn: F,
) -> HandshakeResult<(HopKeys, Vec<u8>, Vec<u8>)>
where
    F: FnOnce(&[u8]) -> Option<Vec<u8>>,
{
    const SHORT: HandshakeError = HandshakeError::Malformed("ntor-v3 onion skin too short");
    let cm_len = msg
        .len()
        .checked_sub(CLIENT_HANDSHAKE_OVERHEAD)
        .ok_or(SHORT)?;
    let mut r = Reader::new(msg);
    let id: [u8; ID_LEN] = r.take_array().map_err(|_| SHORT)?;
    let b_pub: [u8; PUB_KEY_LEN] = r.take_array().map_err(|_| SHORT)?;
    let x_pub = PublicKey::from(r.take_array::<PUB_KEY_LEN>().map_err(|_| SHORT)?);
    let encrypted_cm = r.take(cm_len).map_err(|_| SHORT)?;
    let mac: [u8; MAC_LEN] = r.take_array().map_err(|_| SHORT)?;

    let key = keys
        .iter()
        .find(|k| k.pk.pk.as_bytes() == &b_pub)
        .ok_or(HandshakeError::Decrypt("unknown ntor-v3 onion key"))?;
    if key.pk.id != id {
        return Err(HandshakeError::Decrypt(
            "ntor-v3 onion skin is for another relay identity",
        ));
    }
    let relay = &key.pk;

    let xb = key.sk.diffie_hellman(&x_pub);
    if !xb.was_contributory() {
        return Err(HandshakeError::BadPublicValue(
            "ntor-v3 client key X gives an all-zero shared secret",
        ));
    }
    let (enc_k1, mac_k1) = phase1_keys(&xb, &relay.id, &relay.pk, &x_pub, verification);
    let expected = msg_mac(&mac_k1, &relay.id, &relay.pk, &x_pub, encrypted_cm);
    if !bool::from(expected.ct_eq(&mac)) {
        return Err(HandshakeError::AuthFailed);
    }
    let mut cm = encrypted_cm.to_vec();
    aes256_ctr(&enc_k1, &mut cm);

    let mut sm = reply_fn(&cm).ok_or(HandshakeError::Malformed(
        "ntor-v3 client message refused by the relay",
    ))?;

    let y_pub = PublicKey::from(&y);
    let xy = y.diffie_hellman(&x_pub);
    if !xy.was_contributory() {
        return Err(HandshakeError::BadPublicValue(
            "ntor-v3 client key X gives an all-zero shared secret",
        ));
    }
    let (key_seed, verify) = phase2(&xy, &xb, relay, &x_pub, &y_pub, verification);
    let (enc_key, hop_keys) = final_keys(&key_seed);
    aes256_ctr(&enc_key, &mut sm);
    let auth = auth(&verify, relay, &x_pub, &y_pub, &mac, &sm);

    let mut reply = Vec::with_capacity(SERVER_HANDSHAKE_OVERHEAD + sm.len());
    reply.extend_from_slice(y_pub.as_bytes());
    reply.extend_from_slice(&auth);
    reply.extend_from_slice(&sm);
    Ok((hop_keys, reply, cm))
}

/// Client, step 2: check the relay's reply `Y | AUTH | ENC(SM)` against the same
/// `verification` as in [`client1`], and return the relay's message `SM` and the hop's keys.
///
/// # Errors
///
/// [`HandshakeError::Malformed`] if `reply` is shorter than 64 bytes;
/// [`HandshakeError::BadPublicValue`] if `Y` yields an all-zero shared secret;
/// [`HandshakeError::AuthFailed`] if `AUTH` is wrong.
pub fn client2(
    state: NtorV3ClientState,
    reply: &[u8],
    verification: &[u8],
) -> HandshakeResult<(Vec<u8>, HopKeys)> {
    const SHORT: HandshakeError = HandshakeError::Malformed("ntor-v3 reply too short");
    if reply.len() < SERVER_HANDSHAKE_OVERHEAD {
        return Err(SHORT);
    }
    let mut r = Reader::new(reply);
    let y_pub = PublicKey::from(r.take_array::<PUB_KEY_LEN>().map_err(|_| SHORT)?);
    let auth_got: [u8; MAC_LEN] = r.take_array().map_err(|_| SHORT)?;
    let encrypted_sm = r.take_rest();

    let yx = state.x.diffie_hellman(&y_pub);
    if !yx.was_contributory() {
        return Err(HandshakeError::BadPublicValue(
            "ntor-v3 relay key Y gives an all-zero shared secret",
        ));
    }
    let (key_seed, verify) = phase2(
        &yx,
        &state.bx,
        &state.relay,
        &state.x_pub,
        &y_pub,
        verification,
    );
    let expected = auth(
        &verify,
        &state.relay,
        &state.x_pub,
        &y_pub,
        &state.msg_mac,
        encrypted_sm,
    );
    if !bool::from(expected.ct_eq(&auth_got)) {
        return Err(HandshakeError::AuthFailed);
    }
    let (enc_key, hop_keys) = final_keys(&key_seed);
    let mut sm = encrypted_sm.to_vec();
    aes256_ctr(&enc_key, &mut sm);
    Ok((sm, hop_keys))
}

/// The big-endian 64-bit length prefix of `ENCAP(s)`.
fn encap_len(s: &[u8]) -> [u8; 8] {
    (s.len() as u64).to_be_bytes()
}

/// `H(parts..., t) = SHA3-256(ENCAP(t) | parts...)`.
fn hash(t: &[u8], parts: &[&[u8]]) -> [u8; KEY_LEN] {
    let mut h = Sha3_256::default();
    h.update(&encap_len(t));
    h.update(t);
    for p in parts {
        h.update(p);
    }
    h.finalize_fixed().into()
}

/// `MAC(k, parts..., t) = SHA3-256(ENCAP(t) | ENCAP(k) | parts...)`.
fn mac(k: &[u8], t: &[u8], parts: &[&[u8]]) -> [u8; MAC_LEN] {
    let mut h = Sha3_256::default();
    h.update(&encap_len(t));
    h.update(t);
    h.update(&encap_len(k));
    h.update(k);
    for p in parts {
        h.update(p);
    }
    h.finalize_fixed().into()
}

/// `KDF(parts..., t) = SHAKE-256(ENCAP(t) | parts...)`, as a keystream reader.
fn kdf(t: &[u8], parts: &[&[u8]]) -> Shake256Reader {
    let mut x = Shake256::default();
    x.update(&encap_len(t));
    x.update(t);
    for p in parts {
        x.update(p);
    }
    x.finalize_xof()
}

/// Read the next 32 bytes of a keystream.
fn read_key(r: &mut Shake256Reader) -> Secret32 {
    let mut k = Zeroizing::new([0u8; KEY_LEN]);
    r.read(k.as_mut_slice());
    k
}

/// `ENC(k, buf)` = `DEC(k, buf)`: AES-256-CTR with a zero IV, in place.
fn aes256_ctr(key: &[u8; KEY_LEN], buf: &mut [u8]) {
    let mut c = Ctr128BE::<Aes256>::new(key.into(), &[0u8; 16].into());
    c.apply_keystream(buf);
}

/// `ENC_K1 | MAC_K1 = KDF_msgkdf(Bx | ID | X | B | PROTOID | ENCAP(VER))`.
fn phase1_keys(
    bx: &SharedSecret,
    id: &[u8; ID_LEN],
    b_pub: &PublicKey,
    x_pub: &PublicKey,
    ver: &[u8],
) -> (Secret32, Secret32) {
    let mut r = kdf(
        T_MSGKDF,
        &[
            bx.as_bytes(),
            id,
            x_pub.as_bytes(),
            b_pub.as_bytes(),
            PROTOID,
            &encap_len(ver),
            ver,
        ],
    );
    let enc_k1 = read_key(&mut r);
    let mac_k1 = read_key(&mut r);
    (enc_k1, mac_k1)
}

/// `MAC_msgmac(MAC_K1, ID | B | X | encrypted_msg)`.
fn msg_mac(
    mac_k1: &[u8; KEY_LEN],
    id: &[u8; ID_LEN],
    b_pub: &PublicKey,
    x_pub: &PublicKey,
    encrypted: &[u8],
) -> [u8; MAC_LEN] {
    mac(
        mac_k1,
        T_MSGMAC,
        &[id, b_pub.as_bytes(), x_pub.as_bytes(), encrypted],
    )
}

/// `key_seed` and `verify` from `secret_input = dh1 | dh2 | ID | B | X | Y | PROTOID |
/// ENCAP(VER)` (relay: `Xy, Xb`; client: `Yx, Bx`).
fn phase2(
    dh1: &SharedSecret,
    dh2: &SharedSecret,
    relay: &NtorV3PublicKey,
    x_pub: &PublicKey,
    y_pub: &PublicKey,
    ver: &[u8],
) -> (Secret32, Secret32) {
    let ver_len = encap_len(ver);
    let secret_input: [&[u8]; 9] = [
        dh1.as_bytes(),
        dh2.as_bytes(),
        &relay.id,
        relay.pk.as_bytes(),
        x_pub.as_bytes(),
        y_pub.as_bytes(),
        PROTOID,
        &ver_len,
        ver,
    ];
    let key_seed = Zeroizing::new(hash(T_KEY_SEED, &secret_input));
    let verify = Zeroizing::new(hash(T_VERIFY, &secret_input));
    (key_seed, verify)
}

/// `KDF_final(key_seed)`, positioned at its start (`ENC_KEY`).
fn final_stream(key_seed: &[u8; KEY_LEN]) -> Shake256Reader {
    kdf(T_FINAL, &[key_seed])
}

/// `ENC_KEY` and the hop keys `Df | Db | Kf | Kb` that follow it in `KDF_final(key_seed)`.
fn final_keys(key_seed: &[u8; KEY_LEN]) -> (Secret32, HopKeys) {
    let mut r = final_stream(key_seed);
    let enc_key = read_key(&mut r);
    let mut material = Zeroizing::new([0u8; HopKeys::LEN]);
    r.read(material.as_mut_slice());
    (enc_key, HopKeys::from_bytes(&material))
}

/// `AUTH = H_auth(verify | ID | B | Y | X | MAC | ENCAP(encrypted_msg) | PROTOID |
/// "Server")`.
fn auth(
    verify: &[u8; KEY_LEN],
    relay: &NtorV3PublicKey,
    x_pub: &PublicKey,
    y_pub: &PublicKey,
    msg_mac: &[u8; MAC_LEN],
    encrypted_sm: &[u8],
) -> [u8; MAC_LEN] {
    hash(
        T_AUTH,
        &[
            verify,
            &relay.id,
            relay.pk.as_bytes(),
            y_pub.as_bytes(),
            x_pub.as_bytes(),
            msg_mac,
            &encap_len(encrypted_sm),
            encrypted_sm,
            PROTOID,
            b"Server",
        ],
    )
}

#[cfg(test)]
mod test {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::super::{
        CIRCUIT_EXTEND_VERIFICATION, NtorV3Extension, decode_extensions, encode_extensions,
    };
    use super::*;
    use crate::testing::{seeded_rng, test_rng};

    fn h<const N: usize>(s: &str) -> [u8; N] {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    fn relay(seed: u64) -> NtorV3SecretKey {
        NtorV3SecretKey::generate(&mut seeded_rng(seed), [seed as u8; ID_LEN])
    }

    /// Proposal 332 Appendix X.2 (also C tor's `test_ntor3_testvecs`).
    mod x2 {
        pub const B_SK: &str = "4051daa5921cfa2a1c27b08451324919538e79e788a81b38cbed097a5dff454a";
        pub const B_PK: &str = "f8307a2bc1870b00b828bb74dbb8fd88e632a6375ab3bcd1ae706aaa8b6cdd1d";
        pub const ID: &str = "9fad2af287ef942632833d21f946c6260c33fae6172b60006e86e4a6911753a2";
        pub const X_SK: &str = "b825a3719147bcbe5fb1d0b0fcb9c09e51948048e2e3283d2ab7b45b5ef38b49";
        pub const X_PK: &str = "252fe9ae91264c91d4ecb8501f79d0387e34ad8ca0f7c995184f7d11d5da4f46";
        pub const CM: &str = "68656c6c6f20776f726c64";
        pub const VER: &str = "78797a7a79";
        pub const Y_SK: &str = "4865a5b7689dafd978f529291c7171bc159be076b92186405d13220b80e2a053";
        pub const Y_PK: &str = "4bf4814326fdab45ad5184f5518bd7fae25dc59374062698201a50a22954246d";
        pub const SM: &str = "486f6c61204d756e646f";

        pub const ENC_K1: &str = "4cd166e93f1c60a29f8fb9ec40ea0fc878930c27800594593e1c4d0f3b5fbd02";
        pub const MAC_K1: &str = "f5b69e85fdd26e1b0bdbbc8128e32d8123040255f11f744af3cc98fc13613cda";
        pub const MSG_MAC: &str =
            "9e044d53565f04d82bbb3bebed3d06cea65db8be9c72b68cd461942088502f67";
        pub const KEY_SEED: &str =
            "b9a092741098e1f5b8ab37ce74399dd57522c974d7ae4626283a1077b9273255";
        pub const VERIFY: &str = "1dc09fb249738a79f1bc3a545eee8c415f27213894a760bb4df58862e414799a";
        pub const ENC_KEY: &str =
            "cab8a93eef62246a83536c4384f331ec26061b66098c61421b6cae81f4f57c56";
        pub const AUTH: &str = "2fc5f8773ca824542bc6cf6f57c7c29bbf4e5476461ab130c5b18ab0a9127665";

        pub const CLIENT_HANDSHAKE: &str = concat!(
            "9fad2af287ef942632833d21f946c6260c33fae6172b60006e86e4a6911753a2",
            "f8307a2bc1870b00b828bb74dbb8fd88e632a6375ab3bcd1ae706aaa8b6cdd1d",
            "252fe9ae91264c91d4ecb8501f79d0387e34ad8ca0f7c995184f7d11d5da4f46",
            "3bebd9151fd3b47c180abc",
            "9e044d53565f04d82bbb3bebed3d06cea65db8be9c72b68cd461942088502f67"
        );
        pub const SERVER_HANDSHAKE: &str = concat!(
            "4bf4814326fdab45ad5184f5518bd7fae25dc59374062698201a50a22954246d",
            "2fc5f8773ca824542bc6cf6f57c7c29bbf4e5476461ab130c5b18ab0a9127665",
            "1202c3e1e87c0d32054c"
        );
        pub const KEYSTREAM: &str = concat!(
            "9c19b631fd94ed86a817e01f6c80b0743a43f5faebd39cfaa8b00fa8bcc65c3b",
            "feaa403d91acbd68a821bf6ee8504602b094a254392a07737d5662768c7a9fb1",
            "b2814bb34780eaee6e867c773e28c212ead563e98a1cd5d5b4576f5ee61c59bd",
            "e025ff2851bb19b721421694f263818e3531e43a9e4e3e2c661e2ad547d8984c",
            "aa28ebecd3e4525452299be26b9185a20a90ce1eac20a91f2832d731b54502b0",
            "9749b5a2a2949292f8cfcbeffb790c7790ed935a9d251e7e336148ea83b063a5",
            "618fcff674a44581585fd22077ca0e52c59a24347a38d1a1ceebddbf238541f2",
            "26b8f88d0fb9c07a1bcd2ea764bbbb5dacdaf5312a14c0b9e4f06309b0333b4a"
        );
    }

    fn x2_relay() -> NtorV3SecretKey {
        NtorV3SecretKey::new(h(x2::ID), StaticSecret::from(h::<32>(x2::B_SK)))
    }

    /// The full exchange of proposal 332 §X.2: messages and key material.
    #[test]
    fn prop332_x2_messages() {
        let relay = x2_relay();
        assert_eq!(relay.pk.pk.as_bytes(), &h::<32>(x2::B_PK));
        let x = StaticSecret::from(h::<32>(x2::X_SK));
        assert_eq!(PublicKey::from(&x).as_bytes(), &h::<32>(x2::X_PK));
        let y = StaticSecret::from(h::<32>(x2::Y_SK));
        assert_eq!(PublicKey::from(&y).as_bytes(), &h::<32>(x2::Y_PK));
        let cm = hex::decode(x2::CM).unwrap();
        let sm = hex::decode(x2::SM).unwrap();
        let ver = hex::decode(x2::VER).unwrap();

        let (state, onion_skin) = client1_with_secret(x, &relay.pk, &cm, &ver).unwrap();
        assert_eq!(hex::encode(&onion_skin), x2::CLIENT_HANDSHAKE);

        let mut seen_cm = None;
        let (s_keys, created, got_cm) =
            server_with_secret(y, std::slice::from_ref(&relay), &onion_skin, &ver, |m| {
                seen_cm = Some(m.to_vec());
                Some(sm.clone())
            })
            .unwrap();
        assert_eq!(seen_cm.as_deref(), Some(&cm[..]));
        assert_eq!(got_cm, cm);
        assert_eq!(hex::encode(&created), x2::SERVER_HANDSHAKE);

        let keystream = hex::decode(x2::KEYSTREAM).unwrap();
        let expect_keys = HopKeys::from_bytes(&keystream[..HopKeys::LEN].try_into().unwrap());
        assert_eq!(s_keys, expect_keys);

        let (got_sm, c_keys) = client2(state, &created, &ver).unwrap();
        assert_eq!(got_sm, sm);
        assert_eq!(c_keys, expect_keys);
    }

    /// The intermediate values of proposal 332 §X.2.
    #[test]
    fn prop332_x2_intermediates() {
        let relay = x2_relay();
        let x = StaticSecret::from(h::<32>(x2::X_SK));
        let x_pub = PublicKey::from(&x);
        let y = StaticSecret::from(h::<32>(x2::Y_SK));
        let y_pub = PublicKey::from(&y);
        let ver = hex::decode(x2::VER).unwrap();
        let sm = hex::decode(x2::SM).unwrap();

        let bx = x.diffie_hellman(&relay.pk.pk);
        let (enc_k1, mac_k1) = phase1_keys(&bx, &relay.pk.id, &relay.pk.pk, &x_pub, &ver);
        assert_eq!(*enc_k1, h::<32>(x2::ENC_K1));
        assert_eq!(*mac_k1, h::<32>(x2::MAC_K1));

        let mut enc_cm = hex::decode(x2::CM).unwrap();
        aes256_ctr(&enc_k1, &mut enc_cm);
        let mm = msg_mac(&mac_k1, &relay.pk.id, &relay.pk.pk, &x_pub, &enc_cm);
        assert_eq!(mm, h::<32>(x2::MSG_MAC));

        let xy = y.diffie_hellman(&x_pub);
        let xb = relay.sk.diffie_hellman(&x_pub);
        let (key_seed, verify) = phase2(&xy, &xb, &relay.pk, &x_pub, &y_pub, &ver);
        assert_eq!(*key_seed, h::<32>(x2::KEY_SEED));
        assert_eq!(*verify, h::<32>(x2::VERIFY));

        // The client computes the same from its side.
        let yx = x.diffie_hellman(&y_pub);
        let (ks2, v2) = phase2(&yx, &bx, &relay.pk, &x_pub, &y_pub, &ver);
        assert_eq!((*ks2, *v2), (*key_seed, *verify));

        let (enc_key, _) = final_keys(&key_seed);
        assert_eq!(*enc_key, h::<32>(x2::ENC_KEY));

        let mut r = final_stream(&key_seed);
        let mut first = [0u8; 32];
        r.read(&mut first);
        assert_eq!(first, *enc_key);
        let mut ks = [0u8; 256];
        r.read(&mut ks);
        assert_eq!(hex::encode(ks), x2::KEYSTREAM);

        let mut enc_sm = sm.clone();
        aes256_ctr(&enc_key, &mut enc_sm);
        let a = auth(&verify, &relay.pk, &x_pub, &y_pub, &mm, &enc_sm);
        assert_eq!(a, h::<32>(x2::AUTH));
    }

    /// A client-side run of several handshakes with extension messages both ways.
    #[test]
    fn round_trip_with_extensions() {
        let mut rng = test_rng();
        let k = relay(1);
        let request = encode_extensions(&[NtorV3Extension::CcRequest]).unwrap();
        let (st, onion_skin) =
            client1(&mut rng, &k.pk, &request, CIRCUIT_EXTEND_VERIFICATION).unwrap();
        assert_eq!(onion_skin.len(), CLIENT_HANDSHAKE_OVERHEAD + request.len());
        let (s_keys, reply, cm) = server(
            &mut rng,
            std::slice::from_ref(&k),
            &onion_skin,
            CIRCUIT_EXTEND_VERIFICATION,
            |cm| {
                let exts = decode_extensions(cm).ok()?;
                let reply = if exts.contains(&NtorV3Extension::CcRequest) {
                    vec![NtorV3Extension::CcResponse { sendme_inc: 31 }]
                } else {
                    vec![]
                };
                encode_extensions(&reply).ok()
            },
        )
        .unwrap();
        assert_eq!(cm, request);
        let (sm, c_keys) = client2(st, &reply, CIRCUIT_EXTEND_VERIFICATION).unwrap();
        assert_eq!(c_keys, s_keys);
        assert_eq!(
            decode_extensions(&sm).unwrap(),
            [NtorV3Extension::CcResponse { sendme_inc: 31 }]
        );
    }

    #[test]
    fn round_trip_empty_and_long_messages() {
        let mut rng = seeded_rng(2);
        let k = relay(2);
        for (cm, sm) in [
            (vec![], vec![]),
            (vec![7u8; 300], vec![9u8; 1000]),
            (vec![0u8; 1], vec![]),
        ] {
            let (st, m1) = client1(&mut rng, &k.pk, &cm, b"").unwrap();
            let (sk, m2, got) = server(&mut rng, std::slice::from_ref(&k), &m1, b"", |_| {
                Some(sm.clone())
            })
            .unwrap();
            assert_eq!(got, cm);
            assert_eq!(m2.len(), SERVER_HANDSHAKE_OVERHEAD + sm.len());
            let (got_sm, ck) = client2(st, &m2, b"").unwrap();
            assert_eq!((got_sm, ck), (sm, sk));
        }
    }

    #[test]
    fn picks_key_by_b() {
        let mut rng = seeded_rng(3);
        let cur = relay(3);
        let old = NtorV3SecretKey::generate(&mut rng, cur.pk.id);
        let keys = [cur.clone(), old.clone()];
        for k in [&cur, &old] {
            let (st, m1) = client1(&mut rng, &k.pk, b"hi", b"v").unwrap();
            let (sk, m2, _) = server(&mut rng, &keys, &m1, b"v", |_| Some(vec![1])).unwrap();
            assert_eq!(client2(st, &m2, b"v").unwrap(), (vec![1], sk));
        }
    }

    fn ok_reply(_: &[u8]) -> Option<Vec<u8>> {
        Some(b"reply".to_vec())
    }

    #[test]
    fn tampered_client_message_fails_mac() {
        let mut rng = seeded_rng(4);
        let k = relay(4);
        let (_, m1) = client1(&mut rng, &k.pk, b"hello", b"v").unwrap();
        // Flip a bit in X, in the encrypted message, and in the MAC.
        for i in [64, 96, 100, m1.len() - 1] {
            let mut bad = m1.clone();
            bad[i] ^= 1;
            let r = server(&mut rng, std::slice::from_ref(&k), &bad, b"v", ok_reply);
            assert_eq!(r.map(|_| ()), Err(HandshakeError::AuthFailed), "byte {i}");
        }
    }

    #[test]
    fn tampered_reply_fails_auth() {
        let mut rng = seeded_rng(5);
        let k = relay(5);
        for i in [0, 31, 32, 63, 64, 68] {
            let (st, m1) = client1(&mut rng, &k.pk, b"hello", b"v").unwrap();
            let (_, mut m2, _) =
                server(&mut rng, std::slice::from_ref(&k), &m1, b"v", ok_reply).unwrap();
            m2[i] ^= 0x10;
            assert_eq!(
                client2(st, &m2, b"v").map(|_| ()),
                Err(HandshakeError::AuthFailed),
                "byte {i}"
            );
        }
        // A truncated or extended encrypted message is also caught by AUTH.
        let (st, m1) = client1(&mut rng, &k.pk, b"hello", b"v").unwrap();
        let (_, mut m2, _) =
            server(&mut rng, std::slice::from_ref(&k), &m1, b"v", ok_reply).unwrap();
        m2.pop();
        assert_eq!(
            client2(st, &m2, b"v").map(|_| ()),
            Err(HandshakeError::AuthFailed)
        );
    }

    #[test]
    fn verification_mismatch_fails() {
        let mut rng = seeded_rng(6);
        let k = relay(6);
        let (_, m1) = client1(&mut rng, &k.pk, b"hello", b"circuit extend").unwrap();
        let r = server(&mut rng, std::slice::from_ref(&k), &m1, b"other", ok_reply);
        assert_eq!(r.map(|_| ()), Err(HandshakeError::AuthFailed));

        // And on the client side.
        let (st, m1) = client1(&mut rng, &k.pk, b"hello", b"a").unwrap();
        let (_, m2, _) = server(&mut rng, std::slice::from_ref(&k), &m1, b"a", ok_reply).unwrap();
        assert_eq!(
            client2(st, &m2, b"b").map(|_| ()),
            Err(HandshakeError::AuthFailed)
        );
    }

    #[test]
    fn wrong_relay_key() {
        let mut rng = seeded_rng(7);
        let k = relay(7);
        let other = relay(8);
        // The client uses an onion key the relay does not hold.
        let fake = NtorV3PublicKey {
            id: k.pk.id,
            pk: other.pk.pk,
        };
        let (st, m1) = client1(&mut rng, &fake, b"x", b"v").unwrap();
        assert_eq!(
            server(&mut rng, std::slice::from_ref(&k), &m1, b"v", ok_reply).map(|_| ()),
            Err(HandshakeError::Decrypt("unknown ntor-v3 onion key"))
        );
        // A reply from the real relay does not authenticate for that state.
        let (_, m1) = client1(&mut rng, &k.pk, b"x", b"v").unwrap();
        let (_, m2, _) = server(&mut rng, std::slice::from_ref(&k), &m1, b"v", ok_reply).unwrap();
        assert_eq!(
            client2(st, &m2, b"v").map(|_| ()),
            Err(HandshakeError::AuthFailed)
        );
        // Another relay's identity with this relay's key.
        let fake = NtorV3PublicKey {
            id: [0xee; ID_LEN],
            pk: k.pk.pk,
        };
        let (_, m1) = client1(&mut rng, &fake, b"x", b"v").unwrap();
        assert!(matches!(
            server(&mut rng, std::slice::from_ref(&k), &m1, b"v", ok_reply),
            Err(HandshakeError::Decrypt(_))
        ));
    }

    #[test]
    fn refused_client_message() {
        let mut rng = seeded_rng(9);
        let k = relay(9);
        let (_, m1) = client1(&mut rng, &k.pk, b"not an extension list", b"v").unwrap();
        let r = server(&mut rng, std::slice::from_ref(&k), &m1, b"v", |cm| {
            encode_extensions(&decode_extensions(cm).ok()?).ok()
        });
        assert!(matches!(r, Err(HandshakeError::Malformed(_))));
    }

    fn low_order_points() -> [[u8; 32]; 2] {
        let mut one = [0u8; 32];
        one[0] = 1;
        [[0u8; 32], one]
    }

    #[test]
    fn zero_points_rejected() {
        let mut rng = seeded_rng(10);
        let k = relay(10);
        for p in low_order_points() {
            // Client key X.
            let (_, mut m1) = client1(&mut rng, &k.pk, b"x", b"v").unwrap();
            m1[64..96].copy_from_slice(&p);
            assert!(matches!(
                server(&mut rng, std::slice::from_ref(&k), &m1, b"v", ok_reply),
                Err(HandshakeError::BadPublicValue(_))
            ));
            // Relay key Y.
            let (st, m1) = client1(&mut rng, &k.pk, b"x", b"v").unwrap();
            let (_, mut m2, _) =
                server(&mut rng, std::slice::from_ref(&k), &m1, b"v", ok_reply).unwrap();
            m2[..32].copy_from_slice(&p);
            assert!(matches!(
                client2(st, &m2, b"v"),
                Err(HandshakeError::BadPublicValue(_))
            ));
            // Onion key B.
            let bad = NtorV3PublicKey {
                id: k.pk.id,
                pk: PublicKey::from(p),
            };
            assert!(matches!(
                client1(&mut rng, &bad, b"x", b"v"),
                Err(HandshakeError::BadPublicValue(_))
            ));
        }
    }

    #[test]
    fn truncated_rejected() {
        let mut rng = seeded_rng(11);
        let k = relay(11);
        let (st, m1) = client1(&mut rng, &k.pk, b"", b"v").unwrap();
        assert_eq!(m1.len(), CLIENT_HANDSHAKE_OVERHEAD);
        for len in [0, 32, 96, 127] {
            assert!(matches!(
                server(
                    &mut rng,
                    std::slice::from_ref(&k),
                    &m1[..len],
                    b"v",
                    ok_reply
                ),
                Err(HandshakeError::Malformed(_))
            ));
        }
        let (_, m2, _) = server(&mut rng, std::slice::from_ref(&k), &m1, b"v", |_| {
            Some(vec![])
        })
        .unwrap();
        assert_eq!(m2.len(), SERVER_HANDSHAKE_OVERHEAD);
        for len in [0, 32, 63] {
            let (st2, _) = client1(&mut rng, &k.pk, b"", b"v").unwrap();
            assert!(matches!(
                client2(st2, &m2[..len], b"v"),
                Err(HandshakeError::Malformed(_))
            ));
        }
        assert!(client2(st, &m2, b"v").is_ok());
    }

    #[test]
    fn debug_hides_secrets() {
        let k = relay(12);
        assert!(!format!("{k:?}").contains(&format!("{:?}", k.sk.as_bytes())));
        let (st, _) = client1(&mut seeded_rng(1), &k.pk, b"", b"").unwrap();
        assert!(format!("{st:?}").starts_with("NtorV3ClientState"));
    }
}
