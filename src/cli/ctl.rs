//! `s3chaos ctl`: the admin API from a shell or a CI job. Human output by default, `--json`
//! for scripts; a non-zero exit on any failure.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use http::Method;
use s3chaos::admin::client::AdminClient;
use serde_json::{Value, json};

#[derive(Args)]
pub struct CtlArgs {
    /// The admin API to talk to.
    #[arg(long, global = true, env = "S3CHAOS_ADMIN", default_value = "http://127.0.0.1:9081")]
    admin: String,
    /// Bearer token, when the admin API requires one.
    #[arg(long, global = true, env = "S3CHAOS_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print the API's JSON instead of a summary.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: CtlCommand,
}

#[derive(Subcommand)]
enum CtlCommand {
    /// Scenario, phase, halted or not, counters.
    Status,
    /// The kill switch: turn every fault off at once.
    Halt {
        #[arg(long)]
        reason: Option<String>,
    },
    /// Turn faults back on.
    Resume,
    /// Replace the running scenario with FILE (validated first).
    Apply { file: PathBuf },
    /// Add one rule at run time, evaluated before the file's rules.
    AddRule(AddRule),
    /// Remove a rule added at run time.
    RmRule { name: String },
    /// Switch a rule off: it still matches and counts, never fires (kept across reloads).
    DisableRule { name: String },
    /// Switch a rule back on.
    EnableRule { name: String },
    /// Every rule with its counts.
    Rules,
    /// The recent injected faults.
    Events {
        #[arg(long, default_value_t = 0)]
        since: u64,
    },
    /// The Prometheus metrics text.
    Metrics,
    /// Whether the app is passing so far: the event log judged against `expect:` (needs
    /// `--events` on the proxy).
    Verdicts,
}

#[derive(Args)]
struct AddRule {
    #[arg(long)]
    name: Option<String>,
    /// S3 operation(s) to match, e.g. GetObject (repeatable).
    #[arg(long = "op")]
    operations: Vec<String>,
    #[arg(long)]
    bucket: Option<String>,
    #[arg(long)]
    key: Option<String>,
    #[arg(long)]
    probability: Option<f64>,
    /// Answer with this S3 error code (SlowDown, InternalError, ...).
    #[arg(long)]
    error: Option<String>,
    /// Delay before forwarding, e.g. 250ms.
    #[arg(long)]
    latency: Option<String>,
    /// Never answer.
    #[arg(long)]
    blackhole: bool,
    /// TCP reset.
    #[arg(long)]
    reset: bool,
    /// Remove the rule after this long, e.g. 60s.
    #[arg(long)]
    ttl: Option<String>,
    /// The whole rule as JSON or YAML, as in a scenario file (other flags are then ignored).
    #[arg(long)]
    rule: Option<String>,
}

impl AddRule {
    fn to_rule(&self) -> Result<String, String> {
        if let Some(rule) = &self.rule {
            return Ok(rule.clone());
        }
        let mut fault = serde_json::Map::new();
        if let Some(latency) = &self.latency {
            fault.insert("latency".into(), json!(latency));
        }
        if let Some(error) = &self.error {
            fault.insert("error".into(), json!(error));
        }
        if self.blackhole {
            fault.insert("blackhole".into(), json!({}));
        }
        if self.reset {
            fault.insert("reset".into(), json!({}));
        }
        if fault.is_empty() {
            return Err("say what to inject: --error CODE, --latency D, --blackhole, --reset or --rule".into());
        }
        let mut matcher = serde_json::Map::new();
        if !self.operations.is_empty() {
            matcher.insert("operation".into(), json!(self.operations));
        }
        if let Some(bucket) = &self.bucket {
            matcher.insert("bucket".into(), json!(bucket));
        }
        if let Some(key) = &self.key {
            matcher.insert("key".into(), json!(key));
        }
        let mut rule = serde_json::Map::new();
        if let Some(name) = &self.name {
            rule.insert("name".into(), json!(name));
        }
        rule.insert("match".into(), Value::Object(matcher));
        if let Some(p) = self.probability {
            rule.insert("probability".into(), json!(p));
        }
        if let Some(ttl) = &self.ttl {
            rule.insert("ttl".into(), json!(ttl));
        }
        rule.insert("fault".into(), Value::Object(fault));
        Ok(Value::Object(rule).to_string())
    }
}

pub fn run(args: CtlArgs) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime starts");
    match runtime.block_on(call(&args)) {
        Ok(value) => {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&value).unwrap_or_default());
            } else {
                print!("{}", human(&args.command, &value));
            }
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("s3chaos ctl: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn call(args: &CtlArgs) -> Result<Value, String> {
    let client = AdminClient::new(&args.admin, args.token.clone()).map_err(|e| e.to_string())?;
    let (method, path, body) = match &args.command {
        CtlCommand::Status => (Method::GET, "/status".to_owned(), None),
        CtlCommand::Halt { reason } => (
            Method::POST,
            "/halt".to_owned(),
            Some(
                reason
                    .as_ref()
                    .map_or_else(String::new, |r| json!({"reason": r}).to_string()),
            ),
        ),
        CtlCommand::Resume => (Method::POST, "/resume".to_owned(), None),
        CtlCommand::Apply { file } => {
            let text = s3chaos::scenario::read_file(file).map_err(|e| e.to_string())?;
            (Method::PUT, "/scenario".to_owned(), Some(text))
        }
        CtlCommand::AddRule(add) => (Method::POST, "/rules".to_owned(), Some(add.to_rule()?)),
        CtlCommand::RmRule { name } => (Method::DELETE, format!("/rules/{name}"), None),
        CtlCommand::Rules => (Method::GET, "/rules".to_owned(), None),
        CtlCommand::Events { since } => (Method::GET, format!("/events?since={since}"), None),
        CtlCommand::Metrics => (Method::GET, "/metrics".to_owned(), None),
        CtlCommand::Verdicts => (Method::GET, "/verdicts".to_owned(), None),
        CtlCommand::DisableRule { name } => (Method::POST, format!("/rules/{name}/disable"), None),
        CtlCommand::EnableRule { name } => (Method::POST, format!("/rules/{name}/enable"), None),
    };
    client.call(method, &path, body).await.map_err(|e| e.to_string())
}

fn human(command: &CtlCommand, v: &Value) -> String {
    let s = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    };
    match command {
        CtlCommand::Status => {
            let phase = match v.get("phase") {
                Some(p) if !p.is_null() => format!(
                    ", phase `{}` ({} of {}), {:.0}s left",
                    s(&p["name"]),
                    p["index"].as_u64().unwrap_or(0) + 1,
                    s(&p["of"]),
                    p["left_s"].as_f64().unwrap_or(0.0)
                ),
                _ => String::new(),
            };
            let halted = match v["halt_reason"].as_str() {
                Some(reason) => format!("HALTED ({reason})"),
                None => "faults on".into(),
            };
            format!(
                "scenario `{}`: drill {}{phase}\n{halted}; {} requests, {} faults injected, {} active now; up {:.0}s\n",
                s(&v["scenario"]),
                s(&v["drill"]["state"]),
                s(&v["requests"]),
                s(&v["faults_injected"]),
                s(&v["active_faults"]),
                v["uptime_s"].as_f64().unwrap_or(0.0)
            )
        }
        CtlCommand::Halt { .. } => format!("halted: every fault is off ({})\n", s(&v["reason"])),
        CtlCommand::Resume => "resumed: faults apply again\n".into(),
        CtlCommand::Apply { .. } => format!("applied scenario `{}` ({} rules)\n", s(&v["applied"]), s(&v["rules"])),
        CtlCommand::AddRule(_) => format!("added rule `{}`\n", s(&v["added"])),
        CtlCommand::RmRule { .. } => format!("removed rule `{}`\n", s(&v["removed"])),
        CtlCommand::DisableRule { .. } | CtlCommand::EnableRule { .. } => format!(
            "rule `{}` {}\n",
            s(&v["rule"]),
            if v["enabled"] == true {
                "on"
            } else {
                "off: it matches, never fires"
            }
        ),
        CtlCommand::Rules => {
            let mut out = format!(
                "{:<32} {:<6} {:>9} {:>9}  {:<10} faults\n",
                "rule", "from", "matched", "injected", "expires"
            );
            for r in v["rules"].as_array().into_iter().flatten() {
                let faults: Vec<String> = r["faults"].as_array().into_iter().flatten().map(s).collect();
                let expires = r["expires_in_s"].as_f64().map_or("-".into(), |e| format!("{e:.0}s"));
                out += &format!(
                    "{:<32} {:<6} {:>9} {:>9}  {:<10} {}\n",
                    s(&r["name"]),
                    s(&r["source"]),
                    s(&r["matched"]),
                    s(&r["injected"]),
                    expires,
                    faults.join(", ")
                );
            }
            out
        }
        CtlCommand::Events { .. } => {
            let mut out = String::new();
            for e in v["events"].as_array().into_iter().flatten() {
                out += &format!(
                    "{:>6} {} {:<28} {:<28} {} {}/{}\n",
                    s(&e["id"]),
                    s(&e["time"]),
                    s(&e["rule"]),
                    s(&e["fault"]),
                    s(&e["operation"]),
                    s(&e["bucket"]),
                    s(&e["key"])
                );
            }
            out
        }
        CtlCommand::Metrics => s(v),
        CtlCommand::Verdicts => {
            let mut out = format!(
                "{} requests, {} logical calls ({} grouped by inference)\n",
                s(&v["requests"]),
                s(&v["calls"]),
                s(&v["inferred_calls"])
            );
            for verdict in v["verdicts"].as_array().into_iter().flatten() {
                let status = match verdict["status"].as_str() {
                    Some("fail") => "FAIL".to_owned(),
                    Some("not_judged") => "not judged".to_owned(),
                    other => other.unwrap_or("?").to_owned(),
                };
                out += &format!(
                    "{status:<10} {:<26} {}\n",
                    s(&verdict["expectation"]),
                    s(&verdict["summary"])
                );
                if status == "FAIL" {
                    for line in verdict["evidence"].as_array().into_iter().flatten() {
                        out += &format!("{:<10} {:<26}   {}\n", "", "", s(line));
                    }
                }
            }
            out
        }
    }
}
