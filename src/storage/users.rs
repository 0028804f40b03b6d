//! `users` and `profiles`: accounts, password hashes, admin and deactivation flags,
//! display names and avatars.

use serde::Deserialize;

use super::{args, flag, stmt, Db, Result, Stmt};

#[derive(Debug, Clone, Deserialize)]
struct UserRow {
    password_hash: String,
    is_admin: i64,
    deactivated: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Empty for accounts that cannot log in with a password (deactivated ones).
    pub password_hash: String,
    pub is_admin: bool,
    pub deactivated: bool,
}

pub async fn get(db: &Db, user_id: &str) -> Result<Option<User>> {
    let row: Option<UserRow> = db
        .first(
            "SELECT password_hash, is_admin, deactivated FROM users WHERE user_id = ?1",
            args![user_id],
        )
        .await?;
    Ok(row.map(|r| User {
        password_hash: r.password_hash,
        is_admin: flag(r.is_admin),
        deactivated: flag(r.deactivated),
    }))
}

/// Whether the id was ever taken (deactivated ids stay taken forever).
pub async fn exists(db: &Db, user_id: &str) -> Result<bool> {
    let row: Option<serde_json::Value> = db
        .first("SELECT 1 AS one FROM users WHERE user_id = ?1", args![user_id])
        .await?;
    Ok(row.is_some())
}

/// A new account.
pub struct NewUser<'a> {
    pub user_id: &'a str,
    pub password_hash: &'a str,
    pub is_admin: bool,
    pub user_type: Option<&'a str>,
    pub displayname: Option<&'a str>,
    pub now_ms: u64,
}

/// Statements creating the user and its profile; batched with the first device and
/// token by the caller. Fails with a conflict if the id is taken.
pub fn create(user: &NewUser<'_>) -> Vec<Stmt> {
    vec![
        stmt(
            "INSERT INTO users (user_id, password_hash, is_admin, deactivated, user_type, created_ts) \
             VALUES (?1, ?2, ?3, 0, ?4, ?5)",
            args![
                user.user_id,
                user.password_hash,
                user.is_admin,
                user.user_type,
                user.now_ms
            ],
        ),
        stmt(
            "INSERT INTO profiles (user_id, displayname, avatar_url) VALUES (?1, ?2, NULL)",
            args![user.user_id, user.displayname],
        ),
    ]
}

pub fn set_password(user_id: &str, password_hash: &str) -> Stmt {
    stmt(
        "UPDATE users SET password_hash = ?2 WHERE user_id = ?1",
        args![user_id, password_hash],
    )
}

/// Which of `users` are guests.
pub async fn guests_among(db: &Db, users: &[String]) -> Result<Vec<String>> {
    if users.is_empty() {
        return Ok(Vec::new());
    }
    #[derive(Deserialize)]
    struct Row {
        user_id: String,
    }
    let list = serde_json::to_string(users).unwrap_or_else(|_| "[]".into());
    let rows: Vec<Row> = db
        .all(
            "SELECT user_id FROM guests WHERE user_id IN (SELECT value FROM json_each(?1))",
            args![list],
        )
        .await?;
    Ok(rows.into_iter().map(|r| r.user_id).collect())
}

/// Marks the account as a guest's.
pub fn mark_guest(user_id: &str) -> Stmt {
    stmt("INSERT INTO guests (user_id) VALUES (?1)", args![user_id])
}

/// A guest account becomes a full one.
pub fn unmark_guest(user_id: &str) -> Stmt {
    stmt("DELETE FROM guests WHERE user_id = ?1", args![user_id])
}

/// Marks the account deactivated, forgets its password and erases its profile. The row
/// stays so the id is never registered again.
pub fn deactivate(user_id: &str) -> Vec<Stmt> {
    vec![
        stmt(
            "UPDATE users SET deactivated = 1, password_hash = '' WHERE user_id = ?1",
            args![user_id],
        ),
        stmt(
            "UPDATE profiles SET displayname = NULL, avatar_url = NULL WHERE user_id = ?1",
            args![user_id],
        ),
    ]
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Profile {
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
}

/// The profile of an active local user; `None` for unknown or deactivated users.
pub async fn profile(db: &Db, user_id: &str) -> Result<Option<Profile>> {
    db.first(
        "SELECT p.displayname, p.avatar_url FROM profiles p JOIN users u ON u.user_id = p.user_id \
         WHERE p.user_id = ?1 AND u.deactivated = 0",
        args![user_id],
    )
    .await
}

pub async fn set_displayname(db: &Db, user_id: &str, displayname: Option<&str>) -> Result<()> {
    db.run(
        "UPDATE profiles SET displayname = ?2 WHERE user_id = ?1",
        args![user_id, displayname],
    )
    .await?;
    Ok(())
}

pub async fn set_avatar_url(db: &Db, user_id: &str, avatar_url: Option<&str>) -> Result<()> {
    db.run(
        "UPDATE profiles SET avatar_url = ?2 WHERE user_id = ?1",
        args![user_id, avatar_url],
    )
    .await?;
    Ok(())
}
