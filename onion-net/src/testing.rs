//! Helpers shared by this crate's unit tests.

use std::path::Path;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_core::UnwrapErr;

/// The operating system's RNG, for tests that need real randomness.
pub(crate) fn test_rng() -> UnwrapErr<getrandom::SysRng> {
    UnwrapErr(getrandom::SysRng)
}

/// A deterministic RNG, for reproducible tests.
pub(crate) fn seeded_rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// A fresh directory under the system temporary directory, removed on drop.
pub(crate) struct TempDir(tempfile::TempDir);

impl TempDir {
    pub(crate) fn new(tag: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("onion-net-test-{tag}-"))
            .tempdir()
            .unwrap();
        TempDir(dir)
    }

    pub(crate) fn path(&self) -> &Path {
        self.0.path()
    }
}
