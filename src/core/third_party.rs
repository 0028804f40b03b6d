//! Third-party (email, phone) invites: the identity server's lookup hashing, the
//! `m.room.third_party_invite` content made from its `store-invite` answer, and the
//! invites an identity server hands back on `/3pid/onbind`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The address as the identity server's `/lookup` takes it, and the algorithm named:
/// `sha256` of `"{address} {medium} {pepper}"` (URL-safe base64, unpadded) when the
/// server offers it, else the plain `"{address} {medium}"` (`none`). `None` when the
/// server offers neither.
pub fn lookup_address(
    address: &str,
    medium: &str,
    pepper: &str,
    algorithms: &[&str],
) -> Option<(&'static str, String)> {
    if algorithms.contains(&"sha256") {
        let digest = Sha256::digest(format!("{address} {medium} {pepper}").as_bytes());
        Some(("sha256", URL_SAFE_NO_PAD.encode(digest)))
    } else if algorithms.contains(&"none") {
        Some(("none", format!("{address} {medium}")))
    } else {
        None
    }
}

/// The content of the `m.room.third_party_invite` state event (its state key is the
/// answer's `token`) from a `store-invite` answer: the display name and the public
/// keys the invite's signature will be checked with.
pub fn invite_event(answer: &Value) -> Result<(String, Value), String> {
    let token = answer["token"]
        .as_str()
        .filter(|t| !t.is_empty())
        .ok_or("the identity server gave no token")?;
    let display_name = answer["display_name"]
        .as_str()
        .ok_or("the identity server gave no display_name")?;
    let mut keys: Vec<Value> = answer["public_keys"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter(|k| k["public_key"].is_string())
                .map(|k| {
                    let mut key = json!({ "public_key": k["public_key"] });
                    if let Some(url) = k["key_validity_url"].as_str() {
                        key["key_validity_url"] = json!(url);
                    }
                    key
                })
                .collect()
        })
        .unwrap_or_default();
    if keys.is_empty() {
        if let Some(key) = answer["public_key"].as_str() {
            keys.push(json!({ "public_key": key, "key_validity_url": answer["key_validity_url"] }));
        }
    }
    let first = keys
        .first()
        .ok_or("the identity server gave no public key")?
        .clone();
    let content = json!({
        "display_name": display_name,
        "public_key": first["public_key"],
        "key_validity_url": first["key_validity_url"].as_str().unwrap_or_default(),
        "public_keys": keys,
    });
    Ok((token.to_owned(), content))
}

/// One invite of an `/3pid/onbind` call.
#[derive(Debug, Clone, PartialEq)]
pub struct BoundInvite {
    pub room_id: String,
    pub sender: String,
    pub mxid: String,
    pub token: String,
    /// The identity server's signed object, as the member event carries it.
    pub signed: Value,
}

/// The invites of an `/3pid/onbind` body, each checked for shape: the `signed` object
/// names the same user the address was bound to and the invite's token. Malformed
/// invites are left out (the rest go ahead).
pub fn bound_invites(body: &Value) -> Result<Vec<BoundInvite>, String> {
    let mxid = body["mxid"].as_str().ok_or("missing mxid")?;
    let invites = body["invites"].as_array().ok_or("missing invites")?;
    Ok(invites
        .iter()
        .filter_map(|invite| {
            let signed = &invite["signed"];
            let token = signed["token"].as_str()?;
            (signed["mxid"] == mxid && signed["signatures"].is_object()).then_some(())?;
            Some(BoundInvite {
                room_id: invite["room_id"].as_str()?.to_owned(),
                sender: invite["sender"].as_str()?.to_owned(),
                mxid: mxid.to_owned(),
                token: token.to_owned(),
                signed: signed.clone(),
            })
        })
        .collect())
}

/// The member event content that turns a third-party invite into the user's invite.
pub fn member_content(display_name: &str, signed: &Value) -> Value {
    json!({
        "membership": "invite",
        "third_party_invite": { "display_name": display_name, "signed": signed },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_hashes_address_medium_and_pepper() {
        // The identity service spec's example.
        let (alg, hash) = lookup_address("alice@example.com", "email", "matrixrocks", &["none", "sha256"])
            .expect("offered");
        assert_eq!(alg, "sha256");
        assert_eq!(hash, "4kenr7N9drpCJ4AfalmlGQVsOn3o2RHjkADUpXJWZUc");
        assert_eq!(
            lookup_address("a@b.c", "email", "p", &["none"]),
            Some(("none", "a@b.c email".into()))
        );
        assert_eq!(lookup_address("a@b.c", "email", "p", &["md5"]), None);
    }

    #[test]
    fn the_invite_event_carries_the_keys() {
        let answer = json!({
            "token": "tok", "display_name": "a...@b.c",
            "public_keys": [{"public_key": "K1", "key_validity_url": "https://id/v"}, {"public_key": "K2"}],
        });
        let (token, content) = invite_event(&answer).expect("valid");
        assert_eq!(token, "tok");
        assert_eq!(content["public_key"], "K1");
        assert_eq!(content["key_validity_url"], "https://id/v");
        assert_eq!(content["public_keys"].as_array().map(Vec::len), Some(2));
        assert_eq!(content["display_name"], "a...@b.c");
        // The older single-key answer.
        let (_, old) =
            invite_event(&json!({"token": "t", "display_name": "d", "public_key": "K"})).expect("valid");
        assert_eq!(old["public_keys"][0]["public_key"], "K");
        for bad in [
            json!({}),
            json!({"token": "t", "display_name": "d"}),
            json!({"token": "", "display_name": "d", "public_key": "K"}),
        ] {
            assert!(invite_event(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn onbind_invites_must_name_the_bound_user() {
        let signed =
            |mxid: &str| json!({"mxid": mxid, "token": "t", "signatures": {"id": {"ed25519:0": "s"}}});
        let body = json!({
            "mxid": "@bob:hs", "medium": "email", "address": "b@c",
            "invites": [
                {"room_id": "!r:hs", "sender": "@a:hs", "mxid": "@bob:hs", "signed": signed("@bob:hs")},
                {"room_id": "!r:hs", "sender": "@a:hs", "mxid": "@bob:hs", "signed": signed("@eve:hs")},
                {"room_id": "!r:hs", "mxid": "@bob:hs", "signed": signed("@bob:hs")},
            ],
        });
        let invites = bound_invites(&body).expect("shape");
        assert_eq!(invites.len(), 1);
        assert_eq!(invites[0].token, "t");
        assert_eq!(invites[0].sender, "@a:hs");
        assert!(bound_invites(&json!({"invites": []})).is_err());
        let content = member_content("b...@c", &invites[0].signed);
        assert_eq!(content["third_party_invite"]["signed"]["mxid"], "@bob:hs");
    }
}
