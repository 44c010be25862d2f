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

    let mut c = ChartBuilder::on(&left)
        .caption("SYN-ACKs answered on one core", ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..max_x, 0.0..max_x)
        .map_err(err)?;
    c.configure_mesh()
        .x_desc("offered SYNs (millions per second)")
        .y_desc("answered (millions per second)")
        .draw()
        .map_err(err)?;
    c.draw_series(LineSeries::new(
        [(0.0, 0.0), (max_x, max_x)],
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
        .build_cartesian_2d(0.0..max_x, (0.01..max_p99).log_scale())
        .map_err(err)?;
    c.configure_mesh()
        .x_desc("offered SYNs (millions per second)")
        .y_desc("connect p99 (ms, log scale)")
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
