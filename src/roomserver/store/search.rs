//! The room's full-text index for `/search` (`event_search`, SQLite FTS5): the body,
//! name and topic of `m.room.message`, `m.room.name` and `m.room.topic` events (the
//! topic with the `text/plain` bodies of its `m.topic`), by event nid. Kept up
//! lazily: a search first indexes the events stored since the last one (`search_nid`
//! in `meta`), so the write path never pays for it; a redaction removes its target's
//! entry at once.

use super::{meta_int, set_meta};
use crate::params;
use crate::storage::sql::{Sql, SqlError, SqlValue};

const INDEX_SCHEMA: &str = "CREATE VIRTUAL TABLE IF NOT EXISTS event_search USING fts5(\
     body, name, topic, tokenize = 'unicode61 remove_diacritics 2')";

const WATERMARK: &str = "search_nid";

/// Indexes the events stored since the last search (created on first use).
pub fn catch_up(db: &dyn Sql) -> Result<(), SqlError> {
    let from = match meta_int(db, WATERMARK)? {
        Some(n) => n,
        None => {
            // A room emptied since (a bootstrap that failed) may have left entries.
            db.execute(INDEX_SCHEMA, params![])?;
            db.execute("DELETE FROM event_search", params![])?;
            0
        }
    };
    let to = super::next_nid(db)? - 1;
    if to <= from {
        return Ok(());
    }
    db.execute(
        "INSERT INTO event_search (rowid, body, name, topic) \
         SELECT e.nid, json_extract(e.json, '$.content.body'), json_extract(e.json, '$.content.name'), \
                trim(coalesce(json_extract(e.json, '$.content.topic'), '') || ' ' || coalesce(( \
                  SELECT group_concat(json_extract(t.value, '$.body'), ' ') \
                  FROM json_each(e.json, '$.content.\"m.topic\".\"m.text\"') t \
                  WHERE coalesce(json_extract(t.value, '$.mimetype'), 'text/plain') = 'text/plain'), '')) \
         FROM events e WHERE e.nid > ? AND e.nid <= ? AND e.redacted_by IS NULL \
           AND e.type IN ('m.room.message', 'm.room.name', 'm.room.topic')",
        params![from, to],
    )?;
    set_meta(db, WATERMARK, &to.to_string())
}

/// Drops a redacted event from the index, if the room has one.
pub fn forget(db: &dyn Sql, event_id: &str) -> Result<(), SqlError> {
    if meta_int(db, WATERMARK)?.is_none() {
        return Ok(());
    }
    db.execute(
        "DELETE FROM event_search WHERE rowid IN (SELECT nid FROM events WHERE event_id = ?)",
        params![event_id],
    )
}

/// Matches of an FTS5 `query` among the accepted timeline events up to stream
/// position `ceiling`: `(nid, rank)` (higher ranks better), best first or newest first,
/// at most `limit`.
pub fn matches(
    db: &dyn Sql,
    query: &str,
    ceiling: i64,
    newest_first: bool,
    limit: i64,
) -> Result<Vec<(i64, f64)>, SqlError> {
    let order = if newest_first {
        "e.stream_pos DESC"
    } else {
        "m.score ASC, e.stream_pos DESC"
    };
    let rows = db.query(
        &format!(
            "SELECT e.nid, m.score FROM (SELECT rowid AS id, rank AS score FROM event_search \
               WHERE event_search MATCH ?) m JOIN events e ON e.nid = m.id \
             WHERE e.stream_pos IS NOT NULL AND e.stream_pos <= ? AND e.status = 0 AND e.redacted_by IS NULL \
             ORDER BY {order} LIMIT ?"
        ),
        params![query, ceiling, limit],
    )?;
    rows.iter()
        .map(|r| {
            let score = match r.0.get(1) {
                Some(SqlValue::Real(f)) => *f,
                Some(SqlValue::Int(i)) => *i as f64,
                _ => 0.0,
            };
            Ok((r.int(0)?, -score))
        })
        .collect()
}

/// How many accepted timeline events up to `ceiling` match.
pub fn count(db: &dyn Sql, query: &str, ceiling: i64) -> Result<i64, SqlError> {
    db.query_opt(
        "SELECT count(*) FROM event_search s JOIN events e ON e.nid = s.rowid \
         WHERE event_search MATCH ? AND e.stream_pos IS NOT NULL AND e.stream_pos <= ? \
           AND e.status = 0 AND e.redacted_by IS NULL",
        params![query, ceiling],
    )?
    .map(|r| r.int(0))
    .transpose()
    .map(|n| n.unwrap_or(0))
}
