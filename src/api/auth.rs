//! Request authentication: the access token (from `Authorization: Bearer` or the
//! `access_token` query parameter) to a `Session`, and user-interactive auth (`uia`).

pub mod token_cache;
pub mod uia;

use super::http::HttpRequest;
use super::MatrixError;
use crate::core::accounts::token::token_hash;
use crate::platform::Ctx;
use crate::storage::devices;

/// Who is making an authenticated request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user_id: String,
    pub device_id: String,
    pub is_admin: bool,
    /// A guest account: only the guest API (`api::guest_allowed`).
    pub is_guest: bool,
}

/// The access token a request carries, if any.
pub fn access_token(req: &HttpRequest) -> Option<&str> {
    if let Some(value) = req.header("authorization") {
        let (scheme, token) = value.trim().split_once(' ')?;
        let token = token.trim();
        return (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token);
    }
    req.query_param("access_token").filter(|t| !t.is_empty())
}

/// The session of the request's access token: 401 `M_MISSING_TOKEN` without one, 401
/// `M_UNKNOWN_TOKEN` (`soft_logout: false`) for a token that is unknown, revoked, or
/// belongs to a deactivated account.
pub async fn require_user(ctx: &Ctx, req: &HttpRequest) -> Result<Session, MatrixError> {
    let token = access_token(req).ok_or_else(MatrixError::missing_token)?;
    let hash = token_hash(token);
    let now = ctx.now_ms();
    if let Some(session) = token_cache::get(&hash, now) {
        return guest_check(ctx, session);
    }
    let generation = token_cache::generation();
    let owner = devices::token_owner(&ctx.db()?, &hash)
        .await?
        .ok_or_else(MatrixError::unknown_token)?;
    let session = Session {
        user_id: owner.user_id,
        device_id: owner.device_id,
        is_admin: owner.is_admin,
        is_guest: owner.is_guest,
    };
    token_cache::put(&hash, session.clone(), generation, now);
    guest_check(ctx, session)
}

/// Guests reach only the endpoints the spec opens to them (the router marks the
/// request); anything else is 403 `M_GUEST_ACCESS_FORBIDDEN`.
fn guest_check(ctx: &Ctx, session: Session) -> Result<Session, MatrixError> {
    if session.is_guest && !ctx.guest_allowed.get() {
        return Err(MatrixError::new(
            "M_GUEST_ACCESS_FORBIDDEN",
            "Guest accounts may not use this endpoint",
        ));
    }
    Ok(session)
}

/// Like `require_user`, but also 403 `M_FORBIDDEN` unless the user is a server admin.
pub async fn require_admin(ctx: &Ctx, req: &HttpRequest) -> Result<Session, MatrixError> {
    let session = require_user(ctx, req).await?;
    if !session.is_admin {
        return Err(MatrixError::forbidden("You are not a server admin"));
    }
    Ok(session)
}

/// The client's address for rate limiting: `CF-Connecting-IP`, or a constant when
/// running without Cloudflare's edge in front.
pub fn client_ip(req: &HttpRequest) -> &str {
    req.header("cf-connecting-ip")
        .map(str::trim)
        .filter(|ip| !ip.is_empty())
        .unwrap_or("local")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::http::Method;

    fn req(headers: &[(&str, &str)], query: &[(&str, &str)]) -> HttpRequest {
        HttpRequest {
            method: Method::Get,
            path: "/".into(),
            query: query
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            raw_query: None,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: vec![],
        }
    }

    #[test]
    fn token_from_header_or_query() {
        assert_eq!(
            access_token(&req(&[("authorization", "Bearer abc")], &[])),
            Some("abc")
        );
        assert_eq!(
            access_token(&req(&[("authorization", "bearer  abc ")], &[])),
            Some("abc")
        );
        assert_eq!(access_token(&req(&[], &[("access_token", "q")])), Some("q"));
        assert_eq!(access_token(&req(&[], &[])), None);
        assert_eq!(access_token(&req(&[("authorization", "Basic abc")], &[])), None);
        assert_eq!(access_token(&req(&[("authorization", "Bearer ")], &[])), None);
        assert_eq!(access_token(&req(&[], &[("access_token", "")])), None);
    }

    #[test]
    fn client_ip_falls_back() {
        assert_eq!(
            client_ip(&req(&[("cf-connecting-ip", "203.0.113.9")], &[])),
            "203.0.113.9"
        );
        assert_eq!(client_ip(&req(&[], &[])), "local");
    }
}
