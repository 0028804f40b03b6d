//! The typed requests the edge, the Room Durable Objects and the log consumer send to a
//! User Durable Object, and its answers. Carried as JSON over the object's `fetch`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::token::SyncToken;

/// What a notification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoteKind {
    /// A room event at a room stream position.
    Event,
    /// A read receipt; `pos` is the room's receipt serial.
    Receipt,
    /// Typing changed; `pos` is the room's typing serial.
    Typing,
    /// The user's account data changed; `pos` is its stream id, `room_id` is empty.
    AccountData,
    /// A user who shares a room changed presence: `room_id` is that user's id, `pos`
    /// their presence serial, `content` the new presence.
    Presence,
    /// Some device list the user follows changed (the changes themselves are in D1);
    /// `room_id` is empty, `pos` a clock reading.
    DeviceLists,
}

impl NoteKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NoteKind::Event => "event",
            NoteKind::Receipt => "receipt",
            NoteKind::Typing => "typing",
            NoteKind::AccountData => "account_data",
            NoteKind::Presence => "presence",
            NoteKind::DeviceLists => "device_lists",
        }
    }
}

/// One thing that happened for the user. Idempotent: keyed on `(room_id, kind, pos)`;
/// a note at or below what the stream already has changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    pub room_id: String,
    pub kind: NoteKind,
    pub pos: i64,
    /// The user's own membership after this event, when the event changed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub membership: Option<String>,
    /// A presence note's content: `{presence, status_msg?, last_active, currently_active}`
    /// with `last_active` in milliseconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum UserRequest {
    /// Records notes in the user's stream and wakes waiting syncs.
    Notify { notes: Vec<Note> },
    /// What a /sync must fetch: waits up to `timeout_ms` for something after `since`.
    Sync {
        device_id: String,
        #[serde(default)]
        since: Option<SyncToken>,
        timeout_ms: u64,
        #[serde(default)]
        filter_id: Option<String>,
        /// The syncing user (for presence fan-out).
        #[serde(default)]
        user_id: String,
        /// `set_presence`: `online` (the default) or `unavailable` mark the user so;
        /// `offline` leaves their presence alone.
        #[serde(default)]
        set_presence: Option<String>,
        #[serde(default)]
        now_ms: u64,
        /// Whether an initial sync lists the rooms the user left (the inline filter's
        /// `room.include_leave`; a stored filter's is read by the object itself).
        #[serde(default)]
        include_leave: bool,
    },
    /// Queues to-device messages for this user's devices (`device id → content`).
    /// Idempotent per `(sender, sender_device, txn_id)` and device.
    ToDevice {
        sender: String,
        sender_device: String,
        txn_id: String,
        event_type: String,
        messages: BTreeMap<String, Value>,
    },
    /// Stores a filter; answers `{filter_id}`.
    PutFilter { filter: Value },
    /// A stored filter, or 404.
    GetFilter { filter_id: String },
    /// Sets presence; answers `{}`.
    SetPresence {
        presence: String,
        #[serde(default)]
        status_msg: Option<String>,
        now_ms: u64,
        /// The user (for presence fan-out).
        #[serde(default)]
        user_id: String,
    },
    /// `{presence, last_active_ago, status_msg, currently_active}`.
    GetPresence { now_ms: u64 },
    /// The room's event stream position a sync token of this user stands for (the last
    /// event of the room the user's stream had reached at `stream`): `{room_pos}`. Lets
    /// `/messages` and `/members` take a sync token where they take a room token.
    RoomPosition { room_id: String, stream: i64 },
}

/// One room a /sync must fetch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomPlan {
    pub room_id: String,
    /// The membership the user stream knows (the room's answer is authoritative).
    pub membership: String,
    /// Room stream positions `(from, to]` to send; `from = 0` and `full` for a room new
    /// to this sync (initial sync, or joined since the token).
    pub from: i64,
    pub to: i64,
    pub full: bool,
    /// Receipt serials `(from, to]`.
    pub receipts_from: i64,
    pub receipts_to: i64,
    /// Whether typing changed (or is wanted in full).
    pub typing: bool,
}

/// The User Durable Object's answer to `Sync`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct SyncPlan {
    pub next: SyncToken,
    pub rooms: Vec<RoomPlan>,
    pub to_device: Vec<Value>,
    /// Whether account data changed after the token's account-data position.
    pub account_data: bool,
    /// The stored filter, when `filter_id` was given and found.
    #[serde(default)]
    pub filter: Option<Value>,
    /// `m.presence` events of users sharing a room, changed since the token (all known
    /// on an initial sync).
    #[serde(default)]
    pub presence: Vec<Value>,
    /// Whether a followed device list changed since the token.
    #[serde(default)]
    pub device_lists: bool,
}

impl SyncPlan {
    pub fn is_empty(&self) -> bool {
        self.rooms.is_empty()
            && self.to_device.is_empty()
            && !self.account_data
            && self.presence.is_empty()
            && !self.device_lists
    }
}
