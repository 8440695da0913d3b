//! Demand traces for `weir simulate`: CSV (`timestamp_seconds,value`, or
//! `timestamp,value` with date-times) or a Prometheus range-query JSON export, as a step
//! function of load (requests per second) over time.
//! Pure: text in, [`Trace`] out; errors name the file, line and field.

use k8s_openapi::jiff::{Timestamp, civil::DateTime, tz::TimeZone};
use serde::Deserialize;

/// What a CSV `value` holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ValueUnit {
    /// The number of requests in the row's interval (until the next row).
    #[default]
    PerInterval,
    /// Requests per second.
    PerSecond,
}

/// Load over time: from each point's time until the next, `rate` requests per second.
#[derive(Clone, Debug, PartialEq)]
pub struct Trace {
    /// `(seconds from the start, requests per second)`, strictly increasing in time,
    /// starting at 0.
    pub points: Vec<(u64, f64)>,
    /// When the trace ends (the last point's time plus its step).
    pub end: u64,
    /// Requests offered from the start to each point (for window averages).
    cumulative: Vec<f64>,
}

impl Trace {
    /// A trace from `(time, rate)` points (times strictly increasing).
    pub fn from_rates(points: Vec<(u64, f64)>, end: u64) -> Trace {
        let mut cumulative = Vec::with_capacity(points.len());
        let mut total = 0.0;
        for (i, (t, rate)) in points.iter().enumerate() {
            cumulative.push(total);
            let next = points.get(i + 1).map_or(end, |p| p.0);
            total += rate * next.saturating_sub(*t) as f64;
        }
        Trace {
            points,
            end,
            cumulative,
        }
    }

    fn index_at(&self, t: u64) -> Option<usize> {
        self.points.partition_point(|p| p.0 <= t).checked_sub(1)
    }

    /// The load at `t` (requests per second); 0 before the first point.
    pub fn rate_at(&self, t: u64) -> f64 {
        self.index_at(t).map_or(0.0, |i| self.points[i].1)
    }

    /// Requests offered in `[0, t)`.
    pub fn offered_before(&self, t: u64) -> f64 {
        let t = t.min(self.end);
        self.index_at(t).map_or(0.0, |i| {
            let (start, rate) = self.points[i];
            self.cumulative[i] + rate * (t - start) as f64
        })
    }

    /// The average load over `[t - window, t)`: only what happened before `t`.
    pub fn average_before(&self, t: u64, window: u64) -> f64 {
        let from = t.saturating_sub(window);
        if t <= from {
            return self.rate_at(t.saturating_sub(1));
        }
        (self.offered_before(t) - self.offered_before(from)) / (t - from) as f64
    }

    /// The first `seconds` of the trace.
    pub fn truncated(&self, seconds: u64) -> Trace {
        let points: Vec<(u64, f64)> = self
            .points
            .iter()
            .copied()
            .filter(|p| p.0 < seconds)
            .collect();
        Trace::from_rates(points, seconds.min(self.end))
    }
}

/// Builds a trace from `(time, value)` rows of `source`, times in seconds (from any
/// origin: the trace starts at the first row) and strictly increasing (the parsers check,
/// naming the field as their format does); `value` per `unit`.
fn from_rows(rows: Vec<(i64, f64)>, unit: ValueUnit, source: &str) -> Result<Trace, String> {
    if rows.len() < 2 {
        return Err(format!(
            "{source}: a trace needs at least two rows (the step is the gap to the next row)"
        ));
    }
    let first = rows[0].0;
    let mut points = Vec::with_capacity(rows.len());
    for (i, (t, value)) in rows.iter().enumerate() {
        let step = match rows.get(i + 1) {
            Some(next) => next.0 - t,
            None => t - rows[i - 1].0,
        };
        let rate = match unit {
            ValueUnit::PerSecond => *value,
            ValueUnit::PerInterval => value / step as f64,
        };
        points.push(((t - first) as u64, rate));
    }
    let last_step = rows[rows.len() - 1].0 - rows[rows.len() - 2].0;
    let end = points[points.len() - 1].0 + last_step as u64;
    Ok(Trace::from_rates(points, end))
}

/// How a CSV trace gives its times (its header's first column).
#[derive(Clone, Copy)]
enum TimeColumn {
    /// `timestamp_seconds`: whole seconds (from the start, or since the epoch).
    Seconds,
    /// `timestamp`: date-times, as monitoring tools export them.
    DateTime,
}

impl TimeColumn {
    fn name(self) -> &'static str {
        match self {
            TimeColumn::Seconds => "timestamp_seconds",
            TimeColumn::DateTime => "timestamp",
        }
    }

    /// Seconds since the epoch, or from whatever the trace counts from.
    fn seconds(self, field: &str) -> Result<i64, String> {
        match self {
            TimeColumn::Seconds => field
                .parse::<u64>()
                .ok()
                .and_then(|t| i64::try_from(t).ok())
                .ok_or_else(|| format!("{field:?} is not a whole number of seconds")),
            // With an offset (RFC 3339, `Z` or `+02:00`) as it says; without one (CloudWatch
            // and most CSV exports: `2015-02-26 21:42:53`) as UTC, so a daylight-saving
            // change cannot make an hour vanish or repeat.
            TimeColumn::DateTime => field
                .parse::<Timestamp>()
                .or_else(|_| {
                    field
                        .parse::<DateTime>()
                        .and_then(|d| d.to_zoned(TimeZone::UTC))
                        .map(|z| z.timestamp())
                })
                .map(Timestamp::as_second)
                .map_err(|_| {
                    format!(
                        "{field:?} is not a date-time (2015-02-26 21:42:53, taken as UTC, or \
                         RFC 3339 with an offset)"
                    )
                }),
        }
    }
}

/// Parses a CSV trace: header `timestamp_seconds,value` (whole seconds from the start) or
/// `timestamp,value` (date-times: `2015-02-26 21:42:53` as UTC, or RFC 3339 with an
/// offset), non-negative values. What spreadsheets and dataframe exports add is taken in
/// stride: a byte-order mark, CRLF line ends, blank lines, spaces and double quotes
/// around fields.
pub fn parse_csv(text: &str, unit: ValueUnit, source: &str) -> Result<Trace, String> {
    fn field(f: &str) -> &str {
        f.trim().trim_matches('"').trim()
    }
    let mut lines = text
        .strip_prefix('\u{feff}')
        .unwrap_or(text)
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let column = match lines.next() {
        Some((i, header)) => {
            let mut names = header.split(',').map(field);
            match (names.next(), names.next(), names.next()) {
                (Some("timestamp_seconds"), Some("value"), None) => TimeColumn::Seconds,
                (Some("timestamp"), Some("value"), None) => TimeColumn::DateTime,
                _ => {
                    return Err(format!(
                        "{source}:{}: the header must be `timestamp_seconds,value` or \
                         `timestamp,value`, not {header:?}",
                        i + 1
                    ));
                }
            }
        }
        None => return Err(format!("{source}: empty file")),
    };
    let name = column.name();
    let mut rows: Vec<(i64, f64)> = Vec::new();
    let mut previous: Option<(i64, &str)> = None;
    for (i, line) in lines {
        let n = i + 1;
        let mut fields = line.split(',').map(field);
        let (Some(t), Some(v), None) = (fields.next(), fields.next(), fields.next()) else {
            return Err(format!(
                "{source}:{n}: expected two fields `{name},value`, got {line:?}"
            ));
        };
        let seconds = column
            .seconds(t)
            .map_err(|e| format!("{source}:{n}: {name}: {e}"))?;
        if let Some((_, shown)) = previous.filter(|(before, _)| seconds <= *before) {
            return Err(format!(
                "{source}:{n}: {name} {t} is not after the previous row's {shown}"
            ));
        }
        previous = Some((seconds, t));
        let v: f64 = v
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| format!("{source}:{n}: value: {v:?} is not a non-negative number"))?;
        rows.push((seconds, v));
    }
    from_rows(rows, unit, source)
}

#[derive(Deserialize)]
struct PromExport {
    status: Option<String>,
    data: PromData,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PromData {
    result_type: String,
    result: Vec<PromSeries>,
}

#[derive(Deserialize)]
struct PromSeries {
    values: Vec<(f64, String)>,
}

/// Parses a Prometheus range-query answer (`/api/v1/query_range`, one series, e.g.
/// `sum(rate(http_requests_total[1m]))`): values are requests per second.
pub fn parse_prometheus_json(text: &str, source: &str) -> Result<Trace, String> {
    let export: PromExport = serde_json::from_str(text)
        .map_err(|e| format!("{source}: not a Prometheus range-query answer: {e}"))?;
    if export.status.as_deref().is_some_and(|s| s != "success") {
        return Err(format!(
            "{source}: status is {:?}, not \"success\"",
            export.status
        ));
    }
    if export.data.result_type != "matrix" {
        return Err(format!(
            "{source}: data.resultType is {:?}; a range query (matrix) is needed",
            export.data.result_type
        ));
    }
    let [series] = export.data.result.as_slice() else {
        return Err(format!(
            "{source}: data.result has {} series; aggregate the query to one (e.g. sum(...))",
            export.data.result.len()
        ));
    };
    let mut rows: Vec<(i64, f64)> = Vec::with_capacity(series.values.len());
    for (i, (t, v)) in series.values.iter().enumerate() {
        let value: f64 = v
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| {
                format!("{source}: data.result[0].values[{i}]: {v:?} is not a non-negative number")
            })?;
        let t = t.round() as i64;
        if let Some(&(before, _)) = rows.last().filter(|(before, _)| t <= *before) {
            return Err(format!(
                "{source}: data.result[0].values[{i}]: time {t} is not after the previous one's {before}"
            ));
        }
        rows.push((t, value));
    }
    from_rows(rows, ValueUnit::PerSecond, source)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_become_rates_and_windows_look_back() {
        let trace = parse_csv(
            "timestamp_seconds,value\n0,600\n60,1200\n120,600\n",
            ValueUnit::PerInterval,
            "t.csv",
        )
        .unwrap();
        assert_eq!(trace.points, vec![(0, 10.0), (60, 20.0), (120, 10.0)]);
        assert_eq!(trace.end, 180);
        assert_eq!(trace.rate_at(90), 20.0);
        // [60, 120): 20/s; [30, 90): half 10, half 20.
        assert_eq!(trace.average_before(120, 60), 20.0);
        assert_eq!(trace.average_before(90, 60), 15.0);
        let per_second = parse_csv(
            "timestamp_seconds,value\n0,5\n15,7\n",
            ValueUnit::PerSecond,
            "t",
        )
        .unwrap();
        assert_eq!(per_second.points, vec![(0, 5.0), (15, 7.0)]);
        // A spreadsheet's export: byte-order mark, CRLF, quotes, spaces, a blank line.
        let exported = parse_csv(
            "\u{feff}\"timestamp_seconds\", \"value\"\r\n0, \"5\"\r\n\r\n15,7\r\n",
            ValueUnit::PerSecond,
            "t",
        )
        .unwrap();
        assert_eq!(exported.points, per_second.points);
        // Date-times, as CloudWatch and most monitoring exports give them: without an
        // offset as UTC, with one as it says; the same trace either way.
        for text in [
            "timestamp,value\n2015-02-26 21:42:53,600\n2015-02-26 21:43:53,1200\n2015-02-26 21:44:53,600\n",
            "timestamp,value\n2015-02-26T21:42:53Z,600\n2015-02-26T22:43:53+01:00,1200\n2015-02-26T21:44:53Z,600\n",
        ] {
            let dated = parse_csv(text, ValueUnit::PerInterval, "t.csv").unwrap();
            assert_eq!(dated.points, trace.points, "{text}");
            assert_eq!(dated.end, trace.end);
        }
    }

    #[test]
    fn bad_rows_name_file_line_and_field() {
        for (text, want) in [
            ("time,value\n0,1\n", "t.csv:1: the header"),
            (
                "timestamp_seconds,value\n0,1\nx,2\n",
                "t.csv:3: timestamp_seconds",
            ),
            ("timestamp_seconds,value\n0,1\n5,-2\n", "t.csv:3: value"),
            (
                "timestamp_seconds,value\n0,1\n5\n",
                "t.csv:3: expected two fields",
            ),
            (
                "timestamp_seconds,value\n5,1\n5,2\n",
                "t.csv:3: timestamp_seconds 5 is not after",
            ),
            ("timestamp_seconds,value\n0,1\n", "at least two rows"),
            (
                "timestamp,value\n2015-02-26 21:42:53,1\n2015-02-30 00:00:00,2\n",
                "t.csv:3: timestamp: \"2015-02-30 00:00:00\" is not a date-time",
            ),
            (
                "timestamp,value\n2015-02-26 21:42:53,1\n2015-02-26 21:42:53,2\n",
                "t.csv:3: timestamp 2015-02-26 21:42:53 is not after the previous row's 2015-02-26 21:42:53",
            ),
            (
                "timestamp,value\n2015-02-26 21:42:53,1\n2015-02-26 21:47:53\n",
                "t.csv:3: expected two fields `timestamp,value`",
            ),
            (
                "timestamp,value\n0,1\n60,2\n",
                "t.csv:2: timestamp: \"0\" is not a date-time",
            ),
        ] {
            let err = parse_csv(text, ValueUnit::PerInterval, "t.csv").unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn prometheus_exports() {
        let text = r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1700000000,"3"],[1700000060,"4.5"]]}]}}"#;
        let trace = parse_prometheus_json(text, "p.json").unwrap();
        assert_eq!(trace.points, vec![(0, 3.0), (60, 4.5)]);
        let two = r#"{"status":"success","data":{"resultType":"matrix","result":[{"values":[]},{"values":[]}]}}"#;
        assert!(
            parse_prometheus_json(two, "p.json")
                .unwrap_err()
                .contains("2 series")
        );
        let backwards = r#"{"status":"success","data":{"resultType":"matrix","result":[{"values":[[60,"1"],[0,"2"]]}]}}"#;
        assert!(
            parse_prometheus_json(backwards, "p.json")
                .unwrap_err()
                .contains("values[1]: time 0 is not after the previous one's 60")
        );
        let bad = r#"{"status":"success","data":{"resultType":"matrix","result":[{"values":[[0,"1"],[60,"NaN"]]}]}}"#;
        assert!(
            parse_prometheus_json(bad, "p.json")
                .unwrap_err()
                .contains("values[1]")
        );
    }
}
