//! Cryptography for the platform, in one place so every capability uses the same choices:
//! SM3 / SHA-256 hashing and HMAC, field encryption at rest with SM4-GCM (AES-256-GCM
//! selectable) under a key ring with key ids, a keyed hash (blind index) for exact lookups of
//! encrypted fields, argon2id password hashing, TOTP (RFC 6238), and output masking of
//! personal information.
//!
//! Architecture invariant: secrets never appear in `Debug` output or error messages; key bytes
//! are zeroised on drop.

pub mod hash;
pub mod keyring;
pub mod mask;
pub mod otp;
pub mod password;
pub mod random;

pub use hash::{HashAlg, digest, hmac};
pub use keyring::{CipherAlg, KeyRing, KeyRingError};
pub use mask::Masker;
