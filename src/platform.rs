//! The only module that touches Workers bindings: binding names (matching
//! `wrangler.toml`), configuration from vars and secrets, the clock, randomness, and
//! the conversion between Workers' HTTP types and ours.

pub mod crypto;
pub mod env;
pub mod http;
pub mod media;
pub mod net;
pub mod room_log;
pub mod rooms;
pub mod sql;
pub mod users;

use std::sync::{Arc, OnceLock};

use crate::config::{Config, FederationSettings, RegistrationMode};
use crate::core::keys::SigningKey;

/// What a request handler gets: configuration and access to the bindings.
pub struct Ctx {
    pub config: Arc<Config>,
    pub env: worker::Env,
    /// Stage timings of this request, sent back as a `Server-Timing` header.
    pub timings: Timings,
    /// Whether the endpoint being served is open to guests (set by the router).
    pub guest_allowed: std::cell::Cell<bool>,
}

impl Ctx {
    pub fn new(env: worker::Env) -> Result<Self, String> {
        Ok(Self {
            config: config(&env)?,
            env,
            timings: Timings::new(clock_ms()),
            guest_allowed: std::cell::Cell::new(false),
        })
    }

    /// Ends a stage of the request: its duration is the time since the previous mark.
    pub fn mark(&self, stage: &'static str) {
        self.timings.mark(stage, clock_ms());
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

/// Named stage durations of one request, in the `Server-Timing` header's format
/// (`auth;dur=1.2, room;dur=8.0`): what a benchmark or an operator reads to see where a
/// request's time went. The runtime's clock only advances across I/O, so stages are
/// the spans between awaits.
#[derive(Debug)]
pub struct Timings {
    last: std::cell::Cell<f64>,
    stages: std::cell::RefCell<Vec<(&'static str, f64)>>,
    /// Stages reported by the Durable Objects this request called.
    inner: std::cell::RefCell<Vec<(String, f64)>>,
}

impl Timings {
    pub fn new(start_ms: f64) -> Self {
        Self {
            last: std::cell::Cell::new(start_ms),
            stages: std::cell::RefCell::new(Vec::new()),
            inner: std::cell::RefCell::new(Vec::new()),
        }
    }

    pub fn mark(&self, stage: &'static str, now_ms: f64) {
        let took = (now_ms - self.last.replace(now_ms)).max(0.0);
        self.stages.borrow_mut().push((stage, took));
    }

    /// Adds the stages another component reported (its `Server-Timing` value), each
    /// named `<prefix>.<stage>`; the spans are inside this request's current stage.
    pub fn add_inner(&self, prefix: &str, header: &str) {
        let mut stages = self.inner.borrow_mut();
        for part in header.split(',') {
            let mut fields = part.trim().split(';');
            let name = fields.next().unwrap_or_default().trim();
            let dur = fields
                .find_map(|f| f.trim().strip_prefix("dur="))
                .and_then(|d| d.parse::<f64>().ok());
            if let (false, Some(dur)) = (name.is_empty(), dur) {
                stages.push((format!("{prefix}.{name}"), dur));
            }
        }
    }

    /// The header value, or `None` when no stage was marked.
    pub fn header(&self) -> Option<String> {
        let stages = self.stages.borrow();
        if stages.is_empty() {
            return None;
        }
        let inner = self.inner.borrow();
        Some(
            stages
                .iter()
                .map(|(name, took)| format!("{name};dur={took:.1}"))
                .chain(inner.iter().map(|(name, took)| format!("{name};dur={took:.1}")))
                .collect::<Vec<_>>()
                .join(", "),
        )
    }
}

/// Milliseconds since the Unix epoch, from the runtime's clock.
pub fn now_ms() -> u64 {
    worker::Date::now().as_millis()
}

/// A timestamp in milliseconds never handed out before by this isolate: the clock, or
/// one past the last one given. For events whose hash names them (a v12 room's create
/// event names the room), so that two identical requests at the same instant still
/// make two different events.
pub fn unique_ms() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = now_ms();
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(last + 1);
        match LAST.compare_exchange(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
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
    call_object_timed(binding, env, name, body, None).await
}

/// `call_object`, adding the object's own `Server-Timing` stages (prefixed) to `timings`.
pub async fn call_object_timed(
    binding: &str,
    env: &worker::Env,
    name: &str,
    body: String,
    timings: Option<(&Timings, &str)>,
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
    let resp = stub
        .fetch_with_request(req)
        .await
        .map_err(|e| internal(e.to_string()))?;
    let status = resp.status_code();
    if let Some((timings, prefix)) = timings {
        if let Ok(Some(inner)) = resp.headers().get("Server-Timing") {
            timings.add_inner(prefix, &inner);
        }
    }
    let text = response_text(resp).await.map_err(internal)?;
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

/// A response's body as text, read by the runtime in one call (reading the stream
/// chunk by chunk from wasm costs several times more).
async fn response_text(resp: worker::Response) -> Result<String, String> {
    let raw: worker::web_sys::Response = resp.into();
    let promise = raw.text().map_err(|e| format!("{e:?}"))?;
    wasm_bindgen_futures::JsFuture::from(promise)
        .await
        .map_err(|e| format!("{e:?}"))?
        .as_string()
        .ok_or_else(|| "response body is not text".to_owned())
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
    let guest_access = env.var(env::GUEST_ACCESS).is_ok_and(|v| v.to_string() == "on");
    let optional = |name: &str| env.var(name).map(|v| v.to_string()).unwrap_or_default();
    let user_directory_search_all = optional(env::USER_DIRECTORY_SEARCH_ALL_USERS) == "on";
    let federation = FederationSettings {
        loopback_plaintext: optional(env::FEDERATION_LOOPBACK) == "plaintext",
        allow: FederationSettings::parse_list(&optional(env::FEDERATION_ALLOW)),
        deny: FederationSettings::parse_list(&optional(env::FEDERATION_DENY)),
        trusted_key_servers: FederationSettings::parse_list(&optional(env::TRUSTED_KEY_SERVERS)),
        dns_resolver: Some(optional(env::DNS_RESOLVER)).filter(|s| !s.is_empty()),
        old_verify_keys: FederationSettings::parse_old_keys(&optional(env::OLD_VERIFY_KEYS))?,
    };
    let media = crate::config::MediaSettings {
        max_upload_size: crate::config::MediaSettings::parse_max_upload_size(&optional(
            env::MEDIA_MAX_UPLOAD_SIZE,
        ))?,
        legacy_download: crate::core::media::LegacyDownload::parse(&optional(env::MEDIA_LEGACY_DOWNLOAD))
            .ok_or_else(|| {
                format!(
                    "{} must be frozen, open or a time in ms",
                    env::MEDIA_LEGACY_DOWNLOAD
                )
            })?,
        user_quota: crate::config::MediaSettings::parse_user_quota(&optional(env::MEDIA_USER_QUOTA))?,
        remote_retention_ms: crate::config::MediaSettings::parse_retention_days(&optional(
            env::MEDIA_REMOTE_RETENTION_DAYS,
        ))?,
    };
    Ok(Config {
        server_name,
        public_baseurl,
        registration,
        guest_access,
        user_directory_search_all,
        signing_key,
        registration_shared_secret,
        federation,
        media,
    })
}

#[cfg(test)]
mod tests {
    use super::Timings;

    #[test]
    fn timings_are_spans_between_marks_in_server_timing_form() {
        let t = Timings::new(100.0);
        assert_eq!(t.header(), None);
        t.mark("auth", 102.5);
        t.mark("room", 110.0);
        // A clock that went backwards counts as zero, never negative.
        t.mark("late", 109.0);
        assert_eq!(
            t.header().as_deref(),
            Some("auth;dur=2.5, room;dur=7.5, late;dur=0.0")
        );
        t.add_inner("room", "exec;dur=1.25, junk, alarm;dur=0.5");
        assert_eq!(
            t.header().as_deref(),
            Some("auth;dur=2.5, room;dur=7.5, late;dur=0.0, room.exec;dur=1.2, room.alarm;dur=0.5")
        );
    }
}
