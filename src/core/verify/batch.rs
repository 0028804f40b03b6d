//! Ed25519 batch verification with one term per signing key.
//!
//! A signature `(R, s)` by key `A` on message `M` is valid when `[s]B = R + [k]A`, with
//! `k = SHA-512(R ‖ A ‖ M) mod ℓ` (RFC 8032). For many signatures, a random linear
//! combination of those equations is checked at once:
//!
//! `[-Σ zᵢ·sᵢ]B + Σ [zᵢ]Rᵢ + Σⱼ [Σ_{i signed by Aⱼ} zᵢ·kᵢ]Aⱼ = 0`
//!
//! with 128-bit coefficients `zᵢ` that an attacker cannot predict. Received events come
//! from a handful of servers, so grouping the `A` terms by key leaves about one point per
//! signature instead of two, and a batch of hundreds of points runs Pippenger's
//! multi-scalar multiplication.
//!
//! The coefficients are derived from a hash of every signature and challenge in the batch
//! (the signer commits to all of them before learning any `zᵢ`), so verification is
//! deterministic. Like ed25519-dalek's batch verification this checks the equation without
//! the cofactor; a batch that fails is split and the single events are decided by
//! ed25519-dalek's one-signature verification.

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha512};

/// One signature to check: the message, the index of its key in the key list, the
/// signature.
pub struct Entry<'a> {
    pub message: &'a [u8],
    pub key: usize,
    pub signature: &'a Signature,
}

/// Whether every signature of `entries` is valid (with overwhelming probability). `false`
/// means at least one is not, or one is malformed (the caller then checks them apart).
pub fn verify(keys: &[VerifyingKey], entries: &[Entry<'_>]) -> bool {
    if entries.is_empty() {
        return true;
    }
    let mut seed = Sha512::new();
    seed.update(b"neurite ed25519 batch v1");
    let mut challenges = Vec::with_capacity(entries.len());
    let mut scalars = Vec::with_capacity(entries.len());
    let mut points = Vec::with_capacity(entries.len() + keys.len() + 1);
    for e in entries {
        let Some(key) = keys.get(e.key) else {
            return false;
        };
        let r = e.signature.r_bytes();
        let Some(s) = Option::<Scalar>::from(Scalar::from_canonical_bytes(*e.signature.s_bytes())) else {
            return false;
        };
        let Some(r_point) = CompressedEdwardsY(*r).decompress() else {
            return false;
        };
        let mut h = Sha512::new();
        h.update(r);
        h.update(key.as_bytes());
        h.update(e.message);
        let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
        seed.update(k.as_bytes());
        seed.update(r);
        seed.update(s.as_bytes());
        challenges.push((k, s));
        points.push(r_point);
    }
    let seed = seed.finalize();

    // zᵢ: 128 bits each, four per SHA-512 block of (seed ‖ block number).
    let mut zs = Vec::with_capacity(entries.len());
    let mut block = 0u64;
    while zs.len() < entries.len() {
        let mut h = Sha512::new();
        h.update(seed);
        h.update(block.to_le_bytes());
        let out = h.finalize();
        for chunk in out.chunks_exact(16) {
            let mut wide = [0u8; 32];
            wide[..16].copy_from_slice(chunk);
            zs.push(Scalar::from_bytes_mod_order(wide));
        }
        block += 1;
    }
    zs.truncate(entries.len());

    let mut b_coefficient = Scalar::ZERO;
    let mut key_coefficients = vec![Scalar::ZERO; keys.len()];
    for ((e, (k, s)), z) in entries.iter().zip(&challenges).zip(&zs) {
        b_coefficient -= z * s;
        key_coefficients[e.key] += z * k;
        scalars.push(*z);
    }
    for (key, c) in keys.iter().zip(&key_coefficients) {
        if *c != Scalar::ZERO {
            scalars.push(*c);
            points.push(key.to_edwards());
        }
    }
    scalars.push(b_coefficient);
    points.push(ED25519_BASEPOINT_POINT);
    EdwardsPoint::vartime_multiscalar_mul(&scalars, &points).is_identity()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn signer(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    struct Case {
        keys: Vec<VerifyingKey>,
        messages: Vec<Vec<u8>>,
        signatures: Vec<Signature>,
        key_of: Vec<usize>,
    }

    impl Case {
        /// `n` messages signed round-robin by three keys.
        fn new(n: usize) -> Self {
            let signers: Vec<_> = (1..=3).map(signer).collect();
            let keys = signers.iter().map(|s| s.verifying_key()).collect();
            let messages: Vec<Vec<u8>> = (0..n).map(|i| format!("message {i}").into_bytes()).collect();
            let key_of: Vec<usize> = (0..n).map(|i| i % 3).collect();
            let signatures = messages
                .iter()
                .zip(&key_of)
                .map(|(m, k)| signers[*k].sign(m))
                .collect();
            Case {
                keys,
                messages,
                signatures,
                key_of,
            }
        }

        fn verify(&self) -> bool {
            let entries: Vec<Entry<'_>> = self
                .messages
                .iter()
                .zip(&self.signatures)
                .zip(&self.key_of)
                .map(|((m, s), k)| Entry {
                    message: m,
                    key: *k,
                    signature: s,
                })
                .collect();
            verify(&self.keys, &entries)
        }
    }

    #[test]
    fn valid_batches_of_every_size_pass() {
        // Across the Straus / Pippenger boundary of the multi-scalar multiplication.
        for n in [0, 1, 2, 5, 64, 189, 190, 500] {
            assert!(Case::new(n).verify(), "{n} valid signatures");
        }
    }

    #[test]
    fn one_bad_signature_fails_the_batch() {
        for n in [1, 7, 300] {
            let mut case = Case::new(n);
            case.messages[n / 2].push(b'!');
            assert!(!case.verify(), "changed message among {n}");

            let mut case = Case::new(n);
            case.key_of[n / 2] = (case.key_of[n / 2] + 1) % 3;
            assert!(!case.verify(), "wrong key among {n}");

            let mut case = Case::new(n);
            let mut bytes = case.signatures[n / 2].to_bytes();
            bytes[40] ^= 1;
            case.signatures[n / 2] = Signature::from_bytes(&bytes);
            assert!(!case.verify(), "changed s among {n}");
        }
    }

    #[test]
    fn two_wrong_signatures_do_not_cancel_out() {
        // Swapping the signatures of two messages by the same key keeps the sums of `s`
        // and `R` the same; the per-signature coefficients still catch it.
        let mut case = Case::new(12);
        case.signatures.swap(0, 3);
        assert!(!case.verify());
    }

    #[test]
    fn malformed_signatures_fail() {
        let mut case = Case::new(4);
        // s ≥ ℓ (not canonical).
        let mut bytes = case.signatures[1].to_bytes();
        bytes[32..].copy_from_slice(&[0xff; 32]);
        case.signatures[1] = Signature::from_bytes(&bytes);
        assert!(!case.verify());
        // An index past the key list.
        let mut case = Case::new(4);
        case.key_of[2] = 9;
        assert!(!case.verify());
    }

    #[test]
    fn agrees_with_one_by_one_verification() {
        use ed25519_dalek::Verifier;
        let case = Case::new(20);
        for ((m, s), k) in case.messages.iter().zip(&case.signatures).zip(&case.key_of) {
            assert!(case.keys[*k].verify(m, s).is_ok());
        }
        assert!(case.verify());
    }
}
