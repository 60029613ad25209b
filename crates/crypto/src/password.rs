//! Password hashing: argon2id by default; PBKDF2-HMAC-SM3 for the 密评 profile (GB/T 39786
//! expects 国密 algorithms for 鉴别信息). Every stored hash names its scheme, so hashes made under
//! either verify after the setting changes; new and changed passwords use the configured one.

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use data_encoding::BASE64_NOPAD;
use zeroize::Zeroize;

use crate::hash::{HashAlg, constant_time_eq, pbkdf2};

/// How new passwords are hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scheme {
    /// argon2id (OWASP, ASVS 11.4.2).
    #[default]
    Argon2id,
    /// PBKDF2-HMAC-SM3, `$pbkdf2-sm3$i=<iterations>$<salt>$<hash>` (base64 without padding).
    Pbkdf2Sm3,
}

impl Scheme {
    pub fn parse(s: &str) -> Option<Scheme> {
        match s {
            "argon2id" => Some(Scheme::Argon2id),
            "pbkdf2-sm3" => Some(Scheme::Pbkdf2Sm3),
            _ => None,
        }
    }
}

const PBKDF2_SM3_PREFIX: &str = "$pbkdf2-sm3$i=";

/// Password hashing cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HashCost {
    /// argon2id memory in KiB (OWASP: 19456).
    pub memory_kib: u32,
    /// argon2id passes over memory.
    pub iterations: u32,
    pub parallelism: u32,
    pub scheme: Scheme,
    /// PBKDF2-HMAC-SM3 iterations.
    pub pbkdf2_iterations: u32,
}

impl Default for HashCost {
    fn default() -> Self {
        HashCost {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
            scheme: Scheme::Argon2id,
            pbkdf2_iterations: 300_000,
        }
    }
}

impl HashCost {
    /// A cheap cost for tests only.
    pub const TEST: HashCost =
        HashCost { memory_kib: 256, iterations: 1, parallelism: 1, scheme: Scheme::Argon2id, pbkdf2_iterations: 1_000 };

    fn argon2(&self) -> Argon2<'static> {
        let params =
            Params::new(self.memory_kib, self.iterations, self.parallelism, None).unwrap_or_else(|_| Params::default());
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
    }
}

/// Blocks (KiB) reserved for every argon2 computation, at least. glibc serves an allocation from
/// its arenas once a freed mapping of that size has raised its mmap threshold (up to 32 MiB), and
/// then keeps the memory when it is freed: argon2id's 19 MiB stayed resident after every login,
/// once per thread that hashed. Reserving more than 32 MiB makes each computation's memory a
/// mapping of its own, returned to the system when dropped; only the blocks used are touched.
const ARGON2_RESERVE_BLOCKS: usize = 33 * 1024;

/// Runs argon2 into `out` with memory of its own (see [`ARGON2_RESERVE_BLOCKS`]), wiped after.
fn argon2_into(argon: &Argon2, password: &[u8], salt: &[u8], out: &mut [u8]) -> Result<(), argon2::Error> {
    let blocks = argon.params().block_count();
    let mut memory: Vec<Block> = Vec::with_capacity(blocks.max(ARGON2_RESERVE_BLOCKS));
    memory.resize(blocks, Block::new());
    let r = argon.hash_password_into_with_memory(password, salt, out, &mut memory[..]);
    memory.iter_mut().for_each(Zeroize::zeroize);
    r
}

/// argon2id of `password` as a PHC string, with a fresh 16-byte salt.
fn argon2_phc(cost: HashCost, password: &str) -> Option<String> {
    let argon = cost.argon2();
    let salt = crate::random::bytes(16);
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    argon2_into(&argon, password.as_bytes(), &salt, &mut out).ok()?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(argon.params()).ok()?,
        salt: Some(Salt::new(&salt).ok()?),
        hash: Some(Output::new(&out).ok()?),
    };
    Some(phc.to_string())
}

/// Checks `password` against an argon2 PHC string, with the parameters it names.
fn argon2_verify(password: &str, phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else { return false };
    let (Ok(algorithm), Ok(params), Some(salt), Some(want)) =
        (Algorithm::new(parsed.algorithm.as_str()), Params::try_from(&parsed), parsed.salt, parsed.hash)
    else {
        return false;
    };
    let version = parsed.version.and_then(|v| Version::try_from(v).ok()).unwrap_or_default();
    if params.block_count() > 4 * 1024 * 1024 {
        return false; // more than 4 GiB: not a hash this platform made
    }
    let mut out = vec![0u8; want.len()];
    argon2_into(&Argon2::new(algorithm, version, params), password.as_bytes(), salt.as_ref(), &mut out).is_ok()
        && constant_time_eq(&out, want.as_ref())
}

/// Hashes a password into a PHC-style string (`$argon2id$v=19$...` or `$pbkdf2-sm3$i=...`).
pub fn hash(cost: HashCost, password: &str) -> String {
    match cost.scheme {
        Scheme::Argon2id => argon2_phc(cost, password).expect("argon2 hashing cannot fail with valid params"),
        Scheme::Pbkdf2Sm3 => {
            let salt = crate::random::bytes(16);
            let n = cost.pbkdf2_iterations.max(1);
            let key = pbkdf2(HashAlg::Sm3, password.as_bytes(), &salt, n);
            format!("{PBKDF2_SM3_PREFIX}{n}${}${}", BASE64_NOPAD.encode(&salt), BASE64_NOPAD.encode(&key))
        }
    }
}

/// Verifies a password against a stored hash of either scheme; false for any malformed hash.
pub fn verify(password: &str, phc: &str) -> bool {
    if let Some(rest) = phc.strip_prefix(PBKDF2_SM3_PREFIX) {
        let mut parts = rest.split('$');
        let (Some(n), Some(salt), Some(key), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return false;
        };
        let (Ok(n), Ok(salt), Ok(key)) =
            (n.parse::<u32>(), BASE64_NOPAD.decode(salt.as_bytes()), BASE64_NOPAD.decode(key.as_bytes()))
        else {
            return false;
        };
        if n == 0 || n > 10_000_000 {
            return false;
        }
        return constant_time_eq(&pbkdf2(HashAlg::Sm3, password.as_bytes(), &salt, n), &key);
    }
    // Parameters come from the PHC string itself, so old hashes verify after a cost change.
    argon2_verify(password, phc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_are_salted() {
        let a = hash(HashCost::TEST, "Qingdao#2026");
        let b = hash(HashCost::TEST, "Qingdao#2026");
        assert!(a.starts_with("$argon2id$"));
        assert_ne!(a, b, "each hash has its own salt");
        assert!(verify("Qingdao#2026", &a));
        assert!(!verify("qingdao#2026", &a));
        assert!(!verify("anything", "not a phc string"));
    }

    #[test]
    fn argon2_hashes_agree_with_the_reference_implementation_both_ways() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        // The RFC 9106 / argon2 crate's own hashing (what stored hashes were made with before).
        let params = Params::new(512, 2, 1, None).unwrap();
        let reference = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let theirs = reference.hash_password(b"Yantai!2026").unwrap().to_string();
        assert!(verify("Yantai!2026", &theirs), "{theirs}");
        assert!(!verify("Yantai!2027", &theirs));
        let ours = hash(HashCost::TEST, "Yantai!2026");
        assert!(reference.verify_password(b"Yantai!2026", ours.as_str()).is_ok(), "{ours}");
        assert!(ours.contains("m=256,t=1,p=1"), "{ours}");
        // Parameters beyond reason, a wrong algorithm name or a cut-off hash are refused.
        for bad in [
            "$argon2id$v=19$m=4294967295,t=1,p=1$c2FsdHNhbHRzYWx0$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "$argon2x$v=19$m=256,t=1,p=1$c2FsdHNhbHRzYWx0$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "$argon2id$v=19$m=256,t=1,p=1$c2FsdHNhbHRzYWx0",
        ] {
            assert!(!verify("Yantai!2026", bad), "{bad}");
        }
    }

    #[test]
    fn the_sm3_profile_hashes_with_pbkdf2_and_both_schemes_verify() {
        let sm3 = HashCost { scheme: Scheme::Pbkdf2Sm3, ..HashCost::TEST };
        let a = hash(sm3, "Qingdao#2026");
        assert!(a.starts_with("$pbkdf2-sm3$i=1000$"), "{a}");
        assert_ne!(a, hash(sm3, "Qingdao#2026"), "salted");
        assert!(verify("Qingdao#2026", &a));
        assert!(!verify("Qingdao#2027", &a));
        // An argon2id hash from before the switch still verifies, and the other way round.
        assert!(verify("Jinan@2026", &hash(HashCost::TEST, "Jinan@2026")));
        for bad in [
            "$pbkdf2-sm3$i=0$AAAA$AAAA",
            "$pbkdf2-sm3$i=x$AAAA$AAAA",
            "$pbkdf2-sm3$i=10$!!$AAAA",
            "$pbkdf2-sm3$i=10$AAAA",
        ] {
            assert!(!verify("Qingdao#2026", bad), "{bad}");
        }
        assert_eq!(Scheme::parse("pbkdf2-sm3"), Some(Scheme::Pbkdf2Sm3));
        assert_eq!(Scheme::parse("md5"), None);
    }
}
