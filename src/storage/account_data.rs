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

/// The user's account data for one room, oldest first.
pub async fn of_room(db: &Db, user_id: &str, room_id: &str) -> Result<Vec<Entry>> {
    db.all(
        "SELECT room_id, type, content, stream_id FROM account_data \
         WHERE user_id = ?1 AND room_id = ?2 ORDER BY stream_id",
        args![user_id, room_id],
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

/// Global account data with its stream id, for a read-modify-write (`put_global_if`).
pub async fn get_global_versioned(db: &Db, user_id: &str, kind: &str) -> Result<Option<(String, i64)>> {
    #[derive(Deserialize)]
    struct Row {
        content: String,
        stream_id: i64,
    }
    let row: Option<Row> = db
        .first(
            "SELECT content, stream_id FROM account_data WHERE user_id = ?1 AND room_id = '' AND type = ?2",
            args![user_id, kind],
        )
        .await?;
    Ok(row.map(|r| (r.content, r.stream_id)))
}

/// Stores global account data only if it is still as read: absent when `read` is
/// `None`, else at stream id `read`. Returns the new stream id, or `None` when someone
/// wrote in between (the caller reads again and retries).
pub async fn put_global_if(
    db: &Db,
    user_id: &str,
    kind: &str,
    content: &str,
    read: Option<i64>,
) -> Result<Option<i64>> {
    #[derive(Deserialize)]
    struct Row {
        stream_id: i64,
    }
    let next = "(SELECT COALESCE(MAX(stream_id), 0) + 1 FROM account_data WHERE user_id = ?1)";
    let row: Option<Row> = match read {
        None => {
            db.first(
                &format!(
                    "INSERT INTO account_data (user_id, room_id, type, content, stream_id) \
                     VALUES (?1, '', ?2, ?3, {next}) \
                     ON CONFLICT (user_id, room_id, type) DO NOTHING RETURNING stream_id"
                ),
                args![user_id, kind, content],
            )
            .await?
        }
        Some(seen) => {
            db.first(
                &format!(
                    "UPDATE account_data SET content = ?3, stream_id = {next} \
                     WHERE user_id = ?1 AND room_id = '' AND type = ?2 AND stream_id = ?4 \
                     RETURNING stream_id"
                ),
                args![user_id, kind, content, seen],
            )
            .await?
        }
    };
    Ok(row.map(|r| r.stream_id))
}

/// Account data of a room (or global, `room_id` `None`) with its stream id, for a
/// read-modify-write (`put_if`).
pub async fn get_versioned(
    db: &Db,
    user_id: &str,
    room_id: Option<&str>,
    kind: &str,
) -> Result<Option<(String, i64)>> {
    #[derive(Deserialize)]
    struct Row {
        content: String,
        stream_id: i64,
    }
    let row: Option<Row> = db
        .first(
            "SELECT content, stream_id FROM account_data WHERE user_id = ?1 AND room_id = ?2 AND type = ?3",
            args![user_id, room_id.unwrap_or(""), kind],
        )
        .await?;
    Ok(row.map(|r| (r.content, r.stream_id)))
}

/// Stores account data only if it is still as read (`None`: absent; else at stream id
/// `read`). Returns the new stream id, or `None` when someone wrote in between.
pub async fn put_if(
    db: &Db,
    user_id: &str,
    room_id: Option<&str>,
    kind: &str,
    content: &str,
    read: Option<i64>,
) -> Result<Option<i64>> {
    #[derive(Deserialize)]
    struct Row {
        stream_id: i64,
    }
    let room = room_id.unwrap_or("");
    let row: Option<Row> = match read {
        None => {
            db.first(
                "INSERT INTO account_data (user_id, room_id, type, content, stream_id) \
                 VALUES (?1, ?2, ?3, ?4, \
                   (SELECT COALESCE(MAX(stream_id), 0) + 1 FROM account_data WHERE user_id = ?1)) \
                 ON CONFLICT (user_id, room_id, type) DO NOTHING RETURNING stream_id",
                args![user_id, room, kind, content],
            )
            .await?
        }
        Some(seen) => {
            db.first(
                "UPDATE account_data SET content = ?4, stream_id = \
                   (SELECT COALESCE(MAX(stream_id), 0) + 1 FROM account_data WHERE user_id = ?1) \
                 WHERE user_id = ?1 AND room_id = ?2 AND type = ?3 AND stream_id = ?5 \
                 RETURNING stream_id",
                args![user_id, room, kind, content, seen],
            )
            .await?
        }
    };
    Ok(row.map(|r| r.stream_id))
}
