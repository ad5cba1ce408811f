//! Path selection (path-spec §2.2, §2.4, §5; guard-spec, simplified).
//!
//! Sans-IO: the RNG and the time are parameters; nothing here reads a clock or does I/O.
//!
//! | module | what | spec |
//! |---|---|---|
//! | [`relay`] | [`RelayInfo`] (a consensus entry merged with its microdescriptor, or an entry of our own network's list) and [`RelaySet`] | dir-spec §3.4.1, §3.3 |
//! | [`weight`] | [`BandwidthWeights`] and weighted choice per [`Position`] | dir-spec §3.4.1 `bandwidth-weights`, §3.8.3; path-spec §2.2, §5.1 |
//! | [`select`] | [`select_path`] with [`PathConfig`]: exit by port, distinct relays, families and subnets, pinned first hop | path-spec §2.2 |
//! | [`guard`] | [`GuardSet`]: a small persistent set of guards with retry times | guard-spec (simplified) |
//! | [`timeout`] | [`BuildTimeEstimator`]: the circuit build timeout from observed build times | path-spec §2.4 (simplified) |

use thiserror::Error;

use crate::certs::RsaIdentity;

pub mod guard;
pub mod relay;
pub mod select;
pub mod timeout;
pub mod weight;

#[cfg(test)]
mod testutil;

pub use guard::{GuardEntry, GuardSet, GuardSetError};
pub use relay::{RelayFamily, RelayInfo, RelaySet};
pub use select::{FirstHop, PathConfig, guard_flags, select_path};
pub use timeout::{BuildTimeEstimator, TimeoutConfig};
pub use weight::{BandwidthWeights, Position};

/// Why no path could be chosen.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PathError {
    /// The number of hops is not in `1..=5`.
    #[error("a path has 1 to 5 hops, not {0}")]
    BadHopCount(usize),
    /// The configuration contradicts itself.
    #[error("invalid path configuration: {0}")]
    InvalidConfig(&'static str),
    /// No usable relay's exit policy summary accepts this port.
    #[error("no usable exit accepts port {0}")]
    NoExitForPort(u16),
    /// No usable relay has the `Exit` flag (for a circuit without a known port).
    #[error("no usable exit relay")]
    NoExit,
    /// No usable relay has the guard flags.
    #[error("no usable guard relay")]
    NoGuard,
    /// The pinned first hop is not in the relay set.
    #[error("pinned first hop {0} is not in the relay set")]
    PinnedNotFound(RsaIdentity),
    /// Every position has usable relays, but the path constraints (distinct relays, families,
    /// subnets) left none for one of them: `have` hops were placed, of `needed`.
    #[error("not enough compatible relays: {have} of {needed} hops placed")]
    NotEnoughRelays {
        /// Hops requested.
        needed: usize,
        /// Hops placed before the candidates ran out.
        have: usize,
    },
    /// The consensus is not of the microdesc flavor, so microdescriptors cannot be matched.
    #[error("the consensus is not microdesc-flavored")]
    NotMicrodescFlavor,
}
