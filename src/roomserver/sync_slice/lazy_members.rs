//! Which member events each device has been sent under lazy loading, so an incremental
//! /sync does not send the same ones again (`include_redundant_members: false`, the
//! default).
//!
//! A member counts as sent only once the client has moved past the slice that carried
//! it: each is remembered with that slice's end (`to`), and a later slice skips it only
//! if it starts at or after that position. A sync answer lost on the way (the client
//! retries with the same token) therefore sends the member again. Kept in the Room DO's
//! memory: after a restart a device is sent its senders' member events once more, which
//! is redundant but never wrong.

use std::collections::HashMap;

/// Most devices remembered per room; past it the memo starts over.
const MAX_DEVICES: usize = 512;

/// Member state key → the earliest slice end that carried it, by `(user, device)`.
#[derive(Default)]
pub struct LazyMembers {
    sent: HashMap<(String, String), HashMap<String, i64>>,
}

impl LazyMembers {
    /// A room new to the device (initial sync, or joined since): it has nothing yet.
    pub fn start_over(&mut self, user: &str, device: &str) {
        self.sent.remove(&(user.to_owned(), device.to_owned()));
    }

    /// Whether a slice starting at `from` may leave `member` out: the device has moved
    /// past a slice that carried it.
    pub fn has(&self, user: &str, device: &str, member: &str, from: i64) -> bool {
        self.sent
            .get(&(user.to_owned(), device.to_owned()))
            .and_then(|s| s.get(member))
            .is_some_and(|to| *to <= from)
    }

    /// Records the member events a slice ending at `to` carries.
    pub fn sent<'a>(
        &mut self,
        user: &str,
        device: &str,
        to: i64,
        members: impl IntoIterator<Item = &'a str>,
    ) {
        let key = (user.to_owned(), device.to_owned());
        if self.sent.len() >= MAX_DEVICES && !self.sent.contains_key(&key) {
            self.sent.clear();
        }
        let set = self.sent.entry(key).or_default();
        for m in members {
            let at = set.entry(m.to_owned()).or_insert(to);
            *at = (*at).min(to);
        }
    }

    pub fn clear(&mut self) {
        self.sent.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sent_once_the_client_moved_past_it() {
        let mut m = LazyMembers::default();
        m.sent("@a", "D", 5, ["@b", "@c"]);
        // The same token again (the answer was lost): not yet.
        assert!(!m.has("@a", "D", "@b", 0));
        // From the answer's end on: sent.
        assert!(m.has("@a", "D", "@b", 5));
        assert!(!m.has("@a", "E", "@b", 5));
        m.start_over("@a", "D");
        assert!(!m.has("@a", "D", "@b", 9));
    }
}
