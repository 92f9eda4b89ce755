"""Example resilience tests for an app that stores records in S3, run under s3chaos:

    s3chaos exec --scenario builtin:slowdown-storm --junit chaos.xml -- pytest docker/examples/pytest

`s3chaos exec` exports AWS_ENDPOINT_URL (boto3 >= 1.28 reads it), and, for its embedded
store, test credentials. The tests assert what the app promises, not that nothing failed:
every record written is read back intact, with the SDK's retries doing their job.
"""

import os
import uuid

import boto3
import pytest
from botocore.config import Config


@pytest.fixture(scope="module")
def s3():
    assert os.environ.get("AWS_ENDPOINT_URL"), "run under `s3chaos exec`"
    client = boto3.client(
        "s3",
        config=Config(
            retries={"mode": "standard", "max_attempts": 5},
            connect_timeout=2,
            read_timeout=5,
            s3={"addressing_style": "path"},
        ),
    )
    bucket = "resilience-" + uuid.uuid4().hex[:8]
    client.create_bucket(Bucket=bucket)
    client.bucket = bucket
    return client


def test_every_record_written_is_read_back(s3):
    for i in range(50):
        key = f"hot/record-{i}"
        body = f"record {i}".encode()
        s3.put_object(Bucket=s3.bucket, Key=key, Body=body)
        assert s3.get_object(Bucket=s3.bucket, Key=key)["Body"].read() == body


def test_listing_sees_every_record(s3):
    keys = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=s3.bucket, Prefix="hot/"):
        keys.update(o["Key"] for o in page.get("Contents", []))
    assert {f"hot/record-{i}" for i in range(50)} <= keys
