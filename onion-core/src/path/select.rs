//! Choosing the relays of one circuit (path-spec §2.2).
//!
//! The last hop is chosen first (path-spec §2.2: "we first pick hop 3, then hop 1, then hop
//! 2"), unless the first hop is pinned, in which case the last hop is chosen to fit it. Then
//! the first hop, then the middle hops front to back. Each relay is chosen by bandwidth weight
//! for its position ([`Position`]) among the usable relays compatible with those already
//! chosen:
//!
//! - no relay twice (same RSA or Ed25519 identity);
//! - no two relays in the same family (mutual declaration);
//! - no two relays in the same IPv4 /16 or IPv6 /32, unless
//!   [`PathConfig::enforce_distinct_subnets`] is off (C tor's `EnforceDistinctSubnets 0`,
//!   needed on test networks where every relay is on 127.0.0.1);
//! - every chosen relay `Running` and `Valid`, and `Fast` if [`PathConfig::require_fast`];
//! - a chosen first hop has the guard flags [`guard_flags`];
//! - an exit is not `BadExit` nor `MiddleOnly`, and its `p` summary accepts the port (or,
//!   with no port, it has the `Exit` flag and accepts some port).
//!
//! A pinned first hop ([`FirstHop::Guard`], [`FirstHop::GuardId`]: the seed's `one_OR`, the
//! browser's entry OR, or the guard from [`GuardSet`](super::GuardSet)) is used as given; its
//! flags are not checked, but the other hops must be compatible with it.
//!
//! There is no backtracking: if the relays chosen first leave no candidate for a later
//! position, the result is [`PathError::NotEnoughRelays`] and the caller may try again.

use rand_core::CryptoRng;

use super::PathError;
use super::relay::{RelayInfo, RelaySet};
use super::weight::Position;
use crate::certs::RsaIdentity;
use crate::dir::RelayFlags;

/// Default number of hops.
pub const DEFAULT_HOPS: usize = 3;
/// Most hops a path may have.
pub const MAX_HOPS: usize = 5;

/// The flags a relay needs to be chosen as a guard: `Guard`, `Running`, `Valid`, `Fast`,
/// `Stable` (guard-spec §4.0, without `V2Dir`: our directory fetches do not have to go
/// through the guard).
pub fn guard_flags() -> RelayFlags {
    [
        RelayFlags::RUNNING,
        RelayFlags::VALID,
        RelayFlags::FAST,
        RelayFlags::STABLE,
    ]
    .into_iter()
    .fold(RelayFlags::GUARD, RelayFlags::union)
}

/// How the first hop is chosen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum FirstHop {
    /// Any relay with [`guard_flags`], by guard-position weight.
    #[default]
    AnyGuard,
    /// This relay (it need not be in the relay set).
    Guard(Box<RelayInfo>),
    /// The relay of the set with this RSA identity.
    GuardId(RsaIdentity),
}

/// What path to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathConfig {
    /// Number of hops, `1..=MAX_HOPS`.
    pub hops: usize,
    /// The port the exit must accept (by its `p` summary); `None` for any exit (a pre-built
    /// circuit of the pool).
    pub exit_port: Option<u16>,
    /// An internal circuit (path-spec §1.1): the last hop is chosen like a middle hop,
    /// ignoring exit policies (also what a one-hop directory circuit to a pinned relay needs).
    /// `exit_port` must then be `None`.
    pub internal: bool,
    /// How the first hop is chosen.
    pub first_hop: FirstHop,
    /// Refuse two relays in the same IPv4 /16 or IPv6 /32.
    pub enforce_distinct_subnets: bool,
    /// Choose only relays with the `Fast` flag (guards always need it).
    pub require_fast: bool,
}

impl Default for PathConfig {
    /// 3 hops, any exit, any guard, distinct subnets, fast relays.
    fn default() -> Self {
        PathConfig {
            hops: DEFAULT_HOPS,
            exit_port: None,
            internal: false,
            first_hop: FirstHop::AnyGuard,
            enforce_distinct_subnets: true,
            require_fast: true,
        }
    }
}

impl PathConfig {
    /// The default configuration for an exit circuit to `port`.
    pub fn to_port(port: u16) -> Self {
        PathConfig {
            exit_port: Some(port),
            ..Self::default()
        }
    }

    /// Whether `r` may be chosen (not pinned) at all: `Running`, `Valid`, `Fast` if required.
    fn usable(&self, r: &RelayInfo) -> bool {
        r.is_running_valid() && (!self.require_fast || r.has(RelayFlags::FAST))
    }

    /// Whether `r` may be chosen as a guard.
    fn usable_guard(&self, r: &RelayInfo) -> bool {
        self.usable(r) && is_guard(r)
    }

    /// Whether `r` satisfies the last hop's requirement (not counting `usable`).
    fn suits_last_hop(&self, r: &RelayInfo) -> bool {
        if self.internal {
            return true;
        }
        if r.has(RelayFlags::BAD_EXIT) || r.has(RelayFlags::MIDDLE_ONLY) {
            return false;
        }
        match self.exit_port {
            Some(port) => r.ipv4_policy.allows_port(port),
            None => r.has(RelayFlags::EXIT) && !r.ipv4_policy.rejects_all(),
        }
    }

    /// The error for "no relay suits the last hop".
    fn no_last_hop(&self) -> PathError {
        match (self.internal, self.exit_port) {
            (true, _) => PathError::NotEnoughRelays {
                needed: self.hops,
                have: 0,
            },
            (false, Some(port)) => PathError::NoExitForPort(port),
            (false, None) => PathError::NoExit,
        }
    }
}

/// Whether `r` has the guard flags and is not `MiddleOnly`.
pub(crate) fn is_guard(r: &RelayInfo) -> bool {
    r.has(guard_flags()) && !r.has(RelayFlags::MIDDLE_ONLY)
}

/// Whether `a` and `b` may be on the same path.
fn compatible(a: &RelayInfo, b: &RelayInfo, subnets: bool) -> bool {
    !(a.same_relay(b) || a.same_family(b) || (subnets && a.same_subnet(b)))
}

/// Choose the relays of a circuit, first hop first. See the [module documentation](self).
pub fn select_path<R: CryptoRng + ?Sized>(
    rng: &mut R,
    relays: &RelaySet,
    config: &PathConfig,
) -> Result<Vec<RelayInfo>, PathError> {
    let hops = config.hops;
    if !(1..=MAX_HOPS).contains(&hops) {
        return Err(PathError::BadHopCount(hops));
    }
    if config.internal && config.exit_port.is_some() {
        return Err(PathError::InvalidConfig(
            "an internal circuit has no exit port",
        ));
    }
    let pinned = match &config.first_hop {
        FirstHop::AnyGuard => None,
        FirstHop::Guard(r) => Some(&**r),
        FirstHop::GuardId(id) => Some(relays.get(id).ok_or(PathError::PinnedNotFound(*id))?),
    };
    let subnets = config.enforce_distinct_subnets;
    let fits =
        |r: &RelayInfo, chosen: &[&RelayInfo]| chosen.iter().all(|c| compatible(r, c, subnets));
    let short = |have: usize| PathError::NotEnoughRelays { needed: hops, have };

    if hops == 1 {
        return match pinned {
            Some(p) if config.suits_last_hop(p) => Ok(vec![p.clone()]),
            Some(_) => Err(config.no_last_hop()),
            None => {
                if !relays.relays().iter().any(|r| config.usable_guard(r)) {
                    return Err(PathError::NoGuard);
                }
                relays
                    .choose(rng, Position::Guard, |r| {
                        config.usable_guard(r) && config.suits_last_hop(r)
                    })
                    .cloned()
                    .map(|r| vec![r])
                    .ok_or_else(|| config.no_last_hop())
            }
        };
    }

    let mut chosen: Vec<&RelayInfo> = Vec::with_capacity(hops);
    chosen.extend(pinned);

    // The last hop.
    let last_ok = |r: &RelayInfo| config.usable(r) && config.suits_last_hop(r);
    if !relays.relays().iter().any(last_ok) {
        return Err(config.no_last_hop());
    }
    let last_pos = if config.internal {
        Position::Middle
    } else {
        Position::Exit
    };
    let last = relays
        .choose(rng, last_pos, |r| last_ok(r) && fits(r, &chosen))
        .ok_or_else(|| short(chosen.len()))?;
    chosen.push(last);

    // The first hop.
    let first = match pinned {
        Some(p) => p,
        None => {
            if !relays.relays().iter().any(|r| config.usable_guard(r)) {
                return Err(PathError::NoGuard);
            }
            let g = relays
                .choose(rng, Position::Guard, |r| {
                    config.usable_guard(r) && fits(r, &chosen)
                })
                .ok_or_else(|| short(chosen.len()))?;
            chosen.push(g);
            g
        }
    };

    // The middle hops, front to back.
    let mut middles = Vec::with_capacity(hops.saturating_sub(2));
    for _ in 2..hops {
        let m = relays
            .choose(rng, Position::Middle, |r| {
                config.usable(r) && fits(r, &chosen)
            })
            .ok_or_else(|| short(chosen.len()))?;
        chosen.push(m);
        middles.push(m);
    }

    let mut path = Vec::with_capacity(hops);
    path.push(first.clone());
    path.extend(middles.into_iter().cloned());
    path.push(last.clone());
    Ok(path)
}

#[cfg(test)]
mod test {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use std::collections::BTreeMap;
    use std::net::Ipv4Addr;

    use proptest::prelude::*;

    use super::*;
    use crate::path::BandwidthWeights;
    use crate::path::relay::RelayFamily;
    use crate::path::testutil::{fixture_set, flags, id, relay, synthetic};
    use crate::testing::seeded_rng;

    fn names(path: &[RelayInfo]) -> Vec<&str> {
        path.iter().map(|r| r.nickname.as_str()).collect()
    }

    fn no_subnets(hops: usize, port: Option<u16>) -> PathConfig {
        PathConfig {
            hops,
            exit_port: port,
            enforce_distinct_subnets: false,
            ..PathConfig::default()
        }
    }

    /// Every invariant of a successful path.
    fn check_path(path: &[RelayInfo], config: &PathConfig) {
        assert_eq!(path.len(), config.hops);
        for (i, a) in path.iter().enumerate() {
            for b in &path[i + 1..] {
                assert!(
                    compatible(a, b, config.enforce_distinct_subnets),
                    "{} and {} on one path",
                    a.nickname,
                    b.nickname
                );
            }
        }
        let pinned = !matches!(config.first_hop, FirstHop::AnyGuard);
        for (i, r) in path.iter().enumerate() {
            if i == 0 && pinned {
                continue;
            }
            assert!(config.usable(r), "{} unusable", r.nickname);
            if i == 0 {
                assert!(is_guard(r), "{} is no guard", r.nickname);
            }
        }
        let last = path.last().unwrap();
        assert!(config.suits_last_hop(last), "{} is no exit", last.nickname);
        match &config.first_hop {
            FirstHop::Guard(g) => assert_eq!(&path[0], &**g),
            FirstHop::GuardId(id) => assert_eq!(&path[0].rsa_id, id),
            FirstHop::AnyGuard => {}
        }
    }

    #[test]
    fn fixture_with_distinct_subnets_fits_one_hop_only() {
        // Every relay of the test network is on 127.0.0.1.
        let set = fixture_set();
        let mut rng = seeded_rng(1);
        for hops in 2..=5 {
            assert_eq!(
                select_path(
                    &mut rng,
                    &set,
                    &PathConfig {
                        hops,
                        ..PathConfig::to_port(80)
                    }
                ),
                Err(PathError::NotEnoughRelays {
                    needed: hops,
                    have: 1
                })
            );
        }
        for _ in 0..20 {
            let p = select_path(
                &mut rng,
                &set,
                &PathConfig {
                    hops: 1,
                    ..PathConfig::to_port(80)
                },
            )
            .unwrap();
            assert!(
                ["exit0", "exit1"].contains(&names(&p)[0]),
                "{:?}",
                names(&p)
            );
        }
        let pinned = PathConfig {
            first_hop: FirstHop::GuardId(set.by_nickname("auth2").unwrap().rsa_id),
            ..PathConfig::to_port(443)
        };
        assert_eq!(
            select_path(&mut rng, &set, &pinned),
            Err(PathError::NotEnoughRelays { needed: 3, have: 1 })
        );
    }

    #[test]
    fn fixture_paths_without_subnet_rule() {
        let set = fixture_set();
        let mut rng = seeded_rng(2);
        for hops in 1..=5 {
            for port in [Some(80), Some(9001), None] {
                for _ in 0..30 {
                    let config = no_subnets(hops, port);
                    let p = select_path(&mut rng, &set, &config).unwrap();
                    check_path(&p, &config);
                    let last = names(&p)[hops - 1];
                    assert!(["exit0", "exit1"].contains(&last), "{:?}", names(&p));
                }
            }
        }
        // 6 relays: an internal 5-hop path fits too.
        let config = PathConfig {
            internal: true,
            ..no_subnets(5, None)
        };
        check_path(&select_path(&mut rng, &set, &config).unwrap(), &config);
    }

    #[test]
    fn fixture_errors() {
        let set = fixture_set();
        let mut rng = seeded_rng(3);
        // Port 0 is never allowed.
        assert_eq!(
            select_path(&mut rng, &set, &no_subnets(3, Some(0))),
            Err(PathError::NoExitForPort(0))
        );
        for hops in [0, 6, 100] {
            assert_eq!(
                select_path(&mut rng, &set, &no_subnets(hops, Some(80))),
                Err(PathError::BadHopCount(hops))
            );
        }
        let bad = PathConfig {
            internal: true,
            ..no_subnets(3, Some(80))
        };
        assert!(matches!(
            select_path(&mut rng, &set, &bad),
            Err(PathError::InvalidConfig(_))
        ));
        let unknown = RsaIdentity::from_bytes([0xee; 20]);
        assert_eq!(
            select_path(
                &mut rng,
                &set,
                &PathConfig {
                    first_hop: FirstHop::GuardId(unknown),
                    ..no_subnets(3, Some(80))
                }
            ),
            Err(PathError::PinnedNotFound(unknown))
        );
        // A pinned non-exit cannot be a one-hop exit.
        let auth0 = set.by_nickname("auth0").unwrap().clone();
        let config = PathConfig {
            first_hop: FirstHop::Guard(Box::new(auth0.clone())),
            ..no_subnets(1, Some(80))
        };
        assert_eq!(
            select_path(&mut rng, &set, &config),
            Err(PathError::NoExitForPort(80))
        );
        let config = PathConfig {
            first_hop: FirstHop::Guard(Box::new(auth0)),
            ..no_subnets(1, None)
        };
        assert_eq!(select_path(&mut rng, &set, &config), Err(PathError::NoExit));
        // Without Running, nothing is usable.
        let down: Vec<RelayInfo> = set
            .relays()
            .iter()
            .map(|r| RelayInfo {
                flags: flags(&[RelayFlags::GUARD, RelayFlags::EXIT, RelayFlags::VALID]),
                ..r.clone()
            })
            .collect();
        let down = RelaySet::new(down, set.weights().clone());
        assert_eq!(
            select_path(&mut rng, &down, &no_subnets(3, None)),
            Err(PathError::NoExit)
        );
        let internal = PathConfig {
            internal: true,
            ..no_subnets(3, None)
        };
        assert_eq!(
            select_path(&mut rng, &down, &internal),
            Err(PathError::NotEnoughRelays { needed: 3, have: 0 })
        );
        // Exits but no guard.
        let no_guard: Vec<RelayInfo> = set
            .relays()
            .iter()
            .map(|r| RelayInfo {
                flags: flags(&[
                    RelayFlags::RUNNING,
                    RelayFlags::VALID,
                    RelayFlags::FAST,
                    RelayFlags::EXIT,
                ]),
                ..r.clone()
            })
            .collect();
        let no_guard = RelaySet::new(no_guard, set.weights().clone());
        assert_eq!(
            select_path(&mut rng, &no_guard, &no_subnets(3, None)),
            Err(PathError::NoGuard)
        );
        assert_eq!(
            select_path(&mut rng, &no_guard, &no_subnets(1, None)),
            Err(PathError::NoGuard)
        );
    }

    #[test]
    fn fixture_pinned_first_hop() {
        let set = fixture_set();
        let mut rng = seeded_rng(4);
        let exit0 = set.by_nickname("exit0").unwrap();
        for hops in 2..=5 {
            let config = PathConfig {
                first_hop: FirstHop::GuardId(exit0.rsa_id),
                ..no_subnets(hops, Some(80))
            };
            for _ in 0..20 {
                let p = select_path(&mut rng, &set, &config).unwrap();
                check_path(&p, &config);
                assert_eq!(names(&p)[0], "exit0");
                assert_eq!(names(&p)[hops - 1], "exit1", "the only other exit");
            }
        }
        // A pinned relay outside the set (the seed's entry OR) is used as given, and the
        // others must avoid its /16.
        let entry = RelayInfo {
            ipv4: Some("127.0.5.5:443".parse().unwrap()),
            ..RelayInfo::new("entry", RsaIdentity::from_bytes([0x42; 20]))
        };
        let config = PathConfig {
            first_hop: FirstHop::Guard(Box::new(entry.clone())),
            ..PathConfig::to_port(80)
        };
        assert_eq!(
            select_path(&mut rng, &set, &config),
            Err(PathError::NotEnoughRelays { needed: 3, have: 1 })
        );
        let entry = RelayInfo {
            ipv4: Some("192.0.2.1:443".parse().unwrap()),
            ..entry
        };
        let config = PathConfig {
            first_hop: FirstHop::Guard(Box::new(entry.clone())),
            hops: 2,
            ..PathConfig::to_port(80)
        };
        let p = select_path(&mut rng, &set, &config).unwrap();
        check_path(&p, &config);
        assert_eq!(p[0], entry);
    }

    /// Chi-square statistic of `observed` against `expected` probabilities (those > 0).
    fn chi_square(observed: &[u64], expected: &[f64], draws: u64) -> (f64, usize) {
        let mut chi = 0.0;
        let mut df = 0;
        for (&o, &p) in observed.iter().zip(expected) {
            if p > 0.0 {
                let e = p * draws as f64;
                chi += (o as f64 - e).powi(2) / e;
                df += 1;
            } else {
                assert_eq!(o, 0, "a zero-weight relay was chosen");
            }
        }
        (chi, df.max(2) - 1)
    }

    /// Upper bound for a chi-square with `df` degrees of freedom, about p < 1e-4 (normal
    /// approximation, plus a margin for small df).
    fn chi_bound(df: usize) -> f64 {
        let df = df as f64;
        df + 4.0 * (2.0 * df).sqrt() + 6.0
    }

    #[test]
    fn fixture_guard_weights_respected() {
        // Wgg=5295 on Guard-only relays, Wgd=0 on the two Guard+Exit ones: the guards are
        // auth1 (5), middle0 (3), auth2 (8); auth0 (0), exit0 and exit1 never.
        let set = fixture_set();
        let mut rng = seeded_rng(5);
        let config = PathConfig {
            internal: true,
            ..no_subnets(1, None)
        };
        let order = ["auth1", "middle0", "auth2", "auth0", "exit0", "exit1"];
        let mut counts = [0u64; 6];
        let draws = 16_000;
        for _ in 0..draws {
            let p = select_path(&mut rng, &set, &config).unwrap();
            let i = order.iter().position(|n| *n == names(&p)[0]).unwrap();
            counts[i] += 1;
        }
        let expected = [5.0 / 16.0, 3.0 / 16.0, 8.0 / 16.0, 0.0, 0.0, 0.0];
        let (chi, df) = chi_square(&counts, &expected, draws);
        assert!(chi < chi_bound(df), "chi² {chi} df {df}: {counts:?}");
    }

    /// A consensus-like weights map with distinct values everywhere.
    fn skewed_weights() -> BandwidthWeights {
        let pairs = [
            ("Wgg", 6000),
            ("Wgm", 6000),
            ("Wgd", 2000),
            ("Wmg", 4000),
            ("Wmm", 10000),
            ("Wme", 1500),
            ("Wmd", 500),
            ("Weg", 3000),
            ("Wem", 3000),
            ("Wee", 10000),
            ("Wed", 7500),
            ("Wgb", 10000),
            ("Wmb", 10000),
            ("Web", 10000),
            ("Wdb", 10000),
        ];
        let map: BTreeMap<String, i32> = pairs.iter().map(|&(k, v)| (k.to_owned(), v)).collect();
        BandwidthWeights::from_map(&map, 10000)
    }

    #[test]
    fn synthetic_weights_respected_per_relay() {
        let set = synthetic(200, skewed_weights());
        let config = PathConfig::default();
        let draws = 60_000u64;
        for position in [Position::Guard, Position::Middle, Position::Exit] {
            let mut rng = seeded_rng(6);
            let filter = |r: &RelayInfo| match position {
                Position::Guard => config.usable_guard(r),
                Position::Middle => config.usable(r),
                Position::Exit => config.usable(r) && config.suits_last_hop(r),
            };
            let total: u128 = set
                .relays()
                .iter()
                .filter(|r| filter(r))
                .map(|r| set.weight(r, position))
                .sum();
            let expected: Vec<f64> = set
                .relays()
                .iter()
                .map(|r| {
                    if filter(r) {
                        set.weight(r, position) as f64 / total as f64
                    } else {
                        0.0
                    }
                })
                .collect();
            let mut counts = vec![0u64; set.len()];
            for _ in 0..draws {
                let r = set.choose(&mut rng, position, filter).unwrap();
                let i = set
                    .relays()
                    .iter()
                    .position(|x| x.rsa_id == r.rsa_id)
                    .unwrap();
                counts[i] += 1;
            }
            let (chi, df) = chi_square(&counts, &expected, draws);
            assert!(chi < chi_bound(df), "{position:?}: chi² {chi} df {df}");
        }
    }

    #[test]
    fn synthetic_exit_class_shares_follow_bandwidth_weights() {
        // select_path picks the exit first, unconstrained: its distribution over the four
        // flag classes is exactly the exit-position weights.
        let set = synthetic(400, skewed_weights());
        let mut rng = seeded_rng(7);
        let config = PathConfig::to_port(443);
        let class = |r: &RelayInfo| {
            (r.has(RelayFlags::GUARD) as usize) + 2 * (r.has(RelayFlags::EXIT) as usize)
        };
        let mut expected = [0f64; 4];
        for r in set.relays() {
            if config.usable(r) && config.suits_last_hop(r) {
                // Independently of BandwidthWeights: Wee=10000 (Exit only), Wed=7500
                // (Guard+Exit).
                let w = if r.has(RelayFlags::GUARD) {
                    7500.0
                } else {
                    10000.0
                };
                expected[class(r)] += w * f64::from(r.bandwidth);
            }
        }
        let sum: f64 = expected.iter().sum();
        expected.iter_mut().for_each(|e| *e /= sum);
        // Only Exit (class 2) and Guard+Exit (class 3) relays accept 443.
        assert_eq!((expected[0], expected[1]), (0.0, 0.0));
        let draws = 6_000u64;
        let mut counts = [0u64; 4];
        for _ in 0..draws {
            let p = select_path(&mut rng, &set, &config).unwrap();
            check_path(&p, &config);
            counts[class(p.last().unwrap())] += 1;
        }
        let (chi, df) = chi_square(&counts, &expected, draws);
        assert!(chi < chi_bound(df), "chi² {chi} df {df}: {counts:?}");
    }

    #[test]
    fn synthetic_exit_port_respected() {
        let set = synthetic(300, BandwidthWeights::plain());
        let mut rng = seeded_rng(8);
        for hops in 1..=5 {
            for _ in 0..50 {
                // Only the Guard+Exit relays accept port 22.
                let config = PathConfig {
                    hops,
                    ..PathConfig::to_port(22)
                };
                let p = select_path(&mut rng, &set, &config).unwrap();
                check_path(&p, &config);
                let last = p.last().unwrap();
                assert!(last.has(RelayFlags::GUARD.union(RelayFlags::EXIT)));
                assert!(last.ipv4_policy.allows_port(22));
            }
        }
        assert_eq!(
            select_path(&mut rng, &set, &PathConfig::to_port(25)),
            Err(PathError::NoExitForPort(25))
        );
    }

    #[test]
    fn families_and_subnets_are_avoided() {
        // 60 relays, in 6 /16s; relays 2k and 2k+1 are mutual family.
        let relays: Vec<RelayInfo> = (0..60u32)
            .map(|i| {
                let mut r = relay(
                    i,
                    Ipv4Addr::new(10, (i % 6) as u8, 0, i as u8),
                    flags(&[RelayFlags::GUARD, RelayFlags::EXIT]),
                    10,
                    Some("accept 1-65535"),
                );
                r.family = RelayFamily::new().with_id(id(i ^ 1));
                r
            })
            .collect();
        let set = RelaySet::new(relays, BandwidthWeights::plain());
        let mut rng = seeded_rng(9);
        for hops in 1..=5 {
            for _ in 0..100 {
                let config = PathConfig {
                    hops,
                    ..PathConfig::to_port(80)
                };
                let p = select_path(&mut rng, &set, &config).unwrap();
                check_path(&p, &config);
            }
        }
        // Six /16s: a sixth hop could not fit, five always do.
        let config = PathConfig::default();
        assert!(select_path(&mut rng, &set, &PathConfig { hops: 5, ..config }).is_ok());
    }

    fn arb_relay(n: u32) -> impl Strategy<Value = RelayInfo> {
        (
            0u8..4,
            0u8..4,
            any::<u16>(),
            0u32..50,
            prop::option::of(prop::sample::select(vec![
                "accept 80,443",
                "accept 1-65535",
                "reject 80",
                "reject 1-65535",
            ])),
        )
            .prop_map(move |(a, b, fl, bw, policy)| {
                let all = [
                    RelayFlags::RUNNING,
                    RelayFlags::VALID,
                    RelayFlags::FAST,
                    RelayFlags::STABLE,
                    RelayFlags::GUARD,
                    RelayFlags::EXIT,
                    RelayFlags::BAD_EXIT,
                    RelayFlags::MIDDLE_ONLY,
                ];
                // Mostly usable relays: each of the first four flags is missing 1 time in 8.
                let f = all
                    .iter()
                    .enumerate()
                    .fold(RelayFlags::default(), |acc, (i, &f)| {
                        let on = if i < 4 {
                            (fl >> (2 * i)) & 7 != 0
                        } else {
                            (fl >> (8 + i)) & 1 != 0
                        };
                        if on { acc.union(f) } else { acc }
                    });
                let mut r = relay(
                    n,
                    Ipv4Addr::new(10, a, b, n as u8),
                    RelayFlags::default(),
                    bw,
                    policy,
                );
                r.flags = f;
                r
            })
    }

    fn arb_set() -> impl Strategy<Value = RelaySet> {
        (3usize..40)
            .prop_flat_map(|n| {
                (
                    (0..n as u32).map(arb_relay).collect::<Vec<_>>(),
                    prop::collection::vec((0..n as u32, 0..n as u32, any::<bool>()), 0..20),
                )
            })
            .prop_map(|(mut relays, fams)| {
                for (a, b, mutual) in fams {
                    let (ida, idb) = (relays[a as usize].rsa_id, relays[b as usize].rsa_id);
                    let fa = std::mem::take(&mut relays[a as usize].family);
                    relays[a as usize].family = fa.with_id(idb);
                    if mutual {
                        let fb = std::mem::take(&mut relays[b as usize].family);
                        relays[b as usize].family = fb.with_id(ida);
                    }
                }
                RelaySet::new(relays, skewed_weights())
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn constraints_never_violated(
            set in arb_set(),
            hops in 1usize..=5,
            port in prop::option::of(prop::sample::select(vec![22u16, 80, 443])),
            internal in any::<bool>(),
            subnets in any::<bool>(),
            pin in prop::option::of(any::<prop::sample::Index>()),
            seed in any::<u64>(),
        ) {
            let first_hop = match pin {
                Some(i) => FirstHop::GuardId(set.relays()[i.index(set.len())].rsa_id),
                None => FirstHop::AnyGuard,
            };
            let config = PathConfig {
                hops,
                exit_port: if internal { None } else { port },
                internal,
                first_hop,
                enforce_distinct_subnets: subnets,
                require_fast: true,
            };
            let mut rng = seeded_rng(seed);
            match select_path(&mut rng, &set, &config) {
                Ok(p) => check_path(&p, &config),
                Err(PathError::NoExitForPort(p)) => {
                    prop_assert_eq!(Some(p), config.exit_port);
                    if hops > 1 {
                        prop_assert!(!set.relays().iter().any(|r| config.usable(r) && config.suits_last_hop(r)));
                    }
                }
                Err(PathError::NoExit) => {
                    prop_assert!(config.exit_port.is_none() && !internal);
                    if hops > 1 {
                        prop_assert!(!set.relays().iter().any(|r| config.usable(r) && config.suits_last_hop(r)));
                    }
                }
                Err(PathError::NoGuard) => {
                    prop_assert!(matches!(config.first_hop, FirstHop::AnyGuard));
                    prop_assert!(!set.relays().iter().any(|r| config.usable_guard(r)));
                }
                Err(PathError::NotEnoughRelays { needed, have }) => {
                    prop_assert_eq!(needed, hops);
                    prop_assert!(have < hops);
                }
                Err(e) => prop_assert!(false, "unexpected error {:?}", e),
            }
        }
    }
}
