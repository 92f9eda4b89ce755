//! Many CI jobs sharing one proxy: each job's requests meet only its own scope's rules, and
//! (when allowed) a request can ask for its own fault.

use std::time::{Duration, Instant};

use aws_sdk_s3::error::ProvideErrorMetadata;
use s3chaos::engine::EngineOptions;

use crate::harness::{Harness, client_for, seed_object};

const SCOPED: &str = r#"
name: shared-ci
scope_keys: {AKIAJOBC: job-c}
rules:
  - {name: a-breaks, scope: job-a, fault: {error: InternalError}}
  - {name: b-throttled, scope: job-b, fault: {error: SlowDown}}
  - {name: c-expired, scope: job-c, fault: {error: ExpiredToken}}
  - {name: unscoped-archive, match: {bucket: archive}, fault: {error: ServiceUnavailable}}
"#;

/// A GET sent with `header: value` added by the SDK before signing.
async fn get_with(h: &Harness, header: Option<(&'static str, &'static str)>) -> Result<(), String> {
    let mut op = h
        .single_attempt_client(None)
        .get_object()
        .bucket("shared")
        .key("k")
        .customize();
    if let Some((name, value)) = header {
        op = op.mutate_request(move |req| {
            req.headers_mut().insert(name, value);
        });
    }
    op.send()
        .await
        .map(|_| ())
        .map_err(|e| e.code().unwrap_or("(no code)").to_owned())
}

#[tokio::test]
async fn parallel_scopes_do_not_see_each_others_faults() {
    let h = Harness::start(SCOPED).await;
    seed_object(&h, "shared", "k", 10).await;
    seed_object(&h, "archive", "k", 10).await;
    let (a, b, none) = tokio::join!(
        get_with(&h, Some(("x-s3chaos-scope", "job-a"))),
        get_with(&h, Some(("x-s3chaos-scope", "job-b"))),
        get_with(&h, None),
    );
    assert_eq!(a, Err("InternalError".into()));
    assert_eq!(b, Err("SlowDown".into()));
    assert_eq!(none, Ok(()), "a request without a scope meets no scoped rule");
    assert_eq!(
        get_with(&h, Some(("x-s3chaos-scope", "job-z"))).await,
        Ok(()),
        "an unknown scope has no rules"
    );

    // A scoped request does not meet the unscoped rules either: isolation both ways.
    let scoped_archive = h
        .single_attempt_client(None)
        .get_object()
        .bucket("archive")
        .key("k")
        .customize()
        .mutate_request(|r| {
            r.headers_mut().insert("x-s3chaos-scope", "job-a");
        })
        .send()
        .await;
    assert_eq!(
        scoped_archive.unwrap_err().code(),
        Some("InternalError"),
        "job-a's own rule, not the archive's"
    );
    let unscoped_archive = h
        .single_attempt_client(None)
        .get_object()
        .bucket("archive")
        .key("k")
        .send()
        .await;
    assert_eq!(unscoped_archive.unwrap_err().code(), Some("ServiceUnavailable"));

    // A job identified by its own access key (scope_keys), no header needed.
    let job_c = client_for(h.proxy, |b| {
        crate::harness::single_attempt(b, None).credentials_provider(aws_sdk_s3::config::Credentials::new(
            "AKIAJOBC",
            "job-c-secret",
            None,
            None,
            "job-c",
        ))
    });
    let err = job_c.get_object().bucket("shared").key("k").send().await.unwrap_err();
    assert_eq!(err.code(), Some("ExpiredToken"));
    assert_eq!(h.stats("a-breaks").injected, 2);
    assert_eq!(h.stats("b-throttled").injected, 1);
}

#[tokio::test]
async fn a_request_can_ask_for_its_own_fault_when_allowed() {
    let allowed = Harness::start_with(
        "name: empty\n",
        EngineOptions {
            allow_header_faults: true,
            ..EngineOptions::default()
        },
    )
    .await;
    seed_object(&allowed, "shared", "k", 10).await;
    assert_eq!(
        get_with(&allowed, Some(("x-s3chaos-fault", "SlowDown"))).await,
        Err("SlowDown".into())
    );
    let started = Instant::now();
    assert_eq!(
        get_with(&allowed, Some(("x-s3chaos-fault", "{latency: 300ms}"))).await,
        Ok(())
    );
    assert!(started.elapsed() >= Duration::from_millis(300), "the asked-for latency");
    assert_eq!(
        get_with(&allowed, Some(("x-s3chaos-fault", "{latency: soon}"))).await,
        Ok(()),
        "a header that is not a fault is ignored"
    );

    let not_allowed = Harness::start("name: empty\n").await;
    seed_object(&not_allowed, "shared", "k", 10).await;
    assert_eq!(
        get_with(&not_allowed, Some(("x-s3chaos-fault", "SlowDown"))).await,
        Ok(()),
        "off unless --allow-header-faults"
    );
}

/// A CI job adds and removes rules for its own scope through the admin API.
#[tokio::test]
async fn the_admin_api_adds_rules_per_scope() {
    let h = Harness::start("name: shared\n").await;
    seed_object(&h, "shared", "k", 10).await;
    let (admin, _) = h.admin("name: shared\n", None).await;
    let (status, added) = crate::admin::call(
        admin,
        "POST",
        "/rules",
        r#"{"name": "mine", "scope": "job-7", "fault": {"error": "SlowDown"}}"#,
        None,
    )
    .await;
    assert_eq!((status, added["added"].as_str()), (201, Some("api/mine")));
    assert_eq!(
        get_with(&h, Some(("x-s3chaos-scope", "job-7"))).await,
        Err("SlowDown".into())
    );
    assert_eq!(
        get_with(&h, Some(("x-s3chaos-scope", "job-8"))).await,
        Ok(()),
        "another job"
    );
    assert_eq!(get_with(&h, None).await, Ok(()), "unscoped traffic");
    assert_eq!(
        crate::admin::call(admin, "DELETE", "/rules/api/mine", "", None).await.0,
        200
    );
    assert_eq!(get_with(&h, Some(("x-s3chaos-scope", "job-7"))).await, Ok(()));
}
