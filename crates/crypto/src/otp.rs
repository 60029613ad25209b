//! One-time passwords for the second factor, 6 digits, 30 s steps, in two algorithms:
//!
//! - **TOTP** (RFC 6238, HMAC-SHA1): what common authenticator apps implement; the default.
//! - **SM3** (GM/T 0021-2012 动态口令, the 密评 profile): `P = Truncate(SM3(K ‖ ID)) mod 10^6`
//!   with `ID = T ‖ C ‖ Q` zero-padded to at least 128 bits, here only the time factor
//!   `T = ⌊t / 30⌋` as 8 big-endian bytes (no event counter, no challenge); `Truncate` adds the
//!   eight big-endian 32-bit words of the digest modulo 2³². The standard allows periods up to
//!   60 s; 30 s keeps within ASVS 6.5.5's lifetime. Tokens and apps that implement GM/T 0021 take
//!   the seed key (≥ 128 bits; 160 here).
//!
//! The algorithm is part of the stored secret (`sm3:<base32>`; a bare base32 secret is TOTP), so
//! an enrolment keeps working when the deployment's profile changes, and it is sealed with it.

use hmac::{KeyInit, Mac};

pub const STEP_SECS: i64 = 30;
pub const DIGITS: u32 = 6;

/// The algorithm of an enrolment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Algorithm {
    /// RFC 6238 TOTP with HMAC-SHA1.
    #[default]
    Totp,
    /// GM/T 0021 SM3 dynamic password, time factor only.
    Sm3,
}

impl Algorithm {
    pub fn parse(s: &str) -> Option<Algorithm> {
        match s.trim().to_ascii_lowercase().as_str() {
            "totp" => Some(Algorithm::Totp),
            "sm3" => Some(Algorithm::Sm3),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Totp => "totp",
            Algorithm::Sm3 => "sm3",
        }
    }
}

/// A secret as stored (sealed): its algorithm and its key in base32.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secret {
    pub algorithm: Algorithm,
    /// The key in base32 without padding (what authenticator apps and tokens take).
    pub key_b32: String,
}

const SM3_PREFIX: &str = "sm3:";

impl Secret {
    /// A fresh 160-bit key.
    pub fn generate(algorithm: Algorithm) -> Secret {
        Secret { algorithm, key_b32: data_encoding::BASE32_NOPAD.encode(&crate::random::bytes(20)) }
    }

    /// The stored form: `sm3:<base32>` or, for TOTP, the bare base32 key.
    pub fn to_stored(&self) -> String {
        match self.algorithm {
            Algorithm::Totp => self.key_b32.clone(),
            Algorithm::Sm3 => format!("{SM3_PREFIX}{}", self.key_b32),
        }
    }

    pub fn from_stored(stored: &str) -> Secret {
        match stored.strip_prefix(SM3_PREFIX) {
            Some(key) => Secret { algorithm: Algorithm::Sm3, key_b32: key.to_string() },
            None => Secret { algorithm: Algorithm::Totp, key_b32: stored.to_string() },
        }
    }

    /// The `otpauth://` URI to show as a QR code (`algorithm=SM3` for the GM/T 0021 profile).
    pub fn provisioning_uri(&self, issuer: &str, account: &str) -> String {
        let enc = |s: &str| -> String {
            s.bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
                    _ => format!("%{b:02X}"),
                })
                .collect()
        };
        let alg = match self.algorithm {
            Algorithm::Totp => "SHA1",
            Algorithm::Sm3 => "SM3",
        };
        format!(
            "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm={alg}&digits={DIGITS}&period={STEP_SECS}",
            enc(issuer),
            enc(account),
            self.key_b32,
            enc(issuer)
        )
    }

    /// The code for unix time `secs`; `None` if the key is not base32.
    pub fn code_at(&self, secs: i64) -> Option<String> {
        let key = decode_key(&self.key_b32)?;
        Some(format!("{:06}", value(self.algorithm, &key, (secs / STEP_SECS) as u64)))
    }

    /// Checks `code` at unix time `secs`, allowing one step of drift either way and refusing
    /// steps up to `last_used_step`. Returns the matched time step, which the caller stores so
    /// the same code cannot be used twice.
    pub fn verify(&self, code: &str, secs: i64, last_used_step: Option<i64>) -> Option<i64> {
        let code = code.trim();
        if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let key = decode_key(&self.key_b32)?;
        let now_step = secs / STEP_SECS;
        for step in [now_step - 1, now_step, now_step + 1] {
            if step < 0 || last_used_step.is_some_and(|used| step <= used) {
                continue;
            }
            let expected = format!("{:06}", value(self.algorithm, &key, step as u64));
            if crate::hash::constant_time_eq(expected.as_bytes(), code.as_bytes()) {
                return Some(step);
            }
        }
        None
    }
}

fn value(algorithm: Algorithm, key: &[u8], step: u64) -> u32 {
    match algorithm {
        Algorithm::Totp => hotp(key, step),
        Algorithm::Sm3 => sm3_dynamic(key, Some(step), None, None),
    }
}

/// HOTP (RFC 4226) value for `counter`.
pub fn hotp(secret: &[u8], counter: u64) -> u32 {
    let mut mac = <hmac::Hmac<sha1::Sha1> as KeyInit>::new_from_slice(secret).expect("any key length");
    mac.update(&counter.to_be_bytes());
    let h = mac.finalize().into_bytes();
    let offset = (h[h.len() - 1] & 0x0f) as usize;
    let bin = ((h[offset] as u32 & 0x7f) << 24)
        | ((h[offset + 1] as u32) << 16)
        | ((h[offset + 2] as u32) << 8)
        | (h[offset + 3] as u32);
    bin % 10u32.pow(DIGITS)
}

/// GM/T 0021 SM3 dynamic password (6 digits) from a time factor `t` (already divided by the
/// period), an event factor `c` and a challenge `q`, each optional.
pub fn sm3_dynamic(key: &[u8], t: Option<u64>, c: Option<u32>, q: Option<&[u8]>) -> u32 {
    let mut id = Vec::with_capacity(16);
    if let Some(t) = t {
        id.extend_from_slice(&t.to_be_bytes());
    }
    if let Some(c) = c {
        id.extend_from_slice(&c.to_be_bytes());
    }
    if let Some(q) = q {
        id.extend_from_slice(q);
    }
    if id.len() < 16 {
        id.resize(16, 0);
    }
    let mut h = crate::hash::Hasher::new(crate::HashAlg::Sm3);
    h.update(key);
    h.update(&id);
    let s = h.finish();
    let od = s.chunks_exact(4).fold(0u32, |acc, w| acc.wrapping_add(u32::from_be_bytes([w[0], w[1], w[2], w[3]])));
    od % 10u32.pow(DIGITS)
}

fn decode_key(key_b32: &str) -> Option<Vec<u8>> {
    let cleaned: String = key_b32.chars().filter(|c| !c.is_whitespace() && *c != '=').collect();
    data_encoding::BASE32_NOPAD.decode(cleaned.to_ascii_uppercase().as_bytes()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 6238 appendix B, SHA-1 seed "12345678901234567890".
    const SEED_B32: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

    fn totp() -> Secret {
        Secret { algorithm: Algorithm::Totp, key_b32: SEED_B32.into() }
    }

    fn sm3() -> Secret {
        Secret { algorithm: Algorithm::Sm3, key_b32: SEED_B32.into() }
    }

    #[test]
    fn matches_rfc6238_vectors() {
        for (t, eight_digits) in [
            (59, 94287082u32),
            (1111111109, 7081804),
            (1111111111, 14050471),
            (1234567890, 89005924),
            (2000000000, 69279037),
        ] {
            let six = eight_digits % 1_000_000;
            assert_eq!(totp().code_at(t).unwrap(), format!("{six:06}"), "t={t}");
        }
    }

    /// Values computed with an independent implementation (Python, gmssl's SM3, the layout of
    /// GM/T 0021: K ‖ T(8 bytes, big-endian) ‖ C(4) ‖ Q, ID zero-padded to 16 bytes, the digest's
    /// eight big-endian words summed modulo 2³²).
    #[test]
    fn sm3_dynamic_password_matches_an_independent_implementation() {
        for (t, code) in [(59, "872914"), (1111111109, "177964"), (1234567890, "179532"), (2000000000, "807512")] {
            assert_eq!(sm3().code_at(t).unwrap(), code, "t={t}");
        }
        // All three factors (the standard's example shape: 60 s period, event 1234, challenge "5678").
        let key = data_encoding::HEXLOWER.decode(b"1234567890abcdef1234567890abcdef").unwrap();
        assert_eq!(sm3_dynamic(&key, Some(1_313_280_000 / 60), Some(1234), Some(b"5678")), 811533);
        assert_ne!(sm3().code_at(59), totp().code_at(59), "the two algorithms differ");
    }

    #[test]
    fn accepts_one_step_of_drift_and_refuses_reuse() {
        for secret in [totp(), sm3()] {
            let t = 1_700_000_000;
            let code = secret.code_at(t - 30).unwrap();
            let step = secret.verify(&code, t, None).expect("previous step accepted");
            assert_eq!(secret.verify(&code, t, Some(step)), None, "a used code is refused");
            let old = secret.code_at(t - 90).unwrap();
            assert_eq!(secret.verify(&old, t, None), None, "three steps old is refused");
            assert_eq!(secret.verify("12a456", t, None), None);
        }
        let bad = Secret { algorithm: Algorithm::Sm3, key_b32: "not base32!".into() };
        assert_eq!(bad.verify("123456", 1_700_000_000, None), None);
        // A TOTP code is not an SM3 code for the same key.
        let t = 1_700_000_000;
        let code = totp().code_at(t).unwrap();
        assert!(sm3().code_at(t - 30).unwrap() != code && sm3().code_at(t).unwrap() != code);
    }

    #[test]
    fn the_stored_form_keeps_the_algorithm() {
        for secret in [Secret::generate(Algorithm::Totp), Secret::generate(Algorithm::Sm3)] {
            assert_eq!(Secret::from_stored(&secret.to_stored()), secret);
        }
        assert_eq!(Secret::from_stored(SEED_B32).algorithm, Algorithm::Totp, "secrets stored before profiles are TOTP");
        assert!(Secret::generate(Algorithm::Sm3).to_stored().starts_with("sm3:"));
        assert_eq!(Algorithm::parse("SM3"), Some(Algorithm::Sm3));
        assert_eq!(Algorithm::parse("hotp"), None);
    }

    #[test]
    fn provisioning_uri_escapes_names_and_names_the_algorithm() {
        let s = Secret { algorithm: Algorithm::Totp, key_b32: "ABC".into() };
        let uri = s.provisioning_uri("中枢", "li lei");
        assert!(uri.starts_with("otpauth://totp/%E4%B8%AD%E6%9E%A2:li%20lei?secret=ABC"));
        assert!(uri.contains("algorithm=SHA1"));
        let s = Secret { algorithm: Algorithm::Sm3, key_b32: "ABC".into() };
        assert!(s.provisioning_uri("中枢", "li").contains("algorithm=SM3&digits=6&period=30"));
    }
}
