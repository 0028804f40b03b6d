//! The Room Durable Object's tables behind plain functions over `Sql`: events, state
//! groups, forward extremities, transaction ids, the outbox and room metadata.

use std::collections::BTreeMap;

use crate::params;
use crate::storage::sql::{Row, Sql, SqlError, SqlValue};

use super::schema::SCHEMA;

mod dag;
mod erasure;
mod groups;
mod invites;
mod outbox;
pub mod search;
pub use dag::{
    add_backward_extremities, add_pending_redaction, backward_extremities, event_ids_by_nids,
    has_backward_extremities, has_pending_redactions, lowest_stream_pos, remove_backward_extremity,
    take_pending_redactions, upgrade_outlier,
};
pub use erasure::{erase_sender, erased_senders};
pub use groups::{load_state, store_state};
pub use invites::{put_remote_invite, remote_invite, RemoteInvite};
pub use outbox::{clear_outbox, log_records, outbox, outbox_mentioning, OutboxRows};

/// `(event type, state key)`.
pub type StateKey = (String, String);
/// State as stored: key → event nid (the local numeric id of the event).
pub type StateNids = BTreeMap<StateKey, i64>;

/// How an event entered the room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Extends the DAG: has state before/after and a stream position if accepted.
    New = 0,
    /// Known without its state (auth events, fetched missing events).
    Outlier = 1,
    /// History fetched backwards.
    Backfill = 2,
}

/// The outcome of authorization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Accepted = 0,
    Rejected = 1,
    /// Allowed by its auth events and the state before it, but not by current state:
    /// stored, never sent to clients, never an extremity.
    SoftFailed = 2,
}

/// A stored event's row (without its JSON unless asked for).
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    pub nid: i64,
    pub event_id: String,
    pub stream_pos: Option<i64>,
    pub depth: i64,
    pub event_type: String,
    pub state_key: Option<String>,
    pub sender: String,
    pub status: i64,
    /// `Kind` as stored.
    pub kind: i64,
    pub state_before: Option<i64>,
    pub state_after: Option<i64>,
    pub redacted_by: Option<String>,
    pub json: String,
}

const EVENT_COLUMNS: &str =
    "nid, event_id, stream_pos, depth, type, state_key, sender, status, state_before, state_after, redacted_by, json, kind";

fn event_row(row: &Row) -> Result<EventRow, SqlError> {
    Ok(EventRow {
        nid: row.int(0)?,
        event_id: row.text(1)?.to_owned(),
        stream_pos: row.opt_int(2)?,
        depth: row.int(3)?,
        event_type: row.text(4)?.to_owned(),
        state_key: row.opt_text(5)?.map(str::to_owned),
        sender: row.text(6)?.to_owned(),
        status: row.int(7)?,
        state_before: row.opt_int(8)?,
        state_after: row.opt_int(9)?,
        redacted_by: row.opt_text(10)?.map(str::to_owned),
        json: row.text(11)?.to_owned(),
        kind: row.int(12)?,
    })
}

/// What `insert_event` stores.
#[derive(Debug, Clone)]
pub struct NewEvent<'a> {
    pub event_id: &'a str,
    pub stream_pos: Option<i64>,
    pub depth: i64,
    pub event_type: &'a str,
    pub state_key: Option<&'a str>,
    pub sender: &'a str,
    pub origin_ts: i64,
    pub kind: Kind,
    pub status: Status,
    pub reason: Option<&'a str>,
    pub state_before: Option<i64>,
    pub state_after: Option<i64>,
    pub json: &'a str,
}

pub fn init(db: &dyn Sql) -> Result<(), SqlError> {
    db.execute_batch(SCHEMA)?;
    super::ephemeral::init(db)
}

pub fn meta(db: &dyn Sql, key: &str) -> Result<Option<String>, SqlError> {
    db.query_opt("SELECT value FROM meta WHERE key = ?", params![key])?
        .map(|r| r.text(0).map(str::to_owned))
        .transpose()
}

pub fn set_meta(db: &dyn Sql, key: &str, value: &str) -> Result<(), SqlError> {
    db.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )
}

pub fn meta_int(db: &dyn Sql, key: &str) -> Result<Option<i64>, SqlError> {
    Ok(meta(db, key)?.and_then(|v| v.parse().ok()))
}

/// The highest stream position given out (0 for an empty room), events' or invites'
/// from other servers (`remote_invites`).
pub fn latest_stream_pos(db: &dyn Sql) -> Result<i64, SqlError> {
    Ok(db
        .query_opt(
            "SELECT max(p) FROM (SELECT max(stream_pos) AS p FROM events \
             UNION ALL SELECT max(stream_pos) FROM remote_invites)",
            params![],
        )?
        .map(|r| r.opt_int(0))
        .transpose()?
        .flatten()
        .unwrap_or(0))
}

/// Whether `user` was ever accepted as joined to the room (former members who never
/// joined, such as rejected invitees, see no history).
pub fn ever_joined(db: &dyn Sql, user: &str) -> Result<bool, SqlError> {
    Ok(db
        .query_opt(
            "SELECT 1 FROM events WHERE type = 'm.room.member' AND state_key = ? AND status = 0 \
             AND instr(json, '\"membership\":\"join\"') > 0 LIMIT 1",
            params![user],
        )?
        .is_some())
}

/// Bound parameters per statement (the Durable Object SQLite limit).
const MAX_PARAMS: usize = 100;

/// Rows gathered to be inserted together, as multi-row `INSERT ... VALUES` statements of as
/// many rows as the parameter limit allows: a room writes an input batch's events and
/// outbox records with a few statements instead of one per row. (Passing the rows as one
/// JSON array to `json_each` costs SQLite more than it saves: every column re-reads the
/// row's JSON.)
#[derive(Debug, Default)]
struct Rows {
    values: Vec<SqlValue>,
}

impl Rows {
    fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Runs `insert` (ending in `VALUES `) for the rows of `width` columns gathered so far.
    fn write(&mut self, db: &dyn Sql, insert: &str, width: usize) -> Result<(), SqlError> {
        let values = std::mem::take(&mut self.values);
        let row = format!("({})", vec!["?"; width].join(", "));
        for chunk in values.chunks(MAX_PARAMS / width * width) {
            let marks = vec![row.as_str(); chunk.len() / width].join(", ");
            db.execute(&format!("{insert}{marks}"), chunk)?;
        }
        Ok(())
    }
}

/// Event rows, each with the nid its writer gave it (the room is the only writer of its
/// database, so it numbers its events itself).
#[derive(Debug, Default)]
pub struct EventRows(Rows);

impl EventRows {
    const WIDTH: usize = 14;

    pub fn push(&mut self, nid: i64, e: &NewEvent<'_>) {
        self.0.values.extend([
            nid.into(),
            e.event_id.into(),
            e.stream_pos.into(),
            e.depth.into(),
            e.event_type.into(),
            e.state_key.into(),
            e.sender.into(),
            e.origin_ts.into(),
            (e.kind as i64).into(),
            (e.status as i64).into(),
            e.reason.into(),
            e.state_before.into(),
            e.state_after.into(),
            e.json.into(),
        ]);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Inserts the gathered rows and empties the list.
    pub fn write(&mut self, db: &dyn Sql) -> Result<(), SqlError> {
        self.0.write(
            db,
            "INSERT INTO events (nid, event_id, stream_pos, depth, type, state_key, sender, origin_ts, kind, \
             status, reason, state_before, state_after, json) VALUES ",
            Self::WIDTH,
        )
    }
}

/// Forgets the room: every row of the room's own tables (a bootstrap that failed).
/// Invites from other servers stay, with their log records still to publish.
pub fn clear_room(db: &dyn Sql) -> Result<(), SqlError> {
    db.execute(
        "DELETE FROM outbox WHERE stream_pos NOT IN (SELECT stream_pos FROM remote_invites)",
        params![],
    )?;
    for table in [
        "meta",
        "events",
        "extremities",
        "state_groups",
        "state_entries",
        "txns",
        "backward_extremities",
        "pending_redactions",
        "published",
    ] {
        db.execute(&format!("DELETE FROM {table}"), params![])?;
    }
    Ok(())
}

/// The next free event nid.
pub fn next_nid(db: &dyn Sql) -> Result<i64, SqlError> {
    Ok(db
        .query_opt("SELECT coalesce(max(nid), 0) + 1 FROM events", params![])?
        .map(|r| r.int(0))
        .transpose()?
        .unwrap_or(1))
}

pub fn event_by_id(db: &dyn Sql, event_id: &str) -> Result<Option<EventRow>, SqlError> {
    db.query_opt(
        &format!("SELECT {EVENT_COLUMNS} FROM events WHERE event_id = ?"),
        params![event_id],
    )?
    .map(|r| event_row(&r))
    .transpose()
}

pub fn event_by_nid(db: &dyn Sql, nid: i64) -> Result<Option<EventRow>, SqlError> {
    db.query_opt(
        &format!("SELECT {EVENT_COLUMNS} FROM events WHERE nid = ?"),
        params![nid],
    )?
    .map(|r| event_row(&r))
    .transpose()
}

pub fn events_by_nids(db: &dyn Sql, nids: &[i64]) -> Result<Vec<EventRow>, SqlError> {
    let mut out = Vec::with_capacity(nids.len());
    // Bounded parameter count per statement (Durable Object SQLite allows 100).
    for chunk in nids.chunks(90) {
        let marks = vec!["?"; chunk.len()].join(",");
        let params: Vec<_> = chunk.iter().map(|n| (*n).into()).collect();
        for row in db.query(
            &format!("SELECT {EVENT_COLUMNS} FROM events WHERE nid IN ({marks})"),
            &params,
        )? {
            out.push(event_row(&row)?);
        }
    }
    Ok(out)
}

pub fn mark_redacted(db: &dyn Sql, event_id: &str, redacted_by: &str, json: &str) -> Result<(), SqlError> {
    search::forget(db, event_id)?;
    db.execute(
        "UPDATE events SET redacted_by = ?, json = ? WHERE event_id = ?",
        params![redacted_by, json, event_id],
    )
}

/// Accepted events with a stream position in `(from, to]`, ascending, at most `limit`.
pub fn events_after(db: &dyn Sql, from: i64, to: i64, limit: i64) -> Result<Vec<EventRow>, SqlError> {
    db.query(
        &format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE stream_pos > ? AND stream_pos <= ? AND status = 0 \
             ORDER BY stream_pos ASC LIMIT ?"
        ),
        params![from, to, limit],
    )?
    .iter()
    .map(event_row)
    .collect()
}

/// Accepted events with a stream position below `before`, descending, at most `limit`.
/// Accepted events with `after < stream_pos < before`, newest first, at most `limit`.
pub fn events_between(db: &dyn Sql, after: i64, before: i64, limit: i64) -> Result<Vec<EventRow>, SqlError> {
    db.query(
        &format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE stream_pos > ? AND stream_pos < ? AND status = 0 \
             ORDER BY stream_pos DESC LIMIT ?"
        ),
        params![after, before, limit],
    )?
    .iter()
    .map(event_row)
    .collect()
}

pub fn events_before(db: &dyn Sql, before: i64, limit: i64) -> Result<Vec<EventRow>, SqlError> {
    db.query(
        &format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE stream_pos < ? AND status = 0 \
             ORDER BY stream_pos DESC LIMIT ?"
        ),
        params![before, limit],
    )?
    .iter()
    .map(event_row)
    .collect()
}

// ---- extremities, stream, transactions, outbox ----

pub fn extremities(db: &dyn Sql) -> Result<Vec<String>, SqlError> {
    db.query("SELECT event_id FROM extremities ORDER BY event_id", params![])?
        .iter()
        .map(|r| r.text(0).map(str::to_owned))
        .collect()
}

/// The new event replaces the extremities it references.
/// Which of `event_ids` are stored (in any status), in one query.
pub fn stored_among(
    db: &dyn Sql,
    event_ids: &[String],
) -> Result<std::collections::HashSet<String>, SqlError> {
    if event_ids.is_empty() {
        return Ok(Default::default());
    }
    db.query(
        "SELECT event_id FROM events WHERE event_id IN (SELECT value FROM json_each(?))",
        params![json_list(event_ids)?],
    )?
    .iter()
    .map(|r| r.text(0).map(str::to_owned))
    .collect()
}

/// Strings as a JSON array, for `json_each(?)`.
fn json_list(items: &[impl serde::Serialize]) -> Result<String, SqlError> {
    serde_json::to_string(items).map_err(|e| SqlError(e.to_string()))
}

/// Rewrites the stored forward extremities from `old` to `new`: one statement for the
/// common linear step (one replaced by one), else a delete and an insert.
pub fn write_extremities(db: &dyn Sql, old: &[String], new: &[String]) -> Result<(), SqlError> {
    let removed: Vec<&String> = old.iter().filter(|e| !new.contains(e)).collect();
    let added: Vec<&String> = new.iter().filter(|e| !old.contains(e)).collect();
    match (removed.as_slice(), added.as_slice()) {
        ([], []) => Ok(()),
        ([gone], [new]) => db.execute(
            "UPDATE OR REPLACE extremities SET event_id = ? WHERE event_id = ?",
            params![new.as_str(), gone.as_str()],
        ),
        _ => {
            if !removed.is_empty() {
                db.execute(
                    "DELETE FROM extremities WHERE event_id IN (SELECT value FROM json_each(?))",
                    params![json_list(&removed)?],
                )?;
            }
            if !added.is_empty() {
                db.execute(
                    "INSERT OR IGNORE INTO extremities (event_id) SELECT value FROM json_each(?)",
                    params![json_list(&added)?],
                )?;
            }
            Ok(())
        }
    }
}

pub fn txn_event(db: &dyn Sql, user: &str, device: &str, txn: &str) -> Result<Option<String>, SqlError> {
    db.query_opt(
        "SELECT event_id FROM txns WHERE user_id = ? AND device_id = ? AND txn_id = ?",
        params![user, device, txn],
    )?
    .map(|r| r.text(0).map(str::to_owned))
    .transpose()
}

pub fn set_txn(db: &dyn Sql, user: &str, device: &str, txn: &str, event_id: &str) -> Result<(), SqlError> {
    db.execute(
        "INSERT OR IGNORE INTO txns (user_id, device_id, txn_id, event_id) VALUES (?, ?, ?, ?)",
        params![user, device, txn, event_id],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::sql::testing::MemorySql;

    fn db() -> MemorySql {
        let db = MemorySql::new();
        init(&db).expect("schema");
        init(&db).expect("schema is idempotent");
        db
    }

    fn key(t: &str, k: &str) -> StateKey {
        (t.to_owned(), k.to_owned())
    }

    #[test]
    fn state_groups_store_deltas_and_load_full_state() {
        let db = db();
        let mut state = StateNids::new();
        state.insert(key("m.room.create", ""), 1);
        let g1 = store_state(&db, None, &state).expect("g1");
        let mut groups = vec![(g1, state.clone())];
        // A long chain of single changes, crossing several snapshot intervals.
        for i in 0..100i64 {
            let (parent, parent_state) = groups.last().cloned().expect("parent");
            let mut next = parent_state.clone();
            next.insert(key("m.room.member", &format!("@u{}:hs", i % 40)), 100 + i);
            let g = store_state(&db, Some((parent, &parent_state)), &next).expect("store");
            groups.push((g, next));
        }
        for (g, expected) in &groups {
            assert_eq!(&load_state(&db, *g).expect("load"), expected, "group {g}");
        }
        // Storage grows with changes: ~one row per change plus periodic snapshots.
        let rows = db
            .query("SELECT count(*) FROM state_entries", params![])
            .expect("count")[0]
            .int(0)
            .expect("int");
        assert!(rows < 101 + 4 * 41, "{rows} rows");
    }

    #[test]
    fn unchanged_state_reuses_the_group_and_removals_are_recorded() {
        let db = db();
        let mut a = StateNids::new();
        a.insert(key("m.room.create", ""), 1);
        a.insert(key("m.room.topic", ""), 2);
        let g1 = store_state(&db, None, &a).expect("g1");
        assert_eq!(store_state(&db, Some((g1, &a)), &a).expect("same"), g1);
        let mut b = a.clone();
        b.remove(&key("m.room.topic", ""));
        let g2 = store_state(&db, Some((g1, &a)), &b).expect("g2");
        assert_eq!(load_state(&db, g2).expect("load"), b);
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn extremities_are_rewritten_from_the_difference() {
        let db = db();
        let steps: [&[&str]; 5] = [&["$a"], &["$b"], &["$b", "$c"], &["$d"], &["$e", "$f", "$g"]];
        let mut old = Vec::new();
        for step in steps {
            let new = strings(step);
            write_extremities(&db, &old, &new).expect("write");
            assert_eq!(extremities(&db).expect("read"), new);
            old = new;
        }
    }

    fn event<'a>(id: &'a str, pos: Option<i64>, json: &'a str) -> NewEvent<'a> {
        NewEvent {
            event_id: id,
            stream_pos: pos,
            depth: 3,
            event_type: "m.room.message",
            state_key: None,
            sender: "@a:hs",
            origin_ts: 1_700_000_000_000,
            kind: Kind::New,
            status: Status::Accepted,
            reason: Some("why \"quoted\" ü"),
            state_before: Some(4),
            state_after: None,
            json,
        }
    }

    #[test]
    fn gathered_rows_are_written_exactly() {
        let db = db();
        assert_eq!(next_nid(&db).expect("nid"), 1);
        let mut rows = EventRows::default();
        let json = r#"{"content":{"body":"a \"b\" \\ c\n ☃"},"type":"m.room.message"}"#;
        rows.push(1, &event("$one", Some(1), json));
        rows.push(7, &event("$two", None, "{}"));
        assert!(!rows.is_empty());
        rows.write(&db).expect("write");
        assert!(rows.is_empty());
        rows.write(&db).expect("nothing to write");
        let one = event_by_id(&db, "$one").expect("read").expect("stored");
        assert_eq!(
            (
                one.nid,
                one.stream_pos,
                one.depth,
                one.state_before,
                one.state_after
            ),
            (1, Some(1), 3, Some(4), None)
        );
        assert_eq!(one.json, json);
        assert_eq!(one.sender, "@a:hs");
        let two = event_by_nid(&db, 7).expect("read").expect("stored");
        assert_eq!((two.event_id.as_str(), two.stream_pos), ("$two", None));
        let reason = db
            .query(
                "SELECT reason, origin_ts, kind, status FROM events WHERE nid = 7",
                params![],
            )
            .expect("row");
        assert_eq!(reason[0].text(0).expect("reason"), "why \"quoted\" ü");
        assert_eq!(reason[0].int(1).expect("ts"), 1_700_000_000_000);
        assert_eq!(next_nid(&db).expect("nid"), 8);

        // More rows than one statement takes (7 events, 50 outbox records).
        for nid in 10..40 {
            rows.push(nid, &event(&format!("$e{nid}"), Some(nid), "{}"));
        }
        rows.write(&db).expect("write many");
        assert_eq!(next_nid(&db).expect("nid"), 40);
        assert_eq!(
            event_by_nid(&db, 23).expect("read").expect("row").event_id,
            "$e23"
        );
    }

    #[test]
    fn storage_per_state_change_does_not_grow_with_the_state() {
        let count = |db: &MemorySql| {
            db.query("SELECT count(*) FROM state_entries", params![])
                .expect("count")[0]
                .int(0)
                .expect("n")
        };
        for size in [100usize, 2_000] {
            let db = db();
            let mut state: StateNids = (0..size)
                .map(|i| (key("m.room.member", &format!("@u{i}:hs")), i as i64))
                .collect();
            let mut group = store_state(&db, None, &state).expect("snapshot");
            let base = count(&db);
            let changes = 600;
            for c in 0..changes {
                let before = state.clone();
                state.insert(key("m.room.topic", ""), 1_000_000 + c);
                group = store_state(&db, Some((group, &before)), &state).expect("change");
            }
            let per_change = (count(&db) - base) as f64 / changes as f64;
            assert!(
                per_change <= 6.0,
                "{per_change} entries per change at {size} entries"
            );
            assert_eq!(load_state(&db, group).expect("load"), state, "reads stay exact");
        }
    }
}
