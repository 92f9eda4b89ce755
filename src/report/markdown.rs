//! The Markdown summary: for a pull request comment or a game-day write-up.

use std::fmt::Write;

use super::Report;

pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# s3chaos drill report\n");
    let _ = writeln!(
        out,
        "Source `{}`, from {} for {}.\n",
        r.source,
        humantime::format_rfc3339_seconds(r.first),
        humantime::format_duration(std::time::Duration::from_secs(r.span.as_secs()))
    );
    let _ = writeln!(
        out,
        "- **{}** requests, **{}** failed ({:.1}%: 5xx or never answered), **{}** faults injected, **{}** client retries",
        r.requests,
        r.errors,
        r.error_rate() * 100.0,
        r.injected,
        r.retries
    );
    let _ = writeln!(
        out,
        "- Recovery: {}",
        if r.recovered() {
            "the last requests succeeded"
        } else {
            "**the last requests still failed**"
        }
    );
    let spans = super::phase_spans(r);
    if !spans.is_empty() {
        let phases: Vec<String> = spans
            .iter()
            .map(|(name, start, end)| format!("{name} ({start:.0}–{end:.0} s)"))
            .collect();
        let _ = writeln!(out, "- Phases: {}", phases.join(" → "));
    }
    let _ = writeln!(
        out,
        "\n| operation | requests | failed | injected | retries | p50 ms | p99 ms |\n|---|---:|---:|---:|---:|---:|---:|"
    );
    for o in &r.operations {
        let _ = writeln!(
            out,
            "| {} | {} | {} ({:.1}%) | {} | {} | {:.1} | {:.1} |",
            o.operation,
            o.requests,
            o.errors,
            o.error_percent(),
            o.injected,
            o.retries,
            o.p50_ms,
            o.p99_ms
        );
    }
    if !r.rules.is_empty() {
        let _ = writeln!(out, "\n| rule | requests faulted | clients recovered |\n|---|---:|---|");
        for o in &r.rules {
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                o.rule,
                o.faulted,
                if o.recovered { "yes" } else { "**no**" }
            );
        }
    }
    if r.skipped_lines > 0 {
        let _ = writeln!(
            out,
            "\n{} lines of the log were not request events and were skipped.",
            r.skipped_lines
        );
    }
    out
}
