//! Membership: join, invite, leave, forget, kick, ban, unban, knock, and the rooms a
//! user is in. Each change is an `m.room.member` event the room authorizes.

use ruma::UserId;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::auth::{require_user, Session};
use crate::api::http::HttpRequest;
use crate::api::MatrixError;
use crate::platform::{rooms, Ctx};
use crate::roomserver::protocol::{EventSpec, RoomRequest};
use crate::storage;

use super::create_room::profile_fields;

/// A room id, or an alias resolved through the directory.
pub async fn resolve_room(ctx: &Ctx, id_or_alias: &str) -> Result<String, MatrixError> {
    if id_or_alias.starts_with('!') {
        return valid_room_id(id_or_alias).map(str::to_owned);
    }
    if id_or_alias.starts_with('#') {
        ruma::RoomAliasId::parse(id_or_alias)
            .map_err(|_| MatrixError::invalid_param("Invalid room alias"))?;
        return storage::rooms::resolve_alias(&ctx.db()?, id_or_alias)
            .await?
            .ok_or_else(|| MatrixError::not_found("Room alias not found"));
    }
    Err(MatrixError::invalid_param("Expected a room id or alias"))
}

/// The room an id or alias names, with the servers an alias's directory says can join
/// it (another server's alias is asked of that server).
async fn resolve_room_servers(ctx: &Ctx, id_or_alias: &str) -> Result<(String, Vec<String>), MatrixError> {
    if id_or_alias.starts_with('#') {
        let alias = id_or_alias;
        let parsed =
            ruma::RoomAliasId::parse(alias).map_err(|_| MatrixError::invalid_param("Invalid room alias"))?;
        let server = parsed.server_name().as_str();
        if server != ctx.config.server_name {
            return super::remote_join::resolve_alias(ctx, alias, server).await;
        }
    }
    Ok((resolve_room(ctx, id_or_alias).await?, Vec::new()))
}

/// Checks the room id grammar (`!opaque:server` or v12's `!hash`).
pub fn valid_room_id(room_id: &str) -> Result<&str, MatrixError> {
    <&ruma::RoomId>::try_from(room_id)
        .map(|_| room_id)
        .map_err(|_| MatrixError::invalid_param("Invalid room id"))
}

/// Records the user's current membership in D1 from the room's answer, so the user
/// reads their own change at once. The log consumer does the same, idempotently.
pub async fn project_own(ctx: &Ctx, room_id: &str, user_id: &str) -> Result<(), MatrixError> {
    let answer = rooms::call(
        ctx,
        room_id,
        &RoomRequest::Membership {
            user_id: user_id.to_owned(),
        },
    )
    .await?;
    if let (Some(m), Some(id), Some(pos)) = (
        answer["membership"].as_str(),
        answer["event_id"].as_str(),
        answer["stream_pos"].as_i64(),
    ) {
        storage::rooms::record_membership(&ctx.db()?, room_id, user_id, m, id, pos).await?;
    }
    Ok(())
}

/// Records a member event the room just accepted (its answer carries the event id
/// and stream position) in D1, for local targets; no second call to the room.
pub async fn project_sent(
    ctx: &Ctx,
    room_id: &str,
    target: &str,
    membership: &str,
    answer: &Value,
) -> Result<(), MatrixError> {
    if !is_local(ctx, target) {
        return Ok(());
    }
    match (answer["event_id"].as_str(), answer["stream_pos"].as_i64()) {
        (Some(event_id), Some(pos)) if !membership.is_empty() => {
            storage::rooms::record_membership(&ctx.db()?, room_id, target, membership, event_id, pos).await?;
            Ok(())
        }
        // An answer without a position (a repeated transaction): ask the room.
        _ => project_own(ctx, room_id, target).await,
    }
}

fn is_local(ctx: &Ctx, user_id: &str) -> bool {
    user_id
        .split_once(':')
        .is_some_and(|(_, server)| server == ctx.config.server_name)
}

/// When a room stops letting guests in, its local guests leave it (each guest's own
/// leave, as a guest could have sent it). Failures are logged: the guest stays joined
/// but can no longer rejoin. `member` is a joined member (the one who changed it), whose
/// view lists the joined members.
pub async fn remove_guests(ctx: &Ctx, room_id: &str, member: &str) {
    let joined = match rooms::call(
        ctx,
        room_id,
        &RoomRequest::JoinedMembers {
            user_id: member.to_owned(),
        },
    )
    .await
    {
        Ok(answer) => answer["joined"]
            .as_object()
            .map(|m| m.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default(),
        Err(e) => {
            crate::platform::log_error(&format!("guest removal from {room_id}: {e}"));
            return;
        }
    };
    let local: Vec<String> = joined.into_iter().filter(|u| is_local(ctx, u)).collect();
    let guests = match ctx.db() {
        Ok(db) => storage::users::guests_among(&db, &local)
            .await
            .unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    for guest in guests {
        let session = Session {
            user_id: guest.clone(),
            device_id: String::new(),
            is_admin: false,
            is_guest: true,
        };
        let content = json!({ "membership": "leave" });
        if let Err(e) = member_event(ctx, &session, room_id, &guest, content).await {
            crate::platform::log_error(&format!("guest {guest} not removed from {room_id}: {e}"));
        }
    }
}

/// Sends a member event about `target` and projects it for local targets.
pub(crate) async fn member_event(
    ctx: &Ctx,
    session: &Session,
    room_id: &str,
    target: &str,
    content: Value,
) -> Result<Value, MatrixError> {
    let membership = content["membership"].as_str().unwrap_or_default().to_owned();
    let request = RoomRequest::Send {
        sender: session.user_id.clone(),
        device_id: None,
        txn_id: None,
        event: EventSpec::state("m.room.member", target, content),
    };
    let answer = rooms::call(ctx, room_id, &request).await?;
    project_sent(ctx, room_id, target, &membership, &answer).await?;
    Ok(answer)
}

fn with_reason(mut content: Value, reason: Option<String>) -> Value {
    if let Some(r) = reason {
        content["reason"] = json!(r);
    }
    content
}

#[derive(Deserialize, Default)]
struct ReasonBody {
    #[serde(default)]
    reason: Option<String>,
}

/// A join or knock body: `reason`, and any custom fields.
#[derive(Deserialize, Default)]
struct EnterBody {
    #[serde(default)]
    reason: Option<Value>,
    #[serde(flatten)]
    extra: serde_json::Map<String, Value>,
}

#[derive(Deserialize)]
struct TargetBody {
    user_id: String,
    #[serde(default)]
    reason: Option<String>,
}

fn body_or_default<T: for<'de> Deserialize<'de> + Default>(req: &HttpRequest) -> Result<T, MatrixError> {
    if req.body.is_empty() {
        Ok(T::default())
    } else {
        req.json()
    }
}

fn target_of(req: &HttpRequest) -> Result<TargetBody, MatrixError> {
    let body: TargetBody = req.json()?;
    <&UserId>::try_from(body.user_id.as_str()).map_err(|_| MatrixError::invalid_param("Invalid user_id"))?;
    Ok(body)
}

/// Joins or knocks on a room by id or alias, as the session's user, with their profile.
async fn enter(
    ctx: &Ctx,
    req: &HttpRequest,
    id_or_alias: &str,
    membership: &str,
) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    let body: EnterBody = body_or_default(req)?;
    if body.reason.as_ref().is_some_and(|r| !r.is_string()) {
        return Err(MatrixError::bad_json("reason must be a string"));
    }
    let (room_id, alias_servers) = resolve_room_servers(ctx, id_or_alias).await?;
    // A room this server does not hold is joined (or knocked on) through a server that
    // does.
    let remote = !storage::rooms::known(&ctx.db()?, &room_id).await?;
    if remote && session.is_guest {
        return Err(MatrixError::new(
            "M_GUEST_ACCESS_FORBIDDEN",
            "Guests join only rooms on this server",
        ));
    }
    if session.is_guest {
        // Guests join only rooms that let them in (`m.room.guest_access: can_join`).
        let summary = rooms::call(
            ctx,
            &room_id,
            &RoomRequest::Summary {
                user_id: session.user_id.clone(),
            },
        )
        .await?;
        if summary["guest_can_join"] != true {
            return Err(MatrixError::new(
                "M_GUEST_ACCESS_FORBIDDEN",
                "This room does not let guests join",
            ));
        }
    }
    let mut content = profile_fields(ctx, &session.user_id).await?;
    // Custom fields of the request body are kept in the member event (as clients and
    // bridges expect); the membership itself, the third-party proof and a restricted
    // join's authoriser (the server chooses it, after checking) are not content.
    for (key, value) in body.extra {
        if !matches!(
            key.as_str(),
            "membership" | "third_party_signed" | "join_authorised_via_users_server"
        ) {
            content[key] = value;
        }
    }
    if let Some(reason) = body.reason {
        content["reason"] = reason;
    }
    content["membership"] = json!(membership);
    if remote {
        // An invite from another server names the server to join through.
        let mut known_servers = alias_servers;
        known_servers.extend(super::remote_join::kept_servers(ctx, &room_id, &session.user_id).await);
        let servers =
            super::remote_join::candidate_servers(req, &room_id, &known_servers, &ctx.config.server_name);
        // No other server to ask: the room is this server's own (all its members left).
        if !servers.is_empty() {
            if membership == "knock" {
                super::remote_join::knock(ctx, &session, &room_id, &servers, content).await?;
            } else {
                super::remote_join::join(ctx, &session, &room_id, &servers, content).await?;
            }
            project_own(ctx, &room_id, &session.user_id).await?;
            return Ok(super::remote_join::joined(&room_id));
        }
    }
    if membership == "join" {
        // A restricted room: a local member vouches for the join once this server has
        // seen the user in one of the allowed rooms.
        let authorisation = crate::api::restricted::authorise(ctx, &room_id, &session.user_id)
            .await
            .map_err(|e| match e.errcode {
                "M_UNABLE_TO_AUTHORISE_JOIN" | "M_UNABLE_TO_GRANT_JOIN" => MatrixError::forbidden(e.error),
                _ => e,
            })?;
        if let Some(via) = authorisation.via {
            content["join_authorised_via_users_server"] = json!(via);
        }
    }
    member_event(ctx, &session, &room_id, &session.user_id, content).await?;
    Ok(json!({ "room_id": room_id }))
}

/// `POST /_matrix/client/v3/join/{roomIdOrAlias}` and `POST /_matrix/client/v3/rooms/{roomId}/join`
pub async fn join(ctx: &Ctx, req: &HttpRequest, id_or_alias: &str) -> Result<Value, MatrixError> {
    enter(ctx, req, id_or_alias, "join").await
}

/// `POST /_matrix/client/v3/knock/{roomIdOrAlias}`
pub async fn knock(ctx: &Ctx, req: &HttpRequest, id_or_alias: &str) -> Result<Value, MatrixError> {
    enter(ctx, req, id_or_alias, "knock").await
}

/// `POST /_matrix/client/v3/rooms/{roomId}/leave`
pub async fn leave(ctx: &Ctx, req: &HttpRequest, room_id: &str) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    let body: ReasonBody = body_or_default(req)?;
    valid_room_id(room_id)?;
    let content = with_reason(json!({ "membership": "leave" }), body.reason);
    match member_event(ctx, &session, room_id, &session.user_id, content.clone()).await {
        // A room not held here: an invite from another server is declined through it.
        Err(e) if e.errcode == "M_NOT_FOUND" => {
            if !super::remote_join::decline(ctx, &session, room_id, content).await? {
                return Err(e);
            }
            project_own(ctx, room_id, &session.user_id).await?;
        }
        other => {
            other?;
        }
    }
    Ok(json!({}))
}

/// `POST /_matrix/client/v3/rooms/{roomId}/invite`
pub async fn invite(ctx: &Ctx, req: &HttpRequest, room_id: &str) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    valid_room_id(room_id)?;
    // An invite by email or phone number goes through the identity server named.
    let raw: Value = req.json()?;
    if raw.get("id_server").is_some() || raw.get("medium").is_some() {
        let body = serde_json::from_value(raw).map_err(|e| MatrixError::bad_json(e.to_string()))?;
        super::third_party_invite::invite(ctx, &session, room_id, &body).await?;
        return Ok(json!({}));
    }
    let body = target_of(req)?;
    invite_user(ctx, &session, room_id, &body.user_id, body.reason).await?;
    Ok(json!({}))
}

/// Invites `user_id` (of this server or another) into the room as the session's user.
pub(super) async fn invite_user(
    ctx: &Ctx,
    session: &Session,
    room_id: &str,
    user_id: &str,
    reason: Option<String>,
) -> Result<(), MatrixError> {
    if is_local(ctx, user_id) && storage::users::profile(&ctx.db()?, user_id).await?.is_none() {
        return Err(MatrixError::not_found("Unknown user"));
    }
    let content = with_reason(json!({ "membership": "invite" }), reason);
    if !is_local(ctx, user_id) {
        super::remote_join::invite(ctx, session, room_id, user_id, content).await?;
        return Ok(());
    }
    member_event(ctx, session, room_id, user_id, content).await?;
    Ok(())
}

/// `POST /_matrix/client/v3/rooms/{roomId}/kick`, `.../ban` and `.../unban`
pub async fn moderate(
    ctx: &Ctx,
    req: &HttpRequest,
    room_id: &str,
    action: &str,
) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    let body = target_of(req)?;
    valid_room_id(room_id)?;
    let current = rooms::call(
        ctx,
        room_id,
        &RoomRequest::Membership {
            user_id: body.user_id.clone(),
        },
    )
    .await?;
    let current = current["membership"].as_str().unwrap_or_default();
    let membership = match action {
        "kick" if matches!(current, "join" | "invite" | "knock") => "leave",
        "kick" => return Err(MatrixError::forbidden("The user is not in the room")),
        "ban" => "ban",
        "unban" if current == "ban" => "leave",
        "unban" => return Err(MatrixError::forbidden("The user is not banned")),
        _ => return Err(MatrixError::unrecognized()),
    };
    let content = with_reason(json!({ "membership": membership }), body.reason);
    member_event(ctx, &session, room_id, &body.user_id, content).await?;
    Ok(json!({}))
}

/// `POST /_matrix/client/v3/rooms/{roomId}/forget`
pub async fn forget(ctx: &Ctx, req: &HttpRequest, room_id: &str) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    valid_room_id(room_id)?;
    let db = ctx.db()?;
    match storage::rooms::membership(&db, room_id, &session.user_id)
        .await?
        .as_deref()
    {
        None => Err(MatrixError::not_found("You were never in this room")),
        Some("join") | Some("invite") | Some("knock") => {
            Err(MatrixError::new("M_UNKNOWN", "Leave the room before forgetting it").with_status(400))
        }
        Some(_) => {
            storage::rooms::forget(&db, room_id, &session.user_id).await?;
            Ok(json!({}))
        }
    }
}

/// Sends a fresh `m.room.member` join, with the current profile, into each room the
/// user is joined to. Best effort: a room that refuses is logged and skipped.
pub async fn propagate_profile(ctx: &Ctx, user_id: &str) {
    let Ok(db) = ctx.db() else {
        return;
    };
    let rooms = match storage::rooms::joined_rooms(&db, user_id).await {
        Ok(r) => r,
        Err(e) => {
            crate::platform::log_error(&format!("profile propagation: {e}"));
            return;
        }
    };
    let Ok(mut content) = profile_fields(ctx, user_id).await else {
        return;
    };
    content["membership"] = json!("join");
    let request = RoomRequest::Send {
        sender: user_id.to_owned(),
        device_id: None,
        txn_id: None,
        event: EventSpec::state("m.room.member", user_id, content),
    };
    // Each room is its own Durable Object: ask them all at once.
    let calls = rooms.iter().map(|room_id| rooms::call(ctx, room_id, &request));
    for (room_id, result) in rooms.iter().zip(futures_util::future::join_all(calls).await) {
        if let Err(e) = result {
            crate::platform::log_error(&format!("profile propagation to {room_id}: {e}"));
        }
    }
}

/// `GET /_matrix/client/v3/joined_rooms`
pub async fn joined_rooms(ctx: &Ctx, req: &HttpRequest) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    let rooms = storage::rooms::joined_rooms(&ctx.db()?, &session.user_id).await?;
    Ok(json!({ "joined_rooms": rooms }))
}
