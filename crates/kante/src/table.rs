//! Tables in lxc 5.0's styles: bordered (`table`), `compact`, `csv`.

use std::fmt::Write;

/// One logical row; a cell may span several lines (`\n`).
pub type Row = Vec<String>;

fn width(s: &str) -> usize {
    s.chars().count()
}

fn cell_lines(cell: &str) -> Vec<&str> {
    cell.split('\n').collect()
}

fn column_widths(header: &[&str], rows: &[Row]) -> Vec<usize> {
    let mut w: Vec<usize> = header.iter().map(|h| width(h)).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(w.len()) {
            for line in cell_lines(cell) {
                w[i] = w[i].max(width(line));
            }
        }
    }
    w
}

fn center(text: &str, w: usize) -> String {
    let pad = w.saturating_sub(width(text));
    let left = pad / 2;
    format!("{}{}{}", " ".repeat(left), text, " ".repeat(pad - left))
}

fn left(text: &str, w: usize) -> String {
    format!("{}{}", text, " ".repeat(w.saturating_sub(width(text))))
}

/// The bordered table `lxc list` prints: `+---+` lines between all rows,
/// centred headers, left-aligned cells.
pub fn render_table(header: &[&str], rows: &[Row]) -> String {
    let w = column_widths(header, rows);
    let sep: String = {
        let mut s = String::from("+");
        for cw in &w {
            s.push_str(&"-".repeat(cw + 2));
            s.push('+');
        }
        s.push('\n');
        s
    };
    let mut out = sep.clone();
    out.push('|');
    for (h, cw) in header.iter().zip(&w) {
        let _ = write!(out, " {} |", center(h, *cw));
    }
    out.push('\n');
    out.push_str(&sep);
    for row in rows {
        let lines: Vec<Vec<&str>> = (0..w.len())
            .map(|i| cell_lines(row.get(i).map(String::as_str).unwrap_or("")))
            .collect();
        let height = lines.iter().map(Vec::len).max().unwrap_or(1);
        for l in 0..height {
            out.push('|');
            for (i, cw) in w.iter().enumerate() {
                let text = lines[i].get(l).copied().unwrap_or("");
                let _ = write!(out, " {} |", left(text, *cw));
            }
            out.push('\n');
        }
        out.push_str(&sep);
    }
    out
}

/// lxc's `compact` format: no borders, columns separated by two spaces.
pub fn render_compact(header: &[&str], rows: &[Row]) -> String {
    let w = column_widths(header, rows);
    let mut out = String::new();
    let line = |cells: Vec<String>| -> String { format!("  {}\n", cells.join("  ").trim_end()) };
    out.push_str(&line(
        header
            .iter()
            .zip(&w)
            .map(|(h, cw)| center(h, *cw))
            .collect(),
    ));
    for row in rows {
        let lines: Vec<Vec<&str>> = (0..w.len())
            .map(|i| cell_lines(row.get(i).map(String::as_str).unwrap_or("")))
            .collect();
        let height = lines.iter().map(Vec::len).max().unwrap_or(1);
        for l in 0..height {
            out.push_str(&line(
                (0..w.len())
                    .map(|i| left(lines[i].get(l).copied().unwrap_or(""), w[i]))
                    .collect(),
            ));
        }
    }
    out
}

/// CSV without a header (as lxc), quoting cells that need it.
pub fn render_csv(rows: &[Row]) -> String {
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .map(|c| {
                if c.contains([',', '"', '\n', '\r']) {
                    format!("\"{}\"", c.replace('"', "\"\""))
                } else {
                    c.clone()
                }
            })
            .collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Compact,
    Csv,
    Json,
    Yaml,
}

/// Renders rows for the three tabular formats.
pub fn render(format: Format, header: &[&str], rows: &[Row]) -> String {
    match format {
        Format::Compact => render_compact(header, rows),
        Format::Csv => render_csv(rows),
        _ => render_table(header, rows),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cells: &[&str]) -> Row {
        cells.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn matches_lxc_list_output() {
        let header = ["NAME", "STATE", "IPV4", "IPV6", "TYPE", "SNAPSHOTS"];
        let rows = vec![
            row(&[
                "trc-run",
                "RUNNING",
                "10.147.83.38 (eth0)",
                "",
                "CONTAINER",
                "0",
            ]),
            row(&["trc-stopped", "STOPPED", "", "", "CONTAINER", "0"]),
        ];
        let expected = "\
+-------------+---------+---------------------+------+-----------+-----------+
|    NAME     |  STATE  |        IPV4         | IPV6 |   TYPE    | SNAPSHOTS |
+-------------+---------+---------------------+------+-----------+-----------+
| trc-run     | RUNNING | 10.147.83.38 (eth0) |      | CONTAINER | 0         |
+-------------+---------+---------------------+------+-----------+-----------+
| trc-stopped | STOPPED |                     |      | CONTAINER | 0         |
+-------------+---------+---------------------+------+-----------+-----------+
";
        assert_eq!(render_table(&header, &rows), expected);
    }

    #[test]
    fn multi_line_cells_take_several_lines() {
        let out = render_table(
            &["NAME", "IPV4"],
            &[row(&["c1", "10.0.3.5 (eth0)\n10.0.4.5 (eth1)"])],
        );
        let expected = "\
+------+-----------------+
| NAME |      IPV4       |
+------+-----------------+
| c1   | 10.0.3.5 (eth0) |
|      | 10.0.4.5 (eth1) |
+------+-----------------+
";
        assert_eq!(out, expected);
    }

    #[test]
    fn empty_table_is_just_the_header() {
        let out = render_table(&["NAME", "STATE"], &[]);
        assert_eq!(
            out,
            "+------+-------+\n| NAME | STATE |\n+------+-------+\n"
        );
    }

    #[test]
    fn csv_quotes_when_needed() {
        let out = render_csv(&[row(&["c1", "a,b", "x\ny", "say \"hi\""])]);
        assert_eq!(out, "c1,\"a,b\",\"x\ny\",\"say \"\"hi\"\"\"\n");
    }

    #[test]
    fn compact_has_no_borders() {
        let out = render_compact(&["NAME", "STATE"], &[row(&["c1", "RUNNING"])]);
        assert_eq!(out, "  NAME   STATE\n  c1    RUNNING\n");
    }
}
