//! The network description ([`NetworkDescription`]): the one JSON document that configures
//! an OP. The format is documented on the [module](super).

use core::net::SocketAddr;

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::json::{self, index_path, key_path};
use super::list::{ListError, RelayList, SignedRelayList};
use super::url::WebUrl;
use super::value;
use super::{
    Bad, DescError, MAX_DESCRIPTION_LEN, MAX_ENTRIES, MAX_TOR_AUTHORITIES, Problem, VERSION,
};
use crate::certs::{Ed25519Identity, RsaIdentity};
use crate::client::HopTarget;

/// An OR the client connects to directly: an entry (first hop) of a network, or an own
/// network's authority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryOr {
    /// Its nickname (1-19 characters `A-Z a-z 0-9`).
    pub nickname: String,
    /// Its WebSocket listener (`ws://` or `wss://`).
    pub ws: Option<WebUrl>,
    /// Its Tor link (TLS) ORPort.
    pub tls: Option<SocketAddr>,
    /// Its RSA identity fingerprint.
    pub rsa_id: RsaIdentity,
    /// Its Ed25519 identity.
    pub ed25519_id: Option<Ed25519Identity>,
    /// Its ntor onion key.
    pub ntor_key: x25519_dalek::PublicKey,
    /// Its TAP onion key (RSA-1024), for TAP and the seed's CREATE_FAST_WS.
    pub tap_key: Option<rsa::PublicKey>,
}

impl EntryOr {
    /// What a client needs to run a handshake with this OR and to name it in an EXTEND2:
    /// its TLS address (IPv4 or IPv6), identities and onion keys.
    ///
    /// `supports_ntor_v3` is left `false`: a description does not say which protocols an
    /// OR speaks, and ntor works with every relay that has an ntor key. Set it when the OR
    /// is known to answer ntor-v3 (ours do).
    pub fn hop_target(&self) -> HopTarget {
        let (ipv4, ipv6) = split_addr(self.tls);
        HopTarget {
            ipv4,
            ipv6,
            rsa_id: Some(*self.rsa_id.as_bytes()),
            ed_id: self.ed25519_id.map(|id| *id.as_bytes()),
            ntor_onion_key: Some(self.ntor_key),
            tap_onion_key: self.tap_key.clone(),
            supports_ntor_v3: false,
        }
    }
}

/// The IPv4 and IPv6 halves of an optional address, as [`HopTarget`] keeps them.
pub(crate) fn split_addr(
    a: Option<SocketAddr>,
) -> (
    Option<core::net::SocketAddrV4>,
    Option<core::net::SocketAddrV6>,
) {
    match a {
        Some(SocketAddr::V4(a)) => (Some(a), None),
        Some(SocketAddr::V6(a)) => (None, Some(a)),
        None => (None, None),
    }
}

/// An own network's authority: the key its relay lists are signed with, and where to fetch
/// them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnAuthority {
    /// The pinned relay-list signing key.
    pub key: VerifyingKey,
    /// Where the signed relay list is served over HTTP(S).
    pub list_url: Option<WebUrl>,
    /// The authority's OR, to fetch [`super::RELAY_LIST_PATH`] over BEGIN_DIR.
    pub or: Option<EntryOr>,
}

/// A Tor directory authority (a line of C tor's `auth_dirs.inc`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TorAuthority {
    /// Its nickname.
    pub nickname: String,
    /// The fingerprint of its v3 authority identity key: what consensus signatures name.
    pub v3ident: RsaIdentity,
    /// Its DirPort.
    pub address: SocketAddr,
    /// The fingerprint of its relay RSA identity key.
    pub fingerprint: RsaIdentity,
}

/// Where an OP learns the network's relays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Directory {
    /// An own network: a signed relay list from one authority.
    Own(Box<OwnAuthority>),
    /// A Tor-like network: a consensus signed by these authorities.
    Tor(Vec<TorAuthority>),
}

/// A network description: the one document that configures an OP. See the
/// [module documentation](super) for the JSON format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkDescription {
    /// The network's name.
    pub name: String,
    /// The ORs the OP may use as first hop (never empty).
    pub entries: Vec<EntryOr>,
    /// Where the rest of the network is learnt.
    pub directory: Directory,
}

impl NetworkDescription {
    /// Parse and check a network description.
    pub fn parse(json: &str) -> Result<Self, DescError> {
        if json.len() > MAX_DESCRIPTION_LEN {
            return Err(DescError::TooLarge {
                len: json.len(),
                max: MAX_DESCRIPTION_LEN,
            });
        }
        let doc = json::parse_strict(json, "")?;
        let version = json::version(&doc)?;
        if version != VERSION {
            return Err(DescError::UnsupportedVersion(version));
        }
        let raw: RawDescription = json::object(doc, "")?;
        let name = json::req_str(raw.name, "", "name", value::network_name)?;
        let (entries, path) = json::required(raw.entries, "", "entries")?;
        let entries = json::array(entries, &path, MAX_ENTRIES)?;
        if entries.is_empty() {
            return Err(Bad::new(path, Problem::Empty).into());
        }
        let mut ors: Vec<EntryOr> = Vec::with_capacity(entries.len());
        for (i, e) in entries.into_iter().enumerate() {
            let p = index_path(&path, i);
            let or = parse_or(e, &p)?;
            if ors.iter().any(|o| o.rsa_id == or.rsa_id) {
                return Err(Bad::new(key_path(&p, "rsa_id"), Problem::Duplicate).into());
            }
            ors.push(or);
        }
        let authority = json::optional(raw.authority, "", "authority");
        let tor = json::optional(raw.tor_authorities, "", "tor_authorities");
        let directory = match (authority, tor) {
            (Some(_), Some(_)) => return Err(DescError::BothDirectories),
            (None, None) => return Err(DescError::NoDirectory),
            (Some((v, p)), None) => Directory::Own(Box::new(parse_authority(v, &p)?)),
            (None, Some((v, p))) => Directory::Tor(parse_tor_authorities(v, &p)?),
        };
        Ok(NetworkDescription {
            name,
            entries: ors,
            directory,
        })
    }

    /// The description as pretty-printed JSON, which [`parse`](Self::parse) reads back to
    /// the same value. TAP keys are written as base64 DER. Fails only if a TAP key cannot be
    /// DER-encoded.
    pub fn to_json(&self) -> Result<String, DescError> {
        let entries = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| write_or(e, &index_path("entries", i)))
            .collect::<Result<Vec<_>, Bad>>()?;
        let (authority, tor_authorities) = match &self.directory {
            Directory::Own(a) => {
                let or =
                    a.or.as_ref()
                        .map(|o| write_or(o, "authority.or"))
                        .transpose()?;
                let raw = RawAuthority {
                    ed25519_key: Some(Value::String(value::write_b64(a.key.as_bytes()))),
                    list_url: a.list_url.as_ref().map(|u| Value::String(u.to_string())),
                    or: or.map(to_value).transpose()?,
                };
                (Some(to_value(raw)?), None)
            }
            Directory::Tor(auths) => {
                let list = auths
                    .iter()
                    .map(|t| {
                        to_value(RawTorAuthority {
                            nickname: Some(Value::String(t.nickname.clone())),
                            v3ident: Some(Value::String(value::write_rsa_id(&t.v3ident))),
                            address: Some(Value::String(t.address.to_string())),
                            fingerprint: Some(Value::String(value::write_rsa_id(&t.fingerprint))),
                        })
                    })
                    .collect::<Result<Vec<_>, Bad>>()?;
                (None, Some(Value::Array(list)))
            }
        };
        let raw = RawDescription {
            version: Some(Value::from(VERSION)),
            name: Some(Value::String(self.name.clone())),
            entries: Some(Value::Array(
                entries
                    .into_iter()
                    .map(to_value)
                    .collect::<Result<_, _>>()?,
            )),
            authority,
            tor_authorities,
        };
        serde_json::to_string_pretty(&raw).map_err(|e| Bad::new("", json::syntax(&e)).into())
    }

    /// The v3 identities of the Tor directory authorities (empty for an own network): what
    /// [`crate::dir::Consensus::verify`] takes.
    pub fn tor_v3idents(&self) -> Vec<RsaIdentity> {
        match &self.directory {
            Directory::Tor(auths) => auths.iter().map(|a| a.v3ident).collect(),
            Directory::Own(_) => Vec::new(),
        }
    }

    /// Verify a signed relay list for this network: signed by the pinned authority key,
    /// valid at `now_unix` (± `skew_secs`), and naming this network. Fails with
    /// [`ListError::NotOwnNetwork`] for a Tor-like network.
    pub fn verify_relay_list(
        &self,
        json: &str,
        now_unix: u64,
        skew_secs: u64,
    ) -> Result<RelayList, ListError> {
        let Directory::Own(auth) = &self.directory else {
            return Err(ListError::NotOwnNetwork);
        };
        let list = SignedRelayList::verify(json, &auth.key, now_unix, skew_secs)?;
        if list.network != self.name {
            return Err(ListError::WrongNetwork {
                expected: self.name.clone(),
                found: list.network,
            });
        }
        Ok(list)
    }
}

/// A value from a raw struct.
fn to_value<T: Serialize>(raw: T) -> Result<Value, Bad> {
    serde_json::to_value(raw).map_err(|e| Bad::new("", json::syntax(&e)))
}

/// The top-level object.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDescription {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    version: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    entries: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    authority: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tor_authorities: Option<Value>,
}

/// An OR object.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOr {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nickname: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ws: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tls: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rsa_id: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ed25519_id: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ntor_key: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tap_key: Option<Value>,
}

/// The `authority` object.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuthority {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ed25519_key: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    list_url: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    or: Option<Value>,
}

/// A `tor_authorities` element.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTorAuthority {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nickname: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    v3ident: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    address: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fingerprint: Option<Value>,
}

/// An OR object at `path`.
fn parse_or(v: Value, path: &str) -> Result<EntryOr, Bad> {
    let raw: RawOr = json::object(v, path)?;
    let nickname = json::req_str(raw.nickname, path, "nickname", value::nickname)?;
    let ws = json::opt_str(raw.ws, path, "ws", value::ws_url)?;
    let tls = json::opt_str(raw.tls, path, "tls", value::socket_addr)?;
    let rsa_id = json::req_str(raw.rsa_id, path, "rsa_id", value::rsa_id)?;
    let ed25519_id = json::opt_str(raw.ed25519_id, path, "ed25519_id", value::ed25519_id)?;
    let ntor_key = json::req_str(raw.ntor_key, path, "ntor_key", value::ntor_key)?;
    let tap_key = json::opt_str(raw.tap_key, path, "tap_key", value::tap_key)?;
    if ws.is_none() && tls.is_none() {
        return Err(Bad::new(path, Problem::NoneOf("\"ws\", \"tls\"")));
    }
    Ok(EntryOr {
        nickname,
        ws,
        tls,
        rsa_id,
        ed25519_id,
        ntor_key,
        tap_key,
    })
}

/// An OR as a raw object; `path` names it in an encoding error.
fn write_or(e: &EntryOr, path: &str) -> Result<RawOr, Bad> {
    let tap_key = match &e.tap_key {
        None => None,
        Some(k) => Some(Value::String(value::write_tap_key(k).ok_or_else(|| {
            Bad::new(
                key_path(path, "tap_key"),
                Problem::BadKey("RSA key cannot be DER-encoded"),
            )
        })?)),
    };
    Ok(RawOr {
        nickname: Some(Value::String(e.nickname.clone())),
        ws: e.ws.as_ref().map(|u| Value::String(u.to_string())),
        tls: e.tls.map(|a| Value::String(a.to_string())),
        rsa_id: Some(Value::String(value::write_rsa_id(&e.rsa_id))),
        ed25519_id: e
            .ed25519_id
            .map(|id| Value::String(value::write_b64(id.as_bytes()))),
        ntor_key: Some(Value::String(value::write_b64(e.ntor_key.as_bytes()))),
        tap_key,
    })
}

/// The `authority` object at `path`.
fn parse_authority(v: Value, path: &str) -> Result<OwnAuthority, Bad> {
    let raw: RawAuthority = json::object(v, path)?;
    let key = json::req_str(raw.ed25519_key, path, "ed25519_key", value::ed25519_key)?;
    let list_url = json::opt_str(raw.list_url, path, "list_url", value::http_url)?;
    let or = match json::optional(raw.or, path, "or") {
        None => None,
        Some((v, p)) => Some(parse_or(v, &p)?),
    };
    if list_url.is_none() && or.is_none() {
        return Err(Bad::new(path, Problem::NoneOf("\"list_url\", \"or\"")));
    }
    Ok(OwnAuthority { key, list_url, or })
}

/// The `tor_authorities` array at `path`.
fn parse_tor_authorities(v: Value, path: &str) -> Result<Vec<TorAuthority>, Bad> {
    let list = json::array(v, path, MAX_TOR_AUTHORITIES)?;
    if list.is_empty() {
        return Err(Bad::new(path, Problem::Empty));
    }
    let mut out: Vec<TorAuthority> = Vec::with_capacity(list.len());
    for (i, v) in list.into_iter().enumerate() {
        let p = index_path(path, i);
        let raw: RawTorAuthority = json::object(v, &p)?;
        let a = TorAuthority {
            nickname: json::req_str(raw.nickname, &p, "nickname", value::nickname)?,
            v3ident: json::req_str(raw.v3ident, &p, "v3ident", value::rsa_id)?,
            address: json::req_str(raw.address, &p, "address", value::socket_addr)?,
            fingerprint: json::req_str(raw.fingerprint, &p, "fingerprint", value::rsa_id)?,
        };
        if out.iter().any(|o| o.v3ident == a.v3ident) {
            return Err(Bad::new(key_path(&p, "v3ident"), Problem::Duplicate));
        }
        out.push(a);
    }
    Ok(out)
}

#[cfg(test)]
mod test {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::client::HandshakeKind;

    const OWN: &str = include_str!("example_own.json");
    const TOR: &str = include_str!("example_tor.json");

    /// `OWN` with `edit` applied to its JSON value.
    fn edited(base: &str, edit: impl FnOnce(&mut Value)) -> String {
        let mut v: Value = serde_json::from_str(base).unwrap();
        edit(&mut v);
        serde_json::to_string(&v).unwrap()
    }

    fn invalid(json: &str) -> (String, Problem) {
        match NetworkDescription::parse(json) {
            Err(DescError::Invalid { path, problem }) => (path, problem),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    fn check(path: &str, problem: Problem, edit: impl FnOnce(&mut Value)) {
        assert_eq!(
            invalid(&edited(OWN, edit)),
            (path.to_owned(), problem.clone()),
            "{path}: {problem}"
        );
    }

    #[test]
    fn own_example_parses() {
        let d = NetworkDescription::parse(OWN).unwrap();
        assert_eq!(d.name, "onion-dev");
        assert_eq!(d.entries.len(), 2);
        let g1 = &d.entries[0];
        assert_eq!(g1.nickname, "devguard1");
        assert_eq!(
            g1.ws.as_ref().unwrap().as_str(),
            "wss://guard1.example.net/onion"
        );
        assert_eq!(g1.tls, Some("192.0.2.10:9001".parse().unwrap()));
        assert_eq!(
            g1.rsa_id.to_string(),
            "637323350F23FF2AD4C7EA7C4AEE41DD14B2A4D8"
        );
        assert!(g1.ed25519_id.is_some() && g1.tap_key.is_some());
        let g2 = &d.entries[1];
        assert_eq!(g2.tls, None);
        assert_eq!(g2.ed25519_id, None);
        // The PEM and the base64 DER forms both load.
        assert!(g2.tap_key.is_some());
        let Directory::Own(auth) = &d.directory else {
            panic!("not own")
        };
        assert_eq!(
            value::write_b64(auth.key.as_bytes()),
            "EmhGZjzjRuNWq/PyO+vmBb5w5G+lRhWlk16/frphkcI"
        );
        assert_eq!(
            auth.list_url.as_ref().unwrap().path(),
            super::super::RELAY_LIST_PATH
        );
        let or = auth.or.as_ref().unwrap();
        assert_eq!(or.tls, Some("[2001:db8::1]:9001".parse().unwrap()));
        assert!(d.tor_v3idents().is_empty());

        // Conversion to what the client engine takes.
        let t = g1.hop_target();
        assert_eq!(t.ipv4, Some("192.0.2.10:9001".parse().unwrap()));
        assert_eq!(t.ipv6, None);
        assert_eq!(t.rsa_id, Some(*g1.rsa_id.as_bytes()));
        assert_eq!(t.ed_id, Some(*g1.ed25519_id.unwrap().as_bytes()));
        assert_eq!(t.ntor_onion_key, Some(g1.ntor_key));
        assert!(t.tap_onion_key.is_some());
        assert_eq!(t.best_handshake(), Some(HandshakeKind::Ntor));
        let t = or.hop_target();
        assert_eq!(t.ipv6, Some("[2001:db8::1]:9001".parse().unwrap()));
        assert_eq!(t.ipv4, None);
    }

    #[test]
    fn tor_example_parses() {
        let d = NetworkDescription::parse(TOR).unwrap();
        assert_eq!(d.name, "tor");
        let Directory::Tor(auths) = &d.directory else {
            panic!("not tor")
        };
        assert_eq!(auths.len(), 3);
        assert_eq!(auths[0].nickname, "moria1");
        assert_eq!(auths[0].address, "128.31.0.39:9231".parse().unwrap());
        assert_eq!(
            auths[0].fingerprint.to_string(),
            "1A25C6358DB91342AA51720A5038B72742732498"
        );
        assert_eq!(
            d.tor_v3idents()
                .iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>(),
            [
                "F533C81CEF0BC0267857C99B2F471ADF249FA232",
                "2F3DF9CA0E5D36F2685A2DA67184EB8DCB8CBA8C",
                "E8A9C45EDE6D711294FADF8E7951F4DE6CA56B58"
            ]
        );
        assert_eq!(
            d.verify_relay_list("{}", 0, 0),
            Err(ListError::NotOwnNetwork)
        );
    }

    #[test]
    fn to_json_round_trips() {
        for src in [OWN, TOR] {
            let d = NetworkDescription::parse(src).unwrap();
            let text = d.to_json().unwrap();
            assert_eq!(NetworkDescription::parse(&text).unwrap(), d);
            assert_eq!(
                NetworkDescription::parse(&text).unwrap().to_json().unwrap(),
                text
            );
        }
    }

    #[test]
    fn directory_choice() {
        let both = edited(OWN, |v| {
            let tor: Value = serde_json::from_str(TOR).unwrap();
            v["tor_authorities"] = tor["tor_authorities"].clone();
        });
        assert_eq!(
            NetworkDescription::parse(&both),
            Err(DescError::BothDirectories)
        );
        let neither = edited(OWN, |v| {
            v.as_object_mut().unwrap().remove("authority");
        });
        assert_eq!(
            NetworkDescription::parse(&neither),
            Err(DescError::NoDirectory)
        );
        // null is absent.
        let null = edited(OWN, |v| v["tor_authorities"] = Value::Null);
        assert!(NetworkDescription::parse(&null).is_ok());
    }

    #[test]
    fn version_and_size() {
        let v2 = edited(OWN, |v| v["version"] = Value::from(2));
        assert_eq!(
            NetworkDescription::parse(&v2),
            Err(DescError::UnsupportedVersion(2))
        );
        // A future version may have fields we do not know: the version is reported first.
        let v2 = edited(OWN, |v| {
            v["version"] = Value::from(2);
            v["new_field"] = Value::from(1);
        });
        assert_eq!(
            NetworkDescription::parse(&v2),
            Err(DescError::UnsupportedVersion(2))
        );
        check("version", Problem::Missing, |v| {
            v.as_object_mut().unwrap().remove("version");
        });
        check(
            "version",
            Problem::WrongType {
                expected: "non-negative integer",
            },
            |v| v["version"] = Value::from("1"),
        );
        let big = format!("{}{}", " ".repeat(MAX_DESCRIPTION_LEN), OWN);
        assert!(matches!(
            NetworkDescription::parse(&big),
            Err(DescError::TooLarge { .. })
        ));
        assert_eq!(
            invalid("[1]"),
            (String::new(), Problem::WrongType { expected: "object" })
        );
        assert!(matches!(invalid("{").1, Problem::Syntax { .. }));
        let dup = OWN.replacen(
            "\"name\": \"onion-dev\",",
            "\"name\": \"a\", \"name\": \"b\",",
            1,
        );
        assert!(matches!(invalid(&dup).1, Problem::Syntax { .. }));
    }

    #[test]
    fn field_errors_have_paths() {
        check("entries[1].rsa_id", Problem::BadHex, |v| {
            v["entries"][1]["rsa_id"] = Value::from("91A9EE4B786AB5064ED84762C617ADB6EC60DEDZ")
        });
        check("entries[0].ntor_key", Problem::BadBase64, |v| {
            v["entries"][0]["ntor_key"] = Value::from("not*base64")
        });
        check(
            "entries[0].ed25519_id",
            Problem::BadLength {
                expected: 32,
                found: 6,
            },
            |v| v["entries"][0]["ed25519_id"] = Value::from("AAAAAAAA"),
        );
        check(
            "entries[0].ws",
            Problem::BadUrlScheme {
                expected: "ws:// or wss://",
            },
            |v| v["entries"][0]["ws"] = Value::from("https://guard1.example.net/"),
        );
        check(
            "entries[0].ws",
            Problem::BadUrl(super::super::UrlError::UserInfo),
            |v| v["entries"][0]["ws"] = Value::from("wss://u@guard1.example.net/"),
        );
        check(
            "authority.list_url",
            Problem::BadUrlScheme {
                expected: "http:// or https://",
            },
            |v| v["authority"]["list_url"] = Value::from("wss://dirauth.example.net/"),
        );
        check("entries[0].tls", Problem::BadAddress, |v| {
            v["entries"][0]["tls"] = Value::from("guard1.example.net:9001")
        });
        check("entries[1].nickname", Problem::BadNickname, |v| {
            v["entries"][1]["nickname"] = Value::from("dev guard")
        });
        check("name", Problem::BadName, |v| v["name"] = Value::from(""));
        check("entries[0].bogus", Problem::UnknownField, |v| {
            v["entries"][0]["bogus"] = Value::from(1)
        });
        check("bogus", Problem::UnknownField, |v| {
            v["bogus"] = Value::from(1)
        });
        check("authority.or.port", Problem::UnknownField, |v| {
            v["authority"]["or"]["port"] = Value::from(1)
        });
        check("entries[1].ntor_key", Problem::Missing, |v| {
            v["entries"][1].as_object_mut().unwrap().remove("ntor_key");
        });
        check(
            "entries[1].nickname",
            Problem::WrongType { expected: "string" },
            |v| v["entries"][1]["nickname"] = Value::from(7),
        );
        check("entries[1]", Problem::NoneOf("\"ws\", \"tls\""), |v| {
            v["entries"][1].as_object_mut().unwrap().remove("ws");
        });
        check("authority", Problem::NoneOf("\"list_url\", \"or\""), |v| {
            let a = v["authority"].as_object_mut().unwrap();
            a.remove("list_url");
            a.remove("or");
        });
        check("entries", Problem::Empty, |v| {
            v["entries"] = Value::Array(vec![])
        });
        check("entries", Problem::WrongType { expected: "array" }, |v| {
            v["entries"] = Value::from("x")
        });
        check("entries[1].rsa_id", Problem::Duplicate, |v| {
            v["entries"][1]["rsa_id"] = v["entries"][0]["rsa_id"].clone()
        });
        check(
            "entries[0].tap_key",
            Problem::BadKey("not a PKCS#1 RSA public key"),
            |v| v["entries"][0]["tap_key"] = Value::from("AAAA"),
        );
        check(
            "authority.ed25519_key",
            Problem::BadKey("weak (small-order) Ed25519 key"),
            |v| {
                let mut ident = [0u8; 32];
                ident[0] = 1;
                v["authority"]["ed25519_key"] = Value::from(value::write_b64(&ident))
            },
        );
        check("entries", Problem::TooMany { max: MAX_ENTRIES }, |v| {
            let e = v["entries"][0].clone();
            v["entries"] = Value::Array(vec![e; MAX_ENTRIES + 1]);
        });
    }

    #[test]
    fn tor_authority_errors() {
        let tor = |edit: &dyn Fn(&mut Value)| invalid(&edited(TOR, edit));
        assert_eq!(
            tor(&|v| v["tor_authorities"][2]["v3ident"] = Value::from("E8A9")),
            ("tor_authorities[2].v3ident".into(), Problem::BadHex)
        );
        assert_eq!(
            tor(&|v| v["tor_authorities"][0]["address"] = Value::from("128.31.0.39")),
            ("tor_authorities[0].address".into(), Problem::BadAddress)
        );
        assert_eq!(
            tor(&|v| v["tor_authorities"][1]["orport"] = Value::from(443)),
            ("tor_authorities[1].orport".into(), Problem::UnknownField)
        );
        assert_eq!(
            tor(&|v| v["tor_authorities"] = Value::Array(vec![])),
            ("tor_authorities".into(), Problem::Empty)
        );
        assert_eq!(
            tor(&|v| {
                v["tor_authorities"][1]["v3ident"] = v["tor_authorities"][0]["v3ident"].clone()
            }),
            ("tor_authorities[1].v3ident".into(), Problem::Duplicate)
        );
        assert_eq!(
            tor(&|v| {
                v["tor_authorities"][1]
                    .as_object_mut()
                    .unwrap()
                    .remove("fingerprint");
            }),
            ("tor_authorities[1].fingerprint".into(), Problem::Missing)
        );
    }

    proptest::proptest! {
        #[test]
        fn garbage_never_panics(s in ".{0,300}") {
            let _ = NetworkDescription::parse(&s);
        }

        #[test]
        fn mutated_example_never_panics(
            pos in 0usize..2000,
            len in 0usize..40,
            junk in ".{0,8}",
        ) {
            let mut s = OWN.to_string();
            let start = (pos % s.len()..s.len()).find(|&i| s.is_char_boundary(i)).unwrap_or(s.len());
            let end = (start + len.min(s.len() - start)..=s.len())
                .find(|&i| s.is_char_boundary(i))
                .unwrap_or(s.len());
            s.replace_range(start..end, &junk);
            let _ = NetworkDescription::parse(&s);
        }
    }
}
