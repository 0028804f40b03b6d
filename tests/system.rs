//! System tests: each drives a real Neurite worker under `wrangler dev` over HTTP.
//! One binary, so the shared server starts once for all of them.

#[path = "system/harness.rs"]
#[allow(dead_code)] // helpers used by later test modules
mod harness;

#[path = "system/foundation.rs"]
mod foundation;

#[path = "system/rooms.rs"]
mod rooms;

#[path = "system/sync.rs"]
mod sync;
