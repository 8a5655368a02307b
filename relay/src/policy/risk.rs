//! The risk score: a sum of named factors the relay can see, so a denial
//! can say exactly why the score is what it is.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::window::TimeWindow;

/// How far back failed sign-ins count.
pub const FAILURE_LOOKBACK: Duration = Duration::from_secs(3600);

/// `[policy.risk]` in the config file: what each factor adds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RiskWeights {
    /// Per failed sign-in of this user from the same network in the last
    /// hour (at most 5 count).
    pub failed_sign_in: u32,
    /// The address's network (/24, /48) never reached a service for this user.
    pub new_network: u32,
    /// The device certificate never reached a service for this user.
    pub new_device: u32,
    /// During `quiet_hours`.
    pub quiet_hours_score: u32,
    /// Hours when people rarely work, e.g. "22:00-06:00".
    pub quiet_hours: Option<String>,
    /// UTC offset of `quiet_hours`, e.g. "+01:00".
    pub utc_offset: Option<String>,
    /// IANA time zone of `quiet_hours`, e.g. "Europe/Berlin" (daylight
    /// saving included); instead of `utc_offset`.
    pub timezone: Option<String>,
}

impl Default for RiskWeights {
    fn default() -> Self {
        Self {
            failed_sign_in: 15,
            new_network: 25,
            new_device: 15,
            quiet_hours_score: 15,
            quiet_hours: Some("22:00-06:00".into()),
            utc_offset: None,
            timezone: None,
        }
    }
}

/// Most failed sign-ins that add to the score.
pub const MAX_COUNTED_FAILURES: u32 = 5;

/// What the relay knows about a request, for the score.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RiskFacts {
    pub failed_sign_ins: u32,
    pub new_network: bool,
    /// `None` when no device certificate was presented.
    pub new_device: Option<bool>,
    pub at: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiskScore {
    pub score: u32,
    /// Each factor that added to the score, with what it added.
    pub factors: Vec<(String, u32)>,
}

impl fmt::Display for RiskScore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.score)?;
        if !self.factors.is_empty() {
            let parts: Vec<String> = self
                .factors
                .iter()
                .map(|(n, s)| format!("{n} +{s}"))
                .collect();
            write!(f, " ({})", parts.join(", "))?;
        }
        Ok(())
    }
}

/// Weights with their quiet hours parsed.
#[derive(Debug, Clone)]
pub struct RiskModel {
    weights: RiskWeights,
    quiet: Option<TimeWindow>,
}

impl Default for RiskModel {
    fn default() -> Self {
        Self::new(RiskWeights::default()).unwrap_or(Self {
            weights: RiskWeights::default(),
            quiet: None,
        })
    }
}

impl RiskModel {
    pub fn new(weights: RiskWeights) -> Result<Self, String> {
        let quiet = match &weights.quiet_hours {
            Some(h) => Some(
                TimeWindow::parse(
                    &[],
                    Some(h),
                    weights.utc_offset.as_deref(),
                    weights.timezone.as_deref(),
                )
                .map_err(|e| format!("policy.risk.quiet_hours: {e}"))?,
            ),
            None => None,
        };
        Ok(Self { weights, quiet })
    }

    pub fn score(&self, facts: &RiskFacts) -> RiskScore {
        let w = &self.weights;
        let mut factors = Vec::new();
        let failures = facts.failed_sign_ins.min(MAX_COUNTED_FAILURES);
        if failures > 0 && w.failed_sign_in > 0 {
            factors.push((
                format!("{failures} failed sign-in(s) in the last hour"),
                failures.saturating_mul(w.failed_sign_in),
            ));
        }
        if facts.new_network && w.new_network > 0 {
            factors.push(("first use of this network".into(), w.new_network));
        }
        if facts.new_device == Some(true) && w.new_device > 0 {
            factors.push(("first use of this device".into(), w.new_device));
        }
        if let Some(q) = &self.quiet {
            if q.contains(facts.at) && w.quiet_hours_score > 0 {
                factors.push(("quiet hours".into(), w.quiet_hours_score));
            }
        }
        RiskScore {
            score: factors
                .iter()
                .fold(0u32, |sum, (_, s)| sum.saturating_add(*s)),
            factors,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factors_add_up_and_say_why() {
        let model = RiskModel::new(RiskWeights {
            quiet_hours: None,
            ..Default::default()
        })
        .unwrap();
        let calm = model.score(&RiskFacts::default());
        assert_eq!(calm.score, 0);
        assert_eq!(calm.to_string(), "0");
        let s = model.score(&RiskFacts {
            failed_sign_ins: 9,
            new_network: true,
            new_device: Some(true),
            at: 0,
        });
        assert_eq!(s.score, 5 * 15 + 25 + 15);
        assert_eq!(
            s.to_string(),
            "115 (5 failed sign-in(s) in the last hour +75, first use of this network +25, first use of this device +15)"
        );
        // Midnight UTC is in the default quiet hours.
        let night = RiskModel::default().score(&RiskFacts::default());
        assert_eq!(night.factors, vec![("quiet hours".to_owned(), 15)]);
    }

    #[test]
    fn quiet_hours_in_a_time_zone_follow_its_daylight_saving() {
        let model = RiskModel::new(RiskWeights {
            quiet_hours: Some("22:00-06:00".into()),
            timezone: Some("Europe/Berlin".into()),
            ..Default::default()
        })
        .unwrap();
        let quiet = |at: u64| {
            !model
                .score(&RiskFacts {
                    at,
                    ..Default::default()
                })
                .factors
                .is_empty()
        };
        // 04:30 UTC: 05:30 in Berlin in winter (quiet), 06:30 in summer (not).
        assert!(quiet(1_774_585_800), "2026-03-27T04:30Z, 05:30 CET");
        assert!(!quiet(1_774_845_000), "2026-03-30T04:30Z, 06:30 CEST");
        let both = RiskModel::new(RiskWeights {
            utc_offset: Some("+01:00".into()),
            timezone: Some("Europe/Berlin".into()),
            ..Default::default()
        });
        let e = both.err().unwrap_or_default();
        assert!(
            e.starts_with("policy.risk.quiet_hours: ") && e.contains("give one of them"),
            "{e}"
        );
        let unknown = RiskModel::new(RiskWeights {
            timezone: Some("Nowhere/Special".into()),
            ..Default::default()
        });
        assert!(unknown
            .err()
            .unwrap_or_default()
            .contains("is not a time zone"));
    }
}
