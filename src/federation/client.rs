//! Signed requests to other servers: resolve the destination, refuse targets the
//! settings forbid (allow/deny lists; loopback, private and link-local addresses unless
//! local development allows loopback), sign with `X-Matrix`, send, read JSON.

use ruma::CanonicalJsonValue;
use serde_json::Value;

use crate::core::http1::Response;
use crate::core::server_name::{is_internal_ip, is_loopback_host, Target};
use crate::core::xmatrix;
use crate::platform::net::{https_fetch, tcp_exchange, NetError, Outbound};
use crate::platform::Ctx;

use super::resolve::resolve;

/// Largest answer accepted from another server (a `/state` of a big room is large).
pub const MAX_RESPONSE: usize = 32 * 1024 * 1024;
const TIMEOUT_MS: u64 = 30_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FedError {
    #[error("federation with {0} is not allowed here")]
    Forbidden(String),
    #[error("cannot reach the server: {0}")]
    Unreachable(String),
    #[error("the server answered {status} {errcode}")]
    Status {
        status: u16,
        errcode: String,
        body: Value,
    },
    #[error("the server's answer is not JSON")]
    NotJson,
    #[error("{0}")]
    Internal(String),
}

impl From<NetError> for FedError {
    fn from(e: NetError) -> Self {
        FedError::Unreachable(e.to_string())
    }
}

/// Whether a target may be contacted, and with TLS (`Ok(false)`: plain HTTP, only to
/// loopback in local development).
fn transport_for(ctx: &Ctx, target: &Target) -> Result<bool, FedError> {
    let loopback = is_loopback_host(&target.host);
    if loopback {
        return if ctx.config.federation.loopback_plaintext {
            Ok(false)
        } else {
            Err(FedError::Forbidden(format!("{} (loopback)", target.host)))
        };
    }
    if target.host.parse().is_ok_and(is_internal_ip) {
        return Err(FedError::Forbidden(format!("{} (internal address)", target.host)));
    }
    Ok(true)
}

/// Sends a signed request to `destination` and returns its JSON answer (any 2xx);
/// other statuses are `FedError::Status` with the body.
pub async fn request(
    ctx: &Ctx,
    destination: &str,
    method: &str,
    target: &str,
    body: Option<&Value>,
) -> Result<Value, FedError> {
    let response = exchange(
        ctx,
        destination,
        method,
        target,
        body,
        "application/json",
        MAX_RESPONSE,
    )
    .await?;
    let value: Value = serde_json::from_slice(&response.body).map_err(|_| FedError::NotJson)?;
    if (200..300).contains(&response.status) {
        return Ok(value);
    }
    Err(FedError::Status {
        status: response.status,
        errcode: value["errcode"].as_str().unwrap_or("M_UNKNOWN").to_owned(),
        body: value,
    })
}

/// Sends a signed `GET` to `destination` and returns its answer as it came, whatever
/// its status and type, the body at most `limit` bytes (media).
pub async fn get_raw(ctx: &Ctx, destination: &str, target: &str, limit: usize) -> Result<Response, FedError> {
    exchange(ctx, destination, "GET", target, None, "*/*", limit).await
}

async fn exchange(
    ctx: &Ctx,
    destination: &str,
    method: &str,
    target: &str,
    body: Option<&Value>,
    accept: &str,
    limit: usize,
) -> Result<Response, FedError> {
    let config = &ctx.config;
    if !config.federation.server_allowed(destination) || destination == config.server_name {
        return Err(FedError::Forbidden(destination.to_owned()));
    }
    let content = body
        .map(|b| serde_json::from_value::<CanonicalJsonValue>(b.clone()))
        .transpose()
        .map_err(|e| FedError::Internal(e.to_string()))?;
    let authorization = xmatrix::authorization(
        &config.signing_key,
        &config.server_name,
        destination,
        method,
        target,
        content,
    )
    .map_err(|e| FedError::Internal(e.to_string()))?;
    let bytes = body
        .map(|b| serde_json::to_vec(b).unwrap_or_default())
        .unwrap_or_default();
    let mut headers = vec![("Authorization", authorization.as_str()), ("Accept", accept)];
    if body.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    let resolved = resolve(ctx, destination).await?;
    let tls = transport_for(ctx, &resolved)?;
    let outbound = Outbound {
        method,
        target,
        headers: &headers,
        body: &bytes,
        limit,
        timeout_ms: TIMEOUT_MS,
    };
    let plain_host = resolved
        .host_header
        .strip_suffix(":443")
        .unwrap_or(&resolved.host_header);
    let response = if tls && resolved.port == 443 && plain_host == resolved.host {
        https_fetch(&resolved.host, &outbound).await?
    } else {
        tcp_exchange(
            &resolved.host,
            resolved.port,
            tls,
            &resolved.host_header,
            &outbound,
        )
        .await?
    };
    Ok(response)
}

/// Fetches a URL another server pointed to (the `Location` of a media answer), unsigned,
/// with a federation request's guards: `https` (plain `http` only to loopback in local
/// development), no internal addresses, bounded in time and size, redirects not followed.
pub async fn get_url(ctx: &Ctx, url: &str, limit: usize) -> Result<Response, FedError> {
    use crate::core::server_name::ServerName;
    let refuse = || FedError::Forbidden(format!("media location {url}"));
    let (scheme, rest) = url.split_once("://").ok_or_else(refuse)?;
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_owned()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_owned()),
    };
    if authority.contains('@') {
        return Err(refuse());
    }
    let name = ServerName::parse(authority).ok_or_else(refuse)?;
    let secure = match scheme.to_ascii_lowercase().as_str() {
        "https" => true,
        "http" => false,
        _ => return Err(refuse()),
    };
    let port = name.port.unwrap_or(if secure { 443 } else { 80 });
    let target = Target {
        host: name.host.clone(),
        port,
        host_header: name.authority(),
    };
    // Loopback (local development only) speaks what the URL says; anything else HTTPS.
    let tls = match transport_for(ctx, &target)? {
        false => secure,
        true if secure => true,
        true => return Err(refuse()),
    };
    let headers = [("Accept", "*/*")];
    let outbound = Outbound {
        method: "GET",
        target: &path,
        headers: &headers,
        body: &[],
        limit,
        timeout_ms: TIMEOUT_MS,
    };
    send_to(&name.url_host(), &target, tls, &outbound).await
}

/// Sends `outbound` to `target`: `fetch()` for HTTPS on port 443, a TCP socket otherwise.
async fn send_to(
    url_host: &str,
    target: &Target,
    tls: bool,
    outbound: &Outbound<'_>,
) -> Result<Response, FedError> {
    let response = if tls && target.port == 443 {
        https_fetch(url_host, outbound).await?
    } else {
        tcp_exchange(&target.host, target.port, tls, &target.host_header, outbound).await?
    };
    Ok(response)
}

/// An unsigned JSON request to a service named by `host[:port]` (an identity server):
/// HTTPS, or plain HTTP to loopback in local development, with a federation request's
/// guards. `bearer` is sent as the access token. Any 2xx answers its JSON.
pub async fn service_request(
    ctx: &Ctx,
    authority: &str,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<&Value>,
) -> Result<Value, FedError> {
    use crate::core::server_name::ServerName;
    let name = ServerName::parse(authority).ok_or_else(|| FedError::Forbidden(authority.to_owned()))?;
    let target = Target {
        host: name.host.clone(),
        port: name.port.unwrap_or(443),
        host_header: name.authority(),
    };
    let tls = transport_for(ctx, &target)?;
    let auth = bearer.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Accept", "application/json")];
    if body.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    if let Some(auth) = &auth {
        headers.push(("Authorization", auth.as_str()));
    }
    let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    let outbound = Outbound {
        method,
        target: path,
        headers: &headers,
        body: &bytes,
        limit: 1024 * 1024,
        timeout_ms: TIMEOUT_MS,
    };
    let response = send_to(&name.url_host(), &target, tls, &outbound).await?;
    let value: Value = serde_json::from_slice(&response.body).map_err(|_| FedError::NotJson)?;
    if (200..300).contains(&response.status) {
        Ok(value)
    } else {
        Err(FedError::Status {
            status: response.status,
            errcode: value["errcode"].as_str().unwrap_or("M_UNKNOWN").to_owned(),
            body: value,
        })
    }
}
