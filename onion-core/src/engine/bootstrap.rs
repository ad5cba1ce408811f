//! Directory documents for the bootstrap: what to fetch, how to check it, and the relay set
//! it gives. The fetching itself (circuits, BEGIN_DIR streams) is in `state.rs`.

use std::collections::BTreeSet;

use base64ct::Encoding;

use super::{EngineError, MAX_DIR_BODY};
use crate::dir::Protocols;
use crate::dir::{AuthorityCert, Consensus, Microdesc, RelayFlags};
use crate::http::{self, Response};
use crate::netdesc::{NetworkDescription, RelayList};
use crate::path::{BandwidthWeights, RelayFamily, RelayInfo, RelaySet};
use crate::policy::PortPolicy;

/// The consensus path (microdesc flavor, deflated).
pub(super) const CONSENSUS_PATH: &str = "/tor/status-vote/current/consensus-microdesc.z";
/// Every authority certificate (deflated).
pub(super) const CERTS_PATH: &str = "/tor/keys/all.z";
/// Prefix of a microdescriptor batch.
pub(super) const MICRODESC_PREFIX: &str = "/tor/micro/d/";

/// One document to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum DirDoc {
    /// The own network's signed relay list.
    RelayList,
    /// The microdesc consensus.
    Consensus,
    /// The authority certificates.
    Certs,
    /// A batch of microdescriptors, by digest.
    Microdescs(Vec<[u8; 32]>),
}

impl DirDoc {
    /// The HTTP path.
    pub(super) fn path(&self) -> String {
        match self {
            DirDoc::RelayList => crate::netdesc::RELAY_LIST_PATH.to_owned(),
            DirDoc::Consensus => CONSENSUS_PATH.to_owned(),
            DirDoc::Certs => CERTS_PATH.to_owned(),
            DirDoc::Microdescs(ds) => {
                let list: Vec<String> = ds
                    .iter()
                    .map(|d| base64ct::Base64Unpadded::encode_string(d))
                    .collect();
                format!("{MICRODESC_PREFIX}{}.z", list.join("-"))
            }
        }
    }

    /// A phase name for bootstrap events.
    pub(super) fn phase(&self) -> &'static str {
        match self {
            DirDoc::RelayList => "fetching the signed relay list",
            DirDoc::Consensus => "fetching the consensus",
            DirDoc::Certs => "fetching authority certificates",
            DirDoc::Microdescs(_) => "fetching microdescriptors",
        }
    }
}

/// The body of a directory response as text: status 200 required, inflated when the server
/// says `Content-Encoding: deflate` (or sends a zlib stream for a `.z` path without saying).
pub(super) fn body_text(resp: Response, path: &str) -> Result<String, EngineError> {
    if resp.head.status != 200 {
        return Err(EngineError::HttpStatus {
            status: resp.head.status,
            path: path.to_owned(),
        });
    }
    let encoding = resp
        .head
        .header_str("content-encoding")
        .map(str::to_ascii_lowercase);
    let body = match encoding.as_deref() {
        Some("deflate") | Some("x-deflate") => {
            http::inflate(&resp.body, MAX_DIR_BODY).map_err(EngineError::Http)?
        }
        None | Some("identity") => {
            if path.ends_with(".z") && resp.body.first() == Some(&0x78) {
                http::inflate(&resp.body, MAX_DIR_BODY).map_err(EngineError::Http)?
            } else {
                resp.body
            }
        }
        Some(_) => {
            return Err(EngineError::Directory(format!(
                "unsupported Content-Encoding for {path}"
            )));
        }
    };
    String::from_utf8(body)
        .map_err(|_| EngineError::Directory(format!("{path}: the document is not UTF-8")))
}

/// The relays of an own network's (verified) relay list.
pub(super) fn relay_set_from_list(list: &RelayList) -> RelaySet {
    let relays = list
        .relays
        .iter()
        .map(|r| {
            let (ipv4, ipv6) = match r.tls {
                Some(std::net::SocketAddr::V4(a)) => (Some(a), None),
                Some(std::net::SocketAddr::V6(a)) => (None, Some(a)),
                None => (None, None),
            };
            let mut family = RelayFamily::new();
            for id in &r.family {
                family = family.with_id(*id);
            }
            RelayInfo {
                ed_id: Some(r.ed25519_id),
                ipv4,
                ipv6,
                // Listed means usable: the list has no Valid flag of its own.
                flags: r.flags.union(RelayFlags::VALID),
                bandwidth: r.bandwidth,
                ntor_onion_key: Some(r.ntor_key),
                tap_onion_key: r.tap_key.clone(),
                ipv4_policy: r.exit_policy.clone(),
                ipv6_policy: PortPolicy::reject_all(),
                family,
                // Our ORs answer ntor-v3.
                protocols: Protocols::new().with("Relay", 1, 4),
                ..RelayInfo::new(r.nickname.clone(), r.rsa_id)
            }
        })
        .collect();
    RelaySet::new(relays, BandwidthWeights::plain())
}

/// Whether every relay of the set is on a loopback address (a local test network, where
/// distinct /16 subnets cannot be had).
pub(super) fn all_loopback(set: &RelaySet) -> bool {
    !set.is_empty()
        && set.relays().iter().all(|r| {
            r.ipv4.is_none_or(|a| a.ip().is_loopback())
                && r.ipv6.is_none_or(|a| a.ip().is_loopback())
        })
}

/// Parse a consensus and check its validity time (signatures come with the certificates).
pub(super) fn parse_consensus(
    text: &str,
    now_secs: u64,
    skew: u64,
) -> Result<Consensus, EngineError> {
    let c =
        Consensus::parse(text).map_err(|e| EngineError::Directory(format!("consensus: {e}")))?;
    c.check_time(now_secs, skew)
        .map_err(|e| EngineError::Directory(format!("consensus: {e}")))?;
    Ok(c)
}

/// The certificates of a `/tor/keys/all` answer that parse and verify.
pub(super) fn parse_certs(text: &str) -> Result<Vec<AuthorityCert>, EngineError> {
    let all = AuthorityCert::parse_many(text)
        .map_err(|e| EngineError::Directory(format!("authority certificates: {e}")))?;
    Ok(all.into_iter().filter_map(Result::ok).collect())
}

/// Check the consensus signatures: more than half of the configured authorities.
pub(super) fn verify_consensus(
    consensus: &Consensus,
    network: &NetworkDescription,
    certs: &[AuthorityCert],
    now_secs: u64,
    skew: u64,
) -> Result<(), EngineError> {
    consensus
        .verify(&network.tor_v3idents(), certs, now_secs, skew)
        .map(|_| ())
        .map_err(|e| EngineError::Directory(format!("consensus: {e}")))
}

/// The microdescriptor digests a consensus lists, without those already held.
pub(super) fn wanted_microdescs(consensus: &Consensus, have: &[Microdesc]) -> Vec<[u8; 32]> {
    let held: BTreeSet<&[u8; 32]> = have.iter().map(Microdesc::digest).collect();
    let mut seen = BTreeSet::new();
    consensus
        .routers()
        .iter()
        .filter_map(|r| r.microdesc_digest())
        .filter(|d| !held.contains(d) && seen.insert(**d))
        .copied()
        .collect()
}

/// The microdescriptors of a batch answer whose digest was asked for (each digest is
/// computed over the document's own text, so a tampered one matches nothing).
pub(super) fn parse_microdescs(
    text: &str,
    asked: &[[u8; 32]],
) -> Result<Vec<Microdesc>, EngineError> {
    let all = Microdesc::parse_many(text)
        .map_err(|e| EngineError::Directory(format!("microdescriptors: {e}")))?;
    Ok(all
        .into_iter()
        .filter_map(Result::ok)
        .filter(|m| asked.contains(m.digest()))
        .collect())
}

/// The relay set of a verified consensus and its microdescriptors.
pub(super) fn relay_set_from_consensus(
    consensus: &Consensus,
    mds: &[Microdesc],
) -> Result<RelaySet, EngineError> {
    RelaySet::from_consensus(consensus, mds.iter()).map_err(EngineError::Path)
}
