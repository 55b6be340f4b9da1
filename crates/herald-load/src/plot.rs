//! A latency-against-rate line chart for the one-to-one sweep, written as plain SVG.
//!
//! No plotting crate is needed for a handful of lines: x is the offered publish rate (linear), y
//! the latency on a log scale (latencies span from tenths of a millisecond to seconds near
//! saturation). Each target, and each mode of it (SSE streams, long-poll, WebSocket), gets one
//! colour (shades of blue for Herald, of orange for Nchan), p99 solid and p50 dashed; a hollow
//! marker means the server accepted less than 90% of the offered rate (saturated). The p99 bound is a red dotted line. With several runs per target, each point
//! is the median over the runs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;

use crate::report::RunResult;
use crate::stats_util::median;

const W: f64 = 760.0;
const H: f64 = 460.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;

/// One point: offered rate, latency, and whether the offered rate was achieved.
type Point = (f64, f64, bool);

/// One line of the chart.
struct Series {
    name: String,
    colour: &'static str,
    dashed: bool,
    points: Vec<Point>,
}

/// Writes the chart of the one-to-one results in `results` to `path`.
pub fn write_svg(path: &Path, results: &[RunResult], bound_ms: f64) -> anyhow::Result<()> {
    let svg = render(results, bound_ms);
    std::fs::write(path, svg).with_context(|| format!("cannot write {}", path.display()))
}

/// Builds the SVG text.
pub fn render(results: &[RunResult], bound_ms: f64) -> String {
    let series = collect_series(results);
    let xs = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let x_max = nice_ceiling(xs.fold(1.0, f64::max));
    let ys: Vec<f64> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .chain([bound_ms])
        .filter(|v| *v > 0.0)
        .collect();
    let y_lo = 10f64.powf(ys.iter().fold(f64::MAX, |a, &b| a.min(b)).log10().floor());
    let y_hi = 10f64.powf(ys.iter().fold(f64::MIN, |a, &b| a.max(b)).log10().ceil());
    let y_hi = if y_hi <= y_lo { y_lo * 10.0 } else { y_hi };
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let px = |x: f64| LEFT + x / x_max * plot_w;
    let py = |y: f64| {
        let t = (y.max(y_lo).log10() - y_lo.log10()) / (y_hi.log10() - y_lo.log10());
        TOP + plot_h * (1.0 - t)
    };

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" font-size="15" text-anchor="middle">one-to-one: end-to-end latency against publish rate</text>"#,
        LEFT + plot_w / 2.0
    );
    // Grid and axes.
    let mut decade = y_lo;
    while decade <= y_hi * 1.0001 {
        let y = py(decade);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            y + 4.0,
            fmt_ms(decade)
        );
        decade *= 10.0;
    }
    for i in 0..=5 {
        let xv = x_max * f64::from(i) / 5.0;
        let x = px(xv);
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#eee"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            TOP + plot_h,
            TOP + plot_h + 18.0,
            fmt_rate(xv)
        );
    }
    let _ = writeln!(
        s,
        r#"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="black"/>"#
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">offered publish rate (messages/s); hollow: under 90% of it accepted</text>"#,
        LEFT + plot_w / 2.0,
        H - 18.0
    );
    let _ = writeln!(
        s,
        r#"<text x="18" y="{:.1}" text-anchor="middle" transform="rotate(-90 18 {:.1})">latency (ms, log scale)</text>"#,
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0
    );
    // p99 bound.
    let yb = py(bound_ms);
    let _ = writeln!(
        s,
        r#"<line x1="{LEFT}" y1="{yb:.1}" x2="{:.1}" y2="{yb:.1}" stroke="red" stroke-dasharray="2,3"/>"#,
        LEFT + plot_w
    );
    // Lines and legend.
    let mut legend_y = TOP + 10.0;
    let legend_x = LEFT + plot_w + 15.0;
    for line in &series {
        let dash = if line.dashed { r#" stroke-dasharray="6,4""# } else { "" };
        let pts: Vec<String> = line
            .points
            .iter()
            .map(|&(x, y, _)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"{dash}/>"#,
            pts.join(" "),
            line.colour
        );
        for &(x, y, achieved) in &line.points {
            let fill = if achieved { line.colour } else { "white" };
            let _ = writeln!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{fill}" stroke="{}" stroke-width="1.5"/>"#,
                px(x),
                py(y),
                line.colour
            );
        }
        let _ = writeln!(
            s,
            r#"<line x1="{legend_x}" y1="{legend_y}" x2="{:.1}" y2="{legend_y}" stroke="{}" stroke-width="2"{dash}/><text x="{:.1}" y="{:.1}">{}</text>"#,
            legend_x + 28.0,
            line.colour,
            legend_x + 34.0,
            legend_y + 4.0,
            line.name
        );
        legend_y += 20.0;
    }
    let _ = writeln!(
        s,
        r#"<line x1="{legend_x}" y1="{legend_y}" x2="{:.1}" y2="{legend_y}" stroke="red" stroke-dasharray="2,3"/><text x="{:.1}" y="{:.1}">p99 bound {}</text>"#,
        legend_x + 28.0,
        legend_x + 34.0,
        legend_y + 4.0,
        fmt_ms(bound_ms)
    );
    s.push_str("</svg>\n");
    s
}

fn collect_series(results: &[RunResult]) -> Vec<Series> {
    // "target[ mode]" -> offered rate (as integer key) -> [(achieved, p50, p99)] over runs.
    type Runs = BTreeMap<u64, Vec<(f64, f64, f64)>>;
    let mut by_target: BTreeMap<String, Runs> = BTreeMap::new();
    for r in results.iter().filter(|r| r.scenario == "one-to-one") {
        let name = if r.mode.is_empty() {
            r.target.to_string()
        } else {
            format!("{} {}", r.target, r.mode)
        };
        let runs = by_target.entry(name).or_default();
        for st in &r.steps {
            runs.entry(st.target_rate.round() as u64).or_default().push((
                st.achieved_rate,
                st.latency.p50_ms,
                st.latency.p99_ms,
            ));
        }
    }
    let mut out = Vec::new();
    for (target, runs) in by_target {
        const HERALD: [&str; 4] = ["#1f6fb4", "#6baed6", "#08306b", "#9ecae1"];
        const NCHAN: [&str; 4] = ["#e07b00", "#c2a35a", "#8c4a00", "#f5b971"];
        let shade = match target.split_once(' ').map_or("", |(_, mode)| mode) {
            "" => 0,
            "long-poll" => 1,
            "websocket" => 2,
            _ => 3,
        };
        let colour = if target.starts_with("herald") {
            HERALD[shade]
        } else {
            NCHAN[shade]
        };
        let mut p50 = Vec::new();
        let mut p99 = Vec::new();
        for (&offered, samples) in &runs {
            let x = offered as f64;
            let achieved = median(samples.iter().map(|s| s.0).collect()) >= 0.9 * x;
            p50.push((x, median(samples.iter().map(|s| s.1).collect()), achieved));
            p99.push((x, median(samples.iter().map(|s| s.2).collect()), achieved));
        }
        out.push(Series {
            name: format!("{target} p99"),
            colour,
            dashed: false,
            points: p99,
        });
        out.push(Series {
            name: format!("{target} p50"),
            colour,
            dashed: true,
            points: p50,
        });
    }
    out
}

/// The smallest of 1, 2, 2.5, 5 × 10^k at or above `v` (an axis end); also used by [`crate::timeline`].
pub(crate) fn nice_ceiling(v: f64) -> f64 {
    let mag = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|&c| c >= v)
        .unwrap_or(v)
}

fn fmt_ms(v: f64) -> String {
    if v >= 1.0 {
        format!("{v:.0} ms")
    } else {
        format!("{v} ms")
    }
}

fn fmt_rate(v: f64) -> String {
    if v >= 1000.0 {
        format!("{}k", (v / 100.0).round() / 10.0)
    } else {
        format!("{v:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Step;
    use crate::stats::Summary;
    use crate::target::TargetKind;

    #[test]
    fn renders_one_line_per_target_and_percentile() {
        let mut r = RunResult::new("one-to-one", "", TargetKind::Nchan, "", "x", 10, 1);
        for (rate, p99) in [(1000.0, 1.2), (2000.0, 3.4)] {
            r.steps.push(Step {
                target_rate: rate,
                achieved_rate: rate,
                latency: Summary {
                    p50_ms: p99 / 2.0,
                    p99_ms: p99,
                    ..Summary::default()
                },
                ..Step::default()
            });
        }
        let svg = render(&[r], 50.0);
        assert!(svg.starts_with("<svg"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("nchan p99"));
        assert!(svg.trim_end().ends_with("</svg>"));
    }

    #[test]
    fn nice_ceilings() {
        assert_eq!(nice_ceiling(37_000.0), 50_000.0);
        assert_eq!(nice_ceiling(1000.0), 1000.0);
    }
}
