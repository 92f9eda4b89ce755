//! What can be checked of `docker/` without a container engine: the files parse, every
//! s3chaos command line in them is one the binary accepts (its flags exist, its scenarios
//! load, its ports match the ports the files publish and probe), and the image's command
//! line is the one the README documents.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml_ng::Value;

use serde::Deserialize;

const BIN: &str = env!("CARGO_BIN_EXE_s3chaos");

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Every YAML document in a file.
fn documents(path: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(repo(path)).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{path}: {e}")))
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .unwrap_or_else(|| panic!("a list, got {v:?}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

/// The `--flag` names `s3chaos SUB --help` lists.
fn known_flags(sub: &str) -> String {
    let out = Command::new(BIN).args([sub, "--help"]).output().unwrap();
    String::from_utf8(out.stdout).unwrap()
}

/// Checks one s3chaos command line (`run ...` or `ctl ...`) against the binary; `files` maps
/// in-container scenario paths to their text. Returns the flags' values by name.
fn check_command_line(args: &[String], files: &[(String, String)]) -> Vec<(String, String)> {
    let sub = &args[0];
    let help = known_flags(sub);
    let mut values = Vec::new();
    let mut i = 1;
    while i < args.len() {
        let arg = &args[i];
        let (flag, value) = match arg.split_once('=') {
            Some((f, v)) => (f.to_owned(), Some(v.to_owned())),
            None => (arg.clone(), None),
        };
        if sub == "ctl" && !flag.starts_with("--") {
            // `ctl`'s subcommand ends the flags.
            assert!(
                help.contains(&format!("  {flag} ")),
                "`s3chaos ctl` has no subcommand {flag}"
            );
            break;
        }
        assert!(flag.starts_with("--"), "`{arg}` in {args:?} is not a flag");
        assert!(
            help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n")),
            "`s3chaos {sub}` has no {flag}"
        );
        let value = match value {
            Some(v) => v,
            None if help.contains(&format!("{flag} <")) => {
                i += 1;
                args[i].clone()
            }
            None => String::new(),
        };
        values.push((flag, value));
        i += 1;
    }
    for (flag, value) in &values {
        match flag.as_str() {
            "--scenario" => {
                let text = if let Some(name) = value.strip_prefix("builtin:") {
                    s3chaos::library::text(name)
                        .unwrap_or_else(|| panic!("no built-in scenario {name}"))
                        .to_owned()
                } else {
                    files
                        .iter()
                        .find(|(p, _)| p == value)
                        .unwrap_or_else(|| panic!("{value} is not provided by the files"))
                        .1
                        .clone()
                };
                s3chaos::engine::Scenario::parse(&text, value).unwrap_or_else(|e| panic!("{e}"));
            }
            "--listen" | "--admin" => {
                value
                    .parse::<std::net::SocketAddr>()
                    .unwrap_or_else(|e| panic!("{flag}={value}: {e}"));
            }
            "--max-duration" => {
                humantime::parse_duration(value).unwrap();
            }
            _ => {}
        }
    }
    values
}

fn port(values: &[(String, String)], flag: &str) -> u16 {
    let (_, v) = values
        .iter()
        .find(|(f, _)| f == flag)
        .unwrap_or_else(|| panic!("no {flag}"));
    v.parse::<std::net::SocketAddr>().unwrap().port()
}

/// The scenario files of the repository as the compose file mounts them.
fn mounted_scenarios() -> Vec<(String, String)> {
    std::fs::read_dir(repo("scenarios"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            (
                format!("/scenarios/{}", p.file_name().unwrap().to_string_lossy()),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect()
}

#[test]
fn compose_runs_a_command_line_the_binary_accepts() {
    let docs = documents("docker/compose.yaml");
    let services = &docs[0]["services"];
    for name in ["minio", "s3chaos", "client"] {
        assert!(services.get(name).is_some(), "service {name}");
    }
    let s3chaos = &services["s3chaos"];
    let volumes = strings(&s3chaos["volumes"]);
    assert!(
        volumes.contains(&"../scenarios:/scenarios:ro".to_owned()),
        "{volumes:?}"
    );
    let values = check_command_line(&strings(&s3chaos["command"]), &mounted_scenarios());
    let ports = strings(&s3chaos["ports"]);
    let (listen, admin) = (port(&values, "--listen"), port(&values, "--admin"));
    assert!(ports.contains(&format!("127.0.0.1:{listen}:{listen}")), "{ports:?}");
    assert!(
        ports.contains(&format!("127.0.0.1:{admin}:{admin}")),
        "the admin port is published on the host's loopback only: {ports:?}"
    );
    assert!(
        s3chaos["environment"]["S3CHAOS_ADMIN_TOKEN"].is_string(),
        "a non-loopback admin address needs a token"
    );
    assert_eq!(
        services["client"]["environment"]["AWS_ENDPOINT_URL"].as_str(),
        Some(format!("http://s3chaos:{listen}").as_str())
    );
}

#[test]
fn kubernetes_manifests_run_command_lines_the_binary_accepts() {
    for file in ["docker/k8s/s3chaos.yaml", "docker/k8s/sidecar.yaml"] {
        let docs = documents(file);
        let config_files: Vec<(String, String)> = docs
            .iter()
            .filter(|d| d["kind"] == "ConfigMap")
            .flat_map(|d| {
                d["data"]
                    .as_mapping()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| {
                        (
                            format!("/etc/s3chaos/{}", k.as_str().unwrap()),
                            v.as_str().unwrap().to_owned(),
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        let deployments: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "Deployment").collect();
        assert!(!deployments.is_empty(), "{file} has a Deployment");
        for deployment in deployments {
            for container in deployment["spec"]["template"]["spec"]["containers"]
                .as_sequence()
                .unwrap()
            {
                if container["image"].as_str() != Some("s3chaos:latest") {
                    continue;
                }
                let values = check_command_line(&strings(&container["args"]), &config_files);
                let listen = port(&values, "--listen");
                let admin = port(&values, "--admin");
                let declared: Vec<(String, u64)> = container["ports"]
                    .as_sequence()
                    .map(|ports| {
                        ports
                            .iter()
                            .map(|p| {
                                (
                                    p["name"].as_str().unwrap().to_owned(),
                                    p["containerPort"].as_u64().unwrap(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                for (name, number) in &declared {
                    let expected = if name == "s3" { listen } else { admin };
                    assert_eq!(*number, u64::from(expected), "{file}: port {name}");
                }
                let probe = &container["readinessProbe"];
                if probe.get("httpGet").is_some() {
                    assert_eq!(probe["httpGet"]["path"], "/healthz", "{file}");
                    assert!(declared.iter().any(|(n, p)| n == "admin" && *p == u64::from(admin)));
                } else {
                    let command = strings(&probe["exec"]["command"]);
                    assert_eq!(command[0], "s3chaos");
                    let values = check_command_line(&command[1..], &[]);
                    assert_eq!(port(&values, "--admin"), admin, "{file}: the probe asks the admin API");
                }
            }
        }
    }
}

#[test]
fn the_image_runs_the_command_line_the_readme_documents() {
    let dockerfile = std::fs::read_to_string(repo("docker/Dockerfile")).unwrap();
    let json_line = |keyword: &str| -> Vec<String> {
        // At the start of a line: the HEALTHCHECK's own `CMD` is indented.
        let line = dockerfile
            .lines()
            .find(|l| l.starts_with(&format!("{keyword} [")))
            .unwrap_or_else(|| panic!("no {keyword} line"));
        serde_json::from_str(line[keyword.len()..].trim()).unwrap()
    };
    let entrypoint = json_line("ENTRYPOINT");
    let cmd = json_line("CMD");
    assert_eq!(entrypoint, ["s3chaos"]);
    check_command_line(&cmd, &[]);
    let readme = std::fs::read_to_string(repo("README.md")).unwrap();
    let documented = format!("s3chaos {}", cmd.join(" "));
    assert!(readme.contains(&documented), "README documents `{documented}`");
    assert!(dockerfile.contains("cargo build --release --locked --bin s3chaos"));
    let ci = std::fs::read_to_string(repo(".ci/run")).unwrap();
    assert!(
        ci.contains("cargo build --release --locked --bin s3chaos"),
        "CI builds what the image builds"
    );
    assert!(dockerfile.contains("USER 10001") && dockerfile.contains("HEALTHCHECK"));
    let health = dockerfile
        .lines()
        .find(|l| l.trim_start().starts_with("CMD [\"s3chaos\", \"ctl\""))
        .expect("the HEALTHCHECK asks the admin API");
    let health: Vec<String> = serde_json::from_str(health.trim().trim_start_matches("CMD").trim()).unwrap();
    check_command_line(&health[1..], &[]);
}
