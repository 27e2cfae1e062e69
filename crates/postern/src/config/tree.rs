//! A YAML document as a tree of nodes that remember where they were written.
//!
//! serde stops at the first error, but `postern check` must report every
//! problem in a file at once. So the file is first read into this tree (YAML
//! syntax errors, duplicate keys and anchor bombs are still caught by
//! serde-saphyr at this step), and [`super::decode`] then walks the tree and
//! collects every schema problem with its line and column.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Location, Spanned};

/// One YAML node and the place it was written.
#[derive(Debug, Clone)]
pub struct Node {
    pub line: u64,
    pub column: u64,
    pub value: Value,
}

/// The value of a [`Node`], with scalars typed as YAML 1.2 core schema.
#[derive(Debug, Clone)]
pub enum Value {
    Null,
    Bool(bool),
    Integer(i128),
    Float(f64),
    String(String),
    Sequence(Vec<Node>),
    Mapping(Vec<(Key, Node)>),
}

/// A mapping key and the place it was written.
#[derive(Debug, Clone)]
pub struct Key {
    pub name: String,
    pub line: u64,
    pub column: u64,
}

/// Parses `text` into a tree. YAML 1.1 booleans such as `yes` stay strings,
/// so `enabled: yes` is reported as a type error instead of silently meaning
/// true. A key written twice in one mapping is kept twice, so that the
/// decoder can report it with its key path. So every caller that decodes a
/// config must reject such a tree, as `Decoder::parse_document` does.
pub fn parse(text: &str) -> Result<Node, serde_saphyr::Error> {
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::PassThrough;
    serde_saphyr::from_str_with_options(text, options)
}

/// Describes a YAML error in one line, in serde-saphyr's wording for end
/// users. The location is left out because the problem line shows it, and
/// so is the source snippet, which names the input `<input>`, not the file.
pub fn describe_error(error: &serde_saphyr::Error) -> String {
    use serde_saphyr::MessageFormatter;
    let text = serde_saphyr::UserMessageFormatter.format_message(error.without_snippet());
    // The text may quote the file, so control characters are neutralized
    // before it is printed, as serde-saphyr's `format_message` docs require.
    let text: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    text.trim().to_owned()
}

// === impl Node ===

impl Node {
    fn at(location: Location, value: Value) -> Self {
        Node {
            line: location.line(),
            column: location.column(),
            value,
        }
    }

    /// Returns the value under `key` if this node is a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Mapping(entries) => entries.iter().find(|(k, _)| k.name == key).map(|(_, n)| n),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// Names the node's type in an error message.
    pub fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Integer(_) => "an integer",
            Value::Float(_) => "a number",
            Value::String(_) => "a string",
            Value::Sequence(_) => "a list",
            Value::Mapping(_) => "a mapping",
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<Value>::deserialize(deserializer)?;
        Ok(Node::at(spanned.referenced, spanned.value))
    }
}

// === impl Value ===

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Integer(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Integer(v.into()))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
        Ok(Value::Integer(v))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        i128::try_from(v)
            .map(Value::Integer)
            .map_err(|_| E::custom("integer out of range"))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(node) = seq.next_element::<Node>()? {
            items.push(node);
        }
        Ok(Value::Sequence(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<KeyName>>()? {
            let node = map.next_value::<Node>()?;
            let key = Key {
                name: key.value.0,
                line: key.referenced.line(),
                column: key.referenced.column(),
            };
            entries.push((key, node));
        }
        Ok(Value::Mapping(entries))
    }
}

/// A mapping key written as any scalar, kept as its text.
struct KeyName(String);

impl<'de> Deserialize<'de> for KeyName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(KeyNameVisitor)
    }
}

struct KeyNameVisitor;

impl<'de> Visitor<'de> for KeyNameVisitor {
    type Value = KeyName;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a scalar mapping key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<KeyName, E> {
        Ok(KeyName(v.to_owned()))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<KeyName, E> {
        Ok(KeyName(v.to_string()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<KeyName, E> {
        Ok(KeyName(v.to_string()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<KeyName, E> {
        Ok(KeyName(v.to_string()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<KeyName, E> {
        Ok(KeyName(v.to_string()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<KeyName, E> {
        Ok(KeyName("null".to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_of_keys_and_values() {
        let tree = parse("a:\n  b: [1, two]\n  c: true\n").unwrap();
        let Value::Mapping(top) = &tree.value else {
            panic!("expected a mapping, got {tree:?}")
        };
        let (key, inner) = &top[0];
        assert_eq!(key.name, "a");
        assert_eq!((key.line, key.column), (1, 1));
        let Value::Mapping(inner) = &inner.value else {
            panic!("expected a mapping")
        };
        assert_eq!(inner[0].0.name, "b");
        assert_eq!(inner[0].1.line, 2);
        let Value::Sequence(items) = &inner[0].1.value else {
            panic!("expected a list")
        };
        assert!(matches!(items[0].value, Value::Integer(1)));
        assert!(matches!(&items[1].value, Value::String(s) if s == "two"));
        assert!(matches!(inner[1].1.value, Value::Bool(true)));
        assert_eq!(inner[1].1.line, 3);
    }

    #[test]
    fn yes_stays_a_string() {
        let tree = parse("enabled: yes\n").unwrap();
        let Value::Mapping(top) = &tree.value else {
            panic!("expected a mapping")
        };
        assert!(matches!(&top[0].1.value, Value::String(s) if s == "yes"));
    }

    #[test]
    fn duplicate_keys_kept() {
        let tree = parse("a: 1\na: 2\n").unwrap();
        let Value::Mapping(top) = &tree.value else {
            panic!("expected a mapping")
        };
        let lines: Vec<(&str, u64)> = top.iter().map(|(k, _)| (k.name.as_str(), k.line)).collect();
        assert_eq!(lines, [("a", 1), ("a", 2)]);
    }

    #[test]
    fn merge_keys_expand() {
        let tree = parse("base: &b {x: 1}\nother:\n  <<: *b\n  y: 2\n").unwrap();
        let Value::Mapping(top) = &tree.value else {
            panic!("expected a mapping")
        };
        let Value::Mapping(other) = &top[1].1.value else {
            panic!("expected a mapping")
        };
        let mut names: Vec<&str> = other.iter().map(|(k, _)| k.name.as_str()).collect();
        names.sort();
        assert_eq!(names, ["x", "y"]);
    }
}
