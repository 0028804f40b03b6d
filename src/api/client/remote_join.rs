//! Joining a room this server does not hold, through a server that does: its
//! `make_join` template completed and signed for our user, `send_join` sent, and the
//! room started here from the answer (the join plus the state before it and its auth
//! chain, as the roomserver's bootstrap takes it). The servers tried are the ones the
//! client named (`server_name` / `via`), the alias's, and the room id's own.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::api::auth::Session;
use crate::api::federation::pdus::{gather_keys, strings};
use crate::api::http::{percent_encode as enc, HttpRequest};
use crate::api::MatrixError;
use crate::core::builder::{complete_template, Signer};
use crate::federation::client::{request, FedError};
use crate::platform::{log_error, rooms, Ctx};
use crate::roomserver::protocol::{InputKind, RawPdu, RoomRequest, Snapshot};

/// At most this many servers are tried.
const MAX_SERVERS: usize = 5;

/// The servers to try for `room_id`, in order: those named in the request, then
/// `known` ones (an alias's), then the room id's server (rooms before v12).
pub fn candidate_servers(req: &HttpRequest, room_id: &str, known: &[String], own: &str) -> Vec<String> {
    let named: Vec<String> = req
        .query_params("server_name")
        .chain(req.query_params("via"))
        .map(str::to_owned)
        .chain(known.iter().cloned())
        .collect();
    candidate_servers_from(room_id, &named, own)
}

/// `known` servers, then the room id's server, each once, never `own`.
fn candidate_servers_from(room_id: &str, known: &[String], own: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let from_id = room_id.split_once(':').map(|(_, s)| s.to_owned());
    for server in known.iter().cloned().chain(from_id) {
        if server != own && !out.contains(&server) && ruma::ServerName::parse(&server).is_ok() {
            out.push(server);
        }
    }
    out.truncate(MAX_SERVERS);
    out
}

fn failure(server: &str, e: FedError) -> MatrixError {
    match e {
        FedError::Status {
            status: 403, body, ..
        } => MatrixError::forbidden(
            body["error"]
                .as_str()
                .unwrap_or("The room refused the join")
                .to_owned(),
        ),
        FedError::Status { errcode, .. } if errcode == "M_INCOMPATIBLE_ROOM_VERSION" => MatrixError::new(
            "M_INCOMPATIBLE_ROOM_VERSION",
            "This server does not support the room's version",
        ),
        other => {
            log_error(&format!("joining through {server}: {other}"));
            MatrixError::not_found(format!("Could not join through {server}"))
        }
    }
}

/// Joins `session`'s user to `room_id` through one of `servers`, with `content` as the
/// member event's content.
pub async fn join(
    ctx: &Ctx,
    session: &Session,
    room_id: &str,
    servers: &[String],
    content: Value,
) -> Result<(), MatrixError> {
    through_each(servers, "No server to join the room through", |server| {
        join_via(ctx, session, room_id, server, content.clone())
    })
    .await
}

/// Tries `attempt` with each of `servers` in turn until one succeeds. A refusal
/// (`M_FORBIDDEN`) is the room's answer, whoever gives it, and ends the tries; otherwise
/// the last server's error is the answer (`none` when there was no server to try).
async fn through_each<'a, T, F, Fut>(servers: &'a [String], none: &str, attempt: F) -> Result<T, MatrixError>
where
    F: Fn(&'a str) -> Fut,
    Fut: std::future::Future<Output = Result<T, MatrixError>>,
{
    let mut last = MatrixError::not_found(none);
    for server in servers {
        match attempt(server).await {
            Ok(done) => return Ok(done),
            Err(e) if e.errcode == "M_FORBIDDEN" => return Err(e),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// `make_join` / `make_leave` through `server`, the template completed with `content`
/// and signed for the session's user: the event, its id and the room's version.
async fn made_event(
    ctx: &Ctx,
    session: &Session,
    (room_id, server): (&str, &str),
    membership: &str,
    content: Value,
) -> Result<(Value, String, String), MatrixError> {
    let user = <&ruma::UserId>::try_from(session.user_id.as_str()).map_err(|_| MatrixError::internal())?;
    let mut target = format!(
        "/_matrix/federation/v1/make_{membership}/{}/{}",
        enc(room_id),
        enc(&session.user_id),
    );
    if membership == "join" || membership == "knock" {
        let versions: String = (3..=12).map(|v| format!("&ver={v}")).collect();
        target = format!("{target}?{}", &versions[1..]);
    }
    let made = request(ctx, server, "GET", &target, None)
        .await
        .map_err(|e| failure(server, e))?;
    let version = made["room_version"].as_str().unwrap_or("1");
    let (_, rules) = crate::core::room_version::parse(version)
        .ok_or_else(|| MatrixError::new("M_INCOMPATIBLE_ROOM_VERSION", "Unsupported room version"))?;
    let config = &ctx.config;
    let signer = Signer {
        server_name: &config.server_name,
        key: &config.signing_key,
        now_ms: ctx.now_ms(),
    };
    let (event, event_id) =
        complete_template(&made["event"], user, content, &rules, signer).map_err(|e| {
            MatrixError::bad_json(format!(
                "The {membership} template from {server} is unusable: {e}"
            ))
        })?;
    let event = serde_json::to_value(event).map_err(|_| MatrixError::internal())?;
    Ok((event, event_id.to_string(), version.to_owned()))
}

async fn join_via(
    ctx: &Ctx,
    session: &Session,
    room_id: &str,
    server: &str,
    content: Value,
) -> Result<(), MatrixError> {
    let (event, event_id, _) = made_event(ctx, session, (room_id, server), "join", content).await?;
    let target = format!(
        "/_matrix/federation/v2/send_join/{}/{}",
        enc(room_id),
        enc(&event_id)
    );
    let sent = request(ctx, server, "PUT", &target, Some(&event))
        .await
        .map_err(|e| failure(server, e))?;
    // A restricted room's resident server countersigns the join.
    let join = match &sent["event"] {
        Value::Object(_) => sent["event"].clone(),
        _ => event,
    };
    let list = |field: &str| sent[field].as_array().cloned().unwrap_or_default();
    let (state, auth_chain) = (list("state"), list("auth_chain"));
    let mut keys = BTreeMap::new();
    let mut tried = BTreeMap::new();
    for events in [std::slice::from_ref(&join), &state, &auth_chain] {
        gather_keys(ctx, events, &mut keys, &mut tried).await;
    }
    let raw = |events: &[Value]| {
        events
            .iter()
            .map(RawPdu::from_value)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| MatrixError::internal())
    };
    let input = RoomRequest::Input {
        kind: InputKind::Bootstrap,
        pdus: raw(std::slice::from_ref(&join))?,
        keys,
        state: false,
        prev_states: BTreeMap::new(),
        snapshot: Some(Snapshot {
            state: raw(&state)?,
            auth_chain: raw(&auth_chain)?,
            state_ids: Vec::new(),
        }),
        origin: None,
    };
    let answer = rooms::call(ctx, room_id, &input).await?;
    let result = &answer["results"][0];
    if result.get("accepted").is_none() {
        log_error(&format!("joining {room_id} through {server}: {result}"));
        return Err(MatrixError::forbidden("The room's state does not allow the join"));
    }
    Ok(())
}

/// A room alias of another server, asked of that server: the room id and the servers
/// that can join it.
pub async fn resolve_alias(
    ctx: &Ctx,
    alias: &str,
    server: &str,
) -> Result<(String, Vec<String>), MatrixError> {
    let target = format!("/_matrix/federation/v1/query/directory?room_alias={}", enc(alias));
    let answer = request(ctx, server, "GET", &target, None)
        .await
        .map_err(|e| match e {
            FedError::Status { status: 404, .. } => MatrixError::not_found("Room alias not found"),
            other => {
                log_error(&format!("alias {alias} from {server}: {other}"));
                MatrixError::not_found("Room alias could not be resolved")
            }
        })?;
    let room_id = answer["room_id"]
        .as_str()
        .filter(|r| ruma::RoomId::parse(*r).is_ok())
        .ok_or_else(|| MatrixError::not_found("Room alias not found"))?
        .to_owned();
    let servers = answer["servers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect();
    Ok((room_id, servers))
}

/// What `enter` answers after a remote join.
pub fn joined(room_id: &str) -> Value {
    json!({ "room_id": room_id })
}

/// Invites another server's user: the room builds and signs the invite, the invitee's
/// server countersigns it (`PUT /_matrix/federation/v2/invite/{roomId}/{eventId}`),
/// and the room takes the event signed by both.
pub async fn invite(
    ctx: &Ctx,
    session: &Session,
    room_id: &str,
    target: &str,
    content: Value,
) -> Result<(), MatrixError> {
    let server = <&ruma::UserId>::try_from(target)
        .map_err(|_| MatrixError::invalid_param("Invalid user id"))?
        .server_name()
        .to_string();
    let build = RoomRequest::BuildInvite {
        sender: session.user_id.clone(),
        event: crate::roomserver::protocol::EventSpec::state("m.room.member", target, content),
    };
    let built = rooms::call(ctx, room_id, &build).await?;
    let event_id = built["event_id"].as_str().unwrap_or_default().to_owned();
    let body = json!({
        "event": built["event"],
        "room_version": built["room_version"],
        "invite_room_state": built["invite_room_state"],
    });
    let target_path = format!(
        "/_matrix/federation/v2/invite/{}/{}",
        enc(room_id),
        enc(&event_id)
    );
    let answer = request(ctx, &server, "PUT", &target_path, Some(&body))
        .await
        .map_err(|e| failure(&server, e))?;
    let signed = answer["event"].clone();
    if !signed.is_object() {
        return Err(MatrixError::not_found(format!(
            "{server} answered the invite without the event"
        )));
    }
    let mut keys = BTreeMap::new();
    let mut tried = BTreeMap::new();
    gather_keys(ctx, std::slice::from_ref(&signed), &mut keys, &mut tried).await;
    let input = RoomRequest::Input {
        kind: InputKind::New,
        pdus: vec![RawPdu::from_value(&signed).map_err(|_| MatrixError::internal())?],
        keys,
        state: false,
        prev_states: BTreeMap::new(),
        snapshot: None,
        origin: None,
    };
    let answer = rooms::call(ctx, room_id, &input).await?;
    let result = &answer["results"][0];
    if result["event_id"].as_str() != Some(event_id.as_str()) || result.get("accepted").is_none() {
        log_error(&format!("invite of {target} into {room_id}: {result}"));
        return Err(MatrixError::forbidden("The invite was not accepted"));
    }
    Ok(())
}

/// The servers that can take a local user's answer to their invite or knock in a room
/// not held here (the inviter's first, then those of the room's senders): empty when
/// the user has no such invite or knock.
pub async fn kept_servers(ctx: &Ctx, room_id: &str, user_id: &str) -> Vec<String> {
    let request = RoomRequest::Membership {
        user_id: user_id.to_owned(),
    };
    let Ok(answer) = rooms::call(ctx, room_id, &request).await else {
        return Vec::new();
    };
    if answer["remote_invite"] != true || !matches!(answer["membership"].as_str(), Some("invite" | "knock")) {
        return Vec::new();
    }
    strings(&answer["servers"])
}

/// Declines an invite from another server into a room not held here: a leave made
/// and sent through the inviting server (then the room id's), and the kept invite
/// ended with it. When no server takes the leave, the invite still ends here (the
/// user asked not to see it again), under an id made here. False when the user has
/// no such invite.
pub async fn decline(
    ctx: &Ctx,
    session: &Session,
    room_id: &str,
    content: Value,
) -> Result<bool, MatrixError> {
    let kept = kept_servers(ctx, room_id, &session.user_id).await;
    if kept.is_empty() {
        return Ok(false);
    }
    let servers = candidate_servers_from(room_id, &kept, &ctx.config.server_name);
    let mut left = None;
    for server in &servers {
        match leave_via(ctx, session, (room_id, server), content.clone()).await {
            Ok(event_id) => {
                left = Some(event_id);
                break;
            }
            Err(e) => log_error(&format!("declining {room_id} through {server}: {e}")),
        }
    }
    let event_id = left.unwrap_or_else(|| {
        let seed = format!("declined {room_id} {} {}", session.user_id, ctx.now_ms());
        let hash = crate::core::event_hash::reference_hash_of(
            seed.as_bytes(),
            &ruma::room_version_rules::RoomVersionRules::V11,
        );
        format!("${hash}")
    });
    let end = RoomRequest::EndInvite {
        user_id: session.user_id.clone(),
        event_id,
    };
    rooms::call(ctx, room_id, &end).await?;
    Ok(true)
}

async fn leave_via(
    ctx: &Ctx,
    session: &Session,
    (room_id, server): (&str, &str),
    content: Value,
) -> Result<String, MatrixError> {
    let (event, event_id, _) = made_event(ctx, session, (room_id, server), "leave", content).await?;
    let target = format!(
        "/_matrix/federation/v2/send_leave/{}/{}",
        enc(room_id),
        enc(&event_id)
    );
    request(ctx, server, "PUT", &target, Some(&event))
        .await
        .map_err(|e| failure(server, e))?;
    Ok(event_id)
}

/// Knocks on a room this server does not hold, through the first of `servers` that
/// takes it; the room keeps the knock with the stripped state that server answered.
pub async fn knock(
    ctx: &Ctx,
    session: &Session,
    room_id: &str,
    servers: &[String],
    content: Value,
) -> Result<(), MatrixError> {
    let (event, event_id, version, answer) = through_each(servers, "No server to knock through", |server| {
        let content = content.clone();
        async move {
            let (event, event_id, version) =
                made_event(ctx, session, (room_id, server), "knock", content).await?;
            let target = format!(
                "/_matrix/federation/v1/send_knock/{}/{}",
                enc(room_id),
                enc(&event_id)
            );
            let answer = request(ctx, server, "PUT", &target, Some(&event))
                .await
                .map_err(|e| failure(server, e))?;
            Ok((event, event_id, version, answer))
        }
    })
    .await?;
    // `knock_state_events` is the field's older name.
    let state = answer["knock_room_state"]
        .as_array()
        .or_else(|| answer["knock_state_events"].as_array())
        .cloned()
        .unwrap_or_default();
    let keep = RoomRequest::KeepKnock {
        user_id: session.user_id.clone(),
        event_id,
        room_version: version,
        event,
        knock_state: state,
    };
    rooms::call(ctx, room_id, &keep).await?;
    Ok(())
}
