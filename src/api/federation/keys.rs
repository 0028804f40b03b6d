//! `GET /_matrix/key/v2/server`

use serde_json::Value;

use crate::api::MatrixError;
use crate::config::Config;
use crate::core::keys::server_keys_response;

/// How long other servers may cache our key response.
pub const KEY_VALIDITY_MS: u64 = 7 * 24 * 60 * 60 * 1000;

/// `GET /_matrix/key/v2/server`
pub fn server(config: &Config, now_ms: u64) -> Result<Value, MatrixError> {
    let body = server_keys_response(&config.server_name, &config.signing_key, now_ms + KEY_VALIDITY_MS)
        .map_err(|_| MatrixError::internal())?;
    serde_json::to_value(body).map_err(|_| MatrixError::internal())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_config;
    use crate::core::keys::{public_key_map, verify_object};

    #[test]
    fn response_is_signed_with_the_published_key() {
        let config = test_config("hs.test", "https://hs.test");
        let body = server(&config, 1_000).expect("body");
        assert_eq!(body["server_name"], "hs.test");
        assert_eq!(body["valid_until_ts"], 1_000 + KEY_VALIDITY_MS);
        let key_id = config.signing_key.key_id();
        let published = body["verify_keys"][&key_id]["key"].as_str().expect("key");
        let keys = public_key_map(&[("hs.test", &key_id, published)]).expect("map");
        let object = serde_json::from_value(body).expect("canonical");
        assert!(verify_object(&keys, &object));
    }
}
