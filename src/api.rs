//! The HTTP edge: request parsing, routing, the error table and the handlers.
//!
//! Everything here except `dispatch` and the handlers that reach storage is pure and
//! unit-tested natively; the Workers glue lives in `platform`.

pub mod admin;
pub mod auth;
pub mod client;
pub mod cors;
pub mod error;
pub mod federation;
pub mod guest;
pub mod http;
pub mod media;
pub mod restricted;
pub mod router;
pub mod wellknown;

pub use error::MatrixError;

use serde_json::Value;

use crate::platform::Ctx;
use http::{HttpRequest, HttpResponse, Method, MAX_JSON_BODY};
use router::{route, Endpoint};

/// Answers one request: CORS, body limit, routing, the handler, and the error edge.
pub async fn handle(ctx: &Ctx, req: HttpRequest) -> HttpResponse {
    let cors = cors::applies_to(&req.path);
    let response = if req.method == Method::Options && cors {
        HttpResponse::ok(&Value::Object(Default::default()))
    } else {
        match answer(ctx, &req).await {
            Ok(value) => HttpResponse::ok(&value),
            Err(err) => {
                if err.status() >= 500 {
                    crate::platform::log_error(&format!("{} {}: {err}", method_name(req.method), req.path));
                }
                HttpResponse::error(&err)
            }
        }
    };
    let response = match ctx.timings.header() {
        Some(value) => response.with_header("Server-Timing", &value),
        None => response,
    };
    with_cors(&req.path, response)
}

/// Adds the CORS headers to answers on the paths browser clients use.
pub fn with_cors(path: &str, mut response: HttpResponse) -> HttpResponse {
    if cors::applies_to(path) {
        for (name, value) in cors::HEADERS {
            response = response.with_header(name, value);
        }
    }
    response
}

fn method_name(method: Method) -> &'static str {
    match method {
        Method::Get => "GET",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Delete => "DELETE",
        Method::Options => "OPTIONS",
        Method::Head => "HEAD",
        Method::Other => "?",
    }
}

async fn answer(ctx: &Ctx, req: &HttpRequest) -> Result<Value, MatrixError> {
    if req.body.len() > MAX_JSON_BODY {
        return Err(MatrixError::too_large(MAX_JSON_BODY));
    }
    if federation::routes::serves(&req.path) {
        return federation::answer(ctx, req).await;
    }
    let route = route(req.method, &req.path)?;
    ctx.guest_allowed.set(guest::allowed(route.endpoint));
    let config = &ctx.config;
    let p = |i: usize| route.params.get(i).map(String::as_str).unwrap_or_default();
    use client::key_backup::{self, Level};
    use client::{account, account_data, cross_signing, devices, keys, login, profile, push_rules, register};
    use client::{create_room, directory, membership, room_events};
    use Endpoint as E;
    match route.endpoint {
        // Rooms
        E::CreateRoom => create_room::create_room(ctx, req).await,
        E::JoinedRooms => membership::joined_rooms(ctx, req).await,
        E::JoinByIdOrAlias | E::JoinRoom => membership::join(ctx, req, p(0)).await,
        E::KnockRoom => membership::knock(ctx, req, p(0)).await,
        E::LeaveRoom => membership::leave(ctx, req, p(0)).await,
        E::ForgetRoom => membership::forget(ctx, req, p(0)).await,
        E::InviteRoom => membership::invite(ctx, req, p(0)).await,
        E::KickRoom => membership::moderate(ctx, req, p(0), "kick").await,
        E::BanRoom => membership::moderate(ctx, req, p(0), "ban").await,
        E::UnbanRoom => membership::moderate(ctx, req, p(0), "unban").await,
        E::SendEvent => room_events::send(ctx, req, p(0), p(1), Some(p(2))).await,
        E::SendEventNoTxn => room_events::send(ctx, req, p(0), p(1), None).await,
        E::PutStateKeyed => room_events::put_state(ctx, req, p(0), p(1), p(2)).await,
        E::PutStateEmpty => room_events::put_state(ctx, req, p(0), p(1), "").await,
        E::GetStateKeyed => room_events::get_state(ctx, req, p(0), p(1), p(2)).await,
        E::GetStateEmpty => room_events::get_state(ctx, req, p(0), p(1), "").await,
        E::GetAllState => room_events::all_state(ctx, req, p(0)).await,
        E::Redact => room_events::redact(ctx, req, p(0), p(1), p(2)).await,
        E::Messages => room_events::messages(ctx, req, p(0)).await,
        E::Context => room_events::context(ctx, req, p(0), p(1)).await,
        E::GetEvent => room_events::event(ctx, req, p(0), p(1)).await,
        E::Members => room_events::members(ctx, req, p(0)).await,
        E::JoinedMembers => room_events::joined_members(ctx, req, p(0)).await,
        E::RoomAliases => directory::room_aliases(ctx, req, p(0)).await,
        E::GetAlias => directory::get_alias(ctx, p(0)).await,
        E::PutAlias => directory::put_alias(ctx, req, p(0)).await,
        E::DeleteAlias => directory::delete_alias(ctx, req, p(0)).await,
        E::GetRoomVisibility => directory::get_visibility(ctx, p(0)).await,
        E::PutRoomVisibility => directory::put_visibility(ctx, req, p(0)).await,
        E::PublicRooms | E::PublicRoomsPost => directory::public_rooms(ctx, req).await,
        E::AdminRoomInput => admin::room_input::input(ctx, req, p(0)).await,
        E::AdminLogReplay => admin::log_replay::replay(ctx, req, p(0)).await,
        E::UpgradeRoom => client::upgrade::upgrade(ctx, req, p(0)).await,
        E::ClientVersions => Ok(client::versions::get()),
        E::WellKnownClient => Ok(wellknown::client(config)),
        E::WellKnownServer => Ok(wellknown::server(config)),
        // Accounts
        E::LoginFlows => Ok(login::flows()),
        E::Login => login::login(ctx, req).await,
        E::Logout => login::logout(ctx, req).await,
        E::LogoutAll => login::logout_all(ctx, req).await,
        E::WhoAmI => login::whoami(ctx, req).await,
        E::Register => register::register(ctx, req).await,
        E::RegisterAvailable => register::available(ctx, req).await,
        E::RegistrationTokenValidity => register::token_validity(ctx, req).await,
        E::RequestToken => account::request_token(req),
        E::Devices => devices::list(ctx, req).await,
        E::GetDevice => devices::get(ctx, req, p(0)).await,
        E::PutDevice => devices::put(ctx, req, p(0)).await,
        E::DeleteDevice => devices::delete(ctx, req, p(0)).await,
        E::DeleteDevices => devices::delete_many(ctx, req).await,
        E::ChangePassword => account::change_password(ctx, req).await,
        E::Deactivate => account::deactivate(ctx, req).await,
        E::ThreePids => account::threepids(ctx, req).await,
        E::AddThreePid => account::add_threepid(ctx, req).await,
        E::RemoveThreePid => account::remove_threepid(ctx, req).await,
        E::GetProfile => profile::get(ctx, p(0)).await,
        E::GetDisplayname => profile::get_field(ctx, p(0), profile::Field::Displayname).await,
        E::PutDisplayname => profile::put_field(ctx, req, p(0), profile::Field::Displayname).await,
        E::GetAvatarUrl => profile::get_field(ctx, p(0), profile::Field::AvatarUrl).await,
        E::PutAvatarUrl => profile::put_field(ctx, req, p(0), profile::Field::AvatarUrl).await,
        E::GetAccountData => account_data::get(ctx, req, p(0), None, p(1)).await,
        E::PutAccountData => account_data::put(ctx, req, p(0), None, p(1)).await,
        E::GetRoomAccountData => account_data::get(ctx, req, p(0), Some(p(1)), p(2)).await,
        E::PutRoomAccountData => account_data::put(ctx, req, p(0), Some(p(1)), p(2)).await,
        E::Capabilities => client::capabilities::get(ctx, req).await,
        E::OpenIdRequestToken => client::openid::request_token(ctx, req, p(0)).await,
        E::ThirdPartyProtocols => client::thirdparty::protocols(ctx, req).await,
        E::ThirdPartyProtocol => client::thirdparty::protocol(ctx, req, p(0)).await,
        E::ThirdPartyLookup => client::thirdparty::reverse_lookup(ctx, req).await,
        E::TurnServer => client::thirdparty::turn_server(ctx, req).await,
        E::AdminRegisterNonce => admin::register::nonce(ctx).await,
        E::AdminRegister => admin::register::register(ctx, req).await,
        E::AdminListRegistrationTokens => admin::registration_tokens::list(ctx, req).await,
        E::AdminNewRegistrationToken => admin::registration_tokens::create(ctx, req).await,
        E::AdminGetRegistrationToken => admin::registration_tokens::get(ctx, req, p(0)).await,
        E::AdminUpdateRegistrationToken => admin::registration_tokens::update(ctx, req, p(0)).await,
        E::AdminDeleteRegistrationToken => admin::registration_tokens::delete(ctx, req, p(0)).await,
        // End-to-end encryption
        E::KeysUpload => keys::upload(ctx, req).await,
        E::KeysQuery => keys::query(ctx, req).await,
        E::KeysClaim => keys::claim(ctx, req).await,
        E::KeysChanges => keys::changes(ctx, req).await,
        E::CrossSigningUpload => cross_signing::upload_keys(ctx, req).await,
        E::SignaturesUpload => cross_signing::upload_signatures(ctx, req).await,
        E::BackupCreate => key_backup::create_version(ctx, req).await,
        E::BackupLatest => key_backup::get_version(ctx, req, None).await,
        E::BackupGet => key_backup::get_version(ctx, req, Some(p(0))).await,
        E::BackupUpdate => key_backup::update_version(ctx, req, p(0)).await,
        E::BackupDelete => key_backup::delete_version(ctx, req, p(0)).await,
        E::BackupPutAll => key_backup::put_keys(ctx, req, Level::All).await,
        E::BackupGetAll => key_backup::get_keys(ctx, req, Level::All).await,
        E::BackupDeleteAll => key_backup::delete_keys(ctx, req, Level::All).await,
        E::BackupPutRoom => key_backup::put_keys(ctx, req, Level::Room(p(0))).await,
        E::BackupGetRoom => key_backup::get_keys(ctx, req, Level::Room(p(0))).await,
        E::BackupDeleteRoom => key_backup::delete_keys(ctx, req, Level::Room(p(0))).await,
        E::BackupPutSession => key_backup::put_keys(ctx, req, Level::Session(p(0), p(1))).await,
        E::BackupGetSession => key_backup::get_keys(ctx, req, Level::Session(p(0), p(1))).await,
        E::BackupDeleteSession => key_backup::delete_keys(ctx, req, Level::Session(p(0), p(1))).await,
        // Sync
        E::Sync => client::sync::sync(ctx, req).await,
        E::PostFilter => client::filter::create(ctx, req, p(0)).await,
        E::GetFilter => client::filter::get(ctx, req, p(0), p(1)).await,
        E::GetPushRules => push_rules::get_all(ctx, req).await,
        E::GetPushRulesGlobal => push_rules::get_global(ctx, req).await,
        E::GetPushRule => push_rules::get(ctx, req, p(0), p(1), push_rules::Part::Rule).await,
        E::PutPushRule => push_rules::put(ctx, req, p(0), p(1), push_rules::Part::Rule).await,
        E::DeletePushRule => push_rules::delete(ctx, req, p(0), p(1)).await,
        E::GetPushRuleEnabled => push_rules::get(ctx, req, p(0), p(1), push_rules::Part::Enabled).await,
        E::PutPushRuleEnabled => push_rules::put(ctx, req, p(0), p(1), push_rules::Part::Enabled).await,
        E::GetPushRuleActions => push_rules::get(ctx, req, p(0), p(1), push_rules::Part::Actions).await,
        E::PutPushRuleActions => push_rules::put(ctx, req, p(0), p(1), push_rules::Part::Actions).await,
        E::SendToDevice => client::to_device::send(ctx, req, p(0), p(1)).await,
        E::Typing => client::receipts::typing(ctx, req, p(0), p(1)).await,
        E::Receipt => client::receipts::receipt(ctx, req, p(0), p(1), p(2)).await,
        E::ReadMarkers => client::receipts::read_markers(ctx, req, p(0)).await,
        E::GetPresence => client::presence::get(ctx, req, p(0)).await,
        E::PutPresence => client::presence::put(ctx, req, p(0)).await,
        // Legacy
        E::InitialSync => client::legacy::initial_sync(ctx, req).await,
        E::RoomInitialSync => client::legacy::room_initial_sync(ctx, req, p(0)).await,
        E::EventStream => client::legacy::events::stream(ctx, req).await,
        E::StreamEvent => client::legacy::events::event(ctx, req, p(0)).await,
        // Everyday client features
        E::GetTags => client::tags::get(ctx, req, p(0), p(1)).await,
        E::PutTag => client::tags::put(ctx, req, p(0), p(1), p(2)).await,
        E::DeleteTag => client::tags::delete(ctx, req, p(0), p(1), p(2)).await,
        E::ReportEvent => client::reports::report_event(ctx, req, p(0), p(1)).await,
        E::ReportRoom => client::reports::report_room(ctx, req, p(0)).await,
        E::ReportUser => client::reports::report_user(ctx, req, p(0)).await,
        E::AdminEventReports => admin::reports::event_reports(ctx, req).await,
        E::AdminEventReport => admin::reports::event_report(ctx, req, p(0)).await,
        E::AdminReports => admin::reports::all_reports(ctx, req).await,
        E::UserDirectorySearch => client::user_directory::search(ctx, req).await,
        E::Search => client::search::search(ctx, req).await,
        E::Hierarchy => client::spaces::hierarchy(ctx, req, p(0)).await,
        E::RoomSummary => client::spaces::summary(ctx, req, p(0)).await,
    }
}
