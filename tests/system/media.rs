//! The content repository against the running worker: uploads (direct and async) into
//! R2, downloads byte-exact with the spec's headers, ranges, every error and limit
//! (`media_more.rs` and `media_remote.rs` have the rest), and the helpers they share.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{enc, new_user, shared, unique, Client, Options, Server};

/// An answer with its body as bytes.
#[derive(Debug)]
pub(crate) struct Raw {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Raw {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    #[track_caller]
    pub(crate) fn expect_err(&self, status: u16, errcode: &str) {
        assert_eq!(
            (self.status, self.json()["errcode"].as_str()),
            (status, Some(errcode)),
            "unexpected answer: {}",
            String::from_utf8_lossy(&self.body)
        );
    }
}

pub(crate) fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(120))
        .build()
}

pub(crate) fn http(
    c: &Client,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Raw {
    let mut req = agent().request(method, &format!("{}{}", c.base, path));
    if let Some(token) = &c.token {
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
        Ok(resp) | Err(ureq::Error::Status(_, resp)) => resp,
        Err(err) => panic!("{method} {path}: {err}"),
    };
    let status = resp.status();
    let headers = resp
        .headers_names()
        .into_iter()
        .filter_map(|name| resp.header(&name).map(|v| (name.clone(), v.to_owned())))
        .collect();
    let mut body = Vec::new();
    resp.into_reader().read_to_end(&mut body).expect("body");
    Raw {
        status,
        headers,
        body,
    }
}

/// Pseudo-random bytes (xorshift), reproducible per seed.
pub(crate) fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

pub(crate) fn upload(c: &Client, bytes: &[u8], content_type: &str, filename: Option<&str>) -> String {
    let path = match filename {
        Some(name) => format!("/_matrix/media/v3/upload?filename={}", enc(name)),
        None => "/_matrix/media/v3/upload".to_owned(),
    };
    let answer = http(c, "POST", &path, &[("Content-Type", content_type)], Some(bytes));
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    answer.json()["content_uri"]
        .as_str()
        .expect("content_uri")
        .to_owned()
}

/// `(server, media id)` of an `mxc://` URI.
pub(crate) fn parts(mxc: &str) -> (String, String) {
    let rest = mxc.strip_prefix("mxc://").expect("mxc://");
    let (server, id) = rest.split_once('/').expect("server/id");
    (server.to_owned(), id.to_owned())
}

pub(crate) fn download_path(mxc: &str) -> String {
    let (server, id) = parts(mxc);
    format!("/_matrix/client/v1/media/download/{}/{id}", enc(&server))
}

/// A request written by hand, for what HTTP libraries will not send.
pub(crate) fn raw_tcp(server: &Server, request: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    stream.write_all(request).expect("write");
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

#[test]
fn uploads_download_byte_exact_with_the_spec_headers() {
    let (alice, _) = new_user("media");
    let (bob, _) = new_user("media");
    let bytes = random_bytes(3 * 1024 * 1024 + 17, 1);
    let mxc = upload(&alice, &bytes, "image/png", Some("cat picture.png"));
    let (server, id) = parts(&mxc);
    assert_eq!(server, shared().server_name);
    assert!(
        id.len() >= 16 && id.bytes().all(|b| b.is_ascii_alphanumeric()),
        "{id}"
    );

    // Another user downloads it, authenticated.
    let got = http(&bob, "GET", &download_path(&mxc), &[], None);
    assert_eq!(got.status, 200);
    assert!(got.body == bytes, "the bytes come back exactly");
    assert_eq!(got.header("content-type"), Some("image/png"));
    assert_eq!(
        got.header("content-disposition"),
        Some("inline; filename=\"cat picture.png\"")
    );
    assert_eq!(
        got.header("content-security-policy"),
        Some("sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; style-src 'unsafe-inline'; media-src 'self'; object-src 'self';")
    );
    assert_eq!(got.header("cross-origin-resource-policy"), Some("cross-origin"));
    assert_eq!(got.header("x-content-type-options"), Some("nosniff"));
    let cache = got.header("cache-control").expect("cache-control");
    assert!(
        cache.contains("immutable") && cache.contains("max-age=31536000"),
        "{cache}"
    );
    assert_eq!(got.header("accept-ranges"), Some("bytes"));
    assert_eq!(got.header("access-control-allow-origin"), Some("*"));
    assert_eq!(
        got.header("content-length"),
        Some(bytes.len().to_string().as_str())
    );

    // The file name in the path replaces the uploaded one.
    let named = http(
        &bob,
        "GET",
        &format!("{}/other%20name.png", download_path(&mxc)),
        &[],
        None,
    );
    assert_eq!(named.status, 200);
    assert_eq!(
        named.header("content-disposition"),
        Some("inline; filename=\"other name.png\"")
    );
    assert!(named.body == bytes);

    // An empty file name (a trailing slash) is none.
    let slash = http(&bob, "GET", &format!("{}/", download_path(&mxc)), &[], None);
    assert_eq!(slash.status, 200);
    assert_eq!(
        slash.header("content-disposition"),
        Some("inline; filename=\"cat picture.png\"")
    );

    // Unsafe types are attachments; no file name means none in the header.
    let html = upload(&alice, b"<script>alert(1)</script>", "text/html", None);
    let got = http(&bob, "GET", &download_path(&html), &[], None);
    assert_eq!(got.status, 200);
    assert_eq!(got.header("content-type"), Some("text/html"));
    assert_eq!(got.header("content-disposition"), Some("attachment"));
    assert_eq!(got.body, b"<script>alert(1)</script>");
    // A non-ASCII name is sent in RFC 6266's extended form.
    let utf8 = upload(&alice, b"hello", "text/plain", Some("naïve.txt"));
    let got = http(&bob, "GET", &download_path(&utf8), &[], None);
    assert_eq!(
        got.header("content-disposition"),
        Some("inline; filename*=utf-8''na%C3%AFve.txt")
    );
    // No content type given: octet-stream, an attachment.
    let answer = agent()
        .post(&format!("{}/_matrix/media/v3/upload", alice.base))
        .set(
            "Authorization",
            &format!("Bearer {}", alice.token.as_deref().unwrap_or_default()),
        )
        .send_bytes(b"raw bytes")
        .expect("upload");
    let untyped: Value = answer.into_json().expect("json");
    let untyped = untyped["content_uri"].as_str().expect("uri").to_owned();
    let got = http(&bob, "GET", &download_path(&untyped), &[], None);
    assert_eq!(got.body, b"raw bytes");
    assert_eq!(got.header("content-disposition"), Some("attachment"));

    // An empty upload is media too.
    let empty = upload(&alice, b"", "text/plain", None);
    let got = http(&bob, "GET", &download_path(&empty), &[], None);
    assert_eq!((got.status, got.body.len()), (200, 0));

    // The authenticated endpoints need a token; the legacy one is frozen by default.
    let anonymous = shared().client();
    http(&anonymous, "GET", &download_path(&mxc), &[], None).expect_err(401, "M_MISSING_TOKEN");
    http(
        &anonymous.with_token("nope"),
        "GET",
        &download_path(&mxc),
        &[],
        None,
    )
    .expect_err(401, "M_UNKNOWN_TOKEN");
    let legacy = format!("/_matrix/media/v3/download/{}/{id}", enc(&server));
    http(&anonymous, "GET", &legacy, &[], None).expect_err(404, "M_NOT_FOUND");
    http(
        &anonymous,
        "POST",
        "/_matrix/media/v3/upload",
        &[("Content-Type", "text/plain")],
        Some(b"x"),
    )
    .expect_err(401, "M_MISSING_TOKEN");

    // The configuration, on both paths.
    for path in ["/_matrix/client/v1/media/config", "/_matrix/media/v3/config"] {
        let config = http(&bob, "GET", path, &[], None);
        assert_eq!(config.status, 200);
        assert_eq!(config.json(), json!({"m.upload.size": 52_428_800}));
        http(&anonymous, "GET", path, &[], None).expect_err(401, "M_MISSING_TOKEN");
    }
}

#[test]
fn ranges_answer_partial_content() {
    let (alice, _) = new_user("range");
    let bytes = random_bytes(100_000, 2);
    let mxc = upload(&alice, &bytes, "video/mp4", Some("clip.mp4"));
    let path = download_path(&mxc);
    let part = http(&alice, "GET", &path, &[("Range", "bytes=1000-1999")], None);
    assert_eq!(part.status, 206);
    assert_eq!(part.header("content-range"), Some("bytes 1000-1999/100000"));
    assert_eq!(part.header("content-length"), Some("1000"));
    assert!(part.body == bytes[1000..2000]);
    assert_eq!(part.header("content-type"), Some("video/mp4"));
    assert_eq!(
        part.header("content-disposition"),
        Some("inline; filename=\"clip.mp4\"")
    );
    let tail = http(&alice, "GET", &path, &[("Range", "bytes=-10")], None);
    assert_eq!(tail.status, 206);
    assert_eq!(tail.header("content-range"), Some("bytes 99990-99999/100000"));
    assert!(tail.body == bytes[99_990..]);
    let open = http(&alice, "GET", &path, &[("Range", "bytes=99000-")], None);
    assert_eq!(open.status, 206);
    assert!(open.body == bytes[99_000..]);
    let past = http(&alice, "GET", &path, &[("Range", "bytes=100000-")], None);
    assert_eq!(past.status, 416);
    assert_eq!(past.header("content-range"), Some("bytes */100000"));
    // Several ranges are answered with the whole.
    let several = http(&alice, "GET", &path, &[("Range", "bytes=0-1,5-6")], None);
    assert_eq!(several.status, 200);
    assert!(several.body == bytes);
}

#[test]
fn bad_uploads_and_unknown_media_get_matrix_errors() {
    let (alice, _) = new_user("mediaerr");
    let server = shared();
    let name = enc(&server.server_name);
    for id in ["unknownMediaId123", "bad.id"] {
        http(
            &alice,
            "GET",
            &format!("/_matrix/client/v1/media/download/{name}/{id}"),
            &[],
            None,
        )
        .expect_err(404, "M_NOT_FOUND");
    }
    http(
        &alice,
        "GET",
        "/_matrix/client/v1/media/download/not%20a%20server/abc",
        &[],
        None,
    )
    .expect_err(404, "M_NOT_FOUND");
    http(
        &alice,
        "GET",
        "/_matrix/client/v1/media/preview_url?url=x",
        &[],
        None,
    )
    .expect_err(404, "M_UNRECOGNIZED");
    http(&alice, "DELETE", "/_matrix/media/v3/upload", &[], None).expect_err(405, "M_UNRECOGNIZED");
    // A bad content type or file name.
    http(
        &alice,
        "POST",
        "/_matrix/media/v3/upload",
        &[("Content-Type", "nonsense")],
        Some(b"x"),
    )
    .expect_err(400, "M_INVALID_PARAM");
    http(
        &alice,
        "POST",
        "/_matrix/media/v3/upload?filename=a%2Fb",
        &[("Content-Type", "text/plain")],
        Some(b"x"),
    )
    .expect_err(400, "M_INVALID_PARAM");

    let token = alice.token.clone().unwrap_or_default();
    // No length (chunked): 411.
    let (status, text) = raw_tcp(
        server,
        format!(
            "POST /_matrix/media/v3/upload HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(status, 411, "{text}");
    // Over the limit (50 MiB here): 413.
    let over = vec![0u8; 52_428_801];
    http(
        &alice,
        "POST",
        "/_matrix/media/v3/upload",
        &[("Content-Type", "text/plain")],
        Some(&over),
    )
    .expect_err(413, "M_TOO_LARGE");
    // A body shorter than its declared length is not kept.
    let (status, text) = raw_tcp(
        server,
        format!(
            "POST /_matrix/media/v3/upload HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: text/plain\r\nContent-Length: 1000\r\nConnection: close\r\n\r\nonly ten b"
        )
        .as_bytes(),
    );
    // Under `wrangler dev` the local proxy in front of the worker answers a body cut
    // off this way itself (500 "Network connection lost"); what matters is that no
    // media comes of it.
    assert!(status >= 400, "a cut-off body is refused: {text}");
    assert!(!text.contains("content_uri"), "{text}");
}

/// Runs SQL against a server's local D1 (to move time for what lasts a day). The
/// database may be busy with the running server: tried a few times.
pub(crate) fn d1(server: &Server, sql: &str) {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut last = String::new();
    for _ in 0..5 {
        let out = Command::new(format!("{root}/node_modules/.bin/wrangler"))
            .current_dir(root)
            .args(["d1", "execute", "DB", "--local", "--config"])
            .arg(server.state_dir.join("wrangler.local.toml"))
            .arg("--persist-to")
            .arg(&server.state_dir)
            .args(["--command", sql])
            .env("WRANGLER_SEND_METRICS", "false")
            .env(
                "PATH",
                format!(
                    "{root}/node_modules/.bin:{}",
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .output()
            .expect("wrangler d1 execute");
        if out.status.success() {
            return;
        }
        last = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
        std::thread::sleep(Duration::from_secs(1));
    }
    panic!("d1 execute {sql}: {last}");
}

#[test]
fn async_uploads_follow_the_spec() {
    let (alice, _) = new_user("async");
    let (mallory, _) = new_user("async");
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let created = http(
        &alice,
        "POST",
        "/_matrix/media/v1/create",
        &[("Content-Type", "application/json")],
        Some(b"{}"),
    );
    assert_eq!(created.status, 200);
    let created = created.json();
    let mxc = created["content_uri"].as_str().expect("content_uri").to_owned();
    let expires = created["unused_expires_at"].as_u64().expect("unused_expires_at");
    let day = 24 * 3600 * 1000;
    assert!(
        expires >= before + day && expires <= before + day + 60_000,
        "{expires}"
    );
    let (server, id) = parts(&mxc);
    let put_path = format!(
        "/_matrix/media/v3/upload/{}/{id}?filename=later.txt",
        enc(&server)
    );

    // Not uploaded yet: a download waits, then says so.
    let started = Instant::now();
    http(
        &alice,
        "GET",
        &format!("{}?timeout_ms=600", download_path(&mxc)),
        &[],
        None,
    )
    .expect_err(504, "M_NOT_YET_UPLOADED");
    assert!(started.elapsed() >= Duration::from_millis(500), "it waited");

    // Someone else may not upload to it; unknown ids and other servers' are not found.
    http(
        &mallory,
        "PUT",
        &put_path,
        &[("Content-Type", "text/plain")],
        Some(b"mine now"),
    )
    .expect_err(403, "M_FORBIDDEN");
    http(
        &alice,
        "PUT",
        &format!("/_matrix/media/v3/upload/{}/nosuchid", enc(&server)),
        &[("Content-Type", "text/plain")],
        Some(b"x"),
    )
    .expect_err(404, "M_NOT_FOUND");
    http(
        &alice,
        "PUT",
        &format!("/_matrix/media/v3/upload/other.example/{id}"),
        &[("Content-Type", "text/plain")],
        Some(b"x"),
    )
    .expect_err(404, "M_NOT_FOUND");

    // A download waiting while the bytes arrive gets them.
    let waiter = {
        let bob = alice.clone();
        let path = format!("{}?timeout_ms=20000", download_path(&mxc));
        std::thread::spawn(move || http(&bob, "GET", &path, &[], None))
    };
    std::thread::sleep(Duration::from_millis(700));
    let put = http(
        &alice,
        "PUT",
        &put_path,
        &[("Content-Type", "text/plain")],
        Some(b"arrived later"),
    );
    assert_eq!((put.status, put.json()), (200, json!({})));
    let waited = waiter.join().expect("waiter");
    assert_eq!(waited.status, 200);
    assert_eq!(waited.body, b"arrived later");
    assert_eq!(
        waited.header("content-disposition"),
        Some("inline; filename=\"later.txt\"")
    );

    // Once uploaded, never overwritten.
    http(
        &alice,
        "PUT",
        &put_path,
        &[("Content-Type", "text/plain")],
        Some(b"again"),
    )
    .expect_err(409, "M_CANNOT_OVERWRITE_MEDIA");
    assert_eq!(
        http(&mallory, "GET", &download_path(&mxc), &[], None).body,
        b"arrived later"
    );
}

#[test]
fn pending_uploads_and_upload_rate_are_limited() {
    let (carol, _) = new_user("pending");
    for _ in 0..20 {
        assert_eq!(
            http(&carol, "POST", "/_matrix/media/v1/create", &[], Some(b"{}")).status,
            200
        );
    }
    http(&carol, "POST", "/_matrix/media/v1/create", &[], Some(b"{}")).expect_err(429, "M_LIMIT_EXCEEDED");

    let (dave, _) = new_user("rate");
    for i in 0..60 {
        let answer = http(
            &dave,
            "POST",
            "/_matrix/media/v3/upload",
            &[("Content-Type", "text/plain")],
            Some(b"x"),
        );
        assert_eq!(answer.status, 200, "upload {i}");
    }
    let limited = http(
        &dave,
        "POST",
        "/_matrix/media/v3/upload",
        &[("Content-Type", "text/plain")],
        Some(b"x"),
    );
    limited.expect_err(429, "M_LIMIT_EXCEEDED");
    assert!(limited.json()["retry_after_ms"]
        .as_u64()
        .is_some_and(|ms| ms <= 60_000));
}

#[test]
fn an_expired_async_upload_is_gone() {
    // Its own server: the test edits the local D1 from outside, which would make the
    // shared server's writes meet a busy database.
    let server = Server::start(Options::default());
    let (alice, _) = server
        .client()
        .register(&unique("expired"), "correct horse battery");
    let name = enc(&server.server_name);
    let stale = http(&alice, "POST", "/_matrix/media/v1/create", &[], Some(b"{}")).json();
    let (_, stale_id) = parts(stale["content_uri"].as_str().expect("uri"));
    d1(
        &server,
        &format!("UPDATE media SET expires_ts = 1 WHERE media_id = '{stale_id}'"),
    );
    http(
        &alice,
        "PUT",
        &format!("/_matrix/media/v3/upload/{name}/{stale_id}"),
        &[("Content-Type", "text/plain")],
        Some(b"too late"),
    )
    .expect_err(404, "M_NOT_FOUND");
    http(
        &alice,
        "GET",
        &format!("/_matrix/client/v1/media/download/{name}/{stale_id}"),
        &[],
        None,
    )
    .expect_err(404, "M_NOT_FOUND");
    // An expired id no longer counts as pending.
    for _ in 0..20 {
        assert_eq!(
            http(&alice, "POST", "/_matrix/media/v1/create", &[], Some(b"{}")).status,
            200
        );
    }
}
