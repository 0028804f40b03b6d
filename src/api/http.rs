//! Platform-independent request and response types, body limits and JSON parsing.

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::MatrixError;

/// Largest JSON request body accepted by the client and federation APIs. Events are
/// capped at 65536 bytes; federation transactions carry up to 50 PDUs and 100 EDUs.
pub const MAX_JSON_BODY: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Delete,
    Options,
    Head,
    Other,
}

impl Method {
    pub fn parse(text: &str) -> Self {
        match text.to_ascii_uppercase().as_str() {
            "GET" => Self::Get,
            "POST" => Self::Post,
            "PUT" => Self::Put,
            "DELETE" => Self::Delete,
            "OPTIONS" => Self::Options,
            "HEAD" => Self::Head,
            _ => Self::Other,
        }
    }
}

#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: Method,
    /// The raw (still percent-encoded) path.
    pub path: String,
    /// Decoded query pairs, in order.
    pub query: Vec<(String, String)>,
    /// The query string as sent (what an `X-Matrix` signature covers).
    pub raw_query: Option<String>,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpRequest {
    /// The request target as sent: the raw path and query.
    pub fn target(&self) -> String {
        match &self.raw_query {
            Some(q) => format!("{}?{q}", self.path),
            None => self.path.clone(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// All values of a repeated query parameter.
    pub fn query_params<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.query
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON of type `T`: `M_NOT_JSON` when it is not JSON at all (an empty
    /// body counts as `{}`), `M_BAD_JSON` when it is JSON of the wrong shape.
    /// Parsed straight from the bytes (no intermediate `Value`).
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, MatrixError> {
        let text: &[u8] = if self.body.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &self.body
        };
        let is_object = text.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
        let parsed = if is_object {
            serde_json::from_slice::<T>(text)
        } else {
            Err(serde::de::Error::custom("not an object"))
        };
        parsed.map_err(|e| match serde_json::from_slice::<serde::de::IgnoredAny>(text) {
            Err(_) => MatrixError::not_json(),
            Ok(_) if !is_object => MatrixError::bad_json("Request body must be a JSON object"),
            Ok(_) => MatrixError::bad_json(format!("Invalid request body: {e}")),
        })
    }

    /// The body as a JSON object value.
    pub fn json_value(&self) -> Result<Value, MatrixError> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Object(Default::default()));
        }
        let value: Value = serde_json::from_slice(&self.body).map_err(|_| MatrixError::not_json())?;
        if !value.is_object() {
            return Err(MatrixError::bad_json("Request body must be a JSON object"));
        }
        Ok(value)
    }
}

#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn json(status: u16, value: &Value) -> Self {
        Self {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec()),
        }
    }

    pub fn ok(value: &Value) -> Self {
        Self::json(200, value)
    }

    pub fn error(err: &MatrixError) -> Self {
        Self::json(err.status(), &err.body())
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters (for a path segment
/// or a query value).
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes in a path segment or query component. `plus_as_space` is for
/// `application/x-www-form-urlencoded` query strings.
pub fn percent_decode(text: &str, plus_as_space: bool) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus_as_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Parses a raw query string into decoded pairs; undecodable pairs are dropped.
pub fn parse_query(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Some((percent_decode(k, true)?, percent_decode(v, true)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(body: &str) -> HttpRequest {
        HttpRequest {
            method: Method::Post,
            path: "/".into(),
            query: vec![],
            raw_query: None,
            headers: vec![],
            body: body.as_bytes().to_vec(),
        }
    }

    #[derive(serde::Deserialize, Debug)]
    struct Shape {
        #[allow(dead_code)]
        n: u32,
    }

    #[test]
    fn json_errors_distinguish_not_json_from_bad_json() {
        assert_eq!(req("{nope").json::<Shape>().unwrap_err().errcode, "M_NOT_JSON");
        assert_eq!(
            req("{\"n\": \"x\"}").json::<Shape>().unwrap_err().errcode,
            "M_BAD_JSON"
        );
        assert_eq!(req("[1]").json_value().unwrap_err().errcode, "M_BAD_JSON");
        assert!(req("{\"n\": 3}").json::<Shape>().is_ok());
        assert_eq!(
            req("  ").json_value().expect("empty is {}"),
            serde_json::json!({})
        );
    }

    #[test]
    fn decodes_percent_escapes() {
        assert_eq!(
            percent_decode("%21abc%3Aexample.org", false).as_deref(),
            Some("!abc:example.org")
        );
        assert_eq!(percent_decode("a+b", true).as_deref(), Some("a b"));
        assert_eq!(percent_decode("a+b", false).as_deref(), Some("a+b"));
        assert_eq!(percent_decode("%zz", false), None);
        assert_eq!(percent_decode("%4", false), None);
        assert_eq!(
            parse_query("a=1&b=%40x&c"),
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "@x".into()),
                ("c".into(), String::new())
            ]
        );
    }
}
