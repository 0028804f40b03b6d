//! Answers to other servers' questions (`FederationQuery`), in the shapes of the
//! federation API, events as their PDUs.

use serde_json::{json, Value};

use super::super::engine::{Engine, RoomError};
use super::super::protocol::{FederationQuery, RoomFailure};
use super::fail;

/// Most events one answer carries (backfill, missing events).
const MAX_EVENTS: u32 = 1000;

fn unknown_event() -> RoomFailure {
    fail(404, "M_NOT_FOUND", "Unknown event")
}

/// PDU texts as JSON values (each was stored as valid JSON).
fn pdus(texts: Vec<String>) -> Result<Vec<Value>, RoomFailure> {
    texts
        .iter()
        .map(|t| serde_json::from_str(t).map_err(|e| RoomFailure::from(RoomError::Corrupt(e.to_string()))))
        .collect()
}

/// Whether `origin` may ask this room anything: the server ACL allows it, and it has
/// a user joined now or the room is world-readable.
fn may_ask(room: &mut Engine<'_>, origin: &str) -> Result<(), RoomFailure> {
    use ruma::events::StateEventType;
    let acl = room.current_entry(&StateEventType::from("m.room.server_acl"), "")?;
    if !crate::core::acl::allows(acl.map(|p| p.content()).as_ref(), origin) {
        return Err(fail(403, "M_FORBIDDEN", "Server is denied by the room's ACL"));
    }
    if room.current_state_nids()?.is_empty() {
        return Err(fail(404, "M_NOT_FOUND", "Unknown room"));
    }
    if !room.local_members(origin)?.is_empty() {
        return Ok(());
    }
    let visibility = room.current_entry(&StateEventType::RoomHistoryVisibility, "")?;
    let world_readable = visibility
        .map(|p| p.content()["history_visibility"] == "world_readable")
        .unwrap_or(false);
    if world_readable {
        Ok(())
    } else {
        Err(fail(403, "M_FORBIDDEN", "Server is not in the room"))
    }
}

pub(super) fn answer(
    room: &mut Engine<'_>,
    origin: Option<&str>,
    query: FederationQuery,
) -> Result<Value, RoomFailure> {
    if let Some(origin) = origin {
        may_ask(room, origin)?;
    }
    match query {
        FederationQuery::StateIds { event_id } => {
            let state = room.state_ids_before(&event_id)?.ok_or_else(unknown_event)?;
            let chain = room.auth_chain(&state)?;
            Ok(json!({ "pdu_ids": state, "auth_chain_ids": chain }))
        }
        FederationQuery::State { event_id } => {
            let state = room.state_ids_before(&event_id)?.ok_or_else(unknown_event)?;
            let chain = room.auth_chain(&state)?;
            Ok(json!({
                "pdus": pdus(room.federation_pdus(&state)?)?,
                "auth_chain": pdus(room.federation_pdus(&chain)?)?,
            }))
        }
        FederationQuery::EventAuth { event_id } => {
            if room.federation_pdu(&event_id)?.is_none() {
                return Err(unknown_event());
            }
            let chain = room.auth_chain(&[event_id])?;
            Ok(json!({ "auth_chain": pdus(room.federation_pdus(&chain)?)? }))
        }
        FederationQuery::Backfill { from, limit } => {
            let events = room.backfill_events(&from, limit.min(MAX_EVENTS) as usize)?;
            Ok(json!({ "pdus": pdus(events)? }))
        }
        FederationQuery::MissingEvents {
            earliest,
            latest,
            limit,
            min_depth,
        } => {
            let events =
                room.missing_events(&earliest, &latest, limit.min(MAX_EVENTS) as usize, min_depth)?;
            Ok(json!({ "events": pdus(events)? }))
        }
        FederationQuery::Events { mut event_ids } => {
            event_ids.truncate(MAX_EVENTS as usize);
            Ok(json!({ "pdus": pdus(room.federation_pdus(&event_ids)?)? }))
        }
        FederationQuery::Event { event_id } => {
            let pdu = room.federation_pdu(&event_id)?.ok_or_else(unknown_event)?;
            Ok(json!({ "pdu": pdus(vec![pdu])?.pop() }))
        }
    }
}
