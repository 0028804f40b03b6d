//! State groups: a state stored as the delta against a parent group, with a full
//! snapshot once the deltas since the last one hold a quarter of the state (at least
//! `SNAPSHOT_INTERVAL` entries), read with one recursive query.

use super::super::schema::SNAPSHOT_INTERVAL;
use super::{StateKey, StateNids};
use crate::params;
use crate::storage::sql::{Sql, SqlError};

/// Loads the full state of a group: walks to the nearest snapshot, then applies the
/// deltas forward.
pub fn load_state(db: &dyn Sql, group: i64) -> Result<StateNids, SqlError> {
    let chain = db.query(
        "WITH RECURSIVE chain(id, parent, len, n) AS ( \
             SELECT id, parent, chain_len, 0 FROM state_groups WHERE id = ? \
             UNION ALL \
             SELECT g.id, g.parent, g.chain_len, c.n + 1 FROM state_groups g JOIN chain c ON g.id = c.parent \
             WHERE c.len > 0) \
         SELECT e.type, e.state_key, e.event_nid FROM chain c JOIN state_entries e ON e.grp = c.id \
         ORDER BY c.n DESC",
        params![group],
    )?;
    let mut state = StateNids::new();
    for row in chain {
        let key = (row.text(0)?.to_owned(), row.text(1)?.to_owned());
        match row.opt_int(2)? {
            Some(nid) => state.insert(key, nid),
            None => state.remove(&key),
        };
    }
    Ok(state)
}

/// One state entry change: the key and its new event nid (`None`: removed).
type Change<'a> = (&'a StateKey, Option<i64>);

/// Most entries the deltas since the last snapshot may hold before a new snapshot: a
/// quarter of the state (at least `SNAPSHOT_INTERVAL`). A read applies at most that many
/// delta entries on top of the snapshot, and a change costs about four entries of
/// storage however big the state is (a snapshot every 32 deltas cost 1/32 of the state
/// per change: 149 KB at 100,000 entries).
fn delta_budget(state_len: usize) -> i64 {
    (state_len as i64 / 4).max(SNAPSHOT_INTERVAL)
}

/// Stores `state` as a new group on top of `parent` (whose full state is
/// `parent_state`), writing only the difference, or a full snapshot when the deltas
/// since the last one would pass `delta_budget`. Returns `parent` itself when nothing
/// differs. A group's `chain_len` is the number of delta entries since the snapshot
/// (0 for a snapshot).
pub fn store_state(
    db: &dyn Sql,
    parent: Option<(i64, &StateNids)>,
    state: &StateNids,
) -> Result<i64, SqlError> {
    let chain_len = match parent {
        Some((id, _)) => db
            .query_opt("SELECT chain_len FROM state_groups WHERE id = ?", params![id])?
            .map(|r| r.int(0))
            .transpose()?,
        None => None,
    };
    let delta: Option<(i64, Vec<Change<'_>>)> = match (parent, chain_len) {
        (Some((id, before)), Some(len)) => {
            let mut changes: Vec<Change<'_>> = state
                .iter()
                .filter(|(k, v)| before.get(*k) != Some(*v))
                .map(|(k, v)| (k, Some(*v)))
                .collect();
            changes.extend(
                before
                    .keys()
                    .filter(|k| !state.contains_key(*k))
                    .map(|k| (k, None)),
            );
            if changes.is_empty() {
                return Ok(id);
            }
            (len + changes.len() as i64 <= delta_budget(state.len())).then_some((id, changes))
        }
        _ => None,
    };
    let (parent_id, len, entries) = match delta {
        Some((id, changes)) => (Some(id), chain_len.unwrap_or(0) + changes.len() as i64, changes),
        None => (None, 0, state.iter().map(|(k, v)| (k, Some(*v))).collect()),
    };
    let group = db
        .query_opt(
            "INSERT INTO state_groups (parent, chain_len) VALUES (?, ?) RETURNING id",
            params![parent_id, len],
        )?
        .ok_or_else(|| SqlError("insert returned no row".into()))?
        .int(0)?;
    // Multi-row inserts, within the 100-parameter limit.
    for chunk in entries.chunks(24) {
        let marks = vec!["(?, ?, ?, ?)"; chunk.len()].join(",");
        let mut values = Vec::with_capacity(chunk.len() * 4);
        for ((t, k), nid) in chunk {
            values.push(group.into());
            values.push(t.as_str().into());
            values.push(k.as_str().into());
            values.push((*nid).into());
        }
        db.execute(
            &format!("INSERT INTO state_entries (grp, type, state_key, event_nid) VALUES {marks}"),
            &values,
        )?;
    }
    Ok(group)
}
