//! Charts of the harness's tables: for each workload, how many times
//! better weft did than each peer, as horizontal bars on a log scale
//! (right of the 1x line: weft ahead; left: behind). "Better" follows the
//! unit: more is better for rates (`/s`), less for everything else
//! (bytes, latency, CPU time, seconds, share lost), so a bar's direction
//! always means the same thing.
//!
//! The input is the table text the harness prints (and BENCHMARKS.md
//! keeps); the output is a self-contained SVG. `weft-bench chart
//! [BENCHMARKS.md] [DIR]` renders every recorded table in the document;
//! a group run writes `bench/charts/<group>.svg` for its own table.

use std::fmt::Write as _;

/// One table: its workloads, the peers, and weft's advantage over each.
pub struct Table {
    pub peers: Vec<String>,
    /// (workload, advantage per peer: None where the table has none).
    pub rows: Vec<(String, Vec<Option<f64>>)>,
}

/// Reads a table in the harness's text format (header, a rule, rows);
/// `None` if `text` is not one (no `weft/` ratio columns).
pub fn parse(text: &str) -> Option<Table> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<String> = lines
        .next()?
        .split('|')
        .map(|c| c.trim().to_string())
        .collect();
    if header.first().map(String::as_str) != Some("workload") {
        return None;
    }
    let ratio_at: Vec<usize> = (0..header.len())
        .filter(|&i| header[i].starts_with("weft/"))
        .collect();
    if ratio_at.is_empty() {
        return None;
    }
    let weft_at = header.iter().position(|h| h == "weft")?;
    let peers = ratio_at
        .iter()
        .map(|&i| header[i].trim_start_matches("weft/").to_string())
        .collect();
    let mut rows = Vec::new();
    for line in lines {
        if line.starts_with('-') {
            continue;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() != header.len() {
            continue;
        }
        let unit = cells[weft_at].split_whitespace().nth(1).unwrap_or("");
        let more_is_better = unit.ends_with("/s");
        let advantage = ratio_at
            .iter()
            .map(|&i| {
                let r: f64 = cells[i].strip_suffix('x')?.parse().ok()?;
                if r <= 0.0 {
                    return None;
                }
                Some(if more_is_better { r } else { 1.0 / r })
            })
            .collect();
        rows.push((cells[0].to_string(), advantage));
    }
    Some(Table { peers, rows })
}

const COLORS: [&str; 6] = [
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#76b7b2",
];

/// The chart of `table` as SVG, titled `title`.
pub fn svg(title: &str, table: &Table) -> String {
    let (left, right, top, bar, gap) = (150.0, 40.0, 60.0, 9.0, 8.0);
    let plot_w = 560.0;
    let width = left + plot_w + right;
    let per_row = bar * table.peers.len() as f64 + gap;
    let height = top + per_row * table.rows.len() as f64 + 50.0;
    // Log scale from 1/10x to 100x, clamped.
    let (lo, hi) = (0.1f64.log10(), 100f64.log10());
    let x = |v: f64| left + (v.clamp(0.1, 100.0).log10() - lo) / (hi - lo) * plot_w;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(
        out,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{left}" y="20" font-size="14" font-weight="bold">{}</text>"#,
        escape(title)
    );
    let _ = writeln!(
        out,
        r#"<text x="{left}" y="36" fill="dimgray">times better than the peer (right of 1x: weft ahead; log scale, clamped to 0.1x–100x)</text>"#
    );
    // Legend.
    for (i, peer) in table.peers.iter().enumerate() {
        let lx = left + 110.0 * i as f64;
        let _ = writeln!(
            out,
            r#"<rect x="{lx}" y="44" width="10" height="10" fill="{}"/><text x="{}" y="53">{}</text>"#,
            COLORS[i % COLORS.len()],
            lx + 14.0,
            escape(peer)
        );
    }
    // Grid.
    for (v, label) in [(0.1, "0.1x"), (1.0, "1x"), (10.0, "10x"), (100.0, "100x")] {
        let gx = x(v);
        let stroke = if v == 1.0 { "#000" } else { "#ddd" };
        let _ = writeln!(
            out,
            r#"<line x1="{gx}" y1="{top}" x2="{gx}" y2="{}" stroke="{stroke}"/><text x="{gx}" y="{}" text-anchor="middle" fill="dimgray">{label}</text>"#,
            height - 40.0,
            height - 26.0
        );
    }
    for (r, (workload, adv)) in table.rows.iter().enumerate() {
        let y0 = top + per_row * r as f64;
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            left - 6.0,
            y0 + per_row / 2.0,
            escape(workload)
        );
        for (i, a) in adv.iter().enumerate() {
            let Some(a) = a else { continue };
            let y = y0 + bar * i as f64;
            let (x0, x1) = (x(1.0), x(*a));
            let _ = writeln!(
                out,
                r#"<rect x="{}" y="{y}" width="{}" height="{}" fill="{}"><title>{} vs {}: {:.2}x</title></rect>"#,
                x0.min(x1),
                (x1 - x0).abs().max(1.0),
                bar - 1.0,
                COLORS[i % COLORS.len()],
                escape(workload),
                escape(&table.peers[i]),
                a
            );
        }
    }
    out.push_str("</svg>\n");
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Every ```text table in `markdown` with the heading above it, as
/// (slug, title, table).
pub fn tables_in(markdown: &str) -> Vec<(String, String, Table)> {
    let mut out = Vec::new();
    let mut heading = String::from("weft");
    let mut block: Option<String> = None;
    let mut seen = std::collections::HashMap::<String, usize>::new();
    for line in markdown.lines() {
        if let Some(text) = &mut block {
            if line.starts_with("```") {
                if let Some(table) = parse(text) {
                    let base = slug(&heading);
                    let n = seen.entry(base.clone()).or_default();
                    *n += 1;
                    let slug = if *n == 1 { base } else { format!("{base}-{n}") };
                    out.push((slug, heading.clone(), table));
                }
                block = None;
            } else {
                text.push_str(line);
                text.push('\n');
            }
        } else if line.starts_with("```text") {
            block = Some(String::new());
        } else if let Some(h) = line.strip_prefix("### ").or(line.strip_prefix("## ")) {
            heading = h.trim().to_string();
        }
    }
    out
}

fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_string()
}

#[cfg(test)]
mod tests {
    const TABLE: &str = "\
workload       |         weft |        actix | weft/actix
--------------------------------------------------------
ping-pong      |    10.56 M/s |     4.79 M/s |      2.20x
spawn-bytes    |        244 B |        881 B |      0.28x
ask            |     2.47 M/s |          n/a |          -
";

    #[test]
    fn rates_keep_their_ratio_and_costs_are_inverted() {
        let t = super::parse(TABLE).unwrap();
        assert_eq!(t.peers, ["actix"]);
        assert_eq!(t.rows.len(), 3);
        assert_eq!(t.rows[0].1, [Some(2.2)]);
        let bytes = t.rows[1].1[0].unwrap();
        assert!((bytes - 1.0 / 0.28).abs() < 1e-9);
        assert_eq!(t.rows[2].1, [None]);
        let svg = super::svg("actors", &t);
        assert!(svg.starts_with("<svg") && svg.contains("ping-pong vs actix: 2.20x"));
    }

    #[test]
    fn tables_are_found_under_their_headings() {
        let md =
            format!("## Results\n\n```text\n{TABLE}```\n\n### TLS\n\n```text\nnot a table\n```\n");
        let found = super::tables_in(&md);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, "results");
    }
}
