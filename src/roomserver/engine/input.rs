//! Input of a new event, the server-server spec's "checks performed on receipt of a
//! PDU" after format and signatures: idempotency, the state before it, authorization
//! against its auth events, that state and the current state, and the writes.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use ruma::events::StateEventType;
use ruma::OwnedEventId;

use crate::core::auth::{check_auth, check_auth_events_traced, Rejection};
use crate::core::pdu::Pdu;
use crate::log::LogRecord;

use super::super::store::{self, Kind, NewEvent as Row, StateNids, Status};
use super::cache::{bounded_insert, Head, MAX_CACHED_EVENTS};
use super::{membership_of, same_state, Engine, Outcome, RoomError};

/// The state at a prev event the room does not have, as another server reported it:
/// `state_before` is the state before `prev` (what `/state_ids` answers at it). Every
/// event it names must be stored (as an outlier, say); the prev itself too if it is a
/// state event, so that the state after it can include it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GapState {
    pub prev: OwnedEventId,
    pub state_before: Vec<OwnedEventId>,
}

/// Where the state before a new event comes from.
pub(super) enum Before<'g> {
    /// The states after its prev events (with the states supplied for gaps).
    Prevs(&'g [GapState]),
    /// Given whole (a join's snapshot): the prev events the room lacks become backward
    /// extremities.
    Snapshot(Arc<StateNids>),
}

/// Most outliers upgraded at once to reach the state of a new event's prev events.
const MAX_UPGRADES: usize = 1000;

/// Whether an input event is new, a stored outlier to upgrade, or done before.
enum Known {
    New,
    Outlier(i64),
    Done(Outcome),
}

impl Engine<'_> {
    /// Inputs a new event that extends the DAG. Format, hashes and signatures must have
    /// been checked by the caller.
    pub fn input_new(&mut self, pdu: Pdu) -> Result<Outcome, RoomError> {
        self.input_new_with_gaps(pdu, &[])
    }

    /// `input_new`, with the states at prev events the room lacks (`GapState`): a gap
    /// in the DAG is crossed with the state the caller got for it, and the missing prev
    /// events become backward extremities.
    pub fn input_new_with_gaps(&mut self, pdu: Pdu, gaps: &[GapState]) -> Result<Outcome, RoomError> {
        let result = self.input_new_held(pdu, Before::Prevs(gaps));
        self.end_input(result)
    }

    /// Step 1: a stored event answers its stored outcome (inputs are idempotent), except
    /// an outlier, which now goes through the pipeline to get its state.
    fn known(&mut self, pdu: &Pdu) -> Result<Known, RoomError> {
        if self.known_new.remove(pdu.event_id().as_str()) {
            return Ok(Known::New); // checked by the batch
        }
        let Some(row) = store::event_by_id(self.sql()?, pdu.event_id().as_str())? else {
            return Ok(Known::New);
        };
        if row.kind == Kind::Outlier as i64 {
            return Ok(Known::Outlier(row.nid));
        }
        Ok(Known::Done(match (row.status, row.stream_pos) {
            (0, Some(pos)) => Outcome::Accepted { stream_pos: pos },
            (2, _) => Outcome::SoftFailed("already soft-failed".into()),
            (1, _) => Outcome::Rejected("already rejected".into()),
            _ => Outcome::Stored,
        }))
    }

    /// The auth events the room does not have: reported to the caller, never a
    /// rejection (the caller fetches them and inputs them as outliers). In versions
    /// whose room id is the create event's id, the create event counts as one.
    pub(super) fn missing_auth(&self, pdu: &Pdu) -> Vec<OwnedEventId> {
        let fetch = self.fetch_fn();
        let mut missing: Vec<OwnedEventId> = pdu
            .auth_events()
            .iter()
            .filter(|id| fetch(id).is_none())
            .cloned()
            .collect();
        if self.info.rules.authorization.room_create_event_id_as_room_id && pdu.kind() != "m.room.create" {
            let create = OwnedEventId::try_from(format!("${}", &pdu.room_id().as_str()[1..]));
            if let Ok(create) = create {
                if fetch(&create).is_none() {
                    missing.push(create);
                }
            }
        }
        missing
    }

    /// Step 3's prerequisite: the state group after each prev event. A prev stored as an
    /// outlier is upgraded first when its own history has state (`upgrade_outliers`); a
    /// prev with a `GapState` gets a group of that state; any other prev without state
    /// is reported missing.
    fn prev_groups(&mut self, pdu: &Pdu, gaps: &[GapState]) -> Result<Vec<i64>, RoomError> {
        let mut missing = Vec::new();
        let mut groups = Vec::new();
        let mut unknown = Vec::new();
        for prev in pdu.prev_events() {
            if let Some(g) = self.after_group(prev.as_str())? {
                groups.push(g);
                continue;
            }
            if let Some(gap) = gaps.iter().find(|g| &g.prev == prev) {
                let (group, stored) = self.gap_group(gap)?;
                groups.push(group);
                if !stored {
                    unknown.push(prev.to_string());
                }
                continue;
            }
            if self.history.is_none() && self.upgrade_outliers(prev)? {
                if let Some(g) = self.after_group(prev.as_str())? {
                    groups.push(g);
                    continue;
                }
            }
            missing.push(prev.clone());
        }
        if !missing.is_empty() {
            return Err(RoomError::MissingPrev(missing));
        }
        self.add_backward(&unknown)?;
        Ok(groups)
    }

    /// A state group for the state after a prev event across a gap, and whether the prev
    /// itself is stored.
    fn gap_group(&mut self, gap: &GapState) -> Result<(i64, bool), RoomError> {
        let mut state = StateNids::new();
        let mut missing = Vec::new();
        for id in &gap.state_before {
            match store::event_by_id(self.sql()?, id.as_str())? {
                Some(row) if row.status != Status::Rejected as i64 => {
                    if let Some(key) = row.state_key {
                        state.insert((row.event_type, key), row.nid);
                    }
                }
                Some(_) => {}
                None => missing.push(id.clone()),
            }
        }
        if !missing.is_empty() {
            return Err(RoomError::MissingState(missing));
        }
        let prev = store::event_by_id(self.sql()?, gap.prev.as_str())?;
        if let Some(row) = &prev {
            if let (Some(key), true) = (&row.state_key, row.status != Status::Rejected as i64) {
                state.insert((row.event_type.clone(), key.clone()), row.nid);
            }
        }
        let group = self.store_group(None, &Arc::new(state))?;
        Ok((group, prev.is_some()))
    }

    /// Upgrades the outliers in the history of `from` (itself included) when every path
    /// back reaches events with state within `MAX_UPGRADES` events: each goes through the
    /// pipeline, parents first. False when `from` is not an outlier or its history has a
    /// hole.
    fn upgrade_outliers(&mut self, from: &OwnedEventId) -> Result<bool, RoomError> {
        let mut outliers: HashMap<OwnedEventId, Pdu> = HashMap::new();
        let mut todo = vec![from.clone()];
        while let Some(id) = todo.pop() {
            if outliers.contains_key(&id) || self.after_group(id.as_str())?.is_some() {
                continue;
            }
            let Some((row, pdu)) = self.pdu(id.as_str())? else {
                return Ok(false);
            };
            if row.kind != Kind::Outlier as i64 || outliers.len() >= MAX_UPGRADES {
                return Ok(false);
            }
            todo.extend(pdu.prev_events().iter().cloned());
            outliers.insert(id, pdu);
        }
        // Parents first: an outlier goes once all its outlier prevs have gone.
        let mut order = Vec::with_capacity(outliers.len());
        let mut done: HashSet<OwnedEventId> = HashSet::new();
        while order.len() < outliers.len() {
            let before = order.len();
            for (id, pdu) in &outliers {
                if !done.contains(id)
                    && pdu
                        .prev_events()
                        .iter()
                        .all(|p| done.contains(p) || !outliers.contains_key(p))
                {
                    order.push(pdu.clone());
                }
            }
            for pdu in &order[before..] {
                done.insert(pdu.owned_event_id());
            }
            if order.len() == before {
                return Ok(false); // a cycle: not a DAG
            }
        }
        for pdu in order {
            self.input_new_held(pdu, Before::Prevs(&[]))?;
        }
        Ok(true)
    }

    /// The state before a new event, from its prev events, and its group.
    fn state_before(
        &mut self,
        pdu: &Pdu,
        gaps: &[GapState],
    ) -> Result<(Arc<StateNids>, Option<i64>), RoomError> {
        let prev_groups = self.prev_groups(pdu, gaps)?;
        let state_before = self.resolve_groups(&prev_groups)?;
        let before_group = match prev_groups.first() {
            Some(g) if prev_groups.iter().all(|x| x == g) => Some(*g),
            _ if state_before.is_empty() => None,
            _ => {
                let parent = prev_groups.first().copied();
                let parent_state = match parent {
                    Some(g) => Some((*self.load_group(g)?).clone()),
                    None => None,
                };
                Some(self.store_group(parent.zip(parent_state.as_ref()), &state_before)?)
            }
        };
        Ok((state_before, before_group))
    }

    /// Records prev events the room lacks as backward extremities.
    fn add_backward(&mut self, unknown: &[String]) -> Result<(), RoomError> {
        if unknown.is_empty() {
            return Ok(());
        }
        store::add_backward_extremities(self.sql()?, unknown)?;
        self.head()?;
        if let Some(head) = self.head.borrow_mut().as_mut() {
            head.has_backward = true;
        }
        Ok(())
    }

    /// `input_new` with its writes left pending.
    pub(super) fn input_new_held(&mut self, pdu: Pdu, before: Before<'_>) -> Result<Outcome, RoomError> {
        if pdu.room_id() != self.info.room_id {
            return Err(RoomError::WrongRoom);
        }
        // 1. Idempotent; an outlier is upgraded in its own row.
        let upgrade = match self.known(&pdu)? {
            Known::New => None,
            Known::Outlier(nid) => Some(nid),
            Known::Done(outcome) => return Ok(outcome),
        };
        let missing = self.missing_auth(&pdu);
        if !missing.is_empty() {
            return Err(RoomError::MissingAuth(missing));
        }
        // 3. (prerequisite) the state after each prev event.
        // State maps are shared (`Arc`) and copied only to be changed: a room's state can
        // hold thousands of entries, and most events change none.
        let (state_before, before_group) = match before {
            Before::Prevs(gaps) => self.state_before(&pdu, gaps)?,
            Before::Snapshot(state) => {
                let mut unknown = Vec::new();
                for prev in pdu.prev_events() {
                    if store::event_by_id(self.sql()?, prev.as_str())?.is_none() {
                        unknown.push(prev.to_string());
                    }
                }
                self.add_backward(&unknown)?;
                let group = self.store_group(None, &state)?;
                (state, Some(group))
            }
        };

        // 2. and 4. Authorization.
        let rules = self.info.rules.clone();
        let (mut verdict, lookups): (Result<(), Rejection>, _) = {
            let fetch = self.fetch_fn();
            match check_auth_events_traced(&pdu, &rules, fetch) {
                Ok(lookups) => (Ok(()), lookups),
                Err(r) => (Err(r), Vec::new()),
            }
        };
        // The auth rules look up a few entries of a state: by nid, from the event cache,
        // never materialising the whole state as events.
        // A storage failure during a lookup fails the input (never a rejection).
        let failed = RefCell::new(None);
        let lookup = |state: &StateNids, t: &StateEventType, k: &str| self.state_entry(state, t, k, &failed);
        // The rules against a state that holds the very events the auth events gave them
        // (the usual case) would decide the same: they run again only when it differs.
        let holds_same = |state: &StateNids| -> Result<bool, RoomError> {
            for ((t, k), id) in &lookups {
                let here = match state.get(&(t.to_string(), k.clone())) {
                    Some(nid) => self.pdu_by_nid(*nid)?.map(|p| p.owned_event_id()),
                    None => None,
                };
                if here != *id {
                    return Ok(false);
                }
            }
            Ok(true)
        };
        if verdict.is_ok() && !holds_same(&state_before)? {
            verdict = check_auth(&pdu, &rules, |t, k| lookup(&state_before, t, k));
        }
        let (current_group, current) = self.current_state_shared()?;
        // 5. Soft fail against the current state, when it differs from the state before.
        let mut soft_fail = None;
        if verdict.is_ok()
            && self.history.is_none()
            && current_group.is_some()
            && !same_state(&current, &state_before)
            && !holds_same(&current)?
        {
            if let Err(r) = check_auth(&pdu, &rules, |t, k| lookup(&current, t, k)) {
                soft_fail = Some(r.reason);
            }
        }
        if let Some(e) = failed.into_inner() {
            return Err(e);
        }

        // 6. Persist.
        let event_id = pdu.event_id().as_str().to_owned();
        let json = pdu.to_federation_json();
        let status = match (&verdict, &soft_fail) {
            (Err(_), _) => Status::Rejected,
            (Ok(()), Some(_)) => Status::SoftFailed,
            (Ok(()), None) => Status::Accepted,
        };
        let accepted = status == Status::Accepted;
        let stream_pos = match (accepted, self.history) {
            (false, _) => None,
            (true, Some(pos)) => Some(pos),
            (true, None) => Some(self.head()?.stream_pos + 1),
        };
        let state_key_pair = pdu.state_key().map(|k| (pdu.kind(), k.to_owned()));
        let changes_state = state_key_pair.is_some() && status != Status::Rejected;
        let reason = verdict
            .as_ref()
            .err()
            .map(|r| r.reason.clone())
            .or(soft_fail.clone());
        let nid = match upgrade {
            Some(nid) => nid,
            None => self.take_nid()?,
        };
        // The state after: rejected events do not change state.
        let mut state_after = state_before.clone();
        let after_group = match (&state_key_pair, changes_state) {
            (Some(pair), true) => {
                Arc::make_mut(&mut state_after).insert(pair.clone(), nid);
                Some(self.store_group(before_group.zip(Some(&*state_before)), &state_after)?)
            }
            _ => before_group,
        };
        let row = Row {
            event_id: &event_id,
            stream_pos,
            depth: i64::try_from(pdu.depth()).unwrap_or(i64::MAX),
            event_type: &pdu.kind(),
            state_key: pdu.state_key(),
            sender: pdu.sender().as_str(),
            origin_ts: i64::try_from(pdu.origin_server_ts()).unwrap_or(i64::MAX),
            kind: if self.history.is_some() {
                Kind::Backfill
            } else {
                Kind::New
            },
            status,
            reason: reason.as_deref(),
            state_before: before_group,
            state_after: after_group,
            json: &json,
        };
        match upgrade {
            None => self.pending.borrow_mut().events.push(nid, &row),
            Some(nid) => store::upgrade_outlier(self.sql()?, nid, &row)?,
        }
        let pdu = pdu.with_rejected(status == Status::Rejected);
        self.remember(nid, &pdu);
        if upgrade.is_none() {
            self.filled(&event_id)?;
        }
        if let Some(g) = after_group {
            bounded_insert(self.after, MAX_CACHED_EVENTS, event_id.clone(), g);
        }

        if !accepted {
            return Ok(match verdict {
                Err(r) => Outcome::Rejected(r.reason),
                Ok(()) => Outcome::SoftFailed(soft_fail.unwrap_or_default()),
            });
        }
        let stream_pos = stream_pos.unwrap_or(0);
        if self.history.is_some() {
            // History changes neither the head nor the current state, and is no news.
            if pdu.kind() == "m.room.redaction" {
                self.apply_redaction(&pdu)?;
            }
            return Ok(Outcome::Accepted { stream_pos });
        }

        // Forward extremities and the new current state.
        let prevs: Vec<String> = pdu.prev_events().iter().map(|p| p.to_string()).collect();
        let head = self.head()?;
        let mut extremities = head.extremities.clone();
        extremities.retain(|e| !prevs.contains(e));
        extremities.push(event_id.clone());
        extremities.sort();
        let new_current = if extremities.len() == 1 || current_group.is_none() {
            state_after.clone()
        } else if !pdu.is_state() && current_group == before_group {
            current.clone()
        } else {
            let mut groups = Vec::with_capacity(extremities.len());
            for ext in &extremities {
                if let Some(g) = self.after_group(ext)? {
                    groups.push(g);
                }
            }
            self.resolve_groups(&groups)?
        };
        let new_group = if same_state(&new_current, &state_after) {
            after_group
        } else if same_state(&new_current, &current) {
            current_group
        } else {
            Some(self.store_group(current_group.zip(Some(&*current)), &new_current)?)
        };
        if new_group != current_group {
            if let Some(g) = new_group {
                self.pending.borrow_mut().current_group = Some(g);
            }
        }
        // The extremities as stored, the baseline of their pending write: taken only now,
        // after the lookups above, which may have flushed what was pending (and with it
        // an earlier baseline). Taken before them, a flush in between lost this change.
        self.pending
            .borrow_mut()
            .stored_extremities
            .get_or_insert(head.extremities);
        *self.head.borrow_mut() = Some(Head {
            stream_pos,
            current_group: new_group.or(current_group),
            extremities,
            next_nid: head.next_nid,
            has_backward: head.has_backward,
            has_pending_redactions: head.has_pending_redactions,
        });

        // The log record, in the same section (invariant 4).
        let changes = self.state_changes(&current, &new_current)?;
        let record = LogRecord::Event {
            room_id: self.info.room_id.to_string(),
            stream_pos: stream_pos as u64,
            event_id: event_id.clone(),
            sender: pdu.sender().to_string(),
            event_type: pdu.kind(),
            state_key: pdu.state_key().map(str::to_owned),
            membership: membership_of(&pdu),
            state: changes,
            delivered: false,
        };
        let payload = serde_json::to_string(&record).map_err(|e| RoomError::Corrupt(e.to_string()))?;
        self.pending.borrow_mut().outbox.push(stream_pos, payload);
        if pdu.kind() == "m.room.redaction" {
            self.apply_redaction(&pdu)?;
        }
        Ok(Outcome::Accepted { stream_pos })
    }
}
