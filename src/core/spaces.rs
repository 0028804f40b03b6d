//! Spaces: who may see a room in a hierarchy or a summary, the order of a space's
//! children, and the hierarchy's pagination token.

use serde_json::{Map, Value};

/// The hierarchy's defaults and bounds.
pub const DEFAULT_LIMIT: u64 = 50;
pub const MAX_LIMIT: u64 = 100;
pub const MAX_DEPTH: u64 = 10;
/// Rooms a request looks at, at most, however the tree is shaped.
pub const MAX_VISITED: usize = 1000;

/// What decides whether a user may see a room (`SpaceEntry`'s answer).
#[derive(Debug, Clone, Copy, Default)]
pub struct Facts<'a> {
    /// The user's membership (`None`: none, or no user).
    pub membership: Option<&'a str>,
    pub join_rule: Option<&'a str>,
    pub world_readable: bool,
    /// The user is joined to one of the rooms a restricted join rule allows.
    pub in_allowed_room: bool,
}

impl<'a> Facts<'a> {
    /// The facts of a `SpaceEntry` answer, `in_allowed_room` aside.
    pub fn of(entry: &'a Value) -> Self {
        Facts {
            membership: entry["membership"].as_str(),
            join_rule: entry["join_rule"].as_str(),
            world_readable: entry["world_readable"] == true,
            in_allowed_room: false,
        }
    }
}

/// Whether a room shows in a hierarchy or summary, per the spec: the user is joined or
/// invited, may join (public, or restricted and in an allowed room), may knock, or the
/// room is world-readable. A banned user sees nothing.
pub fn accessible(f: &Facts<'_>) -> bool {
    match f.membership {
        Some("join") | Some("invite") => return true,
        Some("ban") => return false,
        _ => {}
    }
    if f.world_readable {
        return true;
    }
    match f.join_rule {
        Some("public") | Some("knock") | Some("knock_restricted") => true,
        Some("restricted") => f.in_allowed_room,
        _ => false,
    }
}

/// Whether the room's join rule makes membership of other rooms count.
pub fn is_restricted(entry: &Value) -> bool {
    matches!(
        entry["join_rule"].as_str(),
        Some("restricted") | Some("knock_restricted")
    )
}

/// A valid `order` of an `m.space.child`: at most 50 characters of `\x20`–`\x7E`.
fn valid_order(content: &Value) -> Option<&str> {
    content["order"]
        .as_str()
        .filter(|o| o.len() <= 50 && o.bytes().all(|b| (0x20..=0x7e).contains(&b)))
}

/// A space's children (its `children_state`), those not suggested left out when
/// `suggested_only`, in the spec's order: by `order` (those without a valid one
/// last), then `origin_server_ts`, then room id.
pub fn ordered_children(children_state: &[Value], suggested_only: bool) -> Vec<Value> {
    let mut kept: Vec<Value> = children_state
        .iter()
        .filter(|c| !suggested_only || c["content"]["suggested"] == true)
        .cloned()
        .collect();
    kept.sort_by(|a, b| {
        let key = |c: &Value| {
            let order = valid_order(&c["content"]).map(str::to_owned);
            (
                order.is_none(),
                order,
                c["origin_server_ts"].as_u64().unwrap_or(0),
                c["state_key"].as_str().unwrap_or_default().to_owned(),
            )
        };
        key(a).cmp(&key(b))
    });
    kept
}

/// A hierarchy entry as clients get it: the summary fields without the empty ones
/// (and without `membership`, which is the summary's).
pub fn chunk_entry(entry: &Value, children: Vec<Value>) -> Value {
    let mut out = Map::new();
    if let Some(object) = entry.as_object() {
        for (k, v) in object {
            let empty = v.is_null() || v.as_array().is_some_and(Vec::is_empty);
            if k != "membership" && k != "children_state" && !empty {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    out.insert("children_state".into(), Value::Array(children));
    Value::Object(out)
}

/// Where a page of the hierarchy starts and what the first page asked for, which
/// later pages may not change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    /// Rooms already answered.
    pub skip: u64,
    pub max_depth: u64,
    pub suggested_only: bool,
}

impl Token {
    pub fn encode(&self) -> String {
        format!(
            "h{}_{}_{}",
            self.skip,
            self.max_depth,
            u8::from(self.suggested_only)
        )
    }

    pub fn parse(text: &str) -> Option<Token> {
        let mut parts = text.strip_prefix('h')?.split('_');
        let skip = parts.next()?.parse().ok()?;
        let max_depth = parts.next()?.parse().ok()?;
        let suggested_only = match parts.next()? {
            "0" => false,
            "1" => true,
            _ => return None,
        };
        if parts.next().is_some() {
            return None;
        }
        Some(Token {
            skip,
            max_depth,
            suggested_only,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn who_may_see_a_room() {
        let f = |membership, join_rule, world_readable, in_allowed_room| Facts {
            membership,
            join_rule,
            world_readable,
            in_allowed_room,
        };
        assert!(accessible(&f(None, Some("public"), false, false)));
        assert!(accessible(&f(None, Some("invite"), true, false)));
        assert!(accessible(&f(None, Some("knock"), false, false)));
        assert!(accessible(&f(Some("invite"), Some("invite"), false, false)));
        assert!(accessible(&f(Some("join"), Some("invite"), false, false)));
        assert!(!accessible(&f(None, Some("invite"), false, false)));
        assert!(!accessible(&f(Some("leave"), Some("invite"), false, false)));
        assert!(!accessible(&f(Some("ban"), Some("public"), true, false)));
        assert!(!accessible(&f(None, Some("restricted"), false, false)));
        assert!(accessible(&f(None, Some("restricted"), false, true)));
        assert!(accessible(&f(None, None, true, false)));
    }

    #[test]
    fn children_are_ordered_and_filtered() {
        let c = |id: &str, order: Value, ts: u64, suggested: bool| {
            json!({"type": "m.space.child", "state_key": id, "origin_server_ts": ts,
                   "content": {"via": ["hs"], "order": order, "suggested": suggested}})
        };
        let list = vec![
            c("!d", json!(null), 1, false),
            c("!c", json!("b"), 5, true),
            c("!b", json!("a"), 9, false),
            c("!a", json!(null), 1, true),
            c("!e", json!("\u{7f}bad"), 0, false),
        ];
        let ids = |v: Vec<Value>| -> Vec<String> {
            v.iter()
                .map(|c| c["state_key"].as_str().unwrap_or_default().to_owned())
                .collect()
        };
        assert_eq!(
            ids(ordered_children(&list, false)),
            ["!b", "!c", "!e", "!a", "!d"]
        );
        assert_eq!(ids(ordered_children(&list, true)), ["!c", "!a"]);
    }

    #[test]
    fn tokens_round_trip() {
        let t = Token {
            skip: 7,
            max_depth: 3,
            suggested_only: true,
        };
        assert_eq!(Token::parse(&t.encode()), Some(t));
        assert_eq!(Token::parse("h1_2"), None);
        assert_eq!(Token::parse("x1_2_0"), None);
        assert_eq!(Token::parse("h1_2_0_4"), None);
        assert_eq!(Token::parse("h-1_2_0"), None);
    }

    #[test]
    fn entries_lose_their_empty_fields() {
        let e = json!({"room_id": "!r", "name": null, "allowed_room_ids": [], "membership": "join",
                       "num_joined_members": 2, "children_state": [1]});
        assert_eq!(
            chunk_entry(&e, vec![]),
            json!({"room_id": "!r", "num_joined_members": 2, "children_state": []})
        );
    }
}
