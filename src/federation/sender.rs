//! The Destination Durable Object (binding `DESTINATIONS`, one per remote server): the
//! federation sender. The room-log consumer hands it the events of local users in rooms
//! the destination shares; it sends them as `PUT /_matrix/federation/v1/send/{txnId}`
//! transactions of up to 50 PDUs (read from their rooms), one at a time, in order, on
//! its alarm. A transaction that fails (unreachable, 5xx, 429) is sent again, the
//! same, after an exponential backoff; one the destination refuses (another 4xx) is
//! dropped and logged, so that it cannot block everything after it.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use worker::{durable_object, DurableObject, Env, Request, Response, Result, State};

use super::client::{request, FedError};
use super::outgoing;
use crate::platform::sql::DoSql;
use crate::platform::{self, rooms, Ctx};
use crate::roomserver::protocol::{FederationQuery, RoomRequest};
use crate::storage::sql::Sql;

/// Transactions sent per alarm before the next alarm takes over.
const TXNS_PER_ALARM: usize = 20;

/// What the Destination object is asked.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum DestinationRequest {
    /// Events (room id, event id) for `destination`, in order.
    Enqueue {
        destination: String,
        events: Vec<(String, String)>,
    },
    /// EDUs for `destination` (typing, receipts, to-device …), sent with the next
    /// transaction.
    Edus { destination: String, edus: Vec<Value> },
    /// The destination sent us a request: a backoff ends, and what waits goes now.
    HeardFrom { destination: String },
}

/// How long an isolate goes without telling a destination's sender again that it was
/// heard from.
const HEARD_EVERY_MS: u64 = 60_000;

/// Tells `origin`'s sender that it was heard from (a request it signed arrived), at most
/// once a minute per isolate: a destination that is back is sent what waits for it
/// without waiting out its backoff.
pub async fn heard_from(ctx: &Ctx, origin: &str) {
    use std::cell::RefCell;
    use std::collections::HashMap;
    thread_local! {
        static TOLD: RefCell<HashMap<String, u64>> = RefCell::new(HashMap::new());
    }
    let now = ctx.now_ms();
    let recent = TOLD.with(|t| {
        let mut t = t.borrow_mut();
        if t.get(origin).is_some_and(|at| now < at + HEARD_EVERY_MS) {
            return true;
        }
        if t.len() > 10_000 {
            t.clear();
        }
        t.insert(origin.to_owned(), now);
        false
    });
    if recent {
        return;
    }
    let request = DestinationRequest::HeardFrom {
        destination: origin.to_owned(),
    };
    let Ok(body) = serde_json::to_string(&request) else {
        return;
    };
    if let Err(e) = platform::call_object(platform::env::DESTINATIONS, &ctx.env, origin, body).await {
        platform::log_error(&format!("sender: telling {origin}'s sender: {}", e.error));
    }
}

/// Hands an EDU about a room to the senders of the other servers with a member joined
/// (as the room's current state says: the projections trail it).
pub async fn send_room_edu(ctx: &Ctx, room_id: &str, edu: Value) {
    let servers = match rooms::call(ctx, room_id, &RoomRequest::JoinedServers).await {
        Ok(answer) => answer["servers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect(),
        Err(e) => {
            platform::log_error(&format!("sender: servers of {room_id}: {e}"));
            Vec::new()
        }
    };
    send_edu(ctx, &servers, edu).await;
}

/// Hands an EDU about a local user (presence, device and signing-key changes) to the
/// senders of the other servers sharing a room with them.
pub async fn send_user_edu(ctx: &Ctx, user_id: &str, edu: Value) {
    let servers = match ctx.db() {
        Ok(db) => crate::storage::rooms::servers_sharing(&db, user_id, &ctx.config.server_name)
            .await
            .unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    send_edu(ctx, &servers, edu).await;
}

/// Hands an EDU to the senders of `destinations` (best effort: EDUs are ephemeral, a
/// failure is logged).
pub async fn send_edu(ctx: &Ctx, destinations: &[String], edu: Value) {
    for destination in destinations {
        let request = DestinationRequest::Edus {
            destination: destination.clone(),
            edus: vec![edu.clone()],
        };
        let Ok(body) = serde_json::to_string(&request) else {
            continue;
        };
        if let Err(e) = platform::call_object(platform::env::DESTINATIONS, &ctx.env, destination, body).await
        {
            platform::log_error(&format!("sender: EDU for {destination}: {}", e.error));
        }
    }
}

#[durable_object]
pub struct Destination {
    state: State,
    env: Env,
    ready: std::cell::Cell<bool>,
}

impl Destination {
    fn db(&self) -> std::result::Result<DoSql, String> {
        let db = DoSql(self.state.storage().sql());
        if !self.ready.get() {
            outgoing::init(&db).map_err(|e| e.to_string())?;
            db.execute("CREATE TABLE IF NOT EXISTS destination (name TEXT NOT NULL)", &[])
                .map_err(|e| e.to_string())?;
            self.ready.set(true);
        }
        Ok(db)
    }

    fn name(db: &DoSql) -> Option<String> {
        db.query_opt("SELECT name FROM destination LIMIT 1", &[])
            .ok()
            .flatten()
            .and_then(|r| r.text(0).ok().map(str::to_owned))
    }

    /// The PDUs of a transaction's events, read from their rooms (events a room no
    /// longer has are left out).
    async fn pdus(ctx: &Ctx, events: &[(String, String)]) -> Vec<Value> {
        let mut rooms_in_order: Vec<(&str, Vec<String>)> = Vec::new();
        for (room, event) in events {
            match rooms_in_order.iter_mut().find(|(r, _)| r == room) {
                Some((_, ids)) => ids.push(event.clone()),
                None => rooms_in_order.push((room, vec![event.clone()])),
            }
        }
        let mut out = Vec::with_capacity(events.len());
        for (room, event_ids) in rooms_in_order {
            let query = RoomRequest::Federation {
                origin: None,
                query: FederationQuery::Events { event_ids },
            };
            match rooms::call(ctx, room, &query).await {
                Ok(answer) => out.extend(answer["pdus"].as_array().cloned().unwrap_or_default()),
                Err(e) => platform::log_error(&format!("sender: events of {room}: {e}")),
            }
        }
        out
    }

    /// Sends what waits, a transaction at a time, until the queue is empty, a send
    /// fails (the alarm retries later) or this alarm's share is done.
    async fn send_all(&self) -> std::result::Result<(), String> {
        let db = self.db()?;
        let Some(destination) = Self::name(&db) else {
            return Ok(());
        };
        let ctx = Ctx::new(self.env.clone())?;
        for _ in 0..TXNS_PER_ALARM {
            let Some(txn) = outgoing::next_txn(&db).map_err(|e| e.to_string())? else {
                return Ok(());
            };
            let pdus = Self::pdus(&ctx, &txn.events).await;
            let edus: Vec<Value> = txn
                .edus
                .iter()
                .filter_map(|e| serde_json::from_str(e).ok())
                .collect();
            let body = json!({
                "origin": ctx.config.server_name,
                "origin_server_ts": ctx.now_ms(),
                "pdus": pdus,
                "edus": edus,
            });
            let target = format!(
                "/_matrix/federation/v1/send/{}",
                crate::api::http::percent_encode(&txn.txn_id)
            );
            match request(&ctx, &destination, "PUT", &target, Some(&body)).await {
                Ok(_) => outgoing::acknowledged(&db, &txn.txn_id).map_err(|e| e.to_string())?,
                Err(FedError::Status { status, errcode, .. })
                    if (400..500).contains(&status) && status != 429 =>
                {
                    platform::log_error(&format!(
                        "sender: {destination} refused transaction {} ({status} {errcode}); dropped",
                        txn.txn_id
                    ));
                    outgoing::acknowledged(&db, &txn.txn_id).map_err(|e| e.to_string())?;
                }
                Err(e) => {
                    let jitter = platform::random_array::<1>().map_or(0.0, |[b]| f64::from(b) / 256.0);
                    let delay = outgoing::failed(&db, jitter).map_err(|e| e.to_string())?;
                    platform::log_error(&format!(
                        "sender: transaction {} to {destination} failed ({e}); again in {} s",
                        txn.txn_id,
                        delay / 1000
                    ));
                    self.state
                        .storage()
                        .set_alarm(delay as i64)
                        .await
                        .map_err(|e| e.to_string())?;
                    return Ok(());
                }
            }
        }
        // More waits: the next alarm goes on at once.
        if outgoing::queued(&db).map_err(|e| e.to_string())? > 0 {
            self.state
                .storage()
                .set_alarm(0)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

impl Destination {
    /// `HeardFrom`: a sender that never sent anything stays empty (no tables made); one
    /// backing off sends what waits now.
    async fn heard(&self) -> Result<Response> {
        let sql = self.state.storage().sql();
        let db = DoSql(sql);
        let used = db
            .query_opt(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'destination'",
                &[],
            )
            .ok()
            .flatten()
            .is_some();
        if used {
            let db = self.db().map_err(worker::Error::RustError)?;
            if outgoing::heard_from(&db).map_err(|e| worker::Error::RustError(e.to_string()))? {
                self.state.storage().set_alarm(0).await?;
            }
        }
        Response::from_json(&json!({}))
    }
}

impl DurableObject for Destination {
    fn new(state: State, env: Env) -> Self {
        Self {
            state,
            env,
            ready: std::cell::Cell::new(false),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let parsed = req
            .text()
            .await
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str::<DestinationRequest>(&t).map_err(|e| e.to_string()));
        if let Ok(DestinationRequest::HeardFrom { .. }) = &parsed {
            return self.heard().await;
        }
        let outcome = parsed.and_then(|request| {
            let db = self.db()?;
            let destination = match &request {
                DestinationRequest::Enqueue { destination, .. }
                | DestinationRequest::Edus { destination, .. }
                | DestinationRequest::HeardFrom { destination } => destination,
            };
            if Self::name(&db).is_none() {
                db.execute(
                    "INSERT INTO destination (name) VALUES (?)",
                    crate::params![destination.as_str()],
                )
                .map_err(|e| e.to_string())?;
            }
            match &request {
                DestinationRequest::Enqueue { events, .. } => outgoing::enqueue(&db, events),
                DestinationRequest::Edus { edus, .. } => {
                    let texts: Vec<String> = edus.iter().map(Value::to_string).collect();
                    outgoing::enqueue_edus(&db, &texts)
                }
                DestinationRequest::HeardFrom { .. } => Ok(()),
            }
            .map_err(|e| e.to_string())?;
            outgoing::backing_off(&db).map_err(|e| e.to_string())
        });
        match outcome {
            Ok(backing_off) => {
                // A destination backing off keeps its alarm; otherwise send now.
                if !backing_off {
                    self.state.storage().set_alarm(0).await?;
                }
                Response::from_json(&json!({}))
            }
            Err(e) => {
                platform::log_error(&format!("sender: {e}"));
                Response::error("sender failure", 500)
            }
        }
    }

    async fn alarm(&self) -> Result<Response> {
        if let Err(e) = self.send_all().await {
            platform::log_error(&format!("sender: {e}"));
            // Try again later rather than never.
            let _ = self
                .state
                .storage()
                .set_alarm(outgoing::FIRST_BACKOFF_MS as i64)
                .await;
        }
        Response::ok("")
    }
}
