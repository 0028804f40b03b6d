//! A minimal HTTP/1.1 client codec for federation requests over raw TCP sockets: one
//! request per connection (`Connection: close`), the response read to its end and
//! then parsed (`Content-Length`, chunked, or until close), bounded in size.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Http1Error {
    #[error("response is incomplete")]
    Incomplete,
    #[error("response is malformed: {0}")]
    Malformed(&'static str),
    #[error("response is larger than {0} bytes")]
    TooLarge(usize),
}

/// Encodes a request. `target` is the path with its query; `headers` must not contain
/// `Host`, `Content-Length` or `Connection` (added here).
pub fn encode_request(
    method: &str,
    target: &str,
    host: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut out = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (name, value) in headers {
        out.push_str(name);
        out.push_str(": ");
        out.push_str(value);
        out.push_str("\r\n");
    }
    if !body.is_empty() || method != "GET" {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Whether `data` (what was read so far) already holds a whole response, so reading
/// can stop before the peer closes.
pub fn is_complete(data: &[u8]) -> bool {
    match parse_head(data) {
        Ok((_, headers, start)) => match framing(&headers) {
            Framing::Length(len) => data.len() >= start + len,
            Framing::Chunked => decode_chunked(&data[start..]).is_ok(),
            Framing::Close => false,
        },
        Err(_) => false,
    }
}

enum Framing {
    Length(usize),
    Chunked,
    Close,
}

fn framing(headers: &[(String, String)]) -> Framing {
    let get = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    if get("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        return Framing::Chunked;
    }
    match get("content-length").and_then(|v| v.trim().parse::<usize>().ok()) {
        Some(len) => Framing::Length(len),
        None => Framing::Close,
    }
}

type Head = (u16, Vec<(String, String)>, usize);

fn parse_head(data: &[u8]) -> Result<Head, Http1Error> {
    let end = find(data, b"\r\n\r\n").ok_or(Http1Error::Incomplete)?;
    let head = std::str::from_utf8(&data[..end]).map_err(|_| Http1Error::Malformed("head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or(Http1Error::Malformed("no status line"))?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(Http1Error::Malformed("not HTTP/1.x"));
    }
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|s| (100..600).contains(s))
        .ok_or(Http1Error::Malformed("bad status"))?;
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line.split_once(':').ok_or(Http1Error::Malformed("bad header"))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    Ok((status, headers, end + 4))
}

fn decode_chunked(mut data: &[u8]) -> Result<Vec<u8>, Http1Error> {
    let mut body = Vec::new();
    loop {
        let line_end = find(data, b"\r\n").ok_or(Http1Error::Incomplete)?;
        let line = std::str::from_utf8(&data[..line_end]).map_err(|_| Http1Error::Malformed("chunk size"))?;
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| Http1Error::Malformed("chunk size"))?;
        data = &data[line_end + 2..];
        if size == 0 {
            // Trailers (ignored) end with an empty line.
            return if data.starts_with(b"\r\n") || find(data, b"\r\n\r\n").is_some() {
                Ok(body)
            } else {
                Err(Http1Error::Incomplete)
            };
        }
        if data.len() < size + 2 {
            return Err(Http1Error::Incomplete);
        }
        body.extend_from_slice(&data[..size]);
        if &data[size..size + 2] != b"\r\n" {
            return Err(Http1Error::Malformed("chunk end"));
        }
        data = &data[size + 2..];
    }
}

/// Parses a whole response (read until the peer closed, or [`is_complete`]); a body
/// over `limit` bytes is refused.
pub fn parse_response(data: &[u8], limit: usize) -> Result<Response, Http1Error> {
    let (status, headers, start) = parse_head(data)?;
    let rest = &data[start..];
    let body = match framing(&headers) {
        Framing::Length(len) if len > limit => return Err(Http1Error::TooLarge(limit)),
        Framing::Length(len) => rest.get(..len).ok_or(Http1Error::Incomplete)?.to_vec(),
        Framing::Chunked => decode_chunked(rest)?,
        Framing::Close => rest.to_vec(),
    };
    if body.len() > limit {
        return Err(Http1Error::TooLarge(limit));
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_requests() {
        let req = encode_request(
            "PUT",
            "/a?b=1",
            "e.org:8448",
            &[("Authorization", "X-Matrix x")],
            b"{}",
        );
        let text = String::from_utf8(req).expect("text");
        assert_eq!(
            text,
            "PUT /a?b=1 HTTP/1.1\r\nHost: e.org:8448\r\nConnection: close\r\nAuthorization: X-Matrix x\r\nContent-Length: 2\r\n\r\n{}"
        );
        let get = String::from_utf8(encode_request("GET", "/", "h", &[], b"")).expect("text");
        assert!(!get.contains("Content-Length"));
    }

    #[test]
    fn parses_length_chunked_and_close_delimited_bodies() {
        let data = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}extra";
        assert!(is_complete(data));
        let r = parse_response(data, 100).expect("parse");
        assert_eq!((r.status, r.body.as_slice()), (200, &b"{}"[..]));
        assert_eq!(r.header("Content-Type"), Some("application/json"));

        let chunked = b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        assert!(is_complete(chunked));
        let r = parse_response(chunked, 100).expect("parse");
        assert_eq!((r.status, r.body.as_slice()), (404, &b"abcde"[..]));
        assert!(!is_complete(&chunked[..chunked.len() - 3]));

        let close = b"HTTP/1.0 200 OK\r\n\r\nhello";
        assert!(!is_complete(close));
        assert_eq!(parse_response(close, 100).expect("parse").body, b"hello");
    }

    #[test]
    fn refuses_bad_and_oversized_responses() {
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\n", 10),
            Err(Http1Error::Incomplete)
        );
        assert!(matches!(
            parse_response(b"SSH-2.0\r\n\r\n", 10),
            Err(Http1Error::Malformed(_))
        ));
        assert!(matches!(
            parse_response(b"HTTP/1.1 abc OK\r\n\r\n", 10),
            Err(Http1Error::Malformed(_))
        ));
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n", 10),
            Err(Http1Error::TooLarge(10))
        );
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\n\r\n0123456789ab", 10),
            Err(Http1Error::TooLarge(10))
        );
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", 10),
            Err(Http1Error::Incomplete)
        );
        assert!(matches!(
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 10),
            Err(Http1Error::Malformed(_))
        ));
    }
}
