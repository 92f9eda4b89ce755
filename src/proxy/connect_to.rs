//! `--connect-to HOST:PORT:HOST2:PORT2`, curl's option of the same name: a connection meant
//! for HOST:PORT goes to HOST2:PORT2 instead, while TLS (SNI, the certificate check) and the
//! signed `Host` header keep the name asked for. It lets a forward-proxy drill aim
//! `s3.us-east-1.amazonaws.com` at a staging MinIO, and the tests aim it at a local server.
//!
//! HOST may be a glob (`*.amazonaws.com`) or empty (any host); PORT may be empty (any port).
//! IPv6 addresses are written in brackets: `s3.local:443:[::1]:9000`.

use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower_service::Service;

use super::targets::TargetPolicy;

/// One `--connect-to` rule.
#[derive(Debug, Clone)]
pub struct ConnectTo {
    written: String,
    host: Option<globset::GlobMatcher>,
    port: Option<u16>,
    /// `host2:port2`, as given.
    target: String,
}

impl ConnectTo {
    fn matches(&self, host: &str, port: u16) -> bool {
        self.host
            .as_ref()
            .is_none_or(|glob| glob.is_match(host.to_ascii_lowercase()))
            && self.port.is_none_or(|p| p == port)
    }
}

impl std::fmt::Display for ConnectTo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.written)
    }
}

/// Splits on `:` outside `[...]`.
fn fields(s: &str) -> Vec<&str> {
    let (mut out, mut start, mut depth) = (Vec::new(), 0, 0u32);
    for (i, c) in s.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ':' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

impl FromStr for ConnectTo {
    type Err = String;

    fn from_str(s: &str) -> Result<ConnectTo, String> {
        let [host, port, host2, port2] = fields(s)[..] else {
            return Err(format!(
                "`{s}`: write HOST:PORT:HOST2:PORT2, e.g. s3.us-east-1.amazonaws.com:443:127.0.0.1:9000"
            ));
        };
        let port = match port {
            "" => None,
            p => Some(p.parse::<u16>().map_err(|_| format!("`{s}`: `{p}` is not a port"))?),
        };
        let host = match host {
            "" => None,
            h => Some(
                globset::Glob::new(&h.to_ascii_lowercase())
                    .map_err(|e| format!("`{s}`: {e}"))?
                    .compile_matcher(),
            ),
        };
        if host2.is_empty() {
            return Err(format!("`{s}`: HOST2 is empty"));
        }
        let port2: u16 = port2.parse().map_err(|_| format!("`{s}`: `{port2}` is not a port"))?;
        Ok(ConnectTo {
            written: s.to_owned(),
            host,
            port,
            target: format!("{host2}:{port2}"),
        })
    }
}

/// The `--connect-to` rules, first match wins.
#[derive(Debug, Clone, Default)]
pub struct ConnectToTable(Arc<[ConnectTo]>);

impl ConnectToTable {
    pub fn new(rules: Vec<ConnectTo>) -> ConnectToTable {
        ConnectToTable(rules.into())
    }

    /// Where to connect for `host:port` instead, if a rule says so.
    pub fn target(&self, host: &str, port: u16) -> Option<&str> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        self.0.iter().find(|r| r.matches(host, port)).map(|r| r.target.as_str())
    }

    /// The address to open a TCP connection to for `host:port`.
    pub fn address(&self, host: &str, port: u16) -> String {
        match self.target(host, port) {
            Some(target) => target.to_owned(),
            None if host.contains(':') && !host.starts_with('[') => format!("[{host}]:{port}"),
            None => format!("{host}:{port}"),
        }
    }
}

/// hyper-util's TCP connector, sent to another address where a rule says so. Sits under the
/// TLS connector, which still sees (and verifies) the name asked for. In forward mode it
/// also holds the [`TargetPolicy`]: a host no rule redirects is resolved and checked here,
/// and the connection goes to the address that was checked.
#[derive(Clone)]
pub struct Redirecting {
    inner: HttpConnector,
    table: ConnectToTable,
    targets: Option<Arc<TargetPolicy>>,
}

impl Redirecting {
    pub fn new(inner: HttpConnector, table: ConnectToTable, targets: Option<Arc<TargetPolicy>>) -> Redirecting {
        Redirecting { inner, table, targets }
    }
}

type Connecting = Pin<Box<dyn Future<Output = Result<TokioIo<TcpStream>, crate::body::BoxError>> + Send>>;

impl Service<Uri> for Redirecting {
    type Response = TokioIo<TcpStream>;
    type Error = crate::body::BoxError;
    type Future = Connecting;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Connecting {
        let default_port = if uri.scheme() == Some(&http::uri::Scheme::HTTPS) {
            443
        } else {
            80
        };
        let redirected = uri.host().and_then(|host| {
            let target = self.table.target(host, uri.port_u16().unwrap_or(default_port))?;
            Uri::builder()
                .scheme(uri.scheme().cloned().unwrap_or(http::uri::Scheme::HTTP))
                .authority(target)
                .path_and_query("/")
                .build()
                .ok()
        });
        let (Some(targets), None, Some(host)) = (&self.targets, &redirected, uri.host()) else {
            let connecting = self.inner.call(redirected.unwrap_or(uri));
            return Box::pin(async move { connecting.await.map_err(Into::into) });
        };
        let (targets, host, port) = (targets.clone(), host.to_owned(), uri.port_u16().unwrap_or(default_port));
        let (mut inner, scheme) = (
            self.inner.clone(),
            uri.scheme().cloned().unwrap_or(http::uri::Scheme::HTTP),
        );
        Box::pin(async move {
            let address = targets.resolve(&host, port).await?[0];
            let checked = Uri::builder()
                .scheme(scheme)
                .authority(address.to_string())
                .path_and_query("/")
                .build()?;
            inner.call(checked).await.map_err(Into::into)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(rules: &[&str]) -> ConnectToTable {
        ConnectToTable::new(rules.iter().map(|r| r.parse().unwrap()).collect())
    }

    #[test]
    fn rules_match_host_globs_and_ports() {
        let t = table(&[
            "s3.us-east-1.amazonaws.com:443:127.0.0.1:9000",
            "*.amazonaws.com::[::1]:9001",
            "::10.0.0.1:80",
        ]);
        assert_eq!(t.target("s3.us-east-1.amazonaws.com", 443), Some("127.0.0.1:9000"));
        assert_eq!(t.target("S3.US-EAST-1.amazonaws.com", 443), Some("127.0.0.1:9000"));
        assert_eq!(t.target("s3.us-east-1.amazonaws.com", 80), Some("[::1]:9001"));
        assert_eq!(t.target("bkt.s3.amazonaws.com", 443), Some("[::1]:9001"));
        assert_eq!(t.target("example.com", 8080), Some("10.0.0.1:80"));
        assert_eq!(table(&[]).target("example.com", 443), None);
        assert_eq!(table(&[]).address("::1", 443), "[::1]:443");
        assert_eq!(table(&[]).address("example.com", 443), "example.com:443");
    }

    #[test]
    fn bad_rules_say_what_is_wrong() {
        for (bad, says) in [
            ("a:443:b", "HOST:PORT:HOST2:PORT2"),
            ("a:x:b:1", "`x` is not a port"),
            ("a:1:b:99999", "`99999` is not a port"),
            ("a:1::1", "HOST2 is empty"),
        ] {
            let err = bad.parse::<ConnectTo>().unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
