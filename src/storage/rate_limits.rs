//! `login_failures`: fixed-window counters of failed password checks, keyed by account
//! (`user:@a:hs`) and by client address (`ip:203.0.113.7`).

use serde::Deserialize;

use super::{args, stmt, Db, Result, Stmt};

/// A limit: at most `max_failures` per `window_ms`.
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    pub max_failures: i64,
    pub window_ms: u64,
}

#[derive(Deserialize)]
struct Row {
    key: String,
    window_start: i64,
    failures: i64,
}

/// What the counters say about an attempt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Status {
    /// If any key is over its limit: how long until it may try again.
    pub blocked_for: Option<u64>,
    /// Whether the first key has failures on record (worth clearing after a success).
    pub first_has_failures: bool,
}

/// Reads the counters of up to two keys in one query.
pub async fn status(db: &Db, keys: &[(&str, Limit)], now_ms: u64) -> Result<Status> {
    let (a, b) = match keys {
        [a] => (a.0, a.0),
        [a, b, ..] => (a.0, b.0),
        [] => return Ok(Status::default()),
    };
    let rows: Vec<Row> = db
        .all(
            "SELECT key, window_start, failures FROM login_failures WHERE key IN (?1, ?2)",
            args![a, b],
        )
        .await?;
    let now = i64::try_from(now_ms).unwrap_or(i64::MAX);
    let mut wait: Option<u64> = None;
    let first_has_failures = rows.iter().any(|r| r.key == a);
    for row in rows {
        let Some((_, limit)) = keys.iter().find(|(k, _)| *k == row.key) else {
            continue;
        };
        let window_end = row.window_start.saturating_add(limit.window_ms as i64);
        if row.failures >= limit.max_failures && window_end > now {
            let left = (window_end - now) as u64;
            wait = Some(wait.map_or(left, |w| w.max(left)));
        }
    }
    Ok(Status {
        blocked_for: wait,
        first_has_failures,
    })
}

/// Counts one failure against `key`, starting a new window when the old one is over.
pub fn record_failure(key: &str, limit: Limit, now_ms: u64) -> Stmt {
    stmt(
        "INSERT INTO login_failures (key, window_start, failures) VALUES (?1, ?2, 1) \
         ON CONFLICT (key) DO UPDATE SET \
           failures = CASE WHEN window_start + ?3 <= ?2 THEN 1 ELSE failures + 1 END, \
           window_start = CASE WHEN window_start + ?3 <= ?2 THEN ?2 ELSE window_start END",
        args![key, now_ms, limit.window_ms],
    )
}

/// Forgets the failures of `key` (after a successful login).
pub fn clear(key: &str) -> Stmt {
    stmt("DELETE FROM login_failures WHERE key = ?1", args![key])
}

pub async fn record_failures(db: &Db, keys: &[(&str, Limit)], now_ms: u64) -> Result<()> {
    db.batch(
        keys.iter()
            .map(|(k, limit)| record_failure(k, *limit, now_ms))
            .collect(),
    )
    .await?;
    Ok(())
}
