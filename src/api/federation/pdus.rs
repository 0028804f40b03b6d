//! Received PDUs into their room: the signing keys gathered (valid when each event was
//! made), the batch through the room's input, and what the room says is missing
//! fetched from the sending server — auth events with `/event_auth`, prev events
//! with `/get_missing_events`, and for a deep gap the state at the missing events with
//! `/state_ids` (the events themselves with `/event` and `/state`) — then the event
//! tried again. Nothing is stored for an event until the room accepts or rejects it.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::api::http::percent_encode as enc;
use crate::api::MatrixError;
use crate::federation::client::request;
use crate::federation::keys::{self, Use};
use crate::platform::{log_error, rooms, Ctx};
use crate::roomserver::protocol::{InputKind, RawPdu, RoomRequest};
use crate::storage;

pub(crate) type Keys = BTreeMap<String, BTreeMap<String, String>>;

/// Most servers and keys per server looked at in one event's signatures.
const MAX_SIGNERS: usize = 4;
/// Most events of one transaction whose missing events are fetched.
const MAX_FILLS: usize = 10;
/// Most prev events of one event crossed as a deep gap.
const MAX_GAP_PREVS: usize = 5;

/// The outcome of one received PDU, for the transaction's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PduResult {
    pub event_id: String,
    /// `None`: accepted (or soft-failed, which is not an error to the sender).
    pub error: Option<String>,
}

/// Adds to `keys` the keys that signed `pdus`, each valid at its event's time.
pub async fn gather_keys(
    ctx: &Ctx,
    pdus: &[Value],
    keys: &mut Keys,
    tried: &mut BTreeMap<(String, String), bool>,
) {
    for pdu in pdus {
        let ts = pdu["origin_server_ts"].as_u64().unwrap_or(0);
        let Some(signatures) = pdu["signatures"].as_object() else {
            continue;
        };
        for (server, by_key) in signatures.iter().take(MAX_SIGNERS) {
            let Some(by_key) = by_key.as_object() else {
                continue;
            };
            for key_id in by_key.keys().take(MAX_SIGNERS) {
                let slot = (server.clone(), key_id.clone());
                if tried.contains_key(&slot) || ruma::ServerName::parse(server).is_err() {
                    continue;
                }
                let found = match keys::key(ctx, server, key_id, Use::SignedAt(ts)).await {
                    Ok(Some(k)) => {
                        keys.entry(server.clone())
                            .or_default()
                            .insert(key_id.clone(), k.key);
                        true
                    }
                    Ok(None) => false,
                    Err(e) => {
                        log_error(&format!("key {key_id} of {server}: {e}"));
                        false
                    }
                };
                tried.insert(slot, found);
            }
        }
    }
}

/// One input request to the room, on behalf of `origin`.
pub(crate) async fn input(
    ctx: &Ctx,
    (origin, room_id): (&str, &str),
    kind: InputKind,
    pdus: &[Value],
    keys: &Keys,
    prev_states: &BTreeMap<String, Vec<String>>,
) -> Result<Value, MatrixError> {
    let raw = pdus
        .iter()
        .map(RawPdu::from_value)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| MatrixError::internal())?;
    let request = RoomRequest::Input {
        kind,
        pdus: raw,
        keys: keys.clone(),
        state: false,
        prev_states: prev_states.clone(),
        snapshot: None,
        origin: Some(origin.to_owned()),
    };
    rooms::call(ctx, room_id, &request).await
}

/// The event id of a PDU under the room's version, for events the room could not name.
pub(crate) fn event_id_of(pdu: &Value, version: Option<&str>) -> String {
    let rules = version
        .and_then(crate::core::room_version::parse)
        .map(|(_, rules)| rules)
        .unwrap_or(ruma::room_version_rules::RoomVersionRules::V11);
    serde_json::from_value::<ruma::CanonicalJsonObject>(pdu.clone())
        .ok()
        .and_then(|mut object| {
            object.remove("event_id");
            crate::core::event_hash::event_id(&object, &rules).ok()
        })
        .map(|id| id.to_string())
        .unwrap_or_default()
}

fn is_missing(result: &Value) -> bool {
    result.get("missing_prev").is_some()
        || result.get("missing_auth").is_some()
        || result.get("missing_state").is_some()
}

fn final_result(event_id: String, result: &Value) -> PduResult {
    let error = if let Some(why) = result["rejected"].as_str() {
        Some(format!("rejected: {why}"))
    } else if let Some(why) = result["error"].as_str() {
        Some(why.to_owned())
    } else if is_missing(result) {
        Some("events it depends on could not be fetched".to_owned())
    } else {
        None
    };
    PduResult { event_id, error }
}

/// The strings of a JSON array (event ids, mostly); anything else left out.
pub(crate) fn strings(list: &Value) -> Vec<String> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

/// Events of an answer's list field, oldest first (by depth).
pub(crate) fn by_depth(list: &Value) -> Vec<Value> {
    let mut events: Vec<Value> = list.as_array().cloned().unwrap_or_default();
    events.retain(Value::is_object);
    events.sort_by_key(|e| e["depth"].as_u64().unwrap_or(0));
    events
}

/// Inputs one event from `origin` (a `send_join` / `send_leave`) and answers the
/// room's result for it (`accepted`, `rejected`, `missing_*` …).
pub async fn input_one(ctx: &Ctx, origin: &str, room_id: &str, pdu: &Value) -> Result<Value, MatrixError> {
    let mut keys = Keys::new();
    let mut tried = BTreeMap::new();
    let one = std::slice::from_ref(pdu);
    gather_keys(ctx, one, &mut keys, &mut tried).await;
    let answer = input(
        ctx,
        (origin, room_id),
        InputKind::New,
        one,
        &keys,
        &BTreeMap::new(),
    )
    .await?;
    Ok(answer["results"][0].clone())
}

/// Whether this server is in the room (it holds the room). Rooms found are remembered
/// by the isolate for a minute, so a busy room costs no D1 read per transaction.
pub async fn known_room(ctx: &Ctx, room_id: &str) -> bool {
    use std::cell::RefCell;
    use std::collections::HashMap;
    thread_local! {
        static KNOWN: RefCell<HashMap<String, u64>> = RefCell::new(HashMap::new());
    }
    let now = ctx.now_ms();
    if KNOWN.with(|k| k.borrow().get(room_id).is_some_and(|at| now < at + 60_000)) {
        return true;
    }
    if ruma::RoomId::parse(room_id).is_err() {
        return false;
    }
    let known = match ctx.db() {
        Ok(db) => storage::rooms::known(&db, room_id).await.unwrap_or(false),
        Err(_) => false,
    };
    if known {
        KNOWN.with(|k| {
            let mut k = k.borrow_mut();
            if k.len() > 10_000 {
                k.clear();
            }
            k.insert(room_id.to_owned(), now);
        });
    }
    known
}

/// Inputs `pdus` (all of one room, in order) received from `origin`.
pub async fn ingest(ctx: &Ctx, origin: &str, room_id: &str, pdus: &[Value]) -> Vec<PduResult> {
    let refuse = |why: &str| {
        pdus.iter()
            .map(|p| PduResult {
                event_id: event_id_of(p, None),
                error: Some(why.to_owned()),
            })
            .collect::<Vec<_>>()
    };
    if !known_room(ctx, room_id).await {
        return refuse("This server is not in the room");
    }
    let mut keys = Keys::new();
    let mut tried = BTreeMap::new();
    gather_keys(ctx, pdus, &mut keys, &mut tried).await;
    let answer = match input(
        ctx,
        (origin, room_id),
        InputKind::New,
        pdus,
        &keys,
        &BTreeMap::new(),
    )
    .await
    {
        Ok(answer) => answer,
        Err(e) => {
            if e.status() < 500 {
                return refuse(&e.error);
            }
            log_error(&format!("input into {room_id}: {e}"));
            return refuse("The room could not take the events");
        }
    };
    let version = answer["room_version"].as_str().map(str::to_owned);
    let extremities = strings(&answer["extremities"]);
    let results: Vec<Value> = answer["results"].as_array().cloned().unwrap_or_default();
    let mut out = Vec::with_capacity(pdus.len());
    let mut fills = 0;
    for (i, pdu) in pdus.iter().enumerate() {
        let result = results.get(i).cloned().unwrap_or(Value::Null);
        let event_id = result["event_id"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| event_id_of(pdu, version.as_deref()));
        let result = if is_missing(&result) && fills < MAX_FILLS {
            fills += 1;
            let mut fill = Fill {
                ctx,
                origin,
                room_id,
                keys: &mut keys,
                tried: &mut tried,
            };
            fill.retry(pdu, &event_id, result, &extremities).await
        } else {
            result
        };
        out.push(final_result(event_id, &result));
    }
    out
}

/// Fetching what one event lacks from the server that sent it.
struct Fill<'a> {
    ctx: &'a Ctx,
    origin: &'a str,
    room_id: &'a str,
    keys: &'a mut Keys,
    tried: &'a mut BTreeMap<(String, String), bool>,
}

impl Fill<'_> {
    async fn get(&self, target: &str) -> Option<Value> {
        match request(self.ctx, self.origin, "GET", target, None).await {
            Ok(v) => Some(v),
            Err(e) => {
                log_error(&format!("fetching {target} from {}: {e}", self.origin));
                None
            }
        }
    }

    /// Inputs fetched events (their results do not matter here: each is checked as
    /// any other event).
    async fn put(&mut self, kind: InputKind, events: &[Value]) {
        if events.is_empty() {
            return;
        }
        gather_keys(self.ctx, events, self.keys, self.tried).await;
        let at = (self.origin, self.room_id);
        if let Err(e) = input(self.ctx, at, kind, events, self.keys, &BTreeMap::new()).await {
            log_error(&format!("input of fetched events into {}: {e}", self.room_id));
        }
    }

    /// Fetches what the room said was missing, then inputs the event again; up to four
    /// rounds (auth events, prev events, the state at a gap, its events).
    async fn retry(
        &mut self,
        pdu: &Value,
        event_id: &str,
        mut result: Value,
        extremities: &[String],
    ) -> Value {
        let room = enc(self.room_id);
        let mut prev_states: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut asked_missing = false;
        for _ in 0..4 {
            if result.get("missing_auth").is_some() {
                let target = format!("/_matrix/federation/v1/event_auth/{room}/{}", enc(event_id));
                let Some(answer) = self.get(&target).await else {
                    break;
                };
                self.put(InputKind::Outlier, &by_depth(&answer["auth_chain"]))
                    .await;
            } else if let Some(missing) = result["missing_prev"].as_array().cloned() {
                if !asked_missing {
                    asked_missing = true;
                    let body = json!({
                        "earliest_events": extremities,
                        "latest_events": [event_id],
                        "limit": 20,
                        "min_depth": 0,
                    });
                    let target = format!("/_matrix/federation/v1/get_missing_events/{room}");
                    let answer = request(self.ctx, self.origin, "POST", &target, Some(&body)).await;
                    match answer {
                        Ok(answer) => self.put(InputKind::New, &by_depth(&answer["events"])).await,
                        Err(e) => log_error(&format!("get_missing_events from {}: {e}", self.origin)),
                    }
                } else {
                    // A deep gap: cross it with the state at each missing prev event.
                    for prev in missing.iter().filter_map(Value::as_str).take(MAX_GAP_PREVS) {
                        let target =
                            format!("/_matrix/federation/v1/state_ids/{room}?event_id={}", enc(prev));
                        let Some(ids) = self.get(&target).await else {
                            continue;
                        };
                        let state = strings(&ids["pdu_ids"]);
                        if let Some(event) = self
                            .get(&format!("/_matrix/federation/v1/event/{}", enc(prev)))
                            .await
                        {
                            self.put(InputKind::Outlier, &by_depth(&event["pdus"])).await;
                        }
                        prev_states.insert(prev.to_owned(), state);
                    }
                    if prev_states.is_empty() {
                        break;
                    }
                }
            } else if result.get("missing_state").is_some() {
                for prev in prev_states.keys() {
                    let target = format!("/_matrix/federation/v1/state/{room}?event_id={}", enc(prev));
                    let Some(answer) = self.get(&target).await else {
                        continue;
                    };
                    let mut events = by_depth(&answer["auth_chain"]);
                    events.extend(by_depth(&answer["pdus"]));
                    self.put(InputKind::Outlier, &events).await;
                }
            } else {
                break;
            }
            let single = std::slice::from_ref(pdu);
            result = match input(
                self.ctx,
                (self.origin, self.room_id),
                InputKind::New,
                single,
                self.keys,
                &prev_states,
            )
            .await
            {
                Ok(answer) => answer["results"][0].clone(),
                Err(e) => json!({ "error": e.error }),
            };
        }
        result
    }
}
