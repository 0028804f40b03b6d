//! Routes of end-to-end encryption (keys, cross-signing, key backup), sync and what
//! rides on it (filters, to-device, typing, receipts, presence, legacy streams) and push
//! rules, kept beside the main table so each stays small.

use super::Endpoint as E;
use crate::api::http::Method::{self, Delete, Get, Post, Put};

pub(super) const ROUTES: &[(Method, &str, E)] = &[
    // End-to-end encryption
    (Post, "/_matrix/client/v3/keys/upload", E::KeysUpload),
    (Post, "/_matrix/client/v3/keys/query", E::KeysQuery),
    (Post, "/_matrix/client/v3/keys/claim", E::KeysClaim),
    (Get, "/_matrix/client/v3/keys/changes", E::KeysChanges),
    (
        Post,
        "/_matrix/client/v3/keys/device_signing/upload",
        E::CrossSigningUpload,
    ),
    (
        Post,
        "/_matrix/client/v3/keys/signatures/upload",
        E::SignaturesUpload,
    ),
    (Post, "/_matrix/client/v3/room_keys/version", E::BackupCreate),
    (Get, "/_matrix/client/v3/room_keys/version", E::BackupLatest),
    (
        Get,
        "/_matrix/client/v3/room_keys/version/{version}",
        E::BackupGet,
    ),
    (
        Put,
        "/_matrix/client/v3/room_keys/version/{version}",
        E::BackupUpdate,
    ),
    (
        Delete,
        "/_matrix/client/v3/room_keys/version/{version}",
        E::BackupDelete,
    ),
    (Put, "/_matrix/client/v3/room_keys/keys", E::BackupPutAll),
    (Get, "/_matrix/client/v3/room_keys/keys", E::BackupGetAll),
    (Delete, "/_matrix/client/v3/room_keys/keys", E::BackupDeleteAll),
    (
        Put,
        "/_matrix/client/v3/room_keys/keys/{roomId}",
        E::BackupPutRoom,
    ),
    (
        Get,
        "/_matrix/client/v3/room_keys/keys/{roomId}",
        E::BackupGetRoom,
    ),
    (
        Delete,
        "/_matrix/client/v3/room_keys/keys/{roomId}",
        E::BackupDeleteRoom,
    ),
    (
        Put,
        "/_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}",
        E::BackupPutSession,
    ),
    (
        Get,
        "/_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}",
        E::BackupGetSession,
    ),
    (
        Delete,
        "/_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}",
        E::BackupDeleteSession,
    ),
    // Sync
    (Get, "/_matrix/client/v3/sync", E::Sync),
    (Get, "/_matrix/client/v3/initialSync", E::InitialSync),
    (
        Get,
        "/_matrix/client/v3/rooms/{roomId}/initialSync",
        E::RoomInitialSync,
    ),
    (Get, "/_matrix/client/v3/events", E::EventStream),
    (Get, "/_matrix/client/v3/events/{eventId}", E::StreamEvent),
    (Post, "/_matrix/client/v3/user/{userId}/filter", E::PostFilter),
    (
        Get,
        "/_matrix/client/v3/user/{userId}/filter/{filterId}",
        E::GetFilter,
    ),
    (
        Put,
        "/_matrix/client/v3/sendToDevice/{eventType}/{txnId}",
        E::SendToDevice,
    ),
    (
        Put,
        "/_matrix/client/v3/rooms/{roomId}/typing/{userId}",
        E::Typing,
    ),
    (
        Post,
        "/_matrix/client/v3/rooms/{roomId}/receipt/{receiptType}/{eventId}",
        E::Receipt,
    ),
    (
        Post,
        "/_matrix/client/v3/rooms/{roomId}/read_markers",
        E::ReadMarkers,
    ),
    (Get, "/_matrix/client/v3/presence/{userId}/status", E::GetPresence),
    (Put, "/_matrix/client/v3/presence/{userId}/status", E::PutPresence),
    // Push rules
    (Get, "/_matrix/client/v3/pushrules/", E::GetPushRules),
    (Get, "/_matrix/client/v3/pushrules", E::GetPushRules),
    (Get, "/_matrix/client/v3/pushrules/global/", E::GetPushRulesGlobal),
    (
        Get,
        "/_matrix/client/v3/pushrules/global/{kind}/{ruleId}",
        E::GetPushRule,
    ),
    (
        Put,
        "/_matrix/client/v3/pushrules/global/{kind}/{ruleId}",
        E::PutPushRule,
    ),
    (
        Delete,
        "/_matrix/client/v3/pushrules/global/{kind}/{ruleId}",
        E::DeletePushRule,
    ),
    (
        Get,
        "/_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled",
        E::GetPushRuleEnabled,
    ),
    (
        Put,
        "/_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled",
        E::PutPushRuleEnabled,
    ),
    (
        Get,
        "/_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions",
        E::GetPushRuleActions,
    ),
    (
        Put,
        "/_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions",
        E::PutPushRuleActions,
    ),
];
