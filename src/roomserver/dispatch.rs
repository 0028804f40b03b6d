//! Answers `RoomRequest`s against the room's database: the performs (create, send) and
//! the queries, with the history-visibility checks a client read needs. Synchronous,
//! so the Durable Object answers a request in one section.

use ruma::{OwnedEventId, UserId};
use serde_json::{json, Value};

use crate::core::builder::{NewEvent, Signer};
use crate::core::keys::SigningKey;
use crate::core::verify::check_pdu;
use crate::storage::sql::Sql;

use super::engine::{room_info, Cache, Engine, Outcome, RoomError};
use super::protocol::{EventSpec, InputKind, RoomFailure, RoomRequest};
use super::store;

mod federation;
mod input;
mod invites;
mod read;
use read::query;
pub(super) use read::{as_shown, may_see, state_nids_at, token};

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
            RoomError::MissingAuth(ids) | RoomError::MissingPrev(ids) | RoomError::MissingState(ids) => fail(
                400,
                "M_INVALID_PARAM",
                format!(
                    "Events are missing: {}",
                    ids.iter().map(|i| i.as_str()).collect::<Vec<_>>().join(", ")
                ),
            ),
            RoomError::WrongRoom => fail(400, "M_INVALID_PARAM", "An event belongs to another room"),
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
            snapshot,
            origin,
        } => match (kind, snapshot) {
            _ if origin.as_deref().is_some_and(|o| !server_allowed(db, cache, o)) => Err(fail(
                403,
                "M_FORBIDDEN",
                "The room's server ACL denies the sending server",
            )),
            (InputKind::Bootstrap, Some(snapshot)) => {
                input::bootstrap(db, host, cache, pdus, snapshot, &keys, state)
            }
            (InputKind::Bootstrap, None) => {
                Err(fail(400, "M_INVALID_PARAM", "A bootstrap needs its snapshot"))
            }
            (kind, _) => {
                let gaps = input::gap_states(prev_states)?;
                input::input(db, host, cache, (kind, &gaps), pdus, &keys, state)
            }
        },
        RoomRequest::LogRecords { from, limit } => {
            let records = store::log_records(db, from, i64::from(limit)).map_err(RoomError::from)?;
            Ok(json!({ "records": records.into_iter().map(|(_, text)| text).collect::<Vec<_>>() }))
        }
        RoomRequest::ReceiveInvite {
            event_id,
            pdu,
            room_version,
            invite_state,
            keys,
            origin,
        } => invites::receive(
            db,
            host,
            cache,
            (&event_id, pdu),
            &room_version,
            invite_state,
            &keys,
            &origin,
        ),
        RoomRequest::KeepKnock {
            user_id,
            event_id,
            room_version,
            event,
            knock_state,
        } => match room_info(db)? {
            Some(_) => Err(fail(400, "M_INVALID_PARAM", "The room is held here")),
            None => invites::keep_knock(
                db,
                cache,
                (&user_id, &event_id, &room_version),
                &event,
                knock_state,
            ),
        },
        RoomRequest::EndInvite { user_id, event_id } => match room_info(db)? {
            Some(_) => Err(fail(400, "M_INVALID_PARAM", "The room is held here")),
            None => {
                let room_id = store::remote_invite(db, &user_id)
                    .map_err(RoomError::from)?
                    .and_then(|k| serde_json::from_str::<Value>(&k.event).ok())
                    .and_then(|e| e["room_id"].as_str().map(str::to_owned))
                    .unwrap_or_default();
                invites::end(db, cache, &room_id, &user_id, &event_id)
            }
        },
        RoomRequest::RescindInvite { pdu, keys, origin } => match room_info(db)? {
            Some(_) => Err(fail(400, "M_INVALID_PARAM", "The room is held here")),
            None => invites::rescind(db, cache, pdu, &keys, &origin),
        },
        other => match Engine::open(db, cache) {
            Ok(mut room) => query(&mut room, host, other),
            // A room not held here may still hold an invite from another server.
            Err(RoomError::NoRoom) => invites::query(db, &other),
            Err(e) => Err(e.into()),
        },
    }
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

/// Whether the room's current server ACL lets `server` in (a room not begun has none).
fn server_allowed(db: &dyn Sql, cache: &Cache, server: &str) -> bool {
    if !matches!(super::engine::room_info(db), Ok(Some(_))) {
        return true;
    }
    let Ok(room) = Engine::open(db, cache) else {
        return true;
    };
    let acl = room.current_entry(&ruma::events::StateEventType::from("m.room.server_acl"), "");
    match acl {
        Ok(acl) => crate::core::acl::allows(acl.map(|p| p.content()).as_ref(), server),
        Err(_) => true,
    }
}
