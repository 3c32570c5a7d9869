//! The proleptic Gregorian calendar in days since 1970-01-01, both ways (Howard Hinnant's
//! `days_from_civil` and `civil_from_days`), and RFC 3339 date-times on top of it: the consumer
//! reads an event's `occurred_at` and formats `received_at`, the propagator stamps each event
//! with its generation time, and the consumer reads a certificate's expiry. Plain integer
//! arithmetic rather than a date crate, for a handful of conversions; any date of an `i64` count
//! of days, before 1970 included.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Days from 1970-01-01 to the date `year-month-day` (negative before it). `month` is 1 to 12
/// and `day` 1 to 31; a day past the month's end counts on into the next month.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let (month, day) = (i64::from(month), i64::from(day));
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let shifted_month = (month + 9) % 12;
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date `days` after 1970-01-01 (before it when negative), as (year, month, day).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    // Both are small and positive by construction: a day of 1 to 31, a month of 1 to 12.
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Why a text is not an RFC 3339 date-time with an offset. `Display` completes a sentence that
/// starts with what the text is (a field's name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rfc3339Error {
    /// Not of the shape `YYYY-MM-DDTHH:MM:SS[.fraction]` followed by an offset.
    Shape,
    /// A date and a time without `Z` or `±HH:MM`: a local time, which names no instant.
    NoOffset,
    /// A part outside its range (a month 13, an hour 24, an offset of 24 hours).
    OutOfRange { part: &'static str },
    /// A day the month does not have (`2026-02-29`).
    NoSuchDay,
    /// An instant before 0000-01-01 or after 9999-12-31 in UTC (`0000-01-01T00:00:00+01:00`),
    /// which RFC 3339 could not write back.
    BeyondYears,
}

impl fmt::Display for Rfc3339Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const FORM: &str = "an RFC 3339 date-time with an offset, such as 2026-12-07T03:00:00Z \
                            or 2026-12-07T04:00:00.123+01:00";
        match self {
            Rfc3339Error::Shape => write!(f, "must be {FORM}"),
            Rfc3339Error::NoOffset => {
                write!(
                    f,
                    "has no offset (Z or ±HH:MM after the time): it must be {FORM}"
                )
            }
            Rfc3339Error::OutOfRange { part } => write!(f, "has its {part} out of range"),
            Rfc3339Error::NoSuchDay => write!(f, "names a day its month does not have"),
            Rfc3339Error::BeyondYears => {
                write!(f, "names an instant outside the years 0000 to 9999 in UTC")
            }
        }
    }
}

impl std::error::Error for Rfc3339Error {}

/// The instant an RFC 3339 `date-time` names (`2026-12-07T04:00:00.123+01:00`): a full date,
/// a full time, an offset (`Z`, or `+HH:MM`/`-HH:MM`; `-00:00` as `Z`). `T` and `Z` may be
/// lower case, as RFC 3339 allows. A fraction of any length is kept to the nanosecond (digits
/// past the ninth are dropped). A leap second (`:60`) is the first second of the next minute,
/// as PostgreSQL reads it: a `SystemTime` has no room for it. The offset is applied, not kept,
/// and the instant must lie within the years 0000 to 9999 in UTC, so that [`rfc3339_utc`] can
/// write it back.
pub fn parse_rfc3339(text: &str) -> Result<SystemTime, Rfc3339Error> {
    let mut cursor = Cursor(text.as_bytes());
    let year = cursor.digits(4)?;
    cursor.literal(b"-")?;
    let month = cursor.digits(2)?;
    cursor.literal(b"-")?;
    let day = cursor.digits(2)?;
    cursor.literal(b"Tt")?;
    let hour = cursor.digits(2)?;
    cursor.literal(b":")?;
    let minute = cursor.digits(2)?;
    cursor.literal(b":")?;
    let second = cursor.digits(2)?;
    let mut nanos = 0;
    if cursor.0.first() == Some(&b'.') {
        cursor.0 = &cursor.0[1..];
        let length = cursor.0.iter().take_while(|b| b.is_ascii_digit()).count();
        if length == 0 {
            return Err(Rfc3339Error::Shape);
        }
        let (fraction, rest) = cursor.0.split_at(length);
        // The first nine digits, padded with zeros: nanoseconds.
        nanos = fraction
            .iter()
            .chain(std::iter::repeat(&b'0'))
            .take(9)
            .fold(0, |n, d| n * 10 + u32::from(d - b'0'));
        cursor.0 = rest;
    }
    let offset_seconds = match cursor.0 {
        [] => return Err(Rfc3339Error::NoOffset),
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), rest @ ..] => {
            let mut offset = Cursor(rest);
            let hours = offset.digits(2)?;
            offset.literal(b":")?;
            let minutes = offset.digits(2)?;
            if !offset.0.is_empty() {
                return Err(Rfc3339Error::Shape);
            }
            check(hours <= 23, "offset hours")?;
            check(minutes <= 59, "offset minutes")?;
            let seconds = i64::from(hours * 3600 + minutes * 60);
            if *sign == b'-' {
                -seconds
            } else {
                seconds
            }
        }
        _ => return Err(Rfc3339Error::Shape),
    };
    check((1..=12).contains(&month), "month")?;
    check(day >= 1, "day")?;
    if day > days_in_month(i64::from(year), month) {
        return Err(Rfc3339Error::NoSuchDay);
    }
    check(hour <= 23, "hour")?;
    check(minute <= 59, "minute")?;
    check(second <= 60, "second")?;
    let days = days_from_civil(i64::from(year), month, day);
    let seconds = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second) - offset_seconds;
    let utc_years = days_from_civil(0, 1, 1) * 86_400..days_from_civil(10_000, 1, 1) * 86_400;
    if !utc_years.contains(&seconds) {
        return Err(Rfc3339Error::BeyondYears);
    }
    // Four-digit years keep `seconds` within about ±2.6e11: every step below is in range.
    let whole = Duration::from_secs(seconds.unsigned_abs());
    let at_second = if seconds >= 0 {
        UNIX_EPOCH + whole
    } else {
        UNIX_EPOCH - whole
    };
    Ok(at_second + Duration::from_nanos(u64::from(nanos)))
}

/// `time` as RFC 3339 in UTC with `fraction_digits` (0 to 9) digits after the second, cut, not
/// rounded: `2026-11-26T23:56:18.123456Z` with 6. Any `SystemTime`, before 1970 included
/// (humantime's formatters panic there, and a row written by hand may carry such a time).
pub fn rfc3339_utc(time: SystemTime, fraction_digits: usize) -> String {
    let nanos: i128 = match time.duration_since(UNIX_EPOCH) {
        Ok(after) => after.as_nanos() as i128,
        Err(before) => -(before.duration().as_nanos() as i128),
    };
    let seconds = nanos.div_euclid(1_000_000_000);
    let fraction = format!("{:09}", nanos.rem_euclid(1_000_000_000));
    let fraction = &fraction[..fraction_digits.min(9)];
    // Days of any `SystemTime` fit an i64 (its seconds do).
    let days = seconds.div_euclid(86_400) as i64;
    let of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let dot = if fraction.is_empty() { "" } else { "." };
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}{dot}{fraction}Z",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    )
}

/// The days of `month` (1 to 12) in `year`.
fn days_in_month(year: i64, month: u32) -> u32 {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn check(in_range: bool, part: &'static str) -> Result<(), Rfc3339Error> {
    in_range
        .then_some(())
        .ok_or(Rfc3339Error::OutOfRange { part })
}

/// The text not read yet.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    /// Exactly `count` ASCII digits, as a number.
    fn digits(&mut self, count: usize) -> Result<u32, Rfc3339Error> {
        match self.0.get(..count) {
            Some(digits) if digits.iter().all(u8::is_ascii_digit) => {
                self.0 = &self.0[count..];
                Ok(digits.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0')))
            }
            _ => Err(Rfc3339Error::Shape),
        }
    }

    /// One byte, any of `allowed`.
    fn literal(&mut self, allowed: &[u8]) -> Result<(), Rfc3339Error> {
        match self.0.split_first() {
            Some((byte, rest)) if allowed.contains(byte) => {
                self.0 = rest;
                Ok(())
            }
            _ => Err(Rfc3339Error::Shape),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 400 years repeat the Gregorian calendar, so one era checks every rule.
    const DAYS_OF_AN_ERA: i64 = 146_097;

    #[test]
    fn every_day_over_four_centuries_follows_the_previous_one() {
        // Walking day by day checks each month length.
        let mut previous = civil_from_days(-1);
        for days in 0..DAYS_OF_AN_ERA {
            let (year, month, day) = civil_from_days(days);
            let (py, pm, pd) = previous;
            let next_day = (year, month, day) == (py, pm, pd + 1);
            let next_month = (year, month, day) == (py, pm + 1, 1);
            let next_year = (year, month, day) == (py + 1, 1, 1) && (pm, pd) == (12, 31);
            assert!(
                next_day || next_month || next_year,
                "{previous:?} -> {:?}",
                (year, month, day)
            );
            if !next_day {
                assert_eq!(pd, days_in_month(py, pm), "last day of {py}-{pm}");
            }
            previous = (year, month, day);
        }
        assert_eq!(previous, (2369, 12, 31));
    }

    #[test]
    fn a_date_and_its_day_number_round_trip_before_and_after_1970() {
        for days in (-DAYS_OF_AN_ERA..DAYS_OF_AN_ERA).chain([-1_000_000_000, 1_000_000_000]) {
            let (year, month, day) = civil_from_days(days);
            assert_eq!(
                days_from_civil(year, month, day),
                days,
                "{year}-{month}-{day}"
            );
        }
    }

    #[test]
    fn known_dates_have_their_day_numbers() {
        let cases = [
            ((1970, 1, 1), 0, "the epoch"),
            ((1969, 12, 31), -1, "the day before it"),
            ((2000, 3, 1), 11_017, "after a leap day of a 400th year"),
            ((2100, 3, 1), 47_541, "after a century that is no leap year"),
            ((2036, 11, 29), 24_439, "the expiry of a test certificate"),
        ];
        for ((year, month, day), days, why) in cases {
            assert_eq!(days_from_civil(year, month, day), days, "{why}");
            assert_eq!(civil_from_days(days), (year, month, day), "{why}");
        }
    }

    /// `seconds` and `nanos` after 1970-01-01T00:00:00Z, or before it when `seconds` < 0.
    fn instant(seconds: i64, nanos: u32) -> SystemTime {
        let whole = Duration::from_secs(seconds.unsigned_abs());
        let at = if seconds >= 0 {
            UNIX_EPOCH + whole
        } else {
            UNIX_EPOCH - whole
        };
        at + Duration::from_nanos(u64::from(nanos))
    }

    #[test]
    fn a_date_time_with_an_offset_names_its_instant() {
        // date -u -d 2026-12-07T03:00:00Z +%s → 1796612400
        let cases = [
            ("2026-12-07T03:00:00Z", instant(1_796_612_400, 0), "UTC"),
            (
                "2026-12-07t03:00:00z",
                instant(1_796_612_400, 0),
                "lower case t and z",
            ),
            (
                "2026-12-07T03:00:00+00:00",
                instant(1_796_612_400, 0),
                "+00:00",
            ),
            (
                "2026-12-07T03:00:00-00:00",
                instant(1_796_612_400, 0),
                "-00:00, an unknown offset",
            ),
            (
                "2026-12-07T04:00:00.123+01:00",
                instant(1_796_612_400, 123_000_000),
                "east of UTC",
            ),
            (
                "2026-12-06T21:30:00-05:30",
                instant(1_796_612_400, 0),
                "west, with minutes",
            ),
            (
                "2026-12-08T02:59:00+23:59",
                instant(1_796_612_400, 0),
                "the largest offset",
            ),
            (
                "2026-12-07T03:00:00.5Z",
                instant(1_796_612_400, 500_000_000),
                "one digit",
            ),
            (
                "2026-12-07T03:00:00.000000001Z",
                instant(1_796_612_400, 1),
                "nine digits",
            ),
            (
                "2026-12-07T03:00:00.1234567891Z",
                instant(1_796_612_400, 123_456_789),
                "the tenth digit dropped",
            ),
            ("1970-01-01T00:00:00Z", UNIX_EPOCH, "the epoch"),
            (
                "1969-12-31T23:59:59.25Z",
                instant(-1, 250_000_000),
                "before the epoch, with a fraction",
            ),
            (
                "1970-01-01T00:59:59+01:00",
                instant(-1, 0),
                "before the epoch by its offset",
            ),
            (
                "2016-12-31T23:59:60Z",
                instant(1_483_228_800, 0),
                "a leap second is the next second",
            ),
            (
                "2024-02-29T12:00:00Z",
                instant(1_709_208_000, 0),
                "a leap day",
            ),
            (
                "2000-02-29T00:00:00Z",
                instant(951_782_400, 0),
                "a leap day of a 400th year",
            ),
            (
                "0000-01-01T00:00:00Z",
                instant(-62_167_219_200, 0),
                "the first RFC 3339 instant",
            ),
            (
                "0000-01-01T01:00:00+01:00",
                instant(-62_167_219_200, 0),
                "the first, with an offset",
            ),
            (
                "9999-12-31T23:59:59.999999999Z",
                instant(253_402_300_799, 999_999_999),
                "the last",
            ),
        ];
        for (text, expected, why) in cases {
            assert_eq!(parse_rfc3339(text), Ok(expected), "{text}: {why}");
        }
    }

    #[test]
    fn anything_but_a_date_time_with_an_offset_is_refused_with_its_reason() {
        use Rfc3339Error::*;
        let cases = [
            ("2026-12-07T03:00:00", NoOffset, "a local time"),
            (
                "2026-12-07T03:00:00.123",
                NoOffset,
                "a local time with a fraction",
            ),
            ("2026-12-07", Shape, "a date alone"),
            ("2026-12-07 03:00:00Z", Shape, "a space for T"),
            ("2026-12-07T03:00Z", Shape, "no seconds"),
            ("2026-12-07T03:00:00.Z", Shape, "a dot without digits"),
            (
                "2026-12-07T03:00:00+0100",
                Shape,
                "an offset without a colon",
            ),
            ("2026-12-07T03:00:00+01", Shape, "an offset without minutes"),
            ("2026-12-07T03:00:00Z ", Shape, "a trailing space"),
            (" 2026-12-07T03:00:00Z", Shape, "a leading space"),
            ("2026-12-07T03:00:00ZZ", Shape, "two zones"),
            ("+2026-12-07T03:00:00Z", Shape, "a signed year"),
            ("26-12-07T03:00:00Z", Shape, "a two-digit year"),
            ("2026-1-07T03:00:00Z", Shape, "a one-digit month"),
            ("２０２６-12-07T03:00:00Z", Shape, "non-ASCII digits"),
            ("", Shape, "empty"),
            ("1796612400", Shape, "seconds since the epoch"),
            (
                "2026-13-07T03:00:00Z",
                OutOfRange { part: "month" },
                "month 13",
            ),
            (
                "2026-00-07T03:00:00Z",
                OutOfRange { part: "month" },
                "month 0",
            ),
            ("2026-12-00T03:00:00Z", OutOfRange { part: "day" }, "day 0"),
            ("2026-02-29T03:00:00Z", NoSuchDay, "no leap day in 2026"),
            (
                "2100-02-29T03:00:00Z",
                NoSuchDay,
                "no leap day in a century",
            ),
            ("2026-04-31T03:00:00Z", NoSuchDay, "April has 30 days"),
            ("2026-12-32T03:00:00Z", NoSuchDay, "day 32"),
            (
                "2026-12-07T24:00:00Z",
                OutOfRange { part: "hour" },
                "hour 24",
            ),
            (
                "2026-12-07T03:60:00Z",
                OutOfRange { part: "minute" },
                "minute 60",
            ),
            (
                "2026-12-07T03:00:61Z",
                OutOfRange { part: "second" },
                "second 61",
            ),
            (
                "2026-12-07T03:00:00+24:00",
                OutOfRange {
                    part: "offset hours",
                },
                "offset 24 h",
            ),
            (
                "2026-12-07T03:00:00+01:60",
                OutOfRange {
                    part: "offset minutes",
                },
                "offset :60",
            ),
            (
                "0000-01-01T00:59:59+01:00",
                BeyondYears,
                "before year 0 in UTC",
            ),
            (
                "9999-12-31T23:00:00-01:00",
                BeyondYears,
                "after year 9999 in UTC",
            ),
            (
                "9999-12-31T23:59:60Z",
                BeyondYears,
                "a leap second past the last",
            ),
        ];
        for (text, expected, why) in cases {
            assert_eq!(parse_rfc3339(text), Err(expected), "{text:?}: {why}");
        }
    }

    #[test]
    fn the_formatter_cuts_to_its_digits_before_and_after_1970() {
        let at = instant(1_795_737_378, 123_456_789);
        assert_eq!(rfc3339_utc(at, 0), "2026-11-26T23:56:18Z");
        assert_eq!(rfc3339_utc(at, 3), "2026-11-26T23:56:18.123Z");
        assert_eq!(rfc3339_utc(at, 6), "2026-11-26T23:56:18.123456Z");
        assert_eq!(rfc3339_utc(at, 9), "2026-11-26T23:56:18.123456789Z");
        assert_eq!(
            rfc3339_utc(instant(-1, 999_999_999), 6),
            "1969-12-31T23:59:59.999999Z"
        );
        assert_eq!(rfc3339_utc(UNIX_EPOCH, 3), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn what_the_formatter_writes_the_parser_reads_back() {
        for (seconds, nanos) in [
            (0, 0),
            (-1, 1),
            (1_796_612_400, 123_000_000),
            (-62_167_219_200, 0),
        ] {
            let at = instant(seconds, nanos);
            assert_eq!(
                parse_rfc3339(&rfc3339_utc(at, 9)),
                Ok(at),
                "{seconds}.{nanos:09}"
            );
        }
    }
}
