//! Sessions of recently seen access tokens, per isolate, so that a client's burst of
//! requests costs one D1 read rather than one each.
//!
//! An entry lives `TTL_MS`. Whatever revokes tokens in this isolate (logout, device
//! deletion, password change, deactivation, a new login on the same device) calls
//! `forget_all` once its writes are done; a lookup that was in flight across that point
//! is not kept (`generation`). Other isolates may still accept a revoked token until
//! their entry expires: revocation takes effect everywhere within `TTL_MS`.

use std::cell::RefCell;
use std::collections::HashMap;

use super::Session;

/// How long a looked-up session is trusted without asking D1 again.
pub const TTL_MS: u64 = 10_000;
/// Most tokens remembered; past it the cache starts over.
const CAPACITY: usize = 4096;

#[derive(Default)]
pub struct TokenCache {
    entries: HashMap<String, (Session, u64)>,
    generation: u64,
}

impl TokenCache {
    /// The session of a token hash seen less than `TTL_MS` ago.
    pub fn get(&self, hash: &str, now_ms: u64) -> Option<Session> {
        self.entries
            .get(hash)
            .filter(|(_, expires)| now_ms < *expires)
            .map(|(session, _)| session.clone())
    }

    /// Marks the start of a D1 lookup; pass the result to `put`.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Remembers a looked-up session, unless tokens were revoked since the lookup began.
    pub fn put(&mut self, hash: &str, session: Session, generation: u64, now_ms: u64) {
        if generation != self.generation {
            return;
        }
        if self.entries.len() >= CAPACITY {
            self.entries.clear();
        }
        self.entries.insert(hash.to_owned(), (session, now_ms + TTL_MS));
    }

    /// Forgets every session (after tokens were revoked).
    pub fn forget_all(&mut self) {
        self.entries.clear();
        self.generation += 1;
    }
}

thread_local! {
    static CACHE: RefCell<TokenCache> = RefCell::new(TokenCache::default());
}

pub fn get(hash: &str, now_ms: u64) -> Option<Session> {
    CACHE.with(|c| c.borrow().get(hash, now_ms))
}

pub fn generation() -> u64 {
    CACHE.with(|c| c.borrow().generation())
}

pub fn put(hash: &str, session: Session, generation: u64, now_ms: u64) {
    CACHE.with(|c| c.borrow_mut().put(hash, session, generation, now_ms));
}

/// Call after any write that revokes access tokens or changes who they belong to.
pub fn forget_all() {
    CACHE.with(|c| c.borrow_mut().forget_all());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(user: &str) -> Session {
        Session {
            user_id: user.into(),
            device_id: "D".into(),
            is_admin: false,
            is_guest: false,
        }
    }

    #[test]
    fn entries_expire() {
        let mut cache = TokenCache::default();
        let g = cache.generation();
        cache.put("h", session("@a:x"), g, 1_000);
        assert_eq!(cache.get("h", 1_000 + TTL_MS - 1), Some(session("@a:x")));
        assert_eq!(cache.get("h", 1_000 + TTL_MS), None);
        assert_eq!(cache.get("other", 1_000), None);
    }

    #[test]
    fn revocation_forgets_and_drops_lookups_in_flight() {
        let mut cache = TokenCache::default();
        let g = cache.generation();
        cache.put("h", session("@a:x"), g, 0);
        let in_flight = cache.generation();
        cache.forget_all();
        assert_eq!(cache.get("h", 1), None);
        // A lookup that began before the revocation may have read the revoked row.
        cache.put("h", session("@a:x"), in_flight, 2);
        assert_eq!(cache.get("h", 3), None);
        let fresh = cache.generation();
        cache.put("h", session("@a:x"), fresh, 4);
        assert_eq!(cache.get("h", 5), Some(session("@a:x")));
    }
}
