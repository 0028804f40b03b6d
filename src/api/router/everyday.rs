//! Routes of the everyday client features (tags, reports, search, the user directory,
//! spaces and room summaries), kept beside the main table so each stays small.

use super::Endpoint as E;
use crate::api::http::Method::{self, Delete, Get, Post, Put};

pub(super) const ROUTES: &[(Method, &str, E)] = &[
    // Tags
    (
        Get,
        "/_matrix/client/v3/user/{userId}/rooms/{roomId}/tags",
        E::GetTags,
    ),
    (
        Put,
        "/_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}",
        E::PutTag,
    ),
    (
        Delete,
        "/_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}",
        E::DeleteTag,
    ),
    // Reports
    (
        Post,
        "/_matrix/client/v3/rooms/{roomId}/report/{eventId}",
        E::ReportEvent,
    ),
    (Post, "/_matrix/client/v3/rooms/{roomId}/report", E::ReportRoom),
    (Post, "/_matrix/client/v3/users/{userId}/report", E::ReportUser),
    (Get, "/_synapse/admin/v1/event_reports", E::AdminEventReports),
    (
        Get,
        "/_synapse/admin/v1/event_reports/{reportId}",
        E::AdminEventReport,
    ),
    (Get, "/_neurite/admin/v1/reports", E::AdminReports),
    // Search
    (Post, "/_matrix/client/v3/search", E::Search),
    // User directory
    (
        Post,
        "/_matrix/client/v3/user_directory/search",
        E::UserDirectorySearch,
    ),
    // Spaces and room summaries
    (Get, "/_matrix/client/v1/rooms/{roomId}/hierarchy", E::Hierarchy),
    (
        Get,
        "/_matrix/client/v1/room_summary/{roomIdOrAlias}",
        E::RoomSummary,
    ),
    (
        Get,
        "/_matrix/client/unstable/im.nheko.summary/summary/{roomIdOrAlias}",
        E::RoomSummary,
    ),
    (
        Get,
        "/_matrix/client/unstable/im.nheko.summary/rooms/{roomIdOrAlias}/summary",
        E::RoomSummary,
    ),
];

#[cfg(test)]
mod tests {
    use super::super::route;
    use super::*;

    #[test]
    fn everyday_routes() {
        let r = route(
            Put,
            "/_matrix/client/v3/user/%40a%3Ahs/rooms/%21r%3Ahs/tags/u.work",
        )
        .expect("route");
        assert_eq!(r.endpoint, E::PutTag);
        assert_eq!(r.params, ["@a:hs", "!r:hs", "u.work"]);
        let r = route(Get, "/_matrix/client/r0/user/%40a%3Ahs/rooms/%21r%3Ahs/tags").expect("route");
        assert_eq!(r.endpoint, E::GetTags);
        assert_eq!(
            route(Post, "/_matrix/client/v3/rooms/%21r%3Ahs/report/%24e").map(|r| r.endpoint),
            Ok(E::ReportEvent)
        );
        assert_eq!(
            route(Get, "/_matrix/client/v1/rooms/%21r%3Ahs/hierarchy").map(|r| r.endpoint),
            Ok(E::Hierarchy)
        );
        assert_eq!(
            route(Get, "/_matrix/client/unstable/im.nheko.summary/summary/%23a%3Ahs").map(|r| r.endpoint),
            Ok(E::RoomSummary)
        );
        assert_eq!(
            route(Get, "/_matrix/client/v3/user_directory/search")
                .unwrap_err()
                .status(),
            405
        );
    }
}
