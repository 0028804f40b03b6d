//! The read side of the room: queries, with the history-visibility checks that decide
//! what a user may see.

use ruma::events::StateEventType;
use serde_json::{json, Map, Value};

use crate::core::pdu::Pdu;

use super::super::engine::{membership_of, Engine, RoomError};
use super::super::ephemeral;
use super::super::protocol::{RoomFailure, RoomRequest};
use super::super::store::{self, EventRow};
use super::{fail, forbidden, Host};

mod search;
mod spaces;
mod timeline;

/// What a user may read: everything up to `until` (a stream position), subject to
/// [`may_see`] per event; `joined` says whether they are a member now.
struct Visibility {
    until: Option<i64>,
    joined: bool,
}

/// Who may read the room at all: members, former members up to when they left, and
/// anyone for `world_readable` rooms. Each event is then checked by [`may_see`].
fn visibility(room: &mut Engine<'_>, user: &str) -> Result<Visibility, RoomFailure> {
    // Two entries of the current state, looked up by key.
    let world_readable = room
        .current_entry(&StateEventType::RoomHistoryVisibility, "")?
        .and_then(|p| {
            p.content()["history_visibility"]
                .as_str()
                .map(|v| v == "world_readable")
        })
        .unwrap_or(false);
    let member = room.current_entry(&StateEventType::RoomMember, user)?;
    let member = member.as_ref();
    let membership = member.and_then(membership_of);
    match membership.as_deref() {
        Some("join") => Ok(Visibility {
            until: None,
            joined: true,
        }),
        _ if world_readable => Ok(Visibility {
            until: None,
            joined: false,
        }),
        Some("leave") | Some("ban") => {
            let pos = match member {
                Some(m) => store::event_by_id(room.db, m.event_id().as_str())
                    .map_err(RoomError::from)?
                    .and_then(|r| r.stream_pos),
                None => None,
            };
            if store::ever_joined(room.db, user).map_err(RoomError::from)? {
                Ok(Visibility {
                    until: pos,
                    joined: false,
                })
            } else {
                Err(forbidden("You are not a member of this room"))
            }
        }
        _ => Err(forbidden("You are not a member of this room")),
    }
}

/// Whether `user` may see one event, per the spec's history visibility rules: the
/// room's `m.room.history_visibility` at the event and the user's membership then.
pub(in crate::roomserver) fn may_see(
    room: &mut Engine<'_>,
    row: &EventRow,
    user: &str,
    joined_now: bool,
) -> Result<bool, RoomFailure> {
    // Their own membership changes are always theirs to see.
    if row.event_type == "m.room.member" && row.state_key.as_deref() == Some(user) {
        return Ok(true);
    }
    let in_group = |room: &mut Engine<'_>, g: Option<i64>| -> Result<Option<String>, RoomFailure> {
        Ok(match g {
            Some(g) => room
                .state_event_in_group(g, "m.room.history_visibility", "")?
                .and_then(|p| p.content()["history_visibility"].as_str().map(str::to_owned)),
            None => None,
        })
    };
    let mut visibility = in_group(room, row.state_before)?.unwrap_or_else(|| "shared".to_owned());
    // A change of history visibility is seen under the more open of the old and the
    // new setting (so a room made world-readable shows the change itself).
    if row.event_type == "m.room.history_visibility" && row.state_key.as_deref() == Some("") {
        if let Some(after) = in_group(room, row.state_after)? {
            let openness = |v: &str| match v {
                "world_readable" => 3,
                "shared" => 2,
                "invited" => 1,
                _ => 0,
            };
            if openness(&after) > openness(&visibility) {
                visibility = after;
            }
        }
    }
    let visibility = visibility.as_str();
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
    vis: &Visibility,
) -> Result<Vec<EventRow>, RoomFailure> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        if may_see(room, &row, user, vis.joined)? {
            out.push(row);
        }
    }
    Ok(out)
}

/// One timeline event the user may see, or 404 (unknown and invisible look the same).
fn visible_event(
    room: &mut Engine<'_>,
    event_id: &str,
    user: &str,
    vis: &Visibility,
    ceiling: i64,
) -> Result<(EventRow, Pdu), RoomFailure> {
    let not_found = || fail(404, "M_NOT_FOUND", "Event not found");
    let (row, pdu) = room
        .pdu(event_id)?
        .filter(|(r, _)| r.stream_pos.is_some_and(|p| p <= ceiling))
        .ok_or_else(not_found)?;
    if !may_see(room, &row, user, vis.joined)? {
        return Err(not_found());
    }
    Ok((row, pdu))
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

/// Rows in the client format, as `user` is shown them.
fn client_events(
    room: &mut Engine<'_>,
    rows: &[EventRow],
    user: &str,
    now_ms: u64,
) -> Result<Vec<Value>, RoomFailure> {
    let erased = store::erased_senders(room.db).map_err(RoomError::from)?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let pdu = room.pdu_of_row(row)?;
        let pdu = as_shown(room, row, pdu, user, &erased)?;
        out.push(client_event(row, &pdu, now_ms));
    }
    Ok(out)
}

/// The event as `user` is shown it: redacted when its sender asked for their content
/// to be erased and the user was not joined when it was sent (the sender sees their own).
pub(in crate::roomserver) fn as_shown(
    room: &mut Engine<'_>,
    row: &EventRow,
    pdu: Pdu,
    user: &str,
    erased: &std::collections::HashSet<String>,
) -> Result<Pdu, RoomFailure> {
    if !erased.contains(&row.sender) || row.sender == user {
        return Ok(pdu);
    }
    let membership = match row.state_before {
        Some(g) => room
            .state_event_in_group(g, "m.room.member", user)?
            .as_ref()
            .and_then(membership_of),
        None => None,
    };
    if membership.as_deref() == Some("join") {
        return Ok(pdu);
    }
    let rules = room.rules().clone();
    Ok(pdu
        .redacted(&rules)
        .map_err(|e| RoomError::Corrupt(e.to_string()))?)
}

/// Backward extremities named to the edge at most, when a page reaches history this
/// room does not have.
const MAX_HISTORY_FROM: usize = 5;

pub(in crate::roomserver) fn token(pos: i64) -> String {
    format!("r{pos}")
}

/// A position of the timeline; history (backfilled events) has negative ones, so a
/// token may be negative too.
fn parse_token(t: &str) -> Result<i64, RoomFailure> {
    t.strip_prefix('r')
        .and_then(|n| n.parse::<i64>().ok())
        .filter(|n| *n > i64::MIN)
        .ok_or_else(|| fail(400, "M_INVALID_PARAM", "Invalid pagination token"))
}

/// Below every position of the timeline, history included.
const BEFORE_ALL: i64 = i64::MIN + 1;

/// The state a room's summary or space entry shows, by type (each keyed `""`).
const SUMMARY_TYPES: [&str; 9] = [
    "m.room.join_rules",
    "m.room.history_visibility",
    "m.room.create",
    "m.room.name",
    "m.room.topic",
    "m.room.avatar",
    "m.room.canonical_alias",
    "m.room.guest_access",
    "m.room.encryption",
];

/// The contents of the room's summary entries in `state`, looked up by key.
fn summary_contents(
    room: &Engine<'_>,
    state: &store::StateNids,
) -> Result<std::collections::HashMap<&'static str, Value>, RoomFailure> {
    let mut contents = std::collections::HashMap::new();
    for t in SUMMARY_TYPES {
        if let Some(p) = room.entry_in(state, t, "")? {
            contents.insert(t, p.content());
        }
    }
    Ok(contents)
}

pub(super) fn query(room: &mut Engine<'_>, host: &Host<'_>, req: RoomRequest) -> Result<Value, RoomFailure> {
    let latest = store::latest_stream_pos(room.db).map_err(RoomError::from)?;
    match req {
        RoomRequest::Membership { user_id } => {
            let member = room.current_entry(&StateEventType::RoomMember, &user_id)?;
            let member = member.as_ref();
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
            // The few entries a summary needs, by key, and the member entries.
            let state = room.current_state_nids()?;
            let entries = summary_contents(room, &state)?;
            let get = |t: &str, field: &str| entries.get(t).and_then(|c| c.get(field).cloned());
            let join_rule = get("m.room.join_rules", "join_rule");
            let world_readable =
                get("m.room.history_visibility", "history_visibility") == Some(json!("world_readable"));
            let public = join_rule == Some(json!("public"));
            // Previews are for public or world-readable rooms and for members.
            let member = room
                .entry_in(&state, "m.room.member", &user_id)?
                .as_ref()
                .and_then(membership_of);
            if !public && !world_readable && member.is_none() && !user_id.is_empty() {
                return Err(forbidden("You cannot see this room"));
            }
            let joined = room
                .members_in(&state)?
                .iter()
                .filter(|(_, p)| membership_of(p).as_deref() == Some("join"))
                .count();
            let room_type = get("m.room.create", "type");
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
        RoomRequest::SpaceEntry { user_id } => spaces::entry(room, &user_id),
        RoomRequest::Search {
            user_id,
            query,
            newest_first,
            limit,
            filter,
            context,
        } => search::search(
            room,
            host,
            latest,
            &user_id,
            (&query, newest_first, limit),
            filter,
            context,
        ),
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
            whole_event,
        } => {
            let vis = visibility(room, &user_id)?;
            let state = state_nids_at(room, vis.until.unwrap_or(latest))?;
            let pdu = room
                .entry_in(&state, &event_type, &state_key)?
                .ok_or_else(|| fail(404, "M_NOT_FOUND", "Event not found"))?;
            Ok(if whole_event {
                pdu.to_client_event(None)
            } else {
                pdu.content()
            })
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
            let state = state_nids_at(room, pos)?;
            let all = room.members_in(&state)?;
            let mut members: Vec<&Pdu> = all
                .iter()
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
        RoomRequest::MaySendState { user_id, event_type } => {
            let joined = room
                .current_entry(&StateEventType::RoomMember, &user_id)?
                .as_ref()
                .and_then(membership_of)
                .as_deref()
                == Some("join");
            let allowed = joined && room.power_check(|p| p.may_send_state(&user_id, &event_type))?;
            Ok(json!({ "allowed": allowed }))
        }
        RoomRequest::JoinedMembers { user_id } => {
            let vis = visibility(room, &user_id)?;
            if vis.until.is_some() {
                return Err(forbidden("You are not joined to this room"));
            }
            let state = room.current_state_nids()?;
            let mut joined = Map::new();
            for (key, pdu) in room.members_in(&state)? {
                if membership_of(&pdu).as_deref() == Some("join") {
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
        } => timeline::messages(room, host, latest, &user_id, (from, to, dir), limit, filter),
        RoomRequest::Context {
            user_id,
            event_id,
            limit,
            filter,
        } => timeline::context(room, host, latest, &user_id, &event_id, limit, filter),
        RoomRequest::Event { user_id, event_id } => {
            // One who may not read the room learns nothing of its events, not even
            // that they exist: 404, as for an unknown event.
            let vis = visibility(room, &user_id).map_err(|f| {
                if f.status == 403 {
                    fail(404, "M_NOT_FOUND", "Event not found")
                } else {
                    f
                }
            })?;
            let ceiling = vis.until.unwrap_or(latest);
            let (row, pdu) = visible_event(room, &event_id, &user_id, &vis, ceiling)?;
            let erased = store::erased_senders(room.db).map_err(RoomError::from)?;
            let pdu = as_shown(room, &row, pdu, &user_id, &erased)?;
            Ok(client_event(&row, &pdu, host.now_ms))
        }
        RoomRequest::BuildInvite { sender, event } => {
            super::federation::build_invite(room, host, &sender, event)
        }
        RoomRequest::MakeMembership {
            user_id,
            membership,
            authorised_via,
        } => super::federation::make_membership(room, host, &user_id, &membership, authorised_via),
        RoomRequest::JoinedServers => Ok(json!({ "servers": room.joined_servers(host.server_name)?.1 })),
        RoomRequest::JoinAuthorisation { user_id } => {
            super::federation::join_authorisation(room, host, &user_id)
        }
        RoomRequest::Federation { origin, query } => {
            super::federation::answer(room, origin.as_deref(), query)
        }
        RoomRequest::ServerAllowed { server_name } => {
            let acl = room.current_entry(&StateEventType::from("m.room.server_acl"), "")?;
            let allowed = crate::core::acl::allows(acl.map(|p| p.content()).as_ref(), &server_name);
            Ok(json!({ "allowed": allowed }))
        }
        RoomRequest::StrippedState { user_id } => Ok(json!({
            "state": super::federation::stripped_state(room, &user_id)?,
        })),
        RoomRequest::Create { .. }
        | RoomRequest::KeepKnock { .. }
        | RoomRequest::ReceiveInvite { .. }
        | RoomRequest::EndInvite { .. }
        | RoomRequest::RescindInvite { .. }
        | RoomRequest::Send { .. }
        | RoomRequest::Input { .. }
        | RoomRequest::LogRecords { .. } => Err(fail(500, "M_UNKNOWN", "not a query")),
        RoomRequest::SyncSlice {
            user_id,
            device_id,
            slice,
        } => super::super::sync_slice::slice(room, host, &user_id, device_id.as_deref(), &slice),
        RoomRequest::Typing {
            user_id,
            typing,
            timeout_ms,
        } => {
            joined_only(room, &user_id)?;
            let serial = ephemeral::set_typing(room.db, &user_id, typing, timeout_ms, host.now_ms)
                .map_err(RoomError::from)?;
            Ok(json!({ "serial": serial }))
        }
        RoomRequest::EraseSender { user_id } => {
            store::erase_sender(room.db, &user_id).map_err(RoomError::from)?;
            Ok(json!({}))
        }
        RoomRequest::Receipt {
            user_id,
            receipt_type,
            event_id,
            thread_id,
        } => {
            joined_only(room, &user_id)?;
            let position = room
                .pdu(&event_id)?
                .and_then(|(r, _)| r.stream_pos)
                .ok_or_else(|| fail(404, "M_NOT_FOUND", "Event not found"))?;
            // Receipts only move forward: one for an event before the current one is
            // taken and changes nothing.
            let current = ephemeral::receipt_event(room.db, &user_id, &receipt_type, thread_id.as_deref())
                .map_err(RoomError::from)?;
            if let Some(current) = current {
                let current_pos = room.pdu(&current)?.and_then(|(r, _)| r.stream_pos);
                if current_pos.is_some_and(|p| p >= position) {
                    return Ok(json!({ "moved": false }));
                }
            }
            let serial = ephemeral::put_receipt(
                room.db,
                &user_id,
                &receipt_type,
                thread_id.as_deref(),
                &event_id,
                host.now_ms,
            )
            .map_err(RoomError::from)?;
            Ok(json!({ "serial": serial, "moved": true }))
        }
    }
}

/// Typing and receipts are for joined members only.
fn joined_only(room: &mut Engine<'_>, user: &str) -> Result<(), RoomFailure> {
    let joined = room
        .current_entry(&StateEventType::RoomMember, user)?
        .as_ref()
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

/// The state after the last accepted event at or before stream position `pos`, as
/// entries (no event read).
pub(in crate::roomserver) fn state_nids_at(
    room: &mut Engine<'_>,
    pos: i64,
) -> Result<std::sync::Arc<store::StateNids>, RoomFailure> {
    let latest = room.stream_head()?;
    if pos >= latest {
        return Ok(room.current_state_nids()?);
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
            Ok(room.state_after_nids(&id)?.unwrap_or_default())
        }
        None => Ok(Default::default()),
    }
}

/// The state after the last accepted event at or before stream position `pos`, as
/// events.
pub(in crate::roomserver) fn state_at(
    room: &mut Engine<'_>,
    pos: i64,
) -> Result<super::super::engine::StatePdus, RoomFailure> {
    let state = state_nids_at(room, pos)?;
    Ok(room.state_pdus(&state)?)
}
