//! AWS for tests: S3 and SQS on an AWS API emulator, and a fresh, uniquely named queue or
//! bucket per test, so tests never see each other's messages or objects.
//!
//! The SQS and S3 tests run against two emulators, [`Emulator::Moto`] and
//! [`Emulator::LocalStack`]; the test command starts both (see `scripts/lib/moto.sh` and
//! `scripts/lib/localstack.sh`). Where they differ from each other or from AWS, the test
//! that meets the difference names it, and Quire follows AWS's documented behaviour.

use aws_config::meta::region::RegionProviderChain;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_s3::config::Credentials;
use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
use aws_sdk_sqs::types::QueueAttributeName;
use quire_core::queue::SqsQueue;
use quire_core::storage::S3Storage;
use uuid::Uuid;

/// An AWS API emulator the SQS and S3 tests run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emulator {
    /// moto, at `AWS_ENDPOINT_URL` (or an AWS account the tests may create queues and
    /// buckets in).
    Moto,
    /// LocalStack, at `QUIRE_TEST_LOCALSTACK_URL`.
    LocalStack,
}

impl Emulator {
    /// The emulator's endpoint. Panics with instructions when it is not configured: a test
    /// that needs SQS or S3 must not pass without one.
    pub fn endpoint(self) -> String {
        match self {
            Emulator::Moto => aws_endpoint(),
            Emulator::LocalStack => std::env::var("QUIRE_TEST_LOCALSTACK_URL").expect(
                "QUIRE_TEST_LOCALSTACK_URL must point at a LocalStack endpoint (SQS and S3); \
                 run `scripts/test.sh`, or `source scripts/lib/localstack.sh && \
                 localstack_start`, which starts a throwaway LocalStack",
            ),
        }
    }

    /// The access key and secret the tests sign with on this emulator, when it needs its
    /// own (`None`: the standard chain's, which the test command sets for moto).
    ///
    /// LocalStack checks presigned S3 links only against its default secret, so links signed
    /// by any other key are refused: the tests use its documented `test`/`test`. (moto
    /// accepts any credentials and checks no presigned link.)
    pub fn credentials(self) -> Option<(&'static str, &'static str)> {
        match self {
            Emulator::Moto => None,
            Emulator::LocalStack => Some(("test", "test")),
        }
    }
}

/// moto's endpoint, `AWS_ENDPOINT_URL`. Panics with instructions when it is not
/// configured: a test that needs SQS or S3 must not pass without one.
pub fn aws_endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL").expect(
        "AWS_ENDPOINT_URL must point at an AWS API emulator (or an AWS account the tests may \
         create queues and buckets in); run `scripts/test.sh`, or \
         `source scripts/lib/moto.sh && moto_start`, which starts a throwaway moto server",
    )
}

/// The SDK configuration for tests on `emulator`: the standard chain (`AWS_REGION`, else
/// us-east-1; credentials) with every endpoint set to the emulator's.
pub async fn sdk_config(emulator: Emulator) -> SdkConfig {
    sdk_config_via(emulator, &emulator.endpoint()).await
}

/// [`sdk_config`] with every endpoint set to `url` instead, such as a proxy in front of the
/// emulator.
pub async fn sdk_config_via(emulator: Emulator, url: &str) -> SdkConfig {
    let region = RegionProviderChain::default_provider().or_else("us-east-1");
    let loader = aws_config::defaults(BehaviorVersion::latest())
        .region(region)
        .endpoint_url(url);
    let loader = match emulator.credentials() {
        Some((key, secret)) => {
            loader.credentials_provider(Credentials::new(key, secret, None, None, "quire-testing"))
        }
        None => loader,
    };
    loader.load().await
}

/// A unique name for a test queue or bucket (lower case, so it is a valid bucket name).
fn unique_name() -> String {
    format!("quire-test-{}", Uuid::new_v4().simple())
}

/// An [`SqsQueue`] on a new, uniquely named queue, and the queue's URL. The queue has its
/// own dead-letter queue, named by its redrive policy (after 10 receives) and configured on
/// the `SqsQueue` for [`WorkQueue::dead_letter`](quire_core::queue::WorkQueue::dead_letter).
pub async fn fresh_queue(emulator: Emulator) -> (SqsQueue, String) {
    let client = quire_core::aws::sqs_client(&sdk_config(emulator).await);
    let name = unique_name();
    let dead_letters = client
        .create_queue()
        .queue_name(format!("{name}-dlq"))
        .send()
        .await
        .expect("create a test dead-letter queue");
    let dead_letter_url = dead_letters
        .queue_url()
        .expect("CreateQueue returns the queue URL")
        .to_owned();
    let dead_letter_arn = client
        .get_queue_attributes()
        .queue_url(&dead_letter_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("read the dead-letter queue's ARN")
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .expect("GetQueueAttributes returns the ARN")
        .clone();
    let redrive_policy =
        format!(r#"{{"deadLetterTargetArn":"{dead_letter_arn}","maxReceiveCount":"10"}}"#);
    let queue_url = client
        .create_queue()
        .queue_name(&name)
        .attributes(QueueAttributeName::RedrivePolicy, redrive_policy)
        .send()
        .await
        .expect("create a test queue")
        .queue_url()
        .expect("CreateQueue returns the queue URL")
        .to_owned();
    let queue = SqsQueue::new(client, queue_url.clone());
    let discovered = queue
        .dead_letter_queue_url()
        .await
        .expect("find the dead-letter queue from the redrive policy");
    assert_eq!(
        discovered.as_deref(),
        Some(dead_letter_url.as_str()),
        "the redrive policy names the dead-letter queue"
    );
    (queue.with_dead_letter_queue(dead_letter_url), queue_url)
}

/// An [`S3Storage`] on a new, uniquely named bucket (path-style addressing, as emulators
/// need), under the prefix `outputs`.
pub async fn fresh_bucket(emulator: Emulator) -> S3Storage {
    let config = sdk_config(emulator).await;
    let client = quire_core::aws::s3_client(&config, true);
    let bucket = unique_name();
    // us-east-1 is the default location and must not be named; every other region must.
    let location = config
        .region()
        .map(|r| r.as_ref())
        .filter(|r| *r != "us-east-1")
        .map(|r| {
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(r))
                .build()
        });
    client
        .create_bucket()
        .bucket(&bucket)
        .set_create_bucket_configuration(location)
        .send()
        .await
        .expect("create a test bucket");
    S3Storage::new(client, bucket, Some("outputs".to_owned()))
}

/// Emits, for every test `f` (an `async fn f(emulator: Emulator)`), a `#[tokio::test] fn f`
/// in `mod moto` and one in `mod localstack`, each running `f` on that emulator.
#[macro_export]
macro_rules! on_each_emulator {
    ($($test:ident),+ $(,)?) => {
        $crate::on_each_emulator!(@emulator moto, Moto, $($test),+);
        $crate::on_each_emulator!(@emulator localstack, LocalStack, $($test),+);
    };
    (@emulator $module:ident, $emulator:ident, $($test:ident),+) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test($crate::aws::Emulator::$emulator).await;
                }
            )+
        }
    };
}
