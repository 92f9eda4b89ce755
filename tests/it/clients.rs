//! The six clients the first store (s3s-fs) failed, against `s3chaos run` with its embedded
//! store, as a new user meets it: rclone, s3cmd and the AWS CLI as commands, boto3, MinIO's
//! Python client and the JavaScript SDK v3 as scripts under `tests/clients/`. Each uses
//! credentials that look like real AWS ones (the store takes any) and keys that are not
//! file names (`p+q.txt`, `100%.txt`, `ünïcødé/ß.txt`, ...).
//!
//! A client that is not installed skips its test with a message; `.ci/run` installs them all
//! and sets S3CHAOS_REQUIRE_CLIENTS=1, under which a missing client fails the test instead.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cli::Running;

/// What people have in their shell: the AWS documentation's example pair.
const KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

/// Keys S3 takes and a file system would not treat as plain names.
const KEYS: &[&str] = &[
    "p+q.txt",
    "a b.txt",
    "100%.txt",
    "x&y=z.txt",
    "dir/top.txt",
    "dir/sub/deep.txt",
    "ünïcødé/ß.txt",
];

/// Whether `program args` runs. If not: a loud skip, or a failure under S3CHAOS_REQUIRE_CLIENTS.
fn available(what: &str, program: &str, args: &[&str]) -> bool {
    let ok = Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|out| out.status.success());
    if !ok {
        assert!(
            std::env::var_os("S3CHAOS_REQUIRE_CLIENTS").is_none(),
            "S3CHAOS_REQUIRE_CLIENTS is set but {what} is missing (`{program} {}` failed)",
            args.join(" ")
        );
        eprintln!("SKIPPED the {what} test: {what} is not installed (.ci/run installs it)");
    }
    ok
}

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

/// A command with nothing of the user's AWS set-up: no profile, no config, no CA bundle
/// (rclone refuses to start when AWS_CA_BUNDLE is set).
fn clean(program: &str, s3chaos: &Running) -> Command {
    let mut cmd = Command::new(program);
    for var in [
        "AWS_CA_BUNDLE",
        "AWS_PROFILE",
        "AWS_REGION",
        "AWS_ENDPOINT_URL",
        "AWS_SESSION_TOKEN",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("S3CHAOS_ENDPOINT", format!("http://{}", s3chaos.addr));
    cmd
}

/// Runs `cmd`, failing the test with its output when it fails; returns its stdout.
fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Runs `program script` in `dir` against a fresh `s3chaos run`; the script prints
/// "all behaviours as S3" when every check held and exits non-zero on the first that did not.
fn run_script(program: &str, dir: &Path, script: &str) {
    let data = tempfile::tempdir().unwrap();
    let s3chaos = Running::in_dir(&data, None, &[]);
    let out = run(clean(program, &s3chaos).arg(script).current_dir(dir));
    assert!(out.contains("all behaviours as S3"), "{out}");
    s3chaos.finish();
}

/// A local tree of [`KEYS`] (each file holds its own name) and one 20 MB file, `dir/big.bin`,
/// large enough for the AWS CLI's and s3cmd's multipart uploads.
fn tricky_tree(root: &Path) -> Vec<String> {
    for key in KEYS {
        let path = root.join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, key.as_bytes()).unwrap();
    }
    std::fs::write(root.join("dir/big.bin"), crate::harness::random_bytes(20_000_000, 16)).unwrap();
    let mut all: Vec<String> = KEYS.iter().map(|k| k.to_string()).collect();
    all.push("dir/big.bin".into());
    all.sort();
    all
}

/// Every file under `root`, as relative paths, sorted.
fn files_under(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// Both trees hold the same files with the same bytes.
fn assert_same_tree(a: &Path, b: &Path) {
    assert_eq!(files_under(a), files_under(b));
    for file in files_under(a) {
        assert!(
            std::fs::read(a.join(&file)).unwrap() == std::fs::read(b.join(&file)).unwrap(),
            "{file} differs"
        );
    }
}

/// `rclone sync` up, `rclone check`, `rclone lsf -R`, a second sync after a delete and a
/// change, and a sync back down (the listing bugs broke `lsf -R` and `sync`). Small upload
/// cut-off so rclone's multipart path runs too.
#[test]
fn rclone_syncs_and_lists_a_tree_of_odd_names() {
    if !available("rclone", "rclone", &["version"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s3chaos = Running::in_dir(&dir, None, &[]);
    let tree = dir.path().join("tree");
    tricky_tree(&tree);
    let rclone = |args: &[&str]| {
        let mut cmd = clean("rclone", &s3chaos);
        cmd.args(args)
            .args(["--s3-upload-cutoff", "5M", "--s3-chunk-size", "5M"])
            .env("RCLONE_CONFIG", dir.path().join("rclone.conf"))
            .env("RCLONE_CONFIG_S3C_TYPE", "s3")
            .env("RCLONE_CONFIG_S3C_PROVIDER", "Other")
            .env("RCLONE_CONFIG_S3C_ENDPOINT", format!("http://{}", s3chaos.addr))
            .env("RCLONE_CONFIG_S3C_ACCESS_KEY_ID", KEY_ID)
            .env("RCLONE_CONFIG_S3C_SECRET_ACCESS_KEY", SECRET);
        run(&mut cmd)
    };
    let t = tree.to_str().unwrap();
    rclone(&["mkdir", "s3c:rclone"]);
    rclone(&["sync", t, "s3c:rclone"]);
    rclone(&["check", t, "s3c:rclone"]);
    let listed = rclone(&["lsf", "-R", "--files-only", "s3c:rclone"]);
    let mut listed: Vec<&str> = listed.lines().collect();
    listed.sort();
    assert_eq!(listed, files_under(&tree), "rclone lsf -R");
    let dirs = rclone(&["lsf", "-R", "--dirs-only", "s3c:rclone"]);
    let mut dirs: Vec<&str> = dirs.lines().collect();
    dirs.sort();
    assert_eq!(dirs, ["dir/", "dir/sub/", "ünïcødé/"]);

    std::fs::remove_file(tree.join("a b.txt")).unwrap();
    std::fs::write(tree.join("dir/top.txt"), b"changed").unwrap();
    rclone(&["sync", t, "s3c:rclone"]);
    rclone(&["check", t, "s3c:rclone"]);
    let back = dir.path().join("back");
    rclone(&["sync", "s3c:rclone", back.to_str().unwrap()]);
    assert_same_tree(&tree, &back);
    s3chaos.finish();
}

/// s3cmd with its defaults (`bucket_location = US`, which s3s-fs refused), path-style:
/// `mb`, `sync` (a 20 MB file goes multipart at s3cmd's 15 MB chunk), `ls -r`, a second sync
/// that uploads nothing, `get`, `del --recursive`, `rb`.
#[test]
fn s3cmd_with_its_default_region_us_works() {
    if !available("s3cmd", "s3cmd", &["--version"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s3chaos = Running::in_dir(&dir, None, &[]);
    let tree = dir.path().join("tree");
    let keys = tricky_tree(&tree);
    let config = dir.path().join("s3cfg");
    std::fs::write(
        &config,
        format!(
            "[default]\naccess_key = {KEY_ID}\nsecret_key = {SECRET}\nbucket_location = US\n\
             host_base = {a}\nhost_bucket = {a}\nuse_https = False\n",
            a = s3chaos.addr
        ),
    )
    .unwrap();
    let s3cmd = |args: &[&str]| {
        let mut cmd = clean("s3cmd", &s3chaos);
        cmd.arg("-c").arg(&config).args(args);
        run(&mut cmd)
    };
    s3cmd(&["mb", "s3://s3cmd"]);
    s3cmd(&["sync", &format!("{}/", tree.display()), "s3://s3cmd/tree/"]);
    let listed = s3cmd(&["ls", "-r", "s3://s3cmd"]);
    let mut names: Vec<&str> = listed
        .lines()
        .filter_map(|l| l.split("s3://s3cmd/tree/").nth(1))
        .collect();
    names.sort();
    assert_eq!(names, keys, "s3cmd ls -r:\n{listed}");
    let again = s3cmd(&["sync", &format!("{}/", tree.display()), "s3://s3cmd/tree/"]);
    assert!(!again.contains("upload:"), "a second sync re-uploaded:\n{again}");
    let back = dir.path().join("big.back");
    s3cmd(&["get", "s3://s3cmd/tree/dir/big.bin", back.to_str().unwrap()]);
    assert!(std::fs::read(&back).unwrap() == std::fs::read(tree.join("dir/big.bin")).unwrap());
    s3cmd(&["del", "--recursive", "--force", "s3://s3cmd"]);
    s3cmd(&["rb", "s3://s3cmd"]);
    s3chaos.finish();
}

/// The AWS CLI in a region that is not us-east-1: `s3 mb`, `s3 sync` up (multipart for the
/// 20 MB file), `s3 ls --recursive`, a second `sync` that copies nothing (sizes and times in
/// the listing agree), `sync` down, `s3api list-object-versions`, `s3 rm --recursive`, `rb`.
#[test]
fn aws_cli_syncs_both_ways_with_any_credentials_and_region() {
    if !available("the AWS CLI", "aws", &["--version"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s3chaos = Running::in_dir(&dir, None, &[]);
    let tree = dir.path().join("tree");
    let keys = tricky_tree(&tree);
    let aws = |args: &[&str]| {
        let mut cmd = clean("aws", &s3chaos);
        cmd.args(["--endpoint-url", &format!("http://{}", s3chaos.addr)])
            .args(args)
            .env("AWS_ACCESS_KEY_ID", KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .env("AWS_DEFAULT_REGION", "eu-west-3");
        run(&mut cmd)
    };
    let t = tree.to_str().unwrap();
    aws(&["s3", "mb", "s3://awscli"]);
    aws(&["s3", "sync", "--only-show-errors", t, "s3://awscli/tree/"]);
    let listed = aws(&["s3", "ls", "--recursive", "s3://awscli"]);
    let mut names: Vec<&str> = listed.lines().filter_map(|l| l.split(" tree/").nth(1)).collect();
    names.sort();
    assert_eq!(names, keys, "aws s3 ls --recursive:\n{listed}");
    let again = aws(&["s3", "sync", "--no-progress", t, "s3://awscli/tree/"]);
    assert_eq!(again.trim(), "", "a second sync copied again");
    let back = dir.path().join("back");
    aws(&[
        "s3",
        "sync",
        "--only-show-errors",
        "s3://awscli/tree/",
        back.to_str().unwrap(),
    ]);
    assert_same_tree(&tree, &back);
    let versions = aws(&[
        "s3api",
        "list-object-versions",
        "--bucket",
        "awscli",
        "--query",
        "Versions[].VersionId",
        "--output",
        "text",
    ]);
    assert_eq!(
        versions.split_whitespace().collect::<Vec<_>>(),
        vec!["null"; keys.len()]
    );
    aws(&["s3", "rm", "--recursive", "--only-show-errors", "s3://awscli"]);
    aws(&["s3", "rb", "s3://awscli"]);
    s3chaos.finish();
}

/// `tests/clients/boto3_store.py`: listings (encoding-type=url, empty delimiter, paging V1
/// and V2), HEAD of a prefix, keys that are not paths, versions, multipart with the default
/// CRC32 trailers, checksums, `If-None-Match: *`, DeleteObjects.
#[test]
fn boto3_gets_s3_listing_key_and_checksum_rules() {
    if !available("boto3", "python3", &["-c", "import boto3"]) {
        return;
    }
    run_script("python3", &clients_dir(), "boto3_store.py");
}

/// `tests/clients/minio_store.py`: MinIO's Python client, recursive and top-level listings
/// (V2 and V1), a multipart `fput_object`, a ranged read, `remove_objects`.
#[test]
fn minio_client_lists_and_uploads() {
    if !available("MinIO's Python client", "python3", &["-c", "import minio"]) {
        return;
    }
    run_script("python3", &clients_dir(), "minio_store.py");
}

/// `tests/clients/js/store.mjs`: the JavaScript SDK v3 with its default CRC32 checksums in
/// aws-chunked trailers, listings, HEAD of a prefix, a multipart `Upload` from lib-storage.
/// `.ci/run` runs `npm ci` in `tests/clients/js`.
#[test]
fn javascript_sdk_v3_uploads_with_trailing_checksums() {
    if let Some(js) = javascript_sdk() {
        run_script("node", &js, "store.mjs");
    }
}

/// `tests/clients/js` when Node and the JavaScript SDK v3 are installed there; `None` (a
/// loud skip, or a failure under S3CHAOS_REQUIRE_CLIENTS) when not.
pub(crate) fn javascript_sdk() -> Option<PathBuf> {
    let js = clients_dir().join("js");
    let installed = js.join("node_modules/@aws-sdk/client-s3").is_dir();
    if !installed || !available("Node.js", "node", &["--version"]) {
        assert!(
            installed || std::env::var_os("S3CHAOS_REQUIRE_CLIENTS").is_none(),
            "S3CHAOS_REQUIRE_CLIENTS is set but tests/clients/js has no node_modules (npm ci)"
        );
        if !installed {
            eprintln!("SKIPPED a JavaScript SDK test: run `npm ci` in tests/clients/js (.ci/run does)");
        }
        return None;
    }
    Some(js)
}
