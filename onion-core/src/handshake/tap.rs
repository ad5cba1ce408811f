//! The TAP handshake (tor-spec §5.1.3): RSA-1024 hybrid encryption of a 1024-bit
//! Diffie-Hellman public value, client and relay side.
//!
//! ```text
//! client -> relay  onion skin  hybrid-encrypt(onion key, g^x)            [186 bytes]
//!                  = RSA-OAEP-SHA1(K | g^x[0..70]) | AES-128-CTR(K, 0 IV)(g^x[70..128])
//! relay  -> client reply       g^y | KH                                  [148 bytes]
//! K0 = g^xy;  KDF-TOR(K0) = KH | Df | Db | Kf | Kb                       (tor-spec §5.2.1)
//! ```
//!
//! TAP was removed from tor 0.4.9 relays; it is kept for our own ORs and the seed. Both DH
//! values are checked against `[2, p-2]` (see [`crate::crypto::dh`]). `K0` is `g^xy` as a
//! minimal big-endian integer, as C tor computes it (see [`SharedSecret::minimal_be`]).
//! The onion key must be RSA-1024 with exponent 65537 (tor-spec §0.3); anything else is
//! [`HandshakeError::BadKey`].
//!
//! # The seed's RELAY_INFO
//!
//! A node-Tor browser OP without RSA-OAEP or DH asks its first OR, over RELAY_INFO, to run the
//! client side of TAP for it. The OR does so with these functions:
//!
//! 1. `[01][ID][modulus]`: [`onion_key_from_modulus`], then [`client1`]; keep the
//!    [`TapClientState`] under `ID` and answer `X` ([`TapClientState::dh_public`]) and the
//!    onion skin.
//! 2. `[02][ID][Y]`: [`dh_shared_secret`] with the stored state; answer
//!    [`SharedSecret::as_bytes`] (128 bytes).
//!
//! The OP then finishes with [`client2_from_secret`] on the relay's reply. **Security
//! caveat:** the helping OR learns `g^xy`, hence every key of that hop of the circuit; the
//! seed only accepts this as a temporary measure. Our own OPs compute TAP themselves.

use aes::Aes128;
use cipher::{KeyIvInit, StreamCipher};
use rand_core::CryptoRng;
use rsa::traits::PublicKeyParts;
use rsa::{BoxedUint, PrivateKey, PublicKey};
use sha1::Sha1;
use zeroize::Zeroizing;

use super::fast::{check_kh, kdf_tor_keys, split_pair};
use super::{HandshakeError, HandshakeResult};
use crate::crypto::dh::{self, DH_LEN, DhError, DhKeypair, SharedSecret};
use crate::crypto::keys::{HASH_LEN, HopKeys, KEY_LEN};

/// Length of an RSA-1024 ciphertext (`KP_ENC_LEN`).
pub const PK_ENC_LEN: usize = 128;
/// Bytes of OAEP-SHA1 padding overhead (`KP_PAD_LEN`).
pub const PK_PAD_LEN: usize = 42;
/// Length of the client's onion skin (`TAP_C_HANDSHAKE_LEN` = DH_LEN + KEY_LEN + KP_PAD_LEN).
pub const TAP_C_HANDSHAKE_LEN: usize = DH_LEN + KEY_LEN + PK_PAD_LEN;
/// Length of the relay's reply (`TAP_S_HANDSHAKE_LEN` = DH_LEN + HASH_LEN).
pub const TAP_S_HANDSHAKE_LEN: usize = DH_LEN + HASH_LEN;
/// Size in bits of a TAP onion key.
pub const ONION_KEY_BITS: u32 = 1024;

/// Bytes of OAEP plaintext in the hybrid encryption: `K | first part of g^x`.
const OAEP_PLAIN_LEN: usize = PK_ENC_LEN - PK_PAD_LEN;
/// Bytes of `g^x` inside the OAEP block.
const GX_HEAD_LEN: usize = OAEP_PLAIN_LEN - KEY_LEN;

/// The AES-128-CTR stream cipher with a zero IV (tor-spec §0.3).
type Aes128Ctr = ctr::Ctr128BE<Aes128>;

/// Apply AES-128-CTR with `key` and an all-zero IV to `buf` (encrypts and decrypts).
pub(crate) fn aes_ctr_zero_iv(key: &[u8; KEY_LEN], buf: &mut [u8]) {
    let mut c = Aes128Ctr::new(&(*key).into(), &[0u8; 16].into());
    c.apply_keystream(buf);
}

/// Check that `key` is a TAP onion key: RSA-1024 with public exponent 65537.
pub(crate) fn check_onion_key<K: PublicKeyParts>(key: &K) -> HandshakeResult<()> {
    if key.n().bit_width() != ONION_KEY_BITS {
        return Err(HandshakeError::BadKey("onion key must be RSA-1024"));
    }
    if key.e_bytes().as_ref() != [0x01, 0x00, 0x01] {
        return Err(HandshakeError::BadKey("onion key exponent must be 65537"));
    }
    Ok(())
}

/// Check every key a relay offers, and that there is at least one.
pub(crate) fn check_onion_keys(keys: &[&PrivateKey]) -> HandshakeResult<()> {
    if keys.is_empty() {
        return Err(HandshakeError::BadKey("no onion key given"));
    }
    keys.iter().try_for_each(|k| check_onion_key(*k))
}

/// RSA-OAEP (SHA-1, MGF1-SHA-1, no label) encryption of `msg` to `key` (checked RSA-1024).
pub(crate) fn oaep_encrypt<R: CryptoRng + ?Sized>(
    rng: &mut R,
    key: &PublicKey,
    msg: &[u8],
) -> HandshakeResult<[u8; PK_ENC_LEN]> {
    let ct = key
        .oaep_encrypt_with_rng::<Sha1, _>(rng, msg)
        .map_err(|_| HandshakeError::Internal("RSA-OAEP encryption failed"))?;
    ct.try_into()
        .map_err(|_| HandshakeError::Internal("RSA-OAEP ciphertext length"))
}

/// RSA-OAEP decryption of `ct` with the first of `keys` that decrypts it (current onion key
/// first, then the previous one, as C tor does); `rng` blinds the private-key operation.
pub(crate) fn oaep_decrypt_any<R: CryptoRng + ?Sized>(
    rng: &mut R,
    keys: &[&PrivateKey],
    ct: &[u8],
) -> HandshakeResult<Zeroizing<Vec<u8>>> {
    keys.iter()
        .find_map(|k| k.oaep_decrypt_with_rng::<Sha1, _>(rng, ct).ok())
        .map(Zeroizing::new)
        .ok_or(HandshakeError::Decrypt(
            "no onion key decrypts it (old or wrong key, or corrupted)",
        ))
}

/// Map a DH failure on a peer's value to a handshake error.
fn dh_error(e: DhError) -> HandshakeError {
    match e {
        DhError::BadLength(_) => HandshakeError::Malformed("DH value must be 128 bytes"),
        DhError::OutOfRange => HandshakeError::BadPublicValue("DH value outside [2, p-2]"),
    }
}

/// The legacy hybrid encryption of `g^x` (tor-spec §0.4, always the two-part case).
fn hybrid_encrypt<R: CryptoRng + ?Sized>(
    rng: &mut R,
    key: &PublicKey,
    gx: &[u8; DH_LEN],
) -> HandshakeResult<[u8; TAP_C_HANDSHAKE_LEN]> {
    let (head, tail) = gx
        .split_at_checked(GX_HEAD_LEN)
        .ok_or(HandshakeError::Internal("g^x split"))?;
    let mut k = Zeroizing::new([0u8; KEY_LEN]);
    rng.fill_bytes(k.as_mut_slice());
    let mut plain = Zeroizing::new([0u8; OAEP_PLAIN_LEN]);
    for (dst, src) in plain.iter_mut().zip(k.iter().chain(head)) {
        *dst = *src;
    }
    let ct = oaep_encrypt(rng, key, plain.as_slice())?;
    let mut sym = [0u8; DH_LEN - GX_HEAD_LEN];
    for (dst, src) in sym.iter_mut().zip(tail) {
        *dst = *src;
    }
    aes_ctr_zero_iv(&k, &mut sym);
    let mut out = [0u8; TAP_C_HANDSHAKE_LEN];
    for (dst, src) in out.iter_mut().zip(ct.iter().chain(sym.iter())) {
        *dst = *src;
    }
    Ok(out)
}

/// Undo [`hybrid_encrypt`]: recover `g^x` from an onion skin.
fn hybrid_decrypt<R: CryptoRng + ?Sized>(
    rng: &mut R,
    keys: &[&PrivateKey],
    onion_skin: &[u8],
) -> HandshakeResult<[u8; DH_LEN]> {
    if onion_skin.len() != TAP_C_HANDSHAKE_LEN {
        return Err(HandshakeError::Malformed(
            "TAP onion skin must be 186 bytes",
        ));
    }
    let (ct, sym) = onion_skin
        .split_at_checked(PK_ENC_LEN)
        .ok_or(HandshakeError::Malformed(
            "TAP onion skin must be 186 bytes",
        ))?;
    let plain = oaep_decrypt_any(rng, keys, ct)?;
    if plain.len() != OAEP_PLAIN_LEN {
        // C tor: "Unexpected onionskin length after decryption".
        return Err(HandshakeError::Malformed(
            "TAP onion skin: RSA plaintext must be 86 bytes",
        ));
    }
    let (k, head) = plain
        .split_at_checked(KEY_LEN)
        .ok_or(HandshakeError::Malformed(
            "TAP onion skin: RSA plaintext too short",
        ))?;
    let k: &[u8; KEY_LEN] = k
        .try_into()
        .map_err(|_| HandshakeError::Internal("TAP symmetric key length"))?;
    let mut gx = [0u8; DH_LEN];
    for (dst, src) in gx.iter_mut().zip(head.iter().chain(sym)) {
        *dst = *src;
    }
    let tail = gx
        .get_mut(GX_HEAD_LEN..)
        .ok_or(HandshakeError::Internal("g^x split"))?;
    aes_ctr_zero_iv(k, tail);
    Ok(gx)
}

/// Parse the relay's reply `g^y | KH` (exactly [`TAP_S_HANDSHAKE_LEN`] bytes).
fn parse_reply(reply: &[u8]) -> HandshakeResult<([u8; DH_LEN], [u8; HASH_LEN])> {
    split_pair(reply, "TAP reply must be g^y | KH (148 bytes)")
}

/// The client's secret between [`client1`] and [`client2`]: its DH key pair.
pub struct TapClientState {
    dh: DhKeypair,
}

impl std::fmt::Debug for TapClientState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TapClientState { .. }")
    }
}

impl TapClientState {
    /// The client's DH public value `X = g^x` (128 bytes), as the seed's RELAY_INFO answer
    /// carries it.
    pub fn dh_public(&self) -> &[u8; DH_LEN] {
        self.dh.public()
    }
}

/// Client, step 1: build the onion skin for the relay whose TAP onion key is `onion_key`
/// (RSA-1024, else [`HandshakeError::BadKey`]).
pub fn client1<R: CryptoRng + ?Sized>(
    rng: &mut R,
    onion_key: &PublicKey,
) -> HandshakeResult<(TapClientState, [u8; TAP_C_HANDSHAKE_LEN])> {
    check_onion_key(onion_key)?;
    let dh = DhKeypair::generate(rng);
    let skin = hybrid_encrypt(rng, onion_key, dh.public())?;
    Ok((TapClientState { dh }, skin))
}

/// Client, step 2: check the relay's reply `g^y | KH` and derive the hop's keys.
///
/// Errors: [`HandshakeError::Malformed`] (length), [`HandshakeError::BadPublicValue`]
/// (`g^y` outside `[2, p-2]`), [`HandshakeError::AuthFailed`] (`KH` mismatch).
pub fn client2(state: TapClientState, reply: &[u8]) -> HandshakeResult<HopKeys> {
    let (gy, kh) = parse_reply(reply)?;
    let secret = state.dh.shared_secret(&gy).map_err(dh_error)?;
    keys_from_secret(&secret, &kh)
}

/// KDF-TOR of `g^xy`, checking the relay's `KH`.
fn keys_from_secret(secret: &SharedSecret, kh: &[u8; HASH_LEN]) -> HandshakeResult<HopKeys> {
    let (expected, keys) = kdf_tor_keys(secret.minimal_be())?;
    check_kh(&expected, kh)?;
    Ok(keys)
}

/// Relay: decrypt the client's onion skin with the first of `keys` that works (current onion
/// key, then the previous one), answer `g^y | KH`, and return the hop's keys.
///
/// Errors: [`HandshakeError::BadKey`] (no key, or a key that is not RSA-1024/65537),
/// [`HandshakeError::Malformed`] (length, or RSA plaintext length),
/// [`HandshakeError::Decrypt`] (no key decrypts it), [`HandshakeError::BadPublicValue`]
/// (`g^x` outside `[2, p-2]`).
pub fn server<R: CryptoRng + ?Sized>(
    rng: &mut R,
    keys: &[&PrivateKey],
    onion_skin: &[u8],
) -> HandshakeResult<(HopKeys, [u8; TAP_S_HANDSHAKE_LEN])> {
    check_onion_keys(keys)?;
    let gx = hybrid_decrypt(rng, keys, onion_skin)?;
    server_finish(DhKeypair::generate(rng), &gx)
}

/// The relay's half of the DH exchange with its key pair `dh`, given the client's `g^x`.
fn server_finish(
    dh: DhKeypair,
    gx: &[u8; DH_LEN],
) -> HandshakeResult<(HopKeys, [u8; TAP_S_HANDSHAKE_LEN])> {
    let gy = *dh.public();
    let secret = dh.shared_secret(gx).map_err(dh_error)?;
    let (kh, keys) = kdf_tor_keys(secret.minimal_be())?;
    let mut reply = [0u8; TAP_S_HANDSHAKE_LEN];
    for (dst, src) in reply.iter_mut().zip(gy.iter().chain(kh.iter())) {
        *dst = *src;
    }
    Ok((keys, reply))
}

/// RELAY_INFO: the TAP onion key for a raw RSA modulus (big-endian, leading zero bytes
/// allowed) with the fixed exponent 65537. The modulus must be 1024 bits.
pub fn onion_key_from_modulus(modulus: &[u8]) -> HandshakeResult<PublicKey> {
    let skip = modulus.iter().take_while(|&&b| b == 0).count();
    let n = modulus.get(skip..).unwrap_or_default();
    if n.len() != PK_ENC_LEN {
        return Err(HandshakeError::BadKey("onion key must be RSA-1024"));
    }
    let key = PublicKey::new(
        BoxedUint::from_be_slice_vartime(n),
        BoxedUint::from(65537u32),
    )
    .map_err(|_| HandshakeError::BadKey("invalid RSA modulus"))?;
    check_onion_key(&key)?;
    Ok(key)
}

/// RELAY_INFO: the shared secret `g^xy` for a client state and the relay's `Y = g^y`
/// (checked against `[2, p-2]`). Consumes the state: a DH key is used once.
pub fn dh_shared_secret(state: TapClientState, y: &[u8]) -> HandshakeResult<SharedSecret> {
    state.dh.shared_secret(y).map_err(dh_error)
}

/// Client, step 2, for an OP whose `g^xy` was computed by a RELAY_INFO helper: check the
/// relay's reply `g^y | KH` against `secret` and derive the hop's keys.
pub fn client2_from_secret(secret: &SharedSecret, reply: &[u8]) -> HandshakeResult<HopKeys> {
    let (gy, kh) = parse_reply(reply)?;
    dh::check_public(&gy).map_err(dh_error)?;
    keys_from_secret(secret, &kh)
}

#[cfg(test)]
pub(crate) mod test {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::crypto::dh::test::{GX, GY, kat_keypairs};
    use crate::testing::{seeded_rng, test_rng};
    use rsa::pkcs1::DecodeRsaPrivateKey;

    /// RSA-1024 key generated by OpenSSL (Python `cryptography`): the "current" onion key.
    const KEY_A: &str = concat!(
        "-----BEGIN RSA PRIVATE KEY-----\n",
        "MIICWwIBAAKBgQDOxS8F7e/d2RC2QMzaGZPZNqBE2OOV8vjBXTMwGf04CY1gqDSt\n",
        "e7JnTZW8YCy5MqdACHNDpPMdi+Fd2zn1dDF3y3I01W8X49OMpJ9OiGDQnQ3KgBrA\n",
        "XYdvh77AYcDpEhgjmUwoYm80pHc8aqy9Shaq/noZtj1/BYsZ93pomoMFCQIDAQAB\n",
        "AoGAV44JnmIlivRKblI8LDJed8D41o5cuHcdPIvhjAHFRsBMvFwdikRxw+qHeC/l\n",
        "YDqBtcyeOkuTorRDpwGYpkYgV41xVGTBb/1dRRDYG3M0+qVNYK16pqRvFbB/D9wV\n",
        "ehCOPQU2tfumIY5Eq3h/1m9xI6EBFJlT9j4c+TzT9mL/4bECQQD1OGSbPPnJCRAK\n",
        "WR22t7zzkvNljGLrHiirgo7QLOHRkaRXLtfAP9Hq+wS6ZqQ2YdSsJ3qpnt2KKJ9u\n",
        "Pm4fvzGVAkEA19wXCWzh7FwUSVe0wCETWIWf1FoFmPSSUIbDri54WVQM0b1F1kuj\n",
        "vOfUDId0+QgsmcWv4YZmpRj/yEHFCkPQpQJAKkrilx+KGREWEiLSjBveW8gBcIco\n",
        "3FIkQ4hN5zuGauWKiXrLvR2Er9lBNIDVW4e97T8V2cFLhjOBY7sitRj9jQJAGuti\n",
        "oBVJE33kNcVPUEqPrBF1/jh/zDRr7sjvrFA1SAaYVqvBAtmKAOv0YN+fsdLYJREn\n",
        "PvvQ3zP/6gxxszcD1QJAbUjIEAmxroBetf+KxekGP3b9Rbw+GtFTZNRzw/RQuwyl\n",
        "p0H0BxwrlhQbYK7PIAi2cH9mbgCe8F2ZI1EPsLc6Tg==\n",
        "-----END RSA PRIVATE KEY-----\n",
    );
    /// RSA-1024 key generated by OpenSSL: the "previous" onion key.
    const KEY_B: &str = concat!(
        "-----BEGIN RSA PRIVATE KEY-----\n",
        "MIICXQIBAAKBgQC0p8JW5ozmRm5ss2Xeu9JeXVrgpGa2oEYDPcLuxcgp8i0XoOKt\n",
        "RViJz3ebgns4XTDBuQ9DtrVCslUCMkmDTtQ2v1ikF0qa5BS4kbEd2LBYTTmnvgNR\n",
        "aOQEYs68lsk1VTGJIBQUecYhhG2fBsNQ3bASWS8MLMEnS5Hu1iDZ+FzguwIDAQAB\n",
        "AoGAPwUeqE347QO41banXNHMixqp7x+qrR6wDcVn0P+x2eAfltSK/sLoJfr30Inu\n",
        "DjWEIrA6APcluESZnxCH0ISZRoG1SIzSVGRpKO5kNTEbcned8n2CFbzNhFJfBTnq\n",
        "Kbqq+G4iqv1i2a4+jhkOMesB6xFcGleoVbTjEmVZTMKqSKECQQDh0k/5lgXFjSdC\n",
        "uMphJOG4IJdXrprOlYSKc6f3tsP2X/wNbJ9P3AT/Jz+w8NmckTAaco73hhFRQa74\n",
        "P1JQCQlZAkEAzMw+XnwnwUfiBqSeB0UxE/wVWuzgAGo2TOhxnkuIRXtRLPTMWQkv\n",
        "Hmkxc6Y5bheVAw/v5Yp77fzEnvnlC8ukMwJAOP+6zAbAAjM0u7Sk8Iw8pRsk2C7s\n",
        "SESZJdE3jmEFaYSkvEa0l5WzdSvU+bZxVwGWoLZVu8iNSnNH1MU245jEUQJBAKuQ\n",
        "drdEnzFF/M2/3jsM9d5eEa3IPqdaUv7+wx/u+svqUMiukvoLvZNmYG0X1Yiq7MRR\n",
        "95B+APAQDs93XTASew0CQQC32VjsADJJckl+QAbgXUGadY2TWw16JShdGfRbr3T1\n",
        "/kREYamkr2vVBEijrEceeGYqpfSvzWpBeZMjkI+Q84hY\n",
        "-----END RSA PRIVATE KEY-----\n",
    );
    /// RSA-2048 key generated by OpenSSL: not a TAP onion key.
    const KEY_2048: &str = concat!(
        "-----BEGIN RSA PRIVATE KEY-----\n",
        "MIIEpAIBAAKCAQEA6eqACLUPqru30yxY96navRaAYl2OzL5ESftOnbuTbABYXGL2\n",
        "YPhbvUrIWfkhZpGSHvOEnnV0gCm8AkG3wJskPeIIe7kIuYoR38qNDpT+oXvgbFep\n",
        "sUcWIaFd+eQU5H+KQxRquQ9Cixxsktk1OPPRButjs+WZWQ81vEn6wuV9CnLmaGVQ\n",
        "hvFgo2EtdXWTukmugob5w8R8xhLMAd1gMTd4SZxtm41mdCZlMjZJeJBUVTeiMpR2\n",
        "hUIdHZkCLfj5arCTMsauKkvW2C0sEeNGJoPnwG8/pH87qJcE0k8JjQ/UlnBBIZJT\n",
        "uRFnSsHBl0S8rmmnwjoLyDiifpII2ppGseeHbwIDAQABAoIBAAHrlOV9ZwWFyPqI\n",
        "0Kon0M3gk2k7T2LK5RCeaYTN92XZkuAfR9p/73DcXkyuyOForIRoh1wtpqkuroZu\n",
        "N63zGBcR9fPeDv5G7eKibQoDmxuEQtFg3tm/taTNCFJ21t0RVvc6Aa5HO8qcjx+d\n",
        "fNxc1Ah0gjsF1X5vq4dCLDbRX3doegsdww/601OTns8tSz9wEDk0zNLRGCbdGAMk\n",
        "zVQW+b8ubIpL1hfo+zsdwEUwEaDtDoxYQVTy7deUzfPZJAT/Ct7DnYBJgqpLDt1h\n",
        "qF8/dNfHNYLRPmLWzdw3kuCiYk1PoSSaWKYHDh12szH64b12MU6frNzRThRQCaaR\n",
        "DYUqgzECgYEA98vVMxyHzw8Y1F5Gszv+7CfGpp6XkZMohqQVFy7i/PvhYQbUr0Rc\n",
        "yFBUOFhromXigKg1H/vavmKkmjYTS751R3aQ+AtG3N/SkVHQZPM0owOmpSAGXoKI\n",
        "KHXabQgbY/aI5fmNKxdUbYh1X4Raf841jqYGAFLGh3Bbtj6kNiDgz40CgYEA8akG\n",
        "/S6CpGvcoBYurME8pTM+4hQVniIk254bzsVHPGsmuH2zxZUa6eviW9xpx1mX/5Cm\n",
        "3g2P6mIkNiu4D6FCBWdHqr9e7qS9Bwgm+2qWmczv9d2R/IO1Eh7duewWQS+jkj4m\n",
        "0s2n+I94zFZyddAOnfS3nrvKLzj7ViDcVAf4ResCgYEAv5Gbz5nc/JzlSzlfWy2k\n",
        "1RmjICk3cFneWMj9bSDYZ1CrWwGW57DoMgy4L59cBv7RbzmbaJCi+dD1BCuOG16w\n",
        "+ICXbsv5CsUW2zXu8Dx9kxE9gicSBXrQnMcQCH7d/hgYmgKluoycvtliNGf0Nx5K\n",
        "lW+Q8CsORKL+pBQli5s7cfkCgYBIdfldg0uzB5ChA+W88ThBBMuvOHx+7RgGLjOC\n",
        "XY8No8d5fF+iOCJYz90Q1Fd3afr0q6gNXx2vFvxqrdNEBINqYVyQ608I2abAbAZc\n",
        "TsqXlWbCX0y93bQ2mcC8VfkaVLGEUVSM0xOxqTt8cdNiVh9753wDgaWPYVOjsLjA\n",
        "DZ+5PwKBgQClArurMPMgeluxq34bSrNKNg15zJLXF8jg2xE/QwGKP4K4hnhjz890\n",
        "DOTLYXbGmK1Cp1tQlGOJjk6pH6d/S2L2Ag7rZkiJmX2XdvRSLxHuQMF/jqq/ZjAr\n",
        "QhsexAYczf/dYbvIExgvu92+WdKppPVAf7YVwfVIOdkNvi+0stxJTg==\n",
        "-----END RSA PRIVATE KEY-----\n",
    );

    /// The test onion keys: (current, previous, 2048-bit).
    pub(crate) fn test_keys() -> (PrivateKey, PrivateKey, PrivateKey) {
        (
            PrivateKey::from_pkcs1_pem(KEY_A).unwrap(),
            PrivateKey::from_pkcs1_pem(KEY_B).unwrap(),
            PrivateKey::from_pkcs1_pem(KEY_2048).unwrap(),
        )
    }

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    fn keys_bytes(k: &HopKeys) -> Vec<u8> {
        [&k.df[..], &k.db[..], &k.kf[..], &k.kb[..]].concat()
    }

    /// Cross-implementation vector, computed with Python (`cryptography` on OpenSSL for
    /// RSA-OAEP-SHA1 and AES-128-CTR, `hashlib` for KDF-TOR, built-in integers for DH):
    /// the onion skin of g^x (crypto::dh's vector, K = SHA-256("K")[..16]) to KEY_A, the
    /// reply for y, and KDF-TOR(g^xy minimal big-endian) after KH. g^xy has a leading zero
    /// byte, so this also pins C tor's unpadded K0.
    const SKIN: &str = "090757b53728212dd162ebd0cafe64aa10ddaa0687985874749b0a5b4f11637e3a3b2fcc247e77e3ed63ee74f53710de1bfa424d998840e6a49876e09829f6915ebbc1b9849ce6c04e931eea00f29b7d788d3306a508f10930d39a813032bfdca358a2c9e72d501397480a89e373715bfb34f59c119383ba80c094a0fa07e07437d2d9e81c0dcb413ed647e1b07f6d301a7ae92ed3c5c0cd4bcaccdc887b64e7ec5824590c2e8531ecc211fdb1b8fd8be6346f150fea22b60361";
    const KH: &str = "4e310a37ab623905916292ecab13938890202640";
    const KEYS: &str = "d8c3d109fdd3f269217785ba67de015772ab570abd264261109f6147e2b3ea791839fe28c0741b6371bb9ca649898636a05eece890e2d7825e7f06fde148bba8abaa6fe1843246d0";

    fn kat_reply() -> Vec<u8> {
        [h(GY), h(KH)].concat()
    }

    #[test]
    fn known_answer_relay_side() {
        let (a, b, _) = test_keys();
        let mut rng = seeded_rng(1);
        // The current key (A) and, after a rotation, the previous key (A behind B).
        for keys in [vec![&a], vec![&b, &a]] {
            let gx = hybrid_decrypt(&mut rng, &keys, &h(SKIN)).unwrap();
            assert_eq!(gx.as_slice(), h(GX));
            let (_, y) = kat_keypairs();
            let (keys, reply) = server_finish(y, &gx).unwrap();
            assert_eq!(reply.to_vec(), kat_reply());
            assert_eq!(keys_bytes(&keys), h(KEYS));
        }
    }

    #[test]
    fn known_answer_client_side() {
        let (x, _) = kat_keypairs();
        let keys = client2(TapClientState { dh: x }, &kat_reply()).unwrap();
        assert_eq!(keys_bytes(&keys), h(KEYS));
        // The same through the RELAY_INFO path.
        let (x, _) = kat_keypairs();
        let secret = dh_shared_secret(TapClientState { dh: x }, &h(GY)).unwrap();
        let keys2 = client2_from_secret(&secret, &kat_reply()).unwrap();
        assert_eq!(keys2, keys);
        // With the 128-byte padded g^xy as K0, KH would not match C tor's.
        let (padded_kh, _) = kdf_tor_keys(secret.as_bytes()).unwrap();
        assert_ne!(padded_kh.to_vec(), h(KH));
    }

    #[test]
    fn round_trip() {
        let (a, b, _) = test_keys();
        let mut rng = test_rng();
        let (state, skin) = client1(&mut rng, a.as_public_key()).unwrap();
        let (skeys, reply) = server(&mut rng, &[&a, &b], &skin).unwrap();
        assert_ne!(&reply[..DH_LEN], state.dh_public().as_slice());
        let ckeys = client2(state, &reply).unwrap();
        assert_eq!(ckeys, skeys);
    }

    #[test]
    fn round_trip_with_previous_key() {
        let (a, b, _) = test_keys();
        let mut rng = seeded_rng(2);
        // The client still uses the old key B; the relay now lists A first.
        let (state, skin) = client1(&mut rng, b.as_public_key()).unwrap();
        let (skeys, reply) = server(&mut rng, &[&a, &b], &skin).unwrap();
        assert_eq!(client2(state, &reply).unwrap(), skeys);
    }

    #[test]
    fn round_trip_with_generated_key() {
        let mut rng = seeded_rng(3);
        let k = PrivateKey::new(&mut rng, 1024).unwrap();
        let (state, skin) = client1(&mut rng, k.as_public_key()).unwrap();
        let (skeys, reply) = server(&mut rng, &[&k], &skin).unwrap();
        assert_eq!(client2(state, &reply).unwrap(), skeys);
    }

    /// The onion skin has the layout of tor-spec §5.1.3, checked with raw primitives.
    #[test]
    fn onion_skin_layout() {
        let (a, _, _) = test_keys();
        let mut rng = seeded_rng(4);
        let (state, skin) = client1(&mut rng, a.as_public_key()).unwrap();
        let plain = a
            .oaep_decrypt_with_rng::<Sha1, _>(&mut rng, &skin[..128])
            .unwrap();
        assert_eq!(plain.len(), 86);
        assert_eq!(&plain[16..], &state.dh_public()[..70]);
        let mut tail = skin[128..].to_vec();
        aes_ctr_zero_iv(plain[..16].try_into().unwrap(), &mut tail);
        assert_eq!(tail, state.dh_public()[70..]);
        // g^x itself does not appear in clear.
        assert_ne!(&skin[128..], &state.dh_public()[70..]);
    }

    #[test]
    fn wrong_key_is_decrypt_error() {
        let (a, b, _) = test_keys();
        let mut rng = seeded_rng(5);
        let (_, skin) = client1(&mut rng, b.as_public_key()).unwrap();
        assert!(matches!(
            server(&mut rng, &[&a], &skin),
            Err(HandshakeError::Decrypt(_))
        ));
        // A corrupted RSA block does not decrypt either.
        let (_, mut skin) = client1(&mut rng, a.as_public_key()).unwrap();
        skin[5] ^= 1;
        assert!(matches!(
            server(&mut rng, &[&a, &b], &skin),
            Err(HandshakeError::Decrypt(_))
        ));
    }

    #[test]
    fn wrong_rsa_plaintext_length_is_malformed() {
        let (a, _, _) = test_keys();
        let mut rng = seeded_rng(6);
        for len in [0, 16, 85] {
            let ct = oaep_encrypt(&mut rng, a.as_public_key(), &vec![9u8; len]).unwrap();
            let skin = [&ct[..], &[0u8; 58][..]].concat();
            assert!(matches!(
                server(&mut rng, &[&a], &skin),
                Err(HandshakeError::Malformed(_))
            ));
        }
    }

    #[test]
    fn tampered_reply_fails_auth() {
        let (a, _, _) = test_keys();
        let mut rng = seeded_rng(7);
        // Flip a bit of KH, then a bit of g^y.
        for i in [DH_LEN, TAP_S_HANDSHAKE_LEN - 1, 0, 100] {
            let (state, skin) = client1(&mut rng, a.as_public_key()).unwrap();
            let (_, mut reply) = server(&mut rng, &[&a], &skin).unwrap();
            reply[i] ^= 0x01;
            assert_eq!(client2(state, &reply), Err(HandshakeError::AuthFailed));
        }
        let mut reply = kat_reply();
        reply[DH_LEN + 3] ^= 0x80;
        let (_, y) = kat_keypairs();
        let secret = dh_shared_secret(TapClientState { dh: y }, &h(GX)).unwrap();
        assert_eq!(
            client2_from_secret(&secret, &reply),
            Err(HandshakeError::AuthFailed)
        );
    }

    fn encode(v: &num_bigint::BigUint) -> Vec<u8> {
        let b = v.to_bytes_be();
        let mut out = vec![0u8; DH_LEN - b.len()];
        out.extend_from_slice(&b);
        out
    }

    #[test]
    fn degenerate_dh_values_are_rejected() {
        let (a, _, _) = test_keys();
        let p = num_bigint::BigUint::from_bytes_be(&dh::DH_PRIME);
        let mut rng = seeded_rng(8);
        for bad in [
            num_bigint::BigUint::from(0u32),
            num_bigint::BigUint::from(1u32),
            &p - 1u32,
            p.clone(),
        ] {
            let bad = encode(&bad);
            // g^y from the relay.
            let (state, _) = client1(&mut rng, a.as_public_key()).unwrap();
            let reply = [&bad[..], &[0u8; HASH_LEN][..]].concat();
            assert!(matches!(
                client2(state, &reply),
                Err(HandshakeError::BadPublicValue(_))
            ));
            let secret = SharedSecret::from_bytes(&[1; DH_LEN]);
            assert!(matches!(
                client2_from_secret(&secret, &reply),
                Err(HandshakeError::BadPublicValue(_))
            ));
            let (state, _) = client1(&mut rng, a.as_public_key()).unwrap();
            assert!(matches!(
                dh_shared_secret(state, &bad),
                Err(HandshakeError::BadPublicValue(_))
            ));
            // g^x from the client.
            let skin =
                hybrid_encrypt(&mut rng, a.as_public_key(), &bad.try_into().unwrap()).unwrap();
            assert!(matches!(
                server(&mut rng, &[&a], &skin),
                Err(HandshakeError::BadPublicValue(_))
            ));
        }
    }

    #[test]
    fn truncated_messages_are_malformed() {
        let (a, _, _) = test_keys();
        let mut rng = seeded_rng(9);
        let (_, skin) = client1(&mut rng, a.as_public_key()).unwrap();
        for len in [0, 128, 185] {
            assert!(matches!(
                server(&mut rng, &[&a], &skin[..len]),
                Err(HandshakeError::Malformed(_))
            ));
        }
        let long = [&skin[..], &[0u8][..]].concat();
        assert!(matches!(
            server(&mut rng, &[&a], &long),
            Err(HandshakeError::Malformed(_))
        ));
        let reply = kat_reply();
        for bad in [
            &reply[..0],
            &reply[..128],
            &reply[..147],
            &[reply.clone(), vec![0]].concat()[..],
        ] {
            let (state, _) = client1(&mut rng, a.as_public_key()).unwrap();
            assert!(matches!(
                client2(state, bad),
                Err(HandshakeError::Malformed(_))
            ));
            let secret = SharedSecret::from_bytes(&[1; DH_LEN]);
            assert!(matches!(
                client2_from_secret(&secret, bad),
                Err(HandshakeError::Malformed(_))
            ));
        }
        let (state, _) = client1(&mut rng, a.as_public_key()).unwrap();
        assert!(matches!(
            dh_shared_secret(state, &h(GY)[..127]),
            Err(HandshakeError::Malformed(_))
        ));
    }

    #[test]
    fn non_1024_bit_keys_are_refused() {
        let (a, _, big) = test_keys();
        let mut rng = seeded_rng(10);
        assert!(matches!(
            client1(&mut rng, big.as_public_key()),
            Err(HandshakeError::BadKey(_))
        ));
        let (_, skin) = client1(&mut rng, a.as_public_key()).unwrap();
        assert!(matches!(
            server(&mut rng, &[&a, &big], &skin),
            Err(HandshakeError::BadKey(_))
        ));
        assert!(matches!(
            server(&mut rng, &[], &skin),
            Err(HandshakeError::BadKey(_))
        ));
        // A 1024-bit key with another exponent.
        let e3 = PrivateKey::new_with_exp(&mut rng, 1024, BoxedUint::from(3u32)).unwrap();
        assert!(matches!(
            client1(&mut rng, e3.as_public_key()),
            Err(HandshakeError::BadKey(_))
        ));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Hostile bytes from the network are refused with an error, never a panic.
        #[test]
        fn prop_hostile_input_is_an_error(
            skin in proptest::collection::vec(proptest::prelude::any::<u8>(), TAP_C_HANDSHAKE_LEN..=TAP_C_HANDSHAKE_LEN),
            reply in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..=TAP_S_HANDSHAKE_LEN + 1),
        ) {
            let (a, b, _) = test_keys();
            let mut rng = seeded_rng(0);
            proptest::prop_assert!(server(&mut rng, &[&a, &b], &skin).is_err());
            let (state, _) = client1(&mut rng, a.as_public_key()).unwrap();
            proptest::prop_assert!(client2(state, &reply).is_err());
            let secret = SharedSecret::from_bytes(&[7; DH_LEN]);
            proptest::prop_assert!(client2_from_secret(&secret, &reply).is_err());
        }
    }

    #[test]
    fn onion_key_from_raw_modulus() {
        let (a, _, big) = test_keys();
        let n = a.n_bytes();
        assert_eq!(onion_key_from_modulus(&n).unwrap(), *a.as_public_key());
        let padded = [&[0u8][..], &n[..]].concat();
        assert_eq!(onion_key_from_modulus(&padded).unwrap(), *a.as_public_key());
        // Too long, too short, empty, even (not an RSA modulus).
        for bad in [&big.n_bytes()[..], &n[1..], &[][..], &[0xfe; 128][..]] {
            assert!(matches!(
                onion_key_from_modulus(bad),
                Err(HandshakeError::BadKey(_))
            ));
        }
    }

    /// The seed's RELAY_INFO: an OR computes TAP's client side for a browser OP, which then
    /// extends to a relay and finishes with the secret the OR computed.
    #[test]
    fn relay_info_flow() {
        let (a, b, _) = test_keys();
        let mut helper_rng = seeded_rng(11);
        let mut relay_rng = seeded_rng(12);
        // [01][ID][modulus] -> [ID][X_length][X][Onion]
        let key = onion_key_from_modulus(&a.n_bytes()).unwrap();
        let (state, skin) = client1(&mut helper_rng, &key).unwrap();
        let x = *state.dh_public();
        assert!(dh::check_public(&x).is_ok());
        // The relay answers the CREATE.
        let (relay_keys, reply) = server(&mut relay_rng, &[&a, &b], &skin).unwrap();
        // [02][ID][Y] -> [ID][DH secret(X,Y)]
        let secret = dh_shared_secret(state, &reply[..DH_LEN]).unwrap();
        let secret = SharedSecret::from_bytes(secret.as_bytes());
        let op_keys = client2_from_secret(&secret, &reply).unwrap();
        assert_eq!(op_keys, relay_keys);
        assert_eq!(
            format!("{:?}", client1(&mut helper_rng, &key).unwrap().0),
            "TapClientState { .. }"
        );
    }
}
