//! The route table: method + path pattern → endpoint. A path that matches no pattern
//! is 404 `M_UNRECOGNIZED`; a path that matches with another method is 405.

use super::error::MatrixError;
use super::http::{percent_decode, Method};

/// Every endpoint Neurite serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    // Rooms
    CreateRoom,
    JoinedRooms,
    JoinByIdOrAlias,
    JoinRoom,
    KnockRoom,
    LeaveRoom,
    ForgetRoom,
    InviteRoom,
    KickRoom,
    BanRoom,
    UnbanRoom,
    SendEvent,
    SendEventNoTxn,
    PutStateKeyed,
    PutStateEmpty,
    GetStateKeyed,
    GetStateEmpty,
    GetAllState,
    Redact,
    Messages,
    Context,
    GetEvent,
    Members,
    JoinedMembers,
    RoomAliases,
    GetAlias,
    PutAlias,
    DeleteAlias,
    GetRoomVisibility,
    PutRoomVisibility,
    PublicRooms,
    PublicRoomsPost,
    AdminRoomInput,
    AdminLogReplay,
    UpgradeRoom,
    ClientVersions,
    WellKnownClient,
    WellKnownServer,
    // Accounts
    LoginFlows,
    Login,
    Logout,
    LogoutAll,
    WhoAmI,
    Register,
    RegisterAvailable,
    RegistrationTokenValidity,
    RequestToken,
    Devices,
    GetDevice,
    PutDevice,
    DeleteDevice,
    DeleteDevices,
    ChangePassword,
    Deactivate,
    ThreePids,
    AddThreePid,
    RemoveThreePid,
    GetProfile,
    GetDisplayname,
    PutDisplayname,
    GetAvatarUrl,
    PutAvatarUrl,
    GetAccountData,
    PutAccountData,
    GetRoomAccountData,
    PutRoomAccountData,
    Capabilities,
    OpenIdRequestToken,
    ThirdPartyProtocols,
    ThirdPartyProtocol,
    ThirdPartyLookup,
    TurnServer,
    AdminRegisterNonce,
    AdminRegister,
    AdminListRegistrationTokens,
    AdminNewRegistrationToken,
    AdminGetRegistrationToken,
    AdminUpdateRegistrationToken,
    AdminDeleteRegistrationToken,
    // End-to-end encryption
    KeysUpload,
    KeysQuery,
    KeysClaim,
    KeysChanges,
    CrossSigningUpload,
    SignaturesUpload,
    BackupCreate,
    BackupLatest,
    BackupGet,
    BackupUpdate,
    BackupDelete,
    BackupPutAll,
    BackupGetAll,
    BackupDeleteAll,
    BackupPutRoom,
    BackupGetRoom,
    BackupDeleteRoom,
    BackupPutSession,
    BackupGetSession,
    BackupDeleteSession,
    // Sync
    Sync,
    PostFilter,
    GetFilter,
    SendToDevice,
    Typing,
    Receipt,
    ReadMarkers,
    GetPresence,
    PutPresence,
    // Legacy (`/initialSync`, `/events`)
    InitialSync,
    RoomInitialSync,
    EventStream,
    StreamEvent,
    // Push rules
    GetPushRules,
    GetPushRulesGlobal,
    GetPushRule,
    PutPushRule,
    DeletePushRule,
    GetPushRuleEnabled,
    PutPushRuleEnabled,
    GetPushRuleActions,
    PutPushRuleActions,
    // Everyday client features (`router/everyday.rs`)
    GetTags,
    PutTag,
    DeleteTag,
    ReportEvent,
    ReportRoom,
    ReportUser,
    AdminEventReports,
    AdminEventReport,
    AdminReports,
    UserDirectorySearch,
    Search,
    Hierarchy,
    RoomSummary,
}

use Endpoint as E;
use Method::{Delete, Get, Post, Put};

/// `(method, pattern, endpoint)`. `{name}` matches one path segment. Client paths are
/// written with `v3`; `r0` requests are normalized to `v3` before matching.
const ROUTES: &[(Method, &str, Endpoint)] = &[
    // Rooms
    (Post, "/_matrix/client/v3/createRoom", E::CreateRoom),
    (Get, "/_matrix/client/v3/joined_rooms", E::JoinedRooms),
    (
        Post,
        "/_matrix/client/v3/join/{roomIdOrAlias}",
        E::JoinByIdOrAlias,
    ),
    (Post, "/_matrix/client/v3/knock/{roomIdOrAlias}", E::KnockRoom),
    (Post, "/_matrix/client/v3/rooms/{roomId}/join", E::JoinRoom),
    (Post, "/_matrix/client/v3/rooms/{roomId}/leave", E::LeaveRoom),
    (Post, "/_matrix/client/v3/rooms/{roomId}/forget", E::ForgetRoom),
    (Post, "/_matrix/client/v3/rooms/{roomId}/invite", E::InviteRoom),
    (Post, "/_matrix/client/v3/rooms/{roomId}/kick", E::KickRoom),
    (Post, "/_matrix/client/v3/rooms/{roomId}/ban", E::BanRoom),
    (Post, "/_matrix/client/v3/rooms/{roomId}/unban", E::UnbanRoom),
    (
        Put,
        "/_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}",
        E::SendEvent,
    ),
    (
        Post,
        "/_matrix/client/v3/rooms/{roomId}/send/{eventType}",
        E::SendEventNoTxn,
    ),
    (
        Put,
        "/_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}",
        E::PutStateKeyed,
    ),
    (
        Put,
        "/_matrix/client/v3/rooms/{roomId}/state/{eventType}",
        E::PutStateEmpty,
    ),
    (
        Put,
        "/_matrix/client/v3/rooms/{roomId}/state/{eventType}/",
        E::PutStateEmpty,
    ),
    (
        Get,
        "/_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}",
        E::GetStateKeyed,
    ),
    (
        Get,
        "/_matrix/client/v3/rooms/{roomId}/state/{eventType}",
        E::GetStateEmpty,
    ),
    (
        Get,
        "/_matrix/client/v3/rooms/{roomId}/state/{eventType}/",
        E::GetStateEmpty,
    ),
    (Get, "/_matrix/client/v3/rooms/{roomId}/state", E::GetAllState),
    (
        Put,
        "/_matrix/client/v3/rooms/{roomId}/redact/{eventId}/{txnId}",
        E::Redact,
    ),
    (Get, "/_matrix/client/v3/rooms/{roomId}/messages", E::Messages),
    (
        Get,
        "/_matrix/client/v3/rooms/{roomId}/context/{eventId}",
        E::Context,
    ),
    (
        Get,
        "/_matrix/client/v3/rooms/{roomId}/event/{eventId}",
        E::GetEvent,
    ),
    (Get, "/_matrix/client/v3/rooms/{roomId}/members", E::Members),
    (
        Get,
        "/_matrix/client/v3/rooms/{roomId}/joined_members",
        E::JoinedMembers,
    ),
    (Get, "/_matrix/client/v3/rooms/{roomId}/aliases", E::RoomAliases),
    (Get, "/_matrix/client/v3/directory/room/{roomAlias}", E::GetAlias),
    (Put, "/_matrix/client/v3/directory/room/{roomAlias}", E::PutAlias),
    (
        Delete,
        "/_matrix/client/v3/directory/room/{roomAlias}",
        E::DeleteAlias,
    ),
    (
        Get,
        "/_matrix/client/v3/directory/list/room/{roomId}",
        E::GetRoomVisibility,
    ),
    (
        Put,
        "/_matrix/client/v3/directory/list/room/{roomId}",
        E::PutRoomVisibility,
    ),
    (Get, "/_matrix/client/v3/publicRooms", E::PublicRooms),
    (Post, "/_matrix/client/v3/publicRooms", E::PublicRoomsPost),
    (Post, "/_neurite/admin/v1/rooms/{roomId}/input", E::AdminRoomInput),
    (
        Post,
        "/_neurite/admin/v1/rooms/{roomId}/log/replay",
        E::AdminLogReplay,
    ),
    (Post, "/_matrix/client/v3/rooms/{roomId}/upgrade", E::UpgradeRoom),
    (Get, "/_matrix/client/versions", E::ClientVersions),
    (Get, "/.well-known/matrix/client", E::WellKnownClient),
    (Get, "/.well-known/matrix/server", E::WellKnownServer),
    // Accounts: login and sessions
    (Get, "/_matrix/client/v3/login", E::LoginFlows),
    (Post, "/_matrix/client/v3/login", E::Login),
    (Post, "/_matrix/client/v3/logout", E::Logout),
    (Post, "/_matrix/client/v3/logout/all", E::LogoutAll),
    (Get, "/_matrix/client/v3/account/whoami", E::WhoAmI),
    // registration
    (Post, "/_matrix/client/v3/register", E::Register),
    (Get, "/_matrix/client/v3/register/available", E::RegisterAvailable),
    (
        Get,
        "/_matrix/client/v1/register/m.login.registration_token/validity",
        E::RegistrationTokenValidity,
    ),
    (
        Post,
        "/_matrix/client/v3/register/email/requestToken",
        E::RequestToken,
    ),
    (
        Post,
        "/_matrix/client/v3/register/msisdn/requestToken",
        E::RequestToken,
    ),
    // devices
    (Get, "/_matrix/client/v3/devices", E::Devices),
    (Get, "/_matrix/client/v3/devices/{deviceId}", E::GetDevice),
    (Put, "/_matrix/client/v3/devices/{deviceId}", E::PutDevice),
    (Delete, "/_matrix/client/v3/devices/{deviceId}", E::DeleteDevice),
    (Post, "/_matrix/client/v3/delete_devices", E::DeleteDevices),
    // account
    (Post, "/_matrix/client/v3/account/password", E::ChangePassword),
    (Post, "/_matrix/client/v3/account/deactivate", E::Deactivate),
    (Get, "/_matrix/client/v3/account/3pid", E::ThreePids),
    (Post, "/_matrix/client/v3/account/3pid", E::AddThreePid),
    (Post, "/_matrix/client/v3/account/3pid/add", E::AddThreePid),
    (Post, "/_matrix/client/v3/account/3pid/bind", E::AddThreePid),
    (Post, "/_matrix/client/v3/account/3pid/delete", E::RemoveThreePid),
    (Post, "/_matrix/client/v3/account/3pid/unbind", E::RemoveThreePid),
    (
        Post,
        "/_matrix/client/v3/account/3pid/email/requestToken",
        E::RequestToken,
    ),
    (
        Post,
        "/_matrix/client/v3/account/3pid/msisdn/requestToken",
        E::RequestToken,
    ),
    (
        Post,
        "/_matrix/client/v3/account/password/email/requestToken",
        E::RequestToken,
    ),
    (
        Post,
        "/_matrix/client/v3/account/password/msisdn/requestToken",
        E::RequestToken,
    ),
    // profile
    (Get, "/_matrix/client/v3/profile/{userId}", E::GetProfile),
    (
        Get,
        "/_matrix/client/v3/profile/{userId}/displayname",
        E::GetDisplayname,
    ),
    (
        Put,
        "/_matrix/client/v3/profile/{userId}/displayname",
        E::PutDisplayname,
    ),
    (
        Get,
        "/_matrix/client/v3/profile/{userId}/avatar_url",
        E::GetAvatarUrl,
    ),
    (
        Put,
        "/_matrix/client/v3/profile/{userId}/avatar_url",
        E::PutAvatarUrl,
    ),
    // account data
    (
        Get,
        "/_matrix/client/v3/user/{userId}/account_data/{type}",
        E::GetAccountData,
    ),
    (
        Put,
        "/_matrix/client/v3/user/{userId}/account_data/{type}",
        E::PutAccountData,
    ),
    (
        Get,
        "/_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}",
        E::GetRoomAccountData,
    ),
    (
        Put,
        "/_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}",
        E::PutRoomAccountData,
    ),
    (Get, "/_matrix/client/v3/capabilities", E::Capabilities),
    (
        Post,
        "/_matrix/client/v3/user/{userId}/openid/request_token",
        E::OpenIdRequestToken,
    ),
    (
        Get,
        "/_matrix/client/v3/thirdparty/protocols",
        E::ThirdPartyProtocols,
    ),
    (
        Get,
        "/_matrix/client/v3/thirdparty/protocol/{protocol}",
        E::ThirdPartyProtocol,
    ),
    (
        Get,
        "/_matrix/client/v3/thirdparty/location/{protocol}",
        E::ThirdPartyProtocol,
    ),
    (
        Get,
        "/_matrix/client/v3/thirdparty/user/{protocol}",
        E::ThirdPartyProtocol,
    ),
    (Get, "/_matrix/client/v3/thirdparty/location", E::ThirdPartyLookup),
    (Get, "/_matrix/client/v3/thirdparty/user", E::ThirdPartyLookup),
    (Get, "/_matrix/client/v3/voip/turnServer", E::TurnServer),
    // Synapse-compatible admin API
    (Get, "/_synapse/admin/v1/register", E::AdminRegisterNonce),
    (Post, "/_synapse/admin/v1/register", E::AdminRegister),
    (
        Get,
        "/_synapse/admin/v1/registration_tokens",
        E::AdminListRegistrationTokens,
    ),
    (
        Post,
        "/_synapse/admin/v1/registration_tokens/new",
        E::AdminNewRegistrationToken,
    ),
    (
        Get,
        "/_synapse/admin/v1/registration_tokens/{token}",
        E::AdminGetRegistrationToken,
    ),
    (
        Put,
        "/_synapse/admin/v1/registration_tokens/{token}",
        E::AdminUpdateRegistrationToken,
    ),
    (
        Delete,
        "/_synapse/admin/v1/registration_tokens/{token}",
        E::AdminDeleteRegistrationToken,
    ),
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub endpoint: Endpoint,
    /// Decoded `{param}` segments, in pattern order.
    pub params: Vec<String>,
}

/// Maps `r0` client paths onto `v3`.
fn normalize(path: &str) -> std::borrow::Cow<'_, str> {
    match path.strip_prefix("/_matrix/client/r0/") {
        Some(rest) => format!("/_matrix/client/v3/{rest}").into(),
        None => path.into(),
    }
}

/// Matches a raw path against a pattern, returning the decoded parameters.
pub(crate) fn match_pattern(pattern: &str, path: &str) -> Option<Result<Vec<String>, MatrixError>> {
    let mut params = Vec::new();
    let mut pat = pattern.split('/');
    let mut segs = path.split('/');
    loop {
        match (pat.next(), segs.next()) {
            (None, None) => return Some(Ok(params)),
            (Some(p), Some(s)) if p.starts_with('{') => {
                if s.is_empty() {
                    return None;
                }
                match percent_decode(s, false) {
                    Some(decoded) => params.push(decoded),
                    None => return Some(Err(MatrixError::invalid_param("Path segment is not valid UTF-8"))),
                }
            }
            (Some(p), Some(s)) if p == s => {}
            _ => return None,
        }
    }
}

/// Finds the endpoint for a request.
pub fn route(method: Method, path: &str) -> Result<Route, MatrixError> {
    let path = normalize(path);
    let mut path_known = false;
    for (m, pattern, endpoint) in ROUTES.iter().chain(keys_sync::ROUTES).chain(everyday::ROUTES) {
        if let Some(params) = match_pattern(pattern, &path) {
            let params = params?;
            if *m == method || (method == Method::Head && *m == Method::Get) {
                return Ok(Route {
                    endpoint: *endpoint,
                    params,
                });
            }
            path_known = true;
        }
    }
    Err(if path_known {
        MatrixError::method_not_allowed()
    } else {
        MatrixError::unrecognized()
    })
}

mod everyday;
mod keys_sync;

#[cfg(test)]
mod tests;
