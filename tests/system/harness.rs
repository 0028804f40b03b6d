//! Starts real Neurite servers under `wrangler dev` for the system tests and talks
//! Matrix HTTP to them.
//!
//! Each server gets a free port, a free inspector port and its own state directory
//! under `target/system-tests/`. It runs in its own process group, which is killed when
//! the `Server` is dropped and, for servers that live in statics (never dropped), by a
//! small watchdog that notices the test process is gone — so nothing outlives a failed
//! or interrupted test run.

use std::fs::{self, File};
use std::io::Read;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// How a test server is configured.
#[derive(Debug, Clone)]
pub struct Options {
    pub registration: &'static str,
    /// `on` or `off` (`NEURITE_GUEST_ACCESS`).
    pub guest_access: &'static str,
    /// `FEDERATION_DENY` (`NEURITE_FEDERATION_DENY`).
    pub federation_deny: String,
    /// `TRUSTED_KEY_SERVERS` (`NEURITE_TRUSTED_KEY_SERVERS`).
    pub trusted_key_servers: String,
    /// Serve HTTPS with wrangler's self-signed certificate (`NEURITE_HTTPS`), as other
    /// servers such as Synapse need; the test client then speaks through `curl -k`.
    pub https: bool,
    /// `FEDERATION_LOOPBACK` (`NEURITE_FEDERATION_LOOPBACK`): `plaintext` for local
    /// peers, `off` as deployed.
    pub federation_loopback: &'static str,
    /// More settings for `scripts/run.sh`, as its environment (`NEURITE_MEDIA_…`).
    pub env: Vec<(&'static str, String)>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            registration: "open",
            guest_access: "on",
            federation_deny: String::new(),
            trusted_key_servers: String::new(),
            https: false,
            federation_loopback: "plaintext",
            env: Vec::new(),
        }
    }
}

pub struct Server {
    pub port: u16,
    inspector: u16,
    pub server_name: String,
    pub state_dir: PathBuf,
    options: Options,
    child: Child,
}

/// Starts `scripts/run.sh` in its own process group, its output appended to the state
/// directory's `server.log`, with a watchdog that stops it when the tests are gone.
fn spawn_server(port: u16, inspector: u16, server_name: &str, state_dir: &Path, options: &Options) -> Child {
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(state_dir.join("server.log"))
        .expect("open log");
    let child = Command::new("bash")
        .arg(repo_root().join("scripts/run.sh"))
        .args(["--port", &port.to_string()])
        .args(["--inspector-port", &inspector.to_string()])
        .args(["--server-name", server_name])
        .arg("--state-dir")
        .arg(state_dir)
        .args(["--registration", options.registration])
        .env("NEURITE_SKIP_SETUP", "1")
        .env("NEURITE_SKIP_BUILD", "1")
        .env("NEURITE_GUEST_ACCESS", options.guest_access)
        .env("NEURITE_FEDERATION_DENY", &options.federation_deny)
        .env("NEURITE_TRUSTED_KEY_SERVERS", &options.trusted_key_servers)
        .env("NEURITE_HTTPS", if options.https { "1" } else { "0" })
        .env("NEURITE_FEDERATION_LOOPBACK", options.federation_loopback)
        .env("CI", "true")
        .envs(options.env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone log"))
        .stderr(log)
        .process_group(0)
        .spawn()
        .expect("spawn scripts/run.sh");
    spawn_watchdog(child.id());
    child
}

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A free port for a server, from 20000–25999: below the ephemeral range (32768 and
/// up), so no outbound connection or `bind(0)` takes it while its server is down for a
/// restart; each handed out once per test process.
fn free_port() -> u16 {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let start = (std::process::id() as usize).wrapping_mul(7919) % 6_000;
    loop {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        assert!(n < 6_000, "no free port left for servers");
        let port = 20_000 + ((start + n) % 6_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Builds the worker once per test binary (skipped by the script when up to date).
fn ensure_built() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let status = Command::new("bash")
            .arg(repo_root().join("scripts/build.sh"))
            .status()
            .expect("run scripts/build.sh");
        assert!(status.success(), "scripts/build.sh failed");
    });
}

impl Server {
    /// Starts a server and waits until it answers `/_matrix/client/versions`.
    pub fn start(options: Options) -> Server {
        ensure_built();
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let port = free_port();
        let mut inspector = free_port();
        while inspector == port {
            inspector = free_port();
        }
        let state_dir = repo_root()
            .join("target/system-tests")
            .join(format!("{}-{n}-{port}", std::process::id()));
        let _ = fs::remove_dir_all(&state_dir);
        fs::create_dir_all(&state_dir).expect("create state dir");
        let server_name = format!("localhost:{port}");
        let child = spawn_server(port, inspector, &server_name, &state_dir, &options);
        let mut server = Server {
            port,
            inspector,
            server_name,
            state_dir,
            options,
            child,
        };
        server.wait_until_ready();
        server
    }

    /// Kills the whole server (wrangler, workerd and everything they started) with
    /// SIGKILL, as a crash would, then starts it again on the same port and state
    /// directory and waits until it answers.
    pub fn crash_and_restart(&mut self) {
        kill_group(self.child.id(), "KILL");
        let _ = self.child.wait();
        // workerd's children may outlive the group leader for a moment.
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpListener::bind(("127.0.0.1", self.port)).is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        self.child = spawn_server(
            self.port,
            self.inspector,
            &self.server_name,
            &self.state_dir,
            &self.options,
        );
        self.wait_until_ready();
    }

    /// The server's process group (the wrangler process it was started as leads it).
    pub fn process_group(&self) -> u32 {
        self.child.id()
    }

    pub fn base_url(&self) -> String {
        let scheme = if self.options.https { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// A client with no access token.
    pub fn client(&self) -> Client {
        Client {
            base: self.base_url(),
            token: None,
        }
    }

    /// Registers a server admin through the Synapse-compatible shared-secret endpoint.
    pub fn register_admin(&self, username: &str, password: &str) -> (Client, String) {
        use hmac::{Hmac, Mac};
        let secret = fs::read_to_string(self.state_dir.join("registration_shared_secret"))
            .expect("shared secret in the state dir");
        let client = self.client();
        let nonce = client.get("/_synapse/admin/v1/register").expect(200)["nonce"]
            .as_str()
            .expect("nonce")
            .to_owned();
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.trim().as_bytes()).expect("hmac key");
        mac.update(format!("{nonce}\0{username}\0{password}\0admin").as_bytes());
        let digest: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let body = client
            .post(
                "/_synapse/admin/v1/register",
                &json!({"nonce": nonce, "username": username, "password": password, "admin": true, "mac": digest}),
            )
            .expect(200);
        let token = body["access_token"].as_str().expect("access_token");
        (
            client.with_token(token),
            body["user_id"].as_str().expect("user_id").to_owned(),
        )
    }

    fn log_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = File::open(self.state_dir.join("server.log")) {
            let _ = f.read_to_string(&mut text);
        }
        let start = text.len().saturating_sub(4000);
        let start = (start..text.len())
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(0);
        text[start..].to_owned()
    }

    fn wait_until_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(180);
        let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(5)).build();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("server exited early ({status}); log:\n{}", self.log_tail());
            }
            let url = format!("{}/_matrix/client/versions", self.base_url());
            if self.options.https {
                if self
                    .client()
                    .try_json("GET", "/_matrix/client/versions", None)
                    .is_ok_and(|r| r.status == 200)
                {
                    return;
                }
            } else if let Ok(resp) = agent.get(&url).call() {
                if resp.status() == 200 {
                    return;
                }
            }
            if Instant::now() > deadline {
                panic!("server did not answer within 180 s; log:\n{}", self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        stop_group(&mut self.child, Duration::from_secs(5));
    }
}

/// Sends `signal` to the process group `pgid`. `--` before the negative pid: procps'
/// kill otherwise reads `-<pgid>` as an option and signals the wrong group (even every
/// process, for a pgid starting with 1).
pub fn kill_group(pgid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([format!("-{signal}"), "--".into(), format!("-{pgid}")])
        .stderr(Stdio::null())
        .status();
}

/// Stops the process group led by `child`: SIGTERM, then SIGKILL to what is left after
/// `grace` (`wrangler dev` does not always exit on SIGTERM).
pub fn stop_group(child: &mut Child, grace: Duration) {
    kill_group(child.id(), "TERM");
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    kill_group(child.id(), "KILL");
    let _ = child.wait();
}

/// Kills the process group `pgid` once this process has exited.
pub fn spawn_watchdog(pgid: u32) {
    let me = std::process::id();
    let script = format!(
        "while kill -0 {me} 2>/dev/null; do sleep 1; done; \
         kill -TERM -- -{pgid} 2>/dev/null; sleep 5; kill -KILL -- -{pgid} 2>/dev/null"
    );
    let _ = Command::new("bash")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn();
}

/// The server shared by the tests of this binary (open registration).
pub fn shared() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| Server::start(Options::default()))
}

/// A response: status, headers we care about, and the body as JSON (or `Null`).
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub body: Value,
    pub headers: Vec<(String, String)>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn errcode(&self) -> Option<&str> {
        self.body.get("errcode").and_then(Value::as_str)
    }

    /// Asserts a status and returns the body.
    #[track_caller]
    pub fn expect(self, status: u16) -> Value {
        assert_eq!(self.status, status, "unexpected status; body: {}", self.body);
        self.body
    }

    /// Asserts an error status and code.
    #[track_caller]
    pub fn expect_err(&self, status: u16, errcode: &str) {
        assert_eq!(
            (self.status, self.errcode()),
            (status, Some(errcode)),
            "unexpected answer: {}",
            self.body
        );
    }
}

/// A small typed Matrix HTTP client.
#[derive(Clone)]
pub struct Client {
    pub base: String,
    pub token: Option<String>,
}

impl Client {
    pub fn with_token(&self, token: &str) -> Client {
        Client {
            base: self.base.clone(),
            token: Some(token.to_owned()),
        }
    }

    fn agent() -> &'static ureq::Agent {
        static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
        AGENT.get_or_init(|| ureq::AgentBuilder::new().timeout(Duration::from_secs(60)).build())
    }

    /// Sends a request with a raw body and extra headers.
    pub fn raw(&self, method: &str, path: &str, body: Option<&[u8]>, headers: &[(&str, &str)]) -> Resp {
        match self.try_raw(method, path, body, headers) {
            Ok(resp) => resp,
            Err(err) => panic!("{method} {path}: transport error {err}"),
        }
    }

    /// A request that may meet a server that is down (crash tests): the transport
    /// error instead of a panic.
    pub fn try_json(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Resp, String> {
        let bytes = body.map(|b| serde_json::to_vec(b).expect("serialize"));
        self.try_raw(
            method,
            path,
            bytes.as_deref(),
            &[("Content-Type", "application/json")],
        )
    }

    fn try_raw(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        headers: &[(&str, &str)],
    ) -> Result<Resp, String> {
        if self.base.starts_with("https://") {
            return self.curl(method, path, body, headers);
        }
        let mut req = Self::agent().request(method, &format!("{}{}", self.base, path));
        if let Some(token) = &self.token {
            req = req.set("Authorization", &format!("Bearer {token}"));
        }
        for (name, value) in headers {
            req = req.set(name, value);
        }
        let result = match body {
            Some(bytes) => req.send_bytes(bytes),
            None => req.call(),
        };
        let resp = match result {
            Ok(resp) => resp,
            Err(ureq::Error::Status(_, resp)) => resp,
            Err(err) => return Err(err.to_string()),
        };
        let status = resp.status();
        let headers = resp
            .headers_names()
            .into_iter()
            .filter_map(|name| resp.header(&name).map(|v| (name.clone(), v.to_owned())))
            .collect();
        // A body cut off (the server died while answering) is a transport error.
        let text = resp.into_string().map_err(|e| format!("body cut off: {e}"))?;
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Resp {
            status,
            body,
            headers,
        })
    }

    /// A request through `curl -k` (for servers with a self-signed certificate).
    fn curl(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        headers: &[(&str, &str)],
    ) -> Result<Resp, String> {
        use std::io::Write;
        let mut cmd = Command::new("curl");
        cmd.args(["-sk", "--max-time", "60", "-X", method, "-w", "\n%{http_code}"]);
        if let Some(token) = &self.token {
            cmd.args(["-H", &format!("Authorization: Bearer {token}")]);
        }
        for (name, value) in headers {
            cmd.args(["-H", &format!("{name}: {value}")]);
        }
        if body.is_some() {
            cmd.args(["--data-binary", "@-"]);
        }
        cmd.arg(format!("{}{}", self.base, path));
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("curl: {e}"))?;
        if let (Some(bytes), Some(mut stdin)) = (body, child.stdin.take()) {
            stdin.write_all(bytes).map_err(|e| e.to_string())?;
        }
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').ok_or("curl: no status")?;
        let status: u16 = code
            .trim()
            .parse()
            .map_err(|_| format!("curl: status {code:?}"))?;
        if status == 0 {
            return Err("curl: connection failed".into());
        }
        Ok(Resp {
            status,
            body: serde_json::from_str(body).unwrap_or(Value::Null),
            headers: Vec::new(),
        })
    }

    pub fn get(&self, path: &str) -> Resp {
        self.raw("GET", path, None, &[])
    }

    pub fn delete(&self, path: &str) -> Resp {
        self.raw("DELETE", path, None, &[])
    }

    pub fn post(&self, path: &str, body: &Value) -> Resp {
        let bytes = serde_json::to_vec(body).expect("serialize");
        self.raw(
            "POST",
            path,
            Some(&bytes),
            &[("Content-Type", "application/json")],
        )
    }

    pub fn put(&self, path: &str, body: &Value) -> Resp {
        let bytes = serde_json::to_vec(body).expect("serialize");
        self.raw("PUT", path, Some(&bytes), &[("Content-Type", "application/json")])
    }

    /// Registers a user with open registration (`m.login.dummy`) and returns a client
    /// holding its access token, plus the user id.
    pub fn register(&self, username: &str, password: &str) -> (Client, String) {
        let body = self
            .post(
                "/_matrix/client/v3/register",
                &json!({"username": username, "password": password, "auth": {"type": "m.login.dummy"}}),
            )
            .expect(200);
        let token = body["access_token"].as_str().expect("access_token");
        let user_id = body["user_id"].as_str().expect("user_id").to_owned();
        (self.with_token(token), user_id)
    }
}

/// A process-unique name, for usernames and the like that must not collide between tests.
pub fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}{n}x{nanos:x}")
}

/// Percent-encodes the characters Matrix ids and JSON filters put in paths and queries.
pub fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '-' | '_' | '.' | '~' => out.push(c),
            _ => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
        }
    }
    out
}

/// Registers a user with a unique name on the shared server.
pub fn new_user(prefix: &str) -> (Client, String) {
    shared()
        .client()
        .register(&unique(prefix), "correct horse battery")
}

/// Creates a room and returns its id.
pub fn create_room(c: &Client, body: Value) -> String {
    c.post("/_matrix/client/v3/createRoom", &body).expect(200)["room_id"]
        .as_str()
        .expect("room_id")
        .to_owned()
}

/// Sends an `m.text` message and returns its event id.
pub fn send_text(c: &Client, room: &str, txn: &str, body: &str) -> String {
    c.put(
        &format!("/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}", enc(room)),
        &json!({"msgtype": "m.text", "body": body}),
    )
    .expect(200)["event_id"]
        .as_str()
        .expect("event_id")
        .to_owned()
}
