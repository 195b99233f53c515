//! `--plot FILE.svg`: round-trip latency against percentile, one panel per
//! message size, one line per transport and mode (the 8-byte floors drawn in
//! every panel for reference). x: percentile on a "nines" scale (50, 90, 99,
//! 99.9, 99.99, max); y: latency, log scale.

use crate::report::{human_ns, human_size};
use crate::types::{Mode, Row};
use plotters::prelude::*;
use std::path::Path;

/// Panel size in pixels.
const PANEL: (u32, u32) = (1000, 480);
/// Width of the legend beside each panel.
const LEGEND: u32 = 280;
/// Where the maximum is drawn on the nines axis.
const X_MAX: f64 = 5.0;

/// Percentile → position on the nines scale: 50 → 0, 90 → 1, 99 → 2,
/// 99.9 → 3, 99.99 → 4, the maximum → 5 (between 50 and 90, linear in
/// -log10(1 - p)).
fn nines(p: f64) -> f64 {
    if p >= 100.0 {
        return X_MAX;
    }
    let n = -(1.0 - p / 100.0).log10();
    let half = 2f64.log10(); // the nines of the median
    if n <= 1.0 {
        (n - half) / (1.0 - half)
    } else {
        n.min(X_MAX - 0.5)
    }
}

/// Labels the integer positions of the nines scale.
fn x_label(x: f64) -> String {
    const LABELS: [&str; 6] = ["50", "90", "99", "99.9", "99.99", "max"];
    let i = x.round();
    if (x - i).abs() > 1e-6 || !(0.0..=X_MAX).contains(&i) {
        return String::new();
    }
    LABELS[i as usize].to_string()
}

/// A color per transport.
fn color(transport: &str) -> RGBColor {
    match transport {
        "floor" => RGBColor(0, 0, 0),
        "memcpy" => RGBColor(90, 90, 90),
        "xcopy" => RGBColor(160, 160, 160),
        "shm-spsc" => RGBColor(31, 119, 180),
        "shm-mpmc" => RGBColor(44, 160, 44),
        "pipe" => RGBColor(255, 127, 14),
        "fifo" => RGBColor(140, 86, 75),
        "unix" => RGBColor(148, 103, 189),
        "tcp" => RGBColor(214, 39, 40),
        "python-queue" => RGBColor(188, 189, 34),
        "python-pipe" => RGBColor(227, 119, 194),
        "python-shmring-queue" => RGBColor(23, 190, 207),
        "python-shmring-pipe" => RGBColor(0, 90, 120),
        "rabbitmq" => RGBColor(255, 102, 0),
        "rabbitmq-bridge" => RGBColor(153, 61, 0),
        _ => RGBColor(127, 127, 127),
    }
}

/// Spin: solid; block: dashed; loan rows thinner.
fn draw_line<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    row: &Row,
    pts: &[(i32, i32)],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let width = if row.loan { 1 } else { 2 };
    let style = ShapeStyle::from(color(&row.transport)).stroke_width(width);
    match row.mode {
        Mode::Spin => area.draw(&PathElement::new(pts.to_vec(), style)),
        Mode::Block => area.draw(&plotters::element::DashedPathElement::new(
            pts.iter().copied(),
            6,
            4,
            style,
        )),
    }
}

/// Draws the curves of `rows` (those measured at `sizes`, plus the floors)
/// into an SVG file at `path`.
pub fn draw(path: &Path, rows: &[Row], sizes: &[usize]) -> Result<(), Box<dyn std::error::Error>> {
    let panels = sizes.len().max(1);
    let root =
        SVGBackend::new(path, (PANEL.0 + LEGEND, PANEL.1 * panels as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let areas = root.split_evenly((panels, 1));
    for (area, &size) in areas.iter().zip(sizes) {
        let (plot_area, legend_area) = area.split_horizontally(PANEL.0);
        let series: Vec<&Row> = rows
            .iter()
            .filter(|r| (r.size == size || r.transport == "floor") && !r.lat.curve.is_empty())
            .collect();
        let values = series
            .iter()
            .flat_map(|r| r.lat.curve.iter().map(|&(_, v)| v.max(1)));
        let lo = values.clone().min().unwrap_or(1) as f64;
        let hi = values.max().unwrap_or(1_000) as f64;
        let (lo, hi) = ((lo * 0.7).max(1.0), (hi * 1.5).max(lo * 2.0));
        let mut chart = ChartBuilder::on(&plot_area)
            .caption(
                format!("Round-trip latency, {} messages", human_size(size)),
                ("sans-serif", 22),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(80)
            .build_cartesian_2d(-0.2f64..X_MAX + 0.2, (lo..hi).log_scale())?;
        chart
            .configure_mesh()
            .x_labels(12)
            .x_desc("percentile")
            .y_desc("round trip")
            .x_label_formatter(&|x| x_label(*x))
            .y_label_formatter(&|y| human_ns(*y as u64))
            .draw()?;
        let plotting = chart.plotting_area();
        for r in &series {
            let pts: Vec<(i32, i32)> = r
                .lat
                .curve
                .iter()
                .map(|&(p, v)| plotting.map_coordinate(&(nines(p), v.max(1) as f64)))
                .collect();
            draw_line(&root, r, &pts)?;
        }
        // The legend, beside the chart.
        let font = ("sans-serif", 13).into_font();
        legend_area.draw(&Text::new(
            "spin: solid, block: dashed, loan: thin".to_string(),
            (4, 30),
            font.clone(),
        ))?;
        for (i, r) in series.iter().enumerate() {
            let y = 56 + 19 * i as i32;
            draw_line(&legend_area, r, &[(4, y), (34, y)])?;
            let name = if r.transport == "floor" && r.size != size {
                format!("{} (8 B)", r.name())
            } else {
                r.name()
            };
            let label = format!("{name}  p50 {}", human_ns(r.lat.p50));
            legend_area.draw(&Text::new(label, (40, y - 7), font.clone()))?;
        }
    }
    root.present()?;
    Ok(())
}
