//! A soak run over time, as plain SVG: two panels sharing the time axis (minutes), the server's
//! memory (RSS and allocated, MiB) above and the end-to-end latency (p50 and p99, ms) below, one
//! point per sample. A flat line in both is what a soak run must show.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;

use crate::plot::nice_ceiling;
use crate::report::RunResult;

const W: f64 = 760.0;
const PANEL_H: f64 = 220.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 150.0;
const TOP: f64 = 50.0;
const GAP: f64 = 50.0;
const BOTTOM: f64 = 50.0;

/// One line: its name, colour, whether dashed, and (minutes, value) points.
struct Line {
    name: &'static str,
    colour: &'static str,
    dashed: bool,
    points: Vec<(f64, f64)>,
}

/// Writes the chart of `result`'s soak samples to `path`.
pub fn write_svg(path: &Path, result: &RunResult) -> anyhow::Result<()> {
    std::fs::write(path, render(result)).with_context(|| format!("cannot write {}", path.display()))
}

/// Builds the SVG text.
pub fn render(result: &RunResult) -> String {
    let minutes: Vec<f64> = result.samples.iter().map(|s| s.elapsed_s / 60.0).collect();
    let series = |f: &dyn Fn(&crate::report::SoakSample) -> f64| -> Vec<(f64, f64)> {
        minutes.iter().zip(&result.samples).map(|(&m, s)| (m, f(s))).collect()
    };
    let memory = [
        Line {
            name: "RSS",
            colour: "#1f77b4",
            dashed: false,
            points: series(&|s| s.rss_mib),
        },
        Line {
            name: "allocated",
            colour: "#1f77b4",
            dashed: true,
            points: series(&|s| s.allocated_mib),
        },
    ];
    let latency = [
        Line {
            name: "p99",
            colour: "#d62728",
            dashed: false,
            points: series(&|s| s.latency.p99_ms),
        },
        Line {
            name: "p50",
            colour: "#d62728",
            dashed: true,
            points: series(&|s| s.latency.p50_ms),
        },
    ];
    let x_max = nice_ceiling(minutes.iter().copied().fold(1.0, f64::max));
    let height = TOP + 2.0 * PANEL_H + GAP + BOTTOM;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" viewBox="0 0 {W} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{height}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" font-size="15" text-anchor="middle">soak: {} streams, {:.0} msg/s — server memory and latency over time</text>"#,
        LEFT + (W - LEFT - RIGHT) / 2.0,
        result.connections,
        median_rate(result)
    );
    panel(&mut s, TOP, x_max, "server memory (MiB)", &memory);
    panel(&mut s, TOP + PANEL_H + GAP, x_max, "end-to-end latency (ms)", &latency);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">minutes since the load started</text>"#,
        LEFT + (W - LEFT - RIGHT) / 2.0,
        height - 12.0
    );
    s.push_str("</svg>\n");
    s
}

fn median_rate(result: &RunResult) -> f64 {
    crate::stats_util::median(result.samples.iter().map(|s| s.achieved_rate).collect())
}

/// One panel at `top`: a linear y axis from 0, grid, the lines and their legend.
fn panel(s: &mut String, top: f64, x_max: f64, title: &str, lines: &[Line]) {
    let plot_w = W - LEFT - RIGHT;
    let y_max = nice_ceiling(
        lines
            .iter()
            .flat_map(|l| l.points.iter().map(|p| p.1))
            .filter(|v| v.is_finite())
            .fold(0.0, f64::max)
            .max(1e-3),
    );
    let px = |x: f64| LEFT + x / x_max * plot_w;
    let py = |y: f64| top + PANEL_H * (1.0 - (y / y_max).clamp(0.0, 1.0));
    let _ = writeln!(s, r#"<text x="{LEFT}" y="{}" font-size="13">{title}</text>"#, top - 8.0);
    for i in 0..=4 {
        let v = y_max * f64::from(i) / 4.0;
        let y = py(v);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            y + 4.0,
            fmt_value(v)
        );
    }
    for i in 0..=5 {
        let v = x_max * f64::from(i) / 5.0;
        let x = px(v);
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{:.1}" stroke="#eee"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            top + PANEL_H,
            top + PANEL_H + 16.0,
            fmt_value(v)
        );
    }
    let _ = writeln!(
        s,
        r##"<rect x="{LEFT}" y="{top}" width="{plot_w}" height="{PANEL_H}" fill="none" stroke="#333"/>"##
    );
    for (i, line) in lines.iter().enumerate() {
        let points: Vec<String> = line
            .points
            .iter()
            .filter(|p| p.1.is_finite())
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        let dash = if line.dashed { r#" stroke-dasharray="6 4""# } else { "" };
        let _ = writeln!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"{dash}/>"#,
            points.join(" "),
            line.colour
        );
        let ly = top + 20.0 + 20.0 * i as f64;
        let lx = LEFT + plot_w + 15.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{}" stroke-width="2"{dash}/><text x="{}" y="{}">{}</text>"#,
            lx + 30.0,
            line.colour,
            lx + 36.0,
            ly + 4.0,
            line.name
        );
    }
}

fn fmt_value(v: f64) -> String {
    if v >= 10.0 || v == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::SoakSample;
    use crate::target::TargetKind;

    #[test]
    fn draws_both_panels_with_one_point_per_sample() {
        let mut result = RunResult::new("soak", "", TargetKind::Herald, "", "run", 19_000, 3);
        for minute in 1..=30 {
            let mut sample = SoakSample {
                elapsed_s: f64::from(minute) * 60.0,
                rss_mib: 300.0 + f64::from(minute % 3),
                allocated_mib: 200.0,
                achieved_rate: 1000.0,
                ..SoakSample::default()
            };
            sample.latency.p99_ms = 2.0;
            sample.latency.p50_ms = 0.8;
            result.samples.push(sample);
        }
        let svg = render(&result);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<polyline").count(), 4);
        let rss_line = svg.split("<polyline points=\"").nth(1).expect("a line");
        assert_eq!(rss_line.split('"').next().expect("points").split(' ').count(), 30);
        assert!(svg.contains("19000 streams, 1000 msg/s"));
    }
}
