//! `federation_txns` (received transactions, for idempotency) and
//! `server_resolutions` (how other servers were reached).

use serde::Deserialize;

use super::{args, Db, Result};
use crate::core::server_name::Target;

/// The answer given to an earlier transaction with this id from `origin`.
pub async fn txn_response(db: &Db, origin: &str, txn_id: &str) -> Result<Option<String>> {
    #[derive(Deserialize)]
    struct Row {
        response: String,
    }
    let row: Option<Row> = db
        .first(
            "SELECT response FROM federation_txns WHERE origin = ?1 AND txn_id = ?2",
            args![origin, txn_id],
        )
        .await?;
    Ok(row.map(|r| r.response))
}

/// Remembers a transaction's answer (the first one stays).
pub async fn record_txn(db: &Db, origin: &str, txn_id: &str, response: &str, now: u64) -> Result<()> {
    db.run(
        "INSERT INTO federation_txns (origin, txn_id, response, ts) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (origin, txn_id) DO NOTHING",
        args![origin, txn_id, response, now],
    )
    .await?;
    Ok(())
}

/// A resolution still valid at `now`.
pub async fn resolution(db: &Db, server: &str, now: u64) -> Result<Option<Target>> {
    #[derive(Deserialize)]
    struct Row {
        host: String,
        port: i64,
        host_header: String,
    }
    let row: Option<Row> = db
        .first(
            "SELECT host, port, host_header FROM server_resolutions WHERE server_name = ?1 AND expires_ts > ?2",
            args![server, now],
        )
        .await?;
    Ok(row.and_then(|r| {
        Some(Target {
            host: r.host,
            port: u16::try_from(r.port).ok()?,
            host_header: r.host_header,
        })
    }))
}

pub async fn record_resolution(db: &Db, server: &str, target: &Target, expires: u64) -> Result<()> {
    db.run(
        "INSERT INTO server_resolutions (server_name, host, port, host_header, expires_ts) \
         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (server_name) DO UPDATE SET host = excluded.host, \
         port = excluded.port, host_header = excluded.host_header, expires_ts = excluded.expires_ts",
        args![
            server,
            &target.host,
            i64::from(target.port),
            &target.host_header,
            expires
        ],
    )
    .await?;
    Ok(())
}

/// Records which room each event is in (`(event id, room id)`), one statement.
pub async fn index_events(db: &Db, events: &[(&str, &str)]) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let list: Vec<[&str; 2]> = events.iter().map(|(e, r)| [*e, *r]).collect();
    let json = serde_json::to_string(&list).unwrap_or_else(|_| "[]".into());
    db.run(
        "INSERT INTO event_rooms (event_id, room_id) \
         SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?1) WHERE true \
         ON CONFLICT (event_id) DO NOTHING",
        args![json],
    )
    .await?;
    Ok(())
}

/// The room an event is in, if this server has it in its index.
pub async fn room_of_event(db: &Db, event_id: &str) -> Result<Option<String>> {
    #[derive(Deserialize)]
    struct Row {
        room_id: String,
    }
    let row: Option<Row> = db
        .first(
            "SELECT room_id FROM event_rooms WHERE event_id = ?1",
            args![event_id],
        )
        .await?;
    Ok(row.map(|r| r.room_id))
}
