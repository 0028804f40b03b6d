//! History this server does not have, asked of the other servers in the room: when a
//! backward `/messages` page reaches the oldest event here and the room names events
//! further back (its backward extremities), `/backfill` is asked of a server with a
//! member joined, and what it answers goes in as history (`InputKind::Backfill`:
//! positions below every other, no news to `/sync`, the current state untouched). The
//! oldest events of an answer name prev events nobody sent yet: they cross that gap
//! with the state at each of them (`/state_ids`, the state events the room lacks with
//! `/event`), as received events do.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::api::federation::pdus::{by_depth, gather_keys, input, strings, Keys};
use crate::api::http::percent_encode as enc;
use crate::federation::client::request;
use crate::platform::{log_error, rooms, Ctx};
use crate::roomserver::protocol::{InputKind, RoomRequest};

/// Servers asked for one page of history at most.
const MAX_SERVERS: usize = 3;
/// Events asked for at most.
const MAX_EVENTS: u32 = 100;
/// Prev events crossed as gaps, and state events fetched for them, at most.
const MAX_GAPS: usize = 5;
const MAX_STATE_FETCHES: usize = 50;
/// How long an isolate waits before asking again about a room whose servers gave
/// nothing.
const QUIET_MS: u64 = 60_000;

fn quiet(ctx: &Ctx, room_id: &str, set: bool) -> bool {
    use std::cell::RefCell;
    use std::collections::HashMap;
    thread_local! {
        static EMPTY: RefCell<HashMap<String, u64>> = RefCell::new(HashMap::new());
    }
    let now = ctx.now_ms();
    EMPTY.with(|e| {
        let mut e = e.borrow_mut();
        if set {
            if e.len() > 10_000 {
                e.clear();
            }
            e.insert(room_id.to_owned(), now);
            return true;
        }
        e.get(room_id).is_some_and(|at| now < at + QUIET_MS)
    })
}

/// Fetches the history before `from` (event ids the room lacks) and stores it. True
/// when some server answered with events the room took.
pub async fn fetch(ctx: &Ctx, room_id: &str, from: &[String], limit: u32) -> bool {
    if from.is_empty() || quiet(ctx, room_id, false) {
        return false;
    }
    let servers = servers_in_room(ctx, room_id).await;
    let limit = limit.clamp(20, MAX_EVENTS);
    let v: String = from.iter().map(|id| format!("&v={}", enc(id))).collect();
    let target = format!(
        "/_matrix/federation/v1/backfill/{}?limit={limit}{v}",
        enc(room_id)
    );
    for server in servers.iter().take(MAX_SERVERS) {
        let answer = match request(ctx, server, "GET", &target, None).await {
            Ok(answer) => answer,
            Err(e) => {
                log_error(&format!("backfill of {room_id} from {server}: {e}"));
                continue;
            }
        };
        let mut pdus = by_depth(&answer["pdus"]);
        pdus.truncate(MAX_EVENTS as usize);
        if pdus.is_empty() {
            continue;
        }
        if take(ctx, room_id, server, &pdus).await {
            return true;
        }
    }
    quiet(ctx, room_id, true);
    false
}

/// The other servers with a member joined, from the room's current state (the room
/// knows them before the projections do).
async fn servers_in_room(ctx: &Ctx, room_id: &str) -> Vec<String> {
    let mut servers = match rooms::call(ctx, room_id, &RoomRequest::JoinedServers).await {
        Ok(answer) => strings(&answer["servers"]),
        Err(e) => {
            log_error(&format!("servers of {room_id}: {e}"));
            return Vec::new();
        }
    };
    // The room id's server first (it made the room), when it is among them.
    if let Some((_, own)) = room_id.split_once(':') {
        if let Some(i) = servers.iter().position(|s| s == own) {
            servers.swap(0, i);
        }
    }
    servers
}

/// Inputs `pdus` from `server` as history, crossing the gaps below the oldest.
async fn take(ctx: &Ctx, room_id: &str, server: &str, pdus: &[Value]) -> bool {
    let mut keys = Keys::new();
    let mut tried = BTreeMap::new();
    gather_keys(ctx, pdus, &mut keys, &mut tried).await;
    let at = (server, room_id);
    let answer = match input(ctx, at, InputKind::Backfill, pdus, &keys, &BTreeMap::new()).await {
        Ok(answer) => answer,
        Err(e) => {
            log_error(&format!("history of {room_id} from {server}: {e}"));
            return false;
        }
    };
    let results: Vec<Value> = answer["results"].as_array().cloned().unwrap_or_default();
    let mut took = results.iter().any(|r| r.get("accepted").is_some());
    // The events whose prev events nobody sent: across the gap with the state there.
    let waiting: Vec<Value> = pdus
        .iter()
        .zip(&results)
        .filter(|(_, r)| r.get("missing_prev").is_some())
        .map(|(p, _)| p.clone())
        .collect();
    let mut gaps: Vec<String> = Vec::new();
    for r in &results {
        for prev in r["missing_prev"].as_array().into_iter().flatten() {
            if let Some(prev) = prev.as_str() {
                if !gaps.iter().any(|g| g == prev) && gaps.len() < MAX_GAPS {
                    gaps.push(prev.to_owned());
                }
            }
        }
    }
    if waiting.is_empty() || gaps.is_empty() {
        return took;
    }
    let room = enc(room_id);
    let mut prev_states: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for prev in &gaps {
        let target = format!("/_matrix/federation/v1/state_ids/{room}?event_id={}", enc(prev));
        match request(ctx, server, "GET", &target, None).await {
            Ok(ids) => {
                prev_states.insert(prev.clone(), strings(&ids["pdu_ids"]));
            }
            Err(e) => log_error(&format!("state_ids of {prev} from {server}: {e}")),
        }
    }
    for round in 0..2 {
        let answer = match input(ctx, at, InputKind::Backfill, &waiting, &keys, &prev_states).await {
            Ok(answer) => answer,
            Err(e) => {
                log_error(&format!("history of {room_id} from {server}: {e}"));
                return took;
            }
        };
        let results: Vec<Value> = answer["results"].as_array().cloned().unwrap_or_default();
        took |= results.iter().any(|r| r.get("accepted").is_some());
        let missing: Vec<String> = results
            .iter()
            .flat_map(|r| strings(&r["missing_state"]))
            .collect();
        if missing.is_empty() || round == 1 {
            break;
        }
        // The state events of the gap this room lacks, as outliers.
        let mut events = Vec::new();
        for id in missing.iter().take(MAX_STATE_FETCHES) {
            let target = format!("/_matrix/federation/v1/event/{}", enc(id));
            match request(ctx, server, "GET", &target, None).await {
                Ok(answer) => events.extend(by_depth(&answer["pdus"])),
                Err(e) => log_error(&format!("event {id} from {server}: {e}")),
            }
        }
        if events.is_empty() {
            break;
        }
        gather_keys(ctx, &events, &mut keys, &mut tried).await;
        if let Err(e) = input(ctx, at, InputKind::Outlier, &events, &keys, &BTreeMap::new()).await {
            log_error(&format!("state of a gap in {room_id}: {e}"));
        }
    }
    took
}

/// The `/messages` answer without the room's note to the edge.
pub fn strip(mut answer: Value) -> Value {
    if let Some(o) = answer.as_object_mut() {
        o.remove("history_from");
    }
    answer
}

/// The backward extremities a `/messages` answer names, if any.
pub fn history_from(answer: &Value) -> Vec<String> {
    strings(&answer["history_from"])
}
