//! Server-side search (`POST /search`, `room_events`): the request's checks, the FTS5
//! query a search term becomes, and the pagination token.

use serde_json::Value;

/// The event fields searched, and the FTS5 column each is indexed in.
pub const KEYS: [(&str, &str); 3] = [
    ("content.body", "body"),
    ("content.name", "name"),
    ("content.topic", "topic"),
];

/// Results per page when the filter names no limit, and the most a page may hold.
pub const DEFAULT_LIMIT: u64 = 10;
pub const MAX_LIMIT: u64 = 50;
/// Events of context on either side, when asked for, by default and at most.
pub const DEFAULT_CONTEXT: u64 = 5;
pub const MAX_CONTEXT: u64 = 20;
/// Deepest offset a `next_batch` may reach.
pub const MAX_OFFSET: u64 = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Rank,
    Recent,
}

/// `event_context`: how many events before and after, and whether with profiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context {
    pub before: u64,
    pub after: u64,
    pub include_profile: bool,
}

/// A checked `room_events` search.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomEvents {
    pub term: String,
    /// FTS5 columns searched.
    pub columns: Vec<&'static str>,
    pub order: Order,
    pub limit: u64,
    pub rooms: Option<Vec<String>>,
    pub not_rooms: Vec<String>,
    /// The filter's other parts (senders, types), applied by each room.
    pub filter: Option<Value>,
    pub context: Option<Context>,
    /// `room_id` and/or `sender`.
    pub group_by: Vec<String>,
    /// `include_state`: the state of each room with results.
    pub include_state: bool,
}

pub type Refusal = (&'static str, String);

fn bad(code: &'static str, why: impl Into<String>) -> Refusal {
    (code, why.into())
}

fn strings(value: Option<&Value>, field: &str) -> Result<Option<Vec<String>>, Refusal> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .map(Some)
            .ok_or_else(|| bad("M_BAD_JSON", format!("{field} must be a list of strings"))),
        Some(_) => Err(bad("M_BAD_JSON", format!("{field} must be a list of strings"))),
    }
}

fn count(value: Option<&Value>, field: &str, default: u64, max: u64) -> Result<u64, Refusal> {
    match value {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v
            .as_u64()
            .map(|n| n.min(max))
            .ok_or_else(|| bad("M_BAD_JSON", format!("{field} must be a non-negative integer"))),
    }
}

/// Checks the body of `POST /search`: `None` when it asks for no `room_events`.
pub fn parse(body: &Value) -> Result<Option<RoomEvents>, Refusal> {
    let categories = body
        .get("search_categories")
        .and_then(Value::as_object)
        .ok_or_else(|| bad("M_BAD_JSON", "search_categories must be an object"))?;
    let Some(room_events) = categories.get("room_events") else {
        return Ok(None);
    };
    let r = room_events
        .as_object()
        .ok_or_else(|| bad("M_BAD_JSON", "room_events must be an object"))?;
    let term = match r.get("search_term") {
        Some(Value::String(t)) => t.clone(),
        None | Some(Value::Null) => return Err(bad("M_MISSING_PARAM", "search_term is required")),
        Some(_) => return Err(bad("M_BAD_JSON", "search_term must be a string")),
    };
    let columns = match strings(r.get("keys"), "keys")? {
        None => KEYS.iter().map(|(_, c)| *c).collect(),
        Some(keys) if keys.is_empty() => KEYS.iter().map(|(_, c)| *c).collect(),
        Some(keys) => keys
            .iter()
            .map(|k| {
                KEYS.iter()
                    .find(|(key, _)| key == k)
                    .map(|(_, c)| *c)
                    .ok_or_else(|| bad("M_INVALID_PARAM", format!("Unknown search key {k}")))
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    let order = match r.get("order_by") {
        None | Some(Value::Null) => Order::Rank,
        Some(Value::String(o)) if o == "rank" => Order::Rank,
        Some(Value::String(o)) if o == "recent" => Order::Recent,
        Some(_) => return Err(bad("M_INVALID_PARAM", "order_by must be rank or recent")),
    };
    let filter = match r.get("filter") {
        None | Some(Value::Null) => None,
        Some(f @ Value::Object(_)) => Some(f.clone()),
        Some(_) => return Err(bad("M_BAD_JSON", "filter must be an object")),
    };
    let limit = count(
        filter.as_ref().and_then(|f| f.get("limit")),
        "filter.limit",
        DEFAULT_LIMIT,
        MAX_LIMIT,
    )?
    .max(1);
    let rooms = strings(filter.as_ref().and_then(|f| f.get("rooms")), "filter.rooms")?;
    let not_rooms = strings(
        filter.as_ref().and_then(|f| f.get("not_rooms")),
        "filter.not_rooms",
    )?
    .unwrap_or_default();
    for list in ["senders", "not_senders", "types", "not_types"] {
        strings(filter.as_ref().and_then(|f| f.get(list)), list)?;
    }
    let context = match r.get("event_context") {
        None | Some(Value::Null) => None,
        Some(Value::Object(c)) => Some(Context {
            before: count(
                c.get("before_limit"),
                "before_limit",
                DEFAULT_CONTEXT,
                MAX_CONTEXT,
            )?,
            after: count(c.get("after_limit"), "after_limit", DEFAULT_CONTEXT, MAX_CONTEXT)?,
            include_profile: c.get("include_profile").and_then(Value::as_bool).unwrap_or(false),
        }),
        Some(_) => return Err(bad("M_BAD_JSON", "event_context must be an object")),
    };
    let mut group_by = Vec::new();
    if let Some(groupings) = r.get("groupings").filter(|g| !g.is_null()) {
        let list = groupings
            .get("group_by")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("M_BAD_JSON", "groupings.group_by must be a list"))?;
        for g in list {
            match g.get("key").and_then(Value::as_str) {
                Some(k @ ("room_id" | "sender")) => group_by.push(k.to_owned()),
                _ => return Err(bad("M_INVALID_PARAM", "A group's key must be room_id or sender")),
            }
        }
    }
    let include_state = match r.get("include_state") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(bad("M_BAD_JSON", "include_state must be a boolean")),
    };
    Ok(Some(RoomEvents {
        include_state,
        term,
        columns,
        order,
        limit,
        rooms,
        not_rooms,
        filter,
        context,
        group_by,
    }))
}

/// The words of a search term (letters and digits), lower-cased: what is matched, and
/// the `highlights` of the answer.
pub fn words(term: &str) -> Vec<String> {
    let mut out: Vec<String> = term
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    out.dedup();
    out.truncate(16);
    out
}

/// The FTS5 query for a term over `columns`: every word, as a prefix, in any of them
/// (`None` when the term has no words). Words are quoted, so nothing in a term is
/// FTS5 syntax.
pub fn fts_query(term: &str, columns: &[&str]) -> Option<String> {
    let words = words(term);
    if words.is_empty() || columns.is_empty() {
        return None;
    }
    let filter = format!("{{{}}}", columns.join(" "));
    Some(
        words
            .iter()
            .map(|w| format!("{filter} : \"{}\"*", w.replace('"', "")))
            .collect::<Vec<_>>()
            .join(" AND "),
    )
}

/// The `next_batch` of a page that ends at `offset` results.
pub fn token(offset: u64) -> String {
    format!("o{offset}")
}

pub fn parse_token(text: &str) -> Option<u64> {
    text.strip_prefix('o')?.parse().ok().filter(|n| *n <= MAX_OFFSET)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn room_events(body: Value) -> Result<Option<RoomEvents>, Refusal> {
        parse(&json!({"search_categories": {"room_events": body}}))
    }

    #[test]
    fn requests_are_checked() {
        let r = room_events(json!({"search_term": "hello"}))
            .expect("ok")
            .expect("asked");
        assert_eq!(r.columns, ["body", "name", "topic"]);
        assert_eq!((r.order, r.limit), (Order::Rank, DEFAULT_LIMIT));
        let r = room_events(
            json!({"search_term": "x", "keys": ["content.body"], "order_by": "recent",
                                    "filter": {"limit": 500, "rooms": ["!a:hs"]},
                                    "event_context": {"before_limit": 1},
                                    "groupings": {"group_by": [{"key": "room_id"}]}}),
        )
        .expect("ok")
        .expect("asked");
        assert_eq!(r.columns, ["body"]);
        assert_eq!((r.order, r.limit), (Order::Recent, MAX_LIMIT));
        assert_eq!(r.rooms, Some(vec!["!a:hs".to_owned()]));
        assert_eq!(r.context.map(|c| (c.before, c.after)), Some((1, DEFAULT_CONTEXT)));
        assert_eq!(r.group_by, ["room_id"]);
        assert_eq!(parse(&json!({"search_categories": {}})), Ok(None));
        let code = |b: Value| room_events(b).unwrap_err().0;
        assert_eq!(parse(&json!({})).unwrap_err().0, "M_BAD_JSON");
        assert_eq!(code(json!({})), "M_MISSING_PARAM");
        assert_eq!(code(json!({"search_term": 1})), "M_BAD_JSON");
        assert_eq!(
            code(json!({"search_term": "a", "keys": ["content.x"]})),
            "M_INVALID_PARAM"
        );
        assert_eq!(
            code(json!({"search_term": "a", "order_by": "best"})),
            "M_INVALID_PARAM"
        );
        assert_eq!(
            code(json!({"search_term": "a", "filter": {"limit": "5"}})),
            "M_BAD_JSON"
        );
        assert_eq!(
            code(json!({"search_term": "a", "filter": {"rooms": "!a"}})),
            "M_BAD_JSON"
        );
        assert_eq!(
            code(json!({"search_term": "a", "groupings": {"group_by": [{"key": "x"}]}})),
            "M_INVALID_PARAM"
        );
    }

    #[test]
    fn terms_become_quoted_prefix_queries() {
        assert_eq!(
            fts_query("Hello, wor", &["body"]).as_deref(),
            Some("{body} : \"hello\"* AND {body} : \"wor\"*")
        );
        assert_eq!(
            fts_query("a\"b OR NEAR(", &["body", "name"]).as_deref(),
            Some("{body name} : \"a\"* AND {body name} : \"b\"* AND {body name} : \"or\"* AND {body name} : \"near\"*")
        );
        assert_eq!(fts_query("  ..  ", &["body"]), None);
        assert_eq!(words("Größe straße"), ["größe", "straße"]);
    }

    #[test]
    fn tokens_round_trip() {
        assert_eq!(parse_token(&token(20)), Some(20));
        assert_eq!(parse_token("x"), None);
        assert_eq!(parse_token("o99999"), None);
    }
}
