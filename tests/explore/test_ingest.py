"""A small ingest job and its functional test, with three planted weaknesses for
`s3chaos explore` to find (tests/it/explore.rs runs it). Everything else is written the
way a careful app is, and survives every fault class:

- clean: the SDK's standard retries; a write that still fails is checked (an error does not
  mean nothing happened) and then spooled to retry later, never lost; a read checks the
  object's MD5 and tries again; setup retries at the app level.
- PLANTED 1: the `_SUCCESS` marker is written by a client with retries off, and its error
  is not handled.
- PLANTED 2: the config GET handles an S3 error, but not an error while reading its body
  (a cut download, a checksum mismatch), and does not check what it read.
- PLANTED 3: the archive's multipart upload reports a failed part or completion, but never
  aborts the upload: its parts stay stored (and billed).

Run it as: s3chaos explore --out chaos-explore -- python3 -m pytest -x -q tests/explore/test_ingest.py
"""

import hashlib
import json
import os
import time

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

BUCKET = "ingest"
CONFIG = {"format": "jsonl", "compression": "none", "retention_days": 30}
DEFAULT_CONFIG = {"format": "jsonl", "compression": "none", "retention_days": 7}
PART = 5 * 1024 * 1024


def client(attempts=3):
    return boto3.client(
        "s3",
        endpoint_url=os.environ["AWS_ENDPOINT_URL"],
        config=Config(
            s3={"addressing_style": "path"},
            # `total_max_attempts` counts the first try; botocore's `max_attempts` does not.
            retries={"mode": "standard", "total_max_attempts": attempts},
            connect_timeout=2,
            read_timeout=5,
        ),
    )


def md5(data):
    return hashlib.md5(data).hexdigest()


# ---- the clean part -------------------------------------------------------------------

def ensure_bucket(s3):
    """Creates the bucket, trying again later if S3 keeps failing."""
    for _ in range(5):
        try:
            s3.create_bucket(Bucket=BUCKET)
            return
        except ClientError as e:
            if e.response["Error"]["Code"] in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                return
        except BotoCoreError:
            pass
        time.sleep(0.2)
    raise RuntimeError("no bucket")


def save(s3, spool, key, data):
    """Stores `data`, or spools it to retry later; returns where it went."""
    try:
        s3.put_object(Bucket=BUCKET, Key=key, Body=data)
        return "stored"
    except (ClientError, BotoCoreError):
        pass
    # The error may have come after S3 stored it: look before spooling a duplicate.
    try:
        head = s3.head_object(Bucket=BUCKET, Key=key)
        if head["ETag"].strip('"') == md5(data):
            return "stored"
    except (ClientError, BotoCoreError):
        pass
    spool.append(key)
    return "spooled"


def load(s3, key, expected):
    """Reads `key` and checks it; None if it cannot be read intact (the caller recomputes)."""
    for attempt in range(3):
        if attempt:
            time.sleep(0.05 * 2**attempt)  # back off before reading again
        try:
            body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        except ClientError as e:
            if e.response["Error"]["Code"] == "NoSuchKey":
                return None  # asking again will not make it exist
            continue
        except BotoCoreError:
            continue
        if md5(body) == md5(expected):
            return body
    return None


# ---- the planted weaknesses -----------------------------------------------------------

def read_config(s3):
    try:
        response = s3.get_object(Bucket=BUCKET, Key="planted/config.json")
    except ClientError:
        return DEFAULT_CONFIG
    return json.loads(response["Body"].read())  # PLANTED 2: a read error is not handled


def upload_archive(s3, data):
    try:
        upload = s3.create_multipart_upload(Bucket=BUCKET, Key="planted/archive.bin")
    except (ClientError, BotoCoreError):
        return False
    try:
        parts = []
        for number, start in enumerate(range(0, len(data), PART), start=1):
            r = s3.upload_part(
                Bucket=BUCKET,
                Key="planted/archive.bin",
                UploadId=upload["UploadId"],
                PartNumber=number,
                Body=data[start : start + PART],
            )
            parts.append({"PartNumber": number, "ETag": r["ETag"]})
        s3.complete_multipart_upload(
            Bucket=BUCKET,
            Key="planted/archive.bin",
            UploadId=upload["UploadId"],
            MultipartUpload={"Parts": parts},
        )
        return True
    except (ClientError, BotoCoreError):
        return False  # PLANTED 3: reported, but the upload is never aborted


def write_marker():
    fragile = client(attempts=1)  # PLANTED 1: no retries, and the error is not handled
    fragile.put_object(Bucket=BUCKET, Key="planted/_SUCCESS", Body=b"")


# ---- the test -------------------------------------------------------------------------

def test_ingest():
    s3 = client()
    spool = []
    ensure_bucket(s3)
    records = [json.dumps({"id": i, "value": "x" * (100 + i)}).encode() for i in range(3)]
    where = [save(s3, spool, f"items/{i}.json", r) for i, r in enumerate(records)]
    save(s3, spool, "planted/config.json", json.dumps(CONFIG).encode())

    for i, record in enumerate(records):
        if where[i] == "spooled":
            assert f"items/{i}.json" in spool  # not lost: it will be written later
            continue
        # A stored record reads back intact, or the app says it could not.
        assert load(s3, f"items/{i}.json", record) in (record, None)

    assert read_config(s3) in (CONFIG, DEFAULT_CONFIG)
    archive = os.urandom(PART + 1024)
    upload_archive(s3, archive)
    write_marker()
