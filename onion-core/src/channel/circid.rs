//! Choosing circuit IDs (tor-spec §5.1.1).
//!
//! - Link protocol 4 and later (4-byte IDs): the node that initiated the connection sets the
//!   most significant bit of the IDs it chooses, the other node clears it.
//! - Link protocol 3 (2-byte IDs): the node with the lower RSA identity key (compared
//!   numerically by modulus) clears the MSB, the other sets it; a client, which has no key,
//!   may choose any ID (relays never create circuits towards clients).
//!
//! IDs are chosen at random among the unused ones, as C tor does, giving up after
//! [`MAX_CIRC_ID_ATTEMPTS`] random draws that are all in use.

use onion_cell::chancell::CircId;
use rand_core::CryptoRng;

use super::{ChannelError, Role};

/// Random draws before [`CircIdAllocator::allocate`] gives up (C tor's limit).
pub const MAX_CIRC_ID_ATTEMPTS: usize = 64;

/// Which circuit IDs a node may choose on a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircIdRange {
    /// IDs with the most significant bit set; the peer's have it clear.
    High,
    /// IDs with the most significant bit clear; the peer's have it set.
    Low,
    /// Any nonzero ID (a client on link protocol 3); the peer does not create circuits.
    Any,
    /// None: we may not create circuits (a link protocol 3 relay facing an unauthenticated
    /// client, which may choose any ID).
    Nothing,
}

impl CircIdRange {
    /// The range for our side of a link.
    ///
    /// `our_modulus` and `peer_modulus` are the big-endian moduli of the two RSA identity
    /// keys (`None` for a side that did not authenticate); they matter only for link protocol
    /// 3.
    pub fn for_link(
        link_version: u16,
        role: Role,
        our_modulus: Option<&[u8]>,
        peer_modulus: Option<&[u8]>,
    ) -> Self {
        if link_version >= 4 {
            return match role {
                Role::Initiator => CircIdRange::High,
                Role::Responder => CircIdRange::Low,
            };
        }
        match (our_modulus, peer_modulus) {
            (None, _) => CircIdRange::Any,
            (Some(_), None) => CircIdRange::Nothing,
            (Some(ours), Some(theirs)) => {
                if cmp_modulus(ours, theirs).is_lt() {
                    CircIdRange::Low
                } else {
                    CircIdRange::High
                }
            }
        }
    }
}

/// Compare two big-endian unsigned integers numerically.
fn cmp_modulus(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    let trim = |x: &[u8]| -> Vec<u8> { x.iter().copied().skip_while(|&b| b == 0).collect() };
    let (a, b) = (trim(a), trim(b));
    a.len().cmp(&b.len()).then_with(|| a.cmp(&b))
}

/// Chooses circuit IDs for the circuits we create on one channel, and checks the peer's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircIdAllocator {
    range: CircIdRange,
    wide: bool,
}

impl CircIdAllocator {
    /// An allocator for `range` on a link of protocol `link_version` (4-byte IDs from 4).
    pub fn new(range: CircIdRange, link_version: u16) -> Self {
        CircIdAllocator {
            range,
            wide: link_version >= 4,
        }
    }

    /// Our range.
    pub fn range(&self) -> CircIdRange {
        self.range
    }

    /// The most significant bit of a circuit ID on this link.
    fn msb(&self) -> u32 {
        if self.wide { 0x8000_0000 } else { 0x8000 }
    }

    /// All the bits of a circuit ID on this link.
    fn mask(&self) -> u32 {
        if self.wide { u32::MAX } else { 0xffff }
    }

    /// Whether we may choose `id` for a circuit.
    pub fn is_ours(&self, id: CircId) -> bool {
        let id = id.get();
        let fits = id != 0 && id & !self.mask() == 0;
        fits && match self.range {
            CircIdRange::High => id & self.msb() != 0,
            CircIdRange::Low => id & self.msb() == 0,
            CircIdRange::Any => true,
            CircIdRange::Nothing => false,
        }
    }

    /// Whether the peer may choose `id` for a circuit it creates (a CREATE* cell). A relay
    /// answers a CREATE* cell whose ID breaks the rule with DESTROY (reason PROTOCOL).
    pub fn peer_may_create(&self, id: CircId) -> bool {
        let raw = id.get();
        let fits = raw != 0 && raw & !self.mask() == 0;
        fits && match self.range {
            CircIdRange::High => raw & self.msb() == 0,
            CircIdRange::Low => raw & self.msb() != 0,
            CircIdRange::Any | CircIdRange::Nothing => true,
        }
    }

    /// Choose a random ID in our range for which `in_use` is false.
    ///
    /// Fails with [`ChannelError::CircIdsExhausted`] after [`MAX_CIRC_ID_ATTEMPTS`] draws that
    /// were all in use, and with [`ChannelError::NoCircIdRange`] if we may not create circuits.
    pub fn allocate<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        mut in_use: impl FnMut(CircId) -> bool,
    ) -> Result<CircId, ChannelError> {
        for _ in 0..MAX_CIRC_ID_ATTEMPTS {
            let raw = rng.next_u32() & self.mask();
            let raw = match self.range {
                CircIdRange::High => raw | self.msb(),
                CircIdRange::Low => raw & !self.msb(),
                CircIdRange::Any => raw,
                CircIdRange::Nothing => return Err(ChannelError::NoCircIdRange),
            };
            let id = CircId::new(raw);
            if raw != 0 && !in_use(id) {
                return Ok(id);
            }
        }
        Err(ChannelError::CircIdsExhausted {
            attempts: MAX_CIRC_ID_ATTEMPTS,
        })
    }
}

#[cfg(test)]
mod test {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use std::collections::HashSet;

    use super::*;
    use crate::testing::seeded_rng;

    #[test]
    fn ranges_by_version_and_role() {
        let (small, big) = (&[0x7f, 0xff][..], &[0x80, 0x00][..]);
        for v in [4, 5] {
            assert_eq!(
                CircIdRange::for_link(v, Role::Initiator, None, None),
                CircIdRange::High
            );
            assert_eq!(
                CircIdRange::for_link(v, Role::Responder, Some(small), Some(big)),
                CircIdRange::Low
            );
        }
        // Link protocol 3: the lower key takes the low half, whoever initiated.
        for role in [Role::Initiator, Role::Responder] {
            assert_eq!(
                CircIdRange::for_link(3, role, Some(small), Some(big)),
                CircIdRange::Low
            );
            assert_eq!(
                CircIdRange::for_link(3, role, Some(big), Some(small)),
                CircIdRange::High
            );
            assert_eq!(
                CircIdRange::for_link(3, role, None, Some(big)),
                CircIdRange::Any
            );
            assert_eq!(
                CircIdRange::for_link(3, role, Some(big), None),
                CircIdRange::Nothing
            );
        }
        // Numeric comparison: leading zeros do not count, length does.
        assert!(cmp_modulus(&[0, 0, 0xff], &[1, 0]).is_lt());
        assert!(cmp_modulus(&[2, 0], &[1, 0xff]).is_gt());
        assert!(cmp_modulus(&[0, 1], &[1]).is_eq());
    }

    #[test]
    fn allocated_ids_follow_the_range() {
        let mut rng = seeded_rng(5);
        let cases = [
            (CircIdRange::High, 5, 0x8000_0000, u32::MAX),
            (CircIdRange::Low, 4, 0, 0x7fff_ffff),
            (CircIdRange::High, 3, 0x8000, 0xffff),
            (CircIdRange::Low, 3, 0, 0x7fff),
            (CircIdRange::Any, 3, 0, 0xffff),
        ];
        for (range, v, lo, hi) in cases {
            let a = CircIdAllocator::new(range, v);
            for _ in 0..500 {
                let id = a.allocate(&mut rng, |_| false).unwrap();
                assert!(
                    (lo..=hi).contains(&id.get()) && id.get() != 0,
                    "{range:?} {id}"
                );
                assert!(a.is_ours(id));
                assert_eq!(a.peer_may_create(id), range == CircIdRange::Any);
            }
        }
        let a = CircIdAllocator::new(CircIdRange::High, 5);
        assert!(a.peer_may_create(CircId::new(1)));
        assert!(!a.peer_may_create(CircId::new(0)));
        assert!(!a.is_ours(CircId::new(0x7fff_ffff)));
        let a = CircIdAllocator::new(CircIdRange::Low, 3);
        assert!(a.peer_may_create(CircId::new(0x8001)));
        assert!(
            !a.peer_may_create(CircId::new(0x1_8001)),
            "wider than 2 bytes"
        );
        assert!(!a.is_ours(CircId::new(0x1_0001)));
    }

    #[test]
    fn allocation_avoids_ids_in_use() {
        let mut rng = seeded_rng(6);
        // 2-byte low range: 32767 IDs; take 20000 of them, all distinct.
        let a = CircIdAllocator::new(CircIdRange::Low, 3);
        let mut used = HashSet::new();
        for _ in 0..20_000 {
            let id = a.allocate(&mut rng, |id| used.contains(&id)).unwrap();
            assert!(used.insert(id));
        }
        // When everything is in use, it gives up after the bounded number of draws.
        let mut draws = 0;
        assert_eq!(
            a.allocate(&mut rng, |_| {
                draws += 1;
                true
            }),
            Err(ChannelError::CircIdsExhausted {
                attempts: MAX_CIRC_ID_ATTEMPTS
            })
        );
        assert_eq!(draws, MAX_CIRC_ID_ATTEMPTS);
        assert_eq!(
            CircIdAllocator::new(CircIdRange::Nothing, 3).allocate(&mut rng, |_| false),
            Err(ChannelError::NoCircIdRange)
        );
    }
}
