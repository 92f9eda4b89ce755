// The JavaScript SDK v3 meeting `close: before_response` on a kept-alive connection after an
// idle time (run by tests/it/quirks.rs under `s3chaos exec`): it must retry and succeed.
import { S3Client, CreateBucketCommand, PutObjectCommand, GetObjectCommand } from "@aws-sdk/client-s3";
const s3 = new S3Client({ endpoint: process.env.AWS_ENDPOINT_URL, region: "us-east-1", forcePathStyle: true,
  credentials: { accessKeyId: "test", secretAccessKey: "test" } });
await s3.send(new CreateBucketCommand({ Bucket: "quirks" }));
await s3.send(new PutObjectCommand({ Bucket: "quirks", Key: "k", Body: "0123456789" }));
const read = async () => (await (await s3.send(new GetObjectCommand({ Bucket: "quirks", Key: "k" }))).Body.transformToString());
const check = (got) => { if (got !== "0123456789") { console.error(`FAILED: read ${got}`); process.exit(1); } };
check(await read());
await new Promise((r) => setTimeout(r, 300)); // the pooled connection sits idle
check(await read()); // closed under it: the SDK must retry
