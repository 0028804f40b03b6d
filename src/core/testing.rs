//! Test helpers shared by core and roomserver tests.

pub(crate) fn spec_vectors() -> serde_json::Value {
    let root = env!("CARGO_MANIFEST_DIR");
    let in_repo = format!("{root}/tests/fixtures/spec-vectors.json");
    let shared = format!("{root}/../shared/spec-vectors.json");
    let text = std::fs::read_to_string(&in_repo)
        .or_else(|_| std::fs::read_to_string(&shared))
        .expect("spec-vectors.json fixture");
    serde_json::from_str(&text).expect("fixture is JSON")
}
