//! Send-to-device messaging: each message goes into the recipient device's inbox in its
//! user's Durable Object, delivered by /sync until the next `since` acknowledges it.

use std::collections::BTreeMap;

use futures_util::future::join_all;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::auth::require_user;
use crate::api::http::HttpRequest;
use crate::api::MatrixError;
use crate::platform::{users, Ctx};
use crate::storage::devices;
use crate::sync::protocol::UserRequest;

#[derive(Deserialize)]
struct Body {
    messages: BTreeMap<String, BTreeMap<String, Value>>,
}

/// `PUT /_matrix/client/v3/sendToDevice/{eventType}/{txnId}`
pub async fn send(
    ctx: &Ctx,
    req: &HttpRequest,
    event_type: &str,
    txn_id: &str,
) -> Result<Value, MatrixError> {
    let session = require_user(ctx, req).await?;
    if event_type.is_empty() || event_type.len() > 255 {
        return Err(MatrixError::invalid_param("Invalid event type"));
    }
    let body: Body = req.json()?;
    let mut deliveries = Vec::new();
    // Other servers' recipients, by server: one `m.direct_to_device` EDU each.
    let mut remote: BTreeMap<String, serde_json::Map<String, Value>> = BTreeMap::new();
    for (user_id, by_device) in body.messages {
        let parsed = <&ruma::UserId>::try_from(user_id.as_str())
            .map_err(|_| MatrixError::invalid_param("Invalid user id"))?;
        let server = parsed.server_name().as_str().to_owned();
        if server != ctx.config.server_name {
            if by_device.values().any(|c| !c.is_object()) {
                return Err(MatrixError::bad_json("Message content must be a JSON object"));
            }
            let messages: serde_json::Map<String, Value> = by_device.into_iter().collect();
            remote
                .entry(server)
                .or_default()
                .insert(user_id, Value::Object(messages));
            continue;
        }
        let mut messages = BTreeMap::new();
        for (device, content) in by_device {
            if !content.is_object() {
                return Err(MatrixError::bad_json("Message content must be a JSON object"));
            }
            if device == "*" {
                for d in devices::list(&ctx.db()?, &user_id).await? {
                    messages.insert(d.device_id, content.clone());
                }
            } else {
                messages.insert(device, content);
            }
        }
        if !messages.is_empty() {
            deliveries.push((user_id, messages));
        }
    }
    let calls = deliveries.into_iter().map(|(user_id, messages)| {
        let request = UserRequest::ToDevice {
            sender: session.user_id.clone(),
            sender_device: session.device_id.clone(),
            txn_id: txn_id.to_owned(),
            event_type: event_type.to_owned(),
            messages,
        };
        async move { users::call(&ctx.env, &user_id, &request).await }
    });
    for result in join_all(calls).await {
        result?;
    }
    for (server, messages) in remote {
        let edu = json!({"edu_type": "m.direct_to_device", "content": {
            "sender": session.user_id,
            "type": event_type,
            "message_id": format!("{}{txn_id}", session.device_id),
            "messages": messages,
        }});
        crate::federation::sender::send_edu(ctx, &[server], edu).await;
    }
    Ok(json!({}))
}
