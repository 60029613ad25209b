//! Digests and HMAC over SM3 (default) or SHA-256.

use hmac::{KeyInit, Mac};
use sha2::Digest;

/// A 256-bit hash algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum HashAlg {
    #[default]
    Sm3,
    Sha256,
}

impl HashAlg {
    pub fn name(self) -> &'static str {
        match self {
            HashAlg::Sm3 => "sm3",
            HashAlg::Sha256 => "sha256",
        }
    }

    pub fn parse(s: &str) -> Option<HashAlg> {
        match s.to_ascii_lowercase().as_str() {
            "sm3" => Some(HashAlg::Sm3),
            "sha256" | "sha-256" => Some(HashAlg::Sha256),
            _ => None,
        }
    }
}

/// The digest of `data`.
pub fn digest(alg: HashAlg, data: &[u8]) -> [u8; 32] {
    match alg {
        HashAlg::Sm3 => sm3::Sm3::digest(data).into(),
        HashAlg::Sha256 => sha2::Sha256::digest(data).into(),
    }
}

/// A streaming hasher over either algorithm.
#[derive(Clone)]
pub enum Hasher {
    Sm3(sm3::Sm3),
    Sha256(sha2::Sha256),
}

impl Hasher {
    pub fn new(alg: HashAlg) -> Self {
        match alg {
            HashAlg::Sm3 => Hasher::Sm3(sm3::Sm3::new()),
            HashAlg::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sm3(h) => h.update(data),
            Hasher::Sha256(h) => h.update(data),
        }
    }

    pub fn finish(self) -> [u8; 32] {
        match self {
            Hasher::Sm3(h) => h.finalize().into(),
            Hasher::Sha256(h) => h.finalize().into(),
        }
    }
}

/// HMAC of `data` under `key`.
pub fn hmac(alg: HashAlg, key: &[u8], data: &[u8]) -> [u8; 32] {
    match alg {
        HashAlg::Sm3 => {
            let mut m = <hmac::Hmac<sm3::Sm3> as KeyInit>::new_from_slice(key).expect("hmac takes any key length");
            m.update(data);
            m.finalize().into_bytes().into()
        }
        HashAlg::Sha256 => {
            let mut m = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key).expect("hmac takes any key length");
            m.update(data);
            m.finalize().into_bytes().into()
        }
    }
}

/// An HMAC with its key schedule computed once, for MACing many messages under one key.
#[derive(Clone)]
pub enum KeyedMac {
    Sm3(hmac::Hmac<sm3::Sm3>),
    Sha256(hmac::Hmac<sha2::Sha256>),
}

impl KeyedMac {
    pub fn new(alg: HashAlg, key: &[u8]) -> KeyedMac {
        match alg {
            HashAlg::Sm3 => {
                KeyedMac::Sm3(<hmac::Hmac<sm3::Sm3> as KeyInit>::new_from_slice(key).expect("any key length"))
            }
            HashAlg::Sha256 => {
                KeyedMac::Sha256(<hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key).expect("any key length"))
            }
        }
    }

    /// The MAC of `data` (equal to [`hmac`] with the same key).
    pub fn mac(&self, data: &[u8]) -> [u8; 32] {
        match self {
            KeyedMac::Sm3(m) => {
                let mut m = m.clone();
                m.update(data);
                m.finalize().into_bytes().into()
            }
            KeyedMac::Sha256(m) => {
                let mut m = m.clone();
                m.update(data);
                m.finalize().into_bytes().into()
            }
        }
    }
}

/// PBKDF2 (RFC 8018) with HMAC over `alg`, one 32-byte block: the 密评 profile's password hash
/// (PBKDF2-HMAC-SM3).
pub fn pbkdf2(alg: HashAlg, password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let prf = KeyedMac::new(alg, password);
    let mut first = Vec::with_capacity(salt.len() + 4);
    first.extend_from_slice(salt);
    first.extend_from_slice(&1u32.to_be_bytes());
    let mut u = prf.mac(&first);
    let mut t = u;
    for _ in 1..iterations.max(1) {
        u = prf.mac(&u);
        for (a, b) in t.iter_mut().zip(u) {
            *a ^= b;
        }
    }
    t
}

/// Appends one field of a canonical encoding — what is hashed or MACed over a record's fields:
/// its length as four big-endian bytes and its bytes, or `u32::MAX` for an absent field, so no
/// two different field lists encode alike.
pub fn put_field(out: &mut Vec<u8>, field: Option<&[u8]>) {
    match field {
        Some(s) => {
            out.extend_from_slice(&(s.len() as u32).to_be_bytes());
            out.extend_from_slice(s);
        }
        None => out.extend_from_slice(&u32::MAX.to_be_bytes()),
    }
}

/// Compares two byte strings in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether `hex` (lowercase) spells `bytes`, without allocating; constant time in the content.
pub fn hex_eq(bytes: &[u8], hex: &str) -> bool {
    hex_eq_bytes(bytes, hex.as_bytes())
}

/// [`hex_eq`] over hex text given as bytes (as read from a database page).
pub fn hex_eq_bytes(bytes: &[u8], hex: &[u8]) -> bool {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    if hex.len() != bytes.len() * 2 {
        return false;
    }
    let mut diff = 0u8;
    for (i, b) in bytes.iter().enumerate() {
        diff |= hex[2 * i] ^ DIGITS[(b >> 4) as usize];
        diff |= hex[2 * i + 1] ^ DIGITS[(b & 0x0f) as usize];
    }
    diff == 0
}

pub fn to_hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(bytes)
}

pub fn from_hex(s: &str) -> Option<Vec<u8>> {
    data_encoding::HEXLOWER_PERMISSIVE.decode(s.as_bytes()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sm3_matches_the_standard_test_vector() {
        // GB/T 32905-2016 example 1: SM3("abc").
        assert_eq!(
            to_hex(&digest(HashAlg::Sm3, b"abc")),
            "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
        );
    }

    #[test]
    fn sha256_matches_the_known_vector() {
        assert_eq!(
            to_hex(&digest(HashAlg::Sha256, b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn hmac_sha256_matches_rfc4231_case_2() {
        let mac = hmac(HashAlg::Sha256, b"Jefe", b"what do ya want for nothing?");
        assert_eq!(to_hex(&mac), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }

    #[test]
    fn hmac_sm3_depends_on_key_and_data() {
        let a = hmac(HashAlg::Sm3, b"k1", b"data");
        assert_ne!(a, hmac(HashAlg::Sm3, b"k2", b"data"));
        assert_ne!(a, hmac(HashAlg::Sm3, b"k1", b"date"));
        assert_eq!(a, hmac(HashAlg::Sm3, b"k1", b"data"));
    }

    #[test]
    fn pbkdf2_matches_the_rfc_7914_vectors() {
        // RFC 7914 section 11, PBKDF2-HMAC-SHA256 (first 32 bytes of each 64-byte key).
        let k = pbkdf2(HashAlg::Sha256, b"passwd", b"salt", 1);
        assert_eq!(to_hex(&k), "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc");
        let k = pbkdf2(HashAlg::Sha256, b"Password", b"NaCl", 80_000);
        assert_eq!(to_hex(&k), "4ddcd8f60b98be21830cee5ef22701f9641a4418d04c0414aeff08876b34ab56");
        // The same construction over SM3 differs and is deterministic.
        let a = pbkdf2(HashAlg::Sm3, b"passwd", b"salt", 2);
        assert_eq!(a, pbkdf2(HashAlg::Sm3, b"passwd", b"salt", 2));
        assert_ne!(a, pbkdf2(HashAlg::Sm3, b"passwd", b"salt", 1));
    }

    #[test]
    fn hex_eq_matches_to_hex() {
        let d = digest(HashAlg::Sm3, b"abc");
        assert!(hex_eq(&d, &to_hex(&d)));
        assert!(!hex_eq(&d, &to_hex(&digest(HashAlg::Sm3, b"abd"))));
        assert!(!hex_eq(&d, "66c7"));
        assert!(!hex_eq(&d, &to_hex(&d).to_uppercase()));
    }

    #[test]
    fn keyed_mac_equals_one_shot_hmac() {
        for alg in [HashAlg::Sm3, HashAlg::Sha256] {
            let k = KeyedMac::new(alg, b"audit-key");
            assert_eq!(k.mac(b"one"), hmac(alg, b"audit-key", b"one"));
            assert_eq!(k.mac(b"two"), hmac(alg, b"audit-key", b"two"), "the prepared state is reused, not consumed");
        }
    }

    #[test]
    fn streaming_hasher_equals_one_shot() {
        let mut h = Hasher::new(HashAlg::Sm3);
        h.update(b"ab");
        h.update(b"c");
        assert_eq!(h.finish(), digest(HashAlg::Sm3, b"abc"));
    }
}
