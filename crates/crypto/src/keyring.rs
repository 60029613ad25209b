//! Field encryption at rest under a key ring with key ids, so keys can rotate: new values are
//! sealed with the active key, old values still open with the key named in their envelope.
//!
//! Key file format, one key per line (`#` starts a comment):
//!
//! ```text
//! <key-id> <algorithm> <hex key>
//! index hmac-sm3 <64 hex>      # the blind-index key (required, exactly one)
//! k2026 sm4-gcm <32 hex>       # the first data key listed is the active one
//! k2025 aes-256-gcm <64 hex>   # older keys stay to open old values
//! ```
//!
//! The same lines, separated by `;`, may come from the `ZHONGSHU_KEYS` environment variable.
//! Envelope: `zs1:<key-id>:<base64(nonce || ciphertext || tag)>`.

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, AesGcm};
use zeroize::Zeroizing;

use crate::hash::{HashAlg, hmac};

type Sm4Gcm = AesGcm<sm4::Sm4, aes_gcm::aead::consts::U12>;

/// A field cipher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CipherAlg {
    Sm4Gcm,
    Aes256Gcm,
}

impl CipherAlg {
    pub fn name(self) -> &'static str {
        match self {
            CipherAlg::Sm4Gcm => "sm4-gcm",
            CipherAlg::Aes256Gcm => "aes-256-gcm",
        }
    }

    pub fn key_len(self) -> usize {
        match self {
            CipherAlg::Sm4Gcm => 16,
            CipherAlg::Aes256Gcm => 32,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyRingError {
    #[error("key file line {line}: {message}")]
    Parse { line: usize, message: String },
    #[error("the key ring has no data key (add a line such as `k1 sm4-gcm <32 hex digits>`)")]
    NoDataKey,
    #[error("the key ring has no blind-index key (add a line `index hmac-sm3 <64 hex digits>`)")]
    NoIndexKey,
    #[error("the value is not an encrypted envelope")]
    NotAnEnvelope,
    #[error("the value was sealed with key '{0}', which is not in the key ring")]
    UnknownKey(String),
    #[error("the value does not decrypt: it was altered or the key is wrong")]
    Tampered,
}

struct DataKey {
    id: String,
    alg: CipherAlg,
    key: Zeroizing<Vec<u8>>,
}

/// The platform's keys. Cheap to share behind an `Arc`.
pub struct KeyRing {
    data: Vec<DataKey>,
    index_key: Zeroizing<Vec<u8>>,
    index_alg: HashAlg,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<&str> = self.data.iter().map(|k| k.id.as_str()).collect();
        f.debug_struct("KeyRing").field("data_keys", &ids).field("key_bytes", &"<redacted>").finish()
    }
}

impl KeyRing {
    /// Parses the key file format.
    pub fn parse(text: &str) -> Result<KeyRing, KeyRingError> {
        let mut data = Vec::new();
        let mut index = None;
        let entries = text
            .lines()
            .enumerate()
            .flat_map(|(i, l)| l.split('#').next().unwrap_or("").split(';').map(move |part| (i, part.trim())));
        for (i, line) in entries {
            if line.is_empty() {
                continue;
            }
            let err = |message: String| KeyRingError::Parse { line: i + 1, message };
            let parts: Vec<&str> = line.split_whitespace().collect();
            let [id, alg, hex] = parts[..] else {
                return Err(err("expected `<key-id> <algorithm> <hex key>`".into()));
            };
            if !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') || id.len() > 32 {
                return Err(err(format!("key id '{id}' may only use letters, digits, '-' and '_' (at most 32)")));
            }
            let key = Zeroizing::new(crate::hash::from_hex(hex).ok_or_else(|| err("the key is not hex".into()))?);
            match alg {
                "hmac-sm3" | "hmac-sha256" => {
                    if key.len() < 32 {
                        return Err(err("a blind-index key needs at least 32 bytes (64 hex digits)".into()));
                    }
                    let alg = if alg == "hmac-sm3" { HashAlg::Sm3 } else { HashAlg::Sha256 };
                    index = Some((key, alg));
                }
                "sm4-gcm" | "aes-256-gcm" => {
                    let alg = if alg == "sm4-gcm" { CipherAlg::Sm4Gcm } else { CipherAlg::Aes256Gcm };
                    if key.len() != alg.key_len() {
                        return Err(err(format!(
                            "{} needs a {}-byte key ({} hex digits)",
                            alg.name(),
                            alg.key_len(),
                            alg.key_len() * 2
                        )));
                    }
                    if data.iter().any(|k: &DataKey| k.id == id) {
                        return Err(err(format!("key id '{id}' appears twice")));
                    }
                    data.push(DataKey { id: id.to_string(), alg, key });
                }
                other => {
                    return Err(err(format!(
                        "unknown algorithm '{other}' (use sm4-gcm, aes-256-gcm, hmac-sm3 or hmac-sha256)"
                    )));
                }
            }
        }
        let (index_key, index_alg) = index.ok_or(KeyRingError::NoIndexKey)?;
        if data.is_empty() {
            return Err(KeyRingError::NoDataKey);
        }
        Ok(KeyRing { data, index_key, index_alg })
    }

    /// A new key file's text with fresh random keys.
    pub fn generate_file(alg: CipherAlg) -> String {
        let id = format!("k{}", crate::random::readable_code(6));
        format!(
            "# Zhongshu key file. Keep it secret and backed up: without it encrypted fields cannot be read.\n\
             # <key-id> <algorithm> <hex key>; the first data key is used for new values.\n\
             index hmac-sm3 {}\n{id} {} {}\n",
            crate::hash::to_hex(&crate::random::bytes(32)),
            alg.name(),
            crate::hash::to_hex(&crate::random::bytes(alg.key_len())),
        )
    }

    /// The id of the key new values are sealed with.
    pub fn active_key_id(&self) -> &str {
        &self.data[0].id
    }

    /// Encrypts `plaintext`; `context` (e.g. `"users.mobile"`) is bound as associated data so a
    /// value cannot be moved to another column unnoticed.
    pub fn seal(&self, context: &str, plaintext: &str) -> String {
        let key = &self.data[0];
        let nonce = crate::random::bytes(12);
        let payload = Payload { msg: plaintext.as_bytes(), aad: context.as_bytes() };
        let ct = match key.alg {
            CipherAlg::Sm4Gcm => Sm4Gcm::new_from_slice(&key.key)
                .expect("key length checked on load")
                .encrypt(nonce.as_slice().try_into().expect("12-byte nonce"), payload),
            CipherAlg::Aes256Gcm => Aes256Gcm::new_from_slice(&key.key)
                .expect("key length checked on load")
                .encrypt(nonce.as_slice().try_into().expect("12-byte nonce"), payload),
        }
        .expect("encryption of an in-memory buffer cannot fail");
        let mut blob = nonce;
        blob.extend_from_slice(&ct);
        format!("zs1:{}:{}", key.id, data_encoding::BASE64_NOPAD.encode(&blob))
    }

    /// Decrypts an envelope made by [`KeyRing::seal`] with the same `context`.
    pub fn open(&self, context: &str, envelope: &str) -> Result<String, KeyRingError> {
        let mut parts = envelope.splitn(3, ':');
        let (Some("zs1"), Some(kid), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(KeyRingError::NotAnEnvelope);
        };
        let key = self.data.iter().find(|k| k.id == kid).ok_or_else(|| KeyRingError::UnknownKey(kid.to_string()))?;
        let blob = data_encoding::BASE64_NOPAD.decode(b64.as_bytes()).map_err(|_| KeyRingError::NotAnEnvelope)?;
        if blob.len() < 12 + 16 {
            return Err(KeyRingError::NotAnEnvelope);
        }
        let (nonce, ct) = blob.split_at(12);
        let payload = Payload { msg: ct, aad: context.as_bytes() };
        let nonce = nonce.try_into().expect("12-byte nonce");
        let pt = match key.alg {
            CipherAlg::Sm4Gcm => Sm4Gcm::new_from_slice(&key.key).expect("checked").decrypt(nonce, payload),
            CipherAlg::Aes256Gcm => Aes256Gcm::new_from_slice(&key.key).expect("checked").decrypt(nonce, payload),
        }
        .map_err(|_| KeyRingError::Tampered)?;
        String::from_utf8(pt).map_err(|_| KeyRingError::Tampered)
    }

    /// The keyed hash of a normalised value, for exact lookups of encrypted fields.
    pub fn blind_index(&self, context: &str, value: &str) -> String {
        let mut data = Vec::with_capacity(context.len() + 1 + value.len());
        data.extend_from_slice(context.as_bytes());
        data.push(0);
        data.extend_from_slice(value.as_bytes());
        crate::hash::to_hex(&hmac(self.index_alg, &self.index_key, &data))
    }

    /// A keyed MAC over bytes (derived from the index key, separated by `context`), used to make
    /// records whose forgery needs the key file, such as audit records.
    pub fn mac(&self, context: &str, data: &[u8]) -> [u8; 32] {
        self.mac_key(context).mac(data)
    }

    /// The keyed MAC of `context`, derived once, for MACing many messages (`mac` derives the
    /// sub-key on every call). `mac_key(c).mac(d) == mac(c, d)`.
    pub fn mac_key(&self, context: &str) -> crate::hash::KeyedMac {
        let sub_key = hmac(self.index_alg, &self.index_key, format!("zhongshu-mac:{context}").as_bytes());
        crate::hash::KeyedMac::new(self.index_alg, &sub_key)
    }

    /// A key ring for tests, with fixed keys.
    pub fn for_tests() -> KeyRing {
        KeyRing::parse(&format!("index hmac-sm3 {}\nt1 sm4-gcm {}\n", "11".repeat(32), "22".repeat(16)))
            .expect("valid test keys")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_and_open_round_trip_with_both_ciphers() {
        for alg in [CipherAlg::Sm4Gcm, CipherAlg::Aes256Gcm] {
            let ring = KeyRing::parse(&KeyRing::generate_file(alg)).unwrap();
            let sealed = ring.seal("people.id_card", "370102199003071234");
            assert!(sealed.starts_with(&format!("zs1:{}:", ring.active_key_id())));
            assert!(!sealed.contains("1990"));
            assert_eq!(ring.open("people.id_card", &sealed).unwrap(), "370102199003071234");
        }
    }

    #[test]
    fn sm4_gcm_matches_a_published_test_vector() {
        // RFC 8998 appendix A.1 (SM4-GCM).
        let key = crate::hash::from_hex("0123456789ABCDEFFEDCBA9876543210").unwrap();
        let iv = crate::hash::from_hex("00001234567800000000ABCD").unwrap();
        let aad = crate::hash::from_hex("FEEDFACEDEADBEEFFEEDFACEDEADBEEFABADDAD2").unwrap();
        let pt = crate::hash::from_hex(
            "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBBCCCCCCCCCCCCCCCCDDDDDDDDDDDDDDDDEEEEEEEEEEEEEEEEFFFFFFFFFFFFFFFFEEEEEEEEEEEEEEEEAAAAAAAAAAAAAAAA",
        )
        .unwrap();
        let out = Sm4Gcm::new_from_slice(&key)
            .unwrap()
            .encrypt(iv.as_slice().try_into().unwrap(), Payload { msg: &pt, aad: &aad })
            .unwrap();
        let (ct, tag) = out.split_at(pt.len());
        assert_eq!(
            crate::hash::to_hex(ct),
            "17f399f08c67d5ee19d0dc9969c4bb7d5fd46fd3756489069157b282bb200735d82710ca5c22f0ccfa7cbf93d496ac15a56834cbcf98c397b4024a2691233b8d"
        );
        assert_eq!(crate::hash::to_hex(tag), "83de3541e4c2b58177e065a9bf7b62ec");
    }

    #[test]
    fn tampering_wrong_context_and_unknown_keys_are_refused() {
        let ring = KeyRing::for_tests();
        let sealed = ring.seal("users.mobile", "13812341234");
        assert_eq!(ring.open("users.email", &sealed), Err(KeyRingError::Tampered));
        let mut bytes = sealed.clone().into_bytes();
        let last = bytes.len() - 2;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(ring.open("users.mobile", &String::from_utf8(bytes).unwrap()), Err(KeyRingError::Tampered));
        let other = KeyRing::parse(&KeyRing::generate_file(CipherAlg::Sm4Gcm)).unwrap();
        assert!(matches!(other.open("users.mobile", &sealed), Err(KeyRingError::UnknownKey(_))));
        assert_eq!(ring.open("users.mobile", "plain"), Err(KeyRingError::NotAnEnvelope));
    }

    #[test]
    fn rotation_keeps_old_values_readable() {
        let old =
            KeyRing::parse(&format!("index hmac-sm3 {}\nold sm4-gcm {}", "11".repeat(32), "33".repeat(16))).unwrap();
        let sealed = old.seal("c", "v");
        let rotated = KeyRing::parse(&format!(
            "index hmac-sm3 {}\nnew aes-256-gcm {}\nold sm4-gcm {}",
            "11".repeat(32),
            "44".repeat(32),
            "33".repeat(16)
        ))
        .unwrap();
        assert_eq!(rotated.active_key_id(), "new");
        assert_eq!(rotated.open("c", &sealed).unwrap(), "v");
        assert_eq!(rotated.blind_index("c", "v"), old.blind_index("c", "v"), "same index key, same lookups");
    }

    #[test]
    fn bad_key_files_name_the_line() {
        let e = KeyRing::parse("index hmac-sm3 zz").unwrap_err();
        assert!(matches!(e, KeyRingError::Parse { line: 1, .. }));
        assert_eq!(
            KeyRing::parse(&format!("index hmac-sm3 {}", "11".repeat(32))).unwrap_err(),
            KeyRingError::NoDataKey
        );
        let e = KeyRing::parse(&format!("index hmac-sm3 {}\nk rot13 00", "11".repeat(32))).unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
    }

    #[test]
    fn debug_output_never_shows_key_bytes() {
        let s = format!("{:?}", KeyRing::for_tests());
        assert!(!s.contains("2222") && !s.contains("1111"), "{s}");
    }
}
