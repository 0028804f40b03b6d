//! D1 access for the global tables; `schema.sql` at the repository root is the source
//! of truth for their shape.

pub mod sql;
