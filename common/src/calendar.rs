//! The proleptic Gregorian calendar in days since 1970-01-01, both ways (Howard Hinnant's
//! `days_from_civil` and `civil_from_days`): the consumer formats `received_at` with one and
//! reads a certificate's expiry with the other. Plain integer arithmetic rather than a date
//! crate, for two conversions; any date of an `i64` count of days, before 1970 included.

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

#[cfg(test)]
mod tests {
    use super::*;

    /// 400 years repeat the Gregorian calendar, so one era checks every rule.
    const DAYS_OF_AN_ERA: i64 = 146_097;

    fn month_length(year: i64, month: u32) -> u32 {
        let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
        match month {
            2 if leap => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        }
    }

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
                assert_eq!(pd, month_length(py, pm), "last day of {py}-{pm}");
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
}
