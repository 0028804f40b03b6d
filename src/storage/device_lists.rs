//! `device_list_inbox`: which users' device lists changed (or stopped being shared),
//! per local observer, with a per-observer increasing `stream_id`.
//!
//! Writes fan out when they happen: a key change of user X adds X to the inbox of X
//! and of every local user sharing a joined room with X (from `room_memberships`).
//! Each (observer, other user) pair keeps one row, its latest change, so the table
//! stays bounded and sync reads "since N" with one indexed range scan.
//!
//! For the sync engine:
//! - `changes(db, user, since)` → `device_lists.changed` / `.left` and the new position;
//! - `position(db, user)` → the current position for a fresh token.
//!
//! Membership transitions (`storage::rooms::record_membership` calls these after its
//! `room_memberships` write, when the user starts or stops being joined):
//! - `joined(room, user)` when a user's membership becomes `join`;
//! - `left(room, user)` when it stops being `join` (leave, ban, kick).

use serde::Deserialize;

use super::{args, stmt, Db, Result, Stmt};

/// Records that `user_id`'s devices or keys changed: for the user and every local user
/// who shares a joined room with them.
pub fn changed(user_id: &str) -> Stmt {
    stmt(
        "INSERT INTO device_list_inbox (user_id, other_user_id, stream_id, kind) \
         SELECT o.uid, ?1, \
           (SELECT COALESCE(MAX(d.stream_id), 0) + 1 FROM device_list_inbox d WHERE d.user_id = o.uid), \
           'changed' \
         FROM (SELECT u0.user_id AS uid FROM users u0 WHERE u0.user_id = ?1 \
               UNION SELECT m2.user_id FROM room_memberships m1 \
                 JOIN room_memberships m2 ON m2.room_id = m1.room_id AND m2.membership = 'join' \
                 JOIN users u ON u.user_id = m2.user_id \
               WHERE m1.user_id = ?1 AND m1.membership = 'join') o \
         WHERE true \
         ON CONFLICT (user_id, other_user_id) DO UPDATE \
           SET stream_id = excluded.stream_id, kind = excluded.kind",
        args![user_id],
    )
}

/// `user_id` joined `room_id`: they and each local member hear of each other as
/// `changed` (over-reporting users who already shared a room is harmless: clients
/// just query their keys again).
pub fn joined(room_id: &str, user_id: &str) -> Vec<Stmt> {
    vec![
        // Members hear of the joiner.
        stmt(
            "INSERT INTO device_list_inbox (user_id, other_user_id, stream_id, kind) \
             SELECT m.user_id, ?2, \
               (SELECT COALESCE(MAX(d.stream_id), 0) + 1 FROM device_list_inbox d WHERE d.user_id = m.user_id), \
               'changed' \
             FROM room_memberships m JOIN users u ON u.user_id = m.user_id \
             WHERE m.room_id = ?1 AND m.membership = 'join' AND m.user_id <> ?2 \
             ON CONFLICT (user_id, other_user_id) DO UPDATE \
               SET stream_id = excluded.stream_id, kind = excluded.kind",
            args![room_id, user_id],
        ),
        // The joiner (if local) hears of the members; all rows share one stream id.
        stmt(
            "INSERT INTO device_list_inbox (user_id, other_user_id, stream_id, kind) \
             SELECT ?2, m.user_id, \
               (SELECT COALESCE(MAX(d.stream_id), 0) + 1 FROM device_list_inbox d WHERE d.user_id = ?2), \
               'changed' \
             FROM room_memberships m \
             WHERE m.room_id = ?1 AND m.membership = 'join' AND m.user_id <> ?2 \
               AND EXISTS (SELECT 1 FROM users u WHERE u.user_id = ?2) \
             ON CONFLICT (user_id, other_user_id) DO UPDATE \
               SET stream_id = excluded.stream_id, kind = excluded.kind",
            args![room_id, user_id],
        ),
    ]
}

/// `user_id` is no longer joined to `room_id` (call after updating
/// `room_memberships`): each member of the room who now shares no joined room with
/// them, and the user themself, hear `left` of each other.
pub fn left(room_id: &str, user_id: &str) -> Vec<Stmt> {
    vec![
        stmt(
            "INSERT INTO device_list_inbox (user_id, other_user_id, stream_id, kind) \
             SELECT m.user_id, ?2, \
               (SELECT COALESCE(MAX(d.stream_id), 0) + 1 FROM device_list_inbox d WHERE d.user_id = m.user_id), \
               'left' \
             FROM room_memberships m JOIN users u ON u.user_id = m.user_id \
             WHERE m.room_id = ?1 AND m.membership = 'join' AND m.user_id <> ?2 \
               AND NOT EXISTS (SELECT 1 FROM room_memberships a \
                 JOIN room_memberships b ON b.room_id = a.room_id \
                 WHERE a.user_id = m.user_id AND a.membership = 'join' \
                   AND b.user_id = ?2 AND b.membership = 'join') \
             ON CONFLICT (user_id, other_user_id) DO UPDATE \
               SET stream_id = excluded.stream_id, kind = excluded.kind",
            args![room_id, user_id],
        ),
        stmt(
            "INSERT INTO device_list_inbox (user_id, other_user_id, stream_id, kind) \
             SELECT ?2, m.user_id, \
               (SELECT COALESCE(MAX(d.stream_id), 0) + 1 FROM device_list_inbox d WHERE d.user_id = ?2), \
               'left' \
             FROM room_memberships m \
             WHERE m.room_id = ?1 AND m.membership = 'join' AND m.user_id <> ?2 \
               AND EXISTS (SELECT 1 FROM users u WHERE u.user_id = ?2) \
               AND NOT EXISTS (SELECT 1 FROM room_memberships a \
                 JOIN room_memberships b ON b.room_id = a.room_id \
                 WHERE a.user_id = m.user_id AND a.membership = 'join' \
                   AND b.user_id = ?2 AND b.membership = 'join') \
             ON CONFLICT (user_id, other_user_id) DO UPDATE \
               SET stream_id = excluded.stream_id, kind = excluded.kind",
            args![room_id, user_id],
        ),
    ]
}

/// What changed for an observer after a position.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Users whose devices or keys changed (`device_lists.changed`).
    pub changed: Vec<String>,
    /// Users the observer no longer shares a room with (`device_lists.left`).
    pub left: Vec<String>,
    /// The observer's position after these changes (`since` when there are none).
    pub position: i64,
}

/// `device_lists` for /sync and `/keys/changes`: every change after `since` (0 for all).
pub async fn changes(db: &Db, user_id: &str, since: i64) -> Result<Changes> {
    #[derive(Deserialize)]
    struct Row {
        other_user_id: String,
        kind: String,
        stream_id: i64,
    }
    let rows: Vec<Row> = db
        .all(
            "SELECT other_user_id, kind, stream_id FROM device_list_inbox \
             WHERE user_id = ?1 AND stream_id > ?2 ORDER BY stream_id",
            args![user_id, since],
        )
        .await?;
    let mut out = Changes {
        position: since,
        ..Changes::default()
    };
    for row in rows {
        out.position = out.position.max(row.stream_id);
        if row.kind == "left" {
            out.left.push(row.other_user_id);
        } else {
            out.changed.push(row.other_user_id);
        }
    }
    Ok(out)
}

/// The observer's current position (0 before any change).
pub async fn position(db: &Db, user_id: &str) -> Result<i64> {
    #[derive(Deserialize)]
    struct Row {
        position: i64,
    }
    let row: Option<Row> = db
        .first(
            "SELECT COALESCE(MAX(stream_id), 0) AS position FROM device_list_inbox WHERE user_id = ?1",
            args![user_id],
        )
        .await?;
    Ok(row.map_or(0, |r| r.position))
}

#[cfg(test)]
mod tests {
    //! The fan-out statements run on rusqlite against `schema.sql` (D1 is SQLite).
    use super::*;
    use crate::storage::Arg;

    fn db() -> rusqlite::Connection {
        let db = rusqlite::Connection::open_in_memory().expect("sqlite");
        db.execute_batch(include_str!("../../schema.sql"))
            .expect("schema");
        for user in ["@a:hs", "@b:hs", "@c:hs"] {
            db.execute("INSERT INTO users (user_id, created_ts) VALUES (?1, 0)", [user])
                .expect("user");
        }
        db
    }

    fn run(db: &rusqlite::Connection, stmts: Vec<Stmt>) {
        for s in stmts {
            let args: Vec<rusqlite::types::Value> = s
                .args
                .iter()
                .map(|a| match a {
                    Arg::Text(t) => rusqlite::types::Value::Text(t.clone()),
                    Arg::Int(i) => rusqlite::types::Value::Integer(*i),
                    Arg::Null => rusqlite::types::Value::Null,
                })
                .collect();
            db.execute(s.sql, rusqlite::params_from_iter(args)).expect(s.sql);
        }
    }

    fn member(db: &rusqlite::Connection, room: &str, user: &str, membership: &str) {
        db.execute(
            "INSERT INTO room_memberships (room_id, user_id, membership, event_id, stream_pos) \
             VALUES (?1, ?2, ?3, '$e', 1) \
             ON CONFLICT (room_id, user_id) DO UPDATE SET membership = excluded.membership",
            [room, user, membership],
        )
        .expect("membership");
    }

    /// `(changed, left, position)` of `user` after `since`, sorted.
    fn read(db: &rusqlite::Connection, user: &str, since: i64) -> (Vec<String>, Vec<String>, i64) {
        let mut stmt = db
            .prepare(
                "SELECT other_user_id, kind, stream_id FROM device_list_inbox \
                 WHERE user_id = ?1 AND stream_id > ?2 ORDER BY other_user_id",
            )
            .expect("prepare");
        let rows = stmt
            .query_map(rusqlite::params![user, since], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .expect("query");
        let (mut changed, mut left, mut pos) = (vec![], vec![], since);
        for row in rows {
            let (other, kind, stream) = row.expect("row");
            pos = pos.max(stream);
            if kind == "left" {
                left.push(other);
            } else {
                changed.push(other);
            }
        }
        (changed, left, pos)
    }

    #[test]
    fn key_changes_reach_the_user_and_room_members_only() {
        let db = db();
        run(&db, vec![changed("@a:hs")]);
        assert_eq!(read(&db, "@a:hs", 0), (vec!["@a:hs".into()], vec![], 1));
        assert_eq!(read(&db, "@b:hs", 0), (vec![], vec![], 0));

        member(&db, "!r", "@a:hs", "join");
        member(&db, "!r", "@b:hs", "join");
        member(&db, "!r", "@remote:other", "join");
        member(&db, "!r", "@c:hs", "invite");
        run(&db, vec![changed("@a:hs")]);
        assert_eq!(read(&db, "@a:hs", 1), (vec!["@a:hs".into()], vec![], 2));
        assert_eq!(read(&db, "@b:hs", 0), (vec!["@a:hs".into()], vec![], 1));
        assert_eq!(read(&db, "@c:hs", 0), (vec![], vec![], 0));
        let remote: i64 = db
            .query_row(
                "SELECT COUNT(*) FROM device_list_inbox WHERE user_id = '@remote:other'",
                [],
                |r| r.get(0),
            )
            .expect("count");
        assert_eq!(remote, 0, "no rows for remote users");
    }

    #[test]
    fn joins_report_changed_and_leaves_report_left_once_no_room_is_shared() {
        let db = db();
        member(&db, "!r1", "@a:hs", "join");
        member(&db, "!r1", "@b:hs", "join");
        run(&db, joined("!r1", "@b:hs"));
        assert_eq!(read(&db, "@a:hs", 0), (vec!["@b:hs".into()], vec![], 1));
        assert_eq!(read(&db, "@b:hs", 0), (vec!["@a:hs".into()], vec![], 1));

        // They also share !r2; leaving !r1 keeps them sharing a room.
        member(&db, "!r2", "@a:hs", "join");
        member(&db, "!r2", "@b:hs", "join");
        member(&db, "!r1", "@b:hs", "leave");
        run(&db, left("!r1", "@b:hs"));
        assert_eq!(read(&db, "@a:hs", 1), (vec![], vec![], 1));

        // Leaving the last shared room: both hear `left`.
        member(&db, "!r2", "@b:hs", "leave");
        run(&db, left("!r2", "@b:hs"));
        assert_eq!(read(&db, "@a:hs", 1), (vec![], vec!["@b:hs".into()], 2));
        assert_eq!(read(&db, "@b:hs", 1), (vec![], vec!["@a:hs".into()], 2));

        // Rejoining turns `left` back into `changed`.
        member(&db, "!r2", "@b:hs", "join");
        run(&db, joined("!r2", "@b:hs"));
        assert_eq!(read(&db, "@a:hs", 2), (vec!["@b:hs".into()], vec![], 3));
    }
}
