//! Fixtures and synthetic relay sets for this module's tests.

use std::net::{Ipv4Addr, SocketAddrV4};

use super::relay::{RelayFamily, RelayInfo, RelaySet};
use super::weight::BandwidthWeights;
use crate::certs::RsaIdentity;
use crate::dir::{Consensus, Microdesc, Protocols, RelayFlags};
use crate::policy::PortPolicy;

const CONSENSUS: &str = include_str!("../dir/testdata/consensus-microdesc.txt");
const MDS: &str = include_str!("../dir/testdata/microdescs.txt");

pub(crate) fn fixture_consensus() -> Consensus {
    Consensus::parse(CONSENSUS).unwrap()
}

pub(crate) fn fixture_mds() -> Vec<Microdesc> {
    Microdesc::parse_many(MDS)
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect()
}

/// The 6-relay test network (all on 127.0.0.1; exit0 and exit1 are the exits).
pub(crate) fn fixture_set() -> RelaySet {
    RelaySet::from_consensus(&fixture_consensus(), &fixture_mds()).unwrap()
}

pub(crate) fn flags(list: &[RelayFlags]) -> RelayFlags {
    list.iter().fold(RelayFlags::default(), |a, &f| a.union(f))
}

/// Running, Valid, Fast, Stable.
pub(crate) fn base_flags() -> RelayFlags {
    flags(&[
        RelayFlags::RUNNING,
        RelayFlags::VALID,
        RelayFlags::FAST,
        RelayFlags::STABLE,
    ])
}

pub(crate) fn id(n: u32) -> RsaIdentity {
    let mut b = [0u8; 20];
    b[..4].copy_from_slice(&n.to_be_bytes());
    RsaIdentity::from_bytes(b)
}

/// A relay numbered `n` at `addr`, with `extra` flags on top of [`base_flags`]; exits accept
/// `exit_ports` (none: reject all).
pub(crate) fn relay(
    n: u32,
    addr: Ipv4Addr,
    extra: RelayFlags,
    bandwidth: u32,
    exit_ports: Option<&str>,
) -> RelayInfo {
    RelayInfo {
        ipv4: Some(SocketAddrV4::new(addr, 9001)),
        flags: base_flags().union(extra),
        bandwidth,
        ntor_onion_key: Some(x25519_dalek::PublicKey::from([n as u8; 32])),
        ipv4_policy: exit_ports.map_or(PortPolicy::reject_all(), |p| p.parse().unwrap()),
        protocols: Protocols::new().with("Relay", 1, 4),
        family: RelayFamily::new(),
        ..RelayInfo::new(format!("relay{n}"), id(n))
    }
}

/// `n` relays (at most 60000), each in its own /16 (x.y.0.1 with x.y = i + 10.0), cycling through guard-only,
/// exit-only (accept 80,443), guard+exit (reject 25) and unflagged, with bandwidth
/// `1 + (i * 37) % 100`.
pub(crate) fn synthetic(n: u32, weights: BandwidthWeights) -> RelaySet {
    let relays = (0..n)
        .map(|i| {
            let [_, _, a, b] = i.to_be_bytes();
            let addr = Ipv4Addr::new(10 + a, b, 0, 1);
            let bw = 1 + (i * 37) % 100;
            match i % 4 {
                0 => relay(i, addr, RelayFlags::GUARD, bw, None),
                1 => relay(i, addr, RelayFlags::EXIT, bw, Some("accept 80,443")),
                2 => relay(
                    i,
                    addr,
                    flags(&[RelayFlags::GUARD, RelayFlags::EXIT]),
                    bw,
                    Some("reject 25"),
                ),
                _ => relay(i, addr, RelayFlags::default(), bw, None),
            }
        })
        .collect();
    RelaySet::new(relays, weights)
}
