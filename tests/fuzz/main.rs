//! Fuzz targets for everything that reads outside input: the S3 request classifier, the
//! scenario loader (files, `PUT /scenario`), the duration/size/rate parsers and the admin
//! API's JSON rules. proptest drives them (stable Rust, no cargo-fuzz toolchain), mixing
//! random text with inputs built from the grammar so that deep paths are reached too.
//!
//! Each target checks more than "no panic": what a valid input must mean, and that a refused
//! input changed nothing. CI runs 1,000 cases per target; a long local run:
//! `PROPTEST_CASES=100000 cargo test --release --test fuzz`.
//! Hostile YAML (alias bombs, deep nesting, huge documents) has its own tests at the end.

use std::fmt::Write as _;
use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Method, Uri};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use proptest::prelude::*;
use s3chaos::control::Control;
use s3chaos::engine::Engine;
use s3chaos::engine::Scenario;
use s3chaos::s3::Classifier;
use s3chaos::scenario::MAX_SCENARIO_BYTES;
use s3chaos::values::{ByteSize, DurationValue, Glob, MAX_DURATION, Rate, Timestamp};

/// What S3 leaves unencoded in a path: unreserved characters and `/`.
const S3_PATH: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

fn config() -> ProptestConfig {
    // PROPTEST_CASES overrides this default (proptest reads it).
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------
// The request classifier

const SUBRESOURCES: &[&str] = &[
    "uploads",
    "uploadId=abc",
    "partNumber=3",
    "tagging",
    "acl",
    "list-type=2",
    "delete",
    "versionId=v1",
    "versions",
    "location",
    "x-id=GetObject",
    "prefix=a%2Fb",
    "continuation-token=%FF%FE",
    "X-Amz-Credential=AKIA%2F20260101%2Fus-east-1%2Fs3%2Faws4_request",
    "=",
    "&&",
    "%",
];

fn bucket_name() -> impl Strategy<Value = String> {
    "[a-z0-9][a-z0-9.-]{1,40}[a-z0-9]"
}

/// Paths and queries from S3's grammar and from noise, including bad percent-escapes.
fn request_target() -> impl Strategy<Value = String> {
    let path = prop_oneof![
        (bucket_name(), "\\PC{0,60}").prop_map(|(b, k)| format!("/{b}/{}", utf8_percent_encode(&k, S3_PATH))),
        bucket_name().prop_map(|b| format!("/{b}")),
        Just("/".to_owned()),
        "/[a-zA-Z0-9%/._~!$&'()*+,;=:@-]{0,80}",
    ];
    let query = prop::collection::vec(prop::sample::select(SUBRESOURCES), 0..4).prop_map(|q| q.join("&"));
    (path, query).prop_map(|(p, q)| if q.is_empty() { p } else { format!("{p}?{q}") })
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        prop::sample::select(vec![
            Method::GET,
            Method::PUT,
            Method::POST,
            Method::DELETE,
            Method::HEAD,
            Method::OPTIONS,
            Method::PATCH,
        ]),
        "[A-Z]{1,10}".prop_map(|m| Method::from_bytes(m.as_bytes()).unwrap()),
    ]
}

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("127.0.0.1:9080".to_owned()),
        bucket_name().prop_map(|b| format!("{b}.localhost:9080")),
        bucket_name().prop_map(|b| format!("{b}.s3.example.com")),
        Just("s3.example.com".to_owned()),
        Just("localhost".to_owned()),
        "[a-zA-Z0-9.:-]{0,40}",
    ]
}

proptest! {
    #![proptest_config(config())]

    /// Any request a client can send classifies without panicking, and what it names is
    /// consistent: a key only under a bucket, never an empty bucket name.
    #[test]
    fn classifier_takes_any_request(
        method in method(),
        target in request_target(),
        host in host(),
        copy_source in proptest::option::of("\\PC{0,30}"),
    ) {
        let Ok(uri) = target.parse::<Uri>() else { return Ok(()); };
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&host) {
            headers.insert("host", v);
        }
        if let Some(Ok(v)) = copy_source.map(|c| HeaderValue::from_str(&c)) {
            headers.insert("x-amz-copy-source", v);
        }
        let classifier = Classifier::new(["s3.example.com"]);
        let info = classifier.classify(&method, &uri, &headers);
        if info.key.is_some() {
            prop_assert!(info.bucket.is_some(), "a key without a bucket: {info:?}");
        }
        if let Some(bucket) = &info.bucket {
            prop_assert!(!bucket.is_empty(), "an empty bucket name: {info:?}");
        }
        // And the engine decides on it, with rules matching on every field.
        let engine = Engine::new(Scenario::parse(MATCH_ALL_FIELDS, "fuzz").unwrap());
        let _ = engine.decide(&info);
    }

    /// A path-style request names exactly the bucket and the key the client encoded.
    #[test]
    fn path_style_bucket_and_key_round_trip(bucket in "[a-z0-9][a-z0-9-]{1,40}[a-z0-9]", key in "\\PC{1,80}") {
        let uri: Uri = format!("/{bucket}/{}", utf8_percent_encode(&key, S3_PATH)).parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("127.0.0.1:9080"));
        let info = Classifier::default().classify(&Method::GET, &uri, &headers);
        prop_assert_eq!(info.bucket.as_deref(), Some(bucket.as_str()));
        prop_assert_eq!(info.key.as_deref(), Some(key.as_str()));
    }
}

const MATCH_ALL_FIELDS: &str = r#"
name: all-fields
rules:
  - {name: a, match: {operation: [GetObject, PutObject, ListObjectsV2], bucket: "a*", key: "*x*"}, probability: 0.5, fault: {latency: 1ms}}
  - {name: b, match: {header: {x-amz-copy-source: "*"}, attempt: [1, 2]}, fault: {error: SlowDown}}
  - {name: c, match: {access_key: AKIA*}, fault: {error: ExpiredToken}}
"#;

// ---------------------------------------------------------------------------------------
// The scenario loader

/// Values a scenario field could be given, sensible or not.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("0".to_owned()),
        Just("1".to_owned()),
        Just("-1".to_owned()),
        Just("1.7".to_owned()),
        Just("0.5".to_owned()),
        Just("NaN".to_owned()),
        Just(".inf".to_owned()),
        Just("18446744073709551615".to_owned()),
        Just("99999999999999999999999".to_owned()),
        Just("1e308".to_owned()),
        Just("250ms".to_owned()),
        Just("5m".to_owned()),
        Just("584542046090y".to_owned()),
        Just("10000000000000h".to_owned()),
        Just("1MiB".to_owned()),
        Just("16EiB".to_owned()),
        Just("512KiB/s".to_owned()),
        Just("0B/s".to_owned()),
        Just("2026-12-01T14:00:00Z".to_owned()),
        Just("9999-12-31T23:59:59Z".to_owned()),
        Just("{from: 0.1, to: 0.9}".to_owned()),
        Just("{from: 1ms, to: 1000000000h}".to_owned()),
        Just("[GetObject, PutObject]".to_owned()),
        Just("\"*\"".to_owned()),
        Just("\"[\"".to_owned()),
        Just("~".to_owned()),
        Just("{}".to_owned()),
        Just("[]".to_owned()),
        Just("true".to_owned()),
        "[a-zA-Z0-9*?/_ -]{0,12}",
    ]
}

const RULE_KEYS: &[&str] = &[
    "name",
    "probability",
    "limit",
    "after",
    "until",
    "ttl",
    "scope",
    "match",
    "fault",
];
const MATCH_KEYS: &[&str] = &[
    "operation",
    "bucket",
    "key",
    "method",
    "header",
    "attempt",
    "access_key",
];
const FAULTS: &[&str] = &[
    "{error: SlowDown}",
    "{error: InternalError, when: after_upstream}",
    "{error: NoSuchThing}",
    "{latency: VALUE}",
    "{latency: {from: VALUE, to: VALUE}}",
    "reset",
    "{reset: {when: after_upstream}}",
    "blackhole",
    "{truncate: {after_bytes: VALUE}}",
    "{corrupt: {bytes: VALUE}}",
    "{bandwidth: VALUE}",
    "{stall: {after_bytes: VALUE, for: VALUE}}",
    "{first_byte_latency: VALUE}",
    "{rate_limit: {rate: VALUE}}",
    "{clock_skew: VALUE}",
    "{error_in_body: InternalError}",
    "{request_timeout: VALUE}",
    "{consistency: {stale_for: VALUE}}",
    "{cut: {after_bytes: VALUE}}",
    "{slicer: {average_size: VALUE, size_variation: VALUE, delay: VALUE}}",
];
const TOP_KEYS: &[&str] = &[
    "seed",
    "start_at",
    "repeat",
    "max_duration",
    "max_active_faults",
    "description",
    "scope_keys",
];

/// A scenario built from the file's grammar with values drawn from [`value`]: it reaches
/// the validation of every field, not just the YAML parser.
fn scenario_text() -> impl Strategy<Value = String> {
    let rule = || {
        (
            prop::collection::vec((prop::sample::select(RULE_KEYS), value()), 0..4),
            prop::collection::vec((prop::sample::select(MATCH_KEYS), value()), 0..3),
            prop::sample::select(FAULTS),
            prop::collection::vec(value(), 4),
        )
            .prop_map(|(fields, matches, fault, values)| {
                let mut fault = fault.to_owned();
                for v in &values {
                    fault = fault.replacen("VALUE", v, 1);
                }
                let mut out = format!("  - fault: {fault}\n");
                for (k, v) in fields {
                    if k != "match" && k != "fault" {
                        let _ = writeln!(out, "    {k}: {v}");
                    }
                }
                if !matches.is_empty() {
                    out.push_str("    match:\n");
                    for (k, v) in matches {
                        let _ = writeln!(out, "      {k}: {v}");
                    }
                }
                out
            })
    };
    let phase = (
        "[a-z]{1,6}",
        value(),
        prop::collection::vec(rule(), 0..2),
        prop::bool::ANY,
    )
        .prop_map(|(name, duration, rules, refuse)| {
            let mut out = format!("  - name: {name}\n    duration: {duration}\n");
            if refuse {
                out.push_str("    refuse_connections: true\n");
            }
            if !rules.is_empty() {
                out.push_str("    rules:\n");
                for r in rules {
                    out.push_str(&r.replace("\n  ", "\n      ").replacen("  - ", "      - ", 1));
                }
            }
            out
        });
    (
        prop::collection::vec((prop::sample::select(TOP_KEYS), value()), 0..3),
        prop::collection::vec(rule(), 0..4),
        prop::collection::vec(phase, 0..3),
    )
        .prop_map(|(top, rules, phases)| {
            let mut out = String::from("name: fuzz\n");
            for (k, v) in top {
                let _ = writeln!(out, "{k}: {v}");
            }
            if !rules.is_empty() {
                out.push_str("rules:\n");
                rules.iter().for_each(|r| out.push_str(r));
            }
            if !phases.is_empty() {
                out.push_str("phases:\n");
                phases.iter().for_each(|p| out.push_str(p));
            }
            out
        })
}

/// Parses `text`; a refusal must point inside the text, an acceptance must compile into an
/// engine that decides on requests.
fn load_checked(text: &str) -> Result<(), TestCaseError> {
    match Scenario::parse(text, "fuzz.yaml") {
        Ok(scenario) => {
            let engine = Engine::new(scenario);
            let _ = engine.state();
            let uri: Uri = "/abc/x.bin".parse().unwrap();
            let mut headers = HeaderMap::new();
            headers.insert("host", HeaderValue::from_static("127.0.0.1:9080"));
            for method in [Method::GET, Method::PUT] {
                let info = Classifier::default().classify(&method, &uri, &headers);
                let _ = engine.decide(&info);
            }
        }
        Err(e) => {
            prop_assert!(!e.message.is_empty());
            if let Some((line, column)) = e.position {
                let lines = text.lines().count().max(1);
                prop_assert!(line >= 1 && line <= lines + 1, "line {line} of {lines}: {e}");
                prop_assert!(column >= 1, "{e}");
            }
            prop_assert!(e.to_string().starts_with("fuzz.yaml"), "{e}");
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn scenario_loader_takes_any_text(text in "\\PC{0,300}") {
        load_checked(&text)?;
    }

    #[test]
    fn scenario_loader_takes_any_scenario_shaped_text(text in scenario_text()) {
        load_checked(&text)?;
    }

    /// Bytes that are not UTF-8 or not text at all, as a mistaken `--scenario` file is.
    #[test]
    fn scenario_files_of_any_bytes_are_refused_or_loaded(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &bytes).unwrap();
        match Scenario::load(file.path()) {
            Ok(_) => prop_assert!(std::str::from_utf8(&bytes).is_ok()),
            Err(e) => prop_assert!(!e.message.is_empty()),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The value parsers

proptest! {
    #![proptest_config(config())]

    #[test]
    fn value_parsers_take_any_text(s in "\\PC{0,40}") {
        let _ = s.parse::<DurationValue>();
        let _ = s.parse::<ByteSize>();
        let _ = s.parse::<Rate>();
        let _ = s.parse::<Timestamp>();
        let _ = s.parse::<Glob>();
    }

    /// What a unit means, for every count.
    #[test]
    fn values_with_units_mean_what_they_say(n in 0u64..1_000_000_000) {
        prop_assert_eq!(format!("{n}ms").parse::<DurationValue>().unwrap().0, std::time::Duration::from_millis(n));
        // Up to a year; longer is refused (it would overflow deadline arithmetic).
        let secs = format!(" {n}s ").parse::<DurationValue>();
        if std::time::Duration::from_secs(n) <= MAX_DURATION {
            prop_assert_eq!(secs.unwrap().0, std::time::Duration::from_secs(n));
        } else {
            prop_assert!(secs.is_err());
        }
        prop_assert_eq!(format!("{n}KiB").parse::<ByteSize>().unwrap().0, n * 1024);
        prop_assert_eq!(n.to_string().parse::<ByteSize>().unwrap().0, n);
        if n > 0 {
            prop_assert_eq!(format!("{n}KiB/s").parse::<Rate>().unwrap().bytes_per_second, n * 1024);
        }
        prop_assert!(n.to_string().parse::<DurationValue>().is_err(), "a bare number is not a duration");
    }

    /// A glob matches the text it was made from, with its wildcard characters standing for
    /// themselves.
    #[test]
    fn globs_match_the_literal_text(text in "[a-zA-Z0-9/._ -]{0,30}") {
        let glob: Glob = text.parse().unwrap();
        prop_assert!(glob.is_match(&text), "{text:?}");
        let star: Glob = format!("{text}*").parse().unwrap();
        let longer = format!("{text}tail/more");
        prop_assert!(star.is_match(&longer));
    }
}

// ---------------------------------------------------------------------------------------
// The admin API's JSON

fn json() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        value().prop_map(Value::String),
        prop::sample::select(vec!["SlowDown", "GetObject", "reset", "1s", "0.5", "api/x", "../x", ""])
            .prop_map(|s| Value::String(s.into())),
    ];
    let keys = prop::sample::select(vec![
        "name",
        "match",
        "fault",
        "probability",
        "ttl",
        "limit",
        "operation",
        "error",
        "latency",
        "bucket",
        "scope",
        "header",
        "x",
    ]);
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(keys.clone(), inner, 0..5)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        ]
    })
}

proptest! {
    #![proptest_config(config())]

    /// `POST /rules` with any JSON: a rule is added under the name it reports, or the call is
    /// refused and the rules and the scenario are as they were.
    #[test]
    fn admin_rules_take_any_json(body in json()) {
        let control = Control::new(
            Arc::new(Engine::new(Scenario::parse(MATCH_ALL_FIELDS, "file.yaml").unwrap())),
            MATCH_ALL_FIELDS.into(),
            "file.yaml".into(),
        );
        let before = control.api_rules().len();
        match control.add_rule(&body.to_string()) {
            Ok(name) => {
                prop_assert!(control.api_rules().iter().any(|r| r.name == name), "{name} not listed");
                prop_assert!(control.engine().stats().iter().any(|s| s.name == name));
            }
            Err(e) => {
                prop_assert!(!e.to_string().is_empty());
                prop_assert_eq!(control.api_rules().len(), before);
                prop_assert_eq!(control.engine().stats().len(), 3, "the file's three rules only");
                prop_assert_eq!(control.source().0, MATCH_ALL_FIELDS);
            }
        }
    }

    /// `PUT /scenario` with any text: applied, or refused with the running scenario intact.
    #[test]
    fn admin_scenario_takes_any_text(text in prop_oneof!["\\PC{0,200}".boxed(), scenario_text().boxed()]) {
        let control = Control::new(
            Arc::new(Engine::new(Scenario::parse(MATCH_ALL_FIELDS, "file.yaml").unwrap())),
            MATCH_ALL_FIELDS.into(),
            "file.yaml".into(),
        );
        if control.apply(&text, "admin").is_err() {
            prop_assert_eq!(control.source().0, MATCH_ALL_FIELDS);
            let running = control.engine().scenario();
            prop_assert_eq!(running.name(), "all-fields");
        } else {
            prop_assert_eq!(control.source().0, text);
        }
    }
}

/// Texts the random search found once, kept so that they are tried on every run: U+2028,
/// U+2029 and U+0085 break lines for the YAML parser but not for an editor, and the error's
/// line once pointed past the end of the file.
#[test]
fn texts_the_fuzzer_once_broke_the_loader_with() {
    for text in ["?\u{2028}A", "a: [\u{2029}\u{2029}", "?\u{85}\u{85}x", "- \u{2028}: ["] {
        load_checked(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    }
}

// ---------------------------------------------------------------------------------------
// Hostile YAML: refused with an error, in bounded time and memory

/// "Billion laughs": nine levels of aliases, each nine times the one before; expanded, it
/// would be 9^9 strings. Refused whether the anchors sit at the top (as in many YAML tools'
/// files) or inside a field the scenario has; nothing is expanded past the first error.
#[test]
fn alias_bombs_are_refused() {
    let mut anchors = String::from("a0: &a0 [\"lol\"]\n");
    for i in 1..10 {
        let prev = format!("*a{}", i - 1);
        let _ = writeln!(anchors, "a{i}: &a{i} [{}]", [prev.as_str(); 9].join(", "));
    }
    let at_top = format!("{anchors}name: bomb\ndescription: *a9\n");
    assert!(Scenario::parse(&at_top, "bomb.yaml").is_err());

    let mut inside =
        String::from("name: bomb\nrules:\n  - match:\n      operation: &a0 [GetObject, GetObject]\n    fault: reset\n");
    for i in 1..10 {
        let prev = format!("*a{}", i - 1);
        let _ = writeln!(
            inside,
            "  - match:\n      operation: &a{i} [{}]\n    fault: reset",
            [prev.as_str(); 9].join(", ")
        );
    }
    let err = Scenario::parse(&inside, "bomb.yaml").unwrap_err();
    assert!(err.message.contains("invalid type: sequence"), "{err}");

    // And the parser's own limit, for a document that would accept anything.
    let err = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&at_top).unwrap_err();
    assert!(err.to_string().contains("repetition limit"), "{err}");
}

/// Deep `[`/`{` nesting is refused where it goes too deep, before the YAML parser (whose
/// time grows with depth × tokens) sees it; block nesting costs its indentation in bytes,
/// so the size limit bounds it.
#[test]
fn deep_nesting_is_refused() {
    for (open, close) in [("[", "]"), ("{a: ", "}")] {
        let yaml = format!(
            "name: deep\nrules: {}1{}\n",
            open.repeat(100_000),
            close.repeat(100_000)
        );
        let err = Scenario::parse(&yaml, "deep.yaml").unwrap_err();
        assert!(err.message.contains("nested more than 64 levels"), "{err}");
        assert_eq!(err.position.map(|p| p.0), Some(2), "{err}");
    }
    let mut yaml = String::from("name: deep\nrules:\n");
    let mut depth = 0;
    while yaml.len() < MAX_SCENARIO_BYTES - 2000 {
        yaml.push_str(&" ".repeat(depth));
        yaml.push_str("- \n");
        depth += 1;
    }
    let err = Scenario::parse(&yaml, "deep.yaml").unwrap_err();
    assert!(err.message.contains("expected struct"), "{depth} levels: {err}");
}

#[test]
fn a_huge_document_is_refused_before_parsing() {
    let mut yaml = String::from("name: huge\nrules:\n");
    while yaml.len() <= MAX_SCENARIO_BYTES {
        yaml.push_str("  - {match: {bucket: b}, fault: {latency: 1ms}}\n");
    }
    let err = Scenario::parse(&yaml, "huge.yaml").unwrap_err();
    assert!(err.message.contains("limit"), "{err}");

    // The same from a file: read only up to the limit, whatever its size.
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &yaml).unwrap();
    let err = Scenario::load(file.path()).unwrap_err();
    assert!(err.message.contains("larger than the limit"), "{err}");

    // Just under the limit is a valid (if silly) scenario with thousands of rules.
    let mut yaml = String::from("name: big\nrules:\n");
    let line = "  - {match: {bucket: b}, fault: {latency: 1ms}}\n";
    while yaml.len() + line.len() <= MAX_SCENARIO_BYTES {
        yaml.push_str(line);
    }
    let scenario = Scenario::parse(&yaml, "big.yaml").unwrap();
    assert!(scenario.rules().len() > 20_000);
}

/// Found by `scenario_loader_takes_any_scenario_shaped_text` at 100,000 cases: two phases
/// of 584,542,046,090 years each overflowed the timeline's sum and panicked.
#[test]
fn durations_past_a_year_are_refused_not_overflowed() {
    let text =
        "name: fuzz\nphases:\n  - name: a\n    duration: 584542046090y\n  - name: b\n    duration: 584542046090y\n";
    let err = Scenario::parse(text, "long.yaml").unwrap_err();
    assert!(err.message.contains("longer than a year"), "{err}");
    assert_eq!(err.position.map(|p| p.0), Some(4), "{err}");
}
