//! The report's plots, drawn with plotters to SVG text. Every time plot
//! shades the fault windows so a reader sees what each fault did.

use super::data::{FaultWindow, Outcome, QuantilePoint, Sample, FIRST_FINAL_READ_PROCESS};
use plotters::coord::combinators::LogCoord;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

/// Width of every plot, in pixels.
const WIDTH_PX: u32 = 1100;
const FONT: &str = "sans-serif";

/// A failed drawing: plotters' error, as text.
#[derive(Debug, thiserror::Error)]
#[error("drawing {plot}: {message}")]
pub struct PlotError {
    pub plot: &'static str,
    pub message: String,
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

fn draw<F>(plot: &'static str, height_px: u32, body: F) -> Result<String, PlotError>
where
    F: FnOnce(&Area) -> Result<(), Box<dyn std::error::Error>>,
{
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH_PX, height_px)).into_drawing_area();
        let drawn = root.fill(&WHITE).map_err(|e| e.into()).and_then(|()| body(&root));
        drawn
            .and_then(|()| root.present().map_err(|e| e.into()))
            .map_err(|e| PlotError { plot, message: e.to_string() })?;
    }
    Ok(svg)
}

/// The colour of an operation kind.
pub fn kind_colour(kind: &str) -> RGBColor {
    match kind {
        "put" => RGBColor(31, 119, 180),
        "delete" => RGBColor(148, 103, 189),
        "get strong" => RGBColor(44, 160, 44),
        "get eventual" => RGBColor(255, 127, 14),
        "get session" => RGBColor(23, 190, 207),
        _ => RGBColor(127, 127, 127),
    }
}

/// The shade of a fault family.
pub fn fault_colour(kind: &str) -> RGBColor {
    match kind {
        "partition" => RGBColor(214, 39, 40),
        "kill" => RGBColor(90, 90, 90),
        "pause" => RGBColor(188, 189, 34),
        "clock" => RGBColor(31, 119, 180),
        "loss" => RGBColor(148, 103, 189),
        "membership" => RGBColor(44, 160, 44),
        _ => RGBColor(255, 127, 14),
    }
}

type LatencyChart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, LogCoord<f64>>>;

/// Time on x, latency in ms on a log y axis, with its mesh drawn.
fn latency_chart<'a, 'b>(
    root: &'a Area<'b>,
    end_s: f64,
    min_ms: f64,
    max_ms: f64,
) -> Result<LatencyChart<'a, 'b>, Box<dyn std::error::Error>> {
    let mut chart = ChartBuilder::on(root)
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..end_s.max(1.0), (min_ms..max_ms).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("time since start (s)")
        .y_desc("latency (ms)")
        .label_style((FONT, 13))
        .light_line_style(WHITE)
        .draw()?;
    Ok(chart)
}

/// The series' legend, boxed, at `position`.
fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .label_font((FONT, 13))
        .draw()?;
    Ok(())
}

/// Shaded fault bands over `y_min..y_max`, each labelled at the top.
fn bands<DB: DrawingBackend, Y: plotters::coord::ranged1d::Ranged<ValueType = f64>>(
    chart: &mut ChartContext<DB, Cartesian2d<plotters::coord::types::RangedCoordf64, Y>>,
    faults: &[FaultWindow],
    y_min: f64,
    y_max: f64,
) -> Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    chart.draw_series(
        faults
            .iter()
            .map(|f| Rectangle::new([(f.start_s, y_min), (f.end_s, y_max)], fault_colour(&f.kind).mix(0.13).filled())),
    )?;
    chart.draw_series(faults.iter().map(|f| {
        Text::new(f.kind.clone(), (f.start_s, y_max), (FONT, 12).into_font().color(&fault_colour(&f.kind)))
    }))?;
    Ok(())
}

/// Latency of every operation over time, log scale: a colour per kind, a
/// marker per outcome (dot ok, cross fail, triangle unknown).
pub fn latency_scatter(samples: &[&Sample], faults: &[FaultWindow], end_s: f64) -> Result<String, PlotError> {
    let max_ms = samples.iter().filter_map(|s| s.latency_ms()).fold(10.0f64, f64::max) * 1.5;
    let min_ms = samples.iter().filter_map(|s| s.latency_ms()).fold(max_ms, f64::min).clamp(0.001, 1.0) / 1.5;
    let mut kinds: Vec<&str> = samples.iter().map(|s| &*s.kind).collect();
    kinds.sort_unstable();
    kinds.dedup();
    draw("latency scatter", 460, |root| {
        let mut chart = latency_chart(root, end_s, min_ms, max_ms)?;
        bands(&mut chart, faults, min_ms, max_ms)?;
        for kind in &kinds {
            let colour = kind_colour(kind);
            let of_kind = || samples.iter().filter(move |s| &*s.kind == *kind);
            chart
                .draw_series(
                    of_kind()
                        .filter(|s| s.outcome == Outcome::Ok)
                        .filter_map(|s| Some(Circle::new((s.invoke_s, s.latency_ms()?), 2, colour.mix(0.6).filled()))),
                )?
                .label(kind.to_string())
                .legend(move |(x, y)| Circle::new((x + 8, y), 4, colour.filled()));
            chart.draw_series(
                of_kind()
                    .filter(|s| s.outcome == Outcome::Fail)
                    .filter_map(|s| Some(Cross::new((s.invoke_s, s.latency_ms()?), 4, colour.stroke_width(2)))),
            )?;
            // Never completed: on the top edge, where no measured latency is.
            chart.draw_series(of_kind().filter(|s| s.outcome == Outcome::Info).map(|s| {
                let latency = s.latency_ms().unwrap_or(max_ms / 1.05);
                TriangleMarker::new((s.invoke_s, latency), 5, colour.stroke_width(2))
            }))?;
        }
        legend(&mut chart, SeriesLabelPosition::LowerRight)?;
        Ok(())
    })
}

/// p50, p95, p99 and max latency per time bucket, for one kind.
pub fn latency_quantiles(
    kind: &str,
    points: &[QuantilePoint],
    faults: &[FaultWindow],
    end_s: f64,
) -> Result<String, PlotError> {
    let max_ms = points.iter().map(|p| p.max_ms).fold(10.0f64, f64::max) * 1.5;
    let min_ms = points.iter().map(|p| p.p50_ms).fold(max_ms, f64::min).clamp(0.001, 1.0) / 1.5;
    let colour = kind_colour(kind);
    /// A line: its name, its value, its opacity.
    type Line = (&'static str, fn(&QuantilePoint) -> f64, f64);
    let lines: [Line; 4] = [
        ("p50", |p| p.p50_ms, 1.0),
        ("p95", |p| p.p95_ms, 0.75),
        ("p99", |p| p.p99_ms, 0.5),
        ("max", |p| p.max_ms, 0.3),
    ];
    draw("latency quantiles", 300, |root| {
        let mut chart = latency_chart(root, end_s, min_ms, max_ms)?;
        bands(&mut chart, faults, min_ms, max_ms)?;
        for (name, value, alpha) in lines {
            let style = colour.mix(alpha).stroke_width(2);
            // A line needs two buckets; dots show every bucket, also a lone one.
            let at = |p: &QuantilePoint| (p.at_s, value(p).max(min_ms));
            chart.draw_series(points.iter().map(|p| Circle::new(at(p), 2, style.filled())))?;
            chart
                .draw_series(LineSeries::new(points.iter().map(at), style))?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], style));
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        Ok(())
    })
}

/// Completions per second by outcome over time.
pub fn throughput(buckets: &[(f64, [f64; 3])], faults: &[FaultWindow], end_s: f64) -> Result<String, PlotError> {
    let max = buckets.iter().flat_map(|(_, c)| c.iter().copied()).fold(1.0f64, f64::max) * 1.15;
    let colours = [RGBColor(44, 160, 44), RGBColor(214, 39, 40), RGBColor(255, 127, 14)];
    draw("throughput", 320, |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..end_s.max(1.0), 0f64..max)?;
        chart
            .configure_mesh()
            .x_desc("time since start (s)")
            .y_desc("completions per second")
            .y_label_formatter(&|y| format!("{y:.0}"))
            .label_style((FONT, 13))
            .light_line_style(WHITE)
            .draw()?;
        bands(&mut chart, faults, 0.0, max)?;
        for outcome in Outcome::ALL {
            let style = colours[outcome as usize].stroke_width(2);
            chart
                .draw_series(LineSeries::new(buckets.iter().map(|(at, c)| (*at, c[outcome as usize])), style))?
                .label(outcome.name())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], style));
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        Ok(())
    })
}

/// Bins of the staleness histogram, in ms behind.
pub const STALENESS_BINS_MS: [(f64, f64, &str); 7] = [
    (0.0, 1.0, "< 1 ms"),
    (1.0, 10.0, "1–10 ms"),
    (10.0, 100.0, "10–100 ms"),
    (100.0, 1_000.0, "0.1–1 s"),
    (1_000.0, 10_000.0, "1–10 s"),
    (10_000.0, 60_000.0, "10–60 s"),
    (60_000.0, f64::INFINITY, "> 60 s"),
];

/// How many plain eventual reads were fresh, and how many were behind by
/// how much (log bins).
pub fn staleness(fresh: u64, ms_behind: &[f64]) -> Result<String, PlotError> {
    let mut counts: Vec<(String, u64)> = vec![("fresh".into(), fresh)];
    for (low, high, label) in STALENESS_BINS_MS {
        let n = ms_behind.iter().filter(|&&ms| ms >= low && ms < high).count() as u64;
        counts.push((label.into(), n));
    }
    let max = counts.iter().map(|(_, n)| *n).max().unwrap_or(1).max(1) as f64 * 1.15;
    let labels: Vec<String> = counts.iter().map(|(l, _)| l.clone()).collect();
    draw("staleness", 300, |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(70)
            .build_cartesian_2d(-0.5f64..(counts.len() as f64 - 0.5), 0f64..max)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(counts.len())
            .x_label_formatter(&|x| labels.get(x.round() as usize).cloned().unwrap_or_default())
            .x_desc("how far behind the newest acknowledged write")
            .y_desc("plain eventual reads")
            .y_label_formatter(&|y| format!("{y:.0}"))
            .label_style((FONT, 13))
            .light_line_style(WHITE)
            .draw()?;
        chart.draw_series(counts.iter().enumerate().map(|(i, (_, n))| {
            let colour = if i == 0 { RGBColor(44, 160, 44) } else { RGBColor(255, 127, 14) };
            Rectangle::new([(i as f64 - 0.35, 0.0), (i as f64 + 0.35, *n as f64)], colour.filled())
        }))?;
        chart.draw_series(
            counts
                .iter()
                .enumerate()
                .map(|(i, (_, n))| Text::new(n.to_string(), (i as f64 - 0.1, *n as f64 + max * 0.02), (FONT, 12))),
        )?;
        Ok(())
    })
}

/// How an operation on an anomaly's timeline is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The operation that could not be explained (the read, the lost write).
    Culprit,
    /// An operation the explanation names.
    Named,
    Context,
}

/// One bar of an anomaly timeline.
#[derive(Clone, Debug)]
pub struct Bar<'a> {
    pub sample: &'a Sample,
    pub role: Role,
}

/// Operations as bars from invocation to completion, one row per process,
/// over `from_s..to_s`, with the nemesis events as vertical lines.
pub fn timeline(bars: &[Bar], marks: &[(f64, String)], from_s: f64, to_s: f64) -> Result<String, PlotError> {
    let mut processes: Vec<u64> = bars.iter().map(|b| b.sample.process).collect();
    processes.sort_unstable();
    processes.dedup();
    let row = |p: u64| processes.iter().position(|&q| q == p).unwrap_or(0) as f64;
    let height = 90 + 34 * processes.len() as u32;
    let rows = processes.len() as f64;
    let names: Vec<String> = processes
        .iter()
        .map(|&p| if p >= FIRST_FINAL_READ_PROCESS { "final reads".into() } else { format!("process {p}") })
        .collect();
    draw("anomaly timeline", height, |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(90)
            .build_cartesian_2d(from_s..to_s, -0.6f64..(rows - 0.4))?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(processes.len().max(1))
            .y_label_formatter(&|y| names.get(y.round() as usize).cloned().unwrap_or_default())
            .x_desc("time since start (s)")
            .label_style((FONT, 13))
            .light_line_style(WHITE)
            .draw()?;
        chart.draw_series(marks.iter().filter(|(at, _)| (from_s..=to_s).contains(at)).map(|(at, _)| {
            PathElement::new(vec![(*at, -0.6), (*at, rows - 0.4)], fault_colour("partition").stroke_width(2))
        }))?;
        chart.draw_series(marks.iter().filter(|(at, _)| (from_s..=to_s).contains(at)).map(|(at, f)| {
            Text::new(f.clone(), (*at, rows - 0.45), (FONT, 12).into_font().color(&fault_colour("partition")))
        }))?;
        // Labels must not pile up: a context label that would overlap the
        // previous label on its row is left out (the table lists every
        // operation); the blamed and named ones are always labelled.
        let seconds_per_char = (to_s - from_s) / 980.0 * 6.6;
        let mut taken: std::collections::HashMap<u64, Vec<(f64, f64)>> = std::collections::HashMap::new();
        let mut ordered: Vec<&Bar> = bars.iter().collect();
        ordered.sort_by_key(|b| b.role == Role::Context);
        for bar in ordered {
            let s = bar.sample;
            let (y, end) = (row(s.process), s.complete_s.unwrap_or(to_s).min(to_s));
            let colour = match bar.role {
                Role::Culprit => RGBColor(214, 39, 40),
                Role::Named => RGBColor(255, 127, 14),
                Role::Context => RGBColor(170, 170, 170),
            };
            let start = s.invoke_s.max(from_s);
            let width = (to_s - from_s) * 0.002;
            chart.draw_series(std::iter::once(Rectangle::new(
                [(start, y - 0.12), (end.max(start + width), y + 0.12)],
                colour.filled(),
            )))?;
            let mark = match s.outcome {
                Outcome::Ok => "",
                Outcome::Fail => " (failed)",
                Outcome::Info => " (unknown)",
            };
            let label = format!("{}{mark}", s.detail.as_ref().map_or("", |d| d.description.as_str()));
            let span = (start, start + label.chars().count() as f64 * seconds_per_char);
            let row_labels = taken.entry(s.process).or_default();
            if bar.role == Role::Context && row_labels.iter().any(|&(a, b)| span.0 < b && a < span.1) {
                continue;
            }
            row_labels.push(span);
            // Anchored at its top-left corner, just above the bar.
            chart.draw_series(std::iter::once(Text::new(label, (start, y + 0.48), (FONT, 12))))?;
        }
        Ok(())
    })
}
