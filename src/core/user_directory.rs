//! The user directory's search request (`POST /user_directory/search`): its checks,
//! and the patterns the storage query matches user ids and display names with.

use serde_json::Value;

/// Results when the request names no limit, and the most it may ask for.
pub const DEFAULT_LIMIT: u64 = 10;
pub const MAX_LIMIT: u64 = 100;
/// Longest search term, in bytes.
pub const MAX_TERM_BYTES: usize = 512;

/// A checked search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Search {
    /// Lower-cased, trimmed.
    pub term: String,
    pub limit: u64,
}

/// Checks the body: `search_term` a string (required), `limit` a positive integer.
pub fn parse(body: &Value) -> Result<Search, (&'static str, &'static str)> {
    let object = body
        .as_object()
        .ok_or(("M_BAD_JSON", "The body must be a JSON object"))?;
    let term = match object.get("search_term") {
        None | Some(Value::Null) => return Err(("M_MISSING_PARAM", "search_term is required")),
        Some(Value::String(t)) if t.len() > MAX_TERM_BYTES => {
            return Err(("M_INVALID_PARAM", "search_term is too long"))
        }
        Some(Value::String(t)) => t.trim().to_lowercase(),
        Some(_) => return Err(("M_BAD_JSON", "search_term must be a string")),
    };
    let limit = match object.get("limit") {
        None | Some(Value::Null) => DEFAULT_LIMIT,
        Some(Value::Number(n)) => match n.as_u64() {
            Some(l) if l > 0 => l.min(MAX_LIMIT),
            _ => return Err(("M_INVALID_PARAM", "limit must be a positive integer")),
        },
        Some(_) => return Err(("M_BAD_JSON", "limit must be an integer")),
    };
    Ok(Search { term, limit })
}

/// `term` as a SQL `LIKE` pattern: its wildcards escaped (escape character `\`), and
/// each character beyond ASCII any one character, since SQLite folds the case of ASCII
/// only (`matches` then decides exactly).
pub fn like_escape(term: &str) -> String {
    let mut out = String::with_capacity(term.len());
    for c in term.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(if c.is_ascii() { c } else { '_' });
    }
    out
}

/// Whether the (lower-cased) term is in the user id or the display name, whatever the
/// case, beyond ASCII too.
pub fn matches(term: &str, user_id: &str, display_name: Option<&str>) -> bool {
    user_id.to_lowercase().contains(term) || display_name.is_some_and(|n| n.to_lowercase().contains(term))
}

/// Rows the storage query reads for a page of `limit`: one more than the page, and
/// room for the rows `matches` drops when the term goes beyond ASCII.
pub fn rows_for(term: &str, limit: u64) -> u64 {
    if term.is_ascii() {
        limit + 1
    } else {
        (limit + 1) * 4 + 50
    }
}

/// The patterns of a search: anywhere in the id or name, and the prefixes that rank
/// first (the id's localpart, the name's start).
pub struct Patterns {
    pub anywhere: String,
    pub id_prefix: String,
    pub name_prefix: String,
}

pub fn patterns(term: &str) -> Patterns {
    let t = like_escape(term);
    let bare = like_escape(term.strip_prefix('@').unwrap_or(term));
    Patterns {
        anywhere: format!("%{t}%"),
        id_prefix: format!("@{bare}%"),
        name_prefix: format!("{t}%"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn searches_are_checked() {
        assert_eq!(
            parse(&json!({"search_term": " Alice "})),
            Ok(Search {
                term: "alice".into(),
                limit: 10
            })
        );
        assert_eq!(
            parse(&json!({"search_term": "a", "limit": 500})).map(|s| s.limit),
            Ok(100)
        );
        assert_eq!(parse(&json!({})).unwrap_err().0, "M_MISSING_PARAM");
        assert_eq!(parse(&json!({"search_term": 1})).unwrap_err().0, "M_BAD_JSON");
        assert_eq!(
            parse(&json!({"search_term": "a", "limit": 0})).unwrap_err().0,
            "M_INVALID_PARAM"
        );
        assert_eq!(
            parse(&json!({"search_term": "a", "limit": -1})).unwrap_err().0,
            "M_INVALID_PARAM"
        );
        assert_eq!(
            parse(&json!({"search_term": "a", "limit": "5"})).unwrap_err().0,
            "M_BAD_JSON"
        );
        assert_eq!(parse(&json!("x")).unwrap_err().0, "M_BAD_JSON");
    }

    #[test]
    fn case_is_folded_beyond_ascii() {
        let term = parse(&json!({"search_term": "ÖLAF är"})).expect("ok").term;
        assert_eq!(term, "ölaf är");
        assert_eq!(patterns(&term).anywhere, "%_laf _r%");
        assert!(matches(&term, "@o:hs", Some("Ölaf Ärger")));
        assert!(!matches(&term, "@o:hs", Some("Olaf Arger")));
        assert!(matches("bob", "@BOB:hs", None));
        assert_eq!(rows_for("bob", 10), 11);
        assert!(rows_for("ö", 10) > 11);
    }

    #[test]
    fn wildcards_are_escaped() {
        let p = patterns("a_b%");
        assert_eq!(p.anywhere, "%a\\_b\\%%");
        assert_eq!(patterns("@bob").id_prefix, "@bob%");
        assert_eq!(patterns("bob").id_prefix, "@bob%");
    }
}
