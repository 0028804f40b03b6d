//! The roomserver engine: the input pipeline that authorizes events into the room's
//! DAG, and local event creation. Synchronous over `Sql`, so the Durable Object runs a
//! whole input in one section with no `.await` (ARCHITECTURE invariant 1), and native
//! tests run the same code on rusqlite.
//!
//! Input of a *new* event (server-server spec, "Checks performed on receipt of a PDU";
//! format and signatures are checked before, by `core::verify`):
//! 1. already known → answer the stored outcome (inputs are idempotent);
//! 2. its `auth_events` are the right ones and allow it (else rejected);
//! 3. the state before it: the state after its single prev event, or the resolution of
//!    the states after each of its prev events;
//! 4. the auth rules against that state (else rejected);
//! 5. the auth rules against the current state (else soft-failed);
//! 6. persist: event, state after, forward extremities, current state (resolved over the
//!    extremities when there are several), stream position and the outbox record.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use ruma::events::StateEventType;
use ruma::room_version_rules::RoomVersionRules;
use ruma::state_res::StateMap;
use ruma::{EventId, OwnedEventId, OwnedRoomId, RoomId, RoomVersionId};

use crate::core::auth::{check_auth, check_auth_events_traced, Rejection};
use crate::core::builder::BuildError;
use crate::core::pdu::Pdu;
use crate::core::room_version;
use crate::core::state_res::{auth_chain_differences, resolve};
use crate::log::{LogRecord, StateChange};
use crate::storage::sql::{Sql, SqlError};

use super::store::{self, Kind, NewEvent as Row, StateNids, Status};

#[derive(Debug, thiserror::Error)]
pub enum RoomError {
    #[error(transparent)]
    Sql(#[from] SqlError),
    #[error("room does not exist")]
    NoRoom,
    #[error("room already exists")]
    Exists,
    #[error("unsupported room version")]
    UnsupportedVersion,
    #[error("event belongs to another room")]
    WrongRoom,
    #[error("missing prev events: {0:?}")]
    MissingPrev(Vec<OwnedEventId>),
    #[error("event not found")]
    UnknownEvent,
    #[error("not allowed: {0}")]
    Forbidden(String),
    #[error("cannot build event: {0}")]
    Build(#[from] BuildError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

/// What happened to an input event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Accepted {
        stream_pos: i64,
    },
    SoftFailed(String),
    Rejected(String),
    /// An outlier or backfilled event, stored without a stream position.
    Stored,
}

/// The room's identity, read from `meta`.
#[derive(Debug, Clone)]
pub struct RoomInfo {
    pub room_id: OwnedRoomId,
    pub version: RoomVersionId,
    pub rules: RoomVersionRules,
}

/// A state as events, keyed by `(type, state_key)`.
pub type StatePdus = HashMap<(StateEventType, String), Pdu>;

/// What the engine may remember between requests. The Room Durable Object keeps one
/// for its lifetime (it is the only writer of its database, so nothing goes stale);
/// tests and one-off uses make a fresh one.
#[derive(Default)]
pub struct Cache {
    /// Events by id, for the auth and state-resolution fetches.
    by_id: RefCell<HashMap<String, Pdu>>,
    /// Events by nid, for state maps (redactions replace their entry).
    by_nid: RefCell<HashMap<i64, Pdu>>,
    /// Loaded state groups (a group never changes once written).
    groups: RefCell<HashMap<i64, Arc<StateNids>>>,
    /// Event id → the state group after it.
    after: RefCell<HashMap<String, i64>>,
    /// The room's head: stream position, current state group, forward extremities.
    head: RefCell<Option<Head>>,
    /// The room's identity (never changes once the room exists).
    info: RefCell<Option<RoomInfo>>,
    /// Push rule verdicts per user, so /sync evaluates each event once (`sync_slice`).
    unread: RefCell<super::sync_slice::UnreadMemo>,
    /// Member events each device was sent under lazy loading (`sync_slice`).
    lazy_members: RefCell<super::sync_slice::lazy_members::LazyMembers>,
    /// Resolved states by the sorted state groups they resolve: while forks stay open,
    /// every event resolves the same groups again.
    resolved: RefCell<HashMap<Vec<i64>, Arc<StateNids>>>,
}

#[derive(Debug, Clone, Default)]
struct Head {
    stream_pos: i64,
    current_group: Option<i64>,
    extremities: Vec<String>,
    /// The nid the next stored event gets.
    next_nid: i64,
}

/// Writes held back while an input batch runs and written together when it ends (or
/// before anything reads the tables they touch): one statement per table instead of
/// several per event. Events, their state groups and their outbox records still land in
/// the same synchronous section (invariant 4).
#[derive(Default)]
struct Pending {
    events: store::EventRows,
    outbox: store::OutboxRows,
    /// The forward extremities as stored, when they have changed since.
    stored_extremities: Option<Vec<String>>,
    /// The current state group to store, when it has changed.
    current_group: Option<i64>,
}

impl Pending {
    fn is_idle(&self) -> bool {
        self.events.is_empty()
            && self.outbox.is_empty()
            && self.stored_extremities.is_none()
            && self.current_group.is_none()
    }
}

/// Cache bounds, to stay far below the isolate's 128 MB.
const MAX_CACHED_EVENTS: usize = 20_000;
const MAX_CACHED_GROUPS: usize = 512;

/// Inserts into a bounded cache, which starts over when full.
fn bounded_insert<K: std::hash::Hash + Eq, V>(cache: &RefCell<HashMap<K, V>>, max: usize, key: K, value: V) {
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

mod perform;

pub struct Engine<'a> {
    pub db: &'a dyn Sql,
    pub info: RoomInfo,
    /// Events read or written by this engine, by nid.
    pdus: &'a RefCell<HashMap<i64, Pdu>>,
    by_id: &'a RefCell<HashMap<String, Pdu>>,
    groups: &'a RefCell<HashMap<i64, Arc<StateNids>>>,
    after: &'a RefCell<HashMap<String, i64>>,
    head: &'a RefCell<Option<Head>>,
    /// Event ids a batch input found not stored (one query for the batch instead of one
    /// per event); each is used once.
    known_new: HashSet<String>,
    pub(super) unread: &'a RefCell<super::sync_slice::UnreadMemo>,
    pub(super) lazy_members: &'a RefCell<super::sync_slice::lazy_members::LazyMembers>,
    resolved: &'a RefCell<HashMap<Vec<i64>, Arc<StateNids>>>,
    pending: RefCell<Pending>,
    /// Whether writes wait for `flush` (an input batch) instead of each input's end.
    batching: bool,
}

/// The room's info, if it exists in this database.
pub fn room_info(db: &dyn Sql) -> Result<Option<RoomInfo>, RoomError> {
    let (Some(room_id), Some(version)) = (store::meta(db, "room_id")?, store::meta(db, "room_version")?)
    else {
        return Ok(None);
    };
    let (version, rules) = room_version::parse(&version).ok_or(RoomError::UnsupportedVersion)?;
    let room_id = RoomId::parse(&room_id).map_err(|e| RoomError::Corrupt(e.to_string()))?;
    Ok(Some(RoomInfo {
        room_id,
        version,
        rules,
    }))
}

impl<'a> Engine<'a> {
    /// Looks up which of `event_ids` are not stored yet, in one query, so that inputting
    /// them skips the per-event idempotency lookup.
    pub fn prefetch_new(&mut self, event_ids: &[String]) -> Result<(), RoomError> {
        let stored = store::stored_among(self.sql()?, event_ids)?;
        self.known_new = event_ids
            .iter()
            .filter(|id| !stored.contains(*id))
            .cloned()
            .collect();
        Ok(())
    }

    /// Opens the room stored in `db`.
    pub fn open(db: &'a dyn Sql, cache: &'a Cache) -> Result<Self, RoomError> {
        let cached = cache.info.borrow().clone();
        let info = match cached {
            Some(info) => info,
            None => {
                let info = room_info(db)?.ok_or(RoomError::NoRoom)?;
                *cache.info.borrow_mut() = Some(info.clone());
                info
            }
        };
        Ok(Self {
            db,
            info,
            pdus: &cache.by_nid,
            by_id: &cache.by_id,
            groups: &cache.groups,
            after: &cache.after,
            head: &cache.head,
            known_new: HashSet::new(),
            unread: &cache.unread,
            lazy_members: &cache.lazy_members,
            resolved: &cache.resolved,
            pending: RefCell::default(),
            batching: false,
        })
    }

    /// Creates the room from its signed create event.
    pub fn create(db: &'a dyn Sql, cache: &'a Cache, create: Pdu) -> Result<(Self, Outcome), RoomError> {
        if room_info(db)?.is_some() {
            return Err(RoomError::Exists);
        }
        let version = create
            .content_field("room_version")
            .and_then(|v| v.as_str())
            .unwrap_or("1")
            .to_owned();
        let (version, rules) = room_version::parse(&version).ok_or(RoomError::UnsupportedVersion)?;
        store::set_meta(db, "room_id", create.room_id().as_str())?;
        store::set_meta(db, "room_version", version.as_str())?;
        let mut engine = Self {
            db,
            info: RoomInfo {
                room_id: create.room_id().to_owned(),
                version,
                rules,
            },
            pdus: &cache.by_nid,
            by_id: &cache.by_id,
            groups: &cache.groups,
            after: &cache.after,
            head: &cache.head,
            known_new: HashSet::new(),
            unread: &cache.unread,
            lazy_members: &cache.lazy_members,
            resolved: &cache.resolved,
            pending: RefCell::default(),
            batching: false,
        };
        let outcome = engine.input_new(create)?;
        Ok((engine, outcome))
    }

    pub fn rules(&self) -> &RoomVersionRules {
        &self.info.rules
    }

    // ---- writes held back ----

    /// From now on, inputs leave their writes pending until `flush` (the caller must
    /// flush, also when it gives up on an error).
    pub fn batch_writes(&mut self) {
        self.batching = true;
    }

    /// Writes everything pending.
    pub fn flush(&self) -> Result<(), RoomError> {
        let mut pending = self.pending.borrow_mut();
        pending.events.write(self.db)?;
        pending.outbox.write(self.db)?;
        if let Some(stored) = pending.stored_extremities.take() {
            let current = self.head.borrow().as_ref().map(|h| h.extremities.clone());
            if let Some(current) = current {
                store::write_extremities(self.db, &stored, &current)?;
            }
        }
        if let Some(g) = pending.current_group.take() {
            store::set_meta(self.db, "current_group", &g.to_string())?;
        }
        Ok(())
    }

    /// The database, after writing what is pending: for reads of the tables that
    /// pending writes touch (events, extremities, outbox, meta).
    fn sql(&self) -> Result<&'a dyn Sql, RoomError> {
        let idle = self.pending.borrow().is_idle();
        if !idle {
            self.flush()?;
        }
        Ok(self.db)
    }

    /// Gives the next event nid.
    fn take_nid(&self) -> Result<i64, RoomError> {
        self.head()?;
        let mut head = self.head.borrow_mut();
        let head = head
            .as_mut()
            .ok_or_else(|| RoomError::Corrupt("no head".into()))?;
        let nid = head.next_nid;
        head.next_nid += 1;
        Ok(nid)
    }

    /// Stores an event row (pending until the next flush), returning its nid.
    fn stage_event(&self, row: &Row<'_>) -> Result<i64, RoomError> {
        let nid = self.take_nid()?;
        self.pending.borrow_mut().events.push(nid, row);
        Ok(nid)
    }

    /// Ends an input outside a batch: writes what it left pending. The input's own error,
    /// if any, comes first.
    fn end_input<T>(&self, result: Result<T, RoomError>) -> Result<T, RoomError> {
        if self.batching {
            return result;
        }
        let flushed = self.flush();
        let value = result?;
        flushed?;
        Ok(value)
    }

    // ---- reading ----

    fn pdu_from_row(&self, row: &store::EventRow) -> Result<Pdu, RoomError> {
        let object =
            crate::core::canonical::parse_object(&row.json).map_err(|e| RoomError::Corrupt(e.to_string()))?;
        let id =
            OwnedEventId::try_from(row.event_id.as_str()).map_err(|e| RoomError::Corrupt(e.to_string()))?;
        Ok(Pdu::from_checked(object, id, &self.info.rules)
            .map_err(|e| RoomError::Corrupt(e.to_string()))?
            .with_rejected(row.status == Status::Rejected as i64))
    }

    /// An event by nid (cached for the life of this engine).
    pub fn pdu_by_nid(&self, nid: i64) -> Result<Option<Pdu>, RoomError> {
        if let Some(p) = self.pdus.borrow().get(&nid) {
            return Ok(Some(p.clone()));
        }
        let Some(row) = store::event_by_nid(self.sql()?, nid)? else {
            return Ok(None);
        };
        let pdu = self.pdu_from_row(&row)?;
        self.keep(nid, pdu.clone());
        Ok(Some(pdu))
    }

    /// An event by id.
    pub fn pdu(&mut self, event_id: &str) -> Result<Option<(store::EventRow, Pdu)>, RoomError> {
        let Some(row) = store::event_by_id(self.sql()?, event_id)? else {
            return Ok(None);
        };
        let pdu = self.pdu_of_row(&row)?;
        Ok(Some((row, pdu)))
    }

    /// The event of a row already read (from the cache, else parsed from the row).
    pub fn pdu_of_row(&mut self, row: &store::EventRow) -> Result<Pdu, RoomError> {
        let cached = self.pdus.borrow().get(&row.nid).cloned();
        Ok(match cached {
            Some(p) => p,
            None => {
                let p = self.pdu_from_row(row)?;
                self.keep(row.nid, p.clone());
                p
            }
        })
    }

    /// Loads the events of a state map.
    fn state_pdus(&mut self, state: &StateNids) -> Result<StatePdus, RoomError> {
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
    fn current_state_shared(&self) -> Result<(Option<i64>, Arc<StateNids>), RoomError> {
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

    /// The latest stream position (from the cached head).
    pub fn stream_head(&self) -> Result<i64, RoomError> {
        Ok(self.head()?.stream_pos)
    }

    /// The room's head, from the cache or storage.
    fn head(&self) -> Result<Head, RoomError> {
        if let Some(h) = self.head.borrow().as_ref() {
            return Ok(h.clone());
        }
        let db = self.sql()?;
        let head = Head {
            stream_pos: store::latest_stream_pos(db)?,
            current_group: store::meta_int(db, "current_group")?,
            extremities: store::extremities(db)?,
            next_nid: store::next_nid(db)?,
        };
        *self.head.borrow_mut() = Some(head.clone());
        Ok(head)
    }

    /// The state group after an event, if the event has state (not an outlier).
    fn after_group(&self, event_id: &str) -> Result<Option<i64>, RoomError> {
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
    fn load_group(&self, group: i64) -> Result<Arc<StateNids>, RoomError> {
        if let Some(s) = self.groups.borrow().get(&group) {
            return Ok(s.clone());
        }
        let state = Arc::new(store::load_state(self.db, group)?);
        bounded_insert(self.groups, MAX_CACHED_GROUPS, group, state.clone());
        Ok(state)
    }

    /// One entry of a state as an event, for the auth rules (by nid, from the event
    /// cache). A storage failure is kept in `failed`, for the caller to fail with: the
    /// rules only see a missing entry, which must never turn into a rejection.
    fn state_entry(
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
    fn store_group(
        &self,
        parent: Option<(i64, &StateNids)>,
        state: &Arc<StateNids>,
    ) -> Result<i64, RoomError> {
        let group = store::store_state(self.db, parent, state)?;
        bounded_insert(self.groups, MAX_CACHED_GROUPS, group, state.clone());
        Ok(group)
    }

    /// Looks events up by id for the auth checks and state resolution (cached).
    fn fetch_fn(&self) -> impl Fn(&EventId) -> Option<Pdu> + '_ {
        move |id: &EventId| {
            if let Some(p) = self.by_id.borrow().get(id.as_str()) {
                return Some(p.clone());
            }
            let row = store::event_by_id(self.sql().ok()?, id.as_str()).ok()??;
            let object = crate::core::canonical::parse_object(&row.json).ok()?;
            let pdu = Pdu::from_checked(object, id.to_owned(), &self.info.rules)
                .ok()
                .map(|p| p.with_rejected(row.status == Status::Rejected as i64))?;
            bounded_insert(self.by_id, MAX_CACHED_EVENTS, id.as_str().to_owned(), pdu.clone());
            Some(pdu)
        }
    }

    fn remember(&mut self, nid: i64, pdu: &Pdu) {
        bounded_insert(
            self.by_id,
            MAX_CACHED_EVENTS,
            pdu.event_id().as_str().to_owned(),
            pdu.clone(),
        );
        self.keep(nid, pdu.clone());
    }

    /// Keeps an event by nid across requests (bounded like the other caches).
    fn keep(&self, nid: i64, pdu: Pdu) {
        bounded_insert(self.pdus, MAX_CACHED_EVENTS, nid, pdu);
    }

    // ---- input ----

    /// The resolution of the states of several groups.
    fn resolve_groups(&mut self, groups: &[i64]) -> Result<Arc<StateNids>, RoomError> {
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
        bounded_insert(self.resolved, MAX_CACHED_GROUPS, key, state.clone());
        Ok(state)
    }

    /// Resolves several states (keyed by nid) into one.
    fn resolve_states(&mut self, states: Vec<StateNids>) -> Result<StateNids, RoomError> {
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

    /// Inputs a new event that extends the DAG. Format, hashes and signatures must have
    /// been checked by the caller.
    pub fn input_new(&mut self, pdu: Pdu) -> Result<Outcome, RoomError> {
        let result = self.input_new_held(pdu);
        self.end_input(result)
    }

    /// `input_new` with its writes left pending.
    fn input_new_held(&mut self, pdu: Pdu) -> Result<Outcome, RoomError> {
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

    /// The current-state entries that changed, with the membership of member events, for
    /// consumers that index memberships.
    fn state_changes(&mut self, old: &StateNids, new: &StateNids) -> Result<Vec<StateChange>, RoomError> {
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
}

/// Whether two shared states are the same (the same map, or equal maps).
fn same_state(a: &Arc<StateNids>, b: &Arc<StateNids>) -> bool {
    Arc::ptr_eq(a, b) || a == b
}

/// `content.membership` of a member event.
pub fn membership_of(pdu: &Pdu) -> Option<String> {
    if pdu.kind() != "m.room.member" {
        return None;
    }
    pdu.content_field("membership")
        .and_then(|m| m.as_str())
        .map(str::to_owned)
}

/// The state as `(type, state_key) → event id` strings, for answers.
pub fn state_ids(state: &StatePdus) -> BTreeMap<(String, String), String> {
    state
        .iter()
        .map(|((t, k), p)| ((t.to_string(), k.clone()), p.event_id().to_string()))
        .collect()
}
