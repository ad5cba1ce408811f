//! A small persistent guard set (guard-spec, simplified).
//!
//! What is kept from guard-spec:
//!
//! - guards are sampled by guard-position bandwidth weight among relays with the
//!   [guard flags](super::guard_flags), and kept in sample order; the *primary* guards are the
//!   first `n` that are listed in the current relay set (guard-spec §4.4, with `n` = 1 to
//!   [`MAX_GUARDS`], default [`DEFAULT_GUARDS`]);
//! - a guard that leaves the consensus (or loses the guard flags) is marked unlisted, and a
//!   listed one is sampled in its place; it is forgotten after
//!   [`REMOVE_UNLISTED_AFTER`] (20 days), and every guard after [`GUARD_LIFETIME`] (120 days)
//!   from a sampling date randomised into the past (guard-spec §4.1, A.2);
//! - a guard we failed to reach is retried on guard-spec's schedules
//!   (`PRIMARY_GUARDS_RETRY_SCHED`, `GUARDS_RETRY_SCHED`); reachability is not persisted.
//!
//! What is left out: confirmed guards, the filtered/usable sample distinctions, directory
//! guards, path bias, and waiting for better guards. [`GuardSet::select`] returns the first
//! reachable primary guard.
//!
//! The persistent form (`Display` / [`GuardSet::parse`]) is line based, in the
//! spirit of guard-spec §A.5, with times in seconds since the Unix epoch:
//!
//! ```text
//! guard-set n=3
//! guard rsa_id=<40 hex digits> added_at=<secs> [nickname=<name>] [unlisted_since=<secs>] [K=V ...]
//! ```
//!
//! Unknown `K=V` entries of a guard line are kept and written back.

use std::fmt;
use std::str::FromStr;

use rand_core::CryptoRng;
use thiserror::Error;

use super::relay::{RelayInfo, RelaySet};
use super::select::is_guard;
use super::weight::{Position, uniform_u128};
use crate::certs::RsaIdentity;

/// Default number of primary guards (guard-spec `N_PRIMARY_GUARDS`).
pub const DEFAULT_GUARDS: usize = 3;
/// Most primary guards.
pub const MAX_GUARDS: usize = 8;
/// Most guards kept, listed or not (guard-spec `MAX_SAMPLE_SIZE`).
pub const MAX_SAMPLED: usize = 60;
/// How long a guard is kept after it was sampled (guard-spec `GUARD_LIFETIME`): 120 days.
pub const GUARD_LIFETIME: u64 = 120 * DAY;
/// How long an unlisted guard is kept (guard-spec `REMOVE_UNLISTED_GUARDS_AFTER`): 20 days.
pub const REMOVE_UNLISTED_AFTER: u64 = 20 * DAY;

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

/// Longest persisted text accepted.
const MAX_TEXT: usize = 64 * 1024;
/// Most unknown `K=V` entries kept per guard.
const MAX_EXTRA: usize = 16;
/// Longest token accepted.
const MAX_TOKEN: usize = 256;

/// One sampled guard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardEntry {
    /// RSA identity.
    pub rsa_id: RsaIdentity,
    /// Nickname when sampled (informational).
    pub nickname: String,
    /// When it was sampled (randomised into the past), seconds since the epoch.
    pub added_at: u64,
    /// Since when it has not been listed as a usable guard; `None` if listed.
    pub unlisted_since: Option<u64>,
    /// Since when every connection attempt failed (not persisted).
    pub failing_since: Option<u64>,
    /// Not to be tried before this time (not persisted).
    pub retry_at: Option<u64>,
    /// Unknown `K=V` entries read from the persisted form, written back unchanged.
    pub extra: Vec<String>,
}

impl GuardEntry {
    fn new(relay: &RelayInfo, added_at: u64) -> Self {
        GuardEntry {
            rsa_id: relay.rsa_id,
            nickname: relay.nickname.clone(),
            added_at,
            unlisted_since: None,
            failing_since: None,
            retry_at: None,
            extra: Vec::new(),
        }
    }

    /// Whether it was listed as a usable guard at the last [`GuardSet::update`].
    pub fn is_listed(&self) -> bool {
        self.unlisted_since.is_none()
    }

    /// Whether it may be tried at `now`.
    pub fn is_reachable(&self, now: u64) -> bool {
        self.retry_at.is_none_or(|t| t <= now)
    }
}

/// Why a persisted guard set was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum GuardSetError {
    /// The text is longer than 64 KiB.
    #[error("guard set text too long")]
    TooLong,
    /// More than [`MAX_SAMPLED`] guards.
    #[error("more than {MAX_SAMPLED} guards")]
    TooManyGuards,
    /// The first line is not `guard-set n=N`.
    #[error("missing guard-set header")]
    MissingHeader,
    /// A line is malformed.
    #[error("line {line}: {what}")]
    BadLine {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        what: &'static str,
    },
}

/// The guards a client uses as first hops, persisted between runs. See the
/// [module documentation](self).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardSet {
    n: usize,
    guards: Vec<GuardEntry>,
}

impl Default for GuardSet {
    fn default() -> Self {
        Self::new(DEFAULT_GUARDS)
    }
}

impl GuardSet {
    /// An empty set that will keep `n` primary guards (clamped to `1..=MAX_GUARDS`).
    pub fn new(n: usize) -> Self {
        GuardSet {
            n: n.clamp(1, MAX_GUARDS),
            guards: Vec::new(),
        }
    }

    /// The number of primary guards kept.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Every guard, in sample order.
    pub fn guards(&self) -> &[GuardEntry] {
        &self.guards
    }

    /// The primary guards: the first `n` listed ones, in sample order.
    pub fn primary(&self) -> impl Iterator<Item = &GuardEntry> {
        self.guards.iter().filter(|g| g.is_listed()).take(self.n)
    }

    /// Bring the set up to date with a new relay set (a new consensus) at `now`: mark guards
    /// listed or unlisted, forget expired ones, and sample new guards until `n` are listed (or
    /// no candidate is left). Returns the number of guards added.
    pub fn update<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        relays: &RelaySet,
        now: u64,
    ) -> usize {
        for g in &mut self.guards {
            let listed = relays.get(&g.rsa_id).is_some_and(is_guard);
            match (listed, g.unlisted_since) {
                (true, _) => g.unlisted_since = None,
                (false, None) => g.unlisted_since = Some(now),
                (false, Some(_)) => {}
            }
        }
        self.guards.retain(|g| {
            let expired = g.added_at.saturating_add(GUARD_LIFETIME) <= now;
            let gone = g
                .unlisted_since
                .is_some_and(|t| t.saturating_add(REMOVE_UNLISTED_AFTER) <= now);
            !expired && !gone
        });
        let mut added = 0;
        while self.guards.iter().filter(|g| g.is_listed()).count() < self.n {
            let known = &self.guards;
            let Some(relay) = relays.choose(rng, Position::Guard, |r| {
                is_guard(r) && !known.iter().any(|g| g.rsa_id == r.rsa_id)
            }) else {
                break;
            };
            // RAND(now, GUARD_LIFETIME / 10), guard-spec A.2.
            let back = uniform_u128(rng, u128::from(GUARD_LIFETIME / 10));
            let back = u64::try_from(back).unwrap_or(0);
            self.guards
                .push(GuardEntry::new(relay, now.saturating_sub(back)));
            added += 1;
        }
        while self.guards.len() > MAX_SAMPLED {
            // Drop the oldest unlisted guard (there is one: at most n < MAX_SAMPLED are
            // listed).
            match self.guards.iter().position(|g| !g.is_listed()) {
                Some(i) => {
                    self.guards.remove(i);
                }
                None => break,
            }
        }
        added
    }

    /// The first primary guard reachable at `now`, as listed in `relays`. `None` if every
    /// primary guard is waiting for its retry time (see [`next_retry`](Self::next_retry)) or
    /// the set is empty.
    pub fn select<'a>(&self, relays: &'a RelaySet, now: u64) -> Option<&'a RelayInfo> {
        self.primary()
            .filter(|g| g.is_reachable(now))
            .find_map(|g| relays.get(&g.rsa_id))
    }

    /// The earliest time a primary guard that is waiting may be retried.
    pub fn next_retry(&self) -> Option<u64> {
        self.primary().filter_map(|g| g.retry_at).min()
    }

    /// Record that connecting to guard `id` failed at `now`; returns when it may be tried
    /// again (guard-spec §4.5 schedules), or `None` if `id` is not in the set.
    pub fn mark_unreachable(&mut self, id: &RsaIdentity, now: u64) -> Option<u64> {
        let primary = self.primary().any(|g| &g.rsa_id == id);
        let g = self.guards.iter_mut().find(|g| &g.rsa_id == id)?;
        let since = *g.failing_since.get_or_insert(now);
        let retry = now.saturating_add(retry_delay(now.saturating_sub(since), primary));
        g.retry_at = Some(retry);
        Some(retry)
    }

    /// Record that guard `id` was reached: it is no longer failing.
    pub fn mark_reachable(&mut self, id: &RsaIdentity) {
        if let Some(g) = self.guards.iter_mut().find(|g| &g.rsa_id == id) {
            g.failing_since = None;
            g.retry_at = None;
        }
    }

    /// Forget every retry time (guard-spec: when the network comes back, retry all).
    pub fn mark_all_retryable(&mut self) {
        for g in &mut self.guards {
            g.retry_at = None;
        }
    }

    /// Parse the persisted form (see the [module documentation](self)). Reachability starts
    /// fresh.
    pub fn parse(text: &str) -> Result<Self, GuardSetError> {
        if text.len() > MAX_TEXT {
            return Err(GuardSetError::TooLong);
        }
        let mut lines = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim()))
            .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'));
        let (hline, header) = lines.next().ok_or(GuardSetError::MissingHeader)?;
        let mut words = header.split_ascii_whitespace();
        if words.next() != Some("guard-set") {
            return Err(GuardSetError::MissingHeader);
        }
        let bad = |line, what| GuardSetError::BadLine { line, what };
        let mut n = None;
        for w in words {
            if let Some(v) = w.strip_prefix("n=") {
                let v: usize = parse_num(v).ok_or(bad(hline, "bad n"))?;
                if !(1..=MAX_GUARDS).contains(&v) || n.replace(v).is_some() {
                    return Err(bad(hline, "bad n"));
                }
            }
        }
        let mut set = GuardSet::new(n.ok_or(bad(hline, "missing n"))?);
        for (line, l) in lines {
            if set.guards.len() >= MAX_SAMPLED {
                return Err(GuardSetError::TooManyGuards);
            }
            let g = parse_guard(l).map_err(|what| bad(line, what))?;
            if set.guards.iter().any(|o| o.rsa_id == g.rsa_id) {
                return Err(bad(line, "duplicate guard"));
            }
            set.guards.push(g);
        }
        Ok(set)
    }
}

/// A decimal number without sign or leading `+`.
fn parse_num<T: FromStr>(s: &str) -> Option<T> {
    (!s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

fn parse_guard(l: &str) -> Result<GuardEntry, &'static str> {
    let mut words = l.split_ascii_whitespace();
    if words.next() != Some("guard") {
        return Err("not a guard line");
    }
    let (mut rsa_id, mut added_at, mut nickname, mut unlisted_since) = (None, None, None, None);
    let mut extra = Vec::new();
    for w in words {
        if w.len() > MAX_TOKEN {
            return Err("entry too long");
        }
        let (k, v) = w.split_once('=').ok_or("entry without '='")?;
        let dup = match k {
            "rsa_id" => rsa_id
                .replace(RsaIdentity::from_hex(v).ok_or("bad rsa_id")?)
                .is_some(),
            "added_at" => added_at
                .replace(parse_num(v).ok_or("bad added_at")?)
                .is_some(),
            "nickname" => nickname.replace(v.to_owned()).is_some(),
            "unlisted_since" => unlisted_since
                .replace(parse_num(v).ok_or("bad unlisted_since")?)
                .is_some(),
            "" => return Err("empty key"),
            _ => {
                if extra.len() >= MAX_EXTRA {
                    return Err("too many unknown entries");
                }
                extra.push(w.to_owned());
                false
            }
        };
        if dup {
            return Err("duplicate entry");
        }
    }
    Ok(GuardEntry {
        rsa_id: rsa_id.ok_or("missing rsa_id")?,
        nickname: nickname.unwrap_or_default(),
        added_at: added_at.ok_or("missing added_at")?,
        unlisted_since,
        failing_since: None,
        retry_at: None,
        extra,
    })
}

/// Whether `s` can be written as a value: non-empty, no whitespace.
fn is_token(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_TOKEN && !s.chars().any(char::is_whitespace)
}

/// The persisted form.
impl fmt::Display for GuardSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "guard-set n={}", self.n)?;
        for g in &self.guards {
            write!(f, "guard rsa_id={} added_at={}", g.rsa_id, g.added_at)?;
            if is_token(&g.nickname) {
                write!(f, " nickname={}", g.nickname)?;
            }
            if let Some(t) = g.unlisted_since {
                write!(f, " unlisted_since={t}")?;
            }
            for e in g.extra.iter().take(MAX_EXTRA) {
                let known = ["rsa_id=", "added_at=", "nickname=", "unlisted_since="];
                if is_token(e)
                    && e.split_once('=').is_some_and(|(k, _)| !k.is_empty())
                    && !known.iter().any(|k| e.starts_with(k))
                {
                    write!(f, " {e}")?;
                }
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

/// [`GuardSet::parse`].
impl FromStr for GuardSet {
    type Err = GuardSetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// How long to wait before retrying a guard that has been failing for `failing_for` seconds
/// (guard-spec A.1 `PRIMARY_GUARDS_RETRY_SCHED` and `GUARDS_RETRY_SCHED`).
fn retry_delay(failing_for: u64, primary: bool) -> u64 {
    let step = if failing_for < 6 * HOUR {
        0
    } else if failing_for < (6 + 90) * HOUR {
        1
    } else if failing_for < (6 + 90) * HOUR + 3 * DAY {
        2
    } else {
        3
    };
    let (p, o) = match step {
        0 => (10 * MINUTE, HOUR),
        1 => (90 * MINUTE, 4 * HOUR),
        2 => (4 * HOUR, 18 * HOUR),
        _ => (9 * HOUR, 36 * HOUR),
    };
    if primary { p } else { o }
}

#[cfg(test)]
mod test {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;
    use crate::path::BandwidthWeights;
    use crate::path::testutil::{fixture_set, synthetic};
    use crate::testing::seeded_rng;

    const NOW: u64 = 1_800_000_000;

    fn nicks<'a>(it: impl Iterator<Item = &'a GuardEntry>) -> BTreeSet<&'a str> {
        it.map(|g| g.nickname.as_str()).collect()
    }

    #[test]
    fn samples_by_weight_on_the_fixture() {
        // Guard weights: auth1 5, middle0 3, auth2 8; auth0 (bandwidth 0) and the
        // Guard+Exit relays (Wgd=0) weigh nothing, so the first three are always these.
        let set = fixture_set();
        for seed in 0..10 {
            let mut g = GuardSet::new(3);
            assert_eq!(g.update(&mut seeded_rng(seed), &set, NOW), 3);
            assert_eq!(
                nicks(g.primary()),
                ["auth1", "auth2", "middle0"].into_iter().collect()
            );
            for e in g.guards() {
                assert!(e.added_at <= NOW && e.added_at >= NOW - GUARD_LIFETIME / 10);
            }
            // Nothing to do on the same consensus.
            assert_eq!(g.update(&mut seeded_rng(seed), &set, NOW + 1), 0);
        }
        let mut one = GuardSet::new(0);
        assert_eq!(one.n(), 1);
        assert_eq!(one.update(&mut seeded_rng(1), &set, NOW), 1);
        assert_eq!(GuardSet::new(100).n(), MAX_GUARDS);
        // More guards wanted than the network has: all six, then stop.
        let mut all = GuardSet::new(8);
        assert_eq!(all.update(&mut seeded_rng(1), &set, NOW), 6);
    }

    #[test]
    fn select_and_retry() {
        let set = fixture_set();
        let mut g = GuardSet::new(3);
        g.update(&mut seeded_rng(2), &set, NOW);
        let order: Vec<RsaIdentity> = g.primary().map(|e| e.rsa_id).collect();
        assert_eq!(g.select(&set, NOW).map(|r| r.rsa_id), Some(order[0]));
        assert_eq!(g.mark_unreachable(&order[0], NOW), Some(NOW + 10 * MINUTE));
        assert_eq!(g.select(&set, NOW + 1).map(|r| r.rsa_id), Some(order[1]));
        assert_eq!(g.next_retry(), Some(NOW + 10 * MINUTE));
        assert_eq!(
            g.select(&set, NOW + 10 * MINUTE).map(|r| r.rsa_id),
            Some(order[0])
        );
        g.mark_unreachable(&order[1], NOW);
        g.mark_unreachable(&order[2], NOW);
        assert_eq!(g.select(&set, NOW + 1), None);
        // Failing for 7 hours: the primary schedule's second step.
        assert_eq!(
            g.mark_unreachable(&order[0], NOW + 7 * HOUR),
            Some(NOW + 7 * HOUR + 90 * MINUTE)
        );
        g.mark_reachable(&order[0]);
        assert!(
            g.guards()
                .iter()
                .any(|e| e.rsa_id == order[0] && e.failing_since.is_none())
        );
        assert_eq!(g.select(&set, NOW + 1).map(|r| r.rsa_id), Some(order[0]));
        g.mark_all_retryable();
        assert_eq!(g.next_retry(), None);
        assert_eq!(
            g.mark_unreachable(&RsaIdentity::from_bytes([9; 20]), NOW),
            None
        );
    }

    #[test]
    fn retry_schedules() {
        assert_eq!(retry_delay(0, true), 10 * MINUTE);
        assert_eq!(retry_delay(0, false), HOUR);
        assert_eq!(retry_delay(6 * HOUR - 1, true), 10 * MINUTE);
        assert_eq!(retry_delay(6 * HOUR, true), 90 * MINUTE);
        assert_eq!(retry_delay(6 * HOUR, false), 4 * HOUR);
        assert_eq!(retry_delay(96 * HOUR, true), 4 * HOUR);
        assert_eq!(retry_delay(96 * HOUR, false), 18 * HOUR);
        assert_eq!(retry_delay(96 * HOUR + 3 * DAY, true), 9 * HOUR);
        assert_eq!(retry_delay(u64::MAX, false), 36 * HOUR);
    }

    #[test]
    fn vanished_guards_are_replaced_then_forgotten() {
        let set = fixture_set();
        let mut g = GuardSet::new(3);
        g.update(&mut seeded_rng(3), &set, NOW);
        let gone = g.primary().next().unwrap().rsa_id;
        let without: Vec<RelayInfo> = set
            .relays()
            .iter()
            .filter(|r| r.rsa_id != gone)
            .cloned()
            .collect();
        let smaller = RelaySet::new(without, set.weights().clone());
        assert_eq!(g.update(&mut seeded_rng(4), &smaller, NOW + 10), 1);
        assert_eq!(g.guards().len(), 4);
        assert_eq!(g.primary().count(), 3);
        assert!(g.primary().all(|e| e.rsa_id != gone));
        let entry = g.guards().iter().find(|e| e.rsa_id == gone).unwrap();
        assert_eq!(entry.unlisted_since, Some(NOW + 10));
        assert!(
            g.select(&smaller, NOW + 10)
                .is_some_and(|r| r.rsa_id != gone)
        );
        // It comes back within 20 days: primary again, first in sample order.
        let mut back = g.clone();
        assert_eq!(back.update(&mut seeded_rng(5), &set, NOW + DAY), 0);
        assert_eq!(back.primary().next().map(|e| e.rsa_id), Some(gone));
        assert_eq!(back.guards().len(), 4);
        // Unlisted for 20 days: forgotten.
        g.update(
            &mut seeded_rng(5),
            &smaller,
            NOW + 10 + REMOVE_UNLISTED_AFTER - 1,
        );
        assert_eq!(g.guards().len(), 4);
        g.update(
            &mut seeded_rng(5),
            &smaller,
            NOW + 10 + REMOVE_UNLISTED_AFTER,
        );
        assert_eq!(g.guards().len(), 3);
        assert!(g.guards().iter().all(|e| e.rsa_id != gone));
        // Losing the Guard flag counts as vanishing.
        let demoted: Vec<RelayInfo> = set
            .relays()
            .iter()
            .map(|r| RelayInfo {
                flags: if g.primary().next().map(|e| e.rsa_id) == Some(r.rsa_id) {
                    crate::dir::RelayFlags::RUNNING.union(crate::dir::RelayFlags::VALID)
                } else {
                    r.flags
                },
                ..r.clone()
            })
            .collect();
        let demoted = RelaySet::new(demoted, set.weights().clone());
        let first = g.primary().next().unwrap().rsa_id;
        g.update(&mut seeded_rng(6), &demoted, NOW + 30 * DAY);
        assert!(g.primary().all(|e| e.rsa_id != first));
    }

    #[test]
    fn guards_expire_after_their_lifetime() {
        let set = fixture_set();
        let mut g = GuardSet::new(1);
        g.update(&mut seeded_rng(7), &set, NOW);
        let first = g.guards()[0].clone();
        g.update(
            &mut seeded_rng(8),
            &set,
            first.added_at + GUARD_LIFETIME - 1,
        );
        assert_eq!(g.guards(), std::slice::from_ref(&first));
        g.update(&mut seeded_rng(8), &set, first.added_at + GUARD_LIFETIME);
        assert_eq!(g.guards().len(), 1);
        assert!(g.guards()[0].added_at > first.added_at);
    }

    #[test]
    fn sample_is_bounded() {
        // Every consensus brings entirely new relays: old guards pile up as unlisted.
        let mut g = GuardSet::new(MAX_GUARDS);
        for round in 0..10u32 {
            let relays: Vec<RelayInfo> = synthetic(40 * (round + 1), BandwidthWeights::plain())
                .relays()
                .iter()
                .skip(40 * round as usize)
                .cloned()
                .collect();
            let set = RelaySet::new(relays, BandwidthWeights::plain());
            g.update(
                &mut seeded_rng(u64::from(round)),
                &set,
                NOW + u64::from(round),
            );
            assert!(g.guards().len() <= MAX_SAMPLED);
            assert_eq!(g.primary().count(), MAX_GUARDS);
        }
        assert_eq!(g.guards().len(), MAX_SAMPLED);
    }

    #[test]
    fn persistence_round_trip() {
        let set = fixture_set();
        let mut g = GuardSet::new(2);
        g.update(&mut seeded_rng(9), &set, NOW);
        g.guards[1].unlisted_since = Some(NOW - 5);
        g.guards[0]
            .extra
            .push("confirmed_on=2016-11-29T19:39:31".into());
        g.mark_unreachable(&g.guards[0].rsa_id.clone(), NOW);
        let text = g.to_string();
        assert!(text.starts_with("guard-set n=2\nguard rsa_id="), "{text}");
        let parsed: GuardSet = text.parse().unwrap();
        // Reachability is not persisted.
        let mut want = g.clone();
        want.mark_reachable(&want.guards[0].rsa_id.clone());
        assert_eq!(parsed, want);
        assert_eq!(parsed.to_string(), text);
        // Comments, blank lines, unknown header words, any order of entries.
        let id = "0123456789ABCDEF0123456789ABCDEF01234567";
        let t = format!(
            "# state\n\nguard-set future=1 n=1\n  guard x=y added_at=5 rsa_id=${}\n",
            id.to_lowercase()
        );
        let p = GuardSet::parse(&t).unwrap();
        assert_eq!(p.n(), 1);
        assert_eq!(p.guards()[0].rsa_id, RsaIdentity::from_hex(id).unwrap());
        assert_eq!(p.guards()[0].nickname, "");
        assert_eq!(p.guards()[0].extra, ["x=y"]);
        assert_eq!(
            p.to_string(),
            format!("guard-set n=1\nguard rsa_id={id} added_at=5 x=y\n")
        );
    }

    #[test]
    fn persistence_rejections() {
        let id = "0123456789ABCDEF0123456789ABCDEF01234567";
        let ok = format!("guard rsa_id={id} added_at=5");
        let line = |line, what| Err(GuardSetError::BadLine { line, what });
        assert_eq!(GuardSet::parse(""), Err(GuardSetError::MissingHeader));
        assert_eq!(GuardSet::parse(&ok), Err(GuardSetError::MissingHeader));
        assert_eq!(GuardSet::parse("guard-set"), line(1, "missing n"));
        assert_eq!(GuardSet::parse("guard-set n=0"), line(1, "bad n"));
        assert_eq!(GuardSet::parse("guard-set n=9"), line(1, "bad n"));
        assert_eq!(GuardSet::parse("guard-set n=+1"), line(1, "bad n"));
        assert_eq!(GuardSet::parse("guard-set n=1 n=2"), line(1, "bad n"));
        let with = |l: &str| GuardSet::parse(&format!("guard-set n=1\n{l}"));
        assert_eq!(with("nope"), line(2, "not a guard line"));
        assert_eq!(with(&format!("{ok} x")), line(2, "entry without '='"));
        assert_eq!(with(&format!("{ok} =x")), line(2, "empty key"));
        assert_eq!(
            with(&format!("{ok} added_at=6")),
            line(2, "duplicate entry")
        );
        assert_eq!(with("guard added_at=5"), line(2, "missing rsa_id"));
        assert_eq!(
            with(&format!("guard rsa_id={id}")),
            line(2, "missing added_at")
        );
        assert_eq!(with("guard rsa_id=0123 added_at=5"), line(2, "bad rsa_id"));
        assert_eq!(
            with(&format!("guard rsa_id={id} added_at=-5")),
            line(2, "bad added_at")
        );
        assert_eq!(
            with(&format!("{ok} unlisted_since=99999999999999999999999")),
            line(2, "bad unlisted_since")
        );
        assert_eq!(with(&format!("{ok}\n{ok}")), line(3, "duplicate guard"));
        let long = format!("{ok} k={}", "v".repeat(MAX_TOKEN));
        assert_eq!(with(&long), line(2, "entry too long"));
        let many = format!("{ok}{}", " k=v".repeat(MAX_EXTRA + 1));
        assert_eq!(with(&many), line(2, "too many unknown entries"));
        let guards: String = (0..=MAX_SAMPLED)
            .map(|i| format!("guard rsa_id={:040X} added_at=1\n", i))
            .collect();
        assert_eq!(with(&guards), Err(GuardSetError::TooManyGuards));
        assert_eq!(
            GuardSet::parse(&" ".repeat(MAX_TEXT + 1)),
            Err(GuardSetError::TooLong)
        );
    }

    fn arb_entry() -> impl Strategy<Value = GuardEntry> {
        (
            any::<[u8; 20]>(),
            "[A-Za-z0-9]{0,19}",
            any::<u64>(),
            prop::option::of(any::<u64>()),
            prop::collection::vec("[a-z_]{1,8}=[!-~]{0,12}", 0..4),
        )
            .prop_map(
                |(id, nickname, added_at, unlisted_since, extra)| GuardEntry {
                    rsa_id: RsaIdentity::from_bytes(id),
                    nickname,
                    added_at,
                    unlisted_since,
                    failing_since: None,
                    retry_at: None,
                    extra: extra
                        .into_iter()
                        .filter(|e| {
                            !["rsa_id=", "added_at=", "nickname=", "unlisted_since="]
                                .iter()
                                .any(|k| e.starts_with(k))
                        })
                        .collect(),
                },
            )
    }

    proptest! {
        #[test]
        fn round_trip(n in 1usize..=MAX_GUARDS, entries in prop::collection::vec(arb_entry(), 0..20)) {
            let mut g = GuardSet::new(n);
            for e in entries {
                if g.guards.iter().all(|o| o.rsa_id != e.rsa_id) {
                    g.guards.push(e);
                }
            }
            let text = g.to_string();
            let parsed = GuardSet::parse(&text).unwrap();
            prop_assert_eq!(&parsed, &g);
            prop_assert_eq!(parsed.to_string(), text);
        }

        #[test]
        fn parse_never_panics(text in "(guard(-set)? ([a-z_]{1,8}=[0-9A-F]{0,40} ?){0,5}\n){0,5}") {
            if let Ok(g) = GuardSet::parse(&text) {
                prop_assert_eq!(GuardSet::parse(&g.to_string()), Ok(g));
            }
        }
    }
}
