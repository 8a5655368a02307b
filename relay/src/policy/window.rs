//! Time windows: days of the week and a span of hours, in the local time of
//! an IANA time zone (`timezone = "Europe/Berlin"`, daylight saving
//! included) or at a fixed UTC offset (`utc_offset = "+01:00"`, for admins
//! who want the window not to move with the seasons).
//!
//! Zones come from the operating system's database when it has the zone
//! (`/usr/share/zoneinfo`, kept current by the OS's tzdata package), and
//! otherwise from the copy built into the relay (jiff's bundled tzdb), so a
//! container without zoneinfo still knows `Europe/Berlin`.

use std::fmt;

use jiff::civil::Weekday;
use jiff::tz::{Offset, TimeZone, TimeZoneDatabase};
use jiff::Timestamp;
use time::UtcOffset;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeWindow {
    /// Allowed days; empty means every day.
    days: Vec<Weekday>,
    /// Allowed minutes of the day, `[from, to)`; `to < from` wraps past midnight.
    hours: Option<(u16, u16)>,
    zone: Zone,
}

/// Where a window's clock is read.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Zone {
    /// A fixed offset from UTC, all year round.
    Fixed(UtcOffset),
    /// An IANA time zone, with its daylight saving rules. `name` is the
    /// canonical spelling, e.g. `Europe/Berlin` for `europe/berlin`.
    Named { name: String, tz: TimeZone },
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

/// An IANA time zone name such as `Europe/Berlin` (any letter case): the
/// operating system's database first, then the one built into the relay.
pub fn parse_time_zone(name: &str) -> Result<TimeZone, String> {
    let name = name.trim();
    let unknown = || {
        format!(
            "{name:?} is not a time zone this relay knows; use an IANA name like \
             \"Europe/Berlin\" or \"America/New_York\" (or utc_offset for a fixed offset)"
        )
    };
    // Offsets and POSIX strings such as "+01:00" or "CET-1" are not names:
    // a fixed offset is what utc_offset is for.
    if name.is_empty() || name.starts_with(['+', '-']) {
        return Err(unknown());
    }
    jiff::tz::db()
        .get(name)
        .or_else(|_| TimeZoneDatabase::bundled().get(name))
        .map_err(|_| unknown())
}

/// Minutes of the day, as `HH:MM`.
fn clock(m: u16) -> String {
    format!("{:02}:{:02}", m / 60, m % 60)
}

impl TimeWindow {
    /// `days` like `["mon", "fri"]` or `["mon-fri"]`, `hours` like
    /// `"08:00-18:00"` (or `"22:00-06:00"` across midnight), read in
    /// `timezone` (an IANA name) or at `utc_offset` (`+01:00`); UTC when
    /// neither is given. Giving both is an error.
    pub fn parse(
        days: &[String],
        hours: Option<&str>,
        utc_offset: Option<&str>,
        timezone: Option<&str>,
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
        let zone = match (utc_offset, timezone) {
            (Some(o), Some(z)) => {
                return Err(format!(
                    "utc_offset = {o:?} and timezone = {z:?} both say where the hours are \
                     read; give one of them"
                ))
            }
            (Some(o), None) => Zone::Fixed(parse_offset(o)?),
            (None, Some(z)) => {
                let tz = parse_time_zone(z)?;
                let name = tz.iana_name().unwrap_or(z.trim()).to_owned();
                Zone::Named { name, tz }
            }
            (None, None) => Zone::Fixed(UtcOffset::UTC),
        };
        Ok(Self {
            days: out,
            hours,
            zone,
        })
    }

    /// Whether the unix time `at` is inside the window. With hours that
    /// wrap past midnight, the early morning belongs to the day before
    /// (a Friday 22:00-06:00 window covers Saturday 03:00). In a named zone
    /// the wall clock of that zone at `at` is what counts, so 08:00-18:00
    /// stays 08:00-18:00 local across a daylight saving change.
    pub fn contains(&self, at: u64) -> bool {
        let Some(t) = self.local_time(at) else {
            return false;
        };
        let minute = t.minute;
        let mut day = t.weekday;
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

    /// The local time of `at` in this window's zone, e.g. `sat 14:05 +01:00`,
    /// or `sat 14:05 Europe/Berlin (+01:00)` in a named zone.
    pub fn local(&self, at: u64) -> String {
        match self.local_time(at) {
            Some(t) => {
                let zone = match &self.zone {
                    Zone::Fixed(_) => offset_text(t.offset_secs),
                    Zone::Named { name, .. } => {
                        format!("{name} ({})", offset_text(t.offset_secs))
                    }
                };
                format!("{} {} {zone}", day_name(t.weekday), clock(t.minute))
            }
            None => "an impossible time".into(),
        }
    }

    /// Unix time `at` on this window's clock; `None` out of the
    /// representable range (jiff's: years -9999 to 9999).
    fn local_time(&self, at: u64) -> Option<LocalTime> {
        let ts = Timestamp::from_second(i64::try_from(at).ok()?).ok()?;
        let tz = match &self.zone {
            Zone::Fixed(o) => TimeZone::fixed(Offset::from_seconds(o.whole_seconds()).ok()?),
            Zone::Named { tz, .. } => tz.clone(),
        };
        let t = ts.to_zoned_datetime(tz);
        Some(LocalTime {
            weekday: t.weekday(),
            minute: t.hour() as u16 * 60 + t.minute() as u16,
            offset_secs: t.offset().seconds(),
        })
    }
}

/// What a window needs of a local time.
struct LocalTime {
    weekday: Weekday,
    /// Minutes since local midnight.
    minute: u16,
    /// The zone's offset from UTC at that instant, in seconds.
    offset_secs: i32,
}

/// `+HH:MM` for an offset in seconds (seconds beyond the minute dropped).
fn offset_text(secs: i32) -> String {
    let sign = if secs < 0 { '-' } else { '+' };
    let abs = secs.unsigned_abs();
    format!("{sign}{:02}:{:02}", abs / 3600, abs / 60 % 60)
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
        match &self.zone {
            Zone::Fixed(o) => write!(f, " {}", offset_text(o.whole_seconds())),
            Zone::Named { name, .. } => write!(f, " {name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-27 is a Friday.
    fn at(h: u64, m: u64, day_offset: u64) -> u64 {
        let friday = time::OffsetDateTime::new_utc(
            time::Date::from_calendar_date(2026, time::Month::November, 27).unwrap(),
            time::Time::MIDNIGHT,
        )
        .unix_timestamp() as u64;
        friday + day_offset * 86400 + h * 3600 + m * 60
    }

    #[test]
    fn office_hours() {
        let w = TimeWindow::parse(&["mon-fri".into()], Some("08:00-18:00"), None, None).unwrap();
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
        let w = TimeWindow::parse(&[], Some("08:00-18:00"), Some("+02:00"), None).unwrap();
        assert!(w.contains(at(6, 0, 0)) && !w.contains(at(16, 0, 0)));
        let night = TimeWindow::parse(&["fri".into()], Some("22:00-06:00"), None, None).unwrap();
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
        assert!(TimeWindow::parse(&["funday".into()], None, None, None).is_err());
        assert!(TimeWindow::parse(&[], Some("25:00-26:00"), None, None).is_err());
        assert!(parse_offset("+1").is_err());
        assert!(parse_offset("--128:00").is_err());
        assert!(parse_offset("+24:00").is_err());
        let far = TimeWindow::parse(&[], Some("08:00-09:00"), Some("+01:00"), None).unwrap();
        assert!(!far.contains(253_402_300_799));
        assert!(!far.contains(u64::MAX));
        assert_eq!(parse_offset("-05:30").unwrap().as_hms(), (-5, -30, 0));
    }

    /// Unix time of an RFC 3339 instant such as `2026-03-27T07:00:00Z`.
    fn utc(s: &str) -> u64 {
        s.parse::<Timestamp>().unwrap().as_second() as u64
    }

    /// In 2026 Berlin moves to summer time (+02:00) on Sunday 29 March and
    /// back to +01:00 on Sunday 25 October, both at 01:00 UTC.
    #[test]
    fn berlin_office_hours_follow_daylight_saving() {
        let w = TimeWindow::parse(&[], Some("08:00-18:00"), None, Some("Europe/Berlin")).unwrap();
        // Friday before the March change: winter time, 08:00 local is 07:00 UTC.
        assert!(!w.contains(utc("2026-03-27T06:59:00Z")));
        assert!(w.contains(utc("2026-03-27T07:00:00Z")));
        assert!(w.contains(utc("2026-03-27T16:59:00Z")));
        assert!(!w.contains(utc("2026-03-27T17:00:00Z")));
        // Monday after: summer time, 08:00 local is 06:00 UTC.
        assert!(!w.contains(utc("2026-03-30T05:59:00Z")));
        assert!(w.contains(utc("2026-03-30T06:00:00Z")));
        assert!(w.contains(utc("2026-03-30T15:59:00Z")));
        assert!(!w.contains(utc("2026-03-30T16:00:00Z")));
        assert_eq!(
            w.local(utc("2026-03-30T06:00:00Z")),
            "mon 08:00 Europe/Berlin (+02:00)"
        );
        assert_eq!(
            w.local(utc("2026-03-27T07:00:00Z")),
            "fri 08:00 Europe/Berlin (+01:00)"
        );
        // Friday before the October change: still summer time.
        assert!(w.contains(utc("2026-10-23T06:00:00Z")));
        assert!(!w.contains(utc("2026-10-23T16:00:00Z")));
        // Monday after: winter time again, 06:00 UTC is 07:00 local.
        assert!(!w.contains(utc("2026-10-26T06:00:00Z")));
        assert!(w.contains(utc("2026-10-26T07:00:00Z")));
        assert!(w.contains(utc("2026-10-26T16:59:00Z")));
        assert!(!w.contains(utc("2026-10-26T17:00:00Z")));
        assert_eq!(w.to_string(), "every day 08:00-18:00 Europe/Berlin");

        // A fixed +01:00 does not move: 06:30 UTC is 07:30 all year.
        let fixed = TimeWindow::parse(&[], Some("08:00-18:00"), Some("+01:00"), None).unwrap();
        assert!(!fixed.contains(utc("2026-03-30T06:30:00Z")));
        assert!(w.contains(utc("2026-03-30T06:30:00Z")));
    }

    #[test]
    fn night_windows_and_weekdays_across_the_change_itself() {
        // The night of the March change: 02:00 local jumps to 03:00.
        let night =
            TimeWindow::parse(&[], Some("22:00-06:00"), None, Some("Europe/Berlin")).unwrap();
        assert!(night.contains(utc("2026-03-29T00:30:00Z")), "01:30 CET");
        assert!(night.contains(utc("2026-03-29T03:30:00Z")), "05:30 CEST");
        assert!(!night.contains(utc("2026-03-29T04:30:00Z")), "06:30 CEST");
        // The October night: 03:00 local falls back to 02:00; 05:30 local
        // is 04:30 UTC now.
        assert!(night.contains(utc("2026-10-25T04:30:00Z")), "05:30 CET");
        assert!(!night.contains(utc("2026-10-25T05:00:00Z")), "06:00 CET");
        // The day is the local day: 23:30 UTC on a Friday in summer is
        // already Saturday 01:30 in Berlin.
        let weekdays =
            TimeWindow::parse(&["mon-fri".into()], None, None, Some("Europe/Berlin")).unwrap();
        assert!(weekdays.contains(utc("2026-07-03T21:30:00Z")), "fri 23:30");
        assert!(!weekdays.contains(utc("2026-07-03T23:30:00Z")), "sat 01:30");
    }

    #[test]
    fn zone_names_are_checked_and_exclusive_with_offsets() {
        // Any letter case; shown as the database spells it.
        let w =
            TimeWindow::parse(&[], Some("08:00-18:00"), None, Some("america/new_york")).unwrap();
        assert_eq!(w.to_string(), "every day 08:00-18:00 America/New_York");
        let e =
            TimeWindow::parse(&[], Some("08:00-18:00"), None, Some("Europe/Berlinn")).unwrap_err();
        assert!(e.contains("\"Europe/Berlinn\" is not a time zone"), "{e}");
        assert!(e.contains("IANA name"), "{e}");
        for not_a_name in ["", "+01:00", "-05:00"] {
            assert!(parse_time_zone(not_a_name).is_err(), "{not_a_name:?}");
        }
        let e = TimeWindow::parse(
            &[],
            Some("08:00-18:00"),
            Some("+01:00"),
            Some("Europe/Berlin"),
        )
        .unwrap_err();
        assert!(e.contains("give one of them"), "{e}");
        assert!(e.contains("utc_offset") && e.contains("timezone"), "{e}");
    }

    /// The relay carries its own copy of the zone database, for machines and
    /// containers without /usr/share/zoneinfo.
    #[test]
    fn the_built_in_zone_database_knows_the_zones() {
        let db = TimeZoneDatabase::bundled();
        for name in ["Europe/Berlin", "America/New_York", "Asia/Kolkata", "UTC"] {
            assert!(
                db.get(name).is_ok(),
                "{name} missing from the bundled database"
            );
        }
    }
}
