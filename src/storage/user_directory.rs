//! The user directory: which users a searcher sees (those sharing a joined room with
//! them, those joined to an open room, and with the setting every local account), and
//! `room_openness`, the open rooms, projected from the room-log (`log::openness`).

use serde::Deserialize;

use super::{args, Db, Result};
use crate::core::user_directory::Patterns;

/// One result.
#[derive(Debug, Clone, Deserialize)]
pub struct Found {
    pub user_id: String,
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
}

/// Users visible to `searcher` whose id or display name matches the patterns (ASCII
/// case-insensitively; `core::user_directory::matches` decides beyond), prefix matches first, then those with a display name, by id;
/// at most `limit`. `all_local`: every local account is visible too.
pub async fn search(
    db: &Db,
    searcher: &str,
    p: &Patterns,
    limit: u64,
    all_local: bool,
) -> Result<Vec<Found>> {
    db.all(
        "SELECT c.user_id AS user_id, pr.displayname AS displayname, pr.avatar_url AS avatar_url FROM ( \
           SELECT m2.user_id FROM room_memberships m1 \
             JOIN room_memberships m2 ON m2.room_id = m1.room_id AND m2.membership = 'join' \
             WHERE m1.user_id = ?1 AND m1.membership = 'join' \
           UNION SELECT m.user_id FROM room_openness o \
             JOIN room_memberships m ON m.room_id = o.room_id AND m.membership = 'join' \
             WHERE o.open = 1 \
           UNION SELECT u.user_id FROM users u WHERE ?4 = 1 \
         ) c \
         LEFT JOIN profiles pr ON pr.user_id = c.user_id \
         LEFT JOIN users us ON us.user_id = c.user_id \
         WHERE COALESCE(us.deactivated, 0) = 0 \
           AND (lower(c.user_id) LIKE ?2 ESCAPE '\\' OR lower(COALESCE(pr.displayname, '')) LIKE ?2 ESCAPE '\\') \
         ORDER BY (lower(c.user_id) LIKE ?5 ESCAPE '\\' OR lower(COALESCE(pr.displayname, '')) LIKE ?6 ESCAPE '\\') DESC, \
           pr.displayname IS NULL, c.user_id \
         LIMIT ?3",
        args![searcher, p.anywhere.as_str(), limit, all_local, p.id_prefix.as_str(), p.name_prefix.as_str()],
    )
    .await
}

/// Records whether a room is open, unless a later stream position already did.
pub async fn set_openness(db: &Db, room_id: &str, open: bool, stream_pos: i64) -> Result<()> {
    db.run(
        "INSERT INTO room_openness (room_id, open, stream_pos) VALUES (?1, ?2, ?3) \
         ON CONFLICT (room_id) DO UPDATE SET open = excluded.open, stream_pos = excluded.stream_pos \
         WHERE excluded.stream_pos >= room_openness.stream_pos",
        args![room_id, open, stream_pos],
    )
    .await?;
    Ok(())
}
