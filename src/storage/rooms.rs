//! `room_memberships`, `room_aliases` and `public_rooms`: the global indexes of rooms,
//! projected from the room-log. Rooms themselves live in their Durable Objects.

use serde::Deserialize;

use super::{args, Db, Result};

/// Records a membership if it is newer (by the room's stream position) than the one
/// stored. Idempotent, and safe against replays and reordering. When the user starts
/// or stops being joined, the device-list streams of the room's local members hear of
/// it (`device_lists::joined` / `left`).
pub async fn record_membership(
    db: &Db,
    room_id: &str,
    user_id: &str,
    membership: &str,
    event_id: &str,
    stream_pos: i64,
) -> Result<()> {
    let was_joined = self::membership(db, room_id, user_id).await?.as_deref() == Some("join");
    let changed = db
        .run(
            "INSERT INTO room_memberships (room_id, user_id, membership, event_id, stream_pos) \
         VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT (room_id, user_id) DO UPDATE SET membership = excluded.membership, \
         event_id = excluded.event_id, stream_pos = excluded.stream_pos, forgotten = 0 \
         WHERE excluded.stream_pos > room_memberships.stream_pos",
            args![room_id, user_id, membership, event_id, stream_pos],
        )
        .await?;
    let is_joined = membership == "join";
    if changed > 0 && was_joined != is_joined {
        let stmts = if is_joined {
            super::device_lists::joined(room_id, user_id)
        } else {
            super::device_lists::left(room_id, user_id)
        };
        db.batch(stmts).await?;
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
struct RoomRow {
    room_id: String,
}

/// Rooms the user is joined to.
pub async fn joined_rooms(db: &Db, user_id: &str) -> Result<Vec<String>> {
    let rows: Vec<RoomRow> = db
        .all(
            "SELECT room_id FROM room_memberships WHERE user_id = ?1 AND membership = 'join' ORDER BY room_id",
            args![user_id],
        )
        .await?;
    Ok(rows.into_iter().map(|r| r.room_id).collect())
}

#[derive(Debug, Deserialize)]
struct UserRow {
    user_id: String,
}

/// The local users joined to a room (for the sync fan-out).
pub async fn joined_members(db: &Db, room_id: &str) -> Result<Vec<String>> {
    let rows: Vec<UserRow> = db
        .all(
            "SELECT m.user_id FROM room_memberships m JOIN users u ON u.user_id = m.user_id \
             WHERE m.room_id = ?1 AND m.membership = 'join' ORDER BY m.user_id",
            args![room_id],
        )
        .await?;
    Ok(rows.into_iter().map(|r| r.user_id).collect())
}

/// The local users sharing a joined room with any of `users` (local or not), the
/// local ones of `users` included: one query however many users.
pub async fn room_mates(db: &Db, users: &[&str]) -> Result<Vec<String>> {
    let list = serde_json::to_string(users).unwrap_or_else(|_| "[]".into());
    let rows: Vec<UserRow> = db
        .all(
            "SELECT u.user_id FROM json_each(?1) j JOIN users u ON u.user_id = j.value UNION \
             SELECT m2.user_id FROM room_memberships m1 \
               JOIN room_memberships m2 ON m2.room_id = m1.room_id AND m2.membership = 'join' \
               JOIN users u2 ON u2.user_id = m2.user_id \
             WHERE m1.user_id IN (SELECT value FROM json_each(?1)) AND m1.membership = 'join'",
            args![list],
        )
        .await?;
    Ok(rows.into_iter().map(|r| r.user_id).collect())
}

#[derive(Debug, Deserialize)]
struct MembershipRow {
    membership: String,
}

/// The user's last known membership in a room.
pub async fn membership(db: &Db, room_id: &str, user_id: &str) -> Result<Option<String>> {
    let row: Option<MembershipRow> = db
        .first(
            "SELECT membership FROM room_memberships WHERE room_id = ?1 AND user_id = ?2",
            args![room_id, user_id],
        )
        .await?;
    Ok(row.map(|r| r.membership))
}

/// The rooms the user has forgotten.
pub async fn forgotten(db: &Db, user_id: &str) -> Result<Vec<String>> {
    #[derive(serde::Deserialize)]
    struct Row {
        room_id: String,
    }
    let rows: Vec<Row> = db
        .all(
            "SELECT room_id FROM room_memberships WHERE user_id = ?1 AND forgotten = 1",
            args![user_id],
        )
        .await?;
    Ok(rows.into_iter().map(|r| r.room_id).collect())
}

/// Marks a room the user has left as forgotten. Returns false if they are still in it.
pub async fn forget(db: &Db, room_id: &str, user_id: &str) -> Result<bool> {
    let changed = db
        .run(
            "UPDATE room_memberships SET forgotten = 1 WHERE room_id = ?1 AND user_id = ?2 \
             AND membership IN ('leave', 'ban')",
            args![room_id, user_id],
        )
        .await?;
    Ok(changed > 0)
}

/// Creates an alias; false if it already exists.
pub async fn create_alias(db: &Db, alias: &str, room_id: &str, creator: &str) -> Result<bool> {
    let changed = db
        .run(
            "INSERT OR IGNORE INTO room_aliases (alias, room_id, creator) VALUES (?1, ?2, ?3)",
            args![alias, room_id, creator],
        )
        .await?;
    Ok(changed > 0)
}

pub async fn resolve_alias(db: &Db, alias: &str) -> Result<Option<String>> {
    let row: Option<RoomRow> = db
        .first("SELECT room_id FROM room_aliases WHERE alias = ?1", args![alias])
        .await?;
    Ok(row.map(|r| r.room_id))
}

#[derive(Debug, Deserialize)]
pub struct AliasRow {
    pub room_id: String,
    pub creator: String,
}

pub async fn alias(db: &Db, alias: &str) -> Result<Option<AliasRow>> {
    db.first(
        "SELECT room_id, creator FROM room_aliases WHERE alias = ?1",
        args![alias],
    )
    .await
}

pub async fn delete_alias(db: &Db, alias: &str) -> Result<()> {
    db.run("DELETE FROM room_aliases WHERE alias = ?1", args![alias])
        .await?;
    Ok(())
}

#[derive(Debug, Deserialize)]
struct AliasName {
    alias: String,
}

pub async fn aliases_of(db: &Db, room_id: &str) -> Result<Vec<String>> {
    let rows: Vec<AliasName> = db
        .all(
            "SELECT alias FROM room_aliases WHERE room_id = ?1 ORDER BY alias",
            args![room_id],
        )
        .await?;
    Ok(rows.into_iter().map(|r| r.alias).collect())
}

pub async fn set_public(db: &Db, room_id: &str, public: bool, now_ms: u64) -> Result<()> {
    if public {
        db.run(
            "INSERT OR IGNORE INTO public_rooms (room_id, added_ts) VALUES (?1, ?2)",
            args![room_id, now_ms],
        )
        .await?;
    } else {
        db.run("DELETE FROM public_rooms WHERE room_id = ?1", args![room_id])
            .await?;
    }
    Ok(())
}

pub async fn is_public(db: &Db, room_id: &str) -> Result<bool> {
    let row: Option<RoomRow> = db
        .first(
            "SELECT room_id FROM public_rooms WHERE room_id = ?1",
            args![room_id],
        )
        .await?;
    Ok(row.is_some())
}

pub async fn public_rooms(db: &Db, limit: i64, offset: i64) -> Result<(Vec<String>, i64)> {
    let rows: Vec<RoomRow> = db
        .all(
            "SELECT room_id FROM public_rooms ORDER BY added_ts, room_id LIMIT ?1 OFFSET ?2",
            args![limit, offset],
        )
        .await?;
    #[derive(Deserialize)]
    struct Count {
        n: i64,
    }
    let total: Option<Count> = db
        .first("SELECT count(*) AS n FROM public_rooms", args![])
        .await?;
    Ok((
        rows.into_iter().map(|r| r.room_id).collect(),
        total.map_or(0, |c| c.n),
    ))
}

/// Points every alias of `from` at `to` (a room upgrade).
pub async fn move_aliases(db: &Db, from: &str, to: &str) -> Result<()> {
    db.run(
        "UPDATE room_aliases SET room_id = ?2 WHERE room_id = ?1",
        args![from, to],
    )
    .await?;
    Ok(())
}

/// Whether the room is held here: someone (of any server) is joined to it, as the
/// projections know. An invite from another server alone does not hold a room.
pub async fn known(db: &Db, room_id: &str) -> Result<bool> {
    #[derive(serde::Deserialize)]
    struct One {
        #[allow(dead_code)]
        one: i64,
    }
    let row: Option<One> = db
        .first(
            "SELECT 1 AS one FROM room_memberships WHERE room_id = ?1 AND membership = 'join' LIMIT 1",
            args![room_id],
        )
        .await?;
    Ok(row.is_some())
}

/// The other servers with a user joined to the room (where its events go).
pub async fn servers_in_room(db: &Db, room_id: &str, own: &str) -> Result<Vec<String>> {
    #[derive(Deserialize)]
    struct Row {
        server: String,
    }
    let rows: Vec<Row> = db
        .all(
            "SELECT DISTINCT substr(user_id, instr(user_id, ':') + 1) AS server FROM room_memberships \
             WHERE room_id = ?1 AND membership = 'join'",
            args![room_id],
        )
        .await?;
    Ok(rows.into_iter().map(|r| r.server).filter(|s| s != own).collect())
}

/// The other servers with a user joined to a room `user_id` is joined to (where that
/// user's device-list changes go).
pub async fn servers_sharing(db: &Db, user_id: &str, own: &str) -> Result<Vec<String>> {
    #[derive(Deserialize)]
    struct Row {
        server: String,
    }
    let rows: Vec<Row> = db
        .all(
            "SELECT DISTINCT substr(m2.user_id, instr(m2.user_id, ':') + 1) AS server \
             FROM room_memberships m1 JOIN room_memberships m2 \
               ON m2.room_id = m1.room_id AND m2.membership = 'join' \
             WHERE m1.user_id = ?1 AND m1.membership = 'join'",
            args![user_id],
        )
        .await?;
    Ok(rows.into_iter().map(|r| r.server).filter(|s| s != own).collect())
}

/// Rooms whose history the user may have read: joined now, or left or banned and not
/// forgotten (each room decides what of it they may see).
pub async fn readable_rooms(db: &Db, user_id: &str) -> Result<Vec<String>> {
    let rows: Vec<RoomRow> = db
        .all(
            "SELECT room_id FROM room_memberships WHERE user_id = ?1 \
             AND membership IN ('join', 'leave', 'ban') AND forgotten = 0 ORDER BY room_id",
            args![user_id],
        )
        .await?;
    Ok(rows.into_iter().map(|r| r.room_id).collect())
}
