//! A small synchronous SQL interface. The Room and User Durable Objects run their
//! logic against it: in the worker it is the Durable Object's SQLite (`platform::sql`),
//! in native tests it is rusqlite. No `.await` anywhere, so a sequence of calls made in
//! one synchronous section commits atomically in the Durable Object.

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl From<i64> for SqlValue {
    fn from(v: i64) -> Self {
        SqlValue::Int(v)
    }
}
impl From<u64> for SqlValue {
    fn from(v: u64) -> Self {
        SqlValue::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}
impl From<bool> for SqlValue {
    fn from(v: bool) -> Self {
        SqlValue::Int(v as i64)
    }
}
impl From<&str> for SqlValue {
    fn from(v: &str) -> Self {
        SqlValue::Text(v.to_owned())
    }
}
impl From<String> for SqlValue {
    fn from(v: String) -> Self {
        SqlValue::Text(v)
    }
}
impl From<&String> for SqlValue {
    fn from(v: &String) -> Self {
        SqlValue::Text(v.clone())
    }
}
impl<T: Into<SqlValue>> From<Option<T>> for SqlValue {
    fn from(v: Option<T>) -> Self {
        v.map_or(SqlValue::Null, Into::into)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlError(pub String);

impl fmt::Display for SqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sql: {}", self.0)
    }
}

impl std::error::Error for SqlError {}

/// One result row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row(pub Vec<SqlValue>);

impl Row {
    pub fn int(&self, i: usize) -> Result<i64, SqlError> {
        match self.0.get(i) {
            Some(SqlValue::Int(v)) => Ok(*v),
            Some(SqlValue::Real(v)) if v.fract() == 0.0 => Ok(*v as i64),
            other => Err(SqlError(format!("column {i}: expected integer, got {other:?}"))),
        }
    }

    pub fn opt_int(&self, i: usize) -> Result<Option<i64>, SqlError> {
        match self.0.get(i) {
            Some(SqlValue::Null) => Ok(None),
            _ => self.int(i).map(Some),
        }
    }

    pub fn text(&self, i: usize) -> Result<&str, SqlError> {
        match self.0.get(i) {
            Some(SqlValue::Text(v)) => Ok(v),
            other => Err(SqlError(format!("column {i}: expected text, got {other:?}"))),
        }
    }

    pub fn opt_text(&self, i: usize) -> Result<Option<&str>, SqlError> {
        match self.0.get(i) {
            Some(SqlValue::Null) => Ok(None),
            _ => self.text(i).map(Some),
        }
    }
}

/// Synchronous SQL. `?` placeholders are positional.
pub trait Sql {
    /// Runs one statement and returns its rows (empty for statements without results).
    fn query(&self, sql: &str, params: &[SqlValue]) -> Result<Vec<Row>, SqlError>;

    /// The database's size in bytes, where the backend can tell.
    fn database_size(&self) -> Option<u64> {
        None
    }

    /// Runs one statement, discarding rows.
    fn execute(&self, sql: &str, params: &[SqlValue]) -> Result<(), SqlError> {
        self.query(sql, params).map(|_| ())
    }

    /// The first row, if any.
    fn query_opt(&self, sql: &str, params: &[SqlValue]) -> Result<Option<Row>, SqlError> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// Runs several `;`-separated statements without parameters (schema set-up).
    fn execute_batch(&self, sql: &str) -> Result<(), SqlError> {
        for statement in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            self.execute(statement, &[])?;
        }
        Ok(())
    }
}

/// Builds a parameter list: `params![a, b, c]`.
#[macro_export]
macro_rules! params {
    () => { &[] as &[$crate::storage::sql::SqlValue] };
    ($($v:expr),+ $(,)?) => { &[$($crate::storage::sql::SqlValue::from($v)),+] };
}

#[cfg(any(test, feature = "native-sqlite"))]
pub mod testing {
    //! rusqlite behind the `Sql` trait, for native tests of Durable Object logic.
    use super::*;
    use rusqlite::types::{Value, ValueRef};

    pub struct MemorySql(pub rusqlite::Connection);

    impl Default for MemorySql {
        fn default() -> Self {
            Self(rusqlite::Connection::open_in_memory().expect("in-memory sqlite"))
        }
    }

    impl MemorySql {
        pub fn new() -> Self {
            Self::default()
        }
    }

    fn to_value(v: &SqlValue) -> Value {
        match v {
            SqlValue::Null => Value::Null,
            SqlValue::Int(i) => Value::Integer(*i),
            SqlValue::Real(f) => Value::Real(*f),
            SqlValue::Text(s) => Value::Text(s.clone()),
            SqlValue::Blob(b) => Value::Blob(b.clone()),
        }
    }

    impl Sql for MemorySql {
        /// Pages in use times the page size, as the Durable Object's `databaseSize`.
        fn database_size(&self) -> Option<u64> {
            let pages: i64 = self.0.query_row("PRAGMA page_count", [], |r| r.get(0)).ok()?;
            let free: i64 = self.0.query_row("PRAGMA freelist_count", [], |r| r.get(0)).ok()?;
            let size: i64 = self.0.query_row("PRAGMA page_size", [], |r| r.get(0)).ok()?;
            u64::try_from((pages - free) * size).ok()
        }

        fn query(&self, sql: &str, params: &[SqlValue]) -> Result<Vec<Row>, SqlError> {
            let err = |e: rusqlite::Error| SqlError(e.to_string());
            let mut stmt = self.0.prepare_cached(sql).map_err(err)?;
            let columns = stmt.column_count();
            let values: Vec<Value> = params.iter().map(to_value).collect();
            let mut rows = stmt.query(rusqlite::params_from_iter(values)).map_err(err)?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(err)? {
                let mut cells = Vec::with_capacity(columns);
                for i in 0..columns {
                    cells.push(match row.get_ref(i).map_err(err)? {
                        ValueRef::Null => SqlValue::Null,
                        ValueRef::Integer(v) => SqlValue::Int(v),
                        ValueRef::Real(v) => SqlValue::Real(v),
                        ValueRef::Text(t) => SqlValue::Text(String::from_utf8_lossy(t).into_owned()),
                        ValueRef::Blob(b) => SqlValue::Blob(b.to_vec()),
                    });
                }
                out.push(Row(cells));
            }
            Ok(out)
        }
    }

    #[cfg(test)]
    #[test]
    fn round_trips_values() {
        let db = MemorySql::new();
        db.execute_batch("CREATE TABLE t (a INTEGER, b TEXT, c BLOB)")
            .expect("create");
        db.execute(
            "INSERT INTO t VALUES (?, ?, ?)",
            params![7i64, "x", None::<String>],
        )
        .expect("insert");
        let row = db
            .query_opt("SELECT a, b, c FROM t", params![])
            .expect("select")
            .expect("row");
        assert_eq!(row.int(0), Ok(7));
        assert_eq!(row.text(1), Ok("x"));
        assert_eq!(row.opt_text(2), Ok(None));
        assert!(row.text(0).is_err());
    }
}
