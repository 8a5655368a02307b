//! What an SSH certificate lets its holder do once logged in: the
//! `permit-*` extensions of OpenSSH's certificate format (PROTOCOL.certkeys,
//! "Extensions"). sshd grants a certificate login only the extensions the
//! certificate carries, so these decide whether `ssh -L`, `ssh -A` and
//! `ssh -X` work, whatever the user's client asks for.
//!
//! A service's table sets them for everyone it admits; the allow rule that
//! admits a request may set any of them again for the people it names.
//! `permit-pty` is on unless turned off (certificates always carried it);
//! the forwarding ones are off unless turned on.

/// The OpenSSH extensions a certificate carries. Names as in
/// PROTOCOL.certkeys; `permit-user-rc` is never granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permits {
    /// `permit-pty`: a terminal.
    pub pty: bool,
    /// `permit-port-forwarding`: `ssh -L`, `-R`, `-D`.
    pub port_forwarding: bool,
    /// `permit-agent-forwarding`: `ssh -A`.
    pub agent_forwarding: bool,
    /// `permit-X11-forwarding`: `ssh -X`.
    pub x11_forwarding: bool,
}

impl Default for Permits {
    /// What certificates granted before these settings existed: a terminal only.
    fn default() -> Self {
        Self {
            pty: true,
            port_forwarding: false,
            agent_forwarding: false,
            x11_forwarding: false,
        }
    }
}

impl Permits {
    /// The extension names granted, in OpenSSH's spelling.
    pub fn extensions(&self) -> Vec<&'static str> {
        [
            (self.x11_forwarding, "permit-X11-forwarding"),
            (self.agent_forwarding, "permit-agent-forwarding"),
            (self.port_forwarding, "permit-port-forwarding"),
            (self.pty, "permit-pty"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect()
    }

    /// These, with whatever `overrides` sets replaced.
    pub fn with(mut self, overrides: &PermitSettings) -> Self {
        let set = |v: &mut bool, o: Option<bool>| {
            if let Some(o) = o {
                *v = o;
            }
        };
        set(&mut self.pty, overrides.permit_pty);
        set(&mut self.port_forwarding, overrides.permit_port_forwarding);
        set(
            &mut self.agent_forwarding,
            overrides.permit_agent_forwarding,
        );
        set(&mut self.x11_forwarding, overrides.permit_x11_forwarding);
        self
    }
}

/// The `permit_*` keys of a service table or a rule in the policy file
/// (`permit_X11_forwarding` is accepted for `permit_x11_forwarding`); each
/// one left out keeps what applies already (the service's setting, or the
/// default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PermitSettings {
    /// `permit-pty` (default on).
    pub permit_pty: Option<bool>,
    /// `permit-port-forwarding` (default off).
    pub permit_port_forwarding: Option<bool>,
    /// `permit-agent-forwarding` (default off).
    pub permit_agent_forwarding: Option<bool>,
    /// `permit-X11-forwarding` (default off).
    pub permit_x11_forwarding: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_grant_a_terminal_only_and_overrides_replace() {
        assert_eq!(Permits::default().extensions(), ["permit-pty"]);
        let service = PermitSettings {
            permit_port_forwarding: Some(true),
            ..Default::default()
        };
        let rule = PermitSettings {
            permit_pty: Some(false),
            permit_agent_forwarding: Some(true),
            permit_port_forwarding: Some(false),
            ..Default::default()
        };
        let p = Permits::default().with(&service);
        assert_eq!(p.extensions(), ["permit-port-forwarding", "permit-pty"]);
        assert_eq!(p.with(&rule).extensions(), ["permit-agent-forwarding"]);
    }
}
