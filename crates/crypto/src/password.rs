//! Password hashing with argon2id.

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};

/// argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HashCost {
    /// Memory in KiB (OWASP: 19456).
    pub memory_kib: u32,
    /// Passes over memory.
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for HashCost {
    fn default() -> Self {
        HashCost { memory_kib: 19 * 1024, iterations: 2, parallelism: 1 }
    }
}

impl HashCost {
    /// A cheap cost for tests only.
    pub const TEST: HashCost = HashCost { memory_kib: 256, iterations: 1, parallelism: 1 };

    fn argon2(&self) -> Argon2<'static> {
        let params =
            Params::new(self.memory_kib, self.iterations, self.parallelism, None).unwrap_or_else(|_| Params::default());
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
    }
}

/// Hashes a password into a PHC string (`$argon2id$v=19$...`).
pub fn hash(cost: HashCost, password: &str) -> String {
    cost.argon2().hash_password(password.as_bytes()).expect("argon2 hashing cannot fail with valid params").to_string()
}

/// Verifies a password against a PHC string; false for any malformed hash.
pub fn verify(password: &str, phc: &str) -> bool {
    // Parameters come from the PHC string itself, so old hashes verify after a cost change.
    Argon2::default().verify_password(password.as_bytes(), phc).is_ok()
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
}
