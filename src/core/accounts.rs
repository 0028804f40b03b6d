//! Pure account logic: user id grammar, access-token and password-hash formats, the
//! shared-secret registration MAC and the user-interactive-auth flows. Randomness and
//! the KDF itself are passed in by callers (`platform` supplies both).

pub mod password;
pub mod shared_secret;
pub mod token;
pub mod username;

/// Lower-case hex of some bytes.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_encodes_lower_case() {
        assert_eq!(super::hex(&[0x00, 0xab, 0x7f]), "00ab7f");
        assert_eq!(super::hex(&[]), "");
    }
}
