//! Cross-signing: uploading the master, self-signing and user-signing keys, and
//! uploading signatures of devices and of other users' master keys.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::keys::{is_local, key_error};
use crate::api::auth::{require_user, uia};
use crate::api::http::HttpRequest;
use crate::api::MatrixError;
use crate::core::e2ee::{self, CrossSigningKind, KeyCheck};
use crate::platform::Ctx;
use crate::storage::cross_signing::{self, StoredSignature};
use crate::storage::{device_lists, e2e_keys};

/// `POST /_matrix/client/v3/keys/device_signing/upload`
///
/// User-interactive auth (password) is required to replace existing keys; a first
/// upload, or one that repeats the stored keys, needs none (as MSC3967 allows).
pub async fn upload_keys(ctx: &Ctx, req: &HttpRequest) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    let body = req.json_value()?;
    let user_id = session.user_id.as_str();
    let db = ctx.db()?;
    let existing = cross_signing::keys_of_users(&db, &[user_id]).await?;
    let stored = |kind: CrossSigningKind| existing.iter().find(|k| k.kind == kind.usage());

    // 1. Shapes.
    let mut uploads: Vec<(CrossSigningKind, &Value, String)> = Vec::new();
    for kind in CrossSigningKind::ALL {
        match body.get(kind.upload_field()) {
            None | Some(Value::Null) => {}
            Some(value) => {
                let public = e2ee::check_cross_signing_key(value, user_id, kind).map_err(key_error)?;
                uploads.push((kind, value, public));
            }
        }
    }
    // 2. Self-signing and user-signing keys must be signed by the (new or current) master.
    let master = uploads
        .iter()
        .find(|(k, _, _)| *k == CrossSigningKind::Master)
        .map(|(_, _, p)| p.clone())
        .or_else(|| stored(CrossSigningKind::Master).map(|k| k.public_key.clone()));
    for (kind, value, _) in &uploads {
        if *kind == CrossSigningKind::Master {
            continue;
        }
        let master = master
            .as_deref()
            .ok_or_else(|| MatrixError::invalid_param("Upload a master key first"))?;
        let object = value
            .as_object()
            .ok_or_else(|| MatrixError::bad_json("Key must be an object"))?;
        e2ee::verify_signature(object, user_id, &format!("ed25519:{master}"), master).map_err(key_error)?;
    }
    if uploads.is_empty() {
        return Ok(json!({}));
    }
    // 3. Auth, unless nothing would be replaced.
    let replaces = uploads.iter().any(|(kind, value, _)| match stored(*kind) {
        None => false,
        Some(old) => {
            let old: Option<Map<String, Value>> = serde_json::from_str(&old.key_json).ok();
            match (old, value.as_object()) {
                (Some(old), Some(new)) => !e2ee::same_key(&old, new),
                _ => true,
            }
        }
    });
    if replaces && stored(CrossSigningKind::Master).is_some() {
        uia::require_password(ctx, req, &session, &body, "replace cross-signing keys").await?;
    }
    // 4. Store, and tell the user's observers.
    let mut stmts = Vec::new();
    for (kind, value, public) in &uploads {
        let text = serde_json::to_string(value).map_err(crate::api::error::internal)?;
        stmts.push(cross_signing::put_key(user_id, kind.usage(), public, &text));
    }
    stmts.push(device_lists::changed(user_id));
    db.batch(stmts).await?;
    super::keys::wake_device_list_observers(ctx, &[user_id]).await;
    // Other servers sharing a room learn of the keys others may see (never the
    // user-signing key).
    let mut update = json!({ "user_id": user_id });
    for (kind, value, _) in &uploads {
        match kind {
            CrossSigningKind::Master => update["master_key"] = (*value).clone(),
            CrossSigningKind::SelfSigning => update["self_signing_key"] = (*value).clone(),
            _ => {}
        }
    }
    if update.as_object().is_some_and(|o| o.len() > 1) {
        crate::federation::sender::send_user_edu(
            ctx,
            user_id,
            json!({"edu_type": "m.signing_key_update", "content": update}),
        )
        .await;
    }
    Ok(json!({}))
}

fn failure(e: KeyCheck) -> Value {
    let err = key_error(e);
    json!({"errcode": err.errcode, "error": err.error})
}

fn not_found(text: &str) -> Value {
    json!({"errcode": "M_NOT_FOUND", "error": text})
}

/// `POST /_matrix/client/v3/keys/signatures/upload`
///
/// Accepts, per key: signatures of the user's own devices by their self-signing key,
/// of their own master key by their devices, and of other local users' master keys by
/// their user-signing key. Anything else is reported under `failures`, per key, and
/// nothing of it is stored.
pub async fn upload_signatures(ctx: &Ctx, req: &HttpRequest) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    let body = req.json_value()?;
    let body = body
        .as_object()
        .ok_or_else(|| MatrixError::bad_json("Body must be an object"))?;
    let me = session.user_id.as_str();
    let server = &ctx.config.server_name;
    let db = ctx.db()?;

    let mut targets: Vec<&str> = body
        .keys()
        .map(String::as_str)
        .filter(|u| is_local(u, server))
        .collect();
    if !targets.contains(&me) {
        targets.push(me);
    }
    let xsign = cross_signing::keys_of_users(&db, &targets).await?;
    let key_of = |user: &str, kind: CrossSigningKind| {
        xsign.iter().find(|k| k.user_id == user && k.kind == kind.usage())
    };
    let my_devices = e2e_keys::device_keys_of_users(&db, &[me]).await?;

    let mut failures: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    let mut stmts = Vec::new();
    let mut touched: Vec<&str> = Vec::new();
    for (target_user, keys) in body {
        let Some(keys) = keys.as_object() else {
            return Err(MatrixError::bad_json("Values must be objects of keys"));
        };
        for (key_id, object) in keys {
            let Some(object) = object.as_object() else {
                failures.entry(target_user.clone()).or_default().insert(
                    key_id.clone(),
                    json!({"errcode": "M_BAD_JSON", "error": "Key must be an object"}),
                );
                continue;
            };
            // The stored key being signed and the keys allowed to sign it: (key id, public key).
            let (stored_json, signers): (Option<&str>, Vec<(String, String)>) =
                if !is_local(target_user, server) {
                    (None, Vec::new())
                } else if target_user == me {
                    if let Some(master) =
                        key_of(me, CrossSigningKind::Master).filter(|k| &k.public_key == key_id)
                    {
                        let signers = my_devices
                            .iter()
                            .filter_map(|d| {
                                let keys: Value = serde_json::from_str(&d.key_json).ok()?;
                                let id = format!("ed25519:{}", d.device_id);
                                let public = keys.get("keys")?.get(&id)?.as_str()?.to_owned();
                                Some((id, public))
                            })
                            .collect();
                        (Some(master.key_json.as_str()), signers)
                    } else if let Some(device) = my_devices.iter().find(|d| &d.device_id == key_id) {
                        let signers = key_of(me, CrossSigningKind::SelfSigning)
                            .map(|k| vec![(format!("ed25519:{}", k.public_key), k.public_key.clone())])
                            .unwrap_or_default();
                        (Some(device.key_json.as_str()), signers)
                    } else {
                        (None, Vec::new())
                    }
                } else {
                    match key_of(target_user, CrossSigningKind::Master).filter(|k| &k.public_key == key_id) {
                        Some(master) => {
                            let signers = key_of(me, CrossSigningKind::UserSigning)
                                .map(|k| vec![(format!("ed25519:{}", k.public_key), k.public_key.clone())])
                                .unwrap_or_default();
                            (Some(master.key_json.as_str()), signers)
                        }
                        None => (None, Vec::new()),
                    }
                };
            let result = check_signatures(target_user, key_id, object, stored_json, &signers, me);
            match result {
                Ok(sigs) => {
                    stmts.extend(sigs.iter().map(cross_signing::put_signature));
                    if !touched.contains(&target_user.as_str()) {
                        touched.push(target_user);
                    }
                }
                Err(f) => {
                    failures
                        .entry(target_user.clone())
                        .or_default()
                        .insert(key_id.clone(), f);
                }
            }
        }
    }
    if !stmts.is_empty() {
        stmts.extend(touched.iter().map(|u| device_lists::changed(u)));
        db.batch(stmts).await?;
        super::keys::wake_device_list_observers(ctx, &touched).await;
    }
    Ok(json!({ "failures": failures }))
}

/// Checks one signed key of a `/keys/signatures/upload` body against the stored key
/// and the allowed signers; returns the signatures to store.
fn check_signatures(
    target_user: &str,
    key_id: &str,
    object: &Map<String, Value>,
    stored_json: Option<&str>,
    signers: &[(String, String)],
    me: &str,
) -> Result<Vec<StoredSignature>, Value> {
    let stored: Map<String, Value> = stored_json
        .and_then(|j| serde_json::from_str(j).ok())
        .ok_or_else(|| not_found("Unknown key"))?;
    if !e2ee::same_key(&stored, object) {
        return Err(failure(KeyCheck::Invalid(
            "Key does not match the stored key".into(),
        )));
    }
    let mut out = Vec::new();
    for (signer_key_id, public) in signers {
        let Some(sig) = e2ee::signature_of(object, me, signer_key_id) else {
            continue;
        };
        if e2ee::signature_of(&stored, me, signer_key_id) == Some(sig) {
            continue; // already part of the stored key
        }
        e2ee::verify_raw(object, sig, public, signer_key_id).map_err(failure)?;
        out.push(StoredSignature {
            target_user_id: target_user.to_owned(),
            target_key_id: key_id.to_owned(),
            signer_user_id: me.to_owned(),
            signer_key_id: signer_key_id.clone(),
            signature: sig.to_owned(),
        });
    }
    if out.is_empty() {
        return Err(failure(KeyCheck::BadSignature(
            "No new signature by a key allowed to sign this key".into(),
        )));
    }
    Ok(out)
}
