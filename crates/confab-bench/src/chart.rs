//! `chart`: reads the JSON results in a folder and draws the Confab ÷ floor ratio of every metric as
//! a horizontal bar chart in hand-written SVG (log scale, bars grow from 1×), for the README.

use std::{fmt::Write as _, path::PathBuf};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::report::{Better, Report};

#[derive(clap::Args, Debug, Clone, Serialize)]
pub struct ChartArgs {
    /// Folder holding the `<mode>.json` results.
    #[arg(long, default_value = "bench-results")]
    pub dir: PathBuf,
    /// SVG file to write.
    #[arg(long, default_value = "bench-results/ratios.svg")]
    pub out: PathBuf,
}

/// One bar.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub label: String,
    pub ratio: f64,
    pub better: Better,
}

/// The order modes appear in, when present.
const MODE_ORDER: [&str; 4] = ["fanout", "idle", "auth", "history"];

pub fn run(args: &ChartArgs) -> Result<()> {
    // (file stem, report): the stem names the bars, so extra runs such as `idle-19000.json` stand apart.
    let mut reports = Vec::new();
    let entries = std::fs::read_dir(&args.dir).with_context(|| format!("reading {}", args.dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path)?;
            let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            match serde_json::from_str::<Report>(&text) {
                // Only Confab ÷ floor ratios share the chart's scale and title (`cluster` compares nodes).
                Ok(r) if !r.against_floor() => eprintln!("skipping {}: not against the floor", path.display()),
                Ok(r) => reports.push((stem, r)),
                Err(e) => eprintln!("skipping {}: {e}", path.display()),
            }
        }
    }
    let rank = |mode: &str| MODE_ORDER.iter().position(|m| *m == mode).unwrap_or(MODE_ORDER.len());
    reports.sort_by(|(sa, a), (sb, b)| rank(&a.mode).cmp(&rank(&b.mode)).then_with(|| sa.cmp(sb)));
    let rows: Vec<Row> = reports
        .iter()
        .flat_map(|(stem, r)| {
            r.metrics.iter().filter_map(move |m| {
                let ratio = m.ratio.filter(|x| x.is_finite() && *x > 0.0)?;
                Some(Row { label: format!("{stem}: {}", m.name), ratio, better: m.better })
            })
        })
        .collect();
    if rows.is_empty() {
        bail!("no results with ratios in {}", args.dir.display());
    }
    let cores = reports.first().map_or(0, |(_, r)| r.cores);
    let svg = render(&rows, &format!("Confab ÷ floor server — same machine ({cores} cores), same run"));
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, svg).with_context(|| format!("writing {}", args.out.display()))?;
    println!("{} bars written to {}", rows.len(), args.out.display());
    Ok(())
}

/// Width of the bar area, and what is left right of it for the value labels.
const PLOT_W: f64 = 560.0;
const RIGHT: f64 = 70.0;
/// Average advance of a 12 px sans-serif character, to size the label column without measuring text.
const CHAR_W: f64 = 6.8;
const TOP: f64 = 60.0;
const ROW_H: f64 = 24.0;
const GOOD: &str = "#2e8b57";
const BAD: &str = "#d2691e";

/// The SVG document for `rows`.
pub fn render(rows: &[Row], title: &str) -> String {
    // The label column fits the longest label (plus its arrow), so nothing is clipped.
    let longest = rows.iter().map(|r| r.label.chars().count() + 2).max().unwrap_or(0);
    let label_w = (longest as f64 * CHAR_W).max(200.0);
    let plot_x = label_w + 10.0;
    let width = plot_x + PLOT_W + RIGHT;
    // Decades spanning every ratio and at least 0.1×–10×, so 1× always sits inside.
    let lo = rows.iter().map(|r| r.ratio.log10().floor()).fold(-1.0, f64::min);
    let hi = rows.iter().map(|r| r.ratio.log10().ceil()).fold(1.0, f64::max);
    let x = |ratio: f64| plot_x + (ratio.log10() - lo) / (hi - lo) * PLOT_W;
    let plot_h = rows.len() as f64 * ROW_H;
    let height = TOP + plot_h + 60.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(s, r#"<text x="{}" y="24" font-size="16" font-weight="bold">{}</text>"#, 10, escape(title));
    let _ = writeln!(
        s,
        r##"<text x="10" y="44" fill="#555">log scale; ↑ higher is better, ↓ lower is better; green: Confab at or better than the floor, orange: worse</text>"##
    );
    // Decade grid lines and their labels.
    let mut decade = lo;
    while decade <= hi {
        let gx = plot_x + (decade - lo) / (hi - lo) * PLOT_W;
        let stroke = if decade == 0.0 { r##"stroke="#000" stroke-width="1.5""## } else { r##"stroke="#ddd""## };
        let _ = writeln!(s, r#"<line x1="{gx:.1}" y1="{TOP}" x2="{gx:.1}" y2="{:.1}" {stroke}/>"#, TOP + plot_h);
        let _ = writeln!(
            s,
            r##"<text x="{gx:.1}" y="{:.1}" text-anchor="middle" fill="#333">{}×</text>"##,
            TOP + plot_h + 16.0,
            tick_label(decade)
        );
        decade += 1.0;
    }
    let one = x(1.0);
    for (i, row) in rows.iter().enumerate() {
        let y = TOP + i as f64 * ROW_H;
        let bx = x(row.ratio);
        let (left, width) = if bx < one { (bx, one - bx) } else { (one, bx - one) };
        let good = row.better.confab_keeps_up(row.ratio);
        let hint = match row.better {
            Better::Higher => "higher is better",
            Better::Lower => "lower is better",
        };
        let arrow = match row.better {
            Better::Higher => "↑",
            Better::Lower => "↓",
        };
        let _ = writeln!(
            s,
            r#"<text x="{label_w:.1}" y="{:.1}" text-anchor="end">{} {arrow}</text>"#,
            y + ROW_H * 0.65,
            escape(&row.label)
        );
        let _ = writeln!(
            s,
            r#"<rect class="bar" x="{left:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{} ({hint}): {:.3}×</title></rect>"#,
            y + 4.0,
            width.max(1.0),
            ROW_H - 8.0,
            if good { GOOD } else { BAD },
            escape(&row.label),
            row.ratio
        );
        let (tx, anchor) = if bx < one { (left - 4.0, "end") } else { (left + width + 4.0, "start") };
        let _ = writeln!(
            s,
            r##"<text x="{tx:.1}" y="{:.1}" text-anchor="{anchor}" fill="#333">{}×</text>"##,
            y + ROW_H * 0.65,
            ratio_label(row.ratio)
        );
    }
    let _ = writeln!(
        s,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#333">Confab ÷ floor</text>"##,
        plot_x + PLOT_W / 2.0,
        TOP + plot_h + 40.0
    );
    s.push_str("</svg>\n");
    s
}

fn tick_label(decade: f64) -> String {
    let v = 10f64.powf(decade);
    if v >= 1.0 { format!("{v:.0}") } else { format!("{v}") }
}

fn ratio_label(r: f64) -> String {
    if r >= 10.0 {
        format!("{r:.1}")
    } else if r >= 0.1 {
        format!("{r:.2}")
    } else {
        format!("{r:.4}")
    }
}

/// Escapes text for SVG content and attribute values.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Vec<Row> {
        vec![
            Row { label: "fanout: deliveries/s".into(), ratio: 0.8, better: Better::Higher },
            Row { label: "history: p50 <100k>".into(), ratio: 3.5, better: Better::Lower },
            Row { label: "auth: password & more".into(), ratio: 0.004, better: Better::Higher },
        ]
    }

    #[test]
    fn renders_one_bar_per_row() {
        let svg = render(&rows(), "t & t");
        assert!(svg.starts_with("<svg "));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches(r#"<rect class="bar""#).count(), 3);
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
        assert!(svg.contains("t &amp; t"));
        assert!(svg.contains("history: p50 &lt;100k&gt;"));
        assert!(svg.contains("password &amp; more"));
        // Worse-than-floor bars are orange, better ones green.
        assert!(svg.contains(BAD) && !svg.contains(&format!("fill=\"{GOOD}\"><title>fanout")));
    }

    #[test]
    fn scale_covers_every_ratio_and_one() {
        let svg = render(&rows(), "t");
        // 0.004 needs the 0.001 decade; 3.5 needs 10.
        assert!(svg.contains(">0.001×<"));
        assert!(svg.contains(">10×<"));
        assert!(svg.contains(">1×<"));
    }

    #[test]
    fn bars_grow_from_one() {
        // Scale 0.1×–10×: 1× is the middle of the plot, which starts after the minimum label column.
        let one = 200.0 + 10.0 + PLOT_W / 2.0;
        let svg = render(&[Row { label: "a".into(), ratio: 10.0, better: Better::Higher }], "t");
        assert!(svg.contains(&format!(r#"class="bar" x="{one:.1}""#)));
    }

    #[test]
    fn label_column_fits_the_longest_label() {
        let long = "x".repeat(80);
        let svg = render(&[Row { label: long, ratio: 2.0, better: Better::Lower }], "t");
        let label_w = 82.0 * CHAR_W;
        assert!(svg.contains(&format!(r#"<text x="{label_w:.1}""#)));
        assert!(svg.contains(&format!(r#"width="{:.0}""#, label_w + 10.0 + PLOT_W + RIGHT)));
    }
}
