//! State resolution v2 (room v2–v11) and v2.1 (v12), wrapping ruma's `resolve`.
//!
//! v2.1 also needs the "conflicted state subgraph": the events on auth-event paths between
//! conflicted state events. It is computed here from the same event fetcher.

use std::collections::{HashMap, HashSet};

use ruma::room_version_rules::RoomVersionRules;
use ruma::state_res::utils::event_id_set::EventIdSet;
use ruma::state_res::StateMap;
use ruma::{EventId, OwnedEventId};

use super::pdu::Pdu;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StateResError {
    #[error("state resolution v1 (room versions 1) is not supported")]
    UnsupportedVersion,
    #[error("state resolution failed: {0}")]
    Failed(String),
}

/// Resolves `state_sets` (one per fork) into one state.
///
/// `auth_chains` holds, per state set, the full auth chain of its events; `fetch_event` returns
/// any event of the room (rejected ones marked so).
pub fn resolve(
    rules: &RoomVersionRules,
    state_sets: &[StateMap<OwnedEventId>],
    auth_chains: &[HashSet<OwnedEventId>],
    fetch_event: impl Fn(&EventId) -> Option<Pdu>,
) -> Result<StateMap<OwnedEventId>, StateResError> {
    let v2 = rules
        .state_res
        .v2_rules()
        .ok_or(StateResError::UnsupportedVersion)?;
    let chains: Vec<EventIdSet<OwnedEventId>> =
        auth_chains.iter().map(|c| c.iter().cloned().collect()).collect();
    ruma::state_res::resolve(
        &rules.authorization,
        v2,
        state_sets.iter(),
        chains,
        &fetch_event,
        |conflicted| Some(conflicted_subgraph(conflicted.values().flatten(), &fetch_event)),
    )
    .map_err(|e| StateResError::Failed(e.to_string()))
}

/// The full auth chain (all ancestors through `auth_events`) of `events`, not including them.
/// Missing events end their branch.
pub fn auth_chain<'a>(
    events: impl IntoIterator<Item = &'a OwnedEventId>,
    fetch_event: impl Fn(&EventId) -> Option<Pdu>,
) -> HashSet<OwnedEventId> {
    let mut chain = HashSet::new();
    let mut todo: Vec<OwnedEventId> = Vec::new();
    for id in events {
        if let Some(e) = fetch_event(id) {
            todo.extend(e.auth_events().iter().cloned());
        }
    }
    while let Some(id) = todo.pop() {
        if !chain.insert(id.clone()) {
            continue;
        }
        if let Some(e) = fetch_event(&id) {
            todo.extend(e.auth_events().iter().filter(|a| !chain.contains(*a)).cloned());
        }
    }
    chain
}

/// The auth chain of each state set, for [`resolve`].
pub fn auth_chains_for(
    state_sets: &[StateMap<OwnedEventId>],
    fetch_event: impl Fn(&EventId) -> Option<Pdu>,
) -> Vec<HashSet<OwnedEventId>> {
    state_sets
        .iter()
        .map(|s| auth_chain(s.values(), &fetch_event))
        .collect()
}

/// Per state set, the part of its auth chain that is not in the auth chain of the
/// unconflicted state (the events every set holds under the same key). Resolution only
/// uses the chains for the auth difference (their union less their intersection), and
/// these give the same difference as the full chains: the unconflicted state's chain is in
/// every set's chain, so removing it from all of them changes neither. It is walked once
/// instead of once per set, and usually holds nearly the whole room's state.
pub fn auth_chain_differences(
    state_sets: &[StateMap<OwnedEventId>],
    fetch_event: impl Fn(&EventId) -> Option<Pdu>,
) -> Vec<HashSet<OwnedEventId>> {
    let Some(first) = state_sets.first() else {
        return Vec::new();
    };
    let unconflicted = |key: &(ruma::events::StateEventType, String), id: &OwnedEventId| {
        state_sets.iter().all(|s| s.get(key) == Some(id))
    };
    let common = auth_chain(
        first.iter().filter(|(k, v)| unconflicted(k, v)).map(|(_, v)| v),
        &fetch_event,
    );
    state_sets
        .iter()
        .map(|set| {
            let own = set.iter().filter(|(k, v)| !unconflicted(k, v)).map(|(_, v)| v);
            let mut chain = auth_chain(own, &fetch_event);
            chain.retain(|e| !common.contains(e));
            chain
        })
        .collect()
}

/// Events that are both auth-descendants of one conflicted event and auth-ancestors of another
/// (the conflicted events themselves included), per the v2.1 algorithm.
fn conflicted_subgraph<'a>(
    conflicted: impl Iterator<Item = &'a OwnedEventId>,
    fetch_event: &impl Fn(&EventId) -> Option<Pdu>,
) -> EventIdSet<OwnedEventId> {
    let conflicted: HashSet<OwnedEventId> = conflicted.cloned().collect();
    // Walk the auth DAG above the conflicted events, remembering each event's parents.
    let mut parents: HashMap<OwnedEventId, Vec<OwnedEventId>> = HashMap::new();
    let mut todo: Vec<OwnedEventId> = conflicted.iter().cloned().collect();
    while let Some(id) = todo.pop() {
        if parents.contains_key(&id) {
            continue;
        }
        let auth = fetch_event(&id)
            .map(|e| e.auth_events().to_vec())
            .unwrap_or_default();
        todo.extend(auth.iter().filter(|a| !parents.contains_key(*a)).cloned());
        parents.insert(id, auth);
    }
    // An event is in the subgraph if it is conflicted, or it is an ancestor of a conflicted
    // event (it is in `parents`) and one of its own ancestors is conflicted.
    let mut memo: HashMap<OwnedEventId, bool> = HashMap::new();
    let mut out = EventIdSet::new();
    for id in parents.keys() {
        if descends_from_conflicted(id, &parents, &conflicted, &mut memo) {
            out.insert(id.clone());
        }
    }
    out
}

/// Whether `id` is conflicted or has a conflicted auth ancestor (iterative, memoised).
fn descends_from_conflicted(
    id: &OwnedEventId,
    parents: &HashMap<OwnedEventId, Vec<OwnedEventId>>,
    conflicted: &HashSet<OwnedEventId>,
    memo: &mut HashMap<OwnedEventId, bool>,
) -> bool {
    let mut stack: Vec<(OwnedEventId, bool)> = vec![(id.clone(), false)];
    let mut visiting: HashSet<OwnedEventId> = HashSet::new();
    while let Some((node, expanded)) = stack.pop() {
        if memo.contains_key(&node) {
            continue;
        }
        let ps = parents.get(&node).map(Vec::as_slice).unwrap_or_default();
        if expanded {
            let hit = ps
                .iter()
                .any(|p| conflicted.contains(p) || memo.get(p).copied().unwrap_or(false));
            memo.insert(node, hit);
            continue;
        }
        // Guards against (impossible for hashed ids, but possible in hostile v1/v2 data) cycles.
        if !visiting.insert(node.clone()) {
            continue;
        }
        stack.push((node.clone(), true));
        for p in ps {
            if !memo.contains_key(p) && !visiting.contains(p) {
                stack.push((p.clone(), false));
            }
        }
    }
    conflicted.contains(id) || memo.get(id).copied().unwrap_or(false)
}

#[cfg(test)]
#[path = "state_res/tests.rs"]
mod tests;
