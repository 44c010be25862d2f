//! A small SVG bar chart: one panel per metric, one bar per target, values written on the
//! bars. Plain SVG keeps the benchmark free of font and image libraries.

use std::fmt::Write as _;

pub struct Group {
    pub label: String,
    /// One value per metric (NaN: not measured).
    pub values: Vec<f64>,
}

const COLOURS: [&str; 4] = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759"];

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `metrics`: (panel title, index into each group's values).
pub fn bars(title: &str, metrics: &[(&str, usize)], groups: &[Group]) -> String {
    let (pw, ph, top, bottom) = (300.0, 260.0, 60.0, 40.0);
    let width = pw * metrics.len() as f64 + 40.0;
    let height = top + ph + bottom + 24.0 * groups.len() as f64;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="20" y="24" font-size="16" font-weight="bold">{}</text>"#,
        escape(title)
    );
    for (p, (name, idx)) in metrics.iter().enumerate() {
        let x0 = 20.0 + p as f64 * pw;
        let max = groups
            .iter()
            .filter_map(|g| g.values.get(*idx).copied())
            .filter(|v| v.is_finite())
            .fold(0.0f64, f64::max)
            .max(1e-9);
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" font-weight="bold">{}</text>"#,
            x0 + 10.0,
            top - 10.0,
            escape(name)
        );
        let base = top + ph;
        let _ = writeln!(
            s,
            r#"<line x1="{x0}" y1="{base}" x2="{}" y2="{base}" stroke="black"/>"#,
            x0 + pw - 20.0
        );
        let bw = (pw - 40.0) / groups.len().max(1) as f64;
        for (i, g) in groups.iter().enumerate() {
            let v = g.values.get(*idx).copied().unwrap_or(f64::NAN);
            let x = x0 + 10.0 + i as f64 * bw;
            let (h, label) = if v.is_finite() {
                ((v / max) * (ph - 20.0), format!("{v:.2}"))
            } else {
                (0.0, "n/a".to_string())
            };
            let _ = writeln!(
                s,
                r#"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="{}"/>"#,
                base - h,
                bw * 0.8,
                COLOURS[i % COLOURS.len()]
            );
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{label}</text>"#,
                x + bw * 0.4,
                base - h - 4.0
            );
        }
    }
    for (i, g) in groups.iter().enumerate() {
        let y = top + ph + bottom + 24.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<rect x="20" y="{}" width="14" height="14" fill="{}"/><text x="40" y="{}">{}</text>"#,
            y - 11.0,
            COLOURS[i % COLOURS.len()],
            y,
            escape(&g.label)
        );
    }
    s.push_str("</svg>\n");
    s
}
