//! What a relay answers circuit handshakes with: its identities, its onion keys (current and
//! previous) and which handshakes it accepts.
//!
//! | handshake | keys used |
//! |---|---|
//! | ntor (CREATE2 type 2) | x25519 onion key `b` bound to the RSA identity digest |
//! | ntor-v3 (CREATE2 type 3) | the same x25519 key, bound to the Ed25519 identity |
//! | TAP (CREATE, CREATE2 type 0) | RSA-1024 onion key |
//! | CREATE_FAST_WS (seed) | the same RSA-1024 onion key |
//! | CREATE_FAST | none |
//!
//! A relay keeps its previous onion keys for a while after a rotation, so that clients with
//! an older descriptor can still build circuits (C tor keeps them one rotation period).

use rsa::{PrivateKey, PublicKey};
use x25519_dalek::StaticSecret;

use crate::handshake::ntor::{self, NtorPublicKey, NtorSecretKey};
use crate::handshake::ntor_v3::{self, NtorV3PublicKey, NtorV3SecretKey};
use crate::handshake::tap::check_onion_key;
use crate::handshake::{HandshakeError, HandshakeResult};

/// Length of a relay's RSA identity digest (SHA-1 of its DER-encoded identity key).
pub const RSA_ID_LEN: usize = ntor::ID_LEN;
/// Length of a relay's Ed25519 identity key.
pub const ED_ID_LEN: usize = ntor_v3::ID_LEN;

/// Which circuit handshakes a relay accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreatePolicy {
    /// Accept CREATE_FAST (tor-spec §5.1.5). Default yes, as C tor.
    pub accept_create_fast: bool,
    /// Accept the seed's CREATE_FAST_WS (only ever on a client link). Default yes: our ORs
    /// serve the seed's browser OPs.
    pub accept_create_fast_ws: bool,
    /// Accept TAP, as a CREATE cell or CREATE2 type 0. Default yes for our ORs (C tor 0.4.9
    /// refuses it).
    pub accept_tap: bool,
}

impl Default for CreatePolicy {
    fn default() -> Self {
        CreatePolicy {
            accept_create_fast: true,
            accept_create_fast_ws: true,
            accept_tap: true,
        }
    }
}

/// A relay's identities and onion keys, and its [`CreatePolicy`].
///
/// Holds the current ntor and TAP onion keys and, after a rotation, the previous ones; a
/// handshake is tried with the current key first. Secrets are wiped on drop (by their own
/// types) and never printed by `Debug`.
#[derive(Clone)]
pub struct OnionKeys {
    /// RSA identity digest.
    rsa_id: [u8; RSA_ID_LEN],
    /// Ed25519 identity.
    ed_id: [u8; ED_ID_LEN],
    /// ntor keys (bound to `rsa_id`): current first, then the previous one if any.
    ntor: Vec<NtorSecretKey>,
    /// The same x25519 keys bound to `ed_id`, for ntor-v3; same order.
    ntor_v3: Vec<NtorV3SecretKey>,
    /// Current TAP onion key (RSA-1024, e = 65537).
    tap_current: PrivateKey,
    /// Previous TAP onion key.
    tap_previous: Option<PrivateKey>,
    /// Which handshakes are accepted.
    pub policy: CreatePolicy,
}

impl std::fmt::Debug for OnionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnionKeys")
            .field("rsa_id", &hex::encode(self.rsa_id))
            .field("ed_id", &hex::encode(self.ed_id))
            .field("ntor_keys", &self.ntor.len())
            .field("tap_previous", &self.tap_previous.is_some())
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl OnionKeys {
    /// The keys of a relay with identities `rsa_id` and `ed_id`, current ntor onion key
    /// `ntor` and current TAP onion key `tap`, with the default [`CreatePolicy`].
    ///
    /// Fails with [`HandshakeError::BadKey`] if `tap` is not RSA-1024 with exponent 65537.
    pub fn new(
        rsa_id: [u8; RSA_ID_LEN],
        ed_id: [u8; ED_ID_LEN],
        ntor: StaticSecret,
        tap: PrivateKey,
    ) -> HandshakeResult<Self> {
        check_onion_key(&tap)?;
        Ok(OnionKeys {
            rsa_id,
            ed_id,
            ntor: vec![NtorSecretKey::new(rsa_id, ntor.clone())],
            ntor_v3: vec![NtorV3SecretKey::new(ed_id, ntor)],
            tap_current: tap,
            tap_previous: None,
            policy: CreatePolicy::default(),
        })
    }

    /// Also accept handshakes made with the previous ntor onion key `ntor` (replacing any
    /// previous key already set).
    pub fn with_previous_ntor(mut self, ntor: StaticSecret) -> Self {
        self.ntor.truncate(1);
        self.ntor_v3.truncate(1);
        self.ntor
            .push(NtorSecretKey::new(self.rsa_id, ntor.clone()));
        self.ntor_v3.push(NtorV3SecretKey::new(self.ed_id, ntor));
        self
    }

    /// Also accept handshakes made with the previous TAP onion key `tap`. Fails with
    /// [`HandshakeError::BadKey`] if it is not RSA-1024 with exponent 65537.
    pub fn with_previous_tap(mut self, tap: PrivateKey) -> HandshakeResult<Self> {
        check_onion_key(&tap)?;
        self.tap_previous = Some(tap);
        Ok(self)
    }

    /// Rotate the onion keys: `ntor` and `tap` become current, the current ones become
    /// previous, and the old previous ones are dropped. On error nothing changes.
    pub fn rotate(&mut self, ntor: StaticSecret, tap: PrivateKey) -> HandshakeResult<()> {
        check_onion_key(&tap)?;
        self.ntor.truncate(1);
        self.ntor_v3.truncate(1);
        self.ntor
            .insert(0, NtorSecretKey::new(self.rsa_id, ntor.clone()));
        self.ntor_v3
            .insert(0, NtorV3SecretKey::new(self.ed_id, ntor));
        self.tap_previous = Some(std::mem::replace(&mut self.tap_current, tap));
        Ok(())
    }

    /// The relay's RSA identity digest.
    pub fn rsa_id(&self) -> &[u8; RSA_ID_LEN] {
        &self.rsa_id
    }

    /// The relay's Ed25519 identity.
    pub fn ed_id(&self) -> &[u8; ED_ID_LEN] {
        &self.ed_id
    }

    /// The current ntor onion key as clients know it (for descriptors).
    pub fn ntor_public(&self) -> Result<&NtorPublicKey, HandshakeError> {
        self.ntor
            .first()
            .map(|k| &k.pk)
            .ok_or(HandshakeError::BadKey("no ntor onion key"))
    }

    /// The current ntor onion key as ntor-v3 clients know it.
    pub fn ntor_v3_public(&self) -> Result<&NtorV3PublicKey, HandshakeError> {
        self.ntor_v3
            .first()
            .map(|k| &k.pk)
            .ok_or(HandshakeError::BadKey("no ntor onion key"))
    }

    /// The current TAP onion key's public half (for descriptors).
    pub fn tap_public(&self) -> PublicKey {
        self.tap_current.to_public_key()
    }

    /// The ntor keys, current first.
    pub(crate) fn ntor_keys(&self) -> &[NtorSecretKey] {
        &self.ntor
    }

    /// The ntor-v3 keys, current first.
    pub(crate) fn ntor_v3_keys(&self) -> &[NtorV3SecretKey] {
        &self.ntor_v3
    }

    /// Run `f` with the TAP onion keys, current first.
    pub(crate) fn with_tap_keys<T>(&self, f: impl FnOnce(&[&PrivateKey]) -> T) -> T {
        match &self.tap_previous {
            Some(prev) => f(&[&self.tap_current, prev]),
            None => f(&[&self.tap_current]),
        }
    }
}

#[cfg(test)]
mod test {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::handshake::tap::test::test_keys;
    use crate::testing::seeded_rng;
    use x25519_dalek::PublicKey;

    #[test]
    fn rotation_keeps_current_then_previous() {
        let mut rng = seeded_rng(1);
        let (a, b, big) = test_keys();
        let s1 = StaticSecret::random_from_rng(&mut rng);
        let s2 = StaticSecret::random_from_rng(&mut rng);
        let mut k = OnionKeys::new([1; 20], [2; 32], s1.clone(), a.clone()).unwrap();
        assert_eq!(k.policy, CreatePolicy::default());
        assert_eq!(k.ntor_keys().len(), 1);
        let pk1 = k.ntor_public().unwrap().clone();
        assert_eq!(pk1.id, [1; 20]);
        assert_eq!(k.ntor_v3_public().unwrap().id, [2; 32]);
        assert_eq!(k.ntor_v3_public().unwrap().pk, pk1.pk);
        k.with_tap_keys(|keys| assert_eq!(keys.len(), 1));

        k.rotate(s2.clone(), b.clone()).unwrap();
        assert_eq!(k.ntor_keys().len(), 2);
        assert_eq!(k.ntor_keys()[1].pk, pk1);
        assert_ne!(k.ntor_public().unwrap().pk, pk1.pk);
        assert_eq!(k.ntor_v3_keys()[1].pk.pk, pk1.pk);
        k.with_tap_keys(|keys| {
            assert_eq!(keys.len(), 2);
            assert_eq!(*keys[0], b);
            assert_eq!(*keys[1], a);
        });
        assert_eq!(k.tap_public(), b.to_public_key());

        // A bad key changes nothing.
        assert_eq!(
            k.rotate(s1.clone(), big.clone()),
            Err(HandshakeError::BadKey("onion key must be RSA-1024"))
        );
        assert_eq!(k.tap_public(), b.to_public_key());
        assert!(OnionKeys::new([1; 20], [2; 32], s2.clone(), big.clone()).is_err());
        let k = OnionKeys::new([1; 20], [2; 32], s2, a).unwrap();
        assert!(k.clone().with_previous_tap(big).is_err());
        let k = k.with_previous_tap(b).unwrap();
        k.with_tap_keys(|keys| assert_eq!(keys.len(), 2));
        // A previous ntor key, replaced by a second call.
        let k = k.with_previous_ntor(s1.clone());
        assert_eq!(k.ntor_keys().len(), 2);
        assert_eq!(k.ntor_keys()[1].pk.pk, PublicKey::from(&s1));
        let s3 = StaticSecret::random_from_rng(&mut rng);
        let k = k.with_previous_ntor(s3.clone());
        assert_eq!(k.ntor_keys().len(), 2);
        assert_eq!(k.ntor_v3_keys().len(), 2);
        assert_eq!(k.ntor_v3_keys()[1].pk.pk, PublicKey::from(&s3));
        assert_eq!(k.ntor_v3_keys()[1].pk.id, [2; 32]);
        let dbg = format!("{k:?}");
        assert!(dbg.contains("0101") && !dbg.contains("PrivateKey"));
    }
}
