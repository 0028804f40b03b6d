//! Timeline pages: `/messages` (both directions, with the history other servers may
//! still hold) and `/context`.

use ruma::events::StateEventType;
use serde_json::{json, Value};

use super::super::super::engine::RoomError;
use super::super::super::protocol::{Dir, RoomFailure};
use super::super::super::store::{self, EventRow};
use super::super::Host;
use super::{
    as_shown, client_event, client_events, filter_list, parse_token, state_at, token, visibility,
    visible_event, visible_rows, Engine, BEFORE_ALL, MAX_HISTORY_FROM,
};

/// Answers `RoomRequest::Messages`.
pub(super) fn messages(
    room: &mut Engine<'_>,
    host: &Host<'_>,
    latest: i64,
    user_id: &str,
    (from, to, dir): (Option<String>, Option<String>, Dir),
    limit: u32,
    filter: Option<Value>,
) -> Result<Value, RoomFailure> {
    let vis = visibility(room, user_id)?;
    let ceiling = vis.until.unwrap_or(latest);
    let limit = i64::from(limit.clamp(1, 1000));
    let types = filter_list(filter.as_ref(), "types");
    let not_types = filter_list(filter.as_ref(), "not_types");
    let keep = |row: &EventRow| {
        types
            .as_ref()
            .is_none_or(|t| t.iter().any(|x| x == &row.event_type))
            && !not_types
                .as_ref()
                .is_some_and(|t| t.iter().any(|x| x == &row.event_type))
    };
    // A backward page that reaches the oldest event here while history goes
    // further back (backward extremities): the events to ask other servers
    // about, for the edge.
    let mut history_from: Option<Vec<String>> = None;
    let (rows, start, end) = match dir {
        Dir::Backward => {
            let from = from
                .as_deref()
                .map(parse_token)
                .transpose()?
                .unwrap_or(ceiling)
                .min(ceiling);
            let stop = to.as_deref().map(parse_token).transpose()?.unwrap_or(BEFORE_ALL);
            let rows = store::events_before(room.db, from + 1, limit).map_err(RoomError::from)?;
            if (rows.len() as i64) < limit && to.is_none() && room.has_backward_extremities()? {
                let mut ids = store::backward_extremities(room.db).map_err(RoomError::from)?;
                ids.truncate(MAX_HISTORY_FROM);
                history_from = Some(ids);
            }
            let rows: Vec<EventRow> = rows
                .into_iter()
                .filter(|r| r.stream_pos.unwrap_or(BEFORE_ALL) > stop)
                .collect();
            let end = rows.last().and_then(|r| r.stream_pos).map(|p| p - 1);
            (rows, from, end.filter(|e| *e > stop))
        }
        Dir::Forward => {
            let from = from
                .as_deref()
                .map(parse_token)
                .transpose()?
                .unwrap_or(BEFORE_ALL);
            let stop = to
                .as_deref()
                .map(parse_token)
                .transpose()?
                .unwrap_or(ceiling)
                .min(ceiling);
            let rows = store::events_after(room.db, from, stop, limit).map_err(RoomError::from)?;
            // Forwards, more may always follow (new events): `end` is where to
            // go on from, the last event returned or `from` itself.
            let end = rows.last().and_then(|r| r.stream_pos).unwrap_or(from);
            (rows, from, Some(end))
        }
    };
    let kept: Vec<EventRow> = rows.iter().filter(|r| keep(r)).cloned().collect();
    let kept = visible_rows(room, kept, user_id, &vis)?;
    let chunk = client_events(room, &kept, user_id, host.now_ms)?;
    let mut body = json!({ "chunk": chunk, "start": token(start) });
    // Lazy-loading: the member events of the chunk's senders.
    if filter
        .as_ref()
        .and_then(|f| f.get("lazy_load_members"))
        .and_then(Value::as_bool)
        == Some(true)
    {
        let senders: std::collections::BTreeSet<String> = kept.iter().map(|r| r.sender.clone()).collect();
        let mut members = Vec::with_capacity(senders.len());
        for sender in &senders {
            if let Some(p) = room.current_entry(&StateEventType::RoomMember, sender)? {
                members.push(p.to_client_event(None));
            }
        }
        body["state"] = Value::Array(members);
    }
    if let Some(end) = end {
        body["end"] = json!(token(end));
    }
    if let Some(ids) = history_from.filter(|ids| !ids.is_empty()) {
        body["history_from"] = json!(ids);
    }
    Ok(body)
}

/// Answers `RoomRequest::Context`.
pub(super) fn context(
    room: &mut Engine<'_>,
    host: &Host<'_>,
    latest: i64,
    user_id: &str,
    event_id: &str,
    limit: u32,
    filter: Option<Value>,
) -> Result<Value, RoomFailure> {
    let vis = visibility(room, user_id)?;
    let ceiling = vis.until.unwrap_or(latest);
    let (row, pdu) = visible_event(room, event_id, user_id, &vis, ceiling)?;
    let erased = store::erased_senders(room.db).map_err(RoomError::from)?;
    let pdu = as_shown(room, &row, pdu, user_id, &erased)?;
    let pos = row.stream_pos.unwrap_or(0);
    let half = i64::from(limit.min(100)) / 2 + i64::from(limit.min(100)) % 2;
    let before = store::events_before(room.db, pos, half).map_err(RoomError::from)?;
    let after =
        store::events_after(room.db, pos, ceiling, i64::from(limit.min(100)) / 2).map_err(RoomError::from)?;
    let before_rows = visible_rows(room, before.clone(), user_id, &vis)?;
    let before_json = client_events(room, &before_rows, user_id, host.now_ms)?;
    let after_rows = visible_rows(room, after.clone(), user_id, &vis)?;
    let after_json = client_events(room, &after_rows, user_id, host.now_ms)?;
    let start = before
        .last()
        .and_then(|r| r.stream_pos)
        .map_or(pos - 1, |p| p - 1);
    let end = after.last().and_then(|r| r.stream_pos).unwrap_or(pos);
    let state = state_at(room, pos)?;
    let lazy = filter.as_ref().and_then(|f| f["lazy_load_members"].as_bool()) == Some(true);
    let senders: std::collections::BTreeSet<&str> = before_rows
        .iter()
        .chain(after_rows.iter())
        .map(|r| r.sender.as_str())
        .chain(std::iter::once(row.sender.as_str()))
        .collect();
    let state_json: Vec<Value> = state
        .values()
        .filter(|p| {
            !lazy || p.kind() != "m.room.member" || p.state_key().is_some_and(|k| senders.contains(k))
        })
        .map(|p| p.to_client_event(None))
        .collect();
    Ok(json!({
        "event": client_event(&row, &pdu, host.now_ms),
        "events_before": before_json,
        "events_after": after_json,
        "start": token(start.max(0)),
        "end": token(end),
        "state": state_json,
    }))
}
