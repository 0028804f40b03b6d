//! `/sync`: the edge asks the user's Durable Object what changed since the token
//! (waiting for it, for a long-poll), then fetches each changed room's slice from its
//! Room Durable Object and the account data from D1, concurrently, and assembles the
//! answer.

use futures_util::future::join_all;
use serde_json::{json, Map, Value};

use crate::api::auth::{require_user, Session};
use crate::api::http::HttpRequest;
use crate::api::MatrixError;
use crate::core::filter::{select_fields, Filter};
use crate::platform::{rooms, users, Ctx};
use crate::roomserver::protocol::{RoomRequest, SliceSpec};
use crate::storage::{account_data, e2e_keys};
use crate::sync::protocol::{RoomPlan, SyncPlan, UserRequest};
use crate::sync::token::SyncToken;

use super::push_rules;

fn is_empty_list(v: &Value) -> bool {
    v.as_array().is_none_or(Vec::is_empty)
}

/// How long a /sync waits before asking a room that failed to answer once more.
const SLICE_RETRY_MS: u64 = 100;

/// Longest long-poll we hold.
pub const MAX_TIMEOUT_MS: u64 = 60_000;

/// The `filter` parameter: inline JSON, or the id of a stored filter.
enum FilterParam {
    Inline(Box<Filter>),
    Stored(String),
    None,
}

fn filter_param(req: &HttpRequest) -> Result<FilterParam, MatrixError> {
    match req.query_param("filter") {
        None | Some("") => Ok(FilterParam::None),
        Some(text) if text.trim_start().starts_with('{') => {
            let value: Value = serde_json::from_str(text)
                .map_err(|_| MatrixError::invalid_param("filter is not valid JSON"))?;
            Filter::parse(&value)
                .map(|f| FilterParam::Inline(Box::new(f)))
                .map_err(MatrixError::invalid_param)
        }
        Some(id) => Ok(FilterParam::Stored(id.to_owned())),
    }
}

/// `GET /_matrix/client/v3/sync`
pub async fn sync(ctx: &Ctx, req: &HttpRequest) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    ctx.mark("auth");
    let since = match req.query_param("since") {
        Some(t) => {
            Some(SyncToken::decode(t).ok_or_else(|| MatrixError::invalid_param("Invalid since token"))?)
        }
        None => None,
    };
    let timeout_ms = match req.query_param("timeout") {
        Some(t) => t
            .parse::<u64>()
            .map_err(|_| MatrixError::invalid_param("Invalid timeout"))?
            .min(MAX_TIMEOUT_MS),
        None => 0,
    };
    let full_state = match req.query_param("full_state") {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(MatrixError::invalid_param("full_state must be true or false")),
    };
    let set_presence = match req.query_param("set_presence") {
        None => None,
        Some(p @ ("online" | "offline" | "unavailable")) => Some(p.to_owned()),
        Some(_) => return Err(MatrixError::invalid_param("Invalid set_presence")),
    };
    let param = filter_param(req)?;
    let run = Run {
        since,
        timeout_ms,
        full_state,
        set_presence,
    };
    run_sync(ctx, &session, run, param).await
}

/// What one sync run is asked for, its filter aside.
struct Run {
    since: Option<SyncToken>,
    timeout_ms: u64,
    full_state: bool,
    set_presence: Option<String>,
}

/// A sync for another endpoint (`initialSync`, the `/events` stream): the /sync answer
/// for `since` and `filter`, waiting up to `timeout_ms`, leaving the user's presence
/// alone.
pub async fn run_for(
    ctx: &Ctx,
    session: &Session,
    since: Option<SyncToken>,
    timeout_ms: u64,
    filter: Filter,
) -> Result<Value, MatrixError> {
    let run = Run {
        since,
        timeout_ms: timeout_ms.min(MAX_TIMEOUT_MS),
        full_state: false,
        set_presence: Some("offline".into()),
    };
    run_sync(ctx, session, run, FilterParam::Inline(Box::new(filter))).await
}

async fn run_sync(ctx: &Ctx, session: &Session, run: Run, param: FilterParam) -> Result<Value, MatrixError> {
    let Run {
        since,
        timeout_ms,
        full_state,
        set_presence,
    } = run;
    let filter_id = match &param {
        FilterParam::Stored(id) => Some(id.clone()),
        _ => None,
    };
    let wait_ms = if full_state { 0 } else { timeout_ms };
    let request = UserRequest::Sync {
        device_id: session.device_id.clone(),
        since,
        timeout_ms: wait_ms,
        filter_id,
        user_id: session.user_id.clone(),
        set_presence,
        now_ms: ctx.now_ms(),
        full_state,
        include_leave: matches!(&param, FilterParam::Inline(f) if f.room.include_leave),
    };
    // The push rules (for the rooms' unread counts), the key counts and the device-list
    // changes are read from D1 while the user's Durable Object answers or waits. The
    // device lists are read again after a wait if the plan says they changed; key
    // counts are as of the start of the request.
    let db = ctx.db()?;
    let (plan, push_rules, early_keys) = futures_util::future::join3(
        users::call(&ctx.env, &session.user_id, &request),
        push_rules::for_sync(&db, &session.user_id),
        e2e_keys::for_sync(
            &db,
            &session.user_id,
            &session.device_id,
            since.map(|s| s.device_lists),
        ),
    )
    .await;
    let mut early_keys = Some(early_keys?);
    let mut push_rules = push_rules?;
    let plan = match plan {
        Ok(answer) => serde_json::from_value::<SyncPlan>(answer).map_err(crate::api::error::internal)?,
        Err(e) if e.status() == 404 => return Err(MatrixError::invalid_param("Unknown filter")),
        Err(e) => return Err(e),
    };
    ctx.mark("wait");
    if plan.device_lists && wait_ms > 0 {
        // A change that arrived while the long-poll waited is newer than that read.
        early_keys = None;
    }
    let filter = match param {
        FilterParam::Inline(f) => *f,
        FilterParam::Stored(_) => plan
            .filter
            .as_ref()
            .map(Filter::parse)
            .transpose()
            .map_err(MatrixError::invalid_param)?
            .unwrap_or_default(),
        FilterParam::None => Filter::default(),
    };
    if plan.account_data && since.is_some() && timeout_ms > 0 {
        // Account data changed, possibly while we waited: the rules may be newer.
        push_rules = push_rules::for_sync(&db, &session.user_id).await?;
    }
    assemble(
        ctx,
        &session.user_id,
        &session.device_id,
        since,
        full_state,
        plan,
        &filter,
        push_rules.as_ref(),
        early_keys,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn assemble(
    ctx: &Ctx,
    user_id: &str,
    device_id: &str,
    since: Option<SyncToken>,
    full_state: bool,
    plan: SyncPlan,
    filter: &Filter,
    push_rules: Option<&Value>,
    early_keys: Option<e2e_keys::SyncKeys>,
) -> Result<Value, MatrixError> {
    let mut next = plan.next;
    let room_filter = serde_json::to_value(&filter.room).ok();
    let wanted: Vec<&RoomPlan> = plan
        .rooms
        .iter()
        .filter(|r| filter.room.allows_room(&r.room_id))
        .collect();
    let slices = join_all(wanted.iter().map(|r| {
        let request = RoomRequest::SyncSlice {
            user_id: user_id.to_owned(),
            device_id: Some(device_id.to_owned()),
            slice: SliceSpec {
                from: r.from,
                to: r.to,
                full: r.full,
                full_state,
                receipts_from: r.receipts_from,
                receipts_to: r.receipts_to,
                typing: r.typing,
                federation_format: filter.event_format.as_deref() == Some("federation"),
                filter: room_filter.clone(),
                push_rules: push_rules::for_room(push_rules, &r.room_id),
            },
        };
        async move {
            // A room that fails to answer is asked once more; if it still fails, the
            // whole /sync fails (the client retries with the same token). Leaving the
            // room out while the token moves on would hide its events for good.
            match rooms::call(ctx, &r.room_id, &request).await {
                Ok(slice) => Ok(slice),
                Err(e) if e.status() < 500 => Err(e),
                Err(_) => {
                    crate::platform::sleep(SLICE_RETRY_MS).await;
                    rooms::call(ctx, &r.room_id, &request).await
                }
            }
        }
    }));
    // Account data, from D1, while the rooms answer.
    let account = async {
        if plan.account_data {
            let from = since.map_or(0, |s| s.account_data);
            account_data::changed_since(&ctx.db()?, user_id, from)
                .await
                .map_err(MatrixError::from)
        } else {
            Ok(Vec::new())
        }
    };
    // End-to-end encryption: device-list changes since the token (none on an initial
    // sync, which starts from the current position), and this device's key counts, in
    // one D1 read; independent of the rooms, so in the same concurrent round.
    let db = ctx.db()?;
    let e2ee = async {
        match early_keys {
            Some(keys) => Ok(keys),
            None => e2e_keys::for_sync(&db, user_id, device_id, since.map(|s| s.device_lists)).await,
        }
    };
    let (slices, account, keys) = futures_util::future::join3(slices, account, e2ee).await;
    ctx.mark("rooms");
    let account = account?;

    let mut join = Map::new();
    let mut invite = Map::new();
    let mut knock = Map::new();
    let mut leave = Map::new();
    let mut global_account = Vec::new();
    let mut room_account: Map<String, Value> = Map::new();
    for entry in &account {
        next.account_data = next.account_data.max(entry.stream_id);
        let content: Value = serde_json::from_str(&entry.content).unwrap_or_else(|_| json!({}));
        let event = json!({ "type": entry.kind, "content": content });
        if entry.room_id.is_empty() {
            if filter.account_data.allows(&entry.kind, "") && !filter.account_data.excludes_all() {
                global_account.push(event);
            }
        } else if filter.room.account_data.allows(&entry.kind, "") && !filter.room.account_data.excludes_all()
        {
            if let Some(list) = room_account
                .entry(entry.room_id.clone())
                .or_insert_with(|| json!([]))
                .as_array_mut()
            {
                list.push(event);
            }
        }
    }
    if since.is_none()
        && filter.account_data.allows("m.push_rules", "")
        && !filter.account_data.excludes_all()
    {
        global_account.extend(push_rules::initial_event(user_id, push_rules));
    }
    let fields = filter.event_fields.as_deref();
    // An initial sync with `include_leave` lists left rooms, but never forgotten ones.
    let forgotten: std::collections::BTreeSet<String> = if since.is_none() && filter.room.include_leave {
        crate::storage::rooms::forgotten(&ctx.db()?, user_id)
            .await?
            .into_iter()
            .collect()
    } else {
        Default::default()
    };
    for (room_plan, slice) in wanted.iter().zip(slices) {
        let slice = match slice {
            Ok(s) => s,
            // A refusal is the room's answer (nothing to show this user); a failure is
            // not, and the token must not move past what it would have shown.
            Err(e) if e.status() < 500 => {
                crate::platform::log_error(&format!("sync: room {} refused: {e}", room_plan.room_id));
                continue;
            }
            Err(e) => {
                crate::platform::log_error(&format!("sync: room {} did not answer: {e}", room_plan.room_id));
                return Err(
                    MatrixError::new("M_UNKNOWN", "A room is unavailable; retry the sync").with_status(503),
                );
            }
        };
        let room_id = room_plan.room_id.clone();
        let events_of = |v: &Value| -> Value {
            let list = v.as_array().cloned().unwrap_or_default();
            match fields {
                Some(f) => Value::Array(list.iter().map(|e| select_fields(e, f)).collect()),
                None => Value::Array(list),
            }
        };
        let mut timeline = slice["timeline"].clone();
        if timeline.is_object() {
            timeline["events"] = events_of(&timeline["events"]);
        }
        let account_events = room_account.remove(&room_id).unwrap_or_else(|| json!([]));
        match slice["membership"].as_str() {
            // An incremental sync leaves out a room the filter emptied entirely.
            Some("join")
                if since.is_some()
                    && !full_state
                    && !room_plan.full
                    && is_empty_list(&timeline["events"])
                    && is_empty_list(&slice["state"])
                    && is_empty_list(&slice["ephemeral"]["events"])
                    && is_empty_list(&account_events) => {}
            Some("join") => {
                join.insert(
                    room_id,
                    json!({
                        "timeline": timeline,
                        "state": { "events": events_of(&slice["state"]) },
                        "ephemeral": slice["ephemeral"],
                        "account_data": { "events": account_events },
                        "summary": slice["summary"],
                        "unread_notifications": slice["unread_notifications"],
                    }),
                );
            }
            Some("invite") => {
                invite.insert(
                    room_id,
                    json!({ "invite_state": { "events": slice["invite_state"] } }),
                );
            }
            Some("knock") => {
                knock.insert(
                    room_id,
                    json!({ "knock_state": { "events": slice["invite_state"] } }),
                );
            }
            Some("leave") | Some("ban")
                if (since.is_some() || filter.room.include_leave)
                    && !forgotten.contains(&room_plan.room_id) =>
            {
                leave.insert(
                    room_id,
                    json!({
                        "timeline": timeline,
                        "state": { "events": events_of(&slice["state"]) },
                        "account_data": { "events": account_events },
                    }),
                );
            }
            _ => {}
        }
    }
    // Room account data for rooms with nothing else new.
    for (room_id, events) in room_account {
        if let Some(Value::Object(room)) = join.get_mut(&room_id) {
            room.insert("account_data".into(), json!({ "events": events }));
            continue;
        }
        let membership = crate::storage::rooms::membership(&ctx.db()?, &room_id, user_id).await?;
        if membership.as_deref() == Some("join") && filter.room.allows_room(&room_id) {
            join.insert(room_id, json!({ "account_data": { "events": events } }));
        }
    }
    let mut presence: Vec<Value> = if filter.presence.excludes_all() {
        Vec::new()
    } else {
        plan.presence
            .into_iter()
            .filter(|e| {
                filter
                    .presence
                    .allows("m.presence", e["sender"].as_str().unwrap_or_default())
            })
            .collect()
    };
    if let Some(limit) = filter.presence.limit {
        // The most recent changes.
        let drop = presence.len().saturating_sub(limit as usize);
        presence.drain(..drop);
    }
    let keys = keys?;
    next.device_lists = next.device_lists.max(keys.position);
    Ok(json!({
        "next_batch": next.encode(),
        "rooms": { "join": join, "invite": invite, "knock": knock, "leave": leave },
        "account_data": { "events": global_account },
        "to_device": { "events": plan.to_device },
        "presence": { "events": presence },
        "device_lists": { "changed": keys.changed, "left": keys.left },
        "device_one_time_keys_count": keys.one_time_key_counts,
        "device_unused_fallback_key_types": keys.unused_fallback_key_types,
    }))
}
