//! Other servers' signing keys: kept in D1 (and for a minute in the isolate), fetched
//! from the server itself (`/_matrix/key/v2/server`) on a miss, then from the trusted
//! notaries (`/_matrix/key/v2/query`), whose answers must carry both the server's
//! signature and the notary's.

use std::cell::RefCell;
use std::collections::HashMap;

use serde_json::{json, Value};

use crate::core::server_keys::{check_response, KnownKey};
use crate::platform::{log_error, Ctx};
use crate::storage::server_keys as store;

use super::client::request;

/// How long an isolate trusts its own copy of a key before asking D1 again.
const MEMORY_MS: u64 = 60_000;

thread_local! {
    static MEMORY: RefCell<HashMap<(String, String), (KnownKey, u64)>> = RefCell::new(HashMap::new());
}

fn remembered(server: &str, key_id: &str, now: u64) -> Option<KnownKey> {
    MEMORY.with(|m| {
        m.borrow()
            .get(&(server.to_owned(), key_id.to_owned()))
            .filter(|(_, at)| now < at + MEMORY_MS)
            .map(|(k, _)| k.clone())
    })
}

fn remember(server: &str, keys: &[KnownKey], now: u64) {
    MEMORY.with(|m| {
        let mut m = m.borrow_mut();
        if m.len() > 10_000 {
            m.clear();
        }
        for k in keys {
            m.insert((server.to_owned(), k.key_id.clone()), (k.clone(), now));
        }
    });
}

/// What a key is needed for.
#[derive(Debug, Clone, Copy)]
pub enum Use {
    /// Authenticating a request now: a current key, valid now.
    Request,
    /// A signature made at this time (an event's `origin_server_ts`): old keys count
    /// until they expired.
    SignedAt(u64),
}

fn usable(key: &KnownKey, need: Use, now: u64) -> bool {
    match need {
        Use::Request => key.valid_for_request(now),
        Use::SignedAt(ts) => key.valid_at(ts),
    }
}

/// The key `key_id` of `server`, usable as `need` says; `None` when neither the
/// server nor a notary has one.
pub async fn key(ctx: &Ctx, server: &str, key_id: &str, need: Use) -> Result<Option<KnownKey>, String> {
    let now = ctx.now_ms();
    let config = &ctx.config;
    if server == config.server_name {
        return Ok(own_key(ctx, key_id));
    }
    if let Some(k) = remembered(server, key_id, now).filter(|k| usable(k, need, now)) {
        return Ok(Some(k));
    }
    let db = ctx.db().map_err(|e| e.to_string())?;
    let kept = store::of_server(&db, server).await.map_err(|e| e.to_string())?;
    remember(server, &kept, now);
    if let Some(k) = kept
        .into_iter()
        .find(|k| k.key_id == key_id && usable(k, need, now))
    {
        return Ok(Some(k));
    }
    // Ask the server itself, then each notary.
    let mut found = fetch_direct(ctx, server).await;
    if !found.iter().any(|k| k.key_id == key_id && usable(k, need, now)) {
        for notary in &config.federation.notaries_for(server) {
            found = fetch_from_notary(ctx, notary, server, key_id).await;
            if found.iter().any(|k| k.key_id == key_id && usable(k, need, now)) {
                break;
            }
        }
    }
    Ok(found
        .into_iter()
        .find(|k| k.key_id == key_id && usable(k, need, now)))
}

fn own_key(ctx: &Ctx, key_id: &str) -> Option<KnownKey> {
    let config = &ctx.config;
    if key_id == config.signing_key.key_id() {
        return Some(KnownKey {
            key_id: key_id.to_owned(),
            key: config.signing_key.public_key_base64(),
            valid_until_ts: u64::MAX,
            old: false,
        });
    }
    config
        .federation
        .old_verify_keys
        .iter()
        .find(|k| k.key_id == key_id)
        .map(|k| KnownKey {
            key_id: k.key_id.clone(),
            key: k.key.clone(),
            valid_until_ts: k.expired_ts,
            old: true,
        })
}

/// Checks and keeps one server's key response; returns its keys.
pub async fn accept_response(ctx: &Ctx, server: &str, response: &Value) -> Vec<KnownKey> {
    let now = ctx.now_ms();
    match check_response(response, server, now) {
        Ok(keys) => {
            let valid_until = response["valid_until_ts"].as_u64().unwrap_or(0);
            match ctx.db() {
                Ok(db) => {
                    let text = response.to_string();
                    if let Err(e) = store::store(&db, server, &keys, &text, valid_until, now).await {
                        log_error(&format!("keeping keys of {server}: {e}"));
                    }
                }
                Err(e) => log_error(&format!("keeping keys of {server}: {e}")),
            }
            remember(server, &keys, now);
            keys
        }
        Err(e) => {
            log_error(&format!("key response of {server} refused: {e}"));
            Vec::new()
        }
    }
}

/// `GET /_matrix/key/v2/server` on the server itself.
pub async fn fetch_direct(ctx: &Ctx, server: &str) -> Vec<KnownKey> {
    match request(ctx, server, "GET", "/_matrix/key/v2/server", None).await {
        Ok(response) => accept_response(ctx, server, &response).await,
        Err(e) => {
            log_error(&format!("fetching keys of {server}: {e}"));
            Vec::new()
        }
    }
}

/// `POST /_matrix/key/v2/query` on a notary, for `server`'s `key_id`.
async fn fetch_from_notary(ctx: &Ctx, notary: &str, server: &str, key_id: &str) -> Vec<KnownKey> {
    let body = json!({"server_keys": {server: {key_id: {}}}});
    let answer = match request(ctx, notary, "POST", "/_matrix/key/v2/query", Some(&body)).await {
        Ok(answer) => answer,
        Err(e) => {
            log_error(&format!("asking {notary} for keys of {server}: {e}"));
            return Vec::new();
        }
    };
    let mut keys = Vec::new();
    for entry in answer["server_keys"].as_array().into_iter().flatten() {
        if entry["server_name"].as_str() != Some(server) || !notary_signed(ctx, notary, entry).await {
            continue;
        }
        keys.extend(accept_response(ctx, server, entry).await);
    }
    keys
}

/// Whether `entry` carries a valid signature of `notary` (with a key fetched from the
/// notary itself).
async fn notary_signed(ctx: &Ctx, notary: &str, entry: &Value) -> bool {
    let Some(signatures) = entry["signatures"][notary].as_object() else {
        return false;
    };
    let Ok(object) = serde_json::from_value::<ruma::CanonicalJsonObject>(entry.clone()) else {
        return false;
    };
    for key_id in signatures.keys() {
        let Ok(Some(key)) = Box::pin(key(ctx, notary, key_id, Use::Request)).await else {
            continue;
        };
        if crate::core::keys::signed_by(&object, notary, key_id, &key.key) {
            return true;
        }
    }
    false
}
