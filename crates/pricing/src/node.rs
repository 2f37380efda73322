//! A pruned, mostly borrowed JSON tree: everything extraction needs and
//! nothing else.
//!
//! Parsing into [`serde_json::Value`] allocates every string and map of a
//! response, most of which is generated text. This tree borrows strings from
//! the input where it can, drops long strings, and skips whole subtrees whose
//! keys never hold usage (message text, logprobs, embeddings), which makes
//! extraction faster than a plain `Value` parse of the same bytes.

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::{borrow::Cow, fmt};

/// Deepest nesting accepted, the same as serde_json's own recursion limit.
pub(crate) const MAX_DEPTH: usize = 128;

/// Strings longer than this are never model names, ids or counts.
const MAX_KEPT_STRING: usize = 512;

/// Keys whose values are content, never usage, in every supported format.
pub(crate) fn is_skipped_key(key: &str) -> bool {
    matches!(
        key,
        "content"
            | "text"
            | "logprobs"
            | "embedding"
            | "embeddings"
            | "parts"
            | "files"
            | "content_blocks"
            | "tool_calls"
            | "outputText"
            | "generation"
    )
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node<'a> {
    Null,
    Bool(bool),
    /// A non-negative integer literal that fits 64 bits.
    U64(u64),
    /// A negative integer literal.
    Neg(i64),
    /// A number with a fraction or exponent, or an integer beyond 64 bits.
    Float(f64),
    Str(Cow<'a, str>),
    /// A string too long to matter, or a skipped subtree.
    Dropped,
    Arr(Vec<Node<'a>>),
    Obj(Vec<(Cow<'a, str>, Node<'a>)>),
}

impl<'a> Node<'a> {
    /// The value of `key` (the last one, as serde_json keeps duplicates).
    pub(crate) fn get(&self, key: &str) -> Option<&Node<'a>> {
        match self {
            Node::Obj(fields) => fields.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Node::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A non-empty string value of `key`.
    pub(crate) fn str_of(&self, key: &str) -> Option<&str> {
        self.get(key)
            .and_then(Node::as_str)
            .filter(|s| !s.is_empty())
    }

    pub(crate) fn is_obj(&self) -> bool {
        matches!(self, Node::Obj(_))
    }

    /// Converts a `Value`, with the same pruning as parsing.
    pub(crate) fn from_value(v: &'a serde_json::Value, depth: usize) -> Result<Node<'a>, usize> {
        use serde_json::Value;
        if depth > MAX_DEPTH {
            return Err(MAX_DEPTH);
        }
        Ok(match v {
            Value::Null => Node::Null,
            Value::Bool(b) => Node::Bool(*b),
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    Node::U64(u)
                } else if let Some(i) = n.as_i64() {
                    Node::Neg(i)
                } else {
                    Node::Float(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            Value::String(s) if s.len() <= MAX_KEPT_STRING => Node::Str(Cow::Borrowed(s)),
            Value::String(_) => Node::Dropped,
            Value::Array(items) => Node::Arr(
                items
                    .iter()
                    .map(|i| Node::from_value(i, depth + 1))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(map) => {
                let mut fields = Vec::with_capacity(map.len());
                for (k, v) in map {
                    let node = if is_skipped_key(k) {
                        Node::Dropped
                    } else {
                        Node::from_value(v, depth + 1)?
                    };
                    fields.push((Cow::Borrowed(k.as_str()), node));
                }
                Node::Obj(fields)
            }
        })
    }
}

/// Parses bytes into the pruned tree. Depth is bounded by serde_json's
/// recursion limit, which stays enabled.
pub(crate) fn parse(bytes: &[u8]) -> Result<Node<'_>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let node = NodeSeed.deserialize(&mut de)?;
    de.end()?;
    Ok(node)
}

struct NodeSeed;

impl<'de> DeserializeSeed<'de> for NodeSeed {
    type Value = Node<'de>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Node<'de>, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Null)
    }
    fn visit_none<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Null)
    }
    fn visit_bool<E>(self, b: bool) -> Result<Node<'de>, E> {
        Ok(Node::Bool(b))
    }
    fn visit_u64<E>(self, u: u64) -> Result<Node<'de>, E> {
        Ok(Node::U64(u))
    }
    fn visit_i64<E>(self, i: i64) -> Result<Node<'de>, E> {
        Ok(u64::try_from(i).map_or(Node::Neg(i), Node::U64))
    }
    fn visit_f64<E>(self, f: f64) -> Result<Node<'de>, E> {
        Ok(Node::Float(f))
    }
    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Node<'de>, E> {
        Ok(if s.len() <= MAX_KEPT_STRING {
            Node::Str(Cow::Borrowed(s))
        } else {
            Node::Dropped
        })
    }
    fn visit_str<E>(self, s: &str) -> Result<Node<'de>, E> {
        Ok(if s.len() <= MAX_KEPT_STRING {
            Node::Str(Cow::Owned(s.to_owned()))
        } else {
            Node::Dropped
        })
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node<'de>, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(NodeSeed)? {
            items.push(item);
        }
        Ok(Node::Arr(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node<'de>, A::Error> {
        let mut fields = Vec::with_capacity(8);
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let value = if is_skipped_key(&key) {
                map.next_value::<IgnoredAny>()?;
                Node::Dropped
            } else {
                map.next_value_seed(NodeSeed)?
            };
            fields.push((key, value));
        }
        Ok(Node::Obj(fields))
    }
}

struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(s))
    }
    fn visit_str<E>(self, s: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(s.to_owned()))
    }
}
