//! Server keys: `GET /_matrix/key/v2/server` (this server's own) and the notary
//! endpoints `GET /_matrix/key/v2/query/{serverName}` and `POST /_matrix/key/v2/query`,
//! which answer other servers' keys as their own signed responses, countersigned by
//! this server.

use ruma::CanonicalJsonObject;
use serde_json::{json, Value};

use crate::api::http::HttpRequest;
use crate::api::MatrixError;
use crate::config::Config;
use crate::core::keys::server_keys_response;
use crate::federation::keys::fetch_direct;
use crate::platform::Ctx;
use crate::storage::server_keys as store;

/// How long other servers may cache our key response.
pub const KEY_VALIDITY_MS: u64 = 7 * 24 * 60 * 60 * 1000;

/// Most servers one notary query asks about.
const MAX_SERVERS: usize = 50;

/// `GET /_matrix/key/v2/server`
pub fn server(config: &Config, now_ms: u64) -> Result<Value, MatrixError> {
    let body = server_keys_response(
        &config.server_name,
        &config.signing_key,
        &config.federation.old_verify_keys,
        now_ms + KEY_VALIDITY_MS,
    )
    .map_err(|_| MatrixError::internal())?;
    serde_json::to_value(body).map_err(|_| MatrixError::internal())
}

/// `server`'s key response valid at least until `minimum` (fetched again when the kept
/// one is older), countersigned by this server; `None` when it cannot be had.
async fn notarised(ctx: &Ctx, name: &str, minimum: u64) -> Result<Option<Value>, MatrixError> {
    let config = &ctx.config;
    if name == config.server_name {
        return server(config, ctx.now_ms()).map(Some);
    }
    if ruma::ServerName::parse(name).is_err() {
        return Ok(None);
    }
    let db = ctx.db()?;
    let mut kept = store::response(&db, name).await?;
    if kept.as_ref().is_none_or(|(_, until)| *until < minimum) {
        fetch_direct(ctx, name).await;
        kept = store::response(&db, name).await?;
    }
    let Some((text, _)) = kept else {
        return Ok(None);
    };
    let Ok(mut object) = serde_json::from_str::<CanonicalJsonObject>(&text) else {
        return Ok(None);
    };
    config
        .signing_key
        .sign_object(&config.server_name, &mut object)
        .map_err(|_| MatrixError::internal())?;
    Ok(Some(
        serde_json::to_value(object).map_err(|_| MatrixError::internal())?,
    ))
}

/// `GET /_matrix/key/v2/query/{serverName}`
pub async fn query_server(ctx: &Ctx, req: &HttpRequest, server: &str) -> Result<Value, MatrixError> {
    let minimum = match req.query_param("minimum_valid_until_ts") {
        Some(v) => v
            .parse::<u64>()
            .map_err(|_| MatrixError::invalid_param("minimum_valid_until_ts must be an integer"))?,
        None => 0,
    };
    let keys: Vec<Value> = notarised(ctx, server, minimum).await?.into_iter().collect();
    Ok(json!({ "server_keys": keys }))
}

/// `POST /_matrix/key/v2/query`
pub async fn query(ctx: &Ctx, req: &HttpRequest) -> Result<Value, MatrixError> {
    let body = req.json_value()?;
    let servers = body
        .get("server_keys")
        .and_then(Value::as_object)
        .ok_or_else(|| MatrixError::bad_json("server_keys must be an object"))?;
    if servers.len() > MAX_SERVERS {
        return Err(MatrixError::invalid_param(format!(
            "At most {MAX_SERVERS} servers per query"
        )));
    }
    let mut out = Vec::new();
    for (server, wanted) in servers {
        let wanted = wanted
            .as_object()
            .ok_or_else(|| MatrixError::bad_json("server_keys values must be objects"))?;
        let minimum = wanted
            .values()
            .filter_map(|c| c.get("minimum_valid_until_ts").and_then(Value::as_u64))
            .max()
            .unwrap_or(0);
        out.extend(notarised(ctx, server, minimum).await?);
    }
    Ok(json!({ "server_keys": out }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_config;
    use crate::core::keys::{public_key_map, verify_object};

    #[test]
    fn response_is_signed_with_the_published_key() {
        let config = test_config("hs.test", "https://hs.test");
        let body = server(&config, 1_000).expect("body");
        assert_eq!(body["server_name"], "hs.test");
        assert_eq!(body["valid_until_ts"], 1_000 + KEY_VALIDITY_MS);
        let key_id = config.signing_key.key_id();
        let published = body["verify_keys"][&key_id]["key"].as_str().expect("key");
        let keys = public_key_map(&[("hs.test", &key_id, published)]).expect("map");
        let object = serde_json::from_value(body).expect("canonical");
        assert!(verify_object(&keys, &object));
    }
}
