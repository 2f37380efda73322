//! Money in responses: a JSON number written with the exact decimal digits
//! of the amount (never through a float on our side), so a client parsing it
//! as a double gets the nearest double, and one parsing it as a decimal gets
//! it exactly.

use charlie_domain::Usd;
use serde::{Serialize, Serializer};

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

#[cfg(test)]
mod tests {
    use super::*;

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
