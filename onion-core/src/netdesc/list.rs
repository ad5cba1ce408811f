//! The own network's signed relay list: [`RelayList`] (the body), [`SignedRelayList`] (the
//! envelope: signing and verification). The format is documented on the [module](super).
//!
//! The signature covers the exact bytes of the body as they travel, inside the envelope, as a
//! JSON string: verification never depends on re-serializing anything. It is checked before
//! the body is parsed, so an attacker who does not hold the authority's key only ever reaches
//! the small envelope parser.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::str::FromStr;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::error::Category;
use thiserror::Error;

use super::desc::split_addr;
use super::json::{self, index_path, key_path};
use super::url::WebUrl;
use super::value;
use super::{Bad, MAX_FAMILY, MAX_LIST_LEN, MAX_RELAYS, Problem, VERSION};
use crate::certs::{Ed25519Identity, RsaIdentity};
use crate::client::HopTarget;
use crate::dir::RelayFlags;
use crate::policy::PortPolicy;

/// Most elements of a relay's `flags` array (each of the five flags at most once).
const MAX_FLAGS: usize = 5;

/// Why a signed relay list was refused (or could not be made).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ListError {
    /// The envelope (or the body to sign) is larger than [`MAX_LIST_LEN`].
    #[error("relay list too large: {len} bytes, at most {max}")]
    TooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A value is missing or invalid. `path` is `body` or `signature` for the envelope's
    /// fields, and relative to the body document inside it (`relays[3].flags[1]`).
    #[error("{path}: {problem}")]
    Malformed {
        /// Where.
        path: String,
        /// What is wrong.
        problem: Problem,
    },
    /// The signature does not verify with the pinned key: the body was altered, or another
    /// key signed it.
    #[error("relay list signature does not verify with the pinned authority key")]
    BadSignature,
    /// The body's `version` is not [`VERSION`].
    #[error("unsupported relay list version {0}")]
    UnsupportedVersion(u64),
    /// `now + skew` is before `published`.
    #[error("relay list published at {published}, in the future (now {now})")]
    NotYetValid {
        /// The list's `published`.
        published: u64,
        /// The time checked.
        now: u64,
    },
    /// `now` is after `valid_until + skew`.
    #[error("relay list expired at {valid_until} (now {now})")]
    Expired {
        /// The list's `valid_until`.
        valid_until: u64,
        /// The time checked.
        now: u64,
    },
    /// The list is for another network than the description's.
    #[error("relay list is for network {found:?}, not {expected:?}")]
    WrongNetwork {
        /// The description's network name.
        expected: String,
        /// The list's.
        found: String,
    },
    /// The network description has Tor authorities, not an own authority.
    #[error("the network has no relay-list authority (it uses Tor directory authorities)")]
    NotOwnNetwork,
}

/// One relay of a relay list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedRelay {
    /// Its nickname (1-19 characters `A-Z a-z 0-9`).
    pub nickname: String,
    /// Its RSA identity fingerprint (unique in the list).
    pub rsa_id: RsaIdentity,
    /// Its Ed25519 identity.
    pub ed25519_id: Ed25519Identity,
    /// Its ntor onion key.
    pub ntor_key: x25519_dalek::PublicKey,
    /// Its TAP onion key (RSA-1024), for TAP and the seed's CREATE_FAST_WS.
    pub tap_key: Option<rsa::PublicKey>,
    /// Its Tor link (TLS) ORPort: what EXTEND2 names.
    pub tls: Option<SocketAddr>,
    /// Its WebSocket listener.
    pub ws: Option<WebUrl>,
    /// Measured bandwidth, kilobytes per second.
    pub bandwidth: u32,
    /// Its flags: only [`RelayFlags::GUARD`], [`RelayFlags::EXIT`], [`RelayFlags::RUNNING`],
    /// [`RelayFlags::FAST`] and [`RelayFlags::STABLE`] are written.
    pub flags: RelayFlags,
    /// Its exit policy summary.
    pub exit_policy: PortPolicy,
    /// The RSA identities of its family.
    pub family: Vec<RsaIdentity>,
}

impl ListedRelay {
    /// What a client needs to extend a circuit to this relay (or to use it as first hop):
    /// its TLS address, identities and onion keys. `supports_ntor_v3` is set: the relays of
    /// an own network are our ORs, which answer ntor-v3, and the list always gives the
    /// Ed25519 identity it needs.
    pub fn hop_target(&self) -> HopTarget {
        let (ipv4, ipv6) = split_addr(self.tls);
        HopTarget {
            ipv4,
            ipv6,
            rsa_id: Some(*self.rsa_id.as_bytes()),
            ed_id: Some(*self.ed25519_id.as_bytes()),
            ntor_onion_key: Some(self.ntor_key),
            tap_onion_key: self.tap_key.clone(),
            supports_ntor_v3: true,
        }
    }
}

/// A relay list: the body of a [`SignedRelayList`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayList {
    /// The network's name.
    pub network: String,
    /// When the list was made (seconds since the Unix epoch); it is not valid before.
    pub published: u64,
    /// End of validity (seconds since the Unix epoch).
    pub valid_until: u64,
    /// The relays (no RSA identity twice).
    pub relays: Vec<ListedRelay>,
}

impl RelayList {
    /// Fail with [`ListError::NotYetValid`] if `now + skew < published`, or with
    /// [`ListError::Expired`] if `now > valid_until + skew`.
    pub fn check_time(&self, now: u64, skew: u64) -> Result<(), ListError> {
        if now.saturating_add(skew) < self.published {
            return Err(ListError::NotYetValid {
                published: self.published,
                now,
            });
        }
        if now > self.valid_until.saturating_add(skew) {
            return Err(ListError::Expired {
                valid_until: self.valid_until,
                now,
            });
        }
        Ok(())
    }

    /// The relay with RSA identity `id`.
    pub fn relay(&self, id: &RsaIdentity) -> Option<&ListedRelay> {
        self.relays.iter().find(|r| r.rsa_id == *id)
    }

    /// The body's JSON text (compact).
    fn to_body(&self) -> Result<String, ListError> {
        let relays = self
            .relays
            .iter()
            .enumerate()
            .map(|(i, r)| write_relay(r, &index_path("relays", i)))
            .collect::<Result<Vec<_>, Bad>>()?;
        let raw = RawRelayList {
            version: Some(Value::from(VERSION)),
            network: Some(Value::String(self.network.clone())),
            published: Some(Value::from(self.published)),
            valid_until: Some(Value::from(self.valid_until)),
            relays: Some(relays),
        };
        serde_json::to_string(&raw).map_err(|e| Bad::new("", json::syntax(&e)).into())
    }

    /// Parse and check a body (no signature, no time check).
    fn parse_body(body: &str) -> Result<Self, ListError> {
        let doc = json::parse_strict(body, "body")?;
        let version = json::version(&doc)?;
        if version != VERSION {
            return Err(ListError::UnsupportedVersion(version));
        }
        let raw: RawRelayList<Value> = json::object(doc, "")?;
        let network = json::req_str(raw.network, "", "network", value::network_name)?;
        let (v, p) = json::required(raw.published, "", "published")?;
        let published = json::uint(&v, &p)?;
        let (v, p) = json::required(raw.valid_until, "", "valid_until")?;
        let valid_until = json::uint(&v, &p)?;
        if valid_until < published {
            return Err(Bad::new(p, Problem::OutOfRange).into());
        }
        let (v, path) = json::required(raw.relays, "", "relays")?;
        let list = json::array(v, &path, MAX_RELAYS)?;
        let mut seen = BTreeSet::new();
        let mut relays = Vec::with_capacity(list.len());
        for (i, v) in list.into_iter().enumerate() {
            let p = index_path(&path, i);
            let r = parse_relay(v, &p)?;
            if !seen.insert(r.rsa_id) {
                return Err(Bad::new(key_path(&p, "rsa_id"), Problem::Duplicate).into());
            }
            relays.push(r);
        }
        Ok(RelayList {
            network,
            published,
            valid_until,
            relays,
        })
    }
}

/// Signing and verification of relay lists. A signed relay list is the JSON envelope
/// `{"body": "<the list's JSON text>", "signature": "<base64>"}`; see the
/// [module documentation](super).
#[derive(Debug, Clone, Copy)]
pub struct SignedRelayList;

impl SignedRelayList {
    /// What the signed message starts with, before the body's bytes.
    pub const DOMAIN: &'static [u8] = b"onion-wasm relay list v1\0";

    /// Serialize `list`, sign it with the authority's `key`, and return the envelope.
    ///
    /// Fails if the list is one [`verify`](Self::verify) would refuse whatever the time
    /// (an invalid nickname or network name, a duplicate identity, `valid_until` before
    /// `published`, a flag outside the five, too many relays or family members, too large),
    /// or if a TAP key cannot be DER-encoded.
    pub fn sign(list: &RelayList, key: &SigningKey) -> Result<String, ListError> {
        if list.relays.len() > MAX_RELAYS {
            return Err(Bad::new("relays", Problem::TooMany { max: MAX_RELAYS }).into());
        }
        let body = list.to_body()?;
        // Everything verify checks (except the time) is checked by parsing the body back.
        RelayList::parse_body(&body)?;
        seal(body, key)
    }

    /// Check a signed relay list: at most [`MAX_LIST_LEN`] bytes, an envelope with exactly
    /// `body` and `signature`, a signature by `pinned` over [`DOMAIN`](Self::DOMAIN) and
    /// the body (`verify_strict`), a well-formed version-1 body, valid at `now_unix` with
    /// `skew_secs` of tolerance on both ends.
    ///
    /// The caller checks that [`RelayList::network`] is the expected network
    /// ([`super::NetworkDescription::verify_relay_list`] does).
    pub fn verify(
        json: &str,
        pinned: &VerifyingKey,
        now_unix: u64,
        skew_secs: u64,
    ) -> Result<RelayList, ListError> {
        if json.len() > MAX_LIST_LEN {
            return Err(ListError::TooLarge {
                len: json.len(),
                max: MAX_LIST_LEN,
            });
        }
        let env: Envelope = serde_json::from_str(json).map_err(envelope_error)?;
        let sig = json::check(&env.signature, "signature", value::signature)?;
        pinned
            .verify_strict(&signed_message(&env.body), &sig)
            .map_err(|_| ListError::BadSignature)?;
        let list = RelayList::parse_body(&env.body)?;
        list.check_time(now_unix, skew_secs)?;
        Ok(list)
    }
}

/// The bytes the signature covers.
fn signed_message(body: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(SignedRelayList::DOMAIN.len() + body.len());
    m.extend_from_slice(SignedRelayList::DOMAIN);
    m.extend_from_slice(body.as_bytes());
    m
}

/// Sign `body` and wrap it in the envelope.
fn seal(body: String, key: &SigningKey) -> Result<String, ListError> {
    let sig = key.sign(&signed_message(&body));
    let env = Envelope {
        body,
        signature: value::write_b64_padded(&sig.to_bytes()),
    };
    let out = serde_json::to_string(&env).map_err(|e| Bad::new("", json::syntax(&e)))?;
    if out.len() > MAX_LIST_LEN {
        return Err(ListError::TooLarge {
            len: out.len(),
            max: MAX_LIST_LEN,
        });
    }
    Ok(out)
}

/// The envelope. Read directly from the text (not through a `Value`), so that hostile input
/// of the wrong shape is refused without being materialised.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    body: String,
    signature: String,
}

/// A [`ListError::Malformed`] from the envelope parser's error.
fn envelope_error(e: serde_json::Error) -> ListError {
    let msg = e.to_string();
    // Key names in serde's messages for deny_unknown_fields, missing and duplicate fields.
    let named = |prefix: &str, end: &str| {
        msg.strip_prefix(prefix)
            .and_then(|rest| rest.split_once(end))
            .map(|(k, _)| k.to_owned())
    };
    let bad = if e.classify() != Category::Data {
        None
    } else if let Some(k) = named("unknown field `", "`, ") {
        Some(Bad::new(key_path("", &k), Problem::UnknownField))
    } else if let Some(k) = named("missing field `", "`") {
        Some(Bad::new(key_path("", &k), Problem::Missing))
    } else {
        named("duplicate field `", "`").map(|k| Bad::new(key_path("", &k), Problem::Duplicate))
    };
    bad.unwrap_or_else(|| Bad::new("", json::syntax(&e))).into()
}

/// The body's top-level object; `R` is the relays (a `Value` when reading, a `Vec` of
/// [`RawRelay`] when writing).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRelayList<R = Vec<RawRelay>> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    version: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    network: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    published: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    valid_until: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    relays: Option<R>,
}

/// A relay object.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRelay {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nickname: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rsa_id: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ed25519_id: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ntor_key: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tap_key: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    addresses: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bandwidth: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    flags: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exit_policy: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    family: Option<Value>,
}

/// A relay's `addresses` object.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAddresses {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tls: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ws: Option<Value>,
}

/// The relay object at `path`.
fn parse_relay(v: Value, path: &str) -> Result<ListedRelay, Bad> {
    let raw: RawRelay = json::object(v, path)?;
    let nickname = json::req_str(raw.nickname, path, "nickname", value::nickname)?;
    let rsa_id = json::req_str(raw.rsa_id, path, "rsa_id", value::rsa_id)?;
    let ed25519_id = json::req_str(raw.ed25519_id, path, "ed25519_id", value::ed25519_id)?;
    let ntor_key = json::req_str(raw.ntor_key, path, "ntor_key", value::ntor_key)?;
    let tap_key = json::opt_str(raw.tap_key, path, "tap_key", value::tap_key)?;

    let (v, apath) = json::required(raw.addresses, path, "addresses")?;
    let addrs: RawAddresses = json::object(v, &apath)?;
    let tls = json::opt_str(addrs.tls, &apath, "tls", value::socket_addr)?;
    let ws = json::opt_str(addrs.ws, &apath, "ws", value::ws_url)?;
    if tls.is_none() && ws.is_none() {
        return Err(Bad::new(apath, Problem::NoneOf("\"tls\", \"ws\"")));
    }

    let (v, p) = json::required(raw.bandwidth, path, "bandwidth")?;
    let bandwidth =
        u32::try_from(json::uint(&v, &p)?).map_err(|_| Bad::new(&p, Problem::OutOfRange))?;

    let (v, fpath) = json::required(raw.flags, path, "flags")?;
    let mut flags = RelayFlags::default();
    for (i, f) in json::array(v, &fpath, MAX_FLAGS)?.into_iter().enumerate() {
        let p = index_path(&fpath, i);
        let flag = json::check(&json::string(f, &p)?, &p, value::list_flag)?;
        if flags.contains(flag) {
            return Err(Bad::new(p, Problem::Duplicate));
        }
        flags = flags.union(flag);
    }

    let exit_policy = json::req_str(raw.exit_policy, path, "exit_policy", |s| {
        PortPolicy::from_str(s).map_err(Problem::BadPolicy)
    })?;

    let mut family = Vec::new();
    if let Some((v, fpath)) = json::optional(raw.family, path, "family") {
        for (i, m) in json::array(v, &fpath, MAX_FAMILY)?.into_iter().enumerate() {
            let p = index_path(&fpath, i);
            family.push(json::check(&json::string(m, &p)?, &p, value::rsa_id)?);
        }
    }

    Ok(ListedRelay {
        nickname,
        rsa_id,
        ed25519_id,
        ntor_key,
        tap_key,
        tls,
        ws,
        bandwidth,
        flags,
        exit_policy,
        family,
    })
}

/// A relay as a raw object; `path` names it in an error.
fn write_relay(r: &ListedRelay, path: &str) -> Result<RawRelay, Bad> {
    if !value::only_list_flags(r.flags) {
        return Err(Bad::new(key_path(path, "flags"), Problem::UnknownFlag));
    }
    let tap_key = match &r.tap_key {
        None => None,
        Some(k) => Some(Value::String(value::write_tap_key(k).ok_or_else(|| {
            Bad::new(
                key_path(path, "tap_key"),
                Problem::BadKey("RSA key cannot be DER-encoded"),
            )
        })?)),
    };
    let addresses = RawAddresses {
        tls: r.tls.map(|a| Value::String(a.to_string())),
        ws: r.ws.as_ref().map(|u| Value::String(u.to_string())),
    };
    let addresses = serde_json::to_value(addresses)
        .map_err(|e| Bad::new(key_path(path, "addresses"), json::syntax(&e)))?;
    Ok(RawRelay {
        nickname: Some(Value::String(r.nickname.clone())),
        rsa_id: Some(Value::String(value::write_rsa_id(&r.rsa_id))),
        ed25519_id: Some(Value::String(value::write_b64(r.ed25519_id.as_bytes()))),
        ntor_key: Some(Value::String(value::write_b64(r.ntor_key.as_bytes()))),
        tap_key,
        addresses: Some(addresses),
        bandwidth: Some(Value::from(r.bandwidth)),
        flags: Some(Value::Array(
            value::list_flag_names(r.flags).map(Value::from).collect(),
        )),
        exit_policy: Some(Value::String(r.exit_policy.to_string())),
        family: (!r.family.is_empty()).then(|| {
            Value::Array(
                r.family
                    .iter()
                    .map(|id| Value::String(value::write_rsa_id(id)))
                    .collect(),
            )
        }),
    })
}

#[cfg(test)]
mod test {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::netdesc::{DescError, NetworkDescription};
    use crate::policy::{PolicyAction, PolicyError, PortRange};
    use proptest::prelude::*;

    const BODY: &str = include_str!("example_relay_list.json");
    /// `published` of the example body.
    const T0: u64 = 1_767_225_600;
    /// `valid_until` of the example body.
    const T1: u64 = 1_767_312_000;

    fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    fn example() -> RelayList {
        RelayList::parse_body(BODY).unwrap()
    }

    /// An envelope around `body`, signed by `key(1)`, whatever the body.
    fn sealed(body: &str) -> String {
        seal(body.to_owned(), &key(1)).unwrap()
    }

    fn verify(json: &str) -> Result<RelayList, ListError> {
        SignedRelayList::verify(json, &key(1).verifying_key(), T0 + 10, 300)
    }

    fn malformed(json: &str) -> (String, Problem) {
        match verify(json) {
            Err(ListError::Malformed { path, problem }) => (path, problem),
            other => panic!("expected Malformed, got {other:?}"),
        }
    }

    /// The example body with `edit` applied, sealed.
    fn sealed_edit(edit: impl FnOnce(&mut Value)) -> String {
        let mut v: Value = serde_json::from_str(BODY).unwrap();
        edit(&mut v);
        sealed(&serde_json::to_string(&v).unwrap())
    }

    #[test]
    fn example_body_parses() {
        let l = example();
        assert_eq!(l.network, "onion-dev");
        assert_eq!((l.published, l.valid_until), (T0, T1));
        assert_eq!(l.relays.len(), 2);
        let g = &l.relays[0];
        assert_eq!(g.nickname, "devguard1");
        assert_eq!(g.bandwidth, 2048);
        assert_eq!(g.tls, Some("192.0.2.10:9001".parse().unwrap()));
        assert_eq!(
            g.ws.as_ref().unwrap().as_str(),
            "wss://guard1.example.net/onion"
        );
        assert!(g.tap_key.is_some());
        for f in [
            RelayFlags::GUARD,
            RelayFlags::RUNNING,
            RelayFlags::FAST,
            RelayFlags::STABLE,
        ] {
            assert!(g.flags.contains(f));
        }
        assert!(!g.flags.contains(RelayFlags::EXIT));
        assert!(g.exit_policy.rejects_all());
        let e = &l.relays[1];
        assert!(e.flags.contains(RelayFlags::EXIT));
        assert!(e.exit_policy.allows_port(443) && !e.exit_policy.allows_port(22));
        assert_eq!(
            e.family,
            [RsaIdentity::from_hex("0A04A16A21AC2CFDBE634A3150D765571AC093E0").unwrap()]
        );
        assert_eq!(e.ws, None);
        assert_eq!(l.relay(&e.rsa_id), Some(e));

        let t = e.hop_target();
        assert_eq!(t.ipv4, Some("192.0.2.12:9001".parse().unwrap()));
        assert_eq!(t.ed_id, Some(*e.ed25519_id.as_bytes()));
        assert_eq!(t.rsa_id, Some(*e.rsa_id.as_bytes()));
        assert_eq!(
            t.best_handshake(),
            Some(crate::client::HandshakeKind::NtorV3)
        );
    }

    #[test]
    fn known_answer_envelope() {
        // Signature computed independently (Python `cryptography`, Ed25519 over
        // "onion-wasm relay list v1\0" || body, key = 32 bytes of 0x01).
        let list = RelayList {
            network: "kat".into(),
            published: 0,
            valid_until: 1,
            relays: vec![],
        };
        let signed = SignedRelayList::sign(&list, &key(1)).unwrap();
        assert_eq!(
            signed,
            r#"{"body":"{\"version\":1,\"network\":\"kat\",\"published\":0,\"valid_until\":1,\"relays\":[]}","signature":"s/Ypgd1ffCLDvOVEjihN+DukWtvfJ/6Sd4zuyVrE+Bw+De6NMMP79mCyka7YBP5SHpE7hDt4OHFov6CACs8+AQ=="}"#
        );
        assert_eq!(
            SignedRelayList::verify(&signed, &key(1).verifying_key(), 1, 0),
            Ok(list)
        );
    }

    #[test]
    fn sign_verify_round_trip() {
        let l = example();
        let signed = SignedRelayList::sign(&l, &key(1)).unwrap();
        assert_eq!(verify(&signed), Ok(l.clone()));
        // The exact bytes are signed: a body in any layout verifies, as sent.
        assert_eq!(verify(&sealed(BODY)), Ok(l));
    }

    #[test]
    fn tampering_is_detected() {
        let signed = SignedRelayList::sign(&example(), &key(1)).unwrap();
        let tampered = signed.replacen("2048", "2049", 1);
        assert_ne!(tampered, signed);
        assert_eq!(verify(&tampered), Err(ListError::BadSignature));
        // Equivalent JSON, different bytes: refused too.
        let spaced = signed.replacen("{\\\"version\\\":1", "{\\\"version\\\": 1", 1);
        assert_ne!(spaced, signed);
        assert_eq!(verify(&spaced), Err(ListError::BadSignature));
        // A flipped signature bit.
        let env: Value = serde_json::from_str(&signed).unwrap();
        let mut sig = <base64ct::Base64 as base64ct::Encoding>::decode_vec(
            env["signature"].as_str().unwrap(),
        )
        .unwrap();
        sig[10] ^= 1;
        let forged = serde_json::json!({
            "body": env["body"],
            "signature": value::write_b64_padded(&sig),
        })
        .to_string();
        assert_eq!(verify(&forged), Err(ListError::BadSignature));
        // Signed by another key.
        let other = SignedRelayList::sign(&example(), &key(2)).unwrap();
        assert_eq!(verify(&other), Err(ListError::BadSignature));
        // A signature without the domain prefix.
        let plain = key(1).sign(BODY.as_bytes());
        let no_domain = serde_json::json!({
            "body": BODY,
            "signature": value::write_b64_padded(&plain.to_bytes()),
        })
        .to_string();
        assert_eq!(verify(&no_domain), Err(ListError::BadSignature));
    }

    #[test]
    fn validity_window() {
        let signed = SignedRelayList::sign(&example(), &key(1)).unwrap();
        let vk = key(1).verifying_key();
        let at = |now, skew| SignedRelayList::verify(&signed, &vk, now, skew);
        assert!(at(T0, 0).is_ok());
        assert!(at(T1, 0).is_ok());
        assert_eq!(
            at(T1 + 1, 0),
            Err(ListError::Expired {
                valid_until: T1,
                now: T1 + 1
            })
        );
        assert!(at(T1 + 300, 300).is_ok());
        assert_eq!(
            at(T1 + 301, 300),
            Err(ListError::Expired {
                valid_until: T1,
                now: T1 + 301
            })
        );
        assert_eq!(
            at(T0 - 1, 0),
            Err(ListError::NotYetValid {
                published: T0,
                now: T0 - 1
            })
        );
        assert!(at(T0 - 300, 300).is_ok());
        assert_eq!(
            at(T0 - 301, 300),
            Err(ListError::NotYetValid {
                published: T0,
                now: T0 - 301
            })
        );
        // No overflow at the ends of time.
        assert!(at(u64::MAX, u64::MAX).is_ok());
        assert!(matches!(at(u64::MAX, 0), Err(ListError::Expired { .. })));
    }

    #[test]
    fn versions() {
        let v2 = sealed_edit(|v| {
            v["version"] = Value::from(2);
            v["something_new"] = Value::from(true);
        });
        assert_eq!(verify(&v2), Err(ListError::UnsupportedVersion(2)));
        let v0 = sealed_edit(|v| v["version"] = Value::from(0));
        assert_eq!(verify(&v0), Err(ListError::UnsupportedVersion(0)));
    }

    #[test]
    fn envelope_errors() {
        let signed = SignedRelayList::sign(&example(), &key(1)).unwrap();
        let env: Value = serde_json::from_str(&signed).unwrap();
        assert_eq!(
            malformed(r#"{"body": "{}"}"#),
            ("signature".into(), Problem::Missing)
        );
        assert_eq!(
            malformed(&serde_json::json!({"body": env["body"], "signature": env["signature"], "extra": 1}).to_string()),
            ("extra".into(), Problem::UnknownField)
        );
        assert_eq!(
            malformed(r#"{"body": "{}", "body": "{}", "signature": ""}"#),
            ("body".into(), Problem::Duplicate)
        );
        assert_eq!(
            malformed(&serde_json::json!({"body": env["body"], "signature": "@@"}).to_string()),
            ("signature".into(), Problem::BadBase64)
        );
        assert_eq!(
            malformed(&serde_json::json!({"body": env["body"], "signature": "AAAA"}).to_string()),
            (
                "signature".into(),
                Problem::BadLength {
                    expected: 64,
                    found: 3
                }
            )
        );
        for bad in ["", "[]", "{", "null", r#"{"body": 5, "signature": ""}"#] {
            let (path, problem) = malformed(bad);
            assert_eq!(path, "", "{bad}");
            assert!(
                matches!(problem, Problem::Syntax { .. }),
                "{bad}: {problem:?}"
            );
        }
        let big = " ".repeat(MAX_LIST_LEN + 1);
        assert_eq!(
            verify(&big),
            Err(ListError::TooLarge {
                len: MAX_LIST_LEN + 1,
                max: MAX_LIST_LEN
            })
        );
    }

    #[test]
    fn body_errors() {
        type Edit = Box<dyn FnOnce(&mut Value)>;
        let cases: Vec<(&str, Problem, Edit)> = vec![
            (
                "relays[0].flags[1]",
                Problem::UnknownFlag,
                Box::new(|v| v["relays"][0]["flags"][1] = Value::from("Authority")),
            ),
            (
                "relays[0].flags[1]",
                Problem::Duplicate,
                Box::new(|v| v["relays"][0]["flags"][1] = Value::from("Guard")),
            ),
            (
                "relays[1].rsa_id",
                Problem::Duplicate,
                Box::new(|v| v["relays"][1]["rsa_id"] = v["relays"][0]["rsa_id"].clone()),
            ),
            (
                "relays[1].bandwidth",
                Problem::OutOfRange,
                Box::new(|v| v["relays"][1]["bandwidth"] = Value::from(1u64 << 32)),
            ),
            (
                "relays[1].exit_policy",
                Problem::BadPolicy(PolicyError::BadSummaryKeyword("allow 80".into())),
                Box::new(|v| v["relays"][1]["exit_policy"] = Value::from("allow 80")),
            ),
            (
                "relays[1].addresses",
                Problem::NoneOf("\"tls\", \"ws\""),
                Box::new(|v| v["relays"][1]["addresses"] = serde_json::json!({})),
            ),
            (
                "relays[1].addresses.onion",
                Problem::UnknownField,
                Box::new(|v| v["relays"][1]["addresses"]["onion"] = Value::from("x")),
            ),
            (
                "relays[0].addresses.ws",
                Problem::BadUrlScheme {
                    expected: "ws:// or wss://",
                },
                Box::new(|v| v["relays"][0]["addresses"]["ws"] = Value::from("http://a.example/")),
            ),
            (
                "relays[0].ed25519_id",
                Problem::Missing,
                Box::new(|v| {
                    v["relays"][0].as_object_mut().unwrap().remove("ed25519_id");
                }),
            ),
            (
                "relays[1].family[0]",
                Problem::BadHex,
                Box::new(|v| v["relays"][1]["family"][0] = Value::from("0A04")),
            ),
            (
                "relays[1].family",
                Problem::TooMany { max: MAX_FAMILY },
                Box::new(|v| {
                    v["relays"][1]["family"] = Value::Array(vec![Value::Null; MAX_FAMILY + 1])
                }),
            ),
            (
                "valid_until",
                Problem::OutOfRange,
                Box::new(|v| v["valid_until"] = Value::from(T0 - 1)),
            ),
            (
                "published",
                Problem::OutOfRange,
                Box::new(|v| v["published"] = Value::from(-1)),
            ),
            (
                "network",
                Problem::BadName,
                Box::new(|v| v["network"] = Value::from("onion dev")),
            ),
            (
                "relays",
                Problem::TooMany { max: MAX_RELAYS },
                Box::new(|v| v["relays"] = Value::Array(vec![Value::Null; MAX_RELAYS + 1])),
            ),
            (
                "relays[0]",
                Problem::WrongType { expected: "object" },
                Box::new(|v| v["relays"][0] = Value::from(1)),
            ),
        ];
        for (path, problem, edit) in cases {
            assert_eq!(
                malformed(&sealed_edit(edit)),
                (path.to_owned(), problem.clone()),
                "{path}: {problem}"
            );
        }
        // A signed body that is not JSON, or repeats a key.
        assert!(matches!(
            malformed(&sealed("{\"version\": 1,")),
            (p, Problem::Syntax { .. }) if p == "body"
        ));
        assert!(matches!(
            malformed(&sealed(r#"{"version": 1, "version": 1}"#)),
            (p, Problem::Syntax { .. }) if p == "body"
        ));
    }

    #[test]
    fn sign_refuses_what_verify_would() {
        let mut l = example();
        l.relays[1].nickname = "dev-exit".into();
        assert_eq!(
            SignedRelayList::sign(&l, &key(1)),
            Err(ListError::Malformed {
                path: "relays[1].nickname".into(),
                problem: Problem::BadNickname
            })
        );
        let mut l = example();
        l.relays[0].flags = l.relays[0].flags.union(RelayFlags::BAD_EXIT);
        assert_eq!(
            SignedRelayList::sign(&l, &key(1)),
            Err(ListError::Malformed {
                path: "relays[0].flags".into(),
                problem: Problem::UnknownFlag
            })
        );
        let mut l = example();
        l.valid_until = l.published - 1;
        assert!(matches!(
            SignedRelayList::sign(&l, &key(1)),
            Err(ListError::Malformed { path, .. }) if path == "valid_until"
        ));
        let mut l = example();
        l.relays[0].tls = None;
        l.relays[0].ws = None;
        assert!(matches!(
            SignedRelayList::sign(&l, &key(1)),
            Err(ListError::Malformed { path, problem: Problem::NoneOf(_) }) if path == "relays[0].addresses"
        ));
    }

    #[test]
    fn description_checks_the_network() {
        let desc = NetworkDescription::parse(&include_str!("example_own.json").replace(
            "EmhGZjzjRuNWq/PyO+vmBb5w5G+lRhWlk16/frphkcI",
            &value::write_b64(key(1).verifying_key().as_bytes()),
        ))
        .map_err(|e: DescError| e.to_string())
        .unwrap();
        let signed = SignedRelayList::sign(&example(), &key(1)).unwrap();
        assert_eq!(desc.verify_relay_list(&signed, T0, 0), Ok(example()));
        let mut other = example();
        other.network = "elsewhere".into();
        let signed = SignedRelayList::sign(&other, &key(1)).unwrap();
        assert_eq!(
            desc.verify_relay_list(&signed, T0, 0),
            Err(ListError::WrongNetwork {
                expected: "onion-dev".into(),
                found: "elsewhere".into()
            })
        );
        let signed = SignedRelayList::sign(&example(), &key(2)).unwrap();
        assert_eq!(
            desc.verify_relay_list(&signed, T0, 0),
            Err(ListError::BadSignature)
        );
    }

    fn arb_policy() -> impl Strategy<Value = PortPolicy> {
        (
            any::<bool>(),
            prop::collection::vec((1u16.., 0u16..100), 1..5),
        )
            .prop_map(|(accept, ranges)| {
                let ranges = ranges
                    .into_iter()
                    .map(|(lo, len)| PortRange::new(lo, lo.saturating_add(len)).unwrap())
                    .collect();
                let action = if accept {
                    PolicyAction::Accept
                } else {
                    PolicyAction::Reject
                };
                PortPolicy::new(action, ranges).unwrap()
            })
    }

    fn arb_relay() -> impl Strategy<Value = ListedRelay> {
        let addr = (any::<[u8; 4]>(), 1u16..).prop_filter_map("unspecified", |(ip, port)| {
            let ip = core::net::Ipv4Addr::from(ip);
            (!ip.is_unspecified()).then(|| SocketAddr::from((ip, port)))
        });
        let ws = "(ws|wss)://[a-z]{1,10}\\.example(:[1-9][0-9]{0,3})?(/[a-z0-9]{0,6})?"
            .prop_map(|s| WebUrl::parse(&s).unwrap());
        let addrs = (proptest::option::of(addr), proptest::option::of(ws))
            .prop_filter("an address", |(t, w)| t.is_some() || w.is_some());
        let tap = crate::netdesc::value::test::TAP_B64;
        (
            "[A-Za-z0-9]{1,19}",
            any::<[u8; 20]>(),
            any::<[u8; 32]>(),
            any::<[u8; 32]>(),
            any::<bool>(),
            addrs,
            any::<u32>(),
            0usize..32,
            arb_policy(),
            prop::collection::vec(any::<[u8; 20]>(), 0..3),
        )
            .prop_map(
                move |(
                    nickname,
                    rsa,
                    ed,
                    ntor,
                    has_tap,
                    (tls, ws),
                    bandwidth,
                    flags,
                    exit_policy,
                    family,
                )| {
                    ListedRelay {
                        nickname,
                        rsa_id: RsaIdentity::from_bytes(rsa),
                        ed25519_id: Ed25519Identity::from_bytes(ed),
                        ntor_key: x25519_dalek::PublicKey::from(ntor),
                        tap_key: has_tap.then(|| value::tap_key(tap).unwrap()),
                        tls,
                        ws,
                        bandwidth,
                        flags: value::LIST_FLAGS
                            .iter()
                            .enumerate()
                            .filter(|(i, _)| flags & (1 << i) != 0)
                            .fold(RelayFlags::default(), |acc, (_, &(_, f))| acc.union(f)),
                        exit_policy,
                        family: family.into_iter().map(RsaIdentity::from_bytes).collect(),
                    }
                },
            )
    }

    fn arb_list() -> impl Strategy<Value = RelayList> {
        (
            "[A-Za-z0-9._-]{1,64}",
            0u64..(1 << 40),
            0u64..(1 << 20),
            prop::collection::vec(arb_relay(), 0..6),
        )
            .prop_map(|(network, published, life, relays)| {
                let mut seen = BTreeSet::new();
                RelayList {
                    network,
                    published,
                    valid_until: published + life,
                    relays: relays
                        .into_iter()
                        .filter(|r| seen.insert(r.rsa_id))
                        .collect(),
                }
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn arbitrary_lists_round_trip(list in arb_list(), n in 1u8..=255, at in 0u64..(1 << 20)) {
            let k = key(n);
            let signed = SignedRelayList::sign(&list, &k).unwrap();
            let now = list.published + at.min(list.valid_until - list.published);
            let back = SignedRelayList::verify(&signed, &k.verifying_key(), now, 0).unwrap();
            prop_assert_eq!(&back, &list);
            // Signing is deterministic: the same list gives the same envelope.
            prop_assert_eq!(SignedRelayList::sign(&back, &k).unwrap(), signed);
        }

        #[test]
        fn garbage_envelopes_never_panic(s in ".{0,400}") {
            let _ = verify(&s);
        }

        #[test]
        fn garbage_signed_bodies_never_panic(s in ".{0,400}") {
            let _ = verify(&sealed(&s));
        }

        #[test]
        fn mutated_signed_bodies_never_panic(pos in 0usize..3000, len in 0usize..40, junk in ".{0,8}") {
            let mut s = BODY.to_string();
            let start = (pos % s.len()..s.len()).find(|&i| s.is_char_boundary(i)).unwrap_or(s.len());
            let end = (start + len.min(s.len() - start)..=s.len())
                .find(|&i| s.is_char_boundary(i))
                .unwrap_or(s.len());
            s.replace_range(start..end, &junk);
            let _ = verify(&sealed(&s));
        }
    }
}
