//! Invites from other servers into rooms this server does not hold: the invite event
//! (signed by both servers) and the stripped state its server sent, kept per invited
//! local user until they join (the room then starts from the join) or decline. Each
//! change takes a stream position of the room, so the invitee's stream sees it.

use crate::params;
use crate::storage::sql::{Sql, SqlError};

/// One local user's invite (or its end).
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteInvite {
    pub user_id: String,
    /// The invite event's id, or the id of the leave that ended it.
    pub event_id: String,
    /// Who invited.
    pub sender: String,
    /// `invite`, or `leave` once declined.
    pub membership: String,
    pub stream_pos: i64,
    pub room_version: String,
    /// The invite event (federation JSON).
    pub event: String,
    /// The stripped state events (a JSON array).
    pub invite_state: String,
}

const COLUMNS: &str = "user_id, event_id, sender, membership, stream_pos, room_version, event, invite_state";

pub fn remote_invite(db: &dyn Sql, user_id: &str) -> Result<Option<RemoteInvite>, SqlError> {
    let row = db.query_opt(
        &format!("SELECT {COLUMNS} FROM remote_invites WHERE user_id = ?"),
        params![user_id],
    )?;
    row.map(|r| {
        Ok(RemoteInvite {
            user_id: r.text(0)?.to_owned(),
            event_id: r.text(1)?.to_owned(),
            sender: r.text(2)?.to_owned(),
            membership: r.text(3)?.to_owned(),
            stream_pos: r.int(4)?,
            room_version: r.text(5)?.to_owned(),
            event: r.text(6)?.to_owned(),
            invite_state: r.text(7)?.to_owned(),
        })
    })
    .transpose()
}

pub fn put_remote_invite(db: &dyn Sql, invite: &RemoteInvite) -> Result<(), SqlError> {
    db.execute(
        &format!("INSERT OR REPLACE INTO remote_invites ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"),
        params![
            invite.user_id.as_str(),
            invite.event_id.as_str(),
            invite.sender.as_str(),
            invite.membership.as_str(),
            invite.stream_pos,
            invite.room_version.as_str(),
            invite.event.as_str(),
            invite.invite_state.as_str()
        ],
    )
}
