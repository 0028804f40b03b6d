//! A scripted remote homeserver for federation tests: it listens on loopback (its
//! server name is `127.0.0.1:<port>`), has its own signing key, serves its keys and
//! whatever canned answers a test gives it, records what Neurite asked, and signs the
//! requests it sends to Neurite with `X-Matrix`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use neurite::core::keys::{server_keys_response, SigningKey};
use neurite::core::xmatrix;
use serde_json::{json, Value};

use crate::harness::{Client, Resp, Server};

/// One request the remote received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query as sent.
    pub target: String,
    pub authorization: Option<String>,
    pub body: Option<Value>,
}

#[derive(Default)]
struct Script {
    /// Replaces the key response when set.
    key_response: Option<Value>,
    /// Canned answers: (method, path prefix) → (status, body); longest prefix wins.
    answers: Vec<(String, String, u16, Value)>,
    /// Canned answers that are not JSON: (method, path prefix) → (status, content
    /// type, body); these win over `answers`.
    raw_answers: Vec<(String, String, u16, String, Vec<u8>)>,
    seen: Vec<Seen>,
}

pub struct Remote {
    pub name: String,
    pub key: SigningKey,
    script: Arc<Mutex<Script>>,
}

impl Remote {
    /// Starts a remote with a fresh key (`seed` makes it reproducible).
    pub fn start(seed: u8) -> Remote {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let name = format!("127.0.0.1:{}", listener.local_addr().expect("addr").port());
        let key = SigningKey::from_seed([seed; 32], &format!("r{seed}")).expect("key");
        let script = Arc::new(Mutex::new(Script::default()));
        let (thread_script, thread_name, thread_key) = (script.clone(), name.clone(), key.to_text());
        std::thread::spawn(move || {
            let key = SigningKey::parse(&thread_key).expect("key");
            for stream in listener.incoming().flatten() {
                let script = thread_script.clone();
                let name = thread_name.clone();
                let key = SigningKey::parse(&key.to_text()).expect("key");
                std::thread::spawn(move || serve(stream, &script, &name, &key));
            }
        });
        Remote { name, key, script }
    }

    /// A user id on this server.
    pub fn user(&self, local: &str) -> String {
        format!("@{local}:{}", self.name)
    }

    /// Answers `method` requests whose path starts with `prefix` with `body`.
    pub fn answer(&self, method: &str, prefix: &str, status: u16, body: Value) {
        let mut script = self.script.lock().expect("lock");
        script
            .answers
            .retain(|(m, p, _, _)| !(m == method && p == prefix));
        script
            .answers
            .push((method.to_owned(), prefix.to_owned(), status, body));
    }

    /// Answers `method` requests whose path starts with `prefix` with these bytes.
    pub fn answer_raw(&self, method: &str, prefix: &str, status: u16, content_type: &str, body: Vec<u8>) {
        let mut script = self.script.lock().expect("lock");
        script
            .raw_answers
            .retain(|(m, p, ..)| !(m == method && p == prefix));
        script.raw_answers.push((
            method.to_owned(),
            prefix.to_owned(),
            status,
            content_type.to_owned(),
            body,
        ));
    }

    /// Never answers `method` requests whose path starts with `prefix`: the connection
    /// is held open, silent, for a minute (longer than any sender waits).
    pub fn hang(&self, method: &str, prefix: &str) {
        self.answer(method, prefix, 0, Value::Null);
    }

    /// Serves `response` as the key response instead of its own (`None`: its own).
    pub fn set_key_response(&self, response: Option<Value>) {
        self.script.lock().expect("lock").key_response = response;
    }

    /// Its own signed key response, valid until `valid_until`.
    pub fn key_response(&self, valid_until: u64) -> Value {
        serde_json::to_value(server_keys_response(&self.name, &self.key, &[], valid_until).expect("sign"))
            .expect("json")
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.script.lock().expect("lock").seen.clone()
    }

    pub fn forget_seen(&self) {
        self.script.lock().expect("lock").seen.clear();
    }

    /// The `Authorization` header for a request to `destination`.
    pub fn authorization(
        &self,
        destination: &str,
        method: &str,
        target: &str,
        body: Option<&Value>,
    ) -> String {
        let content = body.map(|b| serde_json::from_value(b.clone()).expect("canonical"));
        xmatrix::authorization(&self.key, &self.name, destination, method, target, content).expect("sign")
    }

    /// A signed request to `server`.
    pub fn request(&self, server: &Server, method: &str, target: &str, body: Option<&Value>) -> Resp {
        let auth = self.authorization(&server.server_name, method, target, body);
        self.request_with(server, method, target, body, &auth)
    }

    /// A request to `server` with the given `Authorization` header.
    pub fn request_with(
        &self,
        server: &Server,
        method: &str,
        target: &str,
        body: Option<&Value>,
        auth: &str,
    ) -> Resp {
        let client: Client = server.client();
        let bytes = body.map(|b| serde_json::to_vec(b).expect("json"));
        client.raw(
            method,
            target,
            bytes.as_deref(),
            &[("Authorization", auth), ("Content-Type", "application/json")],
        )
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}

fn serve(stream: TcpStream, script: &Mutex<Script>, name: &str, key: &SigningKey) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (
        parts.next().unwrap_or_default().to_owned(),
        parts.next().unwrap_or_default().to_owned(),
    );
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let len = headers
        .get("content-length")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let body_json = serde_json::from_slice::<Value>(&body).ok();
    let path = target.split('?').next().unwrap_or_default().to_owned();
    let raw = {
        let script = script.lock().expect("lock");
        script
            .raw_answers
            .iter()
            .filter(|(m, p, ..)| *m == method && path.starts_with(p.as_str()))
            .max_by_key(|(_, p, ..)| p.len())
            .map(|(_, _, status, content_type, body)| (*status, content_type.clone(), body.clone()))
    };
    if let Some((status, content_type, body)) = raw {
        script.lock().expect("lock").seen.push(Seen {
            method: method.clone(),
            target: target.clone(),
            authorization: headers.get("authorization").cloned(),
            body: None,
        });
        let head = format!(
            "HTTP/1.1 {status} Scripted\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let mut stream = stream;
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(&body);
        let _ = stream.flush();
        return;
    }
    let (status, answer) = {
        let mut script = script.lock().expect("lock");
        script.seen.push(Seen {
            method: method.clone(),
            target: target.clone(),
            authorization: headers.get("authorization").cloned(),
            body: body_json,
        });
        if path.starts_with("/_matrix/key/v2/server") {
            let own = || {
                serde_json::to_value(
                    server_keys_response(name, key, &[], now_ms() + 24 * 3600 * 1000).expect("sign"),
                )
                .expect("json")
            };
            (200, script.key_response.clone().unwrap_or_else(own))
        } else {
            script
                .answers
                .iter()
                .filter(|(m, p, _, _)| *m == method && path.starts_with(p.as_str()))
                .max_by_key(|(_, p, _, _)| p.len())
                .map(|(_, _, s, b)| (*s, b.clone()))
                .unwrap_or((404, json!({"errcode": "M_UNRECOGNIZED", "error": "not scripted"})))
        }
    };
    if status == 0 {
        std::thread::sleep(Duration::from_secs(60));
        return;
    }
    let text = answer.to_string();
    let reason = if status == 200 { "OK" } else { "Error" };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    let mut stream = stream;
    let _ = stream.write_all(response.as_bytes());
    let _ = stream.flush();
}
