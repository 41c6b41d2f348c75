#!/usr/bin/env python3
"""Creates what Quire needs on LocalStack (or any SQS and S3 endpoint) and prints the work
queue's URL, for QUIRE_SQS_QUEUE_URL:

- the dead-letter queue `quire-work-dlq`;
- the work queue `quire-work` (visibility timeout 60 s) whose redrive policy moves a
  message to `quire-work-dlq` after 10 receives. That is well above the worker's
  QUIRE_MAX_ATTEMPTS (5): the worker dead-letters a report's message itself when its
  attempts run out, so the redrive only catches a message whose worker keeps dying before
  it records anything, and never cuts a report's retries short;
- the bucket `quire-reports`.

The same as deploy/dev/localstack.yaml's init hook. Idempotent: creating a queue or bucket
that exists with the same settings succeeds. Uses boto3 (LocalStack's virtualenv has it,
see scripts/lib/localstack.sh) with the standard AWS environment: AWS_ENDPOINT_URL,
AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY.
"""

import json
import os

import boto3
from botocore.config import Config

QUEUE = "quire-work"
DEAD_LETTER_QUEUE = "quire-work-dlq"
BUCKET = "quire-reports"
MAX_RECEIVE_COUNT = 10

region = os.environ.get("AWS_REGION", "us-east-1")
sqs = boto3.client("sqs", region_name=region)
s3 = boto3.client("s3", region_name=region, config=Config(s3={"addressing_style": "path"}))

dlq_url = sqs.create_queue(QueueName=DEAD_LETTER_QUEUE)["QueueUrl"]
dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
    "Attributes"
]["QueueArn"]
redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVE_COUNT)}
queue_url = sqs.create_queue(
    QueueName=QUEUE,
    Attributes={"VisibilityTimeout": "60", "RedrivePolicy": json.dumps(redrive, separators=(",", ":"))},
)["QueueUrl"]

if region == "us-east-1":
    s3.create_bucket(Bucket=BUCKET)
else:
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": region})

print(queue_url)
