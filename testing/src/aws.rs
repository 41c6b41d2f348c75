//! AWS for tests: an S3 and SQS endpoint from `AWS_ENDPOINT_URL` (the test command starts a
//! moto server and sets it, see `scripts/lib/moto.sh`), and a fresh, uniquely named queue or
//! bucket per test, so tests never see each other's messages or objects.

use aws_config::SdkConfig;
use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
use aws_sdk_sqs::types::QueueAttributeName;
use quire_core::queue::SqsQueue;
use quire_core::storage::S3Storage;
use uuid::Uuid;

/// The AWS API endpoint tests run against. Panics with instructions when it is not
/// configured: a test that needs SQS or S3 must not pass without one.
pub fn aws_endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL").expect(
        "AWS_ENDPOINT_URL must point at an AWS API emulator (or an AWS account the tests may \
         create queues and buckets in); run `scripts/test.sh`, or \
         `source scripts/lib/moto.sh && moto_start`, which starts a throwaway moto server",
    )
}

/// The SDK configuration for tests, from the standard chain (`AWS_ENDPOINT_URL`,
/// `AWS_REGION`, credentials), after checking the endpoint is set.
pub async fn sdk_config() -> SdkConfig {
    aws_endpoint();
    quire_core::aws::load_sdk_config().await
}

/// A unique name for a test queue or bucket (lower case, so it is a valid bucket name).
fn unique_name() -> String {
    format!("quire-test-{}", Uuid::new_v4().simple())
}

/// An [`SqsQueue`] on a new, uniquely named queue, and the queue's URL. The queue has its
/// own dead-letter queue, named by its redrive policy (after 10 receives) and configured on
/// the `SqsQueue` for [`WorkQueue::dead_letter`](quire_core::queue::WorkQueue::dead_letter).
pub async fn fresh_queue() -> (SqsQueue, String) {
    let client = quire_core::aws::sqs_client(&sdk_config().await);
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
pub async fn fresh_bucket() -> S3Storage {
    let config = sdk_config().await;
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
