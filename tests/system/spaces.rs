//! Spaces and room summaries against the real worker: the hierarchy depth first in the
//! spec's order, what each user may see (public, joined, invited, restricted to a
//! space they are in, world-readable), `max_depth`, `suggested_only`, pagination and
//! its refusals; the room summary by id and alias, with and without a token.

use serde_json::{json, Value};

use crate::harness::{create_room, enc, new_user, shared, unique, Client};

fn add_child(c: &Client, space: &str, child: &str, content: Value) {
    c.put(
        &format!(
            "/_matrix/client/v3/rooms/{}/state/m.space.child/{}",
            enc(space),
            enc(child)
        ),
        &content,
    )
    .expect(200);
}

fn hierarchy(c: &Client, space: &str, query: &str) -> crate::harness::Resp {
    c.get(&format!(
        "/_matrix/client/v1/rooms/{}/hierarchy?{query}",
        enc(space)
    ))
}

fn ids(body: &Value) -> Vec<String> {
    body["rooms"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["room_id"].as_str().map(str::to_owned))
        .collect()
}

fn join(c: &Client, room: &str) {
    c.post(
        &format!("/_matrix/client/v3/rooms/{}/join", enc(room)),
        &json!({}),
    )
    .expect(200);
}

struct Tree {
    space: String,
    a: String,
    b: String,
    c: String,
    sub: String,
    d: String,
    e: String,
}

/// A public space with: A (public, suggested), B (invite only), C (restricted to the
/// space), a public subspace with D (public), and E (invite only, no order); plus a
/// child whose `via` is empty, which does not count.
fn tree(alice: &Client) -> Tree {
    let server = shared().server_name.clone();
    let via = json!([server]);
    let space = create_room(
        alice,
        json!({"preset": "public_chat", "name": "The Space", "creation_content": {"type": "m.space"}}),
    );
    let a = create_room(
        alice,
        json!({"preset": "public_chat", "name": "A", "topic": "first"}),
    );
    let b = create_room(alice, json!({"preset": "private_chat", "name": "B"}));
    let c = create_room(
        alice,
        json!({"preset": "private_chat", "name": "C", "room_version": "11", "initial_state": [{
            "type": "m.room.join_rules", "state_key": "",
            "content": {"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": space}]}
        }]}),
    );
    let sub = create_room(
        alice,
        json!({"preset": "public_chat", "name": "Sub", "creation_content": {"type": "m.space"}}),
    );
    let d = create_room(alice, json!({"preset": "public_chat", "name": "D"}));
    let e = create_room(alice, json!({"preset": "private_chat", "name": "E"}));
    let ignored = create_room(alice, json!({"preset": "public_chat", "name": "no via"}));
    add_child(
        alice,
        &space,
        &a,
        json!({"via": via, "order": "a", "suggested": true}),
    );
    add_child(alice, &space, &b, json!({"via": via, "order": "b"}));
    add_child(alice, &space, &c, json!({"via": via, "order": "c"}));
    add_child(
        alice,
        &space,
        &sub,
        json!({"via": via, "order": "d", "suggested": true}),
    );
    add_child(alice, &space, &e, json!({"via": via}));
    add_child(alice, &space, &ignored, json!({"via": []}));
    add_child(alice, &sub, &d, json!({"via": via}));
    Tree {
        space,
        a,
        b,
        c,
        sub,
        d,
        e,
    }
}

#[test]
fn hierarchy_walks_what_each_user_may_see() {
    let (alice, _) = new_user("spaceowner");
    let (carol, _) = new_user("spaceguest");
    let t = tree(&alice);

    // Alice is in every room: all of them, depth first in the spec's order.
    let all = hierarchy(&alice, &t.space, "").expect(200);
    assert_eq!(
        ids(&all),
        [&t.space, &t.a, &t.b, &t.c, &t.sub, &t.d, &t.e].map(String::clone)
    );
    let root = &all["rooms"][0];
    assert_eq!(root["name"], json!("The Space"));
    assert_eq!(root["room_type"], json!("m.space"));
    assert_eq!(root["join_rule"], json!("public"));
    assert_eq!(root["num_joined_members"], json!(1));
    assert_eq!(root["children_state"].as_array().map(Vec::len), Some(5));
    let first_child = &root["children_state"][0];
    assert_eq!(first_child["type"], json!("m.space.child"));
    assert_eq!(first_child["state_key"], json!(t.a));
    assert!(first_child["origin_server_ts"].as_u64().is_some());
    assert!(first_child["sender"].is_string());
    assert_eq!(all["rooms"][1]["topic"], json!("first"));
    assert_eq!(all["rooms"][3]["allowed_room_ids"], json!([t.space]));
    assert!(all.get("next_batch").is_none());

    // Carol is in none: the public ones only.
    let seen = hierarchy(&carol, &t.space, "").expect(200);
    assert_eq!(ids(&seen), [&t.space, &t.a, &t.sub, &t.d].map(String::clone));
    // Once she joins the space, the room restricted to it shows too; an invite shows
    // the invite-only room.
    join(&carol, &t.space);
    let carol_id = carol.get("/_matrix/client/v3/account/whoami").expect(200)["user_id"].clone();
    alice
        .post(
            &format!("/_matrix/client/v3/rooms/{}/invite", enc(&t.e)),
            &json!({"user_id": carol_id}),
        )
        .expect(200);
    let more = hierarchy(&carol, &t.space, "").expect(200);
    assert_eq!(
        ids(&more),
        [&t.space, &t.a, &t.c, &t.sub, &t.d, &t.e].map(String::clone)
    );

    // max_depth: 0 is the room alone, 1 its children; the subspace still lists its own.
    let zero = hierarchy(&alice, &t.space, "max_depth=0").expect(200);
    assert_eq!(ids(&zero), std::slice::from_ref(&t.space));
    let one = hierarchy(&alice, &t.space, "max_depth=1").expect(200);
    assert_eq!(
        ids(&one),
        [&t.space, &t.a, &t.b, &t.c, &t.sub, &t.e].map(String::clone)
    );
    assert_eq!(
        one["rooms"][4]["children_state"].as_array().map(Vec::len),
        Some(1)
    );
    // suggested_only: the suggested children only, in children_state too.
    let suggested = hierarchy(&alice, &t.space, "suggested_only=true").expect(200);
    assert_eq!(ids(&suggested), [&t.space, &t.a, &t.sub].map(String::clone));
    assert_eq!(
        suggested["rooms"][0]["children_state"].as_array().map(Vec::len),
        Some(2)
    );

    // The subspace on its own is a hierarchy too.
    let sub = hierarchy(&carol, &t.sub, "").expect(200);
    assert_eq!(ids(&sub), [t.sub.clone(), t.d.clone()]);
}

#[test]
fn hierarchy_pages_and_refuses() {
    let (alice, _) = new_user("spacepager");
    let (mallory, _) = new_user("spaceoutsider");
    let t = tree(&alice);

    let mut pages = Vec::new();
    let mut from: Option<String> = None;
    loop {
        let query = match &from {
            Some(f) => format!("limit=3&from={}", enc(f)),
            None => "limit=3".to_owned(),
        };
        let page = hierarchy(&alice, &t.space, &query).expect(200);
        assert!(page["rooms"].as_array().map_or(0, Vec::len) <= 3);
        pages.extend(ids(&page));
        match page["next_batch"].as_str() {
            Some(next) => from = Some(next.to_owned()),
            None => break,
        }
        assert!(pages.len() < 20, "pagination does not end");
    }
    assert_eq!(
        pages,
        [&t.space, &t.a, &t.b, &t.c, &t.sub, &t.d, &t.e].map(String::clone)
    );

    // The token holds max_depth and suggested_only, which may not change.
    let first = hierarchy(&alice, &t.space, "limit=2").expect(200);
    let next = first["next_batch"].as_str().expect("next_batch").to_owned();
    hierarchy(
        &alice,
        &t.space,
        &format!("limit=2&max_depth=1&from={}", enc(&next)),
    )
    .expect_err(400, "M_INVALID_PARAM");
    hierarchy(
        &alice,
        &t.space,
        &format!("suggested_only=true&from={}", enc(&next)),
    )
    .expect_err(400, "M_INVALID_PARAM");
    hierarchy(&alice, &t.space, "from=garbage").expect_err(400, "M_INVALID_PARAM");
    hierarchy(&alice, &t.space, "limit=0").expect_err(400, "M_INVALID_PARAM");
    hierarchy(&alice, &t.space, "limit=abc").expect_err(400, "M_INVALID_PARAM");
    hierarchy(&alice, &t.space, "max_depth=-1").expect_err(400, "M_INVALID_PARAM");
    hierarchy(&alice, &t.space, "suggested_only=maybe").expect_err(400, "M_INVALID_PARAM");
    hierarchy(&alice, "not-a-room", "").expect_err(400, "M_INVALID_PARAM");

    // A room the user can neither see nor join, and one that does not exist: 403.
    hierarchy(&mallory, &t.b, "").expect_err(403, "M_FORBIDDEN");
    hierarchy(
        &mallory,
        &format!("!{}:{}", unique("none"), shared().server_name),
        "",
    )
    .expect_err(403, "M_FORBIDDEN");
    shared()
        .client()
        .get(&format!("/_matrix/client/v1/rooms/{}/hierarchy", enc(&t.space)))
        .expect_err(401, "M_MISSING_TOKEN");
}

#[test]
fn room_summaries_by_id_and_alias() {
    let (alice, _) = new_user("summaryowner");
    let (carol, _) = new_user("summaryguest");
    let alias_name = unique("summary");
    let public = create_room(
        &alice,
        json!({"preset": "public_chat", "name": "Summarised", "topic": "t", "room_alias_name": alias_name,
               "initial_state": [{"type": "m.room.encryption", "state_key": "",
                                  "content": {"algorithm": "m.megolm.v1.aes-sha2"}}]}),
    );
    let private = create_room(&alice, json!({"preset": "private_chat", "name": "Hidden"}));
    let alias = format!("#{alias_name}:{}", shared().server_name);
    let summary = |c: &Client, id: &str| c.get(&format!("/_matrix/client/v1/room_summary/{}", enc(id)));

    let s = summary(&carol, &public).expect(200);
    assert_eq!(s["room_id"], json!(public));
    assert_eq!(s["name"], json!("Summarised"));
    assert_eq!(s["topic"], json!("t"));
    assert_eq!(s["canonical_alias"], json!(alias));
    assert_eq!(s["join_rule"], json!("public"));
    assert_eq!(s["num_joined_members"], json!(1));
    assert_eq!(s["guest_can_join"], json!(false));
    assert_eq!(s["world_readable"], json!(false));
    assert_eq!(s["encryption"], json!("m.megolm.v1.aes-sha2"));
    assert!(s["room_version"].is_string());
    assert!(s.get("membership").is_none(), "{s}");
    assert!(s.get("children_state").is_none());
    // By alias, without a token, and on the unstable path.
    assert_eq!(summary(&carol, &alias).expect(200)["room_id"], json!(public));
    let anon = shared().client();
    let open = summary(&anon, &public).expect(200);
    assert!(open.get("membership").is_none());
    let unstable = anon
        .get(&format!(
            "/_matrix/client/unstable/im.nheko.summary/summary/{}",
            enc(&alias)
        ))
        .expect(200);
    assert_eq!(unstable["room_id"], json!(public));
    // The member sees their membership.
    assert_eq!(summary(&alice, &public).expect(200)["membership"], json!("join"));
    assert_eq!(summary(&alice, &private).expect(200)["membership"], json!("join"));

    // What the caller may not see is not found, like an unknown room or alias.
    summary(&carol, &private).expect_err(404, "M_NOT_FOUND");
    summary(&anon, &private).expect_err(404, "M_NOT_FOUND");
    summary(&carol, &format!("#{}:{}", unique("nope"), shared().server_name)).expect_err(404, "M_NOT_FOUND");
    summary(&carol, &format!("!{}:{}", unique("nope"), shared().server_name)).expect_err(404, "M_NOT_FOUND");
    summary(&carol, "garbage").expect_err(400, "M_INVALID_PARAM");
    // A bad token is refused rather than treated as none.
    Client {
        base: shared().base_url(),
        token: Some("nonsense".into()),
    }
    .get(&format!("/_matrix/client/v1/room_summary/{}", enc(&public)))
    .expect_err(401, "M_UNKNOWN_TOKEN");
}

#[test]
fn other_servers_ask_for_a_space() {
    let (alice, _) = new_user("fedspace");
    let t = tree(&alice);
    let remote = crate::remote::Remote::start(91);
    let server = shared();
    let ask = |target: String| remote.request(server, "GET", &target, None);

    let body = ask(format!("/_matrix/federation/v1/hierarchy/{}", enc(&t.space))).expect(200);
    assert_eq!(body["room"]["room_id"], json!(t.space));
    assert_eq!(body["room"]["room_type"], json!("m.space"));
    assert_eq!(body["room"]["children_state"].as_array().map(Vec::len), Some(5));
    // Public rooms and the room restricted to the space (with what it allows); the
    // private ones are inaccessible; grandchildren are the subspace's to answer.
    let children = ids(&json!({"rooms": body["children"]}));
    assert_eq!(children, [&t.a, &t.c, &t.sub].map(String::clone));
    assert_eq!(body["children"][1]["allowed_room_ids"], json!([t.space]));
    assert!(body["children"][0].get("children_state").is_none());
    let mut hidden: Vec<String> = body["inaccessible_children"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    hidden.sort();
    let mut expected = vec![t.b.clone(), t.e.clone()];
    expected.sort();
    assert_eq!(hidden, expected);

    let suggested = ask(format!(
        "/_matrix/federation/v1/hierarchy/{}?suggested_only=true",
        enc(&t.space)
    ))
    .expect(200);
    assert_eq!(
        ids(&json!({"rooms": suggested["children"]})),
        [t.a.clone(), t.sub.clone()]
    );
    let sub = ask(format!("/_matrix/federation/v1/hierarchy/{}", enc(&t.sub))).expect(200);
    assert_eq!(
        ids(&json!({"rooms": sub["children"]})),
        std::slice::from_ref(&t.d)
    );

    // A private room, an unknown one, bad input, and an unsigned request.
    ask(format!("/_matrix/federation/v1/hierarchy/{}", enc(&t.b))).expect_err(404, "M_NOT_FOUND");
    ask(format!(
        "/_matrix/federation/v1/hierarchy/{}",
        enc(&format!("!{}:{}", unique("none"), server.server_name))
    ))
    .expect_err(404, "M_NOT_FOUND");
    ask(format!(
        "/_matrix/federation/v1/hierarchy/{}?suggested_only=perhaps",
        enc(&t.space)
    ))
    .expect_err(400, "M_INVALID_PARAM");
    server
        .client()
        .get(&format!("/_matrix/federation/v1/hierarchy/{}", enc(&t.space)))
        .expect_err(401, "M_UNAUTHORIZED");
}

#[test]
fn hierarchy_reaches_rooms_on_other_servers() {
    use crate::remote::Remote;
    let (alice, _) = new_user("spacefar");
    let far_server = Remote::start(92);
    let closed_server = Remote::start(93);
    let far = format!("!{}:{}", unique("far"), far_server.name);
    let far_child = format!("!{}:{}", unique("farchild"), far_server.name);
    let far_hidden = format!("!{}:{}", unique("farhidden"), far_server.name);
    let closed = format!("!{}:{}", unique("closed"), closed_server.name);
    let unreachable = format!("!{}:127.0.0.1:1", unique("gone"));
    let child_event = |id: &str| {
        json!({"type": "m.space.child", "state_key": id, "sender": far_server.user("u"),
               "content": {"via": [far_server.name]}, "origin_server_ts": 1})
    };
    far_server.answer(
        "GET",
        "/_matrix/federation/v1/hierarchy/",
        200,
        json!({
            "room": {"room_id": far, "name": "Far away", "join_rule": "public", "room_type": "m.space",
                     "num_joined_members": 7, "world_readable": false, "guest_can_join": false,
                     "children_state": [child_event(&far_child), child_event(&far_hidden)]},
            "children": [{"room_id": far_child, "name": "Far child", "join_rule": "public",
                          "num_joined_members": 2, "world_readable": false, "guest_can_join": false}],
            "inaccessible_children": [far_hidden],
        }),
    );
    closed_server.answer(
        "GET",
        "/_matrix/federation/v1/hierarchy/",
        200,
        json!({"room": {"room_id": closed, "join_rule": "invite", "num_joined_members": 1,
                        "world_readable": false, "guest_can_join": false, "children_state": []},
               "children": [], "inaccessible_children": []}),
    );
    let space = create_room(
        &alice,
        json!({"preset": "public_chat", "creation_content": {"type": "m.space"}}),
    );
    add_child(
        &alice,
        &space,
        &far,
        json!({"via": [far_server.name], "order": "a"}),
    );
    add_child(
        &alice,
        &space,
        &closed,
        json!({"via": [closed_server.name], "order": "b"}),
    );
    add_child(
        &alice,
        &space,
        &unreachable,
        json!({"via": ["127.0.0.1:1"], "order": "c"}),
    );

    // The far room and its public child; the closed room, the one its server calls
    // inaccessible and the unreachable one are left out.
    let body = hierarchy(&alice, &space, "").expect(200);
    assert_eq!(ids(&body), [&space, &far, &far_child].map(String::clone));
    let far_entry = &body["rooms"][1];
    assert_eq!(far_entry["name"], json!("Far away"));
    assert_eq!(far_entry["num_joined_members"], json!(7));
    assert_eq!(far_entry["children_state"].as_array().map(Vec::len), Some(2));
    assert_eq!(body["rooms"][2]["name"], json!("Far child"));
    let asked = far_server
        .seen()
        .into_iter()
        .find(|s| s.target.starts_with("/_matrix/federation/v1/hierarchy/"))
        .expect("the far server was asked");
    assert!(asked.authorization.is_some_and(|a| a.starts_with("X-Matrix")));

    // The room summary of a room held elsewhere, through the servers the client names.
    let summary =
        |id: &str, via: &str| alice.get(&format!("/_matrix/client/v1/room_summary/{}{via}", enc(id)));
    let s = summary(&far, &format!("?via={}", enc(&far_server.name))).expect(200);
    assert_eq!(s["name"], json!("Far away"));
    assert_eq!(s["room_type"], json!("m.space"));
    summary(&closed, &format!("?via={}", enc(&closed_server.name))).expect_err(404, "M_NOT_FOUND");
    summary(&far, "").expect_err(404, "M_NOT_FOUND");
}
