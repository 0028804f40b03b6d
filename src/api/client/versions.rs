//! `GET /_matrix/client/versions`

use serde_json::{json, Value};

/// Spec versions whose client API Neurite serves. Later versions are added as the
/// endpoints they require land (v1.11 needs authenticated media, for example).
pub const SPEC_VERSIONS: &[&str] = &["v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6"];

/// `GET /_matrix/client/versions`. `unstable_features` names what clients probe for
/// by its unstable name: cross-signing (MSC1756, in the spec since v1.1; Element sets up
/// cross-signing for a new account only when it sees this flag or v1.1), and the
/// authenticated media endpoints (MSC3916's stable flag: clients use
/// `/_matrix/client/v1/media/*` on seeing it or v1.11, which needs more than media).
pub fn get() -> Value {
    json!({
        "versions": SPEC_VERSIONS,
        "unstable_features": {
            "org.matrix.e2e_cross_signing": true,
            "org.matrix.msc3916.stable": true,
        },
    })
}
