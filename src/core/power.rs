//! Power levels as the client API reads them: a user's level and the level an action
//! needs, from the room's `m.room.power_levels` and `m.room.create` contents. The auth
//! rules themselves are ruma's (`core::auth`); these answer the questions the server
//! asks before it makes an event (may this user redact others' events, delete an
//! alias, publish the room).

use serde_json::Value;

/// A level from the JSON (an integer, or a numeric string in old room versions).
fn level(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
}

/// The room's power facts for one question.
pub struct Power<'a> {
    /// `m.room.power_levels` content, if the room has one.
    pub levels: Option<&'a Value>,
    /// The create event's sender and content.
    pub creator: &'a str,
    pub create_content: &'a Value,
    /// Whether the room version gives creators unlimited power (v12).
    pub creators_unlimited: bool,
}

impl Power<'_> {
    fn is_creator(&self, user: &str) -> bool {
        self.creator == user
            || self.create_content["additional_creators"]
                .as_array()
                .is_some_and(|list| list.iter().any(|c| c.as_str() == Some(user)))
    }

    /// The user's level (`i64::MAX` for a creator where creators are unlimited).
    pub fn user_level(&self, user: &str) -> i64 {
        if self.creators_unlimited && self.is_creator(user) {
            return i64::MAX;
        }
        match self.levels {
            Some(p) => level(&p["users"][user])
                .or_else(|| level(&p["users_default"]))
                .unwrap_or(0),
            // Without power levels the creator has 100, everyone else 0.
            None if self.creator == user => 100,
            None => 0,
        }
    }

    /// The level needed to send a state event of `event_type`.
    pub fn state_level(&self, event_type: &str) -> i64 {
        match self.levels {
            Some(p) => level(&p["events"][event_type])
                .or_else(|| level(&p["state_default"]))
                .unwrap_or(50),
            None => 0,
        }
    }

    /// The level of a named action (`redact`, `kick`, `ban`, `invite`).
    pub fn action_level(&self, action: &str) -> i64 {
        let default = if action == "invite" { 0 } else { 50 };
        self.levels.and_then(|p| level(&p[action])).unwrap_or(default)
    }

    pub fn may_send_state(&self, user: &str, event_type: &str) -> bool {
        self.user_level(user) >= self.state_level(event_type)
    }

    pub fn may(&self, user: &str, action: &str) -> bool {
        self.user_level(user) >= self.action_level(action)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn levels_defaults_and_creators() {
        let levels = json!({"users": {"@mod:hs": 50, "@str:hs": "75"}, "users_default": 0,
                            "events": {"m.room.name": 100}, "state_default": 50, "redact": 50});
        let create = json!({"additional_creators": ["@co:hs"]});
        let p = Power {
            levels: Some(&levels),
            creator: "@c:hs",
            create_content: &create,
            creators_unlimited: true,
        };
        assert!(p.may("@mod:hs", "redact"));
        assert!(!p.may("@nobody:hs", "redact"));
        assert_eq!(p.user_level("@str:hs"), 75);
        assert!(p.may_send_state("@mod:hs", "m.room.canonical_alias"));
        assert!(!p.may_send_state("@mod:hs", "m.room.name"));
        assert!(p.may_send_state("@c:hs", "m.room.name"));
        assert!(p.may_send_state("@co:hs", "m.room.name"));
        assert!(p.may("@nobody:hs", "invite"));
        let old = Power {
            creators_unlimited: false,
            ..p
        };
        assert!(!old.may_send_state("@c:hs", "m.room.name"));
        let empty = json!({});
        let none = Power {
            levels: None,
            creator: "@c:hs",
            create_content: &empty,
            creators_unlimited: false,
        };
        assert_eq!(none.user_level("@c:hs"), 100);
        assert_eq!(none.user_level("@x:hs"), 0);
    }
}
