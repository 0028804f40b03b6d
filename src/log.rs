//! The append-only log between the roomserver and its consumers: the messages on the
//! `room-log` Queue and the consumer dispatch.

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
    },
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
/// cannot read are logged and acknowledged (a permanent failure, invariant 3).
#[worker::event(queue)]
pub async fn consume(
    batch: worker::MessageBatch<String>,
    _env: worker::Env,
    _ctx: worker::Context,
) -> worker::Result<()> {
    for message in batch.raw_iter() {
        let body: String = serde_wasm_bindgen::from_value(message.body()).unwrap_or_default();
        match serde_json::from_str::<LogRecord>(&body) {
            Ok(LogRecord::Event { .. }) => message.ack(),
            Err(err) => {
                crate::platform::log_error(&format!("room-log: unreadable record: {err}"));
                message.ack();
            }
        }
    }
    Ok(())
}
