//! Which addresses a forward proxy may reach for its clients.
//!
//! A forward proxy connects wherever its client asks. Left open, any app that can use
//! `HTTPS_PROXY` reaches what only the proxy's own machine should: s3chaos's tokenless admin
//! API (`POST http://127.0.0.1:9081/halt`), other services on loopback, and the cloud's
//! metadata service on `169.254.169.254` (the classic SSRF). So a target is refused when
//! any address its name resolves to is loopback, unspecified, link-local, or one of this
//! machine's own — unless the operator named it: `--connect-to` (the proxy then connects
//! where that rule says, not where the client asked), the `--upstream`, or `--allow-target`.
//! s3chaos's own listener and admin sockets are refused even then: forwarding there loops or
//! opens the admin door.
//!
//! The check runs on the addresses actually connected to (the tunnel connects to what was
//! checked; the pooled connector resolves through [`TargetPolicy::resolve`] too), so a name
//! that resolves elsewhere the second time (DNS rebinding) gains nothing.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::RwLock;

/// One `--allow-target HOST:PORT` (HOST a glob, PORT empty or `*` for any).
#[derive(Debug, Clone)]
pub struct AllowTarget {
    written: String,
    host: globset::GlobMatcher,
    port: Option<u16>,
}

impl AllowTarget {
    fn matches(&self, host: &str, port: u16) -> bool {
        self.host.is_match(host.to_ascii_lowercase()) && self.port.is_none_or(|p| p == port)
    }
}

impl std::fmt::Display for AllowTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.written)
    }
}

impl FromStr for AllowTarget {
    type Err = String;

    fn from_str(s: &str) -> Result<AllowTarget, String> {
        let (host, port) = match s.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(':') && (host.starts_with('[') || !host.contains(':')) => {
                (host, port)
            }
            _ => return Err(format!("`{s}`: write HOST:PORT, e.g. 127.0.0.1:9000 or localhost:*")),
        };
        let port = match port {
            "" | "*" => None,
            p => Some(p.parse::<u16>().map_err(|_| format!("`{s}`: `{p}` is not a port"))?),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("`{s}`: HOST is empty"));
        }
        let host = globset::Glob::new(&host.to_ascii_lowercase())
            .map_err(|e| format!("`{s}`: {e}"))?
            .compile_matcher();
        Ok(AllowTarget {
            written: s.to_owned(),
            host,
            port,
        })
    }
}

/// Why a target was refused: said to the client (403) and logged.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error(
        "s3chaos will not connect to {host}:{port}: {address} is {why}; name it with --allow-target {host}:{port} (or --connect-to) if that is meant"
    )]
    Private {
        host: String,
        port: u16,
        address: IpAddr,
        why: &'static str,
    },
    #[error("s3chaos will not connect to {host}:{port}: {address} is s3chaos's own listener or admin API")]
    Own {
        host: String,
        port: u16,
        address: SocketAddr,
    },
    #[error("s3chaos cannot resolve {host}:{port}: {reason}")]
    Unresolved { host: String, port: u16, reason: String },
}

/// The forward proxy's rule for where it may connect; shared by every worker.
#[derive(Debug, Default)]
pub struct TargetPolicy {
    allow: Vec<AllowTarget>,
    /// s3chaos's own sockets (listener, admin API), filled in as they are bound.
    own: RwLock<Vec<SocketAddr>>,
}

impl TargetPolicy {
    pub fn new(allow: Vec<AllowTarget>) -> TargetPolicy {
        TargetPolicy {
            allow,
            own: RwLock::default(),
        }
    }

    /// Records one of s3chaos's own sockets, never to be forwarded to.
    pub fn add_own(&self, addr: SocketAddr) {
        self.own.write().unwrap_or_else(|e| e.into_inner()).push(addr);
    }

    /// Whether `addr` is one of s3chaos's own sockets (an unspecified bind is every local
    /// address on that port).
    fn is_own(&self, addr: SocketAddr) -> bool {
        let own = self.own.read().unwrap_or_else(|e| e.into_inner());
        own.iter().any(|o| {
            o.port() == addr.port() && (o.ip() == addr.ip() || (o.ip().is_unspecified() && is_this_machine(addr.ip())))
        })
    }

    /// Checks addresses already resolved for `host:port`: all of them must be allowed.
    pub fn check(&self, host: &str, port: u16, addresses: &[SocketAddr]) -> Result<(), Refused> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let allowed = self.allow.iter().any(|a| a.matches(host, port));
        for &address in addresses {
            if self.is_own(address) {
                return Err(Refused::Own {
                    host: host.to_owned(),
                    port,
                    address,
                });
            }
            if allowed {
                continue;
            }
            if let Some(why) = private(address.ip()) {
                return Err(Refused::Private {
                    host: host.to_owned(),
                    port,
                    address: address.ip(),
                    why,
                });
            }
        }
        Ok(())
    }

    /// Resolves `host:port` and checks every address; the addresses to connect to.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, Refused> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let addresses: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((bare, port))
                .await
                .map_err(|e| Refused::Unresolved {
                    host: bare.to_owned(),
                    port,
                    reason: e.to_string(),
                })?
                .collect(),
        };
        if addresses.is_empty() {
            return Err(Refused::Unresolved {
                host: bare.to_owned(),
                port,
                reason: "no address".to_owned(),
            });
        }
        self.check(bare, port, &addresses)?;
        Ok(addresses)
    }
}

/// Why `ip` is not for a forward proxy's clients, if it is not.
fn private(ip: IpAddr) -> Option<&'static str> {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    match ip {
        _ if ip.is_loopback() => Some("a loopback address"),
        _ if ip.is_unspecified() => Some("the unspecified address (this machine)"),
        IpAddr::V4(v4) if v4.is_link_local() => Some("link-local (where cloud metadata services live)"),
        IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80 => Some("link-local"),
        _ if is_this_machine(ip) => Some("an address of this machine"),
        _ => None,
    }
}

/// Whether `ip` is one of this machine's own addresses: binding to it succeeds only then.
fn is_this_machine(ip: IpAddr) -> bool {
    std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn loopback_link_local_and_own_addresses_are_refused() {
        let policy = TargetPolicy::default();
        for (host, a) in [
            ("localhost", "127.0.0.1:9081"),
            ("x", "127.8.9.10:80"),
            ("x", "[::1]:80"),
            ("x", "[::ffff:127.0.0.1]:80"),
            ("x", "0.0.0.0:80"),
            ("metadata", "169.254.169.254:80"),
            ("x", "[fe80::1]:80"),
        ] {
            let err = policy.check(host, 80, &[addr(a)]).unwrap_err();
            assert!(matches!(err, Refused::Private { .. }), "{a}: {err}");
        }
        // One bad address among good ones is enough.
        assert!(
            policy
                .check("x", 80, &[addr("192.0.2.1:80"), addr("127.0.0.1:80")])
                .is_err()
        );
        policy.check("s3.example", 443, &[addr("192.0.2.1:443")]).unwrap();
    }

    #[test]
    fn an_allowed_target_passes_but_never_s3chaos_itself() {
        let policy = TargetPolicy::new(vec!["127.0.0.1:9000".parse().unwrap(), "localhost:*".parse().unwrap()]);
        policy.add_own(addr("127.0.0.1:9081"));
        policy.add_own(addr("0.0.0.0:9080"));
        policy.check("127.0.0.1", 9000, &[addr("127.0.0.1:9000")]).unwrap();
        policy.check("LOCALHOST", 1234, &[addr("127.0.0.1:1234")]).unwrap();
        assert!(policy.check("127.0.0.1", 9001, &[addr("127.0.0.1:9001")]).is_err());
        for own in ["127.0.0.1:9081", "127.0.0.1:9080"] {
            let err = policy.check("localhost", addr(own).port(), &[addr(own)]).unwrap_err();
            assert!(matches!(err, Refused::Own { .. }), "{own}: {err}");
        }
    }

    #[test]
    fn allow_targets_parse_and_say_what_is_wrong() {
        assert!("[::1]:9000".parse::<AllowTarget>().unwrap().matches("::1", 9000));
        assert!(
            "*.staging:*"
                .parse::<AllowTarget>()
                .unwrap()
                .matches("minio.staging", 1)
        );
        for (bad, says) in [
            ("nohost", "HOST:PORT"),
            ("h:x", "`x` is not a port"),
            (":80", "HOST is empty"),
        ] {
            let err = bad.parse::<AllowTarget>().unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
