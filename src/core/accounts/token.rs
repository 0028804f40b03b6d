//! Access tokens, device ids and other random identifiers, made from bytes the caller
//! draws from the platform RNG. Tokens are stored only as their SHA-256.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

/// Random bytes in an access token: 256 bits.
pub const TOKEN_BYTES: usize = 32;
/// Characters in a generated device id.
pub const DEVICE_ID_LEN: usize = 10;

/// An access token as handed to the client: `nrt_` and 256 random bits, base64url.
pub fn access_token(random: &[u8; TOKEN_BYTES]) -> String {
    format!("nrt_{}", URL_SAFE_NO_PAD.encode(random))
}

/// What the database keys tokens by: hex SHA-256 of the token text. Looking a token up
/// by its hash means timing reveals nothing about stored tokens.
pub fn token_hash(token: &str) -> String {
    super::hex(&Sha256::digest(token.as_bytes()))
}

/// Picks characters from `alphabet` using one random byte each (the small modulo bias
/// is irrelevant for identifiers that are not secrets).
pub fn random_string(random: &[u8], alphabet: &[u8]) -> String {
    random
        .iter()
        .map(|b| alphabet[usize::from(*b) % alphabet.len()] as char)
        .collect()
}

/// A device id such as `QWERTYUIOP`, from `DEVICE_ID_LEN` random bytes.
pub fn device_id(random: &[u8; DEVICE_ID_LEN]) -> String {
    random_string(random, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ")
}

pub const ALPHANUMERIC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_carry_256_bits_and_hash_to_hex() {
        let token = access_token(&[0xff; TOKEN_BYTES]);
        assert!(token.starts_with("nrt_"));
        assert_eq!(URL_SAFE_NO_PAD.decode(&token[4..]).expect("b64").len(), 32);
        let hash = token_hash("abc");
        assert_eq!(
            hash,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_ne!(
            token_hash(&token),
            token_hash(&access_token(&[0xfe; TOKEN_BYTES]))
        );
    }

    #[test]
    fn device_ids_are_upper_case_letters() {
        let id = device_id(&[0, 25, 26, 255, 1, 2, 3, 4, 5, 6]);
        assert_eq!(id.len(), DEVICE_ID_LEN);
        assert!(id.bytes().all(|b| b.is_ascii_uppercase()), "{id}");
        assert!(id.starts_with("AZA"));
    }
}
