//! Access policy: for every request to reach a service, whether this person,
//! on this device, from this place, at this level of risk, may reach it.
//!
//! The policy lives in the relay's config file under `[policy]`. Each
//! service has ordered rules; the first rule whose conditions all hold
//! decides (allow or deny). When none holds, access is denied and the
//! reason is the first failed condition of the first allow rule that
//! admits the person's identity, so "you need a device certificate" is
//! said rather than a bare "no". Reasons speak about the requester's own
//! data only (their address, their groups, their score), never about who
//! else a rule admits.
//!
//! Evaluation is pure: [`Policy::evaluate`] takes [`Inputs`] and returns a
//! [`Decision`]. The web handlers gather the inputs (`web/access.rs`), and
//! [`PolicyHandle`] swaps in a new policy when the file changes.

pub mod decide;
mod handle;
pub mod net;
pub mod permits;
pub mod risk;
pub mod window;

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use sallyport_proto::frame::{check_name, service_name};
use serde::{Deserialize, Serialize};

pub use handle::PolicyHandle;
use net::{Cidr, GeoDb};
use permits::{PermitSettings, Permits};
use risk::{RiskModel, RiskScore, RiskWeights};
use window::TimeWindow;

/// `[policy]` in the relay's config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// What happens to a service with no table of its own (and no `"*"`
    /// table): "deny" (the default) or "allow".
    #[serde(default)]
    pub default: Action,
    /// A MaxMind-format country database (GeoLite2-Country.mmdb, DB-IP).
    pub geoip_db: Option<PathBuf>,
    #[serde(default)]
    pub risk: RiskWeights,
    /// Per service; `"*"` applies to services not listed.
    #[serde(default)]
    pub services: BTreeMap<String, ServiceConfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// The service's sshd trusts the relay's SSH CA: clients log in with a
    /// short-lived certificate.
    #[serde(default)]
    pub certificates: bool,
    /// Sign this service's certificates with a CA key of its own
    /// (`ssh-ca show --service NAME`): with one CA for all, any sshd that
    /// trusts it accepts a certificate for an account it has, whichever
    /// service the certificate was issued for.
    #[serde(default)]
    pub separate_ca: bool,
    /// Unix accounts each user (`alice`) or group (`group:ops`) may log in
    /// as with a certificate. Without this table a user may log in as the
    /// account of their own name.
    #[serde(default)]
    pub principals: BTreeMap<String, Vec<String>>,
    /// Most concurrent sessions one user may hold to this service, instead
    /// of the relay's `--max-sessions-per-user-per-service` (default 8);
    /// `--max-sessions-per-user`, which counts all services, still applies.
    /// At 10 or more, one user's idle sessions can make a stock sshd
    /// (`MaxStartups 10:30:100`) drop other people's connections.
    pub max_sessions_per_user: Option<usize>,
    /// Record keystrokes (client input events) as well as terminal output.
    /// Off by default: keystrokes include passwords typed at prompts that
    /// do not echo (sudo, su, ssh to another host).
    #[serde(default)]
    pub record_input: bool,
    /// Certificates carry `permit-pty` (default true; see `policy::permits`).
    pub permit_pty: Option<bool>,
    /// Certificates carry `permit-port-forwarding`: `ssh -L/-R/-D` (default false).
    pub permit_port_forwarding: Option<bool>,
    /// Certificates carry `permit-agent-forwarding`: `ssh -A` (default false).
    pub permit_agent_forwarding: Option<bool>,
    /// Certificates carry `permit-X11-forwarding`: `ssh -X` (default false).
    #[serde(alias = "permit_X11_forwarding")]
    pub permit_x11_forwarding: Option<bool>,
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Allow,
    #[default]
    Deny,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Allow => "allow",
            Action::Deny => "deny",
        })
    }
}

/// One rule; every condition given must hold for the rule to apply.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub name: Option<String>,
    pub action: Action,
    /// Required on a rule with no conditions, so that a rule cut short
    /// (a half-written file) cannot admit everyone by accident.
    #[serde(default)]
    pub everyone: bool,
    /// The rule applies to these users, and to members of `groups`.
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    /// The sign-in used a one-time code.
    #[serde(default)]
    pub second_factor: bool,
    /// The browser presented a device certificate the relay issued.
    #[serde(default)]
    pub device: bool,
    /// Posture attributes the device must have been registered with.
    #[serde(default)]
    pub device_attributes: BTreeMap<String, String>,
    /// The source address is in one of these ranges.
    #[serde(default)]
    pub cidr: Vec<String>,
    /// The source address is in none of these ranges.
    #[serde(default)]
    pub not_cidr: Vec<String>,
    /// ISO country codes; needs `policy.geoip_db`.
    #[serde(default)]
    pub countries: Vec<String>,
    #[serde(default)]
    pub not_countries: Vec<String>,
    /// The risk score is at most this.
    pub max_risk: Option<u32>,
    /// Time window: days (`mon-fri`, `sat`), hours (`08:00-18:00`), read in
    /// `timezone` (IANA, e.g. `Europe/Berlin`) or at `utc_offset` (`+01:00`).
    #[serde(default)]
    pub days: Vec<String>,
    pub hours: Option<String>,
    pub utc_offset: Option<String>,
    pub timezone: Option<String>,
    /// When this allow rule admits a request, certificates carry `permit-pty` (unset: the service's setting).
    pub permit_pty: Option<bool>,
    /// When this allow rule admits a request, certificates carry `permit-port-forwarding`: `ssh -L/-R/-D` (unset: the service's setting).
    pub permit_port_forwarding: Option<bool>,
    /// When this allow rule admits a request, certificates carry `permit-agent-forwarding`: `ssh -A` (unset: the service's setting).
    pub permit_agent_forwarding: Option<bool>,
    /// When this allow rule admits a request, certificates carry `permit-X11-forwarding`: `ssh -X` (unset: the service's setting).
    #[serde(alias = "permit_X11_forwarding")]
    pub permit_x11_forwarding: Option<bool>,
}

/// What a decision is made from. Everything here is recorded with it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Inputs {
    pub user: String,
    pub groups: Vec<String>,
    pub service: String,
    pub ip: IpAddr,
    pub country: Option<String>,
    pub device: Option<DeviceInput>,
    /// The sign-in used a one-time code.
    pub second_factor: bool,
    /// The user has a one-time code set up (changes what a denial advises).
    pub second_factor_enrolled: bool,
    /// The single sign-on provider the user signs in with, if any: their
    /// second factor is the provider's, not a one-time code here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sso_provider: Option<String>,
    pub risk: RiskScore,
    /// Unix time of the request.
    pub at: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceInput {
    pub name: String,
    pub attributes: BTreeMap<String, String>,
}

/// Where in a session's life the policy was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// The terminal page was requested.
    Page,
    /// The session WebSocket is opening (browser or `sallyport proxy`).
    Websocket,
    /// An SSH certificate was requested.
    Certificate,
    /// `sallyport-relay policy test`.
    Test,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Decision {
    pub allowed: bool,
    /// For a person: which condition decided, about their own request.
    pub reason: String,
    /// The rule that decided, if one did.
    pub rule: Option<String>,
    /// For admins: each rule in order and how it fared.
    pub trace: Vec<String>,
    /// Denied, but an allow rule admits this person and another condition
    /// failed (device, place, time, risk...): worth showing them the
    /// service with the reason. False for denials of who they are.
    #[serde(default)]
    pub near_miss: bool,
}

#[derive(Debug, Clone)]
enum Condition {
    Identity {
        users: Vec<String>,
        groups: Vec<String>,
    },
    SecondFactor,
    Device(BTreeMap<String, String>),
    InRanges(Vec<Cidr>),
    NotInRanges(Vec<Cidr>),
    Countries(Vec<String>),
    NotCountries(Vec<String>),
    Window(TimeWindow),
    MaxRisk(u32),
}

#[derive(Debug, Clone)]
struct Rule {
    name: String,
    action: Action,
    conditions: Vec<Condition>,
    permits: PermitSettings,
}

#[derive(Debug, Clone, Default)]
struct ServicePolicy {
    certificates: bool,
    separate_ca: bool,
    principals: BTreeMap<String, Vec<String>>,
    max_sessions_per_user: Option<usize>,
    record_input: bool,
    permits: PermitSettings,
    rules: Vec<Rule>,
}

/// A parsed, checked policy. Cheap to share: handlers hold an `Arc` for the
/// length of one request, so a reload never changes a decision midway.
#[derive(Debug, Default)]
pub struct Policy {
    /// False when the config file has no `[policy]`: every signed-in user
    /// may reach every service, as before policies existed.
    pub configured: bool,
    default: Action,
    services: BTreeMap<String, ServicePolicy>,
    /// `--ssh-cert-service`: certificates on, rules from the policy.
    cert_services: Vec<String>,
    pub risk: RiskModel,
    geo: Option<Arc<GeoDb>>,
}

fn parse_ranges(what: &str, list: &[String]) -> Result<Vec<Cidr>, String> {
    list.iter()
        .map(|s| s.parse().map_err(|e| format!("{what}: {e}")))
        .collect()
}

impl Rule {
    fn compile(service: &str, index: usize, r: RuleConfig, geo: bool) -> Result<Self, String> {
        let name = r.name.unwrap_or_else(|| format!("#{}", index + 1));
        let at = format!("policy.services.{service} rule {name:?}");
        let mut conditions = Vec::new();
        for u in &r.users {
            check_name("user", u).map_err(|e| format!("{at}: {e}"))?;
        }
        for g in &r.groups {
            check_name("group", g).map_err(|e| format!("{at}: {e}"))?;
        }
        if !r.users.is_empty() || !r.groups.is_empty() {
            conditions.push(Condition::Identity {
                users: r.users,
                groups: r.groups,
            });
        }
        if r.second_factor {
            conditions.push(Condition::SecondFactor);
        }
        if r.device || !r.device_attributes.is_empty() {
            conditions.push(Condition::Device(r.device_attributes));
        }
        if !r.cidr.is_empty() {
            conditions.push(Condition::InRanges(parse_ranges(&at, &r.cidr)?));
        }
        if !r.not_cidr.is_empty() {
            conditions.push(Condition::NotInRanges(parse_ranges(&at, &r.not_cidr)?));
        }
        let countries = |list: Vec<String>| -> Result<Vec<String>, String> {
            if !geo {
                return Err(format!(
                    "{at}: country conditions need policy.geoip_db (a MaxMind-format database)"
                ));
            }
            list.into_iter()
                .map(|c| {
                    if c.len() == 2 && c.bytes().all(|b| b.is_ascii_alphabetic()) {
                        Ok(c.to_ascii_uppercase())
                    } else {
                        Err(format!("{at}: {c:?} is not a two-letter country code"))
                    }
                })
                .collect()
        };
        if !r.countries.is_empty() {
            conditions.push(Condition::Countries(countries(r.countries)?));
        }
        if !r.not_countries.is_empty() {
            conditions.push(Condition::NotCountries(countries(r.not_countries)?));
        }
        if !r.days.is_empty() || r.hours.is_some() {
            let w = TimeWindow::parse(
                &r.days,
                r.hours.as_deref(),
                r.utc_offset.as_deref(),
                r.timezone.as_deref(),
            )
            .map_err(|e| format!("{at}: {e}"))?;
            conditions.push(Condition::Window(w));
        } else if r.utc_offset.is_some() {
            return Err(format!("{at}: utc_offset needs days or hours"));
        } else if r.timezone.is_some() {
            return Err(format!("{at}: timezone needs days or hours"));
        }
        if let Some(max) = r.max_risk {
            conditions.push(Condition::MaxRisk(max));
        }
        match (conditions.is_empty(), r.everyone) {
            (true, false) => {
                return Err(format!(
                "{at}: a rule with no conditions applies to everyone; say so with everyone = true"
            ))
            }
            (false, true) => {
                return Err(format!(
                    "{at}: everyone = true is for rules with no conditions"
                ))
            }
            _ => {}
        }
        let permits = PermitSettings {
            permit_pty: r.permit_pty,
            permit_port_forwarding: r.permit_port_forwarding,
            permit_agent_forwarding: r.permit_agent_forwarding,
            permit_x11_forwarding: r.permit_x11_forwarding,
        };
        if r.action == Action::Deny && permits != PermitSettings::default() {
            return Err(format!(
                "{at}: permit_* settings are for allow rules (a deny rule issues no certificate)"
            ));
        }
        Ok(Self {
            name,
            action: r.action,
            conditions,
            permits,
        })
    }
}

impl Condition {
    /// `Ok` with what held, or `Err` with what failed; both in words for
    /// the person asking, about their own request only.
    fn check(&self, i: &Inputs) -> Result<String, String> {
        let svc = &i.service;
        match self {
            Condition::Identity { users, groups } => {
                if users.contains(&i.user) {
                    return Ok(format!("user {}", i.user));
                }
                match i.groups.iter().find(|g| groups.contains(g)) {
                    Some(g) => Ok(format!("group {g}")),
                    None => Err(format!("user {} may not reach service {svc}", i.user)),
                }
            }
            Condition::SecondFactor => {
                if let Some(provider) = &i.sso_provider {
                    return if i.second_factor {
                        Ok(format!("signed in through {provider} with a second factor"))
                    } else {
                        Err(format!(
                            "service {svc} needs a second factor: sign in again through {provider} with multi-factor authentication"
                        ))
                    };
                }
                if i.second_factor {
                    Ok("signed in with a one-time code".into())
                } else if i.second_factor_enrolled {
                    Err(format!(
                        "service {svc} needs a second factor: sign out and sign in again with your one-time code"
                    ))
                } else {
                    Err(format!(
                        "service {svc} needs a second factor: ask an admin to set up a one-time code (TOTP) for you"
                    ))
                }
            }
            Condition::Device(attrs) => {
                let Some(d) = &i.device else {
                    return Err(format!(
                        "service {svc} needs a device certificate from this relay, and none was presented"
                    ));
                };
                for (k, v) in attrs {
                    if d.attributes.get(k) != Some(v) {
                        return Err(format!(
                            "service {svc} needs a device with {k}={v}; device {} is not registered with it",
                            d.name
                        ));
                    }
                }
                Ok(format!("device {}", d.name))
            }
            Condition::InRanges(ranges) => match ranges.iter().find(|r| r.contains(i.ip)) {
                Some(r) => Ok(format!("address {} in {r}", i.ip)),
                None => Err(format!(
                    "your address {} is not in a network allowed for service {svc}",
                    i.ip
                )),
            },
            Condition::NotInRanges(ranges) => match ranges.iter().find(|r| r.contains(i.ip)) {
                Some(_) => Err(format!(
                    "your address {} is in a network blocked for service {svc}",
                    i.ip
                )),
                None => Ok(format!("address {} outside blocked ranges", i.ip)),
            },
            Condition::Countries(list) => match &i.country {
                Some(c) if list.contains(c) => Ok(format!("country {c}")),
                Some(c) => Err(format!(
                    "your location ({c}) is not allowed for service {svc}"
                )),
                None => Err(format!(
                    "your location is unknown, and service {svc} is allowed only from some countries"
                )),
            },
            Condition::NotCountries(list) => match &i.country {
                Some(c) if list.contains(c) => Err(format!(
                    "your location ({c}) is blocked for service {svc}"
                )),
                Some(c) => Ok(format!("country {c} not blocked")),
                None => Ok("country unknown, not blocked".into()),
            },
            Condition::Window(w) => {
                if w.contains(i.at) {
                    Ok(format!("time {} in {w}", w.local(i.at)))
                } else {
                    Err(format!(
                        "service {svc} may be reached only {w}; it is now {}",
                        w.local(i.at)
                    ))
                }
            }
            Condition::MaxRisk(max) => {
                if i.risk.score <= *max {
                    Ok(format!("risk {} at most {max}", i.risk.score))
                } else {
                    Err(format!(
                        "your risk score {} is above {max}, the limit for service {svc}",
                        i.risk
                    ))
                }
            }
        }
    }
}

impl Policy {
    /// Checks and compiles `[policy]`. `None` (no section) is the open
    /// policy. `cert_services` are services marked with `--ssh-cert-service`.
    pub fn compile(cfg: Option<PolicyConfig>, cert_services: &[String]) -> Result<Self, String> {
        let configured = cfg.is_some();
        let cfg = cfg.unwrap_or_default();
        let geo = match &cfg.geoip_db {
            Some(path) => Some(Arc::new(GeoDb::open(path)?)),
            None => None,
        };
        let mut services = BTreeMap::new();
        for (name, s) in cfg.services {
            let name = if name == "*" {
                name
            } else {
                service_name("service in policy.services", &name).map_err(|e| e.to_string())?
            };
            if services.contains_key(&name) {
                return Err(format!(
                    "policy.services.{name} is given twice (service names are case-insensitive)"
                ));
            }
            for (who, accounts) in &s.principals {
                let subject = who.strip_prefix("group:").unwrap_or(who);
                check_name("user or group in principals", subject)
                    .map_err(|e| format!("policy.services.{name}.principals: {e}"))?;
                for a in accounts {
                    if a.is_empty() || a.len() > 64 || a.contains([',', ' ', '\n']) {
                        return Err(format!(
                            "policy.services.{name}.principals: {a:?} is not a Unix account name"
                        ));
                    }
                }
            }
            if s.max_sessions_per_user == Some(0) {
                return Err(format!(
                    "policy.services.{name}.max_sessions_per_user = 0 would let no one in; \
                     deny the service with a rule instead"
                ));
            }
            let rules = s
                .rules
                .into_iter()
                .enumerate()
                .map(|(i, r)| Rule::compile(&name, i, r, geo.is_some()))
                .collect::<Result<_, _>>()?;
            services.insert(
                name,
                ServicePolicy {
                    certificates: s.certificates,
                    separate_ca: s.separate_ca,
                    principals: s.principals,
                    max_sessions_per_user: s.max_sessions_per_user,
                    record_input: s.record_input,
                    permits: PermitSettings {
                        permit_pty: s.permit_pty,
                        permit_port_forwarding: s.permit_port_forwarding,
                        permit_agent_forwarding: s.permit_agent_forwarding,
                        permit_x11_forwarding: s.permit_x11_forwarding,
                    },
                    rules,
                },
            );
        }
        Ok(Self {
            cert_services: cert_services.to_vec(),
            configured,
            default: cfg.default,
            services,
            risk: RiskModel::new(cfg.risk)?,
            geo,
        })
    }

    fn service(&self, name: &str) -> Option<&ServicePolicy> {
        self.services.get(name).or_else(|| self.services.get("*"))
    }

    /// The country of an address, when a database is configured.
    pub fn country(&self, ip: IpAddr) -> Option<String> {
        self.geo.as_ref()?.country(ip)
    }

    /// Whether clients log in to `service` with a relay-signed certificate.
    pub fn certificates(&self, service: &str) -> bool {
        self.cert_services.iter().any(|s| s == service)
            || self.service(service).is_some_and(|s| s.certificates)
    }

    /// The most concurrent sessions one user may hold to `service`, when
    /// its table (or the `"*"` table) sets `max_sessions_per_user`.
    pub fn max_sessions_per_user(&self, service: &str) -> Option<usize> {
        self.service(service)?.max_sessions_per_user
    }

    /// Whether sessions to `service` record keystrokes (`record_input =
    /// true`); otherwise the relay drops clients' input events unstored.
    pub fn records_input(&self, service: &str) -> bool {
        self.service(service).is_some_and(|s| s.record_input)
    }

    /// Whether `service` has a CA of its own (not the `"*"` table's: each
    /// such service is named).
    pub fn separate_ca(&self, service: &str) -> bool {
        self.services.get(service).is_some_and(|s| s.separate_ca)
    }

    /// The extensions a certificate for the request `i` carries: the
    /// service's `permit_*` settings, then those of the allow rule that
    /// admits `i` (the first rule whose conditions all hold, as in
    /// [`Policy::evaluate`]). Without a policy, or for a service with no
    /// table, [`Permits::default`]: a terminal and nothing else.
    pub fn permits(&self, i: &Inputs) -> Permits {
        let Some(service) = self.service(&i.service) else {
            return Permits::default();
        };
        let mut permits = Permits::default().with(&service.permits);
        let deciding = service
            .rules
            .iter()
            .find(|r| r.conditions.iter().all(|c| c.check(i).is_ok()));
        if let Some(rule) = deciding.filter(|r| r.action == Action::Allow) {
            permits = permits.with(&rule.permits);
        }
        permits
    }

    /// Unix accounts `user` may be certified for on `service`, in the order
    /// the policy lists them; the first is the default.
    pub fn principals(&self, user: &str, groups: &[String], service: &str) -> Vec<String> {
        let map = match self.service(service) {
            Some(s) if !s.principals.is_empty() => &s.principals,
            _ => return vec![user.to_owned()],
        };
        let mut out: Vec<String> = Vec::new();
        for (who, accounts) in map {
            let applies = match who.strip_prefix("group:") {
                Some(g) => groups.iter().any(|x| x == g),
                None => who == user,
            };
            if applies {
                for a in accounts {
                    if !out.contains(a) {
                        out.push(a.clone());
                    }
                }
            }
        }
        out
    }

    pub fn evaluate(&self, i: &Inputs) -> Decision {
        if !self.configured {
            return Decision {
                allowed: true,
                reason:
                    "no access policy is configured: every signed-in user may reach every service"
                        .into(),
                rule: None,
                trace: vec!["no [policy] in the config file".into()],
                near_miss: false,
            };
        }
        let Some(service) = self.service(&i.service) else {
            let allowed = self.default == Action::Allow;
            return Decision {
                allowed,
                reason: if allowed {
                    format!("service {} has no rules; the default is allow", i.service)
                } else {
                    format!("user {} may not reach service {}", i.user, i.service)
                },
                rule: None,
                trace: vec![format!(
                    "service {} has no policy; default {}",
                    i.service, self.default
                )],
                near_miss: false,
            };
        };
        let mut trace = Vec::new();
        // The first failure of the first allow rule that admits this identity.
        let mut nearest: Option<String> = None;
        for (n, rule) in service.rules.iter().enumerate() {
            let mut held = Vec::new();
            let mut failed = None;
            for c in &rule.conditions {
                match c.check(i) {
                    Ok(what) => held.push(what),
                    Err(why) => {
                        let identity = matches!(c, Condition::Identity { .. });
                        failed = Some((why, identity));
                        break;
                    }
                }
            }
            let label = format!("rule {} {} {:?}", n + 1, rule.action, rule.name);
            match failed {
                None => {
                    let because = if held.is_empty() {
                        "applies to everyone".to_owned()
                    } else {
                        held.join(", ")
                    };
                    trace.push(format!("{label}: applies ({because})"));
                    let allowed = rule.action == Action::Allow;
                    return Decision {
                        allowed,
                        reason: if allowed {
                            format!("allowed by rule {:?} ({because})", rule.name)
                        } else {
                            format!(
                                "access to service {} is denied by rule {:?} ({because})",
                                i.service, rule.name
                            )
                        },
                        rule: Some(rule.name.clone()),
                        trace,
                        near_miss: false,
                    };
                }
                Some((why, identity)) => {
                    trace.push(format!("{label}: does not apply ({why})"));
                    if rule.action == Action::Allow && !identity && nearest.is_none() {
                        nearest = Some(why);
                    }
                }
            }
        }
        trace.push("no rule applies: deny".into());
        Decision {
            allowed: false,
            near_miss: nearest.is_some(),
            reason: nearest
                .unwrap_or_else(|| format!("user {} may not reach service {}", i.user, i.service)),
            rule: None,
            trace,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(toml_text: &str) -> Policy {
        policy_with_certs(toml_text, &[])
    }

    fn policy_with_certs(toml_text: &str, cert_services: &[String]) -> Policy {
        #[derive(Deserialize)]
        struct File {
            policy: PolicyConfig,
        }
        let f: File = toml::from_str(toml_text).unwrap();
        Policy::compile(Some(f.policy), cert_services).unwrap()
    }

    fn inputs(user: &str, groups: &[&str]) -> Inputs {
        Inputs {
            user: user.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            service: "web".into(),
            ip: "192.0.2.10".parse().unwrap(),
            country: None,
            device: None,
            second_factor: false,
            second_factor_enrolled: false,
            sso_provider: None,
            risk: RiskScore::default(),
            // Friday 2026-11-27 12:00 UTC.
            at: 1_795_780_800,
        }
    }

    const RULES: &str = r#"
        [policy.services.web]
        principals = { alice = ["alice", "deploy"], "group:ops" = ["root"] }
        [[policy.services.web.rules]]
        name = "no contractors"
        action = "deny"
        groups = ["contractors"]
        [[policy.services.web.rules]]
        name = "ops"
        action = "allow"
        groups = ["ops"]
        second_factor = true
        device_attributes = { disk = "encrypted" }
        cidr = ["192.0.2.0/24"]
        max_risk = 40
        days = ["mon-fri"]
        hours = "08:00-18:00"
    "#;

    fn ops() -> Inputs {
        let mut i = inputs("alice", &["ops"]);
        i.second_factor = true;
        i.second_factor_enrolled = true;
        i.device = Some(DeviceInput {
            name: "laptop".into(),
            attributes: [("disk".to_owned(), "encrypted".to_owned())].into(),
        });
        i
    }

    #[test]
    fn a_single_sign_on_users_second_factor_is_the_providers() {
        let p = policy(RULES);
        let mut i = ops();
        i.second_factor_enrolled = false;
        i.sso_provider = Some("corp".into());
        assert!(p.evaluate(&i).allowed);
        i.second_factor = false;
        let d = p.evaluate(&i);
        assert!(!d.allowed);
        assert!(
            d.reason
                .contains("sign in again through corp with multi-factor authentication"),
            "{}",
            d.reason
        );
    }

    #[test]
    fn first_applying_rule_decides_and_denials_name_the_failed_condition() {
        let p = policy(RULES);
        let d = p.evaluate(&ops());
        assert!(d.allowed, "{d:?}");
        assert_eq!(d.rule.as_deref(), Some("ops"));

        let d = p.evaluate(&inputs("mallory", &["contractors", "ops"]));
        assert!(!d.allowed);
        assert!(
            d.reason
                .contains("denied by rule \"no contractors\" (group contractors)"),
            "{}",
            d.reason
        );

        let d = p.evaluate(&inputs("bob", &["dev"]));
        assert_eq!(d.reason, "user bob may not reach service web");

        type Change = Box<dyn Fn(&mut Inputs)>;
        let cases: Vec<(Change, &str)> = vec![
            (
                Box::new(|i| i.second_factor = false),
                "sign in again with your one-time code",
            ),
            (Box::new(|i| i.device = None), "needs a device certificate"),
            (
                Box::new(|i| i.device.as_mut().unwrap().attributes.clear()),
                "needs a device with disk=encrypted",
            ),
            (
                Box::new(|i| i.ip = "10.1.1.1".parse().unwrap()),
                "your address 10.1.1.1 is not in a network allowed",
            ),
            (
                Box::new(|i| {
                    i.risk = RiskScore {
                        score: 55,
                        factors: vec![("first use of this network".into(), 55)],
                    }
                }),
                "your risk score 55 (first use of this network +55) is above 40",
            ),
            (
                Box::new(|i| i.at += 8 * 3600),
                "may be reached only mon,tue,wed,thu,fri 08:00-18:00 +00:00; it is now fri 20:00",
            ),
            (Box::new(|i| i.at += 24 * 3600), "it is now sat 12:00"),
        ];
        for (change, want) in cases {
            let mut i = ops();
            change(&mut i);
            let d = p.evaluate(&i);
            assert!(
                !d.allowed && d.reason.contains(want),
                "want {want:?}, got {d:?}"
            );
            assert!(
                !d.reason.contains("ops"),
                "a reason must not list who else is admitted: {}",
                d.reason
            );
        }
    }

    #[test]
    fn principals_defaults_and_open_policy() {
        let p = policy(RULES);
        assert_eq!(
            p.principals("alice", &["ops".into()], "web"),
            ["alice", "deploy", "root"]
        );
        assert!(p.principals("bob", &[], "web").is_empty());
        assert_eq!(p.principals("bob", &[], "db"), ["bob"]);
        let d = p.evaluate(&Inputs {
            service: "db".into(),
            ..ops()
        });
        assert!(!d.allowed, "unlisted services are denied by default");

        let open = Policy::compile(None, &["web".into()]).unwrap();
        assert!(open.evaluate(&inputs("anyone", &[])).allowed);
        assert!(open.certificates("web") && !open.certificates("db"));

        let star = policy(
            "[policy]\n[[policy.services.\"*\".rules]]\naction = \"allow\"\nusers = [\"bob\"]\n",
        );
        assert!(
            star.evaluate(&Inputs {
                service: "anything".into(),
                ..inputs("bob", &[])
            })
            .allowed
        );
        // --ssh-cert-service turns certificates on and leaves the rules alone.
        let flagged = policy_with_certs(
            "[policy]\n[[policy.services.\"*\".rules]]\naction = \"allow\"\nusers = [\"bob\"]\n",
            &["web".into()],
        );
        assert!(flagged.certificates("web") && !flagged.certificates("db"));
        assert!(flagged.evaluate(&inputs("bob", &[])).allowed);
    }

    #[test]
    fn bad_policies_are_refused_with_the_place() {
        let bad = |t: &str| {
            #[derive(Deserialize)]
            struct File {
                policy: PolicyConfig,
            }
            match toml::from_str::<File>(t) {
                Ok(f) => Policy::compile(Some(f.policy), &[]).unwrap_err(),
                Err(e) => e.to_string(),
            }
        };
        assert!(
            bad("[[policy.services.web.rules]]\naction = \"allow\"\ncidr = [\"10/8\"]\n")
                .contains("rule \"#1\"")
        );
        assert!(
            bad("[[policy.services.web.rules]]\naction = \"allow\"\ncountries = [\"DE\"]\n")
                .contains("geoip_db")
        );
        assert!(
            bad("[[policy.services.web.rules]]\naction = \"maybe\"\n").contains("unknown variant")
        );
        assert!(bad(
            "[[policy.services.Web.rules]]\naction = \"allow\"\neveryone = true\n\
             [[policy.services.web.rules]]\naction = \"deny\"\neveryone = true\n"
        )
        .contains("case-insensitive"));
        assert!(
            bad("[[policy.services.web.rules]]\naction = \"allow\"\nhours = \"9-5\"\n")
                .contains("time of day")
        );
        assert!(bad(
            "[[policy.services.web.rules]]\naction = \"allow\"\nhours = \"08:00-18:00\"\ntimezone = \"Mars/Olympus\"\n"
        )
        .contains("\"Mars/Olympus\" is not a time zone"));
        assert!(bad(
            "[[policy.services.web.rules]]\naction = \"allow\"\nhours = \"08:00-18:00\"\n\
             timezone = \"Europe/Berlin\"\nutc_offset = \"+01:00\"\n"
        )
        .contains("give one of them"));
        assert!(bad(
            "[[policy.services.web.rules]]\naction = \"allow\"\ntimezone = \"Europe/Berlin\"\n"
        )
        .contains("timezone needs days or hours"));
        assert!(
            bad("[[policy.services.web.rules]]\naction = \"allow\"\nuserz = []\n")
                .contains("unknown field")
        );
        // A rule cut short must not admit everyone.
        assert!(
            bad("[[policy.services.web.rules]]\naction = \"allow\"\n").contains("everyone = true")
        );
        assert!(bad(
            "[[policy.services.web.rules]]\naction = \"deny\"\neveryone = true\ncidr = [\"10.0.0.0/8\"]\n"
        )
        .contains("no conditions"));
        assert!(bad(
            "[policy.services.db]\nmax_sessions_per_user = 0\nrules = [{ action = \"allow\", everyone = true }]\n"
        )
        .contains("would let no one in"));
    }

    #[test]
    fn session_caps_and_input_recording_per_service() {
        let p = policy(
            r#"
[policy.services.db]
max_sessions_per_user = 2
record_input = true
rules = [{ action = "allow", everyone = true }]
[policy.services."*"]
rules = [{ action = "allow", everyone = true }]
"#,
        );
        assert_eq!(p.max_sessions_per_user("db"), Some(2));
        assert!(p.records_input("db"));
        // Off unless set: keystrokes hold passwords typed with echo off.
        assert_eq!(p.max_sessions_per_user("web"), None);
        assert!(!p.records_input("web"));
        assert!(!Policy::default().records_input("db"));
    }

    #[test]
    fn certificate_permits_come_from_the_service_and_the_admitting_rule() {
        let p = policy(
            r#"
            [policy.services.web]
            certificates = true
            permit_port_forwarding = true
            rules = [
              { name = "ops", action = "allow", groups = ["ops"], permit_agent_forwarding = true, permit_X11_forwarding = true },
              { name = "no-pty", action = "allow", users = ["robot"], permit_pty = false, permit_port_forwarding = false },
              { name = "all", action = "allow", everyone = true },
            ]
            [policy.services.db]
            rules = [{ action = "allow", everyone = true }]
            "#,
        );
        let ext = |user: &str, groups: &[&str], service: &str| {
            let mut i = inputs(user, groups);
            i.service = service.into();
            p.permits(&i).extensions()
        };
        assert_eq!(
            ext("alice", &["ops"], "web"),
            [
                "permit-X11-forwarding",
                "permit-agent-forwarding",
                "permit-port-forwarding",
                "permit-pty"
            ]
        );
        assert_eq!(
            ext("bob", &[], "web"),
            ["permit-port-forwarding", "permit-pty"]
        );
        assert!(ext("robot", &[], "web").is_empty());
        // Old policy files, and no policy: a terminal only, as before.
        assert_eq!(ext("bob", &[], "db"), ["permit-pty"]);
        assert_eq!(
            Policy::default().permits(&inputs("bob", &[])).extensions(),
            ["permit-pty"]
        );
        // A deny rule grants nothing, so setting permits on one is a mistake.
        let f: PolicyConfig = toml::from_str(
            r#"
            [services.web]
            rules = [{ action = "deny", everyone = true, permit_port_forwarding = true }]
            "#,
        )
        .unwrap();
        let err = Policy::compile(Some(f), &[]).unwrap_err();
        assert!(
            err.contains("permit_* settings are for allow rules"),
            "{err}"
        );
    }
}

#[cfg(test)]
mod readme {
    /// The policy example in README.md (its first TOML block with a
    /// `[policy]` table) is a policy the relay accepts.
    #[test]
    fn the_readme_example_compiles() {
        let readme = include_str!("../../../README.md");
        let block = readme
            .split("```toml\n")
            .skip(1)
            .filter_map(|rest| rest.split("```").next())
            .find(|block| block.contains("[policy"))
            .expect("a toml block with [policy] in README.md");
        #[derive(serde::Deserialize)]
        struct File {
            policy: super::PolicyConfig,
        }
        let file: File = toml::from_str(block).expect("README example parses");
        let p = super::Policy::compile(Some(file.policy), &[]).expect("README example compiles");
        assert!(p.certificates("web1"));
        assert_eq!(p.principals("alice", &[], "web1"), ["alice", "deploy"]);
    }
}
