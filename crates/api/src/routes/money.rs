//! Money in responses: a JSON number written with the exact decimal digits
//! of the amount (never through a float on our side), so a client parsing it
//! as a double gets the nearest double, and one parsing it as a decimal gets
//! it exactly.

use crate::ApiError;
use crate::error::ErrorCode;
use charlie_domain::Usd;
use serde::{Serialize, Serializer};
use serde_json::Value;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};

/// An exact USD amount, serialized as a JSON number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsdNumber(pub Usd);

impl UsdNumber {
    pub fn from_nanos(nanos: i64) -> Self {
        UsdNumber(Usd::from_nanos(nanos))
    }
}

impl Serialize for UsdNumber {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let raw = serde_json::value::RawValue::from_string(self.0.to_string())
            .map_err(serde::ser::Error::custom)?;
        raw.serialize(s)
    }
}

/// A USD amount of a request, given as a decimal string (`"25.00"`) or a
/// JSON number (exponent form included), in whole nano-dollars; more than
/// 0 unless `zero_ok`. `field` names it in the error.
pub fn parse_usd(v: &Value, field: &str, zero_ok: bool) -> Result<i64, ApiError> {
    let text = match v {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        _ => {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidValue,
                format!("{field} must be a decimal string such as \"25.00\" or a number"),
            ));
        }
    };
    // JSON numbers may come in exponent form (`1e-9`), which the exact
    // decimal parser does not read; their digits are still exact.
    let usd: Usd = text
        .parse()
        .or_else(|_| rust_decimal::Decimal::from_scientific(&text).map(Usd))
        .map_err(|_| {
            ApiError::bad_request(
                ErrorCode::InvalidValue,
                format!("{field} `{text}` is not a decimal amount"),
            )
        })?;
    let nanos = usd
        .to_nanos()
        .map_err(|e| ApiError::bad_request(ErrorCode::InvalidValue, format!("{field}: {e}")))?;
    // Nine integer digits, as the schemas say: far above any real budget.
    if nanos >= MAX_NANOS {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidValue,
            format!("{field} must be below 1000000000 USD"),
        ));
    }
    if nanos < 0 || (nanos == 0 && !zero_ok) {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidValue,
            format!(
                "{field} must be {} 0",
                if zero_ok { "at least" } else { "more than" }
            ),
        ));
    }
    Ok(nanos)
}

/// 10^9 USD in nano-dollars: amounts of requests stay below it.
const MAX_NANOS: i64 = 1_000_000_000_000_000_000;

/// A decimal string of at most 9 integer and 9 fraction digits.
const DECIMAL: &str = "^[0-9]{1,9}(\\.[0-9]{1,9})?$";
/// The same, not zero (a zero fraction only after a non-zero integer part).
const POSITIVE_DECIMAL: &str = "^([1-9][0-9]{0,8}(\\.[0-9]{1,9})?|0\\.([1-9][0-9]{0,8}|0[1-9][0-9]{0,7}|00[1-9][0-9]{0,6}|000[1-9][0-9]{0,5}|0000[1-9][0-9]{0,4}|00000[1-9][0-9]{0,3}|000000[1-9][0-9]{0,2}|0000000[1-9][0-9]?|00000000[1-9]))$";

fn usd_schema(pattern: &str, minimum: f64) -> Schema {
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(pattern)),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Number)
                .minimum(Some(minimum))
                .maximum(Some(999_999_999.0)),
        )
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .build()
        .into()
}

/// What `parse_usd(.., false)` accepts, or null: a positive amount of at
/// most 9 integer and 9 fraction digits, as a string or a number.
pub fn positive_usd_schema() -> Schema {
    usd_schema(POSITIVE_DECIMAL, 0.000_000_001)
}

/// What `parse_usd(.., true)` accepts, or null: the same, zero allowed.
pub fn usd_schema_or_zero() -> Schema {
    usd_schema(DECIMAL, 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_amounts_are_read_exactly() {
        #[rustfmt::skip]
        let cases: &[(Value, bool, Option<i64>)] = &[
            (Value::from("25.00"), false, Some(25_000_000_000)),
            (serde_json::json!(2.5), false, Some(2_500_000_000)),
            (serde_json::json!(2.5e1), false, Some(25_000_000_000)),
            (serde_json::json!(1e-9), false, Some(1)),
            (Value::from("0.05"), true, Some(50_000_000)),
            (Value::from("0"), true, Some(0)),
            (Value::from("0"), false, None),
            (Value::from("-1"), true, None),
            (Value::from("ten"), true, None),
            (Value::from("999999999.999999999"), false, Some(999_999_999_999_999_999)),
            (Value::from("1000000000"), false, None),
            (Value::Bool(true), true, None),
        ];
        for (v, zero_ok, want) in cases {
            assert_eq!(
                parse_usd(v, "x", *zero_ok).ok(),
                *want,
                "{v} zero_ok={zero_ok}"
            );
        }
    }

    #[test]
    fn amounts_keep_every_digit() {
        let v = serde_json::to_string(&UsdNumber::from_nanos(12_345_678_901)).unwrap_or_default();
        assert_eq!(v, "12.345678901");
        assert_eq!(
            serde_json::to_string(&UsdNumber::from_nanos(0)).unwrap_or_default(),
            "0"
        );
        assert_eq!(
            serde_json::to_string(&UsdNumber::from_nanos(1)).unwrap_or_default(),
            "0.000000001"
        );
    }
}
