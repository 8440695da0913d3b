//! `plot.svg`: per policy replayed, load against ready capacity (under-provisioned spans
//! shaded) and replicas over time. Drawn with plotters into a string. Pure.

use plotters::prelude::*;

use super::model::{Replay, Row};

/// At most this many points per series: a month at 15 s would be 170,000.
const MAX_POINTS: usize = 1500;

/// Every `n`th sync's bucket, keeping each bucket's largest value so peaks survive.
fn buckets(rows: &[Row], value: impl Fn(&Row) -> f64) -> Vec<(f64, f64)> {
    let per = rows.len().div_ceil(MAX_POINTS).max(1);
    rows.chunks(per)
        .map(|chunk| {
            let peak = chunk.iter().map(&value).fold(f64::MIN, f64::max);
            (chunk[0].time as f64 / 3600.0, peak)
        })
        .collect()
}

/// Under-provisioned spans, in hours: `(start, end)` of each run of short syncs.
fn short_spans(rows: &[Row], sync_hours: f64) -> Vec<(f64, f64)> {
    let mut spans: Vec<(f64, f64)> = Vec::new();
    for row in rows.iter().filter(|r| r.load > r.capacity) {
        let start = row.time as f64 / 3600.0;
        match spans.last_mut() {
            Some(last) if start - last.1 <= sync_hours * 1.01 => last.1 = start + sync_hours,
            _ => spans.push((start, start + sync_hours)),
        }
    }
    spans
}

fn error(e: impl std::fmt::Display) -> String {
    format!("drawing the plot: {e}")
}

type Chart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// A labelled line.
fn line(
    chart: &mut Chart<'_, '_>,
    points: Vec<(f64, f64)>,
    color: RGBColor,
    label: &str,
) -> Result<(), String> {
    chart
        .draw_series(LineSeries::new(points, &color))
        .map_err(error)?
        .label(label)
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 12, y)], color));
    Ok(())
}

/// The legend box of a chart's labelled series.
fn legend<'b>(chart: &mut Chart<'b, 'b>) -> Result<(), String> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(error)
}

/// The SVG for `replays` (name, replay), one pair of panels each; `sync_seconds` is the
/// replays' sync period.
pub fn svg(replays: &[(&str, &Replay)], sync_seconds: u64) -> Result<String, String> {
    let mut out = String::new();
    let height = 360 * replays.len().max(1) as u32;
    {
        let root = SVGBackend::with_string(&mut out, (1200, height)).into_drawing_area();
        root.fill(&WHITE).map_err(error)?;
        let sync_hours = sync_seconds as f64 / 3600.0;
        for (area, (name, replay)) in root.split_evenly((replays.len(), 1)).iter().zip(replays) {
            let rows = &replay.rows;
            let end = rows
                .last()
                .map_or(1.0, |r| (r.time + sync_seconds) as f64 / 3600.0);
            let (top, bottom) = area.split_vertically(220);
            let load = buckets(rows, |r| r.load);
            let capacity = buckets(rows, |r| r.capacity);
            let max_load = load
                .iter()
                .chain(&capacity)
                .map(|p| p.1)
                .fold(1.0, f64::max)
                * 1.05;
            let s = &replay.summary;
            let mut chart = ChartBuilder::on(&top)
                .caption(
                    format!(
                        "{name}: {:.1} under-provisioned min, {:.1} replica-hours, {} scale events",
                        s.under_provisioned_minutes, s.replica_hours, s.scale_events
                    ),
                    ("sans-serif", 18),
                )
                .margin(8)
                .x_label_area_size(24)
                .y_label_area_size(60)
                .build_cartesian_2d(0.0..end, 0.0..max_load)
                .map_err(error)?;
            chart
                .configure_mesh()
                .y_desc("requests/s")
                .disable_x_mesh()
                .draw()
                .map_err(error)?;
            let shade = RED.mix(0.2).filled();
            chart
                .draw_series(
                    short_spans(rows, sync_hours)
                        .into_iter()
                        .map(|(a, b)| Rectangle::new([(a, 0.0), (b, max_load)], shade)),
                )
                .map_err(error)?
                .label("under-provisioned")
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], shade));
            line(&mut chart, load, BLUE, "offered load")?;
            line(&mut chart, capacity, GREEN, "ready capacity")?;
            legend(&mut chart)?;

            let ready = buckets(rows, |r| f64::from(r.ready));
            let desired = buckets(rows, |r| f64::from(r.desired));
            let max_replicas = ready
                .iter()
                .chain(&desired)
                .map(|p| p.1)
                .fold(1.0, f64::max)
                * 1.1;
            let mut replicas = ChartBuilder::on(&bottom)
                .margin(8)
                .x_label_area_size(30)
                .y_label_area_size(60)
                .build_cartesian_2d(0.0..end, 0.0..max_replicas)
                .map_err(error)?;
            replicas
                .configure_mesh()
                .x_desc("hours")
                .y_desc("replicas")
                .disable_x_mesh()
                .draw()
                .map_err(error)?;
            line(&mut replicas, desired, MAGENTA, "desired")?;
            line(&mut replicas, ready, BLACK, "ready")?;
            legend(&mut replicas)?;
        }
        root.present().map_err(error)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::model::Summary;

    fn row(time: u64, load: f64, ready: i32) -> Row {
        Row {
            time,
            load,
            observed: load,
            desired: ready,
            ready,
            running: ready,
            capacity: f64::from(ready) * 10.0,
            forecast_replicas: None,
        }
    }

    #[test]
    fn spans_and_buckets() {
        let rows: Vec<Row> = (0..10)
            .map(|i| row(i * 15, if (3..6).contains(&i) { 50.0 } else { 5.0 }, 1))
            .collect();
        let spans = short_spans(&rows, 15.0 / 3600.0);
        assert_eq!(spans.len(), 1);
        assert!(
            (spans[0].0 - 45.0 / 3600.0).abs() < 1e-12
                && (spans[0].1 - 90.0 / 3600.0).abs() < 1e-12
        );
        let many: Vec<Row> = (0..3999).map(|i| row(i * 15, (i % 3) as f64, 1)).collect();
        let b = buckets(&many, |r| r.load);
        assert!(b.len() <= MAX_POINTS);
        assert!(b.iter().all(|p| p.1 == 2.0), "each bucket keeps its peak");
    }

    #[test]
    fn draws_an_svg_with_a_panel_per_policy() {
        let rows: Vec<Row> = (0..100).map(|i| row(i * 15, 12.0, 1)).collect();
        let summary = Summary {
            under_provisioned_minutes: 25.0,
            replica_hours: 0.4,
            scale_events: 0,
            utilization_p50: 1.2,
            utilization_p99: 1.2,
            decisions: 100,
        };
        let replay = Replay { rows, summary };
        let svg = svg(&[("policy", &replay), ("hpa", &replay)], 15).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("under-provisioned min").count(), 2);
    }
}
