//! Tokens and password hashes. Tokens are 32 random bytes from the kernel, shown once and
//! stored only as their SHA-256 (they are high-entropy, so a fast hash is enough); passwords are
//! stored as PBKDF2-HMAC-SHA256 with a random salt. Comparisons take constant time.

use std::io::Read;

use sha2::{Digest, Sha256};

const PBKDF2_ROUNDS: u32 = 120_000;

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).expect("the kernel's random source");
    bytes
}

/// A new token (64 hex characters).
pub fn new_token() -> String {
    hex::encode(random_bytes::<32>())
}

pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn token_matches(token: &str, stored_hash: &str) -> bool {
    equal(token_hash(token).as_bytes(), stored_hash.as_bytes())
}

/// `pbkdf2-sha256$<rounds>$<salt hex>$<hash hex>`.
pub fn hash_password(password: &str) -> String {
    let salt = random_bytes::<16>();
    let mut out = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), &salt, PBKDF2_ROUNDS, &mut out);
    format!("pbkdf2-sha256${PBKDF2_ROUNDS}${}${}", hex::encode(salt), hex::encode(out))
}

pub fn verify_password(password: &str, stored: &str) -> bool {
    let parts: Vec<&str> = stored.split('$').collect();
    let ["pbkdf2-sha256", rounds, salt, hash] = parts[..] else { return false };
    let (Ok(rounds), Ok(salt), Ok(hash)) = (rounds.parse::<u32>(), hex::decode(salt), hex::decode(hash)) else { return false };
    let mut out = vec![0u8; hash.len()];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), &salt, rounds, &mut out);
    equal(&out, &hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_and_tokens() {
        let stored = hash_password("correct horse");
        assert!(verify_password("correct horse", &stored));
        assert!(!verify_password("wrong horse", &stored));
        assert!(!verify_password("x", "plain"));
        let token = new_token();
        assert_eq!(token.len(), 64);
        assert!(token_matches(&token, &token_hash(&token)));
        assert!(!token_matches("nope", &token_hash(&token)));
    }
}
