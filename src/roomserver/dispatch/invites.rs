//! Invites from other servers. An invite of a local user into a room this server does
//! not hold is verified, countersigned and kept (`store::RemoteInvite`) with the
//! stripped state the inviting server sent; the room then answers the invitee's
//! membership and /sync from it until they join (the room starts from the join) or
//! decline. A local user's knock on a room elsewhere is kept the same way. In a room this server holds the invite is only countersigned: it goes
//! through the input like any received event.

use serde_json::{json, Value};

use crate::core::event_hash::hash_and_sign;
use crate::core::verify::{check_pdu, Verified};
use crate::log::{LogRecord, StateChange};
use crate::storage::sql::Sql;

use super::super::engine::{room_info, Cache, RoomError};
use super::super::protocol::{RawPdu, RoomFailure, RoomRequest};
use super::super::store::{self, OutboxRows, RemoteInvite};
use super::{fail, input::Keys, Host};

/// Stripped state events kept from an invite at most.
const MAX_STRIPPED: usize = 50;
/// Bytes of stripped state kept at most.
const MAX_STRIPPED_BYTES: usize = 64 * 1024;

fn sql(e: crate::storage::sql::SqlError) -> RoomFailure {
    RoomError::from(e).into()
}

fn incompatible(version: &str) -> RoomFailure {
    fail(
        400,
        "M_INCOMPATIBLE_ROOM_VERSION",
        format!("This server does not support room version {version}"),
    )
}

fn server_of(user_id: &str) -> Option<&str> {
    user_id.split_once(':').map(|(_, s)| s)
}

/// The stripped state worth keeping: objects with a type, a state key and a sender,
/// at most `MAX_STRIPPED` of them and `MAX_STRIPPED_BYTES` in all.
fn stripped(invite_state: Vec<Value>) -> Vec<Value> {
    let mut bytes = 0;
    invite_state
        .into_iter()
        .filter(|e| e["type"].is_string() && e["state_key"].is_string() && e["content"].is_object())
        .map(|e| {
            json!({
                "type": e["type"],
                "state_key": e["state_key"],
                "sender": e["sender"],
                "content": e["content"],
            })
        })
        .take(MAX_STRIPPED)
        .take_while(|e| {
            bytes += e.to_string().len();
            bytes <= MAX_STRIPPED_BYTES
        })
        .collect()
}

/// Answers `RoomRequest::ReceiveInvite`.
#[allow(clippy::too_many_arguments)]
pub(super) fn receive(
    db: &dyn Sql,
    host: &Host<'_>,
    cache: &Cache,
    (named, pdu): (&str, RawPdu),
    version: &str,
    invite_state: Vec<Value>,
    keys: &Keys,
    origin: &str,
) -> Result<Value, RoomFailure> {
    let (_, rules) = crate::core::room_version::parse(version).ok_or_else(|| incompatible(version))?;
    let info = room_info(db)?;
    if let Some(info) = &info {
        if info.version.as_str() != version {
            return Err(fail(400, "M_INVALID_PARAM", "The room has another version"));
        }
    }
    let mut object = crate::core::canonical::parse_pdu(pdu.text())
        .map_err(|e| fail(400, "M_BAD_JSON", format!("not a PDU: {e}")))?;
    let key_map = super::input::key_map(keys)?;
    let checked = check_pdu(object.clone(), &rules, &key_map)
        .map_err(|e| fail(403, "M_FORBIDDEN", format!("The invite does not verify: {}", e.0)))?;
    if checked.verified != Verified::All {
        return Err(fail(
            400,
            "M_BAD_JSON",
            "The invite's content hash does not match",
        ));
    }
    let invite = checked.pdu;
    let invitee = invite.state_key().unwrap_or_default().to_owned();
    let sender = invite.sender().to_string();
    if invite.kind() != "m.room.member"
        || invite.content()["membership"] != "invite"
        || server_of(&invitee) != Some(host.server_name)
    {
        return Err(fail(
            400,
            "M_INVALID_PARAM",
            "Not an invite of a user of this server",
        ));
    }
    if server_of(&sender) != Some(origin) {
        return Err(fail(
            403,
            "M_FORBIDDEN",
            "The inviter is not on the sending server",
        ));
    }
    let event_id = invite.event_id().to_string();
    if event_id != named {
        return Err(fail(
            400,
            "M_INVALID_PARAM",
            "The event's id is not the one in the path",
        ));
    }
    if let Some(kept) = store::remote_invite(db, &invitee).map_err(sql)? {
        if kept.event_id == event_id && info.is_none() {
            // The same invite again: the same answer.
            let event: Value =
                serde_json::from_str(&kept.event).map_err(|e| fail(500, "M_UNKNOWN", e.to_string()))?;
            return Ok(json!({ "event": event }));
        }
    }
    hash_and_sign(&mut object, &rules, host.server_name, host.key)
        .map_err(|e| fail(400, "M_BAD_JSON", e.to_string()))?;
    let event = serde_json::to_value(&object).map_err(|e| fail(500, "M_UNKNOWN", e.to_string()))?;
    if info.is_some() {
        return Ok(json!({ "event": event, "held": true }));
    }
    let stream_pos = store::latest_stream_pos(db).map_err(sql)? + 1;
    let kept = RemoteInvite {
        user_id: invitee.clone(),
        event_id: event_id.clone(),
        sender: sender.clone(),
        membership: "invite".into(),
        stream_pos,
        room_version: version.to_owned(),
        event: event.to_string(),
        invite_state: Value::Array(stripped(invite_state)).to_string(),
    };
    store::put_remote_invite(db, &kept).map_err(sql)?;
    record(db, invite.room_id().as_str(), &kept)?;
    cache.clear();
    Ok(json!({ "event": event }))
}

/// Answers `RoomRequest::KeepKnock`: the user's knock through another server, kept
/// with the stripped state it answered.
pub(super) fn keep_knock(
    db: &dyn Sql,
    cache: &Cache,
    (user_id, event_id, version): (&str, &str, &str),
    event: &Value,
    knock_state: Vec<Value>,
) -> Result<Value, RoomFailure> {
    let Some(room_id) = event["room_id"].as_str() else {
        return Err(fail(400, "M_INVALID_PARAM", "The knock needs its room id"));
    };
    if event["state_key"].as_str() != Some(user_id) || event["content"]["membership"] != "knock" {
        return Err(fail(400, "M_INVALID_PARAM", "Not the user's knock"));
    }
    let stream_pos = store::latest_stream_pos(db).map_err(sql)? + 1;
    let kept = RemoteInvite {
        user_id: user_id.to_owned(),
        event_id: event_id.to_owned(),
        sender: user_id.to_owned(),
        membership: "knock".into(),
        stream_pos,
        room_version: version.to_owned(),
        event: event.to_string(),
        invite_state: Value::Array(stripped(knock_state)).to_string(),
    };
    store::put_remote_invite(db, &kept).map_err(sql)?;
    record(db, room_id, &kept)?;
    cache.clear();
    Ok(json!({ "event_id": event_id, "stream_pos": stream_pos }))
}

/// Answers `RoomRequest::RescindInvite`: the leave (or ban) of the invitee by a user of
/// one of the room's servers the kept invite names, verified, ends the invite or knock
/// under the event's id. Anything else is refused and changes nothing.
pub(super) fn rescind(
    db: &dyn Sql,
    cache: &Cache,
    pdu: RawPdu,
    keys: &Keys,
    origin: &str,
) -> Result<Value, RoomFailure> {
    let object = crate::core::canonical::parse_pdu(pdu.text())
        .map_err(|e| fail(400, "M_BAD_JSON", format!("not a PDU: {e}")))?;
    let user_id = object
        .get("state_key")
        .and_then(ruma::CanonicalJsonValue::as_str)
        .unwrap_or_default()
        .to_owned();
    let Some(kept) = store::remote_invite(db, &user_id).map_err(sql)? else {
        return Err(fail(404, "M_NOT_FOUND", "No invite to end"));
    };
    if kept.membership != "invite" && kept.membership != "knock" {
        return Err(fail(404, "M_NOT_FOUND", "No invite to end"));
    }
    let (_, rules) = crate::core::room_version::parse(&kept.room_version)
        .ok_or_else(|| incompatible(&kept.room_version))?;
    let key_map = super::input::key_map(keys)?;
    let checked = check_pdu(object, &rules, &key_map)
        .map_err(|e| fail(403, "M_FORBIDDEN", format!("The event does not verify: {}", e.0)))?;
    let event = checked.pdu;
    let kept_event: Value = serde_json::from_str(&kept.event).unwrap_or_default();
    let sender = event.sender().to_string();
    let ends = event.kind() == "m.room.member"
        && matches!(event.content()["membership"].as_str(), Some("leave" | "ban"))
        && kept_event["room_id"].as_str() == Some(event.room_id().as_str());
    if !ends {
        return Err(fail(400, "M_INVALID_PARAM", "Not an end of the user's invite"));
    }
    if server_of(&sender) != Some(origin) || !resident_servers(&kept).iter().any(|s| s == origin) {
        return Err(fail(
            403,
            "M_FORBIDDEN",
            "The invite's room is not on the sending server",
        ));
    }
    let room_id = event.room_id().to_string();
    end(db, cache, &room_id, &user_id, event.event_id().as_str())
}

/// Answers `RoomRequest::EndInvite`.
pub(super) fn end(
    db: &dyn Sql,
    cache: &Cache,
    room_id: &str,
    user_id: &str,
    event_id: &str,
) -> Result<Value, RoomFailure> {
    let Some(mut kept) = store::remote_invite(db, user_id).map_err(sql)? else {
        return Err(fail(404, "M_NOT_FOUND", "No invite to end"));
    };
    if kept.membership != "invite" && kept.membership != "knock" {
        return Ok(json!({ "stream_pos": kept.stream_pos }));
    }
    kept.stream_pos = store::latest_stream_pos(db).map_err(sql)? + 1;
    kept.membership = "leave".into();
    kept.event_id = event_id.to_owned();
    kept.sender = user_id.to_owned();
    store::put_remote_invite(db, &kept).map_err(sql)?;
    record(db, room_id, &kept)?;
    cache.clear();
    Ok(json!({ "event_id": event_id, "stream_pos": kept.stream_pos }))
}

/// The log record of an invite's change: the invitee's membership, for their stream and
/// the projections.
fn record(db: &dyn Sql, room_id: &str, kept: &RemoteInvite) -> Result<(), RoomFailure> {
    let record = LogRecord::Event {
        room_id: room_id.to_owned(),
        stream_pos: kept.stream_pos as u64,
        event_id: kept.event_id.clone(),
        sender: kept.sender.clone(),
        event_type: "m.room.member".into(),
        state_key: Some(kept.user_id.clone()),
        membership: Some(kept.membership.clone()),
        state: vec![StateChange {
            event_type: "m.room.member".into(),
            state_key: kept.user_id.clone(),
            event_id: Some(kept.event_id.clone()),
            membership: Some(kept.membership.clone()),
        }],
        delivered: false,
    };
    let payload = serde_json::to_string(&record).map_err(|e| fail(500, "M_UNKNOWN", e.to_string()))?;
    let mut rows = OutboxRows::default();
    rows.push(kept.stream_pos, payload);
    rows.write(db).map_err(sql)
}

/// The servers that can take the user's leave of a room not held here: the inviter's,
/// then those of the senders of the stripped state the room's server sent (for a knock,
/// the only clue), in order, each once, this server's own users' servers included only
/// as the invite named them.
fn resident_servers(kept: &RemoteInvite) -> Vec<String> {
    let state: Vec<Value> = serde_json::from_str(&kept.invite_state).unwrap_or_default();
    let senders = std::iter::once(kept.sender.as_str())
        .filter(|_| kept.membership != "knock")
        .chain(state.iter().filter_map(|e| e["sender"].as_str()));
    let mut servers: Vec<String> = Vec::new();
    for sender in senders {
        if let Some(server) = server_of(sender) {
            if !servers.iter().any(|s| s == server) {
                servers.push(server.to_owned());
            }
        }
    }
    servers
}

/// The questions a room this server does not hold can answer: an invitee's membership
/// and /sync slice from their kept invite. Anything else: the room is not here.
pub(super) fn query(db: &dyn Sql, request: &RoomRequest) -> Result<Value, RoomFailure> {
    let user = match request {
        RoomRequest::Membership { user_id } | RoomRequest::SyncSlice { user_id, .. } => user_id,
        _ => return Err(RoomError::NoRoom.into()),
    };
    let kept = store::remote_invite(db, user).map_err(sql)?;
    let Some(kept) = kept else {
        return Err(RoomError::NoRoom.into());
    };
    if let RoomRequest::Membership { .. } = request {
        return Ok(json!({
            "membership": kept.membership,
            "event_id": kept.event_id,
            "stream_pos": kept.stream_pos,
            "room_version": kept.room_version,
            "sender": kept.sender,
            "remote_invite": true,
            "servers": resident_servers(&kept),
        }));
    }
    if kept.membership != "invite" && kept.membership != "knock" {
        return Ok(json!({
            "membership": kept.membership,
            "timeline": { "events": [], "limited": false, "prev_batch": super::token(kept.stream_pos) },
            "state": [],
        }));
    }
    let mut events: Vec<Value> = serde_json::from_str(&kept.invite_state).unwrap_or_default();
    let invite: Value = serde_json::from_str(&kept.event).unwrap_or_default();
    // The inviter's own membership is not the invitee's business; the invite is.
    events.retain(|e| !(e["type"] == "m.room.member" && e["state_key"] == json!(kept.user_id)));
    events.push(json!({
        "type": "m.room.member",
        "state_key": kept.user_id,
        "sender": kept.sender,
        "content": invite["content"],
        "event_id": kept.event_id,
        "origin_server_ts": invite["origin_server_ts"],
    }));
    Ok(json!({ "membership": kept.membership, "invite_state": events }))
}
