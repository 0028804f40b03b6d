//! Media across servers: our media served to other servers (signed, multipart/mixed)
//! and other servers' media fetched (from another Neurite, a scripted server's
//! multipart, Location and legacy answers) and kept.

use serde_json::json;

use crate::harness::{enc, new_user, shared, unique, Options, Server};
use crate::media::{download_path, http, parts, random_bytes, upload};
use crate::remote::Remote;

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
