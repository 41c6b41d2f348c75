//! Password hashing that cannot stall the runtime.
//!
//! bcrypt is deliberately slow (about 250 ms at cost 12). Each hash runs on tokio's
//! blocking pool, and a semaphore bounds how many run at once, so a burst of sign-ins
//! queues for CPU instead of starving the async workers that answer every other request.
//!
//! The queue is bounded: past `max_waiting` waiting hashes the hasher answers
//! [`HashError::Busy`] at once (the API's 503 with `Retry-After`) instead of letting waits
//! grow into the request timeout. And sign-ups ([`Priority::Bulk`]) may hold at most all
//! but one of the permits, so a flood of sign-ups leaves a permit — a CPU — free for
//! sign-ins ([`Priority::Interactive`]), which then wait for at most the hash in front of
//! them.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use secrecy::{ExposeSecret, SecretString};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

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
    /// Too many hashes are waiting already: try again shortly.
    #[error("the password hasher is busy")]
    Busy,
}

/// Who is waiting for a hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    /// A sign-in: someone is waiting at a login form.
    Interactive,
    /// A sign-up: may use all permits but one, so it never starves sign-ins.
    Bulk,
}

/// A bounded wait for a semaphore: how many wait, and how many may.
struct Queue {
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_waiting: usize,
}

impl Queue {
    fn new(permits: usize, max_waiting: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(permits)),
            waiting: AtomicUsize::new(0),
            max_waiting,
        }
    }

    /// A permit now, or after waiting behind at most `max_waiting` others; else `Busy`.
    async fn acquire(&self) -> Result<OwnedSemaphorePermit, HashError> {
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => return Ok(permit),
            Err(TryAcquireError::Closed) => return Err(HashError::Closed),
            Err(TryAcquireError::NoPermits) => {}
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(HashError::Busy);
        }
        let permit = self.permits.clone().acquire_owned().await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        permit.map_err(|_| HashError::Closed)
    }
}

/// bcrypt on the blocking pool, at most `concurrency` at a time. See the module docs.
pub struct PasswordHasher {
    cost: u32,
    concurrency: usize,
    /// Every hash holds one of these while it runs.
    hashes: Queue,
    /// Sign-ups hold one of these too: all permits but one.
    bulk: Queue,
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
    /// hashes at once, with at most `max_waiting` waiting for a turn of each priority.
    /// Computes the dummy hash, so it takes one hash's time.
    pub fn new(cost: u32, concurrency: usize, max_waiting: usize) -> Self {
        let cost = cost.clamp(MIN_BCRYPT_COST, MAX_BCRYPT_COST);
        let random = hex::encode(rand::random::<[u8; 16]>());
        let dummy_hash = bcrypt::hash(random, cost).expect("bcrypt hashes with any cost in 4..=31");
        let concurrency = concurrency.max(1);
        Self {
            cost,
            concurrency,
            hashes: Queue::new(concurrency, max_waiting),
            bulk: Queue::new((concurrency - 1).max(1), max_waiting),
            dummy_hash: dummy_hash.into(),
        }
    }

    /// How many hashes are being computed right now (at most the concurrency limit).
    pub fn in_flight(&self) -> usize {
        self.concurrency - self.hashes.permits.available_permits()
    }

    /// Hashes a password that passed [`check_password`](super::credentials::check_password)
    /// at `priority` (a sign-up is [`Priority::Bulk`]).
    pub async fn hash(
        &self,
        password: SecretString,
        priority: Priority,
    ) -> Result<String, HashError> {
        let cost = self.cost;
        self.run(priority, move || {
            bcrypt::hash(password.expose_secret(), cost)
        })
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
            .run(Priority::Interactive, move || {
                bcrypt::verify(password.expose_secret(), &hash)
            })
            .await??;
        Ok(matched && acceptable)
    }

    /// Runs `work` on the blocking pool once a permit is free (a bulk permit first for
    /// [`Priority::Bulk`]). The permits move into the task, so they are held until the hash
    /// is done even if the caller gives up waiting.
    async fn run<T: Send + 'static>(
        &self,
        priority: Priority,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let bulk = match priority {
            Priority::Bulk => Some(self.bulk.acquire().await?),
            Priority::Interactive => None,
        };
        let permit = self.hashes.acquire().await?;
        let result = tokio::task::spawn_blocking(move || {
            let _permits = (permit, bulk);
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
        let hasher = PasswordHasher::new(4, 2, 8);
        let hash = hasher
            .hash("correct horse".into(), Priority::Bulk)
            .await
            .unwrap();
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
        let hasher = PasswordHasher::new(4, 1, 8);
        assert!(!hasher.verify("anything".into(), None).await.unwrap());
    }

    #[tokio::test]
    async fn a_password_longer_than_bcrypt_reads_never_verifies() {
        let hasher = PasswordHasher::new(4, 1, 8);
        let exactly_72 = "p".repeat(72);
        let hash = hasher
            .hash(exactly_72.as_str().into(), Priority::Bulk)
            .await
            .unwrap();
        let longer = format!("{exactly_72}suffix");
        assert!(
            hasher
                .verify(exactly_72.into(), Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(!hasher.verify(longer.into(), Some(hash)).await.unwrap());
    }

    #[tokio::test]
    async fn a_full_queue_answers_busy_at_once() {
        let hasher = Arc::new(PasswordHasher::new(4, 1, 1));
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let gate = Arc::new(std::sync::Mutex::new(gate));
        let running = {
            let (hasher, gate) = (hasher.clone(), gate.clone());
            tokio::spawn(async move {
                hasher
                    .run(Priority::Interactive, move || {
                        let _ = gate.lock().map(|g| g.recv());
                    })
                    .await
            })
        };
        while hasher.in_flight() == 0 {
            tokio::task::yield_now().await;
        }
        let waiting = {
            let hasher = hasher.clone();
            tokio::spawn(async move { hasher.run(Priority::Interactive, || ()).await })
        };
        while hasher.hashes.waiting.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        let refused = hasher.run(Priority::Interactive, || ()).await;
        assert!(matches!(refused, Err(HashError::Busy)), "{refused:?}");
        drop(release);
        running.await.unwrap().unwrap();
        waiting.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn sign_ups_never_take_the_last_permit_from_sign_ins() {
        let hasher = Arc::new(PasswordHasher::new(4, 2, 16));
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let gate = Arc::new(std::sync::Mutex::new(gate));
        // A flood of sign-ups, each holding its permit until released.
        let flood: Vec<_> = (0..6)
            .map(|_| {
                let (hasher, gate) = (hasher.clone(), gate.clone());
                tokio::spawn(async move {
                    hasher
                        .run(Priority::Bulk, move || {
                            let _ = gate.lock().map(|g| g.recv());
                        })
                        .await
                })
            })
            .collect();
        while hasher.in_flight() == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(hasher.in_flight(), 1, "sign-ups hold all permits but one");
        // A sign-in runs now, while every sign-up is still held.
        let signin = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            hasher.run(Priority::Interactive, || "signed in"),
        )
        .await
        .expect("a sign-in is not queued behind the flood");
        assert_eq!(signin.unwrap(), "signed in");
        drop(release);
        for task in flood {
            task.await.unwrap().unwrap();
        }
    }
}
