//! Demand traces for `weir simulate`: CSV (`timestamp_seconds,value`) or a Prometheus
//! range-query JSON export, as a step function of load (requests per second) over time.
//! Pure: text in, [`Trace`] out; errors name the file, line and field.

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

/// Builds a trace from `(time, value)` rows of `source`; `value` per `unit`.
fn from_rows(rows: Vec<(u64, f64, usize)>, unit: ValueUnit, source: &str) -> Result<Trace, String> {
    if rows.len() < 2 {
        return Err(format!(
            "{source}: a trace needs at least two rows (the step is the gap to the next row)"
        ));
    }
    let first = rows[0].0;
    let mut points = Vec::with_capacity(rows.len());
    for (i, (t, value, line)) in rows.iter().enumerate() {
        if i > 0 && *t <= rows[i - 1].0 {
            return Err(format!(
                "{source}:{line}: timestamp_seconds {t} is not after the previous row's {}",
                rows[i - 1].0
            ));
        }
        let step = match rows.get(i + 1) {
            Some(next) => next.0 - t,
            None => t - rows[i - 1].0,
        };
        let rate = match unit {
            ValueUnit::PerSecond => *value,
            ValueUnit::PerInterval => value / step as f64,
        };
        points.push((t - first, rate));
    }
    let last_step = rows[rows.len() - 1].0 - rows[rows.len() - 2].0;
    let end = points[points.len() - 1].0 + last_step;
    Ok(Trace::from_rates(points, end))
}

/// Parses a CSV trace: header `timestamp_seconds,value`, integer seconds from the start,
/// non-negative values. What spreadsheets and dataframe exports add is taken in stride: a
/// byte-order mark, CRLF line ends, blank lines, spaces and double quotes around fields.
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
    match lines.next() {
        Some((_, header))
            if header
                .split(',')
                .map(field)
                .eq(["timestamp_seconds", "value"]) => {}
        Some((i, header)) => {
            return Err(format!(
                "{source}:{}: the header must be `timestamp_seconds,value`, not {header:?}",
                i + 1
            ));
        }
        None => return Err(format!("{source}: empty file")),
    }
    let mut rows = Vec::new();
    for (i, line) in lines {
        let n = i + 1;
        let mut fields = line.split(',').map(field);
        let (Some(t), Some(v), None) = (fields.next(), fields.next(), fields.next()) else {
            return Err(format!(
                "{source}:{n}: expected two fields `timestamp_seconds,value`, got {line:?}"
            ));
        };
        let t: u64 = t.parse().map_err(|_| {
            format!("{source}:{n}: timestamp_seconds: {t:?} is not a whole number of seconds")
        })?;
        let v: f64 = v
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| format!("{source}:{n}: value: {v:?} is not a non-negative number"))?;
        rows.push((t, v, n));
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
    let mut rows = Vec::with_capacity(series.values.len());
    for (i, (t, v)) in series.values.iter().enumerate() {
        let value: f64 = v
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| {
                format!("{source}: data.result[0].values[{i}]: {v:?} is not a non-negative number")
            })?;
        rows.push((t.round() as u64, value, i));
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
        let bad = r#"{"status":"success","data":{"resultType":"matrix","result":[{"values":[[0,"1"],[60,"NaN"]]}]}}"#;
        assert!(
            parse_prometheus_json(bad, "p.json")
                .unwrap_err()
                .contains("values[1]")
        );
    }
}
