//! Binding and variable names; these must match `wrangler.toml`.

pub const SERVER_NAME: &str = "SERVER_NAME";
pub const PUBLIC_BASEURL: &str = "PUBLIC_BASEURL";
pub const REGISTRATION: &str = "REGISTRATION";
/// `on` lets guests register and use the guest API; anything else (or unset) is off.
pub const GUEST_ACCESS: &str = "GUEST_ACCESS";
/// Secret: `ed25519 <version> <base64 seed>`.
pub const SIGNING_KEY: &str = "SIGNING_KEY";
/// Secret (optional): enables Synapse-compatible shared-secret registration at
/// `/_synapse/admin/v1/register`. Unset or empty disables it.
pub const REGISTRATION_SHARED_SECRET: &str = "REGISTRATION_SHARED_SECRET";

pub const DB: &str = "DB";
pub const ROOMS: &str = "ROOMS";
pub const USERS: &str = "USERS";
pub const ROOM_LOG: &str = "ROOM_LOG";
pub const MEDIA: &str = "MEDIA";
