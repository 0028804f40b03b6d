//! `POST /_matrix/client/v3/createRoom`: the plan of initial events (pure, tested here)
//! and the handler that signs the create event and hands the rest to the new room.

use ruma::room_version_rules::RoomVersionRules;
use ruma::{OwnedRoomId, RoomVersionId, UserId};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::api::auth::require_user;
use crate::api::http::HttpRequest;
use crate::api::MatrixError;
use crate::core::builder::{build_create_event, Signer};
use crate::core::room_version::{self, DEFAULT_ROOM_VERSION};
use crate::platform::{self, rooms, Ctx};
use crate::roomserver::protocol::{EventSpec, RoomRequest};
use crate::storage::{self, users};

#[derive(Debug, Default, Deserialize)]
pub struct CreateRoom {
    #[serde(default)]
    pub visibility: Option<String>,
    #[serde(default)]
    pub room_alias_name: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub topic: Option<String>,
    #[serde(default)]
    pub invite: Vec<String>,
    /// Invites by email or phone number, through an identity server, once the room exists.
    #[serde(default)]
    pub invite_3pid: Vec<super::third_party_invite::ThirdPartyBody>,
    #[serde(default)]
    pub room_version: Option<String>,
    #[serde(default)]
    pub creation_content: Option<Map<String, Value>>,
    #[serde(default)]
    pub initial_state: Vec<InitialState>,
    #[serde(default)]
    pub preset: Option<String>,
    #[serde(default)]
    pub is_direct: bool,
    #[serde(default)]
    pub power_level_content_override: Option<Map<String, Value>>,
}

#[derive(Debug, Deserialize)]
pub struct InitialState {
    #[serde(rename = "type")]
    pub event_type: String,
    #[serde(default)]
    pub state_key: String,
    pub content: Value,
}

/// What creating the room consists of.
#[derive(Debug)]
pub struct Plan {
    pub version: RoomVersionId,
    pub rules: RoomVersionRules,
    pub create_content: Value,
    pub steps: Vec<EventSpec>,
    pub alias: Option<String>,
    pub public: bool,
}

/// Works out the initial events, in the spec's order: create, the creator's join,
/// power levels, canonical alias, the preset's join rules / history visibility / guest
/// access, `initial_state`, name, topic, then invites.
pub fn plan(
    req: CreateRoom,
    creator: &UserId,
    server_name: &str,
    profile: &Value,
) -> Result<Plan, MatrixError> {
    let version_text = req
        .room_version
        .clone()
        .unwrap_or_else(|| DEFAULT_ROOM_VERSION.to_string());
    let (version, rules) = offered_version(&version_text)?;
    let public = match req.visibility.as_deref() {
        None | Some("private") => false,
        Some("public") => true,
        Some(_) => return Err(MatrixError::invalid_param("visibility must be public or private")),
    };
    let preset = match req.preset.as_deref() {
        Some(p @ ("private_chat" | "public_chat" | "trusted_private_chat")) => p,
        Some(_) => return Err(MatrixError::invalid_param("Unknown preset")),
        None if public => "public_chat",
        None => "private_chat",
    };
    let alias = match &req.room_alias_name {
        Some(local) if local.is_empty() || local.contains(':') || local.contains(char::is_whitespace) => {
            return Err(MatrixError::new("M_INVALID_PARAM", "Invalid room_alias_name"));
        }
        Some(local) => Some(format!("#{local}:{server_name}")),
        None => None,
    };
    let mut invites = Vec::new();
    for user in &req.invite {
        let id = <&UserId>::try_from(user.as_str())
            .map_err(|_| MatrixError::invalid_param(format!("Invalid user id in invite: {user}")))?;
        invites.push(id.to_owned());
    }

    let mut create_content = Map::new();
    if let Some(extra) = req.creation_content {
        for (k, v) in extra {
            // The server sets these itself.
            if k != "creator" && k != "room_version" {
                create_content.insert(k, v);
            }
        }
    }
    let creators_privileged = rules.authorization.explicitly_privilege_room_creators;
    if creators_privileged && preset == "trusted_private_chat" {
        // v12: invitees of a trusted private chat become creators too.
        let extra: Vec<Value> = invites.iter().map(|u| json!(u)).collect();
        if !extra.is_empty() {
            create_content
                .entry("additional_creators")
                .or_insert(Value::Array(extra));
        }
    }

    let mut steps = Vec::new();
    let mut join = profile.as_object().cloned().unwrap_or_default();
    join.insert("membership".into(), json!("join"));
    steps.push(EventSpec::state(
        "m.room.member",
        creator.as_str(),
        Value::Object(join),
    ));

    let mut users = Map::new();
    if !creators_privileged {
        users.insert(creator.to_string(), json!(100));
    }
    if preset == "trusted_private_chat" && !creators_privileged {
        for u in &invites {
            users.insert(u.to_string(), json!(100));
        }
    }
    let mut power = json!({
        "users": users,
        "users_default": 0,
        "events": {
            "m.room.name": 50,
            "m.room.power_levels": 100,
            "m.room.history_visibility": 100,
            "m.room.canonical_alias": 50,
            "m.room.avatar": 50,
            "m.room.tombstone": 100,
            "m.room.server_acl": 100,
            "m.room.encryption": 100,
        },
        "events_default": 0,
        "state_default": 50,
        "ban": 50,
        "kick": 50,
        "redact": 50,
        "invite": if preset == "public_chat" { 50 } else { 0 },
        "notifications": { "room": 50 },
    });
    if let (Some(overrides), Some(obj)) = (req.power_level_content_override, power.as_object_mut()) {
        for (k, v) in overrides {
            obj.insert(k, v);
        }
    }
    steps.push(EventSpec::state("m.room.power_levels", "", power));
    if let Some(alias) = &alias {
        steps.push(EventSpec::state(
            "m.room.canonical_alias",
            "",
            json!({ "alias": alias }),
        ));
    }
    let join_rule = if preset == "public_chat" {
        "public"
    } else {
        "invite"
    };
    steps.push(EventSpec::state(
        "m.room.join_rules",
        "",
        json!({ "join_rule": join_rule }),
    ));
    steps.push(EventSpec::state(
        "m.room.history_visibility",
        "",
        json!({ "history_visibility": "shared" }),
    ));
    if preset != "public_chat" {
        steps.push(EventSpec::state(
            "m.room.guest_access",
            "",
            json!({ "guest_access": "can_join" }),
        ));
    }
    for s in req.initial_state {
        if s.event_type == "m.room.create" || s.event_type == "m.room.member" {
            return Err(MatrixError::invalid_param(format!(
                "initial_state may not contain {}",
                s.event_type
            )));
        }
        if !s.content.is_object() {
            return Err(MatrixError::bad_json("initial_state content must be an object"));
        }
        // A later event for the same state replaces the preset's.
        steps.retain(|e| !(e.event_type == s.event_type && e.state_key.as_deref() == Some(&s.state_key)));
        steps.push(EventSpec::state(&s.event_type, &s.state_key, s.content));
    }
    if let Some(name) = req.name {
        steps.push(EventSpec::state("m.room.name", "", json!({ "name": name })));
    }
    if let Some(topic) = req.topic {
        steps.push(EventSpec::state("m.room.topic", "", json!({ "topic": topic })));
    }
    for u in &invites {
        let mut content = json!({ "membership": "invite" });
        if req.is_direct {
            content["is_direct"] = json!(true);
        }
        steps.push(EventSpec::state("m.room.member", u.as_str(), content));
    }
    Ok(Plan {
        version,
        rules,
        create_content: Value::Object(create_content),
        steps,
        alias,
        public,
    })
}

/// The `m.room.member` content fields from a user's profile.
pub async fn profile_fields(ctx: &Ctx, user_id: &str) -> Result<Value, MatrixError> {
    let profile = users::profile(&ctx.db()?, user_id).await?.unwrap_or_default();
    let mut out = Map::new();
    if let Some(d) = profile.displayname {
        out.insert("displayname".into(), json!(d));
    }
    if let Some(a) = profile.avatar_url {
        out.insert("avatar_url".into(), json!(a));
    }
    Ok(Value::Object(out))
}

/// A fresh `!opaque:server` id for versions before 12; `None` from v12 on, where the
/// create event's hash names the room.
pub fn new_room_id(ctx: &Ctx, rules: &RoomVersionRules) -> Result<Option<OwnedRoomId>, MatrixError> {
    if rules.authorization.room_create_event_id_as_room_id {
        return Ok(None);
    }
    let bytes = platform::random_array::<12>().map_err(|_| MatrixError::internal())?;
    let local: String = bytes.iter().map(|b| (b'a' + b % 26) as char).collect();
    OwnedRoomId::try_from(format!("!{local}:{}", ctx.config.server_name))
        .map(Some)
        .map_err(|_| MatrixError::internal())
}

/// A room version this server offers for new rooms, or 400 `M_UNSUPPORTED_ROOM_VERSION`
/// (room creation and upgrades).
pub(super) fn offered_version(
    text: &str,
) -> Result<(ruma::RoomVersionId, ruma::room_version_rules::RoomVersionRules), MatrixError> {
    room_version::parse(text)
        .filter(|(v, _)| room_version::is_offered_to_clients(v))
        .ok_or_else(|| {
            MatrixError::new(
                "M_UNSUPPORTED_ROOM_VERSION",
                "This server does not offer that room version",
            )
        })
}

/// `POST /_matrix/client/v3/createRoom`
pub async fn create_room(ctx: &Ctx, req: &HttpRequest) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    let mut body: CreateRoom = req.json()?;
    let third_party = std::mem::take(&mut body.invite_3pid);
    let creator = <&UserId>::try_from(session.user_id.as_str()).map_err(|_| MatrixError::internal())?;
    let profile = profile_fields(ctx, &session.user_id).await?;
    let plan = plan(body, creator, &ctx.config.server_name, &profile)?;
    let db = ctx.db()?;
    if let Some(alias) = &plan.alias {
        if storage::rooms::resolve_alias(&db, alias).await?.is_some() {
            return Err(MatrixError::new("M_ROOM_IN_USE", "Room alias already taken"));
        }
    }
    let signer = Signer {
        server_name: &ctx.config.server_name,
        key: &ctx.config.signing_key,
        // Unique per isolate: the same user creating two rooms at once gets two rooms.
        now_ms: platform::unique_ms(),
    };
    let room_id = new_room_id(ctx, &plan.rules)?;
    let create = build_create_event(
        &plan.version,
        &plan.rules,
        creator,
        room_id.as_deref(),
        plan.create_content.clone(),
        signer,
    )
    .map_err(|e| MatrixError::bad_json(e.to_string()))?;
    let room_id = create.room_id().to_string();
    if let Some(alias) = &plan.alias {
        if !storage::rooms::create_alias(&db, alias, &room_id, &session.user_id).await? {
            return Err(MatrixError::new("M_ROOM_IN_USE", "Room alias already taken"));
        }
    }
    let request = RoomRequest::Create {
        create: create.to_federation_value(),
        sender: session.user_id.clone(),
        steps: plan.steps,
    };
    if let Err(e) = rooms::call(ctx, &room_id, &request).await {
        if let Some(alias) = &plan.alias {
            storage::rooms::delete_alias(&db, alias).await?;
        }
        return Err(e);
    }
    // The creator's membership, readable at once (the log projection follows).
    super::membership::project_own(ctx, &room_id, &session.user_id).await?;
    if plan.public {
        storage::rooms::set_public(&db, &room_id, true, ctx.now_ms()).await?;
    }
    // The room exists whatever an identity server answers; a failed invite is logged.
    for invite in &third_party {
        if let Err(e) = super::third_party_invite::invite(ctx, &session, &room_id, invite).await {
            platform::log_error(&format!(
                "createRoom {room_id}: invite of {}: {e}",
                invite.address
            ));
        }
    }
    Ok(json!({ "room_id": room_id }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creator() -> ruma::OwnedUserId {
        ruma::OwnedUserId::try_from("@alice:hs.test").expect("user")
    }

    fn plan_of(body: Value) -> Result<Plan, MatrixError> {
        let req: CreateRoom = serde_json::from_value(body).expect("request");
        plan(req, &creator(), "hs.test", &json!({"displayname": "Alice"}))
    }

    fn kinds(plan: &Plan) -> Vec<(String, String)> {
        plan.steps
            .iter()
            .map(|s| (s.event_type.clone(), s.state_key.clone().unwrap_or_default()))
            .collect()
    }

    #[test]
    fn private_chat_by_default_in_spec_order() {
        let plan = plan_of(json!({"name": "N", "topic": "T", "invite": ["@bob:hs.test"]})).expect("plan");
        assert_eq!(plan.version, RoomVersionId::V12);
        assert!(!plan.public);
        let k: Vec<String> = kinds(&plan).into_iter().map(|(t, _)| t).collect();
        assert_eq!(
            k,
            [
                "m.room.member",
                "m.room.power_levels",
                "m.room.join_rules",
                "m.room.history_visibility",
                "m.room.guest_access",
                "m.room.name",
                "m.room.topic",
                "m.room.member"
            ]
        );
        assert_eq!(plan.steps[0].content["displayname"], "Alice");
        assert_eq!(plan.steps[2].content["join_rule"], "invite");
        // v12: creators are not listed in power levels.
        assert!(plan.steps[1].content["users"].get("@alice:hs.test").is_none());
    }

    #[test]
    fn public_chat_overrides_and_initial_state() {
        let plan = plan_of(json!({
            "visibility": "public",
            "room_version": "10",
            "room_alias_name": "lobby",
            "power_level_content_override": {"events_default": 10},
            "initial_state": [{"type": "m.room.history_visibility", "content": {"history_visibility": "world_readable"}}]
        }))
        .expect("plan");
        assert!(plan.public);
        assert_eq!(plan.alias.as_deref(), Some("#lobby:hs.test"));
        let pl = &plan.steps[1].content;
        assert_eq!(pl["users"]["@alice:hs.test"], 100);
        assert_eq!(pl["events_default"], 10);
        let hv: Vec<&EventSpec> = plan
            .steps
            .iter()
            .filter(|s| s.event_type == "m.room.history_visibility")
            .collect();
        assert_eq!(hv.len(), 1);
        assert_eq!(hv[0].content["history_visibility"], "world_readable");
        assert!(plan.steps.iter().any(|s| s.content["join_rule"] == "public"));
    }

    #[test]
    fn rejects_bad_requests() {
        assert_eq!(
            plan_of(json!({"room_version": "1"})).unwrap_err().errcode,
            "M_UNSUPPORTED_ROOM_VERSION"
        );
        assert_eq!(
            plan_of(json!({"room_version": "zzz"})).unwrap_err().errcode,
            "M_UNSUPPORTED_ROOM_VERSION"
        );
        assert_eq!(
            plan_of(json!({"preset": "nope"})).unwrap_err().errcode,
            "M_INVALID_PARAM"
        );
        assert_eq!(
            plan_of(json!({"invite": ["bob"]})).unwrap_err().errcode,
            "M_INVALID_PARAM"
        );
        assert_eq!(
            plan_of(json!({"room_alias_name": "a:b"})).unwrap_err().errcode,
            "M_INVALID_PARAM"
        );
        assert_eq!(
            plan_of(json!({"initial_state": [{"type": "m.room.create", "content": {}}]}))
                .unwrap_err()
                .errcode,
            "M_INVALID_PARAM"
        );
    }

    #[test]
    fn trusted_private_chat_makes_invitees_creators_in_v12() {
        let plan =
            plan_of(json!({"preset": "trusted_private_chat", "invite": ["@bob:hs.test"], "is_direct": true}))
                .expect("plan");
        assert_eq!(
            plan.create_content["additional_creators"],
            json!(["@bob:hs.test"])
        );
        let invite = plan.steps.last().expect("invite");
        assert_eq!(invite.content["is_direct"], true);
    }
}
