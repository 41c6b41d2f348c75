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
pub mod keys;
pub mod metrics;
pub mod orchestrator;
pub mod queue;
pub mod retention;
pub mod startup;
pub mod storage;
pub mod store;
pub mod telemetry;

pub use keys::derive_key;
pub use quire_crds::{ReportFormat, ReportStatus, ReportType, WorkMessage, model, webhook};

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
    #[error("work queue error: {message}")]
    Queue {
        /// What failed, with the cause's text: a log line at `%error` is complete.
        message: String,
        /// The typed cause (an SDK or I/O error), for callers that inspect it.
        #[source]
        source: Option<BoxError>,
    },
    /// Output storage failed.
    #[error("output storage error: {message}")]
    Storage {
        /// What failed, with the cause's text.
        message: String,
        /// The typed cause (an SDK or I/O error), for callers that inspect it.
        #[source]
        source: Option<BoxError>,
    },
    /// A dependency the operation needs could not be reached and nothing was changed (the
    /// Kubernetes API did not register a report, say): the caller may try again shortly.
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// A per-user quota refused a new report; nothing was written.
    #[error(transparent)]
    QuotaExceeded(#[from] model::QuotaExceeded),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The cause kept inside [`Error::Queue`] and [`Error::Storage`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

impl Error {
    /// A work-queue failure with no underlying error (a malformed receipt, say).
    pub fn queue(message: impl Into<String>) -> Self {
        Self::Queue {
            message: message.into(),
            source: None,
        }
    }

    /// A work-queue failure caused by `source`; `message` says what failed and includes
    /// the cause's text.
    pub fn queue_caused(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Queue {
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// An output-storage failure with no underlying error.
    pub fn storage(message: impl Into<String>) -> Self {
        Self::Storage {
            message: message.into(),
            source: None,
        }
    }

    /// An output-storage failure caused by `source`; `message` says what failed and
    /// includes the cause's text.
    pub fn storage_caused(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Storage {
            message: message.into(),
            source: Some(source.into()),
        }
    }
}
