//! Server-Server API handlers, one file per endpoint group.

pub mod keys;
pub mod version;
