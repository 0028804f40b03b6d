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

use crate::api::http::HttpResponse;
use crate::platform::sql::DoSql;
use crate::storage::sql::SqlError;
use protocol::{SyncPlan, UserRequest};

/// The User Durable Object (binding `USERS`).
#[durable_object]
pub struct User {
    state: State,
    /// Long-polls waiting for the next note.
    waiters: RefCell<Vec<oneshot::Sender<()>>>,
    /// Whether the schema was applied in this instance.
    ready: Cell<bool>,
}

fn failure(status: u16, errcode: &str, error: &str) -> HttpResponse {
    HttpResponse::json(status, &json!({ "errcode": errcode, "error": error }))
}

impl DurableObject for User {
    fn new(state: State, _env: Env) -> Self {
        Self {
            state,
            waiters: RefCell::new(Vec::new()),
            ready: Cell::new(false),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let response = match req.json::<UserRequest>().await {
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

    fn wake(&self) {
        for waiter in self.waiters.borrow_mut().drain(..) {
            let _ = waiter.send(());
        }
    }

    async fn answer(&self, request: UserRequest) -> std::result::Result<Option<Value>, SqlError> {
        match request {
            UserRequest::Notify { notes } => {
                if stream::notify(&self.db()?, &notes)? {
                    self.wake();
                }
                Ok(Some(json!({})))
            }
            UserRequest::Sync {
                device_id,
                since,
                timeout_ms,
                filter_id,
            } => {
                let filter = match &filter_id {
                    Some(id) => match stream::get_filter(&self.db()?, id)? {
                        Some(f) => Some(f),
                        None => return Ok(None),
                    },
                    None => None,
                };
                let mut plan = self.wait(&device_id, since, timeout_ms).await?;
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
            } => {
                stream::set_presence(&self.db()?, &presence, status_msg.as_deref(), now_ms)?;
                Ok(Some(json!({})))
            }
            UserRequest::GetPresence { now_ms } => Ok(Some(stream::get_presence(&self.db()?, now_ms)?)),
        }
    }

    /// The plan from `since`, waiting up to `timeout_ms` for one that is not empty.
    async fn wait(
        &self,
        device_id: &str,
        since: Option<token::SyncToken>,
        timeout_ms: u64,
    ) -> std::result::Result<SyncPlan, SqlError> {
        let deadline = crate::platform::now_ms().saturating_add(timeout_ms);
        loop {
            let plan = stream::plan(&self.db()?, device_id, since)?;
            let now = crate::platform::now_ms();
            if since.is_none() || !plan.is_empty() || now >= deadline {
                return Ok(plan);
            }
            let (tx, rx) = oneshot::channel();
            self.waiters.borrow_mut().push(tx);
            let delay = worker::Delay::from(Duration::from_millis(deadline - now));
            if let Either::Right(_) = select(rx, Box::pin(delay)).await {
                // Timed out: one last look, then answer.
                return stream::plan(&self.db()?, device_id, since);
            }
        }
    }
}
