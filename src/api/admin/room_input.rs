//! `POST /_neurite/admin/v1/rooms/{roomId}/input`: feeds received events (federation
//! format) through the roomserver's input pipeline, the path federation uses. For
//! operators importing history, for system tests of forked DAGs, and for the ingest
//! benchmark. The caller supplies the origin servers' public keys.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::api::auth::require_admin;
use crate::api::http::HttpRequest;
use crate::api::MatrixError;
use crate::platform::{rooms, Ctx};
use crate::roomserver::protocol::{InputKind, RawPdu, RoomRequest, Snapshot};

/// At most this many events per request.
pub const MAX_EVENTS: usize = 1000;
/// At most this many events in a bootstrap's snapshot (state and auth chain).
pub const MAX_SNAPSHOT_EVENTS: usize = 20_000;

#[derive(Deserialize)]
struct Body {
    #[serde(default = "new_kind")]
    kind: InputKind,
    /// Passed to the room unparsed: the room parses each once.
    pdus: Vec<RawPdu>,
    #[serde(default)]
    keys: BTreeMap<String, BTreeMap<String, String>>,
    /// Also answer the room's current state afterwards (`type → state_key → event id`).
    #[serde(default)]
    state: bool,
    /// States at prev events the room lacks: prev event id → the state ids before it.
    #[serde(default)]
    prev_states: BTreeMap<String, Vec<String>>,
    /// With `"kind": "bootstrap"`: the snapshot the one join event starts the room from.
    #[serde(default)]
    snapshot: Option<Snapshot>,
}

fn new_kind() -> InputKind {
    InputKind::New
}

/// `POST /_neurite/admin/v1/rooms/{roomId}/input`
pub async fn input(ctx: &Ctx, req: &HttpRequest, room_id: &str) -> Result<Value, MatrixError> {
    require_admin(ctx, req).await?;
    ctx.mark("auth");
    crate::api::client::membership::valid_room_id(room_id)?;
    let body: Body = req.json()?;
    ctx.mark("parse");
    let snapshot_len = body
        .snapshot
        .as_ref()
        .map_or(0, |s| s.state.len() + s.auth_chain.len());
    if body.pdus.len() > MAX_EVENTS || snapshot_len > MAX_SNAPSHOT_EVENTS {
        return Err(MatrixError::invalid_param(format!(
            "At most {MAX_EVENTS} events per request, {MAX_SNAPSHOT_EVENTS} in a snapshot"
        )));
    }
    let request = RoomRequest::Input {
        kind: body.kind,
        pdus: body.pdus,
        keys: body.keys,
        state: body.state,
        prev_states: body.prev_states,
        snapshot: body.snapshot,
        origin: None,
    };
    let answer = rooms::call(ctx, room_id, &request).await;
    ctx.mark("room");
    answer
}
