use super::*;

#[test]
fn media_ids_are_only_the_spec_characters() {
    assert!(valid_media_id("AQwafuaFswefuhsfAFAgsw"));
    assert!(valid_media_id("a-b_c9"));
    for bad in ["", "../etc", "a/b", "a.b", "a%2Fb", "ä", &"x".repeat(256)] {
        assert!(!valid_media_id(bad), "{bad}");
    }
    let id = media_id_from(&[255; 24]);
    assert_eq!(id.len(), 24);
    assert!(valid_media_id(&id));
}

#[test]
fn disposition_is_inline_only_for_safe_types() {
    assert_eq!(content_disposition("image/png", None), "inline");
    assert_eq!(
        content_disposition("IMAGE/PNG; foo=bar", Some("cat.png")),
        "inline; filename=\"cat.png\""
    );
    assert_eq!(
        content_disposition("text/html", Some("page.html")),
        "attachment; filename=\"page.html\""
    );
    assert_eq!(content_disposition("image/svg+xml", None), "attachment");
    assert_eq!(
        content_disposition("application/octet-stream", Some("")),
        "attachment"
    );
    assert_eq!(
        content_disposition("text/plain", Some("naïve \"x\".txt")),
        "inline; filename*=utf-8''na%C3%AFve%20%22x%22.txt"
    );
}

#[test]
fn filenames_come_back_from_dispositions() {
    assert_eq!(
        disposition_filename("attachment; filename=\"a; b.txt\"").as_deref(),
        Some("a; b.txt")
    );
    assert_eq!(
        disposition_filename("inline; filename=plain.png").as_deref(),
        Some("plain.png")
    );
    assert_eq!(
        disposition_filename("inline; filename=\"x.txt\"; filename*=UTF-8''na%C3%AFve.txt").as_deref(),
        Some("naïve.txt")
    );
    assert_eq!(disposition_filename("inline"), None);
    assert_eq!(disposition_filename("inline; filename=\"../x/y\""), None);
    // What we send parses back to the same name.
    let sent = content_disposition("text/plain", Some("naïve \"x\".txt"));
    assert_eq!(disposition_filename(&sent).as_deref(), Some("naïve \"x\".txt"));
}

#[test]
fn content_types_and_names_are_cleaned() {
    assert_eq!(clean_content_type(" image/png ").as_deref(), Some("image/png"));
    assert_eq!(
        clean_content_type("text/plain; charset=utf-8").as_deref(),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(clean_content_type("png"), None);
    assert_eq!(clean_content_type("text/plain\r\nX-Evil: 1"), None);
    assert_eq!(clean_filename("a\nb"), None);
    assert_eq!(clean_filename("ok name.jpg").as_deref(), Some("ok name.jpg"));
    assert!(is_thumbnail_type("image/jpeg"));
    assert!(!is_thumbnail_type("image/svg+xml"));
}

#[test]
fn ranges_parse_against_the_size() {
    use RangeAsk::*;
    assert_eq!(parse_range(None, 10), Whole);
    assert_eq!(parse_range(Some("bytes=0-3"), 10), Part { start: 0, end: 3 });
    assert_eq!(parse_range(Some("bytes=5-"), 10), Part { start: 5, end: 9 });
    assert_eq!(parse_range(Some("bytes=-4"), 10), Part { start: 6, end: 9 });
    assert_eq!(parse_range(Some("bytes=-40"), 10), Part { start: 0, end: 9 });
    assert_eq!(parse_range(Some("bytes=8-100"), 10), Part { start: 8, end: 9 });
    assert_eq!(parse_range(Some("bytes=10-"), 10), Unsatisfiable);
    assert_eq!(parse_range(Some("bytes=-0"), 10), Unsatisfiable);
    assert_eq!(parse_range(Some("bytes=0-"), 0), Unsatisfiable);
    assert_eq!(parse_range(Some("bytes=5-2"), 10), Whole);
    assert_eq!(parse_range(Some("bytes=0-1,4-5"), 10), Whole);
    assert_eq!(parse_range(Some("items=0-1"), 10), Whole);
    assert_eq!(parse_range(Some("bytes=x-1"), 10), Whole);
    assert_eq!(parse_range(Some("bytes=1-x"), 10), Whole);
}

#[test]
fn multipart_round_trips_and_bounds() {
    let frame = multipart_frame("b0undary", "image/png", "inline; filename=\"a.png\"");
    assert_eq!(frame.content_type, "multipart/mixed; boundary=b0undary");
    let bytes: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    let mut body = frame.prefix.clone();
    body.extend_from_slice(&bytes);
    body.extend_from_slice(&frame.suffix);
    assert_eq!(
        parse_multipart(&frame.content_type, &body),
        Ok(MediaPart::Bytes {
            content_type: Some("image/png".into()),
            filename: Some("a.png".into()),
            body: bytes,
        })
    );
    let redirect = "--xyz\r\nContent-Type: application/json\r\n\r\n{}\r\n--xyz\r\nLocation: https://cdn.example/m\r\n\r\n\r\n--xyz--\r\n";
    assert_eq!(
        parse_multipart("multipart/mixed; boundary=\"xyz\"", redirect.as_bytes()),
        Ok(MediaPart::Location("https://cdn.example/m".into()))
    );
    assert_eq!(
        parse_multipart("application/json", b"{}"),
        Err(MultipartError::NotMultipart)
    );
    let one_part = "--xyz\r\nContent-Type: application/json\r\n\r\n{}\r\n--xyz--\r\n";
    assert!(parse_multipart("multipart/mixed; boundary=xyz", one_part.as_bytes()).is_err());
    let cut = &body[..body.len() - 10];
    assert!(parse_multipart(&frame.content_type, cut).is_err());
    assert!(parse_multipart("multipart/mixed; boundary=xyz", b"garbage").is_err());
}

#[test]
fn legacy_download_settings() {
    assert_eq!(LegacyDownload::parse(""), Some(LegacyDownload::Frozen));
    assert_eq!(LegacyDownload::parse("open"), Some(LegacyDownload::Open));
    assert_eq!(
        LegacyDownload::parse("1700000000000"),
        Some(LegacyDownload::Before(1_700_000_000_000))
    );
    assert_eq!(LegacyDownload::parse("soon"), None);
    assert!(!LegacyDownload::Frozen.serves(0));
    assert!(LegacyDownload::Before(10).serves(9));
    assert!(!LegacyDownload::Before(10).serves(10));
    assert!(LegacyDownload::Open.serves(u64::MAX));
}
