//! The compiled `match:` of a rule. Every check is a bitmask test, a string comparison or a
//! precompiled glob; nothing allocates. Header values are looked up once per request for the
//! whole scenario ([`HeaderSlots`]), not once per rule.

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use smallvec::SmallVec;

use crate::s3::operation::OperationSet;
use crate::s3::{Operation, RequestInfo, auth};
use crate::scenario::{HeaderMatch, MatchSpec};
use crate::values::Glob;

#[derive(Debug, Clone, Default)]
pub struct Matcher {
    operations: Option<OperationSet>,
    methods: Option<Vec<Method>>,
    bucket: Option<Glob>,
    key: Option<Glob>,
    /// Header name, its slot in the scenario's [`HeaderSlots`], and what to expect.
    headers: Vec<(HeaderName, usize, HeaderMatch)>,
    /// The access key ids the request must be signed with (never verified).
    access_keys: Option<Vec<String>>,
    /// The SDK attempt numbers (`amz-sdk-request: attempt=N`) to match.
    attempts: Option<SmallVec<[u32; 4]>>,
    /// The isolation scope this rule belongs to; `None`: requests without a scope.
    scope: Option<Box<str>>,
    /// Only requests on a connection idle at least this long.
    idle_for: Option<std::time::Duration>,
}

/// The distinct header names a scenario's rules look at; each gets a slot.
#[derive(Debug, Clone, Default)]
pub struct HeaderSlots(Vec<HeaderName>);

impl HeaderSlots {
    fn slot(&mut self, name: &HeaderName) -> usize {
        match self.0.iter().position(|n| n == name) {
            Some(i) => i,
            None => {
                self.0.push(name.clone());
                self.0.len() - 1
            }
        }
    }

    /// This request's value for every slot, looked up once.
    pub fn values<'a>(&self, headers: &'a HeaderMap) -> SmallVec<[Option<&'a HeaderValue>; 4]> {
        self.0.iter().map(|name| headers.get(name)).collect()
    }
}

impl Matcher {
    /// The matcher for a rule's `match:`; header slots are assigned when the whole
    /// scenario compiles ([`Matcher::assign_header_slots`]).
    pub fn compile(spec: MatchSpec) -> Matcher {
        Matcher::new(
            spec.operations.map(|o| o.into_iter().collect()),
            spec.methods,
            spec.bucket,
            spec.key,
            spec.headers,
        )
        .with_access_keys(spec.access_keys)
        .with_scope(spec.scope)
        .with_attempts(spec.attempts)
        .with_idle_for(spec.idle_for)
    }

    pub fn new(
        operations: Option<OperationSet>,
        methods: Option<Vec<Method>>,
        bucket: Option<Glob>,
        key: Option<Glob>,
        headers: Vec<(HeaderName, HeaderMatch)>,
    ) -> Matcher {
        let headers = headers
            .into_iter()
            .map(|(name, want)| (name, usize::MAX, want))
            .collect();
        Matcher {
            operations,
            methods,
            bucket,
            key,
            headers,
            access_keys: None,
            attempts: None,
            scope: None,
            idle_for: None,
        }
    }

    /// Only requests arriving on a connection idle at least `idle` (never a connection's
    /// first request).
    pub fn with_idle_for(mut self, idle: Option<std::time::Duration>) -> Matcher {
        self.idle_for = idle;
        self
    }

    /// Only requests of this isolation scope (and requests with a scope meet only rules of
    /// their own scope).
    pub fn with_scope(mut self, scope: Option<String>) -> Matcher {
        self.scope = scope.map(String::into_boxed_str);
        self
    }

    /// Only requests signed with one of these access key ids.
    pub fn with_access_keys(mut self, keys: Option<Vec<String>>) -> Matcher {
        self.access_keys = keys;
        self
    }

    /// Only these SDK attempts (1 = the first try); requests that do not say never match.
    pub fn with_attempts(mut self, attempts: Option<Vec<u32>>) -> Matcher {
        self.attempts = attempts.map(SmallVec::from_vec);
        self
    }

    /// Gives each header this rule looks at its slot; done once when the scenario compiles.
    pub fn assign_header_slots(&mut self, slots: &mut HeaderSlots) {
        for (name, slot, _) in &mut self.headers {
            *slot = slots.slot(name);
        }
    }

    /// The bucket name this rule requires, when it names one exactly (used to index rules).
    pub fn literal_bucket(&self) -> Option<&std::sync::Arc<str>> {
        self.bucket.as_ref().and_then(Glob::literal)
    }

    /// The first header this rule requires an exact value of: its slot and the value.
    pub fn exact_header(&self) -> Option<(usize, &[u8])> {
        self.headers.iter().find_map(|(_, slot, want)| match want {
            HeaderMatch::Exact(v) => Some((*slot, v.as_bytes())),
            HeaderMatch::Present => None,
        })
    }

    /// Used to index rules by operation when the scenario is compiled.
    pub fn may_match_operation(&self, op: Operation) -> bool {
        self.operations.is_none_or(|set| set.contains(op))
    }

    /// Whether every field given in the rule's `match` holds for `req`, of isolation `scope`. A `bucket` or `key`
    /// pattern never matches a request that has no bucket or key.
    /// `header_values` are the request's values for the scenario's [`HeaderSlots`].
    pub fn matches(&self, req: &RequestInfo<'_>, header_values: &[Option<&HeaderValue>], scope: Option<&str>) -> bool {
        if self.scope.as_deref() != scope || !self.may_match_operation(req.operation) {
            return false;
        }
        if let Some(methods) = &self.methods
            && !methods.contains(req.method)
        {
            return false;
        }
        if let Some(glob) = &self.bucket
            && !req.bucket.as_deref().is_some_and(|b| glob.is_match(b))
        {
            return false;
        }
        if let Some(glob) = &self.key
            && !req.key.as_deref().is_some_and(|k| glob.is_match(k))
        {
            return false;
        }
        if let Some(least) = self.idle_for
            && req.idle.is_none_or(|idle| idle < least)
        {
            return false;
        }
        if let Some(attempts) = &self.attempts
            && !auth::attempt(req.headers).is_some_and(|n| attempts.contains(&n))
        {
            return false;
        }
        if let Some(keys) = &self.access_keys
            && !auth::access_key(req.headers, req.query).is_some_and(|k| keys.iter().any(|want| *want == k))
        {
            return false;
        }
        self.headers.iter().all(
            |(_, slot, want)| match (want, header_values.get(*slot).copied().flatten()) {
                (_, None) => false,
                (HeaderMatch::Present, Some(_)) => true,
                (HeaderMatch::Exact(v), Some(got)) => got.as_bytes() == v.as_bytes(),
            },
        )
    }
}
