//! UTC calendar dates from Unix time, without a date crate.

/// A UTC date and time of day.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

/// Howard Hinnant's days-to-civil.
pub fn civil(unix_secs: u64) -> Civil {
    let (days, rest) = ((unix_secs / 86_400) as i64, unix_secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    Civil {
        year,
        month,
        day,
        hour: (rest / 3600) as u32,
        minute: (rest % 3600 / 60) as u32,
        second: (rest % 60) as u32,
    }
}

/// `2026-11-29T05-07-00Z`: sortable, and safe in file names.
pub fn stamp(unix_secs: u64) -> String {
    let c = civil(unix_secs);
    format!("{:04}-{:02}-{:02}T{:02}-{:02}-{:02}Z", c.year, c.month, c.day, c.hour, c.minute, c.second)
}

/// `2026-11-29 05:07:00 UTC`, for people.
pub fn text_from_unix_ms(unix_ms: u64) -> String {
    let c = civil(unix_ms / 1000);
    format!("{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC", c.year, c.month, c.day, c.hour, c.minute, c.second)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(stamp(0), "1970-01-01T00-00-00Z");
        assert_eq!(stamp(951_782_400), "2000-02-29T00-00-00Z");
        assert_eq!(text_from_unix_ms(1_795_941_439_506), "2026-11-29 08:37:19 UTC");
    }
}
