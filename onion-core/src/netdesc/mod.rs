//! Network descriptions and signed relay lists: the two JSON documents that configure an OP.
//!
//! Every OP (browser and native) is configured by one JSON document, the **network
//! description** ([`NetworkDescription`]). It names the network, lists the entry ORs the OP
//! may connect to directly, and says where the rest of the network is learnt:
//!
//! - a **Tor-like network** lists its Tor directory authorities (`tor_authorities`), and the
//!   OP fetches and checks a consensus ([`crate::dir`]);
//! - an **own network** pins the Ed25519 key of one authority (`authority`), which serves a
//!   **signed relay list** ([`RelayList`], [`SignedRelayList`]): every relay with its keys,
//!   addresses, measured bandwidth, flags and exit-policy summary, signed and valid for a
//!   limited time. This is the seed's "guards, relays and exits lists it trusts instead of a
//!   full directory", made verifiable.
//!
//! | module | what |
//! |---|---|
//! | [`desc`] | [`NetworkDescription`], [`EntryOr`], [`OwnAuthority`], [`TorAuthority`] |
//! | [`list`] | [`RelayList`], [`ListedRelay`], [`SignedRelayList`] (sign, verify) |
//! | [`url`] | [`WebUrl`]: the `ws://`, `wss://`, `http://` and `https://` URLs both use |
//!
//! Nothing here does I/O or reads a clock: callers pass the JSON text and the time (seconds
//! since the Unix epoch). Parsing never panics on hostile input, is bounded
//! ([`MAX_DESCRIPTION_LEN`], [`MAX_LIST_LEN`], [`MAX_RELAYS`], ...), rejects duplicate object
//! keys and unknown fields, and reports the JSON path of the offending value (for example
//! `entries[1].rsa_id`) with a specific [`Problem`].
//!
//! # Network description, version 1
//!
//! An object with these fields (unknown fields are errors; `null` is the same as absent):
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `version` | number | `1`; any other value is [`DescError::UnsupportedVersion`] |
//! | `name` | string | the network's name: 1-64 characters `A-Z a-z 0-9 . _ -`; an own network's relay list must carry the same name |
//! | `entries` | array of OR | 1 to [`MAX_ENTRIES`] entry ORs (first hops); no RSA identity twice |
//! | `authority` | object | own network only: see below |
//! | `tor_authorities` | array | Tor-like network only: 1 to [`MAX_TOR_AUTHORITIES`] authorities, see below |
//!
//! Exactly one of `authority` and `tor_authorities` is present
//! ([`DescError::BothDirectories`], [`DescError::NoDirectory`]).
//!
//! An **OR** (an entry, or the authority's OR) is an object:
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `nickname` | string | 1-19 characters `A-Z a-z 0-9` (Tor's nickname syntax) |
//! | `ws` | string, optional | the OR's WebSocket listener, a `ws://` or `wss://` URL ([`WebUrl`]) |
//! | `tls` | string, optional | the OR's Tor link (TLS) ORPort, `"ip:port"` or `"[ipv6]:port"` |
//! | `rsa_id` | string | SHA-1 of its RSA identity key: 40 hex digits |
//! | `ed25519_id` | string, optional | its Ed25519 identity, base64 (padding optional) |
//! | `ntor_key` | string | its ntor onion key (curve25519), base64 of 32 bytes |
//! | `tap_key` | string, optional | its TAP onion key (RSA-1024, exponent 65537) as a PKCS#1 `RSA PUBLIC KEY` PEM or base64 DER; needed for TAP and the seed's CREATE_FAST_WS |
//!
//! At least one of `ws` and `tls` is present. The browser OP can only use `ws`.
//!
//! The own network's `authority`:
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `ed25519_key` | string | the authority's relay-list signing key, base64: the OP accepts only lists signed by it |
//! | `list_url` | string, optional | `http://` or `https://` URL where the signed list is served |
//! | `or` | OR, optional | the authority's own OR: the OP fetches [`RELAY_LIST_PATH`] over a BEGIN_DIR stream on a one-hop circuit to it |
//!
//! At least one of `list_url` and `or` is present.
//!
//! A Tor authority (one `tor_authorities` element, as a line of C tor's `auth_dirs.inc`):
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `nickname` | string | 1-19 characters `A-Z a-z 0-9` |
//! | `v3ident` | string | the SHA-1 of its v3 authority identity key, 40 hex digits: what signs the consensus |
//! | `address` | string | its DirPort, `"ip:port"` |
//! | `fingerprint` | string | the SHA-1 of its relay RSA identity key, 40 hex digits |
//!
//! An own network:
//!
//! ```json
#![doc = include_str!("example_own.json")]
//! ```
//!
//! A Tor network reached through a WebSocket entry OR of ours (authorities from C tor's
//! `auth_dirs.inc`):
//!
//! ```json
#![doc = include_str!("example_tor.json")]
//! ```
//!
//! # Signed relay list, version 1
//!
//! The authority serves an **envelope**, a JSON object with exactly two string fields:
//!
//! ```json
//! { "body": "{\"version\":1,\"network\":\"onion-dev\", ...}", "signature": "base64..." }
//! ```
//!
//! `body` is the relay list's JSON text, carried as a string so that the signed bytes are
//! exactly the bytes received (nothing is ever re-serialized to check a signature).
//! `signature` is the base64 of the 64-byte Ed25519 signature of
//! [`SignedRelayList::DOMAIN`] (`"onion-wasm relay list v1\0"`) followed by the UTF-8 bytes of
//! `body`, made with the authority's key (checked with `verify_strict`). The envelope is at
//! most [`MAX_LIST_LEN`] bytes.
//!
//! The body is an object:
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `version` | number | `1` |
//! | `network` | string | the network's name, as in the description |
//! | `published` | number | when the list was made, seconds since the Unix epoch; not valid before |
//! | `valid_until` | number | end of validity, seconds since the Unix epoch, not before `published` |
//! | `relays` | array | at most [`MAX_RELAYS`] relays; no RSA identity twice |
//!
//! A relay:
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `nickname`, `rsa_id`, `ntor_key`, `tap_key` | | as for an OR above (`tap_key` optional) |
//! | `ed25519_id` | string | its Ed25519 identity, base64 (required here) |
//! | `addresses` | object | `tls` (`"ip:port"`) and/or `ws` (URL), at least one; `tls` is what EXTEND2 uses |
//! | `bandwidth` | number | measured bandwidth, kilobytes per second, at most 2^32 - 1 |
//! | `flags` | array of strings | distinct elements of `"Guard"`, `"Exit"`, `"Running"`, `"Fast"`, `"Stable"` |
//! | `exit_policy` | string | exit policy summary, as a consensus `p` line: `"accept 80,443"`, `"reject 1-65535"` |
//! | `family` | array of strings, optional | RSA identities (40 hex digits) of the relays its operator runs, at most [`MAX_FAMILY`] |
//!
//! An example body:
//!
//! ```json
#![doc = include_str!("example_relay_list.json")]
//! ```

use thiserror::Error;

use crate::policy::PolicyError;

pub mod desc;
mod json;
pub mod list;
pub mod url;
mod value;

pub use desc::{Directory, EntryOr, NetworkDescription, OwnAuthority, TorAuthority};
pub use list::{ListError, ListedRelay, RelayList, SignedRelayList};
pub use url::{Host, Scheme, UrlError, WebUrl};

/// The only version of both documents this code reads and writes.
pub const VERSION: u64 = 1;

/// Largest network description accepted, in bytes.
pub const MAX_DESCRIPTION_LEN: usize = 1 << 20;

/// Most entry ORs in a network description.
pub const MAX_ENTRIES: usize = 1000;

/// Most Tor directory authorities in a network description.
pub const MAX_TOR_AUTHORITIES: usize = 64;

/// Largest signed relay list (the whole envelope) accepted, in bytes. With TAP keys a relay
/// takes about 700 bytes, so some 6,000 relays fit.
pub const MAX_LIST_LEN: usize = 4 << 20;

/// Most relays in a relay list.
pub const MAX_RELAYS: usize = 10_000;

/// Most family members of one relay.
pub const MAX_FAMILY: usize = 256;

/// The HTTP path of the signed relay list on an own network's authority, fetched over a
/// BEGIN_DIR stream to its OR (`GET /onion/relay-list HTTP/1.0`).
pub const RELAY_LIST_PATH: &str = "/onion/relay-list";

/// What is wrong with one value of a document. Carried, with the value's JSON path, by
/// [`DescError::Invalid`] and [`ListError::Malformed`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Problem {
    /// The text is not JSON, or an object has the same key twice.
    #[error("JSON syntax error at line {line} column {column}: {reason}")]
    Syntax {
        /// 1-based line (0 if unknown).
        line: usize,
        /// 1-based column (0 if unknown).
        column: usize,
        /// What the JSON parser said.
        reason: String,
    },
    /// A required field is absent (or `null`).
    #[error("missing required field")]
    Missing,
    /// A field this version of the format does not have.
    #[error("unknown field")]
    UnknownField,
    /// The value has the wrong JSON type.
    #[error("expected {expected}")]
    WrongType {
        /// The JSON type expected.
        expected: &'static str,
    },
    /// A number is outside the allowed range.
    #[error("number out of range")]
    OutOfRange,
    /// Not exactly 40 hexadecimal digits.
    #[error("expected 40 hexadecimal digits")]
    BadHex,
    /// Not valid base64 (standard alphabet, with or without `=` padding).
    #[error("invalid base64")]
    BadBase64,
    /// Decoded bytes of the wrong length.
    #[error("expected {expected} bytes, got {found}")]
    BadLength {
        /// The length required.
        expected: usize,
        /// The length decoded.
        found: usize,
    },
    /// Not a nickname: 1-19 characters `A-Z a-z 0-9`.
    #[error("invalid nickname (1-19 characters A-Z a-z 0-9)")]
    BadNickname,
    /// Not a network name: 1-64 characters `A-Z a-z 0-9 . _ -`.
    #[error("invalid network name (1-64 characters A-Z a-z 0-9 . _ -)")]
    BadName,
    /// Not `ip:port` (or `[ipv6]:port`) with a nonzero port and a specified address.
    #[error("expected \"ip:port\" with a nonzero port")]
    BadAddress,
    /// Not a URL we accept.
    #[error("invalid URL: {0}")]
    BadUrl(UrlError),
    /// A URL with a scheme not allowed here.
    #[error("URL scheme must be {expected}")]
    BadUrlScheme {
        /// The schemes allowed.
        expected: &'static str,
    },
    /// A key that cannot be used: not a curve point, a weak key, not PKCS#1, wrong size or
    /// exponent, not canonically encoded, or a malformed PEM.
    #[error("unusable key: {0}")]
    BadKey(&'static str),
    /// A relay flag other than `Guard`, `Exit`, `Running`, `Fast` and `Stable`.
    #[error("unknown relay flag")]
    UnknownFlag,
    /// An exit policy summary that does not parse.
    #[error("bad exit policy summary: {0}")]
    BadPolicy(PolicyError),
    /// A list that must not be empty is empty.
    #[error("empty list")]
    Empty,
    /// A list has more elements than allowed.
    #[error("more than {max} elements")]
    TooMany {
        /// The limit.
        max: usize,
    },
    /// A value that must be unique appears again (a relay identity, a flag).
    #[error("duplicate value")]
    Duplicate,
    /// None of the alternatives is given: neither `ws` nor `tls` for an OR, neither
    /// `list_url` nor `or` for an authority.
    #[error("none of {0} is given")]
    NoneOf(&'static str),
    /// The value does not follow the format in some other way.
    #[error("{0}")]
    Schema(String),
}

/// Why a network description was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DescError {
    /// The document is larger than [`MAX_DESCRIPTION_LEN`].
    #[error("network description too large: {len} bytes, at most {max}")]
    TooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// `version` is not [`VERSION`].
    #[error("unsupported network description version {0}")]
    UnsupportedVersion(u64),
    /// A value is missing or invalid. `path` is its JSON path, e.g. `entries[1].rsa_id`
    /// (empty for the whole document).
    #[error("{path}: {problem}")]
    Invalid {
        /// Where.
        path: String,
        /// What is wrong.
        problem: Problem,
    },
    /// Both `authority` and `tor_authorities` are present.
    #[error("both \"authority\" and \"tor_authorities\" are present; give exactly one")]
    BothDirectories,
    /// Neither `authority` nor `tor_authorities` is present.
    #[error("neither \"authority\" nor \"tor_authorities\" is present; give exactly one")]
    NoDirectory,
}

/// A problem at a path: what the parsing helpers return, turned into [`DescError::Invalid`]
/// or [`ListError::Malformed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bad {
    /// The JSON path.
    pub(crate) path: String,
    /// What is wrong.
    pub(crate) problem: Problem,
}

impl Bad {
    /// `problem` at `path`.
    pub(crate) fn new(path: impl Into<String>, problem: Problem) -> Self {
        Bad {
            path: path.into(),
            problem,
        }
    }
}

impl From<Bad> for DescError {
    fn from(b: Bad) -> Self {
        DescError::Invalid {
            path: b.path,
            problem: b.problem,
        }
    }
}

impl From<Bad> for ListError {
    fn from(b: Bad) -> Self {
        ListError::Malformed {
            path: b.path,
            problem: b.problem,
        }
    }
}
