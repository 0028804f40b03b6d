//! The per-user stream: one Durable Object per local user.

use worker::{durable_object, DurableObject, Env, Request, Response, Result, State};

use crate::api::http::HttpResponse;
use crate::api::MatrixError;

/// The User Durable Object (binding `USERS`).
#[durable_object]
pub struct User {
    #[allow(dead_code)]
    state: State,
}

impl DurableObject for User {
    fn new(state: State, _env: Env) -> Self {
        Self { state }
    }

    async fn fetch(&self, _req: Request) -> Result<Response> {
        crate::platform::http::to_worker(HttpResponse::error(&MatrixError::unrecognized()))
    }
}
