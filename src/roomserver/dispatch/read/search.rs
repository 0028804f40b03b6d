//! `RoomRequest::Search`: full-text matches among the events a user may see, with
//! their context when asked (`store::search` holds the index).

use ruma::events::StateEventType;
use serde_json::{json, Map, Value};

use super::super::super::engine::RoomError;
use super::super::super::protocol::{RoomFailure, SearchContext};
use super::super::super::store::{self, search, EventRow};
use super::super::Host;
use super::{client_event, filter_list, token, visibility, visible_rows, Engine, Visibility};

/// Candidates read per result wanted, at least, before visibility and the filter.
const SCAN_FACTOR: i64 = 4;
const SCAN_MIN: i64 = 100;

/// Answers `RoomRequest::Search`.
pub(super) fn search(
    room: &mut Engine<'_>,
    host: &Host<'_>,
    latest: i64,
    user_id: &str,
    (query, newest_first, limit): (&str, bool, u32),
    filter: Option<Value>,
    context: Option<SearchContext>,
) -> Result<Value, RoomFailure> {
    let vis = visibility(room, user_id)?;
    let ceiling = vis.until.unwrap_or(latest);
    let db = room.db;
    let bad_query = |_| super::fail(400, "M_INVALID_PARAM", "The search term cannot be searched for");
    search::catch_up(db).map_err(RoomError::from)?;
    let limit = i64::from(limit.clamp(1, 1000));
    let found = search::matches(db, query, ceiling, newest_first, limit * SCAN_FACTOR + SCAN_MIN)
        .map_err(bad_query)?;
    let count = search::count(db, query, ceiling).map_err(bad_query)?;
    let nids: Vec<i64> = found.iter().map(|(n, _)| *n).collect();
    let mut rows: std::collections::HashMap<i64, EventRow> = store::events_by_nids(db, &nids)
        .map_err(RoomError::from)?
        .into_iter()
        .map(|r| (r.nid, r))
        .collect();
    let keep = |row: &EventRow| {
        let has = |field: &str, value: &str| {
            filter_list(filter.as_ref(), field).map(|l| l.iter().any(|x| x == value))
        };
        has("types", &row.event_type) != Some(false)
            && has("not_types", &row.event_type) != Some(true)
            && has("senders", &row.sender) != Some(false)
            && has("not_senders", &row.sender) != Some(true)
    };
    let mut ordered = Vec::new();
    let mut ranks = std::collections::HashMap::new();
    for (nid, rank) in found {
        if let Some(row) = rows.remove(&nid).filter(|r| keep(r)) {
            ranks.insert(row.nid, rank);
            ordered.push(row);
        }
    }
    let mut results = Vec::new();
    for row in visible_rows(room, ordered, user_id, &vis)? {
        if results.len() as i64 >= limit {
            break;
        }
        let pdu = room.pdu_of_row(&row)?;
        let mut result = json!({
            "rank": ranks.get(&row.nid).copied().unwrap_or(0.0),
            "event": client_event(&row, &pdu, host.now_ms),
            "stream_pos": row.stream_pos,
        });
        if let (Some(c), Some(pos)) = (context, row.stream_pos) {
            result["context"] = context_of(room, host, user_id, &vis, (pos, ceiling), c)?;
        }
        results.push(result);
    }
    Ok(json!({ "results": results, "count": count }))
}

/// The events around a result (at stream position `pos`) the user may see.
fn context_of(
    room: &mut Engine<'_>,
    host: &Host<'_>,
    user_id: &str,
    vis: &Visibility,
    (pos, ceiling): (i64, i64),
    c: SearchContext,
) -> Result<Value, RoomFailure> {
    let scan = |n: u32| i64::from(n) * 2 + 10;
    let before = store::events_before(room.db, pos, scan(c.before)).map_err(RoomError::from)?;
    let after = store::events_after(room.db, pos, ceiling, scan(c.after)).map_err(RoomError::from)?;
    let mut before = visible_rows(room, before, user_id, vis)?;
    before.truncate(c.before as usize);
    let mut after = visible_rows(room, after, user_id, vis)?;
    after.truncate(c.after as usize);
    let start = before.last().and_then(|r| r.stream_pos).unwrap_or(pos);
    let end = after.last().and_then(|r| r.stream_pos).unwrap_or(pos);
    let mut senders = std::collections::BTreeSet::new();
    let mut events = |rows: &[EventRow], room: &mut Engine<'_>| -> Result<Vec<Value>, RoomFailure> {
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            senders.insert(row.sender.clone());
            let pdu = room.pdu_of_row(row)?;
            out.push(client_event(row, &pdu, host.now_ms));
        }
        Ok(out)
    };
    let events_before = events(&before, room)?;
    let events_after = events(&after, room)?;
    let mut out = json!({
        "events_before": events_before,
        "events_after": events_after,
        // `start` pages back from the oldest event shown, `end` on from the newest.
        "start": token(start - 1),
        "end": token(end),
    });
    if c.include_profile {
        let mut profiles = Map::new();
        for sender in senders {
            if let Some(member) = room.current_entry(&StateEventType::RoomMember, &sender)? {
                let content = member.content();
                profiles.insert(
                    sender,
                    json!({ "displayname": content.get("displayname"), "avatar_url": content.get("avatar_url") }),
                );
            }
        }
        out["profile_info"] = Value::Object(profiles);
    }
    Ok(out)
}
