//! CORS headers for browser clients, as the client-server spec lists them.

pub const HEADERS: [(&str, &str); 3] = [
    ("Access-Control-Allow-Origin", "*"),
    ("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE, OPTIONS"),
    (
        "Access-Control-Allow-Headers",
        "X-Requested-With, Content-Type, Authorization",
    ),
];

/// Paths that carry CORS headers and answer preflight requests.
pub fn applies_to(path: &str) -> bool {
    path.starts_with("/_matrix/")
        || path.starts_with("/.well-known/matrix/")
        || path.starts_with("/_synapse/")
}
