//! Reports of content to the server's admins: the checks on a report's body (the
//! spec's `reason` and, for events, the optional `score` of spec versions before 1.18).

use serde_json::Value;

/// Longest reason kept, in bytes.
pub const MAX_REASON_BYTES: usize = 4096;

/// A checked report body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportBody {
    pub reason: Option<String>,
    pub score: Option<i64>,
}

/// Why a body is refused: the Matrix error code and a message.
pub type BodyError = (&'static str, &'static str);

/// Checks a report body. `reason_required`: room and user reports must carry a
/// `reason` (it may be blank); `score_allowed`: event reports may carry a `score`, an
/// integer from -100 (most offensive) to 0.
pub fn check(body: &Value, reason_required: bool, score_allowed: bool) -> Result<ReportBody, BodyError> {
    let object = body
        .as_object()
        .ok_or(("M_BAD_JSON", "The body must be a JSON object"))?;
    let reason = match object.get("reason") {
        None | Some(Value::Null) if reason_required => return Err(("M_MISSING_PARAM", "reason is required")),
        None | Some(Value::Null) => None,
        Some(Value::String(r)) if r.len() > MAX_REASON_BYTES => {
            return Err(("M_INVALID_PARAM", "reason is too long"))
        }
        Some(Value::String(r)) => Some(r.clone()),
        Some(_) => return Err(("M_BAD_JSON", "reason must be a string")),
    };
    let score = match object.get("score") {
        None | Some(Value::Null) => None,
        Some(_) if !score_allowed => None,
        Some(Value::Number(n)) => match n.as_i64() {
            Some(s) if (-100..=0).contains(&s) => Some(s),
            _ => return Err(("M_INVALID_PARAM", "score must be an integer between -100 and 0")),
        },
        Some(_) => return Err(("M_INVALID_PARAM", "score must be an integer between -100 and 0")),
    };
    Ok(ReportBody { reason, score })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bodies_are_checked() {
        assert_eq!(
            check(&json!({"reason": "spam", "score": -100}), false, true),
            Ok(ReportBody {
                reason: Some("spam".into()),
                score: Some(-100)
            })
        );
        assert_eq!(
            check(&json!({}), false, true),
            Ok(ReportBody {
                reason: None,
                score: None
            })
        );
        assert_eq!(check(&json!({}), true, false).unwrap_err().0, "M_MISSING_PARAM");
        assert!(check(&json!({"reason": ""}), true, false).is_ok());
        assert_eq!(
            check(&json!({"reason": 5}), false, true).unwrap_err().0,
            "M_BAD_JSON"
        );
        assert_eq!(
            check(&json!({"score": 1}), false, true).unwrap_err().0,
            "M_INVALID_PARAM"
        );
        assert_eq!(
            check(&json!({"score": -101}), false, true).unwrap_err().0,
            "M_INVALID_PARAM"
        );
        assert_eq!(
            check(&json!({"score": -1.5}), false, true).unwrap_err().0,
            "M_INVALID_PARAM"
        );
        assert_eq!(
            check(&json!({"score": "x"}), false, true).unwrap_err().0,
            "M_INVALID_PARAM"
        );
        assert_eq!(check(&json!([]), false, true).unwrap_err().0, "M_BAD_JSON");
        let long = "x".repeat(MAX_REASON_BYTES + 1);
        assert_eq!(
            check(&json!({"reason": long}), false, true).unwrap_err().0,
            "M_INVALID_PARAM"
        );
    }
}
