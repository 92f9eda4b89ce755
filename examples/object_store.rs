//! Testing code built on the `object_store` crate's S3 backend (as storage engines such as
//! SlateDB-like systems are) against s3chaos, inside `cargo test`: throttled writes and a
//! connection reset on a read are retried by object_store and the data comes back whole.
//!
//! Run: `cargo test --example object_store` (it is also part of `cargo test`).

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::{BackoffConfig, ObjectStore, RetryConfig};

/// The store under test, pointed at `endpoint` (in production: the real S3).
pub fn store(endpoint: &str, bucket: &str) -> Arc<dyn ObjectStore> {
    let retry = RetryConfig {
        max_retries: 3,
        retry_timeout: Duration::from_secs(10),
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(200),
            base: 2.0,
        },
    };
    Arc::new(
        AmazonS3Builder::new()
            .with_endpoint(endpoint)
            .with_allow_http(true)
            .with_bucket_name(bucket)
            .with_region("us-east-1")
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .with_retry(retry)
            .build()
            .expect("a valid S3 configuration"),
    )
}

fn main() {
    eprintln!("this example is a test: cargo test --example object_store");
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;
    use object_store::path::Path;
    use s3chaos::testing::ChaosS3;

    async fn create_bucket(endpoint: &str, bucket: &str) {
        // object_store does not create buckets: an unsigned PUT, which the embedded store takes.
        let addr = endpoint.trim_start_matches("http://");
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let request =
            format!("PUT /{bucket} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn throttled_writes_and_a_reset_read_are_retried() {
        let chaos = ChaosS3::start().await.unwrap();
        create_bucket(chaos.endpoint(), "tables").await;
        let store = store(chaos.endpoint(), "tables");
        let path = Path::from("sst/000001.sst");
        let data = vec![7u8; 256 * 1024];
        {
            let _throttled = chaos
                .fault("{match: {operation: PutObject}, limit: 2, fault: {error: SlowDown}}")
                .unwrap();
            store.put(&path, data.clone().into()).await.unwrap();
        }
        {
            let reset = chaos
                .fault("{match: {operation: GetObject}, limit: 1, fault: reset}")
                .unwrap();
            let got = store.get(&path).await.unwrap().bytes().await.unwrap();
            assert_eq!(got.as_ref(), data.as_slice());
            assert_eq!(reset.stats().unwrap().injected, 1);
        }
        let puts: Vec<_> = chaos
            .events()
            .into_iter()
            .filter(|e| e.operation == "PutObject")
            .collect();
        assert_eq!(
            puts.iter().map(|e| e.status).collect::<Vec<_>>(),
            [Some(503), Some(503), Some(200)],
            "object_store retried the throttled PUT"
        );
        assert!(chaos.verdicts().passed());
    }
}
