//! Pure Matrix logic. No Workers types, no async, no clock or RNG of its own: callers
//! pass time and randomness in.

pub mod accounts;
pub mod keys;
