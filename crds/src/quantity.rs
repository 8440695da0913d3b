//! Kubernetes resource quantities (`500m`, `2Gi`, `1.5`, `1e3`).
//!
//! A [`Quantity`] keeps the text the user wrote, so manifests round-trip unchanged, and
//! parses on demand into milli-units, the precision Kubernetes itself keeps (values finer
//! than 1m round up, as the API server does). The autoscalers compare and add quantities in
//! milli-units so that `0.1 + 0.2` is exactly `300m`.

use std::{borrow::Cow, fmt, str::FromStr};

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// The regular expression the API server applies to quantities (from apimachinery).
pub const QUANTITY_PATTERN: &str = r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$";

/// A resource quantity as written in a manifest: an integer or a string such as `250m`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Quantity(String);

/// Why a quantity's text is not a quantity.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a quantity ({why}); write e.g. 500m, 2, 1.5Gi")]
pub struct QuantityError {
    text: String,
    why: &'static str,
}

impl Quantity {
    /// The quantity as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The value in milli-units (`"1.5"` is 1500, `"2Ki"` is 2,048,000), rounding finer
    /// fractions up like the API server. Saturates at `i128` range, far beyond real values.
    pub fn to_milli(&self) -> Result<i128, QuantityError> {
        parse_scaled(&self.0, 3)
    }

    /// The value in units of 10^-`decimals` (3: milli-units, 6: micro-units), rounded up
    /// as [`Quantity::to_milli`] is; for callers that need more precision than milli-units.
    pub fn to_scaled(&self, decimals: u32) -> Result<i128, QuantityError> {
        parse_scaled(&self.0, decimals as i32)
    }

    /// The value in milli-units as an `i64`, capped at `i64`'s range as Kubernetes'
    /// `Quantity.MilliValue()` is: a metric beyond it is still a (very large) value to
    /// decide on, not an error.
    pub fn to_milli_i64(&self) -> Result<i64, QuantityError> {
        self.to_milli()
            .map(|m| m.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64)
    }

    /// The value as a float, for ratios and display. Use [`Quantity::to_milli`] for sums.
    pub fn to_f64(&self) -> Result<f64, QuantityError> {
        self.to_milli().map(|m| m as f64 / 1000.0)
    }

    /// A quantity from milli-units, written the way Kubernetes would (`1500m` → `1500m`,
    /// `2000m` → `2`).
    pub fn from_milli(milli: i128) -> Self {
        if milli % 1000 == 0 {
            Quantity((milli / 1000).to_string())
        } else {
            Quantity(format!("{milli}m"))
        }
    }
}

impl FromStr for Quantity {
    type Err = QuantityError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse_scaled(text, 3)?;
        Ok(Quantity(text.to_string()))
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The value of `text` in units of 10^-`decimals`, rounded up (away from zero).
fn parse_scaled(text: &str, decimals: i32) -> Result<i128, QuantityError> {
    let err = |why| QuantityError {
        text: text.to_string(),
        why,
    };
    let (negative, rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        Some(_) => (false, text),
        None => return Err(err("empty")),
    };
    let number_end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(number_end);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return Err(err("no number"));
    }
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    // The value is digits × 10^exp10 × 2^exp2, kept exact as an integer mantissa.
    let digits = format!("{int_part}{frac_part}");
    let mut mantissa: i128 = 0;
    for d in digits.bytes() {
        mantissa = mantissa
            .checked_mul(10)
            .and_then(|m| m.checked_add(i128::from(d - b'0')))
            .ok_or_else(|| err("too large"))?;
    }
    let mut exp10: i32 = -(frac_part.len() as i32);
    let mut exp2: u32 = 0;
    match suffix {
        "" => {}
        "n" => exp10 -= 9,
        "u" => exp10 -= 6,
        "m" => exp10 -= 3,
        "k" => exp10 += 3,
        "M" => exp10 += 6,
        "G" => exp10 += 9,
        "T" => exp10 += 12,
        "P" => exp10 += 15,
        "E" => exp10 += 18,
        "Ki" => exp2 = 10,
        "Mi" => exp2 = 20,
        "Gi" => exp2 = 30,
        "Ti" => exp2 = 40,
        "Pi" => exp2 = 50,
        "Ei" => exp2 = 60,
        s if s.starts_with(['e', 'E']) => {
            let e: i32 = s[1..]
                .parse()
                .map_err(|_| err("bad exponent"))
                .and_then(|e: i32| {
                    if e.abs() > 30 {
                        Err(err("exponent out of range"))
                    } else {
                        Ok(e)
                    }
                })?;
            exp10 += e;
        }
        _ => return Err(err("unknown suffix")),
    }
    // In units of 10^-decimals.
    exp10 += decimals;
    let mut value = mantissa
        .checked_mul(1i128 << exp2)
        .ok_or_else(|| err("too large"))?;
    if exp10 >= 0 {
        value = value
            .checked_mul(
                10i128
                    .checked_pow(exp10 as u32)
                    .ok_or_else(|| err("too large"))?,
            )
            .ok_or_else(|| err("too large"))?;
    } else {
        let divisor = 10i128
            .checked_pow((-exp10) as u32)
            .ok_or_else(|| err("too small"))?;
        // Round up (away from zero), as resource.Quantity does for sub-milli precision.
        value = (value + divisor - 1) / divisor;
    }
    Ok(if negative { -value } else { value })
}

impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Quantity;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a quantity such as 500m, 2 or 1.5Gi")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Quantity, E> {
                Ok(Quantity(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Quantity, E> {
                Ok(Quantity(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Quantity, E> {
                self.visit_string(v.to_string())
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Quantity, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Quantity, E> {
                self.visit_str(&v)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl JsonSchema for Quantity {
    fn schema_name() -> Cow<'static, str> {
        "Quantity".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        // The pattern sits beside int-or-string rather than in an `anyOf` branch: kube's
        // structural rewrite strips branch types, which would leave a branch accepting
        // anything. OpenAPI applies `pattern` to strings only, so integers still pass.
        json_schema!({
            "x-kubernetes-int-or-string": true,
            "pattern": QUANTITY_PATTERN,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn milli(s: &str) -> i128 {
        s.parse::<Quantity>()
            .and_then(|q| q.to_milli())
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn parses_the_suffixes_kubernetes_accepts() {
        assert_eq!(milli("1"), 1000);
        assert_eq!(milli("250m"), 250);
        assert_eq!(milli("1.5"), 1500);
        assert_eq!(milli(".5"), 500);
        assert_eq!(milli("2k"), 2_000_000);
        assert_eq!(milli("1Ki"), 1_024_000);
        assert_eq!(milli("1.5Gi"), 1_610_612_736_000);
        assert_eq!(milli("1e3"), 1_000_000);
        assert_eq!(milli("-2"), -2000);
        assert_eq!(milli("100u"), 1, "sub-milli values round up");
        assert_eq!(milli("0"), 0);
    }

    #[test]
    fn rejects_what_the_api_server_rejects() {
        for bad in ["", "m", "1.2.3", "5x", "1Kb", "--1", "1e", "."] {
            assert!(
                bad.parse::<Quantity>().is_err(),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn integers_and_strings_deserialize_alike() {
        let q: Quantity =
            serde_json::from_value(serde_json::json!(100)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(q.as_str(), "100");
        let q: Quantity =
            serde_json::from_value(serde_json::json!("100m")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(q.to_milli(), Ok(100));
        assert!(serde_json::from_value::<Quantity>(serde_json::json!("lots")).is_err());
    }

    #[test]
    fn finer_scales_keep_what_milli_units_round_up() {
        let q: Quantity = "1470u".parse().unwrap();
        assert_eq!(q.to_milli(), Ok(2));
        assert_eq!(q.to_scaled(6), Ok(1470));
        assert_eq!(q.to_scaled(9), Ok(1_470_000));
        assert_eq!("1.5".parse::<Quantity>().unwrap().to_scaled(0), Ok(2));
    }

    #[test]
    fn from_milli_writes_canonical_text() {
        assert_eq!(Quantity::from_milli(2000).as_str(), "2");
        assert_eq!(Quantity::from_milli(1500).as_str(), "1500m");
    }
}
