//! WebCrypto from Rust: PBKDF2-HMAC-SHA256 runs natively in workerd through
//! `crypto.subtle`, far faster than the same KDF compiled to wasm.

use js_sys::{Array, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = ["crypto", "subtle"], js_name = importKey, catch)]
    fn import_key(
        format: &str,
        key_data: &Uint8Array,
        algorithm: &str,
        extractable: bool,
        usages: &Array,
    ) -> Result<Promise, JsValue>;

    #[wasm_bindgen(js_namespace = ["crypto", "subtle"], js_name = deriveBits, catch)]
    fn derive_bits(algorithm: &Object, key: &JsValue, length: u32) -> Result<Promise, JsValue>;
}

fn js_err(e: JsValue) -> String {
    format!("webcrypto: {e:?}")
}

/// PBKDF2-HMAC-SHA256 of `password` with `salt`, `out_len` bytes.
pub async fn pbkdf2_sha256(
    password: &[u8],
    salt: &[u8],
    iterations: u32,
    out_len: usize,
) -> Result<Vec<u8>, String> {
    let usages = Array::of1(&JsValue::from_str("deriveBits"));
    let key = import_key("raw", &Uint8Array::from(password), "PBKDF2", false, &usages).map_err(js_err)?;
    let key = JsFuture::from(key).await.map_err(js_err)?;
    let algorithm = Object::new();
    let set = |k: &str, v: &JsValue| Reflect::set(&algorithm, &JsValue::from_str(k), v).map_err(js_err);
    set("name", &JsValue::from_str("PBKDF2"))?;
    set("hash", &JsValue::from_str("SHA-256"))?;
    set("salt", &Uint8Array::from(salt).into())?;
    set("iterations", &JsValue::from_f64(f64::from(iterations)))?;
    let bits = u32::try_from(out_len * 8).map_err(|_| "output too long".to_owned())?;
    let derived = derive_bits(&algorithm, &key, bits).map_err(js_err)?;
    let derived = JsFuture::from(derived).await.map_err(js_err)?;
    Ok(Uint8Array::new(&derived).to_vec())
}

use crate::core::accounts::password::{PasswordHash, HASH_BYTES, ITERATIONS, SALT_BYTES};

/// Hashes a new password into the stored format.
pub async fn hash_password(password: &str) -> Result<String, String> {
    let salt = super::random_array::<SALT_BYTES>()?;
    let hash = pbkdf2_sha256(password.as_bytes(), &salt, ITERATIONS, HASH_BYTES).await?;
    Ok(PasswordHash {
        iterations: ITERATIONS,
        salt: salt.to_vec(),
        hash,
    }
    .format())
}

/// Whether `password` matches the stored hash. A missing or unparsable hash (no user,
/// a deactivated one) still costs one KDF run, so the answer takes the same time.
pub async fn verify_password(stored: Option<&str>, password: &str) -> Result<bool, String> {
    let parsed = stored.and_then(PasswordHash::parse);
    let (salt, iterations) = match &parsed {
        Some(h) => (h.salt.clone(), h.iterations),
        None => (vec![0; SALT_BYTES], ITERATIONS),
    };
    let derived = pbkdf2_sha256(password.as_bytes(), &salt, iterations, HASH_BYTES).await?;
    Ok(parsed.is_some_and(|h| h.matches(&derived)))
}
