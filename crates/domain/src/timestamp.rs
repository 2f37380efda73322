//! The one text form of an instant: RFC 3339, as JSON responses, CSV
//! exports, outgoing webhooks and ingest items write it.

use time::{OffsetDateTime, format_description::well_known::Rfc3339};

/// `t` as RFC 3339 (`2026-12-03T17:10:00Z`; fractional seconds when `t`
/// has them; its own offset). The few instants RFC 3339 cannot write (a
/// year beyond 9999, an offset with seconds), which no stored timestamp
/// reaches, fall back to `time`'s display form instead of failing.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn writes_rfc3339_with_its_offset_and_fraction() {
        assert_eq!(
            rfc3339(datetime!(2026-12-03 17:10 UTC)),
            "2026-12-03T17:10:00Z"
        );
        assert_eq!(
            rfc3339(datetime!(2026-12-03 17:10:00.25 +05:45)),
            "2026-12-03T17:10:00.25+05:45"
        );
        // Beyond what RFC 3339 can write: still text, never a panic or "".
        assert!(!rfc3339(datetime!(2026-01-01 0:00 +00:00:30)).is_empty());
    }
}
