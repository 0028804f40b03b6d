//! Pure Matrix logic. No Workers types, no async, no clock or RNG of its own: callers
//! pass time and randomness in.

pub mod accounts;
pub mod acl;
pub mod auth;
pub mod builder;
pub mod canonical;
pub mod e2ee;
pub mod event_hash;
pub mod filter;
pub mod format;
pub mod http1;
pub mod keys;
pub mod media;
pub mod pdu;
pub mod power;
pub mod push;
pub mod reports;
pub mod restricted;
pub mod room_version;
pub mod search;
pub mod server_keys;
pub mod server_name;
pub mod spaces;
pub mod state_res;
pub mod tags;
#[cfg(test)]
pub(crate) mod testing;
pub mod third_party;
pub mod user_directory;
pub mod verify;
pub mod xmatrix;
