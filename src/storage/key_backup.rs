//! Server-side key backup: `backup_versions` and `backup_keys`. The `etag` of a
//! version increases on every change to its keys; `count` is computed on read.

use serde::Deserialize;

use super::{args, stmt, Db, Result};

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Version {
    pub version: i64,
    pub algorithm: String,
    /// JSON object text.
    pub auth_data: String,
    pub etag: i64,
    pub count: i64,
}

/// Creates a version, numbered after every earlier one (deleted ones included).
pub async fn create(db: &Db, user_id: &str, algorithm: &str, auth_data: &str) -> Result<i64> {
    #[derive(Deserialize)]
    struct Row {
        version: i64,
    }
    let row: Option<Row> = db
        .first(
            "INSERT INTO backup_versions (user_id, version, algorithm, auth_data) \
             SELECT ?1, COALESCE(MAX(version), 0) + 1, ?2, ?3 FROM backup_versions WHERE user_id = ?1 \
             RETURNING version",
            args![user_id, algorithm, auth_data],
        )
        .await?;
    Ok(row.map_or(0, |r| r.version))
}

const SELECT_VERSION: &str = "SELECT v.version, v.algorithm, v.auth_data, v.etag, \
     (SELECT COUNT(*) FROM backup_keys k WHERE k.user_id = v.user_id AND k.version = v.version) AS count \
     FROM backup_versions v WHERE v.user_id = ?1 AND v.deleted = 0";

/// The newest version that is not deleted.
pub async fn latest(db: &Db, user_id: &str) -> Result<Option<Version>> {
    db.first(
        &format!("{SELECT_VERSION} ORDER BY v.version DESC LIMIT 1"),
        args![user_id],
    )
    .await
}

/// One version, unless deleted.
pub async fn get(db: &Db, user_id: &str, version: i64) -> Result<Option<Version>> {
    db.first(
        &format!("{SELECT_VERSION} AND v.version = ?2"),
        args![user_id, version],
    )
    .await
}

/// Replaces `auth_data`; false when the version does not exist.
pub async fn update(db: &Db, user_id: &str, version: i64, auth_data: &str) -> Result<bool> {
    let changed = db
        .run(
            "UPDATE backup_versions SET auth_data = ?3 WHERE user_id = ?1 AND version = ?2 AND deleted = 0",
            args![user_id, version, auth_data],
        )
        .await?;
    Ok(changed > 0)
}

/// Deletes a version and its keys; false when it never existed.
pub async fn delete(db: &Db, user_id: &str, version: i64) -> Result<bool> {
    let changed = db
        .batch(vec![
            stmt(
                "DELETE FROM backup_keys WHERE user_id = ?1 AND version = ?2",
                args![user_id, version],
            ),
            stmt(
                "UPDATE backup_versions SET deleted = 1 WHERE user_id = ?1 AND version = ?2",
                args![user_id, version],
            ),
        ])
        .await?;
    Ok(changed.get(1).copied().unwrap_or(0) > 0)
}

/// One session key, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Key {
    pub room_id: String,
    pub session_id: String,
    pub first_message_index: i64,
    pub forwarded_count: i64,
    pub is_verified: i64,
    /// JSON object text.
    pub session_data: String,
}

/// Stores keys (one statement for all of them, any number), each replacing a stored
/// copy only when the spec's rule prefers it (`core::e2ee::backup_replaces`), and bumps
/// the version's etag. The caller has checked the version is the current one.
pub async fn put_keys(db: &Db, user_id: &str, version: i64, keys: &[Key]) -> Result<()> {
    let rows: Vec<(&str, &str, i64, i64, i64, &str)> = keys
        .iter()
        .map(|k| {
            (
                k.room_id.as_str(),
                k.session_id.as_str(),
                k.first_message_index,
                k.forwarded_count,
                k.is_verified,
                k.session_data.as_str(),
            )
        })
        .collect();
    let rows = serde_json::to_string(&rows).unwrap_or_else(|_| "[]".into());
    db.batch(vec![
        stmt(
            "INSERT INTO backup_keys (user_id, version, room_id, session_id, first_message_index, \
               forwarded_count, is_verified, session_data) \
             SELECT ?1, ?2, json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'), \
               json_extract(value, '$[3]'), json_extract(value, '$[4]'), json_extract(value, '$[5]') \
             FROM json_each(?3) WHERE true \
             ON CONFLICT (user_id, version, room_id, session_id) DO UPDATE SET \
               first_message_index = excluded.first_message_index, forwarded_count = excluded.forwarded_count, \
               is_verified = excluded.is_verified, session_data = excluded.session_data \
             WHERE excluded.is_verified > is_verified \
               OR (excluded.is_verified = is_verified AND (excluded.first_message_index < first_message_index \
                 OR (excluded.first_message_index = first_message_index \
                   AND excluded.forwarded_count < forwarded_count)))",
            args![user_id, version, rows],
        ),
        stmt(
            "UPDATE backup_versions SET etag = etag + 1 WHERE user_id = ?1 AND version = ?2",
            args![user_id, version],
        ),
    ])
    .await?;
    Ok(())
}

/// The keys of a version, optionally of one room or one session.
pub async fn get_keys(
    db: &Db,
    user_id: &str,
    version: i64,
    room_id: Option<&str>,
    session_id: Option<&str>,
) -> Result<Vec<Key>> {
    db.all(
        "SELECT room_id, session_id, first_message_index, forwarded_count, is_verified, session_data \
         FROM backup_keys WHERE user_id = ?1 AND version = ?2 \
           AND (?3 IS NULL OR room_id = ?3) AND (?4 IS NULL OR session_id = ?4) \
         ORDER BY room_id, session_id",
        args![user_id, version, room_id, session_id],
    )
    .await
}

/// Deletes the keys of a version, optionally of one room or one session, and bumps
/// the etag.
pub async fn delete_keys(
    db: &Db,
    user_id: &str,
    version: i64,
    room_id: Option<&str>,
    session_id: Option<&str>,
) -> Result<()> {
    db.batch(vec![
        stmt(
            "DELETE FROM backup_keys WHERE user_id = ?1 AND version = ?2 \
               AND (?3 IS NULL OR room_id = ?3) AND (?4 IS NULL OR session_id = ?4)",
            args![user_id, version, room_id, session_id],
        ),
        stmt(
            "UPDATE backup_versions SET etag = etag + 1 WHERE user_id = ?1 AND version = ?2",
            args![user_id, version],
        ),
    ])
    .await?;
    Ok(())
}
