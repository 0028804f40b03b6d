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
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use ruma::events::StateEventType;
use ruma::room_version_rules::RoomVersionRules;
use ruma::{EventId, OwnedEventId, OwnedRoomId, RoomId, RoomVersionId};

use crate::core::builder::BuildError;
use crate::core::pdu::Pdu;
use crate::core::room_version;
use crate::storage::sql::{Sql, SqlError};

use super::store::{self, NewEvent as Row, StateNids, Status};

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
    /// Prev events the room has no state after (unknown, or outliers whose history has
    /// a hole): fetch them, or input again with their state (`GapState`).
    #[error("missing prev events: {0:?}")]
    MissingPrev(Vec<OwnedEventId>),
    /// Auth events the room does not have: nothing was written; input them (as
    /// outliers) first.
    #[error("missing auth events: {0:?}")]
    MissingAuth(Vec<OwnedEventId>),
    /// Events a supplied state names that the room does not have.
    #[error("missing state events: {0:?}")]
    MissingState(Vec<OwnedEventId>),
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

mod backfill;
mod bootstrap;
mod cache;
mod input;
mod outlier;
mod perform;
mod queries;
mod state;

pub use bootstrap::auth_order;
pub use cache::Cache;
use cache::{bounded_insert, Head, Pending, MAX_CACHED_EVENTS};
pub use input::GapState;

pub struct Engine<'a> {
    pub db: &'a dyn Sql,
    pub info: RoomInfo,
    /// Events read or written by this engine, by nid.
    pdus: &'a RefCell<HashMap<i64, Pdu>>,
    by_id: &'a RefCell<HashMap<String, Pdu>>,
    groups: &'a RefCell<cache::StateCache<i64>>,
    after: &'a RefCell<HashMap<String, i64>>,
    head: &'a RefCell<Option<Head>>,
    /// Event ids a batch input found not stored (one query for the batch instead of one
    /// per event); each is used once.
    known_new: HashSet<String>,
    pub(super) unread: &'a RefCell<super::sync_slice::UnreadMemo>,
    pub(super) lazy_members: &'a RefCell<super::sync_slice::lazy_members::LazyMembers>,
    resolved: &'a RefCell<cache::StateCache<Vec<i64>>>,
    pending: RefCell<Pending>,
    /// Whether writes wait for `flush` (an input batch) instead of each input's end.
    batching: bool,
    /// While history is input (`input_backfill`): the stream position the next event
    /// gets, below every other.
    history: Option<i64>,
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

    /// An engine over `db` for the room `info`, with the caches of `cache`.
    fn with_info(db: &'a dyn Sql, cache: &'a Cache, info: RoomInfo) -> Self {
        Self {
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
            history: None,
        }
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
        Ok(Self::with_info(db, cache, info))
    }

    /// Records the room's identity from its create event (nothing else is written).
    fn start(db: &'a dyn Sql, cache: &'a Cache, create: &Pdu) -> Result<Self, RoomError> {
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
        let info = RoomInfo {
            room_id: create.room_id().to_owned(),
            version,
            rules,
        };
        Ok(Self::with_info(db, cache, info))
    }

    /// Creates the room from its signed create event.
    pub fn create(db: &'a dyn Sql, cache: &'a Cache, create: Pdu) -> Result<(Self, Outcome), RoomError> {
        let mut engine = Self::start(db, cache, &create)?;
        let outcome = engine.input_new(create)?;
        Ok((engine, outcome))
    }

    pub fn rules(&self) -> &RoomVersionRules {
        &self.info.rules
    }

    pub fn version(&self) -> &RoomVersionId {
        &self.info.version
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

    /// An event is stored: it is no backward extremity any more, and the redactions
    /// that waited for it apply now.
    fn filled(&mut self, event_id: &str) -> Result<(), RoomError> {
        let head = self.head()?;
        if head.has_backward {
            store::remove_backward_extremity(self.sql()?, event_id)?;
        }
        if head.has_pending_redactions {
            for redaction in store::take_pending_redactions(self.sql()?, event_id)? {
                if let Some((_, pdu)) = self.pdu(&redaction)? {
                    self.apply_redaction(&pdu)?;
                }
            }
        }
        Ok(())
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

    /// Whether the room may have backward extremities (history to fetch further back);
    /// from the cached head, so a room that never had any asks nothing.
    pub fn has_backward_extremities(&self) -> Result<bool, RoomError> {
        Ok(self.head()?.has_backward)
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
            has_backward: store::has_backward_extremities(db)?,
            has_pending_redactions: store::has_pending_redactions(db)?,
        };
        *self.head.borrow_mut() = Some(head.clone());
        Ok(head)
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
