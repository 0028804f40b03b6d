//! Input of a new event, the server-server spec's "checks performed on receipt of a
//! PDU" after format and signatures: idempotency, the state before it, authorization
//! against its auth events, that state and the current state, and the writes.

use std::cell::RefCell;
use std::sync::Arc;

use ruma::events::StateEventType;

use crate::core::auth::{check_auth, check_auth_events_traced, Rejection};
use crate::core::pdu::Pdu;
use crate::log::LogRecord;

use super::super::store::{self, Kind, NewEvent as Row, StateNids, Status};
use super::cache::{bounded_insert, Head, MAX_CACHED_EVENTS};
use super::{membership_of, same_state, Engine, Outcome, RoomError};

impl Engine<'_> {
    /// Inputs a new event that extends the DAG. Format, hashes and signatures must have
    /// been checked by the caller.
    pub fn input_new(&mut self, pdu: Pdu) -> Result<Outcome, RoomError> {
        let result = self.input_new_held(pdu);
        self.end_input(result)
    }

    /// `input_new` with its writes left pending.
    pub(super) fn input_new_held(&mut self, pdu: Pdu) -> Result<Outcome, RoomError> {
        if pdu.room_id() != self.info.room_id {
            return Err(RoomError::WrongRoom);
        }
        // 1. Idempotent.
        let known_new = self.known_new.remove(pdu.event_id().as_str());
        if known_new {
            // Checked by the batch.
        } else if let Some(row) = store::event_by_id(self.sql()?, pdu.event_id().as_str())? {
            return Ok(match (row.status, row.stream_pos) {
                (0, Some(pos)) => Outcome::Accepted { stream_pos: pos },
                (2, _) => Outcome::SoftFailed("already soft-failed".into()),
                (1, _) => Outcome::Rejected("already rejected".into()),
                _ => Outcome::Stored,
            });
        }
        // 3. (prerequisite) the state after each prev event.
        // State maps are shared (`Arc`) and copied only to be changed: a room's state can
        // hold thousands of entries, and most events change none.
        let mut missing = Vec::new();
        let mut prev_groups = Vec::new();
        for prev in pdu.prev_events() {
            match self.after_group(prev.as_str())? {
                Some(g) => prev_groups.push(g),
                None => missing.push(prev.clone()),
            }
        }
        if !missing.is_empty() {
            return Err(RoomError::MissingPrev(missing));
        }
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
        let stream_pos = if accepted {
            Some(self.head()?.stream_pos + 1)
        } else {
            None
        };
        let state_key_pair = pdu.state_key().map(|k| (pdu.kind(), k.to_owned()));
        let changes_state = state_key_pair.is_some() && status != Status::Rejected;
        let reason = verdict
            .as_ref()
            .err()
            .map(|r| r.reason.clone())
            .or(soft_fail.clone());
        let nid = self.take_nid()?;
        // The state after: rejected events do not change state.
        let mut state_after = state_before.clone();
        let after_group = match (&state_key_pair, changes_state) {
            (Some(pair), true) => {
                Arc::make_mut(&mut state_after).insert(pair.clone(), nid);
                Some(self.store_group(before_group.zip(Some(&*state_before)), &state_after)?)
            }
            _ => before_group,
        };
        self.pending.borrow_mut().events.push(
            nid,
            &Row {
                event_id: &event_id,
                stream_pos,
                depth: i64::try_from(pdu.depth()).unwrap_or(i64::MAX),
                event_type: &pdu.kind(),
                state_key: pdu.state_key(),
                sender: pdu.sender().as_str(),
                origin_ts: i64::try_from(pdu.origin_server_ts()).unwrap_or(i64::MAX),
                kind: Kind::New,
                status,
                reason: reason.as_deref(),
                state_before: before_group,
                state_after: after_group,
                json: &json,
            },
        );
        let pdu = pdu.with_rejected(status == Status::Rejected);
        self.remember(nid, &pdu);
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
