//! Bandwidth-weighted relay choice (path-spec §2.2, dir-spec §3.4.1 `bandwidth-weights` and
//! §3.8.3).
//!
//! A relay's chance of being chosen for a position is proportional to its consensus weight
//! (`w Bandwidth=`) times the `bandwidth-weights` factor for that position and the relay's
//! Guard/Exit flags, as C tor's `compute_weighted_bandwidths` does:
//!
//! | position | Guard only | Exit only | Guard+Exit | neither |
//! |---|---|---|---|---|
//! | guard | `Wgg` | 0 | `Wgd` | `Wgm` |
//! | middle | `Wmg` | `Wme` | `Wmd` | `Wmm` |
//! | exit | `Weg` | `Wee` | `Wed` | `Wem` |
//!
//! A relay counts as an exit only if it has `Exit` and not `BadExit`. Relays with `V2Dir`
//! are further multiplied by `Wgb`/`Web`/`Wdb`/`Wmb` (all 10000 in today's consensuses).
//! Every factor is divided by `bwweightscale` (default 10000).
//!
//! If a weight a position needs is missing or negative, that position falls back to plain
//! bandwidth (C tor's "naive" selection); a relay set without a consensus (our own network's
//! relay list) uses plain bandwidth everywhere. If every candidate weighs zero (small test
//! networks where every relay is `Unmeasured` with `Bandwidth=0`), the choice is uniform, as
//! in C tor's `choose_array_element_by_weight`.
//!
//! Not implemented: the guardfraction adjustment (proposal 236), which authorities no longer
//! publish.

use std::collections::BTreeMap;

use rand_core::CryptoRng;

use crate::dir::{Consensus, RelayFlags};

/// Where in a path a relay is being chosen for; selects the `bandwidth-weights` row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Position {
    /// The first hop (`Wg*`).
    Guard,
    /// A middle hop, or the last hop of an internal circuit (`Wm*`).
    Middle,
    /// The last hop of an exit circuit (`We*`).
    Exit,
}

/// The default `bwweightscale` (param-spec).
pub const DEFAULT_WEIGHT_SCALE: u32 = 10_000;

/// One position's row: the factors for Guard-only, Exit-only, Guard+Exit and unflagged
/// relays, and the `V2Dir` multipliers for the same four classes, each in units of
/// `1 / scale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Row {
    /// `[g, e, d, m]`.
    w: [u32; 4],
    /// `[Wgb, Web, Wdb, Wmb]`.
    b: [u32; 4],
}

/// The consensus `bandwidth-weights`, ready for weighted choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BandwidthWeights {
    /// `bwweightscale`, at least 1.
    scale: u32,
    /// Guard, middle, exit rows; `None` means plain bandwidth for that position.
    guard: Option<Row>,
    middle: Option<Row>,
    exit: Option<Row>,
}

impl Default for BandwidthWeights {
    fn default() -> Self {
        Self::plain()
    }
}

impl BandwidthWeights {
    /// No weights: every position uses plain bandwidth (our own networks' relay lists).
    pub fn plain() -> Self {
        BandwidthWeights {
            scale: DEFAULT_WEIGHT_SCALE,
            guard: None,
            middle: None,
            exit: None,
        }
    }

    /// The consensus's `bandwidth-weights`, divided by its `bwweightscale` parameter.
    pub fn from_consensus(consensus: &Consensus) -> Self {
        let scale = consensus.param("bwweightscale", 10_000, 1, i32::MAX);
        Self::from_map(consensus.bandwidth_weights(), scale)
    }

    /// Weights from a `bandwidth-weights` map (keys such as `Wgg`) and a scale (clamped to at
    /// least 1). A position whose weights are not all present and non-negative uses plain
    /// bandwidth.
    pub fn from_map(map: &BTreeMap<String, i32>, scale: i32) -> Self {
        let get = |k: &str| map.get(k).and_then(|&v| u32::try_from(v).ok());
        let dir = (|| Some([get("Wgb")?, get("Web")?, get("Wdb")?, get("Wmb")?]))();
        let row = |g: Option<u32>, e: Option<u32>, d: Option<u32>, m: Option<u32>| {
            Some(Row {
                w: [g?, e?, d?, m?],
                b: dir?,
            })
        };
        BandwidthWeights {
            scale: u32::try_from(scale.max(1)).unwrap_or(DEFAULT_WEIGHT_SCALE),
            // C tor: an Exit-only relay never weighs anything in the guard position.
            guard: row(get("Wgg"), Some(0), get("Wgd"), get("Wgm")),
            middle: row(get("Wmg"), get("Wme"), get("Wmd"), get("Wmm")),
            exit: row(get("Weg"), get("Wee"), get("Wed"), get("Wem")),
        }
    }

    /// Whether `position` uses the consensus weights (rather than plain bandwidth).
    pub fn is_weighted(&self, position: Position) -> bool {
        self.row(position).is_some()
    }

    fn row(&self, position: Position) -> Option<&Row> {
        match position {
            Position::Guard => self.guard.as_ref(),
            Position::Middle => self.middle.as_ref(),
            Position::Exit => self.exit.as_ref(),
        }
    }

    /// The weight of a relay with `flags` and consensus bandwidth `bandwidth` in `position`,
    /// in units of `1 / scale²`: only ratios between weights are meaningful.
    pub fn weight(&self, position: Position, flags: RelayFlags, bandwidth: u32) -> u128 {
        let scale = u128::from(self.scale);
        let factor = match self.row(position) {
            None => scale * scale,
            Some(row) => {
                let is_guard = flags.contains(RelayFlags::GUARD);
                let is_exit =
                    flags.contains(RelayFlags::EXIT) && !flags.contains(RelayFlags::BAD_EXIT);
                let class = match (is_guard, is_exit) {
                    (true, false) => 0,
                    (false, true) => 1,
                    (true, true) => 2,
                    (false, false) => 3,
                };
                let w = row.w.get(class).copied().unwrap_or(0);
                let b = if flags.contains(RelayFlags::V2DIR) {
                    row.b.get(class).copied().unwrap_or(0)
                } else {
                    self.scale
                };
                u128::from(w) * u128::from(b)
            }
        };
        factor * u128::from(bandwidth)
    }
}

/// A uniform random value in `0..bound` (0 if `bound` is 0), by masked rejection sampling.
pub(crate) fn uniform_u128<R: CryptoRng + ?Sized>(rng: &mut R, bound: u128) -> u128 {
    if bound <= 1 {
        return 0;
    }
    let max = bound - 1;
    let mask = u128::MAX >> max.leading_zeros();
    let mut v = 0;
    // Each try succeeds with probability > 1/2; the cap only guards against a broken RNG.
    for _ in 0..128 {
        v = ((u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64())) & mask;
        if v < bound {
            return v;
        }
    }
    v % bound
}

/// A uniform random index in `0..n` (0 if `n` is 0).
pub(crate) fn uniform_index<R: CryptoRng + ?Sized>(rng: &mut R, n: usize) -> usize {
    // v < n, so it fits.
    usize::try_from(uniform_u128(rng, n as u128)).unwrap_or(0)
}

/// Choose one of `items` with probability proportional to `weight`, or uniformly if every
/// weight is 0. `None` if `items` is empty.
pub(crate) fn choose_weighted<'a, T, R, F>(rng: &mut R, items: &[&'a T], weight: F) -> Option<&'a T>
where
    R: CryptoRng + ?Sized,
    F: Fn(&T) -> u128,
{
    let weights: Vec<u128> = items.iter().map(|t| weight(t)).collect();
    let total = weights.iter().fold(0u128, |a, &w| a.saturating_add(w));
    if total == 0 {
        return items.get(uniform_index(rng, items.len())).copied();
    }
    let mut r = uniform_u128(rng, total);
    for (item, w) in items.iter().zip(&weights) {
        if r < *w {
            return Some(item);
        }
        r -= w;
    }
    items.last().copied()
}

#[cfg(test)]
mod test {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::testing::seeded_rng;

    const CONSENSUS: &str = include_str!("../dir/testdata/consensus-microdesc.txt");

    fn flags(list: &[RelayFlags]) -> RelayFlags {
        list.iter().fold(RelayFlags::default(), |a, &f| a.union(f))
    }

    #[test]
    fn fixture_weights() {
        let c = Consensus::parse(CONSENSUS).unwrap();
        let w = BandwidthWeights::from_consensus(&c);
        // Wgg=5295 Wgd=0 Wmg=4705 Wmd=0 Wme=0 Wmm=10000 Wee=Wed=Weg=Wem=10000, all *b 10000.
        let g = RelayFlags::GUARD;
        let e = RelayFlags::EXIT;
        let d = flags(&[g, e]);
        let m = RelayFlags::default();
        let s = 10_000u128;
        assert!(w.is_weighted(Position::Guard));
        assert_eq!(w.weight(Position::Guard, g, 7), 5295 * s * 7);
        assert_eq!(w.weight(Position::Guard, d, 7), 0);
        assert_eq!(w.weight(Position::Guard, e, 7), 0);
        assert_eq!(w.weight(Position::Guard, m, 7), 5295 * s * 7);
        assert_eq!(w.weight(Position::Middle, g, 7), 4705 * s * 7);
        assert_eq!(w.weight(Position::Middle, e, 7), 0);
        assert_eq!(w.weight(Position::Middle, d, 7), 0);
        assert_eq!(w.weight(Position::Middle, m, 7), 10_000 * s * 7);
        for f in [g, e, d, m] {
            assert_eq!(w.weight(Position::Exit, f, 7), 10_000 * s * 7);
        }
        // BadExit makes a Guard+Exit relay a plain guard.
        let bad = flags(&[g, e, RelayFlags::BAD_EXIT]);
        assert_eq!(w.weight(Position::Middle, bad, 7), 4705 * s * 7);
        // V2Dir multiplies by the *b weights (10000 here, i.e. 1).
        let gdir = flags(&[g, RelayFlags::V2DIR]);
        assert_eq!(w.weight(Position::Guard, gdir, 7), 5295 * s * 7);
    }

    #[test]
    fn dir_multipliers_and_scale() {
        let mut map: BTreeMap<String, i32> = [
            "Wgg", "Wgd", "Wgm", "Wmg", "Wme", "Wmd", "Wmm", "Weg", "Wee", "Wed", "Wem", "Wgb",
            "Web", "Wdb", "Wmb",
        ]
        .iter()
        .map(|k| ((*k).to_owned(), 100))
        .collect();
        map.insert("Wgb".into(), 50);
        map.insert("Wmm".into(), 300);
        let w = BandwidthWeights::from_map(&map, 100);
        let g = flags(&[RelayFlags::GUARD, RelayFlags::V2DIR]);
        assert_eq!(w.weight(Position::Guard, g, 1), 100 * 50);
        assert_eq!(w.weight(Position::Guard, RelayFlags::GUARD, 1), 100 * 100);
        assert_eq!(
            w.weight(Position::Middle, RelayFlags::default(), 2),
            300 * 100 * 2
        );
    }

    #[test]
    fn missing_or_negative_weights_mean_plain_bandwidth() {
        let plain = BandwidthWeights::plain();
        for p in [Position::Guard, Position::Middle, Position::Exit] {
            assert!(!plain.is_weighted(p));
            assert_eq!(
                plain.weight(p, RelayFlags::GUARD, 3),
                3 * plain.weight(p, RelayFlags::EXIT, 1)
            );
        }
        let c = Consensus::parse(CONSENSUS).unwrap();
        let mut map = c.bandwidth_weights().clone();
        map.remove("Wee");
        map.insert("Wmg".into(), -1);
        let w = BandwidthWeights::from_map(&map, 10_000);
        assert!(w.is_weighted(Position::Guard));
        assert!(!w.is_weighted(Position::Middle));
        assert!(!w.is_weighted(Position::Exit));
        map.remove("Wmb");
        let w = BandwidthWeights::from_map(&map, 10_000);
        assert!(!w.is_weighted(Position::Guard));
        let none = BandwidthWeights::from_map(&BTreeMap::new(), 0);
        for p in [Position::Guard, Position::Middle, Position::Exit] {
            assert!(!none.is_weighted(p));
        }
    }

    #[test]
    fn uniform_is_in_range_and_covers() {
        let mut rng = seeded_rng(7);
        assert_eq!(uniform_u128(&mut rng, 0), 0);
        assert_eq!(uniform_u128(&mut rng, 1), 0);
        let mut seen = [0u32; 5];
        for _ in 0..5000 {
            let v = uniform_index(&mut rng, 5);
            seen[v] += 1;
        }
        assert!(seen.iter().all(|&c| (850..1150).contains(&c)), "{seen:?}");
        let big = u128::MAX / 3 + 5;
        for _ in 0..100 {
            assert!(uniform_u128(&mut rng, big) < big);
        }
    }

    #[test]
    fn choose_weighted_zero_weights_is_uniform_and_zero_never_wins() {
        let mut rng = seeded_rng(8);
        let items = [&1u32, &2, &3];
        let empty: [&u32; 0] = [];
        assert_eq!(choose_weighted(&mut rng, &empty, |_| 1), None);
        let mut seen = [0u32; 4];
        for _ in 0..3000 {
            seen[*choose_weighted(&mut rng, &items, |_| 0).unwrap() as usize] += 1;
        }
        assert!(
            seen[1..].iter().all(|&c| (850..1150).contains(&c)),
            "{seen:?}"
        );
        for _ in 0..1000 {
            let v = choose_weighted(&mut rng, &items, |&x| u128::from(x != 2)).unwrap();
            assert_ne!(*v, 2);
        }
    }
}
