//! Server discovery documents.

use serde_json::{json, Value};

use crate::config::Config;

/// `GET /.well-known/matrix/client`
pub fn client(config: &Config) -> Value {
    json!({ "m.homeserver": { "base_url": config.base_url() } })
}

/// `GET /.well-known/matrix/server`
pub fn server(config: &Config) -> Value {
    json!({ "m.server": config.federation_address() })
}
