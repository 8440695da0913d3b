//! Kubernetes quantities as the metrics APIs print them.
//!
//! Values become milli-units truncated toward zero (what prometheus-adapter does with
//! `resource.NewMilliQuantity(int64(v*1000), DecimalSI)`), printed in canonical form:
//! `500m`, `1500m`, `2`, `2k`, `3M`.

/// `value` as a canonical decimal-SI quantity; `None` for NaN and infinities, which have
/// no quantity.
pub fn format(value: f64) -> Option<String> {
    if !value.is_finite() {
        return None;
    }
    let milli = (value * 1000.0).trunc();
    if milli.abs() >= i64::MAX as f64 {
        return None;
    }
    Some(format_milli(milli as i64))
}

/// A milli-unit count in canonical decimal-SI form.
pub fn format_milli(milli: i64) -> String {
    if milli == 0 {
        return "0".into();
    }
    if milli % 1000 != 0 {
        return format!("{milli}m");
    }
    let mut units = milli / 1000;
    let mut exponent = 0;
    while units % 1000 == 0 && exponent < 6 {
        units /= 1000;
        exponent += 1;
    }
    let suffix = ["", "k", "M", "G", "T", "P", "E"][exponent];
    format!("{units}{suffix}")
}

/// Parses a quantity this module prints (and plain decimals), for tests and clients.
pub fn parse(quantity: &str) -> Option<f64> {
    let (number, scale) = match quantity.char_indices().last()? {
        (i, 'm') => (&quantity[..i], 1e-3),
        (i, 'k') => (&quantity[..i], 1e3),
        (i, 'M') => (&quantity[..i], 1e6),
        (i, 'G') => (&quantity[..i], 1e9),
        (i, 'T') => (&quantity[..i], 1e12),
        (i, 'P') => (&quantity[..i], 1e15),
        (i, 'E') => (&quantity[..i], 1e18),
        _ => (quantity, 1.0),
    };
    number.parse::<f64>().ok().map(|n| n * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms() {
        for (value, text) in [
            (0.0, "0"),
            (0.5, "500m"),
            (1.5, "1500m"),
            (2.0, "2"),
            (2000.0, "2k"),
            (1500.0, "1500"),
            (3e6, "3M"),
            (-0.25, "-250m"),
            (0.0004, "0"),
            (1234.5678, "1234567m"),
        ] {
            assert_eq!(format(value).as_deref(), Some(text), "{value}");
            assert!((parse(text).unwrap() - value).abs() < 1e-3, "{text}");
        }
        assert_eq!(format(f64::NAN), None);
        assert_eq!(format(f64::INFINITY), None);
    }
}
