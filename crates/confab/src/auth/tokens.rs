//! Opaque random tokens and their at-rest form (PROTOCOL §8.3).
//!
//! Every opaque token (refresh, session upload credential, SAUTH2, bot, webhook) is generated from the
//! OS CSPRNG, handed out once, and stored only as its SHA-256 hex digest.

use base64::Engine;
use sha2::{Digest, Sha256};

/// 32 random bytes as 43 base64url characters (256 bits).
pub fn random_token() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

/// `N` bytes from the OS CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    // getrandom only fails when the OS has no entropy source at all; a server cannot run then.
    if let Err(e) = getrandom::fill(&mut buf) {
        panic!("operating system random source unavailable: {e}");
    }
    buf
}

/// `len` characters drawn uniformly from `alphabet` (rejection sampling, no modulo bias).
pub fn random_string(len: usize, alphabet: &[u8]) -> String {
    let limit = 256 - (256 % alphabet.len());
    let mut out = String::with_capacity(len);
    while out.len() < len {
        for b in random_bytes::<64>() {
            if (b as usize) < limit && out.len() < len {
                out.push(alphabet[b as usize % alphabet.len()] as char);
            }
        }
    }
    out
}

/// Letters and digits: the alphabet of validator-key nonces and SAUTH2 ids.
pub const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// SHA-256 hex digest: the only form in which tokens are stored.
pub fn hash_token(token: &str) -> String {
    hash_joined(&[token])
}

/// SHA-256 hex digest of `parts` joined by U+0000, fed to the hash piece by piece so no joined
/// copy is made. The writer fingerprints every message with a nonce this way: formatting each
/// byte with `format!` cost several times the hash itself.
pub fn hash_joined(parts: &[&str]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut hasher = Sha256::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            hasher.update([0u8]);
        }
        hasher.update(part.as_bytes());
    }
    let mut hex = String::with_capacity(64);
    for b in hasher.finalize() {
        hex.push(HEX[usize::from(b >> 4)] as char);
        hex.push(HEX[usize::from(b & 15)] as char);
    }
    hex
}

/// Constant-time equality of two digests or tokens.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let t = random_token();
        assert_eq!(t.len(), 43);
        assert_ne!(t, random_token());
        let s = random_string(100, ALNUM);
        assert_eq!(s.len(), 100);
        assert!(s.bytes().all(|b| ALNUM.contains(&b)));
        assert_eq!(hash_token("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(hash_joined(&["a", "", "b"]), hash_token("a\u{0}\u{0}b"));
        assert!(constant_time_eq(&hash_token("x"), &hash_token("x")));
        assert!(!constant_time_eq(&hash_token("x"), &hash_token("y")));
    }
}
