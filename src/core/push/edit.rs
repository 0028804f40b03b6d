//! The edits the push rules API makes to a ruleset, with the spec's refusals. The
//! handlers (`api/client/push_rules.rs`) load the ruleset, apply one of these and store
//! the result.

use ruma::push::{
    Action, AnyPushRuleRef, InsertPushRuleError, NewConditionalPushRule, NewPatternedPushRule, NewPushRule,
    NewSimplePushRule, PushCondition, RemovePushRuleError, RuleKind, Ruleset,
};
use ruma::{OwnedRoomId, OwnedUserId};
use serde_json::{json, Value};

/// Why an edit was refused; the handler maps it to the spec's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EditError {
    /// 404 `M_NOT_FOUND`: no such rule.
    NotFound,
    /// 400: the request is not acceptable (bad kind, body, rule id or position).
    Invalid(String),
    /// 400 `M_UNKNOWN`: `before` / `after` names no rule of the kind (the spec's example).
    UnknownPosition(String),
}

fn invalid(text: impl Into<String>) -> EditError {
    EditError::Invalid(text.into())
}

/// The kind from the path: one of the five the spec names.
pub fn kind(text: &str) -> Result<RuleKind, EditError> {
    match text {
        "override" => Ok(RuleKind::Override),
        "underride" => Ok(RuleKind::Underride),
        "sender" => Ok(RuleKind::Sender),
        "room" => Ok(RuleKind::Room),
        "content" => Ok(RuleKind::Content),
        _ => Err(invalid(format!("Unknown push rule kind: {text}"))),
    }
}

fn found<'a>(rules: &'a Ruleset, kind: &RuleKind, rule_id: &str) -> Result<AnyPushRuleRef<'a>, EditError> {
    rules.get(kind.clone(), rule_id).ok_or(EditError::NotFound)
}

/// One rule as the API shows it.
pub fn get(rules: &Ruleset, kind: &RuleKind, rule_id: &str) -> Result<Value, EditError> {
    let value = match found(rules, kind, rule_id)? {
        AnyPushRuleRef::Override(r) | AnyPushRuleRef::Underride(r) => serde_json::to_value(r),
        AnyPushRuleRef::Content(r) => serde_json::to_value(r),
        AnyPushRuleRef::Room(r) => serde_json::to_value(r),
        AnyPushRuleRef::Sender(r) => serde_json::to_value(r),
        _ => return Err(EditError::NotFound),
    };
    value.map_err(|e| invalid(e.to_string()))
}

/// `{"enabled": …}` of one rule.
pub fn enabled(rules: &Ruleset, kind: &RuleKind, rule_id: &str) -> Result<Value, EditError> {
    Ok(json!({ "enabled": found(rules, kind, rule_id)?.enabled() }))
}

/// `{"actions": […]}` of one rule.
pub fn actions(rules: &Ruleset, kind: &RuleKind, rule_id: &str) -> Result<Value, EditError> {
    let actions = found(rules, kind, rule_id)?.actions();
    Ok(json!({ "actions": serde_json::to_value(actions).map_err(|e| invalid(e.to_string()))? }))
}

/// The `actions` of a request body: required, an array of actions.
fn parse_actions(body: &Value) -> Result<Vec<Action>, EditError> {
    let list = body.get("actions").ok_or_else(|| invalid("Missing actions"))?;
    if !list.is_array() {
        return Err(invalid("actions must be an array"));
    }
    serde_json::from_value(list.clone()).map_err(|e| invalid(format!("Invalid actions: {e}")))
}

/// Creates or replaces a user-defined rule (`PUT …/{kind}/{ruleId}`), placed by
/// `before` / `after` among the rules of its kind.
pub fn put(
    rules: &mut Ruleset,
    kind: &RuleKind,
    rule_id: &str,
    body: &Value,
    before: Option<&str>,
    after: Option<&str>,
) -> Result<(), EditError> {
    if !body.is_object() {
        return Err(invalid("The rule must be a JSON object"));
    }
    if rule_id.starts_with('.') {
        return Err(invalid(
            "Rule ids starting with '.' are reserved for server-default rules",
        ));
    }
    let actions = parse_actions(body)?;
    let conditions = || -> Result<Vec<PushCondition>, EditError> {
        match body.get("conditions") {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(list @ Value::Array(_)) => {
                serde_json::from_value(list.clone()).map_err(|e| invalid(format!("Invalid conditions: {e}")))
            }
            Some(_) => Err(invalid("conditions must be an array")),
        }
    };
    let rule = match kind {
        RuleKind::Override => NewPushRule::Override(NewConditionalPushRule::new(
            rule_id.to_owned(),
            conditions()?,
            actions,
        )),
        RuleKind::Underride => NewPushRule::Underride(NewConditionalPushRule::new(
            rule_id.to_owned(),
            conditions()?,
            actions,
        )),
        RuleKind::Content => {
            let pattern = body
                .get("pattern")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid("Content rules need a string pattern"))?;
            NewPushRule::Content(NewPatternedPushRule::new(
                rule_id.to_owned(),
                pattern.to_owned(),
                actions,
            ))
        }
        RuleKind::Room => {
            let room =
                OwnedRoomId::try_from(rule_id).map_err(|_| invalid("A room rule's id is a room id"))?;
            NewPushRule::Room(NewSimplePushRule::new(room, actions))
        }
        RuleKind::Sender => {
            let user =
                OwnedUserId::try_from(rule_id).map_err(|_| invalid("A sender rule's id is a user id"))?;
            NewPushRule::Sender(NewSimplePushRule::new(user, actions))
        }
        _ => return Err(invalid("Unknown push rule kind")),
    };
    // ruma places the rule before it checks `before` / `after`: edit a copy, so a refused
    // request leaves the ruleset as it was.
    let mut next = rules.clone();
    next.insert(rule, after, before).map_err(|e| match e {
        InsertPushRuleError::UnknownRuleId => EditError::UnknownPosition(format!(
            "before/after rule not found: {}",
            before.or(after).unwrap_or("")
        )),
        other => invalid(other.to_string()),
    })?;
    *rules = next;
    Ok(())
}

/// Removes a user-defined rule; server-default rules stay (disable them instead).
pub fn delete(rules: &mut Ruleset, kind: &RuleKind, rule_id: &str) -> Result<(), EditError> {
    rules.remove(kind.clone(), rule_id).map_err(|e| match e {
        RemovePushRuleError::NotFound => EditError::NotFound,
        other => invalid(format!("Cannot delete this rule: {other}")),
    })
}

/// `PUT …/enabled`: body `{"enabled": bool}`.
pub fn set_enabled(
    rules: &mut Ruleset,
    kind: &RuleKind,
    rule_id: &str,
    body: &Value,
) -> Result<(), EditError> {
    let enabled = body
        .get("enabled")
        .and_then(Value::as_bool)
        .ok_or_else(|| invalid("enabled must be a boolean"))?;
    rules
        .set_enabled(kind.clone(), rule_id, enabled)
        .map_err(|_| EditError::NotFound)
}

/// `PUT …/actions`: body `{"actions": […]}`; server-default rules may change theirs.
pub fn set_actions(
    rules: &mut Ruleset,
    kind: &RuleKind,
    rule_id: &str,
    body: &Value,
) -> Result<(), EditError> {
    let actions = parse_actions(body)?;
    found(rules, kind, rule_id)?;
    rules
        .set_actions(kind.clone(), rule_id, actions)
        .map_err(|_| EditError::NotFound)
}
