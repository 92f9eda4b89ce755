//! `/metrics` in the Prometheus text exposition format (version 0.0.4).

use std::fmt::Write;

use super::{LATENCY_BUCKETS, Totals};
use crate::engine::Engine;

/// The content type Prometheus expects for this format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Everything a scrape reports, from the proxy's totals and the engine's state.
pub struct Snapshot<'a> {
    pub totals: &'a Totals,
    pub engine: &'a Engine,
    pub blackholed_connections: usize,
    pub upstream_idle_connections: usize,
    pub events_dropped: u64,
}

pub fn render(s: &Snapshot<'_>) -> String {
    let mut out = String::with_capacity(4096);
    let t = s.totals;

    header(
        &mut out,
        "s3chaos_requests_total",
        "counter",
        "Requests answered, by S3 operation and status class (none = no response: blackhole or reset).",
    );
    for (op, class, n) in &t.requests {
        let class = if *class == 0 {
            "none".to_owned()
        } else {
            format!("{class}xx")
        };
        let _ = writeln!(
            out,
            "s3chaos_requests_total{{operation=\"{op}\",status=\"{class}\"}} {n}"
        );
    }

    header(
        &mut out,
        "s3chaos_responses_total",
        "counter",
        "Responses by exact status code (0 = none).",
    );
    for (status, n) in &t.statuses {
        let _ = writeln!(out, "s3chaos_responses_total{{code=\"{status}\"}} {n}");
    }

    header(
        &mut out,
        "s3chaos_request_outcomes_total",
        "counter",
        "Requests by how they really ended for the client: complete, cut (a body short of its length), no_response, client_gone, upstream_error.",
    );
    for (name, n) in super::Outcome::NAMES.iter().zip(t.outcomes) {
        let _ = writeln!(out, "s3chaos_request_outcomes_total{{outcome=\"{name}\"}} {n}");
    }

    let scenario = s.engine.scenario();
    header(
        &mut out,
        "s3chaos_rule_matched_total",
        "counter",
        "Requests each rule's match selected.",
    );
    for rule in scenario.rules() {
        let _ = writeln!(
            out,
            "s3chaos_rule_matched_total{{rule=\"{}\"}} {}",
            escape(rule.name()),
            rule.stats().matched
        );
    }
    header(
        &mut out,
        "s3chaos_faults_injected_total",
        "counter",
        "Requests each rule injected its faults into, by rule and fault kinds.",
    );
    for rule in scenario.rules() {
        let kinds: Vec<&str> = rule.faults().iter().map(|f| f.kind()).collect();
        let _ = writeln!(
            out,
            "s3chaos_faults_injected_total{{rule=\"{}\",kind=\"{}\"}} {}",
            escape(rule.name()),
            kinds.join(","),
            rule.stats().injected
        );
    }

    header(
        &mut out,
        "s3chaos_upstream_response_seconds",
        "histogram",
        "Time from forwarding a request to the upstream's response head.",
    );
    for (bound, n) in LATENCY_BUCKETS.iter().zip(&t.upstream_buckets) {
        let _ = writeln!(out, "s3chaos_upstream_response_seconds_bucket{{le=\"{bound}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "s3chaos_upstream_response_seconds_bucket{{le=\"+Inf\"}} {}",
        t.upstream_buckets.last().copied().unwrap_or(0)
    );
    let _ = writeln!(
        out,
        "s3chaos_upstream_response_seconds_sum {}",
        t.upstream_sum.as_secs_f64()
    );
    let _ = writeln!(out, "s3chaos_upstream_response_seconds_count {}", t.upstream_count);

    let gauges: [(&str, &str, &str, f64); 8] = [
        (
            "s3chaos_upstream_unavailable_total",
            "counter",
            "Requests the upstream did not answer (refused, timed out); the client got 503.",
            t.upstream_unavailable as f64,
        ),
        (
            "s3chaos_open_connections",
            "gauge",
            "Client connections being served.",
            t.open_connections as f64,
        ),
        (
            "s3chaos_blackholed_connections",
            "gauge",
            "Client connections (or HTTP/2 streams) held unanswered by blackholes.",
            s.blackholed_connections as f64,
        ),
        (
            "s3chaos_upstream_idle_connections",
            "gauge",
            "Kept-alive upstream connections waiting in the pools.",
            s.upstream_idle_connections as f64,
        ),
        (
            "s3chaos_active_faults",
            "gauge",
            "Requests under a fault right now.",
            s.engine.active_faults() as f64,
        ),
        (
            "s3chaos_capped_faults_total",
            "counter",
            "Requests left alone because max_active_faults were active.",
            s.engine.capped() as f64,
        ),
        (
            "s3chaos_halted",
            "gauge",
            "1 while the kill switch is on.",
            if s.engine.halted().is_some() { 1.0 } else { 0.0 },
        ),
        (
            "s3chaos_events_dropped_total",
            "counter",
            "Event log lines lost to a full queue.",
            s.events_dropped as f64,
        ),
    ];
    for (name, kind, help, value) in gauges {
        header(&mut out, name, kind, help);
        let _ = writeln!(out, "{name} {value}");
    }
    out
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Label values escape backslash, double quote and newline.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
