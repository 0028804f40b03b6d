//! The Room Durable Object's SQLite schema. Idempotent; applied when the object starts.
//!
//! State is stored as *state groups*: a group is a delta (the entries that differ)
//! against a parent group, with a full snapshot once the deltas since the last one hold
//! a quarter of the state's entries (at least `SNAPSHOT_INTERVAL`; `store::store_state`),
//! so reading any state applies a bounded number of delta entries. Events that do not change state share their
//! state group, so storage grows with state changes, not with room size × events.

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    nid          INTEGER PRIMARY KEY,
    event_id     TEXT NOT NULL UNIQUE,
    stream_pos   INTEGER UNIQUE,
    depth        INTEGER NOT NULL,
    type         TEXT NOT NULL,
    state_key    TEXT,
    sender       TEXT NOT NULL,
    origin_ts    INTEGER NOT NULL,
    kind         INTEGER NOT NULL,
    status       INTEGER NOT NULL,
    reason       TEXT,
    state_before INTEGER,
    state_after  INTEGER,
    redacted_by  TEXT,
    json         TEXT NOT NULL
);
DROP INDEX IF EXISTS events_depth;
CREATE TABLE IF NOT EXISTS extremities (
    event_id TEXT PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS state_groups (
    id        INTEGER PRIMARY KEY,
    parent    INTEGER,
    chain_len INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS state_entries (
    grp       INTEGER NOT NULL,
    type      TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_nid INTEGER,
    PRIMARY KEY (grp, type, state_key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS txns (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    txn_id    TEXT NOT NULL,
    event_id  TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbox (
    stream_pos INTEGER PRIMARY KEY,
    payload    TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS backward_extremities (
    event_id TEXT PRIMARY KEY
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS erased_senders (
    user_id TEXT PRIMARY KEY
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pending_redactions (
    target_id    TEXT NOT NULL,
    redaction_id TEXT NOT NULL,
    PRIMARY KEY (target_id, redaction_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS published (
    stream_pos INTEGER PRIMARY KEY,
    payload    TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS remote_invites (
    user_id      TEXT PRIMARY KEY,
    event_id     TEXT NOT NULL,
    sender       TEXT NOT NULL,
    membership   TEXT NOT NULL,
    stream_pos   INTEGER NOT NULL,
    room_version TEXT NOT NULL,
    event        TEXT NOT NULL,
    invite_state TEXT NOT NULL
) WITHOUT ROWID
";

/// Published log records a room keeps for replay (`store::log_records`).
pub const PUBLISHED_KEPT: i64 = 1000;

/// The fewest delta entries a chain may hold before a full snapshot is written.
pub const SNAPSHOT_INTERVAL: i64 = 32;
