//! What the native benchmarks share: a clock for `Host` and room input requests.

use std::collections::BTreeMap;
use std::time::Instant;

use neurite::roomserver::protocol::{InputKind, RawPdu, RoomRequest, Snapshot};

pub type Keys = BTreeMap<String, BTreeMap<String, String>>;

/// Milliseconds since the first call, for `Host::clock_ms`.
pub fn clock_ms() -> f64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs_f64() * 1000.0
}

/// An input of `pdus` of `kind` (with the snapshot of a bootstrap).
pub fn input(kind: InputKind, pdus: Vec<RawPdu>, keys: &Keys, snapshot: Option<Snapshot>) -> RoomRequest {
    RoomRequest::Input {
        kind,
        pdus,
        keys: keys.clone(),
        state: false,
        prev_states: Default::default(),
        snapshot,
        origin: None,
    }
}
