//! Randomness from the operating system.

/// `n` random bytes from the OS generator.
pub fn bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf).expect("the OS random generator failed");
    buf
}

/// A 256-bit random token, URL-safe base64 without padding (43 characters).
pub fn token() -> String {
    data_encoding::BASE64URL_NOPAD.encode(&bytes(32))
}

/// A human-typeable code of `len` characters from an alphabet without look-alikes.
pub fn readable_code(len: usize) -> String {
    const ALPHABET: &[u8] = b"23456789abcdefghjkmnpqrstuvwxyz";
    bytes(len).iter().map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char).collect()
}
