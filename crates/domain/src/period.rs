use crate::DomainError;
use serde::{Deserialize, Serialize};
use time::Date;

/// An inclusive range of calendar days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DateRange {
    from: Date,
    to: Date,
}

impl DateRange {
    /// The range `from..=to`; fails when `from` is after `to`.
    pub fn new(from: Date, to: Date) -> Result<Self, DomainError> {
        if from > to {
            return Err(DomainError::InvalidRange(format!(
                "from ({from}) is after to ({to})"
            )));
        }
        Ok(Self { from, to })
    }

    /// The `days` days ending with `last` (inclusive); `days` must be at least 1.
    pub fn ending(last: Date, days: u16) -> Result<Self, DomainError> {
        if days == 0 {
            return Err(DomainError::InvalidRange("days must be at least 1".into()));
        }
        let first = last
            .checked_sub(time::Duration::days(i64::from(days) - 1))
            .ok_or_else(|| DomainError::InvalidRange("range starts before the calendar".into()))?;
        Self::new(first, last)
    }

    pub fn from(&self) -> Date {
        self.from
    }

    pub fn to(&self) -> Date {
        self.to
    }

    /// Number of days in the range, at least 1.
    pub fn len_days(&self) -> i64 {
        (self.to - self.from).whole_days() + 1
    }

    pub fn contains(&self, d: Date) -> bool {
        self.from <= d && d <= self.to
    }

    /// Every day of the range, in order.
    pub fn days(&self) -> impl Iterator<Item = Date> + '_ {
        std::iter::successors(Some(self.from), move |d| {
            d.next_day().filter(|n| *n <= self.to)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn a_range_ending_today_has_exactly_the_requested_days() {
        let r = DateRange::ending(date!(2026 - 03 - 02), 3).unwrap_or_else(|e| panic!("{e}"));
        let days: Vec<_> = r.days().collect();
        assert_eq!(
            days,
            vec![
                date!(2026 - 02 - 28),
                date!(2026 - 03 - 01),
                date!(2026 - 03 - 02)
            ]
        );
        assert_eq!(r.len_days(), 3);
    }

    #[test]
    fn reversed_or_empty_ranges_are_refused() {
        assert!(DateRange::new(date!(2026 - 01 - 02), date!(2026 - 01 - 01)).is_err());
        assert!(DateRange::ending(date!(2026 - 01 - 02), 0).is_err());
    }
}
