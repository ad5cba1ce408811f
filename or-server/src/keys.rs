//! The relay's long-lived keys, kept in a private directory.
//!
//! | file | key | format |
//! |---|---|---|
//! | `secret_id_key` | RSA-1024 identity (`KP_relayid_rsa`) | PKCS#1 PEM, as C tor writes it (PKCS#8 PEM is read too) |
//! | `ed25519_master_id_secret_key.pem` | Ed25519 identity (`KP_relayid_ed`) | PKCS#8 PEM (RFC 8410) |
//! | `ed25519_signing_secret_key.pem` | Ed25519 signing key (`KP_relaysign_ed`) | PKCS#8 PEM |
//! | `secret_onion_key`, `secret_onion_key.old` | TAP onion key, current and previous (RSA-1024) | PKCS#1 PEM, as C tor |
//! | `secret_onion_key_ntor`, `secret_onion_key_ntor.old` | ntor onion key, current and previous (x25519) | C tor's tagged format: the NUL-padded 32-byte header `== c25519v1: onion ==`, the secret key, the public key |
//! | `state.toml` | creation times (Unix seconds) | TOML |
//!
//! The directory is created with mode 0700 and every file is written with mode 0600 (to a
//! temporary name, then renamed). Like C tor, the store refuses to load a directory or a key
//! file that gives any access to group or others.
//!
//! The TAP and ntor onion keys are rotated together: after
//! [`RotationPolicy::lifetime`] the current pair becomes the previous pair and a new pair is
//! made; the previous pair is kept for [`RotationPolicy::grace`] (clients with an old
//! descriptor still use it) and then deleted. The caller supplies the time and the RNG.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use onion_core::certs::{Ed25519Identity, RsaIdentity};
use rand_core::CryptoRng;
use rsa::PrivateKey;
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
use rsa::pkcs8::LineEnding;
use rsa::traits::PublicKeyParts;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use x25519_dalek::{PublicKey as X25519Public, StaticSecret};
use zeroize::Zeroizing;

/// File name of the RSA identity key.
pub const RSA_IDENTITY_FILE: &str = "secret_id_key";
/// File name of the Ed25519 identity (master) key.
pub const ED_IDENTITY_FILE: &str = "ed25519_master_id_secret_key.pem";
/// File name of the Ed25519 signing key.
pub const ED_SIGNING_FILE: &str = "ed25519_signing_secret_key.pem";
/// File name of the current TAP onion key.
pub const TAP_ONION_FILE: &str = "secret_onion_key";
/// File name of the previous TAP onion key.
pub const TAP_ONION_OLD_FILE: &str = "secret_onion_key.old";
/// File name of the current ntor onion key.
pub const NTOR_ONION_FILE: &str = "secret_onion_key_ntor";
/// File name of the previous ntor onion key.
pub const NTOR_ONION_OLD_FILE: &str = "secret_onion_key_ntor.old";
/// File name of the creation times.
pub const STATE_FILE: &str = "state.toml";
/// File name of an own network authority's relay-list signing key (Ed25519, PKCS#8 PEM).
pub const AUTHORITY_KEY_FILE: &str = "authority_signing_secret_key.pem";

/// Size of the RSA identity and TAP onion keys (tor-spec §1.1).
pub const RSA_KEY_BITS: usize = 1024;

/// C tor's header for an ntor onion key file (NUL-padded to 32 bytes).
const NTOR_FILE_TAG: &[u8] = b"== c25519v1: onion ==";
/// Length of the tagged-file header.
const TAGGED_HEADER_LEN: usize = 32;
/// Length of an ntor key file: header, secret key, public key.
const NTOR_FILE_LEN: usize = TAGGED_HEADER_LEN + 32 + 32;
/// Version of `state.toml`.
const STATE_VERSION: u32 = 1;

/// Why the key store could not be loaded, created or updated.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum KeyError {
    /// A file or directory could not be read, written, created or removed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A key file or the key directory gives access to group or others.
    #[error(
        "refusing to use {path}: mode {mode:04o} gives access to group or others \
         (run `chmod {fix} {path}`)"
    )]
    InsecurePermissions {
        /// The file or directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
        /// The mode it should have (`600` or `700`).
        fix: &'static str,
    },
    /// A key file could not be decoded.
    #[error("{path}: {reason}")]
    BadKeyFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: &'static str,
    },
    /// The state file could not be decoded.
    #[error("{path}: {reason}")]
    BadState {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A key could not be generated or encoded.
    #[error("cannot make {0}")]
    Generate(&'static str),
}

/// When onion keys are replaced and how long a replaced key stays usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationPolicy {
    /// How long an onion key is the current key.
    pub lifetime: Duration,
    /// How long a replaced onion key is kept.
    pub grace: Duration,
}

impl RotationPolicy {
    /// A policy of `lifetime_days` and `grace_days` days.
    pub fn from_days(lifetime_days: u32, grace_days: u32) -> Self {
        let day = 86_400;
        RotationPolicy {
            lifetime: Duration::from_secs(u64::from(lifetime_days) * day),
            grace: Duration::from_secs(u64::from(grace_days) * day),
        }
    }
}

impl Default for RotationPolicy {
    /// Seven days each, the configuration's defaults.
    fn default() -> Self {
        Self::from_days(7, 7)
    }
}

/// A TAP and ntor onion key pair, used and rotated together.
#[derive(Clone)]
pub struct OnionKeys {
    tap: PrivateKey,
    ntor: StaticSecret,
    ntor_public: X25519Public,
}

impl OnionKeys {
    fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Result<Self, KeyError> {
        let tap = generate_rsa(rng, "the TAP onion key")?;
        let ntor = StaticSecret::random_from_rng(rng);
        let ntor_public = X25519Public::from(&ntor);
        Ok(OnionKeys {
            tap,
            ntor,
            ntor_public,
        })
    }

    /// The TAP onion key (RSA-1024).
    pub fn tap(&self) -> &PrivateKey {
        &self.tap
    }

    /// The ntor onion secret key.
    pub fn ntor_secret(&self) -> &StaticSecret {
        &self.ntor
    }

    /// The ntor onion public key, as published in descriptors.
    pub fn ntor_public(&self) -> &X25519Public {
        &self.ntor_public
    }
}

impl std::fmt::Debug for OnionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnionKeys")
            .field("ntor_public", &hex::encode(self.ntor_public.as_bytes()))
            .finish_non_exhaustive()
    }
}

/// What [`KeyStore::rotate_if_due`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rotation {
    /// The current onion keys were replaced (and became the previous keys).
    pub rotated: bool,
    /// The previous onion keys had outlived the grace period and were deleted.
    pub dropped_previous: bool,
}

/// Creation times, in Unix seconds (`state.toml`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyState {
    /// Format version.
    version: u32,
    /// When the RSA identity key was made (or first seen).
    rsa_identity_created: u64,
    /// When the Ed25519 identity key was made (or first seen).
    ed_identity_created: u64,
    /// When the Ed25519 signing key was made (or first seen).
    ed_signing_created: u64,
    /// When the current onion keys were made.
    onion_created: u64,
    /// When the previous onion keys were replaced, if they are still kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    previous_onion_retired: Option<u64>,
}

impl KeyState {
    fn new(now: u64) -> Self {
        KeyState {
            version: STATE_VERSION,
            rsa_identity_created: now,
            ed_identity_created: now,
            ed_signing_created: now,
            onion_created: now,
            previous_onion_retired: None,
        }
    }
}

/// The relay's keys, loaded from (and saved to) a private directory.
pub struct KeyStore {
    dir: PathBuf,
    policy: RotationPolicy,
    rsa_identity: PrivateKey,
    rsa_fingerprint: RsaIdentity,
    ed_identity: SigningKey,
    ed_signing: SigningKey,
    current: OnionKeys,
    previous: Option<OnionKeys>,
    state: KeyState,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore")
            .field("dir", &self.dir)
            .field("rsa_fingerprint", &self.rsa_fingerprint)
            .field("ed_identity", &self.ed_identity_public())
            .field("current", &self.current)
            .field("previous", &self.previous)
            .finish_non_exhaustive()
    }
}

impl KeyStore {
    /// Load the keys in `dir`, making the directory and any missing key, with the default
    /// [`RotationPolicy`]. See [`KeyStore::load_or_create_with_policy`].
    pub fn load_or_create<R: CryptoRng + ?Sized>(
        dir: &Path,
        now: SystemTime,
        rng: &mut R,
    ) -> Result<Self, KeyError> {
        Self::load_or_create_with_policy(dir, RotationPolicy::default(), now, rng)
    }

    /// Load the keys in `dir`, making the directory (mode 0700) and any missing key (mode
    /// 0600). Fails if the directory or a key file is accessible to group or others, or if a
    /// file cannot be decoded. A missing current onion key (TAP or ntor) replaces both; a
    /// lone previous onion key is deleted. Does not rotate: call
    /// [`KeyStore::rotate_if_due`] for that.
    pub fn load_or_create_with_policy<R: CryptoRng + ?Sized>(
        dir: &Path,
        policy: RotationPolicy,
        now: SystemTime,
        rng: &mut R,
    ) -> Result<Self, KeyError> {
        ensure_private_dir(dir)?;
        let now_s = unix_secs(now);
        let state_path = dir.join(STATE_FILE);
        let saved_state = read_state(&state_path)?;
        let mut state = saved_state.clone().unwrap_or_else(|| KeyState::new(now_s));

        let rsa_path = dir.join(RSA_IDENTITY_FILE);
        let rsa_identity = match read_rsa(&rsa_path)? {
            Some(key) => key,
            None => {
                let key = generate_rsa(rng, "the RSA identity key")?;
                write_rsa(&rsa_path, &key)?;
                state.rsa_identity_created = now_s;
                key
            }
        };
        let rsa_fingerprint = RsaIdentity::from_public_key(rsa_identity.as_public_key())
            .map_err(|_| KeyError::Generate("the RSA fingerprint"))?;

        let ed_identity = load_or_make_ed(&dir.join(ED_IDENTITY_FILE), rng, || {
            state.ed_identity_created = now_s;
        })?;
        let ed_signing = load_or_make_ed(&dir.join(ED_SIGNING_FILE), rng, || {
            state.ed_signing_created = now_s;
        })?;

        let current = match (
            read_rsa(&dir.join(TAP_ONION_FILE))?,
            read_ntor(&dir.join(NTOR_ONION_FILE))?,
        ) {
            (Some(tap), Some((ntor, ntor_public))) => OnionKeys {
                tap,
                ntor,
                ntor_public,
            },
            _ => {
                let keys = OnionKeys::generate(rng)?;
                write_onion_keys(dir, &keys, TAP_ONION_FILE, NTOR_ONION_FILE)?;
                state.onion_created = now_s;
                keys
            }
        };

        let previous = match (
            read_rsa(&dir.join(TAP_ONION_OLD_FILE))?,
            read_ntor(&dir.join(NTOR_ONION_OLD_FILE))?,
        ) {
            (Some(tap), Some((ntor, ntor_public))) => {
                // Old keys with no recorded retirement time: keep them a full grace period.
                state.previous_onion_retired.get_or_insert(now_s);
                Some(OnionKeys {
                    tap,
                    ntor,
                    ntor_public,
                })
            }
            _ => {
                remove_if_exists(&dir.join(TAP_ONION_OLD_FILE))?;
                remove_if_exists(&dir.join(NTOR_ONION_OLD_FILE))?;
                state.previous_onion_retired = None;
                None
            }
        };

        if saved_state.as_ref() != Some(&state) {
            write_state(&state_path, &state)?;
        }
        Ok(KeyStore {
            dir: dir.to_owned(),
            policy,
            rsa_identity,
            rsa_fingerprint,
            ed_identity,
            ed_signing,
            current,
            previous,
            state,
        })
    }

    /// Delete the previous onion keys once their grace period has passed, and replace the
    /// current ones once their lifetime has passed (they become the previous keys, kept for
    /// the grace period from `now`). Files and `state.toml` are updated.
    pub fn rotate_if_due<R: CryptoRng + ?Sized>(
        &mut self,
        now: SystemTime,
        rng: &mut R,
    ) -> Result<Rotation, KeyError> {
        let now_s = unix_secs(now);
        let mut done = Rotation::default();
        if let Some(retired) = self.state.previous_onion_retired
            && now_s >= retired.saturating_add(self.policy.grace.as_secs())
        {
            remove_if_exists(&self.dir.join(TAP_ONION_OLD_FILE))?;
            remove_if_exists(&self.dir.join(NTOR_ONION_OLD_FILE))?;
            self.previous = None;
            self.state.previous_onion_retired = None;
            done.dropped_previous = true;
        }
        if now_s
            >= self
                .state
                .onion_created
                .saturating_add(self.policy.lifetime.as_secs())
        {
            let fresh = OnionKeys::generate(rng)?;
            write_onion_keys(
                &self.dir,
                &self.current,
                TAP_ONION_OLD_FILE,
                NTOR_ONION_OLD_FILE,
            )?;
            write_onion_keys(&self.dir, &fresh, TAP_ONION_FILE, NTOR_ONION_FILE)?;
            self.previous = Some(std::mem::replace(&mut self.current, fresh));
            self.state.previous_onion_retired = Some(now_s);
            self.state.onion_created = now_s;
            done.rotated = true;
        }
        if done != Rotation::default() {
            write_state(&self.dir.join(STATE_FILE), &self.state)?;
        }
        Ok(done)
    }

    /// The next time [`KeyStore::rotate_if_due`] has something to do.
    pub fn next_rotation_check(&self) -> SystemTime {
        let rotate = self
            .state
            .onion_created
            .saturating_add(self.policy.lifetime.as_secs());
        let drop = self
            .state
            .previous_onion_retired
            .map_or(u64::MAX, |r| r.saturating_add(self.policy.grace.as_secs()));
        from_unix_secs(rotate.min(drop))
    }

    /// The key directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The rotation policy.
    pub fn rotation_policy(&self) -> RotationPolicy {
        self.policy
    }

    /// The RSA-1024 identity key.
    pub fn rsa_identity(&self) -> &PrivateKey {
        &self.rsa_identity
    }

    /// The relay's fingerprint: SHA-1 of the DER (PKCS#1) RSA identity public key; its
    /// `Display` is 40 uppercase hex digits.
    pub fn rsa_fingerprint(&self) -> RsaIdentity {
        self.rsa_fingerprint
    }

    /// The Ed25519 identity (master) key.
    pub fn ed_identity(&self) -> &SigningKey {
        &self.ed_identity
    }

    /// The Ed25519 identity public key; its `Display` is unpadded base64, as in Tor
    /// documents.
    pub fn ed_identity_public(&self) -> Ed25519Identity {
        Ed25519Identity::from(self.ed_identity.verifying_key())
    }

    /// The Ed25519 signing key, certified by the identity key in CERTS type 4.
    pub fn ed_signing(&self) -> &SigningKey {
        &self.ed_signing
    }

    /// The current onion keys.
    pub fn onion_keys(&self) -> &OnionKeys {
        &self.current
    }

    /// The previous onion keys, while in their grace period.
    pub fn previous_onion_keys(&self) -> Option<&OnionKeys> {
        self.previous.as_ref()
    }

    /// When the current onion keys were made.
    pub fn onion_keys_created(&self) -> SystemTime {
        from_unix_secs(self.state.onion_created)
    }

    /// When the previous onion keys were replaced, if they are still kept.
    pub fn previous_onion_keys_retired(&self) -> Option<SystemTime> {
        self.state.previous_onion_retired.map(from_unix_secs)
    }

    /// When the Ed25519 signing key was made (or first seen).
    pub fn ed_signing_created(&self) -> SystemTime {
        from_unix_secs(self.state.ed_signing_created)
    }
}

/// Seconds since the Unix epoch (0 for earlier times).
pub fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn from_unix_secs(secs: u64) -> SystemTime {
    UNIX_EPOCH
        .checked_add(Duration::from_secs(secs))
        .unwrap_or(UNIX_EPOCH)
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Create `dir` with mode 0700 if it is missing; refuse it if group or others have access.
pub fn ensure_private_dir(dir: &Path) -> Result<(), KeyError> {
    match fs::metadata(dir) {
        Ok(meta) => {
            if !meta.is_dir() {
                return Err(KeyError::Io {
                    path: dir.to_owned(),
                    source: std::io::Error::new(ErrorKind::NotADirectory, "not a directory"),
                });
            }
            check_mode(dir, meta.permissions().mode(), "700")
        }
        Err(e) if e.kind() == ErrorKind::NotFound => DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err(dir)),
        Err(e) => Err(io_err(dir)(e)),
    }
}

fn check_mode(path: &Path, mode: u32, fix: &'static str) -> Result<(), KeyError> {
    if mode & 0o077 != 0 {
        return Err(KeyError::InsecurePermissions {
            path: path.to_owned(),
            mode: mode & 0o7777,
            fix,
        });
    }
    Ok(())
}

/// Read a private file: `None` if it does not exist, an error if group or others have
/// access to it.
fn read_private(path: &Path) -> Result<Option<Zeroizing<Vec<u8>>>, KeyError> {
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path)(e)),
    };
    check_mode(path, meta.permissions().mode(), "600")?;
    fs::read(path)
        .map(|b| Some(Zeroizing::new(b)))
        .map_err(io_err(path))
}

/// Write a file with mode 0600: to `path.tmp`, then renamed over `path`.
fn write_private(path: &Path, contents: &[u8]) -> Result<(), KeyError> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    remove_if_exists(&tmp)?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    file.write_all(contents).map_err(io_err(&tmp))?;
    file.sync_all().map_err(io_err(&tmp))?;
    drop(file);
    fs::rename(&tmp, path).map_err(io_err(path))
}

fn remove_if_exists(path: &Path) -> Result<(), KeyError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(io_err(path)(e)),
        _ => Ok(()),
    }
}

fn generate_rsa<R: CryptoRng + ?Sized>(
    rng: &mut R,
    what: &'static str,
) -> Result<PrivateKey, KeyError> {
    PrivateKey::new(rng, RSA_KEY_BITS).map_err(|_| KeyError::Generate(what))
}

/// Read an RSA-1024 private key in PKCS#1 (`RSA PRIVATE KEY`) or PKCS#8 (`PRIVATE KEY`)
/// PEM.
fn read_rsa(path: &Path) -> Result<Option<PrivateKey>, KeyError> {
    let Some(bytes) = read_private(path)? else {
        return Ok(None);
    };
    let bad = |reason| KeyError::BadKeyFile {
        path: path.to_owned(),
        reason,
    };
    let text = std::str::from_utf8(&bytes).map_err(|_| bad("not a PEM file"))?;
    let key = if text.contains("-----BEGIN RSA PRIVATE KEY-----") {
        PrivateKey::from_pkcs1_pem(text).map_err(|_| bad("invalid PKCS#1 RSA private key"))?
    } else if text.contains("-----BEGIN PRIVATE KEY-----") {
        rsa::pkcs8::DecodePrivateKey::from_pkcs8_pem(text)
            .map_err(|_| bad("invalid PKCS#8 RSA private key"))?
    } else {
        return Err(bad("not an RSA private key PEM file"));
    };
    if key.as_public_key().n().bit_width() != 1024 {
        return Err(bad("RSA key is not 1024 bits"));
    }
    Ok(Some(key))
}

fn write_rsa(path: &Path, key: &PrivateKey) -> Result<(), KeyError> {
    let pem = key
        .to_pkcs1_pem(LineEnding::LF)
        .map_err(|_| KeyError::Generate("the PKCS#1 encoding of an RSA key"))?;
    write_private(path, pem.as_bytes())
}

fn load_or_make_ed<R: CryptoRng + ?Sized>(
    path: &Path,
    rng: &mut R,
    on_create: impl FnOnce(),
) -> Result<SigningKey, KeyError> {
    if let Some(bytes) = read_private(path)? {
        let bad = |reason| KeyError::BadKeyFile {
            path: path.to_owned(),
            reason,
        };
        let text = std::str::from_utf8(&bytes).map_err(|_| bad("not a PEM file"))?;
        return SigningKey::from_pkcs8_pem(text)
            .map_err(|_| bad("invalid PKCS#8 Ed25519 private key"));
    }
    let mut seed = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(seed.as_mut());
    let key = SigningKey::from_bytes(&seed);
    // PKCS#8 v1 (the seed only): OpenSSL 3.0 does not read the v2 form with the public key.
    let pem = ed25519_dalek::pkcs8::KeypairBytes {
        secret_key: *seed,
        public_key: None,
    }
    .to_pkcs8_pem(LineEnding::LF)
    .map_err(|_| KeyError::Generate("the PKCS#8 encoding of an Ed25519 key"))?;
    write_private(path, pem.as_bytes())?;
    on_create();
    Ok(key)
}

/// Load the own network authority's relay-list signing key from `dir` (a key directory),
/// or create it (mode 0600; `dir` is created with mode 0700 if missing).
pub fn load_or_create_authority_key<R: CryptoRng + ?Sized>(
    dir: &Path,
    rng: &mut R,
) -> Result<SigningKey, KeyError> {
    ensure_private_dir(dir)?;
    load_or_make_ed(&dir.join(AUTHORITY_KEY_FILE), rng, || {})
}

/// Read an ntor onion key in C tor's tagged format, checking that the stored public key
/// belongs to the secret key.
fn read_ntor(path: &Path) -> Result<Option<(StaticSecret, X25519Public)>, KeyError> {
    let Some(bytes) = read_private(path)? else {
        return Ok(None);
    };
    let bad = |reason| KeyError::BadKeyFile {
        path: path.to_owned(),
        reason,
    };
    if bytes.len() != NTOR_FILE_LEN {
        return Err(bad("ntor key file is not 96 bytes long"));
    }
    let (header, rest) = bytes
        .split_at_checked(TAGGED_HEADER_LEN)
        .ok_or(bad("ntor key file too short"))?;
    if header != ntor_header() {
        return Err(bad("ntor key file header is not \"== c25519v1: onion ==\""));
    }
    let (secret, public) = rest
        .split_at_checked(32)
        .ok_or(bad("ntor key file too short"))?;
    let secret: [u8; 32] = secret
        .try_into()
        .map_err(|_| bad("bad secret key length"))?;
    let public: [u8; 32] = public
        .try_into()
        .map_err(|_| bad("bad public key length"))?;
    let secret = StaticSecret::from(secret);
    let derived = X25519Public::from(&secret);
    if derived.as_bytes() != &public {
        return Err(bad("ntor public key does not match the secret key"));
    }
    Ok(Some((secret, derived)))
}

fn ntor_header() -> [u8; TAGGED_HEADER_LEN] {
    let mut header = [0u8; TAGGED_HEADER_LEN];
    for (dst, src) in header.iter_mut().zip(NTOR_FILE_TAG) {
        *dst = *src;
    }
    header
}

fn write_ntor(path: &Path, secret: &StaticSecret, public: &X25519Public) -> Result<(), KeyError> {
    let mut contents = Zeroizing::new(Vec::with_capacity(NTOR_FILE_LEN));
    contents.extend_from_slice(&ntor_header());
    contents.extend_from_slice(secret.as_bytes());
    contents.extend_from_slice(public.as_bytes());
    write_private(path, &contents)
}

fn write_onion_keys(
    dir: &Path,
    keys: &OnionKeys,
    tap_name: &str,
    ntor_name: &str,
) -> Result<(), KeyError> {
    write_rsa(&dir.join(tap_name), &keys.tap)?;
    write_ntor(&dir.join(ntor_name), &keys.ntor, &keys.ntor_public)
}

fn read_state(path: &Path) -> Result<Option<KeyState>, KeyError> {
    let Some(bytes) = read_private(path)? else {
        return Ok(None);
    };
    let bad = |reason: String| KeyError::BadState {
        path: path.to_owned(),
        reason,
    };
    let text = std::str::from_utf8(&bytes).map_err(|_| bad("not UTF-8".to_owned()))?;
    let state: KeyState = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
    if state.version != STATE_VERSION {
        return Err(bad(format!("unknown version {}", state.version)));
    }
    Ok(Some(state))
}

fn write_state(path: &Path, state: &KeyState) -> Result<(), KeyError> {
    let text = toml::to_string(state).map_err(|_| KeyError::Generate("the key state file"))?;
    write_private(path, text.as_bytes())
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::testing::{TempDir, seeded_rng, test_rng};

    const DAY: u64 = 86_400;
    /// An arbitrary "now": 2026-01-01T00:00:00Z.
    const T0: u64 = 1_767_225_600;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    fn chmod(path: &Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    /// An RSA-1024 key made by `openssl genrsa -traditional 1024` (PKCS#1 PEM).
    const OPENSSL_RSA_PKCS1: &str = "-----BEGIN RSA PRIVATE KEY-----
MIICXQIBAAKBgQDTfxaFTBfQqC7wpFHqUg9/brtBD1eER20sqy2c3gPKeL5sThVy
UXwI8trxz+0HKf79PIxbxZ44V9PZu0XloXRBFWb6mRBr8mY4QTnhaX6djLZEISC7
w2kyZtFUecBPq9m7Z7dSI9R6u2mmoczKxA+z5v1Yhul5NQok8noeULmDGwIDAQAB
AoGAQFBAL+6wu0G5bHH7eu7TSaQJi0I4EcCKoW+4YiBdNL+84EBqYyYGOs5m5+ub
n3cU1DsKT4nrkCSdBnPdUHPlXqtu6+X4N7HTDi0tZURx5NOtKGiWjlARvOcCeGyX
aPqNH0IqKs/fabkD8sF7BDz/zQBTw/sT0jJq2lrWgcsB3jkCQQD394DVJpKEDo2i
yWoLL9gNc0HHhSUlaos4MKnjHbWnlmBLLBuX2sueEHwLQzRAPNSSmpzCXUYE4pFj
qVSh/v9FAkEA2lkeutsYFBercCLsrS144O1T8tSfxJ7tkQHdC47Wd/MFns46l7ac
CI41cy0q3lvoxP5DmWOUIXv5lOSwvhvu3wJASQj+SknFJ949e3AFquvZoASNoF2o
FkAuZ0t2Dm4Gvii9jgaczfpktNa4In0V28HO/qtJdroQUIoHNqp+QgSgXQJBALeY
bDBt/UcXx/2YQC41qAhpRkdO5bBsehGN4ZHQXyGo5LbtbXMYBwdinCrmdb9WxNiv
e6PEiU/GcMvzp3GTBz0CQQDHNdRvKIWoCish+MQbp+RDMNUssBeGo4YPxvt7x/Gz
nvn34WWcDCpZ2xDFu7Pzy0/XNLsKqVn+nNweGCQr6ntX
-----END RSA PRIVATE KEY-----
";
    /// The same key as `openssl pkcs8 -topk8 -nocrypt` writes it.
    const OPENSSL_RSA_PKCS8: &str = "-----BEGIN PRIVATE KEY-----
MIICdwIBADANBgkqhkiG9w0BAQEFAASCAmEwggJdAgEAAoGBANN/FoVMF9CoLvCk
UepSD39uu0EPV4RHbSyrLZzeA8p4vmxOFXJRfAjy2vHP7Qcp/v08jFvFnjhX09m7
ReWhdEEVZvqZEGvyZjhBOeFpfp2MtkQhILvDaTJm0VR5wE+r2btnt1Ij1Hq7aaah
zMrED7Pm/ViG6Xk1CiTyeh5QuYMbAgMBAAECgYBAUEAv7rC7Qblscft67tNJpAmL
QjgRwIqhb7hiIF00v7zgQGpjJgY6zmbn65ufdxTUOwpPieuQJJ0Gc91Qc+Veq27r
5fg3sdMOLS1lRHHk060oaJaOUBG85wJ4bJdo+o0fQioqz99puQPywXsEPP/NAFPD
+xPSMmraWtaBywHeOQJBAPf3gNUmkoQOjaLJagsv2A1zQceFJSVqizgwqeMdtaeW
YEssG5fay54QfAtDNEA81JKanMJdRgTikWOpVKH+/0UCQQDaWR662xgUF6twIuyt
LXjg7VPy1J/Enu2RAd0LjtZ38wWezjqXtpwIjjVzLSreW+jE/kOZY5Qhe/mU5LC+
G+7fAkBJCP5KScUn3j17cAWq69mgBI2gXagWQC5nS3YObga+KL2OBpzN+mS01rgi
fRXbwc7+q0l2uhBQigc2qn5CBKBdAkEAt5hsMG39RxfH/ZhALjWoCGlGR07lsGx6
EY3hkdBfIajktu1tcxgHB2KcKuZ1v1bE2K97o8SJT8Zwy/OncZMHPQJBAMc11G8o
hagKKyH4xBun5EMw1SywF4ajhg/G+3vH8bOe+ffhZZwMKlnbEMW7s/PLT9c0uwqp
Wf6c3B4YJCvqe1c=
-----END PRIVATE KEY-----
";
    /// `openssl rsa -RSAPublicKey_out -outform DER | sha1sum` of that key.
    const OPENSSL_RSA_FINGERPRINT: &str = "3BEA9895E0E0B2AEEE578528BE4953F5F9590F0F";

    /// RFC 8410 §10.3's Ed25519 private key; its public key (RFC 8410 §10.1, and `openssl
    /// pkey -pubout`) in unpadded base64.
    const RFC8410_ED25519: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC
-----END PRIVATE KEY-----
";
    const RFC8410_ED25519_PUBLIC: &str = "Gb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE";

    /// RFC 7748 §6.1: Alice's x25519 private and public keys.
    const RFC7748_ALICE_SECRET: &str =
        "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a";
    const RFC7748_ALICE_PUBLIC: &str =
        "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a";

    fn write_0600(path: &Path, contents: &[u8]) {
        fs::write(path, contents).unwrap();
        chmod(path, 0o600);
    }

    fn ntor_file(secret_hex: &str, public_hex: &str) -> Vec<u8> {
        let mut f = b"== c25519v1: onion ==".to_vec();
        f.resize(32, 0);
        f.extend(hex::decode(secret_hex).unwrap());
        f.extend(hex::decode(public_hex).unwrap());
        f
    }

    const ALL_FILES: [&str; 6] = [
        RSA_IDENTITY_FILE,
        ED_IDENTITY_FILE,
        ED_SIGNING_FILE,
        TAP_ONION_FILE,
        NTOR_ONION_FILE,
        STATE_FILE,
    ];

    #[test]
    fn creates_private_dir_and_files() {
        let tmp = TempDir::new("keys-create");
        let dir = tmp.path().join("data/keys");
        let ks = KeyStore::load_or_create(&dir, at(T0), &mut test_rng()).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&tmp.path().join("data")), 0o700);
        for name in ALL_FILES {
            assert_eq!(mode(&dir.join(name)), 0o600, "{name}");
        }
        assert!(!dir.join(TAP_ONION_OLD_FILE).exists());
        assert!(!dir.join(NTOR_ONION_OLD_FILE).exists());
        let leftovers: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| !ALL_FILES.contains(&n.as_str()))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");

        // RSA keys are 1024 bits and written as PKCS#1, like C tor's.
        let id_pem = fs::read_to_string(dir.join(RSA_IDENTITY_FILE)).unwrap();
        assert!(id_pem.starts_with("-----BEGIN RSA PRIVATE KEY-----\n"));
        assert_eq!(ks.rsa_identity().as_public_key().n().bit_width(), 1024);
        assert_eq!(ks.onion_keys().tap().as_public_key().n().bit_width(), 1024);
        assert_ne!(ks.rsa_identity(), ks.onion_keys().tap());
        // Ed25519 keys are PKCS#8 v1, laid out like RFC 8410's example (OpenSSL reads them).
        for name in [ED_IDENTITY_FILE, ED_SIGNING_FILE] {
            let pem = fs::read_to_string(dir.join(name)).unwrap();
            assert!(
                pem.starts_with("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIE"),
                "{pem}"
            );
        }
        // The ntor key file is C tor's tagged format.
        let ntor = fs::read(dir.join(NTOR_ONION_FILE)).unwrap();
        assert_eq!(ntor.len(), 96);
        assert_eq!(&ntor[..21], b"== c25519v1: onion ==");
        assert!(ntor[21..32].iter().all(|&b| b == 0));
        assert_eq!(&ntor[32..64], ks.onion_keys().ntor_secret().as_bytes());
        assert_eq!(&ntor[64..], ks.onion_keys().ntor_public().as_bytes());
        // Identity and signing keys differ.
        assert_ne!(
            ks.ed_identity().verifying_key(),
            ks.ed_signing().verifying_key()
        );

        let fp = ks.rsa_fingerprint().to_string();
        assert_eq!(fp.len(), 40);
        assert!(
            fp.bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
        );
        assert!(ks.previous_onion_keys().is_none());
        assert_eq!(ks.onion_keys_created(), at(T0));
        assert_eq!(ks.ed_signing_created(), at(T0));
        assert_eq!(ks.next_rotation_check(), at(T0 + 7 * DAY));
    }

    #[test]
    fn reload_gives_same_keys() {
        let tmp = TempDir::new("keys-reload");
        let dir = tmp.path().join("keys");
        let a = KeyStore::load_or_create(&dir, at(T0), &mut test_rng()).unwrap();
        let state = fs::read(dir.join(STATE_FILE)).unwrap();
        let b = KeyStore::load_or_create(&dir, at(T0 + DAY), &mut test_rng()).unwrap();
        assert_eq!(a.rsa_fingerprint(), b.rsa_fingerprint());
        assert_eq!(a.ed_identity_public(), b.ed_identity_public());
        assert_eq!(a.rsa_identity(), b.rsa_identity());
        assert_eq!(a.ed_signing().to_bytes(), b.ed_signing().to_bytes());
        assert_eq!(a.onion_keys().tap(), b.onion_keys().tap());
        assert_eq!(a.onion_keys().ntor_public(), b.onion_keys().ntor_public());
        assert_eq!(
            a.onion_keys().ntor_secret().as_bytes(),
            b.onion_keys().ntor_secret().as_bytes()
        );
        // The creation times are the first run's, and the state file is not rewritten.
        assert_eq!(b.onion_keys_created(), at(T0));
        assert_eq!(fs::read(dir.join(STATE_FILE)).unwrap(), state);
    }

    #[test]
    fn loads_keys_made_by_other_tools() {
        let tmp = TempDir::new("keys-vectors");
        let dir = tmp.path().join("keys");
        ensure_private_dir(&dir).unwrap();
        write_0600(&dir.join(RSA_IDENTITY_FILE), OPENSSL_RSA_PKCS1.as_bytes());
        write_0600(&dir.join(ED_IDENTITY_FILE), RFC8410_ED25519.as_bytes());
        write_0600(
            &dir.join(NTOR_ONION_FILE),
            &ntor_file(RFC7748_ALICE_SECRET, RFC7748_ALICE_PUBLIC),
        );
        write_0600(&dir.join(TAP_ONION_FILE), OPENSSL_RSA_PKCS8.as_bytes());
        let ks = KeyStore::load_or_create(&dir, at(T0), &mut test_rng()).unwrap();
        assert_eq!(ks.rsa_fingerprint().to_string(), OPENSSL_RSA_FINGERPRINT);
        assert_eq!(ks.ed_identity_public().to_string(), RFC8410_ED25519_PUBLIC);
        assert_eq!(
            hex::encode(ks.onion_keys().ntor_public().as_bytes()),
            RFC7748_ALICE_PUBLIC
        );
        // The PKCS#8 TAP key is the same RSA key.
        assert_eq!(ks.onion_keys().tap(), ks.rsa_identity());
        // The given files are untouched; only the missing signing key and state were made.
        assert_eq!(
            fs::read_to_string(dir.join(RSA_IDENTITY_FILE)).unwrap(),
            OPENSSL_RSA_PKCS1
        );
        assert_eq!(mode(&dir.join(ED_SIGNING_FILE)), 0o600);
        assert_eq!(mode(&dir.join(STATE_FILE)), 0o600);
    }

    #[test]
    fn refuses_group_or_other_access() {
        let tmp = TempDir::new("keys-perms");
        let dir = tmp.path().join("keys");
        KeyStore::load_or_create(&dir, at(T0), &mut test_rng()).unwrap();
        for name in [
            RSA_IDENTITY_FILE,
            ED_IDENTITY_FILE,
            NTOR_ONION_FILE,
            STATE_FILE,
        ] {
            for bad in [0o640, 0o604, 0o660] {
                let path = dir.join(name);
                chmod(&path, bad);
                match KeyStore::load_or_create(&dir, at(T0), &mut test_rng()).unwrap_err() {
                    KeyError::InsecurePermissions { path: p, mode, fix } => {
                        assert_eq!((p, mode, fix), (path.clone(), bad, "600"));
                    }
                    e => panic!("{name} {bad:o}: {e}"),
                }
                chmod(&path, 0o600);
            }
        }
        chmod(&dir, 0o750);
        let err = KeyStore::load_or_create(&dir, at(T0), &mut test_rng()).unwrap_err();
        assert!(
            matches!(
                &err,
                KeyError::InsecurePermissions {
                    mode: 0o750,
                    fix: "700",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("chmod 700"), "{err}");
        chmod(&dir, 0o700);
        KeyStore::load_or_create(&dir, at(T0), &mut test_rng()).unwrap();
    }

    #[test]
    fn rotation_keeps_previous_for_grace_then_drops_it() {
        let tmp = TempDir::new("keys-rotate");
        let dir = tmp.path().join("keys");
        let policy = RotationPolicy::from_days(7, 3);
        let mut rng = seeded_rng(7);
        let mut ks = KeyStore::load_or_create_with_policy(&dir, policy, at(T0), &mut rng).unwrap();
        let first = ks.onion_keys().clone();
        let fp = ks.rsa_fingerprint();

        // Not yet due.
        let r = ks.rotate_if_due(at(T0 + 7 * DAY - 1), &mut rng).unwrap();
        assert_eq!(r, Rotation::default());
        assert_eq!(ks.onion_keys().ntor_public(), first.ntor_public());

        // Due: the current keys become the previous keys.
        let r = ks.rotate_if_due(at(T0 + 7 * DAY), &mut rng).unwrap();
        assert_eq!(
            r,
            Rotation {
                rotated: true,
                dropped_previous: false
            }
        );
        let second = ks.onion_keys().clone();
        assert_ne!(second.ntor_public(), first.ntor_public());
        assert_ne!(second.tap(), first.tap());
        let prev = ks.previous_onion_keys().unwrap();
        assert_eq!(prev.ntor_public(), first.ntor_public());
        assert_eq!(prev.tap(), first.tap());
        assert_eq!(ks.rsa_fingerprint(), fp, "identity never rotates");
        assert_eq!(mode(&dir.join(TAP_ONION_OLD_FILE)), 0o600);
        assert_eq!(mode(&dir.join(NTOR_ONION_OLD_FILE)), 0o600);
        assert_eq!(ks.previous_onion_keys_retired(), Some(at(T0 + 7 * DAY)));
        assert_eq!(ks.next_rotation_check(), at(T0 + 10 * DAY));

        // A restart within the grace period loads both pairs.
        let reloaded =
            KeyStore::load_or_create_with_policy(&dir, policy, at(T0 + 8 * DAY), &mut rng).unwrap();
        assert_eq!(reloaded.onion_keys().ntor_public(), second.ntor_public());
        assert_eq!(
            reloaded.previous_onion_keys().unwrap().ntor_public(),
            first.ntor_public()
        );
        assert_eq!(reloaded.previous_onion_keys().unwrap().tap(), first.tap());
        assert_eq!(
            reloaded.previous_onion_keys_retired(),
            Some(at(T0 + 7 * DAY))
        );

        // Still within the grace period.
        let r = ks.rotate_if_due(at(T0 + 10 * DAY - 1), &mut rng).unwrap();
        assert_eq!(r, Rotation::default());
        assert!(ks.previous_onion_keys().is_some());

        // Grace period over: the previous keys are deleted.
        let r = ks.rotate_if_due(at(T0 + 10 * DAY), &mut rng).unwrap();
        assert_eq!(
            r,
            Rotation {
                rotated: false,
                dropped_previous: true
            }
        );
        assert!(ks.previous_onion_keys().is_none());
        assert!(!dir.join(TAP_ONION_OLD_FILE).exists());
        assert!(!dir.join(NTOR_ONION_OLD_FILE).exists());
        assert_eq!(ks.onion_keys().ntor_public(), second.ntor_public());
        assert_eq!(ks.next_rotation_check(), at(T0 + 14 * DAY));
        let reloaded =
            KeyStore::load_or_create_with_policy(&dir, policy, at(T0 + 11 * DAY), &mut rng)
                .unwrap();
        assert!(reloaded.previous_onion_keys().is_none());
        assert_eq!(reloaded.onion_keys().ntor_public(), second.ntor_public());
        assert_eq!(reloaded.onion_keys_created(), at(T0 + 7 * DAY));
    }

    #[test]
    fn late_rotation_drops_and_rotates_at_once() {
        let tmp = TempDir::new("keys-late");
        let dir = tmp.path().join("keys");
        let mut rng = seeded_rng(8);
        let mut ks = KeyStore::load_or_create(&dir, at(T0), &mut rng).unwrap();
        ks.rotate_if_due(at(T0 + 7 * DAY), &mut rng).unwrap();
        let second = ks.onion_keys().clone();
        // Asleep for a month: the old previous pair goes, the current pair becomes previous.
        let r = ks.rotate_if_due(at(T0 + 40 * DAY), &mut rng).unwrap();
        assert_eq!(
            r,
            Rotation {
                rotated: true,
                dropped_previous: true
            }
        );
        assert_eq!(
            ks.previous_onion_keys().unwrap().ntor_public(),
            second.ntor_public()
        );
        assert_eq!(ks.next_rotation_check(), at(T0 + 47 * DAY));
    }

    #[test]
    fn missing_current_onion_key_replaces_the_pair() {
        let tmp = TempDir::new("keys-missing");
        let dir = tmp.path().join("keys");
        let a = KeyStore::load_or_create(&dir, at(T0), &mut test_rng()).unwrap();
        fs::remove_file(dir.join(NTOR_ONION_FILE)).unwrap();
        let b = KeyStore::load_or_create(&dir, at(T0 + DAY), &mut test_rng()).unwrap();
        assert_eq!(a.rsa_fingerprint(), b.rsa_fingerprint());
        assert_ne!(a.onion_keys().tap(), b.onion_keys().tap());
        assert_ne!(a.onion_keys().ntor_public(), b.onion_keys().ntor_public());
        assert_eq!(b.onion_keys_created(), at(T0 + DAY));
    }

    #[test]
    fn lone_previous_key_is_deleted() {
        let tmp = TempDir::new("keys-lone");
        let dir = tmp.path().join("keys");
        KeyStore::load_or_create(&dir, at(T0), &mut test_rng()).unwrap();
        write_0600(&dir.join(TAP_ONION_OLD_FILE), OPENSSL_RSA_PKCS1.as_bytes());
        let ks = KeyStore::load_or_create(&dir, at(T0), &mut test_rng()).unwrap();
        assert!(ks.previous_onion_keys().is_none());
        assert!(!dir.join(TAP_ONION_OLD_FILE).exists());
    }

    #[test]
    fn rejects_bad_key_files() {
        let tmp = TempDir::new("keys-bad");
        let dir = tmp.path().join("keys");
        KeyStore::load_or_create(&dir, at(T0), &mut test_rng()).unwrap();
        let good_ntor = fs::read(dir.join(NTOR_ONION_FILE)).unwrap();
        let mut wrong_public = ntor_file(RFC7748_ALICE_SECRET, RFC7748_ALICE_PUBLIC);
        wrong_public[95] ^= 1;
        let mut wrong_tag = ntor_file(RFC7748_ALICE_SECRET, RFC7748_ALICE_PUBLIC);
        wrong_tag[3] = b'x';
        let big_rsa = PrivateKey::new(&mut seeded_rng(3), 2048)
            .unwrap()
            .to_pkcs1_pem(LineEnding::LF)
            .unwrap();
        let cases: [(&str, Vec<u8>, &str); 7] = [
            (
                NTOR_ONION_FILE,
                wrong_public,
                "ntor public key does not match the secret key",
            ),
            (
                NTOR_ONION_FILE,
                wrong_tag,
                "ntor key file header is not \"== c25519v1: onion ==\"",
            ),
            (
                NTOR_ONION_FILE,
                good_ntor[..95].to_vec(),
                "ntor key file is not 96 bytes long",
            ),
            (
                RSA_IDENTITY_FILE,
                big_rsa.as_bytes().to_vec(),
                "RSA key is not 1024 bits",
            ),
            (
                RSA_IDENTITY_FILE,
                RFC8410_ED25519.as_bytes().to_vec(),
                "invalid PKCS#8 RSA private key",
            ),
            (
                TAP_ONION_FILE,
                b"garbage".to_vec(),
                "not an RSA private key PEM file",
            ),
            (
                ED_SIGNING_FILE,
                OPENSSL_RSA_PKCS8.as_bytes().to_vec(),
                "invalid PKCS#8 Ed25519 private key",
            ),
        ];
        for (name, contents, reason) in cases {
            let path = dir.join(name);
            let saved = fs::read(&path).unwrap();
            write_0600(&path, &contents);
            match KeyStore::load_or_create(&dir, at(T0), &mut test_rng()).unwrap_err() {
                KeyError::BadKeyFile { path: p, reason: r } => {
                    assert_eq!((p, r), (path.clone(), reason));
                }
                e => panic!("{name}: {e}"),
            }
            write_0600(&path, &saved);
        }
        KeyStore::load_or_create(&dir, at(T0), &mut test_rng()).unwrap();
    }

    #[test]
    fn rejects_bad_state_file() {
        let tmp = TempDir::new("keys-state");
        let dir = tmp.path().join("keys");
        KeyStore::load_or_create(&dir, at(T0), &mut test_rng()).unwrap();
        let path = dir.join(STATE_FILE);
        let good = fs::read_to_string(&path).unwrap();
        for bad in [
            good.replace("version = 1", "version = 2"),
            good.replace("onion_created", "onion_made"),
            "not toml".to_owned(),
        ] {
            write_0600(&path, bad.as_bytes());
            let err = KeyStore::load_or_create(&dir, at(T0), &mut test_rng()).unwrap_err();
            assert!(
                matches!(&err, KeyError::BadState { path: p, .. } if *p == path),
                "{err}"
            );
        }
    }
}
