//! A bound on what a scenario *expands* to, not only on what it weighs.
//!
//! YAML aliases let 600 KiB of text stand for 45 million operation names (one anchored list
//! of 5,000 named by 9,000 rules: 8 s of parsing), or for a gigabyte of key globs (one
//! 100 KB string named 10,000 times). The size and depth checks of [`super::limits`] cannot
//! see this: the text is small and flat. The YAML parser's own repetition limit counts alias
//! *uses*, not what they replay.
//!
//! [`Budgeted`] wraps the YAML deserializer and charges every value it hands out (one node)
//! and every string's bytes against a [`Budget`]; the first value past the budget ends the
//! parse with an error at its place in the file. The budget is far above what a file
//! without aliases can reach (a value takes at least two bytes of text, so 1 MiB holds at
//! most 512 Ki values and 1 MiB of strings), so only expansion is ever refused.
//!
//! The wrapper forwards everything else unchanged: every `Deserialize` impl sees the same
//! calls it would see without it, and errors keep serde_yaml_ng's positions.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor};

/// Values (scalars, lists, maps and their entries) one scenario may expand to.
pub const MAX_EXPANDED_VALUES: usize = 1_000_000;

/// Bytes of strings one scenario may expand to.
pub const MAX_EXPANDED_STRING_BYTES: usize = 8 * 1024 * 1024;

/// What is left to spend while one scenario is parsed.
#[derive(Debug)]
pub struct Budget {
    values: Cell<usize>,
    bytes: Cell<usize>,
}

impl Default for Budget {
    fn default() -> Self {
        Budget::new(MAX_EXPANDED_VALUES, MAX_EXPANDED_STRING_BYTES)
    }
}

impl Budget {
    pub fn new(values: usize, bytes: usize) -> Budget {
        Budget {
            values: Cell::new(values),
            bytes: Cell::new(bytes),
        }
    }

    fn value<E: de::Error>(&self) -> Result<(), E> {
        match self.values.get().checked_sub(1) {
            Some(left) => {
                self.values.set(left);
                Ok(())
            }
            None => Err(E::custom(format!(
                "this scenario expands to more than {MAX_EXPANDED_VALUES} values (YAML aliases repeat what they name): write the rules out, or use fewer of them"
            ))),
        }
    }

    fn bytes<E: de::Error>(&self, n: usize) -> Result<(), E> {
        match self.bytes.get().checked_sub(n) {
            Some(left) => {
                self.bytes.set(left);
                Ok(())
            }
            None => Err(E::custom(format!(
                "this scenario expands to more than {} MiB of text (YAML aliases repeat what they name)",
                MAX_EXPANDED_STRING_BYTES / (1024 * 1024)
            ))),
        }
    }
}

/// A deserializer (or a part of one) that charges what it hands out to a [`Budget`].
pub struct Budgeted<'b, T> {
    inner: T,
    budget: &'b Budget,
}

impl<'b, T> Budgeted<'b, T> {
    pub fn new(inner: T, budget: &'b Budget) -> Self {
        Budgeted { inner, budget }
    }
}

macro_rules! forward_deserialize {
    ($($method:ident),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
            self.budget.value()?;
            self.inner.$method(Budgeted::new(visitor, self.budget))
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Budgeted<'_, D> {
    type Error = D::Error;

    forward_deserialize!(
        deserialize_any,
        deserialize_bool,
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_i128,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_u128,
        deserialize_f32,
        deserialize_f64,
        deserialize_char,
        deserialize_str,
        deserialize_string,
        deserialize_bytes,
        deserialize_byte_buf,
        deserialize_option,
        deserialize_unit,
        deserialize_seq,
        deserialize_map,
        deserialize_identifier,
        deserialize_ignored_any,
    );

    fn deserialize_unit_struct<V: Visitor<'de>>(self, name: &'static str, visitor: V) -> Result<V::Value, D::Error> {
        self.budget.value()?;
        self.inner
            .deserialize_unit_struct(name, Budgeted::new(visitor, self.budget))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, name: &'static str, visitor: V) -> Result<V::Value, D::Error> {
        self.budget.value()?;
        self.inner
            .deserialize_newtype_struct(name, Budgeted::new(visitor, self.budget))
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, D::Error> {
        self.budget.value()?;
        self.inner.deserialize_tuple(len, Budgeted::new(visitor, self.budget))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.budget.value()?;
        self.inner
            .deserialize_tuple_struct(name, len, Budgeted::new(visitor, self.budget))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.budget.value()?;
        self.inner
            .deserialize_struct(name, fields, Budgeted::new(visitor, self.budget))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.budget.value()?;
        self.inner
            .deserialize_enum(name, variants, Budgeted::new(visitor, self.budget))
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

macro_rules! forward_visit {
    ($($method:ident($ty:ty)),* $(,)?) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<Self::Value, E> {
            self.inner.$method(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Budgeted<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    forward_visit!(
        visit_bool(bool),
        visit_i8(i8),
        visit_i16(i16),
        visit_i32(i32),
        visit_i64(i64),
        visit_i128(i128),
        visit_u8(u8),
        visit_u16(u16),
        visit_u32(u32),
        visit_u64(u64),
        visit_u128(u128),
        visit_f32(f32),
        visit_f64(f64),
        visit_char(char),
    );

    fn visit_str<E: de::Error>(self, v: &str) -> Result<V::Value, E> {
        self.budget.bytes(v.len())?;
        self.inner.visit_str(v)
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<V::Value, E> {
        self.budget.bytes(v.len())?;
        self.inner.visit_borrowed_str(v)
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<V::Value, E> {
        self.budget.bytes(v.len())?;
        self.inner.visit_string(v)
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<V::Value, E> {
        self.budget.bytes(v.len())?;
        self.inner.visit_bytes(v)
    }

    fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<V::Value, E> {
        self.budget.bytes(v.len())?;
        self.inner.visit_borrowed_bytes(v)
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<V::Value, E> {
        self.budget.bytes(v.len())?;
        self.inner.visit_byte_buf(v)
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.inner.visit_some(Budgeted::new(d, self.budget))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.inner.visit_newtype_struct(Budgeted::new(d, self.budget))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.inner.visit_seq(Budgeted::new(seq, self.budget))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.inner.visit_map(Budgeted::new(map, self.budget))
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.inner.visit_enum(Budgeted::new(data, self.budget))
    }
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Budgeted<'_, S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.inner.deserialize(Budgeted::new(d, self.budget))
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Budgeted<'_, A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, A::Error> {
        self.inner.next_element_seed(Budgeted::new(seed, self.budget))
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Budgeted<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, A::Error> {
        self.inner.next_key_seed(Budgeted::new(seed, self.budget))
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        self.inner.next_value_seed(Budgeted::new(seed, self.budget))
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'b, 'de, A: EnumAccess<'de>> EnumAccess<'de> for Budgeted<'b, A> {
    type Error = A::Error;
    type Variant = Budgeted<'b, A::Variant>;

    fn variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<(T::Value, Self::Variant), A::Error> {
        let (value, variant) = self.inner.variant_seed(Budgeted::new(seed, self.budget))?;
        Ok((value, Budgeted::new(variant, self.budget)))
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Budgeted<'_, A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.inner.unit_variant()
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        self.inner.newtype_variant_seed(Budgeted::new(seed, self.budget))
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.inner.tuple_variant(len, Budgeted::new(visitor, self.budget))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.inner.struct_variant(fields, Budgeted::new(visitor, self.budget))
    }
}

/// Parses `text` as YAML into `T` within the default [`Budget`].
pub fn from_str<'de, T: serde::Deserialize<'de>>(text: &'de str) -> Result<T, serde_yaml_ng::Error> {
    let budget = Budget::default();
    T::deserialize(Budgeted::new(serde_yaml_ng::Deserializer::from_str(text), &budget))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse<T: serde::de::DeserializeOwned>(text: &str, values: usize, bytes: usize) -> Result<T, String> {
        let budget = Budget::new(values, bytes);
        T::deserialize(Budgeted::new(serde_yaml_ng::Deserializer::from_str(text), &budget)).map_err(|e| e.to_string())
    }

    #[test]
    fn a_document_within_the_budget_reads_as_without_it() {
        let v: Vec<Vec<String>> = parse("- &a [x, y]\n- *a\n- *a\n", 100, 100).unwrap();
        assert_eq!(v, vec![vec!["x", "y"]; 3]);
    }

    #[test]
    fn aliases_are_charged_for_what_they_expand_to() {
        // Four values of text: the outer list, the anchored list and its two strings; each
        // alias replays three more.
        let text = "- &a [x, y]\n- *a\n- *a\n";
        assert!(parse::<Vec<Vec<String>>>(text, 10, 100).is_ok());
        let err = parse::<Vec<Vec<String>>>(text, 9, 100).unwrap_err();
        assert!(err.contains("expands to more than"), "{err}");
        // serde_yaml_ng names the path where the budget ran out (the third element) and the
        // place of the anchor being replayed.
        assert!(err.contains("[2]"), "the path where the budget ran out: {err}");
    }

    #[test]
    fn long_strings_named_again_and_again_are_charged_their_bytes() {
        let long = "k".repeat(1000);
        let text = format!("- &k {long}\n- *k\n- *k\n");
        assert!(parse::<Vec<String>>(&text, 100, 3000).is_ok());
        let err = parse::<Vec<String>>(&text, 100, 2999).unwrap_err();
        assert!(err.contains("MiB of text"), "{err}");
    }
}
