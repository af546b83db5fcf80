//! Aggregation and the markdown table.

use std::collections::BTreeMap;

use serde::Serialize;

/// Raw samples per scenario and target (seconds, bytes or a count, see `unit`:
/// "s", "B" or "n").
#[derive(Default, Serialize)]
pub struct Results {
    pub samples: BTreeMap<String, BTreeMap<String, Vec<f64>>>,
    pub units: BTreeMap<String, String>,
    pub order: Vec<String>,
}

impl Results {
    pub fn add(&mut self, scenario: &str, target: &str, unit: &str, v: f64) {
        if !self.samples.contains_key(scenario) {
            self.order.push(scenario.to_string());
        }
        self.units.insert(scenario.to_string(), unit.to_string());
        self.samples
            .entry(scenario.to_string())
            .or_default()
            .entry(target.to_string())
            .or_default()
            .push(v);
    }

    pub fn median(&self, scenario: &str, target: &str) -> Option<f64> {
        self.samples.get(scenario)?.get(target).map(|v| stats(v).1)
    }
}

/// (min, median, max).
pub fn stats(v: &[f64]) -> (f64, f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let n = s.len();
    if n == 0 {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let med = if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    };
    (s[0], med, s[n - 1])
}

fn fmt(v: f64, unit: &str) -> String {
    match unit {
        "s" if v < 0.001 => format!("{:.0} µs", v * 1e6),
        "s" if v < 1.0 => format!("{:.1} ms", v * 1e3),
        "s" => format!("{v:.2} s"),
        "B" => format!("{:.1} MiB", v / 1048576.0),
        "n" => format!("{v:.0}"),
        _ => format!("{v:.2}"),
    }
}

pub fn table(r: &Results, targets: &[String]) -> String {
    let mut out = String::new();
    let mut head = "| scenario |".to_string();
    let mut sep = "|---|".to_string();
    for t in targets {
        head.push_str(&format!(" {t} min | {t} median | {t} max | n |"));
        sep.push_str("---:|---:|---:|---:|");
    }
    for other in targets.iter().skip(1) {
        head.push_str(&format!(" {}/{} (medians) |", targets[0], other));
        sep.push_str("---:|");
    }
    out.push_str(&head);
    out.push('\n');
    out.push_str(&sep);
    out.push('\n');
    for scenario in &r.order {
        let unit = r.units.get(scenario).map(String::as_str).unwrap_or("");
        let mut row = format!("| {scenario} |");
        for t in targets {
            match r.samples.get(scenario).and_then(|m| m.get(t)) {
                Some(v) if !v.is_empty() => {
                    let (lo, med, hi) = stats(v);
                    row.push_str(&format!(
                        " {} | {} | {} | {} |",
                        fmt(lo, unit),
                        fmt(med, unit),
                        fmt(hi, unit),
                        v.len()
                    ));
                }
                _ => row.push_str(" – | – | – | 0 |"),
            }
        }
        for other in targets.iter().skip(1) {
            match (r.median(scenario, &targets[0]), r.median(scenario, other)) {
                (Some(a), Some(b)) if b > 0.0 => row.push_str(&format!(" {:.2} |", a / b)),
                _ => row.push_str(" – |"),
            }
        }
        out.push_str(&row);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_table() {
        assert_eq!(stats(&[3.0, 1.0, 2.0]), (1.0, 2.0, 3.0));
        assert_eq!(stats(&[4.0, 1.0, 2.0, 3.0]).1, 2.5);
        let mut r = Results::default();
        r.add("exec", "kante", "s", 0.004);
        r.add("exec", "lxd", "s", 0.036);
        let t = table(&r, &["kante".into(), "lxd".into()]);
        assert!(
            t.contains("| exec | 4.0 ms | 4.0 ms | 4.0 ms | 1 | 36.0 ms"),
            "{t}"
        );
        assert!(t.contains("0.11 |"), "{t}");
        r.add("count", "kante", "n", 200.0);
        r.add("count", "lxd", "n", 12.0);
        let t = table(&r, &["kante".into(), "lxd".into()]);
        assert!(t.contains("| count | 200 | 200 | 200 | 1 | 12 |"), "{t}");
    }
}
