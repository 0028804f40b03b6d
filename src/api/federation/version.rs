//! `GET /_matrix/federation/v1/version`

use serde_json::{json, Value};

/// `GET /_matrix/federation/v1/version`
pub fn get() -> Value {
    json!({ "server": { "name": "Neurite", "version": env!("CARGO_PKG_VERSION") } })
}
