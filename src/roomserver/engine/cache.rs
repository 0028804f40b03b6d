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
#[derive(Default)]
pub struct Cache {
    /// Events by id, for the auth and state-resolution fetches.
    pub(super) by_id: RefCell<HashMap<String, Pdu>>,
    /// Events by nid, for state maps (redactions replace their entry).
    pub(super) by_nid: RefCell<HashMap<i64, Pdu>>,
    /// Loaded state groups (a group never changes once written).
    pub(super) groups: RefCell<HashMap<i64, Arc<StateNids>>>,
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
    pub(super) resolved: RefCell<HashMap<Vec<i64>, Arc<StateNids>>>,
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

/// Cache bounds, to stay far below the isolate's 128 MB.
pub(super) const MAX_CACHED_EVENTS: usize = 20_000;
pub(super) const MAX_CACHED_GROUPS: usize = 512;

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
