//! Charts of benchmark results, PNG and SVG (plotters): the same drawing code for both.

use std::path::Path;

use anyhow::anyhow;
use plotters::{coord::Shift, prelude::*};

/// One target's SYN-flood sweep: (offered M SYN/s, answered M SYN/s, legitimate p99 ms).
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64, f64)>,
}

const COLORS: [RGBColor; 4] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
];

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing the chart: {e:?}")
}

/// `base`.png and `base`.svg: capacity curves, and the legitimate client's p99 connect time
/// against the offered rate.
pub fn synflood(base: &Path, series: &[Series]) -> anyhow::Result<()> {
    let size = (1400, 560);
    {
        let png = base.with_extension("png");
        let root = BitMapBackend::new(&png, size).into_drawing_area();
        draw_synflood(&root, series)?;
        root.present().map_err(err)?;
    }
    let svg = base.with_extension("svg");
    let root = SVGBackend::new(&svg, size).into_drawing_area();
    draw_synflood(&root, series)?;
    root.present().map_err(err)?;
    Ok(())
}

fn draw_synflood<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    series: &[Series],
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(err)?;
    let (left, right) = root.split_horizontally(700);
    let max_x = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(0.1, f64::max)
        * 1.05;

    // Log scales: the kernel targets saturate near 0.2 M, tcpfront's ladder goes on 15x
    // further; on linear axes the kernel's curves hide in a corner.
    let min_x = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .filter(|&x| x > 0.0)
        .fold(max_x, f64::min)
        * 0.8;
    let mut c = ChartBuilder::on(&left)
        .caption("SYN-ACKs answered on one core", ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d((min_x..max_x).log_scale(), (min_x..max_x).log_scale())
        .map_err(err)?;
    c.configure_mesh()
        .x_desc("offered SYNs (millions per second, log scale)")
        .y_desc("answered (millions per second, log scale)")
        .x_labels(10)
        .y_labels(10)
        .x_label_formatter(&|x| millions(*x))
        .y_label_formatter(&|y| millions(*y))
        .light_line_style(WHITE)
        .draw()
        .map_err(err)?;
    c.draw_series(LineSeries::new(
        [(min_x, min_x), (max_x, max_x)],
        ShapeStyle::from(&BLACK.mix(0.3)).stroke_width(1),
    ))
    .map_err(err)?
    .label("answered = offered")
    .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK.mix(0.3)));
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let pts: Vec<(f64, f64)> = s.points.iter().map(|p| (p.0, p.1)).collect();
        c.draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(err)?
            .label(s.label.clone())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
        c.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(err)?;
    }
    c.configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK.mix(0.3))
        .draw()
        .map_err(err)?;

    let max_p99 = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.2))
        .filter(|v| v.is_finite())
        .fold(0.1, f64::max)
        * 2.0;
    let mut c = ChartBuilder::on(&right)
        .caption("legitimate client: connect p99", ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d((min_x..max_x).log_scale(), (0.01..max_p99).log_scale())
        .map_err(err)?;
    c.configure_mesh()
        .x_desc("offered SYNs (millions per second, log scale)")
        .y_desc("connect p99 (ms, log scale)")
        .x_labels(10)
        .x_label_formatter(&|x| millions(*x))
        .light_line_style(WHITE)
        .draw()
        .map_err(err)?;
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let pts: Vec<(f64, f64)> = s
            .points
            .iter()
            .filter(|p| p.2.is_finite())
            .map(|p| (p.0, p.2.max(0.011)))
            .collect();
        c.draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(err)?
            .label(s.label.clone())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
        c.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(err)?;
    }
    c.configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK.mix(0.3))
        .draw()
        .map_err(err)?;
    Ok(())
}

/// An axis label in millions: no more digits than the value needs, and only at 1, 2 and 5
/// of each decade (a log axis gets a tick at every digit; labelled, 0.6-0.9 ran together).
fn millions(x: f64) -> String {
    let mantissa = x / 10f64.powf(x.log10().floor());
    if ![1.0, 2.0, 5.0].iter().any(|m| (mantissa - m).abs() < 0.05) {
        return String::new();
    }
    if x >= 1.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// One group of bars: a value per series.
pub struct BarGroup {
    pub label: String,
    pub values: Vec<f64>,
}

/// `base`.png and `base`.svg: grouped bars (one colour per series) on a log scale (values
/// from a few to a thousand share the chart), with an optional horizontal reference line (a
/// rate limit).
pub fn bars(
    base: &Path,
    title: &str,
    y_desc: &str,
    series: &[String],
    groups: &[BarGroup],
    reference: Option<f64>,
) -> anyhow::Result<()> {
    let size = (1600, 620);
    {
        let png = base.with_extension("png");
        let root = BitMapBackend::new(&png, size).into_drawing_area();
        draw_bars(&root, title, y_desc, series, groups, reference)?;
        root.present().map_err(err)?;
    }
    let svg = base.with_extension("svg");
    let root = SVGBackend::new(&svg, size).into_drawing_area();
    draw_bars(&root, title, y_desc, series, groups, reference)?;
    root.present().map_err(err)?;
    Ok(())
}

fn draw_bars<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    y_desc: &str,
    series: &[String],
    groups: &[BarGroup],
    reference: Option<f64>,
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(err)?;
    let max_y = groups
        .iter()
        .flat_map(|g| g.values.iter().copied())
        .chain(reference)
        .fold(1.0, f64::max)
        * 1.5;
    let floor = 1.0;
    let n = groups.len().max(1);
    let mut c = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(70)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..n as f64, (floor..max_y).log_scale())
        .map_err(err)?;
    let labels: Vec<String> = groups.iter().map(|g| g.label.clone()).collect();
    c.configure_mesh()
        .disable_x_mesh()
        .x_labels(n * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            // Only the label at each group's centre.
            if (x - i as f64 - 0.5).abs() < 0.01 {
                labels.get(i).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .x_label_style(("sans-serif", 12))
        .y_desc(format!("{y_desc} (log scale)"))
        .draw()
        .map_err(err)?;
    let width = 0.8 / series.len().max(1) as f64;
    for (s, name) in series.iter().enumerate() {
        let color = COLORS[s % COLORS.len()];
        c.draw_series(groups.iter().enumerate().filter_map(|(i, g)| {
            let v = *g.values.get(s)?;
            let x0 = i as f64 + 0.1 + s as f64 * width;
            Some(Rectangle::new(
                [(x0, 0.0), (x0 + width * 0.9, v)],
                color.filled(),
            ))
        }))
        .map_err(err)?
        .label(name.clone())
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], color.filled()));
    }
    if let Some(r) = reference {
        c.draw_series(LineSeries::new(
            [(0.0, r), (n as f64, r)],
            ShapeStyle::from(&BLACK.mix(0.5)).stroke_width(1),
        ))
        .map_err(err)?
        .label("rate limit")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK.mix(0.5)));
    }
    c.configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK.mix(0.3))
        .draw()
        .map_err(err)?;
    Ok(())
}
