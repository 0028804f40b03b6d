//! What one destination server still has to receive, kept in its Destination Durable
//! Object's SQLite: events (by room and id) in arrival order, cut into transactions of
//! at most 50. A transaction keeps its id and its events until the destination
//! acknowledges it, so a retry sends exactly the same transaction (the receiver
//! answers a repeat without processing it again). Failures back off exponentially.
//! Synchronous over `Sql`: tested natively.

use crate::params;
use crate::storage::sql::{Sql, SqlError};

/// PDUs per transaction (the spec's limit).
pub const TXN_PDUS: i64 = 50;
/// The first retry delay; each failure doubles it, up to `MAX_BACKOFF_MS`.
pub const FIRST_BACKOFF_MS: u64 = 5_000;
pub const MAX_BACKOFF_MS: u64 = 60 * 60 * 1000;

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS outgoing (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    room_id  TEXT NOT NULL,
    event_id TEXT NOT NULL,
    txn_id   TEXT,
    UNIQUE (room_id, event_id)
);
CREATE TABLE IF NOT EXISTS outgoing_meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
)";

pub fn init(db: &dyn Sql) -> Result<(), SqlError> {
    db.execute_batch(SCHEMA)
}

/// Queues events for the destination (ones already queued are not queued twice).
pub fn enqueue(db: &dyn Sql, events: &[(String, String)]) -> Result<(), SqlError> {
    for (room_id, event_id) in events {
        db.execute(
            "INSERT INTO outgoing (room_id, event_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
            params![room_id.as_str(), event_id.as_str()],
        )?;
    }
    Ok(())
}

/// A transaction to send: its id and its events (room id, event id), in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Txn {
    pub txn_id: String,
    pub events: Vec<(String, String)>,
}

/// The transaction to send now: the one sent before and not yet acknowledged, or a
/// new one of the oldest queued events; `None` when nothing waits.
pub fn next_txn(db: &dyn Sql) -> Result<Option<Txn>, SqlError> {
    let pending = db.query_opt(
        "SELECT txn_id FROM outgoing WHERE txn_id IS NOT NULL ORDER BY seq LIMIT 1",
        params![],
    )?;
    let txn_id = match pending {
        Some(row) => row.text(0)?.to_owned(),
        None => {
            let Some(first) = db.query_opt("SELECT seq FROM outgoing ORDER BY seq LIMIT 1", params![])?
            else {
                return Ok(None);
            };
            let txn_id = format!("t{}", first.int(0)?);
            db.execute(
                "UPDATE outgoing SET txn_id = ? WHERE seq IN (SELECT seq FROM outgoing ORDER BY seq LIMIT ?)",
                params![txn_id.as_str(), TXN_PDUS],
            )?;
            txn_id
        }
    };
    let rows = db.query(
        "SELECT room_id, event_id FROM outgoing WHERE txn_id = ? ORDER BY seq",
        params![txn_id.as_str()],
    )?;
    let events = rows
        .iter()
        .map(|r| Ok((r.text(0)?.to_owned(), r.text(1)?.to_owned())))
        .collect::<Result<Vec<_>, SqlError>>()?;
    Ok(Some(Txn { txn_id, events }))
}

/// The destination acknowledged the transaction: its events are done, the backoff
/// starts over.
pub fn acknowledged(db: &dyn Sql, txn_id: &str) -> Result<(), SqlError> {
    db.execute("DELETE FROM outgoing WHERE txn_id = ?", params![txn_id])?;
    db.execute("DELETE FROM outgoing_meta WHERE key = 'failures'", params![])
}

/// A send failed: how long to wait before the next attempt.
pub fn failed(db: &dyn Sql) -> Result<u64, SqlError> {
    let failures = db
        .query_opt(
            "SELECT value FROM outgoing_meta WHERE key = 'failures'",
            params![],
        )?
        .map(|r| r.int(0))
        .transpose()?
        .unwrap_or(0);
    db.execute(
        "INSERT INTO outgoing_meta (key, value) VALUES ('failures', ?) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![failures + 1],
    )?;
    Ok(backoff_ms(failures as u32))
}

/// The delay after `failures` earlier consecutive failures.
pub fn backoff_ms(failures: u32) -> u64 {
    FIRST_BACKOFF_MS
        .saturating_mul(1u64 << failures.min(20))
        .min(MAX_BACKOFF_MS)
}

/// Whether the destination is backing off (a failure since the last success).
pub fn backing_off(db: &dyn Sql) -> Result<bool, SqlError> {
    Ok(db
        .query_opt(
            "SELECT value FROM outgoing_meta WHERE key = 'failures'",
            params![],
        )?
        .is_some())
}

/// How many events wait.
pub fn queued(db: &dyn Sql) -> Result<i64, SqlError> {
    db.query_opt("SELECT COUNT(*) FROM outgoing", params![])?
        .map(|r| r.int(0))
        .transpose()
        .map(|n| n.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::sql::testing::MemorySql;

    fn ev(i: usize) -> (String, String) {
        ("!r:hs".to_owned(), format!("$e{i}"))
    }

    #[test]
    fn transactions_hold_fifty_and_stay_the_same_until_acknowledged() {
        let db = MemorySql::new();
        init(&db).expect("schema");
        assert_eq!(next_txn(&db).expect("next"), None);
        let events: Vec<_> = (0..120).map(ev).collect();
        enqueue(&db, &events).expect("enqueue");
        enqueue(&db, &events[..10]).expect("again: nothing twice");
        assert_eq!(queued(&db).expect("count"), 120);
        let first = next_txn(&db).expect("next").expect("a txn");
        assert_eq!(first.events, events[..50].to_vec());
        // More events arrive; a retry is the very same transaction.
        enqueue(&db, &[ev(500)]).expect("enqueue");
        assert_eq!(next_txn(&db).expect("retry"), Some(first.clone()));
        acknowledged(&db, &first.txn_id).expect("ack");
        let second = next_txn(&db).expect("next").expect("a txn");
        assert_ne!(second.txn_id, first.txn_id);
        assert_eq!(second.events, events[50..100].to_vec());
        acknowledged(&db, &second.txn_id).expect("ack");
        let third = next_txn(&db).expect("next").expect("a txn");
        assert_eq!(third.events.len(), 21, "the last 20 and the late one");
        acknowledged(&db, &third.txn_id).expect("ack");
        assert_eq!(next_txn(&db).expect("next"), None);
    }

    #[test]
    fn failures_back_off_exponentially_and_a_success_resets() {
        let db = MemorySql::new();
        init(&db).expect("schema");
        assert!(!backing_off(&db).expect("state"));
        assert_eq!(failed(&db).expect("1"), 5_000);
        assert_eq!(failed(&db).expect("2"), 10_000);
        assert_eq!(failed(&db).expect("3"), 20_000);
        assert!(backing_off(&db).expect("state"));
        assert_eq!(backoff_ms(30), MAX_BACKOFF_MS);
        acknowledged(&db, "none").expect("ack");
        assert!(!backing_off(&db).expect("state"));
        assert_eq!(failed(&db).expect("again"), 5_000);
    }
}
