//! Publishing to the `room-log` Queue from the edge (the Room Durable Object publishes
//! its own outbox).

use worker::Env;

use super::env;

/// Sends `messages` in order, two per `sendBatch` (it takes at most 256 KB and a message
/// is at most `log::MESSAGE_BYTES`).
pub async fn publish(env: &Env, messages: Vec<String>) -> Result<(), String> {
    let queue = env.queue(env::ROOM_LOG).map_err(|e| e.to_string())?;
    for group in messages.chunks(2) {
        queue
            .send_batch(group.to_vec())
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}
