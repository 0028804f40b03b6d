//! Binding and variable names; these must match `wrangler.toml`.

pub const SERVER_NAME: &str = "SERVER_NAME";
pub const PUBLIC_BASEURL: &str = "PUBLIC_BASEURL";
pub const REGISTRATION: &str = "REGISTRATION";
/// `on` lets guests register and use the guest API; anything else (or unset) is off.
pub const GUEST_ACCESS: &str = "GUEST_ACCESS";
/// `on`: the user directory searches every local account (anything else: only users
/// sharing a room with the searcher or in an open room).
pub const USER_DIRECTORY_SEARCH_ALL_USERS: &str = "USER_DIRECTORY_SEARCH_ALL_USERS";
/// Secret: `ed25519 <version> <base64 seed>`.
pub const SIGNING_KEY: &str = "SIGNING_KEY";
/// Secret (optional): enables Synapse-compatible shared-secret registration at
/// `/_synapse/admin/v1/register`. Unset or empty disables it.
pub const REGISTRATION_SHARED_SECRET: &str = "REGISTRATION_SHARED_SECRET";

/// `plaintext` (local development): loopback peers allowed, over plain HTTP.
pub const FEDERATION_LOOPBACK: &str = "FEDERATION_LOOPBACK";
/// Comma-separated server-name globs: only these (empty: all).
pub const FEDERATION_ALLOW: &str = "FEDERATION_ALLOW";
/// Comma-separated server-name globs: never these.
pub const FEDERATION_DENY: &str = "FEDERATION_DENY";
/// Comma-separated notary server names.
pub const TRUSTED_KEY_SERVERS: &str = "TRUSTED_KEY_SERVERS";
/// DNS-over-HTTPS JSON endpoint for SRV lookups; empty skips SRV.
pub const DNS_RESOLVER: &str = "DNS_RESOLVER";
/// Earlier signing keys: `ed25519:<version> <key> <expired_ts>`, `;`-separated.
pub const OLD_VERIFY_KEYS: &str = "OLD_VERIFY_KEYS";

/// Largest upload in bytes (empty: 50 MiB).
pub const MEDIA_MAX_UPLOAD_SIZE: &str = "MEDIA_MAX_UPLOAD_SIZE";
/// `frozen` (default), `open`, or a time in ms: what legacy unauthenticated downloads serve.
pub const MEDIA_LEGACY_DOWNLOAD: &str = "MEDIA_LEGACY_DOWNLOAD";
/// Bytes a user's uploads may take in all (empty or `0`: no quota).
pub const MEDIA_USER_QUOTA: &str = "MEDIA_USER_QUOTA";
/// Days another server's media stays cached (empty or `0`: for good).
pub const MEDIA_REMOTE_RETENTION_DAYS: &str = "MEDIA_REMOTE_RETENTION_DAYS";

pub const DB: &str = "DB";
pub const ROOMS: &str = "ROOMS";
pub const USERS: &str = "USERS";
pub const DESTINATIONS: &str = "DESTINATIONS";
pub const ROOM_LOG: &str = "ROOM_LOG";
pub const MEDIA: &str = "MEDIA";
