//! `openid_tokens`: short-lived tokens that prove a user's identity to other services.

use serde::Deserialize;

use super::{args, stmt, Db, Result};

/// Stores a token (by hash) until `expires`, and drops expired ones.
pub async fn create(db: &Db, token_hash: &str, user_id: &str, expires: u64, now: u64) -> Result<()> {
    db.batch(vec![
        stmt("DELETE FROM openid_tokens WHERE expires_ts <= ?1", args![now]),
        stmt(
            "INSERT INTO openid_tokens (token_hash, user_id, expires_ts) VALUES (?1, ?2, ?3)",
            args![token_hash, user_id, expires],
        ),
    ])
    .await?;
    Ok(())
}

/// The user a token still valid at `now` belongs to.
pub async fn owner(db: &Db, token_hash: &str, now: u64) -> Result<Option<String>> {
    #[derive(Deserialize)]
    struct Row {
        user_id: String,
    }
    let row: Option<Row> = db
        .first(
            "SELECT user_id FROM openid_tokens WHERE token_hash = ?1 AND expires_ts > ?2",
            args![token_hash, now],
        )
        .await?;
    Ok(row.map(|r| r.user_id))
}
