//! The HTML report: one self-contained page, the charts drawn as inline SVG so it renders
//! anywhere (an artifact viewer, a mail client) with no script and no network.

use std::fmt::Write;

use super::{Bucket, Report};

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 150.0;
const LEFT: f64 = 60.0;
const PHASE_COLOURS: [&str; 4] = ["#e8f0fe", "#fef3e0", "#f1e8fd", "#e6f4ea"];

/// The report's look, shared with the pages made in its style (`s3chaos explore`'s).
pub const STYLE: &str = r#"body { font-family: system-ui, sans-serif; margin: 24px; color: #202124; background: #fff; }
h1 { font-size: 22px; } h2 { font-size: 16px; margin-top: 28px; }
table { border-collapse: collapse; font-size: 14px; }
td, th { border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: right; }
td:first-child, th:first-child { text-align: left; }
.summary span { display: inline-block; margin-right: 24px; }
.bad { color: #c5221f; font-weight: bold; }
.pass { color: #188038; font-weight: bold; } .muted { color: #5f6368; }
table.verdicts td, table.verdicts th { text-align: left; vertical-align: top; }
details pre { font-size: 12px; margin: 4px 0; white-space: pre-wrap; }
.legend { font-size: 12px; color: #5f6368; margin: 0 0 0 60px; } .legend span { margin-right: 16px; }
.legend i { display: inline-block; width: 12px; height: 8px; margin-right: 4px; vertical-align: middle; }
svg text { font-size: 11px; fill: #5f6368; }
"#;

pub fn render(r: &Report) -> String {
    let mut out = String::with_capacity(64 * 1024);
    let _ = write!(
        out,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>s3chaos drill report</title>
<style>
{STYLE}</style></head><body>
<h1>s3chaos drill report</h1>
<p>Source <code>{}</code>, from {} for {}.</p>
<p class="summary"><span><b>{}</b> requests</span><span><b>{}</b> failed ({:.1}%)</span><span><b>{}</b> faults injected</span><span><b>{}</b> client retries</span><span class="{}">{}</span></p>
"#,
        escape(&r.source),
        humantime::format_rfc3339_seconds(r.first),
        humantime::format_duration(std::time::Duration::from_secs(r.span.as_secs())),
        r.requests,
        r.errors,
        r.error_rate() * 100.0,
        r.injected,
        r.retries,
        if r.recovered() { "" } else { "bad" },
        if r.recovered() {
            "recovered: the last requests succeeded"
        } else {
            "not recovered: the last requests still failed"
        }
    );

    verdicts(&mut out, &r.verdicts);

    let total = r.buckets.len() as f64 * r.bucket_width;
    let per_second = |b: &Bucket| b.requests as f64 / r.bucket_width;
    let error_pct = |b: &Bucket| {
        if b.requests == 0 {
            0.0
        } else {
            b.errors as f64 * 100.0 / b.requests as f64
        }
    };
    let _ = writeln!(
        out,
        r#"<p class="muted caption">Time axis: drill time from the first request (0 s = {}). Seconds without requests are gaps in the error and latency lines, not zeros.</p>"#,
        humantime::format_rfc3339_seconds(r.first)
    );
    chart(
        &mut out,
        r,
        total,
        "Request rate (requests/s)",
        &[("#1a73e8", "requests per second", &per_second, false)],
        None,
        true,
    );
    chart(
        &mut out,
        r,
        total,
        "Error rate (% failed: 5xx or never answered)",
        &[("#d93025", "% of requests that failed", &error_pct, true)],
        Some(100.0),
        false,
    );
    chart(
        &mut out,
        r,
        total,
        "Latency (ms): p50 and p99",
        &[
            ("#188038", "p50", &|b: &Bucket| b.p50_ms, true),
            ("#f29900", "p99", &|b: &Bucket| b.p99_ms, true),
        ],
        None,
        false,
    );
    if !r.phases.is_empty() {
        table(&mut out, "By phase", &r.phase_table());
    }

    table(&mut out, "By operation", &r.operation_table());
    if !r.rules.is_empty() {
        table(&mut out, "Faults by rule", &r.rule_table());
    }
    out.push_str("</body></html>\n");
    out
}

/// The verdict table, at the top: one row per expectation, its evidence one click away.
fn verdicts(out: &mut String, v: &crate::verdict::Verdicts) {
    use crate::verdict::Status;
    let failed = v.failed().count();
    let _ = writeln!(
        out,
        r#"<h2 id="verdicts">Verdicts: {}</h2>
<p class="muted">{} requests in {} logical calls ({} grouped by inference). Expectations not stated in <code>expect:</code> are shown as info; a tight retry loop, a request still held at the end and an open multipart upload fail by default.</p>
<table class="verdicts"><tr><th>Result</th><th>Expectation</th><th>What was seen</th></tr>"#,
        if failed == 0 {
            "passed".to_owned()
        } else {
            format!("{failed} failed")
        },
        v.requests,
        v.calls,
        v.inferred_calls
    );
    for verdict in &v.verdicts {
        let class = match verdict.status {
            Status::Fail => "bad",
            Status::Pass => "pass",
            Status::Info | Status::NotJudged => "muted",
        };
        let evidence = if verdict.evidence.is_empty() {
            String::new()
        } else {
            format!(
                "<details><summary>evidence</summary><pre>{}</pre></details>",
                escape(&verdict.evidence.join("\n"))
            )
        };
        let _ = writeln!(
            out,
            r#"<tr class="verdict"><td class="{class}">{}</td><td><code>{}</code></td><td>{}{evidence}</td></tr>"#,
            verdict.status,
            verdict.expectation,
            escape(&verdict.summary)
        );
    }
    out.push_str("</table>\n");
}

/// A line: its colour, its legend, its value per bucket, and whether a bucket without
/// requests is a gap (no value) rather than a zero.
type Series<'a> = (&'a str, &'a str, &'a dyn Fn(&Bucket) -> f64, bool);

/// A tick step (seconds) giving at most about ten ticks over `total`.
fn tick_step(total: f64) -> f64 {
    const STEPS: [f64; 14] = [
        1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0,
    ];
    STEPS.iter().copied().find(|s| total / s <= 10.0).unwrap_or(14400.0)
}

fn drill_time(t: f64) -> String {
    if t < 60.0 {
        format!("{t:.0} s")
    } else {
        humantime::format_duration(std::time::Duration::from_secs(t as u64)).to_string()
    }
}

/// One panel: phases shaded behind, one polyline per series, buckets with injected faults
/// marked along the bottom; `label_phases` writes the phase names on this panel.
fn chart(
    out: &mut String,
    r: &Report,
    total: f64,
    title: &str,
    series: &[Series<'_>],
    max: Option<f64>,
    label_phases: bool,
) {
    let top = series
        .iter()
        .flat_map(|(_, _, f, _)| r.buckets.iter().map(f))
        .fold(0.0, f64::max);
    let top = max.unwrap_or(if top <= 0.0 { 1.0 } else { top * 1.1 });
    let x = |t: f64| LEFT + t / total.max(1e-9) * WIDTH;
    let y = |v: f64| 10.0 + HEIGHT - v / top * HEIGHT;
    let _ = writeln!(
        out,
        r#"<h2>{}</h2>
<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" role="img" aria-label="{}">"#,
        escape(title),
        LEFT + WIDTH + 20.0,
        HEIGHT + 40.0,
        escape(title)
    );
    for (i, p) in r.phases.iter().enumerate() {
        let _ = writeln!(
            out,
            r#"<rect class="phase" data-phase="{}" x="{:.1}" y="10" width="{:.1}" height="{HEIGHT}" fill="{}"><title>phase {}: {:.1}-{:.1} s</title></rect>"#,
            escape(&p.name),
            x(p.start),
            (x(p.end) - x(p.start)).max(1.0),
            PHASE_COLOURS[i % PHASE_COLOURS.len()],
            escape(&p.name),
            p.start,
            p.end
        );
        if label_phases {
            let _ = writeln!(
                out,
                r#"<text class="phase-name" x="{:.1}" y="24">{}</text>"#,
                x(p.start) + 4.0,
                escape(&p.name)
            );
        }
    }
    for (start, end) in &r.halts {
        let end = end.unwrap_or(total);
        let _ = writeln!(
            out,
            r##"<rect class="halt" x="{:.1}" y="10" width="{:.1}" height="{HEIGHT}" fill="#5f6368" opacity="0.25"><title>halted: {start:.1}-{end:.1} s</title></rect>"##,
            x(*start),
            (x(end) - x(*start)).max(1.0)
        );
    }
    // Axes and scale.
    let _ = writeln!(
        out,
        r##"<line x1="{LEFT}" y1="{}" x2="{}" y2="{}" stroke="#9aa0a6"/><line x1="{LEFT}" y1="10" x2="{LEFT}" y2="{}" stroke="#9aa0a6"/>"##,
        10.0 + HEIGHT,
        LEFT + WIDTH,
        10.0 + HEIGHT,
        10.0 + HEIGHT
    );
    let _ = writeln!(
        out,
        r#"<text x="4" y="18">{}</text><text x="4" y="{}">0</text>"#,
        short(top),
        10.0 + HEIGHT
    );
    let step = tick_step(total);
    let mut tick = 0.0;
    while tick <= total + 1e-9 {
        let _ = writeln!(
            out,
            r##"<line class="tick" x1="{0:.1}" y1="{1}" x2="{0:.1}" y2="{2}" stroke="#9aa0a6"/><text x="{0:.1}" y="{3}" text-anchor="middle">{4}</text>"##,
            x(tick),
            10.0 + HEIGHT,
            14.0 + HEIGHT,
            HEIGHT + 28.0,
            drill_time(tick)
        );
        tick += step;
    }
    for b in r.buckets.iter().filter(|b| b.injected > 0) {
        let _ = writeln!(
            out,
            r##"<rect class="injected" x="{:.1}" y="{}" width="{:.1}" height="4" fill="#d93025" opacity="0.6"/>"##,
            x(b.start),
            10.0 + HEIGHT - 4.0,
            (x(b.start + r.bucket_width) - x(b.start)).max(1.0)
        );
    }
    for (colour, _, f, gaps) in series {
        // One polyline per run of buckets with requests (or one for all, without gaps); a
        // run of one bucket is a dot.
        let mut runs: Vec<Vec<String>> = vec![Vec::new()];
        for b in &r.buckets {
            if *gaps && b.requests == 0 {
                if !runs.last().is_some_and(Vec::is_empty) {
                    runs.push(Vec::new());
                }
                continue;
            }
            let point = format!("{:.1},{:.1}", x(b.start + r.bucket_width / 2.0), y(f(b)));
            runs.last_mut().expect("a run").push(point);
        }
        for run in runs.iter().filter(|run| !run.is_empty()) {
            if run.len() == 1 {
                let (cx, cy) = run[0].split_once(',').expect("x,y");
                let _ = writeln!(
                    out,
                    r#"<circle class="series" cx="{cx}" cy="{cy}" r="2" fill="{colour}"/>"#
                );
            } else {
                let _ = writeln!(
                    out,
                    r#"<polyline class="series" fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
                    run.join(" ")
                );
            }
        }
    }
    out.push_str("</svg>\n");
    // The legend: every mark on the chart.
    out.push_str(r#"<p class="legend">"#);
    for (colour, name, _, _) in series {
        let _ = write!(
            out,
            r#"<span><i style="background:{colour}"></i>{}</span>"#,
            escape(name)
        );
    }
    out.push_str(r##"<span><i style="background:#d93025;opacity:.6"></i>a fault was injected</span>"##);
    if !r.phases.is_empty() {
        out.push_str(r##"<span><i style="background:#e8f0fe;border:1px solid #ccc"></i>phases (shaded bands)</span>"##);
    }
    if !r.halts.is_empty() {
        out.push_str(r##"<span><i style="background:#5f6368;opacity:.4"></i>faults halted</span>"##);
    }
    out.push_str("</p>\n");
}

fn short(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// Text made safe for HTML.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn table(out: &mut String, title: &str, t: &super::Table) {
    let _ = write!(out, "<h2>{}</h2>\n<table><tr>", escape(title));
    for h in t.header {
        let _ = write!(out, "<th>{}</th>", escape(h));
    }
    out.push_str("</tr>\n");
    for row in &t.rows {
        out.push_str("<tr>");
        for c in row {
            if c.bad {
                let _ = write!(out, "<td><span class=\"bad\">{}</span></td>", escape(&c.text));
            } else {
                let _ = write!(out, "<td>{}</td>", escape(&c.text));
            }
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
}
