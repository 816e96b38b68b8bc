//! `chat-bench plot`: latency (p50 and p99, log scale) against offered rate, one pair of lines per run,
//! drawn from the JSON lines that `one` and `group` print, as an SVG for docs/.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context as _, ensure};
use plotters::prelude::*;

use crate::cli::PlotArgs;
use crate::report::{RunReport, StepResult};

/// One run's points: (offered rate, p50 ms, p99 ms), by rate.
type Series = Vec<(f64, f64, f64)>;

/// Reads every JSON line of the inputs that holds load steps; the series name is the run's label, else
/// its file name.
pub fn read_series(inputs: &[impl AsRef<Path>]) -> anyhow::Result<BTreeMap<String, Series>> {
    let mut out: BTreeMap<String, Series> = BTreeMap::new();
    for input in inputs {
        let path = input.as_ref();
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        for line in text.lines().filter(|l| l.trim_start().starts_with('{')) {
            let Ok(run) = serde_json::from_str::<RunReport>(line) else {
                continue;
            };
            let name = if run.headline.label.is_empty() {
                path.file_stem()
                    .map_or("run".into(), |s| s.to_string_lossy().into_owned())
            } else {
                run.headline.label.clone()
            };
            let series = out.entry(name).or_default();
            series.extend(run.steps.iter().map(point));
        }
    }
    for series in out.values_mut() {
        series.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    out.retain(|_, s| !s.is_empty());
    Ok(out)
}

fn point(s: &StepResult) -> (f64, f64, f64) {
    // A log axis cannot show 0: the histogram's floor is 1 µs.
    (s.rate, s.p50_ms.max(0.001), s.p99_ms.max(0.001))
}

/// Draws the chart.
pub fn plot(args: &PlotArgs) -> anyhow::Result<()> {
    let series = read_series(&args.inputs)?;
    ensure!(!series.is_empty(), "no load steps found in the inputs");
    let points = series.values().flatten();
    let max_rate = points.clone().map(|p| p.0).fold(0.0, f64::max);
    let min_ms = points.clone().map(|p| p.1).fold(f64::MAX, f64::min);
    let max_ms = points.map(|p| p.2).fold(0.0, f64::max);
    // Headroom above the data for the legend (cheap on a log axis).
    let y_range = (min_ms * 0.5).max(0.01)..(max_ms * 30.0).max(10.0);

    let root = SVGBackend::new(&args.output, (900, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(draw_error)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(&args.title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..max_rate * 1.05, y_range.log_scale())
        .map_err(draw_error)?;
    chart
        .configure_mesh()
        .x_desc("offered rate (messages per second)")
        .y_desc("end-to-end latency (ms, log scale)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| short_number(*y))
        .light_line_style(WHITE)
        .bold_line_style(BLACK.mix(0.12))
        .draw()
        .map_err(draw_error)?;
    for (i, (name, points)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        for (which, dashed) in [("p50", false), ("p99", true)] {
            let line: Vec<(f64, f64)> = points
                .iter()
                .map(|&(r, p50, p99)| (r, if dashed { p99 } else { p50 }))
                .collect();
            let style = ShapeStyle::from(&color).stroke_width(if dashed { 3 } else { 2 });
            chart
                .draw_series(LineSeries::new(line.clone(), style))
                .map_err(draw_error)?
                .label(format!("{name} {which}"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
            chart
                .draw_series(line.iter().map(|&p| Circle::new(p, 3, color.filled())))
                .map_err(draw_error)?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(draw_error)?;
    root.present().map_err(draw_error)?;
    eprintln!("wrote {}", args.output.display());
    Ok(())
}

/// Distinct, readable colours for up to four runs (then they repeat).
const COLORS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];

/// A tick label without float noise: 0.25, 2, 150.
fn short_number(v: f64) -> String {
    let text = format!("{v:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    text.to_string()
}

fn draw_error<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing the chart: {e:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_labels_are_short() {
        assert_eq!(short_number(0.6000000001), "0.6");
        assert_eq!(short_number(20.0), "20");
        assert_eq!(short_number(0.125), "0.125");
    }

    #[test]
    fn series_from_json_lines_sorted_by_rate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("one.jsonl");
        let step = |rate: f64, p50: f64, p99: f64| StepResult {
            rate,
            p50_ms: p50,
            p99_ms: p99,
            label: "sqlite".into(),
            ..StepResult::default()
        };
        let run = RunReport {
            headline: step(5_000.0, 1.0, 2.0),
            max_sustained_rate: Some(5_000.0),
            setup_s: 1.0,
            setup_failures: 0,
            login_p50_ms: 1.0,
            login_p99_ms: 1.0,
            steps: vec![step(10_000.0, 2.0, 9.0), step(5_000.0, 1.0, 2.0)],
            flood: None,
            storage: None,
        };
        let text = format!("a table line\n{}\n", serde_json::to_string(&run).unwrap());
        std::fs::write(&path, text).unwrap();
        let series = read_series(&[&path]).unwrap();
        assert_eq!(
            series["sqlite"],
            vec![(5_000.0, 1.0, 2.0), (10_000.0, 2.0, 9.0)]
        );

        let out = dir.path().join("plot.svg");
        plot(&PlotArgs {
            inputs: vec![path],
            output: out.clone(),
            title: "t".into(),
        })
        .unwrap();
        let svg = std::fs::read_to_string(out).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("sqlite p99"));
    }
}
