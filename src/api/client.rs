//! Client-Server API handlers, one file per spec area.

pub mod account;
pub mod account_data;
pub mod capabilities;
pub mod create_room;
pub mod cross_signing;
pub mod devices;
pub mod directory;
pub mod filter;
pub mod key_backup;
pub mod keys;
pub mod legacy;
pub mod login;
pub mod membership;
pub mod openid;
pub mod presence;
pub mod profile;
pub mod push_rules;
pub mod receipts;
pub mod register;
pub mod remote_join;
pub mod room_events;
pub mod sync;
pub mod thirdparty;
pub mod to_device;
pub mod upgrade;
pub mod versions;
