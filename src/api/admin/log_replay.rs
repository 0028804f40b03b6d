//! `POST /_neurite/admin/v1/rooms/{roomId}/log/replay`: publishes a room's log records
//! to the `room-log` Queue again, as they were first published but without the
//! `delivered` mark, so every consumer handles them once more. For operators (rebuilding
//! D1 projections or users' streams after an incident) and for the tests of the
//! consumers' idempotency: the records can be sent in reverse order, several times, in
//! messages of any size, with an unreadable message among them.

use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::auth::require_admin;
use crate::api::http::HttpRequest;
use crate::api::MatrixError;
use crate::log::LogRecord;
use crate::platform::{room_log, rooms, Ctx};
use crate::roomserver::protocol::RoomRequest;

/// At most this many records, and this many repetitions, per request.
pub const MAX_RECORDS: u32 = 1000;
pub const MAX_TIMES: u32 = 5;

#[derive(Deserialize)]
struct Body {
    /// The first stream position replayed.
    #[serde(default)]
    from: i64,
    #[serde(default = "max_records")]
    limit: u32,
    /// Records per message (a message holds one room's records in order).
    #[serde(default = "one")]
    per_message: usize,
    /// Messages in reverse stream order.
    #[serde(default)]
    reverse: bool,
    /// How many times the whole sequence is sent.
    #[serde(default = "one_u32")]
    times: u32,
    /// Also send, last, one message no consumer can read (it is logged and acknowledged:
    /// once it is in the log, the messages before it have been handled).
    #[serde(default)]
    unreadable: bool,
}

fn max_records() -> u32 {
    MAX_RECORDS
}

fn one() -> usize {
    1
}

fn one_u32() -> u32 {
    1
}

/// The messages of a replay, in the order they are sent.
fn messages(
    records: Vec<String>,
    per_message: usize,
    reverse: bool,
    times: u32,
    unreadable: bool,
) -> Vec<String> {
    let mut once: Vec<String> = records
        .chunks(per_message.max(1))
        .flat_map(|chunk| LogRecord::into_messages(chunk.iter().cloned()))
        .collect();
    if reverse {
        once.reverse();
    }
    let mut all = Vec::with_capacity(once.len() * times as usize + 1);
    for _ in 0..times {
        all.extend(once.iter().cloned());
    }
    if unreadable {
        all.push("{\"v\":\"unknown\"".to_owned());
    }
    all
}

/// `POST /_neurite/admin/v1/rooms/{roomId}/log/replay`
pub async fn replay(ctx: &Ctx, req: &HttpRequest, room_id: &str) -> Result<Value, MatrixError> {
    require_admin(ctx, req).await?;
    crate::api::client::membership::valid_room_id(room_id)?;
    let body: Body = req.json()?;
    if body.limit > MAX_RECORDS || body.times > MAX_TIMES || body.times == 0 || body.per_message > 100 {
        return Err(MatrixError::invalid_param(format!(
            "limit is at most {MAX_RECORDS}, times 1 to {MAX_TIMES}, per_message at most 100"
        )));
    }
    let answer = rooms::call(
        ctx,
        room_id,
        &RoomRequest::LogRecords {
            from: body.from,
            limit: body.limit,
        },
    )
    .await?;
    let records: Vec<String> = serde_json::from_value(answer["records"].clone()).unwrap_or_default();
    let count = records.len();
    let messages = messages(
        records,
        body.per_message,
        body.reverse,
        body.times,
        body.unreadable,
    );
    let sent = messages.len();
    room_log::publish(&ctx.env, messages).await.map_err(|e| {
        crate::platform::log_error(&format!("log replay: {e}"));
        MatrixError::new("M_UNKNOWN", "The log could not be published; try again").with_status(503)
    })?;
    Ok(json!({ "records": count, "messages": sent }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(pos: u64) -> String {
        serde_json::to_string(&LogRecord::Event {
            room_id: "!r:hs".into(),
            stream_pos: pos,
            event_id: format!("$e{pos}"),
            sender: "@a:hs".into(),
            event_type: "m.room.message".into(),
            state_key: None,
            membership: None,
            state: Vec::new(),
            delivered: false,
        })
        .expect("record")
    }

    fn positions(message: &str) -> Vec<u64> {
        LogRecord::from_message(message)
            .expect("readable")
            .into_iter()
            .map(|LogRecord::Event { stream_pos, .. }| stream_pos)
            .collect()
    }

    #[test]
    fn a_replay_is_packed_reversed_and_repeated_as_asked() {
        let records: Vec<String> = (1..=5).map(record).collect();
        let plain = messages(records.clone(), 1, false, 1, false);
        assert_eq!(
            plain.iter().map(|m| positions(m)).collect::<Vec<_>>(),
            [[1], [2], [3], [4], [5]]
        );
        let packed = messages(records.clone(), 2, true, 2, true);
        assert!(
            LogRecord::from_message(&packed[6]).is_err(),
            "the unreadable message last"
        );
        let rest: Vec<Vec<u64>> = packed[..6].iter().map(|m| positions(m)).collect();
        assert_eq!(
            rest,
            [vec![5], vec![3, 4], vec![1, 2], vec![5], vec![3, 4], vec![1, 2]]
        );
    }
}
