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
    if !r.phases.is_empty() {
        let phases: Vec<String> = r
            .phases
            .iter()
            .map(|p| format!("{} ({:.0}–{:.0} s)", p.name, p.start, p.end))
            .collect();
        let _ = writeln!(out, "- Phases: {}", phases.join(" → "));
    }
    if !r.halts.is_empty() {
        let halts: Vec<String> = r
            .halts
            .iter()
            .map(|(from, to)| match to {
                Some(to) => format!("{from:.0}–{to:.0} s"),
                None => format!("from {from:.0} s to the end"),
            })
            .collect();
        let _ = writeln!(out, "- Faults halted: {}", halts.join(", "));
    }
    verdicts(&mut out, &r.verdicts);
    if !r.phases.is_empty() {
        table(&mut out, &r.phase_table());
    }
    table(&mut out, &r.operation_table());
    if !r.rules.is_empty() {
        table(&mut out, &r.rule_table());
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

/// A Markdown table: the first column left-aligned, the others right-aligned.
fn table(out: &mut String, t: &super::Table) {
    let _ = writeln!(out, "\n| {} |", t.header.join(" | "));
    let align: Vec<&str> = (0..t.header.len())
        .map(|i| if i == 0 { "---" } else { "---:" })
        .collect();
    let _ = writeln!(out, "|{}|", align.join("|"));
    for row in &t.rows {
        let cells: Vec<String> = row
            .iter()
            .map(|c| {
                if c.bad {
                    format!("**{}**", c.text)
                } else {
                    c.text.clone()
                }
            })
            .collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
}

/// The verdict table; a failed verdict's evidence follows it as a code block.
fn verdicts(out: &mut String, v: &crate::verdict::Verdicts) {
    use crate::verdict::Status;
    let _ = writeln!(
        out,
        "\n## Verdicts\n\n{} requests in {} logical calls ({} grouped by inference).\n\n| Result | Expectation | What was seen |\n|---|---|---|",
        v.requests, v.calls, v.inferred_calls
    );
    for verdict in &v.verdicts {
        let result = match verdict.status {
            Status::Fail => "**FAIL**".to_owned(),
            other => other.to_string(),
        };
        let _ = writeln!(
            out,
            "| {result} | `{}` | {} |",
            verdict.expectation,
            verdict.summary.replace('|', "\\|")
        );
    }
    for verdict in v.failed().filter(|v| !v.evidence.is_empty()) {
        let _ = writeln!(
            out,
            "\n`{}`:\n\n```\n{}\n```",
            verdict.expectation,
            verdict.evidence.join("\n")
        );
    }
}
