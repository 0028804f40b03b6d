//! The engine's states: state groups read and stored through the caches, single
//! entries looked up by key, the resolution of several states, and the differences the
//! log records carry.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use ruma::events::StateEventType;
use ruma::state_res::StateMap;
use ruma::OwnedEventId;

use crate::core::pdu::Pdu;
use crate::core::state_res::{auth_chain_differences, resolve};
use crate::log::StateChange;

use super::super::store::{self, StateNids};
use super::cache::{bounded_insert, MAX_CACHED_EVENTS};
use super::{membership_of, Engine, RoomError, StatePdus};

impl Engine<'_> {
    /// Loads the events of a state map.
    pub fn state_pdus(&mut self, state: &StateNids) -> Result<StatePdus, RoomError> {
        let missing: Vec<i64> = state
            .values()
            .filter(|n| !self.pdus.borrow().contains_key(n))
            .copied()
            .collect();
        let mut loaded = HashMap::with_capacity(missing.len());
        let rows = if missing.is_empty() {
            Vec::new()
        } else {
            store::events_by_nids(self.sql()?, &missing)?
        };
        for row in rows {
            let pdu = self.pdu_from_row(&row)?;
            loaded.insert(row.nid, pdu.clone());
            self.keep(row.nid, pdu);
        }
        let cached = self.pdus.borrow();
        let mut out = HashMap::with_capacity(state.len());
        for ((t, k), nid) in state {
            let pdu = loaded
                .get(nid)
                .or_else(|| cached.get(nid))
                .cloned()
                .ok_or_else(|| RoomError::Corrupt(format!("state event {nid}")))?;
            out.insert((StateEventType::from(t.as_str()), k.clone()), pdu);
        }
        Ok(out)
    }

    /// The current state group and its map.
    pub fn current_state(&self) -> Result<(Option<i64>, StateNids), RoomError> {
        let (group, state) = self.current_state_shared()?;
        Ok((group, (*state).clone()))
    }

    /// `current_state`, shared rather than copied.
    pub(super) fn current_state_shared(&self) -> Result<(Option<i64>, Arc<StateNids>), RoomError> {
        match self.head()?.current_group {
            Some(g) => Ok((Some(g), self.load_group(g)?)),
            None => Ok((None, Arc::default())),
        }
    }

    /// The users of `server_name` joined to the room now, sorted. Reads only the member
    /// entries of the current state whose user is on that server.
    pub fn local_members(&self, server_name: &str) -> Result<Vec<String>, RoomError> {
        let (_, state) = self.current_state_shared()?;
        let suffix = format!(":{server_name}");
        let mut out = Vec::new();
        let from = ("m.room.member".to_owned(), String::new());
        for ((t, user), nid) in state.range(from..) {
            if t != "m.room.member" {
                break;
            }
            if !user.ends_with(&suffix) || user[..user.len() - suffix.len()].contains(':') {
                continue;
            }
            if self.pdu_by_nid(*nid)?.as_ref().and_then(membership_of).as_deref() == Some("join") {
                out.push(user.clone());
            }
        }
        Ok(out)
    }

    /// The other servers with a user joined to the room now, sorted, and the current
    /// state group they were read from (so a caller may remember them until it moves).
    pub fn joined_servers(&self, own: &str) -> Result<(Option<i64>, Vec<String>), RoomError> {
        let (group, state) = self.current_state_shared()?;
        let mut out: Vec<String> = Vec::new();
        let from = ("m.room.member".to_owned(), String::new());
        for ((t, user), nid) in state.range(from..) {
            if t != "m.room.member" {
                break;
            }
            let Some((_, server)) = user.split_once(':') else {
                continue;
            };
            if server == own || out.iter().any(|s| s == server) {
                continue;
            }
            if self.pdu_by_nid(*nid)?.as_ref().and_then(membership_of).as_deref() == Some("join") {
                out.push(server.to_owned());
            }
        }
        out.sort();
        Ok((group, out))
    }

    /// One entry of a state group, as an event.
    pub fn state_event_in_group(
        &mut self,
        group: i64,
        event_type: &str,
        state_key: &str,
    ) -> Result<Option<Pdu>, RoomError> {
        let nid = self
            .load_group(group)?
            .get(&(event_type.to_owned(), state_key.to_owned()))
            .copied();
        match nid {
            Some(n) => self.pdu_by_nid(n),
            None => Ok(None),
        }
    }

    /// The current state as events.
    pub fn current_state_pdus(&mut self) -> Result<StatePdus, RoomError> {
        let (_, state) = self.current_state()?;
        self.state_pdus(&state)
    }

    /// The state after an event (for state events, including it).
    pub fn state_after(&mut self, event_id: &str) -> Result<Option<StateNids>, RoomError> {
        match self.after_group(event_id)? {
            Some(g) => Ok(Some((*self.load_group(g)?).clone())),
            None => Ok(None),
        }
    }

    pub fn state_after_pdus(&mut self, event_id: &str) -> Result<Option<StatePdus>, RoomError> {
        match self.state_after(event_id)? {
            Some(s) => Ok(Some(self.state_pdus(&s)?)),
            None => Ok(None),
        }
    }

    /// The state group after an event, if the event has state (not an outlier).
    pub(super) fn after_group(&self, event_id: &str) -> Result<Option<i64>, RoomError> {
        if let Some(g) = self.after.borrow().get(event_id) {
            return Ok(Some(*g));
        }
        let group = store::event_by_id(self.sql()?, event_id)?.and_then(|r| r.state_after);
        if let Some(g) = group {
            bounded_insert(self.after, MAX_CACHED_EVENTS, event_id.to_owned(), g);
        }
        Ok(group)
    }

    /// A state group, from the cache or storage.
    pub(super) fn load_group(&self, group: i64) -> Result<Arc<StateNids>, RoomError> {
        if let Some(s) = self.groups.borrow().get(&group) {
            return Ok(s.clone());
        }
        let state = Arc::new(store::load_state(self.db, group)?);
        self.groups.borrow_mut().insert(group, state.clone());
        Ok(state)
    }

    /// One entry of a state as an event, for the auth rules (by nid, from the event
    /// cache). A storage failure is kept in `failed`, for the caller to fail with: the
    /// rules only see a missing entry, which must never turn into a rejection.
    pub(super) fn state_entry(
        &self,
        state: &StateNids,
        event_type: &StateEventType,
        state_key: &str,
        failed: &RefCell<Option<RoomError>>,
    ) -> Option<Pdu> {
        let nid = *state.get(&(event_type.to_string(), state_key.to_owned()))?;
        match self.pdu_by_nid(nid) {
            Ok(Some(p)) => Some(p),
            Ok(None) => {
                failed
                    .borrow_mut()
                    .get_or_insert(RoomError::Corrupt(format!("state event {nid}")));
                None
            }
            Err(e) => {
                failed.borrow_mut().get_or_insert(e);
                None
            }
        }
    }

    /// One entry of the current state as an event (by nid, from the event cache): for
    /// the few questions that need one key, never the whole state as events.
    pub fn current_entry(
        &self,
        event_type: &StateEventType,
        state_key: &str,
    ) -> Result<Option<Pdu>, RoomError> {
        let (_, state) = self.current_state_shared()?;
        let failed = RefCell::new(None);
        let entry = self.state_entry(&state, event_type, state_key, &failed);
        match failed.into_inner() {
            Some(e) => Err(e),
            None => Ok(entry),
        }
    }

    /// Stores a state as a group (see `store::store_state`) and keeps it in the cache: the
    /// next events read it at once.
    pub(super) fn store_group(
        &self,
        parent: Option<(i64, &StateNids)>,
        state: &Arc<StateNids>,
    ) -> Result<i64, RoomError> {
        let group = store::store_state(self.db, parent, state)?;
        self.groups.borrow_mut().insert(group, state.clone());
        Ok(group)
    }

    /// The resolution of the states of several groups.
    pub(super) fn resolve_groups(&mut self, groups: &[i64]) -> Result<Arc<StateNids>, RoomError> {
        let mut key = groups.to_vec();
        key.sort_unstable();
        key.dedup();
        match key.as_slice() {
            [] => return Ok(Arc::default()),
            [one] => return self.load_group(*one),
            _ => {}
        }
        if let Some(s) = self.resolved.borrow().get(&key) {
            return Ok(s.clone());
        }
        let mut states = Vec::with_capacity(key.len());
        for g in &key {
            states.push((*self.load_group(*g)?).clone());
        }
        let state = Arc::new(self.resolve_states(states)?);
        self.resolved.borrow_mut().insert(key, state.clone());
        Ok(state)
    }

    /// Resolves several states (keyed by nid) into one.
    pub(super) fn resolve_states(&mut self, states: Vec<StateNids>) -> Result<StateNids, RoomError> {
        let mut unique: Vec<StateNids> = Vec::new();
        for s in states {
            if !unique.contains(&s) {
                unique.push(s);
            }
        }
        if unique.len() <= 1 {
            return Ok(unique.pop().unwrap_or_default());
        }
        // nid ↔ event id for every event involved.
        let mut ids: HashMap<i64, OwnedEventId> = HashMap::new();
        for s in &unique {
            let pdus = self.state_pdus(s)?;
            for ((t, k), pdu) in pdus {
                if let Some(nid) = s.get(&(t.to_string(), k)) {
                    ids.insert(*nid, pdu.owned_event_id());
                }
            }
        }
        let sets: Vec<StateMap<OwnedEventId>> = unique
            .iter()
            .map(|s| {
                s.iter()
                    .filter_map(|((t, k), nid)| {
                        Some((
                            (StateEventType::from(t.as_str()), k.clone()),
                            ids.get(nid)?.clone(),
                        ))
                    })
                    .collect()
            })
            .collect();
        let rules = self.info.rules.clone();
        let fetch = self.fetch_fn();
        let chains = auth_chain_differences(&sets, &fetch);
        let resolved =
            resolve(&rules, &sets, &chains, &fetch).map_err(|e| RoomError::Corrupt(e.to_string()))?;
        let by_id: HashMap<&OwnedEventId, i64> = ids.iter().map(|(n, id)| (id, *n)).collect();
        let mut out = StateNids::new();
        for ((t, k), id) in resolved {
            let nid = match by_id.get(&id) {
                Some(n) => *n,
                None => store::event_by_id(self.sql()?, id.as_str())?
                    .map(|r| r.nid)
                    .ok_or_else(|| RoomError::Corrupt(format!("resolved to unknown event {id}")))?,
            };
            out.insert((t.to_string(), k), nid);
        }
        Ok(out)
    }

    /// The current-state entries that changed, with the membership of member events, for
    /// consumers that index memberships.
    pub(super) fn state_changes(
        &mut self,
        old: &StateNids,
        new: &StateNids,
    ) -> Result<Vec<StateChange>, RoomError> {
        let mut out = Vec::new();
        if std::ptr::eq(old, new) || old == new {
            return Ok(out);
        }
        // Both maps are sorted by key: walk them side by side.
        let (mut a, mut b) = (old.iter().peekable(), new.iter().peekable());
        loop {
            let order = match (a.peek(), b.peek()) {
                (None, None) => break,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some((ka, _)), Some((kb, _))) => ka.cmp(kb),
            };
            // The smaller key is only on its side; an equal key is on both.
            let (key, before, after) = match order {
                Ordering::Less => a.next().map(|(k, v)| (k, Some(*v), None)),
                Ordering::Greater => b.next().map(|(k, v)| (k, None, Some(*v))),
                Ordering::Equal => a
                    .next()
                    .zip(b.next())
                    .map(|((k, v), (_, w))| (k, Some(*v), Some(*w))),
            }
            .ok_or_else(|| RoomError::Corrupt("state walk".into()))?;
            if before == after {
                continue;
            }
            let event = match after {
                Some(nid) => self.pdu_by_nid(nid)?,
                None => None,
            };
            out.push(StateChange {
                event_type: key.0.clone(),
                state_key: key.1.clone(),
                event_id: event.as_ref().map(|e| e.event_id().to_string()),
                membership: event.as_ref().and_then(membership_of),
            });
        }
        Ok(out)
    }

    /// The current state as entries (by nid), shared: no event is read.
    pub fn current_state_nids(&self) -> Result<Arc<StateNids>, RoomError> {
        Ok(self.current_state_shared()?.1)
    }

    /// A state group's entries, shared.
    pub fn group_nids(&self, group: i64) -> Result<Arc<StateNids>, RoomError> {
        self.load_group(group)
    }

    /// The state after an event as entries, shared; `None` for an event without state.
    pub fn state_after_nids(&self, event_id: &str) -> Result<Option<Arc<StateNids>>, RoomError> {
        match self.after_group(event_id)? {
            Some(g) => Ok(Some(self.load_group(g)?)),
            None => Ok(None),
        }
    }

    /// One entry of a state as an event (by nid, from the event cache).
    pub fn entry_in(
        &self,
        state: &StateNids,
        event_type: &str,
        state_key: &str,
    ) -> Result<Option<Pdu>, RoomError> {
        match state.get(&(event_type.to_owned(), state_key.to_owned())) {
            Some(nid) => {
                Ok(Some(self.pdu_by_nid(*nid)?.ok_or_else(|| {
                    RoomError::Corrupt(format!("state event {nid}"))
                })?))
            }
            None => Ok(None),
        }
    }

    /// The member events of a state, by user id in order: only they are read.
    pub fn members_in(&self, state: &StateNids) -> Result<Vec<(String, Pdu)>, RoomError> {
        let from = ("m.room.member".to_owned(), String::new());
        let mut out = Vec::new();
        for ((t, user), nid) in state.range(from..) {
            if t != "m.room.member" {
                break;
            }
            let pdu = self
                .pdu_by_nid(*nid)?
                .ok_or_else(|| RoomError::Corrupt(format!("state event {nid}")))?;
            out.push((user.clone(), pdu));
        }
        Ok(out)
    }
}
