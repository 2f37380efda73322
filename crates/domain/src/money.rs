//! Exact money. Amounts are decimals in USD; storage keeps them as whole
//! nano-dollars (1e-9 USD) in a 64-bit integer, which is exact on every
//! database engine and holds up to about 9.2e9 USD.

use crate::DomainError;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};
use std::{fmt, iter::Sum, ops::Add, str::FromStr};

/// Decimal places kept in storage.
pub const STORAGE_SCALE: u32 = 9;

/// An exact amount of US dollars.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Usd(pub Decimal);

impl Usd {
    pub const ZERO: Usd = Usd(Decimal::ZERO);

    /// An amount from whole nano-dollars, as stored.
    pub fn from_nanos(nanos: i64) -> Self {
        Self(Decimal::from_i128_with_scale(i128::from(nanos), STORAGE_SCALE).normalize())
    }

    /// Whole nano-dollars, rounding half away from zero at the ninth decimal.
    /// Fails when the amount does not fit the storage range.
    pub fn to_nanos(&self) -> Result<i64, DomainError> {
        let rounded = self
            .0
            .round_dp_with_strategy(STORAGE_SCALE, RoundingStrategy::MidpointAwayFromZero);
        let mantissa = rounded.mantissa();
        let scale = rounded.scale();
        let factor = 10i128.pow(STORAGE_SCALE - scale.min(STORAGE_SCALE));
        mantissa
            .checked_mul(factor)
            .and_then(|n| i64::try_from(n).ok())
            .ok_or_else(|| DomainError::MoneyOutOfRange(self.0.to_string()))
    }

    /// The amount rounded to storage precision.
    pub fn rounded(&self) -> Result<Self, DomainError> {
        self.to_nanos().map(Self::from_nanos)
    }

    pub fn decimal(&self) -> Decimal {
        self.0
    }

    pub fn is_zero(&self) -> bool {
        self.0.is_zero()
    }
}

impl Add for Usd {
    type Output = Usd;
    fn add(self, rhs: Usd) -> Usd {
        Usd(self.0 + rhs.0)
    }
}

impl Sum for Usd {
    fn sum<I: Iterator<Item = Usd>>(iter: I) -> Usd {
        iter.fold(Usd::ZERO, Add::add)
    }
}

impl FromStr for Usd {
    type Err = rust_decimal::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Decimal::from_str_exact(s).map(Usd)
    }
}

impl fmt::Display for Usd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.normalize().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(s: &str) -> Usd {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn nanos_round_trip_exactly() {
        for (text, nanos) in [
            ("0", 0),
            ("0.000000001", 1),
            ("12.345678901", 12_345_678_901),
            ("-3.5", -3_500_000_000),
            ("999999999.999999999", 999_999_999_999_999_999),
        ] {
            assert_eq!(usd(text).to_nanos(), Ok(nanos), "{text}");
            assert_eq!(
                Usd::from_nanos(nanos),
                usd(text).rounded().unwrap_or_default()
            );
        }
    }

    #[test]
    fn sub_nano_amounts_round_half_away_from_zero() {
        assert_eq!(usd("0.0000000005").to_nanos(), Ok(1));
        assert_eq!(usd("0.0000000004999").to_nanos(), Ok(0));
        assert_eq!(usd("-0.0000000005").to_nanos(), Ok(-1));
        assert_eq!(usd("0.00001875").to_nanos(), Ok(18_750));
    }

    #[test]
    fn amounts_beyond_storage_are_refused() {
        assert!(usd("10000000000").to_nanos().is_err());
        assert!(usd("1000000000").to_nanos().is_ok());
    }

    #[test]
    fn display_has_no_trailing_zeros() {
        assert_eq!(Usd::from_nanos(1_500_000_000).to_string(), "1.5");
        assert_eq!(Usd::ZERO.to_string(), "0");
    }
}
