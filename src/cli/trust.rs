//! What `exec` exports so that every ecosystem's clients trust s3chaos's CA (for
//! `--tls-self-signed` and forward mode).
//!
//! Clients find their trust roots in different variables, and these do different things:
//!
//! | Variable | Read by | Effect |
//! |---|---|---|
//! | `NODE_EXTRA_CA_CERTS` | Node.js (the JS SDK v3) | **adds** to Node's roots |
//! | `SSL_CERT_FILE` | OpenSSL (Python's `ssl`, Ruby, PHP), Go, rustls-native-certs (the Rust SDK) | **replaces** the system roots |
//! | `AWS_CA_BUNDLE` | botocore (boto3, the AWS CLI), the Java and .NET SDKs | **replaces** the roots for AWS calls |
//! | `REQUESTS_CA_BUNDLE` | Python `requests` | **replaces** `certifi`'s roots |
//! | `CURL_CA_BUNDLE` | curl, and `requests` when the former is unset | **replaces** the roots |
//!
//! Pointing a replacing variable at the s3chaos CA alone would break every other TLS
//! connection the command makes (a package index, a real AWS endpoint tunnelled untouched in
//! forward mode). So each one points at a bundle of the roots the command would have used —
//! the file the variable already named, else the system's bundle — with the s3chaos CA
//! appended. `NODE_EXTRA_CA_CERTS` adds, so it gets the CA alone (or appended to the file it
//! already named). `SSL_CERT_DIR` is left alone.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// The variables that replace the roots they name.
const REPLACING: [&str; 4] = ["SSL_CERT_FILE", "AWS_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"];

/// Where distributions keep the system's root bundle (Go's list, in its order).
const SYSTEM_BUNDLES: [&str; 6] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/pki/tls/cacert.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// The variables to export and their files, written into `dir`. `existing` gives the
/// command's environment (what a variable already names).
pub fn exports(
    ca: &Path,
    dir: &Path,
    existing: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<Vec<(&'static str, PathBuf)>> {
    let ca_pem = std::fs::read(ca).with_context(|| format!("cannot read the s3chaos CA {}", ca.display()))?;
    let system = SYSTEM_BUNDLES.iter().map(Path::new).find(|p| p.is_file());
    let mut out = Vec::new();
    let mut system_plus_ca: Option<PathBuf> = None;
    for name in REPLACING {
        let path = match existing(name).filter(|p| Path::new(p).is_file()) {
            Some(theirs) => bundle(dir, name, Some(Path::new(&theirs)), &ca_pem)?,
            None => match &system_plus_ca {
                Some(path) => path.clone(),
                None => {
                    let path = bundle(dir, "system", system, &ca_pem)?;
                    system_plus_ca = Some(path.clone());
                    path
                }
            },
        };
        out.push((name, path));
    }
    let node = match existing("NODE_EXTRA_CA_CERTS").filter(|p| Path::new(p).is_file()) {
        Some(theirs) => bundle(dir, "NODE_EXTRA_CA_CERTS", Some(Path::new(&theirs)), &ca_pem)?,
        None => std::fs::canonicalize(ca).unwrap_or_else(|_| ca.to_owned()),
    };
    out.push(("NODE_EXTRA_CA_CERTS", node));
    Ok(out)
}

/// `roots` (if any) with the CA appended, as `dir/NAME.pem`.
fn bundle(dir: &Path, name: &str, roots: Option<&Path>, ca_pem: &[u8]) -> anyhow::Result<PathBuf> {
    let mut pem = match roots {
        Some(roots) => std::fs::read(roots).with_context(|| format!("cannot read {}", roots.display()))?,
        None => Vec::new(),
    };
    if !pem.is_empty() && !pem.ends_with(b"\n") {
        pem.push(b'\n');
    }
    pem.extend_from_slice(ca_pem);
    let path = dir.join(format!("{name}.pem"));
    std::fs::write(&path, pem).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacing_variables_keep_the_roots_they_had_and_node_adds_the_ca_alone() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n").unwrap();
        let theirs = dir.path().join("corp.pem");
        std::fs::write(&theirs, "CORPORATE ROOT").unwrap();
        let theirs_s = theirs.display().to_string();
        let out = exports(&ca, dir.path(), |name| {
            (name == "REQUESTS_CA_BUNDLE").then(|| theirs_s.clone())
        })
        .unwrap();
        let get = |name: &str| std::fs::read_to_string(&out.iter().find(|(n, _)| *n == name).unwrap().1).unwrap();
        assert_eq!(
            get("REQUESTS_CA_BUNDLE"),
            "CORPORATE ROOT\n-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n"
        );
        let ssl = get("SSL_CERT_FILE");
        assert!(ssl.ends_with("CA\n-----END CERTIFICATE-----\n"), "the CA is appended");
        if SYSTEM_BUNDLES.iter().any(|p| Path::new(p).is_file()) {
            assert!(ssl.len() > 10_000, "the system's roots are kept ({} bytes)", ssl.len());
        }
        assert_eq!(get("AWS_CA_BUNDLE"), ssl);
        assert_eq!(
            get("NODE_EXTRA_CA_CERTS"),
            std::fs::read_to_string(&ca).unwrap(),
            "Node adds: the CA alone"
        );
    }
}
