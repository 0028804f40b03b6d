//! Server-Server API handlers, one file per endpoint group. Every request except the
//! key, version, OpenID and `/3pid/onbind` endpoints is authenticated (`auth`) before its handler runs.

pub mod auth;
pub mod edus;
pub mod hierarchy;
pub mod invite;
pub mod keys;
pub mod membership;
pub mod pdus;
pub mod query;
pub mod rooms;
pub mod routes;
pub mod send;
pub mod third_party;
pub mod user;
pub mod version;

use serde_json::{json, Value};

use crate::api::http::HttpRequest;
use crate::api::MatrixError;
use crate::core::accounts::token::token_hash;
use crate::platform::Ctx;
use routes::FedEndpoint as F;

/// Answers one federation request.
pub async fn answer(ctx: &Ctx, req: &HttpRequest) -> Result<Value, MatrixError> {
    let (endpoint, params) = routes::route(req.method, &req.path)?;
    let p = |i: usize| params.get(i).map(String::as_str).unwrap_or_default();
    let origin = if endpoint.unsigned() {
        String::new()
    } else {
        auth::authenticate(ctx, req).await?
    };
    ctx.mark("auth");
    if !origin.is_empty() {
        // A server that sends requests is up: its sender need not wait out a backoff.
        crate::federation::sender::heard_from(ctx, &origin).await;
    }
    match endpoint {
        F::KeyServer => keys::server(&ctx.config, ctx.now_ms()),
        F::KeyQuery => keys::query(ctx, req).await,
        F::KeyQueryServer => keys::query_server(ctx, req, p(0)).await,
        F::Version => Ok(version::get()),
        F::OpenIdUserInfo => openid_userinfo(ctx, req).await,
        F::QueryProfile => query::profile(ctx, req).await,
        F::QueryDirectory => query::directory(ctx, req).await,
        F::UserDevices => user::devices(ctx, p(0)).await,
        F::UserKeysQuery => user::keys_query(ctx, req).await,
        F::UserKeysClaim => user::keys_claim(ctx, req).await,
        F::PublicRooms | F::PublicRoomsPost => crate::api::client::directory::public_rooms(ctx, req).await,
        F::Event => rooms::event(ctx, &origin, p(0)).await,
        F::State => rooms::state(ctx, req, &origin, p(0)).await,
        F::StateIds => rooms::state_ids(ctx, req, &origin, p(0)).await,
        F::EventAuth => rooms::event_auth(ctx, &origin, p(0), p(1)).await,
        F::Backfill => rooms::backfill(ctx, req, &origin, p(0)).await,
        F::MissingEvents => rooms::missing_events(ctx, req, &origin, p(0)).await,
        F::Send => send::send(ctx, req, &origin, p(0)).await,
        F::MakeJoin => membership::make(ctx, req, &origin, (p(0), p(1)), "join").await,
        F::SendJoin => membership::send_join(ctx, req, &origin, (p(0), p(1))).await,
        F::MakeLeave => membership::make(ctx, req, &origin, (p(0), p(1)), "leave").await,
        F::SendLeave => membership::send_leave(ctx, req, &origin, (p(0), p(1))).await,
        // The first versions answer `[200, body]`.
        F::SendJoinV1 => membership::send_join(ctx, req, &origin, (p(0), p(1)))
            .await
            .map(|body| json!([200, body])),
        F::SendLeaveV1 => membership::send_leave(ctx, req, &origin, (p(0), p(1)))
            .await
            .map(|body| json!([200, body])),
        F::Invite => invite::invite(ctx, req, &origin, (p(0), p(1))).await,
        F::MakeKnock => membership::make(ctx, req, &origin, (p(0), p(1)), "knock").await,
        F::SendKnock => membership::send_knock(ctx, req, &origin, (p(0), p(1))).await,
        F::Hierarchy => hierarchy::hierarchy(ctx, req, &origin, p(0)).await,
        F::ThirdPartyOnBind => third_party::onbind(ctx, req).await,
        F::ExchangeThirdPartyInvite => third_party::exchange(ctx, req, &origin, p(0)).await,
    }
}

/// `GET /_matrix/federation/v1/openid/userinfo`
async fn openid_userinfo(ctx: &Ctx, req: &HttpRequest) -> Result<Value, MatrixError> {
    let token = req
        .query_param("access_token")
        .ok_or_else(MatrixError::missing_token)?;
    let user = crate::storage::openid::owner(&ctx.db()?, &token_hash(token), ctx.now_ms())
        .await?
        .ok_or_else(MatrixError::unknown_token)?;
    Ok(json!({ "sub": user }))
}
