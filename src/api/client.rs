//! Client-Server API handlers, one file per spec area.

pub mod versions;
