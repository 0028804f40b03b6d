//! Third-party invites finished: an identity server tells us an address is now bound
//! (`PUT /3pid/onbind`, unauthenticated: the identity server's signature in each invite
//! is what the room's auth rules check), and another server hands us such an invite
//! for a room of ours (`PUT /exchange_third_party_invite/{roomId}`).

use serde_json::{json, Value};

use crate::api::auth::Session;
use crate::api::http::HttpRequest;
use crate::api::MatrixError;
use crate::core::third_party::{self, BoundInvite};
use crate::federation::client::request;
use crate::platform::{log_error, rooms, Ctx};
use crate::roomserver::protocol::RoomRequest;

fn server_of(user_id: &str) -> Option<&str> {
    user_id.split_once(':').map(|(_, s)| s)
}

/// Turns the room's third-party invite `token` into `mxid`'s invite, sent by the
/// inviter (a local user) as the auth rules ask; to another server's user the invite
/// then goes as any invite does.
async fn complete(
    ctx: &Ctx,
    room_id: &str,
    sender: &str,
    mxid: &str,
    token: &str,
    signed: &Value,
) -> Result<(), MatrixError> {
    let pending = rooms::call(
        ctx,
        room_id,
        &RoomRequest::StateEvent {
            user_id: sender.to_owned(),
            event_type: "m.room.third_party_invite".into(),
            state_key: token.to_owned(),
            whole_event: true,
        },
    )
    .await?;
    if pending["sender"] != sender {
        return Err(MatrixError::forbidden("The invite was made by someone else"));
    }
    let display_name = pending["content"]["display_name"].as_str().unwrap_or_default();
    let content = third_party::member_content(display_name, signed);
    let session = Session {
        user_id: sender.to_owned(),
        device_id: String::new(),
        is_admin: false,
        is_guest: false,
    };
    if server_of(mxid) == Some(ctx.config.server_name.as_str()) {
        crate::api::client::membership::member_event(ctx, &session, room_id, mxid, content).await?;
    } else {
        crate::api::client::remote_join::invite(ctx, &session, room_id, mxid, content).await?;
    }
    Ok(())
}

/// One bound invite: ours to finish if the inviter is ours, else handed to the
/// inviter's server.
async fn finish(ctx: &Ctx, invite: &BoundInvite) -> Result<(), MatrixError> {
    let inviter_server =
        server_of(&invite.sender).ok_or_else(|| MatrixError::invalid_param("Invalid sender"))?;
    if inviter_server == ctx.config.server_name {
        return complete(
            ctx,
            &invite.room_id,
            &invite.sender,
            &invite.mxid,
            &invite.token,
            &invite.signed,
        )
        .await;
    }
    let event = json!({
        "type": "m.room.member",
        "room_id": invite.room_id,
        "sender": invite.sender,
        "state_key": invite.mxid,
        "content": third_party::member_content("", &invite.signed),
    });
    let target = format!(
        "/_matrix/federation/v1/exchange_third_party_invite/{}",
        crate::api::http::percent_encode(&invite.room_id)
    );
    request(ctx, inviter_server, "PUT", &target, Some(&event))
        .await
        .map(|_| ())
        .map_err(|e| {
            log_error(&format!("exchange_third_party_invite with {inviter_server}: {e}"));
            MatrixError::forbidden(format!("{inviter_server} did not take the invite"))
        })
}

/// `PUT /_matrix/federation/v1/3pid/onbind`
pub async fn onbind(ctx: &Ctx, req: &HttpRequest) -> Result<Value, MatrixError> {
    let body: Value = req.json()?;
    let invites = third_party::bound_invites(&body).map_err(MatrixError::bad_json)?;
    for invite in &invites {
        // Each invite stands alone: one that fails leaves the others.
        if let Err(e) = finish(ctx, invite).await {
            log_error(&format!(
                "3pid invite to {} in {}: {e}",
                invite.mxid, invite.room_id
            ));
        }
    }
    Ok(json!({}))
}

/// `PUT /_matrix/federation/v1/exchange_third_party_invite/{roomId}`: another server's
/// user was bound to an address one of ours invited.
pub async fn exchange(
    ctx: &Ctx,
    req: &HttpRequest,
    origin: &str,
    room_id: &str,
) -> Result<Value, MatrixError> {
    let event: Value = req.json()?;
    let (Some(sender), Some(mxid)) = (event["sender"].as_str(), event["state_key"].as_str()) else {
        return Err(MatrixError::bad_json("sender and state_key are required"));
    };
    let signed = &event["content"]["third_party_invite"]["signed"];
    let token = signed["token"]
        .as_str()
        .ok_or_else(|| MatrixError::bad_json("no signed token"))?;
    if event["type"] != "m.room.member" || event["room_id"] != room_id || signed["mxid"] != mxid {
        return Err(MatrixError::bad_json("not a third-party invite for this room"));
    }
    if server_of(mxid) != Some(origin) {
        return Err(MatrixError::forbidden(
            "The invitee is not the asking server's user",
        ));
    }
    if server_of(sender) != Some(ctx.config.server_name.as_str()) {
        return Err(MatrixError::forbidden("The inviter is not a user of this server"));
    }
    complete(ctx, room_id, sender, mxid, token, signed).await?;
    Ok(json!({}))
}
