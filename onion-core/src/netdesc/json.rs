//! Strict JSON reading with paths: a parse that refuses duplicate keys, and helpers that take
//! one field at a time and say where a value is wrong.
//!
//! Each object level is checked against a `#[serde(deny_unknown_fields)]` struct whose fields
//! are all `Option<Value>`: serde refuses unknown fields, and the typed checks of each field
//! happen here, with the field's path.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::{Bad, Problem};

/// How much of a hostile key or message an error keeps.
const ERR_TEXT_MAX: usize = 80;

/// Keep at most [`ERR_TEXT_MAX`] characters of `s`.
pub(crate) fn clip(s: &str) -> String {
    s.chars().take(ERR_TEXT_MAX).collect()
}

/// The path of field `key` of the object at `parent` (`""` is the document).
pub(crate) fn key_path(parent: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key.len() <= ERR_TEXT_MAX
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    match (parent.is_empty(), plain) {
        (true, true) => key.to_owned(),
        (false, true) => format!("{parent}.{key}"),
        (_, false) => format!("{parent}[{:?}]", clip(key)),
    }
}

/// The path of element `i` of the array at `parent`.
pub(crate) fn index_path(parent: &str, i: usize) -> String {
    format!("{parent}[{i}]")
}

/// A [`Problem::Syntax`] from a serde_json error.
pub(crate) fn syntax(e: &serde_json::Error) -> Problem {
    let msg = e.to_string();
    // serde_json appends " at line L column C" when it knows the position.
    let reason = match msg.rsplit_once(" at line ") {
        Some((head, _)) if e.line() != 0 => head,
        _ => msg.as_str(),
    };
    Problem::Syntax {
        line: e.line(),
        column: e.column(),
        reason: clip(reason),
    }
}

/// A JSON value read by a parser that refuses an object with the same key twice (which
/// `serde_json::Value` would silently collapse to the last one).
struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

/// The visitor of [`StrictValue`].
struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = StrictValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Bool(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Number(v.into())))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Number(v.into())))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<StrictValue, E> {
        Number::from_f64(v)
            .map(|n| StrictValue(Value::Number(n)))
            .ok_or_else(|| E::custom("non-finite number"))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::String(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::String(v)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Null))
    }

    fn visit_none<E: de::Error>(self) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Null))
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<StrictValue, D::Error> {
        StrictValue::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StrictValue, A::Error> {
        let mut v = Vec::new();
        while let Some(StrictValue(x)) = seq.next_element()? {
            v.push(x);
        }
        Ok(StrictValue(Value::Array(v)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StrictValue, A::Error> {
        let mut m = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            if m.contains_key(&k) {
                return Err(de::Error::custom(format_args!(
                    "duplicate key {:?}",
                    clip(&k)
                )));
            }
            let StrictValue(v) = map.next_value()?;
            m.insert(k, v);
        }
        Ok(StrictValue(Value::Object(m)))
    }
}

/// Parse `text` as one JSON value, refusing duplicate keys. Errors are [`Problem::Syntax`]
/// at `path`.
pub(crate) fn parse_strict(text: &str, path: &str) -> Result<Value, Bad> {
    serde_json::from_str::<StrictValue>(text)
        .map(|StrictValue(v)| v)
        .map_err(|e| Bad::new(path, syntax(&e)))
}

/// Read the object `v` at `path` as `T`, a `deny_unknown_fields` struct of `Option<Value>`
/// fields. Not an object is [`Problem::WrongType`]; an unknown key is
/// [`Problem::UnknownField`] at that key's path.
pub(crate) fn object<T: DeserializeOwned>(v: Value, path: &str) -> Result<T, Bad> {
    let Value::Object(map) = v else {
        return Err(wrong_type(path, "object"));
    };
    let keys: Vec<String> = map.keys().cloned().collect();
    T::deserialize(Value::Object(map)).map_err(|e| {
        let msg = e.to_string();
        // serde's message for deny_unknown_fields: "unknown field `KEY`, expected ...".
        match keys
            .iter()
            .find(|k| msg.starts_with(&format!("unknown field `{k}`")))
        {
            Some(k) => Bad::new(key_path(path, k), Problem::UnknownField),
            None => Bad::new(path, Problem::Schema(clip(&msg))),
        }
    })
}

/// [`Problem::WrongType`] at `path`.
pub(crate) fn wrong_type(path: &str, expected: &'static str) -> Bad {
    Bad::new(path, Problem::WrongType { expected })
}

/// The value of the required field `key` of the object at `parent`, with its path.
pub(crate) fn required(v: Option<Value>, parent: &str, key: &str) -> Result<(Value, String), Bad> {
    let path = key_path(parent, key);
    match v {
        Some(Value::Null) | None => Err(Bad::new(path, Problem::Missing)),
        Some(v) => Ok((v, path)),
    }
}

/// The value of the optional field `key` of the object at `parent`, with its path.
pub(crate) fn optional(v: Option<Value>, parent: &str, key: &str) -> Option<(Value, String)> {
    match v {
        Some(Value::Null) | None => None,
        Some(v) => Some((v, key_path(parent, key))),
    }
}

/// `v` as a string.
pub(crate) fn string(v: Value, path: &str) -> Result<String, Bad> {
    match v {
        Value::String(s) => Ok(s),
        _ => Err(wrong_type(path, "string")),
    }
}

/// `v` as a non-negative integer.
pub(crate) fn uint(v: &Value, path: &str) -> Result<u64, Bad> {
    match v {
        Value::Number(n) => n.as_u64().ok_or_else(|| {
            if n.is_i64() {
                Bad::new(path, Problem::OutOfRange)
            } else {
                wrong_type(path, "non-negative integer")
            }
        }),
        _ => Err(wrong_type(path, "non-negative integer")),
    }
}

/// `v` as an array of at most `max` elements.
pub(crate) fn array(v: Value, path: &str, max: usize) -> Result<Vec<Value>, Bad> {
    match v {
        Value::Array(a) if a.len() > max => Err(Bad::new(path, Problem::TooMany { max })),
        Value::Array(a) => Ok(a),
        _ => Err(wrong_type(path, "array")),
    }
}

/// Apply `check` to the string `s` at `path`, placing its problem there.
pub(crate) fn check<T>(
    s: &str,
    path: &str,
    check: impl FnOnce(&str) -> Result<T, Problem>,
) -> Result<T, Bad> {
    check(s).map_err(|p| Bad::new(path, p))
}

/// The required string field `key` of the object at `parent`, through `check`.
pub(crate) fn req_str<T>(
    v: Option<Value>,
    parent: &str,
    key: &str,
    f: impl FnOnce(&str) -> Result<T, Problem>,
) -> Result<T, Bad> {
    let (v, path) = required(v, parent, key)?;
    let s = string(v, &path)?;
    check(&s, &path, f)
}

/// The optional string field `key` of the object at `parent`, through `check`.
pub(crate) fn opt_str<T>(
    v: Option<Value>,
    parent: &str,
    key: &str,
    f: impl FnOnce(&str) -> Result<T, Problem>,
) -> Result<Option<T>, Bad> {
    match optional(v, parent, key) {
        None => Ok(None),
        Some((v, path)) => {
            let s = string(v, &path)?;
            check(&s, &path, f).map(Some)
        }
    }
}

/// A version field: required, a non-negative integer.
pub(crate) fn version(doc: &Value) -> Result<u64, Bad> {
    let Value::Object(map) = doc else {
        return Err(wrong_type("", "object"));
    };
    let (v, path) = required(map.get("version").cloned(), "", "version")?;
    uint(&v, &path)
}

#[cfg(test)]
mod test {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use serde::Serialize;

    #[derive(Debug, Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    struct Two {
        #[serde(default)]
        a: Option<Value>,
        #[serde(default)]
        b: Option<Value>,
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let err = parse_strict(r#"{"a": 1, "b": {"x": 1, "x": 2}}"#, "").unwrap_err();
        match err.problem {
            Problem::Syntax { line, reason, .. } => {
                assert_eq!(line, 1);
                assert!(reason.contains("duplicate key \"x\""), "{reason}");
            }
            p => panic!("{p:?}"),
        }
        assert!(parse_strict(r#"{"a": 1, "b": {"x": 1, "y": 2}}"#, "").is_ok());
    }

    #[test]
    fn syntax_errors_have_positions() {
        let err = parse_strict("{\n  \"a\": x\n}", "body").unwrap_err();
        assert_eq!(err.path, "body");
        assert!(
            matches!(err.problem, Problem::Syntax { line: 2, .. }),
            "{err:?}"
        );
        assert!(matches!(
            parse_strict("{} {}", "").unwrap_err().problem,
            Problem::Syntax { .. }
        ));
        assert!(matches!(
            parse_strict("", "").unwrap_err().problem,
            Problem::Syntax { .. }
        ));
        // Deep nesting stops at serde_json's recursion limit instead of the stack.
        let deep = "[".repeat(100_000);
        assert!(matches!(
            parse_strict(&deep, "").unwrap_err().problem,
            Problem::Syntax { .. }
        ));
    }

    #[test]
    fn unknown_fields_get_their_path() {
        let v = parse_strict(r#"{"a": 1, "c d": 2}"#, "").unwrap();
        let err = object::<Two>(v, "entries[3]").unwrap_err();
        assert_eq!(err, Bad::new("entries[3][\"c d\"]", Problem::UnknownField));
        let v = parse_strict(r#"{"a": 1, "zz": 2}"#, "").unwrap();
        assert_eq!(
            object::<Two>(v, "").unwrap_err(),
            Bad::new("zz", Problem::UnknownField)
        );
        let v = parse_strict(r#"[1]"#, "").unwrap();
        assert_eq!(
            object::<Two>(v, "x").unwrap_err(),
            Bad::new("x", Problem::WrongType { expected: "object" })
        );
        let v = parse_strict(r#"{"a": null}"#, "").unwrap();
        let two = object::<Two>(v, "").unwrap();
        assert!(two.a.is_none() && two.b.is_none());
    }

    #[test]
    fn typed_getters() {
        assert_eq!(uint(&Value::from(5u64), "p").unwrap(), 5);
        assert_eq!(
            uint(&Value::from(-5i64), "p").unwrap_err().problem,
            Problem::OutOfRange
        );
        assert!(matches!(
            uint(&Value::from(1.5f64), "p").unwrap_err().problem,
            Problem::WrongType { .. }
        ));
        assert!(matches!(
            uint(&Value::from("1"), "p").unwrap_err().problem,
            Problem::WrongType { .. }
        ));
        assert_eq!(
            required(None, "a", "b").unwrap_err(),
            Bad::new("a.b", Problem::Missing)
        );
        assert_eq!(
            required(Some(Value::Null), "", "b").unwrap_err(),
            Bad::new("b", Problem::Missing)
        );
        assert_eq!(
            array(Value::Array(vec![Value::Null; 3]), "l", 2).unwrap_err(),
            Bad::new("l", Problem::TooMany { max: 2 })
        );
        assert_eq!(index_path("relays", 4), "relays[4]");
    }
}
