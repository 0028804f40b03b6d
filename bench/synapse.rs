//! Synapse, the reference homeserver, run beside Neurite so the benchmark can compare
//! the two on the same machine and workloads.
//!
//! A pinned `matrix-synapse` is installed from PyPI into a virtualenv under
//! `target/bench/synapse/` (only when missing, so a warm machine skips it). Each run gets
//! a fresh data directory: SQLite database, one plain-HTTP client listener on
//! 127.0.0.1 at a free port, open registration without verification, a registration
//! shared secret, a newly generated signing key, no federation listener, no key
//! servers, stats reporting off and every rate limit raised out of the benchmark's way.
//! The server runs in its own process group, killed when the `Synapse` value is dropped
//! (also while unwinding from a panic) and, should the benchmark die outright, by a
//! small watchdog.

use std::fs::{self, File};
use std::io::Read;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{kill_group, spawn_watchdog, stop_group};

/// The Synapse release the benchmark installs (has an abi3 manylinux wheel for
/// CPython 3.10 and newer).
pub const VERSION: &str = "1.142.0";

/// What `pip install` is given. Synapse only bounds its dependencies from below, and
/// prometheus-client 0.24 and later break its import (`InFlightGauge`: "Cannot create
/// a consistent method resolution order"), so that one is pinned to a release that
/// works with it.
const REQUIREMENTS: &[&str] = &["matrix-synapse==1.142.0", "prometheus-client==0.23.1"];

/// Written into the virtualenv once an install has succeeded.
const STAMP: &str = "neurite-bench-requirements.txt";

/// How long `pip install` may take before the benchmark gives up on Synapse.
const INSTALL_LIMIT: Duration = Duration::from_secs(20 * 60);
/// How long a fresh Synapse may take to answer `/_matrix/client/versions`.
const START_LIMIT: Duration = Duration::from_secs(180);

/// Rate limiters of this Synapse release (`synapse/config/ratelimiting.py`), each
/// raised so that none throttles the benchmark.
const RATE_LIMITS: &[&str] = &[
    "rc_message",
    "rc_registration",
    "rc_registration_token_validity",
    "rc_login.address",
    "rc_login.account",
    "rc_login.failed_attempts",
    "rc_admin_redaction",
    "rc_joins.local",
    "rc_joins.remote",
    "rc_joins_per_room",
    "rc_3pid_validation",
    "rc_invites.per_room",
    "rc_invites.per_user",
    "rc_invites.per_issuer",
    "rc_third_party_invite",
    "rc_media_create",
    "rc_presence.per_user",
    "rc_delayed_event_mgmt",
    "rc_room_creation",
    "rc_reports",
    "rc_key_requests",
];

/// What the install step did.
pub struct Install {
    pub python: PathBuf,
    /// Seconds spent installing; `None` when the virtualenv was already in place.
    pub seconds: Option<f64>,
    /// `Python x.y.z` of the interpreter running Synapse.
    pub python_version: String,
}

pub struct Synapse {
    pub port: u16,
    pub dir: PathBuf,
    pub server_name: String,
    python: PathBuf,
    child: Child,
}

fn home() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench/synapse")
}

/// A free port for a Synapse, from 26000–31999: below the ephemeral range (32768 and
/// up), so nothing else takes it while the server is stopped for a restart, and apart
/// from the ports the tests give Neurite servers.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let start = (std::process::id() as usize).wrapping_mul(104_729) % 6_000;
    loop {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        assert!(n < 6_000, "no free port left for Synapse");
        let port = 26_000 + ((start + n) % 6_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Runs a command to completion within `limit`, its output appended to `log`; the
/// whole process group is killed when time runs out.
fn run_bounded(cmd: &mut Command, log: &Path, limit: Duration) -> Result<(), String> {
    let out = File::options()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("open {}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("spawn {cmd:?}: {e}"))?;
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => {
                return Err(format!("{cmd:?} failed ({status}); see {}", log.display()));
            }
            Ok(None) if Instant::now() > deadline => {
                kill_group(child.id(), "KILL");
                let _ = child.wait();
                return Err(format!("{cmd:?} took longer than {} s", limit.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(200)),
            Err(e) => return Err(format!("wait for {cmd:?}: {e}")),
        }
    }
}

/// An interpreter able to run this Synapse (CPython 3.10 or newer):
/// `NEURITE_BENCH_PYTHON` if set, else the first suitable `python3.x` / `python3`.
fn find_python() -> Result<String, String> {
    let candidates: Vec<String> = match std::env::var("NEURITE_BENCH_PYTHON") {
        Ok(p) if !p.is_empty() => vec![p],
        _ => ["python3.11", "python3.12", "python3.13", "python3.10", "python3"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
    };
    for python in &candidates {
        let ok = Command::new(python)
            .args([
                "-c",
                "import sys, venv; sys.exit(0 if sys.version_info >= (3, 10) else 1)",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Ok(python.clone());
        }
    }
    Err(format!(
        "no Python 3.10+ with the venv module found (tried {}); set NEURITE_BENCH_PYTHON",
        candidates.join(", ")
    ))
}

/// Whether the virtualenv holds exactly `REQUIREMENTS` and Synapse imports from it.
fn installed(venv: &Path) -> bool {
    let stamp = fs::read_to_string(venv.join(STAMP)).unwrap_or_default();
    stamp == REQUIREMENTS.join("\n")
        && Command::new(venv.join("bin/python"))
            .args(["-c", "import synapse.app.homeserver"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

/// Installs the pinned Synapse into `target/bench/synapse/venv` unless it is there.
pub fn install() -> Result<Install, String> {
    let home = home();
    let venv = home.join("venv");
    let python = venv.join("bin/python");
    let python_version = |p: &Path| {
        Command::new(p)
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    if installed(&venv) {
        return Ok(Install {
            python_version: python_version(&python),
            python,
            seconds: None,
        });
    }
    fs::create_dir_all(&home).map_err(|e| format!("create {}: {e}", home.display()))?;
    let log = home.join("install.log");
    let _ = fs::remove_file(&log);
    let system_python = find_python()?;
    eprintln!(
        "[bench] installing {} into {} with {system_python} (log: {})",
        REQUIREMENTS.join(" "),
        venv.display(),
        log.display()
    );
    let started = Instant::now();
    let _ = fs::remove_dir_all(&venv);
    run_bounded(
        Command::new(&system_python).arg("-m").arg("venv").arg(&venv),
        &log,
        Duration::from_secs(120),
    )?;
    run_bounded(
        Command::new(&python)
            .args(["-m", "pip", "install", "--disable-pip-version-check", "--quiet"])
            .args(REQUIREMENTS),
        &log,
        INSTALL_LIMIT,
    )?;
    fs::write(venv.join(STAMP), REQUIREMENTS.join("\n")).map_err(|e| e.to_string())?;
    if !installed(&venv) {
        return Err(format!(
            "Synapse does not import after the install; see {}",
            log.display()
        ));
    }
    Ok(Install {
        python_version: python_version(&python),
        python,
        seconds: Some(started.elapsed().as_secs_f64()),
    })
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("read /dev/urandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// The homeserver configuration for one run. A federating Synapse is named after its
/// loopback address (`127.0.0.1:<port>`, reached directly, no discovery), serves the
/// federation API on the same plain-HTTP listener, and reaches loopback peers over
/// HTTPS without verifying their self-signed certificates.
fn config(dir: &Path, port: u16, federating: bool, tls_port: Option<u16>) -> String {
    let d = dir.display();
    let (server_name, resources) = match (federating, tls_port) {
        (true, Some(tls)) => (format!("127.0.0.1:{tls}"), "[client]"),
        (true, None) => (format!("127.0.0.1:{port}"), "[client, federation]"),
        (false, _) => ("bench.localhost".to_owned(), "[client]"),
    };
    let mut yaml = format!(
        "server_name: \"{server_name}\"\n\
         public_baseurl: \"http://127.0.0.1:{port}/\"\n\
         pid_file: \"{d}/homeserver.pid\"\n\
         listeners:\n\
         \x20 - port: {port}\n\
         \x20   type: http\n\
         \x20   tls: false\n\
         \x20   bind_addresses: [\"127.0.0.1\"]\n\
         \x20   x_forwarded: false\n\
         \x20   resources:\n\
         \x20     - names: {resources}\n\
         \x20       compress: false\n\
         database:\n\
         \x20 name: sqlite3\n\
         \x20 args:\n\
         \x20   database: \"{d}/homeserver.db\"\n\
         log_config: \"{d}/log.yaml\"\n\
         media_store_path: \"{d}/media_store\"\n\
         signing_key_path: \"{d}/signing.key\"\n\
         trusted_key_servers: []\n\
         suppress_key_server_warning: true\n\
         report_stats: false\n\
         enable_metrics: false\n\
         enable_registration: true\n\
         enable_registration_without_verification: true\n\
         registration_shared_secret: \"{secret}\"\n\
         macaroon_secret_key: \"{macaroon}\"\n\
         form_secret: \"{form}\"\n\
         caches:\n\
         \x20 sync_response_cache_duration: 0\n",
        secret = random_hex(32),
        macaroon = random_hex(32),
        form = random_hex(32),
    );
    if let Some(tls) = tls_port {
        // Federation over TLS on its own port, with a self-signed certificate (the
        // server name names that port): what two Synapses need to federate.
        yaml.push_str(&format!(
            "tls_certificate_path: \"{d}/tls.crt\"\n\
             tls_private_key_path: \"{d}/tls.key\"\n"
        ));
        yaml = yaml.replacen(
            "listeners:\n",
            &format!(
                "listeners:\n\
                 \x20 - port: {tls}\n\
                 \x20   type: http\n\
                 \x20   tls: true\n\
                 \x20   bind_addresses: [\"127.0.0.1\"]\n\
                 \x20   resources:\n\
                 \x20     - names: [federation]\n\
                 \x20       compress: false\n"
            ),
            1,
        );
    }
    if federating {
        yaml.push_str(
            "federation_verify_certificates: false\n\
             ip_range_blacklist: []\n\
             allow_profile_lookup_over_federation: true\n",
        );
    }
    // Nested limiters (`rc_login.address`) become nested YAML maps.
    let mut parents: Vec<&str> = Vec::new();
    for key in RATE_LIMITS {
        match key.split_once('.') {
            Some((parent, child)) => {
                if !parents.contains(&parent) {
                    parents.push(parent);
                    yaml.push_str(&format!("{parent}:\n"));
                }
                yaml.push_str(&format!(
                    "  {child}:\n    per_second: 1000000\n    burst_count: 1000000\n"
                ));
            }
            None => yaml.push_str(&format!(
                "{key}:\n  per_second: 1000000\n  burst_count: 1000000\n"
            )),
        }
    }
    yaml
}

fn log_config(dir: &Path, level: &str) -> String {
    format!(
        "version: 1\n\
         formatters:\n\
         \x20 plain:\n\
         \x20   format: \"%(asctime)s %(name)s %(levelname)s %(message)s\"\n\
         handlers:\n\
         \x20 file:\n\
         \x20   class: logging.FileHandler\n\
         \x20   formatter: plain\n\
         \x20   filename: \"{}/homeserver.log\"\n\
         root:\n\
         \x20 level: {level}\n\
         \x20 handlers: [file]\n\
         disable_existing_loggers: false\n",
        dir.display(),
    )
}

impl Synapse {
    /// Writes a fresh configuration, generates the signing key, starts Synapse and
    /// waits until it answers (the benchmark's: no federation).
    pub fn start(install: &Install) -> Result<Synapse, String> {
        Self::start_in(install, home().join("run"), false, false)
    }

    /// A Synapse that federates (for the interoperability tests), in its own
    /// directory.
    pub fn start_federating(install: &Install) -> Result<Synapse, String> {
        let dir = home().join(format!("fed-{}-{}", std::process::id(), random_hex(4)));
        Self::start_in(install, dir, true, false)
    }

    /// A Synapse that federates over TLS (a self-signed certificate, made with
    /// `openssl`), so that another Synapse can reach it: its server name names the TLS
    /// port, and the client API stays plain HTTP on `base_url`.
    pub fn start_federating_tls(install: &Install) -> Result<Synapse, String> {
        let dir = home().join(format!("tls-{}-{}", std::process::id(), random_hex(4)));
        Self::start_in(install, dir, true, true)
    }

    fn start_in(install: &Install, dir: PathBuf, federating: bool, tls: bool) -> Result<Synapse, String> {
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let port = free_port();
        let tls_port = tls.then(free_port);
        if tls {
            let made = Command::new("openssl")
                .args([
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=127.0.0.1",
                ])
                .arg("-keyout")
                .arg(dir.join("tls.key"))
                .arg("-out")
                .arg(dir.join("tls.crt"))
                .output()
                .map_err(|e| format!("openssl: {e}"))?;
            if !made.status.success() {
                return Err(format!("openssl: {}", String::from_utf8_lossy(&made.stderr)));
            }
        }
        let server_name = match (federating, tls_port) {
            (true, Some(t)) => format!("127.0.0.1:{t}"),
            (true, None) => format!("127.0.0.1:{port}"),
            (false, _) => "bench.localhost".to_owned(),
        };
        let cfg = dir.join("homeserver.yaml");
        fs::write(&cfg, config(&dir, port, federating, tls_port)).map_err(|e| e.to_string())?;
        fs::write(
            dir.join("log.yaml"),
            log_config(&dir, if federating { "INFO" } else { "WARNING" }),
        )
        .map_err(|e| e.to_string())?;
        let out = dir.join("stdout.log");
        run_bounded(
            Command::new(&install.python)
                .args(["-m", "synapse.app.homeserver", "-c"])
                .arg(&cfg)
                .arg("--generate-keys")
                .current_dir(&dir),
            &out,
            Duration::from_secs(120),
        )?;
        let child = spawn(&install.python, &dir)?;
        let mut server = Synapse {
            port,
            dir,
            server_name,
            python: install.python.clone(),
            child,
        };
        server.wait_until_ready()?;
        Ok(server)
    }

    /// Stops the server (its state stays for `restart`).
    pub fn stop(&mut self) {
        stop_group(&mut self.child, Duration::from_secs(10));
    }

    /// Starts the stopped server again on the same state and port.
    pub fn restart(&mut self) -> Result<(), String> {
        self.child = spawn(&self.python, &self.dir)?;
        self.wait_until_ready()
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log_tail(&self) -> String {
        let mut text = String::new();
        for name in ["server.out", "homeserver.log"] {
            if let Ok(mut f) = File::open(self.dir.join(name)) {
                let _ = f.read_to_string(&mut text);
            }
        }
        let start = text.len().saturating_sub(3000);
        let start = (start..text.len())
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(0);
        text[start..].to_owned()
    }

    fn wait_until_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_LIMIT;
        let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(5)).build();
        let url = format!("{}/_matrix/client/versions", self.base_url());
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "synapse exited early ({status}); log:\n{}",
                    self.log_tail()
                ));
            }
            if agent.get(&url).call().is_ok_and(|r| r.status() == 200) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "synapse did not answer within {} s; log:\n{}",
                    START_LIMIT.as_secs(),
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// Runs Synapse on the configuration in `dir`, its output appended to `server.out`.
fn spawn(python: &Path, dir: &Path) -> Result<Child, String> {
    let log = File::options()
        .create(true)
        .append(true)
        .open(dir.join("server.out"))
        .map_err(|e| e.to_string())?;
    let child = Command::new(python)
        .args(["-m", "synapse.app.homeserver", "-c"])
        .arg(dir.join("homeserver.yaml"))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("start synapse: {e}"))?;
    spawn_watchdog(child.id());
    Ok(child)
}

impl Drop for Synapse {
    fn drop(&mut self) {
        stop_group(&mut self.child, Duration::from_secs(10));
    }
}
