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
    let value: Value = serde_json::from_str(text).map_err(|e| CanonicalError::NotJson(e.to_string()))?;
    match to_canonical_value(value)? {
        CanonicalJsonValue::Object(o) => Ok(o),
        _ => Err(CanonicalError::NotObject),
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
