//! Test helpers shared by core tests and, later, the roomserver's: a signing key, user ids and
//! a small room that builds, authorizes and applies events, with forks for state resolution.

use std::collections::HashMap;

use ruma::events::StateEventType;
use ruma::room_version_rules::RoomVersionRules;
use ruma::state_res::StateMap;
use ruma::{CanonicalJsonObject, EventId, OwnedEventId, OwnedRoomId, OwnedUserId, RoomVersionId};
use serde_json::{json, Value};

use super::auth::{check_auth, check_auth_events, Rejection};
use super::builder::{build_create_event, build_event, NewEvent, Prev, Signer};
use super::keys::SigningKey;
use super::pdu::Pdu;

pub(crate) const SERVER: &str = "example.org";

pub(crate) fn spec_vectors() -> Value {
    let root = env!("CARGO_MANIFEST_DIR");
    let in_repo = format!("{root}/tests/fixtures/spec-vectors.json");
    let shared = format!("{root}/../shared/spec-vectors.json");
    let text = std::fs::read_to_string(&in_repo)
        .or_else(|_| std::fs::read_to_string(&shared))
        .expect("spec-vectors.json fixture");
    serde_json::from_str(&text).expect("fixture is JSON")
}

pub(crate) fn test_key() -> SigningKey {
    SigningKey::from_seed([42; 32], "test").expect("key")
}

/// `@name:example.org`, or `name` as is when it already is a user id.
pub(crate) fn user(name: &str) -> OwnedUserId {
    let id = if name.starts_with('@') {
        name.to_owned()
    } else {
        format!("@{name}:{SERVER}")
    };
    OwnedUserId::try_from(id).expect("user id")
}

/// One line of history: the state at its tip and its forward extremities.
#[derive(Clone, Debug, Default)]
pub(crate) struct Branch {
    pub state: StateMap<OwnedEventId>,
    pub extremities: Vec<Prev>,
}

pub(crate) struct TestRoom {
    #[allow(dead_code)] // for the roomserver's tests
    pub version: RoomVersionId,
    pub rules: RoomVersionRules,
    pub room_id: OwnedRoomId,
    pub key: SigningKey,
    pub events: HashMap<OwnedEventId, Pdu>,
    pub main: Branch,
    clock: u64,
}

impl TestRoom {
    /// A room created by `creator` with `create_content` extras: create event, creator's join,
    /// power levels (creator at 100 before v12) and `invite` join rules.
    pub fn with_create(version: &str, creator: &str, create_content: Value) -> Self {
        let version = RoomVersionId::try_from(version).expect("version");
        let rules = version.rules().expect("rules");
        let key = test_key();
        let creator = user(creator);
        let signer = Signer {
            server_name: SERVER,
            key: &key,
            now_ms: 1_000,
        };
        let fixed_id = OwnedRoomId::try_from(format!("!test:{SERVER}")).expect("room id");
        let create = build_create_event(
            &version,
            &rules,
            &creator,
            Some(&fixed_id),
            create_content,
            signer,
        )
        .expect("create event");
        let mut room = Self {
            version,
            room_id: create.room_id().to_owned(),
            rules,
            key,
            events: HashMap::new(),
            main: Branch::default(),
            clock: 1_000,
        };
        room.apply_main(create);
        room.send(creator.as_str(), member_event(&creator, "join", json!({})))
            .expect("creator joins");
        let users = if room.rules.authorization.explicitly_privilege_room_creators {
            json!({})
        } else {
            json!({ creator.as_str(): 100 })
        };
        room.send(
            creator.as_str(),
            NewEvent::state("m.room.power_levels", "", json!({ "users": users })),
        )
        .expect("power levels");
        room.send(
            creator.as_str(),
            NewEvent::state("m.room.join_rules", "", json!({"join_rule": "invite"})),
        )
        .expect("join rules");
        room
    }

    pub fn new(version: &str, creator: &str) -> Self {
        Self::with_create(version, creator, json!({}))
    }

    pub fn fetch(&self, id: &EventId) -> Option<Pdu> {
        self.events.get(id).cloned()
    }

    pub fn state_of(&self, branch: &Branch, kind: &StateEventType, key: &str) -> Option<Pdu> {
        branch
            .state
            .get(&(kind.clone(), key.to_owned()))
            .and_then(|id| self.fetch(id))
    }

    /// The current event of `(kind, key)` on the main branch.
    pub fn current(&self, kind: &str, key: &str) -> Option<Pdu> {
        self.state_of(&self.main, &StateEventType::from(kind), key)
    }

    /// Builds an event on `branch` without checking or applying it.
    pub fn build_on(&mut self, branch: &Branch, sender: &str, new: NewEvent) -> Pdu {
        self.clock += 1;
        let signer = Signer {
            server_name: SERVER,
            key: &self.key,
            now_ms: self.clock,
        };
        build_event(
            &self.rules,
            &self.room_id,
            &user(sender),
            new,
            &branch.extremities,
            |k, s| self.state_of(branch, k, s),
            signer,
        )
        .expect("event builds")
    }

    #[allow(dead_code)] // for the roomserver's tests
    pub fn build(&mut self, sender: &str, new: NewEvent) -> Pdu {
        let main = self.main.clone();
        self.build_on(&main, sender, new)
    }

    /// Runs the receipt checks (auth events, then state) of `pdu` against `branch`.
    pub fn authorize(&self, branch: &Branch, pdu: &Pdu) -> Result<(), Rejection> {
        check_auth_events(pdu, &self.rules, |id| self.fetch(id))?;
        check_auth(pdu, &self.rules, |k, s| self.state_of(branch, k, s))
    }

    /// Builds, authorizes and applies an event on `branch`.
    pub fn send_on(&mut self, branch: &mut Branch, sender: &str, new: NewEvent) -> Result<Pdu, Rejection> {
        let pdu = self.build_on(branch, sender, new);
        self.authorize(branch, &pdu)?;
        self.apply(branch, pdu.clone());
        Ok(pdu)
    }

    pub fn send(&mut self, sender: &str, new: NewEvent) -> Result<Pdu, Rejection> {
        let mut main = std::mem::take(&mut self.main);
        let result = self.send_on(&mut main, sender, new);
        self.main = main;
        result
    }

    /// Stores an event marked rejected and builds on it anyway (a hostile or buggy branch).
    pub fn insert_rejected_on(&mut self, branch: &mut Branch, sender: &str, new: NewEvent) -> Pdu {
        let pdu = self.build_on(branch, sender, new).with_rejected(true);
        self.apply(branch, pdu.clone());
        pdu
    }

    pub fn apply(&mut self, branch: &mut Branch, pdu: Pdu) {
        if let Some(pair) = pdu.state_pair() {
            branch.state.insert(pair, pdu.owned_event_id());
        }
        branch.extremities = vec![Prev::of(&pdu, &self.rules)];
        self.events.insert(pdu.owned_event_id(), pdu);
    }

    fn apply_main(&mut self, pdu: Pdu) {
        let mut main = std::mem::take(&mut self.main);
        self.apply(&mut main, pdu);
        self.main = main;
    }

    /// `target`'s membership change sent by `sender`.
    pub fn member(&mut self, sender: &str, target: &str, membership: &str) -> Result<Pdu, Rejection> {
        self.send(sender, member_event(&user(target), membership, json!({})))
    }

    /// Rebuilds `pdu` from an edited copy of its object (same event id): for negative tests of
    /// the auth rules, which do not look at hashes or signatures.
    pub fn tamper(&self, pdu: &Pdu, edit: impl FnOnce(&mut CanonicalJsonObject)) -> Pdu {
        let mut object = pdu.object().clone();
        edit(&mut object);
        Pdu::from_checked(object, pdu.owned_event_id(), &self.rules).expect("still parses")
    }
}

/// An `m.room.member` event for `target` with `membership` and extra content fields.
pub(crate) fn member_event(target: &OwnedUserId, membership: &str, extra: Value) -> NewEvent {
    let mut content = json!({ "membership": membership });
    if let (Some(c), Value::Object(extra)) = (content.as_object_mut(), extra) {
        c.extend(extra);
    }
    NewEvent::state("m.room.member", target.as_str(), content)
}
