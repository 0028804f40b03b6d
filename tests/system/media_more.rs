//! More of the content repository against the running worker: thumbnails, large
//! uploads, the media settings (limit, freeze date, quota), operators' endpoints, an
//! avatar seen by another user, and a real client library (matrix-nio).

use std::process::Command;
use std::time::Instant;

use serde_json::{json, Value};

use crate::harness::{enc, new_user, shared, unique, Options, Server};
use crate::media::{download_path, http, parts, random_bytes, upload};
use crate::remote::Remote;

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
            ("NEURITE_MEDIA_REMOTE_RETENTION_DAYS", "1".into()),
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

    // Past the retention period (a day here) a cached copy is fetched again...
    let day_old = |id: &str| {
        crate::media::d1(
            &server,
            &format!("UPDATE media SET created_ts = 1 WHERE media_id = '{id}'"),
        );
    };
    let aging = Remote::start(73);
    let path_of =
        |remote: &Remote, id: &str| format!("/_matrix/client/v1/media/download/{}/{id}", enc(&remote.name));
    aging.answer("GET", "/_matrix/media/v3/download/", 200, json!({"v": 1}));
    assert_eq!(
        http(&alice, "GET", &path_of(&aging, "stale1"), &[], None).json(),
        json!({"v": 1})
    );
    aging.answer("GET", "/_matrix/media/v3/download/", 200, json!({"v": 2}));
    day_old("stale1");
    assert_eq!(
        http(&alice, "GET", &path_of(&aging, "stale1"), &[], None).json(),
        json!({"v": 2}),
        "fetched again"
    );
    // ...and old copies are swept as new ones arrive: once swept, a copy its server no
    // longer has is gone here too (kept, it would have been served).
    assert_eq!(
        http(&alice, "GET", &path_of(&aging, "swept1"), &[], None).json(),
        json!({"v": 2})
    );
    day_old("swept1");
    aging.answer(
        "GET",
        "/_matrix/media/v3/download/",
        404,
        json!({"errcode": "M_NOT_FOUND", "error": "gone"}),
    );
    let fresh = Remote::start(74);
    fresh.answer("GET", "/_matrix/media/v3/download/", 200, json!({"v": "new"}));
    assert_eq!(
        http(&alice, "GET", &path_of(&fresh, "fresh1"), &[], None).json(),
        json!({"v": "new"})
    );
    http(&alice, "GET", &path_of(&aging, "swept1"), &[], None).expect_err(404, "M_NOT_FOUND");
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
