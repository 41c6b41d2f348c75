//! One AWS configuration for every AWS client Quire uses (SQS for the work queue, S3 for
//! output storage).
//!
//! [`load_sdk_config`] runs the SDK's standard provider chain once; every client is built
//! from the resulting [`SdkConfig`], so region, credentials, retries and timeouts are decided
//! in one place. The chain is entirely the SDK's own (aws-config):
//!
//! - region: `AWS_REGION`, then the profile (`AWS_PROFILE`, `~/.aws/config`), then instance
//!   metadata;
//! - credentials: `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`(/`AWS_SESSION_TOKEN`), the
//!   profile (including SSO and `credential_process`), web identity (EKS service accounts),
//!   ECS and EC2 instance metadata;
//! - endpoint: `AWS_ENDPOINT_URL` for every service, or `AWS_ENDPOINT_URL_SQS` /
//!   `AWS_ENDPOINT_URL_S3` for one (also `endpoint_url` in the profile, per service in a
//!   `services` section), unless `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true`. This is how the
//!   tests point everything at a local emulator (moto).
//!
//! Emulators serve buckets under the path (`http://host:port/bucket/key`) rather than as a
//! host name (`bucket.host`), so [`s3_client`] can force path-style addressing.

//!
//! Every call is bounded ([`AwsTimeouts`]): a black-holed endpoint (connections accepted,
//! never answered) costs a request or a worker slot seconds, never forever. SQS long polls
//! stretch the bounds by the length of the poll (see [`crate::queue::SqsQueue`]).

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};

/// Bounds on every AWS call (`QUIRE_AWS_CONNECT_TIMEOUT`, `QUIRE_AWS_READ_TIMEOUT`,
/// `QUIRE_AWS_OPERATION_TIMEOUT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AwsTimeouts {
    /// Opening a connection (TCP and TLS).
    pub connect: Duration,
    /// From sending a request to the first byte of its answer, per attempt.
    pub read: Duration,
    /// A whole call, retries included.
    pub operation: Duration,
}

impl Default for AwsTimeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(3),
            read: Duration::from_secs(20),
            operation: Duration::from_secs(45),
        }
    }
}

/// Loads the AWS configuration from the standard chain (see the module docs) with the
/// default [`AwsTimeouts`]. Call once per process and build every client from the result.
pub async fn load_sdk_config() -> SdkConfig {
    load_sdk_config_with(AwsTimeouts::default()).await
}

/// [`load_sdk_config`] with the given bounds on every call.
pub async fn load_sdk_config_with(timeouts: AwsTimeouts) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(timeouts.connect)
                .read_timeout(timeouts.read)
                .operation_timeout(timeouts.operation)
                .build(),
        )
        .load()
        .await
}

/// An SQS client on `config`.
pub fn sqs_client(config: &SdkConfig) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(config)
}

/// An S3 client on `config`. `force_path_style` addresses buckets in the path
/// (`endpoint/bucket/key`) instead of the host name, which emulators (moto, MinIO) need;
/// leave it off for AWS itself.
pub fn s3_client(config: &SdkConfig, force_path_style: bool) -> aws_sdk_s3::Client {
    let s3_config = aws_sdk_s3::config::Builder::from(config)
        .force_path_style(force_path_style)
        .build();
    aws_sdk_s3::Client::from_conf(s3_config)
}
