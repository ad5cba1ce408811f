//! What path selection knows of a relay ([`RelayInfo`]) and the set of relays it chooses from
//! ([`RelaySet`]).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use rand_core::CryptoRng;

use super::PathError;
use super::weight::{BandwidthWeights, Position, choose_weighted};
use crate::certs::{Ed25519Identity, RsaIdentity};
use crate::client::HopTarget;
use crate::dir::{Consensus, Flavor, Microdesc, Protocols, RelayFlags, RouterStatus};
use crate::policy::PortPolicy;

/// The consensus weight C tor assumes for an entry without a `w` line (30000 bytes/s, in the
/// consensus's kilobyte unit).
pub const MISSING_BANDWIDTH: u32 = 30;

/// A relay's declared family (the `family` line of its descriptor): the RSA identities and
/// nicknames it lists. Two relays are in the same family only if each lists the other
/// (path-spec §2.2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayFamily {
    ids: BTreeSet<RsaIdentity>,
    /// Lowercased.
    nicknames: BTreeSet<String>,
}

impl RelayFamily {
    /// The empty family.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parse `family` entries (dir-spec §2.1.1): `$` and 40 hex digits, optionally followed
    /// by `=name` or `~name`, or a bare nickname. Entries that are neither are ignored.
    pub fn parse<'a, I: IntoIterator<Item = &'a str>>(entries: I) -> Self {
        let mut f = Self::new();
        for e in entries {
            if let Some(hex) = e.strip_prefix('$') {
                let hex = hex.split(['=', '~']).next().unwrap_or(hex);
                if let Some(id) = RsaIdentity::from_hex(hex) {
                    f.ids.insert(id);
                }
            } else if is_nickname(e) {
                f.nicknames.insert(e.to_ascii_lowercase());
            }
        }
        f
    }

    /// This family plus `id` (builder style).
    pub fn with_id(mut self, id: RsaIdentity) -> Self {
        self.ids.insert(id);
        self
    }

    /// Whether the family lists the relay with identity `id` or nickname `nickname`
    /// (nicknames compare case-insensitively).
    pub fn lists(&self, id: &RsaIdentity, nickname: &str) -> bool {
        self.ids.contains(id)
            || (!nickname.is_empty() && self.nicknames.contains(&nickname.to_ascii_lowercase()))
    }

    /// Whether no member is listed.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty() && self.nicknames.is_empty()
    }

    /// The listed RSA identities.
    pub fn ids(&self) -> impl Iterator<Item = &RsaIdentity> {
        self.ids.iter()
    }
}

/// A Tor nickname: 1 to 19 ASCII letters and digits.
fn is_nickname(s: &str) -> bool {
    (1..=19).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// One relay usable for path selection: a consensus entry merged with its microdescriptor, or
/// an entry of our own network's relay list.
///
/// Build one by hand with [`RelayInfo::new`] and struct update syntax:
/// `RelayInfo { ipv4: Some(addr), flags, ..RelayInfo::new("name", id) }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayInfo {
    /// Nickname.
    pub nickname: String,
    /// RSA identity fingerprint.
    pub rsa_id: RsaIdentity,
    /// Ed25519 identity, if known (and not disputed by `NoEdConsensus`).
    pub ed_id: Option<Ed25519Identity>,
    /// IPv4 ORPort.
    pub ipv4: Option<SocketAddrV4>,
    /// IPv6 ORPort.
    pub ipv6: Option<SocketAddrV6>,
    /// Consensus flags.
    pub flags: RelayFlags,
    /// Consensus weight (`w Bandwidth=`, kilobytes per second; [`MISSING_BANDWIDTH`] if the
    /// entry has none).
    pub bandwidth: u32,
    /// ntor onion key.
    pub ntor_onion_key: Option<x25519_dalek::PublicKey>,
    /// TAP onion key, if any.
    pub tap_onion_key: Option<rsa::PublicKey>,
    /// IPv4 exit port summary (`p`).
    pub ipv4_policy: PortPolicy,
    /// IPv6 exit port summary (`p6`).
    pub ipv6_policy: PortPolicy,
    /// Declared family.
    pub family: RelayFamily,
    /// Protocol versions (`pr`).
    pub protocols: Protocols,
}

impl RelayInfo {
    /// A relay with only a nickname and an identity: no address, no flags, no bandwidth, no
    /// keys, exit policies rejecting everything, no family, no protocols.
    pub fn new(nickname: impl Into<String>, rsa_id: RsaIdentity) -> Self {
        RelayInfo {
            nickname: nickname.into(),
            rsa_id,
            ed_id: None,
            ipv4: None,
            ipv6: None,
            flags: RelayFlags::default(),
            bandwidth: 0,
            ntor_onion_key: None,
            tap_onion_key: None,
            ipv4_policy: PortPolicy::reject_all(),
            ipv6_policy: PortPolicy::reject_all(),
            family: RelayFamily::new(),
            protocols: Protocols::new(),
        }
    }

    /// Merge a consensus entry and its microdescriptor. The consensus's addresses, flags,
    /// bandwidth and `pr` line win; the microdescriptor supplies keys, exit summaries, family
    /// and, for older consensus methods, the IPv6 address and protocols.
    pub fn from_consensus_entry(rs: &RouterStatus, md: &Microdesc) -> Self {
        let ed_id = if rs.flags.contains(RelayFlags::NO_ED_CONSENSUS) {
            None
        } else {
            md.ed25519_id().copied()
        };
        let ipv6 = rs.ipv6.or(md.ipv6_addr()).and_then(|a| match a {
            SocketAddr::V6(a) => Some(a),
            SocketAddr::V4(_) => None,
        });
        RelayInfo {
            nickname: rs.nickname.clone(),
            rsa_id: rs.rsa_identity,
            ed_id,
            ipv4: Some(SocketAddrV4::new(rs.address, rs.or_port)),
            ipv6,
            flags: rs.flags,
            bandwidth: rs.bandwidth.unwrap_or(MISSING_BANDWIDTH),
            ntor_onion_key: Some(*md.ntor_onion_key()),
            tap_onion_key: md.tap_onion_key().cloned(),
            ipv4_policy: md.ipv4_policy().clone(),
            ipv6_policy: md.ipv6_policy().clone(),
            family: RelayFamily::parse(md.family().iter().map(String::as_str)),
            protocols: rs
                .protocols
                .as_ref()
                .or(md.protocols())
                .cloned()
                .unwrap_or_default(),
        }
    }

    /// Whether the relay speaks ntor-v3 (`Relay=4`).
    pub fn supports_ntor_v3(&self) -> bool {
        self.protocols.supports("Relay", 4)
    }

    /// Whether every flag of `flags` is set.
    pub fn has(&self, flags: RelayFlags) -> bool {
        self.flags.contains(flags)
    }

    /// Whether the relay is listed as usable at all: `Running` and `Valid`.
    pub fn is_running_valid(&self) -> bool {
        self.has(RelayFlags::RUNNING.union(RelayFlags::VALID))
    }

    /// What a circuit needs to reach this relay and run a handshake with it.
    pub fn to_hop_target(&self) -> HopTarget {
        HopTarget {
            ipv4: self.ipv4,
            ipv6: self.ipv6,
            rsa_id: Some(*self.rsa_id.as_bytes()),
            ed_id: self.ed_id.map(|id| *id.as_bytes()),
            ntor_onion_key: self.ntor_onion_key,
            tap_onion_key: self.tap_onion_key.clone(),
            supports_ntor_v3: self.supports_ntor_v3(),
        }
    }

    /// Whether `self` and `other` are the same relay (same RSA identity, or same Ed25519
    /// identity).
    pub fn same_relay(&self, other: &RelayInfo) -> bool {
        self.rsa_id == other.rsa_id || (self.ed_id.is_some() && self.ed_id == other.ed_id)
    }

    /// Whether each relay lists the other in its family (path-spec §2.2).
    pub fn same_family(&self, other: &RelayInfo) -> bool {
        self.family.lists(&other.rsa_id, &other.nickname)
            && other.family.lists(&self.rsa_id, &self.nickname)
    }

    /// Whether the relays have IPv4 addresses in the same /16 or IPv6 addresses in the same
    /// /32 (C tor's `router_addrs_in_same_network`).
    pub fn same_subnet(&self, other: &RelayInfo) -> bool {
        let v4 = |a: &SocketAddrV4| v4_prefix(*a.ip());
        let v6 = |a: &SocketAddrV6| v6_prefix(*a.ip());
        matches!((self.ipv4, other.ipv4), (Some(a), Some(b)) if v4(&a) == v4(&b))
            || matches!((self.ipv6, other.ipv6), (Some(a), Some(b)) if v6(&a) == v6(&b))
    }
}

fn v4_prefix(ip: Ipv4Addr) -> [u8; 2] {
    let [a, b, _, _] = ip.octets();
    [a, b]
}

fn v6_prefix(ip: Ipv6Addr) -> [u16; 2] {
    let [a, b, ..] = ip.segments();
    [a, b]
}

/// From [`RelayInfo::to_hop_target`].
impl From<&RelayInfo> for HopTarget {
    fn from(r: &RelayInfo) -> Self {
        r.to_hop_target()
    }
}

/// The relays a client chooses paths from, with the bandwidth weights to apply.
#[derive(Debug, Clone, Default)]
pub struct RelaySet {
    relays: Vec<RelayInfo>,
    weights: BandwidthWeights,
    missing_microdescs: usize,
}

impl RelaySet {
    /// A set from a plain list (e.g. our own network's signed relay list). Later entries with
    /// an RSA identity already listed are dropped. Use [`BandwidthWeights::plain`] when there
    /// is no consensus.
    pub fn new(relays: Vec<RelayInfo>, weights: BandwidthWeights) -> Self {
        let mut seen = BTreeSet::new();
        let relays = relays
            .into_iter()
            .filter(|r| seen.insert(r.rsa_id))
            .collect();
        RelaySet {
            relays,
            weights,
            missing_microdescs: 0,
        }
    }

    /// The relays of a microdesc-flavored consensus whose microdescriptor is among
    /// `microdescs` (matched by digest); the others are skipped and counted
    /// ([`missing_microdescs`](Self::missing_microdescs)). The consensus must already be
    /// verified.
    pub fn from_consensus<'a, I>(consensus: &Consensus, microdescs: I) -> Result<Self, PathError>
    where
        I: IntoIterator<Item = &'a Microdesc>,
    {
        if consensus.flavor() != Flavor::Microdesc {
            return Err(PathError::NotMicrodescFlavor);
        }
        let by_digest: BTreeMap<&[u8; 32], &Microdesc> =
            microdescs.into_iter().map(|m| (m.digest(), m)).collect();
        let mut missing = 0;
        let mut relays = Vec::with_capacity(consensus.routers().len());
        for rs in consensus.routers() {
            match rs.microdesc_digest().and_then(|d| by_digest.get(d)) {
                Some(md) => relays.push(RelayInfo::from_consensus_entry(rs, md)),
                None => missing += 1,
            }
        }
        let mut set = Self::new(relays, BandwidthWeights::from_consensus(consensus));
        set.missing_microdescs = missing;
        Ok(set)
    }

    /// The relays, in the order given (identity order for a consensus).
    pub fn relays(&self) -> &[RelayInfo] {
        &self.relays
    }

    /// Number of relays.
    pub fn len(&self) -> usize {
        self.relays.len()
    }

    /// Whether there is no relay.
    pub fn is_empty(&self) -> bool {
        self.relays.is_empty()
    }

    /// Consensus entries skipped because their microdescriptor was not given.
    pub fn missing_microdescs(&self) -> usize {
        self.missing_microdescs
    }

    /// The bandwidth weights.
    pub fn weights(&self) -> &BandwidthWeights {
        &self.weights
    }

    /// The relay with RSA identity `id`.
    pub fn get(&self, id: &RsaIdentity) -> Option<&RelayInfo> {
        self.relays.iter().find(|r| &r.rsa_id == id)
    }

    /// The relay with nickname `nickname` (the first, if several; nicknames are not unique).
    pub fn by_nickname(&self, nickname: &str) -> Option<&RelayInfo> {
        self.relays.iter().find(|r| r.nickname == nickname)
    }

    /// `relay`'s selection weight in `position` (only ratios are meaningful).
    pub fn weight(&self, relay: &RelayInfo, position: Position) -> u128 {
        self.weights.weight(position, relay.flags, relay.bandwidth)
    }

    /// Choose one of the relays accepted by `filter`, weighted for `position` (uniformly if
    /// they all weigh zero). `None` if `filter` accepts none.
    pub fn choose<R, F>(&self, rng: &mut R, position: Position, filter: F) -> Option<&RelayInfo>
    where
        R: CryptoRng + ?Sized,
        F: Fn(&RelayInfo) -> bool,
    {
        let candidates: Vec<&RelayInfo> = self.relays.iter().filter(|r| filter(r)).collect();
        choose_weighted(rng, &candidates, |r| self.weight(r, position))
    }
}

#[cfg(test)]
mod test {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::client::HandshakeKind;
    use crate::path::testutil::{fixture_mds, fixture_set};

    #[test]
    fn fixture_relays_are_merged() {
        let set = fixture_set();
        assert_eq!(set.len(), 6);
        assert_eq!(set.missing_microdescs(), 0);
        let exit0 = set.by_nickname("exit0").unwrap();
        assert_eq!(exit0.ipv4, Some("127.0.0.1:27748".parse().unwrap()));
        assert!(exit0.has(RelayFlags::EXIT.union(RelayFlags::GUARD)));
        assert!(exit0.is_running_valid());
        assert!(exit0.ipv4_policy.allows_port(443));
        assert_eq!(exit0.bandwidth, 0);
        assert!(exit0.supports_ntor_v3());
        assert!(exit0.ed_id.is_some() && exit0.tap_onion_key.is_some());
        let auth2 = set.by_nickname("auth2").unwrap();
        assert_eq!(auth2.bandwidth, 8);
        assert!(!auth2.ipv4_policy.allows_port(443));
        assert_eq!(set.get(&auth2.rsa_id), Some(auth2));
        let t = HopTarget::from(auth2);
        assert_eq!(t.best_handshake(), Some(HandshakeKind::NtorV3));
        assert_eq!(t.rsa_id, Some(*auth2.rsa_id.as_bytes()));
        assert_eq!(t.ipv4, auth2.ipv4);
        assert_eq!(t.ntor_onion_key, auth2.ntor_onion_key);
    }

    #[test]
    fn missing_microdescs_are_counted() {
        let c = crate::path::testutil::fixture_consensus();
        let mds = fixture_mds();
        let set = RelaySet::from_consensus(&c, mds.iter().skip(2)).unwrap();
        assert_eq!(set.len(), 4);
        assert_eq!(set.missing_microdescs(), 2);
        let none = RelaySet::from_consensus(&c, []).unwrap();
        assert!(none.is_empty());
        assert_eq!(none.missing_microdescs(), 6);
    }

    #[test]
    fn ns_flavor_is_refused() {
        let c = Consensus::parse(include_str!("../dir/testdata/consensus-ns.txt")).unwrap();
        assert_eq!(
            RelaySet::from_consensus(&c, &fixture_mds()).err(),
            Some(PathError::NotMicrodescFlavor)
        );
    }

    #[test]
    fn no_ed_consensus_drops_the_ed_identity() {
        let c = crate::path::testutil::fixture_consensus();
        let mds = fixture_mds();
        let mut rs = c.routers()[0].clone();
        let md = mds
            .iter()
            .find(|m| Some(m.digest()) == rs.microdesc_digest())
            .unwrap();
        assert!(RelayInfo::from_consensus_entry(&rs, md).ed_id.is_some());
        rs.flags = rs.flags.union(RelayFlags::NO_ED_CONSENSUS);
        let r = RelayInfo::from_consensus_entry(&rs, md);
        assert_eq!(r.ed_id, None);
        assert_eq!(
            r.to_hop_target().best_handshake(),
            Some(HandshakeKind::Ntor)
        );
        rs.bandwidth = None;
        assert_eq!(
            RelayInfo::from_consensus_entry(&rs, md).bandwidth,
            MISSING_BANDWIDTH
        );
    }

    #[test]
    fn family_parsing_and_mutuality() {
        let a_id = RsaIdentity::from_bytes([1; 20]);
        let b_id = RsaIdentity::from_bytes([2; 20]);
        let mut a = RelayInfo::new("Alice", a_id);
        let mut b = RelayInfo::new("bob", b_id);
        a.family = RelayFamily::parse([format!("${}=bob", b_id).as_str(), "junk!", "$zz"]);
        assert!(a.family.lists(&b_id, "x"));
        assert!(!a.same_family(&b), "one-sided declaration");
        b.family = RelayFamily::parse(["ALICE"]);
        assert!(a.same_family(&b) && b.same_family(&a));
        b.family =
            RelayFamily::parse([format!("${}~Alice", hex::encode(a_id.as_bytes())).as_str()]);
        assert!(a.same_family(&b));
        b.family = RelayFamily::new().with_id(RsaIdentity::from_bytes([3; 20]));
        assert!(!a.same_family(&b));
        assert!(RelayFamily::parse(["$zz", "too-long-nickname-for-tor", ""]).is_empty());
    }

    #[test]
    fn subnets() {
        let mut a = RelayInfo::new("a", RsaIdentity::from_bytes([1; 20]));
        let mut b = RelayInfo::new("b", RsaIdentity::from_bytes([2; 20]));
        assert!(!a.same_subnet(&b));
        a.ipv4 = Some("10.1.2.3:1".parse().unwrap());
        b.ipv4 = Some("10.1.200.3:2".parse().unwrap());
        assert!(a.same_subnet(&b));
        b.ipv4 = Some("10.2.2.3:1".parse().unwrap());
        assert!(!a.same_subnet(&b));
        a.ipv6 = Some("[2001:db8:1::1]:1".parse().unwrap());
        b.ipv6 = Some("[2001:db8:ffff::2]:1".parse().unwrap());
        assert!(a.same_subnet(&b));
        b.ipv6 = Some("[2001:db9::2]:1".parse().unwrap());
        assert!(!a.same_subnet(&b));
    }

    #[test]
    fn duplicates_are_dropped_and_same_relay() {
        let id = RsaIdentity::from_bytes([1; 20]);
        let set = RelaySet::new(
            vec![RelayInfo::new("first", id), RelayInfo::new("second", id)],
            BandwidthWeights::plain(),
        );
        assert_eq!(set.len(), 1);
        assert_eq!(set.relays()[0].nickname, "first");
        let mut a = RelayInfo::new("a", id);
        let mut b = RelayInfo::new("b", RsaIdentity::from_bytes([2; 20]));
        assert!(!a.same_relay(&b));
        a.ed_id = Some(Ed25519Identity::from_bytes([5; 32]));
        b.ed_id = a.ed_id;
        assert!(a.same_relay(&b));
    }
}
