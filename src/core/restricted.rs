//! Restricted rooms (room versions 8+, and `knock_restricted` from 10): a user who is
//! neither joined nor invited may join when they are joined to one of the rooms the
//! join rules allow, and a user of a resident server who may invite vouches for the
//! join (`join_authorised_via_users_server`). These are the pure questions; the room
//! answers them from its state and the server checks the other rooms.

use ruma::room_version_rules::AuthorizationRules;
use serde_json::Value;

/// Most allow conditions looked at: each is a question to another room.
pub const MAX_ALLOWED_ROOMS: usize = 16;

/// The rooms whose members may join, when the join rules restrict the join: `Some`
/// (possibly empty: nobody passes) for `restricted`, and `knock_restricted` where the
/// room version has it; `None` when the join rules are anything else (the auth rules
/// decide alone). Conditions of unknown types or without a valid room id are skipped,
/// as the spec says; at most `MAX_ALLOWED_ROOMS` are kept.
pub fn allowed_rooms(rules: &AuthorizationRules, join_rules: Option<&Value>) -> Option<Vec<String>> {
    let content = join_rules?;
    let restricting = match content["join_rule"].as_str() {
        Some("restricted") => rules.restricted_join_rule,
        Some("knock_restricted") => rules.knock_restricted_join_rule,
        _ => false,
    };
    if !restricting {
        return None;
    }
    let rooms = content["allow"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["type"] == "m.room_membership")
        .filter_map(|c| c["room_id"].as_str())
        .filter(|id| ruma::RoomId::parse(*id).is_ok())
        .take(MAX_ALLOWED_ROOMS)
        .map(str::to_owned)
        .collect();
    Some(rooms)
}

/// Whether a membership (`None`: never a member) lets the user join a restricted
/// room without a condition: an invite or an existing join.
pub fn needs_condition(membership: Option<&str>) -> bool {
    !matches!(membership, Some("join") | Some("invite"))
}

/// The user who vouches for a join: among `candidates` (local users joined to the
/// room, with their power level), one whose level reaches `invite_level`, the most
/// powerful first, then by user id so the choice is stable.
pub fn authoriser(candidates: &[(String, i64)], invite_level: i64) -> Option<String> {
    candidates
        .iter()
        .filter(|(_, level)| *level >= invite_level)
        .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(&a.0)))
        .map(|(user, _)| user.clone())
}

#[cfg(test)]
mod tests {
    use ruma::room_version_rules::AuthorizationRules;
    use serde_json::json;

    use super::*;

    #[test]
    fn restricted_only_where_the_version_has_it() {
        let allow = json!({"join_rule": "restricted", "allow": [
            {"type": "m.room_membership", "room_id": "!space:a.example"},
        ]});
        assert_eq!(allowed_rooms(&AuthorizationRules::V6, Some(&allow)), None);
        assert_eq!(
            allowed_rooms(&AuthorizationRules::V8, Some(&allow)),
            Some(vec!["!space:a.example".to_owned()])
        );
        let knock = json!({"join_rule": "knock_restricted", "allow": [
            {"type": "m.room_membership", "room_id": "!space:a.example"},
        ]});
        assert_eq!(allowed_rooms(&AuthorizationRules::V8, Some(&knock)), None);
        assert_eq!(
            allowed_rooms(&AuthorizationRules::V10, Some(&knock)).map(|r| r.len()),
            Some(1)
        );
        for other in ["public", "invite", "knock", "private"] {
            let c = json!({"join_rule": other, "allow": allow["allow"]});
            assert_eq!(allowed_rooms(&AuthorizationRules::V10, Some(&c)), None, "{other}");
        }
        assert_eq!(allowed_rooms(&AuthorizationRules::V10, None), None);
    }

    #[test]
    fn conditions_of_unknown_shape_are_skipped() {
        let c = json!({"join_rule": "restricted", "allow": [
            {"type": "m.room_membership"},
            {"type": "m.room_membership", "room_id": "not a room"},
            {"type": "org.example.other", "room_id": "!x:a.example"},
            {"type": "m.room_membership", "room_id": 7},
            "junk",
            {"type": "m.room_membership", "room_id": "!ok:a.example"},
        ]});
        assert_eq!(
            allowed_rooms(&AuthorizationRules::V8, Some(&c)),
            Some(vec!["!ok:a.example".to_owned()])
        );
        let none = json!({"join_rule": "restricted"});
        assert_eq!(allowed_rooms(&AuthorizationRules::V8, Some(&none)), Some(vec![]));
        let many: Vec<_> = (0..40)
            .map(|i| json!({"type": "m.room_membership", "room_id": format!("!r{i}:a.example")}))
            .collect();
        let c = json!({"join_rule": "restricted", "allow": many});
        assert_eq!(
            allowed_rooms(&AuthorizationRules::V8, Some(&c)).map(|r| r.len()),
            Some(MAX_ALLOWED_ROOMS)
        );
    }

    #[test]
    fn invited_and_joined_users_need_no_condition() {
        assert!(!needs_condition(Some("join")));
        assert!(!needs_condition(Some("invite")));
        for m in [None, Some("leave"), Some("knock"), Some("ban")] {
            assert!(needs_condition(m), "{m:?}");
        }
    }

    #[test]
    fn the_most_powerful_local_user_vouches() {
        let users = vec![
            ("@b:s".to_owned(), 0),
            ("@a:s".to_owned(), 50),
            ("@c:s".to_owned(), 50),
        ];
        assert_eq!(authoriser(&users, 0).as_deref(), Some("@a:s"));
        assert_eq!(authoriser(&users, 50).as_deref(), Some("@a:s"));
        assert_eq!(authoriser(&users, 51), None);
        assert_eq!(authoriser(&[], 0), None);
    }
}
