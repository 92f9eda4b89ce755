//! Testing an `aws-sdk-s3` client against s3chaos, inside `cargo test`: the app's upload
//! must get over throttling, and must report (not hide) an outage that outlasts its retries.
//!
//! Run: `cargo test --example aws_sdk_s3` (it is also part of `cargo test`).

use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::ProvideErrorMetadata;

/// The code under test: stores a report, with the SDK's standard retries.
pub async fn upload_report(s3: &Client, bucket: &str, key: &str, body: &[u8]) -> Result<(), String> {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(body.to_vec().into())
        .send()
        .await
        .map(|_| ())
        .map_err(|e| format!("upload failed: {}", e.code().unwrap_or("no answer")))
}

/// The app's client, pointed at `endpoint` (in production: the real S3).
pub fn client(endpoint: &str) -> Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(Credentials::new("test", "test", None, None, "example"))
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(Duration::from_millis(20)),
        )
        .build();
    Client::from_conf(config)
}

fn main() {
    eprintln!("this example is a test: cargo test --example aws_sdk_s3");
}

#[cfg(test)]
mod tests {
    use super::*;
    use s3chaos::testing::ChaosS3;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_upload_gets_over_throttling() {
        let chaos = ChaosS3::start().await.unwrap();
        let s3 = client(chaos.endpoint());
        s3.create_bucket().bucket("reports").send().await.unwrap();
        let throttled = chaos
            .fault("{match: {operation: PutObject}, limit: 2, fault: {error: SlowDown}}")
            .unwrap();
        upload_report(&s3, "reports", "daily.csv", b"a,b\n1,2\n").await.unwrap();
        assert_eq!(throttled.stats().unwrap().injected, 2);
        drop(throttled);
        let got = s3.get_object().bucket("reports").key("daily.csv").send().await.unwrap();
        assert_eq!(got.body.collect().await.unwrap().into_bytes().as_ref(), b"a,b\n1,2\n");
        assert!(chaos.verdicts().passed(), "backed off, recovered, nothing left open");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_outage_longer_than_the_retries_is_reported() {
        let chaos = ChaosS3::start().await.unwrap();
        let s3 = client(chaos.endpoint());
        s3.create_bucket().bucket("reports").send().await.unwrap();
        let _down = chaos
            .fault("{match: {operation: PutObject}, fault: {error: InternalError}}")
            .unwrap();
        let err = upload_report(&s3, "reports", "daily.csv", b"x").await.unwrap_err();
        assert_eq!(err, "upload failed: InternalError");
        let attempts: Vec<_> = chaos
            .events()
            .into_iter()
            .filter(|e| e.operation == "PutObject")
            .collect();
        assert_eq!(attempts.len(), 3, "the SDK's three attempts, all failed");
        assert!(
            attempts.iter().all(|e| e.invocation == attempts[0].invocation),
            "one call"
        );
    }
}
