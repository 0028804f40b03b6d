//! Input of received events: verified as a batch, then each through the pipeline (new
//! events, outliers), or a room started from a join's snapshot (`bootstrap`).

use std::collections::BTreeMap;

use ruma::{CanonicalJsonObject, OwnedEventId};
use serde_json::{json, Map, Value};

use crate::storage::sql::Sql;

use super::super::engine::{room_info, Cache, Engine, GapState, Outcome, RoomError};
use super::super::protocol::{InputKind, RawPdu, RoomFailure, Snapshot};
use super::super::store;
use super::{fail, not_found, Host};

pub(super) type Keys = BTreeMap<String, BTreeMap<String, String>>;

/// The origin servers' keys as the verifier takes them.
pub(super) fn key_map(keys: &Keys) -> Result<ruma::signatures::PublicKeyMap, RoomFailure> {
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
    Ok(key_map)
}

fn parse_all(pdus: Vec<RawPdu>) -> Result<Vec<CanonicalJsonObject>, RoomFailure> {
    pdus.iter()
        .map(|p| {
            crate::core::canonical::parse_pdu(p.text())
                .map_err(|e| fail(400, "M_BAD_JSON", format!("not a PDU: {e}")))
        })
        .collect()
}

/// One event's outcome as answered.
fn outcome_json(event_id: &str, outcome: Result<Outcome, RoomError>) -> Result<Value, RoomError> {
    Ok(match outcome {
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
        Err(e) => return Err(e),
    })
}

/// The answer to an input: each event's outcome, the forward extremities, the stream
/// head and, when asked, the current state (`type → state_key → event id`).
fn answer(
    room: &mut Engine<'_>,
    db: &dyn Sql,
    results: Vec<Value>,
    timing: Value,
    with_state: bool,
) -> Result<Value, RoomFailure> {
    let mut answer = json!({
        "results": results,
        "extremities": room.extremities()?,
        "stream_pos": store::latest_stream_pos(db).map_err(RoomError::from)?,
        "database_bytes": db.database_size(),
        "timing_ms": timing,
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

/// The gap states of an input, parsed.
pub(super) fn gap_states(prev_states: BTreeMap<String, Vec<String>>) -> Result<Vec<GapState>, RoomFailure> {
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
pub(super) fn input(
    db: &dyn Sql,
    host: &Host<'_>,
    cache: &Cache,
    (kind, gaps): (InputKind, &[GapState]),
    pdus: Vec<RawPdu>,
    keys: &Keys,
    with_state: bool,
) -> Result<Value, RoomFailure> {
    let t0 = (host.clock_ms)();
    let key_map = key_map(keys)?;
    let parsed = parse_all(pdus)?;
    let existing = room_info(db)?;
    let version = match &existing {
        Some(info) => info.version.to_string(),
        // A new room starts from its create event (or a bootstrap).
        None => snapshot_version(&parsed[..parsed.len().min(1)]).ok_or_else(not_found)?,
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
    if let Some(engine) = room.as_mut() {
        let ids: Vec<String> = checked
            .iter()
            .filter_map(|c| c.as_ref().ok())
            .map(|c| c.pdu.event_id().to_string())
            .collect();
        engine.prefetch_new(&ids)?;
    }
    if kind == InputKind::Backfill {
        let Some(mut room) = room else {
            return Err(not_found());
        };
        return backfill(
            &mut room,
            db,
            checked,
            gaps,
            with_state,
            (t0, t1, t2, host.clock_ms),
        );
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
            None if pdu.kind() == "m.room.create" && kind == InputKind::Outlier => {
                // A bootstrap in pieces begins here.
                let mut engine = Engine::begin(db, cache, &pdu)?;
                engine.batch_writes();
                let outcome = engine.input_outlier(pdu);
                room = Some(engine);
                outcome
            }
            None if pdu.kind() == "m.room.create" => {
                let (mut engine, outcome) = Engine::create(db, cache, pdu)?;
                engine.batch_writes();
                room = Some(engine);
                Ok(outcome)
            }
            None => Err(RoomError::NoRoom),
            Some(engine) => match kind {
                InputKind::New | InputKind::Bootstrap | InputKind::Backfill => {
                    engine.input_new_with_gaps(pdu, gaps)
                }
                InputKind::Outlier => engine.input_outlier(pdu),
            },
        };
        match outcome_json(&event_id, outcome) {
            Ok(result) => results.push(result),
            Err(e) => {
                // What earlier events left pending is theirs and complete: keep it.
                if let Some(engine) = &room {
                    engine.flush()?;
                }
                return Err(e.into());
            }
        }
    }
    let Some(mut room) = room else {
        return Err(not_found());
    };
    room.flush()?;
    let t3 = (host.clock_ms)();
    let mut answer = answer(
        &mut room,
        db,
        results,
        json!({ "parse": t1 - t0, "verify": t2 - t1, "input": t3 - t2 }),
        with_state,
    )?;
    // The edge names refused events by id (it computes them with this version's rules).
    answer["room_version"] = json!(version);
    Ok(answer)
}

/// History input as one batch (`Engine::input_backfill` orders it); the answer lists
/// each event's outcome in the order given.
fn backfill(
    room: &mut Engine<'_>,
    db: &dyn Sql,
    checked: Vec<Result<crate::core::verify::Checked, crate::core::verify::VerifyError>>,
    gaps: &[GapState],
    with_state: bool,
    (t0, t1, t2, clock): (f64, f64, f64, fn() -> f64),
) -> Result<Value, RoomFailure> {
    let mut order = Vec::with_capacity(checked.len());
    let mut pdus = Vec::new();
    for item in checked {
        match item {
            Ok(c) => {
                order.push(Ok(c.pdu.event_id().to_string()));
                pdus.push(c.pdu);
            }
            Err(e) => order.push(Err(e.0)),
        }
    }
    let outcomes = room.input_backfill(pdus, gaps);
    room.flush()?;
    let mut outcomes = outcomes?;
    let mut results = Vec::with_capacity(order.len());
    for item in order {
        results.push(match item {
            Ok(id) => match outcomes.remove(&id) {
                Some(outcome) => outcome_json(&id, outcome)?,
                None => json!({ "event_id": id, "error": "given twice" }),
            },
            Err(e) => json!({ "error": e }),
        });
    }
    let t3 = clock();
    answer(
        room,
        db,
        results,
        json!({ "parse": t1 - t0, "verify": t2 - t1, "input": t3 - t2 }),
        with_state,
    )
}

/// The room version a snapshot's create event names.
fn snapshot_version(objects: &[CanonicalJsonObject]) -> Option<String> {
    objects.iter().find_map(|p| {
        let is_create =
            matches!(p.get("type"), Some(ruma::CanonicalJsonValue::String(t)) if t == "m.room.create");
        match (is_create, p.get("content")) {
            (true, Some(ruma::CanonicalJsonValue::Object(c))) => match c.get("room_version") {
                Some(ruma::CanonicalJsonValue::String(v)) => Some(v.clone()),
                _ => Some("1".to_owned()),
            },
            _ => None,
        }
    })
}

/// Starts the room from a join (`pdus`, one event) and its snapshot, all verified in one
/// batch. Snapshot events that fail verification are left out (and with them what
/// depends on them); a join that fails, or that the snapshot does not allow, starts
/// nothing.
pub(super) fn bootstrap(
    db: &dyn Sql,
    host: &Host<'_>,
    cache: &Cache,
    pdus: Vec<RawPdu>,
    snapshot: Snapshot,
    keys: &Keys,
    with_state: bool,
) -> Result<Value, RoomFailure> {
    let t0 = (host.clock_ms)();
    if pdus.len() != 1 {
        return Err(fail(400, "M_INVALID_PARAM", "A bootstrap takes one join event"));
    }
    let key_map = key_map(keys)?;
    let (state_len, chain_len) = (snapshot.state.len(), snapshot.auth_chain.len());
    let stored_state = snapshot
        .state_ids
        .into_iter()
        .map(OwnedEventId::try_from)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| fail(400, "M_INVALID_PARAM", "Invalid event id in state_ids"))?;
    let mut all = parse_all(pdus)?;
    all.extend(parse_all(snapshot.state)?);
    all.extend(parse_all(snapshot.auth_chain)?);
    // A room begun by outliers knows its version; otherwise the snapshot's create says.
    let version = match room_info(db)? {
        Some(info) => info.version.to_string(),
        None => snapshot_version(&all[1..])
            .ok_or_else(|| fail(400, "M_INVALID_PARAM", "The snapshot has no create event"))?,
    };
    let (_, rules) = crate::core::room_version::parse(&version).ok_or(RoomError::UnsupportedVersion)?;
    let t1 = (host.clock_ms)();
    let mut checked =
        crate::core::verify::check_pdus_batch(all.into_iter().map(|o| (o, &rules)).collect(), &key_map)
            .into_iter();
    let t2 = (host.clock_ms)();
    let join = match checked.next() {
        Some(Ok(c)) if c.pdu.kind() == "m.room.member" => c.pdu,
        Some(Ok(_)) => {
            return Err(fail(
                400,
                "M_INVALID_PARAM",
                "A bootstrap starts from a member event",
            ))
        }
        Some(Err(e)) => return Err(fail(400, "M_BAD_JSON", format!("the join event: {}", e.0))),
        None => return Err(fail(400, "M_INVALID_PARAM", "A bootstrap takes one join event")),
    };
    let mut dropped = 0;
    let mut keep = |item: Result<crate::core::verify::Checked, _>| match item {
        Ok(c) => Some(c.pdu),
        Err(_) => {
            dropped += 1;
            None
        }
    };
    let state: Vec<_> = checked.by_ref().take(state_len).filter_map(&mut keep).collect();
    let chain: Vec<_> = checked.take(chain_len).filter_map(&mut keep).collect();
    let event_id = join.event_id().to_string();
    let (mut room, outcome) = Engine::bootstrap(db, cache, join, (state, stored_state), chain)?;
    let t3 = (host.clock_ms)();
    let mut answer = answer(
        &mut room,
        db,
        vec![outcome_json(&event_id, Ok(outcome))?],
        json!({ "parse": t1 - t0, "verify": t2 - t1, "input": t3 - t2 }),
        with_state,
    )?;
    answer["dropped"] = json!(dropped);
    Ok(answer)
}
