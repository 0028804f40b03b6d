//! Neurite: a Matrix homeserver for Cloudflare Workers.
//!
//! The map of the crate is `ARCHITECTURE.md` (see the README): `core` is pure Matrix
//! logic, `api` the HTTP edge, `roomserver` and `sync` the Durable Objects, `log` the
//! queue between them, `storage` the D1 tables and `platform` the only module that
//! touches Workers bindings.

pub mod api;
pub mod config;
pub mod core;
pub mod federation;
pub mod log;
pub mod platform;
pub mod roomserver;
pub mod storage;
pub mod sync;

/// Entry point for HTTP requests.
#[worker::event(fetch)]
pub async fn fetch(
    req: worker::Request,
    env: worker::Env,
    _ctx: worker::Context,
) -> worker::Result<worker::Response> {
    platform::http::serve(req, env).await
}

/// Runs once per isolate.
#[worker::event(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}
