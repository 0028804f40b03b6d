//! Device keys, one-time keys and fallback keys (`e2e_device_keys`,
//! `e2e_one_time_keys`, `e2e_fallback_keys`).
//!
//! For the sync engine: `one_time_key_counts` → `device_one_time_keys_count`,
//! `unused_fallback_key_types` → `device_unused_fallback_key_types`.
//! For device deletion: `delete_device` / `delete_devices_except` (already part of
//! `storage::devices::delete` / `delete_all_except`).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{args, device_lists, stmt, Db, Result, Stmt};

/// The algorithm clients count one-time keys by; always reported, even at 0.
pub const SIGNED_CURVE25519: &str = "signed_curve25519";

/// Stored device keys of one device.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StoredDeviceKeys {
    pub key_json: String,
    pub ed25519: String,
}

pub async fn device_keys(db: &Db, user_id: &str, device_id: &str) -> Result<Option<StoredDeviceKeys>> {
    db.first(
        "SELECT key_json, ed25519 FROM e2e_device_keys WHERE user_id = ?1 AND device_id = ?2",
        args![user_id, device_id],
    )
    .await
}

/// Device keys of several users, with the device's display name.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct QueriedDevice {
    pub user_id: String,
    pub device_id: String,
    pub key_json: String,
    pub display_name: Option<String>,
}

/// Every device with keys of the users in `user_ids` (one statement, any number).
pub async fn device_keys_of_users(db: &Db, user_ids: &[&str]) -> Result<Vec<QueriedDevice>> {
    let users = serde_json::to_string(user_ids).unwrap_or_else(|_| "[]".into());
    db.all(
        "SELECT k.user_id, k.device_id, k.key_json, d.display_name FROM e2e_device_keys k \
         JOIN devices d ON d.user_id = k.user_id AND d.device_id = k.device_id \
         WHERE k.user_id IN (SELECT value FROM json_each(?1))",
        args![users],
    )
    .await
}

/// One key to store: `(algorithm, key id, key JSON text)`.
pub type KeyEntry = (String, String, String);

/// What one `/keys/upload` writes.
pub struct Upload<'a> {
    pub user_id: &'a str,
    pub device_id: &'a str,
    /// `(key JSON text, ed25519 key)`, when the device keys are new or changed.
    pub device_keys: Option<(String, String)>,
    pub one_time_keys: Vec<KeyEntry>,
    pub fallback_keys: Vec<KeyEntry>,
}

/// The statements of an upload, for one `Db::batch`. One-time keys already stored
/// under the same id are kept (uploads are idempotent); a fallback key replaces the
/// previous one of its algorithm, and is unused again unless it is the same key.
pub fn upload(u: &Upload<'_>) -> Vec<Stmt> {
    let mut stmts = Vec::new();
    if let Some((json, ed25519)) = &u.device_keys {
        stmts.push(stmt(
            "INSERT INTO e2e_device_keys (user_id, device_id, key_json, ed25519) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (user_id, device_id) DO UPDATE SET key_json = excluded.key_json, ed25519 = excluded.ed25519",
            args![u.user_id, u.device_id, json, ed25519],
        ));
        stmts.push(device_lists::changed(u.user_id));
    }
    if !u.one_time_keys.is_empty() {
        stmts.push(stmt(
            "INSERT OR IGNORE INTO e2e_one_time_keys (user_id, device_id, algorithm, key_id, key_json) \
             SELECT ?1, ?2, json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]') \
             FROM json_each(?3)",
            args![u.user_id, u.device_id, entries_json(&u.one_time_keys)],
        ));
    }
    if !u.fallback_keys.is_empty() {
        stmts.push(stmt(
            "INSERT INTO e2e_fallback_keys (user_id, device_id, algorithm, key_id, key_json, used) \
             SELECT ?1, ?2, json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'), 0 \
             FROM json_each(?3) WHERE true \
             ON CONFLICT (user_id, device_id, algorithm) DO UPDATE SET \
               key_id = excluded.key_id, key_json = excluded.key_json, \
               used = CASE WHEN key_id = excluded.key_id AND key_json = excluded.key_json THEN used ELSE 0 END",
            args![u.user_id, u.device_id, entries_json(&u.fallback_keys)],
        ));
    }
    stmts
}

fn entries_json(entries: &[KeyEntry]) -> String {
    serde_json::to_string(entries).unwrap_or_else(|_| "[]".into())
}

/// `device_one_time_keys_count`: unclaimed one-time keys per algorithm, with
/// `signed_curve25519` always present.
pub async fn one_time_key_counts(db: &Db, user_id: &str, device_id: &str) -> Result<BTreeMap<String, i64>> {
    #[derive(Deserialize)]
    struct Row {
        algorithm: String,
        n: i64,
    }
    let rows: Vec<Row> = db
        .all(
            "SELECT algorithm, COUNT(*) AS n FROM e2e_one_time_keys \
             WHERE user_id = ?1 AND device_id = ?2 GROUP BY algorithm",
            args![user_id, device_id],
        )
        .await?;
    let mut counts: BTreeMap<String, i64> = rows.into_iter().map(|r| (r.algorithm, r.n)).collect();
    counts.entry(SIGNED_CURVE25519.to_owned()).or_insert(0);
    Ok(counts)
}

/// `device_unused_fallback_key_types`: algorithms with a fallback key not yet claimed.
pub async fn unused_fallback_key_types(db: &Db, user_id: &str, device_id: &str) -> Result<Vec<String>> {
    #[derive(Deserialize)]
    struct Row {
        algorithm: String,
    }
    let rows: Vec<Row> = db
        .all(
            "SELECT algorithm FROM e2e_fallback_keys WHERE user_id = ?1 AND device_id = ?2 AND used = 0 \
             ORDER BY algorithm",
            args![user_id, device_id],
        )
        .await?;
    Ok(rows.into_iter().map(|r| r.algorithm).collect())
}

/// What a /sync needs from the key tables, read in one round trip.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncKeys {
    /// Device-list changes after the token (none for an initial sync).
    pub changed: Vec<String>,
    pub left: Vec<String>,
    /// The observer's device-list position after them.
    pub position: i64,
    /// `device_one_time_keys_count` (always with `signed_curve25519`).
    pub one_time_key_counts: BTreeMap<String, i64>,
    /// `device_unused_fallback_key_types`.
    pub unused_fallback_key_types: Vec<String>,
}

/// Device-list changes since `since` (`None`: an initial sync, only the position), this
/// device's one-time key counts and unused fallback key types: one query.
pub async fn for_sync(db: &Db, user_id: &str, device_id: &str, since: Option<i64>) -> Result<SyncKeys> {
    #[derive(Deserialize)]
    struct Row {
        k: String,
        a: String,
        b: String,
        n: i64,
    }
    let rows: Vec<Row> = db
        .all(
            "SELECT 'dl' AS k, other_user_id AS a, kind AS b, stream_id AS n FROM device_list_inbox \
               WHERE user_id = ?1 AND stream_id > ?3 \
             UNION ALL SELECT 'pos', '', '', COALESCE(MAX(stream_id), 0) FROM device_list_inbox \
               WHERE user_id = ?1 \
             UNION ALL SELECT 'otk', algorithm, '', COUNT(*) FROM e2e_one_time_keys \
               WHERE user_id = ?1 AND device_id = ?2 GROUP BY algorithm \
             UNION ALL SELECT 'fb', algorithm, '', 0 FROM e2e_fallback_keys \
               WHERE user_id = ?1 AND device_id = ?2 AND used = 0",
            args![user_id, device_id, since.unwrap_or(i64::MAX)],
        )
        .await?;
    let mut out = SyncKeys {
        position: since.unwrap_or(0),
        ..SyncKeys::default()
    };
    let mut changes: Vec<(i64, String, bool)> = Vec::new();
    for row in rows {
        match row.k.as_str() {
            "dl" => changes.push((row.n, row.a, row.b == "left")),
            "pos" => out.position = out.position.max(row.n),
            "otk" => {
                out.one_time_key_counts.insert(row.a, row.n);
            }
            "fb" => out.unused_fallback_key_types.push(row.a),
            _ => {}
        }
    }
    changes.sort();
    for (_, user, left) in changes {
        if left {
            out.left.push(user);
        } else {
            out.changed.push(user);
        }
    }
    out.one_time_key_counts
        .entry(SIGNED_CURVE25519.to_owned())
        .or_insert(0);
    out.unused_fallback_key_types.sort();
    Ok(out)
}

/// A claimed key: `algorithm:key_id` and the key JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub full_key_id: String,
    pub key_json: String,
}

#[derive(Deserialize)]
struct ClaimRow {
    key_id: String,
    key_json: String,
}

/// Claims one one-time key of `algorithm` for a device, or else its fallback key.
/// Each step is one statement, so two concurrent claims never get the same one-time
/// key: the `DELETE ... RETURNING` that hands a key out is the one that removes it.
pub async fn claim(db: &Db, user_id: &str, device_id: &str, algorithm: &str) -> Result<Option<Claimed>> {
    let one_time: Option<ClaimRow> = db
        .first(
            "DELETE FROM e2e_one_time_keys WHERE rowid = \
               (SELECT rowid FROM e2e_one_time_keys \
                WHERE user_id = ?1 AND device_id = ?2 AND algorithm = ?3 ORDER BY key_id LIMIT 1) \
             RETURNING key_id, key_json",
            args![user_id, device_id, algorithm],
        )
        .await?;
    let row = match one_time {
        Some(row) => Some(row),
        None => {
            db.first(
                "UPDATE e2e_fallback_keys SET used = 1 \
                 WHERE user_id = ?1 AND device_id = ?2 AND algorithm = ?3 RETURNING key_id, key_json",
                args![user_id, device_id, algorithm],
            )
            .await?
        }
    };
    Ok(row.map(|r| Claimed {
        full_key_id: format!("{algorithm}:{}", r.key_id),
        key_json: r.key_json,
    }))
}

/// Deletes a device's keys and tells the user's observers (for device deletion).
pub fn delete_device(user_id: &str, device_id: &str) -> Vec<Stmt> {
    vec![
        stmt(
            "DELETE FROM e2e_device_keys WHERE user_id = ?1 AND device_id = ?2",
            args![user_id, device_id],
        ),
        stmt(
            "DELETE FROM e2e_one_time_keys WHERE user_id = ?1 AND device_id = ?2",
            args![user_id, device_id],
        ),
        stmt(
            "DELETE FROM e2e_fallback_keys WHERE user_id = ?1 AND device_id = ?2",
            args![user_id, device_id],
        ),
        stmt(
            "DELETE FROM e2e_signatures WHERE target_user_id = ?1 AND target_key_id = ?2",
            args![user_id, device_id],
        ),
        device_lists::changed(user_id),
    ]
}

/// Deletes the keys of every device of the user except `keep` (all when `None`).
pub fn delete_devices_except(user_id: &str, keep: Option<&str>) -> Vec<Stmt> {
    let keep = keep.unwrap_or("");
    vec![
        stmt(
            "DELETE FROM e2e_device_keys WHERE user_id = ?1 AND device_id <> ?2",
            args![user_id, keep],
        ),
        stmt(
            "DELETE FROM e2e_one_time_keys WHERE user_id = ?1 AND device_id <> ?2",
            args![user_id, keep],
        ),
        stmt(
            "DELETE FROM e2e_fallback_keys WHERE user_id = ?1 AND device_id <> ?2",
            args![user_id, keep],
        ),
        stmt(
            "DELETE FROM e2e_signatures WHERE target_user_id = ?1 AND target_key_id <> ?2 \
             AND target_key_id IN (SELECT device_id FROM devices WHERE user_id = ?1)",
            args![user_id, keep],
        ),
        device_lists::changed(user_id),
    ]
}
