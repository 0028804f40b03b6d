//! Room tags (`m.tag` room account data): the checks on a tag and its body, and the
//! change a `PUT` or `DELETE` makes to the stored content.

use serde_json::{json, Map, Value};

/// The account-data type tags are stored under, so /sync shows them.
pub const ACCOUNT_DATA_TYPE: &str = "m.tag";

/// The spec's limit on a tag's name, in bytes.
pub const MAX_TAG_BYTES: usize = 255;

/// Why a tag or its body is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagError {
    /// The name is empty or longer than 255 bytes.
    BadName,
    /// The body is not an object, or its `order` is not a number.
    BadBody(&'static str),
}

/// Checks a tag's name and the body of a `PUT` (a JSON object whose `order`, when
/// given, is a number in `[0, 1]`); answers what is stored for the tag.
pub fn check_put(tag: &str, body: &Value) -> Result<Value, TagError> {
    if tag.is_empty() || tag.len() > MAX_TAG_BYTES {
        return Err(TagError::BadName);
    }
    let object = body
        .as_object()
        .ok_or(TagError::BadBody("The body must be a JSON object"))?;
    match object.get("order") {
        None | Some(Value::Null) => {}
        Some(Value::Number(n)) => match n.as_f64() {
            Some(o) if (0.0..=1.0).contains(&o) => {}
            _ => return Err(TagError::BadBody("order must be a number between 0 and 1")),
        },
        Some(_) => return Err(TagError::BadBody("order must be a number")),
    }
    let mut kept = object.clone();
    if kept.get("order").is_some_and(Value::is_null) {
        kept.remove("order");
    }
    Ok(Value::Object(kept))
}

/// The `tags` object of stored `m.tag` content (empty when absent or malformed).
pub fn tags_of(content: Option<&Value>) -> Map<String, Value> {
    content
        .and_then(|c| c.get("tags"))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

/// The content after setting `tag` to `value` (`Some`) or removing it (`None`).
pub fn apply(content: Option<&Value>, tag: &str, value: Option<Value>) -> Value {
    let mut tags = tags_of(content);
    match value {
        Some(v) => {
            tags.insert(tag.to_owned(), v);
        }
        None => {
            tags.remove(tag);
        }
    }
    json!({ "tags": tags })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn puts_are_checked() {
        assert_eq!(
            check_put("u.work", &json!({"order": 0.5})),
            Ok(json!({"order": 0.5}))
        );
        assert_eq!(check_put("u.work", &json!({})), Ok(json!({})));
        assert_eq!(check_put("u.work", &json!({"order": null})), Ok(json!({})));
        assert_eq!(check_put("", &json!({})), Err(TagError::BadName));
        assert_eq!(check_put(&"x".repeat(256), &json!({})), Err(TagError::BadName));
        assert!(check_put(&"x".repeat(255), &json!({})).is_ok());
        assert!(matches!(check_put("t", &json!([])), Err(TagError::BadBody(_))));
        assert!(matches!(
            check_put("t", &json!({"order": "1"})),
            Err(TagError::BadBody(_))
        ));
        assert!(matches!(
            check_put("t", &json!({"order": 2})),
            Err(TagError::BadBody(_))
        ));
    }

    #[test]
    fn tags_are_set_and_removed() {
        let one = apply(None, "m.favourite", Some(json!({"order": 0.1})));
        assert_eq!(one, json!({"tags": {"m.favourite": {"order": 0.1}}}));
        let two = apply(Some(&one), "u.x", Some(json!({})));
        assert_eq!(tags_of(Some(&two)).len(), 2);
        let back = apply(Some(&two), "u.x", None);
        assert_eq!(back, one);
        assert_eq!(apply(Some(&json!("junk")), "a", None), json!({"tags": {}}));
    }
}
