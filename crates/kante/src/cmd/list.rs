//! `kante list`: lxc's columns, filters and formats.

use anyhow::{bail, Result};
use kante_api::instance::{InstanceFull, NetworkAddress};
use kante_api::StatusCode;
use kante_client::Client;

use crate::cli::ListArgs;
use crate::format::{date_short, size_decimal, size_iec};
use crate::table::{render, Format, Row};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Column {
    Name,
    State,
    Ipv4,
    Ipv6,
    Type,
    Snapshots,
    Pid,
    Profiles,
    Pool,
    LastUsed,
    Created,
    Memory,
    Cpu,
    Description,
    Architecture,
    Processes,
    BaseImage,
    Disk,
    Location,
    /// The instance's project (`e`, lxc's `--all-projects` column).
    Project,
    /// `key[:NAME]`: an expanded config key.
    Config {
        key: String,
        header: String,
    },
}

impl Column {
    fn from_char(c: char) -> Option<Column> {
        Some(match c {
            'n' => Column::Name,
            's' => Column::State,
            '4' => Column::Ipv4,
            '6' => Column::Ipv6,
            't' => Column::Type,
            'S' => Column::Snapshots,
            'p' => Column::Pid,
            'P' => Column::Profiles,
            'b' => Column::Pool,
            'l' => Column::LastUsed,
            'c' => Column::Created,
            'm' => Column::Memory,
            'u' => Column::Cpu,
            'd' => Column::Description,
            'a' => Column::Architecture,
            'N' => Column::Processes,
            'f' => Column::BaseImage,
            'D' => Column::Disk,
            'L' => Column::Location,
            'e' => Column::Project,
            _ => return None,
        })
    }

    pub fn header(&self) -> String {
        match self {
            Column::Name => "NAME",
            Column::State => "STATE",
            Column::Ipv4 => "IPV4",
            Column::Ipv6 => "IPV6",
            Column::Type => "TYPE",
            Column::Snapshots => "SNAPSHOTS",
            Column::Pid => "PID",
            Column::Profiles => "PROFILES",
            Column::Pool => "STORAGE POOL",
            Column::LastUsed => "LAST USED AT",
            Column::Created => "CREATED AT",
            Column::Memory => "MEMORY USAGE",
            Column::Cpu => "CPU USAGE",
            Column::Description => "DESCRIPTION",
            Column::Architecture => "ARCHITECTURE",
            Column::Processes => "PROCESSES",
            Column::BaseImage => "BASE IMAGE",
            Column::Disk => "DISK USAGE",
            Column::Location => "LOCATION",
            Column::Project => "PROJECT",
            Column::Config { header, .. } => return header.clone(),
        }
        .to_string()
    }

    /// Whether the column needs `state` or `snapshots` (recursion=2).
    pub fn needs_full(&self) -> bool {
        matches!(
            self,
            Column::Ipv4
                | Column::Ipv6
                | Column::Snapshots
                | Column::Pid
                | Column::Memory
                | Column::Cpu
                | Column::Processes
                | Column::Disk
        )
    }

    pub fn render(&self, f: &InstanceFull) -> String {
        let i = &f.instance;
        let running = i.status_code == StatusCode::Running as u16;
        let state = f.state.as_ref().filter(|_| running);
        match self {
            Column::Name => i.name.clone(),
            Column::State => i.status.to_uppercase(),
            Column::Ipv4 => addresses(f, "inet"),
            Column::Ipv6 => addresses(f, "inet6"),
            Column::Type => {
                let t = i.kind.to_uppercase();
                if i.ephemeral {
                    format!("{t} (EPHEMERAL)")
                } else {
                    t
                }
            }
            Column::Snapshots => f.snapshots.as_ref().map(Vec::len).unwrap_or(0).to_string(),
            Column::Pid => state
                .filter(|s| s.pid > 0)
                .map(|s| s.pid.to_string())
                .unwrap_or_default(),
            Column::Profiles => i.profiles.join("\n"),
            Column::Pool => i
                .expanded_devices
                .values()
                .find(|d| {
                    d.get("type").map(String::as_str) == Some("disk")
                        && d.get("path").map(String::as_str) == Some("/")
                })
                .and_then(|d| d.get("pool").cloned())
                .unwrap_or_default(),
            Column::LastUsed => date_short(&i.last_used_at),
            Column::Created => date_short(&i.created_at),
            Column::Memory => state
                .filter(|s| s.memory.usage > 0)
                .map(|s| size_iec(s.memory.usage))
                .unwrap_or_default(),
            Column::Cpu => state
                .filter(|s| s.cpu.usage > 0)
                .map(|s| format!("{}s", s.cpu.usage / 1_000_000_000))
                .unwrap_or_default(),
            Column::Description => i.description.clone(),
            Column::Architecture => i.architecture.clone(),
            Column::Processes => state.map(|s| s.processes.to_string()).unwrap_or_default(),
            Column::BaseImage => i
                .config
                .get("volatile.base_image")
                .map(|fp| fp.chars().take(12).collect())
                .unwrap_or_default(),
            Column::Disk => f
                .state
                .as_ref()
                .and_then(|s| s.disk.get("root"))
                .filter(|d| d.usage > 0)
                .map(|d| size_decimal(d.usage))
                .unwrap_or_default(),
            Column::Location => i.location.clone(),
            Column::Project => {
                if i.project.is_empty() {
                    "default".into()
                } else {
                    i.project.clone()
                }
            }
            Column::Config { key, .. } => i.expanded_config.get(key).cloned().unwrap_or_default(),
        }
    }
}

/// lxc's IP columns: global addresses of non-loopback interfaces as
/// `addr (iface)`, sorted in reverse like lxc, one per line. Like lxc's
/// `IsActive`, a frozen instance still shows its addresses.
fn addresses(f: &InstanceFull, family: &str) -> String {
    let Some(net) = f.state.as_ref().and_then(|s| s.network.as_ref()) else {
        return String::new();
    };
    let code = f.instance.status_code;
    if code == StatusCode::Stopped as u16 || code == StatusCode::Error as u16 {
        return String::new();
    }
    let mut out: Vec<String> = Vec::new();
    for (iface, n) in net {
        if n.kind == "loopback" || iface == "lo" {
            continue;
        }
        let global =
            |a: &&NetworkAddress| a.family == family && a.scope != "link" && a.scope != "local";
        out.extend(
            n.addresses
                .iter()
                .filter(global)
                .map(|a| format!("{} ({iface})", a.address)),
        );
    }
    out.sort();
    out.reverse();
    out.join("\n")
}

/// Parses `-c`: shorthand letters, or comma-separated entries that are either
/// letters or `key[:NAME]` config columns.
pub fn parse_columns(spec: &str) -> Result<Vec<Column>> {
    let mut cols = Vec::new();
    for entry in spec.split(',') {
        if entry.is_empty() {
            bail!("Empty column entry (redundant, leading or trailing comma) in '{spec}'");
        }
        if entry.contains(':') || entry.contains('.') {
            let mut parts = entry.splitn(3, ':');
            let mut key = parts.next().unwrap_or_default().to_string();
            if key == "config" {
                key = parts.next().unwrap_or_default().to_string();
            }
            if key.is_empty() {
                bail!("Invalid config key column '{entry}'");
            }
            let header = parts
                .next()
                .filter(|h| !h.is_empty())
                .map(str::to_string)
                .unwrap_or_else(|| key.to_uppercase());
            cols.push(Column::Config { key, header });
            continue;
        }
        for ch in entry.chars() {
            match Column::from_char(ch) {
                Some(c) => cols.push(c),
                None => bail!("Unknown column shorthand char '{ch}' in '{entry}'"),
            }
        }
    }
    Ok(cols)
}

/// lxc's filters: a bare word matches a name prefix; `key=value` matches a
/// field (name, status/state, type, ephemeral, architecture, location,
/// description) or an expanded config key.
pub fn matches(f: &InstanceFull, filters: &[String]) -> bool {
    let i = &f.instance;
    filters.iter().all(|flt| match flt.split_once('=') {
        None => i.name.starts_with(flt.as_str()),
        Some((k, v)) => match k {
            "name" => i.name == v,
            "status" | "state" => i.status.eq_ignore_ascii_case(v),
            "type" => i.kind.eq_ignore_ascii_case(v),
            "ephemeral" => i.ephemeral.to_string() == v.to_lowercase(),
            "architecture" => i.architecture == v,
            "location" => i.location == v,
            "description" => i.description == v,
            key => i.expanded_config.get(key).map(String::as_str) == Some(v),
        },
    })
}

pub fn rows(list: &[InstanceFull], cols: &[Column]) -> Vec<Row> {
    let mut sorted: Vec<&InstanceFull> = list.iter().collect();
    sorted.sort_by(|a, b| a.instance.name.cmp(&b.instance.name));
    sorted
        .iter()
        .map(|f| cols.iter().map(|c| c.render(f)).collect())
        .collect()
}

/// `-c`'s default (lxc's).
pub const DEFAULT_COLUMNS: &str = "ns46tS";

/// `--fast`'s columns (lxc's).
pub const FAST_COLUMNS: &str = "nsacPt";

/// The columns asked for: `-c`, or `--fast`'s; `--all-projects` puts
/// PROJECT first when the columns were not chosen (Kante has one project,
/// `default`, so every instance is listed whatever the flag).
pub fn chosen_columns(args: &ListArgs) -> Result<Vec<Column>> {
    let defaulted = args.columns == DEFAULT_COLUMNS;
    let spec = if args.fast {
        FAST_COLUMNS
    } else {
        &args.columns
    };
    let mut cols = parse_columns(spec)?;
    if args.all_projects && defaulted {
        cols.insert(0, Column::Project);
    }
    Ok(cols)
}

pub async fn run(c: &Client, args: ListArgs) -> Result<i32> {
    let cols = chosen_columns(&args)?;
    let structured = matches!(args.format, Format::Json | Format::Yaml);
    let list: Vec<InstanceFull> = if structured || cols.iter().any(Column::needs_full) {
        c.instances_full().await?
    } else {
        c.instances()
            .await?
            .into_iter()
            .map(|instance| InstanceFull {
                instance,
                backups: None,
                state: None,
                snapshots: None,
            })
            .collect()
    };
    let list: Vec<InstanceFull> = list
        .into_iter()
        .filter(|f| matches(f, &args.filters))
        .collect();
    // As lxc: the default columns of a cluster's list end with LOCATION.
    let mut cols = cols;
    let clustered = list
        .iter()
        .any(|f| !matches!(f.instance.location.as_str(), "" | "none"));
    if args.columns == DEFAULT_COLUMNS && !args.fast && clustered {
        cols.push(Column::Location);
    }
    warn_unreachable(&list);
    match args.format {
        Format::Json => println!("{}", serde_json::to_string(&list)?),
        Format::Yaml => print!("{}", serde_yaml::to_string(&list)?),
        fmt => {
            let headers: Vec<String> = cols.iter().map(Column::header).collect();
            let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
            print!("{}", render(fmt, &headers, &rows(&list, &cols)));
        }
    }
    Ok(0)
}

/// One line on stderr per cluster member that did not answer the list:
/// its instances are shown as ERROR from the cluster's records (the
/// server says so in their description, with the view's age when stale).
fn warn_unreachable(list: &[InstanceFull]) {
    let mut seen = std::collections::BTreeSet::new();
    for f in list {
        let i = &f.instance;
        if i.status == "Error"
            && i.description.starts_with("Cluster member ")
            && seen.insert(i.description.clone())
        {
            eprintln!(
                "Warning: {}: its instances are listed as ERROR from the cluster's records",
                i.description
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &str, running: bool) -> InstanceFull {
        let state = if running {
            serde_json::json!({"status": "Running", "status_code": 103, "disk": {}, "pid": 21220, "processes": 9,
              "cpu": {"usage": 2_603_124_737i64},
              "memory": {"usage": 27_156_480, "usage_peak": 0, "swap_usage": 0, "swap_usage_peak": 0},
              "network": {
                "eth0": {"addresses": [{"family": "inet", "address": "10.147.83.38", "netmask": "24", "scope": "global"},
                                       {"family": "inet6", "address": "fe80::1", "netmask": "64", "scope": "link"},
                                       {"family": "inet6", "address": "fd42::5", "netmask": "64", "scope": "global"}],
                  "counters": {"bytes_received": 0, "bytes_sent": 0, "packets_received": 0, "packets_sent": 0},
                  "hwaddr": "", "host_name": "", "mtu": 1500, "state": "up", "type": "broadcast"},
                "eth1": {"addresses": [{"family": "inet", "address": "192.168.1.4", "netmask": "24", "scope": "global"}],
                  "counters": {"bytes_received": 0, "bytes_sent": 0, "packets_received": 0, "packets_sent": 0},
                  "hwaddr": "", "host_name": "", "mtu": 1500, "state": "up", "type": "broadcast"},
                "lo": {"addresses": [{"family": "inet", "address": "127.0.0.1", "netmask": "8", "scope": "local"}],
                  "counters": {"bytes_received": 0, "bytes_sent": 0, "packets_received": 0, "packets_sent": 0},
                  "hwaddr": "", "host_name": "", "mtu": 65536, "state": "up", "type": "loopback"}}})
        } else {
            serde_json::json!({"status": "Stopped", "status_code": 102, "disk": {}, "pid": 0, "processes": 0,
              "cpu": {"usage": 0}, "memory": {"usage": 0, "usage_peak": 0, "swap_usage": 0, "swap_usage_peak": 0},
              "network": null})
        };
        serde_json::from_value(serde_json::json!({
            "architecture": "x86_64", "config": {"user.tier": "web", "volatile.base_image": "e8b1265df84efdf3241c"},
            "devices": {}, "ephemeral": !running, "profiles": ["default", "extra"], "stateful": false, "description": "",
            "created_at": "2026-11-22T13:14:37.761466031Z", "expanded_config": {"user.tier": "web"},
            "expanded_devices": {"root": {"path": "/", "pool": "default", "type": "disk"}},
            "name": name, "status": if running {"Running"} else {"Stopped"}, "status_code": if running {103} else {102},
            "last_used_at": "1970-01-01T00:00:00Z", "location": "none", "type": "container", "project": "default",
            "backups": null, "state": state, "snapshots": null
        }))
        .unwrap()
    }

    #[test]
    fn default_columns_render_like_lxc() {
        let cols = parse_columns("ns46tS").unwrap();
        let r = rows(&[sample("web", true), sample("db", false)], &cols);
        assert_eq!(
            r[0],
            vec!["db", "STOPPED", "", "", "CONTAINER (EPHEMERAL)", "0"]
        );
        assert_eq!(r[1][2], "192.168.1.4 (eth1)\n10.147.83.38 (eth0)");
        assert_eq!(r[1][3], "fd42::5 (eth0)");
        assert_eq!(r[1][4], "CONTAINER");
    }

    #[test]
    fn ip_columns_skip_loopback_and_stopped() {
        let mut f = sample("web", true);
        // A loopback reported without its type is still left out by name.
        if let Some(net) = f.state.as_mut().and_then(|s| s.network.as_mut()) {
            net.get_mut("lo").unwrap().kind = "broadcast".into();
        }
        assert_eq!(
            Column::Ipv4.render(&f),
            "192.168.1.4 (eth1)\n10.147.83.38 (eth0)"
        );
        f.instance.status_code = StatusCode::Frozen as u16;
        assert!(Column::Ipv4.render(&f).contains("(eth0)"));
        f.instance.status_code = StatusCode::Stopped as u16;
        assert_eq!(Column::Ipv4.render(&f), "");
    }

    #[test]
    fn other_columns() {
        let cols = parse_columns("pPbmucfl").unwrap();
        let r = rows(&[sample("web", true)], &cols);
        assert_eq!(
            r[0],
            vec![
                "21220",
                "default\nextra",
                "default",
                "25.90MiB",
                "2s",
                "2026/11/22 13:14 UTC",
                "e8b1265df84e",
                ""
            ]
        );
    }

    #[test]
    fn column_specs() {
        assert_eq!(
            parse_columns("ns").unwrap(),
            vec![Column::Name, Column::State]
        );
        let cols = parse_columns("n,user.tier:TIER").unwrap();
        assert_eq!(
            cols[1],
            Column::Config {
                key: "user.tier".into(),
                header: "TIER".into()
            }
        );
        assert_eq!(cols[1].render(&sample("a", true)), "web");
        assert_eq!(
            parse_columns("config:limits.cpu").unwrap()[0].header(),
            "LIMITS.CPU"
        );
        assert_eq!(
            parse_columns("nx").unwrap_err().to_string(),
            "Unknown column shorthand char 'x' in 'nx'"
        );
        assert!(parse_columns("n,").is_err());
        assert!(!parse_columns("nP").unwrap().iter().any(Column::needs_full));
        assert!(parse_columns("n4").unwrap().iter().any(Column::needs_full));
    }

    #[test]
    fn fast_and_all_projects() {
        let args = |extra: &[&str]| {
            let argv = ["kante", "list"].into_iter().chain(extra.iter().copied());
            match <crate::cli::Cli as clap::Parser>::try_parse_from(argv)
                .unwrap()
                .command
            {
                crate::cli::Command::List(l) => l,
                _ => unreachable!(),
            }
        };
        let fast = chosen_columns(&args(&["--fast"])).unwrap();
        let headers: Vec<String> = fast.iter().map(Column::header).collect();
        assert_eq!(
            headers,
            [
                "NAME",
                "STATE",
                "ARCHITECTURE",
                "CREATED AT",
                "PROFILES",
                "TYPE"
            ]
        );
        let all = chosen_columns(&args(&["--all-projects"])).unwrap();
        assert_eq!(all[0], Column::Project);
        assert_eq!(all[0].render(&sample("a", true)), "default");
        let all_fast = chosen_columns(&args(&["--all-projects", "--fast"])).unwrap();
        assert_eq!((all_fast[0].clone(), all_fast.len()), (Column::Project, 7));
        let chosen = chosen_columns(&args(&["--all-projects", "-c", "n"])).unwrap();
        assert_eq!(chosen, vec![Column::Name]);
        let argv = ["kante", "list", "--fast", "-c", "n"];
        assert!(<crate::cli::Cli as clap::Parser>::try_parse_from(argv).is_err());
    }

    #[test]
    fn filters() {
        let web = sample("web1", true);
        assert!(matches(&web, &["we".into()]));
        assert!(!matches(&web, &["db".into()]));
        assert!(matches(
            &web,
            &["status=running".into(), "user.tier=web".into()]
        ));
        assert!(!matches(&web, &["state=STOPPED".into()]));
        assert!(matches(&web, &["type=container".into()]));
    }
}
