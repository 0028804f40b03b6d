//! Cross-signing keys (`e2e_cross_signing_keys`) and the signatures uploaded through
//! `/keys/signatures/upload` (`e2e_signatures`).

use serde::Deserialize;

use super::{args, stmt, Db, Result, Stmt};

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StoredKey {
    pub user_id: String,
    /// `master`, `self_signing` or `user_signing`.
    pub kind: String,
    pub public_key: String,
    pub key_json: String,
}

/// The cross-signing keys of the users in `user_ids` (one statement, any number).
pub async fn keys_of_users(db: &Db, user_ids: &[&str]) -> Result<Vec<StoredKey>> {
    let users = serde_json::to_string(user_ids).unwrap_or_else(|_| "[]".into());
    db.all(
        "SELECT user_id, kind, public_key, key_json FROM e2e_cross_signing_keys \
         WHERE user_id IN (SELECT value FROM json_each(?1))",
        args![users],
    )
    .await
}

/// Stores (or replaces) one cross-signing key.
pub fn put_key(user_id: &str, kind: &str, public_key: &str, key_json: &str) -> Stmt {
    stmt(
        "INSERT INTO e2e_cross_signing_keys (user_id, kind, public_key, key_json) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (user_id, kind) DO UPDATE SET public_key = excluded.public_key, key_json = excluded.key_json",
        args![user_id, kind, public_key, key_json],
    )
}

/// One stored extra signature.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StoredSignature {
    pub target_user_id: String,
    pub target_key_id: String,
    pub signer_user_id: String,
    pub signer_key_id: String,
    pub signature: String,
}

/// Extra signatures on keys of the users in `user_ids` made by the owner of the key
/// or by `viewer` (others' user-signing signatures are private to them).
pub async fn signatures_of_users(db: &Db, user_ids: &[&str], viewer: &str) -> Result<Vec<StoredSignature>> {
    let users = serde_json::to_string(user_ids).unwrap_or_else(|_| "[]".into());
    db.all(
        "SELECT target_user_id, target_key_id, signer_user_id, signer_key_id, signature FROM e2e_signatures \
         WHERE target_user_id IN (SELECT value FROM json_each(?1)) \
           AND (signer_user_id = target_user_id OR signer_user_id = ?2)",
        args![users, viewer],
    )
    .await
}

/// Stores one extra signature (replacing the signer key's previous one).
pub fn put_signature(s: &StoredSignature) -> Stmt {
    stmt(
        "INSERT INTO e2e_signatures (target_user_id, target_key_id, signer_user_id, signer_key_id, signature) \
         VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT (target_user_id, target_key_id, signer_user_id, signer_key_id) \
           DO UPDATE SET signature = excluded.signature",
        args![
            &s.target_user_id,
            &s.target_key_id,
            &s.signer_user_id,
            &s.signer_key_id,
            &s.signature
        ],
    )
}
