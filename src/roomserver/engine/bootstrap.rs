//! A room that starts from another server's snapshot (a `send_join` answer): the state
//! before the join event, its auth chain, and the join event itself, with no local
//! create event. Format, hashes and signatures are checked by the caller.
//!
//! The auth chain and the state are stored as outliers, each checked against its own
//! auth events, auth events first (in the same request, or before it in pieces: a room
//! *begun* by a batch of outliers that starts with its create event, so that a snapshot
//! of any size goes in bounded pieces, and the bootstrap then names the state by id); the state before the join is the snapshot's state
//! events that passed; the join goes through the new-event pipeline on that state and
//! becomes the room's first timeline event, its only forward extremity, and its prev
//! events the room's backward extremities. Afterwards the room is like any other.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use ruma::OwnedEventId;

use crate::core::pdu::Pdu;
use crate::storage::sql::Sql;

use super::super::store::{self, StateNids, Status};
use super::input::Before;
use super::{room_info, Cache, Engine, Outcome, RoomError};

/// Auth events first: the create event, then each event after every event of `events`
/// it names as an auth event (version 12 events do not name the create event). Events
/// in a cycle are left out.
pub fn auth_order(events: Vec<Pdu>) -> Vec<Pdu> {
    // Each event once.
    let mut unique = HashSet::new();
    let mut events: Vec<Pdu> = events
        .into_iter()
        .filter(|p| unique.insert(p.owned_event_id()))
        .collect();
    events.sort_by_key(|p| p.kind() != "m.room.create");
    let ids: HashSet<OwnedEventId> = events.iter().map(|p| p.owned_event_id()).collect();
    let mut waiting: HashMap<OwnedEventId, usize> = HashMap::new();
    let mut dependents: HashMap<OwnedEventId, Vec<usize>> = HashMap::new();
    for (i, pdu) in events.iter().enumerate() {
        let deps: Vec<&OwnedEventId> = pdu.auth_events().iter().filter(|a| ids.contains(*a)).collect();
        waiting.insert(pdu.owned_event_id(), deps.len());
        for d in deps {
            dependents.entry(d.clone()).or_default().push(i);
        }
    }
    // Taken from the end: the create event (first) is taken first.
    let mut ready: Vec<usize> = (0..events.len())
        .rev()
        .filter(|i| waiting.get(events[*i].event_id()) == Some(&0))
        .collect();
    let mut order = Vec::with_capacity(events.len());
    while let Some(i) = ready.pop() {
        order.push(i);
        for &j in dependents
            .get(events[i].event_id())
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            if let Some(n) = waiting.get_mut(events[j].event_id()) {
                if *n > 0 {
                    *n -= 1;
                    if *n == 0 {
                        ready.push(j);
                    }
                }
            }
        }
    }
    let mut slots: Vec<Option<Pdu>> = events.into_iter().map(Some).collect();
    order.into_iter().filter_map(|i| slots[i].take()).collect()
}

impl<'a> Engine<'a> {
    /// Begins a room from its create event for a bootstrap in pieces: only its identity
    /// is stored; outliers can then be input, and `bootstrap` finishes it.
    pub fn begin(db: &'a dyn Sql, cache: &'a Cache, create: &Pdu) -> Result<Self, RoomError> {
        if create.kind() != "m.room.create" || create.state_key() != Some("") {
            return Err(RoomError::NoRoom);
        }
        Self::start(db, cache, create)
    }

    /// Whether the room was begun (`begin`) and not started yet: no timeline, no state.
    pub fn is_begun(&self) -> Result<bool, RoomError> {
        let head = self.head()?;
        Ok(head.current_group.is_none() && head.stream_pos == 0)
    }

    /// Starts the room from a join's snapshot: the state events given (`state`) and
    /// those already stored as outliers (`stored_state`, in a begun room), with the auth
    /// chain. On any failure nothing stays stored, the outliers of a begun room included.
    pub fn bootstrap(
        db: &'a dyn Sql,
        cache: &'a Cache,
        join: Pdu,
        (state, stored_state): (Vec<Pdu>, Vec<OwnedEventId>),
        auth_chain: Vec<Pdu>,
    ) -> Result<(Self, Outcome), RoomError> {
        if state
            .iter()
            .chain(&auth_chain)
            .any(|p| p.room_id() != join.room_id())
        {
            return Err(RoomError::WrongRoom);
        }
        let mut engine = match room_info(db)? {
            Some(info) if info.room_id == join.room_id() => {
                let engine = Self::open(db, cache)?;
                if !engine.is_begun()? {
                    return Err(RoomError::Exists);
                }
                engine
            }
            Some(_) => return Err(RoomError::WrongRoom),
            None => {
                let create = state
                    .iter()
                    .chain(&auth_chain)
                    .find(|p| p.kind() == "m.room.create" && p.state_key() == Some(""))
                    .cloned()
                    .ok_or_else(|| RoomError::Forbidden("the snapshot has no create event".into()))?;
                if create.room_id() != join.room_id() {
                    return Err(RoomError::WrongRoom);
                }
                Self::start(db, cache, &create)?
            }
        };
        match engine.bootstrap_held(join, state, stored_state, auth_chain) {
            Ok(Outcome::Accepted { stream_pos }) => {
                engine.flush()?;
                Ok((engine, Outcome::Accepted { stream_pos }))
            }
            other => {
                // Whatever was pending or written goes: the room does not exist.
                *engine.pending.borrow_mut() = Default::default();
                store::clear_room(db)?;
                cache.clear();
                Err(match other {
                    Ok(outcome) => {
                        RoomError::Forbidden(format!("the join is not allowed by the state: {outcome:?}"))
                    }
                    Err(e) => e,
                })
            }
        }
    }

    fn bootstrap_held(
        &mut self,
        join: Pdu,
        state: Vec<Pdu>,
        stored_state: Vec<OwnedEventId>,
        auth_chain: Vec<Pdu>,
    ) -> Result<Outcome, RoomError> {
        self.batch_writes();
        let mut state_ids: Vec<OwnedEventId> = state.iter().map(|p| p.owned_event_id()).collect();
        state_ids.extend(stored_state);
        let mut all: HashMap<OwnedEventId, Pdu> = HashMap::new();
        for pdu in auth_chain.into_iter().chain(state) {
            all.entry(pdu.owned_event_id()).or_insert(pdu);
        }
        let ids: Vec<String> = all.keys().map(|id| id.to_string()).collect();
        self.prefetch_new(&ids)?;
        for pdu in auth_order(all.into_values().collect()) {
            match self.input_outlier_held(pdu) {
                // An event whose auth events are missing (or were dropped) is left out.
                Ok(_) | Err(RoomError::MissingAuth(_)) => {}
                Err(e) => return Err(e),
            }
        }
        // The state before the join: the snapshot's state events that passed.
        let mut before = StateNids::new();
        for id in &state_ids {
            let Some(row) = store::event_by_id(self.sql()?, id.as_str())? else {
                continue;
            };
            let (Some(key), true) = (row.state_key, row.status == Status::Accepted as i64) else {
                continue;
            };
            if before.insert((row.event_type, key), row.nid).is_some() {
                return Err(RoomError::Forbidden(
                    "two state events for one key in the snapshot".into(),
                ));
            }
        }
        if !before.contains_key(&("m.room.create".to_owned(), String::new())) {
            return Err(RoomError::Forbidden(
                "the snapshot's state has no create event".into(),
            ));
        }
        self.input_new_held(join, Before::Snapshot(Arc::new(before)))
    }
}
