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
