//! The roomserver: one Durable Object per room, the only writer of that room's DAG.

pub mod schema;
pub mod store;

use worker::{durable_object, DurableObject, Env, Request, Response, Result, State};

use crate::api::http::HttpResponse;
use crate::api::MatrixError;

/// The Room Durable Object (binding `ROOMS`).
#[durable_object]
pub struct Room {
    #[allow(dead_code)]
    state: State,
}

impl DurableObject for Room {
    fn new(state: State, _env: Env) -> Self {
        Self { state }
    }

    async fn fetch(&self, _req: Request) -> Result<Response> {
        crate::platform::http::to_worker(HttpResponse::error(&MatrixError::unrecognized()))
    }
}
