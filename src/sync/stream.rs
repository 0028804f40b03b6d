//! The user's sync stream, to-device inbox, filters and presence: the User Durable
//! Object's tables behind plain synchronous functions over `Sql`.
//!
//! `stream` has one row per thing that happened for the user, in arrival order
//! (`pos`), each pointing at a position in a room's own stream (`room_pos`: an event
//! position, a receipt serial or a typing serial). A row is only added when it moves
//! its room forward, so notes are idempotent and late or duplicate notes (the queue is
//! at-least-once, and the direct wake-up races it) add nothing. A sync from `since`
//! sends, per room, the room's range `(max room_pos at since, max room_pos now]`:
//! every event exactly once, in the room's order.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::params;
use crate::storage::sql::{Sql, SqlError};

use super::protocol::{Note, NoteKind, RoomPlan, SyncPlan};
use super::token::SyncToken;

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS stream (
    pos      INTEGER PRIMARY KEY,
    room_id  TEXT NOT NULL,
    kind     TEXT NOT NULL,
    room_pos INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS stream_by_room ON stream (room_id, kind, pos);
CREATE TABLE IF NOT EXISTS heads (
    room_id  TEXT NOT NULL,
    kind     TEXT NOT NULL,
    room_pos INTEGER NOT NULL,
    PRIMARY KEY (room_id, kind)
);
CREATE TABLE IF NOT EXISTS rooms (
    room_id    TEXT PRIMARY KEY,
    membership TEXT NOT NULL,
    member_pos INTEGER NOT NULL,
    joined_pos INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS to_device (
    pos           INTEGER PRIMARY KEY,
    device_id     TEXT NOT NULL,
    sender        TEXT NOT NULL,
    sender_device TEXT NOT NULL,
    txn_id        TEXT NOT NULL,
    type          TEXT NOT NULL,
    content       TEXT NOT NULL,
    UNIQUE (device_id, sender, sender_device, txn_id)
);
CREATE INDEX IF NOT EXISTS to_device_by_device ON to_device (device_id, pos);
CREATE TABLE IF NOT EXISTS filters (
    id   INTEGER PRIMARY KEY,
    json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS owner (
    id      INTEGER PRIMARY KEY CHECK (id = 0),
    user_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS presence_seen (
    user_id TEXT PRIMARY KEY,
    content TEXT NOT NULL,
    pos     INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS presence (
    id          INTEGER PRIMARY KEY CHECK (id = 0),
    presence    TEXT NOT NULL,
    status_msg  TEXT,
    last_active INTEGER NOT NULL
)
";

/// Most to-device messages sent in one sync.
pub const TO_DEVICE_LIMIT: i64 = 100;

pub fn init(db: &dyn Sql) -> Result<(), SqlError> {
    db.execute_batch(SCHEMA)?;
    // Streams written before `heads` existed: fill it once from the stream.
    if counter(db, "heads_filled")? == 0 {
        db.execute(
            "INSERT OR IGNORE INTO heads (room_id, kind, room_pos) \
             SELECT room_id, kind, MAX(room_pos) FROM stream GROUP BY room_id, kind",
            params![],
        )?;
        db.execute(
            "INSERT INTO meta (key, value) VALUES ('heads_filled', 1) \
             ON CONFLICT (key) DO UPDATE SET value = 1",
            params![],
        )?;
    }
    Ok(())
}

fn head(db: &dyn Sql, room_id: &str, kind: NoteKind) -> Result<i64, SqlError> {
    Ok(head_opt(db, room_id, kind)?.unwrap_or(0))
}

fn head_opt(db: &dyn Sql, room_id: &str, kind: NoteKind) -> Result<Option<i64>, SqlError> {
    db.query_opt(
        "SELECT room_pos FROM heads WHERE room_id = ? AND kind = ?",
        params![room_id, kind.as_str()],
    )?
    .map(|r| r.int(0))
    .transpose()
}

fn counter(db: &dyn Sql, key: &str) -> Result<i64, SqlError> {
    Ok(db
        .query_opt("SELECT value FROM meta WHERE key = ?", params![key])?
        .map(|r| r.int(0))
        .transpose()?
        .unwrap_or(0))
}

/// Takes the next value of a counter (never reused, even after deletes).
fn next(db: &dyn Sql, key: &str) -> Result<i64, SqlError> {
    let value = counter(db, key)? + 1;
    db.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )?;
    Ok(value)
}

/// Records notes; returns whether the stream moved (so waiting syncs should wake).
pub fn notify(db: &dyn Sql, notes: &[Note]) -> Result<bool, SqlError> {
    let mut moved = false;
    for note in notes {
        if let Some(m) = &note.membership {
            let prev = db
                .query_opt(
                    "SELECT membership, member_pos, joined_pos FROM rooms WHERE room_id = ?",
                    params![note.room_id.as_str()],
                )?
                .map(|r| Ok::<_, SqlError>((r.text(0)?.to_owned(), r.int(1)?, r.int(2)?)))
                .transpose()?;
            let newer = prev.as_ref().is_none_or(|(_, pos, _)| note.pos > *pos);
            if newer {
                // `joined_pos` moves only when the user becomes joined (not on a
                // profile change while joined).
                let joined_pos = match &prev {
                    Some((old, _, jp)) if old == "join" || m != "join" => *jp,
                    _ if m == "join" => note.pos,
                    _ => 0,
                };
                db.execute(
                    "INSERT INTO rooms (room_id, membership, member_pos, joined_pos) VALUES (?, ?, ?, ?) \
                     ON CONFLICT (room_id) DO UPDATE SET membership = excluded.membership, \
                     member_pos = excluded.member_pos, joined_pos = excluded.joined_pos",
                    params![note.room_id.as_str(), m.as_str(), note.pos, joined_pos],
                )?;
            }
        }
        // A user's presence may be told at serial 0 (never set: offline), which a
        // stream that has none of theirs yet takes.
        let latest = match note.kind {
            NoteKind::Presence => head_opt(db, &note.room_id, note.kind)?.unwrap_or(-1),
            _ => head(db, &note.room_id, note.kind)?,
        };
        if note.pos > latest {
            let pos = next(db, "stream")?;
            db.execute(
                "INSERT INTO stream (pos, room_id, kind, room_pos) VALUES (?, ?, ?, ?)",
                params![pos, note.room_id.as_str(), note.kind.as_str(), note.pos],
            )?;
            db.execute(
                "INSERT INTO heads (room_id, kind, room_pos) VALUES (?, ?, ?) \
                 ON CONFLICT (room_id, kind) DO UPDATE SET room_pos = excluded.room_pos",
                params![note.room_id.as_str(), note.kind.as_str(), note.pos],
            )?;
            if note.kind == NoteKind::Presence {
                let content = note.content.clone().unwrap_or_else(|| json!({}));
                db.execute(
                    "INSERT INTO presence_seen (user_id, content, pos) VALUES (?, ?, ?) \
                     ON CONFLICT (user_id) DO UPDATE SET content = excluded.content, pos = excluded.pos",
                    params![note.room_id.as_str(), content.to_string(), pos],
                )?;
            }
            moved = true;
        }
    }
    Ok(moved)
}

/// A room's membership and, for events, receipts and typing (in that order), its
/// position now and at the token.
struct RoomPositions {
    membership: String,
    joined_pos: i64,
    now: [i64; 3],
    at: [i64; 3],
}

/// The room's event position the user's stream had reached at stream position `at`
/// (`None` when the room had not appeared in it yet).
pub fn room_position(db: &dyn Sql, room_id: &str, at: i64) -> Result<Option<i64>, SqlError> {
    Ok(db
        .query_opt(
            "SELECT MAX(room_pos) FROM stream WHERE room_id = ? AND kind = 'event' AND pos <= ?",
            params![room_id, at],
        )?
        .map(|r| r.opt_int(0))
        .transpose()?
        .flatten())
}

/// What a sync from `since` (or an initial sync) must send. Deletes the to-device
/// messages `since` acknowledges. `now_ms` dates presence (`last_active_ago`).
pub fn plan(
    db: &dyn Sql,
    device_id: &str,
    since: Option<SyncToken>,
    now_ms: u64,
) -> Result<SyncPlan, SqlError> {
    plan_with(db, device_id, since, now_ms, PlanOptions::default())
}

/// What a sync asks for beyond the rooms that moved.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlanOptions {
    /// `full_state=true`: every joined room, moved or not (an incremental sync then
    /// sends each joined room's whole state).
    pub full_state: bool,
    /// The filter's `include_leave`: an initial sync lists left and banned rooms too.
    pub include_leave: bool,
}

/// [`plan`] with options.
pub fn plan_with(
    db: &dyn Sql,
    device_id: &str,
    since: Option<SyncToken>,
    now_ms: u64,
    options: PlanOptions,
) -> Result<SyncPlan, SqlError> {
    let PlanOptions {
        full_state,
        include_leave,
    } = options;
    let now = counter(db, "stream")?;
    let base = since.unwrap_or_default();
    let at = base.stream;
    // Per room, in one read: the membership, and for events, receipts and typing the
    // room's position now and at the token. An initial sync lists the rooms the user
    // is in; an incremental one the rooms that moved since the token.
    let rows = match since {
        None => db.query(
            "SELECT r.room_id, r.membership, r.joined_pos, h.kind, h.room_pos, 0 \
             FROM rooms r LEFT JOIN heads h ON h.room_id = r.room_id \
             AND h.kind IN ('event', 'receipt', 'typing') \
             WHERE r.membership IN ('join', 'invite', 'knock') \
             OR (?1 AND r.membership IN ('leave', 'ban'))",
            params![i64::from(include_leave)],
        )?,
        Some(_) => db.query(
            "WITH changed AS (SELECT DISTINCT room_id FROM stream WHERE pos > ?1 \
             AND room_id != '' AND kind IN ('event', 'receipt', 'typing') \
             UNION SELECT room_id FROM rooms WHERE ?2 AND membership = 'join') \
             SELECT c.room_id, COALESCE(r.membership, 'join'), COALESCE(r.joined_pos, 0), \
             h.kind, h.room_pos, (SELECT MAX(t.room_pos) FROM stream t \
             WHERE t.room_id = c.room_id AND t.kind = h.kind AND t.pos <= ?1) \
             FROM changed c JOIN heads h ON h.room_id = c.room_id \
             AND h.kind IN ('event', 'receipt', 'typing') \
             LEFT JOIN rooms r ON r.room_id = c.room_id",
            params![at, i64::from(full_state)],
        )?,
    };
    let mut positions: BTreeMap<String, RoomPositions> = BTreeMap::new();
    for row in &rows {
        let entry = positions
            .entry(row.text(0)?.to_owned())
            .or_insert_with(|| RoomPositions {
                membership: String::new(),
                joined_pos: 0,
                now: [0; 3],
                at: [0; 3],
            });
        entry.membership = row.text(1)?.to_owned();
        entry.joined_pos = row.int(2)?;
        let slot = match row.opt_text(3)? {
            Some("event") => 0,
            Some("receipt") => 1,
            Some("typing") => 2,
            _ => continue,
        };
        entry.now[slot] = row.int(4)?;
        entry.at[slot] = row.opt_int(5)?.unwrap_or(0);
    }
    let mut rooms = Vec::with_capacity(positions.len());
    for (room_id, p) in positions {
        let membership = p.membership;
        let joined_pos = p.joined_pos;
        let mut from = if since.is_some() { p.at[0] } else { 0 };
        let to = p.now[0];
        // Joined since the token (and maybe left again since): the room is new to the
        // client, which never had its state.
        let full =
            since.is_none() || (matches!(membership.as_str(), "join" | "leave" | "ban") && joined_pos > from);
        if full {
            from = 0;
        }
        let receipts_from = if full { 0 } else { p.at[1] };
        let receipts_to = p.now[1];
        let typing = full || p.now[2] > p.at[2];
        let wanted_whole = full_state && membership == "join";
        if !full && !wanted_whole && to <= from && receipts_to <= receipts_from && !typing {
            continue;
        }
        rooms.push(RoomPlan {
            room_id,
            membership,
            from,
            to,
            full,
            receipts_from,
            receipts_to,
            typing,
        });
    }
    // To-device: what `since` acknowledges is gone; the rest is sent (again, until acked).
    db.execute(
        "DELETE FROM to_device WHERE device_id = ? AND pos <= ?",
        params![device_id, base.to_device],
    )?;
    let mut to_device = Vec::new();
    let mut to_device_pos = base.to_device;
    for row in db.query(
        "SELECT pos, sender, type, content FROM to_device WHERE device_id = ? AND pos > ? ORDER BY pos LIMIT ?",
        params![device_id, base.to_device, TO_DEVICE_LIMIT],
    )? {
        to_device_pos = row.int(0)?;
        let content: Value = serde_json::from_str(row.text(3)?).unwrap_or_else(|_| json!({}));
        to_device.push(json!({ "sender": row.text(1)?, "type": row.text(2)?, "content": content }));
    }
    let account_data_pos = head(db, "", NoteKind::AccountData)?;
    let account_data = since.is_none() || account_data_pos > base.account_data;
    let mut presence = Vec::new();
    for row in db.query(
        "SELECT user_id, content FROM presence_seen WHERE pos > ? ORDER BY pos",
        params![if since.is_some() { at } else { 0 }],
    )? {
        let content: Value = serde_json::from_str(row.text(1)?).unwrap_or_else(|_| json!({}));
        presence.push(presence_event(row.text(0)?, &content, now_ms));
    }
    let device_lists = since.is_some()
        && db
            .query_opt(
                "SELECT 1 FROM stream WHERE pos > ? AND kind = 'device_lists' LIMIT 1",
                params![at],
            )?
            .is_some();
    Ok(SyncPlan {
        next: base.max(SyncToken {
            stream: now,
            to_device: to_device_pos,
            account_data: account_data_pos,
            // Kept by the edge (device lists live in D1).
            device_lists: 0,
        }),
        rooms,
        to_device,
        account_data,
        filter: None,
        presence,
        device_lists,
    })
}

/// An `m.presence` event from a presence note's content.
pub fn presence_event(user_id: &str, content: &Value, now_ms: u64) -> Value {
    let mut out = json!({
        "presence": content["presence"].as_str().unwrap_or("offline"),
        "currently_active": content["currently_active"].as_bool().unwrap_or(false),
    });
    if let Some(last) = content["last_active"].as_u64() {
        out["last_active_ago"] = json!(now_ms.saturating_sub(last));
    }
    if let Some(msg) = content["status_msg"].as_str() {
        out["status_msg"] = json!(msg);
    }
    json!({ "type": "m.presence", "sender": user_id, "content": out })
}

/// Queues to-device messages (`device id → content`); duplicates of a transaction are
/// ignored. Returns whether anything new was queued.
pub fn queue_to_device(
    db: &dyn Sql,
    sender: &str,
    sender_device: &str,
    txn_id: &str,
    event_type: &str,
    messages: &BTreeMap<String, Value>,
) -> Result<bool, SqlError> {
    let mut added = false;
    for (device, content) in messages {
        let seen = db
            .query_opt(
                "SELECT 1 FROM to_device WHERE device_id = ? AND sender = ? AND sender_device = ? AND txn_id = ?",
                params![device.as_str(), sender, sender_device, txn_id],
            )?
            .is_some();
        if seen {
            continue;
        }
        let pos = next(db, "to_device")?;
        db.execute(
            "INSERT INTO to_device (pos, device_id, sender, sender_device, txn_id, type, content) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
            params![
                pos,
                device.as_str(),
                sender,
                sender_device,
                txn_id,
                event_type,
                content.to_string()
            ],
        )?;
        added = true;
    }
    Ok(added)
}

pub fn put_filter(db: &dyn Sql, filter: &Value) -> Result<i64, SqlError> {
    let id = next(db, "filter")?;
    db.execute(
        "INSERT INTO filters (id, json) VALUES (?, ?)",
        params![id, filter.to_string()],
    )?;
    Ok(id)
}

pub fn get_filter(db: &dyn Sql, id: &str) -> Result<Option<Value>, SqlError> {
    let Ok(id) = id.parse::<i64>() else {
        return Ok(None);
    };
    db.query_opt("SELECT json FROM filters WHERE id = ?", params![id])?
        .map(|r| r.text(0).map(|t| serde_json::from_str(t).unwrap_or(Value::Null)))
        .transpose()
}

/// A change of the user's own presence, to be told to the users sharing a room.
#[derive(Debug, Clone, PartialEq)]
pub struct PresenceChange {
    /// Increases with every change (the notes' position).
    pub serial: i64,
    /// `{presence, status_msg?, last_active, currently_active}`.
    pub content: Value,
}

/// Sets the user's presence (and status message). Returns the change when the presence
/// or the message differs from before: only changes fan out, never mere activity.
pub fn set_presence(
    db: &dyn Sql,
    presence: &str,
    status_msg: Option<&str>,
    now_ms: u64,
) -> Result<Option<PresenceChange>, SqlError> {
    apply_presence(db, presence, Some(status_msg), now_ms)
}

/// Activity from a /sync: marks the user `presence`, keeping their status message.
pub fn touch_presence(db: &dyn Sql, presence: &str, now_ms: u64) -> Result<Option<PresenceChange>, SqlError> {
    apply_presence(db, presence, None, now_ms)
}

/// `status_msg`: `Some` sets it (to a message or none), `None` keeps the stored one.
fn apply_presence(
    db: &dyn Sql,
    presence: &str,
    status_msg: Option<Option<&str>>,
    now_ms: u64,
) -> Result<Option<PresenceChange>, SqlError> {
    let before = db
        .query_opt(
            "SELECT presence, status_msg FROM presence WHERE id = 0",
            params![],
        )?
        .map(|r| Ok::<_, SqlError>((r.text(0)?.to_owned(), r.opt_text(1)?.map(str::to_owned))))
        .transpose()?;
    let old_msg = before.as_ref().and_then(|(_, m)| m.as_deref());
    let status_msg = status_msg.unwrap_or(old_msg);
    db.execute(
        "INSERT INTO presence (id, presence, status_msg, last_active) VALUES (0, ?, ?, ?) \
         ON CONFLICT (id) DO UPDATE SET presence = excluded.presence, status_msg = excluded.status_msg, \
         last_active = excluded.last_active",
        params![presence, status_msg, now_ms],
    )?;
    let changed = match &before {
        Some((p, _)) => p != presence || old_msg != status_msg,
        None => presence != "offline" || status_msg.is_some(),
    };
    if !changed {
        return Ok(None);
    }
    let mut content = json!({
        "presence": presence,
        "last_active": now_ms,
        "currently_active": presence == "online",
    });
    if let Some(msg) = status_msg {
        content["status_msg"] = json!(msg);
    }
    Ok(Some(PresenceChange {
        serial: next(db, "presence")?,
        content,
    }))
}

/// Remembers which user this stream belongs to (for work without a request, such as
/// the presence time-out).
pub fn remember_user_id(db: &dyn Sql, user_id: &str) -> Result<(), SqlError> {
    db.execute(
        "INSERT INTO owner (id, user_id) VALUES (0, ?) ON CONFLICT (id) DO NOTHING",
        params![user_id],
    )
}

pub fn own_user_id(db: &dyn Sql) -> Option<String> {
    db.query_opt("SELECT user_id FROM owner WHERE id = 0", params![])
        .ok()
        .flatten()
        .and_then(|r| r.text(0).ok().map(str::to_owned))
}

/// The user's current presence as a change (its latest serial and content), to tell a
/// user who newly shares a room with them; `None` if never set.
pub fn own_presence(db: &dyn Sql) -> Result<Option<PresenceChange>, SqlError> {
    let Some(row) = db.query_opt(
        "SELECT presence, status_msg, last_active FROM presence WHERE id = 0",
        params![],
    )?
    else {
        return Ok(None);
    };
    let presence = row.text(0)?.to_owned();
    let mut content = json!({
        "presence": presence,
        "last_active": row.int(2)?,
        "currently_active": presence == "online",
    });
    if let Some(msg) = row.opt_text(1)? {
        content["status_msg"] = json!(msg);
    }
    Ok(Some(PresenceChange {
        serial: counter(db, "presence")?,
        content,
    }))
}

/// The rooms among `notes` that the user joins by them (was not joined before).
pub fn newly_joined(db: &dyn Sql, notes: &[Note]) -> Result<Vec<String>, SqlError> {
    let mut rooms = Vec::new();
    for note in notes {
        if note.membership.as_deref() != Some("join") || rooms.contains(&note.room_id) {
            continue;
        }
        let before = db
            .query_opt(
                "SELECT membership, member_pos FROM rooms WHERE room_id = ?",
                params![note.room_id.as_str()],
            )?
            .map(|r| Ok::<_, SqlError>((r.text(0)?.to_owned(), r.int(1)?)))
            .transpose()?;
        let joined_already = before.is_some_and(|(m, pos)| m == "join" || pos >= note.pos);
        if !joined_already {
            rooms.push(note.room_id.clone());
        }
    }
    Ok(rooms)
}

/// The user's presence and when they were last active, if ever set.
pub fn presence_state(db: &dyn Sql) -> Result<Option<(String, u64)>, SqlError> {
    db.query_opt(
        "SELECT presence, last_active FROM presence WHERE id = 0",
        params![],
    )?
    .map(|r| Ok((r.text(0)?.to_owned(), u64::try_from(r.int(1)?).unwrap_or(0))))
    .transpose()
}

pub fn get_presence(db: &dyn Sql, now_ms: u64) -> Result<Value, SqlError> {
    let row = db.query_opt(
        "SELECT presence, status_msg, last_active FROM presence WHERE id = 0",
        params![],
    )?;
    Ok(match row {
        Some(r) => {
            let ago = now_ms.saturating_sub(u64::try_from(r.int(2)?).unwrap_or(0));
            let presence = r.text(0)?.to_owned();
            let mut body = json!({
                "presence": presence,
                "last_active_ago": ago,
                "currently_active": presence == "online",
            });
            if let Some(msg) = r.opt_text(1)? {
                body["status_msg"] = json!(msg);
            }
            body
        }
        None => json!({ "presence": "offline" }),
    })
}

#[cfg(test)]
mod tests;
