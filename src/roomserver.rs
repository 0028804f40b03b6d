//! The roomserver: one Durable Object per room, the only writer of that room's DAG.
//!
//! `engine` is the input pipeline, `dispatch` answers typed requests, `store` holds the
//! tables; all synchronous over `Sql`. This file is the Durable Object around them: it
//! runs a request in one synchronous section, then flushes the outbox to the
//! `room-log` Queue, with an alarm that retries until the Queue has every record.

pub mod dispatch;
#[cfg(test)]
mod dispatch_tests;
pub mod engine;
#[cfg(test)]
mod engine_tests;
pub mod protocol;
pub mod schema;
pub mod store;

use worker::{durable_object, DurableObject, Env, Request, Response, Result, State};

use crate::api::http::HttpResponse;
use crate::api::MatrixError;
use crate::platform::sql::DoSql;
use crate::platform::{self, env};
use protocol::{RoomFailure, RoomRequest};

/// Retry delay for publishing the outbox.
const OUTBOX_RETRY_MS: i64 = 5_000;

/// The Room Durable Object (binding `ROOMS`).
#[durable_object]
pub struct Room {
    state: State,
    env: Env,
    /// Events and state groups remembered between requests.
    cache: engine::Cache,
    /// Whether this instance has applied the schema.
    schema_ready: std::cell::Cell<bool>,
}

impl DurableObject for Room {
    fn new(state: State, env: Env) -> Self {
        Self {
            state,
            env,
            cache: engine::Cache::default(),
            schema_ready: std::cell::Cell::new(false),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        // Text, then serde_json: much cheaper in wasm than walking a JS object.
        let parsed = match req.text().await {
            Ok(text) => serde_json::from_str::<RoomRequest>(&text).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let answer = match parsed {
            Ok(request) => {
                let writes = matches!(
                    request,
                    RoomRequest::Create { .. } | RoomRequest::Send { .. } | RoomRequest::Input { .. }
                );
                let answer = self.answer(request);
                if writes {
                    // A safety net first: if this isolate dies before the publish below
                    // finishes, the alarm publishes what the section wrote.
                    let _ = self.state.storage().set_alarm(OUTBOX_RETRY_MS).await;
                }
                answer
            }
            Err(e) => Err(RoomFailure {
                status: 400,
                errcode: "M_BAD_JSON".into(),
                error: format!("bad room request: {e}"),
            }),
        };
        // After the synchronous section: publish what it wrote to the log, without
        // holding the answer back (the alarm retries if this fails).
        let storage = self.state.storage();
        let queue = self.env.queue(env::ROOM_LOG).ok();
        self.state
            .wait_until(async move { flush_outbox(storage, queue).await });
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
        platform::http::to_worker(response)
    }

    async fn alarm(&self) -> Result<Response> {
        flush_outbox(self.state.storage(), self.env.queue(env::ROOM_LOG).ok()).await;
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
}

/// Sends pending outbox records to the Queue and deletes them once sent. On failure
/// an alarm retries (invariant 4: nothing is lost between the room and the log).
/// Records may be sent twice (consumers are idempotent), never lost.
async fn flush_outbox(storage: worker::Storage, queue: Option<worker::Queue>) {
    let db = DoSql(storage.sql());
    loop {
        let pending = match store::outbox(&db, 100) {
            Ok(p) => p,
            Err(_) => return, // no table yet: nothing was ever written
        };
        let Some(last) = pending.last().map(|(pos, _)| *pos) else {
            return;
        };
        let sent = match &queue {
            Some(queue) => {
                // Each message is the record's JSON text.
                let batch: Vec<String> = pending.iter().map(|(_, payload)| payload.clone()).collect();
                queue.send_batch(batch).await.is_ok()
            }
            None => false,
        };
        if !sent {
            platform::log_error("room: outbox publish failed; retrying on alarm");
            let _ = storage.set_alarm(OUTBOX_RETRY_MS).await;
            return;
        }
        if store::clear_outbox(&db, last).is_err() || pending.len() < 100 {
            return;
        }
    }
}

/// Unused-import guard for the error type the edge shares with the room.
#[allow(dead_code)]
fn _error_type(_: MatrixError) {}
