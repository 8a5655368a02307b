//! Time windows: days of the week and a span of hours, at a fixed UTC
//! offset (the relay has no time zone database; admins write the offset
//! of their office, e.g. `+01:00`).

use std::fmt;

use time::{OffsetDateTime, UtcOffset, Weekday};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeWindow {
    /// Allowed days; empty means every day.
    days: Vec<Weekday>,
    /// Allowed minutes of the day, `[from, to)`; `to < from` wraps past midnight.
    hours: Option<(u16, u16)>,
    offset: UtcOffset,
}

const DAYS: [(&str, Weekday); 7] = [
    ("mon", Weekday::Monday),
    ("tue", Weekday::Tuesday),
    ("wed", Weekday::Wednesday),
    ("thu", Weekday::Thursday),
    ("fri", Weekday::Friday),
    ("sat", Weekday::Saturday),
    ("sun", Weekday::Sunday),
];

fn day_name(d: Weekday) -> &'static str {
    DAYS.iter()
        .find(|(_, w)| *w == d)
        .map(|(n, _)| *n)
        .unwrap_or("?")
}

/// `HH:MM` as minutes of the day.
fn parse_clock(s: &str) -> Result<u16, String> {
    let bad = || format!("{s:?} is not a time of day like 08:30");
    let (h, m) = s.trim().split_once(':').ok_or_else(bad)?;
    let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    // 24:00 is allowed as the end of a day.
    if m > 59 || h > 24 || (h == 24 && m != 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

/// `+HH:MM` / `-HH:MM` / `Z`.
pub fn parse_offset(s: &str) -> Result<UtcOffset, String> {
    let bad = || format!("{s:?} is not a UTC offset like +01:00 or -05:00");
    let s = s.trim();
    if s.eq_ignore_ascii_case("z") || s.eq_ignore_ascii_case("utc") {
        return Ok(UtcOffset::UTC);
    }
    let (sign, rest) = match s.as_bytes().first() {
        Some(b'+') => (1i8, &s[1..]),
        Some(b'-') => (-1i8, &s[1..]),
        _ => return Err(bad()),
    };
    let (h, m) = rest.split_once(':').ok_or_else(bad)?;
    let h: u8 = h.parse().map_err(|_| bad())?;
    let m: u8 = m.parse().map_err(|_| bad())?;
    if h > 23 || m > 59 {
        return Err(bad());
    }
    UtcOffset::from_hms(sign * h as i8, sign * m as i8, 0).map_err(|_| bad())
}

/// Minutes of the day, as `HH:MM`.
fn clock(m: u16) -> String {
    format!("{:02}:{:02}", m / 60, m % 60)
}

impl TimeWindow {
    /// `days` like `["mon", "fri"]` or `["mon-fri"]`, `hours` like
    /// `"08:00-18:00"` (or `"22:00-06:00"` across midnight).
    pub fn parse(
        days: &[String],
        hours: Option<&str>,
        offset: Option<&str>,
    ) -> Result<Self, String> {
        let mut out = Vec::new();
        let find = |n: &str| {
            DAYS.iter()
                .position(|(d, _)| d.eq_ignore_ascii_case(n.trim()))
                .ok_or_else(|| format!("{n:?} is not a day (mon, tue, wed, thu, fri, sat, sun)"))
        };
        for d in days {
            match d.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (find(a)?, find(b)?);
                    let mut i = a;
                    loop {
                        out.push(DAYS[i].1);
                        if i == b {
                            break;
                        }
                        i = (i + 1) % 7;
                    }
                }
                None => out.push(DAYS[find(d)?].1),
            }
        }
        let hours = match hours {
            Some(h) => {
                let (a, b) = h
                    .split_once('-')
                    .ok_or_else(|| format!("{h:?} is not a span of hours like 08:00-18:00"))?;
                let (a, b) = (parse_clock(a)?, parse_clock(b)?);
                if a == b {
                    return Err(format!("{h:?} is an empty span of hours"));
                }
                Some((a, b))
            }
            None => None,
        };
        let offset = match offset {
            Some(o) => parse_offset(o)?,
            None => UtcOffset::UTC,
        };
        Ok(Self {
            days: out,
            hours,
            offset,
        })
    }

    /// Whether the unix time `at` is inside the window. With hours that
    /// wrap past midnight, the early morning belongs to the day before
    /// (a Friday 22:00-06:00 window covers Saturday 03:00).
    pub fn contains(&self, at: u64) -> bool {
        let Some(t) = local_time(at, self.offset) else {
            return false;
        };
        let minute = t.hour() as u16 * 60 + t.minute() as u16;
        let mut day = t.weekday();
        let in_hours = match self.hours {
            None => true,
            Some((a, b)) if a < b => (a..b).contains(&minute),
            Some((a, b)) => {
                if minute < b {
                    day = day.previous();
                    true
                } else {
                    minute >= a
                }
            }
        };
        in_hours && (self.days.is_empty() || self.days.contains(&day))
    }

    /// The local time of `at` in this window's offset, e.g. `sat 14:05 +01:00`.
    pub fn local(&self, at: u64) -> String {
        match local_time(at, self.offset) {
            Some(t) => {
                format!(
                    "{} {} {}",
                    day_name(t.weekday()),
                    clock(t.hour() as u16 * 60 + t.minute() as u16),
                    offset_text(self.offset)
                )
            }
            None => "an impossible time".into(),
        }
    }
}

/// Unix time `at` at `offset`; `None` out of the representable range.
fn local_time(at: u64, offset: UtcOffset) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(i64::try_from(at).ok()?)
        .ok()?
        .checked_to_offset(offset)
}

fn offset_text(o: UtcOffset) -> String {
    let (h, m, _) = o.as_hms();
    let sign = if o.is_negative() { '-' } else { '+' };
    format!("{sign}{:02}:{:02}", h.unsigned_abs(), m.unsigned_abs())
}

impl fmt::Display for TimeWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days: Vec<&str> = self.days.iter().map(|d| day_name(*d)).collect();
        let days = if days.is_empty() {
            "every day".to_owned()
        } else {
            days.join(",")
        };
        match self.hours {
            Some((a, b)) => write!(f, "{days} {}-{}", clock(a), clock(b))?,
            None => write!(f, "{days}")?,
        }
        write!(f, " {}", offset_text(self.offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-27 is a Friday.
    fn at(h: u64, m: u64, day_offset: u64) -> u64 {
        let friday = OffsetDateTime::new_utc(
            time::Date::from_calendar_date(2026, time::Month::November, 27).unwrap(),
            time::Time::MIDNIGHT,
        )
        .unix_timestamp() as u64;
        friday + day_offset * 86400 + h * 3600 + m * 60
    }

    #[test]
    fn office_hours() {
        let w = TimeWindow::parse(&["mon-fri".into()], Some("08:00-18:00"), None).unwrap();
        assert!(w.contains(at(8, 0, 0)));
        assert!(w.contains(at(17, 59, 0)));
        assert!(!w.contains(at(18, 0, 0)));
        assert!(!w.contains(at(7, 59, 0)));
        assert!(!w.contains(at(10, 0, 1)), "saturday");
        assert!(w.contains(at(10, 0, 3)), "monday");
        assert_eq!(w.to_string(), "mon,tue,wed,thu,fri 08:00-18:00 +00:00");
        assert_eq!(w.local(at(10, 5, 1)), "sat 10:05 +00:00");
    }

    #[test]
    fn offsets_and_midnight() {
        // 08:00-18:00 at +02:00 is 06:00-16:00 UTC.
        let w = TimeWindow::parse(&[], Some("08:00-18:00"), Some("+02:00")).unwrap();
        assert!(w.contains(at(6, 0, 0)) && !w.contains(at(16, 0, 0)));
        let night = TimeWindow::parse(&["fri".into()], Some("22:00-06:00"), None).unwrap();
        assert!(night.contains(at(23, 0, 0)));
        assert!(
            night.contains(at(3, 0, 1)),
            "saturday early belongs to friday night"
        );
        assert!(
            !night.contains(at(3, 0, 0)),
            "friday early belongs to thursday night"
        );
        assert!(!night.contains(at(12, 0, 0)));
        assert!(TimeWindow::parse(&["funday".into()], None, None).is_err());
        assert!(TimeWindow::parse(&[], Some("25:00-26:00"), None).is_err());
        assert!(parse_offset("+1").is_err());
        assert!(parse_offset("--128:00").is_err());
        assert!(parse_offset("+24:00").is_err());
        let far = TimeWindow::parse(&[], Some("08:00-09:00"), Some("+01:00")).unwrap();
        assert!(!far.contains(253_402_300_799));
        assert!(!far.contains(u64::MAX));
        assert_eq!(parse_offset("-05:30").unwrap().as_hms(), (-5, -30, 0));
    }
}
