//! Client-Server API handlers, one file per spec area.

pub mod account;
pub mod account_data;
pub mod capabilities;
pub mod create_room;
pub mod cross_signing;
pub mod devices;
pub mod directory;
pub mod key_backup;
pub mod keys;
pub mod login;
pub mod membership;
pub mod profile;
pub mod register;
pub mod room_events;
pub mod upgrade;
pub mod versions;
