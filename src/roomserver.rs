//! The roomserver: one Durable Object per room, the only writer of that room's DAG.
//!
//! `engine` is the input pipeline, `dispatch` answers typed requests, `store` holds the
//! tables; all synchronous over `Sql`. This file is the Durable Object around them: it
//! runs a request in one synchronous section, then flushes the outbox to the
//! `room-log` Queue, with an alarm that retries until the Queue has every record.

pub mod dispatch;
#[cfg(test)]
mod dispatch_invites_tests;
#[cfg(test)]
mod dispatch_search_tests;
#[cfg(test)]
mod dispatch_tests;
pub mod engine;
#[cfg(test)]
mod engine_bootstrap_tests;
#[cfg(test)]
mod engine_history_tests;
#[cfg(test)]
mod engine_outlier_tests;
#[cfg(test)]
mod engine_queries_tests;
#[cfg(test)]
mod engine_restart_tests;
#[cfg(test)]
mod engine_tests;
#[cfg(test)]
mod engine_version_tests;
pub mod ephemeral;
pub mod protocol;
pub mod schema;
pub mod store;
pub mod sync_slice;

use std::collections::BTreeMap;

use worker::{durable_object, DurableObject, Env, Request, Response, Result, State};

use crate::api::http::HttpResponse;
use crate::log::{fanout, LogRecord};
use crate::platform::sql::DoSql;
use crate::platform::{self, env, users};
use crate::sync::protocol::{Note, NoteKind};
use protocol::{RoomFailure, RoomRequest};

/// Retry delay for publishing the outbox.
const OUTBOX_RETRY_MS: i64 = 5_000;

/// How long a write waits before publishing, so that writes close together (and their
/// direct notifications) share one publication to the queue.
const PUBLISH_DELAY_MS: u64 = 10;

/// Outbox records a request's notes cover at most.
const NOTED_ROWS: i64 = 1000;

/// Outbox records read per publication round.
const PUBLISH_ROWS: i64 = 1000;

/// Shared by a room's publications: the highest outbox position whose notes reached
/// every local member directly, and whether a publication is scheduled.
#[derive(Default)]
struct Publisher {
    delivered_up_to: std::cell::Cell<i64>,
    scheduled: std::cell::Cell<bool>,
}

/// The Room Durable Object (binding `ROOMS`).
#[durable_object]
pub struct Room {
    state: State,
    env: Env,
    /// Events and state groups remembered between requests.
    cache: engine::Cache,
    /// Whether this instance has applied the schema.
    schema_ready: std::cell::Cell<bool>,
    /// Whether this instance has set an alarm that has not run yet: the safety net is
    /// then in place and a write need not set it again.
    alarm_pending: std::cell::Cell<bool>,
    publisher: std::rc::Rc<Publisher>,
}

impl DurableObject for Room {
    fn new(state: State, env: Env) -> Self {
        Self {
            state,
            env,
            cache: engine::Cache::default(),
            schema_ready: std::cell::Cell::new(false),
            alarm_pending: std::cell::Cell::new(false),
            publisher: std::rc::Rc::new(Publisher::default()),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let timings = platform::Timings::new(platform::clock_ms());
        // Text, then serde_json: much cheaper in wasm than walking a JS object.
        let parsed = match req.text().await {
            Ok(text) => serde_json::from_str::<RoomRequest>(&text).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        timings.mark("parse", platform::clock_ms());
        let (answer, notes, typing, writes) = match parsed {
            Ok(request) => {
                let kind = match &request {
                    RoomRequest::Send { .. }
                    | RoomRequest::Create { .. }
                    | RoomRequest::Input { .. }
                    | RoomRequest::ReceiveInvite { .. }
                    | RoomRequest::KeepKnock { .. }
                    | RoomRequest::EndInvite { .. }
                    | RoomRequest::RescindInvite { .. } => Some(NoteKind::Event),
                    RoomRequest::Typing { .. } => Some(NoteKind::Typing),
                    RoomRequest::Receipt { .. } => Some(NoteKind::Receipt),
                    _ => None,
                };
                // The requests that write events (and so log records).
                let writes = kind == Some(NoteKind::Event);
                // Local users' events, which other servers in the room are told of at once.
                let local_events = matches!(request, RoomRequest::Send { .. } | RoomRequest::Create { .. });
                let answer = self.answer(request);
                timings.mark("exec", platform::clock_ms());
                let (notes, pokes) = match (&answer, kind) {
                    (Ok(value), Some(kind)) => self.notes(value, kind, local_events),
                    _ => ((BTreeMap::new(), 0), BTreeMap::new()),
                };
                timings.mark("notes", platform::clock_ms());
                if writes && !self.alarm_pending.get() {
                    // A safety net first: if this isolate dies before the publish below
                    // finishes, the alarm publishes what the section wrote. An alarm
                    // already pending does that as well (it only fires sooner).
                    if self.state.storage().set_alarm(OUTBOX_RETRY_MS).await.is_ok() {
                        self.alarm_pending.set(true);
                    }
                    timings.mark("alarm", platform::clock_ms());
                }
                (answer, (notes, pokes), kind == Some(NoteKind::Typing), writes)
            }
            Err(e) => (
                Err(RoomFailure {
                    status: 400,
                    errcode: "M_BAD_JSON".into(),
                    error: format!("bad room request: {e}"),
                }),
                ((BTreeMap::new(), 0), BTreeMap::new()),
                false,
                false,
            ),
        };
        let ((notes, covered), pokes) = notes;
        // After the synchronous section, without holding the answer back: wake the
        // members' streams directly, then publish what the section wrote to the log.
        // Records whose notes were all delivered are marked so, and the consumer skips
        // its own fan-out for them; otherwise it delivers them (idempotently).
        let storage = self.state.storage();
        let queue = self.env.queue(env::ROOM_LOG).ok();
        let env = self.env.clone();
        let publisher = self.publisher.clone();
        self.state.wait_until(async move {
            // No local user to tell is delivered too: the consumer only projects.
            if notes.is_empty() || users::notify_all(&env, notes).await.is_ok() {
                publisher
                    .delivered_up_to
                    .set(publisher.delivered_up_to.get().max(covered));
            } else {
                platform::log_error("room: direct sync notification failed; the log will deliver");
            }
            // Other servers' senders hear of local events now rather than when the log's
            // consumer runs (its batches wait up to a second); the consumer's own
            // hand-over is then a no-op, as each sender queues an event once.
            tell_destinations(&env, pokes).await;
            // Only writes have records to publish (one that failed earlier is the
            // alarm's). Writes close together share one publication: the first
            // schedules it a moment later, the others find it scheduled.
            if writes && !publisher.scheduled.replace(true) {
                worker::Delay::from(std::time::Duration::from_millis(PUBLISH_DELAY_MS)).await;
                publisher.scheduled.set(false);
                flush_outbox(storage, queue, publisher.delivered_up_to.get()).await;
            }
        });
        if typing {
            self.schedule_typing_expiry().await;
        }
        let response = match answer {
            Ok(value) => HttpResponse::ok(&value),
            Err(f) => {
                if f.status >= 500 {
                    platform::log_error(&format!("room: {}", f.error));
                }
                let body = serde_json::json!({ "errcode": f.errcode, "error": f.error });
                HttpResponse::json(f.status, &body)
            }
        };
        let response = match timings.header() {
            Some(value) => response.with_header("Server-Timing", &value),
            None => response,
        };
        platform::http::to_worker(response)
    }

    async fn alarm(&self) -> Result<Response> {
        self.alarm_pending.set(false);
        flush_outbox(self.state.storage(), self.env.queue(env::ROOM_LOG).ok(), 0).await;
        // Typing that timed out: tell the members' streams.
        let notes = self.expire_typing();
        if !notes.is_empty() && users::notify_all(&self.env, notes).await.is_err() {
            platform::log_error("room: typing expiry notification failed");
        }
        self.schedule_typing_expiry().await;
        Response::ok("")
    }
}

impl Room {
    fn answer(&self, request: RoomRequest) -> std::result::Result<serde_json::Value, RoomFailure> {
        let config = platform::config(&self.env).map_err(|e| RoomFailure {
            status: 500,
            errcode: "M_UNKNOWN".into(),
            error: e,
        })?;
        let db = DoSql(self.state.storage().sql());
        let host = dispatch::Host {
            server_name: &config.server_name,
            key: &config.signing_key,
            now_ms: platform::now_ms(),
            clock_ms: platform::clock_ms,
        };
        if !self.schema_ready.get() {
            store::init(&db).map_err(|e| RoomFailure {
                status: 500,
                errcode: "M_UNKNOWN".into(),
                error: e.to_string(),
            })?;
            self.schema_ready.set(true);
        }
        let answer = dispatch::handle_cached(&db, &host, &self.cache, request);
        if answer.as_ref().is_err_and(|f| f.status >= 500) {
            self.cache.clear();
        }
        answer
    }

    fn server_name(&self) -> Option<String> {
        platform::config(&self.env).ok().map(|c| c.server_name.clone())
    }

    /// The notes a successful request produces for local users' streams: the log
    /// records it wrote (any still in the outbox), or its typing/receipt serial. Also
    /// the last outbox position the notes cover (0 for none). With `local_events`, from
    /// the same records: the other servers to tell of local users' events now
    /// (destination → (room id, event id), in stream order).
    fn notes(&self, answer: &serde_json::Value, kind: NoteKind, local_events: bool) -> (Notes, Pokes) {
        let mut out = BTreeMap::new();
        let mut pokes = Pokes::new();
        let Some(server_name) = self.server_name() else {
            return ((out, 0), pokes);
        };
        let db = DoSql(self.state.storage().sql());
        // A room not held here (an invite from another server) has no members to tell.
        let room = engine::Engine::open(&db, &self.cache).ok();
        let mut servers = Vec::new();
        let joined = match room {
            Some(mut room) => {
                let joined = local_joined(&mut room, &server_name);
                if kind != NoteKind::Event {
                    let notes = match answer["serial"].as_i64() {
                        Some(serial) => (
                            fanout::ephemeral_notes(room.info.room_id.as_str(), kind, serial, &joined),
                            0,
                        ),
                        None => (out, 0),
                    };
                    return (notes, pokes);
                }
                if local_events {
                    servers = room
                        .joined_servers(&server_name)
                        .map(|(_, s)| s)
                        .unwrap_or_default();
                }
                joined
            }
            None if kind == NoteKind::Event => Vec::new(),
            None => return ((out, 0), pokes),
        };
        // Without local members, only records that name a local user (a membership of
        // theirs changed) have notes: SQLite picks those out of the outbox.
        let (rows, filtered_up_to) = if joined.is_empty() {
            let mark = format!(":{server_name}\"");
            match store::outbox_mentioning(&db, &mark, NOTED_ROWS) {
                Ok((rows, last)) => (rows, Some(last)),
                Err(_) => (Vec::new(), None),
            }
        } else {
            (store::outbox(&db, NOTED_ROWS).unwrap_or_default(), None)
        };
        let mut covered = 0;
        let mut unreadable = None;
        for (pos, payload) in rows {
            match serde_json::from_str::<LogRecord>(&payload) {
                Ok(record) => {
                    fanout::notes_for(&record, &joined, &server_name, &mut out);
                    if local_events {
                        let LogRecord::Event {
                            room_id, event_id, ..
                        } = &record;
                        for destination in crate::log::destinations_of(&record, &servers, &server_name) {
                            pokes
                                .entry(destination)
                                .or_default()
                                .push((room_id.clone(), event_id.clone()));
                        }
                    }
                    covered = pos;
                }
                Err(_) => {
                    unreadable = Some(pos);
                    break;
                }
            }
        }
        // The records passed over had no notes: covered too, up to an unreadable one.
        if let Some(last) = filtered_up_to {
            covered = unreadable.map_or(last, |pos| pos - 1);
        }
        fanout::compact(&mut out);
        ((out, covered), pokes)
    }

    /// Drops expired typing entries; the notes for members if any expired.
    fn expire_typing(&self) -> BTreeMap<String, Vec<Note>> {
        let db = DoSql(self.state.storage().sql());
        let (Some(server_name), Ok(mut room)) = (self.server_name(), engine::Engine::open(&db, &self.cache))
        else {
            return BTreeMap::new();
        };
        if ephemeral::init(&db).is_err() {
            return BTreeMap::new();
        }
        match ephemeral::expire_typing(&db, platform::now_ms()) {
            Ok(Some(serial)) => {
                let joined = local_joined(&mut room, &server_name);
                fanout::ephemeral_notes(room.info.room_id.as_str(), NoteKind::Typing, serial, &joined)
            }
            _ => BTreeMap::new(),
        }
    }

    /// Sets the alarm for the next typing expiry, unless an earlier one is set.
    async fn schedule_typing_expiry(&self) {
        let db = DoSql(self.state.storage().sql());
        let Ok(Some(expiry)) = ephemeral::next_expiry(&db) else {
            return;
        };
        let storage = self.state.storage();
        if let Ok(Some(current)) = storage.get_alarm().await {
            if current <= expiry {
                return;
            }
        }
        let now = platform::now_ms() as i64;
        if storage.set_alarm((expiry - now).max(0) + 10).await.is_ok() {
            self.alarm_pending.set(true);
        }
    }
}

/// Sends pending outbox records to the Queue and deletes them once sent. On failure
/// an alarm retries (invariant 4: nothing is lost between the room and the log).
/// Records may be sent twice (consumers are idempotent), never lost. Records at or
/// below `delivered_up_to` are published marked as already fanned out.
async fn flush_outbox(storage: worker::Storage, queue: Option<worker::Queue>, delivered_up_to: i64) {
    let db = DoSql(storage.sql());
    loop {
        let pending = match store::outbox(&db, PUBLISH_ROWS) {
            Ok(p) => p,
            Err(_) => return, // no table yet: nothing was ever written
        };
        let Some(last) = pending.last().map(|(pos, _)| *pos) else {
            return;
        };
        let messages = LogRecord::into_messages(
            pending
                .iter()
                .map(|(pos, payload)| LogRecord::published(payload, *pos <= delivered_up_to)),
        );
        let mut sent = queue.is_some();
        if let Some(queue) = &queue {
            // `sendBatch` takes at most 256 KB: two full messages per call.
            for group in messages.chunks(2) {
                if queue.send_batch(group.to_vec()).await.is_err() {
                    sent = false;
                    break;
                }
            }
        }
        if !sent {
            platform::log_error("room: outbox publish failed; retrying on alarm");
            let _ = storage.set_alarm(OUTBOX_RETRY_MS).await;
            return;
        }
        if store::clear_outbox(&db, last).is_err() || pending.len() < PUBLISH_ROWS as usize {
            return;
        }
    }
}

/// The room's local joined members, from its current state.
/// Notes for local users' streams and the last outbox position they cover.
type Notes = (BTreeMap<String, Vec<Note>>, i64);
/// Events for other servers' senders: destination → (room id, event id).
type Pokes = BTreeMap<String, Vec<(String, String)>>;

/// Hands events to the senders of other servers (`DestinationRequest::Enqueue`), all
/// at once; a failure is only logged (the log's consumer hands them over too).
async fn tell_destinations(env: &Env, pokes: Pokes) {
    let calls = pokes.into_iter().map(|(destination, events)| async move {
        let request = crate::federation::sender::DestinationRequest::Enqueue {
            destination: destination.clone(),
            events,
        };
        let Ok(body) = serde_json::to_string(&request) else {
            return;
        };
        if let Err(e) = platform::call_object(env::DESTINATIONS, env, &destination, body).await {
            platform::log_error(&format!("room: telling {destination}'s sender: {}", e.error));
        }
    });
    futures_util::future::join_all(calls).await;
}

fn local_joined(room: &mut engine::Engine<'_>, server_name: &str) -> Vec<String> {
    room.local_members(server_name).unwrap_or_default()
}
