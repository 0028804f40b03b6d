//! The Server-Server API's route table (`/_matrix/federation/…` and `/_matrix/key/…`).

use crate::api::error::MatrixError;
use crate::api::http::Method;
use crate::api::router::match_pattern;

/// Every federation endpoint Neurite serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FedEndpoint {
    KeyServer,
    KeyQuery,
    KeyQueryServer,
    Version,
    OpenIdUserInfo,
    QueryProfile,
    QueryDirectory,
    UserDevices,
    UserKeysQuery,
    UserKeysClaim,
    PublicRooms,
    PublicRoomsPost,
    Event,
    State,
    StateIds,
    EventAuth,
    Backfill,
    MissingEvents,
    Send,
    MakeJoin,
    SendJoin,
    SendJoinV1,
    MakeLeave,
    SendLeave,
    SendLeaveV1,
    Invite,
    MakeKnock,
    SendKnock,
    Hierarchy,
    ThirdPartyOnBind,
    ExchangeThirdPartyInvite,
}

impl FedEndpoint {
    /// Whether the endpoint is answered without an `X-Matrix` signature: the key
    /// endpoints (anyone may ask for keys), the version, OpenID (which carries its
    /// own token), and identity servers' `/3pid/onbind` (its invites carry their
    /// signatures).
    pub fn unsigned(self) -> bool {
        matches!(
            self,
            Self::KeyServer
                | Self::KeyQuery
                | Self::KeyQueryServer
                | Self::Version
                | Self::OpenIdUserInfo
                | Self::ThirdPartyOnBind
        )
    }
}

use FedEndpoint as F;
use Method::{Get, Post, Put};

const ROUTES: &[(Method, &str, FedEndpoint)] = &[
    (Get, "/_matrix/key/v2/server", F::KeyServer),
    (Get, "/_matrix/key/v2/server/{keyId}", F::KeyServer),
    (Post, "/_matrix/key/v2/query", F::KeyQuery),
    (Get, "/_matrix/key/v2/query/{serverName}", F::KeyQueryServer),
    (Get, "/_matrix/federation/v1/version", F::Version),
    (Get, "/_matrix/federation/v1/openid/userinfo", F::OpenIdUserInfo),
    (Get, "/_matrix/federation/v1/query/profile", F::QueryProfile),
    (Get, "/_matrix/federation/v1/query/directory", F::QueryDirectory),
    (
        Get,
        "/_matrix/federation/v1/user/devices/{userId}",
        F::UserDevices,
    ),
    (Post, "/_matrix/federation/v1/user/keys/query", F::UserKeysQuery),
    (Post, "/_matrix/federation/v1/user/keys/claim", F::UserKeysClaim),
    (Get, "/_matrix/federation/v1/publicRooms", F::PublicRooms),
    (Post, "/_matrix/federation/v1/publicRooms", F::PublicRoomsPost),
    (Get, "/_matrix/federation/v1/event/{eventId}", F::Event),
    (Get, "/_matrix/federation/v1/state/{roomId}", F::State),
    (Get, "/_matrix/federation/v1/state_ids/{roomId}", F::StateIds),
    (
        Get,
        "/_matrix/federation/v1/event_auth/{roomId}/{eventId}",
        F::EventAuth,
    ),
    (Get, "/_matrix/federation/v1/backfill/{roomId}", F::Backfill),
    (
        Post,
        "/_matrix/federation/v1/get_missing_events/{roomId}",
        F::MissingEvents,
    ),
    (Put, "/_matrix/federation/v1/send/{txnId}", F::Send),
    (
        Get,
        "/_matrix/federation/v1/make_join/{roomId}/{userId}",
        F::MakeJoin,
    ),
    (
        Put,
        "/_matrix/federation/v2/send_join/{roomId}/{eventId}",
        F::SendJoin,
    ),
    (
        Put,
        "/_matrix/federation/v1/send_join/{roomId}/{eventId}",
        F::SendJoinV1,
    ),
    (
        Get,
        "/_matrix/federation/v1/make_leave/{roomId}/{userId}",
        F::MakeLeave,
    ),
    (
        Put,
        "/_matrix/federation/v1/send_leave/{roomId}/{eventId}",
        F::SendLeaveV1,
    ),
    (
        Put,
        "/_matrix/federation/v2/send_leave/{roomId}/{eventId}",
        F::SendLeave,
    ),
    (Put, "/_matrix/federation/v2/invite/{roomId}/{eventId}", F::Invite),
    (
        Get,
        "/_matrix/federation/v1/make_knock/{roomId}/{userId}",
        F::MakeKnock,
    ),
    (
        Put,
        "/_matrix/federation/v1/send_knock/{roomId}/{eventId}",
        F::SendKnock,
    ),
    (Get, "/_matrix/federation/v1/hierarchy/{roomId}", F::Hierarchy),
    (Put, "/_matrix/federation/v1/3pid/onbind", F::ThirdPartyOnBind),
    (
        Put,
        "/_matrix/federation/v1/exchange_third_party_invite/{roomId}",
        F::ExchangeThirdPartyInvite,
    ),
];

/// Whether a path belongs to this table.
pub fn serves(path: &str) -> bool {
    path.starts_with("/_matrix/federation/") || path.starts_with("/_matrix/key/")
}

/// The endpoint and its decoded path parameters.
pub fn route(method: Method, path: &str) -> Result<(FedEndpoint, Vec<String>), MatrixError> {
    let mut path_known = false;
    for (m, pattern, endpoint) in ROUTES {
        if let Some(params) = match_pattern(pattern, path) {
            let params = params?;
            if *m == method || (method == Method::Head && *m == Method::Get) {
                return Ok((*endpoint, params));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_federation_paths() {
        assert_eq!(
            route(Get, "/_matrix/key/v2/server").map(|r| r.0),
            Ok(F::KeyServer)
        );
        let (e, p) = route(Put, "/_matrix/federation/v1/send/t%2F1").expect("send");
        assert_eq!((e, p), (F::Send, vec!["t/1".to_owned()]));
        let (e, p) = route(Get, "/_matrix/federation/v1/event_auth/%21r%3Ah/%24e").expect("event_auth");
        assert_eq!((e, p), (F::EventAuth, vec!["!r:h".to_owned(), "$e".to_owned()]));
        assert_eq!(
            route(Get, "/_matrix/federation/v1/send/x").unwrap_err().status(),
            405
        );
        assert_eq!(
            route(Get, "/_matrix/federation/v1/nope").unwrap_err().status(),
            404
        );
        assert!(F::KeyQuery.unsigned() && !F::Send.unsigned());
        assert!(serves("/_matrix/key/v2/query") && !serves("/_matrix/client/versions"));
    }
}
