//! Standalone SVG line plots, drawn by hand without a plotting library.

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 400.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;
/// About how many tick intervals an axis gets.
const TARGET_TICKS: f64 = 5.0;
/// Series with more finite points than this are drawn without circle markers.
const MAX_MARKERS: usize = 200;
/// The Okabe–Ito colour-blind-friendly palette, cycled when there are more series.
const PALETTE: [&str; 8] = [
    "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000", "#F0E442",
];

/// One line of a plot.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Series {
    /// The legend label.
    pub label: String,
    /// The `(x, y)` points, in drawing order; non-finite points are skipped.
    pub points: Vec<(f64, f64)>,
}

/// A line plot.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LinePlot {
    /// The title above the plot (also the alt text of its link in `report.md`).
    pub title: String,
    /// The label under the x axis.
    pub x_label: String,
    /// The label beside the y axis.
    pub y_label: String,
    /// The lines, one colour each.
    pub series: Vec<Series>,
}

impl LinePlot {
    /// Renders a standalone SVG document (640 × 400): axes with "nice" ticks (1, 2 or 5 × 10^k)
    /// and tick labels, axis labels, the title, a legend with one Okabe–Ito colour per series,
    /// and each series as a polyline plus small circle markers (markers are left out for
    /// series of more than 200 points). Non-finite points are skipped; an empty plot or a
    /// single point still renders (a degenerate range is padded). Text is XML-escaped.
    pub fn to_svg(&self) -> String {
        let is_finite = |p: &&(f64, f64)| p.0.is_finite() && p.1.is_finite();
        let finite: Vec<Vec<(f64, f64)>> = (self.series.iter())
            .map(|s| s.points.iter().filter(is_finite).copied().collect())
            .collect();
        let xs = axis_ticks(finite.iter().flatten().map(|p| p.0));
        let ys = axis_ticks(finite.iter().flatten().map(|p| p.1));
        let (pw, ph) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
        let (bottom, right) = (TOP + ph, LEFT + pw);
        let (x0, x1, y0, y1) = (xs[0], xs[xs.len() - 1], ys[0], ys[ys.len() - 1]);
        let sx = |x: f64| coord(LEFT + (x - x0) / (x1 - x0) * pw);
        let sy = |y: f64| coord(bottom - (y - y0) / (y1 - y0) * ph);

        let mut out = vec![
            format!(
                r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
            ),
            format!(r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#),
            text(
                WIDTH / 2.0,
                24.0,
                r#"text-anchor="middle" font-size="16""#,
                &self.title,
            ),
        ];
        for (t, label) in xs.iter().zip(tick_labels(&xs)) {
            let x = sx(*t);
            out.push(line((x, TOP), (x, bottom), "#e0e0e0", 1.0));
            out.push(line((x, bottom), (x, bottom + 5.0), "#000", 1.0));
            out.push(text(x, bottom + 18.0, r#"text-anchor="middle""#, &label));
        }
        for (t, label) in ys.iter().zip(tick_labels(&ys)) {
            let y = sy(*t);
            out.push(line((LEFT, y), (right, y), "#e0e0e0", 1.0));
            out.push(line((LEFT - 5.0, y), (LEFT, y), "#000", 1.0));
            out.push(text(LEFT - 8.0, y + 4.0, r#"text-anchor="end""#, &label));
        }
        out.push(format!(
            r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#000"/>"##
        ));
        out.push(text(
            LEFT + pw / 2.0,
            HEIGHT - 10.0,
            r#"text-anchor="middle""#,
            &self.x_label,
        ));
        let (lx, ly) = (16.0, TOP + ph / 2.0);
        let rotate = format!(r#"text-anchor="middle" transform="rotate(-90 {lx} {ly})""#);
        out.push(text(lx, ly, &rotate, &self.y_label));

        let mut drawn = Vec::new();
        for (i, points) in finite.iter().enumerate().filter(|(_, p)| !p.is_empty()) {
            let colour = PALETTE[i % PALETTE.len()];
            let pixels: Vec<(f64, f64)> = points.iter().map(|&(x, y)| (sx(x), sy(y))).collect();
            let path: Vec<String> = pixels.iter().map(|(x, y)| format!("{x},{y}")).collect();
            let path = path.join(" ");
            out.push(format!(
                r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{path}"/>"#
            ));
            if pixels.len() <= MAX_MARKERS {
                for &(cx, cy) in &pixels {
                    out.push(format!(
                        r#"<circle cx="{cx}" cy="{cy}" r="2.5" fill="{colour}"/>"#
                    ));
                }
            }
            // Sample every 4 px along the segments, so that the legend avoids lines, not just markers.
            for pair in pixels.windows(2) {
                let ((ax, ay), (bx, by)) = (pair[0], pair[1]);
                let n = ((bx - ax).hypot(by - ay) / 4.0).ceil().clamp(1.0, 1000.0);
                let at = |t: f64| (ax + (bx - ax) * t, ay + (by - ay) * t);
                drawn.extend((0..n as usize).map(|k| at(k as f64 / n)));
            }
            drawn.extend(pixels.last());
        }
        if !self.series.is_empty() {
            self.legend((right, bottom), &drawn, &mut out);
        }
        out.push("</svg>\n".to_owned());
        out.join("\n")
    }

    /// The legend box, in the corner of the plot area (of bottom right corner `(right, bottom)`)
    /// that covers the fewest of the drawn points `drawn`.
    fn legend(&self, (right, bottom): (f64, f64), drawn: &[(f64, f64)], out: &mut Vec<String>) {
        let chars = self
            .series
            .iter()
            .map(|s| s.label.chars().count())
            .max()
            .unwrap_or(0);
        let (w, h) = (
            36.0 + 7.0 * chars as f64,
            8.0 + 16.0 * self.series.len() as f64,
        );
        let (left, top, low) = (LEFT + 6.0, TOP + 6.0, bottom - h - 6.0);
        let corners = [
            (right - w - 6.0, top),
            (left, top),
            (right - w - 6.0, low),
            (left, low),
        ];
        let covered = |&(x, y): &(f64, f64)| {
            (drawn.iter())
                .filter(|p| (x..=x + w).contains(&p.0) && (y..=y + h).contains(&p.1))
                .count()
        };
        let (x, y) = corners
            .into_iter()
            .min_by_key(covered)
            .unwrap_or(corners[0]);
        out.push(format!(r##"<rect x="{x}" y="{y}" width="{w}" height="{h}" fill="white" fill-opacity="0.85" stroke="#999"/>"##));
        for (i, s) in self.series.iter().enumerate() {
            let row = y + 14.0 + 16.0 * i as f64;
            let colour = PALETTE[i % PALETTE.len()];
            out.push(line(
                (x + 6.0, row - 4.0),
                (x + 26.0, row - 4.0),
                colour,
                2.0,
            ));
            out.push(text(x + 30.0, row, "", &s.label));
        }
    }
}

/// A straight line segment.
fn line((x1, y1): (f64, f64), (x2, y2): (f64, f64), colour: &str, width: f64) -> String {
    format!(
        r#"<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="{colour}" stroke-width="{width}"/>"#
    )
}

/// A `<text>` element with extra attributes and escaped content.
fn text(x: f64, y: f64, attributes: &str, content: &str) -> String {
    format!(
        r#"<text x="{x}" y="{y}" {attributes}>{}</text>"#,
        escape(content)
    )
}

/// The ticks of an axis covering `values`: multiples of a "nice" step (1, 2 or 5 × 10^k),
/// the first and last enclosing every value. No values gives `0..1`; a degenerate range is padded.
fn axis_ticks(values: impl Iterator<Item = f64>) -> Vec<f64> {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    nice_ticks(lo, hi)
}

/// See [`axis_ticks`].
fn nice_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let (lo, hi) = if !(lo.is_finite() && hi.is_finite()) {
        (0.0, 1.0)
    } else if hi - lo > lo.abs().max(hi.abs()) * 1e-9 {
        (lo, hi)
    } else {
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        (lo - pad, hi + pad)
    };
    // Halves avoid overflow of `hi - lo` for huge values.
    let raw = hi / TARGET_TICKS - lo / TARGET_TICKS;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = magnitude
        * match raw / magnitude {
            n if n < 1.5 => 1.0,
            n if n < 3.0 => 2.0,
            n if n < 7.0 => 5.0,
            _ => 10.0,
        };
    let (first, last) = ((lo / step).floor(), (hi / step).ceil());
    let count = (last - first).clamp(1.0, 100.0) as usize;
    let ticks: Vec<f64> = (0..=count)
        .map(|i| (first + i as f64) * step + 0.0)
        .collect();
    if ticks.iter().all(|t| t.is_finite()) && ticks[0] < ticks[count] {
        ticks
    } else {
        vec![0.0, 1.0]
    }
}

/// Tick labels with as many decimals as the step between ticks needs.
fn tick_labels(ticks: &[f64]) -> Vec<String> {
    let step = ticks[1] - ticks[0];
    let decimals = (-(step.log10() + 1e-6).floor()).clamp(0.0, 20.0) as usize;
    ticks
        .iter()
        .map(|t| format!("{:.*}", decimals, t + 0.0))
        .collect()
}

/// A coordinate rounded to 0.01 px; never NaN.
fn coord(v: f64) -> f64 {
    if v.is_finite() {
        (v * 100.0).round() / 100.0
    } else {
        0.0
    }
}

/// Escapes text for XML content and attribute values.
fn escape(text: &str) -> String {
    let text = text
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    text.replace('"', "&quot;").replace('\'', "&apos;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_ticks(lo: f64, hi: f64, expected: &[f64]) {
        let ticks = nice_ticks(lo, hi);
        assert_eq!(ticks.len(), expected.len(), "{lo}..{hi}: {ticks:?}");
        for (t, e) in ticks.iter().zip(expected) {
            assert!((t - e).abs() < 1e-9, "{lo}..{hi}: {ticks:?}");
        }
    }

    /// Balanced tags, one root `<svg>`.
    fn assert_well_formed(svg: &str) {
        let mut stack = Vec::new();
        for tag in svg.split('<').skip(1).map(|t| t.split('>').next().unwrap()) {
            let name = |t: &str| t.split_whitespace().next().unwrap_or("").to_owned();
            if let Some(closing) = tag.strip_prefix('/') {
                assert_eq!(stack.pop(), Some(name(closing)), "unbalanced </{closing}>");
            } else if !tag.ends_with('/') {
                stack.push(name(tag));
            }
        }
        assert!(stack.is_empty(), "unclosed: {stack:?}");
        assert_eq!(
            (svg.matches("<svg").count(), svg.matches("</svg>").count()),
            (1, 1)
        );
        assert!(svg.starts_with("<svg") && !svg.contains("NaN") && !svg.contains("inf"));
    }

    fn series(label: &str, points: &[(f64, f64)]) -> Series {
        Series {
            label: label.into(),
            points: points.to_vec(),
        }
    }

    fn plot(series: Vec<Series>) -> LinePlot {
        LinePlot {
            title: "t".into(),
            x_label: "step".into(),
            y_label: "reward".into(),
            series,
        }
    }

    #[test]
    fn nice_ticks_for_several_ranges() {
        assert_ticks(0.0, 1.0, &[0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
        assert_ticks(0.0, 37.0, &[0.0, 10.0, 20.0, 30.0, 40.0]);
        assert_ticks(-0.5, 0.2, &[-0.5, -0.4, -0.3, -0.2, -0.1, 0.0, 0.1, 0.2]);
        assert_ticks(3.0, 3.0, &[2.7, 2.8, 2.9, 3.0, 3.1, 3.2, 3.3]);
        assert_ticks(0.0, 0.0, &[-1.0, -0.5, 0.0, 0.5, 1.0]);
        assert_ticks(
            f64::INFINITY,
            f64::NEG_INFINITY,
            &[0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
        );
        assert_eq!(tick_labels(&nice_ticks(-0.5, 0.2))[..2], ["-0.5", "-0.4"]);
        assert_eq!(tick_labels(&nice_ticks(0.0, 37.0))[4], "40");
    }

    #[test]
    fn renders_series_legend_and_escapes() {
        let svg = plot(vec![
            series("a<b&c", &[(0.0, 0.1), (1.0, f64::NAN), (2.0, 0.5)]),
            series("empty", &[(f64::INFINITY, 1.0)]),
            series("b", &[(0.0, 0.3), (2.0, 0.2)]),
        ])
        .to_svg();
        assert_well_formed(&svg);
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(svg.matches("<circle").count(), 4);
        assert!(svg.contains(">a&lt;b&amp;c</text>") && !svg.contains("a<b"));
        assert!(svg.contains(PALETTE[0]) && svg.contains(PALETTE[2]));
    }

    #[test]
    fn degenerate_plots_still_render() {
        assert_well_formed(&plot(vec![]).to_svg());
        let one = plot(vec![series("x", &[(5.0, 3.0)])]).to_svg();
        assert_well_formed(&one);
        assert_eq!(one.matches("<polyline").count(), 1);
        let huge = [(-1e308, f64::MAX), (1e308, -f64::MAX)];
        assert_well_formed(&plot(vec![series("h", &huge)]).to_svg());
        // The legend (43 × 24 px) moves out of the way of a line through the top right corner.
        let legend = |points: &[(f64, f64)]| {
            let svg = plot(vec![series("r", points)]).to_svg();
            svg.contains(r#"<rect x="571" y="46" width="43" height="24""#)
        };
        assert!(legend(&[(0.0, 1.0), (1.0, 0.0)]));
        assert!(!legend(&[(0.0, 0.0), (1.0, 1.0)]));
    }
}
