//! Key material one hop's relay crypto is built from (tor-spec §5.2).

use zeroize::{Zeroize, ZeroizeOnDrop};

/// Length of a SHA-1 digest (`HASH_LEN`).
pub const HASH_LEN: usize = 20;
/// Length of an AES-128 key (`KEY_LEN`).
pub const KEY_LEN: usize = 16;

/// The four secrets of one hop (tor-spec §5.2.1/§5.2.2): forward and backward digest seeds
/// (`Df`, `Db`) and forward and backward AES-128-CTR keys (`Kf`, `Kb`).
///
/// "Forward" is away from the client (client to relay); "backward" is toward it.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct HopKeys {
    /// Forward digest seed.
    pub df: [u8; HASH_LEN],
    /// Backward digest seed.
    pub db: [u8; HASH_LEN],
    /// Forward cipher key.
    pub kf: [u8; KEY_LEN],
    /// Backward cipher key.
    pub kb: [u8; KEY_LEN],
}

impl std::fmt::Debug for HopKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HopKeys { .. }")
    }
}

impl HopKeys {
    /// Bytes of KDF output the keys take: `Df | Db | Kf | Kb`.
    pub const LEN: usize = 2 * HASH_LEN + 2 * KEY_LEN;

    /// Split `Df | Db | Kf | Kb` (72 bytes, in that order) into keys.
    pub fn from_bytes(b: &[u8; Self::LEN]) -> Self {
        let mut k = HopKeys {
            df: [0; HASH_LEN],
            db: [0; HASH_LEN],
            kf: [0; KEY_LEN],
            kb: [0; KEY_LEN],
        };
        let (df, rest) = b.split_at(HASH_LEN);
        let (db, rest) = rest.split_at(HASH_LEN);
        let (kf, kb) = rest.split_at(KEY_LEN);
        k.df.copy_from_slice(df);
        k.db.copy_from_slice(db);
        k.kf.copy_from_slice(kf);
        k.kb.copy_from_slice(kb);
        k
    }
}

#[cfg(test)]
mod test {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn split_order() {
        let mut b = [0u8; HopKeys::LEN];
        for (i, x) in b.iter_mut().enumerate() {
            *x = i as u8;
        }
        let k = HopKeys::from_bytes(&b);
        assert_eq!(k.df[0], 0);
        assert_eq!(k.db[0], 20);
        assert_eq!(k.kf[0], 40);
        assert_eq!(k.kb[0], 56);
        assert_eq!(k.kb[15], 71);
    }
}
