//! `POST /_matrix/client/v3/rooms/{roomId}/upgrade`: a new room of another version that
//! carries over the old room's state, a tombstone in the old room, aliases and the
//! directory entry moved across.

use ruma::UserId;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::api::auth::require_user;
use crate::api::http::HttpRequest;
use crate::api::MatrixError;
use crate::core::builder::{build_create_event, Signer};
use crate::core::room_version;
use crate::platform::{self, rooms, Ctx};
use crate::roomserver::protocol::{EventSpec, RoomRequest};
use crate::storage;
use crate::storage::account_data;

use super::create_room::{new_room_id, profile_fields};
use super::membership::{project_own, valid_room_id};

/// State copied into the new room, as the spec lists it.
const CARRIED: &[&str] = &[
    "m.room.server_acl",
    "m.room.encryption",
    "m.room.name",
    "m.room.avatar",
    "m.room.topic",
    "m.room.guest_access",
    "m.room.history_visibility",
    "m.room.join_rules",
];

#[derive(Deserialize)]
struct Body {
    new_version: String,
}

fn state_content<'a>(state: &'a [Value], event_type: &str) -> Option<&'a Value> {
    state
        .iter()
        .find(|e| e["type"] == event_type && e["state_key"] == "")
        .map(|e| &e["content"])
}

/// What an absent access rule of the old room meant, said explicitly in the new room:
/// guests forbidden, history shared, joins by invite.
fn absent_default(kind: &str) -> Option<Value> {
    match kind {
        "m.room.guest_access" => Some(json!({"guest_access": "forbidden"})),
        "m.room.history_visibility" => Some(json!({"history_visibility": "shared"})),
        "m.room.join_rules" => Some(json!({"join_rule": "invite"})),
        _ => None,
    }
}

/// The old room's bans, made again in the new room by the upgrader (who may ban there):
/// a banned user must not walk into the replacement. Other memberships stay behind.
fn bans(state: &[Value]) -> Vec<EventSpec> {
    state
        .iter()
        .filter(|e| e["type"] == "m.room.member" && e["content"]["membership"] == "ban")
        .filter_map(|e| {
            let target = e["state_key"].as_str()?;
            let mut content = json!({"membership": "ban"});
            if let Some(reason) = e["content"].get("reason").filter(|r| r.is_string()) {
                content["reason"] = reason.clone();
            }
            Some(EventSpec::state("m.room.member", target, content))
        })
        .collect()
}

/// The upgrader's own settings follow the room, as the spec asks: the room's tags, and
/// the room listed as direct (`m.direct`) wherever the old one was.
async fn carry_personal_settings(ctx: &Ctx, user_id: &str, old: &str, new: &str) -> Result<(), MatrixError> {
    let db = ctx.db()?;
    let mut last = None;
    if let Some(tags) = account_data::get(&db, user_id, Some(old), "m.tag").await? {
        last = Some(account_data::put(&db, user_id, Some(new), "m.tag", &tags).await?);
    }
    if let Some(text) = account_data::get(&db, user_id, None, "m.direct").await? {
        if let Ok(Value::Object(mut direct)) = serde_json::from_str::<Value>(&text) {
            let mut changed = false;
            for rooms in direct.values_mut().filter_map(Value::as_array_mut) {
                if rooms.iter().any(|r| r == old) && !rooms.iter().any(|r| r == new) {
                    rooms.push(json!(new));
                    changed = true;
                }
            }
            if changed {
                let text = Value::Object(direct).to_string();
                last = Some(account_data::put(&db, user_id, None, "m.direct", &text).await?);
            }
        }
    }
    if let Some(pos) = last {
        super::receipts::notify_account_data(ctx, user_id, pos).await?;
    }
    Ok(())
}

fn level(power: &Value, user: &str) -> i64 {
    power["users"][user]
        .as_i64()
        .or_else(|| power["users_default"].as_i64())
        .unwrap_or(0)
}

/// `POST /_matrix/client/v3/rooms/{roomId}/upgrade`
pub async fn upgrade(ctx: &Ctx, req: &HttpRequest, room_id: &str) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    valid_room_id(room_id)?;
    let body: Body = req.json()?;
    let user = <&UserId>::try_from(session.user_id.as_str()).map_err(|_| MatrixError::internal())?;

    // The old room's state, as the user sees it (they must be joined).
    let membership = rooms::call(
        ctx,
        room_id,
        &RoomRequest::Membership {
            user_id: session.user_id.clone(),
        },
    )
    .await?;
    if membership["membership"] != "join" {
        return Err(MatrixError::forbidden("You are not joined to this room"));
    }
    let (version, rules) = super::create_room::offered_version(&body.new_version)?;
    let state = rooms::call(
        ctx,
        room_id,
        &RoomRequest::State {
            user_id: session.user_id.clone(),
        },
    )
    .await?;
    let state = state.as_array().cloned().unwrap_or_default();
    let old_create = state_content(&state, "m.room.create")
        .cloned()
        .unwrap_or_default();
    let old_version = old_create["room_version"].as_str().unwrap_or("1");
    let old_rules = room_version::parse(old_version).map(|(_, r)| r);
    let creators_unlimited = old_rules
        .as_ref()
        .is_some_and(|r| r.authorization.explicitly_privilege_room_creators);
    let old_creator = state
        .iter()
        .find(|e| e["type"] == "m.room.create")
        .and_then(|e| e["sender"].as_str())
        .unwrap_or_default();
    let power = state_content(&state, "m.room.power_levels")
        .cloned()
        .unwrap_or_default();
    // Permission to tombstone the old room, checked before anything is created.
    let needed = power["events"]["m.room.tombstone"]
        .as_i64()
        .or_else(|| power["state_default"].as_i64())
        .unwrap_or(50);
    let is_creator = creators_unlimited && old_creator == session.user_id;
    if !is_creator && level(&power, &session.user_id) < needed {
        return Err(MatrixError::forbidden(
            "You do not have the power to upgrade this room",
        ));
    }

    let send = |event: EventSpec| RoomRequest::Send {
        sender: session.user_id.clone(),
        device_id: None,
        txn_id: None,
        event,
    };
    let tombstone = |new_room: &str| {
        send(EventSpec::state(
            "m.room.tombstone",
            "",
            json!({ "body": "This room has been replaced", "replacement_room": new_room }),
        ))
    };

    // The new room. Before v12 its id is chosen here, so the old room is tombstoned first
    // and the new room names the tombstone as the last event of its predecessor; from v12
    // the id comes from the create event, which cannot name an event that points back.
    let new_id = new_room_id(ctx, &rules)?;
    let mut predecessor = json!({ "room_id": room_id });
    let mut tombstoned = false;
    if let Some(new_id) = &new_id {
        let sent = rooms::call(ctx, room_id, &tombstone(new_id.as_str())).await?;
        if let Some(event_id) = sent["event_id"].as_str() {
            predecessor["event_id"] = json!(event_id);
        }
        tombstoned = true;
    }
    let mut create_content = Map::new();
    create_content.insert("predecessor".into(), predecessor);
    for key in ["type", "m.federate"] {
        if let Some(v) = old_create.get(key) {
            create_content.insert(key.into(), v.clone());
        }
    }
    let signer = Signer {
        server_name: &ctx.config.server_name,
        key: &ctx.config.signing_key,
        now_ms: crate::platform::unique_ms(),
    };
    let create = build_create_event(
        &version,
        &rules,
        user,
        new_id.as_deref(),
        Value::Object(create_content),
        signer,
    )
    .map_err(|e| MatrixError::bad_json(e.to_string()))?;
    let new_room = create.room_id().to_string();

    let mut steps = Vec::new();
    let mut join = profile_fields(ctx, &session.user_id).await?;
    join["membership"] = json!("join");
    steps.push(EventSpec::state("m.room.member", &session.user_id, join));
    let mut new_power = power.clone();
    if let Some(users) = new_power.get_mut("users").and_then(Value::as_object_mut) {
        if rules.authorization.explicitly_privilege_room_creators {
            // The upgrader is the new room's creator: unlimited, and not listed.
            users.remove(&session.user_id);
        } else {
            let own = users.get(&session.user_id).and_then(Value::as_i64).unwrap_or(0);
            users.insert(session.user_id.clone(), json!(own.max(100)));
        }
    } else if !rules.authorization.explicitly_privilege_room_creators {
        new_power["users"] = json!({ session.user_id.clone(): 100 });
    }
    if new_power.is_object() {
        steps.push(EventSpec::state("m.room.power_levels", "", new_power));
    }
    for kind in CARRIED {
        if let Some(content) = state_content(&state, kind)
            .cloned()
            .or_else(|| absent_default(kind))
        {
            steps.push(EventSpec::state(kind, "", content));
        }
    }
    if let Some(alias) = state_content(&state, "m.room.canonical_alias") {
        steps.push(EventSpec::state("m.room.canonical_alias", "", alias.clone()));
    }
    steps.extend(bans(&state));
    rooms::call(
        ctx,
        &new_room,
        &RoomRequest::Create {
            create: create.to_federation_value(),
            sender: session.user_id.clone(),
            steps,
        },
    )
    .await?;
    project_own(ctx, &new_room, &session.user_id).await?;
    carry_personal_settings(ctx, &session.user_id, room_id, &new_room).await?;

    // The tombstone (unless sent already), then the old room restricted and its aliases
    // and listing moved.
    if !tombstoned {
        rooms::call(ctx, room_id, &tombstone(&new_room)).await?;
    }
    let mut restricted = power.clone();
    if restricted.is_object() {
        let floor = (power["users_default"].as_i64().unwrap_or(0) + 1).max(50);
        restricted["events_default"] = json!(restricted["events_default"].as_i64().unwrap_or(0).max(floor));
        restricted["invite"] = json!(restricted["invite"].as_i64().unwrap_or(0).max(floor));
        if let Err(e) = rooms::call(
            ctx,
            room_id,
            &send(EventSpec::state("m.room.power_levels", "", restricted)),
        )
        .await
        {
            platform::log_error(&format!("upgrade: could not restrict {room_id}: {e}"));
        }
    }
    let db = ctx.db()?;
    storage::rooms::move_aliases(&db, room_id, &new_room).await?;
    if state_content(&state, "m.room.canonical_alias").is_some() {
        let _ = rooms::call(
            ctx,
            room_id,
            &send(EventSpec::state("m.room.canonical_alias", "", json!({}))),
        )
        .await;
    }
    if storage::rooms::is_public(&db, room_id).await? {
        storage::rooms::set_public(&db, room_id, false, ctx.now_ms()).await?;
        storage::rooms::set_public(&db, &new_room, true, ctx.now_ms()).await?;
    }
    Ok(json!({ "replacement_room": new_room }))
}
