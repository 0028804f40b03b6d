//! Finding where another server listens (server-server API, "Resolving server
//! names"): IP literals and explicit ports directly; otherwise the well-known
//! delegation, then SRV (`_matrix-fed._tcp`, then `_matrix._tcp`) through
//! DNS-over-HTTPS, then port 8448. Results are kept in D1 for as long as the
//! well-known allows (a day by default, two at most), an hour when there was none.

use serde_json::Value;

use crate::core::server_name::{
    default_target, delegated_target, direct_target, srv_target, well_known_server,
};
use crate::core::server_name::{ServerName, Target};
use crate::platform::net::{https_fetch, Outbound};
use crate::platform::{log_error, Ctx};
use crate::storage::federation as store;

use super::FedError;

const HOUR_MS: u64 = 60 * 60 * 1000;
const WELL_KNOWN_DEFAULT_MS: u64 = 24 * HOUR_MS;
const WELL_KNOWN_MAX_MS: u64 = 48 * HOUR_MS;

/// Where `server_name` is reached.
pub async fn resolve(ctx: &Ctx, server_name: &str) -> Result<Target, FedError> {
    let name =
        ServerName::parse(server_name).ok_or_else(|| FedError::Unreachable("invalid server name".into()))?;
    if let Some(target) = direct_target(&name) {
        return Ok(target);
    }
    let now = ctx.now_ms();
    let db = ctx.db().map_err(|e| FedError::Internal(e.to_string()))?;
    if let Ok(Some(target)) = store::resolution(&db, server_name, now).await {
        return Ok(target);
    }
    let (target, keep_ms) = match well_known(&name.host).await {
        Some((delegated, keep_ms)) => {
            let target = match delegated_target(&delegated) {
                Some(t) => t,
                None => match srv(ctx, &delegated.host).await {
                    Some(mut t) => {
                        t.host_header = delegated.host.clone();
                        t
                    }
                    None => default_target(&delegated.host),
                },
            };
            (target, keep_ms)
        }
        None => (
            srv(ctx, &name.host)
                .await
                .unwrap_or_else(|| default_target(&name.host)),
            HOUR_MS,
        ),
    };
    if let Err(e) = store::record_resolution(&db, server_name, &target, now + keep_ms).await {
        log_error(&format!("keeping the resolution of {server_name}: {e}"));
    }
    Ok(target)
}

/// The well-known delegation of `host`, and for how long it may be kept.
async fn well_known(host: &str) -> Option<(ServerName, u64)> {
    let response = https_fetch(
        host,
        &Outbound {
            method: "GET",
            target: "/.well-known/matrix/server",
            headers: &[("Accept", "application/json")],
            body: b"",
            limit: 64 * 1024,
            timeout_ms: 10_000,
        },
    )
    .await
    .ok()?;
    if response.status != 200 {
        return None;
    }
    let body: Value = serde_json::from_slice(&response.body).ok()?;
    let delegated = well_known_server(&body)?;
    let keep = response
        .header("cache-control")
        .and_then(|cc| {
            cc.split(',')
                .find_map(|d| d.trim().strip_prefix("max-age="))
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
        .map_or(WELL_KNOWN_DEFAULT_MS, |s| {
            s.saturating_mul(1000).min(WELL_KNOWN_MAX_MS)
        });
    Some((delegated, keep))
}

/// The SRV target for `host`, when a resolver is configured and has one.
async fn srv(ctx: &Ctx, host: &str) -> Option<Target> {
    let resolver = ctx.config.federation.dns_resolver.as_deref()?;
    let (authority, path) = resolver
        .strip_prefix("https://")
        .map(|rest| rest.split_at(rest.find('/').unwrap_or(rest.len())))?;
    for service in ["_matrix-fed._tcp", "_matrix._tcp"] {
        let target = format!(
            "{}?name={service}.{host}&type=SRV",
            if path.is_empty() { "/" } else { path }
        );
        let response = https_fetch(
            authority,
            &Outbound {
                method: "GET",
                target: &target,
                headers: &[("Accept", "application/dns-json")],
                body: b"",
                limit: 64 * 1024,
                timeout_ms: 5_000,
            },
        )
        .await
        .ok()?;
        let answer: Value = serde_json::from_slice(&response.body).ok()?;
        if let Some(t) = srv_target(&answer, host) {
            return Some(t);
        }
    }
    None
}
