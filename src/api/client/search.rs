//! `POST /_matrix/client/v3/search`: `room_events` over the rooms the user is in or
//! has left (not forgotten). Each
//! room searches its own full-text index (`RoomRequest::Search`, history visibility
//! applied there); the edge merges the rooms' best results by rank or recency, pages
//! them with `next_batch` (an offset), and groups them by room or sender when asked.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::api::auth::require_user;
use crate::api::http::HttpRequest;
use crate::api::MatrixError;
use crate::core::search::{self, Order, RoomEvents};
use crate::platform::{rooms, Ctx};
use crate::roomserver::protocol::{RoomRequest, SearchContext};

/// `POST /_matrix/client/v3/search`
pub async fn search(ctx: &Ctx, req: &HttpRequest) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    let body = req.json_value()?;
    let offset = match req.query_param("next_batch") {
        None => 0,
        Some(t) => {
            search::parse_token(t).ok_or_else(|| MatrixError::invalid_param("Unknown next_batch token"))?
        }
    };
    let Some(asked) = search::parse(&body).map_err(|(code, why)| MatrixError::new(code, why))? else {
        return Ok(json!({ "search_categories": {} }));
    };
    let highlights = search::words(&asked.term);
    let Some(query) = search::fts_query(&asked.term, &asked.columns) else {
        return Ok(answer(Vec::new(), 0, highlights, None, &asked));
    };
    // Rooms the user is in and those they left: each room shows what they may see.
    let readable = crate::storage::rooms::readable_rooms(&ctx.db()?, &session.user_id).await?;
    let targets: Vec<String> = readable
        .into_iter()
        .filter(|r| asked.rooms.as_ref().is_none_or(|only| only.contains(r)))
        .filter(|r| !asked.not_rooms.contains(r))
        .collect();
    let want = offset + asked.limit + 1;
    let ask = RoomRequest::Search {
        user_id: session.user_id.clone(),
        query,
        newest_first: asked.order == Order::Recent,
        limit: u32::try_from(want).unwrap_or(u32::MAX),
        filter: asked.filter.clone(),
        context: asked.context.map(|c| SearchContext {
            before: c.before as u32,
            after: c.after as u32,
            include_profile: c.include_profile,
        }),
    };
    let answers = futures_util::future::join_all(targets.iter().map(|r| rooms::call(ctx, r, &ask))).await;
    let mut merged = Vec::new();
    let mut count = 0;
    for (room_id, answer) in targets.iter().zip(answers) {
        let answer = match answer {
            Ok(a) => a,
            // A room the user may no longer read has nothing for them.
            Err(e) if e.status() == 403 || e.status() == 404 => continue,
            Err(e) => return Err(e),
        };
        count += answer["count"].as_u64().unwrap_or(0);
        for r in answer["results"].as_array().into_iter().flatten() {
            merged.push((room_id.clone(), r.clone()));
        }
    }
    let ts = |r: &Value| r["event"]["origin_server_ts"].as_u64().unwrap_or(0);
    match asked.order {
        Order::Rank => merged.sort_by(|(_, a), (_, b)| {
            let rank = |r: &Value| r["rank"].as_f64().unwrap_or(0.0);
            rank(b).total_cmp(&rank(a)).then(ts(b).cmp(&ts(a)))
        }),
        Order::Recent => merged.sort_by_key(|(_, r)| std::cmp::Reverse(ts(r))),
    }
    let more = merged.len() as u64 > offset + asked.limit;
    let page: Vec<(String, Value)> = merged
        .into_iter()
        .skip(offset as usize)
        .take(asked.limit as usize)
        .collect();
    let next =
        (more && offset + asked.limit <= search::MAX_OFFSET).then(|| search::token(offset + asked.limit));
    let state = if asked.include_state {
        Some(room_states(ctx, &session.user_id, &page).await?)
    } else {
        None
    };
    let results: Vec<Value> = page.into_iter().map(|(_, r)| r).collect();
    let mut body = answer(results, count, highlights, next, &asked);
    if let Some(state) = state {
        body["search_categories"]["room_events"]["state"] = state;
    }
    Ok(body)
}

/// `include_state`: the current state (as the user may see it) of each room with a
/// result on the page.
async fn room_states(ctx: &Ctx, user_id: &str, page: &[(String, Value)]) -> Result<Value, MatrixError> {
    let rooms: std::collections::BTreeSet<&str> = page.iter().map(|(r, _)| r.as_str()).collect();
    let ask = RoomRequest::State {
        user_id: user_id.to_owned(),
    };
    let answers = futures_util::future::join_all(rooms.iter().map(|r| rooms::call(ctx, r, &ask))).await;
    let mut out = Map::new();
    for (room, answer) in rooms.into_iter().zip(answers) {
        out.insert(room.to_owned(), answer?);
    }
    Ok(Value::Object(out))
}

fn answer(
    results: Vec<Value>,
    count: u64,
    highlights: Vec<String>,
    next: Option<String>,
    asked: &RoomEvents,
) -> Value {
    let mut groups = Map::new();
    for key in &asked.group_by {
        let field = if key == "room_id" { "room_id" } else { "sender" };
        let mut by: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        let mut first_seen: BTreeMap<String, usize> = BTreeMap::new();
        for (i, r) in results.iter().enumerate() {
            let value = r["event"][field].as_str().unwrap_or_default().to_owned();
            first_seen.entry(value.clone()).or_insert(i);
            by.entry(value).or_default().push(r["event"]["event_id"].clone());
        }
        let group: Map<String, Value> = by
            .into_iter()
            .map(|(k, ids)| {
                let order = first_seen.get(&k).copied().unwrap_or(0);
                (k, json!({ "results": ids, "order": order }))
            })
            .collect();
        groups.insert(key.clone(), Value::Object(group));
    }
    let results: Vec<Value> = results
        .into_iter()
        .map(|r| {
            let mut out = json!({ "rank": r["rank"], "result": r["event"] });
            if !r["context"].is_null() {
                out["context"] = r["context"].clone();
            }
            out
        })
        .collect();
    let mut room_events = json!({
        "count": count,
        "highlights": highlights,
        "results": results,
    });
    if !groups.is_empty() {
        room_events["groups"] = Value::Object(groups);
    }
    if let Some(n) = next {
        room_events["next_batch"] = json!(n);
    }
    json!({ "search_categories": { "room_events": room_events } })
}
