//! Time-based one-time passwords (RFC 6238, HMAC-SHA1, 6 digits, 30 s steps): what common
//! authenticator apps implement.

use hmac::{KeyInit, Mac};

pub const STEP_SECS: i64 = 30;
pub const DIGITS: u32 = 6;

/// A fresh 160-bit secret, base32 (what authenticator apps take).
pub fn new_secret() -> String {
    data_encoding::BASE32_NOPAD.encode(&crate::random::bytes(20))
}

/// The `otpauth://` URI to show as a QR code.
pub fn provisioning_uri(issuer: &str, account: &str, secret_b32: &str) -> String {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
        enc(issuer),
        enc(account),
        secret_b32,
        enc(issuer)
    )
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

/// The code for unix time `secs`.
pub fn code_at(secret_b32: &str, secs: i64) -> Option<String> {
    let secret = decode_secret(secret_b32)?;
    Some(format!("{:06}", hotp(&secret, (secs / STEP_SECS) as u64)))
}

/// Checks `code` at unix time `secs`, allowing one step of drift either way. Returns the
/// matched time step, which the caller stores so the same code cannot be used twice.
pub fn verify(secret_b32: &str, code: &str, secs: i64, last_used_step: Option<i64>) -> Option<i64> {
    let code = code.trim();
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secret = decode_secret(secret_b32)?;
    let now_step = secs / STEP_SECS;
    for step in [now_step - 1, now_step, now_step + 1] {
        if step < 0 || last_used_step.is_some_and(|used| step <= used) {
            continue;
        }
        let expected = format!("{:06}", hotp(&secret, step as u64));
        if crate::hash::constant_time_eq(expected.as_bytes(), code.as_bytes()) {
            return Some(step);
        }
    }
    None
}

fn decode_secret(secret_b32: &str) -> Option<Vec<u8>> {
    let cleaned: String = secret_b32.chars().filter(|c| !c.is_whitespace() && *c != '=').collect();
    data_encoding::BASE32_NOPAD.decode(cleaned.to_ascii_uppercase().as_bytes()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 6238 appendix B, SHA-1 seed "12345678901234567890".
    const SEED_B32: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

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
            assert_eq!(code_at(SEED_B32, t).unwrap(), format!("{six:06}"), "t={t}");
        }
    }

    #[test]
    fn accepts_one_step_of_drift_and_refuses_reuse() {
        let t = 1_700_000_000;
        let code = code_at(SEED_B32, t - 30).unwrap();
        let step = verify(SEED_B32, &code, t, None).expect("previous step accepted");
        assert_eq!(verify(SEED_B32, &code, t, Some(step)), None, "a used code is refused");
        let old = code_at(SEED_B32, t - 90).unwrap();
        assert_eq!(verify(SEED_B32, &old, t, None), None, "three steps old is refused");
        assert_eq!(verify(SEED_B32, "12a456", t, None), None);
        assert_eq!(verify("not base32!", "123456", t, None), None);
    }

    #[test]
    fn provisioning_uri_escapes_names() {
        let uri = provisioning_uri("中枢", "li lei", "ABC");
        assert!(uri.starts_with("otpauth://totp/%E4%B8%AD%E6%9E%A2:li%20lei?secret=ABC"));
    }
}
