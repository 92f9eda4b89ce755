//! Per-request cost of rule evaluation (classify + match + decide) for 1, 100 and 1,000
//! rules that do not match, and for a scenario where a rule fires.
//!
//! Run: `cargo bench --bench engine`.

use std::fmt::Write as _;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, Method, Uri};
use s3chaos::engine::Engine;
use s3chaos::engine::Scenario;
use s3chaos::s3::Classifier;

/// `n` rules of the kinds a large scenario has, none matching the benchmark's request.
fn non_matching(n: usize) -> Scenario {
    let mut yaml = String::from("name: bench\nrules:\n");
    for i in 0..n {
        let _ = match i % 4 {
            0 => writeln!(
                yaml,
                "  - {{name: r{i}, match: {{bucket: \"other-{i}\"}}, fault: {{error: SlowDown}}}}"
            ),
            1 => writeln!(
                yaml,
                "  - {{name: r{i}, match: {{key: \"prefix-{i}/*\"}}, fault: {{latency: 10ms}}}}"
            ),
            2 => writeln!(
                yaml,
                "  - {{name: r{i}, match: {{operation: PutObject, bucket: \"b{i}-*\"}}, fault: reset}}"
            ),
            _ => writeln!(
                yaml,
                "  - {{name: r{i}, match: {{header: {{x-tenant: \"t{i}\"}}}}, fault: {{error: InternalError}}}}"
            ),
        };
    }
    Scenario::parse(&yaml, "bench").unwrap()
}

fn request() -> (Method, Uri, HeaderMap) {
    let uri: Uri = "/photos/thumbs/2024/a%20b.jpg?x-id=GetObject".parse().unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("host", "127.0.0.1:9080".parse().unwrap());
    headers.insert("x-amz-content-sha256", "UNSIGNED-PAYLOAD".parse().unwrap());
    headers.insert("amz-sdk-request", "attempt=1; max=3".parse().unwrap());
    headers.insert("x-tenant", "blue".parse().unwrap());
    (Method::GET, uri, headers)
}

fn evaluation(c: &mut Criterion) {
    let classifier = Classifier::default();
    let (method, uri, headers) = request();
    c.bench_function("classify", |b| {
        b.iter(|| black_box(classifier.classify(&method, &uri, &headers)).operation)
    });
    for n in [1, 100, 1000] {
        let engine = Engine::new(non_matching(n));
        c.bench_function(&format!("classify+match+decide, {n} non-matching rules"), |b| {
            b.iter(|| {
                let info = classifier.classify(&method, &uri, &headers);
                black_box(engine.decide(&info).is_some())
            })
        });
    }
    let firing = Engine::new(
        Scenario::parse(
            "name: f\nseed: 1\nrules:\n  - {match: {key: \"thumbs/*\"}, probability: 0.5, fault: {error: SlowDown}}\n",
            "f",
        )
        .unwrap(),
    );
    c.bench_function("classify+match+decide, one rule firing half the time", |b| {
        b.iter(|| {
            let info = classifier.classify(&method, &uri, &headers);
            black_box(firing.decide(&info).is_some())
        })
    });
}

criterion_group!(benches, evaluation);
criterion_main!(benches);
