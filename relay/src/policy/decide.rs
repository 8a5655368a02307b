//! Gathering a request's inputs from the store (groups, second factor,
//! device, risk facts), asking the policy, and recording the decision.
//! The web handlers and `policy test` both come through here, so a test
//! explains exactly what a real request would get.

use std::net::IpAddr;

use super::net::network_of;
use super::risk::{RiskFacts, RiskScore, FAILURE_LOOKBACK};
use super::{Decision, DeviceInput, Inputs, Policy, Stage};
use crate::audit::{AuditLog, Event};
use crate::store::{DeviceRecord, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    #[error("no user named {0}")]
    NoSuchUser(String),
    #[error("no device named {0}")]
    NoSuchDevice(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Which device a request came from.
#[derive(Debug, Clone)]
pub enum DeviceRef {
    None,
    /// SHA-256 of the certificate presented on HTTPS; an unknown or revoked
    /// certificate counts as no device.
    Cert(String),
    /// By name, for `policy test`.
    Name(String),
}

#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub user: &'a str,
    pub second_factor: bool,
    pub ip: IpAddr,
    pub device: DeviceRef,
    pub service: &'a str,
    pub at: u64,
    pub stage: Stage,
    /// `policy test` may fix the score or the country instead of computing them.
    pub risk: Option<u32>,
    pub country: Option<String>,
}

fn device_input(d: &DeviceRecord) -> DeviceInput {
    DeviceInput {
        name: d.name.clone(),
        attributes: d.attributes.clone(),
    }
}

/// Decides `req` and, except for tests, records the decision in the audit
/// log (on disk before the answer goes out) and, when allowed, that this
/// user has now used this network and device.
pub async fn decide(
    store: &Store,
    audit: &AuditLog,
    policy: &Policy,
    req: &Request<'_>,
) -> Result<(Inputs, Decision), DecideError> {
    let inputs = gather(store, policy, req).await?;
    let decision = policy.evaluate(&inputs);
    if req.stage != Stage::Test {
        audit
            .append(&Event::Decision {
                stage: req.stage,
                allowed: decision.allowed,
                rule: decision.rule.clone(),
                reason: decision.reason.clone(),
                inputs: Box::new(inputs.clone()),
            })
            .await?;
        if decision.allowed {
            store
                .note_use(req.user, &network_key(req.ip), req.at)
                .await?;
            if let Some(d) = &inputs.device {
                store
                    .note_use(req.user, &device_key(&d.name), req.at)
                    .await?;
            }
        }
    }
    Ok((inputs, decision))
}

fn network_key(ip: IpAddr) -> String {
    format!("net:{}", network_of(ip))
}

fn device_key(name: &str) -> String {
    format!("dev:{name}")
}

/// The inputs of `req` as the store knows them, without deciding or
/// recording anything (the service list asks this once for all services).
pub async fn gather(
    store: &Store,
    policy: &Policy,
    req: &Request<'_>,
) -> Result<Inputs, DecideError> {
    let user = store
        .user(req.user)
        .await?
        .ok_or_else(|| DecideError::NoSuchUser(req.user.to_owned()))?;
    let device = match &req.device {
        DeviceRef::None => None,
        DeviceRef::Cert(sha) => store.device_by_cert(sha).await?,
        DeviceRef::Name(n) => Some(
            store
                .device(n)
                .await?
                .filter(|d| !d.revoked)
                .ok_or_else(|| DecideError::NoSuchDevice(n.clone()))?,
        ),
    };
    let net_key = network_key(req.ip);
    let dev_key = device.as_ref().map(|d| device_key(&d.name));
    let risk = match req.risk {
        Some(score) => RiskScore {
            score,
            factors: vec![("given".into(), score)],
        },
        None => {
            let since = req.at.saturating_sub(FAILURE_LOOKBACK.as_secs());
            let new_device = match &dev_key {
                Some(k) => Some(store.first_use(req.user, k).await?.is_none()),
                None => None,
            };
            policy.risk.score(&RiskFacts {
                // Only failures from this request's network: anyone can
                // fail to sign in as anyone, and must not be able to push
                // a user over their risk limit from elsewhere.
                failed_sign_ins: store
                    .failed_sign_ins_since(req.user, since, |f| f.net == network_of(req.ip))
                    .await?,
                new_network: store.first_use(req.user, &net_key).await?.is_none(),
                new_device,
                at: req.at,
            })
        }
    };
    Ok(Inputs {
        user: user.name.clone(),
        groups: user.groups.clone(),
        service: req.service.to_owned(),
        ip: req.ip,
        country: req.country.clone().or_else(|| policy.country(req.ip)),
        device: device.as_ref().map(device_input),
        second_factor: req.second_factor,
        second_factor_enrolled: user.totp_secret.is_some(),
        sso_provider: user.sso.as_ref().map(|l| l.provider.clone()),
        risk,
        at: req.at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Failure;

    /// Failed sign-ins count against the network they came from only: a
    /// stranger guessing passwords elsewhere cannot push a user over a limit.
    #[tokio::test]
    async fn failures_from_other_networks_do_not_add_risk() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        crate::identity::add_user(&store, "rita", "pw", &[])
            .await
            .unwrap();
        let now = sallyport_common::time::now_secs();
        for net in ["203.0.113.0/24", "203.0.113.0/24", "192.0.2.0/24"] {
            let f = Failure {
                at: now,
                net: net.into(),
                code: false,
            };
            store.record_failed_sign_in("rita", f).await.unwrap();
        }
        let policy = Policy::compile(None, &[]).unwrap();
        let req = |ip: &str| Request {
            user: "rita",
            second_factor: false,
            ip: ip.parse().unwrap(),
            device: DeviceRef::None,
            service: "web",
            at: now,
            stage: Stage::Test,
            risk: None,
            country: None,
        };
        let score = async |ip| {
            gather(&store, &policy, &req(ip))
                .await
                .unwrap()
                .risk
                .factors
                .iter()
                .find(|(n, _)| n.contains("failed"))
                .map(|(n, _)| n.clone())
        };
        assert_eq!(
            score("192.0.2.50").await.as_deref(),
            Some("1 failed sign-in(s) in the last hour")
        );
        assert_eq!(
            score("203.0.113.1").await.as_deref(),
            Some("2 failed sign-in(s) in the last hour")
        );
        assert_eq!(score("198.51.100.1").await, None);
    }
}
