//! Push rules: a user's ruleset as stored (the `m.push_rules` account data, whose content
//! is `{"global": ruleset}`) and ruma's evaluator run for that user against a room's
//! events, answering whether each event notifies, highlights and plays a sound.
//!
//! Pure: the caller passes the room's state (member count, the user's display name, the
//! power levels and the creators). The edits the push rules API makes are in `edit`.

pub mod edit;

use std::collections::BTreeMap;
use std::future::Future;
use std::task::{Context, Poll, Waker};

use ruma::power_levels::NotificationPowerLevels;
use ruma::push::{PushConditionPowerLevelsCtx, PushConditionRoomCtx};
use ruma::room_version_rules::{AuthorizationRules, RoomPowerLevelsRules};
use ruma::serde::Raw;
use ruma::{Int, OwnedRoomId, OwnedUserId, UInt, UserId};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

pub use ruma::push::Ruleset;

/// The account data type that holds a user's push rules.
pub const ACCOUNT_DATA_TYPE: &str = "m.push_rules";

/// The rule kinds, in the order the spec evaluates them.
pub const KINDS: [&str; 5] = ["override", "content", "room", "sender", "underride"];

/// The user's ruleset from the stored account-data content (`{"global": …}`), with the
/// current server-default rules: a stored default rule keeps the user's `enabled` and
/// `actions`, defaults the server no longer has are dropped, new ones are added. Nothing
/// stored, or something unreadable, is the server defaults.
pub fn ruleset(user: &UserId, stored: Option<&Value>) -> Ruleset {
    let defaults = Ruleset::server_default(user);
    match stored
        .and_then(|c| c.get("global"))
        .and_then(|g| serde_json::from_value::<Ruleset>(g.clone()).ok())
    {
        Some(mut rules) => {
            rules.update_with_server_default(defaults);
            rules
        }
        None => defaults,
    }
}

/// The ruleset as the API shows it: every kind present, empty ones as `[]`.
pub fn ruleset_json(rules: &Ruleset) -> Value {
    let mut map = match serde_json::to_value(rules) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    for kind in KINDS {
        map.entry(kind).or_insert_with(|| json!([]));
    }
    Value::Object(map)
}

/// The account-data content for a ruleset (what `GET /pushrules/` answers).
pub fn content(rules: &Ruleset) -> Value {
    json!({ "global": ruleset_json(rules) })
}

/// What the rules say about one event for one user.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Verdict {
    pub notify: bool,
    /// Only when it also notifies: a highlight is a kind of notification.
    pub highlight: bool,
    pub sound: bool,
}

/// The room as the conditions need it, at the point the counts are taken.
#[derive(Debug, Clone, Default)]
pub struct RoomState<'a> {
    pub room_id: &'a str,
    /// Joined members.
    pub member_count: u64,
    /// The user's display name in the room, if they have one.
    pub display_name: Option<&'a str>,
    /// The `m.room.power_levels` content, if the room has one.
    pub power_levels: Option<&'a Value>,
    /// The room's creators (the create event's sender and `additional_creators`); they
    /// have unlimited power where the room version says so.
    pub creators: Vec<String>,
}

/// The fields of an event a client sees (less `unsigned`), borrowed from its JSON text.
#[derive(Serialize, Deserialize)]
struct ClientView<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a RawValue,
    #[serde(borrow)]
    sender: &'a RawValue,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    state_key: Option<&'a RawValue>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    content: Option<&'a RawValue>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    room_id: Option<&'a RawValue>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    event_id: Option<&'a RawValue>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    origin_server_ts: Option<&'a RawValue>,
}

/// The ruleset bound to one user in one room; evaluate each event with `verdict`.
pub struct Evaluator<'r> {
    rules: &'r Ruleset,
    ctx: PushConditionRoomCtx,
}

fn power(value: &Value) -> Option<Int> {
    match value {
        Value::Number(n) => n.as_i64().and_then(|n| Int::try_from(n).ok()),
        // Room versions before 10 allow levels as strings.
        Value::String(s) => s.trim().parse::<i64>().ok().and_then(|n| Int::try_from(n).ok()),
        _ => None,
    }
}

fn power_levels_ctx(room: &RoomState<'_>, auth: &AuthorizationRules) -> PushConditionPowerLevelsCtx {
    let creators: Vec<OwnedUserId> = room
        .creators
        .iter()
        .filter_map(|c| OwnedUserId::try_from(c.as_str()).ok())
        .collect();
    let rules = RoomPowerLevelsRules::new(auth, creators.iter().cloned());
    let mut users = BTreeMap::new();
    let mut users_default = Int::from(0);
    let mut notifications = NotificationPowerLevels::new();
    match room.power_levels {
        Some(content) => {
            if let Some(map) = content.get("users").and_then(Value::as_object) {
                for (id, level) in map {
                    if let (Ok(id), Some(level)) = (OwnedUserId::try_from(id.as_str()), power(level)) {
                        users.insert(id, level);
                    }
                }
            }
            if let Some(level) = content.get("users_default").and_then(power) {
                users_default = level;
            }
            if let Some(level) = content.pointer("/notifications/room").and_then(power) {
                notifications.room = level;
            }
        }
        // Without a power levels event the creator has 100 and everyone else 0.
        None => {
            for creator in creators {
                users.insert(creator, Int::from(100));
            }
        }
    }
    PushConditionPowerLevelsCtx::new(users, users_default, notifications, rules)
}

/// Polls a future that never waits. ruma's evaluator is `async` only for a condition
/// that can look a thread subscription up, which we do not give it, so it is always
/// ready at the first poll; anything else counts as no match.
fn ready<F: Future>(future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(value) => Some(value),
        Poll::Pending => None,
    }
}

impl<'r> Evaluator<'r> {
    /// `None` when the room or user id is not valid (nothing can match then).
    pub fn new(
        rules: &'r Ruleset,
        user: &str,
        room: &RoomState<'_>,
        auth: &AuthorizationRules,
    ) -> Option<Self> {
        let user_id = OwnedUserId::try_from(user).ok()?;
        let room_id = OwnedRoomId::try_from(room.room_id).ok()?;
        // With no display name, the (deprecated) display-name condition looks for the
        // full user id, never for an empty string, which would match every body.
        let display_name = room
            .display_name
            .filter(|d| !d.trim().is_empty())
            .unwrap_or(user)
            .to_owned();
        let member_count = UInt::try_from(room.member_count).unwrap_or(UInt::MAX);
        let ctx = PushConditionRoomCtx::new(room_id, member_count, user_id, display_name)
            .with_power_levels(power_levels_ctx(room, auth));
        Some(Self { rules, ctx })
    }

    /// The verdict for one event (client or federation JSON text: the conditions read
    /// `type`, `sender`, `state_key`, `room_id` and `content`). The user's own events and
    /// text that is not JSON never notify.
    pub fn verdict(&self, event_json: &str) -> Verdict {
        // Only the client-visible fields: the federation ones (hashes, signatures,
        // auth and prev events) are what rules never read, and flattening them would be
        // most of the work.
        let Ok(view) = serde_json::from_str::<ClientView<'_>>(event_json) else {
            return Verdict::default();
        };
        let Ok(raw) = serde_json::value::to_raw_value(&view).map(Raw::<Value>::from_json) else {
            return Verdict::default();
        };
        let Some(actions) = ready(self.rules.get_actions(&raw, &self.ctx)) else {
            return Verdict::default();
        };
        let notify = actions.iter().any(|a| a.should_notify());
        Verdict {
            notify,
            highlight: notify && actions.iter().any(|a| a.is_highlight()),
            sound: notify && actions.iter().any(|a| a.sound().is_some()),
        }
    }
}

#[cfg(test)]
mod tests;
