//! API keys: `surge_` + 32 random base62 characters + a 6-character base62 CRC32 of them.
//!
//! The prefix makes a leaked key recognisable to secret scanners, and the checksum lets both
//! a scanner and the gateway reject a mistyped or made-up key without a database lookup. Only
//! the SHA-256 of a key is stored: keys carry ~190 bits of randomness, so a fast hash is
//! enough (no password stretching needed), and the lookup is by hash, never by the key.

use secrecy::SecretString;
use sha2::{Digest, Sha256};

/// Every key starts with this.
pub const PREFIX: &str = "surge_";
const RANDOM_LEN: usize = 32;
const CHECK_LEN: usize = 6;
const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The SHA-256 of a key: what is stored and looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash(pub [u8; 32]);

/// Why a presented string is not a well-formed key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("not a Surge API key (they start with `surge_`)")]
    Prefix,
    #[error("the API key is malformed (wrong length or characters)")]
    Shape,
    #[error("the API key's checksum does not match: it was mistyped or altered")]
    Checksum,
}

/// Mints a new key; returns it (to show once) and its hash (to store).
pub fn mint() -> Result<(SecretString, KeyHash), getrandom::Error> {
    let mut random = String::with_capacity(RANDOM_LEN);
    let mut bytes = [0_u8; 64];
    while random.len() < RANDOM_LEN {
        getrandom::fill(&mut bytes)?;
        // Rejection sampling keeps every character equally likely (248 = 4 × 62).
        for b in bytes.iter().filter(|b| **b < 248) {
            if random.len() < RANDOM_LEN {
                random.push(char::from(ALPHABET[usize::from(*b % 62)]));
            }
        }
    }
    let key = format!("{PREFIX}{random}{}", checksum(&random));
    let hash = hash(&key);
    Ok((SecretString::from(key), hash))
}

/// Checks a presented key's shape and checksum, and hashes it for the lookup.
pub fn parse(presented: &str) -> Result<KeyHash, KeyError> {
    let body = presented.strip_prefix(PREFIX).ok_or(KeyError::Prefix)?;
    if body.len() != RANDOM_LEN + CHECK_LEN || !body.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(KeyError::Shape);
    }
    let (random, check) = body.split_at(RANDOM_LEN);
    if checksum(random) != check {
        return Err(KeyError::Checksum);
    }
    Ok(hash(presented))
}

fn hash(key: &str) -> KeyHash {
    KeyHash(Sha256::digest(key.as_bytes()).into())
}

fn checksum(random: &str) -> String {
    let mut n = u64::from(crc32fast::hash(random.as_bytes()));
    let mut out = [b'0'; CHECK_LEN];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn a_minted_key_parses_to_its_hash() {
        let (key, hash) = mint().unwrap();
        assert!(key.expose_secret().starts_with(PREFIX));
        assert_eq!(key.expose_secret().len(), PREFIX.len() + 38);
        assert_eq!(parse(key.expose_secret()), Ok(hash));
    }

    #[test]
    fn two_keys_differ() {
        let (a, _) = mint().unwrap();
        let (b, _) = mint().unwrap();
        assert_ne!(a.expose_secret(), b.expose_secret());
    }

    #[test]
    fn a_changed_character_fails_the_checksum() {
        let (key, _) = mint().unwrap();
        let mut chars: Vec<char> = key.expose_secret().chars().collect();
        let i = PREFIX.len() + 3;
        chars[i] = if chars[i] == 'a' { 'b' } else { 'a' };
        let altered: String = chars.into_iter().collect();
        assert_eq!(parse(&altered), Err(KeyError::Checksum));
    }

    #[test]
    fn other_strings_are_refused_by_shape() {
        assert_eq!(parse("Bearer x"), Err(KeyError::Prefix));
        assert_eq!(parse("surge_short"), Err(KeyError::Shape));
        assert_eq!(
            parse(&format!("surge_{}", "!".repeat(38))),
            Err(KeyError::Shape)
        );
    }
}
