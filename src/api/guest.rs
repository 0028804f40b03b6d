//! Guest access: which endpoints a guest account may use (the spec's guest module,
//! plus what a client needs around them: filters, key exchange, account data,
//! presence). Everything else answers a guest 403 `M_GUEST_ACCESS_FORBIDDEN`.

use super::router::Endpoint;

/// Whether a guest may call `endpoint`.
pub fn allowed(endpoint: Endpoint) -> bool {
    use Endpoint as E;
    matches!(
        endpoint,
        // Reading rooms (their history visibility still decides what is shown).
        E::GetAllState
            | E::GetStateKeyed
            | E::GetStateEmpty
            | E::Context
            | E::GetEvent
            | E::Messages
            | E::Members
            | E::JoinedMembers
            | E::Sync
            | E::EventStream
            | E::StreamEvent
            | E::RoomInitialSync
            | E::PostFilter
            | E::GetFilter
            // Taking part (joins check the room's guest access).
            | E::JoinByIdOrAlias
            | E::JoinRoom
            | E::LeaveRoom
            | E::SendEvent
            | E::Typing
            | E::Receipt
            | E::ReadMarkers
            // The account itself.
            | E::WhoAmI
            | E::Logout
            | E::GetProfile
            | E::GetDisplayname
            | E::PutDisplayname
            | E::GetAvatarUrl
            | E::GetAccountData
            | E::PutAccountData
            | E::GetRoomAccountData
            | E::PutRoomAccountData
            | E::GetPresence
            | E::PutPresence
            | E::Capabilities
            | E::GetPushRules
            | E::GetPushRulesGlobal
            | E::TurnServer
            | E::ThirdPartyProtocols
            // End-to-end encryption between devices.
            | E::Devices
            | E::GetDevice
            | E::PutDevice
            | E::KeysUpload
            | E::KeysQuery
            | E::KeysClaim
            | E::KeysChanges
            | E::SendToDevice
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guests_read_and_talk_but_do_not_administer() {
        assert!(allowed(Endpoint::Sync));
        assert!(allowed(Endpoint::SendEvent));
        assert!(!allowed(Endpoint::CreateRoom));
        assert!(!allowed(Endpoint::InviteRoom));
        assert!(!allowed(Endpoint::ChangePassword));
        assert!(!allowed(Endpoint::PutStateKeyed));
        assert!(!allowed(Endpoint::AdminRoomInput));
    }
}
