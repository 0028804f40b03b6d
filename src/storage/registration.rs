//! `registration_tokens` (for token-gated registration) and `registration_nonces` (for
//! shared-secret admin registration).

use serde::{Deserialize, Serialize};

use super::{args, stmt, Db, Result};

/// A registration token, in the shape Synapse's admin API returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationToken {
    pub token: String,
    pub uses_allowed: Option<i64>,
    pub pending: i64,
    pub completed: i64,
    pub expiry_time: Option<i64>,
}

impl RegistrationToken {
    pub fn is_valid(&self, now_ms: u64) -> bool {
        let now = i64::try_from(now_ms).unwrap_or(i64::MAX);
        self.uses_allowed
            .is_none_or(|n| self.completed + self.pending < n)
            && self.expiry_time.is_none_or(|t| t > now)
    }
}

const COLUMNS: &str = "token, uses_allowed, pending, completed, expiry_time";

pub async fn list_tokens(db: &Db) -> Result<Vec<RegistrationToken>> {
    db.all(
        &format!("SELECT {COLUMNS} FROM registration_tokens ORDER BY token"),
        args![],
    )
    .await
}

pub async fn get_token(db: &Db, token: &str) -> Result<Option<RegistrationToken>> {
    db.first(
        &format!("SELECT {COLUMNS} FROM registration_tokens WHERE token = ?1"),
        args![token],
    )
    .await
}

/// Creates a token; returns false if it already exists.
pub async fn create_token(db: &Db, token: &RegistrationToken) -> Result<bool> {
    let changed = db
        .run(
            "INSERT INTO registration_tokens (token, uses_allowed, pending, completed, expiry_time) \
             VALUES (?1, ?2, 0, 0, ?3) ON CONFLICT (token) DO NOTHING",
            args![&token.token, token.uses_allowed, token.expiry_time],
        )
        .await?;
    Ok(changed > 0)
}

/// Sets a token's `uses_allowed` and `expiry_time`; returns whether it exists.
pub async fn update_token(
    db: &Db,
    token: &str,
    uses_allowed: Option<i64>,
    expiry_time: Option<i64>,
) -> Result<bool> {
    let changed = db
        .run(
            "UPDATE registration_tokens SET uses_allowed = ?2, expiry_time = ?3 WHERE token = ?1",
            args![token, uses_allowed, expiry_time],
        )
        .await?;
    Ok(changed > 0)
}

/// Deletes a token; returns whether it existed.
pub async fn delete_token(db: &Db, token: &str) -> Result<bool> {
    Ok(db
        .run("DELETE FROM registration_tokens WHERE token = ?1", args![token])
        .await?
        > 0)
}

/// Takes one use of a token if it is still valid; returns whether it did. Atomic, so
/// two registrations cannot both take the last use.
pub async fn take_token_use(db: &Db, token: &str, now_ms: u64) -> Result<bool> {
    let changed = db
        .run(
            "UPDATE registration_tokens SET completed = completed + 1 WHERE token = ?1 \
             AND (uses_allowed IS NULL OR completed + pending < uses_allowed) \
             AND (expiry_time IS NULL OR expiry_time > ?2)",
            args![token, now_ms],
        )
        .await?;
    Ok(changed > 0)
}

/// Gives back a use taken by `take_token_use` when the registration then failed.
pub async fn return_token_use(db: &Db, token: &str) -> Result<()> {
    db.run(
        "UPDATE registration_tokens SET completed = MAX(completed - 1, 0) WHERE token = ?1",
        args![token],
    )
    .await?;
    Ok(())
}

/// How long a shared-secret registration nonce stays usable.
pub const NONCE_TTL_MS: u64 = 60_000;

pub async fn create_nonce(db: &Db, nonce: &str, now_ms: u64) -> Result<()> {
    let cutoff = now_ms.saturating_sub(NONCE_TTL_MS);
    db.batch(vec![
        stmt(
            "DELETE FROM registration_nonces WHERE created_ts < ?1",
            args![cutoff],
        ),
        stmt(
            "INSERT INTO registration_nonces (nonce, created_ts) VALUES (?1, ?2)",
            args![nonce, now_ms],
        ),
    ])
    .await?;
    Ok(())
}

/// Consumes a nonce; returns whether it existed and had not expired.
pub async fn take_nonce(db: &Db, nonce: &str, now_ms: u64) -> Result<bool> {
    let cutoff = now_ms.saturating_sub(NONCE_TTL_MS);
    let changed = db
        .run(
            "DELETE FROM registration_nonces WHERE nonce = ?1 AND created_ts >= ?2",
            args![nonce, cutoff],
        )
        .await?;
    Ok(changed > 0)
}
