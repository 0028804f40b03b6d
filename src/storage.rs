//! D1 access for the global tables; `schema.sql` at the repository root is the source
//! of truth for their shape.
//!
//! Each submodule owns some tables and exposes plain async functions over `Db`. Write
//! paths that touch several rows use `Db::batch`, which D1 runs as one transaction in
//! one round trip.

pub mod account_data;
pub mod cross_signing;
pub mod device_lists;
pub mod devices;
pub mod e2e_keys;
pub mod federation;
pub mod key_backup;
pub mod media;
pub mod openid;
pub mod presence;
pub mod rate_limits;
pub mod registration;
pub mod remote_devices;
pub mod reports;
pub mod rooms;
pub mod server_keys;
pub mod sql;
pub mod user_directory;
pub mod users;

use serde::de::DeserializeOwned;
use wasm_bindgen::JsValue;

/// A storage failure. The detail is for the log; clients see a generic 500.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageError(pub String);

impl StorageError {
    /// Whether the failure was a primary-key or unique-index conflict.
    pub fn is_conflict(&self) -> bool {
        self.0.contains("UNIQUE constraint failed") || self.0.contains("PRIMARY KEY")
    }
}

impl std::fmt::Display for StorageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "storage: {}", self.0)
    }
}

impl From<worker::Error> for StorageError {
    fn from(e: worker::Error) -> Self {
        Self(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, StorageError>;

/// A bound SQL parameter.
#[derive(Debug, Clone)]
pub enum Arg {
    Text(String),
    Int(i64),
    Null,
}

impl Arg {
    fn js(&self) -> JsValue {
        match self {
            // D1 numbers are JS numbers; every integer we store (ms timestamps, counters)
            // is far below 2^53.
            Arg::Int(i) => JsValue::from_f64(*i as f64),
            Arg::Text(s) => JsValue::from_str(s),
            Arg::Null => JsValue::null(),
        }
    }
}

impl From<&str> for Arg {
    fn from(s: &str) -> Self {
        Arg::Text(s.to_owned())
    }
}
impl From<&String> for Arg {
    fn from(s: &String) -> Self {
        Arg::Text(s.clone())
    }
}
impl From<String> for Arg {
    fn from(s: String) -> Self {
        Arg::Text(s)
    }
}
impl From<i64> for Arg {
    fn from(i: i64) -> Self {
        Arg::Int(i)
    }
}
impl From<u64> for Arg {
    fn from(i: u64) -> Self {
        Arg::Int(i64::try_from(i).unwrap_or(i64::MAX))
    }
}
impl From<bool> for Arg {
    fn from(b: bool) -> Self {
        Arg::Int(i64::from(b))
    }
}
impl<T: Into<Arg>> From<Option<T>> for Arg {
    fn from(v: Option<T>) -> Self {
        v.map_or(Arg::Null, Into::into)
    }
}

/// Builds an argument list: `args![a, b, c]`.
#[macro_export]
macro_rules! args {
    ($($x:expr),* $(,)?) => { vec![$($crate::storage::Arg::from($x)),*] };
}
pub use crate::args;

/// One statement for `Db::batch`.
pub struct Stmt {
    pub sql: &'static str,
    pub args: Vec<Arg>,
}

pub fn stmt(sql: &'static str, args: Vec<Arg>) -> Stmt {
    Stmt { sql, args }
}

/// The D1 database of global tables.
pub struct Db {
    d1: worker::D1Database,
}

impl Db {
    pub fn open(env: &worker::Env) -> Result<Self> {
        Ok(Self {
            d1: env.d1(crate::platform::env::DB)?,
        })
    }

    fn prepare(&self, sql: &str, args: &[Arg]) -> Result<worker::D1PreparedStatement> {
        let values: Vec<JsValue> = args.iter().map(Arg::js).collect();
        Ok(self.d1.prepare(sql).bind(&values)?)
    }

    /// The first row, deserialized from its column object.
    pub async fn first<T: DeserializeOwned>(&self, sql: &str, args: Vec<Arg>) -> Result<Option<T>> {
        Ok(self.prepare(sql, &args)?.first::<T>(None).await?)
    }

    /// All rows.
    pub async fn all<T: DeserializeOwned>(&self, sql: &str, args: Vec<Arg>) -> Result<Vec<T>> {
        let result = self.prepare(sql, &args)?.all().await?;
        Ok(result.results::<T>()?)
    }

    /// Runs a statement; returns how many rows it changed.
    pub async fn run(&self, sql: &str, args: Vec<Arg>) -> Result<u64> {
        let result = self.prepare(sql, &args)?.run().await?;
        Ok(changes(&result))
    }

    /// Runs statements as one transaction in one round trip; returns the rows changed
    /// by each.
    pub async fn batch(&self, stmts: Vec<Stmt>) -> Result<Vec<u64>> {
        let prepared = stmts
            .iter()
            .map(|s| self.prepare(s.sql, &s.args))
            .collect::<Result<Vec<_>>>()?;
        let results = self.d1.batch(prepared).await?;
        Ok(results.iter().map(changes).collect())
    }
}

fn changes(result: &worker::D1Result) -> u64 {
    result
        .meta()
        .ok()
        .flatten()
        .and_then(|m| m.changes)
        .map_or(0, |c| c as u64)
}

/// SQLite stores booleans as 0/1.
pub(crate) fn flag(v: i64) -> bool {
    v != 0
}
