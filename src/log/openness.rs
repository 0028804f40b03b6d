//! The user directory's projection: whether a room is open (join rule `public` or
//! history visibility `world_readable`), so its members are visible to every searcher.
//! When a record changes either entry, the room is asked for its current summary and
//! the answer kept (`storage::user_directory::set_openness`); asking for the current
//! state makes a redelivered or reordered record harmless.

use super::LogRecord;

/// The room's `RoomRequest::Summary` for the server itself (no user), as its JSON: the
/// log sits below the roomserver and does not name its types.
const SUMMARY_REQUEST: &str = r#"{"summary":{"user_id":""}}"#;

/// Whether a record changes what makes a room open.
pub fn touches_openness(record: &LogRecord) -> bool {
    let LogRecord::Event { state, .. } = record;
    state.iter().any(|c| {
        c.state_key.is_empty()
            && matches!(
                c.event_type.as_str(),
                "m.room.join_rules" | "m.room.history_visibility"
            )
    })
}

/// Projects the openness of each room among `records` whose state touched it.
pub async fn project(
    env: &worker::Env,
    db: &crate::storage::Db,
    records: &[LogRecord],
) -> Result<(), String> {
    let mut latest: std::collections::BTreeMap<&str, u64> = Default::default();
    for record in records.iter().filter(|r| touches_openness(r)) {
        let LogRecord::Event {
            room_id, stream_pos, ..
        } = record;
        let entry = latest.entry(room_id.as_str()).or_default();
        *entry = (*entry).max(*stream_pos);
    }
    for (room_id, pos) in latest {
        let body = SUMMARY_REQUEST.to_owned();
        let summary = crate::platform::call_object(crate::platform::env::ROOMS, env, room_id, body)
            .await
            .map_err(|e| format!("{room_id}: {}", e.error))?;
        let open = summary["join_rule"].as_str() == Some("public") || summary["world_readable"] == true;
        crate::storage::user_directory::set_openness(db, room_id, open, pos as i64)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::StateChange;

    #[test]
    fn the_summary_request_is_the_rooms() {
        let parsed: crate::roomserver::protocol::RoomRequest =
            serde_json::from_str(SUMMARY_REQUEST).expect("a room request");
        assert_eq!(
            parsed,
            crate::roomserver::protocol::RoomRequest::Summary {
                user_id: String::new()
            }
        );
    }

    #[test]
    fn only_join_rules_and_visibility_touch_openness() {
        let record = |t: &str, k: &str| LogRecord::Event {
            room_id: "!r:hs".into(),
            stream_pos: 1,
            event_id: "$e".into(),
            sender: "@a:hs".into(),
            event_type: t.into(),
            state_key: Some(k.into()),
            membership: None,
            state: vec![StateChange {
                event_type: t.into(),
                state_key: k.into(),
                event_id: Some("$e".into()),
                membership: None,
            }],
            delivered: false,
        };
        assert!(touches_openness(&record("m.room.join_rules", "")));
        assert!(touches_openness(&record("m.room.history_visibility", "")));
        assert!(!touches_openness(&record("m.room.topic", "")));
        assert!(!touches_openness(&record("m.room.join_rules", "x")));
    }
}
