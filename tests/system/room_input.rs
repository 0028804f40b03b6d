//! Forked DAGs through the roomserver's input pipeline in the real worker: events from
//! another server, signed by its key, with concurrent branches that need state
//! resolution.

use std::collections::HashMap;

use neurite::core::builder::{build_create_event, build_event, NewEvent, Prev, Signer};
use neurite::core::keys::SigningKey;
use neurite::core::pdu::Pdu;
use ruma::events::StateEventType;
use ruma::{OwnedUserId, RoomVersionId};
use serde_json::{json, Value};

use crate::harness::{shared, unique, Client};

const REMOTE: &str = "remote.test";

fn user_on(name: &str, server: &str) -> OwnedUserId {
    OwnedUserId::try_from(format!("@{name}:{server}")).expect("user")
}

type State = HashMap<(StateEventType, String), Pdu>;

/// A branch of history: its state and tip.
#[derive(Clone, Default)]
pub struct Branch {
    pub state: State,
    tip: Vec<Prev>,
}

/// An event built on a branch's tip and state.
fn build_on(
    rules: &ruma::room_version_rules::RoomVersionRules,
    room_id: &ruma::RoomId,
    sender: &OwnedUserId,
    new: NewEvent,
    branch: &Branch,
    signer: Signer<'_>,
) -> Pdu {
    build_event(
        rules,
        room_id,
        sender,
        new,
        &branch.tip,
        |t, k| branch.state.get(&(t.clone(), k.to_owned())).cloned(),
        signer,
    )
    .expect("build")
}

pub struct Gen {
    pub key: SigningKey,
    rules: ruma::room_version_rules::RoomVersionRules,
    pub room_id: ruma::OwnedRoomId,
    ts: u64,
    pub log: Vec<Pdu>,
    /// The server the generated users are on.
    pub server: String,
}

impl Gen {
    pub fn new(seed: u64) -> (Gen, Branch) {
        Self::on(
            REMOTE,
            SigningKey::from_seed([9; 32], "r1").expect("key"),
            1_000 + seed,
        )
    }

    /// A room of `server`'s users alice (creator) and bob, signed with `key`, its
    /// events stamped from `ts` on.
    pub fn on(server: &str, key: SigningKey, ts: u64) -> (Gen, Branch) {
        let version = RoomVersionId::V12;
        let rules = version.rules().expect("rules");
        let signer = Signer {
            server_name: server,
            key: &key,
            now_ms: ts,
        };
        let alice = user_on("alice", server);
        let bob = user_on("bob", server);
        let create = build_create_event(&version, &rules, &alice, None, json!({}), signer).expect("create");
        let mut g = Gen {
            room_id: create.room_id().to_owned(),
            key,
            rules,
            ts: ts + 1_000,
            log: Vec::new(),
            server: server.to_owned(),
        };
        let mut main = Branch::default();
        g.apply(&mut main, create);
        g.add(
            &mut main,
            "alice",
            NewEvent::state("m.room.member", alice.as_str(), json!({"membership": "join"})),
        );
        g.add(
            &mut main,
            "alice",
            NewEvent::state(
                "m.room.power_levels",
                "",
                json!({"users": {bob.as_str(): 50}, "state_default": 50, "ban": 50}),
            ),
        );
        g.add(
            &mut main,
            "alice",
            NewEvent::state("m.room.join_rules", "", json!({"join_rule": "public"})),
        );
        g.add(
            &mut main,
            "bob",
            NewEvent::state("m.room.member", bob.as_str(), json!({"membership": "join"})),
        );
        (g, main)
    }

    fn apply(&mut self, branch: &mut Branch, pdu: Pdu) {
        if let Some(pair) = pdu.state_pair() {
            branch.state.insert(pair, pdu.clone());
        }
        branch.tip = vec![Prev::new(pdu.owned_event_id(), pdu.depth())];
        self.log.push(pdu);
    }

    pub fn add(&mut self, branch: &mut Branch, sender: &str, new: NewEvent) -> Pdu {
        self.ts += 1;
        let signer = Signer {
            server_name: &self.server,
            key: &self.key,
            now_ms: self.ts,
        };
        let sender = user_on(sender, &self.server);
        let pdu = build_on(&self.rules, &self.room_id, &sender, new, branch, signer);
        self.apply(branch, pdu.clone());
        pdu
    }

    /// An event of a user of another server (`server_name`, signing with `key`).
    pub fn add_as(
        &mut self,
        branch: &mut Branch,
        sender: &OwnedUserId,
        new: NewEvent,
        server_name: &str,
        key: &SigningKey,
    ) -> Pdu {
        self.ts += 1;
        let signer = Signer {
            server_name,
            key,
            now_ms: self.ts,
        };
        let pdu = build_on(&self.rules, &self.room_id, sender, new, branch, signer);
        self.apply(branch, pdu.clone());
        pdu
    }

    pub fn keys(&self) -> Value {
        json!({ self.server.clone(): { self.key.key_id(): self.key.public_key_base64() } })
    }
}

pub(crate) fn input(admin: &Client, room_id: &str, pdus: &[Pdu], keys: &Value) -> Value {
    let path = format!(
        "/_neurite/admin/v1/rooms/{}/input",
        room_id.replace('!', "%21").replace(':', "%3A")
    );
    let body = json!({
        "pdus": pdus.iter().map(Pdu::to_federation_value).collect::<Vec<_>>(),
        "keys": keys,
        "state": true,
    });
    admin.post(&path, &body).expect(200)
}

pub(crate) fn admin() -> Client {
    shared().register_admin(&unique("admin"), "admin password").0
}

#[test]
fn ban_racing_a_topic_resolves_the_same_in_either_order() {
    let admin = admin();
    let mut outcomes = Vec::new();
    for (seed, reverse) in [(1, false), (2, true)] {
        let (mut g, main) = Gen::new(seed);
        let mut a = main.clone();
        let mut b = main.clone();
        let ban = g.add(
            &mut a,
            "alice",
            NewEvent::state("m.room.member", "@bob:remote.test", json!({"membership": "ban"})),
        );
        let topic = g.add(
            &mut b,
            "bob",
            NewEvent::state("m.room.topic", "", json!({"topic": "bob's"})),
        );
        let base: Vec<Pdu> = g.log[..5].to_vec();
        let answer = input(&admin, g.room_id.as_str(), &base, &g.keys());
        assert!(
            answer["results"]
                .as_array()
                .expect("results")
                .iter()
                .all(|r| r.get("accepted").is_some()),
            "{answer}"
        );
        let forks = if reverse {
            vec![topic.clone(), ban.clone()]
        } else {
            vec![ban.clone(), topic.clone()]
        };
        let answer = input(&admin, g.room_id.as_str(), &forks, &g.keys());
        let results = answer["results"].as_array().expect("results");
        assert!(results.iter().all(|r| r.get("rejected").is_none()), "{answer}");
        // Ban first: bob's topic, built on the state before the ban, is soft-failed and
        // never becomes an extremity. Topic first: both extend the DAG and the forks are
        // resolved. The current state is the same either way.
        let extremities = answer["extremities"].as_array().expect("ext").len();
        if reverse {
            assert_eq!(extremities, 2, "{answer}");
        } else {
            assert!(results[1].get("soft_failed").is_some(), "{answer}");
            assert_eq!(extremities, 1, "{answer}");
        }
        let state = &answer["current_state"];
        assert_eq!(
            state["m.room.member"]["@bob:remote.test"],
            ban.event_id().as_str()
        );
        assert!(
            state.get("m.room.topic").is_none(),
            "the banned user's concurrent topic loses: {state}"
        );
        outcomes.push(state["m.room.member"].clone());
    }
    assert_eq!(
        outcomes[0].as_object().map(|o| o.len()),
        outcomes[1].as_object().map(|o| o.len())
    );
}

#[test]
fn bad_signatures_and_unauthorized_events_change_nothing() {
    let admin = admin();
    let (mut g, mut main) = Gen::new(3);
    let answer = input(&admin, g.room_id.as_str(), &g.log.clone(), &g.keys());
    let before = answer["current_state"].clone();
    // An event by someone who never joined: rejected, state unchanged.
    let intruder = g.add(
        &mut main,
        "mallory",
        NewEvent::state("m.room.topic", "", json!({"topic": "pwned"})),
    );
    let answer = input(&admin, g.room_id.as_str(), &[intruder], &g.keys());
    assert!(answer["results"][0].get("rejected").is_some(), "{answer}");
    assert_eq!(answer["current_state"], before);
    // Wrong key: refused before the pipeline.
    let other = SigningKey::from_seed([1; 32], "r1").expect("key");
    let wrong_keys = json!({ REMOTE: { other.key_id(): other.public_key_base64() } });
    let next = g.add(
        &mut main,
        "alice",
        NewEvent::state("m.room.topic", "", json!({"topic": "real"})),
    );
    let answer = input(&admin, g.room_id.as_str(), &[next], &wrong_keys);
    assert!(answer["results"][0].get("error").is_some(), "{answer}");
    assert_eq!(answer["current_state"], before);
    // Not an admin: refused.
    let (plain, _) = shared().client().register(&unique("plain"), "password123");
    let path = format!(
        "/_neurite/admin/v1/rooms/{}/input",
        g.room_id.as_str().replace('!', "%21")
    );
    plain
        .post(&path, &json!({"pdus": []}))
        .expect_err(403, "M_FORBIDDEN");
}
