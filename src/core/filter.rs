//! Sync filters (spec: client-server API, "Filtering"): parsing and the pure matching
//! the Room Durable Object and the /sync assembly apply.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `EventFilter` / `RoomEventFilter` fields we apply.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EventFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub types: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_types: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub senders: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_senders: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rooms: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_rooms: Option<Vec<String>>,
    #[serde(default)]
    pub lazy_load_members: bool,
    #[serde(default)]
    pub include_redundant_members: bool,
}

/// The `room` part of a filter.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RoomFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rooms: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_rooms: Option<Vec<String>>,
    #[serde(default)]
    pub include_leave: bool,
    #[serde(default)]
    pub timeline: EventFilter,
    #[serde(default)]
    pub state: EventFilter,
    #[serde(default)]
    pub ephemeral: EventFilter,
    #[serde(default)]
    pub account_data: EventFilter,
}

/// A whole filter (`POST /user/{userId}/filter`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Filter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_fields: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_format: Option<String>,
    #[serde(default)]
    pub account_data: EventFilter,
    #[serde(default)]
    pub presence: EventFilter,
    #[serde(default)]
    pub room: RoomFilter,
}

impl Filter {
    /// Parses a client's filter; `Err` names what is wrong.
    pub fn parse(value: &Value) -> Result<Self, String> {
        if !value.is_object() {
            return Err("Filter must be a JSON object".into());
        }
        let filter: Filter = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
        if let Some(f) = &filter.event_format {
            if f != "client" && f != "federation" {
                return Err("event_format must be client or federation".into());
            }
        }
        Ok(filter)
    }
}

/// `*` matches any run of characters (the spec's type wildcards).
pub fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, rest)) => {
            let Some(tail) = text.strip_prefix(head) else {
                return false;
            };
            (0..=tail.len())
                .filter(|i| tail.is_char_boundary(*i))
                .any(|i| glob(rest, &tail[i..]))
        }
    }
}

fn listed(list: &Option<Vec<String>>, value: &str, wildcards: bool) -> Option<bool> {
    list.as_ref().map(|l| {
        l.iter()
            .any(|p| if wildcards { glob(p, value) } else { p == value })
    })
}

impl EventFilter {
    /// Whether an event of `event_type` from `sender` passes.
    pub fn allows(&self, event_type: &str, sender: &str) -> bool {
        listed(&self.types, event_type, true) != Some(false)
            && listed(&self.not_types, event_type, true) != Some(true)
            && listed(&self.senders, sender, false) != Some(false)
            && listed(&self.not_senders, sender, false) != Some(true)
    }

    /// Whether the room passes `rooms` / `not_rooms`.
    pub fn allows_room(&self, room_id: &str) -> bool {
        listed(&self.rooms, room_id, false) != Some(false)
            && listed(&self.not_rooms, room_id, false) != Some(true)
    }

    /// Whether nothing can pass (`limit: 0` or `types: []`).
    pub fn excludes_all(&self) -> bool {
        self.limit == Some(0) || self.types.as_ref().is_some_and(|t| t.is_empty())
    }
}

impl RoomFilter {
    pub fn allows_room(&self, room_id: &str) -> bool {
        listed(&self.rooms, room_id, false) != Some(false)
            && listed(&self.not_rooms, room_id, false) != Some(true)
    }
}

/// Keeps only the dotted `fields` of an event (`content.body`, `sender`; `\.` escapes a dot).
pub fn select_fields(event: &Value, fields: &[String]) -> Value {
    let mut out = Map::new();
    for field in fields {
        let path = split_path(field);
        copy_path(event, &mut out, &path);
    }
    Value::Object(out)
}

fn split_path(field: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let (Some(n), Some(last)) = (chars.next(), parts.last_mut()) {
                    last.push(n);
                }
            }
            '.' => parts.push(String::new()),
            c => {
                if let Some(last) = parts.last_mut() {
                    last.push(c);
                }
            }
        }
    }
    parts
}

fn copy_path(src: &Value, dst: &mut Map<String, Value>, path: &[String]) {
    let Some((head, rest)) = path.split_first() else {
        return;
    };
    let Some(value) = src.get(head) else {
        return;
    };
    if rest.is_empty() {
        dst.insert(head.clone(), value.clone());
        return;
    }
    let entry = dst
        .entry(head.clone())
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(inner) = entry {
        copy_path(value, inner, rest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_and_matches() {
        let f = Filter::parse(&json!({
            "room": {"timeline": {"limit": 2, "types": ["m.room.*"], "not_senders": ["@spam:hs"]},
                     "state": {"lazy_load_members": true}, "not_rooms": ["!no"]},
            "event_fields": ["content.body", "type"]
        }))
        .expect("filter");
        assert_eq!(f.room.timeline.limit, Some(2));
        assert!(f.room.state.lazy_load_members);
        assert!(f.room.timeline.allows("m.room.message", "@a:hs"));
        assert!(!f.room.timeline.allows("m.reaction", "@a:hs"));
        assert!(!f.room.timeline.allows("m.room.message", "@spam:hs"));
        assert!(f.room.allows_room("!yes") && !f.room.allows_room("!no"));
        assert!(Filter::parse(&json!([])).is_err());
        assert!(Filter::parse(&json!({"room": {"timeline": {"limit": "x"}}})).is_err());
        assert!(Filter::parse(&json!({"event_format": "weird"})).is_err());
    }

    #[test]
    fn globs() {
        assert!(glob("m.*", "m.room.message"));
        assert!(glob("*", ""));
        assert!(glob("a*c*e", "abcde"));
        assert!(!glob("a*c", "abd"));
        assert!(!glob("m.room", "m.room.message"));
    }

    #[test]
    fn event_fields_keep_only_the_named_paths() {
        let ev = json!({"type": "m.room.message", "content": {"body": "hi", "msgtype": "m.text", "a.b": 1}, "sender": "@a:hs"});
        assert_eq!(
            select_fields(
                &ev,
                &[
                    "content.body".into(),
                    "type".into(),
                    "content.a\\.b".into(),
                    "nope.x".into()
                ]
            ),
            json!({"type": "m.room.message", "content": {"body": "hi", "a.b": 1}})
        );
    }
}
