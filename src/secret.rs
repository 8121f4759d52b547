//! Tokens and password hashes. Tokens are 32 random bytes from the kernel, shown once and
//! stored only as their SHA-256 (they are high-entropy, so a fast hash is enough); passwords are
//! stored as PBKDF2-HMAC-SHA256 with a random salt and 600,000 rounds (OWASP's figure for
//! PBKDF2-HMAC-SHA256, 2023). Comparisons take constant time. Verifying costs tens to hundreds of
//! milliseconds of CPU by design: callers run it on the blocking pool behind a semaphore
//! (`web::auth`), never on the async workers.

use std::io::Read;

use sha2::{Digest, Sha256};

pub const PBKDF2_ROUNDS: u32 = 600_000;
/// Hashes with fewer rounds are refused at start-up: they were made by an older takehome, or by
/// hand, and are too cheap to guess.
pub const MIN_PBKDF2_ROUNDS: u32 = 100_000;

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).expect("the kernel's random source");
    bytes
}

fn random_vec(length: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; length];
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

/// Compares in time that depends on the lengths only.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    equal(a, b)
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

/// A stored password hash, checked once when the config is loaded.
/// Why a stored password hash is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadHash {
    #[error("expected pbkdf2-sha256$<rounds>$<salt hex>$<hash hex> (make one with `takehome hash-password`)")]
    Form,
    #[error("rounds {0:?} is not a number")]
    Rounds(String),
    #[error("{0} rounds is too few (at least {MIN_PBKDF2_ROUNDS}; `takehome hash-password` uses {PBKDF2_ROUNDS})")]
    TooFewRounds(u32),
    #[error("the {0} is not hex")]
    NotHex(&'static str),
    #[error("the {0} is shorter than {1} bytes")]
    TooShort(&'static str, usize),
}

#[derive(Debug, Clone)]
pub struct PasswordHash {
    rounds: u32,
    salt: Vec<u8>,
    hash: Vec<u8>,
}

impl PasswordHash {
    /// Parses `pbkdf2-sha256$<rounds>$<salt hex>$<hash hex>`; an empty, malformed or weak hash is
    /// an error that says what was expected (never "any password matches").
    pub fn parse(stored: &str) -> Result<PasswordHash, BadHash> {
        let parts: Vec<&str> = stored.trim().split('$').collect();
        let ["pbkdf2-sha256", rounds, salt, hash] = parts[..] else {
            return Err(BadHash::Form);
        };
        let rounds: u32 = rounds.parse().map_err(|_| BadHash::Rounds(rounds.chars().take(40).collect()))?;
        if rounds < MIN_PBKDF2_ROUNDS {
            return Err(BadHash::TooFewRounds(rounds));
        }
        let salt = hex::decode(salt).map_err(|_| BadHash::NotHex("salt"))?;
        let hash = hex::decode(hash).map_err(|_| BadHash::NotHex("hash"))?;
        if salt.len() < 8 {
            return Err(BadHash::TooShort("salt", 8));
        }
        if hash.len() < 16 {
            return Err(BadHash::TooShort("hash", 16));
        }
        Ok(PasswordHash { rounds, salt, hash })
    }

    /// A hash no password matches, costing the same work as `like` (or a new hash): checked for
    /// unknown user names, so that their answer takes as long as a known user's.
    pub fn decoy(like: Option<&PasswordHash>) -> PasswordHash {
        let rounds = like.map(|h| h.rounds).unwrap_or(PBKDF2_ROUNDS);
        let length = like.map(|h| h.hash.len()).unwrap_or(32);
        PasswordHash { rounds, salt: random_bytes::<16>().to_vec(), hash: crate::secret::random_vec(length) }
    }

    pub fn rounds(&self) -> u32 {
        self.rounds
    }

    /// Slow on purpose (see the module's docs): call from a blocking thread.
    pub fn verify(&self, password: &str) -> bool {
        let mut out = vec![0u8; self.hash.len()];
        pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), &self.salt, self.rounds, &mut out);
        equal(&out, &self.hash)
    }
}

/// HMAC-SHA256 of `message` under `key`, hex (for CSRF tokens and credential cache keys).
pub fn hmac_hex(key: &[u8], message: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

/// Constant-time equality of two strings.
pub fn same(a: &str, b: &str) -> bool {
    equal(a.as_bytes(), b.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verify_password(password: &str, stored: &str) -> bool {
        PasswordHash::parse(stored).is_ok_and(|hash| hash.verify(password))
    }

    #[test]
    fn passwords_and_tokens() {
        let stored = hash_password("correct horse");
        assert!(verify_password("correct horse", &stored));
        assert!(!verify_password("wrong horse", &stored));
        assert!(!verify_password("x", "plain"));
        assert!(PasswordHash::parse("").is_err());
        assert!(PasswordHash::parse("pbkdf2-sha256$1000$00112233445566778899$00112233445566778899aabbccddeeff").unwrap_err() == BadHash::TooFewRounds(1000));
        assert!(PasswordHash::parse("pbkdf2-sha256$600000$$").is_err());
        assert!(!PasswordHash::decoy(None).verify("correct horse"));
        let real = PasswordHash::parse(&stored).unwrap();
        assert_eq!(PasswordHash::decoy(Some(&real)).rounds, real.rounds);
        assert_eq!(hmac_hex(b"key", b"The quick brown fox jumps over the lazy dog"), "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8");
        let token = new_token();
        assert_eq!(token.len(), 64);
        assert!(token_matches(&token, &token_hash(&token)));
        assert!(!token_matches("nope", &token_hash(&token)));
    }
}
