//! The compiled `match:` of a rule. Every check is a bitmask test, a string comparison or a
//! precompiled glob; nothing allocates.

use http::{HeaderName, Method};

use crate::s3::operation::OperationSet;
use crate::s3::{Operation, RequestInfo};
use crate::scenario::values::Glob;

#[derive(Debug, Clone)]
pub enum HeaderMatch {
    /// `"*"` in the file: the header is present, with any value.
    Present,
    Exact(String),
}

#[derive(Debug, Clone, Default)]
pub struct Matcher {
    operations: Option<OperationSet>,
    methods: Option<Vec<Method>>,
    bucket: Option<Glob>,
    key: Option<Glob>,
    headers: Vec<(HeaderName, HeaderMatch)>,
}

impl Matcher {
    pub fn new(
        operations: Option<OperationSet>,
        methods: Option<Vec<Method>>,
        bucket: Option<Glob>,
        key: Option<Glob>,
        headers: Vec<(HeaderName, HeaderMatch)>,
    ) -> Matcher {
        Matcher {
            operations,
            methods,
            bucket,
            key,
            headers,
        }
    }

    /// Used to index rules by operation when the scenario is compiled.
    pub fn may_match_operation(&self, op: Operation) -> bool {
        self.operations.is_none_or(|set| set.contains(op))
    }

    /// Whether every field given in the rule's `match` holds for `req`. A `bucket` or `key`
    /// pattern never matches a request that has no bucket or key.
    pub fn matches(&self, req: &RequestInfo<'_>) -> bool {
        if !self.may_match_operation(req.operation) {
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
        self.headers
            .iter()
            .all(|(name, want)| match (want, req.headers.get(name)) {
                (_, None) => false,
                (HeaderMatch::Present, Some(_)) => true,
                (HeaderMatch::Exact(v), Some(got)) => got.as_bytes() == v.as_bytes(),
            })
    }
}
