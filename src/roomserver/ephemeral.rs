//! Typing notifications and read receipts: the room's ephemeral data, in its own small
//! tables with serials (`typing_serial`, `receipt_serial` in `meta`) that members'
//! sync streams point at.

use serde_json::{json, Map, Value};

use crate::params;
use crate::storage::sql::{Sql, SqlError};

use super::store;

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS typing (
    user_id    TEXT PRIMARY KEY,
    expires_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS receipts (
    user_id      TEXT NOT NULL,
    receipt_type TEXT NOT NULL,
    thread_id    TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    ts           INTEGER NOT NULL,
    serial       INTEGER NOT NULL,
    PRIMARY KEY (user_id, receipt_type, thread_id)
);
CREATE INDEX IF NOT EXISTS receipts_by_serial ON receipts (serial)
";

/// Longest typing timeout we honour.
pub const MAX_TYPING_MS: u64 = 120_000;

pub fn init(db: &dyn Sql) -> Result<(), SqlError> {
    db.execute_batch(SCHEMA)
}

fn bump(db: &dyn Sql, key: &str) -> Result<i64, SqlError> {
    let next = store::meta_int(db, key)?.unwrap_or(0) + 1;
    store::set_meta(db, key, &next.to_string())?;
    Ok(next)
}

pub fn typing_serial(db: &dyn Sql) -> Result<i64, SqlError> {
    Ok(store::meta_int(db, "typing_serial")?.unwrap_or(0))
}

/// Starts or stops typing. Returns the new serial if the visible list changed.
pub fn set_typing(
    db: &dyn Sql,
    user: &str,
    typing: bool,
    timeout_ms: u64,
    now_ms: u64,
) -> Result<Option<i64>, SqlError> {
    let was = typing_users(db, now_ms)?.iter().any(|u| u == user);
    if typing {
        let expires = now_ms.saturating_add(timeout_ms.min(MAX_TYPING_MS));
        db.execute(
            "INSERT INTO typing (user_id, expires_ms) VALUES (?, ?) \
             ON CONFLICT (user_id) DO UPDATE SET expires_ms = excluded.expires_ms",
            params![user, expires],
        )?;
    } else {
        db.execute("DELETE FROM typing WHERE user_id = ?", params![user])?;
    }
    if was == typing {
        return Ok(None);
    }
    bump(db, "typing_serial").map(Some)
}

/// Drops expired typing entries; returns the new serial if any expired.
pub fn expire_typing(db: &dyn Sql, now_ms: u64) -> Result<Option<i64>, SqlError> {
    let expired = db
        .query_opt(
            "SELECT 1 FROM typing WHERE expires_ms <= ? LIMIT 1",
            params![now_ms],
        )?
        .is_some();
    if !expired {
        return Ok(None);
    }
    db.execute("DELETE FROM typing WHERE expires_ms <= ?", params![now_ms])?;
    bump(db, "typing_serial").map(Some)
}

/// The earliest typing expiry, for the alarm.
pub fn next_expiry(db: &dyn Sql) -> Result<Option<i64>, SqlError> {
    db.query_opt("SELECT MIN(expires_ms) FROM typing", params![])?
        .map(|r| r.opt_int(0))
        .transpose()
        .map(Option::flatten)
}

pub fn typing_users(db: &dyn Sql, now_ms: u64) -> Result<Vec<String>, SqlError> {
    db.query(
        "SELECT user_id FROM typing WHERE expires_ms > ? ORDER BY user_id",
        params![now_ms],
    )?
    .iter()
    .map(|r| r.text(0).map(str::to_owned))
    .collect()
}

/// Records a receipt; returns its serial.
pub fn put_receipt(
    db: &dyn Sql,
    user: &str,
    receipt_type: &str,
    thread_id: Option<&str>,
    event_id: &str,
    ts: u64,
) -> Result<i64, SqlError> {
    let serial = bump(db, "receipt_serial")?;
    db.execute(
        "INSERT INTO receipts (user_id, receipt_type, thread_id, event_id, ts, serial) VALUES (?, ?, ?, ?, ?, ?) \
         ON CONFLICT (user_id, receipt_type, thread_id) DO UPDATE SET event_id = excluded.event_id, \
         ts = excluded.ts, serial = excluded.serial",
        params![user, receipt_type, thread_id.unwrap_or(""), event_id, ts, serial],
    )?;
    Ok(serial)
}

/// The event the user's receipt of this type (and thread) is at, if any.
pub fn receipt_event(
    db: &dyn Sql,
    user: &str,
    receipt_type: &str,
    thread_id: Option<&str>,
) -> Result<Option<String>, SqlError> {
    db.query(
        "SELECT event_id FROM receipts WHERE user_id = ? AND receipt_type = ? AND thread_id = ?",
        params![user, receipt_type, thread_id.unwrap_or("")],
    )?
    .first()
    .map(|r| r.text(0).map(str::to_owned))
    .transpose()
}

/// The user's own `m.read`/`m.read.private` receipt event ids (main timeline or unthreaded).
pub fn own_read_event(db: &dyn Sql, user: &str) -> Result<Vec<String>, SqlError> {
    db.query(
        "SELECT event_id FROM receipts WHERE user_id = ? AND receipt_type IN ('m.read', 'm.read.private') \
         AND thread_id IN ('', 'main')",
        params![user],
    )?
    .iter()
    .map(|r| r.text(0).map(str::to_owned))
    .collect()
}

/// The `m.receipt` content for receipts with serial in `(from, to]` as `viewer` may
/// see them (private receipts only their own). `None` when there are none.
pub fn receipts_between(db: &dyn Sql, from: i64, to: i64, viewer: &str) -> Result<Option<Value>, SqlError> {
    let rows = db.query(
        "SELECT user_id, receipt_type, thread_id, event_id, ts FROM receipts \
         WHERE serial > ? AND serial <= ? ORDER BY serial LIMIT 1000",
        params![from, to],
    )?;
    let mut content = Map::new();
    for row in rows {
        let (user, kind, thread, event, ts) = (
            row.text(0)?,
            row.text(1)?,
            row.text(2)?,
            row.text(3)?,
            row.int(4)?,
        );
        if kind == "m.read.private" && user != viewer {
            continue;
        }
        let mut receipt = json!({ "ts": ts });
        if !thread.is_empty() {
            receipt["thread_id"] = json!(thread);
        }
        let by_type = content
            .entry(event.to_owned())
            .or_insert_with(|| json!({}))
            .as_object_mut();
        if let Some(by_type) = by_type {
            let users = by_type.entry(kind.to_owned()).or_insert_with(|| json!({}));
            users[user] = receipt;
        }
    }
    let empty = content.is_empty();
    Ok((!empty).then_some(Value::Object(content)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::sql::testing::MemorySql;

    fn db() -> MemorySql {
        let db = MemorySql::new();
        store::init(&db).expect("schema");
        init(&db).expect("schema");
        db
    }

    #[test]
    fn typing_starts_stops_and_expires() {
        let db = db();
        assert_eq!(set_typing(&db, "@a:hs", true, 1000, 0).expect("start"), Some(1));
        assert_eq!(set_typing(&db, "@a:hs", true, 1000, 10).expect("renew"), None);
        assert_eq!(typing_users(&db, 20).expect("list"), vec!["@a:hs".to_owned()]);
        assert_eq!(next_expiry(&db).expect("next"), Some(1010));
        assert_eq!(expire_typing(&db, 500).expect("not yet"), None);
        assert_eq!(expire_typing(&db, 1010).expect("expired"), Some(2));
        assert!(typing_users(&db, 1011).expect("list").is_empty());
        assert_eq!(set_typing(&db, "@a:hs", false, 0, 2000).expect("stop"), None);
    }

    #[test]
    fn receipts_in_ranges_hide_others_private_ones() {
        let db = db();
        let s1 = put_receipt(&db, "@a:hs", "m.read", None, "$1", 5).expect("r1");
        let s2 = put_receipt(&db, "@b:hs", "m.read.private", Some("main"), "$1", 6).expect("r2");
        let seen = receipts_between(&db, 0, s2, "@a:hs")
            .expect("read")
            .expect("some");
        assert_eq!(seen["$1"]["m.read"]["@a:hs"]["ts"], 5);
        assert!(seen["$1"].get("m.read.private").is_none());
        let own = receipts_between(&db, s1, s2, "@b:hs")
            .expect("read")
            .expect("some");
        assert_eq!(own["$1"]["m.read.private"]["@b:hs"]["thread_id"], "main");
        assert_eq!(receipts_between(&db, s2, s2, "@a:hs").expect("read"), None);
        assert_eq!(own_read_event(&db, "@b:hs").expect("own"), vec!["$1".to_owned()]);
    }
}
