//! Sync fan-out: which local users' streams a log record goes to, as notes for their
//! User Durable Objects. Pure; the Room Durable Object (fast path, members from its
//! state) and the `room-log` consumer (members from D1) both use it.

use std::collections::BTreeMap;

use super::{local_memberships, LogRecord};
use crate::sync::protocol::{Note, NoteKind};

/// Notes for `record`: every local joined member gets the event; a local user whose
/// membership it changes gets it with that membership (so invitees, leavers and the
/// kicked see it too).
pub fn notes_for(
    record: &LogRecord,
    joined_local: &[String],
    server_name: &str,
    out: &mut BTreeMap<String, Vec<Note>>,
) {
    let LogRecord::Event {
        room_id, stream_pos, ..
    } = record;
    let pos = i64::try_from(*stream_pos).unwrap_or(i64::MAX);
    let changed = local_memberships(record, server_name);
    for user in joined_local {
        if changed.iter().any(|(u, _, _)| u == user) {
            continue;
        }
        out.entry(user.clone()).or_default().push(Note {
            room_id: room_id.clone(),
            kind: NoteKind::Event,
            pos,
            membership: None,
            content: None,
        });
    }
    for (user, membership, _) in changed {
        out.entry(user.to_owned()).or_default().push(Note {
            room_id: room_id.clone(),
            kind: NoteKind::Event,
            pos,
            membership: Some(membership.to_owned()),
            content: None,
        });
    }
}

/// Drops the notes a later one makes redundant: a stream only keeps the highest
/// position per room and kind, so of several plain event notes only the last counts.
/// Membership notes are all kept (each changes what the user's stream knows).
pub fn compact(notes: &mut BTreeMap<String, Vec<Note>>) {
    for list in notes.values_mut() {
        let mut last: BTreeMap<(String, NoteKind), usize> = BTreeMap::new();
        for (i, n) in list.iter().enumerate() {
            last.insert((n.room_id.clone(), n.kind), i);
        }
        let mut i = 0;
        list.retain(|n| {
            let keep = n.membership.is_some() || last.get(&(n.room_id.clone(), n.kind)) == Some(&i);
            i += 1;
            keep
        });
    }
}

/// Notes of an ephemeral change (typing, receipts) for the local joined members.
pub fn ephemeral_notes(
    room_id: &str,
    kind: NoteKind,
    serial: i64,
    joined_local: &[String],
) -> BTreeMap<String, Vec<Note>> {
    joined_local
        .iter()
        .map(|u| {
            (
                u.clone(),
                vec![Note {
                    room_id: room_id.to_owned(),
                    kind,
                    pos: serial,
                    membership: None,
                    content: None,
                }],
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::StateChange;

    #[test]
    fn members_and_targets_get_notes() {
        let record = LogRecord::Event {
            room_id: "!r".into(),
            stream_pos: 4,
            event_id: "$e".into(),
            sender: "@a:hs".into(),
            event_type: "m.room.member".into(),
            state_key: Some("@b:hs".into()),
            membership: Some("leave".into()),
            state: vec![StateChange {
                event_type: "m.room.member".into(),
                state_key: "@b:hs".into(),
                event_id: Some("$e".into()),
                membership: Some("leave".into()),
            }],
            delivered: false,
        };
        let mut out = BTreeMap::new();
        notes_for(&record, &["@a:hs".into()], "hs", &mut out);
        assert_eq!(out["@a:hs"][0].membership, None);
        assert_eq!(out["@b:hs"][0].membership.as_deref(), Some("leave"));
        assert_eq!(out["@b:hs"][0].pos, 4);
    }

    #[test]
    fn compaction_keeps_memberships_and_the_last_plain_note() {
        let plain = |pos| Note {
            room_id: "!r".into(),
            kind: NoteKind::Event,
            pos,
            membership: None,
            content: None,
        };
        let member = Note {
            membership: Some("join".into()),
            ..plain(6)
        };
        let mut notes = BTreeMap::new();
        notes.insert(
            "@a:hs".to_owned(),
            vec![plain(4), plain(5), member.clone(), plain(7), plain(8)],
        );
        notes.insert("@b:hs".to_owned(), vec![plain(4), member.clone()]);
        compact(&mut notes);
        assert_eq!(notes["@a:hs"], vec![member.clone(), plain(8)]);
        assert_eq!(notes["@b:hs"], vec![member]);
    }
}
