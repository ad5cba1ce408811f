//! Helpers shared by this crate's unit tests.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

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

#[test]
fn rngs_are_crypto_rngs() {
    fn takes<R: rand_core::CryptoRng + ?Sized>(r: &mut R) -> [u8; 8] {
        let mut b = [0u8; 8];
        r.fill_bytes(&mut b);
        b
    }
    assert_ne!(takes(&mut test_rng()), takes(&mut test_rng()));
    assert_eq!(takes(&mut seeded_rng(1)), takes(&mut seeded_rng(1)));
}
