//! The deterministic bytes the HTTP server serves: a SplitMix64 stream from a fixed seed, so
//! that any prefix can be regenerated and compared by the client.

/// The seed of the stream.
pub const SEED: u64 = 0x5EED_0F0E_1D2C_3B4A;

/// A generator of the stream, from its beginning.
#[derive(Debug, Clone)]
pub struct BodyGen {
    state: u64,
    /// Bytes of the current word not yet handed out.
    word: [u8; 8],
    used: usize,
}

impl Default for BodyGen {
    fn default() -> Self {
        BodyGen {
            state: SEED,
            word: [0; 8],
            used: 8,
        }
    }
}

impl BodyGen {
    /// The next SplitMix64 output.
    fn next_word(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Fill `out` with the next bytes of the stream.
    pub fn fill(&mut self, out: &mut [u8]) {
        for b in out {
            if self.used == 8 {
                self.word = self.next_word().to_le_bytes();
                self.used = 0;
            }
            *b = self.word.get(self.used).copied().unwrap_or_default();
            self.used += 1;
        }
    }
}

/// The first `len` bytes of the stream.
pub fn body(len: usize) -> Vec<u8> {
    let mut v = vec![0; len];
    BodyGen::default().fill(&mut v);
    v
}

/// Whether `got` is exactly the first `len` bytes of the stream (without keeping a copy).
pub fn check(got: &[u8], len: usize) -> bool {
    if got.len() != len {
        return false;
    }
    let mut g = BodyGen::default();
    let mut buf = vec![0u8; 64 * 1024];
    got.chunks(buf.len()).all(|chunk| {
        let want = buf.get_mut(..chunk.len()).unwrap_or_default();
        g.fill(want);
        want == chunk
    })
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn stream_is_deterministic_and_chunk_independent() {
        let whole = body(1000);
        let mut g = BodyGen::default();
        let mut pieces = vec![0u8; 1000];
        let (a, b) = pieces.split_at_mut(13);
        g.fill(a);
        g.fill(b);
        assert_eq!(whole, pieces);
        assert!(check(&whole, 1000));
        let mut bad = whole.clone();
        bad[999] ^= 1;
        assert!(!check(&bad, 1000));
        assert!(!check(&whole[..999], 1000));
    }

    #[test]
    fn splitmix64_reference_outputs() {
        // SplitMix64 from seed 0 (the reference implementation's first outputs).
        let mut g = BodyGen {
            state: 0,
            ..BodyGen::default()
        };
        assert_eq!(g.next_word(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(g.next_word(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(g.next_word(), 0x06C4_5D18_8009_454F);
    }
}
