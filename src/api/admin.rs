//! Synapse-compatible admin endpoints: shared-secret registration and registration-token
//! management, so the usual tooling (`register_new_matrix_user`, admin scripts) works.

pub mod register;
pub mod registration_tokens;
