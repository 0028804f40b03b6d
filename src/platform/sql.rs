//! The Durable Object's SQLite behind the `Sql` trait.

use worker::{SqlStorage, SqlStorageValue};

use crate::storage::sql::{Row, Sql, SqlError, SqlValue};

pub struct DoSql(pub SqlStorage);

fn to_do(v: &SqlValue) -> SqlStorageValue {
    match v {
        SqlValue::Null => SqlStorageValue::Null,
        SqlValue::Int(i) => SqlStorageValue::Integer(*i),
        SqlValue::Real(f) => SqlStorageValue::Float(*f),
        SqlValue::Text(s) => SqlStorageValue::String(s.clone()),
        SqlValue::Blob(b) => SqlStorageValue::Blob(b.clone()),
    }
}

fn from_do(v: SqlStorageValue) -> SqlValue {
    match v {
        SqlStorageValue::Null => SqlValue::Null,
        SqlStorageValue::Boolean(b) => SqlValue::Int(b as i64),
        SqlStorageValue::Integer(i) => SqlValue::Int(i),
        SqlStorageValue::Float(f) => SqlValue::Real(f),
        SqlStorageValue::String(s) => SqlValue::Text(s),
        SqlStorageValue::Blob(b) => SqlValue::Blob(b),
    }
}

impl Sql for DoSql {
    fn query(&self, sql: &str, params: &[SqlValue]) -> Result<Vec<Row>, SqlError> {
        let bindings: Vec<SqlStorageValue> = params.iter().map(to_do).collect();
        let cursor = self.0.exec(sql, bindings).map_err(|e| SqlError(e.to_string()))?;
        cursor
            .raw()
            .map(|row| {
                row.map(|cells| Row(cells.into_iter().map(from_do).collect()))
                    .map_err(|e| SqlError(e.to_string()))
            })
            .collect()
    }
}
