//! S3's listing rules, apart from any storage: what a ListObjects page holds given prefix,
//! delimiter, a start bound and max-keys. The store runs it over database scans; the tests
//! run it over a `BTreeMap` and compare with a plain model of the rules.
//!
//! The rules (ListObjectsV1/V2, ListObjectVersions' keys, ListMultipartUploads' keys):
//! - only keys starting with `prefix`;
//! - with a non-empty `delimiter`, a key whose rest (after the prefix) contains it rolls up into
//!   the common prefix `prefix + rest up to and including the first delimiter`, listed once;
//!   an empty delimiter is no delimiter;
//! - keys and common prefixes, merged in UTF-8 byte order, strictly after the start bound
//!   (marker, start-after or continuation token): a common prefix the bound lies inside is
//!   not listed again;
//! - at most `max` items; the page is truncated when more remain (never for `max` 0).

/// What a page holds: a key's entry, or a common prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item<E> {
    Entry(E),
    Prefix(String),
}

impl<E> Item<E> {
    pub fn name<'a>(&'a self, key: impl Fn(&'a E) -> &'a str) -> &'a str {
        match self {
            Item::Entry(e) => key(e),
            Item::Prefix(p) => p,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<E> {
    pub items: Vec<Item<E>>,
    pub truncated: bool,
}

#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    pub prefix: &'a str,
    /// `None` or empty: no roll-up.
    pub delimiter: Option<&'a str>,
    /// List strictly after this.
    pub after: Option<&'a str>,
    pub max: usize,
}

/// Ordered entries by key: the store's scans, or a map in tests.
pub trait Source {
    type Entry;
    type Error;
    fn key(entry: &Self::Entry) -> &str;
    /// Up to `limit` entries with keys `>= from` (`> from` unless `inclusive`), in key order.
    fn scan(&mut self, from: &[u8], inclusive: bool, limit: usize) -> Result<Vec<Self::Entry>, Self::Error>;
}

/// The smallest byte string greater than every string starting with `prefix`, if any.
/// (UTF-8 never contains 0xFF, so for keys the increment always succeeds.)
pub fn after_all_starting_with(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut bound = prefix.to_vec();
    while let Some(last) = bound.pop() {
        if last < 0xFF {
            bound.push(last + 1);
            return Some(bound);
        }
    }
    None
}

/// One page of a listing.
pub fn list<S: Source>(source: &mut S, q: Query<'_>) -> Result<Page<S::Entry>, S::Error> {
    let delimiter = q.delimiter.filter(|d| !d.is_empty());
    let mut items = Vec::new();
    if q.max == 0 {
        return Ok(Page {
            items,
            truncated: false,
        });
    }
    let (mut from, mut inclusive) = match q.after {
        Some(a) if a >= q.prefix => (a.as_bytes().to_vec(), false),
        _ => (q.prefix.as_bytes().to_vec(), true),
    };
    // Scans a little more than a page so that the "is there more" check costs no extra query
    // in the common case.
    let batch = (q.max + 1).clamp(2, 1001);
    loop {
        let entries = source.scan(&from, inclusive, batch)?;
        let exhausted = entries.len() < batch;
        let mut rescan = false;
        for entry in entries {
            let key = S::key(&entry);
            if !key.starts_with(q.prefix) {
                return Ok(Page {
                    items,
                    truncated: false,
                });
            }
            let rolled = delimiter.and_then(|d| {
                key[q.prefix.len()..]
                    .find(d)
                    .map(|i| key[..q.prefix.len() + i + d.len()].to_owned())
            });
            match rolled {
                Some(common) => {
                    if q.after.is_none_or(|a| common.as_str() > a) {
                        if items.len() == q.max {
                            return Ok(Page { items, truncated: true });
                        }
                        items.push(Item::Prefix(common.clone()));
                    }
                    match after_all_starting_with(common.as_bytes()) {
                        Some(next) => {
                            from = next;
                            inclusive = true;
                            rescan = true;
                            break;
                        }
                        None => {
                            return Ok(Page {
                                items,
                                truncated: false,
                            });
                        }
                    }
                }
                None => {
                    if items.len() == q.max {
                        return Ok(Page { items, truncated: true });
                    }
                    from = key.as_bytes().to_vec();
                    inclusive = false;
                    items.push(Item::Entry(entry));
                }
            }
        }
        if !rescan && exhausted {
            return Ok(Page {
                items,
                truncated: false,
            });
        }
    }
}

#[cfg(test)]
pub mod model {
    //! The rules stated plainly, and a map as a source, for tests.
    use super::*;
    use std::collections::BTreeMap;

    pub struct MapSource<'a>(pub &'a BTreeMap<String, u32>);

    impl Source for MapSource<'_> {
        type Entry = (String, u32);
        type Error = std::convert::Infallible;
        fn key(e: &Self::Entry) -> &str {
            &e.0
        }
        fn scan(&mut self, from: &[u8], inclusive: bool, limit: usize) -> Result<Vec<Self::Entry>, Self::Error> {
            Ok(self
                .0
                .iter()
                .filter(|(k, _)| {
                    if inclusive {
                        k.as_bytes() >= from
                    } else {
                        k.as_bytes() > from
                    }
                })
                .take(limit)
                .map(|(k, v)| (k.clone(), *v))
                .collect())
        }
    }

    /// The listing as the rules say it, computed the slow way: every key, rolled up, sorted.
    pub fn expected(keys: &BTreeMap<String, u32>, q: Query<'_>) -> (Vec<String>, bool) {
        let delimiter = q.delimiter.filter(|d| !d.is_empty());
        let mut names: Vec<String> = keys
            .keys()
            .filter(|k| k.starts_with(q.prefix))
            .map(
                |k| match delimiter.and_then(|d| k[q.prefix.len()..].find(d).map(|i| (i, d))) {
                    Some((i, d)) => k[..q.prefix.len() + i + d.len()].to_owned(),
                    None => k.clone(),
                },
            )
            .filter(|n| q.after.is_none_or(|a| n.as_str() > a))
            .collect();
        names.sort();
        names.dedup();
        // max-keys=0 answers an empty, untruncated page (as S3 does; ceph's s3-tests
        // test_bucket_list_maxkeys_zero checks it).
        let truncated = q.max > 0 && names.len() > q.max;
        names.truncate(q.max);
        (names, truncated)
    }
}

#[cfg(test)]
mod tests {
    use super::model::*;
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn names(page: &Page<(String, u32)>) -> Vec<String> {
        page.items.iter().map(|i| i.name(|e| e.0.as_str()).to_owned()).collect()
    }

    fn keys(list: &[&str]) -> BTreeMap<String, u32> {
        list.iter()
            .enumerate()
            .map(|(i, k)| (k.to_string(), i as u32))
            .collect()
    }

    #[test]
    fn an_empty_delimiter_lists_every_key_and_invents_no_prefix() {
        let map = keys(&["data/1", "p q.txt", "p+q.txt", "top"]);
        let q = Query {
            prefix: "",
            delimiter: Some(""),
            after: None,
            max: 1000,
        };
        let page = list(&mut MapSource(&map), q).unwrap();
        assert_eq!(names(&page), ["data/1", "p q.txt", "p+q.txt", "top"]);
        assert!(page.items.iter().all(|i| matches!(i, Item::Entry(_))));
    }

    #[test]
    fn common_prefixes_roll_up_once_and_a_marker_inside_one_skips_it() {
        let map = keys(&["a.txt", "a/1", "a/2", "a/b/3", "b", "c/1"]);
        let q = |after, max| Query {
            prefix: "",
            delimiter: Some("/"),
            after,
            max,
        };
        let page = list(&mut MapSource(&map), q(None, 1000)).unwrap();
        assert_eq!(names(&page), ["a.txt", "a/", "b", "c/"]);
        let page = list(&mut MapSource(&map), q(Some("a/1"), 1000)).unwrap();
        assert_eq!(names(&page), ["b", "c/"]);
        let first = list(&mut MapSource(&map), q(None, 2)).unwrap();
        assert_eq!(
            (names(&first), first.truncated),
            (vec!["a.txt".to_owned(), "a/".to_owned()], true)
        );
        let next = list(&mut MapSource(&map), q(Some("a/"), 2)).unwrap();
        assert_eq!(
            (names(&next), next.truncated),
            (vec!["b".to_owned(), "c/".to_owned()], false)
        );
    }

    fn key_strategy() -> impl Strategy<Value = String> {
        // Few distinct characters so that prefixes and delimiters collide often; '/', '+',
        // ' ', '.', a two-byte and a four-byte character among them.
        proptest::collection::vec(
            prop::sample::select(vec!["a", "b", "/", "+", " ", ".", "é", "𝄞", "//"]),
            0..6,
        )
        .prop_map(|parts| parts.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Any keys, prefix, delimiter, bound and page size: one page is what the rules say.
        #[test]
        fn a_page_is_what_the_rules_say(
            list_keys in proptest::collection::btree_set(key_strategy(), 0..40),
            prefix in key_strategy(),
            delimiter in prop::sample::select(vec!["", "/", "a", "//", "é", "+"]),
            after in proptest::option::of(key_strategy()),
            max in 0usize..8,
        ) {
            let map: BTreeMap<String, u32> = list_keys.into_iter().map(|k| (k, 0)).collect();
            let prefix = if map.is_empty() { prefix } else { prefix.chars().take(2).collect() };
            let q = Query { prefix: &prefix, delimiter: Some(delimiter), after: after.as_deref(), max };
            let page = list(&mut MapSource(&map), q).unwrap();
            let (want, truncated) = expected(&map, q);
            prop_assert_eq!(names(&page), want);
            prop_assert_eq!(page.truncated, truncated);
        }

        /// Following the pages (each starting after the last name of the one before) visits
        /// every listed name once, in order, and ends.
        #[test]
        fn paging_visits_everything_once(
            list_keys in proptest::collection::btree_set(key_strategy(), 0..40),
            delimiter in prop::sample::select(vec!["", "/", "a"]),
            max in 1usize..5,
        ) {
            let map: BTreeMap<String, u32> = list_keys.into_iter().map(|k| (k, 0)).collect();
            let all = expected(&map, Query { prefix: "", delimiter: Some(delimiter), after: None, max: usize::MAX }).0;
            let mut seen = Vec::new();
            let mut after: Option<String> = None;
            for _ in 0..=all.len() {
                let page = list(&mut MapSource(&map), Query { prefix: "", delimiter: Some(delimiter), after: after.as_deref(), max }).unwrap();
                seen.extend(names(&page));
                if !page.truncated { break; }
                after = seen.last().cloned();
            }
            prop_assert_eq!(seen, all);
        }
    }
}
