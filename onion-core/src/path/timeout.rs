//! Circuit build timeout (path-spec §2.4, simplified).
//!
//! The driver records how long circuits took to build ([`BuildTimeEstimator::record`]) and
//! which ones it gave up on ([`BuildTimeEstimator::record_timeout`]); the estimator answers how
//! long to wait for a circuit of a given length ([`BuildTimeEstimator::timeout_ms`]).
//!
//! Simplifications, all documented choices:
//!
//! - the timeout is the empirical `quantile_pct` quantile (nearest rank) of the recorded
//!   times, instead of the quantile of a Pareto fit (§2.4.3); like C tor's cap at the largest
//!   observed time, it never exceeds the largest sample;
//! - times of circuits of any length are recorded, normalised to three hops with §2.4.3's
//!   `Actions(N) = N(N+1)/2` (a circuit of N hops costs N(N+1)/2 one-hop round trips), and the
//!   timeout for N hops is the three-hop one scaled back by `Actions(N) / Actions(3)`; the same
//!   holds for the time to complete hop k of a longer circuit;
//! - before [`TimeoutConfig::min_samples`] samples, the timeout is
//!   [`TimeoutConfig::initial_ms`] (`cbtinitialtimeout`);
//! - the result is clamped to `floor_ms..=ceiling_ms`;
//! - at most [`TimeoutConfig::max_history`] samples are kept (the oldest go first), and if
//!   `max_recent_timeouts` of the last `recent_count` circuits timed out, the history is
//!   discarded (§2.4.5: the network changed).

use std::collections::VecDeque;

use crate::dir::Consensus;

/// `Actions(3)`.
const ACTIONS_3: u64 = 6;

/// `Actions(n) = n(n+1)/2`, at least 1.
fn actions(hops: usize) -> u64 {
    let n = hops.clamp(1, 1 << 16) as u64;
    n * (n + 1) / 2
}

/// Parameters of the [`BuildTimeEstimator`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeoutConfig {
    /// Samples needed before the estimate replaces `initial_ms` (`cbtmincircs`; C tor uses
    /// 100, a short browser session builds fewer circuits).
    pub min_samples: usize,
    /// The quantile used, in percent, 10 to 99 (`cbtquantile`).
    pub quantile_pct: u8,
    /// Smallest timeout returned, in milliseconds.
    pub floor_ms: u32,
    /// Largest timeout returned, in milliseconds.
    pub ceiling_ms: u32,
    /// Timeout before enough samples, in milliseconds (`cbtinitialtimeout`).
    pub initial_ms: u32,
    /// Most samples kept (path-spec §2.4.2: 1000).
    pub max_history: usize,
    /// Recent outcomes considered for network change detection (`cbtrecentcount`).
    pub recent_count: usize,
    /// Timeouts among them that discard the history (`cbtmaxtimeouts`).
    pub max_recent_timeouts: usize,
}

impl Default for TimeoutConfig {
    fn default() -> Self {
        TimeoutConfig {
            min_samples: 20,
            quantile_pct: 80,
            floor_ms: 1_500,
            ceiling_ms: 60_000,
            initial_ms: 60_000,
            max_history: 1_000,
            recent_count: 20,
            max_recent_timeouts: 18,
        }
    }
}

impl TimeoutConfig {
    /// The defaults, overridden by the consensus parameters `cbtmincircs`, `cbtquantile`,
    /// `cbtmintimeout` (the floor), `cbtinitialtimeout`, `cbtrecentcount` and
    /// `cbtmaxtimeouts`, clamped to the ranges of path-spec §2.4.6.
    pub fn from_consensus(consensus: &Consensus) -> Self {
        let d = Self::default();
        let p = |name, default: u64, min: i32, max: i32| {
            let default = i32::try_from(default).unwrap_or(i32::MAX);
            u32::try_from(consensus.param(name, default, min, max)).unwrap_or(0)
        };
        let floor_ms = p("cbtmintimeout", d.floor_ms.into(), 10, i32::MAX);
        let initial_ms = p(
            "cbtinitialtimeout",
            d.initial_ms.into(),
            i32::try_from(floor_ms).unwrap_or(i32::MAX),
            i32::MAX,
        );
        TimeoutConfig {
            min_samples: p("cbtmincircs", d.min_samples as u64, 1, 10_000) as usize,
            quantile_pct: u8::try_from(p("cbtquantile", d.quantile_pct.into(), 10, 99))
                .unwrap_or(d.quantile_pct),
            floor_ms,
            ceiling_ms: d.ceiling_ms.max(initial_ms),
            initial_ms,
            recent_count: p("cbtrecentcount", d.recent_count as u64, 3, 1_000) as usize,
            max_recent_timeouts: p("cbtmaxtimeouts", d.max_recent_timeouts as u64, 3, 10_000)
                as usize,
            ..d
        }
    }
}

/// Learns the circuit build timeout from observed build times. See the
/// [module documentation](self).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildTimeEstimator {
    config: TimeoutConfig,
    /// Build times normalised to three hops, oldest first.
    samples: VecDeque<u32>,
    /// Recent outcomes, `true` for a timeout, oldest first.
    recent: VecDeque<bool>,
}

impl Default for BuildTimeEstimator {
    fn default() -> Self {
        Self::new(TimeoutConfig::default())
    }
}

impl BuildTimeEstimator {
    /// An estimator without samples.
    pub fn new(config: TimeoutConfig) -> Self {
        BuildTimeEstimator {
            config,
            samples: VecDeque::new(),
            recent: VecDeque::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &TimeoutConfig {
        &self.config
    }

    /// Record that a circuit of `hops` hops was built (or that hop `hops` of a longer one
    /// completed) `elapsed_ms` after the build started. `hops` 0 is ignored.
    pub fn record(&mut self, hops: usize, elapsed_ms: u32) {
        if hops == 0 {
            return;
        }
        let normalised = u64::from(elapsed_ms) * ACTIONS_3 / actions(hops);
        self.push_sample(u32::try_from(normalised).unwrap_or(u32::MAX));
        self.push_outcome(false);
    }

    /// Record that a circuit was abandoned because it took longer than the timeout. If too
    /// many recent circuits timed out, the history is discarded and the timeout goes back to
    /// the initial one.
    pub fn record_timeout(&mut self) {
        self.push_outcome(true);
        let timeouts = self.recent.iter().filter(|&&t| t).count();
        if timeouts >= self.config.max_recent_timeouts {
            self.samples.clear();
            self.recent.clear();
        }
    }

    /// Forget everything (e.g. the network changed).
    pub fn reset(&mut self) {
        self.samples.clear();
        self.recent.clear();
    }

    fn push_sample(&mut self, ms: u32) {
        self.samples.push_back(ms);
        while self.samples.len() > self.config.max_history.max(1) {
            self.samples.pop_front();
        }
    }

    fn push_outcome(&mut self, timed_out: bool) {
        self.recent.push_back(timed_out);
        while self.recent.len() > self.config.recent_count.max(1) {
            self.recent.pop_front();
        }
    }

    /// Number of samples kept.
    pub fn sample_count(&self) -> usize {
        self.samples.len()
    }

    /// The samples (normalised to three hops, milliseconds), oldest first, for persistence.
    pub fn samples(&self) -> impl Iterator<Item = u32> + '_ {
        self.samples.iter().copied()
    }

    /// Add persisted samples (already normalised to three hops), oldest first.
    pub fn restore<I: IntoIterator<Item = u32>>(&mut self, samples: I) {
        for s in samples {
            self.push_sample(s);
        }
    }

    /// The estimated three-hop build time at the configured quantile, if there are enough
    /// samples (not clamped).
    pub fn estimate_ms(&self) -> Option<u32> {
        let n = self.samples.len();
        if n == 0 || n < self.config.min_samples {
            return None;
        }
        let mut sorted: Vec<u32> = self.samples.iter().copied().collect();
        sorted.sort_unstable();
        let pct = u64::from(self.config.quantile_pct.clamp(10, 99));
        // Nearest rank: the smallest value with at least pct% of the samples at or below it.
        let rank = (pct * n as u64).div_ceil(100).max(1);
        let index = usize::try_from(rank - 1).unwrap_or(0);
        sorted.get(index).copied()
    }

    /// How long to wait for a circuit of `hops` hops (or for hop `hops` of a longer one to
    /// complete), in milliseconds.
    pub fn timeout_ms(&self, hops: usize) -> u32 {
        let c = &self.config;
        let ceiling = c.ceiling_ms.max(c.floor_ms);
        let raw = match self.estimate_ms() {
            None => u64::from(c.initial_ms),
            Some(base) => u64::from(base) * actions(hops) / ACTIONS_3,
        };
        u32::try_from(raw)
            .unwrap_or(u32::MAX)
            .clamp(c.floor_ms, ceiling)
    }
}

#[cfg(test)]
mod test {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn initial_timeout_before_enough_samples() {
        let mut e = BuildTimeEstimator::default();
        for hops in 1..=5 {
            assert_eq!(e.timeout_ms(hops), 60_000);
        }
        for _ in 0..19 {
            e.record(3, 500);
        }
        assert_eq!(e.estimate_ms(), None);
        assert_eq!(e.timeout_ms(3), 60_000);
        e.record(3, 500);
        assert_eq!(e.estimate_ms(), Some(500));
        // Clamped to the floor.
        assert_eq!(e.timeout_ms(3), 1_500);
    }

    #[test]
    fn quantile_and_scaling() {
        let mut e = BuildTimeEstimator::default();
        // 100 ms, 200 ms, ..., 10 s, in a shuffled order.
        for i in 0..100u32 {
            e.record(3, ((i * 37) % 100 + 1) * 100);
        }
        // Nearest rank: the 80th smallest of 100.
        assert_eq!(e.estimate_ms(), Some(8_000));
        assert_eq!(e.timeout_ms(3), 8_000);
        // Actions(1)/Actions(3) = 1/6, floored; Actions(4)/Actions(3) = 10/6; 15/6.
        assert_eq!(e.timeout_ms(1), 1_500);
        assert_eq!(e.timeout_ms(2), 4_000);
        assert_eq!(e.timeout_ms(4), 13_333);
        assert_eq!(e.timeout_ms(5), 20_000);
        let e90 = BuildTimeEstimator {
            config: TimeoutConfig {
                quantile_pct: 90,
                ..TimeoutConfig::default()
            },
            ..e.clone()
        };
        assert_eq!(e90.timeout_ms(3), 9_000);
        // The ceiling.
        let mut slow = BuildTimeEstimator::default();
        for _ in 0..20 {
            slow.record(3, 200_000);
        }
        assert_eq!(slow.timeout_ms(3), 60_000);
    }

    #[test]
    fn other_lengths_are_normalised_to_three_hops() {
        let mut e = BuildTimeEstimator::default();
        e.record(1, 1_000);
        e.record(5, 15_000);
        e.record(0, 1);
        assert_eq!(e.samples().collect::<Vec<_>>(), [6_000, 6_000]);
        e.record(2, u32::MAX);
        assert_eq!(e.samples().last(), Some(u32::MAX));
    }

    #[test]
    fn history_is_bounded() {
        let mut e = BuildTimeEstimator::default();
        for i in 0..1_500 {
            e.record(3, i);
        }
        assert_eq!(e.sample_count(), 1_000);
        assert_eq!(e.samples().next(), Some(500));
        let mut r = BuildTimeEstimator::default();
        r.restore(e.samples());
        assert_eq!(
            r.samples().collect::<Vec<_>>(),
            e.samples().collect::<Vec<_>>()
        );
        r.reset();
        assert_eq!(r.sample_count(), 0);
    }

    #[test]
    fn too_many_timeouts_discard_the_history() {
        let mut e = BuildTimeEstimator::default();
        for _ in 0..50 {
            e.record(3, 2_000);
        }
        // 17 timeouts among the last 20: kept.
        for _ in 0..17 {
            e.record_timeout();
        }
        assert_eq!(e.sample_count(), 50);
        e.record(3, 2_000);
        e.record(3, 2_000);
        e.record(3, 2_000);
        // The window is now 17 timeouts then 3 builds; a timeout pushes the oldest out.
        e.record_timeout();
        assert_eq!(e.sample_count(), 53);
        // A fresh window: 2 builds, 17 timeouts, then the 18th.
        let mut e = BuildTimeEstimator::default();
        for _ in 0..30 {
            e.record(3, 2_000);
        }
        for _ in 0..17 {
            e.record_timeout();
        }
        assert_eq!(e.sample_count(), 30);
        e.record_timeout();
        assert_eq!(e.sample_count(), 0);
        assert_eq!(e.timeout_ms(3), 60_000);
    }

    #[test]
    fn consensus_parameters() {
        let text = include_str!("../dir/testdata/consensus-microdesc.txt");
        let c = Consensus::parse(text).unwrap();
        assert_eq!(TimeoutConfig::from_consensus(&c), TimeoutConfig::default());
        let with = text.replacen(
            "dir-source ",
            "params cbtinitialtimeout=5 cbtmincircs=0 cbtmintimeout=900 cbtquantile=100 cbtrecentcount=7\ndir-source ",
            1,
        );
        let c = Consensus::parse(&with).unwrap();
        let t = TimeoutConfig::from_consensus(&c);
        assert_eq!(t.floor_ms, 900);
        assert_eq!(t.initial_ms, 900, "at least cbtmintimeout");
        assert_eq!(t.min_samples, 1);
        assert_eq!(t.quantile_pct, 99);
        assert_eq!(t.recent_count, 7);
        assert_eq!(t.max_recent_timeouts, 18);
        assert_eq!(t.ceiling_ms, 60_000);
    }

    proptest! {
        #[test]
        fn timeout_within_bounds_and_monotonic_in_hops(
            samples in prop::collection::vec((1usize..=5, 0u32..100_000), 0..200),
            pct in 0u8..=255,
        ) {
            let mut e = BuildTimeEstimator::new(TimeoutConfig {
                quantile_pct: pct,
                ..TimeoutConfig::default()
            });
            for (h, ms) in samples {
                e.record(h, ms);
            }
            let mut prev = 0;
            for hops in 1..=5 {
                let t = e.timeout_ms(hops);
                prop_assert!((1_500..=60_000).contains(&t));
                prop_assert!(t >= prev);
                prev = t;
            }
            if let Some(est) = e.estimate_ms() {
                prop_assert!(e.samples().any(|s| s == est));
                // Nearest rank: at least pct% at or below, fewer than pct% strictly below.
                let n = e.sample_count() as u64;
                let p = u64::from(pct.clamp(10, 99));
                let le = e.samples().filter(|&s| s <= est).count() as u64;
                let lt = e.samples().filter(|&s| s < est).count() as u64;
                prop_assert!(le * 100 >= p * n);
                prop_assert!(lt * 100 < p * n);
            }
        }
    }
}
