//! Senders who asked for their content to be erased (`/account/deactivate` with
//! `erase`): the read paths serve their events redacted to users who were not joined
//! when the events were sent.

use crate::params;
use crate::storage::sql::{Sql, SqlError};

/// Marks a sender as erased (their events served redacted to later members).
pub fn erase_sender(db: &dyn Sql, user: &str) -> Result<(), SqlError> {
    db.execute(
        "INSERT INTO erased_senders (user_id) VALUES (?) ON CONFLICT (user_id) DO NOTHING",
        params![user],
    )
}

/// The senders whose content is erased (usually none).
pub fn erased_senders(db: &dyn Sql) -> Result<std::collections::HashSet<String>, SqlError> {
    db.query("SELECT user_id FROM erased_senders", params![])?
        .iter()
        .map(|r| r.text(0).map(str::to_owned))
        .collect()
}
