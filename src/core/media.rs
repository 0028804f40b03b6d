//! The content repository's pure rules: media ids, the headers media is served with
//! (`Content-Disposition` inline only for the spec's safe types), `Range` requests, and
//! the `multipart/mixed` answers of the federation media endpoints (built for our own
//! media, parsed, bounded, from other servers).

/// Longest content type, file name and media id accepted.
pub const MAX_CONTENT_TYPE: usize = 255;
pub const MAX_FILENAME: usize = 255;
pub const MAX_MEDIA_ID: usize = 255;

/// The `Content-Security-Policy` every piece of media is served with.
pub const CONTENT_SECURITY_POLICY: &str = "sandbox; default-src 'none'; script-src 'none'; \
     plugin-types application/pdf; style-src 'unsafe-inline'; media-src 'self'; object-src 'self';";

/// Content types served `inline` (the spec's "Serving inline content" list); anything
/// else is an `attachment`.
const INLINE_TYPES: &[&str] = &[
    "text/css",
    "text/plain",
    "text/csv",
    "application/json",
    "application/ld+json",
    "image/jpeg",
    "image/gif",
    "image/png",
    "image/apng",
    "image/webp",
    "image/avif",
    "video/mp4",
    "video/webm",
    "video/ogg",
    "video/quicktime",
    "audio/mp4",
    "audio/webm",
    "audio/aac",
    "audio/mpeg",
    "audio/ogg",
    "audio/wave",
    "audio/wav",
    "audio/x-wav",
    "audio/x-pn-wav",
    "audio/flac",
    "audio/x-flac",
];

/// Content types a thumbnail may have.
const THUMBNAIL_TYPES: &[&str] = &["image/jpeg", "image/png", "image/apng", "image/gif", "image/webp"];

/// A media id: only `A-Za-z0-9`, `_` and `-` (the spec's rule against path tricks).
pub fn valid_media_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_MEDIA_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Where the bytes of `mxc://{origin}/{media_id}` are kept in the bucket.
pub fn object_key(origin: &str, media_id: &str) -> String {
    format!("{origin}/{media_id}")
}

/// A new media id from 24 random bytes: 24 characters of `A-Za-z0-9`.
pub fn media_id_from(random: &[u8; 24]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    random
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

/// The type and subtype of a content type, lower-cased, without parameters.
pub fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Whether media of this type is served `inline`.
pub fn is_inline(content_type: &str) -> bool {
    INLINE_TYPES.contains(&essence(content_type).as_str())
}

/// Whether this type can stand as a thumbnail (served as one when no smaller image is made).
pub fn is_thumbnail_type(content_type: &str) -> bool {
    THUMBNAIL_TYPES.contains(&essence(content_type).as_str())
}

/// A content type as sent by a client or another server, if it is safe to keep and to
/// send back in a header: printable ASCII, `type/subtype`, bounded.
pub fn clean_content_type(text: &str) -> Option<String> {
    let text = text.trim();
    let ok = !text.is_empty()
        && text.len() <= MAX_CONTENT_TYPE
        && text.bytes().all(|b| (0x20..0x7f).contains(&b))
        && essence(text)
            .split_once('/')
            .is_some_and(|(t, s)| !t.is_empty() && !s.is_empty());
    ok.then(|| text.to_owned())
}

/// A file name as given, if acceptable: no control characters, no path separators,
/// bounded.
pub fn clean_filename(name: &str) -> Option<String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_FILENAME
        && !name.chars().any(|c| c.is_control() || c == '/' || c == '\\');
    ok.then(|| name.to_owned())
}

/// The `Content-Disposition` for media of `content_type`, with its file name if any.
/// A name of plain printable ASCII goes as `filename="…"`; any other as RFC 6266's
/// `filename*=utf-8''…`, percent-encoded.
pub fn content_disposition(content_type: &str, filename: Option<&str>) -> String {
    let kind = if is_inline(content_type) {
        "inline"
    } else {
        "attachment"
    };
    match filename {
        None | Some("") => kind.to_owned(),
        Some(name)
            if name
                .bytes()
                .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\') =>
        {
            format!("{kind}; filename=\"{name}\"")
        }
        Some(name) => {
            let mut encoded = String::with_capacity(name.len() * 3);
            for b in name.bytes() {
                if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
                    encoded.push(b as char);
                } else {
                    encoded.push_str(&format!("%{b:02X}"));
                }
            }
            format!("{kind}; filename*=utf-8''{encoded}")
        }
    }
}

/// The file name in a `Content-Disposition` header (another server's), if any:
/// `filename*=utf-8''…` preferred over `filename=…`, cleaned.
pub fn disposition_filename(header: &str) -> Option<String> {
    let mut plain = None;
    let mut extended = None;
    for param in split_params(header).into_iter().skip(1) {
        let Some((key, value)) = param.split_once('=') else {
            continue;
        };
        let key = key.trim().to_ascii_lowercase();
        let value = value.trim();
        if key == "filename*" {
            let lower = value.to_ascii_lowercase();
            if let Some(rest) = lower.strip_prefix("utf-8''") {
                let raw = &value[value.len() - rest.len()..];
                extended = percent_decode(raw);
            }
        } else if key == "filename" {
            let unquoted = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .map(|v| v.replace("\\\"", "\"").replace("\\\\", "\\"))
                .unwrap_or_else(|| value.to_owned());
            plain = Some(unquoted);
        }
    }
    extended.or(plain).and_then(|name| clean_filename(&name))
}

/// Decodes `%XX` escapes; `None` for a bad escape or bytes that are not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Splits a header value at `;` outside quotes.
fn split_params(header: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in header.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ';' if !quoted => {
                parts.push(header[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(header[start..].trim());
    parts
}

/// What a `Range` header asks of an object of `size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeAsk {
    /// No range, or one this server does not serve partially (several ranges, other
    /// units, malformed): the whole object.
    Whole,
    /// Bytes `start..=end`.
    Part { start: u64, end: u64 },
    /// Nothing of the object is in the range: 416.
    Unsatisfiable,
}

/// Parses a single-range `bytes=` header (RFC 9110 §14.2) against `size`.
pub fn parse_range(header: Option<&str>, size: u64) -> RangeAsk {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeAsk::Whole;
    };
    if spec.contains(',') {
        return RangeAsk::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeAsk::Whole;
    };
    let number = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        // `bytes=-N`: the last N bytes.
        return match number(last) {
            Some(0) => RangeAsk::Unsatisfiable,
            Some(_) if size == 0 => RangeAsk::Unsatisfiable,
            Some(suffix) => RangeAsk::Part {
                start: size.saturating_sub(suffix),
                end: size - 1,
            },
            None => RangeAsk::Whole,
        };
    }
    let Some(start) = number(first) else {
        return RangeAsk::Whole;
    };
    let end = if last.is_empty() {
        None
    } else {
        match number(last) {
            Some(end) => Some(end),
            None => return RangeAsk::Whole,
        }
    };
    if start >= size {
        return RangeAsk::Unsatisfiable;
    }
    let end = end.map_or(size - 1, |e| e.min(size - 1));
    if end < start {
        RangeAsk::Whole
    } else {
        RangeAsk::Part { start, end }
    }
}

/// The framing of a `multipart/mixed` federation media answer around the media's
/// bytes: what comes before them and after, and the answer's content type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Multipart {
    pub content_type: String,
    pub prefix: Vec<u8>,
    pub suffix: Vec<u8>,
}

/// Frames media of `content_type` as the spec's two parts: `{}` as JSON, then the bytes
/// with their type and disposition. `boundary` must not occur in the bytes (a random
/// token of 32 hex characters is safe enough in practice).
pub fn multipart_frame(boundary: &str, content_type: &str, disposition: &str) -> Multipart {
    let prefix = format!(
        "--{boundary}\r\nContent-Type: application/json\r\n\r\n{{}}\r\n--{boundary}\r\n\
         Content-Type: {content_type}\r\nContent-Disposition: {disposition}\r\n\r\n"
    );
    Multipart {
        content_type: format!("multipart/mixed; boundary={boundary}"),
        prefix: prefix.into_bytes(),
        suffix: format!("\r\n--{boundary}--\r\n").into_bytes(),
    }
}

/// The media part of another server's `multipart/mixed` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaPart {
    /// The bytes, with the part's content type and disposition file name.
    Bytes {
        content_type: Option<String>,
        filename: Option<String>,
        body: Vec<u8>,
    },
    /// A redirect to where the bytes are.
    Location(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MultipartError {
    #[error("not multipart/mixed with a boundary")]
    NotMultipart,
    #[error("malformed multipart body: {0}")]
    Malformed(&'static str),
}

/// The boundary of a `multipart/mixed` content type.
pub fn multipart_boundary(content_type: &str) -> Option<String> {
    if essence(content_type) != "multipart/mixed" {
        return None;
    }
    split_params(content_type).into_iter().skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("boundary") {
            return None;
        }
        let v = v.trim();
        let v = v.strip_prefix('"').and_then(|s| s.strip_suffix('"')).unwrap_or(v);
        (!v.is_empty() && v.len() <= 70).then(|| v.to_owned())
    })
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    (from..=haystack.len() - needle.len()).find(|&i| &haystack[i..i + needle.len()] == needle)
}

/// Parses the spec's two-part answer: the first part (JSON metadata) is skipped, the
/// second is the media or a `Location`. Headers of a part are bounded (16 KB).
pub fn parse_multipart(content_type: &str, body: &[u8]) -> Result<MediaPart, MultipartError> {
    let boundary = multipart_boundary(content_type).ok_or(MultipartError::NotMultipart)?;
    let delimiter = format!("--{boundary}").into_bytes();
    let mut parts: Vec<(usize, usize)> = Vec::new();
    let mut pos = find(body, &delimiter, 0).ok_or(MultipartError::Malformed("no boundary"))?;
    loop {
        let after = pos + delimiter.len();
        if body.get(after..after + 2) == Some(b"--") {
            break;
        }
        // The rest of the delimiter line (transport padding), then the part.
        let line_end = find(body, b"\r\n", after).ok_or(MultipartError::Malformed("boundary line"))?;
        let start = line_end + 2;
        let mut next_delim = Vec::with_capacity(delimiter.len() + 2);
        next_delim.extend_from_slice(b"\r\n");
        next_delim.extend_from_slice(&delimiter);
        let end = find(body, &next_delim, start).ok_or(MultipartError::Malformed("unterminated part"))?;
        parts.push((start, end));
        if parts.len() > 2 {
            return Err(MultipartError::Malformed("more than two parts"));
        }
        pos = end + 2;
    }
    let &[_, (start, end)] = parts.as_slice() else {
        return Err(MultipartError::Malformed("not two parts"));
    };
    let part = &body[start..end];
    let head_end = if part.starts_with(b"\r\n") {
        0
    } else {
        find(part, b"\r\n\r\n", 0).ok_or(MultipartError::Malformed("part headers"))?
    };
    if head_end > 16 * 1024 {
        return Err(MultipartError::Malformed("part headers too long"));
    }
    let head =
        std::str::from_utf8(&part[..head_end]).map_err(|_| MultipartError::Malformed("part headers"))?;
    let body_start = if head_end == 0 { 2 } else { head_end + 4 };
    let mut content_type = None;
    let mut filename = None;
    for line in head.split("\r\n").filter(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            return Err(MultipartError::Malformed("part header line"));
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "location" => return Ok(MediaPart::Location(value.to_owned())),
            "content-type" => content_type = clean_content_type(value),
            "content-disposition" => filename = disposition_filename(value),
            _ => {}
        }
    }
    Ok(MediaPart::Bytes {
        content_type,
        filename,
        body: part[body_start.min(part.len())..].to_vec(),
    })
}

/// Who may download through the legacy, unauthenticated endpoints
/// (`MEDIA_LEGACY_DOWNLOAD`): the spec's freeze.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegacyDownload {
    /// Nothing: every download needs the authenticated endpoints (a new deployment).
    Frozen,
    /// Media created (uploaded, or cached from another server) before this moment (ms).
    Before(u64),
    /// Everything (no freeze).
    Open,
}

impl LegacyDownload {
    /// `frozen`, `open`, or a moment in milliseconds since the epoch.
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim() {
            "" | "frozen" => Some(Self::Frozen),
            "open" => Some(Self::Open),
            ms => ms.parse().ok().map(Self::Before),
        }
    }

    /// Whether media created at `created_ms` is served unauthenticated.
    pub fn serves(self, created_ms: u64) -> bool {
        match self {
            Self::Frozen => false,
            Self::Before(moment) => created_ms < moment,
            Self::Open => true,
        }
    }
}

#[cfg(test)]
mod tests;
