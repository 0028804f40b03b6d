//! What the engine keeps between requests (`Cache`, bounded), the room's head, and the
//! writes an input batch holds back (`Pending`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use super::super::store::{self, StateNids};
use super::RoomInfo;
use crate::core::pdu::Pdu;

/// What the engine may remember between requests. The Room Durable Object keeps one
/// for its lifetime (it is the only writer of its database, so nothing goes stale);
/// tests and one-off uses make a fresh one.
pub struct Cache {
    /// Events by id, for the auth and state-resolution fetches.
    pub(super) by_id: RefCell<HashMap<String, Pdu>>,
    /// Events by nid, for state maps (redactions replace their entry).
    pub(super) by_nid: RefCell<HashMap<i64, Pdu>>,
    /// Loaded state groups (a group never changes once written).
    pub(super) groups: RefCell<StateCache<i64>>,
    /// Event id → the state group after it.
    pub(super) after: RefCell<HashMap<String, i64>>,
    /// The room's head: stream position, current state group, forward extremities.
    pub(super) head: RefCell<Option<Head>>,
    /// The room's identity (never changes once the room exists).
    pub(super) info: RefCell<Option<RoomInfo>>,
    /// Push rule verdicts per user, so /sync evaluates each event once (`sync_slice`).
    pub(super) unread: RefCell<super::super::sync_slice::UnreadMemo>,
    /// Member events each device was sent under lazy loading (`sync_slice`).
    pub(super) lazy_members: RefCell<super::super::sync_slice::lazy_members::LazyMembers>,
    /// Resolved states by the sorted state groups they resolve: while forks stay open,
    /// every event resolves the same groups again.
    pub(super) resolved: RefCell<StateCache<Vec<i64>>>,
}

#[derive(Debug, Clone, Default)]
pub(super) struct Head {
    pub(super) stream_pos: i64,
    pub(super) current_group: Option<i64>,
    pub(super) extremities: Vec<String>,
    /// The nid the next stored event gets.
    pub(super) next_nid: i64,
    /// Whether the room has backward extremities (holes in its history).
    pub(super) has_backward: bool,
    /// Whether redactions wait for their targets.
    pub(super) has_pending_redactions: bool,
}

/// Writes held back while an input batch runs and written together when it ends (or
/// before anything reads the tables they touch): one statement per table instead of
/// several per event. Events, their state groups and their outbox records still land in
/// the same synchronous section (invariant 4).
#[derive(Default)]
pub(super) struct Pending {
    pub(super) events: store::EventRows,
    pub(super) outbox: store::OutboxRows,
    /// The forward extremities as stored, when they have changed since.
    pub(super) stored_extremities: Option<Vec<String>>,
    /// The current state group to store, when it has changed.
    pub(super) current_group: Option<i64>,
}

impl Pending {
    pub(super) fn is_idle(&self) -> bool {
        self.events.is_empty()
            && self.outbox.is_empty()
            && self.stored_extremities.is_none()
            && self.current_group.is_none()
    }
}

/// Events kept by id and by nid (the same events, shared). 5,000 keeps a join from a
/// 100,000-entry snapshot in pieces under 100 MB of peak memory (20,000 took it to
/// 173 MB); rooms with more members than this re-read member events for summaries.
pub(super) const MAX_CACHED_EVENTS: usize = 5_000;

/// Inserts into a bounded cache, which starts over when full.
pub(super) fn bounded_insert<K: std::hash::Hash + Eq, V>(
    cache: &RefCell<HashMap<K, V>>,
    max: usize,
    key: K,
    value: V,
) {
    let mut cache = cache.borrow_mut();
    if cache.len() >= max {
        cache.clear();
    }
    cache.insert(key, value);
}

impl Default for Cache {
    fn default() -> Self {
        Self {
            by_id: RefCell::default(),
            by_nid: RefCell::default(),
            groups: RefCell::new(StateCache::new(GROUPS_BUDGET)),
            after: RefCell::default(),
            head: RefCell::default(),
            info: RefCell::default(),
            unread: RefCell::default(),
            lazy_members: RefCell::default(),
            resolved: RefCell::new(StateCache::new(RESOLVED_BUDGET)),
        }
    }
}

impl Cache {
    /// Forgets everything (after a failed request, whose writes may be partial).
    pub fn clear(&self) {
        self.by_id.borrow_mut().clear();
        self.by_nid.borrow_mut().clear();
        self.groups.borrow_mut().clear();
        self.after.borrow_mut().clear();
        *self.head.borrow_mut() = None;
        *self.info.borrow_mut() = None;
        self.unread.borrow_mut().clear();
        self.lazy_members.borrow_mut().clear();
        self.resolved.borrow_mut().clear();
    }
}

/// Bytes of states the engine keeps (state groups, and resolutions apart): a room with
/// 100,000 state entries has states of about 12 MB each, so two of each fit and the
/// isolate's 128 MB stays far away.
pub(super) const GROUPS_BUDGET: usize = 32 << 20;
pub(super) const RESOLVED_BUDGET: usize = 16 << 20;

/// Roughly the memory a state takes: per entry its two strings, their headers, the nid
/// and the tree node's share.
pub(super) fn state_bytes(state: &StateNids) -> usize {
    48 + state
        .keys()
        .map(|(t, k)| t.len() + k.len() + 2 * 24 + 8 + 32)
        .sum::<usize>()
}

/// States by key, bounded by their estimated bytes (`state_bytes`): when one more would
/// pass the budget the cache starts over; a state larger than the budget is not kept.
pub(super) struct StateCache<K> {
    map: HashMap<K, (Arc<StateNids>, usize)>,
    bytes: usize,
    budget: usize,
}

impl<K: std::hash::Hash + Eq> StateCache<K> {
    pub(super) fn new(budget: usize) -> Self {
        Self {
            map: HashMap::new(),
            bytes: 0,
            budget,
        }
    }

    pub(super) fn get(&self, key: &K) -> Option<Arc<StateNids>> {
        self.map.get(key).map(|(s, _)| s.clone())
    }

    pub(super) fn insert(&mut self, key: K, state: Arc<StateNids>) {
        let size = state_bytes(&state);
        if size > self.budget {
            return;
        }
        if self.bytes + size > self.budget {
            self.clear();
        }
        if let Some((_, old)) = self.map.insert(key, (state, size)) {
            self.bytes -= old;
        }
        self.bytes += size;
    }

    pub(super) fn clear(&mut self) {
        self.map.clear();
        self.bytes = 0;
    }

    /// The estimated bytes kept.
    #[cfg(test)]
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(entries: usize) -> Arc<StateNids> {
        Arc::new(
            (0..entries)
                .map(|i| {
                    (
                        ("m.room.member".to_owned(), format!("@user{i}:example.org")),
                        i as i64,
                    )
                })
                .collect(),
        )
    }

    #[test]
    fn the_state_cache_stays_within_its_budget() {
        let big = state(100_000);
        let size = state_bytes(&big);
        assert!(
            (10 << 20..16 << 20).contains(&size),
            "a 100,000-entry state is about 12 MB: {size}"
        );
        let mut cache = StateCache::new(GROUPS_BUDGET);
        for g in 0..10 {
            cache.insert(g, big.clone());
            assert!(cache.bytes() <= GROUPS_BUDGET);
        }
        assert!(cache.get(&9).is_some(), "the latest is kept");
        let mut small = StateCache::new(size / 2);
        small.insert(1, big);
        assert!(small.get(&1).is_none(), "larger than the budget: not kept");
        small.insert(2, state(10));
        small.insert(2, state(10));
        assert_eq!(
            small.bytes(),
            state_bytes(&state(10)),
            "a replaced entry is counted once"
        );
    }
}
