//! History: events older than the room's oldest known one (`/backfill` answers), each
//! authorized against the state before it (from its prev events, or the state the
//! caller got for a prev event the room lacks), given stream positions below every
//! other so `/messages` pages on into them with the same tokens. History never changes
//! the current state or the forward extremities, and is never news to `/sync`.

use std::collections::{HashMap, HashSet};

use ruma::OwnedEventId;

use crate::core::pdu::Pdu;

use super::super::store;
use super::input::{Before, GapState};
use super::{Engine, Outcome, RoomError};

/// Parents first: each event after the events of `events` it names as prev events.
/// Events in a cycle come last, in the order given.
fn prev_order(events: Vec<Pdu>) -> Vec<Pdu> {
    let ids: HashSet<OwnedEventId> = events.iter().map(|p| p.owned_event_id()).collect();
    let mut done: HashSet<OwnedEventId> = HashSet::new();
    let mut left: Vec<Pdu> = events;
    let mut out = Vec::with_capacity(left.len());
    loop {
        let (ready, rest): (Vec<Pdu>, Vec<Pdu>) = left.into_iter().partition(|p| {
            p.prev_events()
                .iter()
                .all(|prev| done.contains(prev) || !ids.contains(prev))
        });
        if ready.is_empty() {
            out.extend(rest);
            return out;
        }
        done.extend(ready.iter().map(|p| p.owned_event_id()));
        out.extend(ready);
        left = rest;
    }
}

impl Engine<'_> {
    /// Inputs a batch of history (any order), with the states at prev events the room
    /// lacks. Each event's outcome, by event id; the prev events still missing become
    /// backward extremities, the events themselves stop being ones.
    pub fn input_backfill(
        &mut self,
        events: Vec<Pdu>,
        gaps: &[GapState],
    ) -> Result<HashMap<String, Result<Outcome, RoomError>>, RoomError> {
        let order = prev_order(events);
        let lowest = store::lowest_stream_pos(self.sql()?)?.min(0);
        let count = order.len() as i64;
        let mut results = HashMap::with_capacity(order.len());
        for (i, pdu) in order.into_iter().enumerate() {
            if pdu.room_id() != self.info.room_id {
                results.insert(pdu.event_id().to_string(), Err(RoomError::WrongRoom));
                continue;
            }
            let id = pdu.event_id().to_string();
            // Oldest first, lowest first: the newest of the batch just below the rest.
            self.history = Some(lowest - count + i as i64);
            let outcome = self.input_new_held(pdu, Before::Prevs(gaps));
            self.history = None;
            if let Err(e @ (RoomError::Sql(_) | RoomError::Corrupt(_))) = outcome {
                return self.end_input(Err(e));
            }
            results.insert(id, outcome);
        }
        self.end_input(Ok(results))
    }
}
