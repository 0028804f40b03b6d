//! Invites by email or phone number (`POST /rooms/{roomId}/invite` with `id_server`,
//! and `invite_3pid` of `/createRoom`): the identity server is asked whether the address
//! is bound to a Matrix user, who is then invited as usual; otherwise it keeps the
//! invite and the room gets an `m.room.third_party_invite` naming the keys the
//! identity server will sign the binding with (`/3pid/onbind` finishes it).

use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::auth::Session;
use crate::api::MatrixError;
use crate::core::server_name::ServerName;
use crate::core::third_party;
use crate::federation::client::{service_request, FedError};
use crate::platform::{log_error, rooms, Ctx};
use crate::roomserver::protocol::{EventSpec, RoomRequest};
use crate::storage;

/// What a client sends to invite an address.
#[derive(Debug, Clone, Deserialize)]
pub struct ThirdPartyBody {
    pub id_server: String,
    pub id_access_token: String,
    pub medium: String,
    pub address: String,
}

fn identity_failure(id_server: &str, e: FedError) -> MatrixError {
    match e {
        FedError::Status {
            status: 401 | 403, ..
        } => MatrixError::forbidden(format!(
            "The identity server {id_server} refused the access token"
        )),
        FedError::Forbidden(_) => MatrixError::new(
            "M_SERVER_NOT_TRUSTED",
            format!("The identity server {id_server} may not be contacted"),
        ),
        other => {
            log_error(&format!("identity server {id_server}: {other}"));
            MatrixError::new(
                "M_UNKNOWN",
                format!("The identity server {id_server} could not be asked"),
            )
            .with_status(400)
        }
    }
}

fn checked(body: &ThirdPartyBody) -> Result<(), MatrixError> {
    for (name, value) in [
        ("id_server", &body.id_server),
        ("id_access_token", &body.id_access_token),
        ("medium", &body.medium),
        ("address", &body.address),
    ] {
        if value.is_empty() {
            return Err(MatrixError::missing_param(format!("{name} must not be empty")));
        }
    }
    if ServerName::parse(&body.id_server).is_none() {
        return Err(MatrixError::invalid_param("id_server is not a server name"));
    }
    Ok(())
}

/// The Matrix user the address is bound to, if any (identity service `/v2/lookup`).
async fn lookup(ctx: &Ctx, body: &ThirdPartyBody) -> Result<Option<String>, MatrixError> {
    let fail = |e| identity_failure(&body.id_server, e);
    let token = Some(body.id_access_token.as_str());
    let details = service_request(
        ctx,
        &body.id_server,
        "GET",
        "/_matrix/identity/v2/hash_details",
        token,
        None,
    )
    .await
    .map_err(fail)?;
    let pepper = details["lookup_pepper"].as_str().unwrap_or_default();
    let algorithms: Vec<&str> = details["algorithms"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some((algorithm, hashed)) =
        third_party::lookup_address(&body.address, &body.medium, pepper, &algorithms)
    else {
        return Err(MatrixError::new(
            "M_UNKNOWN",
            "The identity server offers no lookup algorithm this server knows",
        )
        .with_status(400));
    };
    let request = json!({ "addresses": [hashed], "algorithm": algorithm, "pepper": pepper });
    let answer = service_request(
        ctx,
        &body.id_server,
        "POST",
        "/_matrix/identity/v2/lookup",
        token,
        Some(&request),
    )
    .await
    .map_err(fail)?;
    Ok(answer["mappings"][&hashed].as_str().map(str::to_owned))
}

/// Invites the address in `body` into the room as the session's user.
pub async fn invite(
    ctx: &Ctx,
    session: &Session,
    room_id: &str,
    body: &ThirdPartyBody,
) -> Result<(), MatrixError> {
    checked(body)?;
    // Only a member may invite; asked before any identity server is.
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
    if let Some(user_id) = lookup(ctx, body).await? {
        return super::membership::invite_user(ctx, session, room_id, &user_id, None).await;
    }
    // Not bound yet: the identity server keeps the invite until the address is.
    let profile = storage::users::profile(&ctx.db()?, &session.user_id).await?;
    let mut request = json!({
        "medium": body.medium,
        "address": body.address,
        "room_id": room_id,
        "sender": session.user_id,
    });
    if let Some(name) = profile.as_ref().and_then(|p| p.displayname.clone()) {
        request["sender_display_name"] = json!(name);
    }
    let answer = service_request(
        ctx,
        &body.id_server,
        "POST",
        "/_matrix/identity/v2/store-invite",
        Some(&body.id_access_token),
        Some(&request),
    )
    .await
    .map_err(|e| identity_failure(&body.id_server, e))?;
    let (token, content) = third_party::invite_event(&answer).map_err(|e| {
        log_error(&format!("identity server {}: {e}", body.id_server));
        MatrixError::new(
            "M_UNKNOWN",
            format!("The identity server {} answered badly", body.id_server),
        )
        .with_status(400)
    })?;
    let request = RoomRequest::Send {
        sender: session.user_id.clone(),
        device_id: None,
        txn_id: None,
        event: EventSpec::state("m.room.third_party_invite", &token, content),
    };
    rooms::call(ctx, room_id, &request).await?;
    Ok(())
}
