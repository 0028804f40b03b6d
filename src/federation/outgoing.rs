//! What one destination server still has to receive, kept in its Destination Durable
//! Object's SQLite: events (by room and id) in arrival order, cut into transactions of
//! at most 50. A transaction keeps its id and its events until the destination
//! acknowledges it, so a retry sends exactly the same transaction (the receiver
//! answers a repeat without processing it again). Failures back off exponentially.
//! EDUs wait beside them (at most 100 per transaction, the newest 1,000 kept: they are
//! ephemeral) and go with the next transaction. While the destination is unreachable
//! the queue is bounded: past `CATCH_UP_AFTER` waiting events only the newest of each
//! room are kept (catch-up: the destination fetches the rest through
//! `/get_missing_events` when that event reaches it). Synchronous over `Sql`: tested
//! natively.

use crate::params;
use crate::storage::sql::{Sql, SqlError};

/// PDUs per transaction (the spec's limit).
pub const TXN_PDUS: i64 = 50;
/// The first retry delay; each failure doubles it, up to `MAX_BACKOFF_MS`.
pub const FIRST_BACKOFF_MS: u64 = 5_000;
pub const MAX_BACKOFF_MS: u64 = 60 * 60 * 1000;
/// EDUs per transaction (the spec's limit), and the most kept waiting.
pub const TXN_EDUS: i64 = 100;
pub const MAX_WAITING_EDUS: i64 = 1000;
/// Waiting events (not in the transaction in flight) past which an unreachable
/// destination's queue keeps only each room's newest event.
pub const CATCH_UP_AFTER: i64 = 1000;

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS outgoing (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    room_id  TEXT NOT NULL,
    event_id TEXT NOT NULL,
    txn_id   TEXT,
    UNIQUE (room_id, event_id)
);
CREATE TABLE IF NOT EXISTS outgoing_edus (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    edu    TEXT NOT NULL,
    txn_id TEXT
);
CREATE TABLE IF NOT EXISTS outgoing_sent (
    room_id  TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (room_id, event_id)
);
CREATE TABLE IF NOT EXISTS outgoing_meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
)";

pub fn init(db: &dyn Sql) -> Result<(), SqlError> {
    db.execute_batch(SCHEMA)
}

/// How many of the latest acknowledged events are remembered, so that the same event
/// handed over twice (by the room at once and by the log's consumer later) is sent once.
pub const SENT_REMEMBERED: i64 = 2000;

/// Queues events for the destination (ones already queued, or recently sent, are not
/// queued again). A destination backing off with more than `CATCH_UP_AFTER` events
/// waiting keeps only the newest of each room.
pub fn enqueue(db: &dyn Sql, events: &[(String, String)]) -> Result<(), SqlError> {
    for (room_id, event_id) in events {
        db.execute(
            "INSERT INTO outgoing (room_id, event_id) SELECT ?1, ?2 WHERE NOT EXISTS \
             (SELECT 1 FROM outgoing_sent WHERE room_id = ?1 AND event_id = ?2) ON CONFLICT DO NOTHING",
            params![room_id.as_str(), event_id.as_str()],
        )?;
    }
    if backing_off(db)? && waiting(db)? > CATCH_UP_AFTER {
        db.execute(
            "DELETE FROM outgoing WHERE txn_id IS NULL AND seq NOT IN \
             (SELECT max(seq) FROM outgoing WHERE txn_id IS NULL GROUP BY room_id)",
            params![],
        )?;
    }
    Ok(())
}

/// Events waiting outside the transaction in flight.
fn waiting(db: &dyn Sql) -> Result<i64, SqlError> {
    db.query_opt("SELECT COUNT(*) FROM outgoing WHERE txn_id IS NULL", params![])?
        .map(|r| r.int(0))
        .transpose()
        .map(|n| n.unwrap_or(0))
}

/// Queues EDUs (JSON text each); beyond the newest `MAX_WAITING_EDUS` not yet in a
/// transaction, the oldest are dropped.
pub fn enqueue_edus(db: &dyn Sql, edus: &[String]) -> Result<(), SqlError> {
    for edu in edus {
        db.execute(
            "INSERT INTO outgoing_edus (edu) VALUES (?)",
            params![edu.as_str()],
        )?;
    }
    db.execute(
        "DELETE FROM outgoing_edus WHERE txn_id IS NULL AND seq NOT IN \
         (SELECT seq FROM outgoing_edus WHERE txn_id IS NULL ORDER BY seq DESC LIMIT ?)",
        params![MAX_WAITING_EDUS],
    )
}

/// A transaction to send: its id, its events (room id, event id) and its EDUs, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Txn {
    pub txn_id: String,
    pub events: Vec<(String, String)>,
    pub edus: Vec<String>,
}

/// The transaction to send now: the one sent before and not yet acknowledged, or a
/// new one of the oldest queued events; `None` when nothing waits.
pub fn next_txn(db: &dyn Sql) -> Result<Option<Txn>, SqlError> {
    let pending = db.query_opt(
        "SELECT txn_id FROM (SELECT txn_id, seq FROM outgoing WHERE txn_id IS NOT NULL \
         UNION ALL SELECT txn_id, seq FROM outgoing_edus WHERE txn_id IS NOT NULL) ORDER BY seq LIMIT 1",
        params![],
    )?;
    let txn_id = match pending {
        Some(row) => row.text(0)?.to_owned(),
        None => {
            let has_events = db
                .query_opt("SELECT 1 FROM outgoing LIMIT 1", params![])?
                .is_some();
            let has_edus = db
                .query_opt("SELECT 1 FROM outgoing_edus LIMIT 1", params![])?
                .is_some();
            if !has_events && !has_edus {
                return Ok(None);
            }
            // A new id, never used before: the meta counter.
            let next = db
                .query_opt("SELECT value FROM outgoing_meta WHERE key = 'txn'", params![])?
                .map(|r| r.int(0))
                .transpose()?
                .unwrap_or(0)
                + 1;
            db.execute(
                "INSERT INTO outgoing_meta (key, value) VALUES ('txn', ?) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![next],
            )?;
            let txn_id = format!("t{next}");
            db.execute(
                "UPDATE outgoing SET txn_id = ? WHERE seq IN (SELECT seq FROM outgoing ORDER BY seq LIMIT ?)",
                params![txn_id.as_str(), TXN_PDUS],
            )?;
            db.execute(
                "UPDATE outgoing_edus SET txn_id = ? WHERE seq IN \
                 (SELECT seq FROM outgoing_edus ORDER BY seq LIMIT ?)",
                params![txn_id.as_str(), TXN_EDUS],
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
    let edus = db
        .query(
            "SELECT edu FROM outgoing_edus WHERE txn_id = ? ORDER BY seq",
            params![txn_id.as_str()],
        )?
        .iter()
        .map(|r| r.text(0).map(str::to_owned))
        .collect::<Result<Vec<_>, SqlError>>()?;
    Ok(Some(Txn { txn_id, events, edus }))
}

/// The destination acknowledged the transaction: its events are done, the backoff
/// starts over.
pub fn acknowledged(db: &dyn Sql, txn_id: &str) -> Result<(), SqlError> {
    db.execute(
        "INSERT OR IGNORE INTO outgoing_sent (room_id, event_id) \
         SELECT room_id, event_id FROM outgoing WHERE txn_id = ? ORDER BY seq",
        params![txn_id],
    )?;
    db.execute(
        "DELETE FROM outgoing_sent WHERE rowid <= (SELECT MAX(rowid) FROM outgoing_sent) - ?",
        params![SENT_REMEMBERED],
    )?;
    db.execute("DELETE FROM outgoing WHERE txn_id = ?", params![txn_id])?;
    db.execute("DELETE FROM outgoing_edus WHERE txn_id = ?", params![txn_id])?;
    db.execute("DELETE FROM outgoing_meta WHERE key = 'failures'", params![])
}

/// A send failed: how long to wait before the next attempt, the backoff stretched by
/// up to a quarter by `jitter` (in `[0, 1)`), so that destinations that failed together
/// are not all tried again at the same moment.
pub fn failed(db: &dyn Sql, jitter: f64) -> Result<u64, SqlError> {
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
    let base = backoff_ms(failures as u32);
    Ok(base + (base as f64 * jitter.clamp(0.0, 1.0) / 4.0) as u64)
}

/// The destination was heard from (it sent a request): whether a backoff was cut short
/// (what waits is then to be sent at once).
pub fn heard_from(db: &dyn Sql) -> Result<bool, SqlError> {
    if !backing_off(db)? {
        return Ok(false);
    }
    db.execute("DELETE FROM outgoing_meta WHERE key = 'failures'", params![])?;
    Ok(queued(db)? > 0)
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

/// How many events and EDUs wait.
pub fn queued(db: &dyn Sql) -> Result<i64, SqlError> {
    db.query_opt(
        "SELECT (SELECT COUNT(*) FROM outgoing) + (SELECT COUNT(*) FROM outgoing_edus)",
        params![],
    )?
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
    fn edus_ride_with_transactions_and_the_oldest_waiting_are_dropped() {
        let db = MemorySql::new();
        init(&db).expect("schema");
        let edus: Vec<String> = (0..1100).map(|i| format!("{{\"n\":{i}}}")).collect();
        enqueue_edus(&db, &edus).expect("enqueue");
        assert_eq!(
            queued(&db).expect("count"),
            MAX_WAITING_EDUS,
            "the newest 1,000 kept"
        );
        enqueue(&db, &[ev(1)]).expect("an event");
        let txn = next_txn(&db).expect("next").expect("a txn");
        assert_eq!(txn.events, vec![ev(1)]);
        assert_eq!(txn.edus.len(), TXN_EDUS as usize);
        assert_eq!(txn.edus[0], "{\"n\":100}");
        assert_eq!(
            next_txn(&db).expect("retry"),
            Some(txn.clone()),
            "a retry is the same"
        );
        acknowledged(&db, &txn.txn_id).expect("ack");
        let only_edus = next_txn(&db)
            .expect("next")
            .expect("EDUs alone make a transaction");
        assert!(only_edus.events.is_empty() && only_edus.edus.len() == 100);
        assert_ne!(only_edus.txn_id, txn.txn_id);
    }

    #[test]
    fn an_event_handed_over_again_after_it_was_sent_is_not_sent_twice() {
        let db = MemorySql::new();
        init(&db).expect("schema");
        enqueue(&db, &[ev(1), ev(2)]).expect("enqueue");
        let txn = next_txn(&db).expect("next").expect("a txn");
        // Handed over again while in flight, then after it was acknowledged.
        enqueue(&db, &[ev(1)]).expect("again");
        acknowledged(&db, &txn.txn_id).expect("ack");
        enqueue(&db, &[ev(2), ev(1), ev(3)]).expect("again");
        let next = next_txn(&db).expect("next").expect("the new one");
        assert_eq!(next.events, vec![ev(3)]);
        acknowledged(&db, &next.txn_id).expect("ack");
        // Only the latest sent are remembered.
        let many: Vec<_> = (10..10 + SENT_REMEMBERED as usize + 5).map(ev).collect();
        enqueue(&db, &many).expect("many");
        while let Some(t) = next_txn(&db).expect("next") {
            acknowledged(&db, &t.txn_id).expect("ack");
        }
        enqueue(&db, &[ev(1)]).expect("long ago");
        assert_eq!(next_txn(&db).expect("next").map(|t| t.events), Some(vec![ev(1)]));
    }

    #[test]
    fn failures_back_off_exponentially_and_a_success_resets() {
        let db = MemorySql::new();
        init(&db).expect("schema");
        assert!(!backing_off(&db).expect("state"));
        assert_eq!(failed(&db, 0.0).expect("1"), 5_000);
        assert_eq!(failed(&db, 0.0).expect("2"), 10_000);
        assert_eq!(failed(&db, 0.5).expect("3"), 22_500, "stretched by an eighth");
        assert!(backing_off(&db).expect("state"));
        assert_eq!(backoff_ms(30), MAX_BACKOFF_MS);
        acknowledged(&db, "none").expect("ack");
        assert!(!backing_off(&db).expect("state"));
        assert_eq!(failed(&db, 0.99).expect("again"), 6_237);
        // Heard from while backing off: the backoff ends; with nothing queued there is
        // nothing to send.
        assert!(!heard_from(&db).expect("heard"));
        assert!(!backing_off(&db).expect("state"));
        failed(&db, 0.0).expect("fail");
        enqueue(&db, &[ev(1)]).expect("enqueue");
        assert!(heard_from(&db).expect("heard"), "what waits goes now");
        assert!(!heard_from(&db).expect("heard"), "once");
    }

    #[test]
    fn an_unreachable_destination_keeps_the_newest_event_of_each_room() {
        let db = MemorySql::new();
        init(&db).expect("schema");
        let in_room = |room: &str, i: usize| (room.to_owned(), format!("$e{i}"));
        enqueue(&db, &[in_room("!a:hs", 0), in_room("!b:hs", 1)]).expect("enqueue");
        let in_flight = next_txn(&db).expect("next").expect("a txn");
        failed(&db, 0.0).expect("fail");
        // Reachable or not, up to the bound everything is kept.
        let many: Vec<_> = (2..(CATCH_UP_AFTER as usize + 2))
            .map(|i| in_room(if i % 2 == 0 { "!a:hs" } else { "!b:hs" }, i))
            .collect();
        enqueue(&db, &many).expect("enqueue");
        assert_eq!(queued(&db).expect("count"), CATCH_UP_AFTER + 2);
        // One more: past the bound, each room keeps its newest waiting event.
        let last = in_room("!a:hs", 5000);
        enqueue(&db, std::slice::from_ref(&last)).expect("enqueue");
        assert_eq!(
            queued(&db).expect("count"),
            2 + 2,
            "the transaction in flight and two"
        );
        assert_eq!(next_txn(&db).expect("retry"), Some(in_flight.clone()));
        acknowledged(&db, &in_flight.txn_id).expect("ack");
        let catch_up = next_txn(&db).expect("next").expect("a txn");
        let b_last = many.last().expect("last").clone();
        assert_eq!(catch_up.events, vec![b_last, last]);
        // A destination that answers keeps everything.
        acknowledged(&db, &catch_up.txn_id).expect("ack");
        let more: Vec<_> = (0..(CATCH_UP_AFTER as usize + 10))
            .map(|i| in_room("!a:hs", 10_000 + i))
            .collect();
        enqueue(&db, &more).expect("enqueue");
        assert_eq!(queued(&db).expect("count"), CATCH_UP_AFTER + 10);
    }
}
