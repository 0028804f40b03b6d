//! Outliers: events known without their state (auth events, fetched missing events),
//! stored after checking their own auth events, never part of the timeline.

use crate::core::auth::check_auth_events;
use crate::core::pdu::Pdu;

use super::super::store::{self, Kind, NewEvent as Row, Status};
use super::{Engine, Outcome, RoomError};

impl Engine<'_> {
    /// Inputs an event known without its state (an auth event, a fetched missing
    /// event): stored after checking its own auth events, never part of the timeline.
    pub fn input_outlier(&mut self, pdu: Pdu) -> Result<Outcome, RoomError> {
        let result = self.input_outlier_held(pdu);
        self.end_input(result)
    }

    pub(super) fn input_outlier_held(&mut self, pdu: Pdu) -> Result<Outcome, RoomError> {
        if pdu.room_id() != self.info.room_id {
            return Err(RoomError::WrongRoom);
        }
        let known_new = self.known_new.remove(pdu.event_id().as_str());
        if !known_new && store::event_by_id(self.sql()?, pdu.event_id().as_str())?.is_some() {
            return Ok(Outcome::Stored);
        }
        let missing = self.missing_auth(&pdu);
        if !missing.is_empty() {
            return Err(RoomError::MissingAuth(missing));
        }
        let rules = self.info.rules.clone();
        let verdict = check_auth_events(&pdu, &rules, self.fetch_fn());
        let json = pdu.to_federation_json();
        let nid = self.stage_event(&Row {
            event_id: pdu.event_id().as_str(),
            stream_pos: None,
            depth: i64::try_from(pdu.depth()).unwrap_or(i64::MAX),
            event_type: &pdu.kind(),
            state_key: pdu.state_key(),
            sender: pdu.sender().as_str(),
            origin_ts: i64::try_from(pdu.origin_server_ts()).unwrap_or(i64::MAX),
            kind: Kind::Outlier,
            status: if verdict.is_ok() {
                Status::Accepted
            } else {
                Status::Rejected
            },
            reason: verdict.as_ref().err().map(|r| r.reason.as_str()),
            state_before: None,
            state_after: None,
            json: &json,
        })?;
        let event_id = pdu.event_id().to_string();
        self.remember(nid, &pdu.with_rejected(verdict.is_err()));
        self.filled(&event_id)?;
        Ok(match verdict {
            Ok(()) => Outcome::Stored,
            Err(r) => Outcome::Rejected(r.reason),
        })
    }
}
