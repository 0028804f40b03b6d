//! The append-only log between the roomserver and its consumers: the messages on the
//! `room-log` Queue and the consumer dispatch.
//!
//! A message carries many records of one room, in stream order: a JSON array of records
//! (a Queue operation per message, not per event). A message that is one record's JSON
//! object, as published before, is still read.

pub mod fanout;
pub mod openness;

use serde::{Deserialize, Serialize};
use worker::MessageExt;

/// One record on the `room-log` Queue. Versioned so old messages still in flight during
/// a deploy stay readable.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "v")]
pub enum LogRecord {
    /// An event accepted into a room at a stream position.
    #[serde(rename = "1")]
    Event {
        room_id: String,
        stream_pos: u64,
        event_id: String,
        sender: String,
        event_type: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        state_key: Option<String>,
        /// `content.membership` for member events.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        membership: Option<String>,
        /// The current-state entries this event changed (added, replaced or removed),
        /// so consumers never recompute state.
        #[serde(default)]
        state: Vec<StateChange>,
        /// Set at publication when the room had already delivered this record's notes
        /// to every local user's stream (the direct wake-up succeeded): the consumer
        /// then only projects, with no second fan-out.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        delivered: bool,
    },
}

/// Largest message the room publishes, in bytes of JSON: the Queue takes 128 KB per
/// message, and a string may count two bytes per character.
pub const MESSAGE_BYTES: usize = 48 * 1024;

impl LogRecord {
    /// The record as published: marked delivered when the room's direct fan-out
    /// covered it. The stored text never has the flag (it is skipped while false), so it
    /// is added as the last member of the object.
    pub fn published(payload: &str, delivered: bool) -> String {
        match payload.trim_end().strip_suffix('}') {
            Some(open) if delivered && !payload.contains("\"delivered\":") => {
                let sep = if open.trim_end().ends_with('{') { "" } else { "," };
                format!("{open}{sep}\"delivered\":true}}")
            }
            _ => payload.to_owned(),
        }
    }

    /// The records of one message: a JSON array of records, or a single record.
    pub fn from_message(body: &str) -> Result<Vec<LogRecord>, serde_json::Error> {
        if body.trim_start().starts_with('[') {
            serde_json::from_str(body)
        } else {
            serde_json::from_str(body).map(|r| vec![r])
        }
    }

    /// Packs published records (in order) into messages of at most `MESSAGE_BYTES` each.
    pub fn into_messages(records: impl IntoIterator<Item = String>) -> Vec<String> {
        let mut messages = Vec::new();
        let mut current = String::from("[");
        for record in records.into_iter().flat_map(Self::split_large) {
            if current.len() > 1 && current.len() + record.len() + 2 > MESSAGE_BYTES {
                current.push(']');
                messages.push(std::mem::replace(&mut current, String::from("[")));
            }
            if current.len() > 1 {
                current.push(',');
            }
            current.push_str(&record);
        }
        if current.len() > 1 {
            current.push(']');
            messages.push(current);
        }
        messages
    }

    /// A published record too large for one message (a merge that changes thousands of
    /// state entries) as several records of the same event, each with part of its state
    /// changes: consumers handle each change on its own and are idempotent, so the parts
    /// mean what the whole did. Other records are kept as they are.
    fn split_large(record: String) -> Vec<String> {
        if record.len() + 2 <= MESSAGE_BYTES {
            return vec![record];
        }
        let Ok(mut shell) = serde_json::from_str::<LogRecord>(&record) else {
            return vec![record];
        };
        let LogRecord::Event { state, .. } = &mut shell;
        let state = std::mem::take(state);
        // The record with the given changes in place of all of them.
        let mut part = |changes: Vec<StateChange>| {
            let LogRecord::Event { state, .. } = &mut shell;
            *state = changes;
            serde_json::to_string(&shell).ok()
        };
        let Some(base) = part(Vec::new()) else {
            return vec![record];
        };
        // Room for the changes in each part, with a margin for the separators.
        let room = MESSAGE_BYTES.saturating_sub(base.len() + 64);
        let mut parts = Vec::new();
        let mut chunk = Vec::new();
        let mut size = 0;
        for change in state {
            let len = serde_json::to_string(&change).map_or(0, |t| t.len() + 1);
            if !chunk.is_empty() && size + len > room {
                parts.extend(part(std::mem::take(&mut chunk)));
                size = 0;
            }
            size += len;
            chunk.push(change);
        }
        if !chunk.is_empty() {
            parts.extend(part(chunk));
        }
        if parts.is_empty() {
            vec![record]
        } else {
            parts
        }
    }
}

/// One current-state entry that changed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StateChange {
    pub event_type: String,
    pub state_key: String,
    /// The event now in the state; `None` if the entry left the state.
    pub event_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub membership: Option<String>,
}

/// `room-log` consumer: each record is acknowledged once handled. Records this build
/// cannot read are logged and acknowledged (a permanent failure, invariant 3); storage
/// failures are retried by the Queue.
#[worker::event(queue)]
pub async fn consume(
    batch: worker::MessageBatch<String>,
    env: worker::Env,
    _ctx: worker::Context,
) -> worker::Result<()> {
    let config = crate::platform::config(&env).map_err(worker::Error::RustError)?;
    let db = crate::storage::Db::open(&env).map_err(|e| worker::Error::RustError(e.to_string()))?;
    // Sync fan-out: the notes of every handled record, per local user, sent once per
    // batch. Idempotent in the User Durable Objects; the Room Durable Object has usually
    // delivered them already (the direct wake-up), this makes sure.
    let mut notes = std::collections::BTreeMap::new();
    let mut members: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    // Messages are acknowledged only once their notes reached the users' streams: a
    // message acknowledged before a failed delivery would leave its events unseen
    // until the room's next event.
    let mut handled = Vec::new();
    for message in batch.raw_iter() {
        let body: String = serde_wasm_bindgen::from_value(message.body()).unwrap_or_default();
        let records = match LogRecord::from_message(&body) {
            Ok(records) => records,
            Err(err) => {
                crate::platform::log_error(&format!("room-log: unreadable message: {err}"));
                message.ack();
                continue;
            }
        };
        // A message is handled whole: on a failure all its records come again (every
        // step is idempotent).
        let mut failed = false;
        let events: Vec<(&str, &str)> = records
            .iter()
            .map(
                |LogRecord::Event {
                     event_id, room_id, ..
                 }| (event_id.as_str(), room_id.as_str()),
            )
            .collect();
        if let Err(err) = crate::storage::federation::index_events(&db, &events).await {
            crate::platform::log_error(&format!("room-log: event index failed, will retry: {err}"));
            message.retry();
            continue;
        }
        for record in &records {
            if let Err(err) = project(&db, record).await {
                crate::platform::log_error(&format!("room-log: projection failed, will retry: {err}"));
                failed = true;
                break;
            }
            let LogRecord::Event {
                room_id, delivered, ..
            } = record;
            if *delivered {
                continue;
            }
            if !members.contains_key(room_id) {
                match crate::storage::rooms::joined_members(&db, room_id).await {
                    Ok(joined) => {
                        members.insert(room_id.clone(), joined);
                    }
                    Err(err) => {
                        crate::platform::log_error(&format!("room-log: members lookup failed: {err}"));
                        failed = true;
                        break;
                    }
                }
            }
            let joined = members.get(room_id).map(Vec::as_slice).unwrap_or_default();
            fanout::notes_for(record, joined, &config.server_name, &mut notes);
        }
        if !failed {
            if let Err(err) = openness::project(&env, &db, &records).await {
                crate::platform::log_error(&format!(
                    "room-log: openness projection failed, will retry: {err}"
                ));
                failed = true;
            }
        }
        // After the projection, so a server whose user just joined gets what follows.
        if !failed {
            if let Err(err) = send_to_other_servers(&env, &db, &config.server_name, &records).await {
                crate::platform::log_error(&format!("room-log: federation sender failed, will retry: {err}"));
                failed = true;
            }
        }
        if failed {
            message.retry();
        } else {
            handled.push(message);
        }
    }
    let delivered = crate::platform::users::notify_all(&env, notes).await.is_ok();
    if !delivered {
        crate::platform::log_error("room-log: sync fan-out failed for some users; the batch comes again");
    }
    for message in handled {
        if delivered {
            message.ack();
        } else {
            message.retry();
        }
    }
    Ok(())
}

fn is_local(user_id: &str, server_name: &str) -> bool {
    user_id.split_once(':').map(|(_, s)| s) == Some(server_name)
}

/// The other servers a record's event goes to: none unless a local user sent it; then
/// the servers with members joined (`room_servers`, this one left out) and the server
/// of each user whose membership it changes (an invitee's, a kicked user's).
pub fn destinations_of(record: &LogRecord, room_servers: &[String], server_name: &str) -> Vec<String> {
    let LogRecord::Event { sender, .. } = record;
    if !is_local(sender, server_name) {
        return Vec::new();
    }
    let mut targets: Vec<String> = room_servers
        .iter()
        .filter(|s| *s != server_name)
        .cloned()
        .collect();
    for (user, _, _) in memberships(record) {
        if let Some((_, server)) = user.split_once(':') {
            if server != server_name && !targets.iter().any(|t| t == server) {
                targets.push(server.to_owned());
            }
        }
    }
    targets
}

/// Hands local users' events to the federation sender of every other server in their
/// rooms (and of a user whose membership the event changes). The sender queues each
/// event once, so a message delivered twice sends nothing twice that is still queued.
async fn send_to_other_servers(
    env: &worker::Env,
    db: &crate::storage::Db,
    server_name: &str,
    records: &[LogRecord],
) -> Result<(), String> {
    use std::collections::BTreeMap;
    let mut by_destination: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut servers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for record in records {
        let LogRecord::Event {
            room_id,
            event_id,
            sender,
            ..
        } = record;
        if !is_local(sender, server_name) {
            continue;
        }
        if !servers.contains_key(room_id) {
            let found = crate::storage::rooms::servers_in_room(db, room_id, server_name)
                .await
                .map_err(|e| e.to_string())?;
            servers.insert(room_id.clone(), found);
        }
        for target in destinations_of(record, &servers[room_id], server_name) {
            by_destination
                .entry(target)
                .or_default()
                .push((room_id.clone(), event_id.clone()));
        }
    }
    for (destination, events) in by_destination {
        let request = crate::federation::sender::DestinationRequest::Enqueue {
            destination: destination.clone(),
            events,
        };
        let body = serde_json::to_string(&request).map_err(|e| e.to_string())?;
        crate::platform::call_object(crate::platform::env::DESTINATIONS, env, &destination, body)
            .await
            .map_err(|e| format!("{destination}: {}", e.error))?;
    }
    Ok(())
}

/// The local users whose membership a record changes: `(user id, membership, event id)`.
pub fn local_memberships<'a>(record: &'a LogRecord, server_name: &str) -> Vec<(&'a str, &'a str, &'a str)> {
    memberships(record)
        .into_iter()
        .filter(|(user, _, _)| user.split_once(':').is_some_and(|(_, s)| s == server_name))
        .collect()
}

/// Every user whose membership a record changes, local or not.
pub fn memberships(record: &LogRecord) -> Vec<(&str, &str, &str)> {
    let LogRecord::Event { state, .. } = record;
    state
        .iter()
        .filter(|c| c.event_type == "m.room.member")
        .filter_map(|c| {
            Some((
                c.state_key.as_str(),
                c.membership.as_deref()?,
                c.event_id.as_deref()?,
            ))
        })
        .collect()
}

/// The D1 projections of one record. Idempotent: memberships only move forward in the
/// room's stream order. Every member is projected, local or not: other servers' users
/// are who device-list and presence updates from their servers concern.
async fn project(db: &crate::storage::Db, record: &LogRecord) -> Result<(), String> {
    let LogRecord::Event {
        room_id, stream_pos, ..
    } = record;
    for (user, membership, event_id) in memberships(record) {
        crate::storage::rooms::record_membership(db, room_id, user, membership, event_id, *stream_pos as i64)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_pick_local_memberships() {
        let record = LogRecord::Event {
            room_id: "!r:hs".into(),
            stream_pos: 7,
            event_id: "$e".into(),
            sender: "@a:hs".into(),
            event_type: "m.room.member".into(),
            state_key: Some("@b:hs".into()),
            membership: Some("join".into()),
            state: vec![
                StateChange {
                    event_type: "m.room.member".into(),
                    state_key: "@b:hs".into(),
                    event_id: Some("$e".into()),
                    membership: Some("join".into()),
                },
                StateChange {
                    event_type: "m.room.member".into(),
                    state_key: "@d:hs:8448".into(),
                    event_id: Some("$h".into()),
                    membership: Some("join".into()),
                },
                StateChange {
                    event_type: "m.room.member".into(),
                    state_key: "@c:elsewhere".into(),
                    event_id: Some("$f".into()),
                    membership: Some("join".into()),
                },
                StateChange {
                    event_type: "m.room.topic".into(),
                    state_key: String::new(),
                    event_id: Some("$g".into()),
                    membership: None,
                },
            ],
            delivered: false,
        };
        let text = serde_json::to_string(&record).expect("json");
        assert!(!text.contains("delivered"));
        let marked = LogRecord::published(&text, true);
        assert!(matches!(
            serde_json::from_str::<LogRecord>(&marked),
            Ok(LogRecord::Event { delivered: true, .. })
        ));
        assert_eq!(LogRecord::published(&marked, true), marked, "marked once");
        assert_eq!(LogRecord::published(&text, false), text);
        let mut unmarked = record.clone();
        let LogRecord::Event { delivered, .. } = &mut unmarked;
        *delivered = true;
        assert_eq!(
            serde_json::from_str::<LogRecord>(&marked).expect("parse"),
            unmarked
        );
        assert!(text.contains("\"v\":\"1\""));
        let back: LogRecord = serde_json::from_str(&text).expect("parse");
        assert_eq!(back, record);
        assert_eq!(local_memberships(&record, "hs"), vec![("@b:hs", "join", "$e")]);

        // Messages: many records in order, split by size; a lone record still reads.
        let records: Vec<String> = (0..1000).map(|_| text.clone()).collect();
        let messages = LogRecord::into_messages(records);
        assert!(messages.len() > 1);
        let mut count = 0;
        for m in &messages {
            assert!(m.len() <= MESSAGE_BYTES);
            let back = LogRecord::from_message(m).expect("message");
            assert!(back.iter().all(|r| *r == record));
            count += back.len();
        }
        assert_eq!(count, 1000);
        assert_eq!(
            LogRecord::from_message(&text).expect("single"),
            vec![record.clone()]
        );
        assert!(LogRecord::into_messages(Vec::<String>::new()).is_empty());

        // A record too large for one message travels as parts with all its changes.
        let mut big = record.clone();
        let LogRecord::Event { state, delivered, .. } = &mut big;
        *delivered = true;
        *state = (0..3000)
            .map(|i| StateChange {
                event_type: "m.room.member".into(),
                state_key: format!("@user{i}:hs"),
                event_id: Some(format!("$event{i}")),
                membership: Some("join".into()),
            })
            .collect();
        let text = serde_json::to_string(&big).expect("json");
        assert!(text.len() > 2 * MESSAGE_BYTES);
        let messages = LogRecord::into_messages([text]);
        assert!(messages.len() >= 3);
        let mut changes = Vec::new();
        for m in &messages {
            assert!(m.len() <= MESSAGE_BYTES, "{} bytes", m.len());
            for part in LogRecord::from_message(m).expect("parts") {
                let LogRecord::Event { state, .. } = &part;
                let mut same = part.clone();
                let LogRecord::Event { state: s, .. } = &mut same;
                s.clear();
                let mut expected = big.clone();
                let LogRecord::Event { state: e, .. } = &mut expected;
                e.clear();
                assert_eq!(same, expected, "every part is the same event");
                changes.extend(state.iter().cloned());
            }
        }
        let LogRecord::Event { state, .. } = &big;
        assert_eq!(&changes, state);
        assert!(LogRecord::from_message("{\"v\":\"9\"}").is_err());
        // Server names with a port.
        assert_eq!(
            local_memberships(&record, "hs:8448"),
            vec![("@d:hs:8448", "join", "$h")]
        );
    }
}
