//! Cryptographic building blocks shared by the handshakes and the relay cell layers.

pub mod dh;
pub mod kdf;
pub mod keys;
pub mod relay;
