//! Outbound federation: reaching other servers (`resolve`), signed requests
//! (`client`), their signing keys (`keys`), and the per-destination sender (`sender`,
//! a Durable Object, with its queue in `outgoing`).

pub mod client;
pub mod keys;
pub mod outgoing;
pub mod resolve;
pub mod sender;

pub use client::FedError;
