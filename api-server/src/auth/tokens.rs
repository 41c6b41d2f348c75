//! Refresh tokens: 32 random bytes handed to the client as base64url, stored only as their
//! SHA-256. A database leak therefore yields no usable token, and since the secret is
//! uniformly random a fast hash is enough (no bcrypt needed).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::SecretString;
use sha2::{Digest, Sha256};

/// Length of a refresh token's secret, in bytes.
pub const REFRESH_TOKEN_BYTES: usize = 32;

/// A freshly generated refresh token.
pub struct NewRefreshToken {
    /// What the client gets (base64url, no padding).
    pub secret: SecretString,
    /// What the store keeps.
    pub hash: Vec<u8>,
}

/// Generates a new refresh token from the thread's CSPRNG.
pub fn generate() -> NewRefreshToken {
    let bytes: [u8; REFRESH_TOKEN_BYTES] = rand::random();
    NewRefreshToken {
        secret: URL_SAFE_NO_PAD.encode(bytes).into(),
        hash: Sha256::digest(bytes).to_vec(),
    }
}

/// The stored hash a presented token would have, or `None` when the string cannot be a
/// token we issued (so the store need not be asked).
pub fn hash_presented(token: &str) -> Option<Vec<u8>> {
    let bytes = URL_SAFE_NO_PAD.decode(token.trim()).ok()?;
    (bytes.len() == REFRESH_TOKEN_BYTES).then(|| Sha256::digest(&bytes).to_vec())
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn a_generated_token_hashes_to_its_stored_hash() {
        let token = generate();
        assert_eq!(token.secret.expose_secret().len(), 43);
        assert_eq!(
            hash_presented(token.secret.expose_secret()),
            Some(token.hash)
        );
    }

    #[test]
    fn strings_that_cannot_be_tokens_have_no_hash() {
        assert_eq!(hash_presented(""), None);
        assert_eq!(hash_presented("not base64!"), None);
        assert_eq!(hash_presented(&URL_SAFE_NO_PAD.encode([0u8; 16])), None);
    }
}
