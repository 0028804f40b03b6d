//! The user id grammar: `@localpart:server_name`, localpart from `a-z 0-9 . _ = - / +`,
//! the whole id at most 255 bytes.

/// Longest user id, in bytes, including `@` and `:server_name`.
pub const MAX_USER_ID_BYTES: usize = 255;

/// Why a requested localpart is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsernameError {
    Empty,
    /// A character outside the grammar.
    InvalidCharacter,
    /// Purely numeric localparts are reserved (Synapse keeps them for guests).
    Numeric,
    /// `@localpart:server_name` would exceed 255 bytes.
    TooLong,
}

impl UsernameError {
    pub fn message(self) -> &'static str {
        match self {
            Self::Empty => "User ID cannot be empty",
            Self::InvalidCharacter => {
                "User ID can only contain the characters a-z, 0-9, '.', '_', '=', '-', '/' and '+'"
            }
            Self::Numeric => "Numeric user IDs are reserved",
            Self::TooLong => "User ID is longer than 255 bytes",
        }
    }
}

fn allowed(b: u8) -> bool {
    matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'=' | b'-' | b'/' | b'+')
}

/// Checks a localpart a client asks for (already lower-cased by the caller) and returns
/// the full user id.
pub fn validate_localpart(localpart: &str, server_name: &str) -> Result<String, UsernameError> {
    if !localpart.is_empty() && localpart.bytes().all(|b| b.is_ascii_digit()) {
        return Err(UsernameError::Numeric);
    }
    grammatical_user_id(localpart, server_name)
}

/// The user id of a localpart that follows the grammar (numeric ones included: guests
/// have them, and keep them when they upgrade).
fn grammatical_user_id(localpart: &str, server_name: &str) -> Result<String, UsernameError> {
    if localpart.is_empty() {
        return Err(UsernameError::Empty);
    }
    if !localpart.bytes().all(allowed) {
        return Err(UsernameError::InvalidCharacter);
    }
    let user_id = user_id(localpart, server_name);
    if user_id.len() > MAX_USER_ID_BYTES {
        return Err(UsernameError::TooLong);
    }
    Ok(user_id)
}

pub fn user_id(localpart: &str, server_name: &str) -> String {
    format!("@{localpart}:{server_name}")
}

/// The localpart of a user id on `server_name`, or `None` for a malformed id or one of
/// another server.
pub fn local_part<'a>(user_id: &'a str, server_name: &str) -> Option<&'a str> {
    let rest = user_id.strip_prefix('@')?;
    let (localpart, server) = rest.split_once(':')?;
    (server == server_name && !localpart.is_empty()).then_some(localpart)
}

/// Resolves what a client typed at login (a full user id or a bare localpart) to a
/// local user id. Anything that cannot be a local user is `None`.
pub fn login_user_id(input: &str, server_name: &str) -> Option<String> {
    let localpart = if input.starts_with('@') {
        local_part(input, server_name)?.to_ascii_lowercase()
    } else {
        input.to_ascii_lowercase()
    };
    grammatical_user_id(&localpart, server_name).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_grammar() {
        assert_eq!(
            validate_localpart("alice.b_c=d-e/f+g9", "hs.test").as_deref(),
            Ok("@alice.b_c=d-e/f+g9:hs.test")
        );
        assert_eq!(validate_localpart("a1", "hs"), Ok("@a1:hs".into()));
    }

    #[test]
    fn refuses_what_is_outside_it() {
        assert_eq!(validate_localpart("", "hs"), Err(UsernameError::Empty));
        for bad in ["Alice", "a b", "a:b", "a@b", "é", "a#b", "a!"] {
            assert_eq!(
                validate_localpart(bad, "hs"),
                Err(UsernameError::InvalidCharacter),
                "{bad}"
            );
        }
        assert_eq!(validate_localpart("12345", "hs"), Err(UsernameError::Numeric));
    }

    #[test]
    fn length_counts_the_whole_id() {
        let server = "hs.test"; // "@" + ":" + 7 = 9 bytes around the localpart
        let fits = "a".repeat(MAX_USER_ID_BYTES - 9);
        assert!(validate_localpart(&fits, server).is_ok());
        let over = "a".repeat(MAX_USER_ID_BYTES - 8);
        assert_eq!(validate_localpart(&over, server), Err(UsernameError::TooLong));
    }

    #[test]
    fn login_accepts_user_id_or_localpart() {
        assert_eq!(login_user_id("alice", "hs").as_deref(), Some("@alice:hs"));
        assert_eq!(login_user_id("@alice:hs", "hs").as_deref(), Some("@alice:hs"));
        assert_eq!(login_user_id("@Alice:hs", "hs").as_deref(), Some("@alice:hs"));
        assert_eq!(login_user_id("@alice:other", "hs"), None);
        assert_eq!(login_user_id("@:hs", "hs"), None);
        assert_eq!(login_user_id("a b", "hs"), None);
    }

    #[test]
    fn local_part_checks_the_server() {
        assert_eq!(local_part("@a:hs:8448", "hs:8448"), Some("a"));
        assert_eq!(local_part("@a:hs", "other"), None);
        assert_eq!(local_part("a:hs", "hs"), None);
    }
}
