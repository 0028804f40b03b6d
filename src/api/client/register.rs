//! Registration: `/register` with user-interactive auth per the registration mode,
//! `/register/available`, and the registration-token validity check.

use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::auth::client_ip;
use crate::api::auth::uia::{self, parse_auth, session_of};
use crate::api::client::login::{check_device_fields, new_login};
use crate::api::error::internal;
use crate::api::http::HttpRequest;
use crate::api::MatrixError;
use crate::config::RegistrationMode;
use crate::core::accounts::password::MAX_PASSWORD_BYTES;
use crate::core::accounts::token::random_string;
use crate::core::accounts::username::{validate_localpart, UsernameError};
use crate::platform::crypto::hash_password;
use crate::platform::{random_array, Ctx};
use crate::storage::{registration, users, Db};

fn username_error(e: UsernameError) -> MatrixError {
    MatrixError::new("M_INVALID_USERNAME", e.message())
}

fn closed() -> MatrixError {
    MatrixError::forbidden("Registration has been disabled")
}

/// Validates a requested username (lower-cased first, as Synapse does) and checks that
/// it was never taken; returns the user id.
pub async fn available_user_id(ctx: &Ctx, db: &Db, username: &str) -> Result<String, MatrixError> {
    let user_id =
        validate_localpart(&username.to_lowercase(), &ctx.config.server_name).map_err(username_error)?;
    if users::exists(db, &user_id).await? {
        return Err(MatrixError::new("M_USER_IN_USE", "User ID already taken"));
    }
    Ok(user_id)
}

/// Checks a new password's length.
pub fn check_new_password(password: &str) -> Result<(), MatrixError> {
    if password.is_empty() {
        return Err(MatrixError::new("M_WEAK_PASSWORD", "Password cannot be empty"));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(MatrixError::invalid_param("Password is too long"));
    }
    Ok(())
}

#[derive(Deserialize)]
struct RegisterBody {
    username: Option<String>,
    password: Option<String>,
    device_id: Option<String>,
    initial_device_display_name: Option<String>,
    #[serde(default)]
    inhibit_login: bool,
    #[serde(default)]
    #[allow(dead_code)]
    refresh_token: bool,
    /// Upgrades this guest account to a full one (same user id).
    guest_access_token: Option<String>,
}

/// `POST /_matrix/client/v3/register`
pub async fn register(ctx: &Ctx, req: &HttpRequest) -> Result<Value, MatrixError> {
    match req.query_param("kind") {
        None | Some("user") => {}
        Some("guest") if ctx.config.guest_access => return register_guest(ctx, req).await,
        Some("guest") => {
            return Err(MatrixError::new(
                "M_GUEST_ACCESS_FORBIDDEN",
                "Guest access is not allowed",
            ));
        }
        Some(_) => return Err(MatrixError::invalid_param("kind must be user or guest")),
    }
    let mode = ctx.config.registration;
    if mode == RegistrationMode::Closed {
        return Err(closed());
    }
    let value = req.json_value()?;
    let body: RegisterBody = serde_json::from_value(value.clone())
        .map_err(|e| MatrixError::bad_json(format!("Invalid request body: {e}")))?;
    let auth = parse_auth(&value)?;
    check_device_fields(
        body.device_id.as_deref(),
        body.initial_device_display_name.as_deref(),
    )?;
    if let Some(password) = &body.password {
        check_new_password(password)?;
    }
    let db = ctx.db()?;
    // Checked before user-interactive auth so clients can show the problem early. A
    // registration racing for the same id loses at the insert (`M_USER_IN_USE`).
    let upgrading = match &body.guest_access_token {
        Some(token) => Some(guest_to_upgrade(ctx, &db, token, body.username.as_deref()).await?),
        None => None,
    };
    let requested = match (&upgrading, &body.username) {
        (Some(_), _) => None,
        (None, Some(username)) => Some(available_user_id(ctx, &db, username).await?),
        (None, None) => None,
    };

    // User-interactive auth: one single-stage flow per mode.
    let session = session_of(auth.as_ref())?;
    let stage = match mode {
        RegistrationMode::Token => uia::REGISTRATION_TOKEN,
        _ => uia::DUMMY,
    };
    let stages = [stage];
    let Some(auth) = auth else {
        return Err(uia::challenge(&stages, &session, json!({})));
    };
    if auth.kind.as_deref() != Some(stage) {
        return Err(uia::failed(
            &stages,
            &session,
            json!({}),
            "M_FORBIDDEN",
            "Unsupported authentication type",
        ));
    }
    let token = match mode {
        RegistrationMode::Token => {
            let token = auth.token.clone().unwrap_or_default();
            let valid = registration::get_token(&db, &token)
                .await?
                .is_some_and(|t| t.is_valid(ctx.now_ms()));
            if !valid {
                return Err(uia::failed(
                    &stages,
                    &session,
                    json!({}),
                    "M_FORBIDDEN",
                    "Invalid registration token",
                ));
            }
            Some(token)
        }
        _ => None,
    };

    let password = body
        .password
        .as_deref()
        .ok_or_else(|| MatrixError::missing_param("Missing password"))?;
    if let Some(guest) = upgrading {
        let hash = hash_password(password).await.map_err(internal)?;
        return upgrade_guest(ctx, &db, &guest, &hash, &body, client_ip(req)).await;
    }
    let user_id = match requested {
        Some(user_id) => user_id,
        None => generated_user_id(ctx)?,
    };
    let hash = hash_password(password).await.map_err(internal)?;
    if let Some(token) = &token {
        if !registration::take_token_use(&db, token, ctx.now_ms()).await? {
            return Err(uia::failed(
                &stages,
                &session,
                json!({}),
                "M_FORBIDDEN",
                "Invalid registration token",
            ));
        }
    }
    let created = create_account(
        ctx,
        &db,
        &NewAccount {
            user_id: &user_id,
            password_hash: &hash,
            is_admin: false,
            user_type: None,
            displayname: None,
            login: (!body.inhibit_login).then_some((
                body.device_id.as_deref(),
                body.initial_device_display_name.as_deref(),
            )),
            ip: client_ip(req),
            guest: false,
        },
    )
    .await;
    if created.is_err() {
        if let Some(token) = &token {
            registration::return_token_use(&db, token).await?;
        }
    }
    let login = created?;
    let mut answer = json!({ "user_id": user_id, "home_server": ctx.config.server_name });
    if let Some((token, device_id)) = login {
        answer["access_token"] = json!(token);
        answer["device_id"] = json!(device_id);
    }
    Ok(answer)
}

/// `POST /_matrix/client/v3/register?kind=guest`: a guest account with a numeric id, no
/// password and one device, limited to the guest API until it is upgraded.
async fn register_guest(ctx: &Ctx, req: &HttpRequest) -> Result<Value, MatrixError> {
    let value = if req.body.is_empty() {
        json!({})
    } else {
        req.json_value()?
    };
    let display_name = value["initial_device_display_name"].as_str();
    check_device_fields(None, display_name)?;
    let random = random_array::<8>().map_err(internal)?;
    let localpart = (u64::from_le_bytes(random) % 10_000_000_000_000).to_string();
    // Numeric localparts are reserved for guests (ordinary registration refuses them).
    let user_id = format!("@{localpart}:{}", ctx.config.server_name);
    let db = ctx.db()?;
    let login = create_account(
        ctx,
        &db,
        &NewAccount {
            user_id: &user_id,
            password_hash: "",
            is_admin: false,
            user_type: None,
            displayname: None,
            login: Some((None, display_name)),
            ip: client_ip(req),
            guest: true,
        },
    )
    .await?;
    let (token, device_id) = login.ok_or_else(|| internal("guest registration without a login"))?;
    Ok(json!({
        "user_id": user_id,
        "home_server": ctx.config.server_name,
        "access_token": token,
        "device_id": device_id,
    }))
}

/// The guest account a `guest_access_token` names, which `username` (if given) must
/// name too: a guest upgrades only itself.
async fn guest_to_upgrade(
    ctx: &Ctx,
    db: &Db,
    token: &str,
    username: Option<&str>,
) -> Result<String, MatrixError> {
    let owner = crate::storage::devices::token_owner(db, &crate::core::accounts::token::token_hash(token))
        .await?
        .filter(|o| o.is_guest)
        .ok_or_else(|| MatrixError::forbidden("guest_access_token is not a guest's access token"))?;
    if let Some(name) = username {
        let named = crate::core::accounts::username::login_user_id(name, &ctx.config.server_name);
        if named.as_deref() != Some(owner.user_id.as_str()) {
            return Err(MatrixError::forbidden("A guest can only upgrade its own account"));
        }
    }
    Ok(owner.user_id)
}

/// Turns a guest account into a full one: the password set, the guest mark gone, and a
/// new login. The user id, rooms and devices stay.
async fn upgrade_guest(
    ctx: &Ctx,
    db: &Db,
    user_id: &str,
    password_hash: &str,
    body: &RegisterBody,
    ip: &str,
) -> Result<Value, MatrixError> {
    let mut stmts = vec![
        users::set_password(user_id, password_hash),
        users::unmark_guest(user_id),
    ];
    let mut answer = json!({ "user_id": user_id, "home_server": ctx.config.server_name });
    if !body.inhibit_login {
        let (more, token, device_id) = new_login(
            ctx,
            user_id,
            body.device_id.as_deref(),
            body.initial_device_display_name.as_deref(),
            ip,
        )?;
        stmts.extend(more);
        answer["access_token"] = json!(token);
        answer["device_id"] = json!(device_id);
    }
    db.batch(stmts).await?;
    // The guest's tokens, remembered as a guest's, now belong to a full account.
    crate::api::auth::token_cache::forget_all();
    Ok(answer)
}

fn generated_user_id(ctx: &Ctx) -> Result<String, MatrixError> {
    let random = random_array::<12>().map_err(internal)?;
    let localpart = format!(
        "u{}",
        random_string(&random, b"abcdefghijklmnopqrstuvwxyz0123456789")
    );
    validate_localpart(&localpart, &ctx.config.server_name).map_err(username_error)
}

/// An account to create, with an optional first login `(device_id, display_name)`.
pub struct NewAccount<'a> {
    pub user_id: &'a str,
    pub password_hash: &'a str,
    pub is_admin: bool,
    pub user_type: Option<&'a str>,
    /// Defaults to the localpart.
    pub displayname: Option<&'a str>,
    pub login: Option<(Option<&'a str>, Option<&'a str>)>,
    pub ip: &'a str,
    /// A guest account (`register?kind=guest`).
    pub guest: bool,
}

/// Creates the user, profile and (optionally) first device and token in one batch.
/// Returns `(access_token, device_id)` if a login was asked for; `M_USER_IN_USE` if the
/// id was taken in the meantime.
pub async fn create_account(
    ctx: &Ctx,
    db: &Db,
    account: &NewAccount<'_>,
) -> Result<Option<(String, String)>, MatrixError> {
    let localpart = account
        .user_id
        .strip_prefix('@')
        .and_then(|r| r.split(':').next())
        .unwrap_or(account.user_id);
    let mut stmts = users::create(&users::NewUser {
        user_id: account.user_id,
        password_hash: account.password_hash,
        is_admin: account.is_admin,
        user_type: account.user_type,
        displayname: Some(account.displayname.unwrap_or(localpart)),
        now_ms: ctx.now_ms(),
    });
    if account.guest {
        stmts.push(users::mark_guest(account.user_id));
    }
    let mut login = None;
    if let Some((device, display_name)) = account.login {
        let (more, token, device_id) = new_login(ctx, account.user_id, device, display_name, account.ip)?;
        stmts.extend(more);
        login = Some((token, device_id));
    }
    match db.batch(stmts).await {
        Ok(_) => Ok(login),
        Err(e) if e.is_conflict() => Err(MatrixError::new("M_USER_IN_USE", "User ID already taken")),
        Err(e) => Err(e.into()),
    }
}

/// `GET /_matrix/client/v3/register/available`
pub async fn available(ctx: &Ctx, req: &HttpRequest) -> Result<Value, MatrixError> {
    if ctx.config.registration == RegistrationMode::Closed {
        return Err(closed());
    }
    let username = req
        .query_param("username")
        .ok_or_else(|| MatrixError::missing_param("Missing username"))?;
    available_user_id(ctx, &ctx.db()?, username).await?;
    Ok(json!({ "available": true }))
}

/// `GET /_matrix/client/v1/register/m.login.registration_token/validity`
pub async fn token_validity(ctx: &Ctx, req: &HttpRequest) -> Result<Value, MatrixError> {
    if ctx.config.registration != RegistrationMode::Token {
        return Err(MatrixError::forbidden("Registration tokens are not enabled"));
    }
    let token = req
        .query_param("token")
        .ok_or_else(|| MatrixError::missing_param("Missing token"))?;
    let valid = registration::get_token(&ctx.db()?, token)
        .await?
        .is_some_and(|t| t.is_valid(ctx.now_ms()));
    Ok(json!({ "valid": valid }))
}
