"""MinIO's Python client against s3chaos's embedded store (run by tests/it/clients.rs)."""
import io
import os
import sys
import tempfile
from urllib.parse import urlparse

from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import S3Error

endpoint = urlparse(os.environ["S3CHAOS_ENDPOINT"]).netloc
mc = Minio(endpoint, access_key="AKIAIOSFODNN7EXAMPLE",
           secret_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", secure=False)


def check(cond, what):
    if not cond:
        sys.exit(f"FAILED: {what}")


KEYS = ["p+q.txt", "a b.txt", "dir/sub/deep.txt", "dir/top.txt", "ünïcødé/ß.txt", "100%.txt"]
mc.make_bucket("minio")
check(mc.bucket_exists("minio"), "bucket_exists")
for k in KEYS:
    mc.put_object("minio", k, io.BytesIO(k.encode()), len(k.encode()))

listed = [o.object_name for o in mc.list_objects("minio", recursive=True)]
check(sorted(listed) == sorted(KEYS), f"recursive listing: {listed}")
top = [o.object_name for o in mc.list_objects("minio")]
check(sorted(top) == sorted(["p+q.txt", "a b.txt", "dir/", "ünïcødé/", "100%.txt"]), f"top level: {top}")
v1 = [o.object_name for o in mc.list_objects("minio", recursive=True, use_api_v1=True)]
check(sorted(v1) == sorted(KEYS), f"ListObjects v1: {v1}")

with tempfile.TemporaryDirectory() as tmp:
    src = os.path.join(tmp, "big.bin")
    data = os.urandom(12 * 1024 * 1024 + 5)
    with open(src, "wb") as f:
        f.write(data)
    mc.fput_object("minio", "big.bin", src, part_size=5 * 1024 * 1024)
    st = mc.stat_object("minio", "big.bin")
    check(st.size == len(data), f"size {st.size}")
    check(st.etag.endswith("-3"), f"multipart etag {st.etag}")
    resp = mc.get_object("minio", "big.bin")
    check(resp.read() == data, "multipart round trip")
    resp.close()
    resp = mc.get_object("minio", "big.bin", offset=100, length=10)
    check(resp.read() == data[100:110], "range read")
    resp.close()

try:
    mc.stat_object("minio", "dir")
    check(False, "stat of a prefix succeeded")
except S3Error as e:
    check(e.code in ("NoSuchKey", "ResourceNotFound"), f"stat of a prefix: {e.code}")

errors = list(mc.remove_objects("minio", [DeleteObject(o.object_name) for o in mc.list_objects("minio", recursive=True)]))
check(not errors, f"remove_objects: {errors}")
mc.remove_bucket("minio")
check(not mc.bucket_exists("minio"), "bucket removed")
print("minio: all behaviours as S3")
