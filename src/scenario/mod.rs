//! Scenarios as plain data: the YAML file a user writes, parsed and validated into a
//! [`Spec`].
//!
//! Validation happens while deserialising (every leaf type checks itself), so each error
//! carries the file, line and column of the value at fault. A [`Spec`] holds no atomics, no
//! randomness and no engine types: the engine compiles it into what requests run
//! ([`crate::engine::Scenario`]), and owns every piece of state that lives past one request.
//!
//! Every source of scenario text (a file, a built-in, the admin API's body, a reload) goes
//! through the same bounded reader and the same limits ([`read_file`], [`MAX_SCENARIO_BYTES`]).

mod budget;
mod expect;
mod file;
mod limits;

pub use budget::{MAX_EXPANDED_STRING_BYTES, MAX_EXPANDED_VALUES};
pub use expect::Expect;
pub use file::{API_PREFIX, ApiRule};
pub use limits::{MAX_FLOW_DEPTH, MAX_SCENARIO_BYTES};

use std::fmt;
use std::num::{NonZeroU64, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use http::{HeaderName, Method};

use crate::faults::FaultList;
use crate::s3::Operation;
use crate::values::{Glob, Probability, Ramp};

/// A scenario file that could not be loaded, with where the problem is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ScenarioError {
    /// The file name as the user gave it (or `<inline>` for text not read from a file).
    pub origin: String,
    /// 1-based line and column, when the problem has a place in the file.
    pub position: Option<(usize, usize)>,
    pub message: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, column)) => write!(f, "{}:{line}:{column}: {}", self.origin, self.message),
            None => write!(f, "{}: {}", self.origin, self.message),
        }
    }
}

/// A validated scenario, as written: what the engine compiles.
#[derive(Debug, Clone)]
pub struct Spec {
    pub meta: Meta,
    /// Rules that apply in every phase (or always, without phases): rules added at run time
    /// first, then the file's, in file order.
    pub rules: Vec<RuleSpec>,
    pub phases: Vec<PhaseSpec>,
}

/// What the file says about itself, before its rules.
#[derive(Debug, Clone, Default)]
pub struct Meta {
    pub name: String,
    pub description: String,
    pub seed: Option<u64>,
    pub start_at: Option<SystemTime>,
    pub repeat: bool,
    pub max_duration: Option<Duration>,
    /// Access key id → isolation scope.
    pub scope_keys: std::collections::BTreeMap<String, String>,
    pub safety: Safety,
    /// What the drill expects of its clients (judged by `crate::verdict`).
    pub expect: Expect,
}

/// One phase as written: a name, a duration and its own rules.
#[derive(Debug, Clone)]
pub struct PhaseSpec {
    pub name: String,
    pub duration: Duration,
    pub rules: Vec<RuleSpec>,
    pub connections: Connections,
}

/// What the listener does with connections during a phase.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Connections {
    #[default]
    Accept,
    /// Not listening: new connections are refused; open ones keep working.
    Refuse,
    /// Not listening, and the open connections are dropped too.
    Close,
}

/// One rule as written. A phase's rule is already named `phase/rule`, a rule added at run
/// time `api/rule`.
#[derive(Debug, Clone)]
pub struct RuleSpec {
    pub name: String,
    pub matcher: MatchSpec,
    pub trigger: Trigger,
    pub faults: FaultList,
    /// What this rule expects of the calls it faulted, over the file's `expect:`.
    pub expect: Option<Expect>,
}

/// A rule's `match:`; every field given must hold.
#[derive(Debug, Clone, Default)]
pub struct MatchSpec {
    pub operations: Option<Vec<Operation>>,
    pub methods: Option<Vec<Method>>,
    pub bucket: Option<Glob>,
    pub key: Option<Glob>,
    pub headers: Vec<(HeaderName, HeaderMatch)>,
    /// The access key ids the request must be signed with (never verified).
    pub access_keys: Option<Vec<String>>,
    /// The SDK attempt numbers (`amz-sdk-request: attempt=N`); 1 is the first try.
    pub attempts: Option<Vec<u32>>,
    /// The isolation scope the rule belongs to; `None`: requests without a scope.
    pub scope: Option<String>,
    /// Only requests arriving on a connection idle at least this long (since its previous
    /// request ended): the stale keep-alive race.
    pub idle_for: Option<std::time::Duration>,
}

/// What a `header:` entry of a `match:` expects.
#[derive(Debug, Clone)]
pub enum HeaderMatch {
    /// `"*"` in the file: the header is present, with any value.
    Present,
    Exact(String),
}

/// When a matched rule fires: all the given conditions must hold.
#[derive(Debug, Clone, Default)]
pub struct Trigger {
    /// Fixed, or ramping across the rule's window.
    pub probability: Ramp<Probability>,
    /// Let the first N eligible requests through.
    pub skip: u64,
    /// Inject at most N times.
    pub limit: Option<u64>,
    /// Only every Nth eligible request (after `skip`): fully deterministic CI tests.
    pub every: Option<NonZeroU64>,
    /// Only the N-th logical call the rule matches, and that call's retries (counted by first
    /// attempts, so SDK retries of earlier calls do not shift it): how `explore` faults one
    /// recorded call. Never with `skip` or `every`.
    pub nth: Option<NonZeroU64>,
    /// Active from this long after the drill (or the rule's phase) started...
    pub after: Option<Duration>,
    /// ...until this long after it started.
    pub until: Option<Duration>,
}

/// Limits that keep a drill from becoming an incident.
#[derive(Debug, Clone, Copy, Default)]
pub struct Safety {
    /// Halt every fault when the real upstream starts failing.
    pub stop_if: Option<StopCondition>,
    /// At most this many requests under a fault at once (blackholes and stalls included).
    pub max_active_faults: Option<NonZeroUsize>,
}

/// `stop_if: {upstream_error_rate: 0.2, window: 30s}`: halt when, over the last `window`,
/// at least `min_requests` reached the upstream and this share of them failed (5xx or no
/// answer). Injected faults never count: only what the upstream itself did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StopCondition {
    pub upstream_error_rate: Probability,
    pub window: Duration,
    pub min_requests: u64,
}

impl Spec {
    /// This scenario with rules added at run time evaluated before its own, so a test's own
    /// fault is not cut short by the file's.
    pub fn with_api_rules<'a>(&self, api_rules: impl IntoIterator<Item = &'a ApiRule>) -> Spec {
        let mut rules: Vec<RuleSpec> = api_rules.into_iter().map(|r| r.spec().clone()).collect();
        rules.extend(self.rules.iter().cloned());
        Spec {
            meta: self.meta.clone(),
            rules,
            phases: self.phases.clone(),
        }
    }

    /// The scenario with no rules: pure passthrough.
    pub fn empty() -> Spec {
        Spec {
            meta: Meta {
                name: "passthrough".into(),
                ..Meta::default()
            },
            rules: Vec::new(),
            phases: Vec::new(),
        }
    }
}

/// Where a running scenario comes from. Every source is read through the same bounded reader
/// ([`read_file`]) or checked against the same limits when parsed.
#[derive(Debug, Clone, Default)]
pub enum Source {
    /// No scenario: pure passthrough.
    #[default]
    None,
    /// Text with a name for errors (a built-in scenario, a test's YAML, the admin API's body).
    Text { text: String, origin: String },
    /// A file, read at start and watched for changes.
    File(PathBuf),
}

impl Source {
    pub fn text(text: impl Into<String>, origin: impl Into<String>) -> Source {
        Source::Text {
            text: text.into(),
            origin: origin.into(),
        }
    }

    /// The text and its origin; `None` for passthrough.
    pub fn read(&self) -> Result<Option<(String, String)>, ScenarioError> {
        match self {
            Source::None => Ok(None),
            Source::Text { text, origin } => Ok(Some((text.clone(), origin.clone()))),
            Source::File(path) => Ok(Some((read_file(path)?, path.display().to_string()))),
        }
    }

    /// The file to watch, if the source is one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Source::File(path) => Some(path),
            _ => None,
        }
    }
}

/// Validates scenario text; `origin` names it in errors.
pub fn parse(text: &str, origin: &str) -> Result<Spec, ScenarioError> {
    file::parse(text, origin)
}

/// Reads and validates a scenario file.
pub fn load(path: &Path) -> Result<Spec, ScenarioError> {
    let text = read_file(path)?;
    parse(&text, &path.display().to_string())
}

/// Reads a scenario file's text, at most [`MAX_SCENARIO_BYTES`] of it: one byte past the
/// limit is read, never a whole mistaken multi-gigabyte file. Only a regular file (or a
/// symlink to one, as a Kubernetes ConfigMap mounts it) is read: the path is opened without
/// blocking and a FIFO, device, socket or directory is refused before any read, so a FIFO
/// swapped in cannot hang the reloader. The one reader for run, validate and live reload.
pub fn read_file(path: &Path) -> Result<String, ScenarioError> {
    use std::os::unix::fs::OpenOptionsExt;
    let origin = path.display().to_string();
    let refused = |message: String| ScenarioError {
        origin: origin.clone(),
        position: None,
        message,
    };
    let unreadable = |e: std::io::Error| refused(format!("cannot read the file: {e}"));
    let too_large = || {
        refused(format!(
            "the file is larger than the limit of {MAX_SCENARIO_BYTES} bytes (1 MiB)"
        ))
    };
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(unreadable)?;
    let meta = file.metadata().map_err(unreadable)?;
    if !meta.is_file() {
        return Err(refused(format!(
            "not a regular file ({}): a scenario is a YAML file",
            file_kind(&meta.file_type())
        )));
    }
    if meta.len() > MAX_SCENARIO_BYTES as u64 {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(file, MAX_SCENARIO_BYTES as u64 + 1),
        &mut bytes,
    )
    .map_err(unreadable)?;
    if bytes.len() > MAX_SCENARIO_BYTES {
        // It grew while it was read.
        return Err(too_large());
    }
    String::from_utf8(bytes).map_err(|e| ScenarioError {
        origin: origin.clone(),
        position: None,
        message: format!("the file is not UTF-8 text ({e})"),
    })
}

fn file_kind(kind: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_block_device() || kind.is_char_device() {
        "a device"
    } else {
        "not a file"
    }
}
