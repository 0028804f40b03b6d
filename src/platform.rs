//! The only module that touches Workers bindings: binding names (matching
//! `wrangler.toml`), configuration from vars and secrets, the clock, randomness, and
//! the conversion between Workers' HTTP types and ours.

pub mod crypto;
pub mod env;
pub mod http;
pub mod rooms;
pub mod sql;
pub mod users;

use std::sync::{Arc, OnceLock};

use crate::config::{Config, RegistrationMode};
use crate::core::keys::SigningKey;

/// What a request handler gets: configuration and access to the bindings.
pub struct Ctx {
    pub config: Arc<Config>,
    pub env: worker::Env,
}

impl Ctx {
    pub fn new(env: worker::Env) -> Result<Self, String> {
        Ok(Self {
            config: config(&env)?,
            env,
        })
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        now_ms()
    }

    /// The D1 database of global tables.
    pub fn db(&self) -> Result<crate::storage::Db, crate::storage::StorageError> {
        crate::storage::Db::open(&self.env)
    }
}

/// Milliseconds since the Unix epoch, from the runtime's clock.
pub fn now_ms() -> u64 {
    worker::Date::now().as_millis()
}

/// Milliseconds from the runtime's clock, as a float (for timings).
pub fn clock_ms() -> f64 {
    js_sys::Date::now()
}

/// POSTs a JSON body to the Durable Object named `name` in `binding` and returns its
/// JSON answer, or the Matrix error it answered with (5xx are logged and hidden).
pub async fn call_object(
    binding: &str,
    env: &worker::Env,
    name: &str,
    body: String,
) -> Result<serde_json::Value, crate::api::MatrixError> {
    use crate::api::MatrixError;
    let internal = |detail: String| {
        log_error(&format!("{binding} {name}: {detail}"));
        MatrixError::internal()
    };
    let namespace = env.durable_object(binding).map_err(|e| internal(e.to_string()))?;
    let stub = namespace
        .id_from_name(name)
        .and_then(|id| id.get_stub())
        .map_err(|e| internal(e.to_string()))?;
    let mut init = worker::RequestInit::new();
    init.with_method(worker::Method::Post)
        .with_body(Some(wasm_bindgen::JsValue::from_str(&body)));
    let req =
        worker::Request::new_with_init("https://object/", &init).map_err(|e| internal(e.to_string()))?;
    let mut resp = stub
        .fetch_with_request(req)
        .await
        .map_err(|e| internal(e.to_string()))?;
    let status = resp.status_code();
    let text = resp.text().await.map_err(|e| internal(e.to_string()))?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| internal(e.to_string()))?;
    if status == 200 {
        return Ok(value);
    }
    let errcode = value["errcode"].as_str().unwrap_or("M_UNKNOWN");
    let error = value["error"].as_str().unwrap_or("");
    if status >= 500 {
        return Err(internal(error.to_owned()));
    }
    Err(MatrixError::from_parts(status, errcode, error))
}

/// Fills `buf` from the platform's cryptographic RNG.
pub fn random_bytes(buf: &mut [u8]) -> Result<(), String> {
    getrandom::fill(buf).map_err(|e| e.to_string())
}

/// `N` bytes from the platform's cryptographic RNG.
pub fn random_array<const N: usize>() -> Result<[u8; N], String> {
    let mut buf = [0u8; N];
    random_bytes(&mut buf)?;
    Ok(buf)
}

/// Waits `ms` milliseconds (a timer, not CPU).
pub async fn sleep(ms: u64) {
    worker::Delay::from(std::time::Duration::from_millis(ms)).await;
}

pub fn log_error(message: &str) {
    worker::console_error!("{message}");
}

static CONFIG: OnceLock<Result<Arc<Config>, String>> = OnceLock::new();

/// The configuration, read once per isolate.
pub fn config(env: &worker::Env) -> Result<Arc<Config>, String> {
    CONFIG.get_or_init(|| read_config(env).map(Arc::new)).clone()
}

fn read_config(env: &worker::Env) -> Result<Config, String> {
    let var = |name: &str| {
        env.var(name)
            .map(|v| v.to_string())
            .map_err(|_| format!("missing var {name}"))
    };
    let server_name = var(env::SERVER_NAME)?;
    let public_baseurl = var(env::PUBLIC_BASEURL)?;
    let registration = RegistrationMode::parse(&var(env::REGISTRATION)?)
        .ok_or_else(|| format!("{} must be closed, open or token", env::REGISTRATION))?;
    let key_text = env
        .secret(env::SIGNING_KEY)
        .map(|s| s.to_string())
        .or_else(|_| var(env::SIGNING_KEY))
        .map_err(|_| format!("missing secret {}", env::SIGNING_KEY))?;
    let signing_key = SigningKey::parse(&key_text).map_err(|e| format!("{}: {e}", env::SIGNING_KEY))?;
    let registration_shared_secret = env
        .secret(env::REGISTRATION_SHARED_SECRET)
        .map(|s| s.to_string())
        .or_else(|_| var(env::REGISTRATION_SHARED_SECRET))
        .ok()
        .filter(|s| !s.is_empty());
    Ok(Config {
        server_name,
        public_baseurl,
        registration,
        signing_key,
        registration_shared_secret,
    })
}
