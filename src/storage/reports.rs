//! `reports`: what users reported to the server's admins (events, rooms, users).

use serde::{Deserialize, Serialize};

use super::{args, Db, Result};

/// A new report.
pub struct NewReport<'a> {
    pub kind: &'a str,
    pub received_ts: u64,
    pub reporter: &'a str,
    pub room_id: Option<&'a str>,
    pub event_id: Option<&'a str>,
    pub target_user_id: Option<&'a str>,
    pub reason: Option<&'a str>,
    pub score: Option<i64>,
    pub event_json: Option<&'a str>,
}

/// A stored report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub id: i64,
    pub kind: String,
    pub received_ts: i64,
    pub reporter: String,
    pub room_id: Option<String>,
    pub event_id: Option<String>,
    pub target_user_id: Option<String>,
    pub reason: Option<String>,
    pub score: Option<i64>,
    pub event_json: Option<String>,
}

/// Keeps a report; answers its id.
pub async fn add(db: &Db, r: &NewReport<'_>) -> Result<i64> {
    #[derive(Deserialize)]
    struct Row {
        id: i64,
    }
    let row: Option<Row> = db
        .first(
            "INSERT INTO reports (kind, received_ts, reporter, room_id, event_id, target_user_id, \
             reason, score, event_json) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) RETURNING id",
            args![
                r.kind,
                r.received_ts,
                r.reporter,
                r.room_id,
                r.event_id,
                r.target_user_id,
                r.reason,
                r.score,
                r.event_json
            ],
        )
        .await?;
    Ok(row.map_or(0, |r| r.id))
}

/// What a listing asks for.
pub struct Listing<'a> {
    /// `None`: every kind.
    pub kind: Option<&'a str>,
    pub offset: i64,
    pub limit: i64,
    /// Newest first.
    pub backwards: bool,
    pub reporter: Option<&'a str>,
    pub room_id: Option<&'a str>,
}

/// One page of reports and the number matching in all.
pub async fn list(db: &Db, q: &Listing<'_>) -> Result<(Vec<Report>, i64)> {
    #[derive(Deserialize)]
    struct Count {
        total: i64,
    }
    let filter =
        "(?1 IS NULL OR kind = ?1) AND (?2 IS NULL OR reporter = ?2) AND (?3 IS NULL OR room_id = ?3)";
    let total: Option<Count> = db
        .first(
            &format!("SELECT COUNT(*) AS total FROM reports WHERE {filter}"),
            args![q.kind, q.reporter, q.room_id],
        )
        .await?;
    let order = if q.backwards { "DESC" } else { "ASC" };
    let rows = db
        .all(
            &format!(
                "SELECT id, kind, received_ts, reporter, room_id, event_id, target_user_id, reason, \
                 score, event_json FROM reports WHERE {filter} ORDER BY id {order} LIMIT ?4 OFFSET ?5"
            ),
            args![q.kind, q.reporter, q.room_id, q.limit, q.offset],
        )
        .await?;
    Ok((rows, total.map_or(0, |t| t.total)))
}

/// One report by id.
pub async fn get(db: &Db, id: i64) -> Result<Option<Report>> {
    db.first(
        "SELECT id, kind, received_ts, reporter, room_id, event_id, target_user_id, reason, \
         score, event_json FROM reports WHERE id = ?1",
        args![id],
    )
    .await
}

/// Whether the server knows the user: a local account, or another server's user who
/// has been in a room here.
pub async fn user_known(db: &Db, user_id: &str) -> Result<bool> {
    #[derive(Deserialize)]
    struct One {
        #[allow(dead_code)]
        one: i64,
    }
    let row: Option<One> = db
        .first(
            "SELECT 1 AS one FROM users WHERE user_id = ?1 \
             UNION ALL SELECT 1 AS one FROM room_memberships WHERE user_id = ?1 LIMIT 1",
            args![user_id],
        )
        .await?;
    Ok(row.is_some())
}
