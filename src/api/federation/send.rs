//! `PUT /_matrix/federation/v1/send/{txnId}`: a transaction of up to 50 PDUs and 100
//! EDUs from another server. Idempotent per (origin, transaction id): a repeat gets
//! the first answer and changes nothing. PDUs go to their rooms in order (rooms one
//! after another), each answered by event id: `{}` when accepted (soft-failed events
//! included), `{"error": …}` otherwise.

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::api::http::HttpRequest;
use crate::api::MatrixError;
use crate::platform::{log_error, Ctx};
use crate::storage::federation as store;

use super::{edus, invite, pdus};

pub const MAX_PDUS: usize = 50;
pub const MAX_EDUS: usize = 100;

#[derive(Deserialize)]
struct Transaction {
    origin: String,
    #[allow(dead_code)]
    origin_server_ts: u64,
    #[serde(default)]
    pdus: Vec<Value>,
    #[serde(default)]
    edus: Vec<Value>,
}

/// `PUT /_matrix/federation/v1/send/{txnId}`
pub async fn send(ctx: &Ctx, req: &HttpRequest, origin: &str, txn_id: &str) -> Result<Value, MatrixError> {
    let txn: Transaction = req.json()?;
    if txn.origin != origin {
        return Err(MatrixError::forbidden(
            "The transaction's origin is not the signing server",
        ));
    }
    if txn.pdus.len() > MAX_PDUS || txn.edus.len() > MAX_EDUS {
        return Err(MatrixError::bad_json(format!(
            "A transaction carries at most {MAX_PDUS} PDUs and {MAX_EDUS} EDUs"
        )));
    }
    let db = ctx.db()?;
    if let Some(first) = store::txn_response(&db, origin, txn_id).await? {
        if let Ok(answer) = serde_json::from_str(&first) {
            return Ok(answer);
        }
    }

    // Rooms in order of first appearance, each room's PDUs in transaction order.
    let mut rooms: Vec<(String, Vec<Value>)> = Vec::new();
    let mut results = Map::new();
    for pdu in txn.pdus {
        let Some(room_id) = pdu.get("room_id").and_then(Value::as_str).map(str::to_owned) else {
            // Without a room there is no version and no event id to answer by.
            continue;
        };
        match rooms.iter_mut().find(|(r, _)| *r == room_id) {
            Some((_, list)) => list.push(pdu),
            None => rooms.push((room_id, vec![pdu])),
        }
    }
    for (room_id, list) in &rooms {
        // A room this server does not hold takes only the end of a local user's invite.
        let taken = if pdus::known_room(ctx, room_id).await {
            pdus::ingest(ctx, origin, room_id, list).await
        } else {
            invite::rescinds(ctx, origin, room_id, list).await
        };
        for result in taken {
            if result.event_id.is_empty() {
                continue;
            }
            let entry = match result.error {
                Some(error) => json!({ "error": error }),
                None => json!({}),
            };
            results.insert(result.event_id, entry);
        }
    }
    ctx.mark("pdus");
    edus::apply(ctx, origin, &txn.edus).await;
    ctx.mark("edus");
    let answer = json!({ "pdus": results });
    if let Err(e) = store::record_txn(&db, origin, txn_id, &answer.to_string(), ctx.now_ms()).await {
        log_error(&format!("recording transaction {txn_id} of {origin}: {e}"));
    }
    Ok(answer)
}
