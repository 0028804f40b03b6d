//! Sync tokens: `s<stream>_<to_device>_<account_data>`. Opaque to clients; each part
//! only moves forward (`SyncToken::max`), so a token never goes backwards.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SyncToken {
    /// The user's stream position (User Durable Object `stream` table).
    pub stream: i64,
    /// The highest to-device message position delivered.
    pub to_device: i64,
    /// The highest account-data stream id delivered.
    pub account_data: i64,
}

impl SyncToken {
    pub fn encode(&self) -> String {
        format!("s{}_{}_{}", self.stream, self.to_device, self.account_data)
    }

    /// Parses a token; `None` for anything this server did not issue.
    pub fn decode(text: &str) -> Option<Self> {
        let mut parts = text.strip_prefix('s')?.split('_');
        let mut next = || -> Option<i64> { parts.next()?.parse::<i64>().ok().filter(|n| *n >= 0) };
        let token = Self {
            stream: next()?,
            to_device: next()?,
            account_data: next()?,
        };
        parts.next().is_none().then_some(token)
    }

    /// Component-wise maximum.
    pub fn max(self, other: Self) -> Self {
        Self {
            stream: self.stream.max(other.stream),
            to_device: self.to_device.max(other.to_device),
            account_data: self.account_data.max(other.account_data),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let t = SyncToken {
            stream: 12,
            to_device: 3,
            account_data: 40,
        };
        assert_eq!(t.encode(), "s12_3_40");
        assert_eq!(SyncToken::decode("s12_3_40"), Some(t));
        for bad in ["", "s", "12_3_40", "s1_2", "s1_2_3_4", "s-1_2_3", "sx_1_2", "r5"] {
            assert_eq!(SyncToken::decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn max_never_goes_backwards() {
        let a = SyncToken {
            stream: 5,
            to_device: 9,
            account_data: 1,
        };
        let b = SyncToken {
            stream: 7,
            to_device: 2,
            account_data: 1,
        };
        assert_eq!(
            a.max(b),
            SyncToken {
                stream: 7,
                to_device: 9,
                account_data: 1
            }
        );
    }
}
