//! Answers to other servers' questions about any point of the room's DAG: the state at
//! an event (as ids, without reading the events), auth chains, history for `/backfill`,
//! `/get_missing_events`, and any event as its federation PDU (redacted if redacted).
//! Which server may ask what (history visibility, membership, ACLs) is the federation
//! edge's question, not these.

use std::collections::{BinaryHeap, HashSet};
use std::sync::Arc;

use ruma::events::StateEventType;

use super::super::store::{self, EventRow, Kind, Status};
use super::{Engine, RoomError};

/// Most events one query walks (an auth chain, a backfill, missing events).
pub const MAX_WALK: usize = 100_000;

impl Engine<'_> {
    /// The state before an event (what `/state_ids` and `/state` answer at it) as event
    /// ids; `None` when the event is unknown or has no state here (an outlier, a
    /// rejected event).
    pub fn state_ids_before(&mut self, event_id: &str) -> Result<Option<Vec<String>>, RoomError> {
        let Some(row) = store::event_by_id(self.sql()?, event_id)? else {
            return Ok(None);
        };
        if row.kind == Kind::Outlier as i64 || row.status == Status::Rejected as i64 {
            return Ok(None);
        }
        let state = match row.state_before {
            Some(g) => self.load_group(g)?,
            None => Arc::default(), // the create event
        };
        let nids: Vec<i64> = state.values().copied().collect();
        let ids = store::event_ids_by_nids(self.sql()?, &nids)?;
        let mut out: Vec<String> = nids.iter().filter_map(|n| ids.get(n).cloned()).collect();
        if out.len() != nids.len() {
            return Err(RoomError::Corrupt("state names an unknown event".into()));
        }
        out.sort();
        Ok(Some(out))
    }

    /// The auth chain of `event_ids`: their auth events, theirs, and so on (not the
    /// events themselves unless one is in another's chain), each read once; sorted.
    /// Events the room lacks are skipped. The create event is always in the chain of
    /// any other event, also in versions whose events no longer name it (12).
    pub fn auth_chain(&mut self, event_ids: &[String]) -> Result<Vec<String>, RoomError> {
        let mut seen: HashSet<String> = HashSet::new();
        let mut todo: Vec<String> = Vec::new();
        let mut any_other = false;
        for id in event_ids {
            if let Some((_, pdu)) = self.pdu(id)? {
                any_other |= pdu.kind() != "m.room.create";
                todo.extend(pdu.auth_events().iter().map(|a| a.to_string()));
            }
        }
        if any_other {
            if let Some(create) = self.current_entry(&StateEventType::RoomCreate, "")? {
                todo.push(create.event_id().to_string());
            }
        }
        while let Some(id) = todo.pop() {
            if seen.len() >= MAX_WALK || !seen.insert(id.clone()) {
                continue;
            }
            match self.pdu(&id)? {
                Some((_, pdu)) => todo.extend(
                    pdu.auth_events()
                        .iter()
                        .map(|a| a.to_string())
                        .filter(|a| !seen.contains(a)),
                ),
                None => {
                    seen.remove(&id);
                }
            }
        }
        let mut out: Vec<String> = seen.into_iter().collect();
        out.sort();
        Ok(out)
    }

    /// An event as other servers see it: its federation JSON (the redacted form once
    /// redacted). `None` for events the room lacks or rejected.
    pub fn federation_pdu(&mut self, event_id: &str) -> Result<Option<String>, RoomError> {
        Ok(store::event_by_id(self.sql()?, event_id)?
            .filter(|row| row.status != Status::Rejected as i64)
            .map(|row| row.json))
    }

    /// The federation JSON of several events, in the order given (unknown and rejected
    /// ones left out).
    pub fn federation_pdus(&mut self, event_ids: &[String]) -> Result<Vec<String>, RoomError> {
        let mut out = Vec::with_capacity(event_ids.len());
        for id in event_ids {
            out.extend(self.federation_pdu(id)?);
        }
        Ok(out)
    }

    /// `/backfill`: the events `from` and those before them, walking prev events deepest
    /// first, up to `limit`; newest first.
    pub fn backfill_events(&mut self, from: &[String], limit: usize) -> Result<Vec<String>, RoomError> {
        Ok(self
            .backfill_rows(from, limit)?
            .into_iter()
            .map(|r| r.json)
            .collect())
    }

    /// [`Self::backfill_events`] as rows.
    pub fn backfill_rows(&mut self, from: &[String], limit: usize) -> Result<Vec<EventRow>, RoomError> {
        let mut heap: BinaryHeap<(i64, String)> = BinaryHeap::new();
        let mut queued: HashSet<String> = HashSet::new();
        for id in from {
            if let Some(row) = store::event_by_id(self.sql()?, id)? {
                if queued.insert(id.clone()) {
                    heap.push((row.depth, id.clone()));
                }
            }
        }
        let mut out = Vec::new();
        while let Some((_, id)) = heap.pop() {
            if out.len() >= limit.min(MAX_WALK) {
                break;
            }
            let Some((row, pdu)) = self.pdu(&id)? else {
                continue;
            };
            if row.status != Status::Rejected as i64 {
                out.push(row.clone());
            }
            for prev in pdu.prev_events() {
                let prev = prev.to_string();
                if queued.contains(&prev) {
                    continue;
                }
                if let Some(r) = store::event_by_id(self.sql()?, &prev)? {
                    queued.insert(prev.clone());
                    heap.push((r.depth, prev));
                }
            }
        }
        Ok(out)
    }

    /// `/get_missing_events`: walking back from `latest` (not included) through prev
    /// events, never past `earliest` nor below `min_depth`, up to `limit` events; oldest
    /// first.
    pub fn missing_events(
        &mut self,
        earliest: &[String],
        latest: &[String],
        limit: usize,
        min_depth: i64,
    ) -> Result<Vec<String>, RoomError> {
        Ok(self
            .missing_rows(earliest, latest, limit, min_depth)?
            .into_iter()
            .map(|r| r.json)
            .collect())
    }

    /// [`Self::missing_events`] as rows.
    pub fn missing_rows(
        &mut self,
        earliest: &[String],
        latest: &[String],
        limit: usize,
        min_depth: i64,
    ) -> Result<Vec<EventRow>, RoomError> {
        let stop: HashSet<&String> = earliest.iter().collect();
        let mut seen: HashSet<String> = latest.iter().cloned().collect();
        let mut frontier: Vec<String> = Vec::new();
        for id in latest {
            if let Some((_, pdu)) = self.pdu(id)? {
                frontier.extend(pdu.prev_events().iter().map(|p| p.to_string()));
            }
        }
        let mut found: Vec<(i64, EventRow)> = Vec::new();
        // Breadth first, as the spec says, so the nearest history comes first.
        while !frontier.is_empty() && found.len() < limit.min(MAX_WALK) {
            let mut next = Vec::new();
            for id in frontier {
                if found.len() >= limit.min(MAX_WALK) {
                    break;
                }
                if stop.contains(&id) || !seen.insert(id.clone()) {
                    continue;
                }
                let Some((row, pdu)) = self.pdu(&id)? else {
                    continue;
                };
                if row.depth < min_depth {
                    continue;
                }
                if row.status != Status::Rejected as i64 {
                    found.push((row.depth, row.clone()));
                }
                next.extend(pdu.prev_events().iter().map(|p| p.to_string()));
            }
            frontier = next;
        }
        found.sort_by_key(|(depth, _)| *depth);
        Ok(found.into_iter().map(|(_, row)| row).collect())
    }
}
