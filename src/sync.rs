//! The per-user stream: one Durable Object per local user (binding `USERS`).
//!
//! It holds the user's sync stream (`stream`), to-device inbox, filters and presence
//! (tables in `stream`), and holds a long-poll /sync open until a `Notify` wakes it or
//! the timeout passes. Notes come from the Room Durable Objects right after a write
//! (the fast path) and from the `room-log` consumer (the source of truth); both are
//! idempotent. The edge assembles the /sync answer from the plan this object returns
//! (`api::client::sync`).

pub mod protocol;
pub mod stream;
pub mod token;

use std::cell::{Cell, RefCell};
use std::time::Duration;

use futures_channel::oneshot;
use futures_util::future::{select, Either};
use serde_json::{json, Value};
use worker::{durable_object, DurableObject, Env, Request, Response, Result, State};

use crate::sync::protocol::{Note, NoteKind};

use crate::api::http::HttpResponse;
use crate::platform::sql::DoSql;
use crate::storage::sql::SqlError;
use protocol::{SyncPlan, UserRequest};

/// A user with no /sync running for this long goes offline (longer than the longest
/// long-poll, so a client that keeps syncing stays online).
pub const OFFLINE_AFTER_MS: u64 = 120_000;

/// The User Durable Object (binding `USERS`).
#[durable_object]
pub struct User {
    state: State,
    env: Env,
    /// Whether an alarm is set to time out an online presence.
    alarm_set: Cell<bool>,
    /// Long-polls waiting for the next note.
    waiters: RefCell<Vec<oneshot::Sender<()>>>,
    /// Whether the schema was applied in this instance.
    ready: Cell<bool>,
    /// Whether this instance has made sure the stream knows whose it is.
    owner_known: Cell<bool>,
}

fn failure(status: u16, errcode: &str, error: &str) -> HttpResponse {
    HttpResponse::json(status, &json!({ "errcode": errcode, "error": error }))
}

impl DurableObject for User {
    fn new(state: State, env: Env) -> Self {
        Self {
            state,
            env,
            alarm_set: Cell::new(false),
            waiters: RefCell::new(Vec::new()),
            ready: Cell::new(false),
            owner_known: Cell::new(false),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        // Text, then serde_json: much cheaper in wasm than walking a JS object.
        let parsed = match req.text().await {
            Ok(text) => serde_json::from_str::<UserRequest>(&text).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let response = match parsed {
            Ok(request) => match self.answer(request).await {
                Ok(Some(value)) => HttpResponse::ok(&value),
                Ok(None) => failure(404, "M_NOT_FOUND", "Not found"),
                Err(e) => {
                    crate::platform::log_error(&format!("user: {e}"));
                    failure(500, "M_UNKNOWN", "Internal error")
                }
            },
            Err(e) => failure(400, "M_BAD_JSON", &format!("bad user request: {e}")),
        };
        crate::platform::http::to_worker(response)
    }

    /// Presence time-out: a user online with no /sync for `OFFLINE_AFTER_MS` goes
    /// offline, and the users sharing a room hear of it.
    async fn alarm(&self) -> Result<Response> {
        self.alarm_set.set(false);
        let db = self.db().map_err(|e| worker::Error::RustError(e.to_string()))?;
        let now = crate::platform::now_ms();
        if let Ok(Some((presence, last_active))) = stream::presence_state(&db) {
            if presence != "offline" {
                let idle = now.saturating_sub(last_active);
                if idle >= OFFLINE_AFTER_MS && self.waiters.borrow().is_empty() {
                    let user_id = stream::own_user_id(&db).unwrap_or_default();
                    if let Ok(Some(change)) = stream::touch_presence(&db, "offline", now) {
                        self.fan_out_presence(user_id, change);
                    }
                } else {
                    let _ = self
                        .schedule_offline(None, OFFLINE_AFTER_MS.saturating_sub(idle).max(1_000))
                        .await;
                }
            }
        }
        Response::ok("")
    }
}

/// The `m.presence` EDU of a presence change (`{presence, status_msg?, last_active,
/// currently_active}`, `last_active` in milliseconds since the epoch).
fn presence_edu(user_id: &str, content: &serde_json::Value, now_ms: u64) -> serde_json::Value {
    let last_active = content["last_active"].as_u64().unwrap_or(now_ms);
    let mut push = serde_json::json!({
        "user_id": user_id,
        "presence": content["presence"],
        "last_active_ago": now_ms.saturating_sub(last_active),
        "currently_active": content["currently_active"].as_bool().unwrap_or(false),
    });
    if let Some(status) = content["status_msg"].as_str() {
        push["status_msg"] = serde_json::json!(status);
    }
    serde_json::json!({ "edu_type": "m.presence", "content": { "push": [push] } })
}

/// Sends `user_id`'s presence to `users` (never to the user themself: their own sync
/// would only wake for it).
async fn tell_presence(env: &Env, user_id: &str, change: stream::PresenceChange, users: Vec<String>) {
    let note = Note {
        room_id: user_id.to_owned(),
        kind: NoteKind::Presence,
        pos: change.serial,
        membership: None,
        content: Some(change.content),
    };
    let notes = users
        .into_iter()
        .filter(|u| u != user_id)
        .map(|u| (u, vec![note.clone()]))
        .collect();
    if crate::platform::users::notify_all(env, notes).await.is_err() {
        crate::platform::log_error("user: presence notes failed for some users");
    }
}

impl User {
    fn db(&self) -> std::result::Result<DoSql, SqlError> {
        let db = DoSql(self.state.storage().sql());
        if !self.ready.get() {
            stream::init(&db)?;
            self.ready.set(true);
        }
        Ok(db)
    }

    /// Tells the users sharing a room of a presence change, after the answer: one D1
    /// read of the room mates (beside one write of the copy new room mates are told) and
    /// one note per user, only when presence changes.
    fn fan_out_presence(&self, user_id: String, change: stream::PresenceChange) {
        if user_id.is_empty() {
            return;
        }
        // The user's own syncs show their presence too: a note in their own stream.
        let own = Note {
            room_id: user_id.clone(),
            kind: NoteKind::Presence,
            pos: change.serial,
            membership: None,
            content: Some(change.content.clone()),
        };
        match self.db().and_then(|db| stream::notify(&db, &[own])) {
            Ok(true) => self.wake(),
            Ok(false) => {}
            Err(e) => crate::platform::log_error(&format!("user: own presence note: {e}")),
        }
        let env = self.env.clone();
        self.state.wait_until(async move {
            let Ok(db) = crate::storage::Db::open(&env) else {
                crate::platform::log_error("user: presence fan-out: no database");
                return;
            };
            let content = change.content.to_string();
            let (mates, recorded) = futures_util::future::join(
                crate::storage::rooms::room_mates(&db, &[&user_id]),
                crate::storage::presence::record(&db, &user_id, change.serial, &content),
            )
            .await;
            if let Err(e) = recorded {
                crate::platform::log_error(&format!("user: presence record failed: {e}"));
            }
            let Ok(mates) = mates else {
                crate::platform::log_error("user: presence fan-out: room mates lookup failed");
                return;
            };
            let edu = presence_edu(&user_id, &change.content, crate::platform::now_ms());
            tell_presence(&env, &user_id, change, mates).await;
            // And the other servers sharing a room with the user.
            if let Ok(ctx) = crate::platform::Ctx::new(env.clone()) {
                crate::federation::sender::send_user_edu(&ctx, &user_id, edu).await;
            }
        });
    }

    /// On joining rooms: learn the presence of the local users already in them and tell
    /// them ours, from one D1 read. Each side's stream keeps a user's presence by serial,
    /// so what one already knows adds nothing. Returns whether the stream moved.
    async fn meet_room_mates(&self, rooms: &[String]) -> std::result::Result<bool, SqlError> {
        let db = self.db()?;
        let me = stream::own_user_id(&db).unwrap_or_default();
        let d1 = crate::storage::Db::open(&self.env).map_err(|e| SqlError(e.to_string()))?;
        let mates = match crate::storage::presence::of_members(&d1, rooms, &me).await {
            Ok(m) => m,
            Err(e) => {
                crate::platform::log_error(&format!("user: room mates' presence: {e}"));
                return Ok(false);
            }
        };
        // A mate who never set a presence is offline, told at serial 0.
        let notes: Vec<Note> = mates
            .iter()
            .map(|m| Note {
                room_id: m.user_id.clone(),
                kind: NoteKind::Presence,
                pos: m.serial.unwrap_or(0),
                membership: None,
                content: m
                    .content
                    .as_deref()
                    .and_then(|c| serde_json::from_str(c).ok())
                    .or_else(|| Some(json!({"presence": "offline"}))),
            })
            .collect();
        let moved = stream::notify(&db, &notes)?;
        // Ours, to them, after the answer (offline at serial 0 if we never set one).
        let own = stream::own_presence(&db)?.unwrap_or_else(|| stream::PresenceChange {
            serial: 0,
            content: json!({"presence": "offline"}),
        });
        if !me.is_empty() {
            let env = self.env.clone();
            let mates = mates.into_iter().map(|m| m.user_id).collect();
            self.state
                .wait_until(async move { tell_presence(&env, &me, own, mates).await });
        }
        Ok(moved)
    }

    /// Sets the presence time-out alarm unless one is set, first remembering whose
    /// stream this is (`user_id`), which the alarm needs to tell the room mates.
    async fn schedule_offline(
        &self,
        user_id: Option<&str>,
        after_ms: u64,
    ) -> std::result::Result<(), SqlError> {
        if self.alarm_set.get() {
            return Ok(());
        }
        if let Some(user_id) = user_id {
            stream::remember_user_id(&self.db()?, user_id)?;
        }
        let after = i64::try_from(after_ms).unwrap_or(i64::MAX);
        if self.state.storage().set_alarm(after).await.is_ok() {
            self.alarm_set.set(true);
        }
        Ok(())
    }

    fn wake(&self) {
        for waiter in self.waiters.borrow_mut().drain(..) {
            let _ = waiter.send(());
        }
    }

    async fn answer(&self, request: UserRequest) -> std::result::Result<Option<Value>, SqlError> {
        match request {
            UserRequest::Notify { notes } => {
                let db = self.db()?;
                let joined = stream::newly_joined(&db, &notes)?;
                let moved = stream::notify(&db, &notes)?;
                // A join brings the new room mates' presence in the same wake-up, so the
                // sync that shows the room shows who is online in it (one D1 read, on
                // joins only).
                let met = !joined.is_empty() && self.meet_room_mates(&joined).await?;
                if moved || met {
                    self.wake();
                }
                Ok(Some(json!({})))
            }
            UserRequest::Sync {
                device_id,
                since,
                timeout_ms,
                filter_id,
                user_id,
                set_presence,
                now_ms,
                full_state,
                include_leave,
            } => {
                // The stream learns whose it is (room mates are told our presence on
                // joins, even if we never go online), once per instance.
                if !user_id.is_empty() && !self.owner_known.get() {
                    stream::remember_user_id(&self.db()?, &user_id)?;
                    self.owner_known.set(true);
                }
                // Syncing is activity: online unless the client said otherwise.
                let presence = set_presence.as_deref().unwrap_or("online");
                if presence != "offline" && !user_id.is_empty() {
                    let db = self.db()?;
                    if let Some(change) = stream::touch_presence(&db, presence, now_ms)? {
                        self.fan_out_presence(user_id.clone(), change);
                    }
                    self.schedule_offline(Some(&user_id), OFFLINE_AFTER_MS).await?;
                }
                let filter = match &filter_id {
                    Some(id) => match stream::get_filter(&self.db()?, id)? {
                        Some(f) => Some(f),
                        None => return Ok(None),
                    },
                    None => None,
                };
                let include_leave = include_leave
                    || filter
                        .as_ref()
                        .is_some_and(|f| f["room"]["include_leave"] == serde_json::Value::Bool(true));
                let options = stream::PlanOptions {
                    full_state,
                    include_leave,
                };
                let mut plan = self.wait(&device_id, since, timeout_ms, options).await?;
                plan.filter = filter;
                Ok(Some(
                    serde_json::to_value(plan).map_err(|e| SqlError(e.to_string()))?,
                ))
            }
            UserRequest::ToDevice {
                sender,
                sender_device,
                txn_id,
                event_type,
                messages,
            } => {
                let db = self.db()?;
                if stream::queue_to_device(&db, &sender, &sender_device, &txn_id, &event_type, &messages)? {
                    self.wake();
                }
                Ok(Some(json!({})))
            }
            UserRequest::PutFilter { filter } => {
                let id = stream::put_filter(&self.db()?, &filter)?;
                Ok(Some(json!({ "filter_id": id.to_string() })))
            }
            UserRequest::GetFilter { filter_id } => stream::get_filter(&self.db()?, &filter_id),
            UserRequest::SetPresence {
                presence,
                status_msg,
                now_ms,
                user_id,
            } => {
                let db = self.db()?;
                if !user_id.is_empty() {
                    stream::remember_user_id(&db, &user_id)?;
                }
                if let Some(change) = stream::set_presence(&db, &presence, status_msg.as_deref(), now_ms)? {
                    self.fan_out_presence(user_id.clone(), change);
                }
                if presence != "offline" && !user_id.is_empty() {
                    self.schedule_offline(Some(&user_id), OFFLINE_AFTER_MS).await?;
                }
                Ok(Some(json!({})))
            }
            UserRequest::GetPresence { now_ms } => Ok(Some(stream::get_presence(&self.db()?, now_ms)?)),
            UserRequest::RoomPosition { room_id, stream: at } => {
                let room_pos = stream::room_position(&self.db()?, &room_id, at)?;
                Ok(Some(json!({ "room_pos": room_pos })))
            }
        }
    }

    /// The plan from `since`, waiting up to `timeout_ms` for one that is not empty
    /// (`include_leave`: an initial sync lists left rooms too).
    async fn wait(
        &self,
        device_id: &str,
        since: Option<token::SyncToken>,
        timeout_ms: u64,
        options: stream::PlanOptions,
    ) -> std::result::Result<SyncPlan, SqlError> {
        let deadline = crate::platform::now_ms().saturating_add(timeout_ms);
        loop {
            let plan = stream::plan_with(&self.db()?, device_id, since, crate::platform::now_ms(), options)?;
            let now = crate::platform::now_ms();
            if since.is_none() || !plan.is_empty() || now >= deadline {
                return Ok(plan);
            }
            let (tx, rx) = oneshot::channel();
            self.waiters.borrow_mut().push(tx);
            let delay = worker::Delay::from(Duration::from_millis(deadline - now));
            if let Either::Right(_) = select(rx, Box::pin(delay)).await {
                // Timed out: one last look, then answer.
                return stream::plan_with(&self.db()?, device_id, since, crate::platform::now_ms(), options);
            }
        }
    }
}
