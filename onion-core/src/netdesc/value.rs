//! Parsers (text -> typed value, or a [`Problem`]) and writers of the values both documents
//! share: nicknames, identities, keys, addresses, URLs, flags.

use core::net::SocketAddr;

use ::rsa::pkcs1::DecodeRsaPublicKey;
use ::rsa::traits::PublicKeyParts;
use ::rsa::{BoxedUint, PublicKey as RsaPublicKey};
use base64ct::{Base64, Base64Unpadded, Encoding};
use ed25519_dalek::VerifyingKey;

use super::Problem;
use super::url::WebUrl;
use crate::certs::{Ed25519Identity, RsaIdentity};
use crate::dir::RelayFlags;
use crate::dir::encode::{rsa_bits, rsa_public_der};

/// The flags a relay list may carry, with their names, in the order they are written.
pub(crate) const LIST_FLAGS: [(&str, RelayFlags); 5] = [
    ("Guard", RelayFlags::GUARD),
    ("Exit", RelayFlags::EXIT),
    ("Running", RelayFlags::RUNNING),
    ("Fast", RelayFlags::FAST),
    ("Stable", RelayFlags::STABLE),
];

/// Size of a TAP onion key (tor-spec §0.3).
const TAP_KEY_BITS: u32 = 1024;

/// Longest base64 text decoded (a PEM RSA-1024 key is ~250 bytes).
const MAX_B64_LEN: usize = 4096;

/// PEM armour of a PKCS#1 RSA public key.
const PEM_BEGIN: &str = "-----BEGIN RSA PUBLIC KEY-----";
/// End of the PEM armour.
const PEM_END: &str = "-----END RSA PUBLIC KEY-----";

/// A Tor nickname: 1-19 characters `A-Z a-z 0-9` (dir-spec §2.1.1).
pub(crate) fn nickname(s: &str) -> Result<String, Problem> {
    if (1..=19).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(s.to_owned())
    } else {
        Err(Problem::BadNickname)
    }
}

/// A network name: 1-64 characters `A-Z a-z 0-9 . _ -`.
pub(crate) fn network_name(s: &str) -> Result<String, Problem> {
    if (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        Ok(s.to_owned())
    } else {
        Err(Problem::BadName)
    }
}

/// Exactly 40 hex digits (either case).
pub(crate) fn rsa_id(s: &str) -> Result<RsaIdentity, Problem> {
    if s.len() != 40 {
        return Err(Problem::BadHex);
    }
    let mut out = [0u8; RsaIdentity::LEN];
    hex::decode_to_slice(s, &mut out).map_err(|_| Problem::BadHex)?;
    Ok(RsaIdentity::from_bytes(out))
}

/// Decode base64 (standard alphabet, canonical, with or without `=` padding).
fn base64(s: &str) -> Result<Vec<u8>, Problem> {
    if s.len() > MAX_B64_LEN {
        return Err(Problem::BadBase64);
    }
    Base64Unpadded::decode_vec(s)
        .or_else(|_| Base64::decode_vec(s))
        .map_err(|_| Problem::BadBase64)
}

/// Base64 of exactly `N` bytes.
fn base64_array<const N: usize>(s: &str) -> Result<[u8; N], Problem> {
    let v = base64(s)?;
    <[u8; N]>::try_from(v.as_slice()).map_err(|_| Problem::BadLength {
        expected: N,
        found: v.len(),
    })
}

/// Base64 of exactly 32 bytes.
fn base64_32(s: &str) -> Result<[u8; 32], Problem> {
    base64_array(s)
}

/// An Ed25519 signature: base64 of 64 bytes.
pub(crate) fn signature(s: &str) -> Result<ed25519_dalek::Signature, Problem> {
    base64_array::<64>(s).map(|b| ed25519_dalek::Signature::from_bytes(&b))
}

/// An Ed25519 identity in base64. Not checked to be a curve point (like
/// [`Ed25519Identity`]): the link handshake checks it against the relay's certificates.
pub(crate) fn ed25519_id(s: &str) -> Result<Ed25519Identity, Problem> {
    base64_32(s).map(Ed25519Identity::from_bytes)
}

/// A signing key in base64: a valid, not small-order, Ed25519 point.
pub(crate) fn ed25519_key(s: &str) -> Result<VerifyingKey, Problem> {
    let key = VerifyingKey::from_bytes(&base64_32(s)?)
        .map_err(|_| Problem::BadKey("not an Ed25519 public key"))?;
    if key.is_weak() {
        return Err(Problem::BadKey("weak (small-order) Ed25519 key"));
    }
    Ok(key)
}

/// An ntor onion key (curve25519) in base64.
pub(crate) fn ntor_key(s: &str) -> Result<x25519_dalek::PublicKey, Problem> {
    base64_32(s).map(x25519_dalek::PublicKey::from)
}

/// A TAP onion key: PKCS#1 DER as PEM (`RSA PUBLIC KEY`) or as base64; 1024 bits, exponent
/// 65537, canonically encoded (Tor hashes the DER).
pub(crate) fn tap_key(s: &str) -> Result<RsaPublicKey, Problem> {
    let trimmed = s.trim();
    let der = if let Some(rest) = trimmed.strip_prefix(PEM_BEGIN) {
        let body = rest
            .strip_suffix(PEM_END)
            .ok_or(Problem::BadKey("PEM without its END line"))?;
        let b64: String = body.split_ascii_whitespace().collect();
        base64(&b64)?
    } else {
        base64(s)?
    };
    let key = RsaPublicKey::from_pkcs1_der(&der)
        .map_err(|_| Problem::BadKey("not a PKCS#1 RSA public key"))?;
    if rsa_bits(&key) != TAP_KEY_BITS {
        return Err(Problem::BadKey("TAP key is not 1024 bits"));
    }
    if key.e() != &BoxedUint::from(65_537u32) {
        return Err(Problem::BadKey("RSA public exponent is not 65537"));
    }
    if rsa_public_der(&key).ok().as_deref() != Some(der.as_slice()) {
        return Err(Problem::BadKey("RSA key is not canonically encoded"));
    }
    Ok(key)
}

/// `ip:port` or `[ipv6]:port`, a specified address, a nonzero port.
pub(crate) fn socket_addr(s: &str) -> Result<SocketAddr, Problem> {
    let a: SocketAddr = s.parse().map_err(|_| Problem::BadAddress)?;
    if a.port() == 0 || a.ip().is_unspecified() {
        return Err(Problem::BadAddress);
    }
    Ok(a)
}

/// A `ws://` or `wss://` URL.
pub(crate) fn ws_url(s: &str) -> Result<WebUrl, Problem> {
    url_with(s, true)
}

/// An `http://` or `https://` URL.
pub(crate) fn http_url(s: &str) -> Result<WebUrl, Problem> {
    url_with(s, false)
}

fn url_with(s: &str, websocket: bool) -> Result<WebUrl, Problem> {
    let u = WebUrl::parse(s).map_err(Problem::BadUrl)?;
    if u.scheme().is_websocket() != websocket {
        return Err(Problem::BadUrlScheme {
            expected: if websocket {
                "ws:// or wss://"
            } else {
                "http:// or https://"
            },
        });
    }
    Ok(u)
}

/// One relay-list flag name.
pub(crate) fn list_flag(s: &str) -> Result<RelayFlags, Problem> {
    LIST_FLAGS
        .iter()
        .find(|(n, _)| *n == s)
        .map(|&(_, f)| f)
        .ok_or(Problem::UnknownFlag)
}

/// The names of the relay-list flags set in `flags`.
pub(crate) fn list_flag_names(flags: RelayFlags) -> impl Iterator<Item = &'static str> {
    LIST_FLAGS
        .iter()
        .filter(move |(_, f)| flags.contains(*f))
        .map(|&(n, _)| n)
}

/// Whether `flags` holds only flags a relay list can carry.
pub(crate) fn only_list_flags(flags: RelayFlags) -> bool {
    let all = LIST_FLAGS
        .iter()
        .fold(RelayFlags::default(), |acc, &(_, f)| acc.union(f));
    all.contains(flags)
}

/// Upper-case hex of an RSA identity.
pub(crate) fn write_rsa_id(id: &RsaIdentity) -> String {
    id.to_string()
}

/// Unpadded base64 of 32 key bytes.
pub(crate) fn write_b64(bytes: &[u8]) -> String {
    Base64Unpadded::encode_string(bytes)
}

/// Padded base64, as signatures and TAP keys are written.
pub(crate) fn write_b64_padded(bytes: &[u8]) -> String {
    Base64::encode_string(bytes)
}

/// A TAP key as base64 (padded) of its PKCS#1 DER; `None` if it cannot be encoded.
pub(crate) fn write_tap_key(key: &RsaPublicKey) -> Option<String> {
    rsa_public_der(key).ok().map(|d| Base64::encode_string(&d))
}

#[cfg(test)]
pub(crate) mod test {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    /// The TAP key of the examples, as base64 DER.
    pub(crate) const TAP_B64: &str = "MIGJAoGBAMUe8pYVUodE31DR1WQh5J1/wyw6BHd7LzE4LuR/KgKN74MGklTK4KDvx8zAAS897BAuXGoE2TaNSF1fxITx3JF0g6+/gGId4kCvnNpTrrlbIvbDJyMnkcZPj7ZdhBSrMMyLHm5egt5M44E46W+Cxp0QbaQFZZ0A7ShOsX0N7I0FAgMBAAE=";

    #[test]
    fn nicknames_and_names() {
        assert!(nickname("a").is_ok());
        assert!(nickname("abcdefghij123456789").is_ok());
        for bad in ["", "abcdefghij1234567890", "dev-guard", "dév", "a b"] {
            assert_eq!(nickname(bad), Err(Problem::BadNickname), "{bad}");
        }
        assert!(network_name("onion-dev.test_1").is_ok());
        assert!(network_name(&"n".repeat(64)).is_ok());
        for bad in ["", "a b", "a/b", &"n".repeat(65)] {
            assert_eq!(network_name(bad), Err(Problem::BadName), "{bad}");
        }
    }

    #[test]
    fn identities() {
        let id = rsa_id("637323350f23ff2ad4c7ea7c4aee41dd14b2a4d8").unwrap();
        assert_eq!(
            write_rsa_id(&id),
            "637323350F23FF2AD4C7EA7C4AEE41DD14B2A4D8"
        );
        for bad in [
            "",
            "637323350F23FF2AD4C7EA7C4AEE41DD14B2A4D",
            "637323350F23FF2AD4C7EA7C4AEE41DD14B2A4D80",
            "$637323350F23FF2AD4C7EA7C4AEE41DD14B2A4D",
            "G37323350F23FF2AD4C7EA7C4AEE41DD14B2A4D8",
            "é37323350F23FF2AD4C7EA7C4AEE41DD14B2A4D",
        ] {
            assert_eq!(rsa_id(bad), Err(Problem::BadHex), "{bad}");
        }
        let s = "Kr3kJBVxmZeTWbdQ84nFkyETJvsut36NSx1YOoI7Bck";
        let ed = ed25519_id(s).unwrap();
        assert_eq!(write_b64(ed.as_bytes()), s);
        assert_eq!(ed25519_id(&format!("{s}=")), Ok(ed));
        assert_eq!(ed25519_id("Kr3k!BVx"), Err(Problem::BadBase64));
        // A non-canonical last character (unused bits set) is refused.
        assert_eq!(
            ed25519_id("Kr3kJBVxmZeTWbdQ84nFkyETJvsut36NSx1YOoI7Bcl"),
            Err(Problem::BadBase64)
        );
        assert_eq!(
            ed25519_id("AAAA"),
            Err(Problem::BadLength {
                expected: 32,
                found: 3
            })
        );
        assert_eq!(ntor_key(&write_b64(&[7; 32])).unwrap().as_bytes(), &[7; 32]);
    }

    #[test]
    fn signing_keys() {
        let vk = ed25519_dalek::SigningKey::from_bytes(&[5; 32]).verifying_key();
        assert_eq!(ed25519_key(&write_b64(vk.as_bytes())), Ok(vk));
        // The identity point has small order.
        let mut ident = [0u8; 32];
        ident[0] = 1;
        assert_eq!(
            ed25519_key(&write_b64(&ident)),
            Err(Problem::BadKey("weak (small-order) Ed25519 key"))
        );
        // y = 2 is not on the curve.
        let mut off = [0u8; 32];
        off[0] = 2;
        assert_eq!(
            ed25519_key(&write_b64(&off)),
            Err(Problem::BadKey("not an Ed25519 public key"))
        );
    }

    #[test]
    fn tap_keys() {
        let k = tap_key(TAP_B64).unwrap();
        assert_eq!(write_tap_key(&k).as_deref(), Some(TAP_B64));
        let mut pem = String::from("-----BEGIN RSA PUBLIC KEY-----\n");
        for chunk in TAP_B64.as_bytes().chunks(64) {
            pem.push_str(core::str::from_utf8(chunk).unwrap());
            pem.push('\n');
        }
        pem.push_str("-----END RSA PUBLIC KEY-----\n");
        assert_eq!(tap_key(&pem), Ok(k.clone()));
        assert_eq!(
            tap_key(
                pem.trim_end()
                    .trim_end_matches("-----END RSA PUBLIC KEY-----")
            ),
            Err(Problem::BadKey("PEM without its END line"))
        );
        assert_eq!(tap_key("!!"), Err(Problem::BadBase64));
        assert_eq!(
            tap_key(&write_b64(&[1, 2, 3])),
            Err(Problem::BadKey("not a PKCS#1 RSA public key"))
        );
        // A 2048-bit key is refused.
        let big = crate::handshake::tap::test::test_keys().2.to_public_key();
        let big_b64 = write_tap_key(&big).unwrap();
        assert_eq!(
            tap_key(&big_b64),
            Err(Problem::BadKey("TAP key is not 1024 bits"))
        );
    }

    #[test]
    fn addresses_and_urls() {
        assert_eq!(
            socket_addr("192.0.2.1:9001"),
            Ok("192.0.2.1:9001".parse().unwrap())
        );
        assert!(socket_addr("[2001:db8::1]:443").is_ok());
        for bad in [
            "192.0.2.1",
            "192.0.2.1:0",
            "0.0.0.0:9001",
            "[::]:9001",
            "host:9001",
            "2001:db8::1:443",
            "192.0.2.1:65536",
        ] {
            assert_eq!(socket_addr(bad), Err(Problem::BadAddress), "{bad}");
        }
        assert!(ws_url("wss://x.example/").is_ok());
        assert_eq!(
            ws_url("https://x.example/"),
            Err(Problem::BadUrlScheme {
                expected: "ws:// or wss://"
            })
        );
        assert_eq!(
            http_url("ws://x.example/"),
            Err(Problem::BadUrlScheme {
                expected: "http:// or https://"
            })
        );
        assert_eq!(
            ws_url("gopher://x.example/"),
            Err(Problem::BadUrl(super::super::UrlError::UnknownScheme))
        );
    }

    #[test]
    fn flags() {
        let f = list_flag("Guard")
            .unwrap()
            .union(list_flag("Stable").unwrap());
        assert_eq!(list_flag_names(f).collect::<Vec<_>>(), ["Guard", "Stable"]);
        assert_eq!(list_flag("guard"), Err(Problem::UnknownFlag));
        assert_eq!(list_flag("Authority"), Err(Problem::UnknownFlag));
        assert!(only_list_flags(f));
        assert!(!only_list_flags(f.union(RelayFlags::AUTHORITY)));
    }
}
