//! Joins to restricted rooms, as the resident server that vouches for them: the join
//! rules' conditions checked against the other rooms this server holds, and the local
//! member who authorises the join chosen. Used for local users' joins and for other
//! servers' `make_join` / `send_join`.

use serde_json::Value;

use crate::api::MatrixError;
use crate::platform::{rooms, Ctx};
use crate::roomserver::protocol::RoomRequest;
use crate::storage;

/// What a join needs from the join rules.
pub struct Authorisation {
    /// The room's version.
    pub room_version: String,
    /// The local user who vouches for the join, when the join rules need one.
    pub via: Option<String>,
}

/// Checks `user_id`'s join of `room_id` against the restricted join rules. A join that
/// needs no condition (other join rules, or the user is invited or joined) passes with
/// no authoriser. Otherwise the user must be joined to one of the allowed rooms this
/// server holds: 400 `M_UNABLE_TO_AUTHORISE_JOIN` when it holds none of them, 403 when
/// the user is in none, 400 `M_UNABLE_TO_GRANT_JOIN` when no local member may invite.
pub async fn authorise(ctx: &Ctx, room_id: &str, user_id: &str) -> Result<Authorisation, MatrixError> {
    let request = RoomRequest::JoinAuthorisation {
        user_id: user_id.to_owned(),
    };
    let answer = rooms::call(ctx, room_id, &request).await?;
    let room_version = answer["room_version"].as_str().unwrap_or_default().to_owned();
    if answer["needed"] != true {
        return Ok(Authorisation {
            room_version,
            via: None,
        });
    }
    let db = ctx.db()?;
    let mut held_any = false;
    let mut passes = false;
    for allowed in answer["allow"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if !storage::rooms::known(&db, allowed).await? {
            continue;
        }
        held_any = true;
        let membership = RoomRequest::Membership {
            user_id: user_id.to_owned(),
        };
        if rooms::call(ctx, allowed, &membership).await?["membership"] == "join" {
            passes = true;
            break;
        }
    }
    if !held_any {
        return Err(MatrixError::new(
            "M_UNABLE_TO_AUTHORISE_JOIN",
            "This server is in none of the rooms whose members may join",
        ));
    }
    if !passes {
        return Err(MatrixError::forbidden(
            "The user is not joined to any room whose members may join",
        ));
    }
    match answer["authoriser"].as_str() {
        Some(via) => Ok(Authorisation {
            room_version,
            via: Some(via.to_owned()),
        }),
        None => Err(MatrixError::new(
            "M_UNABLE_TO_GRANT_JOIN",
            "No user of this server may invite to the room",
        )),
    }
}
