//! `devices` and `access_tokens`. Tokens are keyed by their SHA-256 (see
//! `core::accounts::token`); the token text itself is never stored.

use serde::Deserialize;

use super::{args, flag, stmt, Db, Result, Stmt};

/// Who a valid access token belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TokenOwner {
    pub user_id: String,
    pub device_id: String,
    #[serde(deserialize_with = "de_flag")]
    pub is_admin: bool,
    #[serde(deserialize_with = "de_flag")]
    pub is_guest: bool,
}

fn de_flag<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<bool, D::Error> {
    i64::deserialize(d).map(flag)
}

/// The owner of an access token (by hash), if the token exists and its account is active.
pub async fn token_owner(db: &Db, token_hash: &str) -> Result<Option<TokenOwner>> {
    db.first(
        "SELECT t.user_id, t.device_id, u.is_admin, \
         EXISTS (SELECT 1 FROM guests g WHERE g.user_id = t.user_id) AS is_guest FROM access_tokens t \
         JOIN users u ON u.user_id = t.user_id \
         WHERE t.token_hash = ?1 AND u.deactivated = 0",
        args![token_hash],
    )
    .await
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Device {
    pub device_id: String,
    pub display_name: Option<String>,
    pub last_seen_ts: Option<i64>,
    pub last_seen_ip: Option<String>,
}

pub async fn list(db: &Db, user_id: &str) -> Result<Vec<Device>> {
    db.all(
        "SELECT device_id, display_name, last_seen_ts, last_seen_ip FROM devices \
         WHERE user_id = ?1 ORDER BY device_id",
        args![user_id],
    )
    .await
}

pub async fn get(db: &Db, user_id: &str, device_id: &str) -> Result<Option<Device>> {
    db.first(
        "SELECT device_id, display_name, last_seen_ts, last_seen_ip FROM devices \
         WHERE user_id = ?1 AND device_id = ?2",
        args![user_id, device_id],
    )
    .await
}

/// Sets a device's display name; returns whether the device exists.
pub async fn rename(db: &Db, user_id: &str, device_id: &str, display_name: Option<&str>) -> Result<bool> {
    let changed = db
        .run(
            "UPDATE devices SET display_name = ?3 WHERE user_id = ?1 AND device_id = ?2",
            args![user_id, device_id, display_name],
        )
        .await?;
    Ok(changed > 0)
}

/// A login on a device: creates the device (or refreshes `last_seen` of an existing
/// one, keeping its name), revokes the device's previous tokens and stores the new one.
pub struct Login<'a> {
    pub user_id: &'a str,
    pub device_id: &'a str,
    pub display_name: Option<&'a str>,
    pub token_hash: &'a str,
    pub ip: &'a str,
    pub now_ms: u64,
}

pub fn login(l: &Login<'_>) -> Vec<Stmt> {
    vec![
        stmt(
            "INSERT INTO devices (user_id, device_id, display_name, last_seen_ts, last_seen_ip, created_ts) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?4) \
             ON CONFLICT (user_id, device_id) DO UPDATE SET last_seen_ts = ?4, last_seen_ip = ?5",
            args![l.user_id, l.device_id, l.display_name, l.now_ms, l.ip],
        ),
        stmt(
            "DELETE FROM access_tokens WHERE user_id = ?1 AND device_id = ?2",
            args![l.user_id, l.device_id],
        ),
        stmt(
            "INSERT INTO access_tokens (token_hash, user_id, device_id, created_ts) VALUES (?1, ?2, ?3, ?4)",
            args![l.token_hash, l.user_id, l.device_id, l.now_ms],
        ),
    ]
}

/// Deletes one device, every token issued to it, and its end-to-end keys (telling
/// the user's observers through the device-list stream).
pub fn delete(user_id: &str, device_id: &str) -> Vec<Stmt> {
    let mut stmts = super::e2e_keys::delete_device(user_id, device_id);
    stmts.extend([
        stmt(
            "DELETE FROM access_tokens WHERE user_id = ?1 AND device_id = ?2",
            args![user_id, device_id],
        ),
        stmt(
            "DELETE FROM devices WHERE user_id = ?1 AND device_id = ?2",
            args![user_id, device_id],
        ),
    ]);
    stmts
}

/// Deletes every device of the user except `keep` (all of them when `None`), their
/// tokens and their end-to-end keys.
pub fn delete_all_except(user_id: &str, keep: Option<&str>) -> Vec<Stmt> {
    let mut stmts = super::e2e_keys::delete_devices_except(user_id, keep);
    let keep = keep.unwrap_or("");
    stmts.extend([
        stmt(
            "DELETE FROM access_tokens WHERE user_id = ?1 AND device_id <> ?2",
            args![user_id, keep],
        ),
        stmt(
            "DELETE FROM devices WHERE user_id = ?1 AND device_id <> ?2",
            args![user_id, keep],
        ),
    ]);
    stmts
}
