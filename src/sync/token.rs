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
    /// Position in the user's device-list changes (D1), for `device_lists`.
    #[serde(default)]
    pub device_lists: i64,
}

impl SyncToken {
    pub fn encode(&self) -> String {
        format!(
            "s{}_{}_{}_{}",
            self.stream, self.to_device, self.account_data, self.device_lists
        )
    }

    /// Parses a token; `None` for anything this server did not issue.
    pub fn decode(text: &str) -> Option<Self> {
        let mut parts = text.strip_prefix('s')?.split('_');
        let mut next = || -> Option<i64> { parts.next()?.parse::<i64>().ok().filter(|n| *n >= 0) };
        let mut token = Self {
            stream: next()?,
            to_device: next()?,
            account_data: next()?,
            device_lists: 0,
        };
        // Tokens from before device lists had three parts.
        if let Some(part) = parts.next() {
            token.device_lists = part.parse::<i64>().ok().filter(|n| *n >= 0)?;
        }
        parts.next().is_none().then_some(token)
    }

    /// Component-wise maximum.
    pub fn max(self, other: Self) -> Self {
        Self {
            stream: self.stream.max(other.stream),
            to_device: self.to_device.max(other.to_device),
            account_data: self.account_data.max(other.account_data),
            device_lists: self.device_lists.max(other.device_lists),
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
            device_lists: 7,
        };
        assert_eq!(t.encode(), "s12_3_40_7");
        assert_eq!(SyncToken::decode("s12_3_40_7"), Some(t));
        assert_eq!(
            SyncToken::decode("s12_3_40"),
            Some(SyncToken { device_lists: 0, ..t })
        );
        for bad in [
            "",
            "s",
            "12_3_40",
            "s1_2",
            "s1_2_3_4_5",
            "s1_2_3_-4",
            "s-1_2_3",
            "sx_1_2",
            "r5",
        ] {
            assert_eq!(SyncToken::decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn max_never_goes_backwards() {
        let a = SyncToken {
            stream: 5,
            to_device: 9,
            account_data: 1,
            device_lists: 0,
        };
        let b = SyncToken {
            stream: 7,
            to_device: 2,
            account_data: 1,
            device_lists: 0,
        };
        assert_eq!(
            a.max(b),
            SyncToken {
                stream: 7,
                to_device: 9,
                account_data: 1,
                device_lists: 0,
            }
        );
    }
}
