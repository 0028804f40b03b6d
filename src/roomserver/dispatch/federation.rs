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

pub(super) fn answer(room: &mut Engine<'_>, query: FederationQuery) -> Result<Value, RoomFailure> {
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
