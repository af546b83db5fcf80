//! Trust passwords as they are stored: PBKDF2-HMAC-SHA256 (RFC 8018) over
//! a random salt, written as `pbkdf2-sha256$<iterations>$<salt>$<hash>`
//! (hex), and checked in constant time. The password itself is never kept.

use sha2::{Digest, Sha256};

/// Iterations for new hashes: about a tenth of a second on a small board.
pub const ITERATIONS: u32 = 100_000;
const PREFIX: &str = "pbkdf2-sha256";

/// HMAC-SHA256 (RFC 2104) of `parts` concatenated.
fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    for p in parts {
        inner.update(p);
    }
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// PBKDF2-HMAC-SHA256 of `len` bytes.
pub fn pbkdf2_sha256(password: &[u8], salt: &[u8], iterations: u32, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut index = 1u32;
    while out.len() < len {
        let mut u = hmac(password, &[salt, &index.to_be_bytes()]);
        let mut t = u;
        for _ in 1..iterations {
            u = hmac(password, &[&u]);
            t.iter_mut().zip(u.iter()).for_each(|(a, b)| *a ^= b);
        }
        let take = (len - out.len()).min(32);
        out.extend_from_slice(&t[..take]);
        index += 1;
    }
    out
}

/// The stored form of `password` with `salt` (give at least 16 random bytes).
pub fn hash_password(password: &str, salt: &[u8]) -> String {
    let hash = pbkdf2_sha256(password.as_bytes(), salt, ITERATIONS, 32);
    format!(
        "{PREFIX}${ITERATIONS}${}${}",
        hex::encode(salt),
        hex::encode(hash)
    )
}

/// Whether `password` matches `stored` (a [`hash_password`] string);
/// anything unreadable matches nothing.
pub fn verify_password(stored: &str, password: &str) -> bool {
    let mut parts = stored.split('$');
    let (Some(PREFIX), Some(iter), Some(salt), Some(hash), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    let (Ok(iter), Ok(salt), Ok(hash)) =
        (iter.parse::<u32>(), hex::decode(salt), hex::decode(hash))
    else {
        return false;
    };
    if iter == 0 || hash.is_empty() {
        return false;
    }
    let got = pbkdf2_sha256(password.as_bytes(), &salt, iter, hash.len());
    // Constant time: every byte is compared whatever the first difference.
    got.iter()
        .zip(hash.iter())
        .fold(0u8, |d, (a, b)| d | (a ^ b))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pbkdf2_matches_the_rfc_7914_vectors() {
        assert_eq!(
            hex::encode(pbkdf2_sha256(b"passwd", b"salt", 1, 64)),
            "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc\
             49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783"
        );
        assert_eq!(
            hex::encode(pbkdf2_sha256(b"password", b"NaCl", 80000, 64)),
            "a18495e3ce61675c4dd12a6ab7f919f2ec4e4ebf1978351eb3d2fb84839ca56e\
             37f51d2ce5d30303546030f6fdc17f5f35414f55674286cd2fd25531e67148a2"
        );
    }

    #[test]
    fn a_hash_verifies_its_password_only_and_hides_it() {
        let stored = hash_password("s3cret", b"0123456789abcdef");
        assert!(!stored.contains("s3cret"));
        assert!(stored.starts_with("pbkdf2-sha256$"));
        assert!(verify_password(&stored, "s3cret"));
        assert!(!verify_password(&stored, "s3cret "));
        assert!(!verify_password(&stored, ""));
        assert!(!verify_password("s3cret", "s3cret"));
        assert!(!verify_password("pbkdf2-sha256$0$00$00", ""));
        // Another salt, another hash.
        assert_ne!(stored, hash_password("s3cret", b"fedcba9876543210"));
    }
}
