//! `server_keys` and `server_key_responses`: other servers' signing keys, and the
//! signed responses they came in (served again when this server acts as a notary).

use serde::Deserialize;

use super::{args, stmt, Db, Result};
use crate::core::server_keys::KnownKey;

#[derive(Deserialize)]
struct Row {
    key_id: String,
    public_key: String,
    valid_until_ts: i64,
    old: i64,
}

impl From<Row> for KnownKey {
    fn from(r: Row) -> Self {
        KnownKey {
            key_id: r.key_id,
            key: r.public_key,
            valid_until_ts: u64::try_from(r.valid_until_ts).unwrap_or(0),
            old: r.old != 0,
        }
    }
}

/// The kept keys of `server`.
pub async fn of_server(db: &Db, server: &str) -> Result<Vec<KnownKey>> {
    let rows: Vec<Row> = db
        .all(
            "SELECT key_id, public_key, valid_until_ts, old FROM server_keys WHERE server_name = ?1",
            args![server],
        )
        .await?;
    Ok(rows.into_iter().map(KnownKey::from).collect())
}

/// Keeps a checked response and its keys. A key keeps the furthest validity it was
/// ever given (a stale copy from a notary does not shorten it), and a current key
/// listed as old later becomes old.
pub async fn store(
    db: &Db,
    server: &str,
    keys: &[KnownKey],
    response: &str,
    valid_until: u64,
    now: u64,
) -> Result<()> {
    let mut stmts = Vec::with_capacity(keys.len() + 1);
    for key in keys {
        stmts.push(stmt(
            "INSERT INTO server_keys (server_name, key_id, public_key, valid_until_ts, old, fetched_ts) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (server_name, key_id) DO UPDATE SET \
             public_key = excluded.public_key, fetched_ts = excluded.fetched_ts, \
             old = MAX(server_keys.old, excluded.old), \
             valid_until_ts = CASE WHEN excluded.old > server_keys.old THEN excluded.valid_until_ts \
               ELSE MAX(server_keys.valid_until_ts, excluded.valid_until_ts) END",
            args![server, &key.key_id, &key.key, key.valid_until_ts, key.old, now],
        ));
    }
    stmts.push(stmt(
        "INSERT INTO server_key_responses (server_name, response, valid_until_ts, fetched_ts) \
         VALUES (?1, ?2, ?3, ?4) ON CONFLICT (server_name) DO UPDATE SET response = excluded.response, \
         valid_until_ts = excluded.valid_until_ts, fetched_ts = excluded.fetched_ts \
         WHERE excluded.valid_until_ts >= server_key_responses.valid_until_ts",
        args![server, response, valid_until, now],
    ));
    db.batch(stmts).await?;
    Ok(())
}

/// The kept response of `server` and its `valid_until_ts`.
pub async fn response(db: &Db, server: &str) -> Result<Option<(String, u64)>> {
    #[derive(Deserialize)]
    struct Kept {
        response: String,
        valid_until_ts: i64,
    }
    let kept: Option<Kept> = db
        .first(
            "SELECT response, valid_until_ts FROM server_key_responses WHERE server_name = ?1",
            args![server],
        )
        .await?;
    Ok(kept.map(|k| (k.response, u64::try_from(k.valid_until_ts).unwrap_or(0))))
}
