"""boto3 against s3chaos's embedded store: what the first store (s3s-fs) got wrong.

Run by tests/it/clients.rs with S3CHAOS_ENDPOINT set; exits non-zero with a message on the
first behaviour that is not S3's.
"""
import hashlib
import os
import sys
import tempfile

import boto3
import botocore.config
from botocore.exceptions import ClientError

endpoint = os.environ["S3CHAOS_ENDPOINT"]
# Credentials that look like someone's real ones, and a region that is not us-east-1.
s3 = boto3.client(
    "s3",
    endpoint_url=endpoint,
    region_name="eu-central-1",
    aws_access_key_id="AKIAIOSFODNN7EXAMPLE",
    aws_secret_access_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    config=botocore.config.Config(s3={"addressing_style": "path"}, retries={"mode": "standard"}),
)


def check(cond, what):
    if not cond:
        sys.exit(f"FAILED: {what}")


KEYS = ["p+q.txt", "a b.txt", "dir/sub/deep.txt", "dir/top.txt", "ünïcødé/ß.txt", "100%.txt", "x&y=z.txt"]

s3.create_bucket(Bucket="boto")
for k in KEYS:
    s3.put_object(Bucket="boto", Key=k, Body=k.encode())

# boto3 asks for encoding-type=url and decodes: every key comes back as it was written.
out = s3.list_objects_v2(Bucket="boto")
check(sorted(o["Key"] for o in out["Contents"]) == sorted(KEYS), f"ListObjectsV2 keys: {out.get('Contents')}")

# An empty delimiter is no delimiter: every key, no invented common prefixes.
out = s3.list_objects_v2(Bucket="boto", Delimiter="")
check(len(out.get("Contents", [])) == len(KEYS), f"delimiter='' keys: {out.get('Contents')}")
check(not out.get("CommonPrefixes"), f"delimiter='' invented prefixes: {out.get('CommonPrefixes')}")

out = s3.list_objects_v2(Bucket="boto", Delimiter="/")
prefixes = [p["Prefix"] for p in out.get("CommonPrefixes", [])]
check(prefixes == ["dir/", "ünïcødé/"], f"common prefixes in order: {prefixes}")

# Paging two at a time, V2 and V1, loses and repeats nothing.
for name in ["list_objects_v2", "list_objects"]:
    pages = s3.get_paginator(name).paginate(Bucket="boto", PaginationConfig={"PageSize": 2})
    keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    check(keys == sorted(KEYS, key=lambda k: k.encode()), f"{name} paged: {keys}")

# HEAD of a key that is only a prefix: 404, as S3.
try:
    s3.head_object(Bucket="boto", Key="dir")
    check(False, "HEAD of a prefix succeeded")
except ClientError as e:
    check(e.response["Error"]["Code"] == "404", f"HEAD of a prefix: {e.response}")

# Keys are never paths.
s3.create_bucket(Bucket="other")
s3.put_object(Bucket="other", Key="victim", Body=b"safe")
s3.put_object(Bucket="boto", Key="../other/victim", Body=b"overwritten?")
check(s3.get_object(Bucket="other", Key="victim")["Body"].read() == b"safe", "a key left its bucket")
s3.put_object(Bucket="boto", Key="..", Body=b"dots")
check(s3.get_object(Bucket="boto", Key="..")["Body"].read() == b"dots", "key ..")

# Cleanup code lists versions first: answered, each object its own `null` version.
out = s3.list_object_versions(Bucket="other")
check([(v["Key"], v["VersionId"]) for v in out["Versions"]] == [("victim", "null")], f"versions: {out}")

# A multipart upload (boto3 sends its default CRC32 checksums in aws-chunked trailers).
with tempfile.TemporaryDirectory() as tmp:
    src = os.path.join(tmp, "big.bin")
    data = os.urandom(12 * 1024 * 1024 + 17)
    with open(src, "wb") as f:
        f.write(data)
    cfg = boto3.s3.transfer.TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024)
    s3.upload_file(src, "boto", "big.bin", Config=cfg)
    head = s3.head_object(Bucket="boto", Key="big.bin")
    check(head["ContentLength"] == len(data), f"multipart size: {head}")
    check(head["ETag"].endswith('-3"'), f"multipart ETag is md5-of-md5s-3: {head['ETag']}")
    dst = os.path.join(tmp, "back.bin")
    s3.download_file("boto", "big.bin", dst)
    with open(dst, "rb") as f:
        check(hashlib.sha256(f.read()).digest() == hashlib.sha256(data).digest(), "multipart round trip")

# A checksum stored and returned.
body = b"checked body"
put = s3.put_object(Bucket="boto", Key="sum", Body=body, ChecksumAlgorithm="SHA256")
got = s3.get_object(Bucket="boto", Key="sum", ChecksumMode="ENABLED")
check(got["ChecksumSHA256"] == put["ChecksumSHA256"], f"checksum: {got.get('ChecksumSHA256')} vs {put['ChecksumSHA256']}")
check(got["Body"].read() == body, "checksummed body")

# Conditional write: If-None-Match: * refuses an existing key.
try:
    s3.put_object(Bucket="boto", Key="sum", Body=b"again", IfNoneMatch="*")
    check(False, "If-None-Match: * overwrote")
except ClientError as e:
    check(e.response["Error"]["Code"] == "PreconditionFailed", f"If-None-Match: {e.response['Error']}")

# What ceph's s3-tests found: aws-chunked is framing, not a stored encoding (boto3 sends
# "gzip,aws-chunked" with its checksum trailer); an empty delimiter is not echoed; no
# VersionId in a bucket without versioning; 304 carries the ETag; re-creating your own
# bucket in us-east-1 is a 200 that keeps it.
s3.put_object(Bucket="boto", Key="gz", Body=b"not really gzip", ContentEncoding="gzip")
check(s3.head_object(Bucket="boto", Key="gz")["ContentEncoding"] == "gzip", "stored Content-Encoding")
check("Delimiter" not in s3.list_objects_v2(Bucket="boto", Delimiter=""), "empty Delimiter echoed")
# A V1 listing echoes its Prefix unencoded (boto3 does not decode it), V2 encoded (it does).
check(s3.list_objects(Bucket="boto", Prefix="\n")["Prefix"] == "\n", "V1 Prefix")
check(s3.list_objects_v2(Bucket="boto", Prefix="\n")["Prefix"] == "\n", "V2 Prefix")
put = s3.put_object(Bucket="boto", Key="plain", Body=b"x")
check("VersionId" not in put, f"VersionId without versioning: {put.get('VersionId')}")
try:
    s3.get_object(Bucket="boto", Key="plain", IfNoneMatch=put["ETag"])
    check(False, "If-None-Match of the current ETag answered 200")
except ClientError as e:
    check(e.response["ResponseMetadata"]["HTTPStatusCode"] == 304, f"304: {e.response}")
    check(e.response["ResponseMetadata"]["HTTPHeaders"].get("etag") == put["ETag"], "304 without ETag")
us_east = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="k",
                       aws_secret_access_key="s", config=botocore.config.Config(s3={"addressing_style": "path"}))
us_east.create_bucket(Bucket="boto")
check(s3.head_object(Bucket="boto", Key="plain")["ContentLength"] == 1, "re-creating emptied the bucket")

# DeleteObjects, then the bucket is empty and can go.
keys = [o["Key"] for o in s3.list_objects_v2(Bucket="boto")["Contents"]]
s3.delete_objects(Bucket="boto", Delete={"Objects": [{"Key": k} for k in keys]})
check(s3.list_objects_v2(Bucket="boto")["KeyCount"] == 0, "DeleteObjects left keys")
s3.delete_bucket(Bucket="boto")
print("boto3: all behaviours as S3")
