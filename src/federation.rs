//! Outbound federation: reaching other servers (`resolve`), signed requests
//! (`client`), and their signing keys (`keys`). The per-destination sender comes with
//! sending events to other servers.

pub mod client;
pub mod keys;
pub mod resolve;

pub use client::FedError;
