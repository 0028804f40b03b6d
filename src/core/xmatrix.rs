//! Request authentication between servers: the `X-Matrix` authorization scheme
//! (server-server API, "Request Authentication"). A request's method, target, origin,
//! destination and JSON body are wrapped in an object that the origin signs; the
//! signature travels in the `Authorization` header.

use ruma::signatures::verify_json;
use ruma::{CanonicalJsonObject, CanonicalJsonValue};

use super::keys::{public_key_map, KeyError, SigningKey};

/// The parameters of one `X-Matrix` authorization header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XMatrix {
    pub origin: String,
    /// Absent in requests from servers older than spec v1.3.
    pub destination: Option<String>,
    /// The key id, e.g. `ed25519:abc`.
    pub key: String,
    pub sig: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XMatrixError {
    #[error("Authorization header is not of the X-Matrix scheme")]
    Scheme,
    #[error("Malformed X-Matrix parameters")]
    Syntax,
    #[error("X-Matrix header lacks the {0} parameter")]
    Missing(&'static str),
    #[error("X-Matrix origin is not a valid server name")]
    Origin,
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Parses `X-Matrix origin="a",destination="b",key="ed25519:k",sig="…"`: names are
/// case-insensitive, in any order, values quoted (with backslash escapes) or bare
/// tokens (colons allowed, as older servers send them), spaces and tabs around commas
/// allowed, unknown parameters ignored.
pub fn parse(header: &str) -> Result<XMatrix, XMatrixError> {
    let header = header.trim_start();
    let (scheme, rest) = header.split_at(header.find([' ', '\t']).unwrap_or(header.len()));
    if !scheme.eq_ignore_ascii_case("X-Matrix") {
        return Err(XMatrixError::Scheme);
    }
    let bytes = rest.as_bytes();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < bytes.len() && (bytes[*i] == b' ' || bytes[*i] == b'\t') {
            *i += 1;
        }
    };
    let (mut origin, mut destination, mut key, mut sig) = (None, None, None, None);
    loop {
        skip_ws(&mut i);
        if i >= bytes.len() {
            break;
        }
        let start = i;
        while i < bytes.len() && is_tchar(bytes[i]) {
            i += 1;
        }
        if i == start || bytes.get(i) != Some(&b'=') {
            return Err(XMatrixError::Syntax);
        }
        let name = rest[start..i].to_ascii_lowercase();
        i += 1;
        let mut value = Vec::new();
        if bytes.get(i) == Some(&b'"') {
            i += 1;
            loop {
                match bytes.get(i) {
                    None => return Err(XMatrixError::Syntax),
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') => {
                        let escaped = *bytes.get(i + 1).ok_or(XMatrixError::Syntax)?;
                        value.push(escaped);
                        i += 2;
                    }
                    Some(&b) => {
                        value.push(b);
                        i += 1;
                    }
                }
            }
        } else {
            let start = i;
            while i < bytes.len() && (is_tchar(bytes[i]) || bytes[i] == b':') {
                i += 1;
            }
            if i == start {
                return Err(XMatrixError::Syntax);
            }
            value.extend_from_slice(&bytes[start..i]);
        }
        let value = String::from_utf8(value).map_err(|_| XMatrixError::Syntax)?;
        let slot = match name.as_str() {
            "origin" => Some(&mut origin),
            "destination" => Some(&mut destination),
            "key" => Some(&mut key),
            "sig" => Some(&mut sig),
            _ => None,
        };
        if let Some(slot) = slot {
            if slot.is_some() {
                return Err(XMatrixError::Syntax);
            }
            *slot = Some(value);
        }
        skip_ws(&mut i);
        match bytes.get(i) {
            None => break,
            Some(b',') => i += 1,
            Some(_) => return Err(XMatrixError::Syntax),
        }
    }
    let origin = origin.ok_or(XMatrixError::Missing("origin"))?;
    if <&ruma::ServerName>::try_from(origin.as_str()).is_err() {
        return Err(XMatrixError::Origin);
    }
    Ok(XMatrix {
        origin,
        destination,
        key: key.ok_or(XMatrixError::Missing("key"))?,
        sig: sig.ok_or(XMatrixError::Missing("sig"))?,
    })
}

/// The object that is signed: `{method, uri, origin, destination, content?}`.
pub fn request_object(
    method: &str,
    uri: &str,
    origin: &str,
    destination: Option<&str>,
    content: Option<CanonicalJsonValue>,
) -> CanonicalJsonObject {
    let text = |s: &str| CanonicalJsonValue::String(s.to_owned());
    let mut object = CanonicalJsonObject::new();
    object.insert("method".into(), text(method));
    object.insert("uri".into(), text(uri));
    object.insert("origin".into(), text(origin));
    if let Some(destination) = destination {
        object.insert("destination".into(), text(destination));
    }
    if let Some(content) = content {
        object.insert("content".into(), content);
    }
    object
}

/// The `Authorization` header value for a request from `origin` to `destination`.
/// `uri` is the path with its query string, as sent.
pub fn authorization(
    key: &SigningKey,
    origin: &str,
    destination: &str,
    method: &str,
    uri: &str,
    content: Option<CanonicalJsonValue>,
) -> Result<String, KeyError> {
    let mut object = request_object(method, uri, origin, Some(destination), content);
    key.sign_object(origin, &mut object)?;
    let sig = object
        .get("signatures")
        .and_then(|s| match s {
            CanonicalJsonValue::Object(o) => o.get(origin),
            _ => None,
        })
        .and_then(|s| match s {
            CanonicalJsonValue::Object(o) => o.get(&key.key_id()),
            _ => None,
        })
        .and_then(|s| match s {
            CanonicalJsonValue::String(s) => Some(s.clone()),
            _ => None,
        })
        .ok_or_else(|| KeyError::Sign("no signature produced".into()))?;
    Ok(format!(
        "X-Matrix origin=\"{origin}\",destination=\"{destination}\",key=\"{}\",sig=\"{sig}\"",
        key.key_id()
    ))
}

/// Whether `auth.sig` is `auth.origin`'s signature, with `public_key` (unpadded base64)
/// as `auth.key`, over this request.
pub fn verify(
    auth: &XMatrix,
    public_key: &str,
    method: &str,
    uri: &str,
    content: Option<CanonicalJsonValue>,
) -> bool {
    let Ok(keys) = public_key_map(&[(&auth.origin, &auth.key, public_key)]) else {
        return false;
    };
    let mut object = request_object(method, uri, &auth.origin, auth.destination.as_deref(), content);
    let mut by_key = CanonicalJsonObject::new();
    by_key.insert(auth.key.clone(), CanonicalJsonValue::String(auth.sig.clone()));
    let mut signatures = CanonicalJsonObject::new();
    signatures.insert(auth.origin.clone(), CanonicalJsonValue::Object(by_key));
    object.insert("signatures".into(), CanonicalJsonValue::Object(signatures));
    verify_json(&keys, &object).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        SigningKey::parse("ed25519 1 YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1").expect("key")
    }

    #[test]
    fn parses_the_spec_example_and_its_variants() {
        let expected = XMatrix {
            origin: "origin.hs.example.com".into(),
            destination: Some("destination.hs.example.com".into()),
            key: "ed25519:key1".into(),
            sig: "ABCDEF".into(),
        };
        for header in [
            r#"X-Matrix origin="origin.hs.example.com",destination="destination.hs.example.com",key="ed25519:key1",sig="ABCDEF""#,
            r#"X-Matrix  ORIGIN=origin.hs.example.com , Destination="destination.hs.example.com",	key=ed25519:key1,sig="ABC\DEF""#,
            r#"x-matrix sig=ABCDEF,key="ed25519:key1",extra="ignored, really",origin="origin.hs.example.com",destination=destination.hs.example.com"#,
        ] {
            assert_eq!(parse(header), Ok(expected.clone()), "{header}");
        }
        let old = parse(r#"X-Matrix origin=a.example,key="ed25519:k",sig="s""#).expect("no destination");
        assert_eq!(old.destination, None);
    }

    #[test]
    fn refuses_malformed_headers() {
        assert_eq!(parse("Bearer abc"), Err(XMatrixError::Scheme));
        assert_eq!(parse("X-Matrix"), Err(XMatrixError::Missing("origin")));
        assert_eq!(
            parse(r#"X-Matrix origin="a.b",key="k""#),
            Err(XMatrixError::Missing("sig"))
        );
        assert_eq!(
            parse(r#"X-Matrix origin="a.b,key="k",sig="s""#),
            Err(XMatrixError::Syntax)
        );
        assert_eq!(
            parse(r#"X-Matrix origin="a.b" key="k",sig="s""#),
            Err(XMatrixError::Syntax)
        );
        assert_eq!(
            parse(r#"X-Matrix origin=,key="k",sig="s""#),
            Err(XMatrixError::Syntax)
        );
        assert_eq!(
            parse(r#"X-Matrix origin="a.b",origin="c.d",key="k",sig="s""#),
            Err(XMatrixError::Syntax)
        );
        assert_eq!(
            parse(r#"X-Matrix origin="not a name",key="k",sig="s""#),
            Err(XMatrixError::Origin)
        );
        assert_eq!(
            parse(r#"X-Matrix origin="a.b",key="k",sig="s\"#),
            Err(XMatrixError::Syntax)
        );
    }

    #[test]
    fn signs_and_verifies_requests() {
        let k = key();
        let content: CanonicalJsonValue = serde_json::from_value(serde_json::json!({"a": 1})).expect("json");
        let header = authorization(
            &k,
            "origin.example",
            "dest.example",
            "PUT",
            "/_matrix/x?y=1",
            Some(content.clone()),
        )
        .expect("sign");
        let auth = parse(&header).expect("parse own header");
        assert_eq!(auth.origin, "origin.example");
        assert_eq!(auth.destination.as_deref(), Some("dest.example"));
        assert_eq!(auth.key, "ed25519:1");
        let pk = k.public_key_base64();
        assert!(verify(&auth, &pk, "PUT", "/_matrix/x?y=1", Some(content.clone())));
        // Any change to what was signed breaks it.
        assert!(!verify(
            &auth,
            &pk,
            "POST",
            "/_matrix/x?y=1",
            Some(content.clone())
        ));
        assert!(!verify(
            &auth,
            &pk,
            "PUT",
            "/_matrix/x?y=2",
            Some(content.clone())
        ));
        assert!(!verify(&auth, &pk, "PUT", "/_matrix/x?y=1", None));
        let other: CanonicalJsonValue = serde_json::from_value(serde_json::json!({"a": 2})).expect("json");
        assert!(!verify(&auth, &pk, "PUT", "/_matrix/x?y=1", Some(other)));
        let elsewhere = XMatrix {
            destination: Some("other.example".into()),
            ..auth.clone()
        };
        assert!(!verify(
            &elsewhere,
            &pk,
            "PUT",
            "/_matrix/x?y=1",
            Some(content.clone())
        ));
        let stranger = SigningKey::from_seed([9; 32], "1").expect("key");
        assert!(!verify(
            &auth,
            &stranger.public_key_base64(),
            "PUT",
            "/_matrix/x?y=1",
            Some(content)
        ));
        assert!(!verify(&auth, "not base64!", "GET", "/", None));
    }
}
