//! The DAG beyond the timeline: outliers upgraded in place, backward extremities (where
//! history can be fetched further back), and event ids read without their bodies.

use std::collections::HashMap;

use super::NewEvent;
use crate::params;
use crate::storage::sql::{Sql, SqlError};

/// Turns a stored outlier into an event of the DAG, in its own row: its kind, stream
/// position, outcome and states become `row`'s.
pub fn upgrade_outlier(db: &dyn Sql, nid: i64, row: &NewEvent<'_>) -> Result<(), SqlError> {
    db.execute(
        "UPDATE events SET kind = ?, stream_pos = ?, status = ?, reason = ?, state_before = ?, \
         state_after = ? WHERE nid = ?",
        params![
            row.kind as i64,
            row.stream_pos,
            row.status as i64,
            row.reason,
            row.state_before,
            row.state_after,
            nid
        ],
    )
}

/// The missing prev events recorded as the room's backward extremities: where history
/// can be fetched further back.
pub fn add_backward_extremities(db: &dyn Sql, event_ids: &[String]) -> Result<(), SqlError> {
    for id in event_ids {
        db.execute(
            "INSERT OR IGNORE INTO backward_extremities (event_id) \
             SELECT ? WHERE NOT EXISTS (SELECT 1 FROM events WHERE event_id = ?)",
            params![id.as_str(), id.as_str()],
        )?;
    }
    Ok(())
}

/// Whether the room has backward extremities.
pub fn has_backward_extremities(db: &dyn Sql) -> Result<bool, SqlError> {
    Ok(db
        .query_opt("SELECT 1 FROM backward_extremities LIMIT 1", params![])?
        .is_some())
}

/// An event that arrived is no backward extremity any more.
pub fn remove_backward_extremity(db: &dyn Sql, event_id: &str) -> Result<(), SqlError> {
    db.execute(
        "DELETE FROM backward_extremities WHERE event_id = ?",
        params![event_id],
    )
}

/// The room's backward extremities, sorted.
pub fn backward_extremities(db: &dyn Sql) -> Result<Vec<String>, SqlError> {
    db.query(
        "SELECT event_id FROM backward_extremities ORDER BY event_id",
        params![],
    )?
    .iter()
    .map(|r| r.text(0).map(str::to_owned))
    .collect()
}

/// The event ids of `nids`, without reading the events' JSON.
pub fn event_ids_by_nids(db: &dyn Sql, nids: &[i64]) -> Result<HashMap<i64, String>, SqlError> {
    let mut out = HashMap::with_capacity(nids.len());
    for chunk in nids.chunks(90) {
        let marks = vec!["?"; chunk.len()].join(",");
        let params: Vec<_> = chunk.iter().map(|n| (*n).into()).collect();
        for row in db.query(
            &format!("SELECT nid, event_id FROM events WHERE nid IN ({marks})"),
            &params,
        )? {
            out.insert(row.int(0)?, row.text(1)?.to_owned());
        }
    }
    Ok(out)
}

/// A redaction whose target the room does not have yet, applied when it arrives.
pub fn add_pending_redaction(db: &dyn Sql, target_id: &str, redaction_id: &str) -> Result<(), SqlError> {
    db.execute(
        "INSERT OR IGNORE INTO pending_redactions (target_id, redaction_id) VALUES (?, ?)",
        params![target_id, redaction_id],
    )
}

/// Whether any redaction waits for its target.
pub fn has_pending_redactions(db: &dyn Sql) -> Result<bool, SqlError> {
    Ok(db
        .query_opt("SELECT 1 FROM pending_redactions LIMIT 1", params![])?
        .is_some())
}

/// The redactions waiting for `target_id`, taken off the list.
pub fn take_pending_redactions(db: &dyn Sql, target_id: &str) -> Result<Vec<String>, SqlError> {
    let ids = db
        .query(
            "SELECT redaction_id FROM pending_redactions WHERE target_id = ? ORDER BY redaction_id",
            params![target_id],
        )?
        .iter()
        .map(|r| r.text(0).map(str::to_owned))
        .collect::<Result<Vec<_>, _>>()?;
    if !ids.is_empty() {
        db.execute(
            "DELETE FROM pending_redactions WHERE target_id = ?",
            params![target_id],
        )?;
    }
    Ok(ids)
}

/// The lowest stream position of the room's timeline (history has negative ones); 1
/// when the timeline is empty.
pub fn lowest_stream_pos(db: &dyn Sql) -> Result<i64, SqlError> {
    Ok(db
        .query_opt("SELECT min(stream_pos) FROM events", params![])?
        .map(|r| r.opt_int(0))
        .transpose()?
        .flatten()
        .unwrap_or(1))
}
