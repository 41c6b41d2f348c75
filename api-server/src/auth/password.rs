//! Password hashing that cannot stall the runtime.
//!
//! bcrypt is deliberately slow (about 250 ms at cost 12). Each hash runs on tokio's
//! blocking pool, and a semaphore bounds how many run at once, so a burst of sign-ins
//! queues for CPU instead of starving the async workers that answer every other request.

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

use super::credentials::MAX_PASSWORD_BYTES;

/// Smallest cost bcrypt accepts (tests use it).
pub const MIN_BCRYPT_COST: u32 = 4;
/// Largest cost bcrypt accepts.
pub const MAX_BCRYPT_COST: u32 = 31;

/// Why hashing or verifying could not complete (never "the password is wrong").
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("bcrypt failed: {0}")]
    Bcrypt(#[from] bcrypt::BcryptError),
    #[error("the hashing task did not complete: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("the password hasher is shut down")]
    Closed,
}

/// bcrypt on the blocking pool, at most `concurrency` at a time. See the module docs.
pub struct PasswordHasher {
    cost: u32,
    concurrency: usize,
    permits: Arc<Semaphore>,
    /// A hash of a random password at the same cost: verifying against it takes as long as
    /// verifying a real one, so an unknown email answers no faster than a wrong password.
    dummy_hash: Arc<str>,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("cost", &self.cost)
            .field("concurrency", &self.concurrency)
            .field("in_flight", &self.in_flight())
            .finish_non_exhaustive()
    }
}

impl PasswordHasher {
    /// A hasher at `cost` (clamped to 4–31) running at most `concurrency` (at least 1)
    /// hashes at once. Computes the dummy hash, so it takes one hash's time.
    pub fn new(cost: u32, concurrency: usize) -> Self {
        let cost = cost.clamp(MIN_BCRYPT_COST, MAX_BCRYPT_COST);
        let random = hex::encode(rand::random::<[u8; 16]>());
        let dummy_hash = bcrypt::hash(random, cost).expect("bcrypt hashes with any cost in 4..=31");
        let concurrency = concurrency.max(1);
        Self {
            cost,
            concurrency,
            permits: Arc::new(Semaphore::new(concurrency)),
            dummy_hash: dummy_hash.into(),
        }
    }

    /// How many hashes are being computed right now (at most the concurrency limit).
    pub fn in_flight(&self) -> usize {
        self.concurrency - self.permits.available_permits()
    }

    /// Hashes a password that passed [`check_password`](super::credentials::check_password).
    pub async fn hash(&self, password: SecretString) -> Result<String, HashError> {
        let cost = self.cost;
        self.run(move || bcrypt::hash(password.expose_secret(), cost))
            .await?
            .map_err(Into::into)
    }

    /// True when `password` matches `hash`. With no hash (unknown account) it verifies
    /// against the dummy hash and answers `false`, taking the same time as a real check.
    /// Passwords longer than bcrypt's 72 bytes never match (bcrypt would compare only
    /// their first 72 bytes).
    pub async fn verify(
        &self,
        password: SecretString,
        hash: Option<String>,
    ) -> Result<bool, HashError> {
        let acceptable = hash.is_some() && password.expose_secret().len() <= MAX_PASSWORD_BYTES;
        let hash: Arc<str> = match hash {
            Some(hash) => hash.into(),
            None => self.dummy_hash.clone(),
        };
        let matched = self
            .run(move || bcrypt::verify(password.expose_secret(), &hash))
            .await??;
        Ok(matched && acceptable)
    }

    /// Runs `work` on the blocking pool once a permit is free. The permit moves into the
    /// task, so it is held until the hash is done even if the caller gives up waiting.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| HashError::Closed)?;
        let result = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
        })
        .await?;
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let hasher = PasswordHasher::new(4, 2);
        let hash = hasher.hash("correct horse".into()).await.unwrap();
        assert!(
            hasher
                .verify("correct horse".into(), Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(
            !hasher
                .verify("wrong horse!".into(), Some(hash))
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn an_unknown_account_never_verifies() {
        let hasher = PasswordHasher::new(4, 1);
        assert!(!hasher.verify("anything".into(), None).await.unwrap());
    }

    #[tokio::test]
    async fn a_password_longer_than_bcrypt_reads_never_verifies() {
        let hasher = PasswordHasher::new(4, 1);
        let exactly_72 = "p".repeat(72);
        let hash = hasher.hash(exactly_72.as_str().into()).await.unwrap();
        let longer = format!("{exactly_72}suffix");
        assert!(
            hasher
                .verify(exactly_72.into(), Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(!hasher.verify(longer.into(), Some(hash)).await.unwrap());
    }
}
