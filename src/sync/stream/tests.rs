//! The user stream's tables on in-memory SQLite.

use super::*;
use crate::storage::sql::testing::MemorySql;

fn db() -> MemorySql {
    let db = MemorySql::new();
    init(&db).expect("schema");
    init(&db).expect("idempotent");
    db
}

fn ev(room: &str, pos: i64, membership: Option<&str>) -> Note {
    Note {
        room_id: room.into(),
        kind: NoteKind::Event,
        pos,
        membership: membership.map(str::to_owned),
        content: None,
    }
}

#[test]
fn incremental_ranges_are_exactly_once_despite_duplicates_and_reordering() {
    let db = db();
    assert!(notify(&db, &[ev("!a", 3, Some("join"))]).expect("notify"));
    let initial = plan(&db, "D", None, 0).expect("plan");
    assert_eq!(initial.rooms.len(), 1);
    assert_eq!((initial.rooms[0].from, initial.rooms[0].to), (0, 3));
    let t1 = initial.next;
    // Nothing new: an empty plan.
    assert!(plan(&db, "D", Some(t1), 0).expect("plan").is_empty());
    // 5 arrives before 4; a duplicate 5 and a late 4 add nothing.
    assert!(notify(&db, &[ev("!a", 5, None)]).expect("notify"));
    assert!(!notify(&db, &[ev("!a", 5, None), ev("!a", 4, None)]).expect("notify"));
    let p = plan(&db, "D", Some(t1), 0).expect("plan");
    assert_eq!((p.rooms[0].from, p.rooms[0].to, p.rooms[0].full), (3, 5, false));
    assert!(p.next.stream > t1.stream);
    assert!(plan(&db, "D", Some(p.next), 0).expect("plan").is_empty());
}

#[test]
fn joins_since_the_token_are_full_and_leaves_are_listed() {
    let db = db();
    notify(&db, &[ev("!a", 2, Some("invite"))]).expect("invite");
    let t = plan(&db, "D", None, 0).expect("plan");
    assert_eq!(t.rooms[0].membership, "invite");
    notify(&db, &[ev("!a", 9, Some("join"))]).expect("join");
    let p = plan(&db, "D", Some(t.next), 0).expect("plan");
    assert_eq!(
        (p.rooms[0].membership.as_str(), p.rooms[0].full, p.rooms[0].from),
        ("join", true, 0)
    );
    // A profile change while joined is not a new join.
    notify(&db, &[ev("!a", 10, Some("join"))]).expect("displayname");
    let p2 = plan(&db, "D", Some(p.next), 0).expect("plan");
    assert_eq!(
        (p2.rooms[0].full, p2.rooms[0].from, p2.rooms[0].to),
        (false, 9, 10)
    );
    let p = p2;
    notify(&db, &[ev("!a", 12, Some("leave"))]).expect("leave");
    let q = plan(&db, "D", Some(p.next), 0).expect("plan");
    assert_eq!(
        (q.rooms[0].membership.as_str(), q.rooms[0].from, q.rooms[0].to),
        ("leave", 10, 12)
    );
    // Initial syncs leave left rooms out, unless the filter includes them.
    assert!(plan(&db, "D", None, 0).expect("plan").rooms.is_empty());
    let options = PlanOptions {
        include_leave: true,
        ..PlanOptions::default()
    };
    let with_left = plan_with(&db, "D", None, 0, options).expect("plan");
    assert_eq!(
        (with_left.rooms[0].membership.as_str(), with_left.rooms[0].full),
        ("leave", true)
    );
}

#[test]
fn to_device_is_resent_until_acknowledged_then_deleted() {
    let db = db();
    let mut msgs = BTreeMap::new();
    msgs.insert("D".to_owned(), json!({"n": 1}));
    msgs.insert("E".to_owned(), json!({"n": 2}));
    assert!(queue_to_device(&db, "@s:hs", "S", "t1", "m.x", &msgs).expect("queue"));
    assert!(!queue_to_device(&db, "@s:hs", "S", "t1", "m.x", &msgs).expect("dup"));
    let first = plan(&db, "D", None, 0).expect("plan");
    assert_eq!(first.to_device.len(), 1);
    assert_eq!(first.to_device[0]["content"]["n"], 1);
    let since = SyncToken {
        to_device: 0,
        ..first.next
    };
    assert_eq!(plan(&db, "D", Some(since), 0).expect("again").to_device.len(), 1);
    let acked = plan(&db, "D", Some(first.next), 0).expect("acked");
    assert!(acked.to_device.is_empty());
    assert_eq!(plan(&db, "D", Some(since), 0).expect("gone").to_device.len(), 0);
    assert_eq!(plan(&db, "E", None, 0).expect("other device").to_device.len(), 1);
}

#[test]
fn account_data_and_ephemeral_notes_show_up() {
    let db = db();
    notify(&db, &[ev("!a", 1, Some("join"))]).expect("join");
    let t = plan(&db, "D", None, 0).expect("plan").next;
    notify(
        &db,
        &[
            Note {
                room_id: String::new(),
                kind: NoteKind::AccountData,
                pos: 4,
                membership: None,
                content: None,
            },
            Note {
                room_id: "!a".into(),
                kind: NoteKind::Receipt,
                pos: 2,
                membership: None,
                content: None,
            },
        ],
    )
    .expect("notes");
    let p = plan(&db, "D", Some(t), 0).expect("plan");
    assert!(p.account_data);
    assert_eq!(p.next.account_data, 4);
    assert_eq!((p.rooms[0].receipts_from, p.rooms[0].receipts_to), (0, 2));
    assert!(!p.rooms[0].typing);
}

#[test]
fn filters_and_presence() {
    let db = db();
    let id = put_filter(&db, &json!({"room": {"timeline": {"limit": 3}}})).expect("put");
    assert_eq!(
        get_filter(&db, &id.to_string()).expect("get"),
        Some(json!({"room": {"timeline": {"limit": 3}}}))
    );
    assert_eq!(get_filter(&db, "nope").expect("get"), None);
    assert_eq!(get_presence(&db, 5).expect("get")["presence"], "offline");
    set_presence(&db, "online", Some("hi"), 100).expect("set");
    let p = get_presence(&db, 150).expect("get");
    assert_eq!(
        (p["presence"].clone(), p["last_active_ago"].clone()),
        (json!("online"), json!(50))
    );
}

#[test]
fn presence_changes_fan_in_once_and_activity_alone_is_not_a_change() {
    let db = db();
    // Only a change is a change: the same presence again is mere activity.
    let first = set_presence(&db, "online", None, 1_000)
        .expect("set")
        .expect("changed");
    assert_eq!(first.content["currently_active"], true);
    assert!(touch_presence(&db, "online", 2_000).expect("touch").is_none());
    let away = set_presence(&db, "unavailable", Some("lunch"), 3_000)
        .expect("set")
        .expect("changed");
    assert!(away.serial > first.serial);
    // Touching keeps the status message.
    let back = touch_presence(&db, "online", 4_000)
        .expect("touch")
        .expect("changed");
    assert_eq!(back.content["status_msg"], "lunch");
    assert_eq!(
        presence_state(&db).expect("state"),
        Some(("online".to_owned(), 4_000))
    );

    // Another user's stream receives the note; duplicates and old serials add nothing.
    let other = super::tests::db();
    let t = plan(&other, "D", None, 0).expect("plan").next;
    let note = |serial: i64, content: &Value| Note {
        room_id: "@a:hs".into(),
        kind: NoteKind::Presence,
        pos: serial,
        membership: None,
        content: Some(content.clone()),
    };
    assert!(notify(&other, &[note(back.serial, &back.content)]).expect("notify"));
    assert!(!notify(
        &other,
        &[note(back.serial, &back.content), note(away.serial, &away.content)]
    )
    .expect("notify"));
    let p = plan(&other, "D", Some(t), 10_000).expect("plan");
    assert!(!p.is_empty() && p.rooms.is_empty());
    assert_eq!(p.presence.len(), 1);
    assert_eq!(p.presence[0]["sender"], "@a:hs");
    assert_eq!(p.presence[0]["content"]["presence"], "online");
    assert_eq!(p.presence[0]["content"]["last_active_ago"], 6_000);
    assert!(plan(&other, "D", Some(p.next), 0).expect("plan").is_empty());
    // An initial sync carries the latest presence of everyone known.
    assert_eq!(plan(&other, "D", None, 0).expect("plan").presence.len(), 1);
}

#[test]
fn device_list_notes_wake_incremental_syncs() {
    let db = db();
    let t = plan(&db, "D", None, 0).expect("plan").next;
    let note = Note {
        room_id: String::new(),
        kind: NoteKind::DeviceLists,
        pos: 5,
        membership: None,
        content: None,
    };
    assert!(notify(&db, &[note]).expect("notify"));
    let p = plan(&db, "D", Some(t), 0).expect("plan");
    assert!(p.device_lists && p.rooms.is_empty());
    assert!(!plan(&db, "D", Some(p.next), 0).expect("plan").device_lists);
}
