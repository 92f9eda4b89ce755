//! Which rules a request can possibly meet, found without looking at most of them.
//!
//! A rule that names one bucket exactly is filed under that bucket; otherwise a rule that
//! requires a header to have an exact value is filed under that header value; every other
//! rule is filed under each operation it can match. A request then looks at three kinds of
//! short lists (its operation's, its bucket's, its header values'), merged back into file
//! order. With 1,000 per-bucket or per-tenant rules, a request meets only its own.

use std::collections::HashMap;
use std::sync::Arc;

use foldhash::fast::RandomState;

use http::HeaderValue;
use smallvec::SmallVec;

use super::matcher::Matcher;
use crate::s3::{Operation, RequestInfo};

/// foldhash, not SipHash: the index is rebuilt whenever a rule is added at run time, and
/// looked up by every request; its keys come from the scenario, never from a request. Keys
/// are shared with the rules and short lists inline, so building one allocates almost
/// nothing but the table.
type Map<K> = HashMap<K, SmallVec<[u32; 2]>, RandomState>;

/// Rule indices, ascending, by the exact header value they require.
type ByValue = Map<Box<[u8]>>;

#[derive(Debug, Default)]
pub struct RuleIndex {
    /// By operation discriminant.
    by_operation: Vec<Box<[u32]>>,
    by_bucket: Map<Arc<str>>,
    /// By header slot, then by the exact value required.
    by_header: Vec<ByValue>,
}

impl RuleIndex {
    pub fn build<'a>(matchers: impl Iterator<Item = &'a Matcher>) -> RuleIndex {
        let mut by_operation: Vec<Vec<u32>> = vec![Vec::new(); Operation::ALL.len()];
        let mut by_bucket: Map<Arc<str>> = Map::default();
        let mut by_header: Vec<ByValue> = Vec::new();
        for (i, m) in matchers.enumerate() {
            let i = i as u32;
            if let Some(bucket) = m.literal_bucket() {
                by_bucket.entry(bucket.clone()).or_default().push(i);
            } else if let Some((slot, value)) = m.exact_header() {
                if by_header.len() <= slot {
                    by_header.resize_with(slot + 1, ByValue::default);
                }
                by_header[slot].entry(value.into()).or_default().push(i);
            } else {
                for op in Operation::ALL {
                    if m.may_match_operation(*op) {
                        by_operation[*op as usize].push(i);
                    }
                }
            }
        }
        RuleIndex {
            by_operation: by_operation.into_iter().map(Vec::into_boxed_slice).collect(),
            by_bucket,
            by_header,
        }
    }

    /// The ascending lists of rule indices `req` may match; each rule is in at most one.
    pub fn candidates<'s>(
        &'s self,
        req: &RequestInfo<'_>,
        header_values: &[Option<&HeaderValue>],
    ) -> SmallVec<[&'s [u32]; 4]> {
        let mut lists: SmallVec<[&[u32]; 4]> = SmallVec::new();
        let for_op = &self.by_operation[req.operation as usize];
        if !for_op.is_empty() {
            lists.push(for_op);
        }
        if !self.by_bucket.is_empty()
            && let Some(list) = req.bucket.as_deref().and_then(|b| self.by_bucket.get(b))
        {
            lists.push(list);
        }
        for (slot, values) in self.by_header.iter().enumerate() {
            if let Some(list) = header_values
                .get(slot)
                .copied()
                .flatten()
                .and_then(|v| values.get(v.as_bytes()))
            {
                lists.push(list);
            }
        }
        lists
    }
}

/// Walks ascending index lists as one ascending list (file order). With a single list, the
/// common case, it is a plain slice walk.
pub fn merge_sorted<'a>(lists: &[&'a [u32]]) -> MergeSorted<'a> {
    MergeSorted {
        lists: lists.iter().copied().filter(|l| !l.is_empty()).collect(),
    }
}

pub struct MergeSorted<'a> {
    /// The lists not yet exhausted.
    lists: SmallVec<[&'a [u32]; 4]>,
}

impl Iterator for MergeSorted<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        let pick = match self.lists.len() {
            0 => return None,
            1 => 0,
            _ => (0..self.lists.len()).min_by_key(|&l| self.lists[l][0]).unwrap_or(0),
        };
        let (&value, rest) = self.lists[pick].split_first()?;
        if rest.is_empty() {
            self.lists.remove(pick);
        } else {
            self.lists[pick] = rest;
        }
        Some(value as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_keeps_file_order() {
        let lists: [&[u32]; 3] = [&[0, 3, 4, 9], &[1, 2, 5], &[6]];
        assert_eq!(merge_sorted(&lists).collect::<Vec<_>>(), [0, 1, 2, 3, 4, 5, 6, 9]);
        let one: [&[u32]; 1] = [&[7]];
        assert_eq!(merge_sorted(&one).collect::<Vec<_>>(), [7]);
        assert_eq!(merge_sorted(&[]).count(), 0);
    }
}
