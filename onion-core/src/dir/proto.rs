//! Protocol version lists: the `proto` line of server descriptors, the `pr` lines of
//! consensuses and microdescriptors, and the consensus's recommended/required protocol lines
//! (dir-spec §2.1.1, tor-spec §9).
//!
//! ```text
//! Entries = Entry *(SP Entry)    Entry = Keyword "=" [Value *("," Value)]
//! Value = Int / Int "-" Int      (0 <= Int <= 63)
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// The highest protocol version Tor allows.
pub const MAX_VERSION: u8 = 63;

/// Longest protocol name accepted (C tor's `MAX_PROTOCOL_NAME_LENGTH`).
const MAX_NAME_LEN: usize = 100;

/// Why a protocol list did not parse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("malformed protocol list: {0}")]
pub struct ProtoError(pub &'static str);

/// A set of supported protocol versions per protocol name, e.g.
/// `Link=3-5 LinkAuth=3 Relay=1-4`. Displayed in canonical form: names sorted, versions
/// ascending, ranges as compact as possible.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Protocols {
    /// Bit `v` of the mask is set if version `v` is supported.
    entries: BTreeMap<String, u64>,
}

impl Protocols {
    /// The empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add versions `lo..=hi` of `name` (builder style). Versions above [`MAX_VERSION`]
    /// are ignored; `name` should be a keyword.
    pub fn with(mut self, name: &str, lo: u8, hi: u8) -> Self {
        let mask = range_mask(lo, hi.min(MAX_VERSION));
        let e = self.entries.entry(name.to_owned()).or_insert(0);
        *e |= mask;
        self
    }

    /// The versions of `name` as a bit mask (bit `v` for version `v`); 0 if absent.
    pub fn versions(&self, name: &str) -> u64 {
        self.entries.get(name).copied().unwrap_or(0)
    }

    /// Whether version `version` of `name` is listed.
    pub fn supports(&self, name: &str, version: u8) -> bool {
        version <= MAX_VERSION && self.versions(name) & (1u64 << version) != 0
    }

    /// The protocol versions in `required` that are missing here (empty if all are
    /// supported).
    pub fn missing(&self, required: &Protocols) -> Protocols {
        let entries = required
            .entries
            .iter()
            .filter_map(|(name, &want)| {
                let lacking = want & !self.versions(name);
                (lacking != 0).then(|| (name.clone(), lacking))
            })
            .collect();
        Protocols { entries }
    }

    /// Whether no protocol version is listed.
    pub fn is_empty(&self) -> bool {
        self.entries.values().all(|&m| m == 0)
    }

    /// The protocol names and their version masks, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.entries.iter().map(|(n, &m)| (n.as_str(), m))
    }
}

fn range_mask(lo: u8, hi: u8) -> u64 {
    if lo > hi || lo > MAX_VERSION {
        return 0;
    }
    let upto_hi = if hi >= MAX_VERSION {
        u64::MAX
    } else {
        (1u64 << (hi + 1)) - 1
    };
    upto_hi & !((1u64 << lo) - 1)
}

fn parse_version(s: &str) -> Result<u8, ProtoError> {
    if s.is_empty() || s.len() > 2 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ProtoError("bad version number"));
    }
    let v: u8 = s.parse().map_err(|_| ProtoError("bad version number"))?;
    if v > MAX_VERSION {
        return Err(ProtoError("version above 63"));
    }
    Ok(v)
}

impl FromStr for Protocols {
    type Err = ProtoError;

    /// Parse as C tor's `parse_protocol_list` does: duplicate names and malformed or
    /// reversed ranges are errors.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut entries = BTreeMap::new();
        for entry in s.split(' ').filter(|e| !e.is_empty()) {
            let (name, values) = entry
                .split_once('=')
                .ok_or(ProtoError("entry without '='"))?;
            if name.is_empty()
                || name.len() > MAX_NAME_LEN
                || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                return Err(ProtoError("bad protocol name"));
            }
            let mut mask = 0u64;
            for value in values.split(',').filter(|v| !v.is_empty()) {
                let (lo, hi) = match value.split_once('-') {
                    Some((lo, hi)) => (parse_version(lo)?, parse_version(hi)?),
                    None => {
                        let v = parse_version(value)?;
                        (v, v)
                    }
                };
                if lo > hi {
                    return Err(ProtoError("reversed range"));
                }
                mask |= range_mask(lo, hi);
            }
            if entries.insert(name.to_owned(), mask).is_some() {
                return Err(ProtoError("duplicate protocol name"));
            }
        }
        Ok(Protocols { entries })
    }
}

impl fmt::Display for Protocols {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (name, &mask) in &self.entries {
            if mask == 0 {
                continue;
            }
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            write!(f, "{name}=")?;
            let mut v: u32 = 0;
            let mut first_range = true;
            while v <= u32::from(MAX_VERSION) {
                if mask & (1u64 << v) == 0 {
                    v += 1;
                    continue;
                }
                let lo = v;
                while v < u32::from(MAX_VERSION) && mask & (1u64 << (v + 1)) != 0 {
                    v += 1;
                }
                if !first_range {
                    f.write_str(",")?;
                }
                first_range = false;
                if lo == v {
                    write!(f, "{lo}")?;
                } else {
                    write!(f, "{lo}-{v}")?;
                }
                v += 1;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod test {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use proptest::prelude::*;

    // The `pr` line of C tor 0.4.9.11 and the consensus's required relay protocols, from the
    // fixtures.
    const CTOR_PR: &str = "Conflux=1 Cons=1-2 Desc=1-4 DirCache=2 FlowCtrl=1-2 HSDir=2 \
        HSIntro=4-5 HSRend=1-2 Link=3-5 LinkAuth=3 Microdesc=1-3 Padding=2 Relay=2-6";
    const REQUIRED_RELAY: &str = "Cons=2 Desc=2 DirCache=2 FlowCtrl=1-2 HSDir=2 HSIntro=4-5 \
        HSRend=2 Link=4-5 LinkAuth=3 Microdesc=2 Relay=2-4";

    #[test]
    fn c_tor_lists() {
        let pr: Protocols = CTOR_PR.parse().unwrap();
        assert_eq!(pr.to_string(), CTOR_PR);
        assert!(pr.supports("Relay", 4));
        assert!(!pr.supports("Relay", 1));
        assert!(!pr.supports("Nope", 1));
        let req: Protocols = REQUIRED_RELAY.parse().unwrap();
        assert!(pr.missing(&req).is_empty());
        let ours: Protocols = "Link=3-5 LinkAuth=3 Relay=1-4 FlowCtrl=1".parse().unwrap();
        assert_eq!(ours.to_string(), "FlowCtrl=1 Link=3-5 LinkAuth=3 Relay=1-4");
        assert_eq!(
            ours.missing(&"FlowCtrl=1-2 Link=4-5 Relay=2-4".parse().unwrap())
                .to_string(),
            "FlowCtrl=2"
        );
    }

    #[test]
    fn canonical_form() {
        let p: Protocols = "B=5,1-2,3 A=0,63 C=".parse().unwrap();
        assert_eq!(p.to_string(), "A=0,63 B=1-3,5");
        assert_eq!(
            Protocols::new().with("X", 2, 4).with("X", 5, 5).to_string(),
            "X=2-5"
        );
        assert!(Protocols::new().is_empty());
        assert!("".parse::<Protocols>().unwrap().is_empty());
    }

    #[test]
    fn rejections() {
        for bad in [
            "A", "A=1 A=2", "A=64", "A=3-1", "A=1-", "A=x", "=1", "A_B=1", "A=+1", "A=001",
        ] {
            assert!(bad.parse::<Protocols>().is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn round_trip(entries in proptest::collection::btree_map("[A-Za-z][A-Za-z0-9-]{0,8}", any::<u64>(), 0..6)) {
            let p = Protocols { entries: entries.into_iter().filter(|(_, m)| *m != 0).collect() };
            let s = p.to_string();
            let q: Protocols = s.parse().unwrap();
            prop_assert_eq!(&q, &p);
            prop_assert_eq!(q.to_string(), s);
        }

        #[test]
        fn never_panics(s in "[ -~]{0,60}") {
            let _ = s.parse::<Protocols>();
        }
    }
}
