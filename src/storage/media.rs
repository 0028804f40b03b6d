//! `media`: what this server holds of the content repository (its own uploads and
//! other servers' media it cached); the bytes themselves are in R2.

use serde::Deserialize;

use super::{args, Db, Result};

/// How long an `uploading` claim holds before another upload may take the id (the
/// isolate that held it may have died mid-upload).
pub const UPLOAD_CLAIM_MS: u64 = 10 * 60 * 1000;

#[derive(Debug, Clone, Deserialize)]
pub struct Media {
    pub origin: String,
    pub media_id: String,
    pub owner: Option<String>,
    pub state: String,
    pub content_type: Option<String>,
    pub filename: Option<String>,
    pub size: Option<i64>,
    pub created_ts: i64,
    pub expires_ts: Option<i64>,
}

impl Media {
    pub fn ready(&self) -> bool {
        self.state == "ready"
    }

    /// A pending async upload whose time ran out.
    pub fn expired(&self, now_ms: u64) -> bool {
        !self.ready() && self.expires_ts.is_some_and(|e| e <= now_ms as i64)
    }
}

pub async fn get(db: &Db, origin: &str, media_id: &str) -> Result<Option<Media>> {
    db.first(
        "SELECT origin, media_id, owner, state, content_type, filename, size, created_ts, expires_ts \
         FROM media WHERE origin = ?1 AND media_id = ?2",
        args![origin, media_id],
    )
    .await
}

/// Stores media whose bytes are in R2 now (a direct upload, or another server's media
/// cached). Another server's media cached again replaces its earlier record.
#[allow(clippy::too_many_arguments)]
pub async fn insert_ready(
    db: &Db,
    origin: &str,
    media_id: &str,
    owner: Option<&str>,
    content_type: &str,
    filename: Option<&str>,
    size: u64,
    now_ms: u64,
) -> Result<()> {
    db.run(
        "INSERT INTO media \
         (origin, media_id, owner, state, content_type, filename, size, created_ts, uploaded_ts) \
         VALUES (?1, ?2, ?3, 'ready', ?4, ?5, ?6, ?7, ?7) \
         ON CONFLICT (origin, media_id) DO UPDATE SET content_type = excluded.content_type, \
           filename = excluded.filename, size = excluded.size, created_ts = excluded.created_ts, \
           uploaded_ts = excluded.uploaded_ts WHERE media.owner IS NULL",
        args![origin, media_id, owner, content_type, filename, size, now_ms],
    )
    .await?;
    Ok(())
}

/// Creates a pending async upload (`POST /media/v1/create`).
pub async fn insert_pending(
    db: &Db,
    origin: &str,
    media_id: &str,
    owner: &str,
    now_ms: u64,
    expires_ms: u64,
) -> Result<()> {
    db.run(
        "INSERT INTO media (origin, media_id, owner, state, created_ts, expires_ts) \
         VALUES (?1, ?2, ?3, 'pending', ?4, ?5)",
        args![origin, media_id, owner, now_ms, expires_ms],
    )
    .await?;
    Ok(())
}

/// The user's pending uploads that have not expired.
pub async fn pending_count(db: &Db, owner: &str, now_ms: u64) -> Result<u64> {
    #[derive(Deserialize)]
    struct Count {
        n: i64,
    }
    let row: Option<Count> = db
        .first(
            "SELECT COUNT(*) AS n FROM media WHERE owner = ?1 AND state = 'pending' AND expires_ts > ?2",
            args![owner, now_ms],
        )
        .await?;
    Ok(row.map_or(0, |r| r.n.max(0) as u64))
}

/// Takes a pending upload of `owner` for the bytes about to be written: true if this
/// request may write them (the id is pending and not expired, or its last claim is
/// stale), false otherwise (the caller reads the row to say why).
pub async fn claim_upload(db: &Db, origin: &str, media_id: &str, owner: &str, now_ms: u64) -> Result<bool> {
    let stale = now_ms.saturating_sub(UPLOAD_CLAIM_MS);
    let changed = db
        .run(
            "UPDATE media SET state = 'uploading', uploaded_ts = ?4 \
             WHERE origin = ?1 AND media_id = ?2 AND owner = ?3 AND expires_ts > ?4 \
               AND (state = 'pending' OR (state = 'uploading' AND uploaded_ts < ?5))",
            args![origin, media_id, owner, now_ms, stale],
        )
        .await?;
    Ok(changed == 1)
}

/// Gives a claimed upload back (its bytes did not arrive).
pub async fn release_upload(db: &Db, origin: &str, media_id: &str) -> Result<()> {
    db.run(
        "UPDATE media SET state = 'pending' WHERE origin = ?1 AND media_id = ?2 AND state = 'uploading'",
        args![origin, media_id],
    )
    .await?;
    Ok(())
}

/// Marks a claimed upload done.
pub async fn complete_upload(
    db: &Db,
    origin: &str,
    media_id: &str,
    content_type: &str,
    filename: Option<&str>,
    size: u64,
    now_ms: u64,
) -> Result<()> {
    db.run(
        "UPDATE media SET state = 'ready', content_type = ?3, filename = ?4, size = ?5, uploaded_ts = ?6, \
         expires_ts = NULL WHERE origin = ?1 AND media_id = ?2",
        args![origin, media_id, content_type, filename, size, now_ms],
    )
    .await?;
    Ok(())
}

/// Forgets a piece of media (an operator deleted it).
pub async fn remove(db: &Db, origin: &str, media_id: &str) -> Result<()> {
    db.run(
        "DELETE FROM media WHERE origin = ?1 AND media_id = ?2",
        args![origin, media_id],
    )
    .await?;
    Ok(())
}

/// The bytes of the user's uploads.
pub async fn used_bytes(db: &Db, owner: &str) -> Result<u64> {
    #[derive(Deserialize)]
    struct Sum {
        n: Option<i64>,
    }
    let row: Option<Sum> = db
        .first(
            "SELECT SUM(size) AS n FROM media WHERE owner = ?1 AND state = 'ready'",
            args![owner],
        )
        .await?;
    Ok(row.and_then(|r| r.n).map_or(0, |n| n.max(0) as u64))
}

/// Up to `limit` cached copies of other servers' media kept before `before_ms`.
pub async fn cached_before(
    db: &Db,
    own_server: &str,
    before_ms: u64,
    limit: u32,
) -> Result<Vec<(String, String)>> {
    #[derive(Deserialize)]
    struct Row {
        origin: String,
        media_id: String,
    }
    let rows: Vec<Row> = db
        .all(
            "SELECT origin, media_id FROM media WHERE owner IS NULL AND origin != ?1 AND created_ts < ?2 LIMIT ?3",
            args![own_server, before_ms, i64::from(limit)],
        )
        .await?;
    Ok(rows.into_iter().map(|r| (r.origin, r.media_id)).collect())
}
