//! `remote_device_keys`: other servers' users' device and cross-signing keys, as their
//! servers last answered, for users who share a room with a local user (so their server
//! tells this one when they change). A change empties the row; an answer fetched before
//! the change is not kept, so a key query racing an update never keeps stale keys.

use serde::Deserialize;
use serde_json::Value;

use super::{args, stmt, Db, Result, Stmt};

/// How long kept keys are trusted without news of a change: a safety net for a missed
/// update (changes arrive as `m.device_list_update` / `m.signing_key_update`).
pub const KEEP_MS: u64 = 24 * 3600 * 1000;

#[derive(Deserialize)]
struct Row {
    user_id: String,
    keys: String,
}

/// The kept keys of those of `users` that have fresh ones: `(user, keys)`.
pub async fn kept(db: &Db, users: &[&str], now_ms: u64) -> Result<Vec<(String, Value)>> {
    if users.is_empty() {
        return Ok(Vec::new());
    }
    let list = serde_json::to_string(users).unwrap_or_else(|_| "[]".into());
    let rows: Vec<Row> = db
        .all(
            "SELECT user_id, keys FROM remote_device_keys \
             WHERE user_id IN (SELECT value FROM json_each(?1)) AND keys IS NOT NULL AND fetched_ts > ?2",
            args![list, now_ms.saturating_sub(KEEP_MS) as i64],
        )
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| serde_json::from_str(&r.keys).ok().map(|keys| (r.user_id, keys)))
        .collect())
}

/// Keeps `keys` of `user_id`, fetched from their server at `fetched_ts`, if they share
/// a room with a local user and no change was heard of since the fetch began.
pub fn keep(user_id: &str, keys: &Value, fetched_ts: u64) -> Stmt {
    stmt(
        "INSERT INTO remote_device_keys (user_id, keys, fetched_ts) \
         SELECT ?1, ?2, ?3 WHERE EXISTS ( \
           SELECT 1 FROM room_memberships m1 \
             JOIN room_memberships m2 ON m2.room_id = m1.room_id AND m2.membership = 'join' \
             JOIN users u ON u.user_id = m2.user_id \
           WHERE m1.user_id = ?1 AND m1.membership = 'join') \
         ON CONFLICT (user_id) DO UPDATE SET keys = excluded.keys, fetched_ts = excluded.fetched_ts \
           WHERE remote_device_keys.invalidated_ts < excluded.fetched_ts",
        args![user_id, keys.to_string(), fetched_ts as i64],
    )
}

/// Forgets `user_id`'s kept keys: their devices or cross-signing keys changed at
/// `now_ms`. A row is made only for a user who shares a room with a local user (one
/// whose keys may be kept), so updates about strangers leave nothing behind.
pub fn changed(user_id: &str, now_ms: u64) -> Stmt {
    stmt(
        "INSERT INTO remote_device_keys (user_id, keys, invalidated_ts) \
         SELECT ?1, NULL, ?2 WHERE EXISTS ( \
           SELECT 1 FROM room_memberships m1 \
             JOIN room_memberships m2 ON m2.room_id = m1.room_id AND m2.membership = 'join' \
             JOIN users u ON u.user_id = m2.user_id \
           WHERE m1.user_id = ?1 AND m1.membership = 'join') \
         ON CONFLICT (user_id) DO UPDATE SET keys = NULL, invalidated_ts = excluded.invalidated_ts",
        args![user_id, now_ms as i64],
    )
}
