//! Durations as the Gateway API writes them: `500ms`, `10s`, `1m30s`, `1h`.
//!
//! Weir's CRDs use this format wherever a time span is configured (timeouts, windows,
//! provisioning delays), so one spelling works across HTTPRoute and Weir objects.

use std::{borrow::Cow, fmt, str::FromStr, time};

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// The Gateway API's duration pattern (GEP-2257).
pub const DURATION_PATTERN: &str = r"^([0-9]{1,5}(h|m|s|ms)){1,4}$";

/// A duration as written in a manifest, e.g. `1m30s`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Duration {
    text: String,
    value: time::Duration,
}

/// Why a text is not a duration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a duration; write e.g. 500ms, 10s, 1m30s or 1h")]
pub struct DurationError(String);

impl Duration {
    /// The duration as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The length of the duration.
    pub fn get(&self) -> time::Duration {
        self.value
    }

    /// A duration from whole seconds, written the shortest way (`90` → `1m30s`).
    pub fn from_secs(secs: u64) -> Self {
        let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
        let mut text = String::new();
        for (n, unit) in [(h, "h"), (m, "m"), (s, "s")] {
            if n > 0 {
                text.push_str(&format!("{n}{unit}"));
            }
        }
        if text.is_empty() {
            text.push_str("0s");
        }
        Duration {
            text,
            value: time::Duration::from_secs(secs),
        }
    }
}

impl FromStr for Duration {
    type Err = DurationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = || DurationError(text.to_string());
        let mut rest = text;
        let mut total = time::Duration::ZERO;
        let mut parts = 0;
        while !rest.is_empty() {
            let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
            if digits == 0 || digits > 5 {
                return Err(err());
            }
            let n: u64 = rest[..digits].parse().map_err(|_| err())?;
            rest = &rest[digits..];
            let (unit, len) = if rest.starts_with("ms") {
                (time::Duration::from_millis(1), 2)
            } else if rest.starts_with('h') {
                (time::Duration::from_secs(3600), 1)
            } else if rest.starts_with('m') {
                (time::Duration::from_secs(60), 1)
            } else if rest.starts_with('s') {
                (time::Duration::from_secs(1), 1)
            } else {
                return Err(err());
            };
            rest = &rest[len..];
            total += unit * u32::try_from(n).map_err(|_| err())?;
            parts += 1;
        }
        if parts == 0 || parts > 4 {
            return Err(err());
        }
        Ok(Duration {
            text: text.to_string(),
            value: total,
        })
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(de::Error::custom)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "string", "pattern": DURATION_PATTERN})
    }
}

/// Parses a duration flag the way Go (and so every Kubernetes component) does: `90s`,
/// `1.5h`, `1h30m`, `500ms`, `10m0s`. Flags take Go's spelling because operators copy them
/// from cluster-autoscaler and client-go; manifests keep the Gateway API's stricter
/// [`Duration`]. The parser is kube-core's (`kube::core::Duration`); negative spans are
/// refused, since no flag means "before now".
pub fn parse_flag_duration(text: &str) -> Result<time::Duration, String> {
    let parsed: kube::core::Duration = text.trim().parse().map_err(|e| {
        format!("{text:?} is not a duration ({e}); write e.g. 500ms, 90s, 1.5h or 1h30m")
    })?;
    if parsed.is_negative() {
        return Err(format!(
            "{text:?} is negative; a duration here must be 0 or more"
        ));
    }
    Ok(parsed.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_gateway_api_durations() {
        let d = |s: &str| s.parse::<Duration>().unwrap().get();
        assert_eq!(d("500ms"), time::Duration::from_millis(500));
        assert_eq!(d("1m30s"), time::Duration::from_secs(90));
        assert_eq!(d("1h"), time::Duration::from_secs(3600));
        assert_eq!(d("0s"), time::Duration::ZERO);
    }

    #[test]
    fn rejects_other_spellings() {
        for bad in [
            "",
            "10",
            "1.5s",
            "1d",
            "s",
            "123456s",
            "1h1h1h1h1h",
            "-1s",
            " 1s",
        ] {
            assert!(
                bad.parse::<Duration>().is_err(),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn flags_take_go_durations() {
        let secs = |t: &str| parse_flag_duration(t).map(|d| d.as_secs_f64());
        assert_eq!(secs("1.5h"), Ok(5400.0));
        assert_eq!(secs("90s"), Ok(90.0));
        assert_eq!(secs("10m0s"), Ok(600.0));
        assert_eq!(secs("500ms"), Ok(0.5));
        assert_eq!(secs("1h30m"), Ok(5400.0));
        assert!(parse_flag_duration("-5s").unwrap_err().contains("negative"));
        assert!(parse_flag_duration("ten").unwrap_err().contains("\"ten\""));
    }

    #[test]
    fn from_secs_round_trips() {
        assert_eq!(Duration::from_secs(90).as_str(), "1m30s");
        assert_eq!(
            Duration::from_secs(90)
                .as_str()
                .parse::<Duration>()
                .unwrap()
                .get()
                .as_secs(),
            90
        );
        assert_eq!(Duration::from_secs(0).as_str(), "0s");
    }
}
