//! Canonical JSON (spec appendix "Canonical JSON") from arbitrary JSON text.
//!
//! PDUs are parsed strictly into ruma's `CanonicalJsonObject` (floats rejected). This module is
//! the lenient entry for other signed JSON, where the spec's own examples write integers in
//! float notation (`1e10`, `-0`): numbers with an exact integer value in the safe range are
//! accepted as integers.

use ruma::{CanonicalJsonObject, CanonicalJsonValue, Int};
use serde_json::Value;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CanonicalError {
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("number out of the canonical JSON range or not an integer")]
    BadNumber,
    #[error("top level is not an object")]
    NotObject,
}

/// Converts a JSON value to canonical JSON, accepting integral floats.
pub fn to_canonical_value(value: Value) -> Result<CanonicalJsonValue, CanonicalError> {
    Ok(match value {
        Value::Null => CanonicalJsonValue::Null,
        Value::Bool(b) => CanonicalJsonValue::Bool(b),
        Value::String(s) => CanonicalJsonValue::String(s),
        Value::Number(n) => {
            let int = if let Some(i) = n.as_i64() {
                Int::new(i)
            } else {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() <= Int::MAX.into())
                    .and_then(|f| Int::new(f as i64))
            };
            CanonicalJsonValue::Integer(int.ok_or(CanonicalError::BadNumber)?)
        }
        Value::Array(items) => CanonicalJsonValue::Array(
            items
                .into_iter()
                .map(to_canonical_value)
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => CanonicalJsonValue::Object(
            map.into_iter()
                .map(|(k, v)| Ok((k, to_canonical_value(v)?)))
                .collect::<Result<_, _>>()?,
        ),
    })
}

/// Parses JSON text into a canonical object (lenient about integral floats).
pub fn parse_object(text: &str) -> Result<CanonicalJsonObject, CanonicalError> {
    parse_object_with(text, Numbers::Lenient)
}

/// Parses a PDU's JSON text into a canonical object, strictly: any number written
/// with a fraction or an exponent is refused, as ruma's own conversion does.
pub fn parse_pdu(text: &str) -> Result<CanonicalJsonObject, CanonicalError> {
    parse_object_with(text, Numbers::Strict)
}

/// How numbers written as floats are taken.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Numbers {
    /// Refused.
    Strict,
    /// Accepted when they have an exact integer value in the canonical range.
    Lenient,
}

/// Straight from text to canonical JSON, without building a `serde_json::Value` first.
fn parse_object_with(text: &str, numbers: Numbers) -> Result<CanonicalJsonObject, CanonicalError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = serde::Deserializer::deserialize_any(&mut de, CanonicalVisitor(numbers)).map_err(|e| {
        if e.to_string().starts_with(BAD_NUMBER) {
            CanonicalError::BadNumber
        } else {
            CanonicalError::NotJson(e.to_string())
        }
    })?;
    de.end().map_err(|e| CanonicalError::NotJson(e.to_string()))?;
    match value {
        CanonicalJsonValue::Object(o) => Ok(o),
        _ => Err(CanonicalError::NotObject),
    }
}

const BAD_NUMBER: &str = "bad canonical number";

struct CanonicalVisitor(Numbers);

struct NestedSeed(Numbers);

impl<'de> serde::de::DeserializeSeed<'de> for NestedSeed {
    type Value = CanonicalJsonValue;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(CanonicalVisitor(self.0))
    }
}

impl<'de> serde::de::Visitor<'de> for CanonicalVisitor {
    type Value = CanonicalJsonValue;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("canonical JSON")
    }

    fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<Self::Value, E> {
        Ok(CanonicalJsonValue::Bool(b))
    }

    fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Self::Value, E> {
        Int::new(n)
            .map(CanonicalJsonValue::Integer)
            .ok_or_else(|| E::custom(BAD_NUMBER))
    }

    fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Self::Value, E> {
        i64::try_from(n)
            .ok()
            .and_then(Int::new)
            .map(CanonicalJsonValue::Integer)
            .ok_or_else(|| E::custom(BAD_NUMBER))
    }

    fn visit_f64<E: serde::de::Error>(self, f: f64) -> Result<Self::Value, E> {
        if self.0 == Numbers::Strict {
            return Err(E::custom(BAD_NUMBER));
        }
        Some(f)
            .filter(|f| f.fract() == 0.0 && f.abs() <= Int::MAX.into())
            .and_then(|f| Int::new(f as i64))
            .map(CanonicalJsonValue::Integer)
            .ok_or_else(|| E::custom(BAD_NUMBER))
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(CanonicalJsonValue::String(s.to_owned()))
    }

    fn visit_string<E: serde::de::Error>(self, s: String) -> Result<Self::Value, E> {
        Ok(CanonicalJsonValue::String(s))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(CanonicalJsonValue::Null)
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(CanonicalJsonValue::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element_seed(NestedSeed(self.0))? {
            items.push(item);
        }
        Ok(CanonicalJsonValue::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut object = CanonicalJsonObject::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(NestedSeed(self.0))?;
            object.insert(key, value);
        }
        Ok(CanonicalJsonValue::Object(object))
    }
}

/// The canonical JSON text of an object.
pub fn to_string(object: &CanonicalJsonObject) -> String {
    // Serialising a `CanonicalJsonObject` cannot fail: keys are strings, values are JSON.
    serde_json::to_string(object).unwrap_or_default()
}

/// Parses any JSON text and returns its canonical form.
pub fn canonicalize(text: &str) -> Result<String, CanonicalError> {
    Ok(to_string(&parse_object(text)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pdus_parse_strictly_and_like_ruma() {
        let text = r#"{"b":[1,{"c":null,"d":true}],"a":"x","n":-9007199254740991,"e":{}}"#;
        let ours = parse_pdu(text).expect("parses");
        let ruma: CanonicalJsonObject = serde_json::from_str(text).expect("ruma parses");
        assert_eq!(ours, ruma);
        assert_eq!(parse_pdu(r#"{"a":1.0}"#), Err(CanonicalError::BadNumber));
        assert_eq!(parse_pdu(r#"{"a":1e3}"#), Err(CanonicalError::BadNumber));
        assert_eq!(
            parse_object(r#"{"a":1e3}"#).map(|o| o["a"].clone()),
            Ok(CanonicalJsonValue::Integer(Int::from(1000u32)))
        );
        assert_eq!(
            parse_pdu(r#"{"a":9007199254740992}"#),
            Err(CanonicalError::BadNumber)
        );
        assert_eq!(parse_pdu("[1]"), Err(CanonicalError::NotObject));
        assert!(matches!(
            parse_pdu(r#"{"a":1} x"#),
            Err(CanonicalError::NotJson(_))
        ));
        assert!(matches!(parse_pdu(r#"{"a":"#), Err(CanonicalError::NotJson(_))));
    }

    #[test]
    fn rejects_fractions_and_huge_numbers() {
        assert_eq!(canonicalize(r#"{"a":1.5}"#), Err(CanonicalError::BadNumber));
        assert_eq!(
            canonicalize(r#"{"a":9007199254740992}"#),
            Err(CanonicalError::BadNumber)
        );
        assert_eq!(canonicalize("[1]"), Err(CanonicalError::NotObject));
        assert!(matches!(canonicalize("{"), Err(CanonicalError::NotJson(_))));
    }
}
