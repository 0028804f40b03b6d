//! Route table checks.

use super::*;

#[test]
fn routes_known_paths() {
    assert_eq!(
        route(Get, "/_matrix/client/versions").map(|r| r.endpoint),
        Ok(E::ClientVersions)
    );
    assert_eq!(
        route(Get, "/_matrix/client/v3/sync").map(|r| r.endpoint),
        Ok(E::Sync)
    );
}

#[test]
fn unknown_path_is_404_and_wrong_method_is_405() {
    assert_eq!(route(Get, "/_matrix/client/v3/nope").unwrap_err().status(), 404);
    assert_eq!(route(Get, "/").unwrap_err().errcode, "M_UNRECOGNIZED");
    let err = route(Post, "/_matrix/client/versions").unwrap_err();
    assert_eq!((err.status(), err.errcode), (405, "M_UNRECOGNIZED"));
}

#[test]
fn account_routes() {
    let r = route(
        Put,
        "/_matrix/client/r0/user/%40a%3Ahs/rooms/%21r%3Ahs/account_data/m.tag",
    )
    .expect("route");
    assert_eq!(r.endpoint, E::PutRoomAccountData);
    assert_eq!(r.params, vec!["@a:hs", "!r:hs", "m.tag"]);
    assert_eq!(
        route(Post, "/_synapse/admin/v1/registration_tokens/new").map(|r| r.endpoint),
        Ok(E::AdminNewRegistrationToken)
    );
    assert_eq!(
        route(Get, "/_synapse/admin/v1/registration_tokens/new").map(|r| r.endpoint),
        Ok(E::AdminGetRegistrationToken)
    );
    assert_eq!(
        route(Put, "/_synapse/admin/v1/registration_tokens/abc").map(|r| r.endpoint),
        Ok(E::AdminUpdateRegistrationToken)
    );
    assert_eq!(
        route(Delete, "/_matrix/client/v3/devices/ABC").map(|r| r.endpoint),
        Ok(E::DeleteDevice)
    );
    assert_eq!(
        route(Post, "/_matrix/client/v3/logout/all").map(|r| r.endpoint),
        Ok(E::LogoutAll)
    );
}

#[test]
fn params_are_decoded() {
    assert_eq!(
        match_pattern("/a/{x}/b", "/a/%21r%3Ahs/b"),
        Some(Ok(vec!["!r:hs".to_owned()]))
    );
    assert_eq!(match_pattern("/a/{x}/b", "/a//b"), None);
    assert_eq!(match_pattern("/a/{x}", "/a/x/y"), None);
    assert!(matches!(match_pattern("/a/{x}", "/a/%ff"), Some(Err(_))));
}

#[test]
fn routes_legacy() {
    let at = |m, p| route(m, p).map(|r| (r.endpoint, r.params));
    assert_eq!(
        at(Get, "/_matrix/client/r0/initialSync"),
        Ok((E::InitialSync, vec![]))
    );
    assert_eq!(
        at(Get, "/_matrix/client/v3/rooms/%21r%3Ahs/initialSync"),
        Ok((E::RoomInitialSync, vec!["!r:hs".into()]))
    );
    assert_eq!(at(Get, "/_matrix/client/r0/events"), Ok((E::EventStream, vec![])));
    assert_eq!(
        at(Get, "/_matrix/client/v3/events/%24abc"),
        Ok((E::StreamEvent, vec!["$abc".into()]))
    );
    assert_eq!(
        route(Post, "/_matrix/client/v3/events"),
        Err(MatrixError::method_not_allowed())
    );
}

#[test]
fn routes_push_rules() {
    let at = |m, p| route(m, p).map(|r| (r.endpoint, r.params));
    assert_eq!(
        at(Get, "/_matrix/client/v3/pushrules/"),
        Ok((E::GetPushRules, vec![]))
    );
    assert_eq!(
        at(Get, "/_matrix/client/r0/pushrules/global/"),
        Ok((E::GetPushRulesGlobal, vec![]))
    );
    assert_eq!(
        at(Put, "/_matrix/client/v3/pushrules/global/room/%21r%3Ahs/enabled"),
        Ok((E::PutPushRuleEnabled, vec!["room".into(), "!r:hs".into()]))
    );
    assert_eq!(
        at(Delete, "/_matrix/client/v3/pushrules/global/content/.cake"),
        Ok((E::DeletePushRule, vec!["content".into(), ".cake".into()]))
    );
    assert_eq!(
        route(Post, "/_matrix/client/v3/pushrules/global/content/x/actions"),
        Err(MatrixError::method_not_allowed())
    );
}
