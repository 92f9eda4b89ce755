// The JavaScript SDK v3 against `s3chaos exec --tls-self-signed`: Node must trust the
// generated CA through what exec exports (NODE_EXTRA_CA_CERTS), with no option of its own.
import { S3Client, CreateBucketCommand, PutObjectCommand, GetObjectCommand } from "@aws-sdk/client-s3";

const endpoint = process.env.AWS_ENDPOINT_URL;
if (!endpoint || !endpoint.startsWith("https://")) {
  console.error(`FAILED: run under s3chaos exec --tls-self-signed (AWS_ENDPOINT_URL=${endpoint})`);
  process.exit(1);
}
const s3 = new S3Client({ endpoint, region: "us-east-1", forcePathStyle: true });
await s3.send(new CreateBucketCommand({ Bucket: "jstls" }));
await s3.send(new PutObjectCommand({ Bucket: "jstls", Key: "k", Body: "over TLS" }));
const got = await s3.send(new GetObjectCommand({ Bucket: "jstls", Key: "k" }));
const body = await got.Body.transformToString();
if (body !== "over TLS") {
  console.error(`FAILED: read back ${JSON.stringify(body)}`);
  process.exit(1);
}
console.log("the JS SDK trusted s3chaos's CA");
