//! `presence`: the latest presence of each local user who has set one, written only
//! when it changes. Each user's own Durable Object is where presence lives; this copy is
//! what a user who newly shares a room with them is told.

use serde::Deserialize;

use super::{args, Db, Result};

/// Stores a user's presence if `serial` is newer than the stored one.
pub async fn record(db: &Db, user_id: &str, serial: i64, content: &str) -> Result<()> {
    db.run(
        "INSERT INTO presence (user_id, serial, content) VALUES (?1, ?2, ?3) \
         ON CONFLICT (user_id) DO UPDATE SET serial = excluded.serial, content = excluded.content \
         WHERE excluded.serial > presence.serial",
        args![user_id, serial, content],
    )
    .await?;
    Ok(())
}

/// A local user joined to a room, and their presence if they have set one.
#[derive(Debug, Deserialize)]
pub struct Member {
    pub user_id: String,
    pub serial: Option<i64>,
    pub content: Option<String>,
}

/// The local users joined to any of `rooms` but `except`, with their presence: one read.
pub async fn of_members(db: &Db, rooms: &[String], except: &str) -> Result<Vec<Member>> {
    let list = serde_json::to_string(rooms).unwrap_or_else(|_| "[]".into());
    db.all(
        "SELECT DISTINCT m.user_id, p.serial, p.content FROM room_memberships m \
         JOIN users u ON u.user_id = m.user_id \
         LEFT JOIN presence p ON p.user_id = m.user_id \
         WHERE m.room_id IN (SELECT value FROM json_each(?1)) AND m.membership = 'join' \
         AND m.user_id != ?2",
        args![list, except],
    )
    .await
}
