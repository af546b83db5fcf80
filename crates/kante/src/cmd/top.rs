//! `kante top [REMOTE:]...`: a live view of the instances of one or more
//! remotes (a cluster member lists the whole cluster): CPU, memory, disk
//! I/O and network rates, sortable. Every tick reads each remote's
//! instance states (`/1.0/instances?recursion=2`) and its metrics
//! (`/1.0/metrics`, for disk bytes); rates are the differences between
//! two ticks. On a terminal the view redraws until `q`; `--once` (or a
//! stdout that is not a terminal) prints one table after two samples.

use std::collections::{BTreeMap, HashMap};
use std::io::{IsTerminal, Read, Write};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use kante_api::instance::InstanceFull;
use kante_client::Client;

use crate::cli::{SortKey, TopArgs};
use crate::format::size_iec;
use crate::remote::{self, Config};
use crate::table::{render_compact, Row};

/// One instance's counters at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
struct Sample {
    remote: String,
    location: String,
    name: String,
    status: String,
    cpu_ns: i64,
    memory: i64,
    disk_read: i64,
    disk_written: i64,
    net_rx: i64,
    net_tx: i64,
}

/// One row of the view: the latest sample and rates since the one before.
#[derive(Clone, Debug, PartialEq)]
struct Line {
    sample: Sample,
    cpu_percent: f64,
    disk_rate: (f64, f64),
    net_rate: (f64, f64),
}

/// Runs the view.
pub async fn run(args: TopArgs) -> Result<i32> {
    if !(args.interval >= 0.1 && args.interval <= 3600.0) {
        bail!("--interval must be between 0.1 and 3600 seconds");
    }
    let cfg = Config::load()?;
    let mut clients = Vec::new();
    let names: Vec<String> = if args.remotes.is_empty() {
        vec![cfg.default_remote.clone()]
    } else {
        args.remotes
            .iter()
            .map(|r| r.trim_end_matches(':').to_string())
            .collect()
    };
    for name in &names {
        let client = remote::connect::client(&cfg, name)?;
        clients.push((name.clone(), client));
    }
    let interval = Duration::from_secs_f64(args.interval);
    let mut before = sample_all(&clients).await?;
    let interactive =
        !args.once && std::io::stdout().is_terminal() && std::io::stdin().is_terminal();
    if !interactive {
        tokio::time::sleep(interval).await;
        let now = sample_all(&clients).await?;
        let lines = rates(&before, &now, interval);
        print!("{}", render(&lines, args.sort, names.len() > 1));
        return Ok(0);
    }
    let _raw =
        crate::terminal::RawMode::enable().context("Failed to set the terminal's raw mode")?;
    let keys = key_reader();
    let mut sort = args.sort;
    let mut taken = Instant::now();
    loop {
        let wait = interval.saturating_sub(taken.elapsed());
        if let Ok(Some(k)) = tokio::time::timeout(wait, keys_next(&keys)).await {
            match k {
                b'q' | 3 => break,
                b'n' => sort = SortKey::Name,
                b'c' => sort = SortKey::Cpu,
                b'm' => sort = SortKey::Mem,
                b'd' => sort = SortKey::Disk,
                b't' => sort = SortKey::Net,
                _ => {}
            }
            continue;
        }
        let now = sample_all(&clients).await?;
        let lines = rates(&before, &now, taken.elapsed());
        taken = Instant::now();
        before = now;
        let mut screen = String::from("\x1b[H\x1b[2J");
        screen.push_str(&format!(
            "kante top: {} instances, every {:.1}s, sorted by {:?} (n c m d t to sort, q to quit)\r\n\r\n",
            lines.len(),
            args.interval,
            sort
        ));
        screen.push_str(&render(&lines, sort, names.len() > 1).replace('\n', "\r\n"));
        let mut out = std::io::stdout();
        out.write_all(screen.as_bytes())?;
        out.flush()?;
    }
    print!("\r\n");
    Ok(0)
}

type Keys = std::sync::Arc<tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<u8>>>;

/// Keys from stdin, read on a thread of their own (a blocking read).
fn key_reader() -> Keys {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1];
        while let Ok(1) = std::io::stdin().read(&mut buf) {
            if tx.send(buf[0]).is_err() {
                break;
            }
        }
    });
    std::sync::Arc::new(tokio::sync::Mutex::new(rx))
}

async fn keys_next(keys: &Keys) -> Option<u8> {
    keys.lock().await.recv().await
}

/// Every remote's samples (a remote that fails fails the view, with its name).
async fn sample_all(clients: &[(String, Client)]) -> Result<Vec<Sample>> {
    let mut all = Vec::new();
    for (name, client) in clients {
        let instances: Vec<InstanceFull> = client
            .instances_full()
            .await
            .with_context(|| format!("Failed to read the instances of {name}"))?;
        let metrics = client
            .get_body("/1.0/metrics")
            .await
            .with_context(|| format!("Failed to read the metrics of {name}"))?;
        let disk = disk_bytes(&String::from_utf8_lossy(&metrics));
        all.extend(instances.into_iter().map(|i| sample_of(name, i, &disk)));
    }
    Ok(all)
}

/// One instance's sample from its state and the disk counters by name.
fn sample_of(remote: &str, i: InstanceFull, disk: &HashMap<String, (i64, i64)>) -> Sample {
    let state = i
        .state
        .unwrap_or_else(kante_api::instance::InstanceState::stopped);
    let (rx, tx) = state
        .network
        .iter()
        .flatten()
        .filter(|(dev, _)| dev.as_str() != "lo")
        .fold((0, 0), |(r, t), (_, n)| {
            (r + n.counters.bytes_received, t + n.counters.bytes_sent)
        });
    let (read, written) = disk.get(&i.instance.name).copied().unwrap_or_default();
    Sample {
        remote: remote.to_string(),
        location: i.instance.location.clone(),
        name: i.instance.name,
        status: state.status,
        cpu_ns: state.cpu.usage,
        memory: state.memory.usage,
        disk_read: read,
        disk_written: written,
        net_rx: rx,
        net_tx: tx,
    }
}

/// Bytes read and written per instance, summed over devices, from
/// `lxd_disk_read_bytes_total` / `lxd_disk_written_bytes_total`.
fn disk_bytes(text: &str) -> HashMap<String, (i64, i64)> {
    let mut out: HashMap<String, (i64, i64)> = HashMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (metric, rest) = match line.split_once('{') {
            Some(x) => x,
            None => continue,
        };
        let read = match metric {
            "lxd_disk_read_bytes_total" => true,
            "lxd_disk_written_bytes_total" => false,
            _ => continue,
        };
        let Some((labels, value)) = rest.rsplit_once('}') else {
            continue;
        };
        let Some(name) = label(labels, "name") else {
            continue;
        };
        let value = value.trim().parse::<f64>().unwrap_or(0.0) as i64;
        let entry = out.entry(name).or_default();
        if read {
            entry.0 += value;
        } else {
            entry.1 += value;
        }
    }
    out
}

/// The value of `key="…"` in a label set (escapes as OpenMetrics writes them).
fn label(labels: &str, key: &str) -> Option<String> {
    let start = labels.find(&format!("{key}=\""))? + key.len() + 2;
    let mut out = String::new();
    let mut chars = labels[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return Some(out),
            c => out.push(c),
        }
    }
    None
}

/// Rates between two sample sets `elapsed` apart; instances new in `now`
/// show zero rates.
fn rates(before: &[Sample], now: &[Sample], elapsed: Duration) -> Vec<Line> {
    let secs = elapsed.as_secs_f64().max(0.001);
    let old: BTreeMap<(&str, &str), &Sample> = before
        .iter()
        .map(|s| ((s.remote.as_str(), s.name.as_str()), s))
        .collect();
    now.iter()
        .map(|s| {
            let prev = old.get(&(s.remote.as_str(), s.name.as_str()));
            let delta = |f: fn(&Sample) -> i64| {
                prev.map(|p| (f(s) - f(p)).max(0) as f64 / secs)
                    .unwrap_or(0.0)
            };
            Line {
                sample: s.clone(),
                cpu_percent: delta(|x| x.cpu_ns) / 1e7,
                disk_rate: (delta(|x| x.disk_read), delta(|x| x.disk_written)),
                net_rate: (delta(|x| x.net_rx), delta(|x| x.net_tx)),
            }
        })
        .collect()
}

/// The table, sorted; a REMOTE column when several remotes are shown, a
/// LOCATION column when any instance has one.
fn render(lines: &[Line], sort: SortKey, several: bool) -> String {
    let mut lines = lines.to_vec();
    let key = |l: &Line| match sort {
        SortKey::Name => 0.0,
        SortKey::Cpu => l.cpu_percent,
        SortKey::Mem => l.sample.memory as f64,
        SortKey::Disk => l.disk_rate.0 + l.disk_rate.1,
        SortKey::Net => l.net_rate.0 + l.net_rate.1,
    };
    lines.sort_by(|a, b| {
        key(b)
            .total_cmp(&key(a))
            .then_with(|| a.sample.name.cmp(&b.sample.name))
    });
    let located = lines
        .iter()
        .any(|l| !l.sample.location.is_empty() && l.sample.location != "none");
    let mut header = vec!["NAME"];
    if several {
        header.push("REMOTE");
    }
    if located {
        header.push("LOCATION");
    }
    header.extend([
        "STATE",
        "CPU%",
        "MEMORY",
        "DISK READ/s",
        "DISK WRITE/s",
        "NET RX/s",
        "NET TX/s",
    ]);
    let rate = |r: f64| size_iec(r.round() as i64);
    let rows: Vec<Row> = lines
        .iter()
        .map(|l| {
            let mut row = vec![l.sample.name.clone()];
            if several {
                row.push(l.sample.remote.clone());
            }
            if located {
                row.push(l.sample.location.clone());
            }
            row.extend([
                l.sample.status.to_uppercase(),
                format!("{:.1}", l.cpu_percent),
                size_iec(l.sample.memory),
                rate(l.disk_rate.0),
                rate(l.disk_rate.1),
                rate(l.net_rate.0),
                rate(l.net_rate.1),
            ]);
            row
        })
        .collect();
    render_compact(&header, &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(name: &str, cpu_ns: i64, memory: i64, rx: i64) -> Sample {
        Sample {
            remote: "local".into(),
            location: "none".into(),
            name: name.into(),
            status: "Running".into(),
            cpu_ns,
            memory,
            net_rx: rx,
            ..Default::default()
        }
    }

    #[test]
    fn rates_are_differences_over_time() {
        let before = vec![s("a", 1_000_000_000, 10, 0), s("b", 0, 20, 0)];
        let now = vec![
            s("a", 1_500_000_000, 10, 2048),
            s("b", 2_000_000_000, 20, 0),
            s("c", 5, 30, 9),
        ];
        let lines = rates(&before, &now, Duration::from_secs(2));
        assert!((lines[0].cpu_percent - 25.0).abs() < 1e-9);
        assert!((lines[1].cpu_percent - 100.0).abs() < 1e-9);
        assert_eq!(lines[0].net_rate.0, 1024.0);
        assert_eq!(lines[2].cpu_percent, 0.0, "a new instance has no rate yet");
        let table = render(&lines, SortKey::Cpu, false);
        let order: Vec<&str> = table
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert_eq!(order, ["b", "a", "c"]);
        let by_mem = render(&lines, SortKey::Mem, false);
        assert!(
            by_mem
                .lines()
                .nth(1)
                .unwrap()
                .trim_start()
                .starts_with("c "),
            "{by_mem}"
        );
        assert!(!table.contains("LOCATION") && !table.contains("REMOTE"));
    }

    #[test]
    fn disk_bytes_sum_devices_per_instance() {
        let text = "# TYPE lxd_disk_read_bytes counter\n\
            lxd_disk_read_bytes_total{device=\"vda\",name=\"c1\",project=\"default\",type=\"container\"} 100\n\
            lxd_disk_read_bytes_total{device=\"vdb\",name=\"c1\",project=\"default\",type=\"container\"} 50\n\
            lxd_disk_written_bytes_total{device=\"vda\",name=\"c\\\"2\",project=\"default\"} 7\n\
            lxd_cpu_seconds_total{cpu=\"0\",mode=\"user\",name=\"c1\"} 3\n";
        let d = disk_bytes(text);
        assert_eq!(d["c1"], (150, 0));
        assert_eq!(d["c\"2"], (0, 7));
    }
}
