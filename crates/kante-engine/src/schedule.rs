//! `snapshots.schedule`: cron expressions (`<minute> <hour> <day-of-month>
//! <month> <day-of-week>`) or LXD's aliases (`@hourly`, `@daily`,
//! `@midnight`, `@weekly`, `@monthly`, `@annually`, `@yearly`), several
//! separated by ", ". Evaluated once per minute in the host's local time,
//! as cron does.

use chrono::{Datelike, NaiveDateTime, Timelike};
use kante_syntax::SyntaxError;

/// One cron field: the set of values it allows.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Field(Vec<bool>);

impl Field {
    fn parse(text: &str, min: u32, max: u32, names: &[&str]) -> Result<Field, SyntaxError> {
        let mut allowed = vec![false; max as usize + 1];
        let value = |s: &str| -> Result<u32, SyntaxError> {
            if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
                return Ok(i as u32 + min);
            }
            let v: u32 = s
                .parse()
                .map_err(|_| SyntaxError(format!("{s:?} is not a number")))?;
            if v < min || v > max {
                return Err(SyntaxError(format!("{v} is outside {min}-{max}")));
            }
            Ok(v)
        };
        for part in text.split(',') {
            let (range, step) = match part.split_once('/') {
                Some((r, s)) => {
                    let step: u32 = s
                        .parse()
                        .map_err(|_| SyntaxError(format!("bad step {s:?}")))?;
                    if step == 0 {
                        return Err(SyntaxError("a step must be at least 1".into()));
                    }
                    (r, step)
                }
                None => (part, 1),
            };
            let (lo, hi) = match range {
                "*" => (min, max),
                r => match r.split_once('-') {
                    Some((a, b)) => (value(a)?, value(b)?),
                    // `5/15` means from 5 to the end in steps of 15.
                    None if step > 1 => (value(r)?, max),
                    None => {
                        let v = value(r)?;
                        (v, v)
                    }
                },
            };
            if lo > hi {
                return Err(SyntaxError(format!("range {range:?} runs backwards")));
            }
            for v in (lo..=hi).step_by(step as usize) {
                allowed[v as usize] = true;
            }
        }
        Ok(Field(allowed))
    }

    fn has(&self, v: u32) -> bool {
        self.0.get(v as usize).copied().unwrap_or(false)
    }

    fn is_full(&self, min: u32) -> bool {
        self.0.iter().skip(min as usize).all(|b| *b)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Cron {
    minute: Field,
    hour: Field,
    dom: Field,
    month: Field,
    dow: Field,
}

impl Cron {
    fn parse(spec: &str) -> Result<Cron, SyntaxError> {
        let expanded = match spec {
            "@hourly" => "0 * * * *",
            "@daily" | "@midnight" => "0 0 * * *",
            "@weekly" => "0 0 * * 0",
            "@monthly" => "0 0 1 * *",
            "@annually" | "@yearly" => "0 0 1 1 *",
            s if s.starts_with('@') => {
                return Err(SyntaxError(format!("unknown schedule alias {s:?}")))
            }
            s => s,
        };
        let f: Vec<&str> = expanded.split_whitespace().collect();
        let [minute, hour, dom, month, dow] = f[..] else {
            return Err(SyntaxError(format!(
                "{spec:?} needs five fields: minute hour day-of-month month day-of-week"
            )));
        };
        const MONTHS: [&str; 12] = [
            "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
        ];
        const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
        let mut dow = Field::parse(dow, 0, 7, &DAYS)?;
        // 7 is Sunday too.
        if dow.has(7) {
            dow.0[0] = true;
        }
        Ok(Cron {
            minute: Field::parse(minute, 0, 59, &[])?,
            hour: Field::parse(hour, 0, 23, &[])?,
            dom: Field::parse(dom, 1, 31, &[])?,
            month: Field::parse(month, 1, 12, &MONTHS)?,
            dow,
        })
    }

    fn matches(&self, t: &NaiveDateTime) -> bool {
        let day_ok = {
            let (d, w) = (
                self.dom.has(t.day()),
                self.dow.has(t.weekday().num_days_from_sunday()),
            );
            // cron's rule: if both day fields are restricted, either may match.
            match (self.dom.is_full(1), self.dow.is_full(0)) {
                (false, false) => d || w,
                _ => d && w,
            }
        };
        self.minute.has(t.minute())
            && self.hour.has(t.hour())
            && self.month.has(t.month())
            && day_ok
    }
}

/// A parsed `snapshots.schedule` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule(Vec<Cron>);

impl Schedule {
    /// Parses the key's value; empty means no schedule.
    pub fn parse(spec: &str) -> Result<Schedule, SyntaxError> {
        spec.split(", ")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(Cron::parse)
            .collect::<Result<Vec<_>, _>>()
            .map(Schedule)
    }

    /// Whether a snapshot is due in the minute of `t`.
    pub fn matches(&self, t: &NaiveDateTime) -> bool {
        self.0.iter().any(|c| c.matches(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").expect("time")
    }

    #[test]
    fn fields_lists_ranges_steps_and_names() {
        let s = Schedule::parse("*/15 9-17 * * mon-fri").expect("parse");
        assert!(s.matches(&at("2026-11-23 09:45"))); // a Monday
        assert!(!s.matches(&at("2026-11-23 09:50")));
        assert!(!s.matches(&at("2026-11-22 10:00"))); // a Sunday
        assert!(!s.matches(&at("2026-11-23 18:00")));
        let s = Schedule::parse("5,35 0 1 jan,jul *").expect("parse");
        assert!(s.matches(&at("2026-07-01 00:35")));
        assert!(!s.matches(&at("2026-08-01 00:35")));
        let s = Schedule::parse("0 0 * * 7").expect("parse");
        assert!(s.matches(&at("2026-11-22 00:00")));
    }

    #[test]
    fn aliases_and_several_schedules() {
        let s = Schedule::parse("@daily, 30 12 * * *").expect("parse");
        assert!(s.matches(&at("2026-11-22 00:00")));
        assert!(s.matches(&at("2026-11-22 12:30")));
        assert!(!s.matches(&at("2026-11-22 12:31")));
        assert!(Schedule::parse("@hourly")
            .expect("parse")
            .matches(&at("2026-11-22 07:00")));
        assert!(Schedule::parse("").expect("empty").0.is_empty());
    }

    #[test]
    fn either_day_field_matches_when_both_are_restricted() {
        let s = Schedule::parse("0 0 13 * fri").expect("parse");
        assert!(s.matches(&at("2026-11-13 00:00"))); // the 13th (a Friday)
        assert!(s.matches(&at("2026-11-20 00:00"))); // a Friday
        assert!(!s.matches(&at("2026-11-21 00:00")));
    }

    #[test]
    fn bad_schedules_are_refused() {
        for bad in [
            "* * * *",
            "60 * * * *",
            "* 24 * * *",
            "*/0 * * * *",
            "5-1 * * * *",
            "@often",
            "x * * * *",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
