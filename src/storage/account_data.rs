//! `account_data`: global (`room_id = ''`) and per-room account data. Every write takes
//! the user's next `stream_id`, so /sync can ask for "changed since N" with one indexed
//! range query (`changed_since`).

use serde::Deserialize;

use super::{args, Db, Result};

/// Stores `content` (a JSON object, serialized) under `(user, room, type)` and returns
/// its new stream id. `room_id` is `None` for global account data.
pub async fn put(db: &Db, user_id: &str, room_id: Option<&str>, kind: &str, content: &str) -> Result<i64> {
    #[derive(Deserialize)]
    struct Row {
        stream_id: i64,
    }
    // One statement, so the max-then-insert is atomic.
    let row: Option<Row> = db
        .first(
            "INSERT INTO account_data (user_id, room_id, type, content, stream_id) \
             VALUES (?1, ?2, ?3, ?4, \
               (SELECT COALESCE(MAX(stream_id), 0) + 1 FROM account_data WHERE user_id = ?1)) \
             ON CONFLICT (user_id, room_id, type) DO UPDATE \
               SET content = excluded.content, stream_id = excluded.stream_id \
             RETURNING stream_id",
            args![user_id, room_id.unwrap_or(""), kind, content],
        )
        .await?;
    Ok(row.map_or(0, |r| r.stream_id))
}

/// The stored JSON text, if any.
pub async fn get(db: &Db, user_id: &str, room_id: Option<&str>, kind: &str) -> Result<Option<String>> {
    #[derive(Deserialize)]
    struct Row {
        content: String,
    }
    let row: Option<Row> = db
        .first(
            "SELECT content FROM account_data WHERE user_id = ?1 AND room_id = ?2 AND type = ?3",
            args![user_id, room_id.unwrap_or(""), kind],
        )
        .await?;
    Ok(row.map(|r| r.content))
}

/// One changed entry, for /sync.
#[derive(Debug, Clone, Deserialize)]
pub struct Entry {
    /// Empty for global account data.
    pub room_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// JSON object text.
    pub content: String,
    pub stream_id: i64,
}

/// Everything the user changed after `since` (0 for all), oldest first.
pub async fn changed_since(db: &Db, user_id: &str, since: i64) -> Result<Vec<Entry>> {
    db.all(
        "SELECT room_id, type, content, stream_id FROM account_data \
         WHERE user_id = ?1 AND stream_id > ?2 ORDER BY stream_id",
        args![user_id, since],
    )
    .await
}

/// The user's latest account-data stream id (0 if none).
pub async fn max_stream_id(db: &Db, user_id: &str) -> Result<i64> {
    #[derive(Deserialize)]
    struct Row {
        max: Option<i64>,
    }
    let row: Option<Row> = db
        .first(
            "SELECT MAX(stream_id) AS max FROM account_data WHERE user_id = ?1",
            args![user_id],
        )
        .await?;
    Ok(row.and_then(|r| r.max).unwrap_or(0))
}
