//! The exploration as one self-contained HTML page, in the drill report's style: the
//! summary, the matrix, and each failure with its scenario file and replay command.

use std::fmt::Write;

use serde::Serialize;

use super::matrix::{Cell, Matrix};
use crate::report::{STYLE, escape};

/// A failed point, as the outputs show it.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub number: usize,
    /// `PutObject b/k #1 × transient`.
    pub point: String,
    /// What happened (the outcome's sentence).
    pub detail: String,
    /// The self-contained scenario that reproduces it, relative to the output folder.
    pub scenario: String,
    /// The command that replays it.
    pub replay: String,
    /// The command's output in that run, relative to the output folder.
    pub output: String,
}

/// What the page shows.
pub struct Page<'a> {
    pub command: &'a str,
    pub matrix: &'a Matrix,
    pub findings: &'a [Finding],
    /// One line each: points run, skipped, budget, nondeterminism...
    pub notes: &'a [String],
}

pub fn render(page: &Page<'_>) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let _ = write!(
        out,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>s3chaos explore</title>
<style>
{STYLE}table.matrix td {{ text-align: center; }} table.matrix td:first-child {{ text-align: left; white-space: pre; font-family: monospace; }}
td.fail {{ background: #fce8e6; color: #c5221f; font-weight: bold; }} td.ok {{ color: #188038; }}
td.like {{ color: #5f6368; font-style: italic; }} pre.replay {{ background: #f1f3f4; padding: 6px; white-space: pre-wrap; }}
</style></head><body>
<h1>s3chaos explore</h1>
<p>Command <code>{}</code>.</p>
<p class="summary"><span class="{}"><b>{}</b> failing points</span></p>
"#,
        escape(page.command),
        if page.findings.is_empty() { "pass" } else { "bad" },
        page.findings.len(),
    );
    out.push_str("<ul>\n");
    for note in page.notes {
        let _ = writeln!(out, "<li>{}</li>", escape(note));
    }
    out.push_str("</ul>\n<h2>Fault points</h2>\n<table class=\"matrix\"><tr><th>call</th>");
    for c in &page.matrix.columns {
        let _ = write!(out, "<th>{c}</th>");
    }
    out.push_str("</tr>\n");
    for row in &page.matrix.rows {
        let _ = write!(out, "<tr><td>{}</td>", escape(&row.label()));
        for cell in &row.cells {
            let class = match cell {
                Cell::Ran { outcome, .. } if outcome.failed() => "fail",
                Cell::Ran { .. } => "ok",
                Cell::Skipped { .. } => "like",
                _ => "muted",
            };
            let title = match cell {
                Cell::Ran { number, outcome } => format!("point {number}: {}", outcome.detail()),
                Cell::Skipped { like, .. } => format!("not run: equivalent to point {like}"),
                Cell::NotRun => "not run: the budget ran out".into(),
                Cell::NotApplicable => "the fault class does not apply to this call".into(),
            };
            let _ = write!(
                out,
                r#"<td class="{class}" title="{}">{}</td>"#,
                escape(&title),
                escape(&cell.text())
            );
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n<p class=\"muted\">·: does not apply; =N: not run, equivalent to point N (same operation, key shape, class and preceding outcome).</p>\n");
    if !page.findings.is_empty() {
        out.push_str("<h2>Failures</h2>\n");
    }
    for f in page.findings {
        let _ = write!(
            out,
            r#"<h3 id="point-{n}">Point {n}: {}</h3>
<p class="bad">{}</p>
<p>Scenario <a href="{}">{}</a>, the command's output <a href="{}">{}</a>. Replay:</p>
<pre class="replay">{}</pre>
"#,
            escape(&f.point),
            escape(&f.detail),
            escape(&f.scenario),
            escape(&f.scenario),
            escape(&f.output),
            escape(&f.output),
            escape(&f.replay),
            n = f.number,
        );
    }
    out.push_str("</body></html>\n");
    out
}
