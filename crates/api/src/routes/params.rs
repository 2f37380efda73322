//! Query parameters shared by the analytics routes, checked with clear 400s.

use crate::ApiError;
use crate::error::ErrorCode;
use charlie_store::calendar::Zone;

/// `days`: 1 to 365, default 30.
pub fn days(v: Option<i64>) -> Result<u16, ApiError> {
    let d = v.unwrap_or(30);
    u16::try_from(d)
        .ok()
        .filter(|d| (1..=365).contains(d))
        .ok_or_else(|| {
            ApiError::bad_request(
                ErrorCode::InvalidParameter,
                format!("days must be between 1 and 365, got {d}"),
            )
        })
}

/// `limit`: 1 to 200, default `default`.
pub fn limit(v: Option<i64>, default: u32) -> Result<u32, ApiError> {
    let l = v.unwrap_or(i64::from(default));
    u32::try_from(l)
        .ok()
        .filter(|l| (1..=200).contains(l))
        .ok_or_else(|| {
            ApiError::bad_request(
                ErrorCode::InvalidParameter,
                format!("limit must be between 1 and 200, got {l}"),
            )
        })
}

/// `tz`: an IANA name; default the user's stored zone, else UTC.
pub fn zone(tz: Option<&str>, stored: Option<&str>) -> Result<Zone, ApiError> {
    match tz.map(str::trim).filter(|t| !t.is_empty()) {
        Some(name) => Zone::get(name)
            .map_err(|e| ApiError::bad_request(ErrorCode::InvalidParameter, format!("tz: {e}"))),
        // A stored zone was checked at ingestion; fall back to UTC if the
        // database no longer knows it.
        None => Ok(stored
            .and_then(|s| Zone::get(s).ok())
            .unwrap_or_else(Zone::utc)),
    }
}

/// `format`: `json` (default) or `csv`.
pub fn wants_csv(format: Option<&str>) -> Result<bool, ApiError> {
    match format.map(|f| f.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") | Some("json") => Ok(false),
        Some("csv") => Ok(true),
        Some(other) => Err(ApiError::bad_request(
            ErrorCode::InvalidParameter,
            format!("format must be json or csv, got `{other}`"),
        )),
    }
}

/// A YYYY-MM-DD date parameter (an empty value is not a date: leave the
/// parameter out for its default).
pub fn date(name: &str, v: Option<&str>) -> Result<Option<time::Date>, ApiError> {
    v.map(str::trim)
        .map(|s| {
            time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]")).map_err(
                |_| {
                    ApiError::bad_request(
                        ErrorCode::InvalidParameter,
                        format!("{name} must be a YYYY-MM-DD date, got `{s}`"),
                    )
                },
            )
        })
        .transpose()
}

/// One CSV field, quoted when it needs to be.
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// Refuses a JSON body that is not an object or has a key outside
/// `allowed` (a misspelt key would otherwise change nothing, silently).
pub fn body_keys(body: &serde_json::Value, allowed: &[&str]) -> Result<(), ApiError> {
    let Some(obj) = body.as_object() else {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidBody,
            "the body must be a JSON object",
        ));
    };
    if let Some(unknown) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidBody,
            format!("unknown field `{unknown}`; expected {}", allowed.join(", ")),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_outside_their_range_are_refused() {
        assert_eq!(days(None).ok(), Some(30));
        assert!(days(Some(0)).is_err() && days(Some(366)).is_err() && days(Some(-3)).is_err());
        assert_eq!(limit(Some(200), 20).ok(), Some(200));
        assert!(limit(Some(201), 20).is_err() && limit(Some(0), 20).is_err());
        assert!(zone(Some("Mars/Olympus"), None).is_err());
        assert_eq!(
            zone(None, Some("Asia/Kolkata"))
                .map(|z| z.name().to_owned())
                .ok()
                .as_deref(),
            Some("Asia/Kolkata")
        );
        assert_eq!(
            zone(None, None)
                .map(|z| z.name().to_owned())
                .ok()
                .as_deref(),
            Some("UTC")
        );
        assert!(wants_csv(Some("xml")).is_err());
        assert!(date("from", Some("2026-13-01")).is_err());
    }

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
