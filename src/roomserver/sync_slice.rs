//! The room's part of a /sync: for one user, the timeline in a range of the room's
//! stream (with `limited` and a `prev_batch` that `/messages?from=` accepts), the state
//! before it (full, or the change since the client's position, so state stays correct
//! across gaps), invite state, the summary, ephemeral events and unread counts.
//! Synchronous over the room's tables.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};

use serde_json::{json, Map, Value};

use crate::core::filter::RoomFilter;
use crate::core::pdu::Pdu;
use crate::core::push;
use crate::params;

use super::dispatch::{fail, may_see, state_nids_at, token, Host};
use super::engine::{membership_of, Engine, RoomError};
use super::ephemeral;
use super::protocol::{RoomFailure, SliceSpec};
use super::store::{self, EventRow, StateNids};

pub mod lazy_members;

/// Default timeline length, as other servers use.
pub const DEFAULT_LIMIT: u32 = 10;
/// Hard cap on timeline length, and on rows scanned past filtered-out events.
const MAX_LIMIT: u32 = 100;
const MAX_SCAN: usize = 2000;

/// State types an invite or knock shows (spec: "stripped state").
const STRIPPED: &[&str] = &[
    "m.room.create",
    "m.room.join_rules",
    "m.room.name",
    "m.room.avatar",
    "m.room.canonical_alias",
    "m.room.encryption",
    "m.room.topic",
];

fn sql(e: crate::storage::sql::SqlError) -> RoomFailure {
    RoomError::from(e).into()
}

/// An event as the filter's `event_format` asks: the client's sync format, or the
/// event as servers exchange it (with `unsigned` added).
fn formatted(pdu: &Pdu, unsigned: Option<Value>, federation: bool) -> Value {
    if !federation {
        return pdu.to_sync_event(unsigned);
    }
    let mut event: Value = serde_json::from_str(&pdu.to_federation_json()).unwrap_or_else(|_| json!({}));
    // Room versions 3 and later leave the id out of the wire form; clients need it.
    event["event_id"] = json!(pdu.event_id());
    if let Some(u) = unsigned {
        event["unsigned"] = u;
    }
    event
}

fn sync_event(row: &EventRow, pdu: &Pdu, now_ms: u64, txn: Option<String>, federation: bool) -> Value {
    let mut unsigned = Map::new();
    unsigned.insert("age".into(), json!(now_ms.saturating_sub(pdu.origin_server_ts())));
    if let Some(by) = &row.redacted_by {
        unsigned.insert("redacted_because".into(), json!({ "event_id": by }));
    }
    if let Some(txn) = txn {
        unsigned.insert("transaction_id".into(), json!(txn));
    }
    formatted(pdu, Some(Value::Object(unsigned)), federation)
}

/// The events of the state entries `keep` picks, in key order: only those are read.
fn events_of(
    room: &Engine<'_>,
    state: &StateNids,
    mut keep: impl FnMut(&(String, String), i64) -> bool,
) -> Result<Vec<Pdu>, RoomFailure> {
    let mut out = Vec::new();
    for (key, nid) in state {
        if keep(key, *nid) {
            out.push(
                room.pdu_by_nid(*nid)?
                    .ok_or_else(|| RoomError::Corrupt(format!("state event {nid}")))?,
            );
        }
    }
    Ok(out)
}

/// One entry of a state as an event.
fn entry(
    room: &Engine<'_>,
    state: &StateNids,
    event_type: &str,
    state_key: &str,
) -> Result<Option<Pdu>, RoomFailure> {
    Ok(room.entry_in(state, event_type, state_key)?)
}

fn stream_pos_of(room: &Engine<'_>, pdu: &Pdu) -> Result<Option<i64>, RoomFailure> {
    Ok(store::event_by_id(room.db, pdu.event_id().as_str())
        .map_err(sql)?
        .and_then(|r| r.stream_pos))
}

/// Answers `RoomRequest::SyncSlice`.
pub fn slice(
    room: &mut Engine<'_>,
    host: &Host<'_>,
    user: &str,
    device: Option<&str>,
    spec: &SliceSpec,
) -> Result<Value, RoomFailure> {
    let filter: RoomFilter = match &spec.filter {
        Some(f) => serde_json::from_value(f.clone()).map_err(|e| fail(400, "M_BAD_JSON", e.to_string()))?,
        None => RoomFilter::default(),
    };
    let latest = room.stream_head()?;
    let to = if spec.to <= 0 { latest } else { spec.to.min(latest) };
    // The state at `to` as entries: events are read only where needed.
    let state_to = state_nids_at(room, to)?;
    let member = entry(room, &state_to, "m.room.member", user)?;
    let membership = member.as_ref().and_then(membership_of);
    match membership.as_deref() {
        Some("invite") | Some("knock") => {
            let mut events: Vec<Value> =
                events_of(room, &state_to, |(t, _), _| STRIPPED.contains(&t.as_str()))?
                    .iter()
                    .map(Pdu::to_stripped_state)
                    .collect();
            if let Some(m) = &member {
                let inviter = m.sender().to_string();
                if let Some(inv) = entry(room, &state_to, "m.room.member", &inviter)? {
                    if inviter != user {
                        events.push(inv.to_stripped_state());
                    }
                }
                events.push(m.to_stripped_state());
            }
            return Ok(json!({ "membership": membership, "invite_state": events }));
        }
        Some("join") | Some("leave") | Some("ban") => {}
        _ => return Ok(json!({ "membership": membership })),
    }
    let joined = membership.as_deref() == Some("join");
    let mut ceiling = to;
    if !joined {
        // Former members see up to their leave, and only if they had ever joined.
        if let Some(pos) = member
            .as_ref()
            .map(|m| stream_pos_of(room, m))
            .transpose()?
            .flatten()
        {
            ceiling = ceiling.min(pos);
        }
        if !store::ever_joined(room.db, user).map_err(sql)? {
            return Ok(json!({
                "membership": membership,
                "timeline": { "events": [], "limited": false, "prev_batch": token(ceiling) },
                "state": [],
            }));
        }
    }
    let from = spec.from.max(0);

    // 1. The timeline: the last `limit` matching events in (from, ceiling].
    let limit = filter.timeline.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT) as usize;
    let mut picked: Vec<EventRow> = Vec::new();
    let mut limited = false;
    let mut cursor = ceiling + 1;
    let mut scanned = 0usize;
    // Rows come in batches just big enough to fill the timeline and see whether more
    // match (more batches only when the filter or visibility drops events).
    let batch = (limit as i64 + 1).min(100);
    'scan: loop {
        let rows = store::events_between(room.db, from, cursor, batch).map_err(sql)?;
        if rows.is_empty() {
            break;
        }
        for row in rows {
            let pos = row.stream_pos.unwrap_or(0);
            if pos <= from {
                break 'scan;
            }
            cursor = pos;
            scanned += 1;
            // A room new to the client shows its current state events in the timeline
            // even where history visibility hid them (a member who joined while the
            // user was away), as the client's view of the room needs them.
            let current = spec.full
                && joined
                && row
                    .state_key
                    .as_ref()
                    .is_some_and(|k| state_to.get(&(row.event_type.clone(), k.clone())) == Some(&row.nid));
            if filter.timeline.allows(&row.event_type, &row.sender)
                && (current || may_see(room, &row, user, joined)?)
            {
                if picked.len() >= limit {
                    limited = true;
                    break 'scan;
                }
                picked.push(row);
            }
            if scanned >= MAX_SCAN {
                limited = true;
                break 'scan;
            }
        }
    }
    picked.reverse();
    let start = picked
        .first()
        .and_then(|r| r.stream_pos)
        .map_or(ceiling, |p| p - 1);
    let mut timeline = Vec::with_capacity(picked.len());
    let mut senders = BTreeSet::new();
    for row in &picked {
        let pdu = room.pdu_of_row(row)?;
        let txn = match device {
            Some(d) if row.sender == user => room
                .db
                .query_opt(
                    "SELECT txn_id FROM txns WHERE user_id = ? AND device_id = ? AND event_id = ?",
                    params![user, d, row.event_id.as_str()],
                )
                .map_err(sql)?
                .map(|r| r.text(0).map(str::to_owned))
                .transpose()
                .map_err(sql)?,
            _ => None,
        };
        senders.insert(row.sender.clone());
        timeline.push(sync_event(row, &pdu, host.now_ms, txn, spec.federation_format));
    }

    // 2. State before the timeline: all of it for a room new to the client, else what
    //    changed in the gap between the client's position and the timeline.
    let full = spec.full || spec.full_state || from == 0;
    let at_start = state_nids_at(room, start)?;
    let lazy = filter.state.lazy_load_members;
    // Under lazy loading, a room new to the client gets the members of the timeline's
    // senders and the user's own. Across a gap: every membership that changed in it as
    // well (the client's member list would be wrong without them), as the delta holds.
    let wanted = |(t, k): &(String, String)| {
        !lazy || !full || t != "m.room.member" || senders.contains(k) || k == user
    };
    let mut state: Vec<Pdu> = if full {
        events_of(room, &at_start, |key, _| wanted(key))?
    } else if start > from {
        // The entries that differ, compared by nid without reading any event.
        let before = state_nids_at(room, from)?;
        events_of(room, &at_start, |key, nid| before.get(key) != Some(&nid))?
    } else {
        Vec::new()
    };
    if lazy {
        // Members of timeline senders the client may not have yet: on an incremental
        // sync, those this device was not sent before (unless the filter asks for the
        // redundant ones too).
        let present: BTreeSet<String> = state
            .iter()
            .filter(|p| p.kind() == "m.room.member")
            .filter_map(|p| p.state_key().map(str::to_owned))
            .collect();
        let memo_device = device.filter(|_| !filter.state.include_redundant_members);
        if let (Some(d), true) = (memo_device, full) {
            room.lazy_members.borrow_mut().start_over(user, d);
        }
        for sender in &senders {
            if present.contains(sender) {
                continue;
            }
            let known = memo_device.is_some_and(|d| room.lazy_members.borrow().has(user, d, sender, from));
            if known {
                continue;
            }
            if let Some(p) = entry(room, &at_start, "m.room.member", sender)? {
                state.push(p);
            }
        }
        if let Some(d) = memo_device {
            let sent: Vec<&str> = state
                .iter()
                .filter(|p| p.kind() == "m.room.member")
                .filter_map(|p| p.state_key())
                .collect();
            room.lazy_members.borrow_mut().sent(user, d, ceiling, sent);
        }
    }
    let none = filter.state.excludes_all();
    let state: Vec<Value> = state
        .into_iter()
        .filter(|p| !none && filter.state.allows(&p.kind(), p.sender().as_str()))
        .map(|p| formatted(&p, None, spec.federation_format))
        .collect();

    // A timeline that begins with the room's creation has nothing before it. Its
    // `prev_batch` is then the slice's end, as clients expect of Synapse: paging back from
    // it answers the (whole, small) room again rather than nothing.
    let from_creation = !limited && timeline.first().is_some_and(|e| e["type"] == "m.room.create");
    let prev_batch = token(if from_creation { ceiling } else { start });
    let mut body = json!({
        "membership": membership,
        "timeline": { "events": timeline, "limited": limited, "prev_batch": prev_batch },
        "state": state,
    });
    if !joined {
        return Ok(body);
    }

    // 3. Summary from the state at `to`.
    let mut joined_n = 0;
    let mut invited_n = 0;
    let mut heroes = Vec::new();
    for (key, p) in room.members_in(&state_to)? {
        match membership_of(&p).as_deref() {
            Some("join") => joined_n += 1,
            Some("invite") => invited_n += 1,
            _ => continue,
        }
        if key != user {
            heroes.push(key);
        }
    }
    heroes.sort();
    heroes.truncate(5);
    body["summary"] = json!({
        "m.joined_member_count": joined_n,
        "m.invited_member_count": invited_n,
    });
    // Heroes name a room that has no name of its own (nor a canonical alias).
    let named = |t: &str, field: &str| -> Result<bool, RoomFailure> {
        Ok(entry(room, &state_to, t, "")?
            .is_some_and(|p| p.content()[field].as_str().is_some_and(|v| !v.is_empty())))
    };
    if !named("m.room.name", "name")? && !named("m.room.canonical_alias", "alias")? {
        body["summary"]["m.heroes"] = json!(heroes);
    }

    // 4. Ephemeral: typing (whole list) and receipts in the range.
    let mut ephemeral_events = Vec::new();
    if spec.typing {
        // A room new to the client only says who is typing; an incremental sync also
        // says when everyone stopped (an empty list).
        let users = ephemeral::typing_users(room.db, host.now_ms).map_err(sql)?;
        if !(full && users.is_empty()) {
            ephemeral_events.push(json!({ "type": "m.typing", "content": { "user_ids": users } }));
        }
    }
    if spec.receipts_to > spec.receipts_from {
        if let Some(content) =
            ephemeral::receipts_between(room.db, spec.receipts_from, spec.receipts_to, user).map_err(sql)?
        {
            ephemeral_events.push(json!({ "type": "m.receipt", "content": content }));
        }
    }
    ephemeral_events.retain(|e| {
        filter
            .ephemeral
            .allows(e["type"].as_str().unwrap_or_default(), "")
            && !filter.ephemeral.excludes_all()
    });
    body["ephemeral"] = json!({ "events": ephemeral_events });
    body["unread_notifications"] = unread(room, user, to, (&state_to, joined_n), spec.push_rules.as_ref())?;
    Ok(body)
}

/// Most unread events evaluated per room and slice: the counts stop there (clients
/// show such numbers as "999+" anyway), and a room with a long unread backlog costs a
/// bounded amount of work per /sync. Evaluating is the expensive part (about 10 µs per
/// event natively, 30–40 µs in the worker, see `core::push::tests::evaluation_cost`), so
/// verdicts are remembered (`UnreadMemo`) and each event is evaluated once per user.
pub const UNREAD_SCAN: i64 = 1000;

/// A user's unread window: the newest `UNREAD_SCAN` accepted events of others in
/// `(read position, to]` (parameters: read position, to, user, `UNREAD_SCAN`).
const WINDOW: &str = "FROM events WHERE stream_pos > ? AND stream_pos <= ? AND status = 0 \
                      AND sender != ? ORDER BY stream_pos DESC LIMIT ?";

/// Most users whose verdicts a room remembers; past it the memo starts over.
const MEMO_USERS: usize = 256;

/// Below this many events without a verdict they are read one by one, else in one scan.
const MEMO_FETCH_ONE_BY_ONE: usize = 16;

/// Push rule verdicts per user, by stream position, with whether the event was
/// redacted when evaluated. Valid while the user's rules and the room context the rules
/// read (their member event, power levels, create event, member count) are unchanged:
/// a fingerprint of those keys each user's entry. Trimmed to the user's unread window,
/// so it holds at most `UNREAD_SCAN` verdicts per user.
///
/// The window itself is remembered too: while the read position stays put, the next
/// count only reads the events after the last one counted (a user who does not read a
/// busy room costs each /sync the new events, not a scan of the whole backlog). A
/// redaction among the new events, or a count at an earlier position, reads the
/// window again.
#[derive(Default)]
pub struct UnreadMemo {
    users: HashMap<String, UserVerdicts>,
}

#[derive(Default)]
struct UserVerdicts {
    fingerprint: u64,
    verdicts: HashMap<i64, (bool, push::Verdict)>,
    /// The window last counted, newest first, with the read position and the stream
    /// position it was counted up to (`counted_to` 0: none).
    window: VecDeque<(i64, bool)>,
    read_pos: i64,
    counted_to: i64,
}

impl UnreadMemo {
    pub fn clear(&mut self) {
        self.users.clear();
    }

    /// The user's entry (a new one when absent; past `MEMO_USERS` users the memo starts
    /// over first).
    fn entry(&mut self, user: &str) -> &mut UserVerdicts {
        if self.users.len() >= MEMO_USERS && !self.users.contains_key(user) {
            self.users.clear();
        }
        self.users.entry(user.to_owned()).or_default()
    }
}

/// Notification and highlight counts: the user's push rules (the server defaults when
/// `rules` is `None`) evaluated on the newest `UNREAD_SCAN` accepted events after their
/// read receipt (or their join) up to `to`, excluding their own events, in the room as it
/// is at `to` (member count, their display name, power levels).
fn unread(
    room: &mut Engine<'_>,
    user: &str,
    to: i64,
    (state_to, joined_n): (&StateNids, u64),
    rules: Option<&Value>,
) -> Result<Value, RoomFailure> {
    let member = entry(room, state_to, "m.room.member", user)?;
    let member = member.as_ref();
    let mut read_pos = match member {
        Some(m) => stream_pos_of(room, m)?.unwrap_or(0),
        None => 0,
    };
    for event_id in ephemeral::own_read_event(room.db, user).map_err(sql)? {
        if let Some(pos) = store::event_by_id(room.db, &event_id)
            .map_err(sql)?
            .and_then(|r| r.stream_pos)
        {
            read_pos = read_pos.max(pos);
        }
    }
    let counts = |n: i64, h: i64| json!({ "notification_count": n, "highlight_count": h });
    let window = unread_window(room, user, read_pos, to)?;
    let Ok(user_id) = <&ruma::UserId>::try_from(user) else {
        return Ok(counts(0, 0));
    };
    let Some(&(lowest, _)) = window.back() else {
        return Ok(counts(0, 0));
    };

    // The context the rules read, and its fingerprint.
    let member_content = member.map(Pdu::content);
    let power = entry(room, state_to, "m.room.power_levels", "")?;
    let power_levels = power.as_ref().map(Pdu::content);
    let create = entry(room, state_to, "m.room.create", "")?;
    let create = create.as_ref();
    let mut creators: Vec<String> = create.map(|c| c.sender().to_string()).into_iter().collect();
    if let Some(more) = create.and_then(|c| c.content().get("additional_creators").cloned()) {
        creators.extend(
            more.as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_owned),
        );
    }
    let member_count = joined_n;
    let fingerprint = {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        rules.map(Value::to_string).hash(&mut h);
        for key in [&power, &create.cloned()] {
            key.as_ref().map(|p| p.event_id().to_string()).hash(&mut h);
        }
        member.map(|p| p.event_id().to_string()).hash(&mut h);
        member_count.hash(&mut h);
        h.finish()
    };
    let mut memo = room.unread.borrow_mut();
    let known = memo.entry(user);
    if known.fingerprint != fingerprint {
        known.verdicts.clear();
        known.fingerprint = fingerprint;
    }
    let missing: Vec<i64> = window
        .iter()
        .filter(|(pos, redacted)| known.verdicts.get(pos).is_none_or(|(r, _)| r != redacted))
        .map(|(pos, _)| *pos)
        .collect();

    // Evaluate what the memo does not know.
    if !missing.is_empty() {
        let ruleset = rules
            .and_then(|v| <push::Ruleset as serde::Deserialize>::deserialize(v).ok())
            .unwrap_or_else(|| push::Ruleset::server_default(user_id));
        let state = push::RoomState {
            room_id: room.info.room_id.as_str(),
            member_count,
            display_name: member_content
                .as_ref()
                .and_then(|c| c.get("displayname"))
                .and_then(Value::as_str),
            power_levels: power_levels.as_ref(),
            creators,
        };
        let Some(evaluator) = push::Evaluator::new(&ruleset, user, &state, &room.info.rules.authorization)
        else {
            return Ok(counts(0, 0));
        };
        let redacted: HashMap<i64, bool> = window.iter().copied().collect();
        let mut judge = |pos: i64, json: &str| {
            let was_redacted = redacted.get(&pos).copied().unwrap_or(false);
            known
                .verdicts
                .insert(pos, (was_redacted, evaluator.verdict(json)));
        };
        if missing.len() <= MEMO_FETCH_ONE_BY_ONE {
            for pos in &missing {
                if let Some(row) = room
                    .db
                    .query_opt("SELECT json FROM events WHERE stream_pos = ?", params![*pos])
                    .map_err(sql)?
                {
                    judge(*pos, row.text(0).map_err(sql)?);
                }
            }
        } else {
            let wanted: HashSet<i64> = missing.iter().copied().collect();
            for row in room
                .db
                .query(
                    &format!("SELECT stream_pos, json {WINDOW}"),
                    params![read_pos, to, user, UNREAD_SCAN],
                )
                .map_err(sql)?
            {
                let pos = row.int(0).map_err(sql)?;
                if wanted.contains(&pos) {
                    judge(pos, row.text(1).map_err(sql)?);
                }
            }
        }
    }

    let (mut notifications, mut highlights) = (0i64, 0i64);
    for (pos, _) in &window {
        if let Some((_, verdict)) = known.verdicts.get(pos) {
            notifications += i64::from(verdict.notify);
            highlights += i64::from(verdict.highlight);
        }
    }
    known.verdicts.retain(|pos, _| *pos >= lowest);
    Ok(counts(notifications, highlights))
}

/// The user's unread window (`(stream_pos, redacted)` of the newest `UNREAD_SCAN`
/// accepted events of others in `(read_pos, to]`, newest first), from the memo plus the
/// events after it when it can, else read whole; the memo keeps it for the next count.
fn unread_window(
    room: &mut Engine<'_>,
    user: &str,
    read_pos: i64,
    to: i64,
) -> Result<VecDeque<(i64, bool)>, RoomFailure> {
    let remembered = room.unread.borrow_mut().users.get_mut(user).and_then(|known| {
        (known.counted_to > 0 && known.read_pos == read_pos && known.counted_to <= to)
            .then(|| (known.counted_to, std::mem::take(&mut known.window)))
    });
    let mut window = None;
    if let Some((counted_to, mut kept)) = remembered {
        let newer = room
            .db
            .query(
                "SELECT stream_pos, redacted_by IS NOT NULL, type = 'm.room.redaction', sender = ? \
                 FROM events WHERE stream_pos > ? AND stream_pos <= ? AND status = 0 \
                 ORDER BY stream_pos LIMIT ?",
                params![user, counted_to, to, UNREAD_SCAN + 1],
            )
            .map_err(sql)?
            .iter()
            .map(|r| Ok((r.int(0)?, r.int(1)? != 0, r.int(2)? != 0, r.int(3)? != 0)))
            .collect::<Result<Vec<_>, crate::storage::sql::SqlError>>()
            .map_err(sql)?;
        // A redaction may have changed a verdict inside the window: read it again.
        let redaction = newer.iter().any(|(_, _, redaction, _)| *redaction);
        if !redaction && newer.len() as i64 <= UNREAD_SCAN {
            for (pos, redacted, _, own) in newer {
                if !own {
                    kept.push_front((pos, redacted));
                }
            }
            kept.truncate(UNREAD_SCAN as usize);
            window = Some(kept);
        }
    }
    let window = match window {
        Some(w) => w,
        None => room
            .db
            .query(
                &format!("SELECT stream_pos, redacted_by IS NOT NULL {WINDOW}"),
                params![read_pos, to, user, UNREAD_SCAN],
            )
            .map_err(sql)?
            .iter()
            .map(|r| Ok((r.int(0)?, r.int(1)? != 0)))
            .collect::<Result<VecDeque<_>, crate::storage::sql::SqlError>>()
            .map_err(sql)?,
    };
    let mut memo = room.unread.borrow_mut();
    let known = memo.entry(user);
    known.window = window.clone();
    known.read_pos = read_pos;
    known.counted_to = to;
    Ok(window)
}
