//! `MatrixError`: the one error type every handler returns, and the one table from
//! error code to HTTP status.

use serde_json::{json, Map, Value};

/// An error as the client sees it: `{"errcode": ..., "error": ...}` plus optional
/// extra fields (`retry_after_ms`, `soft_logout`, ...).
#[derive(Debug, Clone, PartialEq)]
pub struct MatrixError {
    pub errcode: &'static str,
    pub error: String,
    /// Only set where the status differs from the table (405 for a known path with a
    /// wrong method; `M_UNKNOWN` used for a client error rather than an internal one).
    status_override: Option<u16>,
    pub extra: Map<String, Value>,
    /// The body is `extra` alone, without `errcode`/`error` (the first 401 of
    /// user-interactive auth, which clients must not show as an error).
    bare: bool,
}

/// Every code the server uses, for turning codes received as text back into values.
pub const KNOWN_CODES: &[&str] = &[
    "M_NOT_JSON",
    "M_BAD_JSON",
    "M_MISSING_PARAM",
    "M_INVALID_PARAM",
    "M_USER_IN_USE",
    "M_INVALID_USERNAME",
    "M_ROOM_IN_USE",
    "M_INVALID_ROOM_STATE",
    "M_UNSUPPORTED_ROOM_VERSION",
    "M_INCOMPATIBLE_ROOM_VERSION",
    "M_UNABLE_TO_AUTHORISE_JOIN",
    "M_UNABLE_TO_GRANT_JOIN",
    "M_BAD_STATE",
    "M_EXCLUSIVE",
    "M_WEAK_PASSWORD",
    "M_BAD_ALIAS",
    "M_THREEPID_NOT_FOUND",
    "M_SERVER_NOT_TRUSTED",
    "M_INVALID_SIGNATURE",
    "M_UNKNOWN_TOKEN",
    "M_MISSING_TOKEN",
    "M_UNAUTHORIZED",
    "M_USER_LOCKED",
    "M_FORBIDDEN",
    "M_WRONG_ROOM_KEYS_VERSION",
    "M_GUEST_ACCESS_FORBIDDEN",
    "M_USER_DEACTIVATED",
    "M_THREEPID_DENIED",
    "M_THREEPID_AUTH_FAILED",
    "M_CONSENT_NOT_GIVEN",
    "M_NOT_FOUND",
    "M_UNRECOGNIZED",
    "M_TOO_LARGE",
    "M_LIMIT_EXCEEDED",
    "M_CANNOT_OVERWRITE_MEDIA",
    "M_NOT_YET_UPLOADED",
    "M_UNKNOWN",
];

/// The table: error code to HTTP status, per the client-server and server-server specs.
pub fn status_for(errcode: &str) -> u16 {
    match errcode {
        "M_NOT_JSON"
        | "M_BAD_JSON"
        | "M_MISSING_PARAM"
        | "M_INVALID_PARAM"
        | "M_USER_IN_USE"
        | "M_INVALID_USERNAME"
        | "M_ROOM_IN_USE"
        | "M_INVALID_ROOM_STATE"
        | "M_UNSUPPORTED_ROOM_VERSION"
        | "M_INCOMPATIBLE_ROOM_VERSION"
        | "M_UNABLE_TO_AUTHORISE_JOIN"
        | "M_UNABLE_TO_GRANT_JOIN"
        | "M_BAD_STATE"
        | "M_EXCLUSIVE"
        | "M_WEAK_PASSWORD"
        | "M_BAD_ALIAS"
        | "M_TOO_LARGE_REQUEST"
        | "M_THREEPID_NOT_FOUND"
        | "M_SERVER_NOT_TRUSTED"
        | "M_INVALID_SIGNATURE" => 400,
        "M_UNKNOWN_TOKEN" | "M_MISSING_TOKEN" | "M_UNAUTHORIZED" | "M_USER_LOCKED" => 401,
        "M_FORBIDDEN"
        | "M_GUEST_ACCESS_FORBIDDEN"
        | "M_USER_DEACTIVATED"
        | "M_THREEPID_DENIED"
        | "M_THREEPID_AUTH_FAILED"
        | "M_CONSENT_NOT_GIVEN"
        | "M_WRONG_ROOM_KEYS_VERSION" => 403,
        "M_NOT_FOUND" | "M_UNRECOGNIZED" => 404,
        "M_TOO_LARGE" => 413,
        "M_LIMIT_EXCEEDED" => 429,
        "M_CANNOT_OVERWRITE_MEDIA" => 409,
        "M_NOT_YET_UPLOADED" => 504,
        _ => 500,
    }
}

impl MatrixError {
    pub fn new(errcode: &'static str, error: impl Into<String>) -> Self {
        Self {
            errcode,
            error: error.into(),
            status_override: None,
            extra: Map::new(),
            bare: false,
        }
    }

    /// A 401 whose body is exactly `body`: the user-interactive auth challenge.
    pub fn auth_challenge(body: Map<String, Value>) -> Self {
        Self {
            errcode: "M_UNAUTHORIZED",
            error: "User-interactive authentication required".into(),
            status_override: None,
            extra: body,
            bare: true,
        }
    }

    /// Overrides the table's status, for the few codes the spec answers with another.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status_override = Some(status);
        self
    }

    pub fn with_extra(mut self, key: &str, value: Value) -> Self {
        self.extra.insert(key.to_owned(), value);
        self
    }

    pub fn status(&self) -> u16 {
        self.status_override.unwrap_or_else(|| status_for(self.errcode))
    }

    pub fn body(&self) -> Value {
        let mut body = self.extra.clone();
        if !self.bare {
            body.insert("errcode".into(), json!(self.errcode));
            body.insert("error".into(), json!(self.error));
        }
        Value::Object(body)
    }

    // Constructors for the common cases, named after the spec's codes.

    pub fn unrecognized() -> Self {
        Self::new("M_UNRECOGNIZED", "Unrecognized request")
    }
    pub fn method_not_allowed() -> Self {
        Self::new("M_UNRECOGNIZED", "Method not allowed for this endpoint").with_status(405)
    }
    pub fn not_json() -> Self {
        Self::new("M_NOT_JSON", "Request body is not valid JSON")
    }
    pub fn bad_json(error: impl Into<String>) -> Self {
        Self::new("M_BAD_JSON", error)
    }
    pub fn too_large(limit: usize) -> Self {
        Self::new("M_TOO_LARGE", format!("Request body exceeds {limit} bytes"))
    }
    pub fn not_found(error: impl Into<String>) -> Self {
        Self::new("M_NOT_FOUND", error)
    }
    pub fn forbidden(error: impl Into<String>) -> Self {
        Self::new("M_FORBIDDEN", error)
    }
    pub fn missing_param(error: impl Into<String>) -> Self {
        Self::new("M_MISSING_PARAM", error)
    }
    pub fn invalid_param(error: impl Into<String>) -> Self {
        Self::new("M_INVALID_PARAM", error)
    }
    pub fn missing_token() -> Self {
        Self::new("M_MISSING_TOKEN", "Missing access token")
    }
    pub fn unknown_token() -> Self {
        Self::new("M_UNKNOWN_TOKEN", "Unknown access token").with_extra("soft_logout", json!(false))
    }
    pub fn limit_exceeded(retry_after_ms: u64) -> Self {
        Self::new("M_LIMIT_EXCEEDED", "Too many requests").with_extra("retry_after_ms", json!(retry_after_ms))
    }
    /// Rebuilds an error answered by a Durable Object. Codes outside the table keep
    /// their status but are reported as `M_UNKNOWN`.
    pub fn from_parts(status: u16, errcode: &str, error: impl Into<String>) -> Self {
        let code = KNOWN_CODES
            .iter()
            .find(|c| **c == errcode)
            .copied()
            .unwrap_or("M_UNKNOWN");
        let err = Self::new(code, error);
        if err.status() == status {
            err
        } else {
            err.with_status(status)
        }
    }

    /// An internal failure. The detail is for the log only; the client sees a generic text.
    pub fn internal() -> Self {
        Self::new("M_UNKNOWN", "Internal server error")
    }
}

impl std::fmt::Display for MatrixError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.errcode, self.status(), self.error)
    }
}

impl std::error::Error for MatrixError {}

impl From<crate::storage::StorageError> for MatrixError {
    /// Storage failures are internal: logged with their detail, answered with a 500.
    fn from(e: crate::storage::StorageError) -> Self {
        crate::platform::log_error(&e.to_string());
        MatrixError::internal()
    }
}

/// Logs an internal failure and turns it into a 500.
pub fn internal(detail: impl std::fmt::Display) -> MatrixError {
    crate::platform::log_error(&detail.to_string());
    MatrixError::internal()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_maps_codes_to_statuses() {
        assert_eq!(MatrixError::unrecognized().status(), 404);
        assert_eq!(MatrixError::method_not_allowed().status(), 405);
        assert_eq!(MatrixError::not_json().status(), 400);
        assert_eq!(MatrixError::too_large(1).status(), 413);
        assert_eq!(MatrixError::unknown_token().status(), 401);
        assert_eq!(MatrixError::missing_token().status(), 401);
        assert_eq!(MatrixError::forbidden("x").status(), 403);
        assert_eq!(MatrixError::limit_exceeded(5).status(), 429);
        assert_eq!(MatrixError::internal().status(), 500);
    }

    #[test]
    fn body_carries_code_text_and_extra_fields() {
        let body = MatrixError::unknown_token().body();
        assert_eq!(body["errcode"], "M_UNKNOWN_TOKEN");
        assert_eq!(body["soft_logout"], false);
        let body = MatrixError::limit_exceeded(1500).body();
        assert_eq!(body["retry_after_ms"], 1500);
    }
}
