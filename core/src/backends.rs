//! Which work queue and output storage a binary uses, from one set of settings shared by
//! `api-server`, `worker` and the controller, so the same environment configures them all.
//!
//! | setting | meaning |
//! | --- | --- |
//! | `QUIRE_QUEUE` | `database` (the `work_queue` table) or `sqs` |
//! | `QUIRE_SQS_QUEUE_URL` | the SQS queue (`sqs`) |
//! | `QUIRE_SQS_DEAD_LETTER_QUEUE_URL` | where unprocessable messages go [default: the queue named by the queue's redrive policy] |
//! | `QUIRE_STORAGE` | `local` (a directory) or `s3` |
//! | `QUIRE_DATA_DIR` | where `local` storage keeps outputs (under `outputs/`) |
//! | `QUIRE_S3_BUCKET`, `QUIRE_S3_PREFIX` | where `s3` storage keeps outputs |
//! | `QUIRE_S3_FORCE_PATH_STYLE` | address the bucket in the path, as emulators need |
//! | `QUIRE_AWS_CONNECT_TIMEOUT`, `QUIRE_AWS_READ_TIMEOUT`, `QUIRE_AWS_OPERATION_TIMEOUT` | bounds on every AWS call ([`crate::aws::AwsTimeouts`]) |
//!
//! AWS itself (region, credentials, `AWS_ENDPOINT_URL`) is configured the standard way, see
//! [`crate::aws`]. Building the backends makes no network call, so a binary starts while SQS
//! or S3 is down; readiness checks ([`WorkQueue::ping`], [`OutputStorage::ping`]) say so.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{ArgAction, Args, ValueEnum};
use sqlx::PgPool;
use url::Url;

use crate::queue::{DatabaseQueue, SqsQueue, WorkQueue};
use crate::storage::{LocalStorage, OutputStorage, S3Storage};
use crate::store::SqliteStore;
use crate::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum QueueBackend {
    /// The `work_queue` table in the same Postgres database.
    Database,
    /// An Amazon SQS queue (`QUIRE_SQS_QUEUE_URL`).
    Sqs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StorageBackend {
    /// A local directory (`QUIRE_DATA_DIR`), downloads served by the API at `/files/…`.
    Local,
    /// An Amazon S3 bucket (`QUIRE_S3_BUCKET`), downloads by presigned URL.
    S3,
}

/// The backend settings, as flags mirrored by environment variables (see the module docs).
/// Flatten it into a binary's clap `Parser`.
#[derive(Clone, Debug, Args)]
pub struct BackendArgs {
    /// Work queue backend.
    #[arg(long, env = "QUIRE_QUEUE", value_enum, default_value_t = QueueBackend::Database)]
    pub queue: QueueBackend,

    /// URL of the SQS queue work travels on (with QUIRE_QUEUE=sqs).
    #[arg(long, env = "QUIRE_SQS_QUEUE_URL")]
    pub sqs_queue_url: Option<String>,

    /// URL of the SQS queue unprocessable messages are moved to
    /// [default: the one the work queue's redrive policy names].
    #[arg(long, env = "QUIRE_SQS_DEAD_LETTER_QUEUE_URL")]
    pub sqs_dead_letter_queue_url: Option<String>,

    /// Output storage backend.
    #[arg(long, env = "QUIRE_STORAGE", value_enum, default_value_t = StorageBackend::Local)]
    pub storage: StorageBackend,

    /// Directory for local storage (outputs go to `<dir>/outputs`).
    #[arg(long, env = "QUIRE_DATA_DIR", default_value = "./quire-data")]
    pub data_dir: PathBuf,

    /// S3 bucket outputs are stored in (with QUIRE_STORAGE=s3).
    #[arg(long, env = "QUIRE_S3_BUCKET")]
    pub s3_bucket: Option<String>,

    /// Key prefix of outputs in the bucket: objects are `PREFIX/{user_id}/{report_id}.{ext}`.
    #[arg(long, env = "QUIRE_S3_PREFIX")]
    pub s3_prefix: Option<String>,

    /// Address the bucket in the URL path rather than the host name (emulators need this).
    #[arg(long, env = "QUIRE_S3_FORCE_PATH_STYLE", default_value_t = false,
          action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true",
          value_parser = BoolishValueParser::new())]
    pub s3_force_path_style: bool,

    /// Longest wait to open a connection to SQS or S3 (e.g. `3s`).
    #[arg(long, env = "QUIRE_AWS_CONNECT_TIMEOUT", default_value = "3s",
          value_parser = crate::duration::parse)]
    pub aws_connect_timeout: Duration,

    /// Longest wait for the first byte of an SQS or S3 answer, per attempt (long polls get
    /// their poll's length on top).
    #[arg(long, env = "QUIRE_AWS_READ_TIMEOUT", default_value = "20s",
          value_parser = crate::duration::parse)]
    pub aws_read_timeout: Duration,

    /// Longest an SQS or S3 call may take, retries included.
    #[arg(long, env = "QUIRE_AWS_OPERATION_TIMEOUT", default_value = "45s",
          value_parser = crate::duration::parse)]
    pub aws_operation_timeout: Duration,
}

/// How links to locally stored files are made; only the API server signs them.
pub struct LocalLinks {
    /// Base URL clients reach the API server at (`files/…` is joined below it).
    pub public_url: Url,
    /// HMAC key of the links, at least 32 bytes.
    pub signing_key: Vec<u8>,
}

/// The built backends.
pub struct Backends {
    pub queue: Arc<dyn WorkQueue>,
    pub storage: Arc<dyn OutputStorage>,
    /// The same storage when it is local, for the API server to serve its files.
    pub local: Option<Arc<LocalStorage>>,
}

impl BackendArgs {
    /// Checks that every setting the chosen backends need is there, without the network.
    pub fn validate(&self) -> Result<()> {
        if self.queue == QueueBackend::Sqs
            && self.sqs_queue_url.as_deref().is_none_or(|u| u.is_empty())
        {
            return Err(Error::Invalid(
                "QUIRE_QUEUE=sqs needs QUIRE_SQS_QUEUE_URL (or --sqs-queue-url)".into(),
            ));
        }
        if self.storage == StorageBackend::S3
            && self.s3_bucket.as_deref().is_none_or(|b| b.is_empty())
        {
            return Err(Error::Invalid(
                "QUIRE_STORAGE=s3 needs QUIRE_S3_BUCKET (or --s3-bucket)".into(),
            ));
        }
        Ok(())
    }

    /// The bounds on every AWS call.
    pub fn aws_timeouts(&self) -> crate::aws::AwsTimeouts {
        crate::aws::AwsTimeouts {
            connect: self.aws_connect_timeout,
            read: self.aws_read_timeout,
            operation: self.aws_operation_timeout,
        }
    }

    /// Builds the queue and storage. `pool` carries the database queue; `links` signs local
    /// download links (`None` in binaries that never hand out links: a random key is used).
    /// The AWS configuration is loaded only when an AWS backend is chosen.
    pub async fn build(&self, pool: &PgPool, links: Option<LocalLinks>) -> Result<Backends> {
        self.validate()?;
        let aws = if self.queue == QueueBackend::Sqs || self.storage == StorageBackend::S3 {
            Some(crate::aws::load_sdk_config_with(self.aws_timeouts()).await)
        } else {
            None
        };

        let queue: Arc<dyn WorkQueue> = match (self.queue, &aws, &self.sqs_queue_url) {
            (QueueBackend::Sqs, Some(aws), Some(url)) => {
                let mut queue = SqsQueue::new(crate::aws::sqs_client(aws), url.clone());
                if let Some(dead_letters) = &self.sqs_dead_letter_queue_url {
                    queue = queue.with_dead_letter_queue(dead_letters.clone());
                }
                Arc::new(queue)
            }
            _ => Arc::new(DatabaseQueue::postgres(pool.clone())),
        };

        let (storage, local): (Arc<dyn OutputStorage>, _) =
            match (self.storage, &aws, &self.s3_bucket) {
                (StorageBackend::S3, Some(aws), Some(bucket)) => {
                    let client = crate::aws::s3_client(aws, self.s3_force_path_style);
                    let storage = S3Storage::new(client, bucket.clone(), self.s3_prefix.clone());
                    (Arc::new(storage), None)
                }
                _ => {
                    let local = local_storage(&self.data_dir, links)?;
                    (local.clone() as Arc<dyn OutputStorage>, Some(local))
                }
            };
        Ok(Backends {
            queue,
            storage,
            local,
        })
    }
}

impl Backends {
    /// The embedded backends `quire dev` runs on: the database queue in `store`'s SQLite
    /// file and local storage under `data_dir/outputs`, links signed by `links`.
    pub fn embedded(data_dir: &Path, store: &SqliteStore, links: LocalLinks) -> Result<Self> {
        let local = local_storage(data_dir, Some(links))?;
        Ok(Self {
            queue: Arc::new(DatabaseQueue::sqlite(store.pool().clone())),
            storage: local.clone(),
            local: Some(local),
        })
    }
}

/// Local storage in `data_dir/outputs`. Without `links` (a binary that never hands out
/// links) they are signed with a random key.
fn local_storage(data_dir: &Path, links: Option<LocalLinks>) -> Result<Arc<LocalStorage>> {
    let links = links.unwrap_or_else(|| LocalLinks {
        public_url: Url::parse("http://127.0.0.1/").expect("a valid URL"),
        signing_key: rand::random::<[u8; 32]>().to_vec(),
    });
    let dir = data_dir.join("outputs");
    match LocalStorage::new(&dir, links.public_url, links.signing_key) {
        Ok(local) => Ok(Arc::new(local)),
        Err(Error::Io(e)) => Err(Error::storage_caused(
            format!("preparing local storage in {}: {e}", dir.display()),
            e,
        )),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        backends: BackendArgs,
    }

    fn parse(args: &[&str]) -> BackendArgs {
        Cli::try_parse_from(std::iter::once("test").chain(args.iter().copied()))
            .expect("valid arguments")
            .backends
    }

    #[test]
    fn aws_backends_need_their_queue_url_and_bucket() {
        let message = parse(&["--queue", "sqs"])
            .validate()
            .unwrap_err()
            .to_string();
        assert!(message.contains("QUIRE_SQS_QUEUE_URL"), "{message}");
        let message = parse(&["--storage", "s3"])
            .validate()
            .unwrap_err()
            .to_string();
        assert!(message.contains("QUIRE_S3_BUCKET"), "{message}");
        let complete = parse(&[
            "--queue",
            "sqs",
            "--sqs-queue-url",
            "http://127.0.0.1:4566/000000000000/work",
            "--storage",
            "s3",
            "--s3-bucket",
            "outputs",
        ]);
        assert!(complete.validate().is_ok());
        assert!(
            parse(&[]).validate().is_ok(),
            "database and local need nothing"
        );
    }

    #[test]
    fn path_style_is_a_flag_or_a_boolean() {
        assert!(!parse(&[]).s3_force_path_style);
        assert!(parse(&["--s3-force-path-style"]).s3_force_path_style);
        assert!(parse(&["--s3-force-path-style", "true"]).s3_force_path_style);
        assert!(!parse(&["--s3-force-path-style", "false"]).s3_force_path_style);
    }
}
