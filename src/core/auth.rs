//! Authorization rules (spec: each room version's "Authorization rules"), through ruma's
//! state-res checks, for every supported version.
//!
//! The receipt pipeline (server-server API, "Checks performed on receipt of a PDU"):
//! 4. [`check_auth_events`]: the event's own `auth_events` are the right ones, from this room,
//!    not rejected, and allow the event;
//! 5. [`check_auth`] against the state before the event (reject on failure);
//! 6. [`check_soft_fail`] against the current state (soft-fail on failure).

use std::collections::HashMap;

use ruma::events::{StateEventType, TimelineEventType};
use ruma::room_version_rules::RoomVersionRules;
use ruma::state_res::{check_state_dependent_auth_rules, check_state_independent_auth_rules};
use ruma::{EventId, OwnedEventId, UserId};
use serde_json::value::RawValue as RawJsonValue;

use super::pdu::Pdu;

/// Why an event is not allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Rejection {
    pub reason: String,
}

impl Rejection {
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
        }
    }
}

/// The `(type, state_key)` pairs whose current events go into `auth_events` of an event.
/// From v12 the create event is not among them (the room id names it).
pub fn auth_types_for_event(
    event_type: &TimelineEventType,
    sender: &UserId,
    state_key: Option<&str>,
    content: &RawJsonValue,
    rules: &RoomVersionRules,
) -> Result<Vec<(StateEventType, String)>, Rejection> {
    ruma::state_res::auth_types_for_event(event_type, sender, state_key, content, &rules.authorization)
        .map_err(Rejection::new)
}

/// Checks the event against a room state (the state before it, or the state made of its auth
/// events): the state-dependent authorization rules.
pub fn check_auth(
    pdu: &Pdu,
    rules: &RoomVersionRules,
    state: impl Fn(&StateEventType, &str) -> Option<Pdu>,
) -> Result<(), Rejection> {
    if *pdu.event_type() == TimelineEventType::RoomCreate {
        return check_state_independent_auth_rules(&rules.authorization, pdu, |_: &EventId| None::<Pdu>)
            .map_err(Rejection::new);
    }
    check_state_dependent_auth_rules(&rules.authorization, pdu, state).map_err(Rejection::new)
}

/// Soft-fail check: the same rules against the room's current state. A failure means the event
/// is stored but not used as a forward extremity nor sent to clients.
pub fn check_soft_fail(
    pdu: &Pdu,
    rules: &RoomVersionRules,
    current_state: impl Fn(&StateEventType, &str) -> Option<Pdu>,
) -> Result<(), Rejection> {
    check_auth(pdu, rules, current_state)
}

/// Checks the event's own `auth_events`: each one exists (via `fetch_event`), is from the same
/// room, is not rejected, and has a `(type, state_key)` the event needs, with no duplicates; the
/// create event is present (before v12) or fetchable from the room id (v12); then the
/// authorization rules against the state those events form.
pub fn check_auth_events(
    pdu: &Pdu,
    rules: &RoomVersionRules,
    fetch_event: impl Fn(&EventId) -> Option<Pdu>,
) -> Result<(), Rejection> {
    check_auth_events_traced(pdu, rules, fetch_event).map(|_| ())
}

/// One state entry the authorization rules looked up, and the event they found.
pub type Lookup = ((StateEventType, String), Option<OwnedEventId>);

/// [`check_auth_events`], also answering every state entry the rules looked up. The rules
/// are a function of the event and what those lookups find: a state that holds the same
/// events under those keys gives the same verdict, with no need to run them again.
pub fn check_auth_events_traced(
    pdu: &Pdu,
    rules: &RoomVersionRules,
    fetch_event: impl Fn(&EventId) -> Option<Pdu>,
) -> Result<Vec<Lookup>, Rejection> {
    check_state_independent_auth_rules(&rules.authorization, pdu, &fetch_event).map_err(Rejection::new)?;
    if *pdu.event_type() == TimelineEventType::RoomCreate {
        return Ok(Vec::new());
    }
    let mut state: HashMap<(StateEventType, String), Pdu> = HashMap::new();
    for id in pdu.auth_events() {
        let event = fetch_event(id).ok_or_else(|| Rejection::new(format!("missing auth event {id}")))?;
        if let Some(pair) = event.state_pair() {
            state.insert(pair, event);
        }
    }
    if rules.authorization.room_create_event_id_as_room_id {
        let create_id = create_event_id_of_room(pdu)
            .ok_or_else(|| Rejection::new("room id does not name a create event"))?;
        let create = fetch_event(&create_id)
            .ok_or_else(|| Rejection::new(format!("missing create event {create_id}")))?;
        state.insert((StateEventType::RoomCreate, String::new()), create);
    }
    let lookups = std::cell::RefCell::new(Vec::new());
    check_auth(pdu, rules, |kind, key| {
        let found = state.get(&(kind.clone(), key.to_owned())).cloned();
        lookups.borrow_mut().push((
            (kind.clone(), key.to_owned()),
            found.as_ref().map(Pdu::owned_event_id),
        ));
        found
    })?;
    Ok(lookups.into_inner())
}

/// The create event id named by a v12 room id (`!hash` → `$hash`).
pub fn create_event_id_of_room(pdu: &Pdu) -> Option<OwnedEventId> {
    let room = pdu.room_id();
    if room.server_name().is_some() {
        return None;
    }
    OwnedEventId::try_from(format!("${}", room.strip_sigil())).ok()
}

/// Whether the auth events of `pdu` are exactly the ones the current state calls for (used when
/// building our own events and to flag events whose auth differs from our state).
pub fn expected_auth_events(
    pdu: &Pdu,
    rules: &RoomVersionRules,
    state: impl Fn(&StateEventType, &str) -> Option<Pdu>,
) -> Result<Vec<OwnedEventId>, Rejection> {
    let types = auth_types_for_event(
        pdu.event_type(),
        pdu.sender(),
        pdu.state_key(),
        pdu.content_raw(),
        rules,
    )?;
    Ok(types
        .iter()
        .filter_map(|(kind, key)| state(kind, key))
        .map(|e| e.owned_event_id())
        .collect())
}

#[cfg(test)]
#[path = "auth/tests.rs"]
mod tests;
