//! The typed requests the edge handlers send to a Room Durable Object, and its answers.
//! Carried as JSON over the Durable Object's `fetch`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An event a local user asks for; the roomserver builds, signs and authorizes it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EventSpec {
    #[serde(rename = "type")]
    pub event_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_key: Option<String>,
    pub content: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redacts: Option<String>,
}

impl EventSpec {
    pub fn state(event_type: &str, state_key: &str, content: Value) -> Self {
        Self {
            event_type: event_type.to_owned(),
            state_key: Some(state_key.to_owned()),
            content,
            redacts: None,
        }
    }
}

/// How received events enter the room.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum InputKind {
    /// Events that extend the DAG.
    New,
    /// Events known without their state.
    Outlier,
    /// A join event with its snapshot (`Snapshot`): starts the room.
    Bootstrap,
    /// History: events older than the room's oldest (a `/backfill` answer).
    Backfill,
}

/// What a `send_join` answers besides the join: the state before the join and the
/// auth chain of it all.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Snapshot {
    pub state: Vec<RawPdu>,
    pub auth_chain: Vec<RawPdu>,
    /// State events input before as outliers (a room begun by an outlier batch that
    /// starts with its create event), by id: a big snapshot goes in pieces.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub state_ids: Vec<String>,
}

/// Direction of a page of messages.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum Dir {
    #[serde(rename = "b")]
    Backward,
    #[serde(rename = "f")]
    Forward,
}

/// One received PDU as its JSON text: the edge passes it through unparsed, and the room
/// parses it once, straight into canonical JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RawPdu(pub Box<serde_json::value::RawValue>);

impl RawPdu {
    pub fn from_value(value: &Value) -> Result<Self, serde_json::Error> {
        serde_json::value::to_raw_value(value).map(Self)
    }

    pub fn text(&self) -> &str {
        self.0.get()
    }
}

impl PartialEq for RawPdu {
    fn eq(&self, other: &Self) -> bool {
        self.text() == other.text()
    }
}

/// What other servers ask a room (answered in federation shapes, events as PDUs).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum FederationQuery {
    /// `/state_ids`: `{pdu_ids, auth_chain_ids}` of the state before the event.
    StateIds { event_id: String },
    /// `/state`: `{pdus, auth_chain}`.
    State { event_id: String },
    /// `/event_auth`: `{auth_chain}`.
    EventAuth { event_id: String },
    /// `/backfill`: `{pdus}`, newest first.
    Backfill { from: Vec<String>, limit: u32 },
    /// `/get_missing_events`: `{events}`, oldest first.
    MissingEvents {
        earliest: Vec<String>,
        latest: Vec<String>,
        limit: u32,
        min_depth: i64,
    },
    /// `/event`: `{pdu}`.
    Event { event_id: String },
    /// Several events as PDUs, in the order asked (unknown ones left out): `{pdus}`.
    /// How the federation sender reads the events the log names.
    Events { event_ids: Vec<String> },
}

/// Externally tagged (`{"send": {...}}`): the variant is known before its fields are
/// read, so they are parsed once, in place (an internally tagged enum buffers every
/// field first), and `RawPdu`s stay raw.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum RoomRequest {
    /// Creates the room from its signed create event (federation JSON), then sends each
    /// step as `sender`, in order. Fails as a whole if any step is refused.
    Create {
        create: Value,
        sender: String,
        steps: Vec<EventSpec>,
    },
    /// Sends an event as a local user. With a transaction id, a repeat from the same
    /// device answers the first event id and creates nothing.
    Send {
        sender: String,
        #[serde(default)]
        device_id: Option<String>,
        #[serde(default)]
        txn_id: Option<String>,
        event: EventSpec,
    },
    /// The full current state, as the user may see it.
    State { user_id: String },
    /// One current state event's content.
    StateEvent {
        user_id: String,
        event_type: String,
        state_key: String,
        /// `format=event`: the whole event rather than its content.
        #[serde(default)]
        whole_event: bool,
    },
    /// Member events, at a point or now, filtered by membership.
    Members {
        user_id: String,
        #[serde(default)]
        at: Option<String>,
        #[serde(default)]
        membership: Option<String>,
        #[serde(default)]
        not_membership: Option<String>,
    },
    /// `{user_id: {display_name, avatar_url}}` of joined members.
    JoinedMembers { user_id: String },
    /// Whether a joined user's power level lets them send state of `event_type` now:
    /// `{allowed}` (false for anyone not joined). For the directory's checks.
    MaySendState { user_id: String, event_type: String },
    /// Whether the room's server ACL (`m.room.server_acl`) lets a server take part:
    /// `{allowed}`. For the federation edge, before it handles a request.
    ServerAllowed { server_name: String },
    /// An invite of another server's user, built and signed as the local `sender`
    /// would send it now (checked against the auth rules, not stored):
    /// `{event, room_version, invite_room_state}`, for the invitee's server to sign.
    BuildInvite { sender: String, event: EventSpec },
    /// An invite of a local user from another server into the room
    /// (`PUT /_matrix/federation/v2/invite`): the event verified against `keys`
    /// (signed by `origin`, its hashes intact), countersigned, and, in a room this
    /// server does not hold, kept with its stripped state for the invitee: `{event}`
    /// (signed by both). A room this server holds keeps nothing and answers
    /// `{event, held: true}`: the caller inputs the event like any received one.
    ReceiveInvite {
        /// The id the path names: the event's must be the same.
        event_id: String,
        pdu: RawPdu,
        room_version: String,
        #[serde(default)]
        invite_state: Vec<Value>,
        keys: std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
        origin: String,
    },
    /// Another server ended a local user's invite (or refused their knock) into a
    /// room this server does not hold: `pdu`, a leave or ban of the user, sent by
    /// `origin` (one of the servers the kept invite names), verified with `keys`.
    RescindInvite {
        pdu: RawPdu,
        keys: std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
        origin: String,
    },
    /// The room's stripped state, with `user_id`'s membership event: `{state}` (what
    /// `send_knock` answers a knocking server).
    StrippedState { user_id: String },
    /// A local user knocked on a room this server does not hold, through another
    /// server: their knock `event` (federation JSON) and the stripped state that server
    /// answered, kept like an invite from another server (`membership: knock`).
    KeepKnock {
        user_id: String,
        event_id: String,
        room_version: String,
        event: Value,
        #[serde(default)]
        knock_state: Vec<Value>,
    },
    /// A local user's invite from another server into a room this server does not
    /// hold, or their knock on one, ended: they declined or retracted it with the
    /// leave `event_id` (sent to the room's server, or made here when none could be
    /// reached).
    EndInvite { user_id: String, event_id: String },
    /// `make_join` / `make_leave` for another server's user: the membership event the
    /// room would accept now, unsigned (`{room_version, event}`), or 403 when the auth
    /// rules would refuse it.
    /// A restricted join's template names `authorised_via`, the local user who vouches
    /// for it (`join_authorised_via_users_server`).
    MakeMembership {
        user_id: String,
        membership: String,
        #[serde(default)]
        authorised_via: Option<String>,
    },
    /// Whether `user_id`'s join needs a condition of the join rules (a restricted room,
    /// the user neither joined nor invited): `{needed, room_version}`, and when needed
    /// `allow` (the rooms whose members may join) and `authoriser` (a local member who
    /// may invite, or null).
    JoinAuthorisation { user_id: String },
    /// The other servers with a user joined now: `{servers}` (sorted; for EDUs about
    /// the room and for asking about its history, known before the projections).
    JoinedServers,
    /// Another server's question about the room's DAG. With an `origin`, the room
    /// first checks that it may ask: its server ACL allows it, and it has a member
    /// joined now or the room is world-readable (403 `M_FORBIDDEN` otherwise).
    Federation {
        #[serde(default)]
        origin: Option<String>,
        query: FederationQuery,
    },
    /// The room's log records from stream position `from` on (those it keeps after
    /// publication and those still waiting): `{records: [text]}`, for replay.
    LogRecords { from: i64, limit: u32 },
    /// A page of the timeline.
    Messages {
        user_id: String,
        #[serde(default)]
        from: Option<String>,
        #[serde(default)]
        to: Option<String>,
        dir: Dir,
        limit: u32,
        #[serde(default)]
        filter: Option<Value>,
    },
    /// An event with events before and after it and the state at it.
    Context {
        user_id: String,
        event_id: String,
        limit: u32,
        /// The room event filter (`filter=`): `lazy_load_members` limits the member
        /// events in `state` to the senders of the events returned.
        #[serde(default)]
        filter: Option<Value>,
    },
    /// One event.
    Event { user_id: String, event_id: String },
    /// The user's membership, for edge decisions (`None`: never a member).
    Membership { user_id: String },
    /// Received events (federation format), verified against `keys` (server → key id →
    /// unpadded base64) in one batch, then input in order. Creates the room when the
    /// room is new and the first event is its create event.
    Input {
        kind: InputKind,
        pdus: Vec<RawPdu>,
        keys: std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
        /// Whether the answer carries the room's whole current state afterwards.
        #[serde(default)]
        state: bool,
        /// States at prev events the room lacks (prev event id → the state ids before
        /// it, as `/state_ids` answers): new events cross those gaps with them.
        #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
        prev_states: std::collections::BTreeMap<String, Vec<String>>,
        /// For `InputKind::Bootstrap`: the snapshot the join (the one event of `pdus`)
        /// starts the room from.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        snapshot: Option<Snapshot>,
        /// The server that sent the events (a federation transaction): refused as a
        /// whole (403 `M_FORBIDDEN`) when the room's server ACL denies it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        origin: Option<String>,
    },
    /// Name, topic, member count and the like, for the directory and previews. An
    /// empty `user_id` is the server itself (the directory).
    Summary { user_id: String },
    /// The room as a space's hierarchy and the room summary show it: the summary's
    /// fields with `encryption`, `allowed_room_ids` (of a restricted join rule),
    /// `children_state` (the `m.space.child` events that name a `via`, stripped, with
    /// their `origin_server_ts`) and `user_id`'s `membership` (none for an empty
    /// `user_id`). Always answered: who may see it is the edge's decision.
    SpaceEntry { user_id: String },
    /// Full-text search of the timeline events `user_id` may see
    /// (`store::search`): `{results: [{rank, event, stream_pos, context?}], count}`,
    /// the best `limit` (or newest, `newest_first`) of those matching the FTS5 `query`
    /// and the filter's `senders` / `not_senders` / `types` / `not_types`.
    Search {
        user_id: String,
        query: String,
        #[serde(default)]
        newest_first: bool,
        limit: u32,
        #[serde(default)]
        filter: Option<Value>,
        /// Events before and after each result, and whether with senders' profiles.
        #[serde(default)]
        context: Option<SearchContext>,
    },
    /// The room's part of a /sync for a user (`sync_slice`).
    SyncSlice {
        user_id: String,
        #[serde(default)]
        device_id: Option<String>,
        slice: SliceSpec,
    },
    /// Starts or stops typing; answers `{serial}` when the list changed.
    Typing {
        user_id: String,
        typing: bool,
        #[serde(default)]
        timeout_ms: u64,
    },
    /// A read receipt (`m.read`, `m.read.private`); answers `{serial}`.
    Receipt {
        user_id: String,
        receipt_type: String,
        event_id: String,
        #[serde(default)]
        thread_id: Option<String>,
    },
    /// The user (of this server) asked for their content to be erased: from now on
    /// their events are served redacted to whoever was not joined when they were sent.
    EraseSender { user_id: String },
}

/// What a /sync wants from a room: the range of its stream, and what is new to the
/// client (see `sync::protocol::RoomPlan`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SliceSpec {
    pub from: i64,
    pub to: i64,
    #[serde(default)]
    pub full: bool,
    #[serde(default)]
    pub full_state: bool,
    #[serde(default)]
    pub receipts_from: i64,
    #[serde(default)]
    pub receipts_to: i64,
    #[serde(default)]
    pub typing: bool,
    /// The filter's `event_format` is `federation`.
    #[serde(default)]
    pub federation_format: bool,
    /// The filter's `room` part (`core::filter::RoomFilter`).
    #[serde(default)]
    pub filter: Option<Value>,
    /// The user's push rules (the `global` ruleset, `core::push`) for the unread
    /// counts; `None` when they never changed one, and the server defaults apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_rules: Option<Value>,
}

/// `event_context` of a search.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct SearchContext {
    pub before: u32,
    pub after: u32,
    #[serde(default)]
    pub include_profile: bool,
}

/// An error answer from the room: the edge turns it back into a `MatrixError`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RoomFailure {
    pub status: u16,
    pub errcode: String,
    pub error: String,
}
