//! Answers `RoomRequest`s against the room's database: the performs (create, send) and
//! the queries, with the history-visibility checks a client read needs. Synchronous,
//! so the Durable Object answers a request in one section.

use ruma::{OwnedEventId, UserId};
use serde_json::{json, Map, Value};

use crate::core::builder::{NewEvent, Signer};
use crate::core::keys::SigningKey;
use crate::core::verify::check_pdu;
use crate::storage::sql::Sql;

use super::engine::{room_info, Cache, Engine, GapState, Outcome, RoomError};
use super::protocol::{EventSpec, InputKind, RoomFailure, RoomRequest};
use super::store;

mod federation;
mod read;
use read::query;
pub(super) use read::{may_see, state_at, token};

/// What the room needs from its host to build events.
pub struct Host<'a> {
    pub server_name: &'a str,
    pub key: &'a SigningKey,
    pub now_ms: u64,
    /// A monotonic-enough clock in milliseconds, for the timings input reports.
    pub clock_ms: fn() -> f64,
}

impl Host<'_> {
    fn signer(&self) -> Signer<'_> {
        Signer {
            server_name: self.server_name,
            key: self.key,
            now_ms: self.now_ms,
        }
    }
}

pub(super) fn fail(status: u16, errcode: &str, error: impl Into<String>) -> RoomFailure {
    RoomFailure {
        status,
        errcode: errcode.to_owned(),
        error: error.into(),
    }
}

fn not_found() -> RoomFailure {
    fail(404, "M_NOT_FOUND", "Room not found")
}

fn forbidden(why: impl Into<String>) -> RoomFailure {
    fail(403, "M_FORBIDDEN", why)
}

impl From<RoomError> for RoomFailure {
    fn from(e: RoomError) -> Self {
        match e {
            RoomError::NoRoom => not_found(),
            RoomError::UnknownEvent => fail(400, "M_INVALID_PARAM", "No such event in this room"),
            RoomError::Exists => fail(400, "M_ROOM_IN_USE", "Room already exists"),
            RoomError::Forbidden(why) => forbidden(why),
            RoomError::Build(crate::core::builder::BuildError::TooLarge) => {
                fail(413, "M_TOO_LARGE", "Event is larger than 65536 bytes")
            }
            RoomError::Build(b) => fail(400, "M_BAD_JSON", b.to_string()),
            RoomError::UnsupportedVersion => {
                fail(400, "M_UNSUPPORTED_ROOM_VERSION", "Unsupported room version")
            }
            other => fail(500, "M_UNKNOWN", other.to_string()),
        }
    }
}

fn parse_user(user: &str) -> Result<&UserId, RoomFailure> {
    <&UserId>::try_from(user).map_err(|_| fail(400, "M_INVALID_PARAM", "Invalid user id"))
}

fn new_event(spec: EventSpec) -> Result<NewEvent, RoomFailure> {
    let redacts = match spec.redacts {
        Some(r) => {
            Some(OwnedEventId::try_from(r).map_err(|_| fail(400, "M_INVALID_PARAM", "Invalid event id"))?)
        }
        None => None,
    };
    if !spec.content.is_object() {
        return Err(fail(400, "M_BAD_JSON", "Content must be a JSON object"));
    }
    Ok(NewEvent {
        event_type: spec.event_type,
        state_key: spec.state_key,
        content: spec.content,
        redacts,
    })
}

/// Answers one request with a fresh cache (tests, one-off uses).
pub fn handle(db: &dyn Sql, host: &Host<'_>, req: RoomRequest) -> Result<Value, RoomFailure> {
    store::init(db).map_err(RoomError::from)?;
    handle_cached(db, host, &Cache::default(), req)
}

/// Answers one request. Errors carry their HTTP status and Matrix code. The schema
/// must exist (`store::init`). After a failed request the caller clears the cache.
pub fn handle_cached(
    db: &dyn Sql,
    host: &Host<'_>,
    cache: &Cache,
    req: RoomRequest,
) -> Result<Value, RoomFailure> {
    match req {
        RoomRequest::Create {
            create,
            sender,
            steps,
        } => create_room(db, host, cache, create, &sender, steps),
        RoomRequest::Send {
            sender,
            device_id,
            txn_id,
            event,
        } => send(
            db,
            host,
            cache,
            &sender,
            device_id.as_deref(),
            txn_id.as_deref(),
            event,
        ),
        RoomRequest::Input {
            kind,
            pdus,
            keys,
            state,
            prev_states,
        } => {
            let gaps = gap_states(prev_states)?;
            input(db, host, cache, (kind, &gaps), pdus, &keys, state)
        }
        RoomRequest::LogRecords { from, limit } => {
            let records = store::log_records(db, from, i64::from(limit)).map_err(RoomError::from)?;
            Ok(json!({ "records": records.into_iter().map(|(_, text)| text).collect::<Vec<_>>() }))
        }
        other => {
            let mut room = Engine::open(db, cache)?;
            query(&mut room, host, other)
        }
    }
}

/// The gap states of an input, parsed.
fn gap_states(
    prev_states: std::collections::BTreeMap<String, Vec<String>>,
) -> Result<Vec<GapState>, RoomFailure> {
    let id = |s: String| {
        OwnedEventId::try_from(s).map_err(|_| fail(400, "M_INVALID_PARAM", "Invalid event id in prev_states"))
    };
    prev_states
        .into_iter()
        .map(|(prev, state)| {
            Ok(GapState {
                prev: id(prev)?,
                state_before: state.into_iter().map(id).collect::<Result<_, _>>()?,
            })
        })
        .collect()
}

/// Verifies and inputs received events; answers each one's outcome, the forward
/// extremities and, when asked, the resulting current state (`type → state_key → event
/// id`).
#[allow(clippy::too_many_arguments)]
fn input(
    db: &dyn Sql,
    host: &Host<'_>,
    cache: &Cache,
    (kind, gaps): (InputKind, &[GapState]),
    pdus: Vec<super::protocol::RawPdu>,
    keys: &std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
    with_state: bool,
) -> Result<Value, RoomFailure> {
    let t0 = (host.clock_ms)();
    let mut key_map = ruma::signatures::PublicKeyMap::new();
    for (server, ids) in keys {
        for (id, key) in ids {
            let bytes = crate::core::keys::decode_base64(key)
                .ok_or_else(|| fail(400, "M_INVALID_PARAM", "Invalid public key"))?;
            key_map
                .entry(server.clone())
                .or_default()
                .insert(id.clone(), ruma::serde::Base64::new(bytes));
        }
    }
    let mut parsed = Vec::with_capacity(pdus.len());
    for p in &pdus {
        parsed.push(
            crate::core::canonical::parse_pdu(p.text())
                .map_err(|e| fail(400, "M_BAD_JSON", format!("not a PDU: {e}")))?,
        );
    }
    drop(pdus);
    let existing = room_info(db)?;
    let version = match &existing {
        Some(info) => info.version.to_string(),
        None => parsed
            .first()
            .filter(|p| matches!(p.get("type"), Some(ruma::CanonicalJsonValue::String(t)) if t == "m.room.create"))
            .and_then(|p| match p.get("content") {
                Some(ruma::CanonicalJsonValue::Object(c)) => match c.get("room_version") {
                    Some(ruma::CanonicalJsonValue::String(v)) => Some(v.clone()),
                    _ => None,
                },
                _ => None,
            })
            .unwrap_or_else(|| "1".to_owned()),
    };
    let (_, rules) = crate::core::room_version::parse(&version).ok_or(RoomError::UnsupportedVersion)?;
    let objects: Vec<_> = parsed.into_iter().map(|object| (object, &rules)).collect();
    let t1 = (host.clock_ms)();
    let checked = crate::core::verify::check_pdus_batch(objects, &key_map);
    let t2 = (host.clock_ms)();
    let mut room: Option<Engine<'_>> = match existing {
        Some(_) => Some(Engine::open(db, cache)?),
        None => None,
    };
    if let Some(engine) = room.as_mut() {
        engine.batch_writes();
    }
    if let (Some(engine), InputKind::New) = (room.as_mut(), kind) {
        let ids: Vec<String> = checked
            .iter()
            .filter_map(|c| c.as_ref().ok())
            .map(|c| c.pdu.event_id().to_string())
            .collect();
        engine.prefetch_new(&ids)?;
    }
    let mut results = Vec::with_capacity(checked.len());
    for item in checked {
        let pdu = match item {
            Ok(c) => c.pdu,
            Err(e) => {
                results.push(json!({ "error": e.0 }));
                continue;
            }
        };
        let event_id = pdu.event_id().to_string();
        let outcome = match room.as_mut() {
            None if pdu.kind() == "m.room.create" => {
                let (mut engine, outcome) = Engine::create(db, cache, pdu)?;
                engine.batch_writes();
                room = Some(engine);
                Ok(outcome)
            }
            None => Err(RoomError::NoRoom),
            Some(engine) => match kind {
                InputKind::New => engine.input_new_with_gaps(pdu, gaps),
                InputKind::Outlier => engine.input_outlier(pdu),
            },
        };
        results.push(match outcome {
            Ok(Outcome::Accepted { stream_pos }) => json!({ "event_id": event_id, "accepted": stream_pos }),
            Ok(Outcome::SoftFailed(why)) => json!({ "event_id": event_id, "soft_failed": why }),
            Ok(Outcome::Rejected(why)) => json!({ "event_id": event_id, "rejected": why }),
            Ok(Outcome::Stored) => json!({ "event_id": event_id, "stored": true }),
            Err(RoomError::MissingPrev(ids)) => json!({ "event_id": event_id, "missing_prev": ids }),
            Err(RoomError::MissingAuth(ids)) => json!({ "event_id": event_id, "missing_auth": ids }),
            Err(RoomError::MissingState(ids)) => json!({ "event_id": event_id, "missing_state": ids }),
            Err(RoomError::WrongRoom) => {
                json!({ "event_id": event_id, "error": "event belongs to another room" })
            }
            Err(e) => {
                // What earlier events left pending is theirs and complete: keep it.
                if let Some(engine) = &room {
                    engine.flush()?;
                }
                return Err(e.into());
            }
        });
    }
    let Some(mut room) = room else {
        return Err(not_found());
    };
    room.flush()?;
    let t3 = (host.clock_ms)();
    let mut answer = json!({
        "results": results,
        "extremities": room.extremities()?,
        "stream_pos": store::latest_stream_pos(db).map_err(RoomError::from)?,
        "database_bytes": db.database_size(),
        "timing_ms": { "parse": t1 - t0, "verify": t2 - t1, "input": t3 - t2 },
    });
    if with_state {
        let mut current = Map::new();
        for ((t, k), pdu) in room.current_state_pdus()? {
            let entry = current.entry(t.to_string()).or_insert_with(|| json!({}));
            entry[k] = json!(pdu.event_id());
        }
        answer["current_state"] = Value::Object(current);
    }
    Ok(answer)
}

fn create_room(
    db: &dyn Sql,
    host: &Host<'_>,
    cache: &Cache,
    create: Value,
    sender: &str,
    steps: Vec<EventSpec>,
) -> Result<Value, RoomFailure> {
    let sender = parse_user(sender)?;
    if room_info(db)?.is_some() {
        return Err(RoomError::Exists.into());
    }
    let version = create["content"]["room_version"]
        .as_str()
        .unwrap_or("1")
        .to_owned();
    let (_, rules) = crate::core::room_version::parse(&version).ok_or(RoomError::UnsupportedVersion)?;
    let object = serde_json::from_value(create).map_err(|e| fail(400, "M_BAD_JSON", e.to_string()))?;
    // Our own event, checked like any other.
    let mut keys = ruma::signatures::PublicKeyMap::new();
    let key_bytes = crate::core::keys::decode_base64(&host.key.public_key_base64()).unwrap_or_default();
    keys.entry(host.server_name.to_owned())
        .or_default()
        .insert(host.key.key_id(), ruma::serde::Base64::new(key_bytes));
    let checked = check_pdu(object, &rules, &keys).map_err(|e| fail(400, "M_BAD_JSON", e.to_string()))?;
    let (mut room, outcome) = Engine::create(db, cache, checked.pdu)?;
    if let Outcome::Rejected(why) = outcome {
        return Err(forbidden(why));
    }
    for step in steps {
        room.send(sender, new_event(step)?, host.signer())?;
    }
    Ok(json!({ "room_id": room.info.room_id }))
}

#[allow(clippy::too_many_arguments)]
fn send(
    db: &dyn Sql,
    host: &Host<'_>,
    cache: &Cache,
    sender: &str,
    device_id: Option<&str>,
    txn_id: Option<&str>,
    spec: EventSpec,
) -> Result<Value, RoomFailure> {
    let sender_id = parse_user(sender)?;
    let mut room = Engine::open(db, cache)?;
    if let (Some(device), Some(txn)) = (device_id, txn_id) {
        if let Some(event_id) = store::txn_event(db, sender, device, txn).map_err(RoomError::from)? {
            return Ok(json!({ "event_id": event_id }));
        }
    }
    let (pdu, stream_pos) = room.send(sender_id, new_event(spec)?, host.signer())?;
    if let (Some(device), Some(txn)) = (device_id, txn_id) {
        store::set_txn(db, sender, device, txn, pdu.event_id().as_str()).map_err(RoomError::from)?;
    }
    Ok(json!({ "event_id": pdu.event_id(), "stream_pos": stream_pos }))
}
