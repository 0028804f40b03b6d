//! Client-Server API handlers, one file per spec area.

pub mod account;
pub mod account_data;
pub mod capabilities;
pub mod devices;
pub mod login;
pub mod profile;
pub mod register;
pub mod versions;
