//! The room's outbox (log records written with their events, waiting for publication)
//! and the published records it keeps for replay.

use super::Rows;
use crate::params;
use crate::storage::sql::{Sql, SqlError, SqlValue};

/// Outbox records gathered to be inserted together.
#[derive(Debug, Default)]
pub struct OutboxRows(Rows);

impl OutboxRows {
    pub fn push(&mut self, stream_pos: i64, payload: String) {
        self.0.values.extend([stream_pos.into(), SqlValue::Text(payload)]);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn write(&mut self, db: &dyn Sql) -> Result<(), SqlError> {
        self.0.write(
            db,
            "INSERT OR REPLACE INTO outbox (stream_pos, payload) VALUES ",
            2,
        )
    }
}

pub fn outbox(db: &dyn Sql, limit: i64) -> Result<Vec<(i64, String)>, SqlError> {
    db.query(
        "SELECT stream_pos, payload FROM outbox ORDER BY stream_pos LIMIT ?",
        params![limit],
    )?
    .iter()
    .map(|r| Ok((r.int(0)?, r.text(1)?.to_owned())))
    .collect()
}

/// Of the first `limit` outbox records, those whose text contains `mark`, and the
/// position of the last of the `limit` (0 when the outbox is empty).
pub fn outbox_mentioning(
    db: &dyn Sql,
    mark: &str,
    limit: i64,
) -> Result<(Vec<(i64, String)>, i64), SqlError> {
    let last = db
        .query_opt(
            "SELECT coalesce(max(stream_pos), 0) FROM \
             (SELECT stream_pos FROM outbox ORDER BY stream_pos LIMIT ?)",
            params![limit],
        )?
        .map(|r| r.int(0))
        .transpose()?
        .unwrap_or(0);
    let rows = db
        .query(
            "SELECT stream_pos, payload FROM outbox WHERE stream_pos <= ? AND instr(payload, ?) > 0 \
             ORDER BY stream_pos",
            params![last, mark],
        )?
        .iter()
        .map(|r| Ok((r.int(0)?, r.text(1)?.to_owned())))
        .collect::<Result<_, SqlError>>()?;
    Ok((rows, last))
}

/// Moves the outbox records up to `up_to` to the published records, of which the
/// latest `PUBLISHED_KEPT` stay for replay.
pub fn clear_outbox(db: &dyn Sql, up_to: i64) -> Result<(), SqlError> {
    db.execute(
        "INSERT OR REPLACE INTO published (stream_pos, payload) \
         SELECT stream_pos, payload FROM outbox WHERE stream_pos <= ?",
        params![up_to],
    )?;
    db.execute("DELETE FROM outbox WHERE stream_pos <= ?", params![up_to])?;
    db.execute(
        "DELETE FROM published WHERE stream_pos <= ?",
        params![up_to - super::super::schema::PUBLISHED_KEPT],
    )
}

/// Up to `limit` of the room's log records from stream position `from` on, in stream
/// order: the published ones the room keeps and those still in its outbox.
pub fn log_records(db: &dyn Sql, from: i64, limit: i64) -> Result<Vec<(i64, String)>, SqlError> {
    db.query(
        "SELECT stream_pos, payload FROM published WHERE stream_pos >= ? \
         UNION ALL SELECT stream_pos, payload FROM outbox WHERE stream_pos >= ? \
         ORDER BY stream_pos LIMIT ?",
        params![from, from, limit],
    )?
    .iter()
    .map(|r| Ok((r.int(0)?, r.text(1)?.to_owned())))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::sql::testing::MemorySql;

    fn db() -> MemorySql {
        let db = MemorySql::new();
        super::super::init(&db).expect("schema");
        db
    }

    #[test]
    fn outbox_rows_are_written_in_many_statements() {
        let db = db();
        let mut outbox_rows = OutboxRows::default();
        outbox_rows.push(1, r#"{"a":"\"x\""}"#.to_owned());
        outbox_rows.push(2, "{}".to_owned());
        outbox_rows.write(&db).expect("write");
        assert_eq!(
            outbox(&db, 10).expect("outbox"),
            vec![(1, r#"{"a":"\"x\""}"#.to_owned()), (2, "{}".to_owned())]
        );
        for pos in 3..=120 {
            outbox_rows.push(pos, format!("{{\"n\":{pos}}}"));
        }
        outbox_rows.write(&db).expect("write many");
        let all = outbox(&db, 1000).expect("outbox");
        assert_eq!(all.len(), 120);
        assert_eq!(all[119], (120, r#"{"n":120}"#.to_owned()));
    }

    #[test]
    fn outbox_records_naming_a_server_are_picked_out() {
        let db = db();
        assert_eq!(
            outbox_mentioning(&db, ":hs\"", 10).expect("empty"),
            (Vec::new(), 0)
        );
        let mut rows = OutboxRows::default();
        rows.push(1, r#"{"state_key":"@a:elsewhere"}"#.to_owned());
        rows.push(2, r#"{"state_key":"@b:hs"}"#.to_owned());
        rows.push(3, r#"{"sender":"@c:hs.example"}"#.to_owned());
        rows.push(4, r#"{"state_key":"@d:hs"}"#.to_owned());
        rows.write(&db).expect("write");
        let (found, last) = outbox_mentioning(&db, ":hs\"", 10).expect("mentioning");
        assert_eq!(last, 4);
        assert_eq!(found.iter().map(|(p, _)| *p).collect::<Vec<_>>(), vec![2, 4]);
        // Only within the first `limit` records.
        let (found, last) = outbox_mentioning(&db, ":hs\"", 3).expect("mentioning");
        assert_eq!((found.len(), last), (1, 3));
    }

    #[test]
    fn published_records_are_kept_for_replay_up_to_a_bound() {
        let db = db();
        let kept = super::super::super::schema::PUBLISHED_KEPT;
        let mut rows = OutboxRows::default();
        for pos in 1..=kept + 5 {
            rows.push(pos, format!("{{\"n\":{pos}}}"));
        }
        rows.write(&db).expect("write");
        assert!(
            log_records(&db, 0, 3).expect("records").len() == 3,
            "unpublished are listed"
        );
        clear_outbox(&db, 10).expect("clear");
        assert_eq!(outbox(&db, 1).expect("outbox")[0].0, 11);
        let first = log_records(&db, 0, 12).expect("records");
        let positions: Vec<i64> = first.iter().map(|(p, _)| *p).collect();
        assert_eq!(
            positions,
            (1..=12).collect::<Vec<_>>(),
            "published, then the outbox"
        );
        clear_outbox(&db, kept + 5).expect("clear all");
        assert!(outbox(&db, 10).expect("outbox").is_empty());
        let all = log_records(&db, 0, 2 * kept).expect("records");
        assert_eq!(all.len() as i64, kept);
        assert_eq!(all[0], (6, r#"{"n":6}"#.to_owned()), "the oldest are dropped");
        assert_eq!(log_records(&db, kept, 10).expect("from").len(), 6);
    }
}
