//! `kante lab status`: one row per host — its namespace, uplink address,
//! kanted's pid and whether it lives, whether the API answers (on its unix
//! socket, and whether its HTTPS port takes connections from here, through
//! the uplink), and how many instances it has.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Result};

use super::addr::{Net, Plan};
use super::names;
use super::record::Record;
use super::sys;
use crate::table::{render_table, Row};

pub const HEADER: [&str; 8] = [
    "HOST",
    "NAMESPACE",
    "ADDRESS",
    "PID",
    "KANTED",
    "API",
    "HTTPS",
    "INSTANCES",
];

pub async fn status(name: &str, dir: &Path) -> Result<String> {
    let Some(rec) = Record::load(dir)? else {
        bail!("No lab named {name} ({} has no lab record)", dir.display());
    };
    let plan = Plan::new(
        Net::parse(&rec.subnet)?,
        Net::parse(&rec.bridge_range)?,
        rec.hosts,
    )?;
    let mut rows: Vec<Row> = Vec::new();
    for i in 1..=rec.hosts {
        let ns = names::netns(name, i);
        let (pid, alive) = match rec.daemon(i) {
            Some((_, Some(pid), start)) => (pid.to_string(), sys::alive(pid, start)),
            _ => ("-".into(), false),
        };
        let c = super::host_client(dir, i);
        let api = alive && super::answers(&c, Duration::from_secs(2)).await;
        let count = if api {
            match tokio::time::timeout(Duration::from_secs(5), c.instance_names()).await {
                Ok(Ok(n)) => n.len().to_string(),
                _ => "?".into(),
            }
        } else {
            "-".into()
        };
        let ns_shown = if sys::netns_exists(&ns) {
            ns
        } else {
            format!("{ns} (missing)")
        };
        let https = reachable(std::net::SocketAddr::from((plan.host(i), 8443))).await;
        rows.push(vec![
            names::host(i),
            ns_shown,
            plan.host(i).to_string(),
            pid,
            if alive { "running" } else { "stopped" }.into(),
            if api { "yes" } else { "no" }.into(),
            if https { "yes" } else { "no" }.into(),
            count,
        ]);
    }
    Ok(format!(
        "Lab {name}: {} hosts on {} ({})\n{}",
        rec.hosts,
        rec.subnet,
        rec.dir.display(),
        render_table(&HEADER, &rows)
    ))
}

/// Whether a TCP connection to `addr` opens within a second.
async fn reachable(addr: std::net::SocketAddr) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
}
