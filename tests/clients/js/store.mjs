// The JavaScript SDK v3 against s3chaos's embedded store (run by tests/it/clients.rs).
import {
  S3Client, CreateBucketCommand, PutObjectCommand, GetObjectCommand, HeadObjectCommand,
  ListObjectsV2Command, ListObjectVersionsCommand, DeleteObjectsCommand, DeleteBucketCommand,
} from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { randomBytes, createHash } from "node:crypto";

const s3 = new S3Client({
  endpoint: process.env.S3CHAOS_ENDPOINT,
  region: "ap-southeast-2",
  forcePathStyle: true,
  credentials: { accessKeyId: "AKIAIOSFODNN7EXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY" },
});

function check(cond, what) {
  if (!cond) { console.error(`FAILED: ${what}`); process.exit(1); }
}

const KEYS = ["p+q.txt", "a b.txt", "dir/sub/deep.txt", "dir/top.txt", "ünïcødé/ß.txt", "100%.txt"];
await s3.send(new CreateBucketCommand({ Bucket: "jssdk" }));
// The SDK's default: a CRC32 checksum in an aws-chunked trailer.
for (const k of KEYS) await s3.send(new PutObjectCommand({ Bucket: "jssdk", Key: k, Body: k }));

let out = await s3.send(new ListObjectsV2Command({ Bucket: "jssdk" }));
check(JSON.stringify(out.Contents.map((o) => o.Key).sort()) === JSON.stringify([...KEYS].sort()), `keys ${JSON.stringify(out.Contents)}`);
out = await s3.send(new ListObjectsV2Command({ Bucket: "jssdk", Delimiter: "/" }));
check(JSON.stringify((out.CommonPrefixes || []).map((p) => p.Prefix)) === JSON.stringify(["dir/", "ünïcødé/"]), `prefixes ${JSON.stringify(out.CommonPrefixes)}`);

const got = await s3.send(new GetObjectCommand({ Bucket: "jssdk", Key: "p+q.txt" }));
check((await got.Body.transformToString()) === "p+q.txt", "GET p+q.txt");

try {
  await s3.send(new HeadObjectCommand({ Bucket: "jssdk", Key: "dir" }));
  check(false, "HEAD of a prefix succeeded");
} catch (e) {
  check(e.$metadata?.httpStatusCode === 404, `HEAD of a prefix: ${e.name} ${e.$metadata?.httpStatusCode}`);
}

const data = randomBytes(12 * 1024 * 1024 + 3);
await new Upload({ client: s3, params: { Bucket: "jssdk", Key: "big.bin", Body: data }, partSize: 5 * 1024 * 1024 }).done();
const head = await s3.send(new HeadObjectCommand({ Bucket: "jssdk", Key: "big.bin" }));
check(head.ContentLength === data.length, `multipart size ${head.ContentLength}`);
check(head.ETag.endsWith('-3"'), `multipart ETag ${head.ETag}`);
const big = await s3.send(new GetObjectCommand({ Bucket: "jssdk", Key: "big.bin" }));
const back = Buffer.from(await big.Body.transformToByteArray());
check(createHash("sha256").update(back).digest("hex") === createHash("sha256").update(data).digest("hex"), "multipart round trip");

const versions = await s3.send(new ListObjectVersionsCommand({ Bucket: "jssdk" }));
check(versions.Versions.length === KEYS.length + 1 && versions.Versions.every((v) => v.VersionId === "null"), "versions");

out = await s3.send(new ListObjectsV2Command({ Bucket: "jssdk" }));
await s3.send(new DeleteObjectsCommand({ Bucket: "jssdk", Delete: { Objects: out.Contents.map((o) => ({ Key: o.Key })) } }));
await s3.send(new DeleteBucketCommand({ Bucket: "jssdk" }));
console.log("jssdk: all behaviours as S3");
