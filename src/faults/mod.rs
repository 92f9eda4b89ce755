//! The faults s3chaos injects, one small file per kind, all behind one trait.
//!
//! # The contract (what a fault may and may not do)
//! - A fault never decides *whether* it fires: the engine matched the rule, rolled the
//!   probability and counted skip/limit before any fault runs. A fault gets a [`Draw`]
//!   (deterministic randomness for this request) when it needs to pick a value, such as a
//!   latency within a range, so a seeded scenario replays exactly.
//! - A fault acts in named phases of a request, and implements only the phases it needs:
//!   [`Fault::on_request`] before the upstream is contacted, [`Fault::on_response_body`]
//!   while the upstream's answer streams back.
//! - A fault never buffers a body: body faults wrap the stream and work chunk by chunk.
//! - A fault that needs something from the connection (a TCP RST, a held socket) asks the
//!   connection for it through [`ConnControl`]; no other layer special-cases a fault kind.
//!
//! Adding a fault kind is one file here, one variant in [`FaultSpec`], and one key in
//! [`FaultList`]'s parser; the compiler finds every `match` that misses it.

pub mod bandwidth;
pub mod blackhole;
pub mod clock_skew;
pub mod corrupt;
mod cut;
pub mod error;
pub mod error_in_body;
pub mod fate;
pub mod first_byte_latency;
pub mod latency;
pub mod rate_limit;
pub mod request_bandwidth;
pub mod request_timeout;
pub mod reset;
pub mod stale_reads;
pub mod stall;
pub mod truncate;

use std::fmt;
use std::time::Duration;

use http::Response;
use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};

use crate::body::ProxyBody;
use crate::draw::Draw;
use crate::faults::fate::ConnControl;
use crate::s3::RequestInfo;

pub use bandwidth::Bandwidth;
pub use blackhole::Blackhole;
pub use clock_skew::ClockSkew;
pub use corrupt::Corrupt;
pub use error::ErrorFault;
pub use error_in_body::ErrorInBody;
pub use first_byte_latency::FirstByteLatency;
pub use latency::Latency;
pub use rate_limit::RateLimit;
pub use request_bandwidth::RequestBandwidth;
pub use request_timeout::RequestTimeout;
pub use reset::Reset;
pub use stale_reads::StaleReads;
pub use stall::Stall;
pub use truncate::Truncate;

/// What a fault does to a request before the upstream sees it.
pub enum RequestAction {
    /// Nothing in this phase.
    Continue,
    /// The fault looked at this request and let it be (a rate limit under its rate): nothing
    /// happens and nothing is logged as injected.
    Pass,
    /// Nothing happens before the upstream, but the fault needs to see the response (it
    /// watches what passes, as `stale_reads` does). Not logged or counted as an injection.
    Observe,
    /// Wait this long first (delays add up across faults and rules).
    Delay(Duration),
    /// Answer the client with this response; the upstream is never contacted.
    Respond(Response<ProxyBody>),
    /// Never answer; hold the connection (on HTTP/2 the stream, unless `connection`) until
    /// the client gives up.
    Blackhole { connection: bool },
    /// Abort the connection with a TCP RST before any response byte (on HTTP/2 reset the
    /// stream, unless `connection`).
    Reset { connection: bool },
    /// Read the client's whole upload (discarding it), then answer with this response; the
    /// upstream is never contacted.
    ReadBodyThenRespond(Response<ProxyBody>),
    /// Forward the request and let the upstream do it (store the object, delete the key),
    /// then answer the client with this response instead: the ambiguous outcome.
    RespondAfterUpstream(Response<ProxyBody>),
    /// Forward the request and let the upstream do it, then reset the client's connection
    /// (on HTTP/2 the stream, unless `connection`).
    ResetAfterUpstream { connection: bool },
}

/// When a fault that ends a request acts: before the upstream sees the request (nothing
/// happened), or after the upstream has done it (something happened, the client is told
/// otherwise: the failure that loses or duplicates data in apps that assume "error means
/// nothing happened").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum When {
    #[default]
    BeforeUpstream,
    AfterUpstream,
}

/// What a faulted request was about, kept past the request phase for the response phase.
#[derive(Debug, Clone)]
pub struct Target {
    pub operation: crate::s3::Operation,
    pub bucket: Option<String>,
    pub key: Option<String>,
}

impl Target {
    pub fn of(info: &RequestInfo<'_>) -> Target {
        Target {
            operation: info.operation,
            bucket: info.bucket.as_deref().map(str::to_owned),
            key: info.key.as_deref().map(str::to_owned),
        }
    }
}

/// The request a fault acts on, and its share of randomness.
pub struct FaultCtx<'a> {
    pub request: &'a RequestInfo<'a>,
    pub draw: Draw,
}

/// One kind of fault. See the module docs for the contract.
pub trait Fault: Send + Sync + fmt::Debug {
    /// The kind as written in a scenario (`latency`, `error`, ...), for logs.
    fn kind(&self) -> &'static str;

    /// Whether this fault ends rule evaluation when it fires: error, blackhole and reset do
    /// (the request is answered or cut), latency does not (later rules may still apply).
    fn is_terminal(&self) -> bool;

    /// Whether a value of this fault ramps (`{from, to}`) across the rule's time span.
    fn ramps(&self) -> bool {
        false
    }

    /// The request phase, before the upstream is contacted. The default does nothing.
    fn on_request(&self, _ctx: &FaultCtx<'_>) -> RequestAction {
        RequestAction::Continue
    }

    /// The request body phase: wrap the client's upload on its way upstream (with the
    /// request's draw). The default passes it on.
    fn on_request_body(&self, body: ProxyBody, _conn: &std::sync::Arc<ConnControl>, _draw: Draw) -> ProxyBody {
        body
    }

    /// The response body phase: wrap the upstream's body stream (with the request's draw,
    /// for faults that pick positions). The default passes it on.
    fn on_response_body(&self, body: ProxyBody, _conn: &std::sync::Arc<ConnControl>, _draw: Draw) -> ProxyBody {
        body
    }

    /// The response phase with the whole picture, for faults that need the request's target
    /// and the upstream's status and headers (which they may change). The default hands the
    /// body to [`Fault::on_response_body`].
    fn on_response(
        &self,
        _target: &Target,
        _parts: &mut http::response::Parts,
        body: ProxyBody,
        conn: &std::sync::Arc<ConnControl>,
        draw: Draw,
    ) -> ProxyBody {
        self.on_response_body(body, conn, draw)
    }

    /// A one-line description for logs, e.g. `latency 250ms` or `error SlowDown (503)`.
    fn describe(&self) -> String;
}

/// Every fault kind a scenario can name.
#[derive(Debug, Clone)]
pub enum FaultSpec {
    Latency(Latency),
    FirstByteLatency(FirstByteLatency),
    Error(ErrorFault),
    ErrorInBody(ErrorInBody),
    ClockSkew(ClockSkew),
    Blackhole(Blackhole),
    Reset(Reset),
    Truncate(Truncate),
    Corrupt(Corrupt),
    Bandwidth(Bandwidth),
    Stall(Stall),
    RequestBandwidth(RequestBandwidth),
    RequestTimeout(RequestTimeout),
    RateLimit(std::sync::Arc<RateLimit>),
    StaleReads(std::sync::Arc<StaleReads>),
}

impl FaultSpec {
    pub fn as_fault(&self) -> &dyn Fault {
        match self {
            FaultSpec::Latency(f) => f,
            FaultSpec::Error(f) => f,
            FaultSpec::ErrorInBody(f) => f,
            FaultSpec::ClockSkew(f) => f,
            FaultSpec::Blackhole(f) => f,
            FaultSpec::Reset(f) => f,
            FaultSpec::FirstByteLatency(f) => f,
            FaultSpec::Truncate(f) => f,
            FaultSpec::Corrupt(f) => f,
            FaultSpec::Bandwidth(f) => f,
            FaultSpec::Stall(f) => f,
            FaultSpec::RequestBandwidth(f) => f,
            FaultSpec::RequestTimeout(f) => f,
            FaultSpec::RateLimit(f) => f.as_ref(),
            FaultSpec::StaleReads(f) => f.as_ref(),
        }
    }
}

/// The `fault:` value of a rule: one or more faults, non-terminal ones first, at most one
/// terminal fault. Written as a bare name (`fault: blackhole`, `fault: reset`) or a map
/// (`fault: {latency: 250ms, error: SlowDown}`).
#[derive(Debug, Clone)]
pub struct FaultList(Vec<FaultSpec>);

impl FaultList {
    pub fn iter(&self) -> impl Iterator<Item = &dyn Fault> {
        self.0.iter().map(FaultSpec::as_fault)
    }

    pub fn is_terminal(&self) -> bool {
        self.iter().any(|f| f.is_terminal())
    }

    pub fn ramps(&self) -> bool {
        self.iter().any(|f| f.ramps())
    }

    fn from_specs(mut specs: Vec<FaultSpec>) -> Result<FaultList, String> {
        if specs.is_empty() {
            return Err(format!("a rule needs at least one fault ({})", FAULT_KINDS.join(", ")));
        }
        let terminal: Vec<&str> = specs
            .iter()
            .map(FaultSpec::as_fault)
            .filter(|f| f.is_terminal())
            .map(|f| f.kind())
            .collect();
        if terminal.len() > 1 {
            return Err(format!(
                "a rule can end a request only one way, but this one has {}; split it into rules",
                terminal.join(" and ")
            ));
        }
        // Apply order: delays first, then the fault that ends the request.
        specs.sort_by_key(|s| s.as_fault().is_terminal());
        Ok(FaultList(specs))
    }
}

const FAULT_KINDS: &[&str] = &[
    "latency",
    "first_byte_latency",
    "error",
    "error_in_body",
    "clock_skew",
    "blackhole",
    "reset",
    "truncate",
    "corrupt",
    "bandwidth",
    "stall",
    "request_bandwidth",
    "request_timeout",
    "rate_limit",
    "stale_reads",
];

impl<'de> Deserialize<'de> for FaultList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FaultList;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a fault: `blackhole`, `reset`, or a map such as {latency: 250ms} or {error: SlowDown}")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<FaultList, E> {
                let spec = match v {
                    "blackhole" => FaultSpec::Blackhole(Blackhole::default()),
                    "request_timeout" => FaultSpec::RequestTimeout(RequestTimeout),
                    "reset" => FaultSpec::Reset(Reset::default()),
                    "latency" | "error" | "error_in_body" | "clock_skew" | "first_byte_latency" | "truncate"
                    | "corrupt" | "bandwidth" | "stall" | "request_bandwidth" | "rate_limit" => {
                        return Err(E::custom(format!("`{v}` needs a value, e.g. `fault: {{{v}: ...}}`")));
                    }
                    other => return Err(E::unknown_variant(other, FAULT_KINDS)),
                };
                FaultList::from_specs(vec![spec]).map_err(E::custom)
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FaultList, A::Error> {
                let mut specs: Vec<FaultSpec> = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    let spec = match key.as_str() {
                        "latency" => FaultSpec::Latency(map.next_value()?),
                        "error" => FaultSpec::Error(map.next_value()?),
                        "clock_skew" => FaultSpec::ClockSkew(map.next_value()?),
                        "error_in_body" => FaultSpec::ErrorInBody(map.next_value()?),
                        "blackhole" => FaultSpec::Blackhole(map.next_value::<Option<Blackhole>>()?.unwrap_or_default()),
                        "reset" => FaultSpec::Reset(map.next_value::<Option<Reset>>()?.unwrap_or_default()),
                        "first_byte_latency" => FaultSpec::FirstByteLatency(map.next_value()?),
                        "truncate" => FaultSpec::Truncate(map.next_value()?),
                        "corrupt" => FaultSpec::Corrupt(map.next_value()?),
                        "bandwidth" => FaultSpec::Bandwidth(map.next_value()?),
                        "stall" => FaultSpec::Stall(map.next_value()?),
                        "request_bandwidth" => FaultSpec::RequestBandwidth(map.next_value()?),
                        "rate_limit" => FaultSpec::RateLimit(std::sync::Arc::new(map.next_value()?)),
                        "stale_reads" => FaultSpec::StaleReads(std::sync::Arc::new(map.next_value()?)),
                        "request_timeout" => {
                            map.next_value::<de::IgnoredAny>()?;
                            FaultSpec::RequestTimeout(RequestTimeout)
                        }
                        other => return Err(de::Error::unknown_field(other, FAULT_KINDS)),
                    };
                    if specs.iter().any(|s| s.as_fault().kind() == spec.as_fault().kind()) {
                        return Err(de::Error::custom(format!("fault `{key}` is given twice")));
                    }
                    specs.push(spec);
                }
                FaultList::from_specs(specs).map_err(de::Error::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<FaultList, String> {
        serde_yaml_ng::from_str::<FaultList>(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn bare_names_and_maps() {
        assert_eq!(parse("blackhole").unwrap().iter().next().unwrap().kind(), "blackhole");
        assert_eq!(parse("reset").unwrap().iter().next().unwrap().kind(), "reset");
        let list = parse("{error: SlowDown, latency: 250ms}").unwrap();
        let kinds: Vec<_> = list.iter().map(|f| f.kind()).collect();
        assert_eq!(kinds, ["latency", "error"], "delays apply before the terminal fault");
        assert!(list.is_terminal());
        assert!(!parse("{latency: 1s}").unwrap().is_terminal());
        assert_eq!(
            parse("{reset: {after_bytes: 1MiB}}")
                .unwrap()
                .iter()
                .next()
                .unwrap()
                .describe(),
            "reset after 1048576 response bytes"
        );
    }

    #[test]
    fn stream_faults_parse() {
        let d = |y: &str| parse(y).unwrap().iter().map(|f| f.describe()).collect::<Vec<_>>();
        assert_eq!(d("{first_byte_latency: 2s}"), ["first_byte_latency 2s"]);
        assert_eq!(
            d("{truncate: {after_bytes: 1MiB}}"),
            ["truncate after 1048576 response bytes"]
        );
        assert_eq!(d("{corrupt: {bytes: 2}}"), ["corrupt 2 random byte(s)"]);
        // Faults that do not end the request keep the file's order; the one that does goes last.
        assert_eq!(
            d("{corrupt: {at_byte: 4KiB}, latency: 5ms}"),
            ["corrupt byte 4096", "latency 5ms"]
        );
        assert!(parse("{corrupt: {}}").unwrap_err().contains("needs `bytes: N`"));
        assert!(parse("{corrupt: {bytes: 0}}").is_err());
        assert!(parse("{corrupt: {bytes: 1, at_byte: 2}}").is_err());
        assert!(parse("{truncate: {}}").is_err(), "truncate needs after_bytes");
        assert_eq!(d("{bandwidth: 512KiB/s}"), ["bandwidth 512.0 KiB/s"]);
        assert_eq!(
            d("{stall: {after_bytes: 1MiB, for: 30s}}"),
            ["stall after 1048576 bytes for 30s"]
        );
        assert_eq!(
            d("{stall: {after_bytes: 10, for: forever}}"),
            ["stall after 10 bytes forever"]
        );
        assert!(parse("{stall: {after_bytes: 10}}").is_err());
        assert!(parse("{bandwidth: fast}").is_err());
        assert_eq!(d("{request_bandwidth: 1MiB/s}"), ["request_bandwidth 1.0 MiB/s"]);
        assert_eq!(d("request_timeout"), ["request_timeout"]);
        assert_eq!(d("{reset: {after_request_bytes: 5}}"), ["reset after 5 request bytes"]);
        assert!(parse("{reset: {after_bytes: 1, after_request_bytes: 5}}").is_err());
        assert_eq!(
            d("{corrupt: {bytes: 1, side: request}}"),
            ["corrupt 1 random byte(s) of the upload"]
        );
        assert!(parse("{corrupt: {bytes: 1, side: sideways}}").is_err());
        assert!(
            parse("{reset: {}, truncate: {after_bytes: 1}}")
                .unwrap_err()
                .contains("only one way")
        );
    }

    #[test]
    fn refuses_nonsense() {
        assert!(parse("explode").unwrap_err().contains("unknown variant `explode`"));
        assert!(parse("latency").unwrap_err().contains("needs a value"));
        assert!(
            parse("{error: SlowDown, reset: {}}")
                .unwrap_err()
                .contains("only one way")
        );
        assert!(parse("{}").unwrap_err().contains("at least one fault"));
        assert!(parse("{latncy: 1s}").unwrap_err().contains("unknown field `latncy`"));
    }
}
