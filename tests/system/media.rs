//! The content repository against the running worker: uploads (direct and async) into
//! R2, downloads byte-exact with the spec's headers, ranges, every error, the legacy
//! freeze, the federation media endpoint, and media fetched from another server.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{enc, new_user, shared, unique, Client, Options, Server};
use crate::remote::Remote;

/// An answer with its body as bytes.
#[derive(Debug)]
struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    #[track_caller]
    fn expect_err(&self, status: u16, errcode: &str) {
        assert_eq!(
            (self.status, self.json()["errcode"].as_str()),
            (status, Some(errcode)),
            "unexpected answer: {}",
            String::from_utf8_lossy(&self.body)
        );
    }
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(120))
        .build()
}

fn http(c: &Client, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Raw {
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
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
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

fn upload(c: &Client, bytes: &[u8], content_type: &str, filename: Option<&str>) -> String {
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
fn parts(mxc: &str) -> (String, String) {
    let rest = mxc.strip_prefix("mxc://").expect("mxc://");
    let (server, id) = rest.split_once('/').expect("server/id");
    (server.to_owned(), id.to_owned())
}

fn download_path(mxc: &str) -> String {
    let (server, id) = parts(mxc);
    format!("/_matrix/client/v1/media/download/{}/{id}", enc(&server))
}

/// A request written by hand, for what HTTP libraries will not send.
fn raw_tcp(server: &Server, request: &[u8]) -> (u16, String) {
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
fn d1(server: &Server, sql: &str) {
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

    // An id whose day has passed is gone.
    let stale = http(&alice, "POST", "/_matrix/media/v1/create", &[], Some(b"{}")).json();
    let (_, stale_id) = parts(stale["content_uri"].as_str().expect("uri"));
    d1(
        shared(),
        &format!("UPDATE media SET expires_ts = 1 WHERE media_id = '{stale_id}'"),
    );
    http(
        &alice,
        "PUT",
        &format!("/_matrix/media/v3/upload/{}/{stale_id}", enc(&server)),
        &[("Content-Type", "text/plain")],
        Some(b"too late"),
    )
    .expect_err(404, "M_NOT_FOUND");
    http(
        &alice,
        "GET",
        &format!("/_matrix/client/v1/media/download/{}/{stale_id}", enc(&server)),
        &[],
        None,
    )
    .expect_err(404, "M_NOT_FOUND");
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
fn thumbnails_are_the_image_itself() {
    let (alice, _) = new_user("thumb");
    let png = random_bytes(5000, 3);
    let mxc = upload(&alice, &png, "image/png", Some("avatar.png"));
    let (server, id) = parts(&mxc);
    let base = format!("/_matrix/client/v1/media/thumbnail/{}/{id}", enc(&server));
    let thumb = http(
        &alice,
        "GET",
        &format!("{base}?width=32&height=32&method=crop"),
        &[],
        None,
    );
    assert_eq!(thumb.status, 200);
    assert!(thumb.body == png);
    assert_eq!(thumb.header("content-type"), Some("image/png"));
    assert_eq!(
        thumb.header("content-disposition"),
        Some("inline; filename=\"avatar.png\"")
    );
    http(&alice, "GET", &format!("{base}?height=32"), &[], None).expect_err(400, "M_MISSING_PARAM");
    http(&alice, "GET", &format!("{base}?width=0&height=32"), &[], None).expect_err(400, "M_INVALID_PARAM");
    http(
        &alice,
        "GET",
        &format!("{base}?width=3&height=3&method=zoom"),
        &[],
        None,
    )
    .expect_err(400, "M_INVALID_PARAM");
    http(
        &shared().client(),
        "GET",
        &format!("{base}?width=3&height=3"),
        &[],
        None,
    )
    .expect_err(401, "M_MISSING_TOKEN");
    let text = upload(&alice, b"words", "text/plain", None);
    let (_, text_id) = parts(&text);
    http(
        &alice,
        "GET",
        &format!(
            "/_matrix/client/v1/media/thumbnail/{}/{text_id}?width=3&height=3",
            enc(&server)
        ),
        &[],
        None,
    )
    .expect_err(404, "M_NOT_FOUND");
}

#[test]
fn large_uploads_stream_through() {
    let (alice, _) = new_user("large");
    for (size, label) in [(1024 * 1024, "1 MB"), (50 * 1024 * 1024, "50 MB")] {
        let bytes = random_bytes(size, size as u64);
        let started = Instant::now();
        let mxc = upload(&alice, &bytes, "application/octet-stream", Some("big.bin"));
        let up = started.elapsed();
        let started = Instant::now();
        let got = http(&alice, "GET", &download_path(&mxc), &[], None);
        let down = started.elapsed();
        assert_eq!(got.status, 200);
        assert_eq!(got.body.len(), bytes.len());
        assert!(got.body == bytes, "{label} comes back exactly");
        let mb = size as f64 / (1024.0 * 1024.0);
        println!(
            "media {label}: upload {:.0} ms ({:.1} MB/s), download {:.0} ms ({:.1} MB/s)",
            up.as_secs_f64() * 1000.0,
            mb / up.as_secs_f64(),
            down.as_secs_f64() * 1000.0,
            mb / down.as_secs_f64()
        );
    }
}

#[test]
fn a_small_limit_and_a_freeze_date_are_settings() {
    let in_an_hour = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
        + 3_600_000;
    let server = Server::start(Options {
        env: vec![
            ("NEURITE_MEDIA_MAX_UPLOAD_SIZE", "1000".into()),
            ("NEURITE_MEDIA_LEGACY_DOWNLOAD", in_an_hour.to_string()),
            ("NEURITE_MEDIA_USER_QUOTA", "2500".into()),
        ],
        ..Options::default()
    });
    let (alice, _) = server
        .client()
        .register(&unique("small"), "correct horse battery");
    assert_eq!(
        http(&alice, "GET", "/_matrix/client/v1/media/config", &[], None).json(),
        json!({"m.upload.size": 1000})
    );
    http(
        &alice,
        "POST",
        "/_matrix/media/v3/upload",
        &[("Content-Type", "text/plain")],
        Some(&[7u8; 1001]),
    )
    .expect_err(413, "M_TOO_LARGE");
    let mxc = upload(&alice, &[7u8; 1000], "text/plain", Some("ok.txt"));
    // Media from before the freeze date is served without a token.
    let (name, id) = parts(&mxc);
    let legacy = http(
        &server.client(),
        "GET",
        &format!("/_matrix/media/v3/download/{}/{id}", enc(&name)),
        &[],
        None,
    );
    assert_eq!(legacy.status, 200);
    assert_eq!(legacy.body, vec![7u8; 1000]);
    assert_eq!(
        legacy.header("content-disposition"),
        Some("inline; filename=\"ok.txt\"")
    );
    assert!(legacy
        .header("cache-control")
        .is_some_and(|c| c.starts_with("public")));
    let named = http(
        &server.client(),
        "GET",
        &format!("/_matrix/media/v3/download/{}/{id}/x.txt", enc(&name)),
        &[],
        None,
    );
    assert_eq!(
        named.header("content-disposition"),
        Some("inline; filename=\"x.txt\"")
    );
    // The quota (2,500 bytes here): 1,000 used, 1,000 more fit, then 600 do not, for
    // direct and async uploads alike; another user has their own.
    upload(&alice, &[8u8; 1000], "text/plain", None);
    http(
        &alice,
        "POST",
        "/_matrix/media/v3/upload",
        &[("Content-Type", "text/plain")],
        Some(&[9u8; 600]),
    )
    .expect_err(403, "M_FORBIDDEN");
    let created = http(&alice, "POST", "/_matrix/media/v1/create", &[], Some(b"{}")).json();
    let (_, pending) = parts(created["content_uri"].as_str().expect("uri"));
    http(
        &alice,
        "PUT",
        &format!("/_matrix/media/v3/upload/{}/{pending}", enc(&name)),
        &[("Content-Type", "text/plain")],
        Some(&[9u8; 600]),
    )
    .expect_err(403, "M_FORBIDDEN");
    upload(&alice, &[9u8; 500], "text/plain", None);
    let (bob, _) = server
        .client()
        .register(&unique("small"), "correct horse battery");
    upload(&bob, &[1u8; 1000], "text/plain", None);

    // Another server's media over the limit is refused: 502 M_TOO_LARGE, in the
    // answer's bytes or already in its length.
    for (n, size) in [(0, 5_000), (1, 200_000)] {
        let big = Remote::start(70 + n);
        let frame = neurite::core::media::multipart_frame("bb", "text/plain", "inline");
        let mut body = frame.prefix.clone();
        body.extend(std::iter::repeat_n(b'x', size));
        body.extend_from_slice(&frame.suffix);
        big.answer_raw(
            "GET",
            "/_matrix/federation/v1/media/download/",
            200,
            &frame.content_type,
            body,
        );
        http(
            &alice,
            "GET",
            &format!("/_matrix/client/v1/media/download/{}/big{n}", enc(&big.name)),
            &[],
            None,
        )
        .expect_err(502, "M_TOO_LARGE");
    }

    // An operator forgets the cached copies of other servers' media; asked for again,
    // it is fetched again. Our own media stays.
    let origin = Remote::start(72);
    origin.answer("GET", "/_matrix/media/v3/download/", 200, json!({"v": 1}));
    let remote_path = format!("/_matrix/client/v1/media/download/{}/cached1", enc(&origin.name));
    assert_eq!(
        http(&alice, "GET", &remote_path, &[], None).json(),
        json!({"v": 1})
    );
    origin.answer("GET", "/_matrix/media/v3/download/", 200, json!({"v": 2}));
    assert_eq!(
        http(&alice, "GET", &remote_path, &[], None).json(),
        json!({"v": 1}),
        "kept"
    );
    let (admin, _) = server.register_admin(&unique("purger"), "admin password");
    let purge = "/_synapse/admin/v1/purge_media_cache";
    http(
        &alice,
        "POST",
        &format!("{purge}?before_ts={in_an_hour}"),
        &[],
        Some(b"{}"),
    )
    .expect_err(403, "M_FORBIDDEN");
    http(&admin, "POST", purge, &[], Some(b"{}")).expect_err(400, "M_MISSING_PARAM");
    let purged = http(
        &admin,
        "POST",
        &format!("{purge}?before_ts={in_an_hour}"),
        &[],
        Some(b"{}"),
    );
    assert_eq!((purged.status, purged.json()), (200, json!({"deleted": 1})));
    assert_eq!(
        http(&alice, "GET", &remote_path, &[], None).json(),
        json!({"v": 2}),
        "fetched again"
    );
    assert_eq!(
        http(&alice, "GET", &download_path(&mxc), &[], None).body,
        vec![7u8; 1000]
    );
}

/// The multipart answer's media part (a minimal parser for the test).
fn media_part(content_type: &str, body: &[u8]) -> neurite::core::media::MediaPart {
    neurite::core::media::parse_multipart(content_type, body).expect("multipart/mixed")
}

#[test]
fn other_servers_download_our_media_signed() {
    let (alice, _) = new_user("fedmedia");
    let bytes = random_bytes(200_000, 4);
    let mxc = upload(&alice, &bytes, "image/jpeg", Some("photo.jpg"));
    let (_, id) = parts(&mxc);
    let server = shared();
    let remote = Remote::start(61);
    let target = format!("/_matrix/federation/v1/media/download/{id}");
    let auth = remote.authorization(&server.server_name, "GET", &target, None);
    let got = http(
        &server.client(),
        "GET",
        &target,
        &[("Authorization", &auth)],
        None,
    );
    assert_eq!(got.status, 200, "{}", String::from_utf8_lossy(&got.body));
    let content_type = got.header("content-type").expect("content-type").to_owned();
    assert!(
        content_type.starts_with("multipart/mixed; boundary="),
        "{content_type}"
    );
    // The first part is the JSON metadata.
    let text = String::from_utf8_lossy(&got.body[..200]).into_owned();
    assert!(
        text.contains("Content-Type: application/json\r\n\r\n{}\r\n"),
        "{text}"
    );
    match media_part(&content_type, &got.body) {
        neurite::core::media::MediaPart::Bytes {
            content_type,
            filename,
            body,
        } => {
            assert_eq!(content_type.as_deref(), Some("image/jpeg"));
            assert_eq!(filename.as_deref(), Some("photo.jpg"));
            assert!(body == bytes, "the bytes are exact");
        }
        other => panic!("not the bytes: {other:?}"),
    }
    // Unsigned, or signed for another server: refused. Unknown: not found.
    http(&server.client(), "GET", &target, &[], None).expect_err(401, "M_UNAUTHORIZED");
    let wrong = remote.authorization("other.example", "GET", &target, None);
    http(
        &server.client(),
        "GET",
        &target,
        &[("Authorization", &wrong)],
        None,
    )
    .expect_err(401, "M_UNAUTHORIZED");
    let unknown = "/_matrix/federation/v1/media/download/nosuchmedia";
    let auth = remote.authorization(&server.server_name, "GET", unknown, None);
    http(
        &server.client(),
        "GET",
        unknown,
        &[("Authorization", &auth)],
        None,
    )
    .expect_err(404, "M_NOT_FOUND");
    // The thumbnail endpoint answers the same way for images.
    let thumb = format!("/_matrix/federation/v1/media/thumbnail/{id}?width=64&height=64&method=scale");
    let auth = remote.authorization(&server.server_name, "GET", &thumb, None);
    let got = http(&server.client(), "GET", &thumb, &[("Authorization", &auth)], None);
    assert_eq!(got.status, 200);
    let content_type = got.header("content-type").expect("content-type").to_owned();
    assert!(
        matches!(media_part(&content_type, &got.body), neurite::core::media::MediaPart::Bytes { body, .. } if body == bytes)
    );
}

#[test]
fn media_of_other_servers_is_fetched_and_kept() {
    // From a server with the federation media endpoints: another Neurite.
    let b = Server::start(Options::default());
    let (bob, _) = b.client().register(&unique("bob"), "correct horse battery");
    let bytes = random_bytes(2 * 1024 * 1024 + 5, 5);
    let mxc = upload(&bob, &bytes, "audio/ogg", Some("voice.ogg"));
    assert!(mxc.starts_with(&format!("mxc://{}/", b.server_name)));
    let (alice, _) = new_user("fetcher");
    for round in 0..2 {
        let got = http(&alice, "GET", &download_path(&mxc), &[], None);
        assert_eq!(
            got.status,
            200,
            "round {round}: {}",
            String::from_utf8_lossy(&got.body[..got.body.len().min(300)])
        );
        assert!(got.body == bytes, "round {round}: the bytes are exact");
        assert_eq!(got.header("content-type"), Some("audio/ogg"));
        assert_eq!(
            got.header("content-disposition"),
            Some("inline; filename=\"voice.ogg\"")
        );
        let part = http(
            &alice,
            "GET",
            &download_path(&mxc),
            &[("Range", "bytes=10-19")],
            None,
        );
        assert_eq!(part.status, 206);
        assert!(part.body == bytes[10..20]);
    }
    let (b_name, _) = parts(&mxc);
    http(
        &alice,
        "GET",
        &format!("/_matrix/client/v1/media/download/{}/nosuchmedia", enc(&b_name)),
        &[],
        None,
    )
    .expect_err(404, "M_NOT_FOUND");
    // Once kept, it is served even with the other server gone.
    drop(b);
    let got = http(&alice, "GET", &download_path(&mxc), &[], None);
    assert_eq!(got.status, 200);
    assert!(got.body == bytes);

    // From a server without them: the legacy download, asked with allow_remote=false.
    let old = Remote::start(62);
    old.answer(
        "GET",
        "/_matrix/media/v3/download/",
        200,
        json!({"old": "server"}),
    );
    let path = format!("/_matrix/client/v1/media/download/{}/oldMedia1", enc(&old.name));
    let got = http(&alice, "GET", &path, &[], None);
    assert_eq!(got.status, 200, "{}", String::from_utf8_lossy(&got.body));
    assert_eq!(got.json(), json!({"old": "server"}));
    assert_eq!(got.header("content-type"), Some("application/json"));
    let seen: Vec<String> = old.seen().into_iter().map(|s| s.target).collect();
    assert!(
        seen.iter()
            .any(|t| t.starts_with("/_matrix/federation/v1/media/download/oldMedia1")),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|t| t.starts_with("/_matrix/media/v3/download/") && t.contains("allow_remote=false")),
        "{seen:?}"
    );
    // Unknown there: not found here.
    let gone = Remote::start(63);
    http(
        &alice,
        "GET",
        &format!("/_matrix/client/v1/media/download/{}/missing1", enc(&gone.name)),
        &[],
        None,
    )
    .expect_err(404, "M_NOT_FOUND");
}

#[test]
fn an_avatar_set_by_one_user_downloads_for_another() {
    let (alice, alice_id) = new_user("avatar");
    let (bob, _) = new_user("viewer");
    let png = random_bytes(40_000, 6);
    let mxc = upload(&alice, &png, "image/png", Some("me.png"));
    alice
        .put(
            &format!("/_matrix/client/v3/profile/{}/avatar_url", enc(&alice_id)),
            &json!({"avatar_url": mxc}),
        )
        .expect(200);
    let profile = bob
        .get(&format!("/_matrix/client/v3/profile/{}", enc(&alice_id)))
        .expect(200);
    let avatar = profile["avatar_url"].as_str().expect("avatar_url").to_owned();
    assert_eq!(avatar, mxc);
    let got = http(&bob, "GET", &download_path(&avatar), &[], None);
    assert_eq!(got.status, 200);
    assert!(got.body == png, "the avatar is byte-exact");
    let thumb = {
        let (server, id) = parts(&avatar);
        http(
            &bob,
            "GET",
            &format!(
                "/_matrix/client/v1/media/thumbnail/{}/{id}?width=96&height=96&method=crop",
                enc(&server)
            ),
            &[],
            None,
        )
    };
    assert_eq!(thumb.status, 200);
    assert!(thumb.body == png);

    // A guest may look at it, not upload.
    let guest = shared()
        .client()
        .post("/_matrix/client/v3/register?kind=guest", &json!({}))
        .expect(200);
    let guest = shared()
        .client()
        .with_token(guest["access_token"].as_str().expect("guest token"));
    assert!(http(&guest, "GET", &download_path(&avatar), &[], None).body == png);
    http(
        &guest,
        "POST",
        "/_matrix/media/v3/upload",
        &[("Content-Type", "image/png")],
        Some(b"x"),
    )
    .expect_err(403, "M_GUEST_ACCESS_FORBIDDEN");
}

#[test]
fn an_admin_deletes_media() {
    let server = shared();
    let (admin, _) = server.register_admin(&unique("mediaadmin"), "admin password");
    let (alice, _) = new_user("deleted");
    let mxc = upload(&alice, b"regrettable", "text/plain", None);
    let (name, id) = parts(&mxc);
    let path = format!("/_synapse/admin/v1/media/{}/{id}", enc(&name));
    http(&alice, "DELETE", &path, &[], None).expect_err(403, "M_FORBIDDEN");
    assert_eq!(
        http(&alice, "GET", &download_path(&mxc), &[], None).body,
        b"regrettable"
    );
    let deleted = http(&admin, "DELETE", &path, &[], None);
    assert_eq!(deleted.status, 200);
    assert_eq!(deleted.json(), json!({"deleted_media": [id], "total": 1}));
    http(&alice, "GET", &download_path(&mxc), &[], None).expect_err(404, "M_NOT_FOUND");
    http(&admin, "DELETE", &path, &[], None).expect_err(404, "M_NOT_FOUND");
}

/// A virtualenv with matrix-nio from PyPI under `target/system-tests/`, made on first
/// use; `None` (the test says so and passes) when it cannot be installed here.
fn nio_python() -> Option<std::path::PathBuf> {
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/system-tests/nio-venv");
    let python = venv.join("bin/python");
    let ready = venv.join(".installed-0.26.0");
    if !ready.exists() {
        let made = Command::new("python3").arg("-m").arg("venv").arg(&venv).status();
        let installed = made.is_ok_and(|s| s.success())
            && Command::new(venv.join("bin/pip"))
                .args(["install", "-q", "matrix-nio==0.26.0"])
                .status()
                .is_ok_and(|s| s.success());
        if !installed {
            return None;
        }
        let _ = std::fs::write(&ready, "");
    }
    Some(python)
}

#[test]
fn matrix_nio_uploads_and_downloads() {
    let Some(python) = nio_python() else {
        eprintln!("matrix-nio could not be installed: skipped");
        return;
    };
    let (alice, alice_id) = new_user("nio");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/nio_media.py");
    let out = Command::new(python)
        .arg(script)
        .arg(&alice.base)
        .arg(&alice_id)
        .arg(alice.token.as_deref().unwrap_or_default())
        .output()
        .expect("run matrix-nio");
    let text = String::from_utf8_lossy(&out.stdout);
    let summary: Value = serde_json::from_str(text.trim())
        .unwrap_or_else(|_| panic!("nio said: {text} {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(summary["same_bytes"], json!(true), "{summary}");
    assert_eq!(summary["content_type"], json!("image/png"), "{summary}");
    assert_eq!(summary["filename"], json!("nio.png"), "{summary}");
    let uri = summary["content_uri"].as_str().expect("content_uri");
    assert!(
        uri.starts_with(&format!("mxc://{}/", shared().server_name)),
        "{uri}"
    );
}

#[test]
fn a_multipart_answer_with_a_location_is_followed() {
    let cdn = Remote::start(64);
    let bytes = random_bytes(70_000, 7);
    cdn.answer_raw("GET", "/cdn/file", 200, "image/webp", bytes.clone());
    let location = format!("http://{}/cdn/file", cdn.name);
    let body = format!(
        "--b0\r\nContent-Type: application/json\r\n\r\n{{}}\r\n--b0\r\nLocation: {location}\r\n\r\n\r\n--b0--\r\n"
    );
    cdn.answer_raw(
        "GET",
        "/_matrix/federation/v1/media/download/",
        200,
        "multipart/mixed; boundary=b0",
        body.into_bytes(),
    );
    let (alice, _) = new_user("located");
    let path = format!("/_matrix/client/v1/media/download/{}/viaCdn1", enc(&cdn.name));
    let got = http(&alice, "GET", &path, &[], None);
    assert_eq!(got.status, 200, "{}", String::from_utf8_lossy(&got.body));
    assert!(got.body == bytes);
    assert_eq!(got.header("content-type"), Some("image/webp"));
    let seen: Vec<String> = cdn.seen().into_iter().map(|s| s.target).collect();
    assert!(seen.iter().any(|t| t == "/cdn/file"), "{seen:?}");
    // The bytes themselves in the multipart answer, with a type and a name.
    let frame = neurite::core::media::multipart_frame("zz", "text/csv", "attachment; filename=\"t.csv\"");
    let mut inline = frame.prefix.clone();
    inline.extend_from_slice(b"a,b\n1,2\n");
    inline.extend_from_slice(&frame.suffix);
    let other = Remote::start(65);
    other.answer_raw(
        "GET",
        "/_matrix/federation/v1/media/download/",
        200,
        &frame.content_type,
        inline,
    );
    let got = http(
        &alice,
        "GET",
        &format!("/_matrix/client/v1/media/download/{}/csv1", enc(&other.name)),
        &[],
        None,
    );
    assert_eq!(got.status, 200);
    assert_eq!(got.body, b"a,b\n1,2\n");
    assert_eq!(got.header("content-type"), Some("text/csv"));
    assert_eq!(
        got.header("content-disposition"),
        Some("inline; filename=\"t.csv\"")
    );
    // A malformed answer is the other server's failure, not ours.
    let broken = Remote::start(66);
    broken.answer_raw(
        "GET",
        "/_matrix/federation/v1/media/download/",
        200,
        "multipart/mixed; boundary=q",
        b"junk".to_vec(),
    );
    http(
        &alice,
        "GET",
        &format!("/_matrix/client/v1/media/download/{}/junk1", enc(&broken.name)),
        &[],
        None,
    )
    .expect_err(502, "M_UNKNOWN");
}
