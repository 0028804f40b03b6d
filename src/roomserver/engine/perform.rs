//! The engine's performs: redactions applied to their targets, and events built for
//! local users.

use ruma::events::StateEventType;
use ruma::{OwnedEventId, UserId};

use crate::core::auth::check_auth;
use crate::core::builder::{build_event, NewEvent, Prev, Signer};
use crate::core::pdu::Pdu;
use crate::core::power::Power;

use super::super::store::{self, Status};
use super::{Engine, Outcome, RoomError};

impl Engine<'_> {
    /// Applies an accepted redaction to its target: the stored event is replaced by its
    /// redacted form when the redacter may redact it (the original's sender, enough
    /// power for `redact`, or the same server as the original sender: that server checked
    /// it, as this one checks its own users' redactions before sending them,
    /// `check_local_redaction`). Otherwise the redaction stays a no-op.
    pub(super) fn apply_redaction(&mut self, redaction: &Pdu) -> Result<(), RoomError> {
        let Some(target_id) = redaction.redacts() else {
            return Ok(());
        };
        let Some((row, target)) = self.pdu(target_id.as_str())? else {
            // Applied when the target arrives (`filled`).
            store::add_pending_redaction(self.sql()?, target_id.as_str(), redaction.event_id().as_str())?;
            self.head()?;
            if let Some(head) = self.head.borrow_mut().as_mut() {
                head.has_pending_redactions = true;
            }
            return Ok(());
        };
        if row.redacted_by.is_some() || target.kind() == "m.room.create" {
            return Ok(());
        }
        let vouched = target.sender().server_name() == redaction.sender().server_name();
        let allowed =
            target.sender() == redaction.sender() || vouched || self.has_redact_power(redaction.sender())?;
        if !allowed {
            return Ok(());
        }
        let redacted = target
            .redacted(&self.info.rules)
            .map_err(|e| RoomError::Corrupt(e.to_string()))?;
        store::mark_redacted(
            self.sql()?,
            target_id.as_str(),
            redaction.event_id().as_str(),
            &redacted.to_federation_json(),
        )?;
        self.remember(row.nid, &redacted);
        Ok(())
    }

    /// Whether `user` holds the room's `redact` power level now (room creators always do
    /// where the room version privileges them).
    fn has_redact_power(&self, user: &UserId) -> Result<bool, RoomError> {
        self.power_check(|p| p.may(user.as_str(), "redact"))
    }

    /// Answers a question about the current power levels.
    pub fn power_check(&self, question: impl FnOnce(&Power<'_>) -> bool) -> Result<bool, RoomError> {
        let create = self.current_entry(&StateEventType::RoomCreate, "")?;
        let power = self.current_entry(&StateEventType::RoomPowerLevels, "")?;
        let levels = power.map(|p| p.content());
        let (creator, create_content) = match &create {
            Some(c) => (c.sender().to_string(), c.content()),
            None => (String::new(), serde_json::Value::Null),
        };
        Ok(question(&Power {
            levels: levels.as_ref(),
            creator: &creator,
            create_content: &create_content,
            creators_unlimited: self.info.rules.authorization.explicitly_privilege_room_creators,
        }))
    }

    /// A local user may redact an event of this room that they sent, or any with the
    /// `redact` power level. Anything else is refused before an event is made.
    fn check_local_redaction(
        &mut self,
        sender: &UserId,
        target: Option<&ruma::EventId>,
    ) -> Result<(), RoomError> {
        let target =
            target.ok_or_else(|| RoomError::Forbidden("A redaction names the event it redacts".into()))?;
        let Some((row, pdu)) = self.pdu(target.as_str())? else {
            return Err(RoomError::UnknownEvent);
        };
        if row.status != Status::Accepted as i64 && pdu.sender() != sender {
            return Err(RoomError::UnknownEvent);
        }
        if pdu.sender() == sender || self.has_redact_power(sender)? {
            return Ok(());
        }
        Err(RoomError::Forbidden(
            "You may only redact your own events without the redact power level".into(),
        ))
    }

    // ---- local events ----

    /// Builds, signs, authorizes and inputs an event from a local user. Nothing is stored
    /// when the auth rules refuse it.
    pub fn send(
        &mut self,
        sender: &UserId,
        new: NewEvent,
        signer: Signer<'_>,
    ) -> Result<(Pdu, i64), RoomError> {
        if new.event_type == "m.room.redaction" {
            self.check_local_redaction(sender, new.redacts.as_deref())?;
        }
        if let Some(same) = self.same_state(sender, &new)? {
            return Ok(same);
        }
        let pdu = self.build_allowed(sender, new, signer)?;
        match self.input_new(pdu.clone())? {
            Outcome::Accepted { stream_pos } => Ok((pdu, stream_pos)),
            Outcome::Rejected(r) | Outcome::SoftFailed(r) => Err(RoomError::Forbidden(r)),
            Outcome::Stored => Err(RoomError::Corrupt("local event stored as outlier".into())),
        }
    }

    /// Builds and signs an event on the current state and forward extremities, and
    /// checks it against the auth rules; nothing is stored. What `send` inputs, and the
    /// template of a `make_join` / `make_leave` for another server's user.
    pub fn build_allowed(
        &mut self,
        sender: &UserId,
        new: NewEvent,
        signer: Signer<'_>,
    ) -> Result<Pdu, RoomError> {
        let extremities = self.head()?.extremities;
        let mut prev = Vec::with_capacity(extremities.len());
        {
            let fetch = self.fetch_fn();
            for ext in &extremities {
                let id =
                    OwnedEventId::try_from(ext.as_str()).map_err(|e| RoomError::Corrupt(e.to_string()))?;
                if let Some(event) = fetch(&id) {
                    prev.push(Prev::of(&event, &self.info.rules));
                }
            }
        }
        // The few state entries the event needs, looked up by nid: a large room's whole
        // state is never turned into events for one send.
        let (_, state) = self.current_state_shared()?;
        let rules = self.info.rules.clone();
        let failed = std::cell::RefCell::new(None);
        let lookup = |t: &StateEventType, k: &str| self.state_entry(&state, t, k, &failed);
        let built = build_event(&rules, &self.info.room_id, sender, new, &prev, lookup, signer);
        let allowed = match &built {
            Ok(pdu) => check_auth(pdu, &rules, lookup),
            Err(_) => Ok(()),
        };
        if let Some(e) = failed.into_inner() {
            return Err(e);
        }
        let pdu = built?;
        allowed.map_err(|r| RoomError::Forbidden(r.reason))?;
        Ok(pdu)
    }

    /// A state event the room already has, from the same sender with the same content:
    /// setting state (or joining) twice makes no new event, and answers the existing one.
    fn same_state(&mut self, sender: &UserId, new: &NewEvent) -> Result<Option<(Pdu, i64)>, RoomError> {
        let Some(state_key) = new.state_key.as_deref() else {
            return Ok(None);
        };
        let kind = StateEventType::from(new.event_type.as_str());
        let Some(current) = self.current_entry(&kind, state_key)? else {
            return Ok(None);
        };
        if current.sender() != sender || current.content() != new.content {
            return Ok(None);
        }
        let Some((row, pdu)) = self.pdu(current.event_id().as_str())? else {
            return Ok(None);
        };
        Ok(row.stream_pos.map(|pos| (pdu, pos)))
    }

    /// The forward extremities with their depths.
    pub fn extremities(&self) -> Result<Vec<String>, RoomError> {
        Ok(self.head()?.extremities)
    }
}
