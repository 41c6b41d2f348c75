//! The heart of Quire shared by every binary: the domain model and the seams between
//! components, each a small trait with the implementations that exist today.
//!
//! - [`store::RecordStore`]: users, refresh tokens and reports (Postgres, SQLite).
//! - [`queue::WorkQueue`]: work delivery (database queue, Amazon SQS).
//! - [`storage::OutputStorage`]: rendered outputs (local directory, Amazon S3).
//! - [`dispatch::Dispatcher`]: hands a stored report to the work queue; the rescuer
//!   dispatches again what a lost message left stranded.
//!
//! [`backends::BackendArgs`] is the one configuration of queue and storage every binary
//! shares; [`aws`] loads the one AWS configuration its clients share.

pub mod aws;
pub mod backends;
pub mod dispatch;
pub mod duration;
pub mod health;
pub mod queue;
pub mod storage;
pub mod store;
pub mod telemetry;

pub use quire_crds::{ReportFormat, ReportStatus, ReportType, WorkMessage, model};

/// Errors at the seams. Callers map them to HTTP statuses or retry decisions.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A unique constraint said no (duplicate email, duplicate idempotency key, …).
    #[error("conflict: {0}")]
    Conflict(String),
    /// A row or object that should exist does not.
    #[error("not found: {0}")]
    NotFound(String),
    /// A row names a user that does not exist (deleted, or never was): the store's
    /// foreign-key violation, mapped once here so callers never match on database errors.
    #[error("unknown user {0}")]
    UnknownUser(uuid::Uuid),
    /// The caller asked for something that cannot be done with these arguments.
    #[error("invalid: {0}")]
    Invalid(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The work queue failed (network, emulator, database queue table).
    #[error("work queue error: {0}")]
    Queue(String),
    /// Output storage failed.
    #[error("output storage error: {0}")]
    Storage(String),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A purpose-specific key derived from a root secret (HMAC-SHA256 keyed by the secret over
/// `label`), so one configured secret can serve several purposes (JWT signing, download
/// links) without using the same key for two of them.
pub fn derive_key(secret: &[u8], label: &str) -> Vec<u8> {
    use hmac::Mac;
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(b"quire/");
    mac.update(label.as_bytes());
    mac.finalize().into_bytes().to_vec()
}
