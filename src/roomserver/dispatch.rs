//! Answers `RoomRequest`s against the room's database: the performs (create, send) and
//! the queries, with the history-visibility checks a client read needs. Synchronous,
//! so the Durable Object answers a request in one section.

use ruma::{OwnedEventId, UserId};
use serde_json::{json, Map, Value};

use crate::core::builder::{NewEvent, Signer};
use crate::core::keys::SigningKey;
use crate::core::pdu::Pdu;
use crate::core::verify::check_pdu;
use crate::storage::sql::Sql;

use super::engine::{membership_of, room_info, Cache, Engine, Outcome, RoomError};
use super::ephemeral;
use super::protocol::{Dir, EventSpec, InputKind, RoomFailure, RoomRequest};
use super::store::{self, EventRow};

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
        RoomRequest::Input { kind, pdus, keys } => input(db, host, cache, kind, pdus, &keys),
        other => {
            let mut room = Engine::open(db, cache)?;
            query(&mut room, host, other)
        }
    }
}

/// Verifies and inputs received events; answers each one's outcome, the forward
/// extremities and the resulting current state (`type → state_key → event id`).
fn input(
    db: &dyn Sql,
    host: &Host<'_>,
    cache: &Cache,
    kind: InputKind,
    pdus: Vec<Value>,
    keys: &std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
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
    let existing = room_info(db)?;
    let version = match &existing {
        Some(info) => info.version.to_string(),
        None => pdus
            .first()
            .filter(|p| p["type"] == "m.room.create")
            .and_then(|p| p["content"]["room_version"].as_str())
            .unwrap_or("1")
            .to_owned(),
    };
    let (_, rules) = crate::core::room_version::parse(&version).ok_or(RoomError::UnsupportedVersion)?;
    let mut objects = Vec::with_capacity(pdus.len());
    for p in pdus {
        let object: ruma::CanonicalJsonObject =
            serde_json::from_value(p).map_err(|e| fail(400, "M_BAD_JSON", format!("not a PDU: {e}")))?;
        objects.push((object, &rules));
    }
    let t1 = (host.clock_ms)();
    let checked = crate::core::verify::check_pdus_batch(objects, &key_map);
    let t2 = (host.clock_ms)();
    let mut room: Option<Engine<'_>> = match existing {
        Some(_) => Some(Engine::open(db, cache)?),
        None => None,
    };
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
                let (engine, outcome) = Engine::create(db, cache, pdu)?;
                room = Some(engine);
                Ok(outcome)
            }
            None => Err(RoomError::NoRoom),
            Some(engine) => match kind {
                InputKind::New => engine.input_new(pdu),
                InputKind::Outlier => engine.input_outlier(pdu),
            },
        };
        results.push(match outcome {
            Ok(Outcome::Accepted { stream_pos }) => json!({ "event_id": event_id, "accepted": stream_pos }),
            Ok(Outcome::SoftFailed(why)) => json!({ "event_id": event_id, "soft_failed": why }),
            Ok(Outcome::Rejected(why)) => json!({ "event_id": event_id, "rejected": why }),
            Ok(Outcome::Stored) => json!({ "event_id": event_id, "stored": true }),
            Err(RoomError::MissingPrev(ids)) => json!({ "event_id": event_id, "missing_prev": ids }),
            Err(RoomError::WrongRoom) => {
                json!({ "event_id": event_id, "error": "event belongs to another room" })
            }
            Err(e) => return Err(e.into()),
        });
    }
    let t3 = (host.clock_ms)();
    let Some(mut room) = room else {
        return Err(not_found());
    };
    let mut current = Map::new();
    for ((t, k), pdu) in room.current_state_pdus()? {
        let entry = current.entry(t.to_string()).or_insert_with(|| json!({}));
        entry[k] = json!(pdu.event_id());
    }
    Ok(json!({
        "results": results,
        "extremities": room.extremities()?,
        "current_state": current,
        "stream_pos": store::latest_stream_pos(db).map_err(RoomError::from)?,
        "database_bytes": db.database_size(),
        "timing_ms": { "parse": t1 - t0, "verify": t2 - t1, "input": t3 - t2 },
    }))
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

/// What a user may read: everything up to `until` (a stream position), or nothing.
struct Visibility {
    until: Option<i64>,
}

/// The spec's history visibility, simplified to "members, and former members up to when
/// they left; anyone for `world_readable` rooms".
fn visibility(room: &mut Engine<'_>, user: &str) -> Result<Visibility, RoomFailure> {
    let state = room.current_state_pdus()?;
    let world_readable = state
        .get(&("m.room.history_visibility".into(), String::new()))
        .and_then(|p| {
            p.content()["history_visibility"]
                .as_str()
                .map(|v| v == "world_readable")
        })
        .unwrap_or(false);
    let member = state.get(&("m.room.member".into(), user.to_owned()));
    let membership = member.and_then(membership_of);
    match membership.as_deref() {
        Some("join") => Ok(Visibility { until: None }),
        _ if world_readable => Ok(Visibility { until: None }),
        Some("leave") | Some("ban") => {
            let pos = match member {
                Some(m) => store::event_by_id(room.db, m.event_id().as_str())
                    .map_err(RoomError::from)?
                    .and_then(|r| r.stream_pos),
                None => None,
            };
            // Only if they had been joined (a rejected invite shows nothing).
            let was_joined = room
                .db
                .query_opt(
                    "SELECT 1 FROM events WHERE type = 'm.room.member' AND state_key = ? AND status = 0 \
                     AND json LIKE '%\"membership\":\"join\"%' LIMIT 1",
                    crate::params![user],
                )
                .map_err(RoomError::from)?
                .is_some();
            if was_joined {
                Ok(Visibility { until: pos })
            } else {
                Err(forbidden("You are not a member of this room"))
            }
        }
        _ => Err(forbidden("You are not a member of this room")),
    }
}

/// Whether `user` may see one event, per the spec's history visibility rules: the
/// room's `m.room.history_visibility` at the event and the user's membership then.
fn may_see(room: &mut Engine<'_>, row: &EventRow, user: &str, joined_now: bool) -> Result<bool, RoomFailure> {
    // Their own membership changes are always theirs to see.
    if row.event_type == "m.room.member" && row.state_key.as_deref() == Some(user) {
        return Ok(true);
    }
    let visibility = match row.state_before {
        Some(g) => room
            .state_event_in_group(g, "m.room.history_visibility", "")?
            .and_then(|p| p.content()["history_visibility"].as_str().map(str::to_owned)),
        None => None,
    };
    let visibility = visibility.as_deref().unwrap_or("shared");
    if visibility == "world_readable" {
        return Ok(true);
    }
    let membership = match row.state_after.or(row.state_before) {
        Some(g) => room
            .state_event_in_group(g, "m.room.member", user)?
            .as_ref()
            .and_then(membership_of),
        None => None,
    };
    Ok(match membership.as_deref() {
        Some("join") => true,
        Some("invite") if visibility == "invited" || visibility == "shared" => {
            visibility == "invited" || joined_now
        }
        _ => visibility == "shared" && joined_now,
    })
}

/// Keeps the rows `user` may see.
fn visible_rows(
    room: &mut Engine<'_>,
    rows: Vec<EventRow>,
    user: &str,
) -> Result<Vec<EventRow>, RoomFailure> {
    let joined_now = room
        .current_state_pdus()?
        .get(&("m.room.member".into(), user.to_owned()))
        .and_then(membership_of)
        .as_deref()
        == Some("join");
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        if may_see(room, &row, user, joined_now)? {
            out.push(row);
        }
    }
    Ok(out)
}

fn client_event(row: &EventRow, pdu: &Pdu, now_ms: u64) -> Value {
    let age = now_ms.saturating_sub(pdu.origin_server_ts());
    let mut unsigned = Map::new();
    unsigned.insert("age".into(), json!(age));
    if let Some(by) = &row.redacted_by {
        unsigned.insert("redacted_because".into(), json!({ "event_id": by }));
    }
    pdu.to_client_event(Some(Value::Object(unsigned)))
}

/// Rows in the client format (rows whose event cannot be read are skipped).
fn client_events(room: &mut Engine<'_>, rows: &[EventRow], now_ms: u64) -> Result<Vec<Value>, RoomFailure> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        if let Some((_, pdu)) = room.pdu(&row.event_id)? {
            out.push(client_event(row, &pdu, now_ms));
        }
    }
    Ok(out)
}

pub(super) fn token(pos: i64) -> String {
    format!("r{pos}")
}

fn parse_token(t: &str) -> Result<i64, RoomFailure> {
    t.strip_prefix('r')
        .and_then(|n| n.parse::<i64>().ok())
        .filter(|n| *n >= 0)
        .ok_or_else(|| fail(400, "M_INVALID_PARAM", "Invalid pagination token"))
}

fn query(room: &mut Engine<'_>, host: &Host<'_>, req: RoomRequest) -> Result<Value, RoomFailure> {
    let latest = store::latest_stream_pos(room.db).map_err(RoomError::from)?;
    match req {
        RoomRequest::Membership { user_id } => {
            let state = room.current_state_pdus()?;
            let member = state.get(&("m.room.member".into(), user_id.clone()));
            let membership = member.and_then(membership_of);
            let event_id = member.map(|m| m.event_id().to_string());
            let stream_pos = match &event_id {
                Some(id) => store::event_by_id(room.db, id)
                    .map_err(RoomError::from)?
                    .and_then(|r| r.stream_pos),
                None => None,
            };
            Ok(json!({
                "membership": membership,
                "event_id": event_id,
                "stream_pos": stream_pos,
                "room_version": room.info.version,
            }))
        }
        RoomRequest::Summary { user_id } => {
            let state = room.current_state_pdus()?;
            let get = |t: &str, field: &str| {
                state
                    .get(&(t.into(), String::new()))
                    .and_then(|p| p.content().get(field).cloned())
            };
            let join_rule = get("m.room.join_rules", "join_rule");
            let world_readable =
                get("m.room.history_visibility", "history_visibility") == Some(json!("world_readable"));
            let public = join_rule == Some(json!("public"));
            // Previews are for public or world-readable rooms and for members.
            let member = state
                .get(&("m.room.member".into(), user_id.clone()))
                .and_then(membership_of);
            if !public && !world_readable && member.is_none() && !user_id.is_empty() {
                return Err(forbidden("You cannot see this room"));
            }
            let joined = state
                .iter()
                .filter(|((t, _), p)| {
                    t.to_string() == "m.room.member" && membership_of(p).as_deref() == Some("join")
                })
                .count();
            let room_type = state
                .get(&("m.room.create".into(), String::new()))
                .and_then(|p| p.content().get("type").cloned());
            Ok(json!({
                "room_id": room.info.room_id,
                "name": get("m.room.name", "name"),
                "topic": get("m.room.topic", "topic"),
                "avatar_url": get("m.room.avatar", "url"),
                "canonical_alias": get("m.room.canonical_alias", "alias"),
                "num_joined_members": joined,
                "world_readable": world_readable,
                "guest_can_join": get("m.room.guest_access", "guest_access") == Some(json!("can_join")),
                "join_rule": join_rule,
                "room_type": room_type,
                "room_version": room.info.version,
                "membership": member,
            }))
        }
        RoomRequest::State { user_id } => {
            let vis = visibility(room, &user_id)?;
            let state = match vis.until {
                None => room.current_state_pdus()?,
                Some(pos) => state_at(room, pos)?,
            };
            let mut events: Vec<&Pdu> = state.values().collect();
            events.sort_by(|a, b| a.kind().cmp(&b.kind()).then(a.state_key().cmp(&b.state_key())));
            let list: Vec<Value> = events.into_iter().map(|p| p.to_client_event(None)).collect();
            Ok(Value::Array(list))
        }
        RoomRequest::StateEvent {
            user_id,
            event_type,
            state_key,
        } => {
            let vis = visibility(room, &user_id)?;
            let state = match vis.until {
                None => room.current_state_pdus()?,
                Some(pos) => state_at(room, pos)?,
            };
            let pdu = state
                .get(&(event_type.as_str().into(), state_key))
                .ok_or_else(|| fail(404, "M_NOT_FOUND", "Event not found"))?;
            Ok(pdu.content())
        }
        RoomRequest::Members {
            user_id,
            at,
            membership,
            not_membership,
        } => {
            let vis = visibility(room, &user_id)?;
            let mut pos = match at.as_deref() {
                Some(t) => parse_token(t)?,
                None => latest,
            };
            if let Some(until) = vis.until {
                pos = pos.min(until);
            }
            let state = state_at(room, pos)?;
            let mut members: Vec<&Pdu> = state
                .iter()
                .filter(|((t, _), _)| t.to_string() == "m.room.member")
                .map(|(_, p)| p)
                .filter(|p| {
                    let m = membership_of(p);
                    membership.as_ref().is_none_or(|want| m.as_ref() == Some(want))
                        && not_membership.as_ref().is_none_or(|not| m.as_ref() != Some(not))
                })
                .collect();
            members.sort_by(|a, b| a.state_key().cmp(&b.state_key()));
            let chunk: Vec<Value> = members.into_iter().map(|p| p.to_client_event(None)).collect();
            Ok(json!({ "chunk": chunk }))
        }
        RoomRequest::JoinedMembers { user_id } => {
            let vis = visibility(room, &user_id)?;
            if vis.until.is_some() {
                return Err(forbidden("You are not joined to this room"));
            }
            let state = room.current_state_pdus()?;
            let mut joined = Map::new();
            for ((t, key), pdu) in &state {
                if t.to_string() == "m.room.member" && membership_of(pdu).as_deref() == Some("join") {
                    let c = pdu.content();
                    joined.insert(
                        key.clone(),
                        json!({ "display_name": c.get("displayname"), "avatar_url": c.get("avatar_url") }),
                    );
                }
            }
            Ok(json!({ "joined": joined }))
        }
        RoomRequest::Messages {
            user_id,
            from,
            to,
            dir,
            limit,
            filter,
        } => {
            let vis = visibility(room, &user_id)?;
            let ceiling = vis.until.unwrap_or(latest);
            let limit = i64::from(limit.clamp(1, 1000));
            let types = filter_list(filter.as_ref(), "types");
            let not_types = filter_list(filter.as_ref(), "not_types");
            let keep = |row: &EventRow| {
                types
                    .as_ref()
                    .is_none_or(|t| t.iter().any(|x| x == &row.event_type))
                    && !not_types
                        .as_ref()
                        .is_some_and(|t| t.iter().any(|x| x == &row.event_type))
            };
            let (rows, start, end) = match dir {
                Dir::Backward => {
                    let from = from
                        .as_deref()
                        .map(parse_token)
                        .transpose()?
                        .unwrap_or(ceiling)
                        .min(ceiling);
                    let stop = to.as_deref().map(parse_token).transpose()?.unwrap_or(0);
                    let rows = store::events_before(room.db, from + 1, limit).map_err(RoomError::from)?;
                    let rows: Vec<EventRow> = rows
                        .into_iter()
                        .filter(|r| r.stream_pos.unwrap_or(0) > stop)
                        .collect();
                    let end = rows.last().and_then(|r| r.stream_pos).map(|p| p - 1);
                    (rows, from, end.filter(|e| *e > stop))
                }
                Dir::Forward => {
                    let from = from.as_deref().map(parse_token).transpose()?.unwrap_or(0);
                    let stop = to
                        .as_deref()
                        .map(parse_token)
                        .transpose()?
                        .unwrap_or(ceiling)
                        .min(ceiling);
                    let rows = store::events_after(room.db, from, stop, limit).map_err(RoomError::from)?;
                    let end = rows.last().and_then(|r| r.stream_pos);
                    let more = end.is_some_and(|e| e < stop);
                    (rows, from, end.filter(|_| more))
                }
            };
            let kept: Vec<EventRow> = rows.iter().filter(|r| keep(r)).cloned().collect();
            let kept = visible_rows(room, kept, &user_id)?;
            let chunk = client_events(room, &kept, host.now_ms)?;
            let mut body = json!({ "chunk": chunk, "start": token(start) });
            // Lazy-loading: the member events of the chunk's senders.
            if filter
                .as_ref()
                .and_then(|f| f.get("lazy_load_members"))
                .and_then(Value::as_bool)
                == Some(true)
            {
                let senders: std::collections::BTreeSet<String> =
                    kept.iter().map(|r| r.sender.clone()).collect();
                let state = room.current_state_pdus()?;
                let members: Vec<Value> = senders
                    .iter()
                    .filter_map(|s| state.get(&("m.room.member".into(), s.clone())))
                    .map(|p| p.to_client_event(None))
                    .collect();
                body["state"] = Value::Array(members);
            }
            if let Some(end) = end {
                body["end"] = json!(token(end));
            }
            Ok(body)
        }
        RoomRequest::Context {
            user_id,
            event_id,
            limit,
        } => {
            let vis = visibility(room, &user_id)?;
            let ceiling = vis.until.unwrap_or(latest);
            let (row, pdu) = room
                .pdu(&event_id)?
                .filter(|(r, _)| r.stream_pos.is_some_and(|p| p <= ceiling))
                .ok_or_else(|| fail(404, "M_NOT_FOUND", "Event not found"))?;
            let pos = row.stream_pos.unwrap_or(0);
            let half = i64::from(limit.min(100)) / 2 + i64::from(limit.min(100)) % 2;
            let before = store::events_before(room.db, pos, half).map_err(RoomError::from)?;
            let after = store::events_after(room.db, pos, ceiling, i64::from(limit.min(100)) / 2)
                .map_err(RoomError::from)?;
            if !may_see(room, &row, &user_id, vis.until.is_none())? {
                return Err(fail(404, "M_NOT_FOUND", "Event not found"));
            }
            let before_rows = visible_rows(room, before.clone(), &user_id)?;
            let before_json = client_events(room, &before_rows, host.now_ms)?;
            let after_rows = visible_rows(room, after.clone(), &user_id)?;
            let after_json = client_events(room, &after_rows, host.now_ms)?;
            let start = before
                .last()
                .and_then(|r| r.stream_pos)
                .map_or(pos - 1, |p| p - 1);
            let end = after.last().and_then(|r| r.stream_pos).unwrap_or(pos);
            let state = state_at(room, pos)?;
            let state_json: Vec<Value> = state.values().map(|p| p.to_client_event(None)).collect();
            Ok(json!({
                "event": client_event(&row, &pdu, host.now_ms),
                "events_before": before_json,
                "events_after": after_json,
                "start": token(start.max(0)),
                "end": token(end),
                "state": state_json,
            }))
        }
        RoomRequest::Event { user_id, event_id } => {
            let vis = visibility(room, &user_id)?;
            let ceiling = vis.until.unwrap_or(latest);
            let (row, pdu) = room
                .pdu(&event_id)?
                .filter(|(r, _)| r.stream_pos.is_some_and(|p| p <= ceiling))
                .ok_or_else(|| fail(404, "M_NOT_FOUND", "Event not found"))?;
            if !may_see(room, &row, &user_id, vis.until.is_none())? {
                return Err(fail(404, "M_NOT_FOUND", "Event not found"));
            }
            Ok(client_event(&row, &pdu, host.now_ms))
        }
        RoomRequest::Create { .. } | RoomRequest::Send { .. } | RoomRequest::Input { .. } => {
            Err(fail(500, "M_UNKNOWN", "not a query"))
        }
        RoomRequest::SyncSlice {
            user_id,
            device_id,
            slice,
        } => super::sync_slice::slice(room, host, &user_id, device_id.as_deref(), &slice),
        RoomRequest::Typing {
            user_id,
            typing,
            timeout_ms,
        } => {
            joined_only(room, &user_id)?;
            ephemeral::init(room.db).map_err(RoomError::from)?;
            let serial = ephemeral::set_typing(room.db, &user_id, typing, timeout_ms, host.now_ms)
                .map_err(RoomError::from)?;
            Ok(json!({ "serial": serial }))
        }
        RoomRequest::Receipt {
            user_id,
            receipt_type,
            event_id,
            thread_id,
        } => {
            joined_only(room, &user_id)?;
            ephemeral::init(room.db).map_err(RoomError::from)?;
            room.pdu(&event_id)?
                .filter(|(r, _)| r.stream_pos.is_some())
                .ok_or_else(|| fail(404, "M_NOT_FOUND", "Event not found"))?;
            let serial = ephemeral::put_receipt(
                room.db,
                &user_id,
                &receipt_type,
                thread_id.as_deref(),
                &event_id,
                host.now_ms,
            )
            .map_err(RoomError::from)?;
            Ok(json!({ "serial": serial }))
        }
    }
}

/// Typing and receipts are for joined members only.
fn joined_only(room: &mut Engine<'_>, user: &str) -> Result<(), RoomFailure> {
    let state = room.current_state_pdus()?;
    let joined = state
        .get(&("m.room.member".into(), user.to_owned()))
        .and_then(membership_of)
        .is_some_and(|m| m == "join");
    if joined {
        Ok(())
    } else {
        Err(forbidden("You are not joined to this room"))
    }
}

fn filter_list(filter: Option<&Value>, field: &str) -> Option<Vec<String>> {
    filter?
        .get(field)?
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
}

/// The state after the last accepted event at or before stream position `pos`.
pub(super) fn state_at(room: &mut Engine<'_>, pos: i64) -> Result<super::engine::StatePdus, RoomFailure> {
    let latest = store::latest_stream_pos(room.db).map_err(RoomError::from)?;
    if pos >= latest {
        return Ok(room.current_state_pdus()?);
    }
    let row = room
        .db
        .query_opt(
            "SELECT event_id FROM events WHERE stream_pos <= ? AND status = 0 ORDER BY stream_pos DESC LIMIT 1",
            crate::params![pos],
        )
        .map_err(RoomError::from)?;
    match row {
        Some(r) => {
            let id = r.text(0).map_err(RoomError::from)?.to_owned();
            Ok(room.state_after_pdus(&id)?.unwrap_or_default())
        }
        None => Ok(Default::default()),
    }
}
