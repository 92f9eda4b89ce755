//! The HTML report: one self-contained page, the charts drawn as inline SVG so it renders
//! anywhere (an artifact viewer, a mail client) with no script and no network.

use std::fmt::Write;

use super::{Bucket, Report, phase_spans};

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 150.0;
const LEFT: f64 = 60.0;
const PHASE_COLOURS: [&str; 4] = ["#e8f0fe", "#fef3e0", "#f1e8fd", "#e6f4ea"];

pub fn render(r: &Report) -> String {
    let mut out = String::with_capacity(64 * 1024);
    let _ = write!(
        out,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>s3chaos drill report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 24px; color: #202124; background: #fff; }}
h1 {{ font-size: 22px; }} h2 {{ font-size: 16px; margin-top: 28px; }}
table {{ border-collapse: collapse; font-size: 14px; }}
td, th {{ border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
.summary span {{ display: inline-block; margin-right: 24px; }}
.bad {{ color: #c5221f; font-weight: bold; }}
.pass {{ color: #188038; font-weight: bold; }} .muted {{ color: #5f6368; }}
table.verdicts td, table.verdicts th {{ text-align: left; vertical-align: top; }}
details pre {{ font-size: 12px; margin: 4px 0; white-space: pre-wrap; }}
svg text {{ font-size: 11px; fill: #5f6368; }}
</style></head><body>
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
    chart(
        &mut out,
        r,
        total,
        "Request rate (requests/s)",
        &[("#1a73e8", &per_second)],
        None,
        true,
    );
    chart(
        &mut out,
        r,
        total,
        "Error rate (% failed: 5xx or never answered)",
        &[("#d93025", &error_pct)],
        Some(100.0),
        false,
    );
    chart(
        &mut out,
        r,
        total,
        "Latency (ms): p50 (green) and p99 (orange)",
        &[("#188038", &|b: &Bucket| b.p50_ms), ("#f29900", &|b: &Bucket| b.p99_ms)],
        None,
        false,
    );

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

type Series<'a> = (&'a str, &'a dyn Fn(&Bucket) -> f64);

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
        .flat_map(|(_, f)| r.buckets.iter().map(f))
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
    for (i, (name, start, end)) in phase_spans(r).iter().enumerate() {
        let _ = writeln!(
            out,
            r#"<rect class="phase" x="{:.1}" y="10" width="{:.1}" height="{HEIGHT}" fill="{}"/>"#,
            x(*start),
            (x(*end) - x(*start)).max(1.0),
            PHASE_COLOURS[i % PHASE_COLOURS.len()]
        );
        if label_phases {
            let _ = writeln!(
                out,
                r#"<text x="{:.1}" y="24">{}</text>"#,
                x(*start) + 4.0,
                escape(name)
            );
        }
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
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="{}">0 s</text><text x="{}" y="{}" text-anchor="end">{:.0} s</text>"#,
        HEIGHT + 28.0,
        LEFT + WIDTH,
        HEIGHT + 28.0,
        total
    );
    for b in r.buckets.iter().filter(|b| b.injected > 0) {
        let _ = writeln!(
            out,
            r##"<rect class="injected" x="{:.1}" y="{}" width="{:.1}" height="4" fill="#d93025" opacity="0.6"/>"##,
            x(b.start),
            10.0 + HEIGHT - 4.0,
            (x(b.start + r.bucket_width) - x(b.start)).max(1.0)
        );
    }
    for (colour, f) in series {
        let points: Vec<String> = r
            .buckets
            .iter()
            .map(|b| format!("{:.1},{:.1}", x(b.start + r.bucket_width / 2.0), y(f(b))))
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline class="series" fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
            points.join(" ")
        );
    }
    out.push_str("</svg>\n");
}

fn short(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn escape(s: &str) -> String {
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
