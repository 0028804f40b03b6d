//! Admin endpoints. Synapse-compatible shared-secret registration and registration-token
//! management, so the usual tooling (`register_new_matrix_user`, admin scripts) works;
//! and Neurite's own (`/_neurite/admin/v1/...`).

pub mod log_replay;
pub mod register;
pub mod registration_tokens;
pub mod reports;
pub mod room_input;
