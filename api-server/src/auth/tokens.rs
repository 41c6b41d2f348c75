//! Refresh tokens: 32 random bytes handed to the client as base64url, stored only as their
//! SHA-256. A database leak therefore yields no usable token, and since the secret is
//! uniformly random a fast hash is enough (no bcrypt needed).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use quire_core::store::RecordStore;
use secrecy::SecretString;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

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

/// How often dead refresh tokens are purged.
pub const PURGE_EVERY: Duration = Duration::from_secs(60 * 60);
/// How long a revoked token is kept after its revocation (a refresh racing the revocation
/// still finds it revoked rather than missing).
pub const KEEP_REVOKED: Duration = Duration::from_secs(60 * 60);

/// Deletes expired refresh tokens, and revoked ones after [`KEEP_REVOKED`], every `every`
/// until `shutdown` fires. Spent tokens stay until they expire: presenting one again is how
/// a stolen token is detected.
pub async fn purge_periodically(
    store: Arc<dyn RecordStore>,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let now = Utc::now();
        let keep = chrono::Duration::from_std(KEEP_REVOKED).unwrap_or_default();
        match store.purge_refresh_tokens(now, now - keep).await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "purged dead refresh tokens"),
            Err(e) => tracing::warn!(error = %e, "purging refresh tokens failed; will retry"),
        }
    }
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
