//! Directory documents (dir-spec): the meta-format tokenizer, server descriptors (built and
//! signed by our OR, parsed and verified for tests and bridges), authority key certificates,
//! the consensus (microdesc and ns flavors) with its signature check, and microdescriptors.
//!
//! | module | what | spec |
//! |---|---|---|
//! | [`meta`] | keyword lines, arguments and PEM-like objects, bounded, never panics | dir-spec §1.2 |
//! | [`encode`] | times, base64, RSA public keys in PEM | dir-spec §1.2, §2.1.1 |
//! | [`proto`] | `proto` / `pr` protocol version lists | dir-spec §2.1.1 |
//! | [`ntor_cc`] | the ntor onion key cross-certificate (curve25519 -> ed25519) | dir-spec §2.1.1, App. C |
//! | [`routerdesc`] | [`ServerDescriptorBuilder`] and [`ServerDescriptor`] | dir-spec §2.1.1 |
//! | [`authcert`] | [`AuthorityCert`] | dir-spec §3.1 |
//! | [`consensus`] | [`Consensus`] and its signature check | dir-spec §3.4.1, §3.9.2 |
//! | [`microdesc`] | [`Microdesc`] and its digest | dir-spec §3.3 |
//!
//! Nothing here reads a clock: times are seconds since the Unix epoch passed in by the
//! caller, and randomness (RSA blinding) comes from a caller-supplied
//! [`rand_core::CryptoRng`]. Every parser takes the whole document as `&str` (callers check
//! UTF-8 first; C tor refuses non-UTF-8 documents too), is bounded by [`meta::Limits`], and
//! reports what is wrong, and where, as a [`DirError`].

use thiserror::Error;

use crate::certs::CertError;

pub mod authcert;
pub mod consensus;
pub mod encode;
pub mod meta;
pub mod microdesc;
pub mod ntor_cc;
pub mod proto;
pub mod routerdesc;

pub use authcert::AuthorityCert;
pub use consensus::{
    Consensus, DirSource, DirectorySignature, Flavor, RelayFlags, RouterDigest, RouterStatus,
    SignatureAlgorithm, SignatureCheck,
};
pub use meta::{Item, Limits, Object};
pub use microdesc::Microdesc;
pub use proto::Protocols;
pub use routerdesc::{Bandwidth, ServerDescriptor, ServerDescriptorBuilder};

/// Why a directory document was rejected, or could not be made.
///
/// `line` fields are 1-based line numbers in the document that was parsed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DirError {
    /// The document, a line or an object is larger than the configured [`Limits`].
    #[error("{what} too large: {len} bytes or items, at most {max}")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The text does not follow the meta-format (dir-spec §1.2).
    #[error("line {line}: {what}")]
    Syntax {
        /// Where.
        line: usize,
        /// What is wrong.
        what: &'static str,
    },
    /// A required item is absent.
    #[error("missing required item {0:?}")]
    MissingItem(&'static str),
    /// An item that may appear only once appears again.
    #[error("line {line}: duplicate item {keyword:?}")]
    DuplicateItem {
        /// The item's keyword.
        keyword: &'static str,
        /// Where the second one is.
        line: usize,
    },
    /// An item is not where the format puts it (first, last, next-to-last, in a section).
    #[error("line {line}: item {keyword:?} out of place")]
    MisplacedItem {
        /// The item's keyword (or the keyword expected at this position).
        keyword: &'static str,
        /// Where.
        line: usize,
    },
    /// An item's arguments are missing or malformed.
    #[error("line {line}: bad {keyword:?} item: {what}")]
    BadArgument {
        /// The item's keyword.
        keyword: &'static str,
        /// Where.
        line: usize,
        /// What is wrong.
        what: &'static str,
    },
    /// An item's object is missing, of the wrong type, or present where none is allowed.
    #[error("line {line}: bad object for {keyword:?}: {what}")]
    BadObject {
        /// The item's keyword.
        keyword: &'static str,
        /// Where.
        line: usize,
        /// What is wrong.
        what: &'static str,
    },
    /// A key in the document is unusable (not DER, wrong size, wrong exponent, not a curve
    /// point).
    #[error("line {line}: bad key in {keyword:?}: {what}")]
    BadKey {
        /// The item's keyword.
        keyword: &'static str,
        /// Where.
        line: usize,
        /// What is wrong.
        what: &'static str,
    },
    /// An embedded Ed25519 certificate or cross-certificate is malformed or does not verify.
    #[error("certificate in {keyword:?}: {err}")]
    Cert {
        /// The item holding the certificate.
        keyword: &'static str,
        /// Why it was refused.
        err: CertError,
    },
    /// A signature does not verify.
    #[error("bad signature: {0}")]
    BadSignature(&'static str),
    /// Two places that must name the same key or value do not.
    #[error("mismatch: {0}")]
    Mismatch(&'static str),
    /// The document (or a certificate it needs) is no longer valid at the given time.
    #[error("expired at {valid_until} (now {now})")]
    Expired {
        /// End of validity, including any tolerance, in seconds since the epoch.
        valid_until: u64,
        /// The time checked.
        now: u64,
    },
    /// The document is not valid yet at the given time.
    #[error("not valid before {valid_after} (now {now})")]
    NotYetValid {
        /// Start of validity, minus any tolerance, in seconds since the epoch.
        valid_after: u64,
        /// The time checked.
        now: u64,
    },
    /// A consensus carries valid signatures from too few of the configured authorities.
    #[error("consensus has {valid} valid authority signature(s), {needed} needed")]
    TooFewSignatures {
        /// Distinct configured authorities whose signature verified.
        valid: usize,
        /// How many are needed (more than half of the configured authorities).
        needed: usize,
    },
    /// A document's digest is not the one it was expected to have.
    #[error("digest mismatch for {0}")]
    BadDigest(&'static str),
    /// The caller's input cannot be encoded into a document.
    #[error("cannot encode: {0}")]
    Encode(&'static str),
    /// Making a signature failed.
    #[error("signing failed: {0}")]
    Signing(&'static str),
}

/// Result of directory document operations.
pub type DirResult<T> = Result<T, DirError>;
