//! The faults s3chaos injects: one small file per kind, one row per kind in the table below.
//!
//! # The contract (what a fault may and may not do)
//! - **A fault never decides whether its rule fires.** The engine matched the rule, rolled
//!   its probability and counted skip, every and limit before any fault runs. A fault whose
//!   firing depends on the request and on what it has seen (`rate_limit`'s token bucket,
//!   `stale_reads`' memory of recent writes) says so once, at decision time, through
//!   [`Fault::applies`]: the engine asks it before counting an injection, so nothing is
//!   counted and then taken back.
//! - **State is the engine's.** A fault's spec is plain data, parsed from the scenario. A
//!   fault that keeps state across requests creates it in [`Fault::new_state`]; the engine
//!   calls that when the scenario compiles and carries the state over, by rule name, to every
//!   new version of the running drill (a file reload, `PUT /scenario`, a rule added or expired
//!   through the admin API).
//! - **Randomness comes from the request's [`Draw`]**, so a seeded scenario replays exactly.
//! - **A fault acts in named phases** and implements only the ones it needs:
//!   [`Fault::on_request`] before the upstream is contacted, [`Fault::on_request_body`] on the
//!   upload's way upstream, [`Fault::on_response`] / [`Fault::on_response_body`] while the
//!   upstream's answer streams back.
//! - **A body fault never buffers a body and never blocks.** It works chunk by chunk, as a
//!   [`filter::ChunkFilter`] (the generic adapter owns pinning, timers, trailers and
//!   `size_hint`), never holds more than the chunk in front of it, never swallows the end of
//!   the stream or the trailers, and waits only through [`crate::timer`], whose waits end when
//!   the body is dropped (the client left): every wait is interruptible.
//! - **A fault that needs something from the connection** (a TCP RST, a held socket) asks
//!   the connection for it through [`fate::ConnControl`]; no other layer special-cases a kind.
//!
//! # Adding a fault
//! One new file that defines the fault's spec type and implements [`Fault`] for it (with its
//! unit tests beside it), and one row in the `faults!` table below. The table generates the
//! module list, the [`FaultSpec`] enum, the dispatch, the list of kind names and the
//! scenario parser's entry. See `CONTRIBUTING.md`, "Adding a fault".

mod cut;
pub mod departure;
pub mod fate;
pub mod filter;

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::Response;
use serde::Deserialize;
use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, Visitor};

use crate::body::ProxyBody;
use crate::draw::Draw;
use crate::s3::RequestInfo;
use fate::ConnControl;

/// What a fault does to a request before the upstream sees it.
pub enum RequestAction {
    /// Nothing in this phase.
    Continue,
    /// Wait this long first (delays add up across faults and rules).
    Delay(Duration),
    /// End the request this way (the first fault that ends it wins; later ones do not run).
    End(Ending),
}

/// How a fault ends a request: the one type the proxy acts on, whatever the fault.
pub enum Ending {
    /// Answer the client with this response; the upstream is never contacted.
    Respond(Response<ProxyBody>),
    /// Read the client's whole upload (discarding it), then answer with this response; the
    /// upstream is never contacted.
    ReadBodyThenRespond(Response<ProxyBody>),
    /// Never answer; hold the connection (on HTTP/2 the stream, unless `connection`) until
    /// the client gives up.
    Blackhole { connection: bool },
    /// Abort the connection with a TCP RST before any response byte (on HTTP/2 reset the
    /// stream, unless `connection`).
    Reset { connection: bool },
    /// Read the client's whole upload, then close the connection with a FIN and no answer
    /// (on HTTP/2 reset the stream): a kept-alive connection closed under the request.
    Close,
    /// Forward the request and let the upstream do it (store the object, delete the key),
    /// then answer the client with `answer` instead, or with none reset its connection (on
    /// HTTP/2 the stream, unless `connection`): the ambiguous outcome.
    AfterUpstream {
        answer: Option<Response<ProxyBody>>,
        connection: bool,
    },
}

impl Ending {
    /// The response a fault answers with, if it answers.
    pub fn response(&self) -> Option<&Response<ProxyBody>> {
        match self {
            Ending::Respond(r) | Ending::ReadBodyThenRespond(r) | Ending::AfterUpstream { answer: Some(r), .. } => {
                Some(r)
            }
            _ => None,
        }
    }
}

/// Whether a fault applies to one request, decided by the engine when the rule matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applies {
    /// Inject: the rule fires (the usual answer, and the default).
    Fire,
    /// Do not inject, but see this request and its response (`stale_reads` remembers a write
    /// or a read). Not counted or logged as an injection.
    Watch,
    /// Not this request: the rule does not fire (a rate limit under its rate).
    Skip,
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

/// The state a stateful fault keeps across requests, created by [`Fault::new_state`] and
/// owned by the engine. Each fault downcasts it to its own type ([`state_of`]).
pub type FaultState = Arc<dyn Any + Send + Sync>;

/// The fault's own state, as the type it created.
pub fn state_of<T: Any>(state: Option<&FaultState>) -> Option<&T> {
    state.and_then(|s| s.downcast_ref::<T>())
}

/// The request a fault acts on before the upstream, its share of randomness and its state.
pub struct FaultCtx<'a> {
    pub request: &'a RequestInfo<'a>,
    pub draw: Draw,
    pub state: Option<&'a FaultState>,
}

/// What a body or response fault gets: the request's target, its draw, the fault's state and
/// the connection (for faults that end it).
pub struct BodyCtx<'a> {
    pub target: &'a Target,
    pub draw: Draw,
    pub state: Option<&'a FaultState>,
    pub conn: &'a Arc<ConnControl>,
}

/// One kind of fault. See the module docs for the contract.
pub trait Fault: fmt::Debug + Clone + Send + Sync + DeserializeOwned + 'static {
    /// The kind as written in a scenario (`latency`, `error`, ...).
    const KIND: &'static str;

    /// Whether this fault ends the request when it fires: error, blackhole and reset do (the
    /// request is answered or cut, and rule evaluation stops), latency does not.
    const TERMINAL: bool;

    /// The fault written as a bare name (`fault: blackhole`) or with no value
    /// (`{blackhole: ~}`), for kinds that need no settings. `None`: a value is required.
    fn bare() -> Option<Self> {
        None
    }

    /// Whether a value of this fault ramps (`{from, to}`) across the rule's time span.
    fn ramps(&self) -> bool {
        false
    }

    /// The state this fault keeps across requests, if any; called once per compile, and
    /// carried over by the engine to later versions of the same rule.
    fn new_state(&self) -> Option<FaultState> {
        None
    }

    /// Asked by the engine, at decision time, for faults whose firing depends on the request
    /// and their state. The default: always [`Applies::Fire`].
    fn applies(&self, _request: &RequestInfo<'_>, _state: Option<&FaultState>) -> Applies {
        Applies::Fire
    }

    /// The request phase, before the upstream is contacted. The default does nothing.
    fn on_request(&self, _ctx: &FaultCtx<'_>) -> RequestAction {
        RequestAction::Continue
    }

    /// The request body phase: wrap the client's upload on its way upstream. The default
    /// passes it on.
    fn on_request_body(&self, body: ProxyBody, _ctx: &BodyCtx<'_>) -> ProxyBody {
        body
    }

    /// The response phase with the whole picture, for faults that need the upstream's status
    /// and headers (which they may change). The default hands the body to
    /// [`Fault::on_response_body`].
    fn on_response(&self, _parts: &mut http::response::Parts, body: ProxyBody, ctx: &BodyCtx<'_>) -> ProxyBody {
        self.on_response_body(body, ctx)
    }

    /// The response body phase: wrap the upstream's body stream. The default passes it on.
    fn on_response_body(&self, body: ProxyBody, _ctx: &BodyCtx<'_>) -> ProxyBody {
        body
    }

    /// A one-line description for logs, e.g. `latency 250ms` or `error SlowDown (503)`.
    fn describe(&self) -> String;
}

/// The fault table: one row per kind, `module::Type`. Generates the `mod` and `pub use`
/// lines, [`FaultSpec`] (one variant per row), its dispatch to the [`Fault`] methods,
/// [`FAULT_KINDS`] and the scenario parser's entry for the kind.
macro_rules! faults {
    ($($module:ident :: $ty:ident),* $(,)?) => {
        $(
            pub mod $module;
            pub use $module::$ty;
        )*

        /// Every fault kind a scenario can name, as plain data.
        #[derive(Debug, Clone)]
        pub enum FaultSpec {
            $($ty($ty),)*
        }

        /// Every kind, as written in a scenario, in table order.
        pub const FAULT_KINDS: &[&str] = &[$(<$ty as Fault>::KIND,)*];

        impl FaultSpec {
            pub fn kind(&self) -> &'static str {
                match self { $(FaultSpec::$ty(_) => <$ty as Fault>::KIND,)* }
            }

            pub fn is_terminal(&self) -> bool {
                match self { $(FaultSpec::$ty(_) => <$ty as Fault>::TERMINAL,)* }
            }

            pub fn ramps(&self) -> bool {
                match self { $(FaultSpec::$ty(f) => f.ramps(),)* }
            }

            pub fn new_state(&self) -> Option<FaultState> {
                match self { $(FaultSpec::$ty(f) => f.new_state(),)* }
            }

            pub fn applies(&self, request: &RequestInfo<'_>, state: Option<&FaultState>) -> Applies {
                match self { $(FaultSpec::$ty(f) => f.applies(request, state),)* }
            }

            pub fn on_request(&self, ctx: &FaultCtx<'_>) -> RequestAction {
                match self { $(FaultSpec::$ty(f) => f.on_request(ctx),)* }
            }

            pub fn on_request_body(&self, body: ProxyBody, ctx: &BodyCtx<'_>) -> ProxyBody {
                match self { $(FaultSpec::$ty(f) => f.on_request_body(body, ctx),)* }
            }

            pub fn on_response(&self, parts: &mut http::response::Parts, body: ProxyBody, ctx: &BodyCtx<'_>) -> ProxyBody {
                match self { $(FaultSpec::$ty(f) => f.on_response(parts, body, ctx),)* }
            }

            pub fn describe(&self) -> String {
                match self { $(FaultSpec::$ty(f) => f.describe(),)* }
            }

            /// The fault named `kind` written bare (`fault: blackhole`).
            fn bare(kind: &str) -> Option<Result<FaultSpec, String>> {
                match kind {
                    $(<$ty as Fault>::KIND => Some(
                        <$ty as Fault>::bare()
                            .map(FaultSpec::$ty)
                            .ok_or_else(|| needs_value(kind)),
                    ),)*
                    _ => None,
                }
            }

            /// The value of `kind` in a `fault:` map, read from `map`.
            fn value<'de, A: MapAccess<'de>>(kind: &str, map: &mut A) -> Option<Result<FaultSpec, A::Error>> {
                match kind {
                    $(<$ty as Fault>::KIND => Some(
                        map.next_value::<Value<$ty>>().map(|v| FaultSpec::$ty(v.0)),
                    ),)*
                    _ => None,
                }
            }
        }
    };
}

faults! {
    latency::Latency,
    first_byte_latency::FirstByteLatency,
    error::ErrorFault,
    error_in_body::ErrorInBody,
    clock_skew::ClockSkew,
    blackhole::Blackhole,
    reset::Reset,
    close::Close,
    truncate::Truncate,
    corrupt::Corrupt,
    bandwidth::Bandwidth,
    slicer::Slicer,
    stall::Stall,
    request_bandwidth::RequestBandwidth,
    request_timeout::RequestTimeout,
    rate_limit::RateLimit,
    stale_reads::StaleReads,
}

fn needs_value(kind: &str) -> String {
    format!("`{kind}` needs a value, e.g. `fault: {{{kind}: ...}}`")
}

/// A fault's value in a `fault:` map; an empty one (`{blackhole: ~}`) is the bare fault.
struct Value<T>(T);

impl<'de, T: Fault> Deserialize<'de> for Value<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Option::<T>::deserialize(d)? {
            Some(fault) => Ok(Value(fault)),
            None => T::bare()
                .map(Value)
                .ok_or_else(|| de::Error::custom(needs_value(T::KIND))),
        }
    }
}

/// The `fault:` value of a rule: one or more faults, non-terminal ones first, at most one
/// terminal fault. Written as a bare name (`fault: blackhole`, `fault: reset`) or a map
/// (`fault: {latency: 250ms, error: SlowDown}`).
#[derive(Debug, Clone)]
pub struct FaultList(Vec<FaultSpec>);

impl FaultList {
    pub fn iter(&self) -> std::slice::Iter<'_, FaultSpec> {
        self.0.iter()
    }

    pub fn is_terminal(&self) -> bool {
        self.iter().any(FaultSpec::is_terminal)
    }

    pub fn ramps(&self) -> bool {
        self.iter().any(FaultSpec::ramps)
    }

    fn from_specs(mut specs: Vec<FaultSpec>) -> Result<FaultList, String> {
        if specs.is_empty() {
            return Err(format!("a rule needs at least one fault ({})", FAULT_KINDS.join(", ")));
        }
        let terminal: Vec<&str> = specs.iter().filter(|f| f.is_terminal()).map(FaultSpec::kind).collect();
        if terminal.len() > 1 {
            return Err(format!(
                "a rule can end a request only one way, but this one has {}; split it into rules",
                terminal.join(" and ")
            ));
        }
        // Apply order: delays first, then the fault that ends the request.
        specs.sort_by_key(FaultSpec::is_terminal);
        Ok(FaultList(specs))
    }
}

impl<'de> Deserialize<'de> for FaultList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FaultList;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a fault: `blackhole`, `reset`, or a map such as {latency: 250ms} or {error: SlowDown}")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<FaultList, E> {
                let spec = match FaultSpec::bare(v) {
                    Some(spec) => spec.map_err(E::custom)?,
                    None => return Err(E::unknown_variant(v, FAULT_KINDS)),
                };
                FaultList::from_specs(vec![spec]).map_err(E::custom)
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FaultList, A::Error> {
                let mut specs: Vec<FaultSpec> = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    let spec = match FaultSpec::value(&key, &mut map) {
                        Some(spec) => spec?,
                        None => return Err(de::Error::unknown_field(&key, FAULT_KINDS)),
                    };
                    if specs.iter().any(|s| s.kind() == spec.kind()) {
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

/// Test support for the fault files: runs `f` with a classified request.
#[cfg(test)]
pub(crate) fn with_request<R>(method: &str, target: &str, f: impl FnOnce(&RequestInfo<'_>) -> R) -> R {
    let method: http::Method = method.parse().unwrap();
    let uri: http::Uri = target.parse().unwrap();
    let mut headers = http::HeaderMap::new();
    headers.insert("host", "127.0.0.1:9080".parse().unwrap());
    f(&crate::s3::Classifier::default().classify(&method, &uri, &headers))
}

/// Test support: the fault's request phase for a request, with its own state.
#[cfg(test)]
pub(crate) fn request_phase<F: Fault>(fault: &F, method: &str, target: &str) -> RequestAction {
    let state = fault.new_state();
    with_request(method, target, |request| {
        fault.on_request(&FaultCtx {
            request,
            draw: Draw::new(1, 0, 0),
            state: state.as_ref(),
        })
    })
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
