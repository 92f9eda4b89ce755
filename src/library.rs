//! The scenario library: every file of `scenarios/`, built into the binary, so
//! `--scenario builtin:NAME` works from any directory (and in a container) and
//! `s3chaos scenarios show NAME` prints one to start your own from.

use crate::engine::Scenario;
use crate::scenario::{ScenarioError, Source};

/// (name, file text), in name order. A test checks this against `scenarios/`.
pub const BUILTIN: &[(&str, &str)] = &[
    ("ambiguous-writes", include_str!("../scenarios/ambiguous-writes.yaml")),
    (
        "aws-s3-2017-us-east-1",
        include_str!("../scenarios/aws-s3-2017-us-east-1.yaml"),
    ),
    ("brownout-latency", include_str!("../scenarios/brownout-latency.yaml")),
    (
        "checksum-corruption",
        include_str!("../scenarios/checksum-corruption.yaml"),
    ),
    ("clock-skew", include_str!("../scenarios/clock-skew.yaml")),
    ("dead-bucket", include_str!("../scenarios/dead-bucket.yaml")),
    (
        "endpoint-dns-outage",
        include_str!("../scenarios/endpoint-dns-outage.yaml"),
    ),
    ("escalating-errors", include_str!("../scenarios/escalating-errors.yaml")),
    (
        "expired-credentials",
        include_str!("../scenarios/expired-credentials.yaml"),
    ),
    (
        "multipart-part-failures",
        include_str!("../scenarios/multipart-part-failures.yaml"),
    ),
    ("slowdown-storm", include_str!("../scenarios/slowdown-storm.yaml")),
    (
        "truncated-downloads",
        include_str!("../scenarios/truncated-downloads.yaml"),
    ),
];

/// The prefix that names a built-in scenario where a file path is expected.
pub const PREFIX: &str = "builtin:";

/// The text of the built-in scenario `name`.
pub fn text(name: &str) -> Option<&'static str> {
    BUILTIN.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// Resolves `builtin:NAME` to its text and an origin for error messages; `None` for a path.
pub fn resolve(spec: &str) -> Option<Result<(&'static str, String), String>> {
    let name = spec.strip_prefix(PREFIX)?;
    Some(text(name).map(|t| (t, format!("builtin:{name}"))).ok_or_else(|| {
        let names: Vec<&str> = BUILTIN.iter().map(|(n, _)| *n).collect();
        format!("no built-in scenario `{name}`; there are: {}", names.join(", "))
    }))
}

/// The source a `--scenario` argument names: `builtin:NAME` (an unknown name is an error that
/// lists the known ones), or a file path.
pub fn source(spec: &str) -> Result<Source, String> {
    match resolve(spec) {
        Some(builtin) => builtin.map(|(text, origin)| Source::text(text, origin)),
        None => Ok(Source::File(spec.into())),
    }
}

/// Each built-in scenario, loaded (they are validated by the test suite, so this cannot fail
/// in a released binary).
pub fn load(name: &str) -> Option<Result<Scenario, ScenarioError>> {
    text(name).map(|t| Scenario::parse(t, &format!("{PREFIX}{name}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_library_is_the_scenarios_folder() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        let built_in: Vec<&str> = BUILTIN.iter().map(|(n, _)| *n).collect();
        assert_eq!(built_in, on_disk, "add new files of scenarios/ to BUILTIN");
        assert!(BUILTIN.len() >= 10);
        for (name, _) in BUILTIN {
            let s = load(name).unwrap().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(s.name(), *name);
        }
        assert!(resolve("builtin:nope").unwrap().unwrap_err().contains("slowdown-storm"));
        assert!(resolve("scenarios/x.yaml").is_none());
    }
}
