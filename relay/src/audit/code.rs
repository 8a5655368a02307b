//! The stable code of each audit event type: a number a SIEM rule or an
//! alert can match on that never changes meaning, even if a type's name
//! is ever spelled differently. One table, documented in
//! `docs/PROTOCOL.md` ("Audit event codes"). Codes are never reused: a
//! type that goes away keeps its number retired.
//!
//! The code is derived from the stored event's `type` when a record is
//! read (see `Record::view`), not stored: the `type` is covered by the
//! record's hash, so the code is as trustworthy as the record, and
//! records written before codes existed have one too.

/// `(type, code, what it records)`, grouped by thousands: 1xxx sign-in
/// and the person's own account, 2xxx users, 3xxx connectors, 4xxx
/// devices, 5xxx policy and certificates, 6xxx sessions.
pub const CODES: &[(&str, u16, &str)] = &[
    ("sign_in", 1001, "a password sign-in, accepted or refused"),
    ("sign_out", 1002, "sign-ins ended by their user or an admin"),
    (
        "sso_sign_in",
        1003,
        "a sign-in through an OpenID Connect provider",
    ),
    ("sign_ins_listed", 1004, "an admin listed a user's sign-ins"),
    (
        "totp_enrolled",
        1010,
        "one-time codes put in force (or replaced)",
    ),
    ("totp_reset", 1011, "one-time codes turned off by an admin"),
    ("password_changed", 1012, "a user's password changed"),
    ("user_added", 2001, "a local user created"),
    ("user_removed", 2002, "a user removed"),
    (
        "user_locked",
        2003,
        "a user locked: sign-in refused, sessions ended",
    ),
    ("user_unlocked", 2004, "a locked user unlocked"),
    ("groups_changed", 2005, "a user's groups changed"),
    (
        "connector_enrolled",
        3001,
        "a connector enrolled with a token",
    ),
    (
        "connector_connected",
        3002,
        "a connector's connection came up",
    ),
    (
        "connector_disconnected",
        3003,
        "a connector's connection went down",
    ),
    ("connector_revoked", 3004, "a connector revoked"),
    (
        "connector_grants",
        3005,
        "a service name granted to or withdrawn from a connector",
    ),
    (
        "connector_service_refused",
        3006,
        "a connector announced a name it was not granted",
    ),
    ("enrolment_token_issued", 3007, "an enrolment token issued"),
    ("device_added", 4001, "a device certificate issued"),
    ("device_revoked", 4002, "a device certificate revoked"),
    ("decision", 5001, "a policy decision with its inputs"),
    ("policy_reloaded", 5002, "the policy file read again"),
    ("cert_issued", 5003, "an SSH certificate issued"),
    (
        "stream_opened",
        6001,
        "a session's stream opened to a connector",
    ),
    ("stream_closed", 6002, "a session's stream closed"),
    (
        "client",
        6003,
        "an event the client reported about its session",
    ),
    ("session_terminated", 6004, "an admin ended a live session"),
];

/// The code of events of type `kind` (`sign_in`, ...); `None` for a type
/// this relay does not know (written by a newer one).
pub fn code_of(kind: &str) -> Option<u16> {
    CODES
        .iter()
        .find(|(k, _, _)| *k == kind)
        .map(|(_, c, _)| *c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn codes_and_types_are_unique() {
        let kinds: BTreeSet<_> = CODES.iter().map(|(k, _, _)| k).collect();
        let codes: BTreeSet<_> = CODES.iter().map(|(_, c, _)| c).collect();
        assert_eq!(kinds.len(), CODES.len());
        assert_eq!(codes.len(), CODES.len());
        assert_eq!(code_of("user_locked"), Some(2003));
        assert_eq!(code_of("from_the_future"), None);
    }

    #[test]
    fn every_event_type_has_a_code() {
        // The type names serde gives the variants, from the docs table's
        // point of view: each listed in PROTOCOL.md must be in CODES.
        let doc = include_str!("../../../docs/PROTOCOL.md");
        for (kind, code, _) in CODES {
            assert!(
                doc.contains(&format!("| {code} | `{kind}` |")),
                "docs/PROTOCOL.md lacks the row of {kind} ({code})"
            );
        }
    }
}
